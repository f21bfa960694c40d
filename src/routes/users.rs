//! The caller's profile, the user list (admins) and deletion.

use axum::{
    extract::{Path, Query, State},
    Json,
};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::{
    auth::AuthUser,
    domain::{Role, UserId},
    error::{ApiError, ErrorBody},
    state::AppState,
    store::{Page, UserRecord},
};

#[derive(Serialize, ToSchema)]
pub struct UserProfile {
    pub user_id: String,
    pub full_name: Option<String>,
    pub email: Option<String>,
    /// When the user was registered (RFC 3339, UTC).
    #[schema(example = "2026-01-31T12:00:00Z")]
    pub registered_at: String,
    /// Number of enrolled faces.
    pub face_count: u32,
}

impl From<UserRecord> for UserProfile {
    fn from(u: UserRecord) -> Self {
        let registered_at =
            time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(u.created_at) * 1_000_000)
                .ok()
                .and_then(|t| {
                    t.format(&time::format_description::well_known::Rfc3339)
                        .ok()
                })
                .unwrap_or_default();
        Self {
            user_id: u.user_id.to_string(),
            full_name: u.full_name,
            email: u.email,
            registered_at,
            face_count: u.face_count,
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct MeResponse {
    #[serde(flatten)]
    pub profile: UserProfile,
    /// The caller's current role.
    pub role: Role,
}

/// The caller's profile.
#[utoipa::path(
    get,
    path = "/users/me/",
    tag = "users",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The caller's profile", body = MeResponse),
        (status = 401, description = "Missing, malformed, expired or revoked token", body = ErrorBody),
    )
)]
pub async fn me(caller: AuthUser) -> Json<MeResponse> {
    Json(MeResponse {
        role: caller.role,
        profile: caller.user.into(),
    })
}

/// Keyset pagination: pass the previous page's `next_cursor` as `cursor`.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// Users per page, 1-500 (default 100).
    limit: Option<u32>,
    /// The `next_cursor` of the previous page.
    cursor: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct UserList {
    pub users: Vec<UserProfile>,
    /// Users in this page.
    pub count: usize,
    /// Users in all.
    pub total: u64,
    /// Pass as `cursor` for the next page; absent on the last page.
    pub next_cursor: Option<String>,
}

/// List users (admins only), ordered by user id, a page at a time.
#[utoipa::path(
    get,
    path = "/users/",
    tag = "users",
    params(ListQuery),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "A page of users", body = UserList),
        (status = 401, description = "Missing, malformed, expired or revoked token", body = ErrorBody),
        (status = 403, description = "The caller is not an admin", body = ErrorBody),
        (status = 422, description = "Invalid limit or cursor", body = ErrorBody),
    )
)]
pub async fn list(
    State(state): State<AppState>,
    caller: AuthUser,
    query: Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<UserList>, ApiError> {
    if !caller.is_admin() {
        return Err(ApiError::Forbidden("Listing users needs an admin token"));
    }
    let Query(query) = query.map_err(|e| ApiError::validation("query", e.body_text()))?;
    let limit = query.limit.unwrap_or(100);
    if !(1..=500).contains(&limit) {
        return Err(ApiError::validation("limit", "must be between 1 and 500"));
    }
    let after = query
        .cursor
        .as_deref()
        .map(UserId::parse)
        .transpose()
        .map_err(|e| ApiError::validation("cursor", e.0))?;
    let (users, total) = state.facelock.list_users(Page { limit, after }).await?;
    let next_cursor = (users.len() == limit as usize)
        .then(|| users.last().map(|u| u.user_id.to_string()))
        .flatten();
    let users: Vec<UserProfile> = users.into_iter().map(Into::into).collect();
    Ok(Json(UserList {
        count: users.len(),
        users,
        total,
        next_cursor,
    }))
}

#[derive(Serialize, ToSchema)]
pub struct DeleteResponse {
    pub success: bool,
    pub user_id: String,
    #[schema(example = "User deleted successfully")]
    pub message: String,
}

/// Delete a user: their faces in the engine, their reference images and their records. Their
/// tokens are refused from this moment on.
#[utoipa::path(
    delete,
    path = "/users/{user_id}/",
    tag = "users",
    params(("user_id" = String, Path, description = "The user to delete")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "User deleted", body = DeleteResponse),
        (status = 401, description = "Missing, malformed, expired or revoked token", body = ErrorBody),
        (status = 403, description = "The caller is neither that user nor an admin", body = ErrorBody),
        (status = 404, description = "No such user", body = ErrorBody),
        (status = 422, description = "The user id is not valid", body = ErrorBody),
    )
)]
pub async fn delete(
    State(state): State<AppState>,
    caller: AuthUser,
    Path(raw): Path<String>,
) -> Result<Json<DeleteResponse>, ApiError> {
    let user_id = UserId::parse(&raw).map_err(|e| ApiError::validation("user_id", e.0))?;
    if !caller.may_act_for(&user_id) {
        return Err(ApiError::Forbidden(
            "Only the user themself or an admin may delete a user",
        ));
    }
    state.facelock.delete_user(&user_id).await?;
    Ok(Json(DeleteResponse {
        success: true,
        user_id: user_id.to_string(),
        message: "User deleted successfully".into(),
    }))
}
