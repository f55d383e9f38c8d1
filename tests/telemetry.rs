//! Trace export: a server started with `--otlp-endpoint` sends its spans to an OTLP/HTTP
//! collector (here one on loopback that decodes what it gets with OpenTelemetry's own protobuf
//! definitions): each request's span with its request id and path, each delivery's with the
//! verification's request id, under the service name `verifyd`, and never a number or a code.

mod support;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValue;
use opentelemetry_proto::tonic::common::v1::KeyValue;
use prost::Message;

/// What the collector received: each POST's path and body.
type Received = Arc<Mutex<Vec<(String, Vec<u8>)>>>;

/// An OTLP/HTTP collector on loopback that answers every POST 200; stops with the test process.
fn collector() -> (u16, Received) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let received: Received = Arc::default();
    let seen = received.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { continue };
            let seen = seen.clone();
            std::thread::spawn(move || {
                stream.set_read_timeout(Some(Duration::from_secs(30))).ok();
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut writer = stream;
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 {
                        return;
                    }
                    let path = line.split_whitespace().nth(1).unwrap_or("").to_owned();
                    let mut length = 0;
                    loop {
                        let mut header = String::new();
                        if reader.read_line(&mut header).unwrap_or(0) == 0 {
                            return;
                        }
                        let header = header.trim_end();
                        if header.is_empty() {
                            break;
                        }
                        if let Some((name, value)) = header.split_once(':') {
                            if name.eq_ignore_ascii_case("content-length") {
                                length = value.trim().parse().unwrap_or(0);
                            }
                        }
                    }
                    let mut body = vec![0; length];
                    if reader.read_exact(&mut body).is_err() {
                        return;
                    }
                    seen.lock().unwrap().push((path, body));
                    let answer = "HTTP/1.1 200 OK\r\ncontent-type: application/x-protobuf\r\n\
                                  content-length: 0\r\n\r\n";
                    if writer.write_all(answer.as_bytes()).is_err() {
                        return;
                    }
                }
            });
        }
    });
    (port, received)
}

fn text(attributes: &[KeyValue], key: &str) -> Option<String> {
    attributes.iter().find(|a| a.key == key).and_then(|a| {
        match a.value.as_ref()?.value.as_ref()? {
            AnyValue::StringValue(s) => Some(s.clone()),
            _ => None,
        }
    })
}

#[test]
fn spans_of_requests_and_deliveries_reach_the_collector_without_numbers_or_codes() {
    let (port, received) = collector();
    let dir = tempfile::tempdir().unwrap();
    let endpoint = format!("http://127.0.0.1:{port}");
    let mut server = support::start(
        dir.path(),
        &dir.path().join("v.db"),
        &["--otlp-endpoint", &endpoint],
    );
    let (key, secret) = server.first_key.clone().unwrap();
    let base = server.base("http");
    let number = "447700123456";
    let started: serde_json::Value = support::client()
        .post(format!("{base}/verify/json"))
        .form(&[
            ("api_key", key.as_str()),
            ("api_secret", secret.as_str()),
            ("number", number),
            ("brand", "Acme"),
        ])
        .send()
        .unwrap()
        .json()
        .unwrap();
    let request_id = started["request_id"].as_str().expect("started").to_owned();
    let inbox: serde_json::Value = support::client()
        .get(format!("{base}/inbox/messages?to={number}"))
        .send()
        .unwrap()
        .json()
        .unwrap();
    let pin = support::pin_in(inbox[0]["text"].as_str().expect("a message"));

    // SIGTERM: the server stops, and the spans still buffered are sent before it exits.
    let status = std::process::Command::new("kill")
        .args(["-TERM", &server.pid().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let exit = server
        .wait(Duration::from_secs(30))
        .expect("the server stops");
    assert!(exit.success(), "{}", server.log());

    let deadline = Instant::now() + Duration::from_secs(10);
    let bodies = loop {
        let bodies = received.lock().unwrap().clone();
        if !bodies.is_empty() || Instant::now() > deadline {
            break bodies;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(!bodies.is_empty(), "nothing was exported: {}", server.log());
    let mut spans = Vec::new();
    for (path, body) in &bodies {
        assert_eq!(path, "/v1/traces");
        let raw = String::from_utf8_lossy(body);
        assert!(!raw.contains(number), "a number was exported");
        assert!(!raw.contains(&pin), "a code was exported");
        let export = ExportTraceServiceRequest::decode(body.as_slice()).unwrap();
        for resource in export.resource_spans {
            let attributes = resource.resource.map(|r| r.attributes).unwrap_or_default();
            assert_eq!(
                text(&attributes, "service.name").as_deref(),
                Some("verifyd")
            );
            for scope in resource.scope_spans {
                spans.extend(scope.spans);
            }
        }
    }
    let start = spans
        .iter()
        .find(|s| {
            s.name == "http" && text(&s.attributes, "path").as_deref() == Some("/verify/json")
        })
        .unwrap_or_else(|| panic!("no span of the start: {spans:?}"));
    assert!(text(&start.attributes, "request_id").is_some_and(|id| !id.is_empty()));
    assert!(start.end_time_unix_nano >= start.start_time_unix_nano);
    let delivery = spans
        .iter()
        .find(|s| s.name == "deliver")
        .unwrap_or_else(|| panic!("no span of the delivery: {spans:?}"));
    assert_eq!(
        text(&delivery.attributes, "request_id").as_deref(),
        Some(request_id.as_str())
    );
    assert_ne!(text(&delivery.attributes, "to").as_deref(), Some(number));
}

#[test]
fn an_otlp_endpoint_that_is_not_an_http_url_stops_the_start_with_a_message() {
    let (ok, out) = support::run_bounded(
        std::process::Command::new(support::BIN).args([
            "config",
            "check",
            "--otlp-endpoint",
            "https://collector.example:4318",
        ]),
        Duration::from_secs(20),
    );
    assert!(!ok);
    assert!(out.contains("must be an http:// URL"), "{out}");
}
