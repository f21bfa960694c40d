//! Logging in with a face, and everything tokens do afterwards: refresh, authentication of a
//! bearer token, revocation and introspection. Also the two-photo comparison.

use std::time::Duration;

use super::{Caller, Error, FaceLock};
use crate::{
    domain::{InvalidInput, Role, Similarity, User, UserId},
    engine::{SearchQuery, SearchScope},
    tokens::{issuer::is_refresh_token, Introspection, Issued, TokenProblem},
};

/// A face login.
pub struct LoginRequest {
    pub image: Vec<u8>,
    /// The similarity the client asks for; it can only raise the server's floor.
    pub min_similarity: Option<Similarity>,
    /// Check only this user's faces (1:1) instead of every user's (1:N).
    pub claimed: Option<UserId>,
    /// The audience the token is for; the first configured one by default.
    pub audience: Option<String>,
}

/// An access token and the refresh token that continues its session.
pub struct TokenPair {
    pub access_token: String,
    pub refresh_token: String,
    pub expires_in: Duration,
}

/// What a successful face login gives: who, how similar, and the session's tokens.
pub struct Session {
    pub user: User,
    pub role: Role,
    pub similarity: Similarity,
    pub tokens: TokenPair,
}

/// The similarity of two photos' dominant faces, and the verdict at the server's floor.
pub struct Comparison {
    pub similarity: Similarity,
    pub threshold: Similarity,
    pub is_match: bool,
}

impl FaceLock {
    /// Logs a face in: finds the enrolled face it matches (under the policy) and starts a
    /// session for its user.
    #[tracing::instrument(skip_all, fields(claimed = req.claimed.as_ref().map(|u| u.as_str())))]
    pub async fn login(&self, req: LoginRequest) -> Result<Session, Error> {
        let audience = self
            .tokens
            .audience(req.audience.as_deref())
            .ok_or_else(|| {
                InvalidInput::new("audience", "is not one of the configured audiences")
            })?;
        let threshold = self.policy.threshold(req.min_similarity);
        let upload = self.prepare_image(req.image).await?;
        let query = SearchQuery {
            scope: req.claimed.map_or(SearchScope::All, SearchScope::User),
            min_similarity: threshold,
        };
        let candidates = self.engine.search(upload, &query).await?;
        let ids: Vec<String> = candidates.iter().map(|c| c.face_id.clone()).collect();
        let known = self.store.faces(&ids).await?;
        let Some((face, similarity)) = self.policy.choose(
            &candidates,
            &known,
            &query.scope,
            threshold,
            self.engine.name(),
        ) else {
            return Err(Error::NoMatch);
        };
        let user = self
            .store
            .current_user(&face.user_id, face.user_generation)
            .await?
            .ok_or(Error::NoMatch)?;
        let role = self.policy.role_of(&user.user_id);
        let session = self.tokens.new_session_id();
        let access = self
            .tokens
            .issue(&user, role, Some(similarity), &audience, &session)
            .await?;
        let refresh_token = self
            .tokens
            .start_session(&user, &audience, &session)
            .await?;
        tracing::info!(user_id = %user.user_id, similarity = similarity.value(), "face verified");
        Ok(Session {
            tokens: self.pair(access, refresh_token),
            user,
            role,
            similarity,
        })
    }

    /// `grant_type=refresh_token`: spends the refresh token, returns the session's next pair.
    pub async fn refresh(&self, refresh_token: &str) -> Result<TokenPair, Error> {
        let record = self
            .tokens
            .spend_refresh(refresh_token)
            .await?
            .ok_or(Error::InvalidGrant)?;
        let user = self
            .store
            .current_user(&record.user_id, record.user_generation)
            .await?
            .ok_or(Error::InvalidGrant)?;
        let role = self.policy.role_of(&user.user_id);
        let access = self
            .tokens
            .issue(&user, role, None, &record.audience, &record.family_id)
            .await?;
        let refresh_token = self.tokens.continue_session(&record).await?;
        Ok(self.pair(access, refresh_token))
    }

    fn pair(&self, access: Issued, refresh_token: String) -> TokenPair {
        TokenPair {
            access_token: access.token,
            refresh_token,
            expires_in: self.tokens.access_ttl(),
        }
    }

    /// The caller behind a bearer token: valid, unrevoked, and its user still the same
    /// generation (not deleted, nor deleted and registered again).
    pub async fn authenticate(&self, bearer: &str) -> Result<Caller, Error> {
        let claims = self
            .tokens
            .validate(bearer)
            .await
            .map_err(Error::Unauthenticated)?;
        let user_id = UserId::parse(&claims.sub)
            .map_err(|_| Error::Unauthenticated(TokenProblem::Invalid))?;
        let user = self
            .store
            .current_user(&user_id, claims.ugen)
            .await?
            .ok_or(Error::Unauthenticated(TokenProblem::Revoked))?;
        let role = self.policy.caller_role(&user.user_id, claims.role);
        Ok(Caller { user, role, claims })
    }

    /// RFC 7009: revokes a refresh token's session or an access token; unknown tokens are
    /// ignored.
    pub async fn revoke(&self, token: &str) -> Result<(), Error> {
        Ok(self.tokens.revoke(token).await?)
    }

    /// RFC 7662, for admins: whether a token is active (valid, unrevoked, its user current),
    /// and its claims.
    pub async fn introspect(&self, caller: &Caller, token: &str) -> Result<Introspection, Error> {
        if !caller.is_admin() {
            return Err(Error::Forbidden("Introspection needs an admin token"));
        }
        if is_refresh_token(token) {
            let Some(r) = self.tokens.live_refresh(token).await? else {
                return Ok(Introspection::inactive());
            };
            if self
                .store
                .current_user(&r.user_id, r.user_generation)
                .await?
                .is_none()
            {
                return Ok(Introspection::inactive());
            }
            return Ok(Introspection {
                active: true,
                token_type: Some("refresh_token".into()),
                sub: Some(r.user_id.to_string()),
                username: Some(r.user_id.to_string()),
                aud: Some(r.audience.clone()),
                client_id: Some(r.audience),
                iss: Some(self.tokens.issuer().to_owned()),
                exp: Some(r.expires_at.unix_seconds()),
                iat: Some(r.created_at.unix_seconds()),
                ..Default::default()
            });
        }
        match self.authenticate(token).await {
            Ok(bearer) => Ok(Introspection::of_access_token(bearer.claims)),
            Err(Error::Unauthenticated(_)) => Ok(Introspection::inactive()),
            Err(e) => Err(e),
        }
    }

    /// The similarity of the dominant faces of two photos.
    pub async fn compare(&self, a: Vec<u8>, b: Vec<u8>) -> Result<Comparison, Error> {
        let (a, b) = tokio::try_join!(self.prepare_image(a), self.prepare_image(b))?;
        let similarity = self.engine.compare(a, b).await?;
        let threshold = self.policy.threshold(None);
        Ok(Comparison {
            similarity,
            threshold,
            is_match: similarity >= threshold,
        })
    }
}
