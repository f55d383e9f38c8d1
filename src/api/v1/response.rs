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
                let mut xml = XmlWriter::new();
                match self.root {
                    Some(root) => xml.element(root, &self.fields),
                    None => xml.fields(&self.fields),
                }
                with_type(xml.finish().into_bytes(), "text/xml")
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

/// Writes an XML 1.0 document that is well-formed whatever the text in it. Element names are
/// the code's own constants; text is escaped, and a character XML 1.0 does not allow (C0 controls
/// other than tab and line feed, U+FFFE, U+FFFF) is written as U+FFFD: neither a value stored
/// before verifyd refused such characters nor an echoed parameter can break an answer. A carriage
/// return is written as a reference so that parsers do not turn it into a line feed.
struct XmlWriter {
    out: String,
}

impl XmlWriter {
    fn new() -> Self {
        Self {
            out: String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"),
        }
    }

    fn element(&mut self, name: &'static str, fields: &Fields) {
        self.open(name);
        self.fields(fields);
        self.close(name);
    }

    fn fields(&mut self, fields: &Fields) {
        for (name, value) in &fields.0 {
            match value {
                Value::Text(text) => {
                    self.open(name);
                    self.text(text);
                    self.close(name);
                }
                Value::List { item, records } => {
                    self.open(name);
                    for record in records {
                        self.element(item, record);
                    }
                    self.close(name);
                }
            }
        }
    }

    fn open(&mut self, name: &'static str) {
        debug_assert!(is_xml_name(name), "{name}");
        self.out.push('<');
        self.out.push_str(name);
        self.out.push('>');
    }

    fn close(&mut self, name: &'static str) {
        self.out.push_str("</");
        self.out.push_str(name);
        self.out.push('>');
    }

    fn text(&mut self, text: &str) {
        crate::xml::push_text(&mut self.out, text);
    }

    fn finish(self) -> String {
        self.out
    }
}

/// Element names here are lowercase ASCII words with underscores.
fn is_xml_name(name: &str) -> bool {
    name.bytes().next().is_some_and(|b| b.is_ascii_lowercase())
        && name.bytes().all(|b| b.is_ascii_lowercase() || b == b'_')
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
        let mut xml = XmlWriter::new();
        xml.element("verify_request", &f);
        assert_eq!(
            xml.finish(),
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<verify_request><status>0</status><brand>A&amp;B &lt;x&gt;</brand>\
             <events><event><type>sms</type></event></events></verify_request>"
        );
    }

    fn xml_with_text(text: &str) -> String {
        let mut xml = XmlWriter::new();
        xml.element("r", &Fields::new().text("t", text));
        xml.finish()
    }

    #[test]
    fn xml_stays_well_formed_whatever_character_the_text_holds() {
        let every: Vec<char> = (0..=0x10ffff).filter_map(char::from_u32).collect();
        for chunk in every.chunks(4096) {
            let text: String = chunk.iter().collect();
            let xml = xml_with_text(&text);
            let doc = roxmltree::Document::parse(&xml)
                .unwrap_or_else(|e| panic!("ill-formed for U+{:04X}..: {e}", u32::from(chunk[0])));
            let read = doc
                .root_element()
                .first_child()
                .unwrap()
                .text()
                .unwrap_or("");
            let expected: String = chunk
                .iter()
                .map(|&c| match c {
                    '\t' | '\n' | '\r' => c,
                    '\u{0}'..='\u{1f}' | '\u{fffe}' | '\u{ffff}' => '\u{fffd}',
                    c => c,
                })
                .collect();
            assert!(
                read == expected,
                "U+{:04X}.. read back differently",
                u32::from(chunk[0])
            );
        }
    }

    #[test]
    fn xml_replaces_what_xml_forbids_and_keeps_what_it_allows() {
        assert!(xml_with_text("a\u{1}b\u{ffff}").contains("<t>a\u{fffd}b\u{fffd}</t>"));
        assert!(xml_with_text("a\r\nb\tc").contains("<t>a&#13;\nb\tc</t>"));
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
