//! Minting and validating access tokens.
//!
//! Validation pins the configured algorithm (so `alg: none` and algorithm swaps fail), requires
//! `exp`, `iat` and `sub`, and allows 30 seconds of clock skew.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::{errors::ErrorKind, Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use crate::{config::Secret, domain::Role, error::TokenProblem};

/// The claims of an access token.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Claims {
    /// The user id.
    pub sub: String,
    pub iat: i64,
    pub exp: i64,
    /// Unique token id.
    pub jti: String,
    /// The similarity (0-100) of the face match that earned the token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub similarity: Option<f32>,
    pub role: Role,
    /// The user's generation: a user deleted and registered again gets a new one, so tokens of
    /// the deleted user stay refused.
    pub ugen: i64,
}

pub struct TokenService {
    algorithm: Algorithm,
    encoding: EncodingKey,
    decoding: DecodingKey,
    ttl: Duration,
}

/// A freshly minted token.
pub struct Issued {
    pub token: String,
    pub claims: Claims,
}

impl TokenService {
    pub fn hmac(secret: &Secret, algorithm: Algorithm, ttl: Duration) -> Self {
        Self {
            algorithm,
            encoding: EncodingKey::from_secret(secret.expose().as_bytes()),
            decoding: DecodingKey::from_secret(secret.expose().as_bytes()),
            ttl,
        }
    }

    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    pub fn issue(
        &self,
        user_id: &str,
        ugen: i64,
        role: Role,
        similarity: Option<f32>,
    ) -> Result<Issued, String> {
        let now = unix_now();
        let claims = Claims {
            sub: user_id.to_owned(),
            iat: now,
            exp: now + self.ttl.as_secs() as i64,
            jti: uuid::Uuid::new_v4().to_string(),
            similarity: similarity.map(|s| (s * 100.0).round() / 100.0),
            role,
            ugen,
        };
        let header = Header {
            typ: Some("JWT".into()),
            ..Header::new(self.algorithm)
        };
        let token = jsonwebtoken::encode(&header, &claims, &self.encoding)
            .map_err(|e| format!("signing token: {e}"))?;
        Ok(Issued { token, claims })
    }

    pub fn validate(&self, token: &str) -> Result<Claims, TokenProblem> {
        if token.len() > 8192 || token.split('.').count() != 3 {
            return Err(TokenProblem::Malformed);
        }
        let mut validation = Validation::new(self.algorithm);
        validation.algorithms = vec![self.algorithm];
        validation.leeway = 30;
        validation.set_required_spec_claims(&["exp", "iat", "sub"]);
        jsonwebtoken::decode::<Claims>(token, &self.decoding, &validation)
            .map(|data| data.claims)
            .map_err(|e| match e.kind() {
                ErrorKind::ExpiredSignature => TokenProblem::Expired,
                ErrorKind::InvalidToken | ErrorKind::Base64(_) | ErrorKind::Utf8(_) => {
                    TokenProblem::Malformed
                }
                _ => TokenProblem::Invalid,
            })
    }
}

pub fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine as _};

    use super::*;

    fn service() -> TokenService {
        TokenService::hmac(
            &Secret::new("0123456789abcdef0123456789abcdef0123456789"),
            Algorithm::HS256,
            Duration::from_secs(600),
        )
    }

    #[test]
    fn round_trip() {
        let s = service();
        let issued = s.issue("alice", 7, Role::User, Some(99.123)).unwrap();
        let claims = s.validate(&issued.token).unwrap();
        assert_eq!(claims, issued.claims);
        assert_eq!(claims.similarity, Some(99.12));
    }

    #[test]
    fn refuses_alg_none_and_other_keys() {
        let s = service();
        let header = URL_SAFE_NO_PAD.encode(r#"{"alg":"none","typ":"JWT"}"#);
        let body = URL_SAFE_NO_PAD.encode(
            r#"{"sub":"alice","iat":1,"exp":99999999999,"jti":"x","role":"admin","ugen":1}"#,
        );
        assert!(s.validate(&format!("{header}.{body}.")).is_err());

        let other = TokenService::hmac(
            &Secret::new("another-secret-another-secret-another-secret"),
            Algorithm::HS256,
            Duration::from_secs(600),
        );
        let forged = other.issue("alice", 1, Role::Admin, None).unwrap();
        assert_eq!(s.validate(&forged.token), Err(TokenProblem::Invalid));

        let hs512 = TokenService::hmac(
            &Secret::new("0123456789abcdef0123456789abcdef0123456789"),
            Algorithm::HS512,
            Duration::from_secs(600),
        );
        let swapped = hs512.issue("alice", 1, Role::User, None).unwrap();
        assert_eq!(s.validate(&swapped.token), Err(TokenProblem::Invalid));
        assert_eq!(s.validate("not-a-token"), Err(TokenProblem::Malformed));
    }
}
