//! How tokens are signed and issued.

use std::time::Duration;

use super::{parse, ConfigError};
use crate::secret::Secret;

/// How access tokens are signed (`ALGORITHM`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TokenAlgorithm {
    /// ECDSA P-256 with keys kept in the store and published as a JWKS: backends verify
    /// tokens without being able to mint them. The default when `SECRET_KEY` is unset.
    Es256,
    /// A shared secret, as the original server: every verifier can also forge.
    Hs256,
    Hs384,
    Hs512,
}

impl TokenAlgorithm {
    fn parse(raw: &str) -> Result<Self, ConfigError> {
        match raw.trim().to_ascii_uppercase().as_str() {
            "ES256" => Ok(Self::Es256),
            "HS256" => Ok(Self::Hs256),
            "HS384" => Ok(Self::Hs384),
            "HS512" => Ok(Self::Hs512),
            other => Err(ConfigError::new(
                "ALGORITHM",
                format!("{other:?} is not supported; use ES256, HS256, HS384 or HS512"),
            )),
        }
    }

    pub fn jwt(self) -> jsonwebtoken::Algorithm {
        match self {
            Self::Es256 => jsonwebtoken::Algorithm::ES256,
            Self::Hs256 => jsonwebtoken::Algorithm::HS256,
            Self::Hs384 => jsonwebtoken::Algorithm::HS384,
            Self::Hs512 => jsonwebtoken::Algorithm::HS512,
        }
    }

    pub fn is_hmac(self) -> bool {
        self != Self::Es256
    }
}

/// How tokens are issued.
#[derive(Clone, Debug)]
pub struct TokenSettings {
    pub algorithm: TokenAlgorithm,
    /// `SECRET_KEY`: the shared secret of the HMAC algorithms. With an HMAC `ALGORITHM` and no
    /// secret, one is generated and kept in the data folder.
    pub secret_key: Option<Secret>,
    pub access_token_ttl: Duration,
    /// Refresh tokens expire this long after the face login that started their family.
    pub refresh_token_ttl: Duration,
    /// `iss` of issued tokens; `None`: the server's own base URL.
    pub issuer: Option<String>,
    /// Audiences a token may be issued for; the first is the default.
    pub audiences: Vec<String>,
    /// Whether `FACELOCK_AUDIENCE` was set: in HMAC mode tokens carry `aud` only then, as the
    /// original's did not (some JWT libraries refuse an `aud` they were not told to expect).
    pub audience_configured: bool,
}

pub(super) fn from_lookup(
    get: &impl Fn(&str) -> Option<String>,
) -> Result<TokenSettings, ConfigError> {
    let secret_key = get("SECRET_KEY").map(Secret::new);
    if let Some(key) = &secret_key {
        if key.expose().trim().is_empty() {
            return Err(ConfigError::new(
                "SECRET_KEY",
                "is set but empty: give the shared secret (at least 32 characters), or remove \
                 the variable to sign ES256 tokens",
            ));
        }
        if key.expose().len() < 32 {
            return Err(ConfigError::new(
                "SECRET_KEY",
                "must be at least 32 characters; leave it unset to have a key generated",
            ));
        }
    }
    let algorithm = match get("ALGORITHM") {
        Some(alg) => TokenAlgorithm::parse(&alg)?,
        // The original's configuration (a secret) keeps the original's tokens.
        None if secret_key.is_some() => TokenAlgorithm::Hs256,
        None => TokenAlgorithm::Es256,
    };
    let days: u64 = parse(get, "FACELOCK_REFRESH_TOKEN_EXPIRE_DAYS", 14)?;
    if !(1..=365).contains(&days) {
        return Err(ConfigError::new(
            "FACELOCK_REFRESH_TOKEN_EXPIRE_DAYS",
            "must be between 1 and 365",
        ));
    }
    let minutes: u64 = parse(get, "ACCESS_TOKEN_EXPIRE_MINUTES", 30)?;
    if minutes == 0 || minutes > 24 * 60 {
        return Err(ConfigError::new(
            "ACCESS_TOKEN_EXPIRE_MINUTES",
            "must be between 1 and 1440",
        ));
    }
    let (audiences, audience_configured) = match get("FACELOCK_AUDIENCE") {
        Some(raw) => {
            let list: Vec<String> = raw
                .split(',')
                .map(|a| a.trim().to_owned())
                .filter(|a| !a.is_empty())
                .collect();
            if list.is_empty() {
                return Err(ConfigError::new("FACELOCK_AUDIENCE", "lists no audience"));
            }
            (list, true)
        }
        None => (vec!["facelock".to_owned()], false),
    };
    Ok(TokenSettings {
        algorithm,
        secret_key,
        access_token_ttl: Duration::from_secs(minutes * 60),
        refresh_token_ttl: Duration::from_secs(days * 24 * 3600),
        issuer: get("FACELOCK_ISSUER").map(|i| i.trim().trim_end_matches('/').to_owned()),
        audiences,
        audience_configured,
    })
}
