//! Admin passwords: argon2id with the crate's defaults (19 MiB, 2 passes, 1 lane, as OWASP
//! recommends), stored as PHC strings that carry their own parameters and salt.

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;

/// Shortest password `verifyd admin create` takes.
pub const MIN_LENGTH: usize = 12;

pub fn hash(password: &str) -> anyhow::Result<String> {
    let mut salt = [0u8; 16];
    crate::crypto::os_random(&mut salt);
    let salt = SaltString::encode_b64(&salt).map_err(|e| anyhow::anyhow!("salt: {e}"))?;
    Ok(Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map_err(|e| anyhow::anyhow!("cannot hash the password: {e}"))?
        .to_string())
}

/// Whether `password` is the one `stored` was made from. A stored value that is not a PHC
/// string matches nothing.
pub fn matches(password: &str, stored: &str) -> bool {
    let Ok(parsed) = PasswordHash::new(stored) else {
        return false;
    };
    Argon2::default()
        .verify_password(password.as_bytes(), &parsed)
        .is_ok()
}

static DUMMY: std::sync::OnceLock<String> = std::sync::OnceLock::new();

fn dummy() -> &'static str {
    DUMMY.get_or_init(|| hash("not a password of anyone").unwrap_or_default())
}

/// Makes the hash [`matches_nothing`] checks against, so that the first login to an unknown
/// name does not take two hashes' time.
pub fn warm() {
    dummy();
}

/// Spends the time of one check, for a login to a name that does not exist: answering it
/// faster would tell which names do.
pub fn matches_nothing(password: &str) {
    let _ = matches(password, dummy());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_password_matches_its_own_hash_only() {
        let stored = hash("correct horse battery").unwrap();
        assert!(stored.starts_with("$argon2id$"));
        assert!(matches("correct horse battery", &stored));
        assert!(!matches("correct horse batterY", &stored));
        assert!(!matches("correct horse battery", "plain text"));
        assert_ne!(stored, hash("correct horse battery").unwrap(), "salted");
    }
}
