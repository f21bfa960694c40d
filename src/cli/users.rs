//! `facelock users`: enrol, list, change roles, unlock and delete, straight on the store. Only
//! `add` loads the face engine; the rest go through the engine-free
//! [`Accounts`](facelock::service::Accounts), the same rules the HTTP routes apply.

use std::path::PathBuf;

use facelock::{
    config::Settings,
    domain::{Email, FullName, Page, Role, UserId},
    service::{Actor, Evidence, Origin, Registration},
};

use super::CliResult;

#[derive(clap::Subcommand)]
pub enum Command {
    /// Enrol a face from a file (or add a face to an existing user); the way to enrol the
    /// first administrator.
    Add {
        /// The user id: 1-128 letters, digits, `.`, `_` and `-`.
        user_id: String,
        /// Path of a JPEG, PNG or WebP photo with one face.
        #[arg(long)]
        image: PathBuf,
        /// The user's full name.
        #[arg(long)]
        full_name: Option<String>,
        /// The user's e-mail address.
        #[arg(long)]
        email: Option<String>,
        /// Grant the admin role (kept in the store, honoured by every server).
        #[arg(long)]
        admin: bool,
    },
    /// List users: id, role, faces, registration time (RFC 3339), name, e-mail; tab-separated.
    List,
    /// Grant or withdraw the admin role.
    Role {
        /// The user whose role changes.
        user_id: String,
        /// The new role.
        #[arg(value_parser = ["admin", "user"])]
        role: String,
    },
    /// Clear the failed logins and the lock of a user id.
    Unlock {
        /// The locked user id.
        user_id: String,
    },
    /// Delete a user, their faces and reference photos. Running servers drop the faces from
    /// their engine within seconds.
    Delete {
        /// The user to delete.
        user_id: String,
    },
}

pub async fn run(settings: &Settings, cmd: Command) -> CliResult {
    match cmd {
        Command::Add {
            user_id,
            image,
            full_name,
            email,
            admin,
        } => {
            let registration = Registration {
                user_id: UserId::parse(&user_id)?,
                full_name: full_name.as_deref().map(FullName::parse).transpose()?,
                email: email.as_deref().map(Email::parse).transpose()?,
                evidence: Evidence::Photo(
                    std::fs::read(&image)
                        .map_err(|e| format!("reading {}: {e}", image.display()))?,
                ),
                origin: Origin::operator(),
            };
            let core = facelock::build_facelock(settings).await?;
            let done = core.register(registration, Actor::Operator).await?;
            let user = if admin {
                let (id, origin) = (&done.user.user_id, &Origin::operator());
                let accounts = core.accounts();
                accounts
                    .set_role(Actor::Operator, id, Role::Admin, origin)
                    .await?
            } else {
                done.user
            };
            let role = role_name(core.role_of(&user));
            println!(
                "enrolled face {} for {} ({role})",
                done.face_id, user.user_id
            );
        }
        Command::List => list(settings).await?,
        Command::Role { user_id, role } => {
            let accounts = facelock::open_accounts(settings).await?;
            let user_id = UserId::parse(&user_id)?;
            let role = if role == "admin" {
                Role::Admin
            } else {
                Role::User
            };
            let user = accounts
                .set_role(Actor::Operator, &user_id, role, &Origin::operator())
                .await?;
            println!("{user_id}: {}", role_name(accounts.role_of(&user)));
        }
        Command::Unlock { user_id } => {
            let accounts = facelock::open_accounts(settings).await?;
            let user_id = UserId::parse(&user_id)?;
            let had = accounts.unlock(&user_id).await?;
            let state = if had { "unlocked" } else { "was not locked" };
            println!("{user_id}: {state}");
        }
        Command::Delete { user_id } => {
            // The store deletes the user and queues their faces for the engine in one
            // transaction; running servers see the change and drop the faces.
            let accounts = facelock::open_accounts(settings).await?;
            let user_id = UserId::parse(&user_id)?;
            accounts
                .delete_user(Actor::Operator, &user_id, &Origin::operator())
                .await?;
            println!("deleted {user_id}");
        }
    }
    Ok(())
}

/// Every user, a page at a time, straight from the store (no engine is loaded).
async fn list(settings: &Settings) -> CliResult {
    let accounts = facelock::open_accounts(settings).await?;
    let mut after = None;
    loop {
        let page = Page {
            limit: Page::MAX_LIMIT,
            after,
        };
        let users = accounts.store().list_users(page).await?;
        for u in &users {
            println!(
                "{}\t{}\tfaces={}\t{}\t{}\t{}",
                u.user_id,
                role_name(accounts.role_of(u)),
                u.face_count,
                u.registered_at,
                u.full_name.as_deref().unwrap_or("-"),
                u.email.as_deref().unwrap_or("-")
            );
        }
        match users.last() {
            Some(last) if users.len() == Page::MAX_LIMIT as usize => {
                after = Some(last.user_id.clone())
            }
            _ => break,
        }
    }
    Ok(())
}

fn role_name(role: Role) -> &'static str {
    match role {
        Role::Admin => "admin",
        Role::User => "user",
    }
}
