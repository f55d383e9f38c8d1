//! A text as the short_message of one or more submit_sm: GSM 03.38 (data_coding 0, one septet
//! per octet) when every character is in the GSM alphabet, else UCS-2 (data_coding 8, UTF-16BE).
//! A text longer than one message is split into parts that each start with a concatenation
//! header (8-bit reference), which the phone uses to put them back together.

use crate::channel::gsm;

pub const DATA_CODING_GSM: u8 = 0x00;
pub const DATA_CODING_UCS2: u8 = 0x08;

/// What one message holds, alone and as a part after its 6-octet header. The header takes 7
/// septets of a GSM part (48 bits, padded to a septet boundary), 6 octets of a UCS-2 part.
const GSM_SINGLE: usize = 160;
const GSM_PART: usize = 153;
const UCS2_SINGLE: usize = 140;
const UCS2_PART: usize = 134;
/// A concatenation header counts parts in one octet.
const MAX_PARTS: usize = 255;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Encoded {
    pub data_coding: u8,
    /// Each part's short_message, its header included when there are several.
    pub parts: Vec<Vec<u8>>,
}

impl Encoded {
    pub fn concatenated(&self) -> bool {
        self.parts.len() > 1
    }
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("the text needs {0} messages; a concatenated SMS has at most 255")]
pub struct TooLong(pub usize);

/// `text` as the short_messages to send; `reference` tells this message's parts from another's.
pub fn encode(text: &str, reference: u8) -> Result<Encoded, TooLong> {
    let (data_coding, body, single, part) = match gsm::encode(text) {
        Some(septets) => (DATA_CODING_GSM, septets, GSM_SINGLE, GSM_PART),
        None => {
            let octets: Vec<u8> = text.encode_utf16().flat_map(u16::to_be_bytes).collect();
            (DATA_CODING_UCS2, octets, UCS2_SINGLE, UCS2_PART)
        }
    };
    if body.len() <= single {
        return Ok(Encoded {
            data_coding,
            parts: vec![body],
        });
    }
    let mut chunks = Vec::new();
    let mut rest = body.as_slice();
    while !rest.is_empty() {
        let mut end = rest.len().min(part);
        if end < rest.len() {
            end = boundary(data_coding, rest, end);
        }
        chunks.push(&rest[..end]);
        rest = &rest[end..];
    }
    if chunks.len() > MAX_PARTS {
        return Err(TooLong(chunks.len()));
    }
    let total = chunks.len() as u8;
    let parts = chunks
        .iter()
        .enumerate()
        .map(|(i, chunk)| {
            let mut sm = vec![0x05, 0x00, 0x03, reference, total, i as u8 + 1];
            sm.extend_from_slice(chunk);
            sm
        })
        .collect();
    Ok(Encoded { data_coding, parts })
}

/// Where a part that would end at `end` ends instead, so that no character is cut in two: not
/// between an escape and its code (GSM), nor inside a UTF-16 unit or surrogate pair (UCS-2).
fn boundary(data_coding: u8, body: &[u8], end: usize) -> usize {
    if data_coding == DATA_CODING_GSM {
        // An escape is always followed by its code, so a run of escapes before `end` alternates
        // escape, code, escape…: an odd run ends in an escape that lost its code.
        let escapes = body[..end]
            .iter()
            .rev()
            .take_while(|&&b| b == gsm::ESCAPE)
            .count();
        return if escapes % 2 == 1 { end - 1 } else { end };
    }
    let mut end = end - end % 2;
    let last = u16::from_be_bytes([body[end - 2], body[end - 1]]);
    if (0xd800..0xdc00).contains(&last) {
        end -= 2;
    }
    end
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The text back from the parts, as a phone joins them.
    fn joined(e: &Encoded) -> String {
        let body: Vec<u8> = e
            .parts
            .iter()
            .flat_map(|p| if e.concatenated() { &p[6..] } else { &p[..] })
            .copied()
            .collect();
        if e.data_coding == DATA_CODING_GSM {
            gsm::decode(&body).unwrap()
        } else {
            let units: Vec<u16> = body
                .chunks(2)
                .map(|c| u16::from_be_bytes([c[0], c[1]]))
                .collect();
            String::from_utf16(&units).unwrap()
        }
    }

    #[test]
    fn a_short_gsm_text_is_one_part_without_a_header() {
        let e = encode("Your code is 1234", 7).unwrap();
        assert_eq!(e.data_coding, DATA_CODING_GSM);
        assert_eq!(e.parts, vec![b"Your code is 1234".to_vec()]);
    }

    #[test]
    fn a_gsm_text_of_160_septets_is_one_part_and_161_are_two() {
        let one = encode(&"a".repeat(160), 1).unwrap();
        assert_eq!(one.parts.len(), 1);
        let two = encode(&"a".repeat(161), 9).unwrap();
        assert_eq!(two.parts.len(), 2);
        assert_eq!(two.parts[0][..6], [0x05, 0x00, 0x03, 9, 2, 1]);
        assert_eq!(two.parts[1][..6], [0x05, 0x00, 0x03, 9, 2, 2]);
        assert_eq!(two.parts[0].len(), 6 + 153);
        assert_eq!(two.parts[1].len(), 6 + 8);
    }

    #[test]
    fn an_extension_character_counts_two_septets_and_is_never_cut() {
        // 152 letters then a euro: the escape would be the part's 153rd septet.
        let text = format!("{}€{}", "a".repeat(152), "b".repeat(20));
        let e = encode(&text, 1).unwrap();
        assert_eq!(e.parts[0].len(), 6 + 152);
        assert_eq!(e.parts[1][6..8], [0x1b, 0x65]);
        assert_eq!(joined(&e), text);
        // 80 euros are 160 septets: one message.
        assert_eq!(encode(&"€".repeat(80), 1).unwrap().parts.len(), 1);
        let euros = "€".repeat(81);
        let e = encode(&euros, 1).unwrap();
        assert!(e.parts.iter().all(|p| p[6..].len() % 2 == 0));
        assert_eq!(joined(&e), euros);
    }

    #[test]
    fn a_text_outside_the_gsm_alphabet_goes_as_ucs2() {
        let e = encode("رمز التحقق 1234", 1).unwrap();
        assert_eq!(e.data_coding, DATA_CODING_UCS2);
        assert_eq!(e.parts[0][..2], [0x06, 0x31]);
        assert_eq!(joined(&e), "رمز التحقق 1234");
    }

    #[test]
    fn a_ucs2_text_of_70_characters_is_one_part_and_71_are_two() {
        assert_eq!(encode(&"認".repeat(70), 1).unwrap().parts.len(), 1);
        let e = encode(&"認".repeat(71), 1).unwrap();
        assert_eq!(e.parts.len(), 2);
        assert_eq!(e.parts[0].len(), 6 + 134);
        assert_eq!(joined(&e), "認".repeat(71));
    }

    #[test]
    fn a_surrogate_pair_stays_in_one_part() {
        // 66 units, then an emoji of two: the pair would straddle the 67-unit part.
        let text = format!("{}🔐{}", "認".repeat(66), "証".repeat(10));
        let e = encode(&text, 1).unwrap();
        assert_eq!(e.parts[0].len(), 6 + 132);
        assert_eq!(joined(&e), text);
    }

    #[test]
    fn long_texts_in_every_script_come_back_whole() {
        for text in [
            "Ihr Bestätigungscode lautet 1234. {Gültig} [5 Min] ~ Ihr Team € ".repeat(7),
            "Ваш код подтверждения: 1234. Никому его не сообщайте. ".repeat(6),
            "รหัสยืนยันของคุณคือ 1234 ".repeat(9),
            "인증 코드는 1234입니다 🙂 ".repeat(12),
        ] {
            let e = encode(&text, 200).unwrap();
            assert!(e.parts.len() > 1, "{text}");
            assert!(e.parts.iter().all(|p| p.len() <= 140 + 20));
            assert_eq!(joined(&e), text);
        }
    }

    #[test]
    fn a_text_needing_more_than_255_parts_is_refused() {
        assert_eq!(encode(&"a".repeat(153 * 256), 1), Err(TooLong(256)));
    }
}
