//! Which caller-given texts may go into a message or an answer (a brand, a sender id, a payee, an
//! echoed request id): one line of visible text. A control character could forge a line of an
//! SMS (`Bank\nCode: 0000`) or make an XML answer ill-formed for good once stored, and a bidi
//! override could show a brand backwards on the phone.

/// The first character of `text` that may not be in a message or an answer, if any.
pub fn forbidden_char(text: &str) -> Option<char> {
    // Printable ASCII, nearly every text, is decided a byte at a time.
    if text.bytes().all(|b| (b' '..=b'~').contains(&b)) {
        return None;
    }
    text.chars().find(|&c| is_forbidden(c))
}

/// True when `text` holds only characters a message or an answer may carry.
pub fn is_plain(text: &str) -> bool {
    forbidden_char(text).is_none()
}

fn is_forbidden(c: char) -> bool {
    matches!(c,
        // C0 (NUL, tab, line feed, carriage return …), DEL and C1 (NEL …).
        '\u{0}'..='\u{1f}' | '\u{7f}'..='\u{9f}'
        // Line and paragraph separators.
        | '\u{2028}' | '\u{2029}'
        // Bidi marks, embeddings, overrides and isolates.
        | '\u{61c}' | '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}'
        // Byte order mark; interlinear annotation; object replacement.
        | '\u{feff}' | '\u{fff9}'..='\u{fffc}'
    ) || is_noncharacter(c)
}

/// Unicode noncharacters: U+FDD0–U+FDEF and the last two code points of every plane (XML 1.0
/// forbids U+FFFE and U+FFFF outright).
fn is_noncharacter(c: char) -> bool {
    let n = u32::from(c);
    (0xfdd0..=0xfdef).contains(&n) || n & 0xfffe == 0xfffe
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn printable_text_in_any_script_is_plain() {
        for text in [
            "AcmeInc",
            "Acme & Co. <1>",
            "Bäckerei Müller",
            "Ελληνικά",
            "銀行",
            "مصرف",
            "שלום",
            "Acme 🏦",
            "👩‍💻 Dev",
            "no\u{a0}break",
        ] {
            assert!(is_plain(text), "{text:?}");
        }
    }

    #[test]
    fn controls_line_breaks_and_bidi_overrides_are_not() {
        for (text, bad) in [
            ("Bank\nCode: 0000", '\n'),
            ("a\rb", '\r'),
            ("tab\there", '\t'),
            ("nul\0", '\0'),
            ("bell\u{7}", '\u{7}'),
            ("del\u{7f}", '\u{7f}'),
            ("nel\u{85}", '\u{85}'),
            ("line\u{2028}sep", '\u{2028}'),
            ("para\u{2029}sep", '\u{2029}'),
            ("evil\u{202e}cni", '\u{202e}'),
            ("iso\u{2066}late", '\u{2066}'),
            ("mark\u{200f}", '\u{200f}'),
            ("arabic\u{61c}mark", '\u{61c}'),
            ("bom\u{feff}", '\u{feff}'),
            ("non\u{fffe}", '\u{fffe}'),
            ("non\u{ffff}", '\u{ffff}'),
            ("non\u{fdd0}", '\u{fdd0}'),
            ("non\u{10ffff}", '\u{10ffff}'),
        ] {
            assert_eq!(forbidden_char(text), Some(bad), "{text:?}");
        }
    }
}
