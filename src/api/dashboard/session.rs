//! The dashboard's signed session cookie and its form tokens. Nothing is stored on the server:
//! the cookie names the admin, its end and a random nonce, with a MAC by a key derived from the
//! server key; the MAC also covers a stamp of the admin's password hash, so that a new password
//! (or a removed user) ends every session made with the old one.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::crypto::ServerKey;

pub const COOKIE: &str = "verifyd_session";
/// The login form's own cookie: its token is bound to it, so that another site cannot post
/// the form (login CSRF).
pub const LOGIN_COOKIE: &str = "verifyd_login";
/// How long a session lasts from its login, whatever is done with it.
pub const LIFETIME_SECS: i64 = 8 * 60 * 60;

/// A session that a cookie proved.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Session {
    pub admin: String,
    /// Unix seconds.
    pub expires: i64,
    nonce: [u8; 16],
}

/// What binds a session to the admin's password as it was at the login.
pub fn password_stamp(password_hash: &str) -> [u8; 8] {
    let digest = Sha256::digest(password_hash.as_bytes());
    digest[..8].try_into().expect("8 of 32 bytes")
}

fn session_mac(
    key: &ServerKey,
    admin: &str,
    expires: i64,
    nonce: &[u8],
    stamp: &[u8; 8],
) -> [u8; 32] {
    key.session_mac(&[
        b"session",
        admin.as_bytes(),
        &expires.to_be_bytes(),
        nonce,
        stamp,
    ])
}

impl Session {
    /// A new session for `admin` from `now` (unix seconds).
    pub fn new(admin: &str, now: i64) -> Self {
        let mut nonce = [0u8; 16];
        crate::crypto::os_random(&mut nonce);
        Self {
            admin: admin.to_owned(),
            expires: now + LIFETIME_SECS,
            nonce,
        }
    }

    /// The cookie's value.
    pub fn encode(&self, key: &ServerKey, stamp: &[u8; 8]) -> String {
        let mac = session_mac(key, &self.admin, self.expires, &self.nonce, stamp);
        format!(
            "{}.{}.{}.{}",
            URL_SAFE_NO_PAD.encode(self.admin.as_bytes()),
            self.expires,
            hex::encode(self.nonce),
            URL_SAFE_NO_PAD.encode(mac)
        )
    }

    /// The admin a cookie names, before its MAC is checked: the caller looks up the admin's
    /// password stamp and calls [`Unverified::verify`].
    pub fn parse(value: &str) -> Option<Unverified> {
        let mut parts = value.split('.');
        let admin = String::from_utf8(URL_SAFE_NO_PAD.decode(parts.next()?).ok()?).ok()?;
        let expires: i64 = parts.next()?.parse().ok()?;
        let nonce: [u8; 16] = hex::decode(parts.next()?).ok()?.try_into().ok()?;
        let mac: [u8; 32] = URL_SAFE_NO_PAD
            .decode(parts.next()?)
            .ok()?
            .try_into()
            .ok()?;
        if parts.next().is_some() {
            return None;
        }
        Some(Unverified {
            session: Session {
                admin,
                expires,
                nonce,
            },
            mac,
        })
    }

    /// The token every form of this session carries.
    pub fn csrf_token(&self, key: &ServerKey) -> String {
        hex::encode(&key.session_mac(&[b"csrf", &self.nonce])[..16])
    }

    pub fn csrf_matches(&self, key: &ServerKey, token: &str) -> bool {
        constant_time_eq(&self.csrf_token(key), token)
    }
}

/// A cookie's session whose MAC is not checked yet.
pub struct Unverified {
    session: Session,
    mac: [u8; 32],
}

impl Unverified {
    pub fn admin(&self) -> &str {
        &self.session.admin
    }

    /// The session, when the MAC is right for the admin's password `stamp` and it has not
    /// ended at `now` (unix seconds).
    pub fn verify(self, key: &ServerKey, stamp: &[u8; 8], now: i64) -> Option<Session> {
        let s = &self.session;
        let expected = session_mac(key, &s.admin, s.expires, &s.nonce, stamp);
        let valid: bool = expected.ct_eq(&self.mac).into();
        (valid && now < s.expires).then_some(self.session)
    }
}

/// The login form's token for the nonce of its cookie.
pub fn login_token(key: &ServerKey, nonce: &str) -> String {
    hex::encode(&key.session_mac(&[b"login", nonce.as_bytes()])[..16])
}

pub fn login_token_matches(key: &ServerKey, nonce: &str, token: &str) -> bool {
    nonce.len() == 32 && constant_time_eq(&login_token(key, nonce), token)
}

fn constant_time_eq(a: &str, b: &str) -> bool {
    a.len() == b.len() && bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

/// A `Set-Cookie` value: HttpOnly, SameSite=Strict, for the dashboard's paths only, Secure when
/// the server speaks HTTPS. `max_age` 0 deletes it.
pub fn set_cookie(name: &str, value: &str, max_age: i64, secure: bool) -> String {
    format!(
        "{name}={value}; Path=/dashboard; Max-Age={max_age}; HttpOnly; SameSite=Strict{}",
        if secure { "; Secure" } else { "" }
    )
}

/// The value of cookie `name` in a `Cookie` header.
pub fn cookie<'a>(header: &'a str, name: &str) -> Option<&'a str> {
    header.split(';').find_map(|pair| {
        let (k, v) = pair.trim().split_once('=')?;
        (k == name).then_some(v)
    })
}

/// The value of cookie `name` in a request's `Cookie` headers.
pub fn cookie_in<'a>(headers: &'a axum::http::HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(axum::http::header::COOKIE)
        .iter()
        .filter_map(|h| h.to_str().ok())
        .find_map(|h| cookie(h, name))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> ServerKey {
        ServerKey::from_bytes([7; 32])
    }

    const NOW: i64 = 1_800_000_000;

    #[test]
    fn a_session_cookie_proves_its_admin_until_it_ends() {
        let stamp = password_stamp("$argon2id$v=19$a");
        let cookie = Session::new("ops", NOW).encode(&key(), &stamp);
        let parsed = Session::parse(&cookie).unwrap();
        assert_eq!(parsed.admin(), "ops");
        let session = parsed.verify(&key(), &stamp, NOW + 60).unwrap();
        assert_eq!(session.admin, "ops");
        let late = Session::parse(&cookie).unwrap();
        assert!(late.verify(&key(), &stamp, NOW + LIFETIME_SECS).is_none());
    }

    #[test]
    fn a_changed_password_another_key_or_an_edited_cookie_proves_nothing() {
        let stamp = password_stamp("$argon2id$v=19$a");
        let cookie = Session::new("ops", NOW).encode(&key(), &stamp);
        let other_stamp = password_stamp("$argon2id$v=19$b");
        assert!(Session::parse(&cookie)
            .unwrap()
            .verify(&key(), &other_stamp, NOW)
            .is_none());
        assert!(Session::parse(&cookie)
            .unwrap()
            .verify(&ServerKey::from_bytes([8; 32]), &stamp, NOW)
            .is_none());
        // Another admin's name, or a later end, with the same MAC.
        let parts: Vec<&str> = cookie.split('.').collect();
        let renamed = format!(
            "{}.{}.{}.{}",
            URL_SAFE_NO_PAD.encode("root"),
            parts[1],
            parts[2],
            parts[3]
        );
        assert!(Session::parse(&renamed)
            .unwrap()
            .verify(&key(), &stamp, NOW)
            .is_none());
        let longer = format!("{}.{}.{}.{}", parts[0], NOW + 999_999, parts[2], parts[3]);
        assert!(Session::parse(&longer)
            .unwrap()
            .verify(&key(), &stamp, NOW)
            .is_none());
        for junk in ["", "a.b.c", "a.1.00.AA.extra", &format!("{cookie}x")] {
            let verified = Session::parse(junk).and_then(|u| u.verify(&key(), &stamp, NOW));
            assert!(verified.is_none(), "{junk}");
        }
    }

    #[test]
    fn a_form_token_belongs_to_one_session() {
        let a = Session::new("ops", NOW);
        let b = Session::new("ops", NOW);
        let token = a.csrf_token(&key());
        assert!(a.csrf_matches(&key(), &token));
        assert!(!b.csrf_matches(&key(), &token));
        assert!(!a.csrf_matches(&key(), ""));
    }

    #[test]
    fn a_login_token_belongs_to_its_cookie() {
        let nonce = "0123456789abcdef0123456789abcdef";
        let token = login_token(&key(), nonce);
        assert!(login_token_matches(&key(), nonce, &token));
        assert!(!login_token_matches(
            &key(),
            "fedcba9876543210fedcba9876543210",
            &token
        ));
        assert!(!login_token_matches(&key(), "", &login_token(&key(), "")));
    }

    #[test]
    fn cookies_are_read_by_exact_name() {
        let header = "a=1; verifyd_session=xyz; verifyd_session_old=no";
        assert_eq!(cookie(header, COOKIE), Some("xyz"));
        assert_eq!(cookie(header, "verifyd"), None);
        assert!(set_cookie(COOKIE, "v", 60, true).ends_with("SameSite=Strict; Secure"));
        assert!(!set_cookie(COOKIE, "v", 60, false).contains("Secure"));
    }
}
