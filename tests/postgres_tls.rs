//! TLS to PostgreSQL against a private cluster this test makes (initdb) with a certificate it
//! makes, which refuses every connection without TLS: `sslmode=require` encrypts,
//! `verify-full` checks the chain and the host name against `sslrootcert`, `verify-ca` the chain
//! only, and the real binary serves on such a URL.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use verifyd::store::postgres::PgStore;
use verifyd::store::KeyStore;

/// PostgreSQL's server programs (initdb, pg_ctl), from Debian's packages.
fn bin_dir() -> Option<PathBuf> {
    let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
        .filter(|p| p.join("initdb").exists())
        .collect();
    found.sort();
    found.pop()
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

/// A command run as the `postgres` user when this test runs as root (initdb refuses root).
fn as_server_user(program: &Path) -> Command {
    if is_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(program);
        c
    } else {
        Command::new(program)
    }
}

/// A cluster on a loopback port, stopped (`pg_ctl stop -m immediate`) when dropped.
struct Cluster {
    bin: PathBuf,
    data: PathBuf,
    port: u16,
    _dir: tempfile::TempDir,
    ca: PathBuf,
    other_ca: PathBuf,
}

impl Cluster {
    fn start() -> Option<Self> {
        let Some(bin) = bin_dir() else {
            eprintln!("skipped: no initdb under /usr/lib/postgresql");
            return None;
        };
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
        let other = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
        let (ca, other_ca) = (dir.path().join("ca.pem"), dir.path().join("other-ca.pem"));
        std::fs::write(&ca, cert.cert.pem()).unwrap();
        std::fs::write(&other_ca, other.cert.pem()).unwrap();
        if is_root() {
            let ok = Command::new("chown")
                .args(["postgres:", dir.path().to_str().unwrap()])
                .status()
                .unwrap()
                .success();
            assert!(ok, "chown to postgres");
        }
        let (ok, out) = support::run_bounded(
            as_server_user(&bin.join("initdb"))
                .arg("-D")
                .arg(&data)
                .args(["-U", "postgres", "--auth=trust", "--no-sync"]),
            Duration::from_secs(120),
        );
        assert!(ok, "initdb: {out}");
        std::fs::write(
            data.join("pg_hba.conf"),
            "local all all trust\n\
             hostssl all all 127.0.0.1/32 trust\n\
             hostnossl all all 127.0.0.1/32 reject\n",
        )
        .unwrap();
        for (name, pem) in [
            ("server.crt", cert.cert.pem()),
            ("server.key", cert.signing_key.serialize_pem()),
        ] {
            std::fs::write(data.join(name), pem).unwrap();
        }
        if is_root() {
            let ok = Command::new("chown")
                .args(["-R", "postgres:"])
                .arg(dir.path())
                .status()
                .unwrap()
                .success();
            assert!(ok);
        }
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(
            data.join("server.key"),
            std::fs::Permissions::from_mode(0o600),
        )
        .unwrap();
        let port = support::free_port();
        let options = format!(
            "-p {port} -c listen_addresses=127.0.0.1 -c unix_socket_directories={} \
             -c ssl=on -c fsync=off",
            dir.path().display()
        );
        let (ok, out) = support::run_bounded(
            as_server_user(&bin.join("pg_ctl"))
                .arg("-D")
                .arg(&data)
                .arg("-l")
                .arg(dir.path().join("server.log"))
                .args(["-o", &options, "-w", "-t", "60", "start"]),
            Duration::from_secs(90),
        );
        let cluster = Self {
            bin,
            data,
            port,
            _dir: dir,
            ca,
            other_ca,
        };
        assert!(
            ok,
            "pg_ctl start: {out}\n{}",
            std::fs::read_to_string(cluster._dir.path().join("server.log")).unwrap_or_default()
        );
        Some(cluster)
    }

    fn url(&self, host: &str, query: &str) -> String {
        format!(
            "postgres://postgres@{host}:{}/postgres?hostaddr=127.0.0.1&{query}",
            self.port
        )
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = support::run_bounded(
            as_server_user(&self.bin.join("pg_ctl"))
                .arg("-D")
                .arg(&self.data)
                .args(["-m", "immediate", "-w", "-t", "20", "stop"]),
            Duration::from_secs(30),
        );
    }
}

async fn opens(url: &str) -> Result<(), String> {
    match PgStore::open(url).await {
        Ok(store) => {
            store.list_keys().await.map_err(|e| e.to_string())?;
            Ok(())
        }
        Err(e) => Err(format!("{e:#}")),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(has_initdb),
    ignore = "needs PostgreSQL's initdb (Debian's postgresql)"
)]
async fn each_sslmode_checks_what_libpq_checks_against_a_cluster_that_requires_tls() {
    let Some(c) = Cluster::start() else { return };
    let (ca, other) = (c.ca.display(), c.other_ca.display());

    let plain = opens(&c.url("127.0.0.1", "application_name=plain")).await;
    assert!(
        plain.is_err(),
        "the cluster refuses connections without TLS"
    );
    opens(&c.url("127.0.0.1", "sslmode=require"))
        .await
        .expect("require: encrypted, any certificate");
    opens(&c.url(
        "localhost",
        &format!("sslmode=verify-full&sslrootcert={ca}"),
    ))
    .await
    .expect("verify-full: the chain and the name check out");
    let wrong_name = opens(&c.url(
        "127.0.0.1",
        &format!("sslmode=verify-full&sslrootcert={ca}"),
    ))
    .await;
    let e = wrong_name.expect_err("the certificate names localhost, not 127.0.0.1");
    assert!(e.to_lowercase().contains("certificate"), "{e}");
    opens(&c.url("127.0.0.1", &format!("sslmode=verify-ca&sslrootcert={ca}")))
        .await
        .expect("verify-ca: the chain only");
    for mode in ["verify-full", "verify-ca", "require"] {
        let query = format!("sslmode={mode}&sslrootcert={other}");
        let wrong_ca = opens(&c.url("localhost", &query)).await;
        assert!(
            wrong_ca.is_err(),
            "{mode} with sslrootcert: a certificate from another authority is refused"
        );
    }
    let spaced = "sslmode=require&options=-c%20statement_timeout%3D5000";
    opens(&c.url("127.0.0.1", spaced))
        .await
        .expect("other parameters pass through as written, spaces included");
}

#[test]
#[cfg_attr(
    not(has_initdb),
    ignore = "needs PostgreSQL's initdb (Debian's postgresql)"
)]
fn the_server_serves_on_a_verify_full_url() {
    let Some(c) = Cluster::start() else { return };
    let url = c.url(
        "localhost",
        &format!("sslmode=verify-full&sslrootcert={}", c.ca.display()),
    );
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("verifyd.key");
    let server = support::start_url(
        dir.path(),
        &url,
        &["--secret-key-file", key.to_str().unwrap()],
    );
    let (api_key, secret) = server.first_key.clone().expect("a first key");
    let body: serde_json::Value = support::client()
        .post(format!("{}/verify/json", server.base("http")))
        .form(&[
            ("api_key", api_key.as_str()),
            ("api_secret", secret.as_str()),
            ("number", "447700123456"),
            ("brand", "Acme"),
        ])
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(body["status"], "0", "{body}");
}
