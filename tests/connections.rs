//! The HTTP server's limits, from a client's side: silent, slow and idle connections are closed
//! on time, connections beyond the cap wait, and refusals do not flood the log. Raw sockets on
//! loopback against a real server.

mod support;

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use verifyd::config::Settings;
use verifyd::startup::Application;

/// A server on a fresh SQLite file with the given limits (in seconds).
async fn serve_with(
    header: u64,
    body: u64,
    idle: u64,
    configure: impl FnOnce(&mut Settings),
) -> (Application, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let mut settings = Settings::sqlite("127.0.0.1:0".parse().unwrap(), &dir.path().join("v.db"));
    settings.http.header_timeout = Duration::from_secs(header);
    settings.http.body_timeout = Duration::from_secs(body);
    settings.http.idle_timeout = Duration::from_secs(idle);
    configure(&mut settings);
    let app = Application::build(settings)
        .await
        .expect("the server starts");
    (app, dir)
}

/// Reads until the server closes the connection; returns what it sent and when it closed, or
/// `None` if it was still open after `limit`.
async fn read_until_closed(stream: &mut TcpStream, limit: Duration) -> Option<(String, Duration)> {
    let started = Instant::now();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let left = limit.checked_sub(started.elapsed())?;
        match tokio::time::timeout(left, stream.read(&mut buf)).await {
            Err(_) => return None,
            Ok(Ok(0)) | Ok(Err(_)) => {
                return Some((
                    String::from_utf8_lossy(&got).into_owned(),
                    started.elapsed(),
                ))
            }
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
        }
    }
}

/// Reads one answer to a `Connection: keep-alive` GET of /healthz (its body is `ok\n`).
async fn read_health_answer(stream: &mut TcpStream) -> String {
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    while !String::from_utf8_lossy(&got).ends_with("ok\n") {
        let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf))
            .await
            .expect("an answer within 5 s")
            .unwrap();
        assert!(
            n > 0,
            "closed before answering: {:?}",
            String::from_utf8_lossy(&got)
        );
        got.extend_from_slice(&buf[..n]);
    }
    String::from_utf8_lossy(&got).into_owned()
}

const HEALTH: &[u8] = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n";

#[tokio::test]
async fn a_connection_that_sends_nothing_is_closed_after_the_header_timeout() {
    let (app, _dir) = serve_with(1, 10, 30, |_| {}).await;
    let mut silent = TcpStream::connect(app.addr()).await.unwrap();
    let (_, after) = read_until_closed(&mut silent, Duration::from_secs(10))
        .await
        .expect("closed");
    assert!(
        after >= Duration::from_millis(900),
        "closed early: {after:?}"
    );
    assert!(after < Duration::from_secs(5), "closed late: {after:?}");
}

#[tokio::test]
async fn headers_sent_a_byte_at_a_time_are_cut_off_at_the_header_timeout() {
    let (app, _dir) = serve_with(1, 10, 30, |_| {}).await;
    let mut slow = TcpStream::connect(app.addr()).await.unwrap();
    let started = Instant::now();
    let mut sent = 0;
    for byte in b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Padding: aaaaaaaaaaaaaaaa\r\n\r\n" {
        if slow.write_all(&[*byte]).await.is_err() {
            break;
        }
        sent += 1;
        tokio::time::sleep(Duration::from_millis(250)).await;
        if started.elapsed() > Duration::from_secs(4) {
            break;
        }
    }
    let closed = read_until_closed(&mut slow, Duration::from_secs(1)).await;
    let (answer, _) = closed.unwrap_or_else(|| panic!("still open after {sent} bytes"));
    assert!(!answer.contains("200 OK"), "{answer}");
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[tokio::test]
async fn a_half_sent_body_is_answered_408_and_the_connection_closed() {
    let (app, _dir) = serve_with(5, 1, 30, |_| {}).await;
    let mut half = TcpStream::connect(app.addr()).await.unwrap();
    half.write_all(
        b"POST /verify/json HTTP/1.1\r\nHost: 127.0.0.1\r\n\
          Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 100\r\n\r\n\
          api_key=x&",
    )
    .await
    .unwrap();
    let (answer, after) = read_until_closed(&mut half, Duration::from_secs(10))
        .await
        .expect("closed");
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(after >= Duration::from_millis(900), "{after:?}");
    assert!(after < Duration::from_secs(5), "{after:?}");
}

#[tokio::test]
async fn an_idle_keep_alive_connection_lives_for_the_idle_timeout_not_the_header_timeout() {
    let (app, _dir) = serve_with(1, 10, 3, |_| {}).await;
    let mut conn = TcpStream::connect(app.addr()).await.unwrap();
    conn.write_all(HEALTH).await.unwrap();
    assert!(read_health_answer(&mut conn)
        .await
        .starts_with("HTTP/1.1 200"));
    // Longer than the header timeout, shorter than the idle timeout: still served.
    tokio::time::sleep(Duration::from_millis(1_800)).await;
    conn.write_all(HEALTH).await.unwrap();
    assert!(read_health_answer(&mut conn)
        .await
        .starts_with("HTTP/1.1 200"));
    let (_, after) = read_until_closed(&mut conn, Duration::from_secs(10))
        .await
        .expect("closed once idle");
    assert!(after >= Duration::from_secs(2), "{after:?}");
    assert!(after < Duration::from_secs(6), "{after:?}");
}

#[tokio::test]
async fn a_silent_tls_connection_is_closed_after_the_header_timeout_too() {
    let dir = tempfile::tempdir().unwrap();
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    let (cert_path, key_path) = (dir.path().join("c.pem"), dir.path().join("k.pem"));
    std::fs::write(&cert_path, cert.cert.pem()).unwrap();
    std::fs::write(&key_path, cert.signing_key.serialize_pem()).unwrap();
    let (app, _db) = serve_with(1, 10, 30, |s| {
        s.tls = Some(verifyd::config::Tls {
            cert: cert_path,
            key: key_path,
        })
    })
    .await;
    let mut silent = TcpStream::connect(app.addr()).await.unwrap();
    let (_, after) = read_until_closed(&mut silent, Duration::from_secs(10))
        .await
        .expect("closed");
    assert!(after < Duration::from_secs(5), "{after:?}");
}

#[tokio::test]
async fn connections_beyond_the_cap_wait_until_one_closes() {
    let (app, _dir) = serve_with(2, 10, 30, |s| s.http.max_connections = Some(3)).await;
    let opened = Instant::now();
    let mut silent = Vec::new();
    for _ in 0..3 {
        silent.push(TcpStream::connect(app.addr()).await.unwrap());
    }
    // Let the server take the three before the fourth arrives.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut fourth = TcpStream::connect(app.addr()).await.unwrap();
    fourth.write_all(HEALTH).await.unwrap();
    let answer = read_health_answer(&mut fourth).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    // Not before the silent ones were closed, 2 s after they were accepted.
    assert!(
        opened.elapsed() >= Duration::from_millis(1_900),
        "answered after {:?}: the cap did not hold",
        opened.elapsed()
    );
}

#[tokio::test]
async fn idle_keep_alive_connections_make_room_when_the_cap_is_reached() {
    let (app, _dir) = serve_with(10, 10, 60, |s| s.http.max_connections = Some(3)).await;
    let mut idle = Vec::new();
    for _ in 0..3 {
        let mut conn = TcpStream::connect(app.addr()).await.unwrap();
        conn.write_all(HEALTH).await.unwrap();
        read_health_answer(&mut conn).await;
        idle.push(conn);
    }
    let started = Instant::now();
    let mut fourth = TcpStream::connect(app.addr()).await.unwrap();
    fourth.write_all(HEALTH).await.unwrap();
    let answer = read_health_answer(&mut fourth).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "waited {:?} for the idle timeout",
        started.elapsed()
    );
}

/// Sockets the process `pid` holds open.
fn sockets_of(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .filter(|target| target.to_string_lossy().starts_with("socket:"))
        .count()
}

fn addr_of(server: &support::Server) -> SocketAddr {
    format!("127.0.0.1:{}", server.port).parse().unwrap()
}

fn start_verification(server: &support::Server, key: &(String, String)) -> serde_json::Value {
    let client = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap();
    client
        .post(format!("{}/verify/json", server.base("http")))
        .form(&[
            ("api_key", key.0.as_str()),
            ("api_secret", &key.1),
            ("number", "447700100777"),
            ("brand", "AcmeInc"),
        ])
        .send()
        .unwrap()
        .json()
        .unwrap()
}

fn wait_for_log(server: &support::Server, text: &str, limit: Duration) -> String {
    let deadline = Instant::now() + limit;
    loop {
        let log = server.log();
        if log.contains(text) || Instant::now() > deadline {
            return log;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn silent_sockets_cannot_take_every_descriptor_of_a_server_limited_to_128() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("v.db");
    let server = support::start_after(dir.path(), &db, "ulimit -n 128", &["--header-timeout", "3"]);
    let key = server
        .first_key
        .clone()
        .expect("a new database prints its key");
    // The listener and the runtime's own (signal handling uses a socket pair).
    let at_rest = sockets_of(server.pid());
    let silent: Vec<std::net::TcpStream> = (0..150)
        .map(|_| std::net::TcpStream::connect(addr_of(&server)).unwrap())
        .collect();
    std::thread::sleep(Duration::from_millis(500));
    let held = sockets_of(server.pid()) - at_rest;
    // Three quarters of 128.
    assert!(held <= 96, "the server holds {held} connections");
    let started = Instant::now();
    let body = start_verification(&server, &key);
    assert_eq!(body["status"], "0", "{body}");
    assert!(started.elapsed() < Duration::from_secs(10));
    let log = wait_for_log(&server, "connection limit reached", Duration::from_secs(5));
    assert!(log.contains("connection limit reached"), "{log}");
    assert!(log.contains("max_connections=96"), "{log}");
    drop(silent);
}

/// The refusals a log accounts for: lines of their own, and the sums of the summary lines.
fn refusals_in(log: &str) -> (usize, Vec<&str>, u64) {
    let own = log
        .lines()
        .filter(|l| l.contains("v1 request refused"))
        .count();
    let summaries: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("refused requests, counted instead of logged one by one"))
        .collect();
    let summed = summaries
        .iter()
        .map(|l| {
            let after = l.split("refused=").nth(1).expect("a count");
            let digits: String = after.chars().take_while(char::is_ascii_digit).collect();
            digits.parse::<u64>().unwrap()
        })
        .sum();
    (own, summaries, summed)
}

#[test]
fn a_flood_of_refused_requests_is_logged_in_aggregate() {
    let dir = tempfile::tempdir().unwrap();
    let server = support::start(dir.path(), &dir.path().join("v.db"), &[]);
    let client = reqwest::blocking::Client::new();
    let url = format!("{}/verify/json", server.base("http"));
    const FLOOD: usize = 3_000;
    let started = Instant::now();
    for i in 0..FLOOD {
        let form: &[(&str, &str)] = if i % 2 == 0 {
            &[
                ("api_key", "nobody"),
                ("api_secret", "wrong"),
                ("number", "447700100778"),
            ]
        } else {
            &[("number", "447700100778")]
        };
        let answer: serde_json::Value =
            client.post(&url).form(form).send().unwrap().json().unwrap();
        assert_ne!(answer["status"], "0");
    }
    // Summaries come at the end of each 10 s window; the flood may span more than one.
    let windows = started.elapsed().as_secs() as usize / 10 + 2;
    let deadline = Instant::now() + Duration::from_secs(25);
    let log = loop {
        let log = server.log();
        let (own, _, summed) = refusals_in(&log);
        if own as u64 + summed >= FLOOD as u64 || Instant::now() > deadline {
            break log;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let (own, summaries, summed) = refusals_in(&log);
    assert_eq!(
        own as u64 + summed,
        FLOOD as u64,
        "every refusal counted:\n{log}"
    );
    assert!(
        own <= windows,
        "{own} lines of their own in {windows} windows:\n{log}"
    );
    assert!(summaries.len() <= windows, "{log}");
    assert!(
        summaries.iter().all(|l| l.contains("client=127.0.0.1")),
        "{log}"
    );
    assert!(
        summaries
            .iter()
            .any(|l| l.contains("missing credentials: ")),
        "{log}"
    );
    assert!(
        summaries.iter().any(|l| l.contains("bad credentials: ")),
        "{log}"
    );
}

#[test]
fn the_database_its_wal_and_shm_the_lock_and_the_key_file_are_private_to_their_owner() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("private.db");
    let server = support::start_after(dir.path(), &db, "umask 022", &[]);
    let key = server.first_key.clone().unwrap();
    assert_eq!(start_verification(&server, &key)["status"], "0");
    let with = |suffix: &str| {
        let mut name = db.clone().into_os_string();
        name.push(suffix);
        std::path::PathBuf::from(name)
    };
    for path in [
        db.clone(),
        with("-wal"),
        with("-shm"),
        with(".lock"),
        with(".key"),
    ] {
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{} is {mode:o}", path.display());
    }
    assert!(Path::new(&db).exists());
}

#[tokio::test]
async fn an_http2_connection_is_served_and_closed_once_idle_for_the_idle_timeout() {
    use http_body_util::Empty;
    use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
    let (app, _dir) = serve_with(1, 10, 3, |_| {}).await;
    let tcp = TcpStream::connect(app.addr()).await.unwrap();
    // Pings while idle neither count as a request begun nor keep the connection open.
    let (mut sender, conn) = hyper::client::conn::http2::Builder::new(TokioExecutor::new())
        .timer(TokioTimer::new())
        .keep_alive_interval(Duration::from_millis(300))
        .keep_alive_while_idle(true)
        .handshake(TokioIo::new(tcp))
        .await
        .unwrap();
    let driver = tokio::spawn(conn);
    for pause in [0, 1_800] {
        // The second request comes after more than the header timeout: only the idle timeout
        // applies between HTTP/2 requests.
        tokio::time::sleep(Duration::from_millis(pause)).await;
        let request = hyper::Request::get(format!("http://{}/healthz", app.addr()))
            .body(Empty::<axum::body::Bytes>::new())
            .unwrap();
        let answer = sender.send_request(request).await.unwrap();
        assert_eq!(answer.status(), 200);
        assert_eq!(answer.version(), hyper::Version::HTTP_2);
    }
    let answered = Instant::now();
    let ended = tokio::time::timeout(Duration::from_secs(10), driver).await;
    ended
        .expect("the server closed the connection")
        .unwrap()
        .ok();
    let after = answered.elapsed();
    assert!(after >= Duration::from_secs(2), "{after:?}");
    assert!(after < Duration::from_secs(6), "{after:?}");
}
