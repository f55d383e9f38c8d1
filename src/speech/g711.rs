//! G.711: 16-bit linear PCM to 8-bit μ-law (PCMU, payload 0) and A-law (PCMA, payload 8), as
//! ITU-T G.711 defines them (the segment tables of its reference code).

const BIAS: i32 = 0x84;
const CLIP: i32 = 32_635;

pub fn ulaw(sample: i16) -> u8 {
    let mut s = i32::from(sample);
    let sign = if s < 0 {
        s = -s;
        0x80
    } else {
        0
    };
    s = s.min(CLIP) + BIAS;
    let exponent = (7 - ((s as u32) << 17).leading_zeros().min(7)) as i32;
    let mantissa = (s >> (exponent + 3)) & 0x0f;
    !(sign | (exponent << 4) as u8 | mantissa as u8)
}

pub fn alaw(sample: i16) -> u8 {
    let s = i32::from(sample) >> 3;
    let (sign, magnitude) = if s >= 0 {
        (0xd5u8, s)
    } else {
        (0x55u8, -s - 1)
    };
    let encoded = if magnitude < 32 {
        (magnitude >> 1) as u8
    } else {
        let segment = (31 - (magnitude as u32).leading_zeros()) as i32 - 4;
        ((segment << 4) | ((magnitude >> segment) & 0x0f)) as u8
    };
    encoded.min(0x7f) ^ sign
}

/// μ-law back to linear, for tests and checks of what was sent.
pub fn ulaw_decode(byte: u8) -> i16 {
    let b = !byte;
    let exponent = i32::from((b >> 4) & 0x07);
    let mantissa = i32::from(b & 0x0f);
    let magnitude = (((mantissa << 3) + BIAS) << exponent) - BIAS;
    (if b & 0x80 != 0 { -magnitude } else { magnitude }) as i16
}

/// A-law back to linear.
pub fn alaw_decode(byte: u8) -> i16 {
    let a = byte ^ 0x55;
    let segment = i32::from((a & 0x70) >> 4);
    let mut t = i32::from(a & 0x0f) << 4;
    t = match segment {
        0 => t + 8,
        1 => t + 0x108,
        _ => (t + 0x108) << (segment - 1),
    };
    (if a & 0x80 != 0 { t } else { -t }) as i16
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn silence_and_the_extremes_have_their_standard_codes() {
        assert_eq!(ulaw(0), 0xff);
        assert_eq!(ulaw(i16::MAX), 0x80);
        assert_eq!(ulaw(i16::MIN), 0x00);
        assert_eq!(alaw(0), 0xd5);
        assert_eq!(alaw(i16::MAX), 0xaa);
        assert_eq!(alaw(i16::MIN), 0x2a);
    }

    #[test]
    fn every_sample_comes_back_within_the_codes_step() {
        for s in (i16::MIN..=i16::MAX).step_by(7) {
            let s32 = i32::from(s);
            // Each law keeps about 12 bits of precision: the error grows with the magnitude.
            let allowed = (s32.abs() / 16).max(16);
            let u = i32::from(ulaw_decode(ulaw(s)));
            let a = i32::from(alaw_decode(alaw(s)));
            assert!((u - s32).abs() <= allowed + 132, "μ-law {s}: {u}");
            assert!((a - s32).abs() <= allowed, "A-law {s}: {a}");
        }
    }

    #[test]
    fn decoding_then_encoding_gives_every_code_back() {
        for code in 0..=255u8 {
            assert_eq!(alaw(alaw_decode(code)), code, "A-law {code:#x}");
            // μ-law has two codes for zero (0x7f and 0xff); everything else round-trips.
            if code != 0x7f {
                assert_eq!(ulaw(ulaw_decode(code)), code, "μ-law {code:#x}");
            }
        }
    }
}
