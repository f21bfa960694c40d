//! `facelock keys`: the token signing keys and the master key that seals the store.

use facelock::{
    config::Settings,
    service::{Accounts, AuditKind},
    store::{vault::MasterKeySource, MasterKey},
    tokens::keyring::KeyRing,
};

use super::CliResult;

#[derive(clap::Subcommand)]
pub enum Command {
    /// Add a new signing key; the current one keeps verifying until its tokens expire.
    Rotate,
    /// Replace the master key that encrypts the store (descriptors, photos, signing keys).
    /// With a key file, the file is replaced; with FACELOCK_MASTER_KEY, the new key is printed
    /// and every server must be given it before it restarts.
    RotateMaster,
    /// List the keys and their state.
    List,
}

pub async fn run(settings: &Settings, cmd: Command) -> CliResult {
    let accounts = facelock::open_accounts(settings).await?;
    let store = accounts.store();
    match cmd {
        Command::Rotate => {
            if settings.tokens.algorithm.is_hmac() {
                return Err(
                    "tokens are signed with SECRET_KEY (HMAC): there are no keys to rotate".into(),
                );
            }
            let key = KeyRing::rotate(&**store).await?;
            let detail = serde_json::json!({ "kid": key.kid });
            accounts
                .audit_operator(AuditKind::KeyRotated, None, detail)
                .await;
            println!(
                "new signing key {} (servers pick it up within 2 s)",
                key.kid
            );
        }
        Command::RotateMaster => rotate_master(settings, &accounts).await?,
        Command::List => {
            let ttl = settings.tokens.access_token_ttl;
            for key in store.signing_keys().await? {
                let state = match KeyRing::published_until(&key, ttl) {
                    None => "active (signing)".to_owned(),
                    Some(until) => format!("retired, published until {until}"),
                };
                println!(
                    "{}\t{}\tcreated {}\t{state}",
                    key.kid, key.alg, key.created_at
                );
            }
        }
    }
    Ok(())
}

async fn rotate_master(settings: &Settings, accounts: &Accounts) -> CliResult {
    let store = accounts.store();
    let source = settings.storage.master_key_source();
    let old = MasterKey::load(&source)?;
    let new = MasterKey::generate()?;
    match &source {
        MasterKeySource::File(path) => {
            // The new key is on disk before the store takes it, so a crash in between loses
            // nothing: the next start finds it and finishes the rotation.
            let pending = facelock::pending_master_key_file(path);
            let _ = std::fs::remove_file(&pending);
            facelock::files::write_private(&pending, new.to_base64().as_bytes())?;
            store.reseal_data_key(&old, &new).await?;
            std::fs::rename(&pending, path)?;
            println!("master key rotated; {} holds the new key", path.display());
        }
        MasterKeySource::Given(_) => {
            store.reseal_data_key(&old, &new).await?;
            println!("{}", new.to_base64());
            eprintln!(
                "master key rotated: set FACELOCK_MASTER_KEY to the key printed above for every \
                 server before it restarts; the old key no longer opens the store"
            );
        }
    }
    let detail = serde_json::json!({ "key": "master" });
    accounts
        .audit_operator(AuditKind::KeyRotated, None, detail)
        .await;
    Ok(())
}
