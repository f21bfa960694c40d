//! Users' records without the face engine: roles, deletion, the user list, lockouts and the
//! audit trail. The HTTP routes reach these through [`FaceLock`](super::FaceLock), the
//! operator's commands directly (they open the store, never the engine), so one place decides
//! who may change a role or delete a user.

use std::sync::Arc;

use serde_json::{json, Value};

use super::{audit, policy::Policy, Actor, AuditKind, Error, Origin};
use crate::{
    domain::{Page, Role, User, UserId},
    metrics::Metrics,
    store::{FaceRecord, Store},
};

/// A page of users and where the next one starts.
pub struct UserPage {
    pub users: Vec<User>,
    /// Users in all.
    pub total: u64,
    /// The last user id of this page when another page may follow.
    pub next_cursor: Option<UserId>,
}

/// The engine-free part of the core.
pub struct Accounts {
    store: Arc<dyn Store>,
    policy: Policy,
    /// Audit events are counted here as well as recorded.
    metrics: Arc<Metrics>,
}

impl Accounts {
    pub fn new(store: Arc<dyn Store>, policy: Policy, metrics: Arc<Metrics>) -> Self {
        Self {
            store,
            policy,
            metrics,
        }
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// The role `user` holds now.
    pub fn role_of(&self, user: &User) -> Role {
        self.policy.role_of(user)
    }

    /// Records an event in the store and the log. A store failure is logged, never fatal: the
    /// operation it describes has already happened.
    pub async fn audit(
        &self,
        kind: AuditKind,
        origin: &Origin,
        user: Option<&UserId>,
        actor: Actor<'_>,
        detail: Value,
    ) {
        self.metrics.event(kind.as_str());
        audit::record(self.store.as_ref(), kind, origin, user, actor, detail).await;
    }

    /// Records what the operator did at the command line.
    pub async fn audit_operator(&self, kind: AuditKind, user: Option<&UserId>, detail: Value) {
        self.audit(kind, &Origin::operator(), user, Actor::Operator, detail)
            .await;
    }

    /// Deletes a user's records: the caller must be that user, an admin, or the operator. The
    /// user, faces and photos go in one transaction with the engine's deletion queue, so
    /// running servers drop the faces from their engines; the deleted faces are returned for
    /// an engine at hand to forget at once.
    pub async fn delete_user(
        &self,
        actor: Actor<'_>,
        user_id: &UserId,
        origin: &Origin,
    ) -> Result<Vec<FaceRecord>, Error> {
        if !actor.may_act_for(user_id) {
            return Err(Error::Forbidden(
                "Only the user themself or an admin may delete a user",
            ));
        }
        let faces = self.store.delete_user(user_id).await?;
        self.audit(
            AuditKind::UserDeleted,
            origin,
            Some(user_id),
            actor,
            json!({ "faces": faces.len() }),
        )
        .await;
        Ok(faces)
    }

    /// Grants or withdraws the admin role: admins and the operator only. A user id listed in
    /// `FACELOCK_ADMIN_USERS` stays an admin whatever the store says, so withdrawing it there
    /// is refused rather than silently without effect.
    pub async fn set_role(
        &self,
        actor: Actor<'_>,
        user_id: &UserId,
        role: Role,
        origin: &Origin,
    ) -> Result<User, Error> {
        if !actor.is_admin() {
            return Err(Error::Forbidden("Changing a role needs an admin token"));
        }
        if role == Role::User && self.policy.is_listed_admin(user_id) {
            return Err(Error::Forbidden(
                "This user is an administrator through FACELOCK_ADMIN_USERS; remove the id \
                 there to withdraw the role",
            ));
        }
        let user = self.store.set_admin(user_id, role == Role::Admin).await?;
        self.audit(
            AuditKind::RoleChanged,
            origin,
            Some(user_id),
            actor,
            json!({ "role": role }),
        )
        .await;
        Ok(user)
    }

    /// A page of users, ordered by id: admins and the operator only.
    pub async fn list_users(
        &self,
        actor: Actor<'_>,
        page: Page,
        origin: &Origin,
    ) -> Result<UserPage, Error> {
        if !actor.is_admin() {
            return Err(Error::Forbidden("Listing users needs an admin token"));
        }
        self.audit(
            AuditKind::UsersListed,
            origin,
            None,
            actor,
            json!({ "limit": page.limit, "after": page.after }),
        )
        .await;
        let limit = page.limit as usize;
        let users = self.store.list_users(page).await?;
        let total = self.store.count_users().await?;
        let next_cursor = (users.len() == limit)
            .then(|| users.last().map(|u| u.user_id.clone()))
            .flatten();
        Ok(UserPage {
            users,
            total,
            next_cursor,
        })
    }

    /// Clears a user id's failed logins and lock (the operator's `users unlock`); whether it
    /// had any.
    pub async fn unlock(&self, user_id: &UserId) -> Result<bool, Error> {
        let had = self.store.clear_lockout(user_id).await?;
        self.audit_operator(
            AuditKind::LockoutCleared,
            Some(user_id),
            json!({ "had_failures": had }),
        )
        .await;
        Ok(had)
    }
}
