//! verifyd's OpenAPI documents (`openapi/*.yaml`, served at `/openapi/…`): each is served from
//! the binary, without credentials, as the file it was built from, and is a well-formed OpenAPI
//! 3.0 document; and every route the router serves is in them, and nothing else.
//!
//! The routes are kept in one list, [`ROUTES`], held against three things: the `.route(` calls in
//! `src/api/` and `src/startup.rs` (read when the test runs, so that a route added there without a
//! line here fails), the documents' operations, and a running server (every documented operation
//! answers something other than 404 and 405 without credentials, and every other method of a
//! documented path is refused with 405). `tests/schemathesis.rs` checks the answers themselves
//! against the Verify documents.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde_json::Value;
use support::app::serve;

/// Every route of verifyd's router, as `(method, path)` with the path as the source writes it.
/// Adding a route means adding it here and to one of the documents in `openapi/`.
const ROUTES: &[(&str, &str)] = &[
    // Verify v1 (src/api/v1/mod.rs): openapi/verify-v1.yaml.
    ("GET", "/verify/{format}"),
    ("POST", "/verify/{format}"),
    ("GET", "/verify/psd2/{format}"),
    ("POST", "/verify/psd2/{format}"),
    ("GET", "/verify/check/{format}"),
    ("POST", "/verify/check/{format}"),
    ("GET", "/verify/search/{format}"),
    ("POST", "/verify/search/{format}"),
    ("GET", "/verify/control/{format}"),
    ("POST", "/verify/control/{format}"),
    ("POST", "/verify/network-unblock"),
    // Verify v2 (src/api/v2/mod.rs): openapi/verify-v2.yaml.
    ("POST", "/v2/verify"),
    ("POST", "/v2/verify/"),
    ("GET", "/v2/verify/{id}"),
    ("POST", "/v2/verify/{id}"),
    ("DELETE", "/v2/verify/{id}"),
    ("POST", "/v2/verify/{id}/next_workflow"),
    ("GET", "/v2/verify/attempts/summary"),
    ("GET", "/v2/verify/templates"),
    ("POST", "/v2/verify/templates"),
    ("GET", "/v2/verify/templates/{template_id}"),
    ("PATCH", "/v2/verify/templates/{template_id}"),
    ("DELETE", "/v2/verify/templates/{template_id}"),
    (
        "GET",
        "/v2/verify/templates/{template_id}/template_fragments",
    ),
    (
        "POST",
        "/v2/verify/templates/{template_id}/template_fragments",
    ),
    (
        "GET",
        "/v2/verify/templates/{template_id}/template_fragments/{fragment_id}",
    ),
    (
        "PATCH",
        "/v2/verify/templates/{template_id}/template_fragments/{fragment_id}",
    ),
    (
        "DELETE",
        "/v2/verify/templates/{template_id}/template_fragments/{fragment_id}",
    ),
    // Operations (src/api/{receipts,health,inbox,openapi}.rs): openapi/operations.yaml.
    ("GET", "/receipts/{channel}/{token}"),
    ("POST", "/receipts/{channel}/{token}"),
    ("GET", "/healthz"),
    ("GET", "/readyz"),
    ("GET", "/metrics"),
    ("GET", "/inbox"),
    ("GET", "/inbox/messages"),
    // The dashboard (src/api/dashboard/mod.rs): openapi/operations.yaml.
    ("GET", "/dashboard"),
    ("GET", "/dashboard/login"),
    ("POST", "/dashboard/login"),
    ("POST", "/dashboard/logout"),
    ("GET", "/dashboard/verifications"),
    ("GET", "/dashboard/verifications/{id}"),
    ("GET", "/dashboard/keys"),
    ("POST", "/dashboard/keys"),
    ("GET", "/dashboard/keys/{key}"),
    ("POST", "/dashboard/keys/{key}/state"),
    ("POST", "/dashboard/keys/{key}/rotate"),
    ("POST", "/dashboard/keys/{key}/limits"),
    ("GET", "/dashboard/channels"),
    ("POST", "/dashboard/channels/{name}/test"),
    ("GET", "/dashboard/audit"),
    ("GET", "/dashboard/assets/{file}"),
    ("GET", "/openapi/"),
    ("GET", "/openapi/verify-v1.yaml"),
    ("GET", "/openapi/verify-v2.yaml"),
    ("GET", "/openapi/operations.yaml"),
];

/// The documents as built into the binary, by the URL they are served at.
const DOCUMENTS: [(&str, &str); 3] = [
    (
        "/openapi/verify-v1.yaml",
        include_str!("../openapi/verify-v1.yaml"),
    ),
    (
        "/openapi/verify-v2.yaml",
        include_str!("../openapi/verify-v2.yaml"),
    ),
    (
        "/openapi/operations.yaml",
        include_str!("../openapi/operations.yaml"),
    ),
];

/// The methods an OpenAPI path item may name, as its keys spell them.
const OPERATION_KEYS: [&str; 8] = [
    "get", "put", "post", "delete", "options", "head", "patch", "trace",
];

/// A server with the inbox (whose pages exist only while a route names it) and a channel that
/// takes receipts (whose URL exists only for a configured channel with a `public_url`).
const CONFIG: &str = r#"
public_url = "{public_url}"
[channels.vonage]
type = "vonage-sms"
api_key = "key1"
api_secret = "${TOKEN}"
base_url = "http://127.0.0.1:9"
[[routes]]
kind = "sms"
to = ["999"]
channels = ["vonage"]
[[routes]]
kind = "sms"
channels = ["inbox"]
"#;

fn parse(text: &str) -> Value {
    serde_norway::from_str(text).expect("the document is YAML")
}

/// `/v2/verify/{id}` and `/v2/verify/{request_id}` are the same route: parameters named alike.
fn normalized(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    let mut in_parameter = false;
    for c in path.chars() {
        match c {
            '{' => {
                in_parameter = true;
                out.push_str("{}");
            }
            '}' => in_parameter = false,
            _ if in_parameter => {}
            c => out.push(c),
        }
    }
    out
}

/// Every operation of a document, as `(METHOD, path)`.
fn operations(document: &Value) -> BTreeSet<(String, String)> {
    let paths = document["paths"].as_object().expect("paths");
    let mut found = BTreeSet::new();
    for (path, item) in paths {
        for key in OPERATION_KEYS {
            if item.get(key).is_some() {
                found.insert((key.to_ascii_uppercase(), path.clone()));
            }
        }
    }
    found
}

/// The value a JSON pointer (`#/components/schemas/X`) names in `document`.
fn resolve<'a>(document: &'a Value, reference: &str) -> Option<&'a Value> {
    let pointer = reference.strip_prefix('#')?;
    let unescaped: Vec<String> = pointer
        .split('/')
        .skip(1)
        .map(|p| p.replace("~1", "/").replace("~0", "~"))
        .collect();
    unescaped
        .iter()
        .try_fold(document, |value, key| value.get(key.as_str()))
}

/// Every `$ref` in `value`, with where it is.
fn references(value: &Value, at: &str, out: &mut Vec<(String, String)>) {
    match value {
        Value::Object(map) => {
            for (key, inner) in map {
                if key == "$ref" {
                    out.push((at.to_owned(), inner.as_str().unwrap_or("").to_owned()));
                } else {
                    references(inner, &format!("{at}/{key}"), out);
                }
            }
        }
        Value::Array(items) => {
            for (i, inner) in items.iter().enumerate() {
                references(inner, &format!("{at}/{i}"), out);
            }
        }
        _ => {}
    }
}

/// A parameter object, its `$ref` followed.
fn parameter<'a>(document: &'a Value, p: &'a Value) -> &'a Value {
    match p.get("$ref").and_then(Value::as_str) {
        Some(reference) => resolve(document, reference).expect("a parameter's $ref resolves"),
        None => p,
    }
}

/// What makes a document well formed beyond YAML: OpenAPI 3.0, absolute paths from the server's
/// root, references that resolve, unique operation ids, and a declared parameter for every
/// `{name}` of every path.
fn check_document(url: &str, document: &Value) {
    assert_eq!(document["openapi"], "3.0.3", "{url}");
    assert_eq!(
        document["servers"][0]["url"], "/",
        "{url}: its paths are absolute, so its first server is the root"
    );
    for key in ["title", "version", "description"] {
        assert!(document["info"][key].is_string(), "{url}: info.{key}");
    }
    let mut refs = Vec::new();
    references(document, "#", &mut refs);
    assert!(!refs.is_empty(), "{url}");
    for (at, reference) in &refs {
        assert!(
            resolve(document, reference).is_some(),
            "{url}: {at} refers to {reference}, which is not in the document"
        );
    }
    let mut ids = BTreeSet::new();
    for (path, item) in document["paths"].as_object().unwrap() {
        assert!(path.starts_with('/'), "{url}: {path}");
        let shared = item["parameters"].as_array().cloned().unwrap_or_default();
        for key in OPERATION_KEYS {
            let Some(operation) = item.get(key) else {
                continue;
            };
            let id = operation["operationId"].as_str().unwrap_or_else(|| {
                panic!("{url}: {key} {path} has no operationId");
            });
            assert!(ids.insert(id.to_owned()), "{url}: operationId {id} twice");
            assert!(
                operation["responses"]
                    .as_object()
                    .is_some_and(|r| !r.is_empty()),
                "{url}: {id} has no responses"
            );
            let own = operation["parameters"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            let declared: BTreeSet<String> = shared
                .iter()
                .chain(own.iter())
                .map(|p| parameter(document, p))
                .filter(|p| p["in"] == "path")
                .map(|p| p["name"].as_str().unwrap().to_owned())
                .collect();
            let templated: BTreeSet<String> = path
                .split('{')
                .skip(1)
                .map(|rest| rest.split('}').next().unwrap().to_owned())
                .collect();
            assert_eq!(
                templated, declared,
                "{url}: {id}: the path's parameters and the declared ones differ"
            );
        }
    }
}

#[tokio::test]
async fn each_document_is_served_without_credentials_as_the_file_it_was_built_from() {
    let server = serve("").await;
    for (url, file) in DOCUMENTS {
        let response = server
            .http
            .get(format!("{}{url}", server.base))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "{url}");
        assert_eq!(
            response.headers()["content-type"],
            verifyd::api::openapi::MEDIA_TYPE,
            "{url}"
        );
        assert_eq!(verifyd::api::openapi::MEDIA_TYPE, "application/yaml");
        assert!(response.headers().contains_key("x-request-id"), "{url}");
        let text = response.text().await.unwrap();
        assert!(text == file, "{url} is not the file openapi/ holds");
        check_document(url, &parse(&text));
    }
}

#[tokio::test]
async fn the_documents_derived_from_vonages_keep_its_license_notice() {
    for (url, file) in &DOCUMENTS[..2] {
        assert!(file.contains("Copyright (c) 2020 Vonage"), "{url}");
        assert!(
            file.contains(
                "The above copyright notice and this permission notice shall be included"
            ),
            "{url}"
        );
        let document = parse(file);
        assert_eq!(document["info"]["license"]["name"], "MIT", "{url}");
        assert_eq!(document["info"]["x-derived-from"]["publisher"], "Vonage");
    }
}

#[tokio::test]
async fn the_list_names_the_three_documents_each_at_a_url_that_serves_it() {
    let server = serve("").await;
    let response = server
        .http
        .get(format!("{}/openapi/", server.base))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "application/json");
    let list: Value = response.json().await.unwrap();
    let documents = list["documents"].as_array().expect("documents");
    let names: Vec<&str> = documents
        .iter()
        .map(|d| d["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["verify-v1", "verify-v2", "operations"]);
    for (listed, (url, file)) in documents.iter().zip(DOCUMENTS) {
        assert_eq!(listed["url"], url);
        assert_eq!(listed["media_type"], "application/yaml");
        assert!(listed["describes"].as_str().is_some_and(|d| !d.is_empty()));
        let served = server
            .http
            .get(format!("{}{url}", server.base))
            .send()
            .await
            .unwrap();
        assert_eq!(served.text().await.unwrap(), file, "{url}");
    }
}

// --- The routes in the source -------------------------------------------------------------------

/// Path expressions of `.route(` calls that are not string literals, and the paths they make.
fn path_expressions() -> BTreeMap<&'static str, String> {
    use verifyd::delivery::router::RECEIPTS_PATH;
    BTreeMap::from([(
        r#"&format!("{RECEIPTS_PATH}/{{channel}}/{{token}}")"#,
        format!("{RECEIPTS_PATH}/{{channel}}/{{token}}"),
    )])
}

/// The `.rs` files under `dir`.
fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(rust_files(&path));
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
    out.sort();
    out
}

/// The end of a string literal that starts at `at` (a `"`): the index after its closing quote.
fn after_string(bytes: &[u8], at: usize) -> usize {
    let mut i = at + 1;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' => i += 2,
            b'"' => return i + 1,
            _ => i += 1,
        }
    }
    panic!("a string literal that does not end");
}

/// The text between the `(` at `open` and the `)` that closes it.
fn call_arguments(text: &str, open: usize) -> &str {
    let bytes = text.as_bytes();
    assert_eq!(bytes[open], b'(');
    let (mut depth, mut i) = (0usize, open);
    while i < bytes.len() {
        match bytes[i] {
            b'"' => {
                i = after_string(bytes, i);
                continue;
            }
            b'(' | b'[' | b'{' => depth += 1,
            b')' | b']' | b'}' => {
                depth -= 1;
                if depth == 0 {
                    return &text[open + 1..i];
                }
            }
            _ => {}
        }
        i += 1;
    }
    panic!("a call that does not close");
}

/// `arguments` split at its top-level commas, each part trimmed, empty ones left out.
fn split_arguments(arguments: &str) -> Vec<&str> {
    let bytes = arguments.as_bytes();
    let (mut parts, mut depth, mut start, mut i) = (Vec::new(), 0usize, 0, 0);
    while i < bytes.len() {
        match bytes[i] {
            b'"' => {
                i = after_string(bytes, i);
                continue;
            }
            b'(' | b'[' | b'{' => depth += 1,
            b')' | b']' | b'}' => depth -= 1,
            b',' if depth == 0 => {
                parts.push(arguments[start..i].trim());
                start = i + 1;
            }
            _ => {}
        }
        i += 1;
    }
    parts.push(arguments[start..].trim());
    parts.into_iter().filter(|p| !p.is_empty()).collect()
}

/// The functions a method router expression calls at its top level, in order: `post`, `delete`
/// and `fallback` in `post(check).delete(cancel).fallback(method_not_allowed)`.
fn chained_calls(expression: &str) -> Vec<&str> {
    let bytes = expression.as_bytes();
    let (mut calls, mut depth, mut i) = (Vec::new(), 0usize, 0);
    let mut previous = b'.';
    while i < bytes.len() {
        let b = bytes[i];
        match b {
            b'"' => {
                i = after_string(bytes, i);
                previous = b'"';
                continue;
            }
            b'(' | b'[' | b'{' => depth += 1,
            b')' | b']' | b'}' => depth -= 1,
            _ if depth == 0 && (b.is_ascii_alphabetic() || b == b'_') && previous == b'.' => {
                let start = i;
                while i < bytes.len() && (bytes[i].is_ascii_alphanumeric() || bytes[i] == b'_') {
                    i += 1;
                }
                calls.push(&expression[start..i]);
                previous = bytes[i - 1];
                continue;
            }
            _ => {}
        }
        if !b.is_ascii_whitespace() {
            previous = b;
        }
        i += 1;
    }
    calls
}

/// The methods a method router expression routes; panics on a call it does not know.
fn methods_of(expression: &str, at: &str) -> Vec<&'static str> {
    let mut methods = Vec::new();
    for call in chained_calls(expression) {
        match call {
            "get" => methods.push("GET"),
            "post" => methods.push("POST"),
            "put" => methods.push("PUT"),
            "patch" => methods.push("PATCH"),
            "delete" => methods.push("DELETE"),
            "options" => methods.push("OPTIONS"),
            "trace" => methods.push("TRACE"),
            // v1's GET and POST on one handler (src/api/v1/mod.rs); HEAD is refused with 405.
            "get_or_post" => methods.extend(["GET", "POST"]),
            // What the other methods of the path are answered (405).
            "fallback" => {}
            other => panic!(
                "{at}: the route's `{other}(…)` is not known to tests/openapi.rs; say in \
                 methods_of which methods it routes: `{expression}`"
            ),
        }
    }
    assert!(!methods.is_empty(), "{at}: no method in `{expression}`");
    methods
}

/// Every `(method, path)` that the `.route(` calls of the router's source route. Test modules
/// (`#[cfg(test)] mod …`, last in their file) are left out.
fn routes_in_source() -> BTreeSet<(String, String)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = rust_files(&root.join("src/api"));
    files.push(root.join("src/startup.rs"));
    let expressions = path_expressions();
    let mut found = BTreeSet::new();
    for file in files {
        let whole = std::fs::read_to_string(&file).unwrap();
        let shown = file.strip_prefix(root).unwrap().display().to_string();
        let code = whole
            .split_once("#[cfg(test)]\nmod ")
            .map_or(whole.as_str(), |(code, _)| code);
        for other in [
            ".nest(",
            ".nest_service(",
            ".route_service(",
            ".fallback_service(",
        ] {
            assert!(
                !code.contains(other),
                "{shown} calls `{other}…)`, which tests/openapi.rs cannot read routes from"
            );
        }
        for (at, _) in code.match_indices(".route(") {
            let arguments = call_arguments(code, at + ".route".len());
            let line = code[..at].lines().count();
            let place = format!("{shown}:{line}");
            let parts = split_arguments(arguments);
            assert_eq!(parts.len(), 2, "{place}: `.route({arguments})`");
            let path = match parts[0].strip_prefix('"').and_then(|p| p.strip_suffix('"')) {
                Some(literal) => literal.to_owned(),
                None => expressions.get(parts[0]).cloned().unwrap_or_else(|| {
                    panic!(
                        "{place}: the path `{}` is not a literal; add it to path_expressions \
                         in tests/openapi.rs",
                        parts[0]
                    )
                }),
            };
            for method in methods_of(parts[1], &place) {
                assert!(
                    found.insert((method.to_owned(), path.clone())),
                    "{place}: {method} {path} is routed twice"
                );
            }
        }
    }
    found
}

fn listed_routes() -> BTreeSet<(String, String)> {
    ROUTES
        .iter()
        .map(|(m, p)| ((*m).to_owned(), (*p).to_owned()))
        .collect()
}

#[test]
fn the_list_of_routes_is_every_route_the_source_routes() {
    let source = routes_in_source();
    let listed = listed_routes();
    assert_eq!(listed.len(), ROUTES.len(), "ROUTES names a route twice");
    let unlisted: Vec<_> = source.difference(&listed).collect();
    assert!(
        unlisted.is_empty(),
        "routed in src/ but not in ROUTES (add each to ROUTES and to a document in openapi/): \
         {unlisted:?}"
    );
    let gone: Vec<_> = listed.difference(&source).collect();
    assert!(
        gone.is_empty(),
        "in ROUTES but routed nowhere in src/ (take each out of ROUTES and its document): \
         {gone:?}"
    );
}

#[test]
fn every_route_is_in_exactly_one_document_and_every_documented_operation_is_a_route() {
    let routes: BTreeSet<(String, String)> = ROUTES
        .iter()
        .map(|(m, p)| ((*m).to_owned(), normalized(p)))
        .collect();
    let mut documented: BTreeMap<(String, String), &str> = BTreeMap::new();
    for (url, file) in DOCUMENTS {
        for (method, path) in operations(&parse(file)) {
            let key = (method, normalized(&path));
            if let Some(other) = documented.insert(key.clone(), url) {
                panic!("{} {} is in both {other} and {url}", key.0, key.1);
            }
        }
    }
    let undocumented: Vec<_> = routes
        .iter()
        .filter(|r| !documented.contains_key(*r))
        .collect();
    assert!(
        undocumented.is_empty(),
        "routes no document in openapi/ describes: {undocumented:?}"
    );
    let not_routed: Vec<_> = documented
        .iter()
        .filter(|(r, _)| !routes.contains(*r))
        .collect();
    assert!(
        not_routed.is_empty(),
        "documented operations that are not routes: {not_routed:?}"
    );
}

/// A value for each path parameter the documents name, that reaches the route's handler.
fn path_values(receipt_url: &str) -> BTreeMap<&'static str, String> {
    let mut receipt = receipt_url.rsplit('/');
    let token = receipt.next().unwrap().to_owned();
    let channel = receipt.next().unwrap().to_owned();
    let uuid = "0194f4a2-c1d3-7e3a-9b1c-2d3e4f506172".to_owned();
    BTreeMap::from([
        ("format", "json".to_owned()),
        ("request_id", uuid.clone()),
        ("template_id", uuid.clone()),
        ("template_fragment_id", uuid),
        ("channel", channel),
        ("token", token),
        ("id", "0123456789abcdef0123456789abcdef".to_owned()),
        ("key", "k".to_owned()),
        ("name", "inbox".to_owned()),
        ("file", "dashboard.css".to_owned()),
    ])
}

fn filled(path: &str, values: &BTreeMap<&'static str, String>) -> String {
    let mut out = path.to_owned();
    while let Some(open) = out.find('{') {
        let close = open + out[open..].find('}').unwrap();
        let name = &out[open + 1..close];
        let value = values
            .get(name)
            .unwrap_or_else(|| panic!("no value for the path parameter {{{name}}} of {path}"));
        out.replace_range(open..=close, value);
    }
    out
}

#[tokio::test]
async fn every_documented_operation_is_served_and_every_other_method_of_its_path_is_refused() {
    let server = serve(CONFIG).await;
    let values = path_values(&server.receipt_url("vonage"));
    let probes = ["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"];
    let mut failures = Vec::new();
    for (url, file) in DOCUMENTS {
        let document = parse(file);
        let documented = operations(&document);
        let paths: BTreeSet<&String> = documented.iter().map(|(_, p)| p).collect();
        for path in paths {
            let target = format!("{}{}", server.base, filled(path, &values));
            for method in probes {
                let is_documented = documented.contains(&(method.to_owned(), path.clone()));
                let answer = server
                    .http
                    .request(
                        reqwest::Method::from_bytes(method.as_bytes()).unwrap(),
                        &target,
                    )
                    .send()
                    .await
                    .unwrap();
                let status = answer.status().as_u16();
                if status == 405 {
                    // `Allow` names the path's documented methods (HEAD comes with GET).
                    let allow: BTreeSet<String> = answer
                        .headers()
                        .get("allow")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or_default()
                        .split(',')
                        .map(|m| m.trim().to_owned())
                        .filter(|m| !m.is_empty() && m != "HEAD")
                        .collect();
                    let expected: BTreeSet<String> = documented
                        .iter()
                        .filter(|(_, p)| p == path)
                        .map(|(m, _)| m.clone())
                        .collect();
                    if allow != expected {
                        failures.push(format!(
                            "{method} {path}: 405 with Allow {allow:?}, documented {expected:?}"
                        ));
                    }
                }
                let served = status != 404 && status != 405;
                if is_documented && !served {
                    failures.push(format!(
                        "{method} {path} ({url}) answered {status}: not served"
                    ));
                }
                if !is_documented && status != 405 {
                    failures.push(format!(
                        "{method} {path} answered {status}, not 405: a method {url} leaves out"
                    ));
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn the_route_reader_understands_the_shapes_the_source_uses() {
    assert_eq!(
        chained_calls("post(check)\n.delete(cancel)\n.get(show)\n.fallback(method_not_allowed)"),
        ["post", "delete", "get", "fallback"]
    );
    assert_eq!(chained_calls("get(|| serve(&VERIFY_V1))"), ["get"]);
    assert_eq!(
        chained_calls("get(templates::list).post(templates::create)"),
        ["get", "post"]
    );
    assert_eq!(
        split_arguments(r#""/a/{b}", get(x).post(y),"#),
        [r#""/a/{b}""#, "get(x).post(y)"]
    );
    assert_eq!(
        split_arguments(r#"&format!("{P}/{{c}}"), get(f)"#),
        [r#"&format!("{P}/{{c}}")"#, "get(f)"]
    );
    assert_eq!(normalized("/v2/verify/{id}/next"), "/v2/verify/{}/next");
    let expressions = path_expressions();
    assert_eq!(
        expressions.values().next().unwrap(),
        "/receipts/{channel}/{token}"
    );
}
