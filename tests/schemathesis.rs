//! API conformance: Schemathesis (from PyPI, pinned in `tests/schemathesis/requirements.txt`,
//! installed by this test into a virtualenv under `target/`) runs against a real `verifyd serve`
//! with Vonage's own OpenAPI documents, `tests/openapi/verify-v1.yml` and `verify-v2.yml`. No
//! answer may be a server error, and none may be outside its document (status code, content
//! type, headers, body). Where verifyd deliberately answers outside a document, or a document
//! contradicts itself, a named rule in `tests/schemathesis/hooks.py` drops that failure and counts
//! it; a 5xx is never dropped. docs/security.md lists the rules.
//!
//! `VERIFYD_SCHEMATHESIS_SEED` and `VERIFYD_SCHEMATHESIS_EXAMPLES` change the seed and the number
//! of generated cases per operation (a longer hunt than the default run's).
//!
//! Two more runs check verifyd against its own documents, `openapi/verify-v1.yaml` and
//! `verify-v2.yaml`, as the server itself serves them (`/openapi/…`): with no hook and no
//! exclusion at all, since those documents describe what verifyd answers, and with the stateful
//! phase, whose links (a start's `request_id`, a template's id) reach real requests and templates.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use support::run_bounded;

/// The seed of the default run, so that it asks the same questions each time.
const SEED: &str = "20261207";
/// Generated cases per operation and phase in the default run.
const MAX_EXAMPLES: &str = "100";
/// The most one surface's run may take before it is killed.
const RUN_LIMIT: Duration = Duration::from_secs(600);

/// What Schemathesis checks of every answer: the two promises of the conformance test.
const CHECKS: &str = "not_a_server_error,status_code_conformance,content_type_conformance,\
                      response_headers_conformance,response_schema_conformance";

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The two tests of this file run in parallel; two installers in one directory break each other.
static INSTALLING: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// A virtualenv with the pinned Schemathesis, kept in the target directory between runs and
/// made again whenever the requirements change; its `schemathesis` command.
fn schemathesis() -> PathBuf {
    let _one_at_a_time = INSTALLING.lock().unwrap_or_else(|e| e.into_inner());
    let venv = Path::new(env!("CARGO_TARGET_TMPDIR")).join("schemathesis-venv");
    let command = venv.join("bin/schemathesis");
    let requirements = repo().join("tests/schemathesis/requirements.txt");
    let stamp = venv.join("requirements.installed");
    let wanted = std::fs::read_to_string(&requirements).unwrap();
    if std::fs::read_to_string(&stamp).ok().as_deref() == Some(wanted.as_str()) {
        return command;
    }
    let (ok, out) = run_bounded(
        Command::new("python3")
            .args(["-m", "venv", "--clear"])
            .arg(&venv),
        Duration::from_secs(300),
    );
    assert!(
        ok,
        "python3 -m venv failed (on Debian: apt-get install python3-venv):\n{out}"
    );
    let (ok, out) = run_bounded(
        Command::new(venv.join("bin/python"))
            .args([
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
                "-r",
            ])
            .arg(&requirements),
        Duration::from_secs(600),
    );
    assert!(ok, "pip install failed:\n{out}");
    std::fs::write(&stamp, wanted).unwrap();
    command
}

/// Whether the process `pid` has ended (gone, or a zombie waiting to be reaped).
fn ended(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
    }
}

/// SIGTERM, at most 10 s for the server to end, then SIGKILL (this test is about answers, not
/// shutdowns: a slow stop is reported, not failed); the server's log.
fn stop(mut server: support::Server) -> String {
    let pid = server.pid();
    let target = rustix::process::Pid::from_raw(pid as i32).unwrap();
    let _ = rustix::process::kill_process(target, rustix::process::Signal::TERM);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !ended(pid) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    if !ended(pid) {
        println!("verifyd did not stop within 10 s of SIGTERM; killed");
    }
    server.kill9();
    server.log()
}

fn env_or(name: &str, default: &str) -> String {
    std::env::var(name)
        .ok()
        .filter(|v| !v.trim().is_empty())
        .unwrap_or_else(|| default.to_owned())
}

/// Runs Schemathesis with `document` against a new server whose operations live under
/// `base_path`; `surface` (`v1` or `v2`) tells the hooks which rules apply.
fn conformance(surface: &str, document: &str, base_path: &str) {
    let schemathesis = schemathesis();
    let dir = tempfile::tempdir().unwrap();
    let server = support::start(dir.path(), &dir.path().join("verifyd.db"), &[]);
    let (key, secret) = server
        .first_key
        .clone()
        .expect("a new database prints its key");
    let origin = server.base("http");
    let seed = env_or("VERIFYD_SCHEMATHESIS_SEED", SEED);
    let examples = env_or("VERIFYD_SCHEMATHESIS_EXAMPLES", MAX_EXAMPLES);
    let started = Instant::now();
    let (ok, out) = run_bounded(
        Command::new(&schemathesis)
            .arg("run")
            .arg(repo().join(document))
            .arg("--url")
            .arg(format!("{origin}{base_path}"))
            .arg("--auth")
            .arg(format!("{key}:{secret}"))
            .args(["--checks", CHECKS])
            .args(["--phases", "examples,coverage,fuzzing"])
            .args(["--mode", "all"])
            .args(["--max-examples", &examples])
            .args(["--seed", &seed])
            // One worker: Hypothesis describes its strategies with `ast.parse`, and CPython before
            // the fix of gh-106905 (3.11.7, for one) fails it now and then when two threads parse
            // at once ("AST constructor recursion depth mismatch"). The two surfaces run in
            // parallel instead, each in a process of its own.
            .args(["--workers", "1"])
            .args(["--request-timeout", "10"])
            .args(["--generation-database", "none"])
            .arg("--continue-on-failure")
            .arg("--no-color")
            .env(
                "SCHEMATHESIS_HOOKS",
                repo().join("tests/schemathesis/hooks.py"),
            )
            .env("VERIFYD_SURFACE", surface)
            .env("VERIFYD_URL", &origin)
            .env("VERIFYD_API_KEY", &key)
            .env("VERIFYD_API_SECRET", &secret)
            .env("COLUMNS", "160")
            .env("PYTHONDONTWRITEBYTECODE", "1")
            .current_dir(dir.path()),
        RUN_LIMIT,
    );
    let took = started.elapsed();
    let log = stop(server);
    println!("{out}\nschemathesis {surface}: seed {seed}, {examples} examples, {took:.1?}");
    assert!(
        ok,
        "schemathesis found answers outside {document}: its report is above (seed {seed}; \
         VERIFYD_SCHEMATHESIS_SEED={seed} cargo test --test schemathesis runs it again)"
    );
    assert!(
        out.contains(&format!("verifyd exclusions applied ({surface})")),
        "the hooks did not run (output above)"
    );
    assert!(
        !out.contains(&format!("verifyd live values used ({surface}): none")),
        "no call reached a real request (output above)"
    );
    assert!(
        !log.contains("panicked"),
        "verifyd panicked during the run:\n{log}"
    );
}

#[test]
fn verify_v1_answers_within_vonages_openapi_document() {
    conformance("v1", "tests/openapi/verify-v1.yml", "/verify");
}

#[test]
fn verify_v2_answers_within_vonages_openapi_document() {
    conformance("v2", "tests/openapi/verify-v2.yml", "/v2/verify");
}

/// The samples of one metric in a Prometheus text exposition, summed, whose labels include
/// `label` (or all of them when `label` is empty).
fn metric_total(exposition: &str, name: &str, label: &str) -> f64 {
    exposition
        .lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| line.rsplit_once(' '))
        .filter(|(series, _)| {
            let (metric, labels) = series.split_once('{').unwrap_or((series, ""));
            metric == name && labels.contains(label)
        })
        .filter_map(|(_, value)| value.parse::<f64>().ok())
        .sum()
}

/// Runs Schemathesis against a new server with the document the server serves at `served_at`
/// (verifyd's own, `openapi/`), with no hook: no exclusion applies, and the only credentials are
/// `--auth`. An empty `schemathesis.toml` in the run's directory stops Schemathesis from looking
/// for one in the directories above it.
fn own_document_conformance(served_at: &str) {
    let schemathesis = schemathesis();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("schemathesis.toml"), "").unwrap();
    let server = support::start(dir.path(), &dir.path().join("verifyd.db"), &[]);
    let (key, secret) = server
        .first_key
        .clone()
        .expect("a new database prints its key");
    let origin = server.base("http");
    let seed = env_or("VERIFYD_SCHEMATHESIS_SEED", SEED);
    let examples = env_or("VERIFYD_SCHEMATHESIS_EXAMPLES", MAX_EXAMPLES);
    let started = Instant::now();
    let (ok, out) = run_bounded(
        Command::new(&schemathesis)
            .arg("run")
            .arg(format!("{origin}{served_at}"))
            .arg("--url")
            .arg(&origin)
            .arg("--auth")
            .arg(format!("{key}:{secret}"))
            .args(["--checks", CHECKS])
            .args(["--phases", "examples,coverage,fuzzing,stateful"])
            .args(["--mode", "all"])
            .args(["--max-examples", &examples])
            .args(["--seed", &seed])
            // One worker, as in `conformance` (gh-106905).
            .args(["--workers", "1"])
            .args(["--request-timeout", "10"])
            .args(["--generation-database", "none"])
            .arg("--continue-on-failure")
            .arg("--no-color")
            .env_remove("SCHEMATHESIS_HOOKS")
            .env("COLUMNS", "160")
            .env("PYTHONDONTWRITEBYTECODE", "1")
            .current_dir(dir.path()),
        RUN_LIMIT,
    );
    let took = started.elapsed();
    let metrics = support::client()
        .get(format!("{origin}/metrics"))
        .send()
        .and_then(|r| r.text())
        .unwrap_or_default();
    let log = stop(server);
    println!("{out}\nschemathesis {served_at}: seed {seed}, {examples} examples, {took:.1?}");
    assert!(
        ok,
        "schemathesis found answers outside {served_at}, verifyd's own document: its report is \
         above (seed {seed}; VERIFYD_SCHEMATHESIS_SEED={seed} cargo test --test schemathesis \
         runs it again). Fix the server or the document in openapi/; no exclusion applies here"
    );
    assert!(
        !out.contains("Failed to extract data from response"),
        "a link of {served_at} could not be followed (output above)"
    );
    assert!(
        metric_total(
            &metrics,
            "verifyd_verifications_total",
            "outcome=\"started\""
        ) >= 1.0,
        "no generated call started a verification:\n{metrics}"
    );
    let checks = metric_total(&metrics, "verifyd_checks_total", "");
    let not_active = metric_total(&metrics, "verifyd_checks_total", "outcome=\"not_active\"");
    assert!(
        checks > not_active,
        "no check reached a request in progress (the document's links lead nowhere):\n{metrics}"
    );
    assert!(
        !log.contains("panicked"),
        "verifyd panicked during the run:\n{log}"
    );
}

#[test]
fn verify_v1_answers_within_verifyds_own_openapi_document() {
    own_document_conformance("/openapi/verify-v1.yaml");
}

#[test]
fn verify_v2_answers_within_verifyds_own_openapi_document() {
    own_document_conformance("/openapi/verify-v2.yaml");
}
