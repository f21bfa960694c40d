//! OpenID Connect against the `facelock` binary on the embedded engine, driven by a real
//! relying party: the `openidconnect` crate (discovery, PKCE, nonce, ID token verification
//! against the JWKS, userinfo, refresh), with the face shown through the documented endpoint
//! (`POST /authorize/{request_id}`) as a native app or an operator's own page would. The
//! hosted page in a real browser is in `browser.rs`.

use std::{path::PathBuf, process::Output, time::Duration};

use openidconnect::{
    core::{CoreAuthenticationFlow, CoreClient, CoreGenderClaim, CoreProviderMetadata},
    AccessTokenHash, AuthenticationContextClass, AuthorizationCode, ClientId, ClientSecret,
    CsrfToken, EmptyAdditionalClaims, IssuerUrl, Nonce, OAuth2TokenResponse, PkceCodeChallenge,
    PkceCodeVerifier, RedirectUrl, Scope, TokenResponse, UserInfoClaims,
};
use reqwest::{redirect::Policy, StatusCode};
use url::Url;

use crate::{
    helpers::{models_dir, shared_faces},
    smoke::{facelock_command, spawn_server, Server},
};

const WEB_REDIRECT: &str = "http://127.0.0.1:9/callback";
const SPA_REDIRECT: &str = "http://localhost:9/spa";
const SPA_LOGOUT: &str = "http://localhost:9/bye";

/// A running provider with Obama enrolled, a confidential client `webapp` and a public client
/// `spa`.
pub(crate) struct Provider {
    _server: Server,
    pub base: String,
    pub dir: tempfile::TempDir,
    models: PathBuf,
    pub faces: PathBuf,
    pub web_secret: String,
}

/// A port free a moment ago: the issuer must be known before the server starts.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Provider {
    /// `None` after reporting the skip when the photos or models are missing.
    pub async fn start() -> Option<Self> {
        let (faces, models) = (shared_faces()?, models_dir()?);
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let base = format!("http://127.0.0.1:{port}");
        let (server, reported) = spawn_server(
            dir.path(),
            &[
                ("FACELOCK_MODELS_DIR", models.display().to_string()),
                ("FACELOCK_PORT", port.to_string()),
                ("FACELOCK_ISSUER", base.clone()),
                ("FACELOCK_RATE_LIMIT_PER_MINUTE", "0".into()),
            ],
        );
        assert_eq!(reported, base);
        let mut provider = Self {
            _server: server,
            base,
            dir,
            models,
            faces,
            web_secret: String::new(),
        };
        let http = reqwest::Client::new();
        let form = reqwest::multipart::Form::new()
            .text("user_id", "obama")
            .text("full_name", "Barack Obama")
            .text("email", "barack@example.com")
            .part(
                "face_image",
                reqwest::multipart::Part::bytes(provider.photo("barack_obama/obama_01.jpg")),
            );
        let registered = http
            .post(format!("{}/register/", provider.base))
            .multipart(form)
            .send()
            .await
            .unwrap();
        assert_eq!(registered.status(), 200);
        let added = provider.facelock(&[
            "clients",
            "add",
            "webapp",
            "--name",
            "Web App",
            "--redirect-uri",
            WEB_REDIRECT,
        ]);
        let stdout = String::from_utf8(added.stdout).unwrap();
        provider.web_secret = stdout
            .lines()
            .find_map(|l| l.strip_prefix("client_secret\t"))
            .expect("clients add prints the secret")
            .to_owned();
        let spa = provider.facelock(&[
            "clients",
            "add",
            "spa",
            "--name",
            "Single Page App",
            "--public",
            "--redirect-uri",
            SPA_REDIRECT,
            "--post-logout-redirect-uri",
            SPA_LOGOUT,
        ]);
        assert!(spa.status.success(), "{spa:?}");
        Some(provider)
    }

    pub fn photo(&self, rel: &str) -> Vec<u8> {
        std::fs::read(self.faces.join("faces").join(rel)).unwrap()
    }

    pub fn facelock(&self, args: &[&str]) -> Output {
        let out = facelock_command(self.dir.path(), &self.models, args);
        assert!(out.status.success(), "{args:?}: {out:?}");
        out
    }

    /// Discovery, as a relying party does it.
    pub async fn metadata(&self, http: &reqwest::Client) -> CoreProviderMetadata {
        CoreProviderMetadata::discover_async(IssuerUrl::new(self.base.clone()).unwrap(), http)
            .await
            .unwrap()
    }

    /// Opens `authorize` as a browser would; the `Location` it is sent to.
    pub async fn follow(&self, http: &reqwest::Client, url: &str) -> (StatusCode, Option<Url>) {
        let res = http.get(url).send().await.unwrap();
        let location = res.headers().get("location").map(|l| {
            Url::parse(&self.base)
                .unwrap()
                .join(l.to_str().unwrap())
                .unwrap()
        });
        (res.status(), location)
    }

    /// Shows `photo` for the request a login page URL names; the answer's status and body.
    pub async fn sign_in(
        &self,
        http: &reqwest::Client,
        login_page: &Url,
        photo: Vec<u8>,
    ) -> (StatusCode, serde_json::Value) {
        let request = query(login_page, "request").unwrap();
        let form = reqwest::multipart::Form::new()
            .part("face_image", reqwest::multipart::Part::bytes(photo));
        let res = http
            .post(format!("{}/authorize/{request}", self.base))
            .multipart(form)
            .send()
            .await
            .unwrap();
        (res.status(), res.json().await.unwrap())
    }
}

/// The value of `name` in `url`'s query.
pub(crate) fn query(url: &Url, name: &str) -> Option<String> {
    url.query_pairs()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

/// An HTTP client that, as a relying party must, does not follow redirects.
fn rp_http() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(Policy::none())
        .build()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relying_party_signs_a_user_in_refreshes_and_logs_out() {
    let Some(idp) = Provider::start().await else {
        return;
    };
    let http = rp_http();
    let metadata = idp.metadata(&http).await;
    let client = CoreClient::from_provider_metadata(
        metadata,
        ClientId::new("webapp".into()),
        Some(ClientSecret::new(idp.web_secret.clone())),
    )
    .set_redirect_uri(RedirectUrl::new(WEB_REDIRECT.into()).unwrap());
    let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
    let (url, csrf, nonce) = client
        .authorize_url(
            CoreAuthenticationFlow::AuthorizationCode,
            CsrfToken::new_random,
            Nonce::new_random,
        )
        .add_scope(Scope::new("profile".into()))
        .add_scope(Scope::new("email".into()))
        .set_pkce_challenge(challenge)
        .url();

    // The browser is sent to the login page; the face is shown there.
    let (status, login_page) = idp.follow(&http, url.as_str()).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let login_page = login_page.unwrap();
    assert_eq!(login_page.path(), "/login");
    let pending: serde_json::Value = http
        .get(format!(
            "{}/authorize/{}",
            idp.base,
            query(&login_page, "request").unwrap()
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(pending["client_name"], "Web App");
    assert_eq!(pending["liveness_required"], false);
    // Another face does not sign in, and the request stays open for the right one.
    let (status, refused) = idp
        .sign_in(&http, &login_page, idp.photo("joe_biden/biden_01.jpg"))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(refused["code"], "NO_MATCH");
    let (status, next) = idp
        .sign_in(&http, &login_page, idp.photo("barack_obama/obama_04.jpg"))
        .await;
    assert_eq!(status, StatusCode::OK, "{next}");
    let back = Url::parse(next["redirect_to"].as_str().unwrap()).unwrap();
    assert!(back.as_str().starts_with(WEB_REDIRECT), "{back}");
    assert_eq!(
        query(&back, "state").as_deref(),
        Some(csrf.secret().as_str())
    );
    assert_eq!(query(&back, "iss").as_deref(), Some(idp.base.as_str()));
    let code = query(&back, "code").unwrap();
    // Answered: the request cannot be answered again.
    let (status, again) = idp
        .sign_in(&http, &login_page, idp.photo("barack_obama/obama_04.jpg"))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(again["code"], "AUTHORIZATION_UNKNOWN");

    // The code is exchanged; the ID token verifies against the JWKS, with the nonce.
    let tokens = client
        .exchange_code(AuthorizationCode::new(code.clone()))
        .unwrap()
        .set_pkce_verifier(verifier)
        .request_async(&http)
        .await
        .unwrap();
    let id_token = tokens.id_token().expect("an ID token");
    let verifier = client.id_token_verifier().set_allowed_algs(vec![
        openidconnect::core::CoreJwsSigningAlgorithm::EcdsaP256Sha256,
    ]);
    let claims = id_token.claims(&verifier, &nonce).unwrap();
    assert_eq!(claims.subject().as_str(), "obama");
    assert_eq!(
        claims.email().map(|e| e.as_str()),
        Some("barack@example.com")
    );
    assert_eq!(
        claims.auth_context_ref(),
        Some(&AuthenticationContextClass::new(
            "urn:facelock:acr:face".into()
        ))
    );
    assert!(claims.auth_time().is_some());
    let expected_hash = AccessTokenHash::from_token(
        tokens.access_token(),
        id_token.signing_alg().unwrap(),
        id_token.signing_key(&verifier).unwrap(),
    )
    .unwrap();
    assert_eq!(claims.access_token_hash(), Some(&expected_hash));
    assert_eq!(
        tokens.scopes().map(|s| s.len()),
        Some(3),
        "{:?}",
        tokens.scopes()
    );

    // Userinfo answers as the scopes allow.
    let info: UserInfoClaims<EmptyAdditionalClaims, CoreGenderClaim> = client
        .user_info(tokens.access_token().clone(), None)
        .unwrap()
        .request_async(&http)
        .await
        .unwrap();
    assert_eq!(info.subject().as_str(), "obama");
    assert_eq!(
        info.name().and_then(|n| n.get(None)).map(|n| n.as_str()),
        Some("Barack Obama")
    );
    // The client's access token is for the client, not for Face Lock's own API.
    let me = http
        .get(format!("{}/users/me/", idp.base))
        .bearer_auth(tokens.access_token().secret())
        .send()
        .await
        .unwrap();
    assert_eq!(me.status(), StatusCode::UNAUTHORIZED);

    // A refresh needs the client's secret.
    let refresh = tokens.refresh_token().unwrap().clone();
    let stranger = reqwest::Client::new()
        .post(format!("{}/token", idp.base))
        .form(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh.secret()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(stranger.status(), StatusCode::UNAUTHORIZED);
    let refreshed = client
        .exchange_refresh_token(&refresh)
        .unwrap()
        .request_async(&http)
        .await
        .unwrap();
    let info: UserInfoClaims<EmptyAdditionalClaims, CoreGenderClaim> = client
        .user_info(refreshed.access_token().clone(), None)
        .unwrap()
        .request_async(&http)
        .await
        .unwrap();
    assert_eq!(info.subject().as_str(), "obama");

    // Logout ends the session; the post-logout URI of another client is never redirected to.
    let end = format!("{}/end_session", idp.base);
    let foreign = http
        .get(&end)
        .query(&[
            ("id_token_hint", id_token.to_string()),
            ("post_logout_redirect_uri", SPA_LOGOUT.into()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(foreign.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert!(foreign.headers().get("location").is_none());
    let next_refresh = refreshed.refresh_token().unwrap().clone();
    let refused = client
        .exchange_refresh_token(&next_refresh)
        .unwrap()
        .request_async(&http)
        .await;
    assert!(refused.is_err(), "the session was ended by the logout");
    let userinfo = http
        .get(format!("{}/userinfo", idp.base))
        .bearer_auth(refreshed.access_token().secret())
        .send()
        .await
        .unwrap();
    assert_eq!(userinfo.status(), StatusCode::UNAUTHORIZED);

    // The code, presented again, is refused.
    let replay = client
        .exchange_code(AuthorizationCode::new(code))
        .unwrap()
        .set_pkce_verifier(PkceCodeVerifier::new("x".repeat(43)))
        .request_async(&http)
        .await;
    assert!(replay.is_err());
}

/// The attacks of a relying party's threat model, each refused where it must be.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn codes_redirects_and_clients_are_bound_as_the_specification_asks() {
    let Some(idp) = Provider::start().await else {
        return;
    };
    let http = rp_http();
    let authorize = |params: &[(&str, &str)]| {
        let mut url = Url::parse(&format!("{}/authorize", idp.base)).unwrap();
        url.query_pairs_mut().extend_pairs(params);
        url
    };
    let verifier = PkceCodeVerifier::new("v".repeat(64));
    let challenge = PkceCodeChallenge::from_code_verifier_sha256(&verifier);
    let spa = |extra: &[(&str, &str)]| {
        let mut p = vec![
            ("response_type", "code"),
            ("client_id", "spa"),
            ("redirect_uri", SPA_REDIRECT),
            ("scope", "openid"),
            ("state", "a b&c=d/é"),
            ("code_challenge", challenge.as_str()),
            ("code_challenge_method", "S256"),
        ];
        p.extend_from_slice(extra);
        authorize(&p)
    };

    // An unknown client, an unregistered or altered redirect URI: an error page, no redirect.
    for url in [
        authorize(&[
            ("response_type", "code"),
            ("client_id", "nobody"),
            ("redirect_uri", SPA_REDIRECT),
            ("scope", "openid"),
        ]),
        spa(&[("redirect_uri", "https://evil.example.com/spa")]),
        authorize(&[
            ("response_type", "code"),
            ("client_id", "spa"),
            ("redirect_uri", &format!("{SPA_REDIRECT}/x")),
            ("scope", "openid"),
        ]),
    ] {
        let res = http.get(url.clone()).send().await.unwrap();
        assert_eq!(res.status(), StatusCode::BAD_REQUEST, "{url}");
        assert!(res.headers().get("location").is_none(), "{url}");
        assert!(res.text().await.unwrap().contains("Cannot sign in"));
    }

    // Other errors go back with the state untouched.
    for (url, error) in [
        (spa(&[("prompt", "none")]), "login_required"),
        (
            authorize(&[
                ("response_type", "code"),
                ("client_id", "spa"),
                ("redirect_uri", SPA_REDIRECT),
                ("scope", "openid"),
                ("state", "a b&c=d/é"),
            ]),
            "invalid_request",
        ),
    ] {
        let (status, to) = idp.follow(&http, url.as_str()).await;
        assert_eq!(status, StatusCode::SEE_OTHER);
        let to = to.unwrap();
        assert!(to.as_str().starts_with(SPA_REDIRECT), "{to}");
        assert_eq!(query(&to, "error").as_deref(), Some(error), "{to}");
        assert_eq!(query(&to, "state").as_deref(), Some("a b&c=d/é"));
    }

    // A request demanding liveness is not answered with one photo.
    let live = spa(&[("acr_values", "urn:facelock:acr:face-liveness")]);
    let (_, page) = idp.follow(&http, live.as_str()).await;
    let (status, body) = idp
        .sign_in(
            &http,
            &page.unwrap(),
            idp.photo("barack_obama/obama_04.jpg"),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["code"], "LIVENESS_REQUIRED");

    // A code for the public client, and what may be done with it.
    let code = |extra: &'static [(&'static str, &'static str)]| {
        let (idp, http, url) = (&idp, &http, spa(extra));
        async move {
            let (_, page) = idp.follow(http, url.as_str()).await;
            let (status, next) = idp
                .sign_in(http, &page.unwrap(), idp.photo("barack_obama/obama_04.jpg"))
                .await;
            assert_eq!(status, StatusCode::OK, "{next}");
            let back = Url::parse(next["redirect_to"].as_str().unwrap()).unwrap();
            assert_eq!(query(&back, "state").as_deref(), Some("a b&c=d/é"));
            query(&back, "code").unwrap()
        }
    };
    let exchange = |fields: Vec<(&'static str, String)>, basic: Option<(&str, &str)>| {
        let mut req = http.post(format!("{}/token", idp.base)).form(&fields);
        if let Some((id, secret)) = basic {
            req = req.basic_auth(id, Some(secret));
        }
        async move {
            let res = req.send().await.unwrap();
            let status = res.status();
            (status, res.json::<serde_json::Value>().await.unwrap())
        }
    };
    let grant = |code: &str, verifier: Option<&str>| {
        let mut f = vec![
            ("grant_type", "authorization_code".to_owned()),
            ("code", code.to_owned()),
            ("redirect_uri", SPA_REDIRECT.to_owned()),
            ("client_id", "spa".to_owned()),
        ];
        if let Some(v) = verifier {
            f.push(("code_verifier", v.to_owned()));
        }
        f
    };
    let good = verifier.secret().as_str();

    // Without the verifier, or with a wrong one: refused, and the code is spent.
    let c = code(&[]).await;
    let (status, body) = exchange(grant(&c, None), None).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_grant"))
    );
    let c = code(&[]).await;
    let (status, body) = exchange(grant(&c, Some(&"w".repeat(64))), None).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_grant"))
    );
    let (status, _) = exchange(grant(&c, Some(good)), None).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "a refused code is spent");

    // A code of the public client taken to the confidential one (with its right secret).
    let c = code(&[]).await;
    let mut at_web = grant(&c, Some(good));
    at_web.retain(|(k, _)| *k != "client_id");
    let (status, body) = exchange(at_web, Some(("webapp", &idp.web_secret))).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_grant"))
    );

    // A wrong secret for the confidential client.
    let (status, body) = exchange(
        vec![
            ("grant_type", "authorization_code".into()),
            ("code", "flc_whatever".into()),
            ("redirect_uri", WEB_REDIRECT.into()),
        ],
        Some(("webapp", "not-the-secret")),
    )
    .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("invalid_client"))
    );

    // An expired code. (The store's clock is moved instead of the test waiting a minute.)
    let c = code(&[]).await;
    let db = rusqlite::Connection::open(idp.dir.path().join("data/facelock.db")).unwrap();
    db.busy_timeout(Duration::from_secs(5)).unwrap();
    db.execute(
        "UPDATE oidc_grants SET expires_at = expires_at - 61000 WHERE code_hash IS NOT NULL AND redeemed_at IS NULL",
        [],
    )
    .unwrap();
    let (status, body) = exchange(grant(&c, Some(good)), None).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_grant"))
    );
    assert_eq!(body["error_description"], "the code has expired");

    // A good exchange, then the same code again: refused, and what it gave is revoked.
    let c = code(&[]).await;
    let (status, first) = exchange(grant(&c, Some(good)), None).await;
    assert_eq!(status, StatusCode::OK, "{first}");
    let access = first["access_token"].as_str().unwrap().to_owned();
    let info = http
        .get(format!("{}/userinfo", idp.base))
        .bearer_auth(&access)
        .send()
        .await
        .unwrap();
    assert_eq!(info.status(), StatusCode::OK);
    let (status, body) = exchange(grant(&c, Some(good)), None).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_grant"))
    );
    let info = http
        .get(format!("{}/userinfo", idp.base))
        .bearer_auth(&access)
        .send()
        .await
        .unwrap();
    assert_eq!(info.status(), StatusCode::UNAUTHORIZED);

    // The confidential client may do without PKCE and send its secret in the form
    // (client_secret_post); the secret in both places at once is refused.
    let web = authorize(&[
        ("response_type", "code"),
        ("client_id", "webapp"),
        ("redirect_uri", WEB_REDIRECT),
        ("scope", "openid"),
    ]);
    let (_, page) = idp.follow(&http, web.as_str()).await;
    let (status, next) = idp
        .sign_in(
            &http,
            &page.unwrap(),
            idp.photo("barack_obama/obama_04.jpg"),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{next}");
    let back = Url::parse(next["redirect_to"].as_str().unwrap()).unwrap();
    let web_code = query(&back, "code").unwrap();
    let post = |code: &str| {
        vec![
            ("grant_type", "authorization_code".to_owned()),
            ("code", code.to_owned()),
            ("redirect_uri", WEB_REDIRECT.to_owned()),
            ("client_id", "webapp".to_owned()),
            ("client_secret", idp.web_secret.clone()),
        ]
    };
    let (status, body) = exchange(post(&web_code), Some(("webapp", &idp.web_secret))).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_request"))
    );
    let (status, body) = exchange(post(&web_code), None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["scope"], "openid");
    assert!(body["id_token"].is_string());

    // The public client's logout goes to its registered URI, with the state.
    let c = code(&[]).await;
    let (_, tokens) = exchange(grant(&c, Some(good)), None).await;
    let (status, to) = idp
        .follow(
            &http,
            Url::parse_with_params(
                &format!("{}/end_session", idp.base),
                &[
                    ("id_token_hint", tokens["id_token"].as_str().unwrap()),
                    ("post_logout_redirect_uri", SPA_LOGOUT),
                    ("state", "bye"),
                ],
            )
            .unwrap()
            .as_str(),
        )
        .await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert_eq!(to.unwrap().as_str(), format!("{SPA_LOGOUT}?state=bye"));
    let refresh = vec![
        ("grant_type", "refresh_token".to_owned()),
        (
            "refresh_token",
            tokens["refresh_token"].as_str().unwrap().to_owned(),
        ),
        ("client_id", "spa".to_owned()),
    ];
    let (status, body) = exchange(refresh, None).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_grant"))
    );
}
