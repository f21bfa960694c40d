//! The applications that may send users to Face Lock to sign in: each has an id, a name shown
//! on the login page, the exact redirect URIs its answers may go to and, unless it is public
//! (a single-page or native app, which cannot keep a secret and must use PKCE), a secret of
//! which only a hash is kept.

use std::sync::Arc;

use crate::{
    clock::Timestamp,
    secret::{handle_hash, random_handle, same_bytes},
    store::{Store, StoreError, StoredClient},
};

/// Why a client cannot be registered, found or authenticated.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("a client id is 1-64 letters, digits, '.', '_' and '-'")]
    InvalidId,
    #[error("a client's name is 1-100 characters, without control characters")]
    InvalidName,
    #[error("redirect URI {uri:?}: {reason}")]
    InvalidRedirectUri { uri: String, reason: &'static str },
    #[error("a client needs at least one redirect URI")]
    NoRedirectUri,
    #[error("a client with id {0:?} exists")]
    Exists(String),
    #[error("no client has id {0:?}")]
    Unknown(String),
    #[error("client {0:?} is public: it has no secret")]
    Public(String),
    #[error("no randomness for a client secret")]
    Randomness(#[source] getrandom::Error),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A client's id: 1-64 letters, digits, `.`, `_` and `-`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientId(String);

impl ClientId {
    pub fn parse(raw: &str) -> Result<Self, ClientError> {
        let valid = (1..=64).contains(&raw.len())
            && raw
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
        valid
            .then(|| Self(raw.to_owned()))
            .ok_or(ClientError::InvalidId)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A URI a browser may be sent back to: absolute, `https` (or `http` on a loopback address,
/// for development and native apps), without a fragment or user name. Compared exactly,
/// character for character, with what an authorization request names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RedirectUri(String);

impl RedirectUri {
    pub fn parse(raw: &str) -> Result<Self, ClientError> {
        let invalid = |reason| ClientError::InvalidRedirectUri {
            uri: raw.to_owned(),
            reason,
        };
        let url = url::Url::parse(raw).map_err(|_| invalid("not an absolute URI"))?;
        if url.fragment().is_some() {
            return Err(invalid("has a fragment"));
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(invalid("names a user"));
        }
        let loopback = match url.host() {
            Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
            Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
            Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
            None => return Err(invalid("has no host")),
        };
        match url.scheme() {
            "https" => {}
            "http" if loopback => {}
            "http" => return Err(invalid("http is allowed only on a loopback address")),
            _ => return Err(invalid("the scheme must be https (or http on loopback)")),
        }
        Ok(Self(raw.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A client to register.
pub struct NewClient {
    pub client_id: ClientId,
    pub name: String,
    pub redirect_uris: Vec<RedirectUri>,
    pub post_logout_redirect_uris: Vec<RedirectUri>,
    /// A public client has no secret and must prove its requests with PKCE.
    pub public: bool,
}

/// A registered client.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Client {
    pub client_id: String,
    pub name: String,
    pub redirect_uris: Vec<String>,
    pub post_logout_redirect_uris: Vec<String>,
    pub public: bool,
    pub created_at: Timestamp,
    secret_hash: Option<String>,
}

impl Client {
    /// Whether `uri` is one of the client's redirect URIs, exactly.
    pub fn allows_redirect(&self, uri: &str) -> bool {
        self.redirect_uris.iter().any(|u| u == uri)
    }

    /// Whether `uri` is one of the client's post-logout redirect URIs, exactly.
    pub fn allows_post_logout_redirect(&self, uri: &str) -> bool {
        self.post_logout_redirect_uris.iter().any(|u| u == uri)
    }

    /// Whether `secret` is the client's: always false for a public client. The comparison
    /// takes the same time wherever the hashes differ.
    pub fn secret_matches(&self, secret: &str) -> bool {
        let Some(stored) = &self.secret_hash else {
            return false;
        };
        same_bytes(stored.as_bytes(), handle_hash(secret).as_bytes())
    }
}

impl From<StoredClient> for Client {
    fn from(c: StoredClient) -> Self {
        Self {
            public: c.secret_hash.is_none(),
            client_id: c.client_id,
            name: c.name,
            redirect_uris: c.redirect_uris,
            post_logout_redirect_uris: c.post_logout_redirect_uris,
            created_at: c.created_at,
            secret_hash: c.secret_hash,
        }
    }
}

/// A confidential client's secret, as handed to the operator once: 32 random bytes,
/// base64url. Only its SHA-256 is stored (a random secret needs no slow hash).
pub struct ClientSecret(String);

impl ClientSecret {
    fn generate() -> Result<Self, ClientError> {
        random_handle("").map(Self).map_err(ClientError::Randomness)
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

fn valid_name(name: &str) -> bool {
    (1..=100).contains(&name.chars().count()) && !name.chars().any(char::is_control)
}

/// The registry of clients, in the store every server shares.
#[derive(Clone)]
pub struct Clients {
    store: Arc<dyn Store>,
}

impl Clients {
    pub fn new(store: Arc<dyn Store>) -> Self {
        Self { store }
    }

    /// Registers a client; its secret (for a confidential client) is returned once and kept
    /// only as a hash.
    pub async fn add(&self, new: NewClient) -> Result<(Client, Option<ClientSecret>), ClientError> {
        if !valid_name(&new.name) {
            return Err(ClientError::InvalidName);
        }
        if new.redirect_uris.is_empty() {
            return Err(ClientError::NoRedirectUri);
        }
        let secret = (!new.public).then(ClientSecret::generate).transpose()?;
        let stored = StoredClient {
            client_id: new.client_id.0,
            name: new.name,
            redirect_uris: new.redirect_uris.into_iter().map(|u| u.0).collect(),
            post_logout_redirect_uris: new
                .post_logout_redirect_uris
                .into_iter()
                .map(|u| u.0)
                .collect(),
            secret_hash: secret.as_ref().map(|s| handle_hash(&s.0)),
            created_at: Timestamp::now(),
        };
        match self.store.add_client(&stored).await {
            Ok(()) => Ok((stored.into(), secret)),
            Err(StoreError::ClientExists) => Err(ClientError::Exists(stored.client_id)),
            Err(e) => Err(e.into()),
        }
    }

    pub async fn find(&self, client_id: &str) -> Result<Option<Client>, ClientError> {
        Ok(self.store.client(client_id).await?.map(Client::from))
    }

    pub async fn list(&self) -> Result<Vec<Client>, ClientError> {
        Ok(self
            .store
            .clients()
            .await?
            .into_iter()
            .map(Client::from)
            .collect())
    }

    pub async fn remove(&self, client_id: &str) -> Result<(), ClientError> {
        if self.store.remove_client(client_id).await? {
            Ok(())
        } else {
            Err(ClientError::Unknown(client_id.to_owned()))
        }
    }

    /// A new secret for a confidential client; the old one stops working at once.
    pub async fn rotate_secret(&self, client_id: &str) -> Result<ClientSecret, ClientError> {
        let client = self
            .find(client_id)
            .await?
            .ok_or_else(|| ClientError::Unknown(client_id.to_owned()))?;
        if client.public {
            return Err(ClientError::Public(client_id.to_owned()));
        }
        let secret = ClientSecret::generate()?;
        if !self
            .store
            .set_client_secret(client_id, &handle_hash(&secret.0))
            .await?
        {
            return Err(ClientError::Unknown(client_id.to_owned()));
        }
        Ok(secret)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_ids_are_short_and_plain() {
        assert!(ClientId::parse("grafana").is_ok());
        assert!(ClientId::parse("my-app_2.prod").is_ok());
        for bad in ["", "a b", "app/1", "é", &"x".repeat(65)] {
            assert!(ClientId::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn redirect_uris_are_https_or_loopback_http_without_fragments() {
        for good in [
            "https://grafana.example.com/login/generic_oauth",
            "https://app.example.com/cb?x=1",
            "http://127.0.0.1:8080/callback",
            "http://localhost/cb",
            "http://[::1]:9000/cb",
        ] {
            assert!(RedirectUri::parse(good).is_ok(), "{good}");
        }
        for bad in [
            "/callback",
            "http://app.example.com/cb",
            "https://app.example.com/cb#frag",
            "https://user:pw@app.example.com/cb",
            "javascript:alert(1)",
            "ftp://example.com/cb",
            "http://127.0.0.1.evil.example/cb",
        ] {
            assert!(RedirectUri::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_secret_matches_only_itself_and_a_public_client_has_none() {
        let secret = ClientSecret::generate().unwrap();
        let client = Client::from(StoredClient {
            client_id: "app".into(),
            name: "App".into(),
            redirect_uris: vec!["https://app.example.com/cb".into()],
            post_logout_redirect_uris: vec![],
            secret_hash: Some(handle_hash(secret.expose())),
            created_at: Timestamp::now(),
        });
        assert!(client.secret_matches(secret.expose()));
        assert!(!client.secret_matches("guess"));
        assert!(!client.public);
        assert!(client.allows_redirect("https://app.example.com/cb"));
        assert!(!client.allows_redirect("https://app.example.com/cb/"));
        let public = Client {
            secret_hash: None,
            public: true,
            ..client
        };
        assert!(!public.secret_matches(secret.expose()));
        assert!(!public.secret_matches(""));
    }
}
