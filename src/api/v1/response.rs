//! One response model, written as JSON or as XML.

use axum::http::header::CONTENT_TYPE;
use axum::http::HeaderValue;
use axum::response::{IntoResponse, Response};

/// `json` or `xml`, the last path segment of every v1 endpoint.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Json,
    Xml,
}

impl Format {
    pub fn parse(segment: &str) -> Option<Self> {
        match segment {
            "json" => Some(Format::Json),
            "xml" => Some(Format::Xml),
            _ => None,
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    Text(String),
    /// A list of records; in XML wrapped in the field's element, each record named `item`.
    List {
        item: &'static str,
        records: Vec<Fields>,
    },
}

/// Fields in the order they are written.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Fields(pub Vec<(&'static str, Value)>);

impl Fields {
    pub fn new() -> Self {
        Self(Vec::new())
    }

    pub fn text(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.0.push((name, Value::Text(value.into())));
        self
    }

    pub fn list(mut self, name: &'static str, item: &'static str, records: Vec<Fields>) -> Self {
        self.0.push((name, Value::List { item, records }));
        self
    }
}

/// A whole response: the XML root element name and its fields. Without a root, the XML document
/// is the fields themselves, which then must be exactly one list (several search results).
#[derive(Clone, Debug, PartialEq)]
pub struct Reply {
    pub root: Option<&'static str>,
    pub fields: Fields,
}

impl Reply {
    pub fn render(&self, format: Format) -> Response {
        // Every business outcome is HTTP 200: SDKs throw on anything else.
        match format {
            Format::Json => {
                let body = serde_json::to_vec(&self.fields).expect("JSON of strings");
                with_type(body, "application/json")
            }
            Format::Xml => {
                let mut out = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
                match self.root {
                    Some(root) => write_xml(&mut out, root, &self.fields),
                    None => write_fields(&mut out, &self.fields),
                }
                with_type(out.into_bytes(), "text/xml")
            }
        }
    }
}

fn with_type(body: Vec<u8>, content_type: &'static str) -> Response {
    let mut response = body.into_response();
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

/// Written straight from the fields: building a `serde_json::Value` first (a map with owned keys)
/// cost as much again as the writing itself.
impl serde::Serialize for Fields {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = serializer.serialize_map(Some(self.0.len()))?;
        for (name, value) in &self.0 {
            match value {
                Value::Text(text) => map.serialize_entry(name, text)?,
                Value::List { records, .. } => map.serialize_entry(name, records)?,
            }
        }
        map.end()
    }
}

fn write_xml(out: &mut String, name: &str, fields: &Fields) {
    out.push('<');
    out.push_str(name);
    out.push('>');
    write_fields(out, fields);
    out.push_str("</");
    out.push_str(name);
    out.push('>');
}

fn write_fields(out: &mut String, fields: &Fields) {
    for (field, value) in &fields.0 {
        match value {
            Value::Text(t) => {
                out.push('<');
                out.push_str(field);
                out.push('>');
                escape_into(out, t);
                out.push_str("</");
                out.push_str(field);
                out.push('>');
            }
            Value::List { item, records } => {
                out.push('<');
                out.push_str(field);
                out.push('>');
                for r in records {
                    write_xml(out, item, r);
                }
                out.push_str("</");
                out.push_str(field);
                out.push('>');
            }
        }
    }
}

fn escape_into(out: &mut String, text: &str) {
    for c in text.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c => out.push(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xml_wraps_lists_and_escapes_text() {
        let f = Fields::new()
            .text("status", "0")
            .text("brand", "A&B <x>")
            .list("events", "event", vec![Fields::new().text("type", "sms")]);
        let mut out = String::new();
        write_xml(&mut out, "verify_request", &f);
        assert_eq!(
            out,
            "<verify_request><status>0</status><brand>A&amp;B &lt;x&gt;</brand>\
             <events><event><type>sms</type></event></events></verify_request>"
        );
    }

    #[test]
    fn json_keeps_field_order() {
        let f = Fields::new().text("request_id", "a").text("status", "0");
        assert_eq!(
            serde_json::to_string(&f).unwrap(),
            r#"{"request_id":"a","status":"0"}"#
        );
    }

    #[test]
    fn json_writes_lists_as_arrays_of_objects_and_escapes_text() {
        let f = Fields::new().text("brand", "A\"B").list(
            "checks",
            "check",
            vec![Fields::new().text("status", "VALID"), Fields::new()],
        );
        assert_eq!(
            serde_json::to_string(&f).unwrap(),
            r#"{"brand":"A\"B","checks":[{"status":"VALID"},{}]}"#
        );
    }
}
