//! Keys, PIN hashing and sealing, identifiers and API secrets.
//!
//! One 32-byte server key (a file beside the database, or `VERIFYD_SECRET_KEY`) is the root of
//! everything secret. Separate subkeys are derived for PIN hashing and PIN sealing, so neither use
//! can be turned against the other.

use std::io::Write;
use std::path::Path;

use anyhow::{bail, Context};
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use zeroize::Zeroize;

use crate::domain::{CodeLength, EventId, IssuedPin, Minter, RequestId};

type HmacSha256 = Hmac<Sha256>;

/// Fills `buf` from the operating system's RNG. Failure here means the OS cannot provide
/// randomness, and no code may be issued without it.
pub fn os_random(buf: &mut [u8]) {
    getrandom::fill(buf).expect("the operating system RNG failed");
}

/// The server's root key and the subkeys derived from it.
#[derive(Clone)]
pub struct ServerKey {
    pin_hash: [u8; 32],
    seal: XChaCha20Poly1305,
    receipts: [u8; 32],
    sessions: [u8; 32],
    fingerprint: String,
}

impl std::fmt::Debug for ServerKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ServerKey({})", self.fingerprint)
    }
}

fn derive(root: &[u8; 32], label: &str) -> [u8; 32] {
    let mut mac = <HmacSha256 as Mac>::new_from_slice(root).expect("HMAC takes any key length");
    mac.update(label.as_bytes());
    mac.finalize().into_bytes().into()
}

impl ServerKey {
    pub fn from_bytes(root: [u8; 32]) -> Self {
        let seal_key = derive(&root, "verifyd/pin-seal/v1");
        Self {
            pin_hash: derive(&root, "verifyd/pin-hash/v1"),
            seal: XChaCha20Poly1305::new((&seal_key).into()),
            receipts: derive(&root, "verifyd/receipt-url/v1"),
            sessions: derive(&root, "verifyd/dashboard-session/v1"),
            fingerprint: hex::encode(&derive(&root, "verifyd/fingerprint/v1")[..8]),
        }
    }

    /// Parses 64 hex characters.
    pub fn from_hex(text: &str) -> anyhow::Result<Self> {
        let bytes = hex::decode(text.trim()).context("the secret key is not hex")?;
        let root: [u8; 32] = bytes
            .try_into()
            .map_err(|_| anyhow::anyhow!("the secret key must be 32 bytes (64 hex characters)"))?;
        Ok(Self::from_bytes(root))
    }

    /// Reads the key file; a missing file is an error (commands other than `serve` never make
    /// one: a key they made would not be the server's).
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path).with_context(|| {
            format!(
                "cannot read the secret key file {} (the server creates it on its first start)",
                path.display()
            )
        })?;
        Self::from_hex(&text)
            .with_context(|| format!("while reading the secret key file {}", path.display()))
    }

    /// Reads the key file, or creates it (mode 0600) with a fresh random key when it is missing.
    pub fn load_or_create(path: &Path) -> anyhow::Result<Self> {
        match std::fs::read_to_string(path) {
            Ok(text) => Self::from_hex(&text)
                .with_context(|| format!("while reading the secret key file {}", path.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let mut root = [0u8; 32];
                os_random(&mut root);
                let mut options = std::fs::OpenOptions::new();
                options.write(true).create_new(true);
                #[cfg(unix)]
                {
                    use std::os::unix::fs::OpenOptionsExt;
                    options.mode(0o600);
                }
                let mut file = options.open(path).with_context(|| {
                    format!("while creating the secret key file {}", path.display())
                })?;
                writeln!(file, "{}", hex::encode(root))?;
                file.sync_all()?;
                Ok(Self::from_bytes(root))
            }
            Err(e) => Err(e)
                .with_context(|| format!("while reading the secret key file {}", path.display())),
        }
    }

    /// The part of a channel's receipt URL that only this server can make: a gateway is given
    /// the URL, and a callback without it is refused before its body is read.
    pub fn receipt_token(&self, channel: &str) -> String {
        let mut mac =
            <HmacSha256 as Mac>::new_from_slice(&self.receipts).expect("HMAC takes any key length");
        mac.update(channel.as_bytes());
        hex::encode(&mac.finalize().into_bytes()[..16])
    }

    pub fn receipt_token_matches(&self, channel: &str, token: &str) -> bool {
        use subtle::ConstantTimeEq;
        let expected = self.receipt_token(channel);
        expected.len() == token.len() && bool::from(expected.as_bytes().ct_eq(token.as_bytes()))
    }

    /// The MAC of the dashboard's cookies and form tokens over `parts`, each length-prefixed so
    /// that no two lists of parts share one input.
    pub fn session_mac(&self, parts: &[&[u8]]) -> [u8; 32] {
        let mut mac =
            <HmacSha256 as Mac>::new_from_slice(&self.sessions).expect("HMAC takes any key length");
        for part in parts {
            mac.update(&(part.len() as u64).to_be_bytes());
            mac.update(part);
        }
        mac.finalize().into_bytes().into()
    }

    /// A short public identifier of the key, stored in the database to catch a node started with
    /// the wrong key (every check would silently fail otherwise).
    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }

    /// HMAC-SHA256 of the code, bound to the request so equal PINs never share a hash.
    pub fn hash_pin(&self, request_id: &RequestId, code: &str) -> [u8; 32] {
        let mut mac =
            <HmacSha256 as Mac>::new_from_slice(&self.pin_hash).expect("HMAC takes any key length");
        mac.update(request_id.as_str().as_bytes());
        mac.update(&[0]);
        mac.update(code.as_bytes());
        mac.finalize().into_bytes().into()
    }

    /// Encrypts the PIN for later re-delivery: 24-byte random nonce, then ciphertext and tag.
    pub fn seal_pin(&self, request_id: &RequestId, code: &str) -> Vec<u8> {
        let mut nonce = [0u8; 24];
        os_random(&mut nonce);
        self.seal_pin_with(request_id, code, nonce)
    }

    fn seal_pin_with(&self, request_id: &RequestId, code: &str, nonce: [u8; 24]) -> Vec<u8> {
        self.seal_with(request_id.as_str().as_bytes(), code, nonce)
    }

    /// Encrypts a secret the server must use again later (an application's signature secret),
    /// bound to what it belongs to: `owner` is not a request id, so it never opens as a PIN.
    pub fn seal_secret(&self, owner: &str, secret: &str) -> Vec<u8> {
        let mut nonce = [0u8; 24];
        os_random(&mut nonce);
        self.seal_with(format!("secret/{owner}").as_bytes(), secret, nonce)
    }

    pub fn unseal_secret(&self, owner: &str, sealed: &[u8]) -> anyhow::Result<String> {
        self.unseal_with(format!("secret/{owner}").as_bytes(), sealed)
    }

    fn seal_with(&self, aad: &[u8], text: &str, nonce: [u8; 24]) -> Vec<u8> {
        let payload = Payload {
            msg: text.as_bytes(),
            aad,
        };
        let ciphertext = self
            .seal
            .encrypt(XNonce::from_slice(&nonce), payload)
            .expect("XChaCha20-Poly1305 encryption cannot fail for short inputs");
        let mut out = Vec::with_capacity(24 + ciphertext.len());
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&ciphertext);
        out
    }

    pub fn unseal_pin(&self, request_id: &RequestId, sealed: &[u8]) -> anyhow::Result<String> {
        self.unseal_with(request_id.as_str().as_bytes(), sealed)
            .context("sealed PIN")
    }

    fn unseal_with(&self, aad: &[u8], sealed: &[u8]) -> anyhow::Result<String> {
        if sealed.len() < 24 {
            bail!("too short to be sealed");
        }
        let (nonce, ciphertext) = sealed.split_at(24);
        let payload = Payload {
            msg: ciphertext,
            aad,
        };
        let clear = self
            .seal
            .decrypt(XNonce::from_slice(nonce), payload)
            .map_err(|_| anyhow::anyhow!("does not open with this server key"))?;
        String::from_utf8(clear).context("not text")
    }
}

/// Random bytes for one operation, drawn from the OS RNG one block at a time and handed out
/// once each.
///
/// A new verification needs four random values (its id, PIN digits, the seal's nonce, the first
/// event's id); one `getrandom` call each was about 1.4 µs apiece in a profile of the request
/// benchmark on this project's 2-core VM. One call for all of them gives the same bytes as four
/// would. Nothing is kept past the operation: a user-space generator that outlives it (such as
/// `rand`'s `ThreadRng`) would repeat its output in every clone of a restored VM snapshot,
/// and with it the seal's nonces, while the kernel's RNG is reseeded when a VM is cloned.
struct Entropy {
    /// The OS RNG; tests count and script its draws.
    source: fn(&mut [u8]),
    block: [u8; 64],
    /// Bytes of `block` already handed out; `block.len()` when nothing is drawn yet, so an
    /// operation that needs no randomness (a check) makes no system call.
    used: usize,
}

impl Entropy {
    fn new(source: fn(&mut [u8])) -> Self {
        Self {
            source,
            block: [0; 64],
            used: 64,
        }
    }

    fn fill(&mut self, out: &mut [u8]) {
        if out.len() > self.block.len() {
            (self.source)(out);
            return;
        }
        if self.block.len() - self.used < out.len() {
            (self.source)(&mut self.block);
            self.used = 0;
        }
        let taken = &mut self.block[self.used..self.used + out.len()];
        out.copy_from_slice(taken);
        taken.zeroize();
        self.used += out.len();
    }

    fn array<const N: usize>(&mut self) -> [u8; N] {
        let mut out = [0u8; N];
        self.fill(&mut out);
        out
    }
}

impl Drop for Entropy {
    fn drop(&mut self) {
        self.block.zeroize();
    }
}

/// Draws request ids, PINs, nonces and event ids for one operation from the OS RNG.
pub struct OsMinter {
    key: ServerKey,
    entropy: Entropy,
}

impl OsMinter {
    pub fn new(key: ServerKey) -> Self {
        Self {
            key,
            entropy: Entropy::new(os_random),
        }
    }

    /// A new request id: 48 bits of the wall clock in milliseconds, then 80 random bits.
    ///
    /// The time prefix makes ids of new requests sort after older ones, so every index keyed by
    /// request id grows at its end: a group commit of many new requests then writes a few
    /// shared pages instead of one random leaf page per request and index (about 20 KB of WAL
    /// per request with fully random ids). 80 random bits keep ids unguessable; the creation
    /// time they reveal is already in every search result as `date_submitted`.
    pub fn request_id(&mut self) -> RequestId {
        request_id_from(now_millis(), self.entropy.array())
    }

    /// Hashes and seals a PIN: one the caller chose, or one [`Minter::pin`] drew.
    pub fn issue(&mut self, request_id: &RequestId, code: &str) -> IssuedPin {
        IssuedPin {
            hash: self.key.hash_pin(request_id, code),
            sealed: self
                .key
                .seal_pin_with(request_id, code, self.entropy.array()),
        }
    }
}

impl Minter for OsMinter {
    fn pin(&mut self, request_id: &RequestId, length: CodeLength) -> IssuedPin {
        let entropy = &mut self.entropy;
        let code = digits_from(usize::from(length.get()), |buf| entropy.fill(buf));
        self.issue(request_id, &code)
    }

    fn event_id(&mut self) -> EventId {
        EventId::from_bytes(self.entropy.array())
    }
}

/// Uniform decimal digits: bytes ≥ 250 are rejected so every digit has probability exactly 1/10.
pub fn random_digits(n: usize) -> String {
    digits_from(n, os_random)
}

fn digits_from(n: usize, mut random: impl FnMut(&mut [u8])) -> String {
    let mut out = String::with_capacity(n);
    let mut buf = [0u8; 16];
    while out.len() < n {
        random(&mut buf);
        for &b in &buf {
            if b < 250 && out.len() < n {
                out.push(char::from(b'0' + b % 10));
            }
        }
    }
    buf.zeroize();
    out
}

fn now_millis() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// 48 bits of milliseconds, then random bits with a UUID's version (7) and variant set: Verify v2
/// shows the id as a UUID, and 74 random bits per millisecond keep ids apart.
fn request_id_from(millis: u64, random: [u8; 10]) -> RequestId {
    let mut bytes = [0u8; 16];
    bytes[..6].copy_from_slice(&millis.to_be_bytes()[2..]);
    bytes[6..].copy_from_slice(&random);
    bytes[6] = 0x70 | (bytes[6] & 0x0f);
    bytes[8] = 0x80 | (bytes[8] & 0x3f);
    RequestId::from_bytes(bytes)
}

/// A new API key: 8 lowercase hex characters, like the keys the Verify API issues.
pub fn new_api_key() -> String {
    let mut bytes = [0u8; 4];
    os_random(&mut bytes);
    hex::encode(bytes)
}

/// A new API secret: 16 letters and digits (about 95 bits from the OS RNG).
pub fn new_api_secret() -> String {
    random_text(16)
}

/// A signature secret for HMAC-SHA256 (an application's callbacks): 32 characters, about 190
/// bits.
pub fn new_signature_secret() -> String {
    random_text(32)
}

/// `len` letters and digits, uniformly drawn.
fn random_text(len: usize) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut out = String::with_capacity(len);
    let mut buf = [0u8; 32];
    while out.len() < len {
        os_random(&mut buf);
        for b in buf {
            // 248 = 4 * 62: rejecting above it keeps the choice uniform.
            if b < 248 && out.len() < len {
                out.push(char::from(ALPHABET[usize::from(b % 62)]));
            }
        }
    }
    out
}

/// Secrets are generated by verifyd with ~95 bits of entropy, so a plain SHA-256 is enough: a slow
/// password hash would only add latency to every request.
pub fn hash_secret(secret: &str) -> [u8; 32] {
    Sha256::digest(secret.as_bytes()).into()
}

pub fn secret_matches(secret: &str, stored_hash: &[u8; 32]) -> bool {
    hash_secret(secret).ct_eq(stored_hash).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> ServerKey {
        ServerKey::from_bytes([9; 32])
    }

    #[test]
    fn a_sealed_pin_opens_only_for_its_request() {
        let a = RequestId::from_bytes([1; 16]);
        let b = RequestId::from_bytes([2; 16]);
        let sealed = key().seal_pin(&a, "4815");
        assert_eq!(key().unseal_pin(&a, &sealed).unwrap(), "4815");
        assert!(key().unseal_pin(&b, &sealed).is_err());
        assert!(ServerKey::from_bytes([8; 32])
            .unseal_pin(&a, &sealed)
            .is_err());
        assert!(
            !sealed.windows(4).any(|w| w == b"4815"),
            "no clear text in the sealed form"
        );
    }

    #[test]
    fn the_same_pin_hashes_differently_per_request_and_per_key() {
        let a = RequestId::from_bytes([1; 16]);
        let b = RequestId::from_bytes([2; 16]);
        assert_eq!(key().hash_pin(&a, "1234"), key().hash_pin(&a, "1234"));
        assert_ne!(key().hash_pin(&a, "1234"), key().hash_pin(&b, "1234"));
        assert_ne!(
            key().hash_pin(&a, "1234"),
            ServerKey::from_bytes([8; 32]).hash_pin(&a, "1234")
        );
    }

    #[test]
    fn random_digits_have_the_asked_length_and_use_every_digit() {
        let s = random_digits(6000);
        assert_eq!(s.len(), 6000);
        for d in '0'..='9' {
            let n = s.chars().filter(|c| *c == d).count();
            assert!(
                (400..800).contains(&n),
                "digit {d} appeared {n} times in 6000"
            );
        }
    }

    thread_local! {
        static DRAWS: std::cell::RefCell<Vec<usize>> = const { std::cell::RefCell::new(Vec::new()) };
    }

    /// Writes 1, 2, 3, ... (continuing across draws) and records each draw's length.
    fn counting_source(buf: &mut [u8]) {
        DRAWS.with(|d| {
            let mut d = d.borrow_mut();
            let start: usize = d.iter().sum();
            for (i, b) in buf.iter_mut().enumerate() {
                *b = ((start + i) % 249 + 1) as u8;
            }
            d.push(buf.len());
        });
    }

    fn counted_minter() -> OsMinter {
        DRAWS.with(|d| d.borrow_mut().clear());
        OsMinter {
            key: key(),
            entropy: Entropy::new(counting_source),
        }
    }

    fn draws() -> Vec<usize> {
        DRAWS.with(|d| d.borrow().clone())
    }

    #[test]
    fn a_new_verification_takes_its_id_pin_nonce_and_event_id_from_one_draw() {
        let mut minter = counted_minter();
        let id = minter.request_id();
        let pin = minter.pin(&id, CodeLength::new(4).unwrap());
        let event = minter.event_id();
        assert_eq!(draws(), vec![64], "one system call for all four");
        // The block is 1..=64: the id took 1..=10, the digits 11..=26, the nonce 27..=50, the
        // event id 51..=58. Every byte went to one value only.
        // Two of the id's bytes carry the UUID version and variant in their high bits.
        let mut id_bytes = id.bytes();
        assert_eq!((id_bytes[6] >> 4, id_bytes[8] >> 6), (7, 0b10));
        id_bytes[6] &= 0x0f;
        id_bytes[8] &= 0x3f;
        assert_eq!(id_bytes[6..], (1..=10).collect::<Vec<u8>>()[..]);
        assert_eq!(pin.sealed[..24], (27..=50).collect::<Vec<u8>>()[..]);
        assert_eq!(
            hex::decode(event.as_str()).unwrap(),
            (51..=58).collect::<Vec<u8>>()
        );
        let code = key().unseal_pin(&id, &pin.sealed).unwrap();
        assert_eq!(
            code, "1234",
            "bytes 11, 12, 13, 14 give the digits 1, 2, 3, 4"
        );
        assert_eq!(pin.hash, key().hash_pin(&id, &code));
    }

    #[test]
    fn a_minter_that_draws_nothing_makes_no_system_call() {
        drop(counted_minter());
        assert!(draws().is_empty());
    }

    #[test]
    fn handed_out_bytes_are_erased_and_a_short_remainder_is_not_used() {
        let mut entropy = Entropy::new(counting_source);
        DRAWS.with(|d| d.borrow_mut().clear());
        let first: [u8; 60] = entropy.array();
        assert!(entropy.block[..60].iter().all(|&b| b == 0));
        let second: [u8; 8] = entropy.array();
        assert_eq!(draws(), vec![64, 64], "4 bytes left are too few for 8");
        assert_eq!(first[0], 1);
        assert_eq!(second[0], 65);
        let mut long = [0u8; 100];
        entropy.fill(&mut long);
        assert_eq!(
            draws(),
            vec![64, 64, 100],
            "longer than a block: drawn directly"
        );
    }

    #[test]
    fn secrets_are_16_alphanumerics_and_match_only_their_hash() {
        let s = new_api_secret();
        assert_eq!(s.len(), 16);
        assert!(s.bytes().all(|b| b.is_ascii_alphanumeric()));
        let h = hash_secret(&s);
        assert!(secret_matches(&s, &h));
        assert!(!secret_matches("wrong", &h));
        assert_eq!(new_api_key().len(), 8);
    }

    fn request_id_at(millis: u64) -> RequestId {
        let mut random = [0u8; 10];
        os_random(&mut random);
        request_id_from(millis, random)
    }

    #[test]
    fn request_ids_are_distinct_and_sort_by_creation_time() {
        let first = request_id_at(1_763_769_600_000);
        let second = request_id_at(1_763_769_600_001);
        assert!(RequestId::from_hex(first.as_str()).is_some());
        let uuid = uuid::Uuid::from_bytes(first.bytes());
        assert_eq!(uuid.get_version_num(), 7);
        assert_eq!(uuid.get_variant(), uuid::Variant::RFC4122);
        assert!(first.as_str() < second.as_str());
        assert!(OsMinter::new(key()).request_id().as_str() > second.as_str());
        let same_ms: std::collections::HashSet<_> = (0..1000)
            .map(|_| request_id_at(1_763_769_600_000))
            .collect();
        assert_eq!(same_ms.len(), 1000);
    }

    #[test]
    fn a_sealed_secret_opens_only_for_its_owner_and_never_as_a_pin() {
        let key = key();
        let sealed = key.seal_secret("app-1", "s3cret");
        assert_eq!(key.unseal_secret("app-1", &sealed).unwrap(), "s3cret");
        assert!(key.unseal_secret("app-2", &sealed).is_err());
        let id = RequestId::from_bytes([1; 16]);
        assert!(key.unseal_pin(&id, &sealed).is_err());
        assert!(key
            .unseal_secret("app-1", &key.seal_pin(&id, "1234"))
            .is_err());
    }

    #[test]
    fn a_key_file_is_created_once_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k");
        let a = ServerKey::load_or_create(&path).unwrap();
        let b = ServerKey::load_or_create(&path).unwrap();
        assert_eq!(a.fingerprint(), b.fingerprint());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }
}
