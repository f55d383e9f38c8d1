//! TLS to PostgreSQL with rustls, configured as libpq is: `sslmode` and `sslrootcert` in the
//! URL's query (docs/cluster.md, "TLS to PostgreSQL").
//!
//! tokio-postgres reads `sslmode=disable|prefer|require` itself; `verify-ca`, `verify-full` and
//! `sslrootcert` it does not know, so they are taken out of the URL here and become the
//! certificate checks of the rustls client.

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;

use anyhow::{bail, Context};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, Error, RootCertStore, SignatureScheme};
use tokio_postgres::config::SslMode;
use tokio_postgres_rustls::MakeRustlsConnect;

/// How the server's certificate is checked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verify {
    /// Not at all (`disable`, `prefer`, `require`): the connection is encrypted, not
    /// authenticated, as with libpq.
    Nothing,
    /// Its chain, to a root of `sslrootcert` (`verify-ca`).
    Chain,
    /// Its chain and that it names the host connected to (`verify-full`).
    ChainAndHost,
}

/// A PostgreSQL URL's connection settings and its TLS.
pub struct Connection {
    pub config: tokio_postgres::Config,
    pub tls: MakeRustlsConnect,
}

/// Reads `url` (`postgres://…?sslmode=verify-full&sslrootcert=/etc/verifyd/pg-ca.pem`).
pub fn connection(url: &str) -> anyhow::Result<Connection> {
    let (base, query) = url.split_once('?').unwrap_or((url, ""));
    // The other parameters are passed on as written: tokio-postgres decodes `%20`, and a `+`
    // is a `+` to it, as to libpq.
    let mut kept: Vec<&str> = Vec::new();
    let mut verify = Verify::Nothing;
    let mut mode = None;
    let mut named: Option<String> = None;
    let mut root: Option<PathBuf> = None;
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        let value = percent_decode(value)?;
        match (percent_decode(key)?.as_str(), value.as_str()) {
            ("sslmode", given) => {
                named = Some(given.to_owned());
                match given {
                    "verify-ca" => (mode, verify) = (Some(SslMode::Require), Verify::Chain),
                    "verify-full" => {
                        (mode, verify) = (Some(SslMode::Require), Verify::ChainAndHost)
                    }
                    "allow" => bail!(
                        "sslmode=allow is not supported: use prefer, require, verify-ca or \
                         verify-full"
                    ),
                    _ => kept.push(pair),
                }
            }
            ("sslrootcert", path) => root = Some(PathBuf::from(path)),
            _ => kept.push(pair),
        }
    }
    match (named.as_deref(), &root) {
        (None, Some(_)) => bail!(
            "sslrootcert is given without sslmode: add sslmode=verify-full (or verify-ca) to \
             the PostgreSQL URL"
        ),
        // As libpq: with a root certificate, `require` (and `prefer`) check the chain.
        (Some("require" | "prefer"), Some(_)) => verify = Verify::Chain,
        _ => {}
    }
    let rebuilt = if kept.is_empty() {
        base.to_owned()
    } else {
        format!("{base}?{}", kept.join("&"))
    };
    let mut config = tokio_postgres::Config::from_str(&rebuilt)
        .context("the PostgreSQL URL is not valid (postgres://user@host:port/database)")?;
    match mode {
        Some(mode) => {
            config.ssl_mode(mode);
        }
        // Without sslmode, no TLS: libpq would try it first (prefer), which encrypts against
        // a passive listener only and costs every connection a handshake; verifyd asks for it
        // to be named.
        None if named.is_none() => {
            config.ssl_mode(SslMode::Disable);
        }
        None => {}
    }
    if verify != Verify::Nothing && root.is_none() {
        bail!(
            "sslmode=verify-ca and verify-full check the server's certificate against \
             sslrootcert: add sslrootcert=/path/to/ca.pem to the PostgreSQL URL"
        );
    }
    let tls = MakeRustlsConnect::new(client_config(verify, root.as_deref())?);
    Ok(Connection { config, tls })
}

/// `%XX` sequences decoded; a `+` stays a `+`, as libpq reads a URL.
fn percent_decode(text: &str) -> anyhow::Result<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = text
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .with_context(|| format!("{text:?}: a % must be followed by two hex digits"))?;
            out.push(hex);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).with_context(|| format!("{text:?} is not UTF-8 once decoded"))
}

fn client_config(verify: Verify, root: Option<&Path>) -> anyhow::Result<rustls::ClientConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .context("TLS to PostgreSQL")?;
    let verifier: Arc<dyn ServerCertVerifier> = match (verify, root) {
        (Verify::Nothing, _) | (_, None) => Arc::new(Unverified(provider)),
        (_, Some(path)) => {
            let chain =
                WebPkiServerVerifier::builder_with_provider(Arc::new(roots(path)?), provider)
                    .build()
                    .context("sslrootcert")?;
            if verify == Verify::ChainAndHost {
                chain
            } else {
                Arc::new(AnyHost(chain))
            }
        }
    };
    Ok(builder
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth())
}

/// The certificates of the PEM file `path`, as roots.
fn roots(path: &Path) -> anyhow::Result<RootCertStore> {
    use rustls::pki_types::pem::PemObject;
    let mut store = RootCertStore::empty();
    let certs = CertificateDer::pem_file_iter(path)
        .with_context(|| format!("sslrootcert {} cannot be read", path.display()))?;
    for cert in certs {
        let cert = cert.with_context(|| format!("sslrootcert {}", path.display()))?;
        store
            .add(cert)
            .with_context(|| format!("sslrootcert {}", path.display()))?;
    }
    if store.is_empty() {
        bail!("sslrootcert {} holds no certificate", path.display());
    }
    Ok(store)
}

/// `verify-ca`: the chain is checked, the name in the certificate is not.
#[derive(Debug)]
struct AnyHost(Arc<WebPkiServerVerifier>);

impl ServerCertVerifier for AnyHost {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, Error> {
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
        {
            Err(Error::InvalidCertificate(CertificateError::NotValidForName))
            | Err(Error::InvalidCertificate(CertificateError::NotValidForNameContext { .. })) => {
                Ok(ServerCertVerified::assertion())
            }
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

/// `require` (and `prefer`): encrypted, with any certificate, as libpq does without
/// `sslrootcert`. The handshake's signatures are still checked, so the key is the certificate's.
#[derive(Debug)]
struct Unverified(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for Unverified {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn libpq_parameters_tokio_postgres_does_not_read_are_taken_out_of_the_url() {
        let c = connection("postgres://u@db.internal:5433/v?sslmode=require&application_name=x")
            .unwrap();
        assert_eq!(c.config.get_ssl_mode(), SslMode::Require);
        assert_eq!(c.config.get_application_name(), Some("x"));
        let e = connection("postgres://u@db/v?sslmode=verify-full")
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("sslrootcert"), "{e}");
        let e = connection("postgres://u@db/v?sslmode=verify-full&sslrootcert=/nonexistent.pem")
            .err()
            .unwrap();
        assert!(format!("{e:#}").contains("/nonexistent.pem"), "{e:#}");
        assert!(connection("postgres://u@db/v?sslmode=allow").is_err());
        let spaced =
            connection("postgres://u@db/v?options=-c%20statement_timeout%3D5000&sslmode=require")
                .unwrap();
        assert_eq!(
            spaced.config.get_options(),
            Some("-c statement_timeout=5000")
        );
        assert!(connection("postgres://u@db/v?sslrootcert=/etc/ca.pem").is_err());
        let plain = connection("postgres://u@db/v").unwrap();
        assert_eq!(plain.config.get_ssl_mode(), SslMode::Disable);
        let prefer = connection("postgres://u@db/v?sslmode=prefer").unwrap();
        assert_eq!(prefer.config.get_ssl_mode(), SslMode::Prefer);
    }
}
