//! XML text that is well-formed whatever it holds: for the v1 API's XML answers and the TwiML
//! of calls.

/// Appends `text` escaped. A character XML 1.0 does not allow (C0 controls other than tab and
/// line feed, U+FFFE, U+FFFF) is written as U+FFFD; a carriage return as a reference, so that
/// parsers do not turn it into a line feed.
pub fn push_text(out: &mut String, text: &str) {
    for c in text.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\r' => out.push_str("&#13;"),
            '\t' | '\n' => out.push(c),
            '\u{0}'..='\u{1f}' | '\u{fffe}' | '\u{ffff}' => out.push('\u{fffd}'),
            c => out.push(c),
        }
    }
}
