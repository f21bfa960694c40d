//! The audit trail: what happened, to whom, by whom, from where. Every event is logged and kept
//! in the store (`facelock audit` queries it). Tokens, photos and descriptors never appear.

use std::net::IpAddr;

use serde_json::Value;

use super::Actor;
use crate::{
    clock::Timestamp,
    domain::UserId,
    store::{AuditRecord, AuditStore},
};

/// Where a request came from, recorded with what it did.
#[derive(Clone, Debug, Default)]
pub struct Origin {
    /// The client's address (the socket peer).
    pub address: Option<IpAddr>,
    /// The request id the client was told (`x-request-id`).
    pub request_id: Option<String>,
}

impl Origin {
    /// The operator at the server's command line.
    pub fn operator() -> Self {
        Self::default()
    }
}

/// The kinds of event the trail records.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AuditKind {
    LoginSucceeded,
    LoginFailed,
    /// A login refused without trying the face: the account is locked.
    LoginRefusedLocked,
    AccountLocked,
    LockoutCleared,
    TokenRefused,
    /// A used refresh token was presented again; its session is revoked.
    RefreshReplayed,
    UserRegistered,
    FaceAdded,
    /// A face described again from its photo by a newer model (`facelock reindex`).
    FaceRedescribed,
    /// An enrolment refused: the face is another user's.
    DuplicateFaceRefused,
    UserDeleted,
    UsersListed,
    TokenIntrospected,
    KeyRotated,
    /// The admin role was granted or withdrawn.
    RoleChanged,
    /// An OpenID Connect client was registered, removed, or given a new secret.
    ClientRegistered,
    ClientRemoved,
    ClientSecretRotated,
    /// An authorization code was presented again; the session it started is revoked.
    CodeReplayed,
    /// An application signed its user out (OpenID Connect logout); the session is revoked.
    SessionEnded,
}

impl AuditKind {
    pub const ALL: [AuditKind; 21] = [
        Self::LoginSucceeded,
        Self::LoginFailed,
        Self::LoginRefusedLocked,
        Self::AccountLocked,
        Self::LockoutCleared,
        Self::TokenRefused,
        Self::RefreshReplayed,
        Self::UserRegistered,
        Self::FaceAdded,
        Self::FaceRedescribed,
        Self::DuplicateFaceRefused,
        Self::UserDeleted,
        Self::UsersListed,
        Self::TokenIntrospected,
        Self::KeyRotated,
        Self::RoleChanged,
        Self::ClientRegistered,
        Self::ClientRemoved,
        Self::ClientSecretRotated,
        Self::CodeReplayed,
        Self::SessionEnded,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::LoginSucceeded => "login_succeeded",
            Self::LoginFailed => "login_failed",
            Self::LoginRefusedLocked => "login_refused_locked",
            Self::AccountLocked => "account_locked",
            Self::LockoutCleared => "lockout_cleared",
            Self::TokenRefused => "token_refused",
            Self::RefreshReplayed => "refresh_replayed",
            Self::UserRegistered => "user_registered",
            Self::FaceAdded => "face_added",
            Self::FaceRedescribed => "face_redescribed",
            Self::DuplicateFaceRefused => "duplicate_face_refused",
            Self::UserDeleted => "user_deleted",
            Self::UsersListed => "users_listed",
            Self::TokenIntrospected => "token_introspected",
            Self::KeyRotated => "key_rotated",
            Self::RoleChanged => "role_changed",
            Self::ClientRegistered => "client_registered",
            Self::ClientRemoved => "client_removed",
            Self::ClientSecretRotated => "client_secret_rotated",
            Self::CodeReplayed => "code_replayed",
            Self::SessionEnded => "session_ended",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == raw)
    }
}

impl Actor<'_> {
    /// The name the trail records for whoever acted.
    pub fn audit_name(self) -> Option<String> {
        match self {
            Actor::Anonymous => None,
            Actor::Caller(c) => Some(c.user.user_id.to_string()),
            Actor::Operator => Some("operator".into()),
        }
    }
}

/// Records an event in `store` and the log. A store failure is logged, never fatal: the
/// operation it describes has already happened.
pub(super) async fn record(
    store: &dyn AuditStore,
    kind: AuditKind,
    origin: &Origin,
    user: Option<&UserId>,
    actor: Actor<'_>,
    detail: Value,
) {
    let record = AuditRecord {
        at: Timestamp::now(),
        kind: kind.as_str().to_owned(),
        user_id: user.map(ToString::to_string),
        actor: actor.audit_name(),
        address: origin.address.map(|a| a.to_string()),
        request_id: origin.request_id.clone(),
        detail,
    };
    tracing::info!(
        target: "facelock::audit",
        event = record.kind,
        user_id = record.user_id,
        actor = record.actor,
        address = record.address,
        request_id = record.request_id,
        detail = %record.detail,
        "audit"
    );
    if let Err(e) = store.record_event(record).await {
        tracing::error!(error = %crate::telemetry::error_chain(&e), "could not record an audit event");
    }
}
