//! Access tokens (JWT, RFC 9068 profile, RFC 8725 practices) and refresh tokens.
//!
//! Validation pins the configured algorithm (so `alg: none`, algorithm swaps and key confusion
//! fail), requires `typ: at+jwt` and a known `kid` for ES256, checks `iss`, `aud`, `exp` and
//! `nbf` with 30 seconds of leeway, refuses tokens that name their own keys (`jku`, `x5u`,
//! `jwk`), and refuses revoked `jti`s.
//!
//! Refresh tokens are 256 random bits, stored only as SHA-256 hashes, single-use: each use
//! returns the next token of the same family, and presenting a used one revokes the family.
//! A family expires a fixed time after the face login that started it.

use std::{
    sync::Arc,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine as _};
use jsonwebtoken::{errors::ErrorKind, Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::keyring::KeyRing;
use crate::{
    config::{Secret, Settings},
    domain::Role,
    error::TokenProblem,
    store::{NewRefreshToken, RefreshUse, Store, UserRecord},
};

/// Clock skew tolerated on `exp`, `nbf` and `iat`.
const LEEWAY_SECS: u64 = 30;
/// Refresh tokens start with this, so a token is recognisable in logs and by `/revoke`.
const REFRESH_PREFIX: &str = "flr_";

/// The claims of an access token.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Claims {
    pub iss: String,
    /// The user id.
    pub sub: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aud: Option<String>,
    pub iat: i64,
    pub nbf: i64,
    pub exp: i64,
    /// Unique token id, the handle for revocation.
    pub jti: String,
    /// RFC 9068 asks for the client the token was issued to; Face Lock's clients are public
    /// apps, so this is the audience the token is for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    pub role: Role,
    /// How the user authenticated: `face` (RFC 8176).
    #[serde(default)]
    pub amr: Vec<String>,
    /// The similarity (0-100) of the face match that started this session.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub similarity: Option<f32>,
    /// The user's generation: a user deleted and registered again gets a new one, so tokens of
    /// the deleted user stay refused.
    pub ugen: i64,
}

enum Signer {
    Hmac {
        encoding: EncodingKey,
        decoding: Arc<DecodingKey>,
    },
    Keys(KeyRing),
}

pub struct TokenService {
    algorithm: Algorithm,
    signer: Signer,
    issuer: String,
    audiences: Vec<String>,
    /// In HMAC mode tokens carry `aud` only when audiences were configured.
    with_audience: bool,
    ttl: Duration,
    refresh_ttl: Duration,
    store: Arc<dyn Store>,
}

/// A freshly minted access token.
pub struct Issued {
    pub token: String,
    pub claims: Claims,
}

/// An access token and the refresh token that continues the session.
pub struct Session {
    pub access: Issued,
    pub refresh_token: String,
    pub expires_in: u64,
}

/// Why a refresh was refused, as RFC 6749 names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GrantError {
    /// Unknown, expired, used or revoked refresh token, or a deleted user.
    InvalidGrant,
    /// Something on our side.
    ServerError,
}

/// The answer to an introspection request (RFC 7662).
#[derive(Debug, Clone, Serialize, Default, utoipa::ToSchema)]
pub struct Introspection {
    pub active: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token_type: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sub: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub aud: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub iss: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exp: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub iat: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nbf: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub jti: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub role: Option<Role>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub amr: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub similarity: Option<f32>,
}

impl TokenService {
    /// Builds the issuer from settings: a key ring in the store for ES256, or the HMAC secret.
    pub async fn from_settings(
        settings: &Settings,
        store: Arc<dyn Store>,
        hmac_secret: Option<Secret>,
    ) -> Result<Self, String> {
        let algorithm = settings.algorithm.jwt();
        let signer = if settings.algorithm.is_hmac() {
            let secret = hmac_secret.ok_or("an HMAC algorithm needs a secret")?;
            Signer::Hmac {
                encoding: EncodingKey::from_secret(secret.expose().as_bytes()),
                decoding: Arc::new(DecodingKey::from_secret(secret.expose().as_bytes())),
            }
        } else {
            Signer::Keys(KeyRing::open(store.clone(), settings.access_token_ttl).await?)
        };
        Ok(Self {
            algorithm,
            with_audience: !settings.algorithm.is_hmac() || settings.audience_configured,
            signer,
            issuer: settings.issuer(),
            audiences: settings.audiences.clone(),
            ttl: settings.access_token_ttl,
            refresh_ttl: settings.refresh_token_ttl,
            store,
        })
    }

    pub fn algorithm(&self) -> Algorithm {
        self.algorithm
    }

    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// The audience a request asks for, or the default; `None` if it is not configured.
    pub fn audience(&self, requested: Option<&str>) -> Option<String> {
        match requested {
            None => self.audiences.first().cloned(),
            Some(a) => self.audiences.iter().find(|c| *c == a).cloned(),
        }
    }

    /// Public keys for the JWKS (empty with a shared secret).
    pub async fn jwks(&self) -> Vec<serde_json::Value> {
        match &self.signer {
            Signer::Hmac { .. } => Vec::new(),
            Signer::Keys(ring) => ring.jwks().await,
        }
    }

    /// Re-reads the signing keys now (after `facelock keys rotate`, servers otherwise pick the
    /// new key up within 30 seconds).
    pub async fn reload_keys(&self) -> Result<(), String> {
        match &self.signer {
            Signer::Hmac { .. } => Ok(()),
            Signer::Keys(ring) => ring.reload().await,
        }
    }

    /// Periodic upkeep: reload rotated keys, forget expired revocations and refresh tokens.
    pub async fn maintain(&self) {
        if let Signer::Keys(ring) = &self.signer {
            ring.refresh_if_due().await;
        }
        if let Err(e) = self.store.purge_expired_tokens(unix_now()).await {
            tracing::warn!(error = %e, "could not purge expired tokens");
        }
    }

    pub async fn issue(
        &self,
        user: &UserRecord,
        role: Role,
        similarity: Option<f32>,
        audience: &str,
    ) -> Result<Issued, String> {
        let now = unix_now();
        let claims = Claims {
            iss: self.issuer.clone(),
            sub: user.user_id.to_string(),
            aud: self.with_audience.then(|| audience.to_owned()),
            iat: now,
            nbf: now,
            exp: now + self.ttl.as_secs() as i64,
            jti: uuid::Uuid::new_v4().to_string(),
            client_id: self.with_audience.then(|| audience.to_owned()),
            role,
            amr: vec!["face".into()],
            similarity: similarity.map(|s| (s * 100.0).round() / 100.0),
            ugen: user.rowid,
        };
        let token = match &self.signer {
            Signer::Hmac { encoding, .. } => {
                let header = Header {
                    typ: Some("JWT".into()),
                    ..Header::new(self.algorithm)
                };
                jsonwebtoken::encode(&header, &claims, encoding)
            }
            Signer::Keys(ring) => {
                let (kid, key) = ring.signing_key().await?;
                let header = Header {
                    typ: Some("at+jwt".into()),
                    kid: Some(kid),
                    ..Header::new(self.algorithm)
                };
                jsonwebtoken::encode(&header, &claims, &key)
            }
        }
        .map_err(|e| format!("signing token: {e}"))?;
        Ok(Issued { token, claims })
    }

    /// Checks signature and claims; does not consult revocation.
    async fn decode(&self, token: &str, check_exp: bool) -> Result<Claims, TokenProblem> {
        if token.len() > 8192 || token.split('.').count() != 3 {
            return Err(TokenProblem::Malformed);
        }
        let header = jsonwebtoken::decode_header(token).map_err(|_| TokenProblem::Malformed)?;
        if header.alg != self.algorithm
            || header.jku.is_some()
            || header.x5u.is_some()
            || header.jwk.is_some()
        {
            return Err(TokenProblem::Invalid);
        }
        let key: Arc<DecodingKey> = match &self.signer {
            Signer::Hmac { decoding, .. } => decoding.clone(),
            Signer::Keys(ring) => {
                let typ_ok = header.typ.as_deref().is_some_and(|t| {
                    t.eq_ignore_ascii_case("at+jwt") || t.eq_ignore_ascii_case("application/at+jwt")
                });
                let kid = header.kid.as_deref().ok_or(TokenProblem::Invalid)?;
                if !typ_ok {
                    return Err(TokenProblem::Invalid);
                }
                ring.verifying_key(kid).await.ok_or(TokenProblem::Invalid)?
            }
        };
        let mut validation = Validation::new(self.algorithm);
        validation.algorithms = vec![self.algorithm];
        validation.leeway = LEEWAY_SECS;
        validation.validate_exp = check_exp;
        validation.validate_nbf = true;
        validation.set_issuer(&[&self.issuer]);
        if self.with_audience {
            validation.set_audience(&self.audiences);
            validation.set_required_spec_claims(&["exp", "iat", "sub", "iss", "aud"]);
        } else {
            validation.validate_aud = false;
            validation.set_required_spec_claims(&["exp", "iat", "sub", "iss"]);
        }
        let claims = jsonwebtoken::decode::<Claims>(token, &key, &validation)
            .map(|data| data.claims)
            .map_err(|e| match e.kind() {
                ErrorKind::ExpiredSignature => TokenProblem::Expired,
                ErrorKind::ImmatureSignature => TokenProblem::Invalid,
                ErrorKind::InvalidToken | ErrorKind::Base64(_) | ErrorKind::Utf8(_) => {
                    TokenProblem::Malformed
                }
                _ => TokenProblem::Invalid,
            })?;
        if claims.iat > unix_now() + LEEWAY_SECS as i64 {
            return Err(TokenProblem::Invalid);
        }
        Ok(claims)
    }

    /// A valid, unrevoked access token's claims.
    pub async fn validate(&self, token: &str) -> Result<Claims, TokenProblem> {
        let claims = self.decode(token, true).await?;
        match self.store.is_access_token_revoked(&claims.jti).await {
            Ok(false) => Ok(claims),
            Ok(true) => Err(TokenProblem::Revoked),
            Err(e) => {
                // Fail closed: a token whose revocation cannot be checked is not accepted.
                tracing::error!(error = %e, "could not check token revocation");
                Err(TokenProblem::Invalid)
            }
        }
    }

    /// Starts a refresh-token family for a face login.
    pub async fn start_session(
        &self,
        user: &UserRecord,
        access: Issued,
        audience: &str,
    ) -> Result<Session, String> {
        let now = unix_now();
        let family = uuid::Uuid::new_v4().to_string();
        let expires_at = now + self.refresh_ttl.as_secs() as i64;
        let refresh_token = self
            .new_refresh(user.rowid, &family, audience, now, expires_at)
            .await?;
        Ok(Session {
            access,
            refresh_token,
            expires_in: self.ttl.as_secs(),
        })
    }

    async fn new_refresh(
        &self,
        user_rowid: i64,
        family: &str,
        audience: &str,
        now: i64,
        expires_at: i64,
    ) -> Result<String, String> {
        let mut raw = [0u8; 32];
        getrandom::fill(&mut raw).map_err(|e| format!("no system randomness: {e}"))?;
        let token = format!("{REFRESH_PREFIX}{}", URL_SAFE_NO_PAD.encode(raw));
        self.store
            .add_refresh_token(NewRefreshToken {
                token_hash: hash(&token),
                family_id: family.to_owned(),
                user_rowid,
                audience: audience.to_owned(),
                created_at: now,
                expires_at,
            })
            .await
            .map_err(|e| e.to_string())?;
        Ok(token)
    }

    /// `grant_type=refresh_token`: spends the refresh token, returns the next pair.
    /// `role_of` gives the user's current role.
    pub async fn refresh(
        &self,
        refresh_token: &str,
        role_of: impl Fn(&UserRecord) -> Role,
    ) -> Result<Session, GrantError> {
        let now = unix_now();
        let server = |e: String| {
            tracing::error!(error = %e, "refresh failed");
            GrantError::ServerError
        };
        let record = match self
            .store
            .use_refresh_token(&hash(refresh_token), now)
            .await
        {
            Ok(RefreshUse::Fresh(record)) => record,
            Ok(RefreshUse::Replayed(record)) => {
                tracing::warn!(family = %record.family_id, user_id = %record.user_id, "a used refresh token was presented again: the session is revoked");
                return Err(GrantError::InvalidGrant);
            }
            Ok(RefreshUse::Unknown) => return Err(GrantError::InvalidGrant),
            Err(e) => return Err(server(e.to_string())),
        };
        if record.expires_at <= now {
            return Err(GrantError::InvalidGrant);
        }
        let user = match self
            .store
            .current_user(&record.user_id, record.user_rowid)
            .await
        {
            Ok(Some(user)) => user,
            Ok(_) => return Err(GrantError::InvalidGrant),
            Err(e) => return Err(server(e.to_string())),
        };
        let access = self
            .issue(&user, role_of(&user), None, &record.audience)
            .await
            .map_err(server)?;
        let refresh_token = self
            .new_refresh(
                user.rowid,
                &record.family_id,
                &record.audience,
                now,
                record.expires_at,
            )
            .await
            .map_err(server)?;
        Ok(Session {
            access,
            refresh_token,
            expires_in: self.ttl.as_secs(),
        })
    }

    /// RFC 7009: revokes a refresh token (its whole family) or an access token (its `jti`,
    /// until it expires). Unknown and invalid tokens are ignored.
    pub async fn revoke(&self, token: &str) -> Result<(), String> {
        let now = unix_now();
        if token.starts_with(REFRESH_PREFIX) {
            if let Some(record) = self
                .store
                .refresh_token(&hash(token))
                .await
                .map_err(|e| e.to_string())?
            {
                self.store
                    .revoke_refresh_family(&record.family_id, now)
                    .await
                    .map_err(|e| e.to_string())?;
            }
            return Ok(());
        }
        if let Ok(claims) = self.decode(token, false).await {
            if claims.exp + LEEWAY_SECS as i64 > now {
                self.store
                    .revoke_access_token(&claims.jti, claims.exp + LEEWAY_SECS as i64)
                    .await
                    .map_err(|e| e.to_string())?;
            }
        }
        Ok(())
    }

    /// RFC 7662 for either kind of token; a token of a deleted user is inactive.
    pub async fn introspect(&self, token: &str) -> Introspection {
        let now = unix_now();
        if token.starts_with(REFRESH_PREFIX) {
            let Ok(Some(r)) = self.store.refresh_token(&hash(token)).await else {
                return Introspection::default();
            };
            let live = r.used_at.is_none() && r.revoked_at.is_none() && r.expires_at > now;
            let user_ok = matches!(
                self.store.current_user(&r.user_id, r.user_rowid).await,
                Ok(Some(_))
            );
            if !(live && user_ok) {
                return Introspection::default();
            }
            return Introspection {
                active: true,
                token_type: Some("refresh_token".into()),
                sub: Some(r.user_id.to_string()),
                username: Some(r.user_id.to_string()),
                aud: Some(r.audience.clone()),
                client_id: Some(r.audience),
                iss: Some(self.issuer.clone()),
                exp: Some(r.expires_at),
                iat: Some(r.created_at),
                ..Default::default()
            };
        }
        let Ok(c) = self.validate(token).await else {
            return Introspection::default();
        };
        let Ok(user_id) = crate::domain::UserId::parse(&c.sub) else {
            return Introspection::default();
        };
        if !matches!(self.store.current_user(&user_id, c.ugen).await, Ok(Some(_))) {
            return Introspection::default();
        }
        Introspection {
            active: true,
            token_type: Some("access_token".into()),
            username: Some(c.sub.clone()),
            sub: Some(c.sub),
            aud: c.aud,
            iss: Some(c.iss),
            exp: Some(c.exp),
            iat: Some(c.iat),
            nbf: Some(c.nbf),
            jti: Some(c.jti),
            client_id: c.client_id,
            role: Some(c.role),
            amr: Some(c.amr),
            similarity: c.similarity,
        }
    }
}

fn hash(token: &str) -> String {
    Sha256::digest(token.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

pub fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or_default()
}
