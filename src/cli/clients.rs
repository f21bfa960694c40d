//! `facelock clients`: the OpenID Connect clients, in the store every server shares.

use facelock::{
    config::Settings,
    oidc::{ClientId, Clients, NewClient, RedirectUri},
    service::AuditKind,
};
use serde_json::json;

use super::CliResult;

#[derive(clap::Subcommand)]
pub enum Command {
    /// Register a client. A confidential client's secret is printed once (only its hash is
    /// kept); a public client (a single-page or native app) has none and must use PKCE.
    Add {
        /// The client id: 1-64 letters, digits, `.`, `_` and `-`.
        client_id: String,
        /// The name the login page shows the user.
        #[arg(long)]
        name: String,
        /// A URI the authorization answer may be sent to, compared exactly: https, or http on
        /// a loopback address. Repeat for several.
        #[arg(long = "redirect-uri", required = true)]
        redirect_uris: Vec<String>,
        /// A URI the browser may be sent to after logging out, compared exactly. Repeat for
        /// several.
        #[arg(long = "post-logout-redirect-uri")]
        post_logout_redirect_uris: Vec<String>,
        /// A public client: no secret, PKCE required.
        #[arg(long)]
        public: bool,
    },
    /// List clients: id, type, name, redirect URIs, post-logout URIs, registration time;
    /// tab-separated, URIs separated by spaces.
    List,
    /// Remove a client: its users can no longer sign in through it.
    Remove {
        /// The client to remove.
        client_id: String,
    },
    /// Give a confidential client a new secret, printed once; the old one stops working at once.
    RotateSecret {
        /// The client whose secret changes.
        client_id: String,
    },
}

pub async fn run(settings: &Settings, cmd: Command) -> CliResult {
    let accounts = facelock::open_accounts(settings).await?;
    let clients = Clients::new(accounts.store().clone());
    match cmd {
        Command::Add {
            client_id,
            name,
            redirect_uris,
            post_logout_redirect_uris,
            public,
        } => {
            let parse = |uris: &[String]| -> Result<Vec<RedirectUri>, _> {
                uris.iter().map(|u| RedirectUri::parse(u)).collect()
            };
            let new = NewClient {
                client_id: ClientId::parse(&client_id)?,
                name,
                redirect_uris: parse(&redirect_uris)?,
                post_logout_redirect_uris: parse(&post_logout_redirect_uris)?,
                public,
            };
            let (client, secret) = clients.add(new).await?;
            let detail = json!({ "client_id": client.client_id, "public": client.public,
                "redirect_uris": client.redirect_uris });
            accounts
                .audit_operator(AuditKind::ClientRegistered, None, detail)
                .await;
            match secret {
                Some(secret) => {
                    println!("client_id\t{}", client.client_id);
                    println!("client_secret\t{}", secret.expose());
                    eprintln!("the secret is shown once: keep it in the client's configuration");
                }
                None => println!("client_id\t{}\t(public: no secret, PKCE)", client.client_id),
            }
        }
        Command::List => {
            for c in clients.list().await? {
                println!(
                    "{}\t{}\t{}\t{}\t{}\t{}",
                    c.client_id,
                    if c.public { "public" } else { "confidential" },
                    c.name,
                    c.redirect_uris.join(" "),
                    c.post_logout_redirect_uris.join(" "),
                    c.created_at.rfc3339()
                );
            }
        }
        Command::Remove { client_id } => {
            clients.remove(&client_id).await?;
            accounts
                .audit_operator(
                    AuditKind::ClientRemoved,
                    None,
                    json!({ "client_id": client_id }),
                )
                .await;
            println!("removed {client_id}");
        }
        Command::RotateSecret { client_id } => {
            let secret = clients.rotate_secret(&client_id).await?;
            accounts
                .audit_operator(
                    AuditKind::ClientSecretRotated,
                    None,
                    json!({ "client_id": client_id }),
                )
                .await;
            println!("client_secret\t{}", secret.expose());
        }
    }
    Ok(())
}
