//! An application's authorization request (OpenID Connect Core 3.1.2.1, RFC 7636), checked
//! against its registered client: what the user is asked to sign in to, and where the answer
//! goes.
//!
//! Until the client and its redirect URI are known good, a bad request is told to the user and
//! never redirected (an open redirect would hand codes, or phishing, to any site); after that,
//! every error goes back to the application with `error` and the request's own `state`.

use serde::{Deserialize, Serialize};

use super::{pkce::CodeChallenge, Client};
use crate::{domain::UserId, tokens::Assurance};

/// The scopes this provider knows; others are ignored, as OpenID Connect allows.
pub const SCOPES: [&str; 3] = ["openid", "profile", "email"];
/// Longest `state` and `nonce` kept (they are echoed into URLs and tokens).
const MAX_ECHOED: usize = 1024;

/// The query of `GET /authorize`, as sent.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AuthorizeParams {
    /// `code`.
    pub response_type: Option<String>,
    /// A registered client's id.
    pub client_id: Option<String>,
    /// Exactly one of the client's registered redirect URIs.
    pub redirect_uri: Option<String>,
    /// `openid`, and optionally `profile` (name) and `email`.
    pub scope: Option<String>,
    /// Passed back untouched with the code or the error.
    pub state: Option<String>,
    /// Copied into the ID token.
    pub nonce: Option<String>,
    /// PKCE (RFC 7636): the base64url SHA-256 of the client's code verifier. Required of
    /// public clients.
    pub code_challenge: Option<String>,
    /// `S256`.
    pub code_challenge_method: Option<String>,
    /// `query` (the only mode).
    pub response_mode: Option<String>,
    /// `login` (every sign-in is one), or `none` (answered `login_required`).
    pub prompt: Option<String>,
    /// Met by every sign-in, which is always fresh.
    pub max_age: Option<String>,
    /// A user id: the face is checked against this user only (1:1).
    pub login_hint: Option<String>,
    /// `urn:facelock:acr:face-liveness` demands a liveness challenge.
    pub acr_values: Option<String>,
    /// Not supported (`request_not_supported`).
    pub request: Option<String>,
    /// Not supported (`request_uri_not_supported`).
    pub request_uri: Option<String>,
}

/// A refused authorization request.
#[derive(Debug, thiserror::Error)]
pub enum AuthorizeError {
    /// The client or its redirect URI cannot be trusted: shown to the user, never redirected.
    #[error("{0}")]
    Unredirectable(&'static str),
    /// Sent back to the application (RFC 6749 4.1.2.1).
    #[error("{error}: {description}")]
    Redirect {
        /// Where to, with `state` and `iss` added.
        to: Redirect,
        error: &'static str,
        description: String,
    },
}

/// Where an answer goes: a client's registered redirect URI and the request's `state`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Redirect {
    pub redirect_uri: String,
    pub state: Option<String>,
}

impl Redirect {
    /// The redirect URI with `params`, the `state` and the issuer (RFC 9207) added to its
    /// query (a query the URI was registered with is kept).
    pub fn with(&self, issuer: &str, params: &[(&str, &str)]) -> String {
        let mut url = url::Url::parse(&self.redirect_uri)
            .expect("redirect URIs are checked when their client is registered");
        {
            let mut query = url.query_pairs_mut();
            for (k, v) in params {
                query.append_pair(k, v);
            }
            if let Some(state) = &self.state {
                query.append_pair("state", state);
            }
            query.append_pair("iss", issuer);
        }
        url.into()
    }

    pub fn error(&self, issuer: &str, error: &str, description: &str) -> String {
        self.with(
            issuer,
            &[("error", error), ("error_description", description)],
        )
    }
}

/// A valid authorization request, held while the user signs in.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuthorizationRequest {
    pub client_id: String,
    pub redirect: Redirect,
    /// The known scopes asked for, `openid` first.
    pub scopes: Vec<String>,
    pub nonce: Option<String>,
    pub code_challenge: Option<CodeChallenge>,
    /// `login_hint`: the user to check the face against (1:1) instead of every user.
    pub login_hint: Option<UserId>,
    /// The application asked for a liveness challenge (`acr_values`), or the server demands it.
    pub liveness: bool,
}

impl AuthorizationRequest {
    /// Checks `params` against `client` (the one `client_id` names, if registered).
    /// `require_liveness`: the server takes no single photo.
    pub fn parse(
        params: AuthorizeParams,
        client: Option<&Client>,
        require_liveness: bool,
    ) -> Result<Self, AuthorizeError> {
        let Some(client) = client else {
            return Err(AuthorizeError::Unredirectable(
                "The application that sent you here is not registered with this server.",
            ));
        };
        let redirect_uri = params.redirect_uri.ok_or(AuthorizeError::Unredirectable(
            "The application that sent you here did not say where to send you back.",
        ))?;
        if !client.allows_redirect(&redirect_uri) {
            return Err(AuthorizeError::Unredirectable(
                "The application that sent you here asked to send you back to an address it \
                 has not registered.",
            ));
        }
        let redirect = Redirect {
            redirect_uri,
            state: params.state.filter(|s| !s.is_empty()),
        };
        let refuse = |error: &'static str, description: &str| AuthorizeError::Redirect {
            to: redirect.clone(),
            error,
            description: description.to_owned(),
        };
        if redirect
            .state
            .as_ref()
            .is_some_and(|s| s.len() > MAX_ECHOED)
        {
            return Err(refuse("invalid_request", "state is longer than 1024 bytes"));
        }
        if params.request.is_some() {
            return Err(refuse(
                "request_not_supported",
                "request objects are not supported",
            ));
        }
        if params.request_uri.is_some() {
            return Err(refuse(
                "request_uri_not_supported",
                "request_uri is not supported",
            ));
        }
        match params.response_type.as_deref() {
            Some("code") => {}
            None => return Err(refuse("invalid_request", "response_type is required")),
            Some(_) => {
                return Err(refuse(
                    "unsupported_response_type",
                    "only response_type=code is supported",
                ))
            }
        }
        if params
            .response_mode
            .as_deref()
            .is_some_and(|m| m != "query")
        {
            return Err(refuse(
                "invalid_request",
                "only response_mode=query is supported",
            ));
        }
        let asked: Vec<&str> = params
            .scope
            .as_deref()
            .unwrap_or_default()
            .split(' ')
            .collect();
        if !asked.contains(&"openid") {
            return Err(refuse("invalid_scope", "scope must include openid"));
        }
        let scopes = SCOPES
            .iter()
            .filter(|s| asked.contains(s))
            .map(|s| (*s).to_owned())
            .collect();
        let nonce = params.nonce.filter(|n| !n.is_empty());
        if nonce.as_ref().is_some_and(|n| n.len() > MAX_ECHOED) {
            return Err(refuse("invalid_request", "nonce is longer than 1024 bytes"));
        }
        let code_challenge = match (
            params.code_challenge,
            params.code_challenge_method.as_deref(),
        ) {
            (None, None) if client.public => {
                return Err(refuse(
                    "invalid_request",
                    "a public client must send a PKCE code_challenge (S256)",
                ))
            }
            (None, None) => None,
            (None, Some(_)) => {
                return Err(refuse(
                    "invalid_request",
                    "code_challenge_method without code_challenge",
                ))
            }
            (Some(challenge), Some("S256")) => Some(
                CodeChallenge::parse(&challenge)
                    .ok_or_else(|| refuse("invalid_request", "code_challenge is malformed"))?,
            ),
            (Some(_), _) => {
                return Err(refuse(
                    "invalid_request",
                    "code_challenge_method must be S256",
                ))
            }
        };
        let prompts: Vec<&str> = params
            .prompt
            .as_deref()
            .unwrap_or_default()
            .split(' ')
            .filter(|p| !p.is_empty())
            .collect();
        if prompts.contains(&"none") {
            // Every sign-in here is a face shown to the camera: there is no session to reuse.
            return Err(refuse(
                "login_required",
                "this provider keeps no sign-in session: the user must show their face",
            ));
        }
        if let Some(p) = prompts
            .iter()
            .find(|p| !["login", "consent", "select_account"].contains(p))
        {
            return Err(refuse("invalid_request", &format!("unknown prompt {p:?}")));
        }
        if let Some(max_age) = &params.max_age {
            // Every sign-in is fresh, so any age is met; it must still be a number.
            if max_age.parse::<u64>().is_err() {
                return Err(refuse(
                    "invalid_request",
                    "max_age must be a whole number of seconds",
                ));
            }
        }
        let login_hint = match params.login_hint.filter(|h| !h.is_empty()) {
            None => None,
            Some(hint) => Some(
                UserId::parse(&hint)
                    .map_err(|_| refuse("invalid_request", "login_hint is not a valid user id"))?,
            ),
        };
        let liveness = require_liveness
            || params
                .acr_values
                .as_deref()
                .unwrap_or_default()
                .split(' ')
                .any(|acr| acr == Assurance::FaceAndLiveness.acr());
        Ok(Self {
            client_id: client.client_id.clone(),
            redirect,
            scopes,
            nonce,
            code_challenge,
            login_hint,
            liveness,
        })
    }

    /// The scopes, as OAuth writes them.
    pub fn scope(&self) -> String {
        self.scopes.join(" ")
    }

    pub fn has_scope(&self, scope: &str) -> bool {
        self.scopes.iter().any(|s| s == scope)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{clock::Timestamp, store::StoredClient};

    fn client(public: bool) -> Client {
        Client::from(StoredClient {
            client_id: "app".into(),
            name: "App".into(),
            redirect_uris: vec!["https://app.example.com/cb?tenant=1".into()],
            post_logout_redirect_uris: vec![],
            secret_hash: (!public).then(|| "00".repeat(32)),
            created_at: Timestamp::now(),
        })
    }

    fn params() -> AuthorizeParams {
        AuthorizeParams {
            response_type: Some("code".into()),
            client_id: Some("app".into()),
            redirect_uri: Some("https://app.example.com/cb?tenant=1".into()),
            scope: Some("openid email phone".into()),
            state: Some("s&t=1".into()),
            nonce: Some("n".into()),
            code_challenge: Some("E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM".into()),
            code_challenge_method: Some("S256".into()),
            ..Default::default()
        }
    }

    fn refusal(p: AuthorizeParams, public: bool) -> (&'static str, String) {
        match AuthorizationRequest::parse(p, Some(&client(public)), false) {
            Err(AuthorizeError::Redirect { to, error, .. }) => {
                (error, to.error("https://id.example.com", error, "x"))
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_good_request_keeps_known_scopes_and_its_state() {
        let r = AuthorizationRequest::parse(params(), Some(&client(true)), false).unwrap();
        assert_eq!(r.scope(), "openid email");
        assert!(!r.liveness);
        let to = r
            .redirect
            .with("https://id.example.com", &[("code", "abc")]);
        assert_eq!(
            to,
            "https://app.example.com/cb?tenant=1&code=abc&state=s%26t%3D1&iss=https%3A%2F%2Fid.example.com"
        );
    }

    #[test]
    fn an_unknown_client_or_redirect_uri_is_never_redirected_to() {
        let unknown = AuthorizationRequest::parse(params(), None, false);
        assert!(matches!(unknown, Err(AuthorizeError::Unredirectable(_))));
        for uri in [
            None,
            Some("https://evil.example.com/cb"),
            Some("https://app.example.com/cb?tenant=2"),
            Some("https://app.example.com/cb?tenant=1&x=1"),
            Some("https://app.example.com/cb"),
        ] {
            let p = AuthorizeParams {
                redirect_uri: uri.map(Into::into),
                ..params()
            };
            let r = AuthorizationRequest::parse(p, Some(&client(false)), false);
            assert!(
                matches!(r, Err(AuthorizeError::Unredirectable(_))),
                "{uri:?}"
            );
        }
    }

    #[test]
    fn other_errors_go_back_with_the_state() {
        let cases = [
            (
                AuthorizeParams {
                    response_type: Some("token".into()),
                    ..params()
                },
                "unsupported_response_type",
            ),
            (
                AuthorizeParams {
                    scope: Some("email".into()),
                    ..params()
                },
                "invalid_scope",
            ),
            (
                AuthorizeParams {
                    code_challenge_method: Some("plain".into()),
                    ..params()
                },
                "invalid_request",
            ),
            (
                AuthorizeParams {
                    code_challenge: None,
                    code_challenge_method: None,
                    ..params()
                },
                "invalid_request",
            ),
            (
                AuthorizeParams {
                    prompt: Some("none".into()),
                    ..params()
                },
                "login_required",
            ),
            (
                AuthorizeParams {
                    login_hint: Some("no one/..".into()),
                    ..params()
                },
                "invalid_request",
            ),
            (
                AuthorizeParams {
                    request_uri: Some("https://evil.example.com/r".into()),
                    ..params()
                },
                "request_uri_not_supported",
            ),
        ];
        for (p, expected) in cases {
            let (error, to) = refusal(p, true);
            assert_eq!(error, expected);
            assert!(to.starts_with("https://app.example.com/cb?tenant=1&error="));
            assert!(to.contains("&state=s%26t%3D1&"), "{to}");
        }
    }

    #[test]
    fn a_confidential_client_may_skip_pkce_and_liveness_is_asked_by_acr() {
        let p = AuthorizeParams {
            code_challenge: None,
            code_challenge_method: None,
            acr_values: Some(format!("x {}", Assurance::FaceAndLiveness.acr())),
            ..params()
        };
        let r = AuthorizationRequest::parse(p, Some(&client(false)), false).unwrap();
        assert!(r.code_challenge.is_none());
        assert!(r.liveness);
        let forced = AuthorizationRequest::parse(params(), Some(&client(false)), true).unwrap();
        assert!(forced.liveness);
    }
}
