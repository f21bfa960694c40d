//! The caller's profile, the user list (admins) and deletion.

use axum::{
    extract::{
        rejection::{JsonRejection, QueryRejection},
        Path, Query, State,
    },
    Json,
};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::{
    error::{ApiError, ErrorBody},
    extract::{Authenticated, RequestOrigin},
    AppState,
};
use crate::{
    domain::{Page, Role, User, UserId},
    service::Actor,
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

impl From<User> for UserProfile {
    fn from(u: User) -> Self {
        Self {
            user_id: u.user_id.to_string(),
            full_name: u.full_name,
            email: u.email,
            registered_at: u.registered_at.rfc3339(),
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
    path = "/users/me/", operation_id = "get_current_user",
    tag = "users",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The caller's profile", body = MeResponse),
        (status = 401, description = "Missing, malformed, expired or revoked token", body = ErrorBody),
    )
)]
pub async fn me(Authenticated(caller): Authenticated) -> Json<MeResponse> {
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
    #[param(minimum = 1, maximum = 500, default = 100)]
    limit: Option<u32>,
    /// The `next_cursor` of the previous page.
    #[param(min_length = 1, max_length = 128, pattern = "^[A-Za-z0-9_.-]{1,128}$")]
    cursor: Option<String>,
}

/// A user and the role they hold now.
#[derive(Serialize, ToSchema)]
pub struct UserWithRole {
    #[serde(flatten)]
    pub profile: UserProfile,
    pub role: Role,
}

#[derive(Serialize, ToSchema)]
pub struct UserList {
    pub users: Vec<UserWithRole>,
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
    path = "/users/", operation_id = "list_users",
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
    RequestOrigin(origin): RequestOrigin,
    Authenticated(caller): Authenticated,
    query: Result<Query<ListQuery>, QueryRejection>,
) -> Result<Json<UserList>, ApiError> {
    let Query(query) = query.map_err(|e| ApiError::validation("query", e.body_text()))?;
    let page = Page::parse(query.limit, query.cursor.as_deref())?;
    let page = state
        .facelock
        .accounts()
        .list_users(Actor::Caller(&caller), page, &origin)
        .await?;
    let users: Vec<UserWithRole> = page
        .users
        .into_iter()
        .map(|user| with_role(&state, user))
        .collect();
    Ok(Json(UserList {
        count: users.len(),
        users,
        total: page.total,
        next_cursor: page.next_cursor.map(|c| c.to_string()),
    }))
}

fn with_role(state: &AppState, user: User) -> UserWithRole {
    UserWithRole {
        role: state.facelock.role_of(&user),
        profile: user.into(),
    }
}

/// The role to give a user.
#[derive(Deserialize, ToSchema)]
pub struct RoleChange {
    pub role: Role,
}

/// Grant or withdraw the admin role (admins only).
///
/// Takes effect at once on every server: a withdrawn admin's tokens lose the role on their
/// next request. A user id listed in `FACELOCK_ADMIN_USERS` keeps the role (403).
#[utoipa::path(
    put,
    path = "/users/{user_id}/role", operation_id = "set_user_role",
    tag = "users",
    params(("user_id" = String, Path, description = "The user whose role changes", min_length = 1, max_length = 128, pattern = "^[A-Za-z0-9_.-]{1,128}$")),
    request_body = RoleChange,
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The user with the new role", body = UserWithRole),
        (status = 401, description = "Missing, malformed, expired or revoked token", body = ErrorBody),
        (status = 403, description = "The caller is not an admin, or the role comes from FACELOCK_ADMIN_USERS", body = ErrorBody),
        (status = 404, description = "`USER_NOT_FOUND`: no such user", body = ErrorBody),
        (status = 422, description = "The user id or the role is not valid", body = ErrorBody),
    )
)]
pub async fn set_role(
    State(state): State<AppState>,
    RequestOrigin(origin): RequestOrigin,
    Authenticated(caller): Authenticated,
    Path(raw): Path<String>,
    body: Result<Json<RoleChange>, JsonRejection>,
) -> Result<Json<UserWithRole>, ApiError> {
    let user_id = UserId::parse(&raw).map_err(|e| ApiError::validation("user_id", e.0))?;
    let Json(change) = body.map_err(|e| ApiError::validation("role", e.body_text()))?;
    let user = state
        .facelock
        .accounts()
        .set_role(Actor::Caller(&caller), &user_id, change.role, &origin)
        .await?;
    Ok(Json(with_role(&state, user)))
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
    path = "/users/{user_id}/", operation_id = "delete_user",
    tag = "users",
    params(("user_id" = String, Path, description = "The user to delete", min_length = 1, max_length = 128, pattern = "^[A-Za-z0-9_.-]{1,128}$")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "User deleted", body = DeleteResponse),
        (status = 401, description = "Missing, malformed, expired or revoked token", body = ErrorBody),
        (status = 403, description = "The caller is neither that user nor an admin", body = ErrorBody),
        (status = 404, description = "`USER_NOT_FOUND`: no such user", body = ErrorBody),
        (status = 422, description = "The user id is not valid", body = ErrorBody),
    )
)]
pub async fn delete(
    State(state): State<AppState>,
    RequestOrigin(origin): RequestOrigin,
    Authenticated(caller): Authenticated,
    Path(raw): Path<String>,
) -> Result<Json<DeleteResponse>, ApiError> {
    let user_id = UserId::parse(&raw).map_err(|e| ApiError::validation("user_id", e.0))?;
    state
        .facelock
        .delete_user(Actor::Caller(&caller), &user_id, &origin)
        .await?;
    Ok(Json(DeleteResponse {
        success: true,
        user_id: user_id.to_string(),
        message: "User deleted successfully".into(),
    }))
}
