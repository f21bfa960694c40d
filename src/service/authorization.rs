//! Signing users in to other applications (OpenID Connect's authorization code flow): an
//! application's request is held, the user shows their face on the login page (or any client
//! of the documented endpoint), the application is sent back a code, and trades it once, within
//! a minute, for an ID token, an access token and a refresh token. Also the userinfo endpoint
//! and logout.
//!
//! A face shown here goes through the same lockout, address delay and audit as at `/verify/`.
//! Every step is in the shared store, so each may reach a different server.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::json;

use super::{login::Proof, Actor, AuditKind, Error, Evidence, FaceLock, Origin, TokenPair};
use crate::{
    clock::Timestamp,
    domain::{Similarity, UserId},
    oidc::{AuthorizationRequest, AuthorizeError, AuthorizeParams, Client, Clients},
    secret::{handle_hash, random_handle},
    store::{CodeRedemption, StoreError, StoredGrant},
    tokens::{issuer::at_hash, Assurance, IdTokenClaims, SessionGrant},
};

/// How long a user has to show their face once an application sent them.
const REQUEST_TTL: Duration = Duration::from_secs(600);
/// How long a code lives (OAuth 2.0 Security BCP: a minute at most).
const CODE_TTL: Duration = Duration::from_secs(60);
/// Codes start with this, so one is recognisable in logs.
const CODE_PREFIX: &str = "flc_";

/// An application refused at the token endpoint, in OAuth's words (RFC 6749 5.2).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{error}: {description}")]
pub struct OAuthRefusal {
    pub error: &'static str,
    pub description: &'static str,
}

impl OAuthRefusal {
    fn invalid_client() -> Error {
        Error::OAuth(Self {
            error: "invalid_client",
            description: "client authentication failed",
        })
    }

    fn invalid_grant(description: &'static str) -> Error {
        Error::OAuth(Self {
            error: "invalid_grant",
            description,
        })
    }

    fn invalid_request(description: &'static str) -> Error {
        Error::OAuth(Self {
            error: "invalid_request",
            description,
        })
    }
}

/// What an application shows of itself at the token endpoint: its id and, for a confidential
/// client, its secret (from HTTP Basic or the form: the edge has already refused both at once).
pub struct ClientCredentials {
    pub client_id: String,
    pub secret: Option<String>,
}

/// `grant_type=authorization_code`.
pub struct CodeExchange {
    pub code: String,
    pub redirect_uri: Option<String>,
    pub code_verifier: Option<String>,
}

/// A pending request, as the login page shows it.
pub struct PendingLogin {
    pub client_id: String,
    pub client_name: String,
    pub liveness_required: bool,
    pub login_hint: Option<UserId>,
}

/// What the token endpoint answers a redeemed code with.
pub struct OidcTokens {
    pub tokens: TokenPair,
    pub id_token: String,
    pub scope: String,
}

/// The claims the userinfo endpoint answers with, as the session's scopes allow.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct UserInfo {
    pub sub: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
}

/// `end_session_endpoint`'s parameters.
pub struct EndSession {
    pub id_token_hint: Option<String>,
    pub client_id: Option<String>,
    pub post_logout_redirect_uri: Option<String>,
    pub state: Option<String>,
}

/// The login a code stands for, kept with its grant.
#[derive(Serialize, Deserialize)]
struct GrantedLogin {
    user_id: String,
    user_generation: i64,
    similarity: f32,
    liveness: bool,
    auth_time: i64,
    /// The session the code's tokens start; revoked if the code is presented twice.
    sid: String,
}

impl FaceLock {
    fn clients(&self) -> Clients {
        Clients::new(self.store.clone())
    }

    /// `GET /authorize`: checks an application's request and holds it while the user signs
    /// in; returns the id the login page answers with.
    pub async fn authorize(&self, params: AuthorizeParams) -> Result<String, AuthorizeError> {
        let client = match params.client_id.as_deref() {
            Some(id) => self.clients().find(id).await.map_err(|e| {
                tracing::error!(error = %crate::telemetry::error_chain(&e), "could not read a client");
                AuthorizeError::Unredirectable("The server cannot read its registry of applications; try again later.")
            })?,
            None => None,
        };
        let request = AuthorizationRequest::parse(params, client.as_ref(), self.require_liveness)?;
        let unavailable = |description: &str| AuthorizeError::Redirect {
            to: request.redirect.clone(),
            error: "temporarily_unavailable",
            description: description.to_owned(),
        };
        if !self.tokens.signs_id_tokens() {
            return Err(AuthorizeError::Redirect {
                to: request.redirect.clone(),
                error: "server_error",
                description:
                    "this server signs tokens with a shared secret and cannot sign ID tokens".into(),
            });
        }
        let id = random_handle("").map_err(|_| unavailable("no randomness"))?;
        let now = Timestamp::now();
        let grant = StoredGrant {
            id: id.clone(),
            client_id: request.client_id.clone(),
            request: serde_json::to_string(&request).expect("a request serialises"),
            created_at: now,
            expires_at: now + REQUEST_TTL,
            code_hash: None,
            login: None,
            redeemed_at: None,
        };
        self.store.add_grant(&grant).await.map_err(|e| {
            tracing::error!(error = %crate::telemetry::error_chain(&e), "could not hold an authorization request");
            unavailable("the server could not hold the request")
        })?;
        Ok(id)
    }

    /// A request still waiting for its user's face.
    async fn pending(&self, id: &str) -> Result<(AuthorizationRequest, Client), Error> {
        let grant = self
            .store
            .pending_grant(id, Timestamp::now())
            .await
            .map_err(Error::Store)?
            .ok_or(Error::AuthorizationUnknown)?;
        let request = parse_request(&grant)?;
        let client = self
            .clients()
            .find(&request.client_id)
            .await
            .map_err(client_store_error)?
            // Removed while its user was signing in.
            .ok_or(Error::AuthorizationUnknown)?;
        Ok((request, client))
    }

    /// What the login page shows of pending request `id`.
    pub async fn pending_login(&self, id: &str) -> Result<PendingLogin, Error> {
        let (request, client) = self.pending(id).await?;
        Ok(PendingLogin {
            client_id: client.client_id,
            client_name: client.name,
            liveness_required: request.liveness,
            login_hint: request.login_hint,
        })
    }

    /// The user's face for pending request `id`: on a match, the request is answered with a
    /// code and the URL to send the browser to is returned. A face that does not match leaves
    /// the request pending (the user may try again, as the lockout allows).
    pub async fn sign_in(
        &self,
        id: &str,
        evidence: Evidence,
        origin: &Origin,
    ) -> Result<String, Error> {
        let (request, client) = self.pending(id).await?;
        if request.liveness && matches!(evidence, Evidence::Photo(_)) {
            return Err(Error::LivenessRequired);
        }
        let proof = self
            .prove(evidence, None, request.login_hint.clone(), origin)
            .await?;
        let code = random_handle(CODE_PREFIX).map_err(|_| Error::Randomness)?;
        let login = GrantedLogin {
            user_id: proof.user.user_id.to_string(),
            user_generation: proof.user.generation,
            similarity: proof.similarity.value(),
            liveness: proof.assurance == Assurance::FaceAndLiveness,
            auth_time: proof.at.unix_seconds(),
            sid: self.tokens.new_session_id(),
        };
        let now = Timestamp::now();
        let answered = self
            .store
            .answer_grant(
                id,
                &handle_hash(&code),
                &serde_json::to_string(&login).expect("a login serialises"),
                now,
                now + CODE_TTL,
            )
            .await
            .map_err(Error::Store)?;
        if answered.is_none() {
            // Answered by another sign-in meanwhile, or lapsed.
            return Err(Error::AuthorizationUnknown);
        }
        self.audit_login(
            &proof,
            origin,
            json!({ "claimed": request.login_hint.is_some(), "client": client.client_id }),
        )
        .await;
        Ok(request
            .redirect
            .with(self.tokens.issuer(), &[("code", &code)]))
    }

    /// The user declined: the request ends and the application is told `access_denied`.
    pub async fn decline(&self, id: &str) -> Result<String, Error> {
        let (request, _) = self.pending(id).await?;
        let now = Timestamp::now();
        // A code nobody holds: the request can no longer be answered.
        let unused = random_handle(CODE_PREFIX).map_err(|_| Error::Randomness)?;
        self.store
            .answer_grant(id, &handle_hash(&unused), "null", now, now)
            .await
            .map_err(Error::Store)?
            .ok_or(Error::AuthorizationUnknown)?;
        Ok(request.redirect.error(
            self.tokens.issuer(),
            "access_denied",
            "the user declined to sign in",
        ))
    }

    /// The registered client behind `credentials`. A confidential client must show its secret;
    /// a public one shows only its id.
    pub async fn authenticate_client(
        &self,
        credentials: Option<&ClientCredentials>,
    ) -> Result<Client, Error> {
        let credentials = credentials.ok_or_else(OAuthRefusal::invalid_client)?;
        let client = self
            .clients()
            .find(&credentials.client_id)
            .await
            .map_err(client_store_error)?
            .ok_or_else(OAuthRefusal::invalid_client)?;
        let authenticated = match &credentials.secret {
            None => client.public,
            Some(secret) => client.secret_matches(secret),
        };
        if !authenticated {
            return Err(OAuthRefusal::invalid_client());
        }
        Ok(client)
    }

    /// `grant_type=authorization_code`: redeems a code, once, for the client it was issued to.
    /// A code presented a second time revokes the session its first redemption started.
    pub async fn redeem_code(
        &self,
        exchange: CodeExchange,
        credentials: Option<&ClientCredentials>,
        origin: &Origin,
    ) -> Result<OidcTokens, Error> {
        let client = self.authenticate_client(credentials).await?;
        let now = Timestamp::now();
        let grant = match self
            .store
            .redeem_code(&handle_hash(&exchange.code), now)
            .await
            .map_err(Error::Store)?
        {
            CodeRedemption::Redeemed(grant) => grant,
            CodeRedemption::Unknown => {
                return Err(OAuthRefusal::invalid_grant("the code is unknown"))
            }
            CodeRedemption::Replayed(grant) => {
                if let Some(login) = granted_login(&grant) {
                    self.tokens.end_session(&login.sid).await?;
                    self.accounts
                        .audit(
                            AuditKind::CodeReplayed,
                            origin,
                            UserId::parse(&login.user_id).ok().as_ref(),
                            Actor::Anonymous,
                            json!({ "client": grant.client_id, "session_revoked": true }),
                        )
                        .await;
                }
                return Err(OAuthRefusal::invalid_grant(
                    "the code was used before: the tokens it gave are revoked",
                ));
            }
        };
        let request = parse_request(&grant)?;
        if grant.client_id != client.client_id {
            return Err(OAuthRefusal::invalid_grant(
                "the code was issued to another client",
            ));
        }
        if grant.expires_at <= now {
            return Err(OAuthRefusal::invalid_grant("the code has expired"));
        }
        let Some(login) = granted_login(&grant) else {
            return Err(OAuthRefusal::invalid_grant("the request was declined"));
        };
        if exchange.redirect_uri.as_deref() != Some(request.redirect.redirect_uri.as_str()) {
            return Err(OAuthRefusal::invalid_grant(
                "redirect_uri is not the one the code was sent to",
            ));
        }
        match (&request.code_challenge, exchange.code_verifier.as_deref()) {
            (None, None) => {}
            (None, Some(_)) => {
                return Err(OAuthRefusal::invalid_request(
                    "code_verifier sent for a request without code_challenge",
                ))
            }
            (Some(_), None) => {
                return Err(OAuthRefusal::invalid_grant("code_verifier is required"))
            }
            (Some(challenge), Some(verifier)) if !challenge.is_met_by(verifier) => {
                return Err(OAuthRefusal::invalid_grant(
                    "code_verifier does not match the code_challenge",
                ))
            }
            (Some(_), Some(_)) => {}
        }
        let user_id = UserId::parse(&login.user_id)
            .map_err(|_| corrupt("a grant names an invalid user id"))?;
        let user = self
            .store
            .current_user(&user_id, login.user_generation)
            .await?
            .ok_or_else(|| OAuthRefusal::invalid_grant("the user no longer exists"))?;
        let assurance = if login.liveness {
            Assurance::FaceAndLiveness
        } else {
            Assurance::Face
        };
        let proof = Proof {
            similarity: Similarity::new(login.similarity)
                .map_err(|_| corrupt("a grant's similarity is out of range"))?,
            assurance,
            at: Timestamp::from_unix_seconds(login.auth_time),
            user,
        };
        let session = SessionGrant {
            audience: client.client_id.clone(),
            id: login.sid.clone(),
            scope: Some(request.scope()),
        };
        let (_, tokens) = match self.open_session(&proof, &session).await {
            Ok(opened) => opened,
            // Deleted since the sign-in: nobody to issue tokens for.
            Err(Error::NoMatch) => {
                return Err(OAuthRefusal::invalid_grant("the user no longer exists"))
            }
            Err(e) => return Err(e),
        };
        let issued = Timestamp::now();
        let id_token = self
            .tokens
            .issue_id_token(&IdTokenClaims {
                iss: self.tokens.issuer().to_owned(),
                sub: proof.user.user_id.to_string(),
                aud: client.client_id.clone(),
                exp: (issued + self.tokens.access_ttl()).unix_seconds(),
                iat: issued.unix_seconds(),
                auth_time: login.auth_time,
                nonce: request.nonce.clone(),
                amr: assurance.amr(),
                acr: assurance.acr().to_owned(),
                at_hash: Some(at_hash(&tokens.access_token)),
                sid: login.sid,
                name: request
                    .has_scope("profile")
                    .then(|| proof.user.full_name.clone())
                    .flatten(),
                email: request
                    .has_scope("email")
                    .then(|| proof.user.email.clone())
                    .flatten(),
            })
            .await?;
        Ok(OidcTokens {
            tokens,
            id_token,
            scope: request.scope(),
        })
    }

    /// The userinfo endpoint: who the access token's user is, as its scopes allow.
    pub async fn userinfo(&self, bearer: &str) -> Result<UserInfo, Error> {
        let claims = self
            .tokens
            .validate_openid(bearer)
            .await
            .map_err(Error::Unauthenticated)?;
        let user = self.user_of(&claims).await?;
        let scopes: Vec<&str> = claims
            .scope
            .as_deref()
            .unwrap_or_default()
            .split(' ')
            .collect();
        Ok(UserInfo {
            sub: claims.sub.clone(),
            name: scopes
                .contains(&"profile")
                .then_some(user.full_name)
                .flatten(),
            email: scopes.contains(&"email").then_some(user.email).flatten(),
        })
    }

    /// RP-initiated logout: ends the session the ID token names (its refresh and access
    /// tokens) and returns where to send the browser: the client's registered post-logout
    /// URI, or nowhere (the server says the user is signed out).
    pub async fn end_session(
        &self,
        request: EndSession,
        origin: &Origin,
    ) -> Result<Option<String>, Error> {
        let hint =
            match &request.id_token_hint {
                Some(token) => Some(self.tokens.read_id_token(token).await.ok_or(
                    Error::Invalid(crate::domain::InvalidInput::new(
                        "id_token_hint",
                        "is not an ID token of this server",
                    )),
                )?),
                None => None,
            };
        let client_id = match (&hint, &request.client_id) {
            (Some(h), Some(c)) if &h.aud != c => {
                return Err(Error::Invalid(crate::domain::InvalidInput::new(
                    "client_id",
                    "is not the audience of id_token_hint",
                )))
            }
            (Some(h), _) => Some(h.aud.clone()),
            (None, c) => c.clone(),
        };
        if let Some(hint) = &hint {
            self.tokens.end_session(&hint.sid).await?;
            self.accounts
                .audit(
                    AuditKind::SessionEnded,
                    origin,
                    UserId::parse(&hint.sub).ok().as_ref(),
                    Actor::Anonymous,
                    json!({ "client": hint.aud }),
                )
                .await;
        }
        let Some(uri) = request.post_logout_redirect_uri else {
            return Ok(None);
        };
        let client = match &client_id {
            Some(id) => self.clients().find(id).await.map_err(client_store_error)?,
            None => None,
        };
        match client {
            Some(client) if client.allows_post_logout_redirect(&uri) => {
                let mut url =
                    url::Url::parse(&uri).map_err(|_| corrupt("a stored post-logout URI"))?;
                if let Some(state) = &request.state {
                    url.query_pairs_mut().append_pair("state", state);
                }
                Ok(Some(url.into()))
            }
            // Never sent to an address the client did not register: an open redirect.
            _ => Err(Error::Invalid(crate::domain::InvalidInput::new(
                "post_logout_redirect_uri",
                "is not registered for the client named by id_token_hint or client_id",
            ))),
        }
    }
}

fn parse_request(grant: &StoredGrant) -> Result<AuthorizationRequest, Error> {
    serde_json::from_str(&grant.request)
        .map_err(|e| corrupt(format!("a held authorization request: {e}")))
}

/// The login a grant was answered with; `None` if it was declined.
fn granted_login(grant: &StoredGrant) -> Option<GrantedLogin> {
    serde_json::from_str(grant.login.as_deref()?).ok()
}

fn client_store_error(e: crate::oidc::ClientError) -> Error {
    match e {
        crate::oidc::ClientError::Store(e) => Error::Store(e),
        other => corrupt(other.to_string()),
    }
}

fn corrupt(what: impl Into<String>) -> Error {
    Error::Store(StoreError::Corrupt(what.into()))
}
