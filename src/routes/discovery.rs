//! What a backend needs to validate tokens on its own: the public keys (JWKS) and the issuer's
//! metadata (RFC 8414 / OpenID discovery).

use axum::{extract::State, http::header, response::IntoResponse, Json};
use serde::Serialize;
use utoipa::ToSchema;

use super::AppState;

/// A JSON Web Key Set (RFC 7517).
#[derive(Serialize, ToSchema)]
pub struct Jwks {
    /// Public keys: `kty`, `crv`, `x`, `y`, `kid`, `use`, `alg`. Empty when tokens are signed
    /// with a shared secret (HS256 mode).
    #[schema(value_type = Vec<Object>)]
    pub keys: Vec<serde_json::Value>,
}

/// The public keys that verify access tokens; pick the one whose `kid` the token names.
#[utoipa::path(get, path = "/.well-known/jwks.json", operation_id = "jwks", tag = "auth", responses((status = 200, body = Jwks)))]
pub async fn jwks(State(state): State<AppState>) -> impl IntoResponse {
    (
        // Short enough that a rotation reaches backends well before the old key retires.
        [(header::CACHE_CONTROL, "public, max-age=300")],
        Json(Jwks {
            keys: state.facelock.tokens().jwks().await,
        }),
    )
}

/// Issuer metadata.
#[derive(Serialize, ToSchema)]
pub struct Discovery {
    pub issuer: String,
    pub jwks_uri: String,
    /// OpenID Connect's endpoints: absent when tokens are signed with a shared secret (no ID
    /// tokens can be signed).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub authorization_endpoint: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub userinfo_endpoint: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub end_session_endpoint: Option<String>,
    pub token_endpoint: String,
    pub revocation_endpoint: String,
    pub introspection_endpoint: String,
    pub grant_types_supported: Vec<String>,
    pub token_endpoint_auth_methods_supported: Vec<String>,
    pub revocation_endpoint_auth_methods_supported: Vec<String>,
    pub introspection_endpoint_auth_methods_supported: Vec<String>,
    /// Algorithms access tokens are signed with.
    pub access_token_signing_alg_values_supported: Vec<String>,
    pub id_token_signing_alg_values_supported: Vec<String>,
    pub response_types_supported: Vec<String>,
    pub response_modes_supported: Vec<String>,
    pub subject_types_supported: Vec<String>,
    pub code_challenge_methods_supported: Vec<String>,
    pub scopes_supported: Vec<String>,
    pub claims_supported: Vec<String>,
    pub prompt_values_supported: Vec<String>,
    /// The authorization response names its issuer (`iss`, RFC 9207).
    pub authorization_response_iss_parameter_supported: bool,
    /// How users authenticate (RFC 8176): `face`, plus `liveness` after a passed liveness
    /// challenge.
    pub amr_values_supported: Vec<String>,
    /// `urn:facelock:acr:face`: a photo matched; `urn:facelock:acr:face-liveness`: frames
    /// matched and showed a live head following a random challenge. Refreshed tokens say
    /// `face`: liveness is proven at the face login only.
    pub acr_values_supported: Vec<String>,
    /// How to validate tokens from this issuer.
    pub token_validation_note: String,
}

/// Where the keys and endpoints are, and which algorithms are used.
#[utoipa::path(get, path = "/.well-known/openid-configuration", operation_id = "openid_configuration", tag = "auth", responses((status = 200, body = Discovery)))]
pub async fn openid_configuration(State(state): State<AppState>) -> Json<Discovery> {
    let tokens = state.facelock.tokens();
    let issuer = tokens.issuer().to_owned();
    let alg = format!("{:?}", tokens.algorithm());
    let hmac = alg.starts_with("HS");
    let note = if hmac {
        format!("Tokens are signed with a shared secret ({alg}); the key set is empty. Validate them with SECRET_KEY.")
    } else {
        format!("Tokens are {alg} JWTs with typ at+jwt: fetch jwks_uri, pick the key by kid, check iss and aud.")
    };
    let strings = |list: &[&str]| list.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
    let oidc = |path: &str| tokens.signs_id_tokens().then(|| format!("{issuer}{path}"));
    Json(Discovery {
        jwks_uri: format!("{issuer}/.well-known/jwks.json"),
        authorization_endpoint: oidc("/authorize"),
        userinfo_endpoint: oidc("/userinfo"),
        end_session_endpoint: oidc("/end_session"),
        token_endpoint: format!("{issuer}/token"),
        revocation_endpoint: format!("{issuer}/revoke"),
        introspection_endpoint: format!("{issuer}/introspect"),
        issuer,
        grant_types_supported: strings(&["authorization_code", "refresh_token"]),
        token_endpoint_auth_methods_supported: strings(&[
            "client_secret_basic",
            "client_secret_post",
            "none",
        ]),
        revocation_endpoint_auth_methods_supported: vec!["none".into()],
        introspection_endpoint_auth_methods_supported: vec!["bearer".into()],
        access_token_signing_alg_values_supported: vec![alg.clone()],
        id_token_signing_alg_values_supported: if tokens.signs_id_tokens() {
            vec![alg]
        } else {
            vec![]
        },
        response_types_supported: strings(&["code"]),
        response_modes_supported: strings(&["query"]),
        subject_types_supported: vec!["public".into()],
        code_challenge_methods_supported: strings(&["S256"]),
        scopes_supported: strings(&crate::oidc::request::SCOPES),
        claims_supported: strings(&[
            "iss",
            "sub",
            "aud",
            "exp",
            "iat",
            "auth_time",
            "nonce",
            "amr",
            "acr",
            "at_hash",
            "sid",
            "name",
            "email",
        ]),
        prompt_values_supported: strings(&["login", "none"]),
        authorization_response_iss_parameter_supported: true,
        amr_values_supported: vec![
            crate::tokens::AMR_FACE.into(),
            crate::tokens::AMR_LIVENESS.into(),
        ],
        acr_values_supported: crate::tokens::Assurance::ALL
            .iter()
            .map(|a| a.acr().to_owned())
            .collect(),
        token_validation_note: note,
    })
}
