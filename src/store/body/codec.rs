//! serde helpers for stored bodies: instants as milliseconds since the Unix epoch, hashes and
//! sealed PINs as hex in JSON and as bytes in MessagePack.

/// Instants are stored as milliseconds since the Unix epoch.
pub(super) mod ms {
    use crate::domain::Instant;
    use serde::{Deserialize, Deserializer, Serializer};

    pub(in crate::store::body) fn serialize<S: Serializer>(
        t: &Instant,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        s.serialize_i64(t.timestamp_millis())
    }

    pub(in crate::store::body) fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Instant, D::Error> {
        let v = i64::deserialize(d)?;
        chrono::DateTime::from_timestamp_millis(v)
            .ok_or_else(|| serde::de::Error::custom("timestamp out of range"))
    }
}

pub(super) mod ms_opt {
    use crate::domain::Instant;
    use serde::{Deserialize, Deserializer, Serializer};

    pub(in crate::store::body) fn serialize<S: Serializer>(
        t: &Option<Instant>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        match t {
            Some(t) => s.serialize_some(&t.timestamp_millis()),
            None => s.serialize_none(),
        }
    }

    pub(in crate::store::body) fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<Instant>, D::Error> {
        match Option::<i64>::deserialize(d)? {
            Some(v) => chrono::DateTime::from_timestamp_millis(v)
                .map(Some)
                .ok_or_else(|| serde::de::Error::custom("timestamp out of range")),
            None => Ok(None),
        }
    }
}

/// Hex in stored bodies, read and written without a `String` in between: every check decodes and
/// encodes a stored body, and every search decodes one (`cargo bench --bench stored_body`).
///
/// Formats that are not human-readable (the SQLite engine's MessagePack) get the bytes as they
/// are: half the size, and nothing to decode.
mod hex_text {
    use serde::de::{Error, Visitor};
    use serde::{Deserializer, Serializer};

    /// Writes `bytes` as lower-case hex, through a buffer on the stack when it is short.
    pub(super) fn write<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        if !s.is_human_readable() {
            return s.serialize_bytes(bytes);
        }
        let mut buf = [0u8; 128];
        match buf.get_mut(..bytes.len() * 2) {
            Some(out) => {
                hex::encode_to_slice(bytes, out).expect("twice as long");
                s.serialize_str(std::str::from_utf8(out).expect("hex is ASCII"))
            }
            None => s.serialize_str(&hex::encode(bytes)),
        }
    }

    /// Reads a hex string and decodes it with `from_hex`, or takes raw bytes with `from_bytes`.
    pub(super) fn read<'de, D, T>(
        d: D,
        from_hex: fn(&str) -> Result<T, hex::FromHexError>,
        from_bytes: fn(&[u8]) -> Option<T>,
    ) -> Result<T, D::Error>
    where
        D: Deserializer<'de>,
    {
        struct Hex<T> {
            from_hex: fn(&str) -> Result<T, hex::FromHexError>,
            from_bytes: fn(&[u8]) -> Option<T>,
        }
        impl<T> Visitor<'_> for Hex<T> {
            type Value = T;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a hex string or bytes")
            }
            fn visit_str<E: Error>(self, v: &str) -> Result<T, E> {
                (self.from_hex)(v).map_err(E::custom)
            }
            fn visit_bytes<E: Error>(self, v: &[u8]) -> Result<T, E> {
                (self.from_bytes)(v).ok_or_else(|| E::invalid_length(v.len(), &self))
            }
        }
        let visitor = Hex {
            from_hex,
            from_bytes,
        };
        if d.is_human_readable() {
            d.deserialize_str(visitor)
        } else {
            d.deserialize_bytes(visitor)
        }
    }
}

pub(super) mod hex_vec {
    use serde::{Deserializer, Serializer};

    pub(in crate::store::body) fn serialize<S: Serializer>(
        v: &[u8],
        s: S,
    ) -> Result<S::Ok, S::Error> {
        super::hex_text::write(v, s)
    }

    pub(in crate::store::body) fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Vec<u8>, D::Error> {
        // Not `hex::decode`, which collects through an iterator of results.
        super::hex_text::read(
            d,
            |text| {
                let mut out = vec![0u8; text.len() / 2];
                hex::decode_to_slice(text, &mut out).map(|()| out)
            },
            |bytes| Some(bytes.to_vec()),
        )
    }
}

pub(super) mod hex_opt_vec {
    use serde::{Deserialize, Deserializer, Serializer};

    pub(in crate::store::body) fn serialize<S: Serializer>(
        v: &Option<Vec<u8>>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        match v {
            Some(v) => s.serialize_some(&Hex(v)),
            None => s.serialize_none(),
        }
    }

    struct Hex<'a>(&'a [u8]);

    impl serde::Serialize for Hex<'_> {
        fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            super::hex_text::write(self.0, s)
        }
    }

    pub(in crate::store::body) fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<Vec<u8>>, D::Error> {
        #[derive(Deserialize)]
        struct Bytes(#[serde(with = "super::hex_vec")] Vec<u8>);
        Ok(Option::<Bytes>::deserialize(d)?.map(|b| b.0))
    }
}

pub(super) mod hex_bytes32 {
    use serde::{Deserializer, Serializer};

    pub(in crate::store::body) fn serialize<S: Serializer>(
        v: &[u8; 32],
        s: S,
    ) -> Result<S::Ok, S::Error> {
        super::hex_text::write(v, s)
    }

    pub(in crate::store::body) fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<[u8; 32], D::Error> {
        super::hex_text::read(
            d,
            |text| {
                let mut out = [0u8; 32];
                hex::decode_to_slice(text, &mut out).map(|()| out)
            },
            |bytes| bytes.try_into().ok(),
        )
    }
}
