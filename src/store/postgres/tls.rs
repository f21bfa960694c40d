//! How the store reaches PostgreSQL: in the clear (the default, for a database on the same
//! host or a private network) or over TLS with the server's certificate checked.
//!
//! `FACELOCK_DATABASE_URL` takes libpq's `sslmode` and `sslrootcert` parameters, with one
//! difference: every mode that encrypts also verifies. `require`, `verify-ca` and
//! `verify-full` check the certificate chain (against the system's roots and the
//! `sslrootcert` file, when given) and the host name; `prefer` and `allow`, which fall back to
//! plaintext when the server declines, are refused: an authentication server should not be
//! talked into sending face descriptors in the clear.

use std::sync::Arc;

use rustls::{pki_types::pem::PemObject, pki_types::CertificateDer, ClientConfig, RootCertStore};
use tokio_postgres::config::SslMode;
use tokio_postgres_rustls::MakeRustlsConnect;

use crate::store::StoreError;

/// A parsed database URL and the connector its connections use.
pub struct Connection {
    pub config: tokio_postgres::Config,
    pub tls: MakeRustlsConnect,
}

/// Parses `url`, taking out what tokio-postgres does not know (`sslrootcert`, the `verify-*`
/// modes), and builds the TLS connector the mode asks for.
pub fn parse(url: &str) -> Result<Connection, StoreError> {
    let (base, query) = url.split_once('?').unwrap_or((url, ""));
    let mut mode = None;
    let mut root_cert = None;
    let mut kept = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        match key {
            "sslmode" => mode = Some(value.to_owned()),
            "sslrootcert" => root_cert = Some(percent_decode(value)),
            _ => kept.push(pair),
        }
    }
    let rebuilt = if kept.is_empty() {
        base.to_owned()
    } else {
        format!("{base}?{}", kept.join("&"))
    };
    let mut config: tokio_postgres::Config = rebuilt
        .parse()
        .map_err(|e| StoreError::backend("reading FACELOCK_DATABASE_URL", e))?;
    let encrypt = match mode.as_deref() {
        None | Some("disable") => false,
        Some("require" | "verify-ca" | "verify-full") => true,
        Some(other) => {
            return Err(StoreError::backend(
                "reading FACELOCK_DATABASE_URL",
                format!(
                    "sslmode={other} is not accepted: use disable (plaintext, for a private \
                     network) or require / verify-full (TLS, certificate verified)"
                ),
            ))
        }
    };
    if root_cert.is_some() && !encrypt {
        return Err(StoreError::backend(
            "reading FACELOCK_DATABASE_URL",
            "sslrootcert is given but sslmode does not ask for TLS: add sslmode=verify-full",
        ));
    }
    config.ssl_mode(if encrypt {
        SslMode::Require
    } else {
        SslMode::Disable
    });
    let roots = if encrypt {
        trusted_roots(root_cert.as_deref())?
    } else {
        RootCertStore::empty()
    };
    let client =
        ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .map_err(|e| StoreError::backend("setting up TLS", e))?
            .with_root_certificates(roots)
            .with_no_client_auth();
    Ok(Connection {
        config,
        tls: MakeRustlsConnect::new(client),
    })
}

/// The system's root certificates, and those of `extra` (a PEM file) when given.
fn trusted_roots(extra: Option<&str>) -> Result<RootCertStore, StoreError> {
    let mut roots = RootCertStore::empty();
    let system = rustls_native_certs::load_native_certs();
    roots.add_parsable_certificates(system.certs);
    if let Some(path) = extra {
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
            .and_then(|certs| certs.collect())
            .map_err(|e| StoreError::backend("reading sslrootcert", format!("{path}: {e}")))?;
        if certs.is_empty() {
            return Err(StoreError::backend(
                "reading sslrootcert",
                format!("{path} holds no PEM certificate"),
            ));
        }
        for cert in certs {
            roots
                .add(cert)
                .map_err(|e| StoreError::backend("reading sslrootcert", e))?;
        }
    }
    if roots.is_empty() {
        return Err(StoreError::backend(
            "setting up TLS",
            "no trusted root certificate: install the system's CA certificates or give sslrootcert",
        ));
    }
    Ok(roots)
}

/// `%2F` and friends in a URL's value.
fn percent_decode(value: &str) -> String {
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let escaped = (bytes[i] == b'%' && i + 2 < bytes.len())
            .then(|| std::str::from_utf8(&bytes[i + 1..i + 3]).ok())
            .flatten()
            .and_then(|hex| u8::from_str_radix(hex, 16).ok());
        if let Some(b) = escaped {
            out.push(b);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plaintext_unless_tls_is_asked_for_and_no_silent_fallback() {
        let plain = parse("postgres://u@db:5432/facelock").unwrap();
        assert_eq!(plain.config.get_ssl_mode(), SslMode::Disable);
        let kept = parse("postgres://u@db/facelock?application_name=x&sslmode=disable").unwrap();
        assert_eq!(kept.config.get_application_name(), Some("x"));
        for mode in ["prefer", "allow", "nonsense"] {
            let refused = parse(&format!("postgres://u@db/f?sslmode={mode}"));
            assert!(refused.is_err(), "{mode}");
        }
        assert!(parse("postgres://u@db/f?sslrootcert=%2Ftmp%2Fca.pem").is_err());
        assert!(
            parse("postgres://u@db/f?sslmode=verify-full&sslrootcert=%2Fno%2Fsuch.pem").is_err()
        );
        assert_eq!(percent_decode("%2Fetc%2Fca.pem"), "/etc/ca.pem");
        assert_eq!(percent_decode("100%"), "100%");
    }
}
