//! Verify v2 applications: an application belongs to an API key and holds an RSA public key. A
//! caller proves it may act for the application with a JWT (RS256) that names the application in
//! its `application_id` claim and is signed with the matching private key, as Vonage's SDKs make
//! them. Applications are created by `verifyd apps create` and are never changed, so a node keeps
//! every one it has seen.

use std::collections::HashMap;
use std::sync::Arc;

use arc_swap::ArcSwap;
use base64::Engine;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};

use crate::crypto::{self, ServerKey};
use crate::store::{AppRecord, AppStore, KeyStore, StoreError};

/// The longest a token may still have to live: the SDKs make them for 15 minutes, and a token
/// that claims years is one nobody should be able to replay for that long.
const MAX_TOKEN_LIFE_SECS: i64 = 24 * 60 * 60;
/// Shorter RSA keys are refused by the signature check (ring), so they are refused at creation.
const MIN_KEY_BITS: u64 = 2048;

/// An application, ready to check tokens.
pub struct App {
    pub application_id: String,
    pub api_key: String,
    pub status_url: Option<String>,
    /// The signature secret, sealed with the server key (`ServerKey::unseal_secret`).
    pub signature_secret_sealed: Vec<u8>,
    key: DecodingKey,
}

/// Why a token was not accepted.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("the token has expired")]
    Expired,
    #[error("the token is not a valid application token: {0}")]
    Invalid(&'static str),
    #[error(transparent)]
    Store(#[from] StoreError),
}

pub struct AppCache {
    store: Arc<dyn AppStore>,
    apps: ArcSwap<HashMap<String, Arc<App>>>,
}

impl AppCache {
    pub fn new(store: Arc<dyn AppStore>) -> Arc<Self> {
        Arc::new(Self {
            store,
            apps: ArcSwap::from_pointee(HashMap::new()),
        })
    }

    /// The application `token` names, once the token is shown to be signed by its key, unexpired
    /// (60 s of leeway for clocks) and made for RS256.
    pub async fn verify(&self, token: &str) -> Result<Arc<App>, TokenError> {
        let application_id = claimed_application(token)?;
        // Every application id is a UUID: anything else is not looked up.
        if uuid::Uuid::try_parse(&application_id).is_err() {
            return Err(TokenError::Invalid("unknown application"));
        }
        let app = self
            .get(&application_id)
            .await?
            .ok_or(TokenError::Invalid("unknown application"))?;
        let mut validation = Validation::new(Algorithm::RS256);
        validation.set_required_spec_claims(&["exp"]);
        validation.validate_nbf = true;
        #[derive(serde::Deserialize)]
        struct Expiry {
            exp: i64,
        }
        match jsonwebtoken::decode::<Expiry>(token, &app.key, &validation) {
            Ok(data) if data.claims.exp - chrono::Utc::now().timestamp() > MAX_TOKEN_LIFE_SECS => {
                Err(TokenError::Invalid("expires too late"))
            }
            Ok(_) => Ok(app),
            Err(e) => Err(match e.kind() {
                jsonwebtoken::errors::ErrorKind::ExpiredSignature => TokenError::Expired,
                jsonwebtoken::errors::ErrorKind::InvalidSignature => {
                    TokenError::Invalid("bad signature")
                }
                jsonwebtoken::errors::ErrorKind::InvalidAlgorithm => {
                    TokenError::Invalid("not RS256")
                }
                jsonwebtoken::errors::ErrorKind::MissingRequiredClaim(_) => {
                    TokenError::Invalid("no exp claim")
                }
                jsonwebtoken::errors::ErrorKind::ImmatureSignature => {
                    TokenError::Invalid("not valid yet")
                }
                _ => TokenError::Invalid("malformed"),
            }),
        }
    }

    /// The application `application_id`, from memory once it has been read.
    pub async fn get(&self, application_id: &str) -> Result<Option<Arc<App>>, StoreError> {
        if let Some(app) = self.apps.load().get(application_id) {
            return Ok(Some(app.clone()));
        }
        let Some(record) = self.store.get_app(application_id).await? else {
            return Ok(None);
        };
        let key = DecodingKey::from_rsa_pem(record.public_key.as_bytes()).map_err(|_| {
            StoreError::Corrupt(format!(
                "application {application_id} has a public key that is not RSA PEM"
            ))
        })?;
        let app = Arc::new(App {
            application_id: record.application_id,
            api_key: record.api_key,
            status_url: record.status_url,
            signature_secret_sealed: record.signature_secret_sealed,
            key,
        });
        self.apps.rcu(|map| {
            let mut map = HashMap::clone(map);
            map.insert(app.application_id.clone(), app.clone());
            map
        });
        Ok(Some(app))
    }
}

/// The `application_id` a token claims, read before its signature can be checked (the claim
/// says which key to check it with).
fn claimed_application(token: &str) -> Result<String, TokenError> {
    let payload = token
        .split('.')
        .nth(1)
        .ok_or(TokenError::Invalid("not a JWT"))?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .map_err(|_| TokenError::Invalid("not a JWT"))?;
    #[derive(serde::Deserialize)]
    struct Claims {
        application_id: String,
    }
    let claims: Claims =
        serde_json::from_slice(&bytes).map_err(|_| TokenError::Invalid("no application_id"))?;
    Ok(claims.application_id)
}

/// An application just created; the only moment its signature secret is printed. `Debug`
/// leaves the secret out.
#[derive(Clone, serde::Serialize)]
pub struct NewApp {
    pub application_id: String,
    pub api_key: String,
    pub status_url: Option<String>,
    pub signature_secret: String,
}

impl std::fmt::Debug for NewApp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewApp")
            .field("application_id", &self.application_id)
            .field("api_key", &self.api_key)
            .field("status_url", &self.status_url)
            .finish_non_exhaustive()
    }
}

/// Why `verifyd apps create` refused.
#[derive(Debug, thiserror::Error)]
pub enum CreateError {
    #[error("no API key {0:?} in this database")]
    UnknownKey(String),
    #[error("this is a private key; give the application's public key (openssl rsa -in private.key -pubout)")]
    PrivateKey,
    #[error("the public key is not an RSA public key in PEM")]
    NotRsaPem,
    #[error("the RSA key has {0} bits; it needs at least 2048")]
    ShortKey(u64),
    #[error("the status URL must be an http or https URL")]
    StatusUrl,
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Registers an application for `api_key` with `public_key` (PEM). Its signature secret is kept
/// sealed with the server key: callbacks are signed with it, so it must be readable again.
pub async fn create_app(
    keys: &dyn KeyStore,
    apps: &dyn AppStore,
    server_key: &ServerKey,
    api_key: &str,
    public_key: &str,
    status_url: Option<&str>,
    now: crate::domain::Instant,
) -> Result<NewApp, CreateError> {
    if keys.get_key(api_key).await?.is_none() {
        return Err(CreateError::UnknownKey(api_key.to_owned()));
    }
    if public_key.contains("PRIVATE KEY-----") {
        return Err(CreateError::PrivateKey);
    }
    DecodingKey::from_rsa_pem(public_key.as_bytes()).map_err(|_| CreateError::NotRsaPem)?;
    let bits = modulus_bits(public_key).ok_or(CreateError::NotRsaPem)?;
    if bits < MIN_KEY_BITS {
        return Err(CreateError::ShortKey(bits));
    }
    if let Some(url) = status_url {
        let parsed = reqwest::Url::parse(url).map_err(|_| CreateError::StatusUrl)?;
        if !matches!(parsed.scheme(), "http" | "https") || parsed.host().is_none() {
            return Err(CreateError::StatusUrl);
        }
    }
    let mut id = [0u8; 16];
    crypto::os_random(&mut id);
    let application_id = uuid::Builder::from_random_bytes(id)
        .into_uuid()
        .hyphenated()
        .to_string();
    let signature_secret = crypto::new_signature_secret();
    apps.insert_app(AppRecord {
        application_id: application_id.clone(),
        api_key: api_key.to_owned(),
        public_key: public_key.to_owned(),
        status_url: status_url.map(str::to_owned),
        signature_secret_sealed: server_key.seal_secret(&application_id, &signature_secret),
        created_at: now,
    })
    .await?;
    Ok(NewApp {
        application_id,
        api_key: api_key.to_owned(),
        status_url: status_url.map(str::to_owned),
        signature_secret,
    })
}

/// The size of an RSA public key in PEM: SubjectPublicKeyInfo (`PUBLIC KEY`) or PKCS#1 (`RSA
/// PUBLIC KEY`).
fn modulus_bits(pem_text: &str) -> Option<u64> {
    use simple_asn1::ASN1Block;
    let block = pem::parse(pem_text).ok()?;
    let mut der = block.contents().to_vec();
    if block.tag() == "PUBLIC KEY" {
        // SEQUENCE { SEQUENCE { algorithm, parameters }, BIT STRING { RSAPublicKey } }
        let parsed = simple_asn1::from_der(&der).ok()?;
        let Some(ASN1Block::Sequence(_, parts)) = parsed.first() else {
            return None;
        };
        let Some(ASN1Block::BitString(_, _, bits)) = parts.get(1) else {
            return None;
        };
        der = bits.clone();
    }
    // RSAPublicKey ::= SEQUENCE { modulus INTEGER, publicExponent INTEGER }
    let parsed = simple_asn1::from_der(&der).ok()?;
    let Some(ASN1Block::Sequence(_, parts)) = parsed.first() else {
        return None;
    };
    match parts.first() {
        Some(ASN1Block::Integer(_, n)) => Some(n.bits()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use simple_asn1::{ASN1Block, BigInt};

    fn pkcs1(modulus: BigInt) -> String {
        let key = ASN1Block::Sequence(
            0,
            vec![
                ASN1Block::Integer(0, modulus),
                ASN1Block::Integer(0, BigInt::from(65537)),
            ],
        );
        let der = simple_asn1::to_der(&key).unwrap();
        pem::encode(&pem::Pem::new("RSA PUBLIC KEY", der))
    }

    #[test]
    fn the_size_of_a_public_key_is_read_from_either_pem_form() {
        let spki = include_str!("../../tests/fixtures/vonage-test-key.pub.pem");
        assert_eq!(modulus_bits(spki), Some(2048));
        let short = BigInt::from(1) << 1023usize;
        assert_eq!(modulus_bits(&pkcs1(short)), Some(1024));
        let long = BigInt::from(1) << 3071usize;
        assert_eq!(modulus_bits(&pkcs1(long)), Some(3072));
        assert_eq!(modulus_bits("not pem"), None);
    }
}
