//! Who is calling: bearer tokens minted on verify, checked on the guarded routes.
//!
//! [`AuthUser`] is the guard: an extractor that refuses (401 with `WWW-Authenticate: Bearer`) a
//! missing, malformed, expired or forged token, and a token whose user has been deleted since.
//! Admin rights need both the token's role and the user id's presence in `FACELOCK_ADMIN_USERS`
//! now, so removing an admin from the list takes effect at once.

pub mod keyring;
pub mod keys;
pub mod tokens;

use axum::{extract::FromRequestParts, http::request::Parts};

use crate::{
    domain::{Role, UserId},
    error::{ApiError, TokenProblem},
    state::AppState,
    store::UserRecord,
};

pub use tokens::{Claims, TokenService};

/// An authenticated caller.
#[derive(Debug, Clone)]
pub struct AuthUser {
    pub user: UserRecord,
    pub role: Role,
    pub claims: Claims,
}

impl AuthUser {
    pub fn is_admin(&self) -> bool {
        self.role == Role::Admin
    }

    /// The caller is `user_id` or an admin.
    pub fn may_act_for(&self, user_id: &UserId) -> bool {
        self.is_admin() || &self.user.user_id == user_id
    }
}

/// The caller when a bearer token is sent, `None` when none is; a bad token is still a 401.
pub struct MaybeAuthUser(pub Option<AuthUser>);

fn bearer(parts: &Parts) -> Result<Option<&str>, ApiError> {
    let Some(value) = parts.headers.get(axum::http::header::AUTHORIZATION) else {
        return Ok(None);
    };
    let value = value
        .to_str()
        .map_err(|_| ApiError::Unauthorized(TokenProblem::Malformed))?;
    match value.split_once(' ') {
        Some((scheme, token))
            if scheme.eq_ignore_ascii_case("bearer") && !token.trim().is_empty() =>
        {
            Ok(Some(token.trim()))
        }
        _ => Err(ApiError::Unauthorized(TokenProblem::Malformed)),
    }
}

async fn authenticate(state: &AppState, token: &str) -> Result<AuthUser, ApiError> {
    let claims = state
        .tokens
        .validate(token)
        .await
        .map_err(ApiError::Unauthorized)?;
    let user_id =
        UserId::parse(&claims.sub).map_err(|_| ApiError::Unauthorized(TokenProblem::Invalid))?;
    let user = state
        .facelock
        .store()
        .current_user(&user_id, claims.ugen)
        .await?
        .ok_or(ApiError::Unauthorized(TokenProblem::Revoked))?;
    let role = if claims.role == Role::Admin && state.facelock.settings().is_admin(&user_id) {
        Role::Admin
    } else {
        Role::User
    };
    Ok(AuthUser { user, role, claims })
}

impl FromRequestParts<AppState> for AuthUser {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let token = bearer(parts)?.ok_or(ApiError::Unauthorized(TokenProblem::Missing))?;
        authenticate(state, token).await
    }
}

impl FromRequestParts<AppState> for MaybeAuthUser {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        match bearer(parts)? {
            None => Ok(Self(None)),
            Some(token) => Ok(Self(Some(authenticate(state, token).await?))),
        }
    }
}
