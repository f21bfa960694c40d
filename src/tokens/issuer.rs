//! Minting and checking tokens.
//!
//! Validation pins the configured algorithm (so `alg: none`, algorithm swaps and key confusion
//! fail), requires `typ: at+jwt` and a known `kid` for ES256, checks `iss`, `aud`, `exp` and
//! `nbf` with 30 seconds of leeway, refuses tokens that name their own keys (`jku`, `x5u`,
//! `jwk`), and refuses revoked `jti`s.
//!
//! Refresh tokens are 256 random bits, stored only as SHA-256 hashes, single-use: each use
//! returns the next token of the same family (the session), and presenting a used one revokes
//! the family. A family expires a fixed time after the face login that started it.

use std::{sync::Arc, time::Duration};

use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine as _};
use jsonwebtoken::{errors::ErrorKind, Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::{keyring::KeyRing, Assurance, TokenError, TokenProblem};
use crate::{
    clock::Timestamp,
    config::TokenSettings,
    domain::{Role, Similarity, User},
    secret::{handle_hash, random_handle, Secret},
    store::{KeyStore, NewRefreshToken, RefreshRecord, RefreshUse, TokenStore},
};

/// Clock skew tolerated on `exp`, `nbf` and `iat`.
const LEEWAY: Duration = Duration::from_secs(30);
/// Refresh tokens start with this, so a token is recognisable in logs and by `/revoke`.
const REFRESH_PREFIX: &str = "flr_";
/// Longer than any token this issuer mints; refused before parsing.
const MAX_TOKEN_BYTES: usize = 8192;

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
    /// How the user authenticated (RFC 8176): `face`, and `liveness` after a passed
    /// liveness challenge.
    #[serde(default)]
    pub amr: Vec<String>,
    /// How surely: one of the discovery document's `acr_values_supported`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acr: Option<String>,
    /// The similarity (0-100) of the face match that started this session.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub similarity: Option<f32>,
    /// The user's generation: a user deleted and registered again gets a new one, so tokens of
    /// the deleted user stay refused.
    pub ugen: i64,
    /// The session (the face login and its refresh tokens) this token belongs to: revoking the
    /// session, or replaying one of its refresh tokens, refuses every access token of it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sid: Option<String>,
    /// The scopes an OpenID Connect client was granted (space-separated); absent on tokens of
    /// `/verify/`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
}

/// What a session's tokens are for: the audience (a configured one, or an OpenID Connect
/// client's id), the session's id (`sid`) and, for an OpenID Connect session, its scopes.
#[derive(Clone, Debug)]
pub struct SessionGrant {
    pub audience: String,
    pub id: String,
    pub scope: Option<String>,
}

/// The claims of an ID token (OpenID Connect Core 2), minted for one client at the end of
/// an authorization code flow.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct IdTokenClaims {
    pub iss: String,
    pub sub: String,
    /// The client's id.
    pub aud: String,
    pub exp: i64,
    pub iat: i64,
    /// When the user showed their face.
    pub auth_time: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nonce: Option<String>,
    pub amr: Vec<String>,
    pub acr: String,
    /// The left half of the access token's SHA-256, base64url.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub at_hash: Option<String>,
    pub sid: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
}

/// Which audiences a token may name to be accepted.
#[derive(Clone, Copy)]
enum Audiences {
    /// One of the configured audiences: the API's own tokens.
    Configured,
    /// Any: the userinfo endpoint takes the tokens of every OpenID Connect client.
    Any,
}

enum Signer {
    Hmac {
        encoding: EncodingKey,
        decoding: Arc<DecodingKey>,
    },
    Keys(KeyRing),
}

/// A freshly minted access token.
pub struct Issued {
    pub token: String,
    pub claims: Claims,
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
    pub acr: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub similarity: Option<f32>,
}

impl Introspection {
    pub fn inactive() -> Self {
        Self::default()
    }

    /// An active access token, described by its claims.
    pub fn of_access_token(c: Claims) -> Self {
        Self {
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
            acr: c.acr,
            similarity: c.similarity,
        }
    }
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
    store: Arc<dyn TokenStore>,
}

impl TokenService {
    /// Builds the issuer: a key ring in the store for ES256, or the HMAC secret.
    pub async fn new(
        settings: &TokenSettings,
        issuer: String,
        tokens: Arc<dyn TokenStore>,
        keys: Arc<dyn KeyStore>,
        hmac_secret: Option<Secret>,
    ) -> Result<Self, TokenError> {
        let algorithm = settings.algorithm.jwt();
        let signer = match hmac_secret {
            Some(secret) if settings.algorithm.is_hmac() => Signer::Hmac {
                encoding: EncodingKey::from_secret(secret.expose().as_bytes()),
                decoding: Arc::new(DecodingKey::from_secret(secret.expose().as_bytes())),
            },
            _ => Signer::Keys(KeyRing::open(keys, settings.access_token_ttl).await?),
        };
        Ok(Self {
            algorithm,
            with_audience: !settings.algorithm.is_hmac() || settings.audience_configured,
            signer,
            issuer,
            audiences: settings.audiences.clone(),
            ttl: settings.access_token_ttl,
            refresh_ttl: settings.refresh_token_ttl,
            store: tokens,
        })
    }

    pub fn algorithm(&self) -> Algorithm {
        self.algorithm
    }

    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// Lifetime of access tokens.
    pub fn access_ttl(&self) -> Duration {
        self.ttl
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
    pub async fn reload_keys(&self) -> Result<(), TokenError> {
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
        if let Err(e) = self.store.purge_expired_tokens(Timestamp::now()).await {
            tracing::warn!(error = %crate::telemetry::error_chain(&e), "could not purge expired tokens");
        }
    }

    /// Mints an access token for `user` in session `grant`; `similarity` is that of the face
    /// login, when this token comes straight from one, and `assurance` how that login was made.
    pub async fn issue(
        &self,
        user: &User,
        role: Role,
        login: (Option<Similarity>, Assurance),
        grant: &SessionGrant,
    ) -> Result<Issued, TokenError> {
        let (similarity, assurance) = login;
        let now = Timestamp::now();
        let claims = Claims {
            iss: self.issuer.clone(),
            sub: user.user_id.to_string(),
            aud: self.with_audience.then(|| grant.audience.clone()),
            iat: now.unix_seconds(),
            nbf: now.unix_seconds(),
            exp: (now + self.ttl).unix_seconds(),
            jti: uuid::Uuid::new_v4().to_string(),
            client_id: self.with_audience.then(|| grant.audience.clone()),
            role,
            amr: assurance.amr(),
            acr: Some(assurance.acr().to_owned()),
            similarity: similarity.map(|s| (s.value() * 100.0).round() / 100.0),
            ugen: user.generation,
            sid: Some(grant.id.clone()),
            scope: grant.scope.clone(),
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
        .map_err(TokenError::Sign)?;
        Ok(Issued { token, claims })
    }

    /// Whether this issuer can sign ID tokens: with its key ring, not with a shared secret.
    pub fn signs_id_tokens(&self) -> bool {
        matches!(self.signer, Signer::Keys(_))
    }

    /// Mints an ID token: ES256 only, as discovery says (with a shared secret there are none).
    pub async fn issue_id_token(&self, claims: &IdTokenClaims) -> Result<String, TokenError> {
        let Signer::Keys(ring) = &self.signer else {
            return Err(TokenError::IdTokensNeedKeys);
        };
        let (kid, key) = ring.signing_key().await?;
        let header = Header {
            typ: Some("JWT".into()),
            kid: Some(kid),
            ..Header::new(self.algorithm)
        };
        jsonwebtoken::encode(&header, claims, &key).map_err(TokenError::Sign)
    }

    /// The claims of an ID token this issuer minted, expired or not (an `id_token_hint` at
    /// logout is often old); `None` for anything else.
    pub async fn read_id_token(&self, token: &str) -> Option<IdTokenClaims> {
        let Signer::Keys(ring) = &self.signer else {
            return None;
        };
        if token.len() > MAX_TOKEN_BYTES {
            return None;
        }
        let header = jsonwebtoken::decode_header(token).ok()?;
        if self.refuses_header(&header) || header.typ.as_deref() != Some("JWT") {
            return None;
        }
        let key = ring.verifying_key(header.kid.as_deref()?).await?;
        let mut validation = Validation::new(self.algorithm);
        validation.algorithms = vec![self.algorithm];
        validation.validate_exp = false;
        validation.validate_aud = false;
        validation.set_issuer(&[&self.issuer]);
        validation.set_required_spec_claims(&["iss", "sub", "aud"]);
        jsonwebtoken::decode::<IdTokenClaims>(token, &key, &validation)
            .ok()
            .map(|data| data.claims)
    }

    /// Whether a token's header is refused whatever the token: another algorithm than the
    /// configured one, or a key the token names for itself (`jku`, `x5u`, `jwk`).
    fn refuses_header(&self, header: &Header) -> bool {
        header.alg != self.algorithm
            || header.jku.is_some()
            || header.x5u.is_some()
            || header.jwk.is_some()
    }

    /// Checks signature and claims; does not consult revocation.
    async fn decode(
        &self,
        token: &str,
        check_exp: bool,
        audiences: Audiences,
    ) -> Result<Claims, TokenProblem> {
        if token.len() > MAX_TOKEN_BYTES || token.split('.').count() != 3 {
            return Err(TokenProblem::Malformed);
        }
        let header = jsonwebtoken::decode_header(token).map_err(|_| TokenProblem::Malformed)?;
        if self.refuses_header(&header) {
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
        validation.leeway = LEEWAY.as_secs();
        validation.validate_exp = check_exp;
        validation.validate_nbf = true;
        validation.set_issuer(&[&self.issuer]);
        if let Audiences::Any = audiences {
            validation.validate_aud = false;
            validation.set_required_spec_claims(&["exp", "iat", "sub", "iss"]);
        } else if self.with_audience {
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
        if Timestamp::from_unix_seconds(claims.iat) > Timestamp::now() + LEEWAY {
            return Err(TokenProblem::Invalid);
        }
        Ok(claims)
    }

    /// A valid, unrevoked access token's claims.
    pub async fn validate(&self, token: &str) -> Result<Claims, TokenProblem> {
        let claims = self.decode(token, true, Audiences::Configured).await?;
        self.unless_revoked(claims).await
    }

    /// A valid, unrevoked access token of an OpenID Connect session (whichever client it was
    /// issued to) that was granted the `openid` scope: what the userinfo endpoint takes.
    pub async fn validate_openid(&self, token: &str) -> Result<Claims, TokenProblem> {
        let claims = self.decode(token, true, Audiences::Any).await?;
        let openid = claims
            .scope
            .as_deref()
            .is_some_and(|s| s.split(' ').any(|s| s == "openid"));
        if !openid {
            return Err(TokenProblem::Invalid);
        }
        self.unless_revoked(claims).await
    }

    async fn unless_revoked(&self, claims: Claims) -> Result<Claims, TokenProblem> {
        match self
            .store
            .is_access_token_revoked(&claims.jti, claims.sid.as_deref())
            .await
        {
            Ok(false) => Ok(claims),
            Ok(true) => Err(TokenProblem::Revoked),
            Err(e) => {
                // Fail closed: a token whose revocation cannot be checked is not accepted.
                tracing::error!(error = %crate::telemetry::error_chain(&e), "could not check token revocation");
                Err(TokenProblem::Invalid)
            }
        }
    }

    /// A new session id, for the tokens of one face login.
    pub fn new_session_id(&self) -> String {
        uuid::Uuid::new_v4().to_string()
    }

    /// Starts session `grant` (a refresh-token family) for a face login; returns its first
    /// refresh token.
    pub async fn start_session(
        &self,
        user: &User,
        grant: &SessionGrant,
    ) -> Result<String, TokenError> {
        let now = Timestamp::now();
        self.new_refresh(user.generation, grant, now, now + self.refresh_ttl)
            .await
    }

    /// The next refresh token of a session whose previous token was just spent.
    pub async fn continue_session(&self, spent: &RefreshRecord) -> Result<String, TokenError> {
        self.new_refresh(
            spent.user_generation,
            &grant_of(spent),
            Timestamp::now(),
            spent.expires_at,
        )
        .await
    }

    async fn new_refresh(
        &self,
        user_generation: i64,
        grant: &SessionGrant,
        now: Timestamp,
        expires_at: Timestamp,
    ) -> Result<String, TokenError> {
        let token = random_handle(REFRESH_PREFIX).map_err(TokenError::Randomness)?;
        self.store
            .add_refresh_token(NewRefreshToken {
                token_hash: handle_hash(&token),
                family_id: grant.id.clone(),
                user_generation,
                audience: grant.audience.clone(),
                scope: grant.scope.clone(),
                created_at: now,
                expires_at,
            })
            .await?;
        Ok(token)
    }

    /// Ends session `sid`: its refresh tokens and, through them, its access tokens.
    pub async fn end_session(&self, sid: &str) -> Result<(), TokenError> {
        self.store
            .revoke_refresh_family(sid, Timestamp::now())
            .await?;
        Ok(())
    }

    /// Spends a refresh token. A used one revokes its whole session.
    pub async fn spend_refresh(&self, refresh_token: &str) -> Result<Spent, TokenError> {
        let now = Timestamp::now();
        Ok(
            match self
                .store
                .use_refresh_token(&handle_hash(refresh_token), now)
                .await?
            {
                RefreshUse::Fresh(record) if record.expires_at > now => Spent::Live(record),
                RefreshUse::Fresh(_) | RefreshUse::Unknown => Spent::Invalid,
                RefreshUse::Replayed(record) => {
                    tracing::warn!(user_id = %record.user_id, "a used refresh token was presented again: the session is revoked");
                    Spent::Replayed(record)
                }
            },
        )
    }

    /// A refresh token's record if it is still live (unused, unrevoked, unexpired).
    pub async fn live_refresh(&self, token: &str) -> Result<Option<RefreshRecord>, TokenError> {
        if !is_refresh_token(token) {
            return Ok(None);
        }
        let now = Timestamp::now();
        Ok(self
            .store
            .refresh_token(&handle_hash(token))
            .await?
            .filter(|r| r.used_at.is_none() && r.revoked_at.is_none() && r.expires_at > now))
    }

    /// RFC 7009: revokes a refresh token (its whole family) or an access token (its `jti`,
    /// until it expires). Unknown and invalid tokens are ignored.
    pub async fn revoke(&self, token: &str) -> Result<(), TokenError> {
        let now = Timestamp::now();
        if is_refresh_token(token) {
            if let Some(record) = self.store.refresh_token(&handle_hash(token)).await? {
                self.end_session(&record.family_id).await?;
            }
            return Ok(());
        }
        if let Ok(claims) = self.decode(token, false, Audiences::Any).await {
            let until = Timestamp::from_unix_seconds(claims.exp) + LEEWAY;
            if until > now {
                self.store.revoke_access_token(&claims.jti, until).await?;
            }
        }
        Ok(())
    }
}

/// What spending a refresh token found.
pub enum Spent {
    /// It was live; the session continues.
    Live(RefreshRecord),
    /// Unknown or expired.
    Invalid,
    /// Used or revoked before: the session is now revoked.
    Replayed(RefreshRecord),
}

/// The session a spent refresh token belonged to.
pub fn grant_of(record: &RefreshRecord) -> SessionGrant {
    SessionGrant {
        audience: record.audience.clone(),
        id: record.family_id.clone(),
        scope: record.scope.clone(),
    }
}

/// `at_hash` of an ES256 ID token: the left half of the access token's SHA-256, base64url.
pub fn at_hash(access_token: &str) -> String {
    URL_SAFE_NO_PAD.encode(&Sha256::digest(access_token.as_bytes())[..16])
}

/// Whether `token` has the form of this issuer's refresh tokens.
pub fn is_refresh_token(token: &str) -> bool {
    token.starts_with(REFRESH_PREFIX)
}
