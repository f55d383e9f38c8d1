//! GSM 03.38, the SMS default alphabet: which texts it writes, and their septets, one per
//! octet, with characters of the extension table escaped (0x1B, then the character's code).

/// The basic table, by code. 0x1B is the escape to the extension table, not a character.
const BASIC: [char; 128] = [
    '@', '£', '$', '¥', 'è', 'é', 'ù', 'ì', 'ò', 'Ç', '\n', 'Ø', 'ø', '\r', 'Å', 'å', //
    'Δ', '_', 'Φ', 'Γ', 'Λ', 'Ω', 'Π', 'Ψ', 'Σ', 'Θ', 'Ξ', '\u{1b}', 'Æ', 'æ', 'ß', 'É', //
    ' ', '!', '"', '#', '¤', '%', '&', '\'', '(', ')', '*', '+', ',', '-', '.', '/', //
    '0', '1', '2', '3', '4', '5', '6', '7', '8', '9', ':', ';', '<', '=', '>', '?', //
    '¡', 'A', 'B', 'C', 'D', 'E', 'F', 'G', 'H', 'I', 'J', 'K', 'L', 'M', 'N', 'O', //
    'P', 'Q', 'R', 'S', 'T', 'U', 'V', 'W', 'X', 'Y', 'Z', 'Ä', 'Ö', 'Ñ', 'Ü', '§', //
    '¿', 'a', 'b', 'c', 'd', 'e', 'f', 'g', 'h', 'i', 'j', 'k', 'l', 'm', 'n', 'o', //
    'p', 'q', 'r', 's', 't', 'u', 'v', 'w', 'x', 'y', 'z', 'ä', 'ö', 'ñ', 'ü', 'à', //
];

pub const ESCAPE: u8 = 0x1b;

/// The extension table: each character is sent as `ESCAPE` and this code.
const EXTENSION: [(char, u8); 10] = [
    ('\u{c}', 0x0a),
    ('^', 0x14),
    ('{', 0x28),
    ('}', 0x29),
    ('\\', 0x2f),
    ('[', 0x3c),
    ('~', 0x3d),
    (']', 0x3e),
    ('|', 0x40),
    ('€', 0x65),
];

/// The septets of `c`: one, two (escaped), or `None` when GSM 03.38 cannot write it.
fn septets(c: char) -> Option<(u8, Option<u8>)> {
    if c != '\u{1b}' {
        if let Some(code) = BASIC.iter().position(|&b| b == c) {
            return Some((code as u8, None));
        }
    }
    EXTENSION
        .iter()
        .find(|(e, _)| *e == c)
        .map(|&(_, code)| (ESCAPE, Some(code)))
}

/// Whether GSM 03.38 (with its extension table) writes `text`.
pub fn is_gsm7(text: &str) -> bool {
    text.chars().all(|c| septets(c).is_some())
}

/// `text` as septets, one per octet; `None` when a character is not in GSM 03.38.
pub fn encode(text: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(text.len());
    for c in text.chars() {
        let (first, second) = septets(c)?;
        out.push(first);
        out.extend(second);
    }
    Some(out)
}

/// The text of septets written by [`encode`]; `None` for a code no table defines.
pub fn decode(septets: &[u8]) -> Option<String> {
    let mut out = String::with_capacity(septets.len());
    let mut bytes = septets.iter();
    while let Some(&b) = bytes.next() {
        if b == ESCAPE {
            let &code = bytes.next()?;
            out.push(EXTENSION.iter().find(|(_, e)| *e == code)?.0);
        } else {
            out.push(*BASIC.get(usize::from(b))?);
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_basic_table_has_its_codes_in_the_standard_order() {
        assert_eq!(encode("@").unwrap(), [0x00]);
        assert_eq!(encode("\n").unwrap(), [0x0a]);
        assert_eq!(encode("Δ").unwrap(), [0x10]);
        assert_eq!(encode(" ").unwrap(), [0x20]);
        assert_eq!(encode("¤").unwrap(), [0x24]);
        assert_eq!(encode("¡A").unwrap(), [0x40, 0x41]);
        assert_eq!(encode("§¿").unwrap(), [0x5f, 0x60]);
        assert_eq!(encode("à").unwrap(), [0x7f]);
        assert_eq!(encode("Your code is 1234").unwrap(), b"Your code is 1234");
    }

    #[test]
    fn extension_characters_are_escaped() {
        assert_eq!(encode("€").unwrap(), [0x1b, 0x65]);
        assert_eq!(encode("[x]").unwrap(), [0x1b, 0x3c, b'x', 0x1b, 0x3e]);
        assert_eq!(encode("^{}\\~|").unwrap().len(), 12);
    }

    #[test]
    fn characters_outside_the_alphabet_are_not_written() {
        for text in ["Ваш код", "你的验证码", "`", "\u{1b}", "emoji 🙂", "ç"] {
            assert_eq!(encode(text), None, "{text}");
            assert!(!is_gsm7(text), "{text}");
        }
    }

    #[test]
    fn every_character_of_both_tables_comes_back_from_its_septets() {
        let every: String = BASIC
            .iter()
            .filter(|&&c| c != '\u{1b}')
            .copied()
            .chain(EXTENSION.iter().map(|(c, _)| *c))
            .collect();
        assert!(is_gsm7(&every));
        let septets = encode(&every).unwrap();
        assert_eq!(septets.len(), 127 + 2 * EXTENSION.len());
        assert!(septets.iter().all(|&s| s < 0x80));
        assert_eq!(decode(&septets).unwrap(), every);
    }
}
