//! Face Lock as a token issuer: tokens validated by a separate backend from the JWKS alone,
//! key rotation, refresh rotation with reuse detection, revocation, introspection, and the
//! attacks a verifier must refuse (alg none, key confusion, wrong aud/iss, time bounds).

use axum::{
    body::Body,
    http::{header, Request, StatusCode},
};
use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine as _};
use facelock::{clock::Timestamp, tokens::keyring::KeyRing};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde_json::{json, Value};

use crate::{
    fake_rekognition::face_of,
    helpers::{TestApp, TestResponse},
};

fn now() -> i64 {
    Timestamp::now().unix_seconds()
}

/// Enrols `user` with `person`'s face and logs in: (access token, refresh token).
async fn login(app: &TestApp, user: &str, person: u8) -> (String, String) {
    let enrolled = app.register(user, face_of(person), None).await.status;
    assert!(
        matches!(enrolled, StatusCode::OK | StatusCode::CONFLICT),
        "{enrolled}"
    );
    let res = app.verify(face_of(person), None, None).await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.body);
    assert_eq!(res.body["token_type"], "bearer");
    assert_eq!(res.body["expires_in"], 1800);
    (
        res.body["token"].as_str().unwrap().to_owned(),
        res.body["refresh_token"].as_str().unwrap().to_owned(),
    )
}

async fn post_form(app: &TestApp, path: &str, body: &str, bearer: Option<&str>) -> TestResponse {
    let mut req =
        Request::post(path).header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
    if let Some(t) = bearer {
        req = req.header(header::AUTHORIZATION, format!("Bearer {t}"));
    }
    app.send(req.body(Body::from(body.to_owned())).unwrap())
        .await
}

fn kid_of(token: &str) -> String {
    jsonwebtoken::decode_header(token).unwrap().kid.unwrap()
}

/// The current private signing key, read from the store, to forge tokens that differ from
/// genuine ones in one claim only.
async fn signing_key(app: &TestApp) -> (String, EncodingKey, Value) {
    let keys = app.state.facelock.store().signing_keys().await.unwrap();
    let key = keys.iter().find(|k| k.retired_at.is_none()).unwrap();
    let jwk: Value = serde_json::from_str(&key.public_jwk).unwrap();
    (
        key.kid.clone(),
        EncodingKey::from_ec_der(&key.private_der),
        jwk,
    )
}

#[tokio::test]
async fn a_backend_validates_issued_tokens_from_the_jwks_over_http() {
    // A real socket, so the backend below fetches exactly what a backend would.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let issuer = base.clone();
    let app = TestApp::spawn_with(move |s| {
        s.tokens.issuer = Some(issuer);
        s.tokens.audiences = vec!["shop".into(), "admin-console".into()];
    })
    .await;
    let router = app.router.clone();
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });

    app.register("alice", face_of(1), None).await;
    let form = crate::helpers::Multipart::new()
        .file("face_image", "a.png", face_of(1))
        .text("audience", "admin-console");
    let token = app.post_form("/verify/", form, None).await.body["token"]
        .as_str()
        .unwrap()
        .to_owned();

    // --- what a separate backend does, with nothing but the issuer's URL ---
    let http = reqwest::Client::new();
    let discovery: Value = http
        .get(format!("{base}/.well-known/openid-configuration"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(discovery["issuer"], base);
    assert_eq!(
        discovery["access_token_signing_alg_values_supported"],
        json!(["ES256"])
    );
    let jwks: Value = http
        .get(discovery["jwks_uri"].as_str().unwrap())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let header = jsonwebtoken::decode_header(&token).unwrap();
    assert_eq!(header.typ.as_deref(), Some("at+jwt"));
    let kid = header.kid.unwrap();
    let jwk: jsonwebtoken::jwk::Jwk = serde_json::from_value(
        jwks["keys"]
            .as_array()
            .unwrap()
            .iter()
            .find(|k| k["kid"] == kid.as_str())
            .unwrap()
            .clone(),
    )
    .unwrap();
    let key = DecodingKey::from_jwk(&jwk).unwrap();
    let mut validation = Validation::new(Algorithm::ES256);
    validation.set_issuer(&[&base]);
    validation.set_audience(&["admin-console"]);
    let claims = jsonwebtoken::decode::<Value>(&token, &key, &validation)
        .unwrap()
        .claims;
    assert_eq!(claims["sub"], "alice");
    assert_eq!(claims["aud"], "admin-console");
    assert_eq!(claims["amr"], json!(["face"]));
    assert_eq!(claims["role"], "user");
    assert!(claims["jti"].is_string() && claims["nbf"].is_i64());

    // An audience the server does not serve is refused before any face is looked at.
    let form = crate::helpers::Multipart::new()
        .file("face_image", "a.png", face_of(1))
        .text("audience", "someone-else");
    app.post_form("/verify/", form, None)
        .await
        .assert_error(StatusCode::UNPROCESSABLE_ENTITY, "VALIDATION_ERROR");
}

#[tokio::test]
async fn rotation_keeps_old_tokens_valid_until_they_expire_and_signs_with_the_new_key() {
    let app = TestApp::spawn().await;
    let (old_token, _) = login(&app, "alice", 1).await;
    let old_kid = kid_of(&old_token);

    let new_key = KeyRing::rotate(app.state.facelock.store().as_ref())
        .await
        .unwrap();
    app.state.facelock.tokens().reload_keys().await.unwrap();
    let (new_token, _) = login(&app, "alice", 1).await;
    assert_eq!(kid_of(&new_token), new_key.kid);
    assert_ne!(new_key.kid, old_kid);

    let jwks = app.get("/.well-known/jwks.json", None).await;
    let kids: Vec<&str> = jwks.body["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kid"].as_str().unwrap())
        .collect();
    assert!(kids.contains(&old_kid.as_str()) && kids.contains(&new_key.kid.as_str()));
    assert_eq!(
        app.get("/users/me/", Some(&old_token)).await.status,
        StatusCode::OK
    );
    assert_eq!(
        app.get("/users/me/", Some(&new_token)).await.status,
        StatusCode::OK
    );

    // Once every token of the old key has expired, the key drops out and its tokens with it.
    app.db()
        .execute(
            "UPDATE signing_keys SET retired_at = retired_at - 100000000 WHERE kid = ?1",
            [&old_kid],
        )
        .unwrap();
    app.state.facelock.tokens().reload_keys().await.unwrap();
    let jwks = app.get("/.well-known/jwks.json", None).await;
    assert_eq!(jwks.body["keys"].as_array().unwrap().len(), 1);
    app.get("/users/me/", Some(&old_token))
        .await
        .assert_error(StatusCode::UNAUTHORIZED, "INVALID_TOKEN");
    assert_eq!(
        app.get("/users/me/", Some(&new_token)).await.status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn refresh_tokens_rotate_and_a_replay_revokes_the_session() {
    let app = TestApp::spawn().await;
    let (a1, r1) = login(&app, "alice", 1).await;
    let res = post_form(
        &app,
        "/token",
        &format!("grant_type=refresh_token&refresh_token={r1}"),
        None,
    )
    .await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.body);
    // The same names as /verify/ beside OAuth2's.
    assert_eq!(res.body["token_type"], "bearer");
    assert_eq!(res.body["token"], res.body["access_token"]);
    let a2 = res.body["access_token"].as_str().unwrap().to_owned();
    let r2 = res.body["refresh_token"].as_str().unwrap().to_owned();
    assert_ne!(r1, r2);
    assert_eq!(
        app.get("/users/me/", Some(&a2)).await.body["user_id"],
        "alice"
    );

    // r1 again: theft detected; r2 dies with it.
    let replay = post_form(
        &app,
        "/token",
        &format!("grant_type=refresh_token&refresh_token={r1}"),
        None,
    )
    .await;
    assert_eq!(replay.status, StatusCode::BAD_REQUEST);
    assert_eq!(replay.body["error"], "invalid_grant");
    // OAuth2's fields beside the body every error of the API has, request id included.
    assert_eq!(replay.body["code"], "INVALID_GRANT");
    assert!(replay.body["detail"]
        .as_str()
        .is_some_and(|d| !d.is_empty()));
    assert_eq!(
        replay.body["request_id"].as_str(),
        replay.headers["x-request-id"].to_str().ok()
    );
    // Every access token of the session is refused from now on, the first one included.
    app.get("/users/me/", Some(&a2))
        .await
        .assert_error(StatusCode::UNAUTHORIZED, "TOKEN_REVOKED");
    app.get("/users/me/", Some(&a1))
        .await
        .assert_error(StatusCode::UNAUTHORIZED, "TOKEN_REVOKED");
    let admin = app.admin_token().await;
    let seen = post_form(&app, "/introspect", &format!("token={a2}"), Some(&admin)).await;
    assert_eq!(seen.body["active"], false, "{}", seen.body);
    // Another session of the same user is untouched.
    let (other, _) = login(&app, "alice", 1).await;
    assert_eq!(
        app.get("/users/me/", Some(&other)).await.status,
        StatusCode::OK
    );
    let after = post_form(
        &app,
        "/token",
        &format!("grant_type=refresh_token&refresh_token={r2}"),
        None,
    )
    .await;
    assert_eq!(after.body["error"], "invalid_grant");

    // Garbage, a missing token and other grants get the OAuth2 errors.
    let res = post_form(
        &app,
        "/token",
        "grant_type=refresh_token&refresh_token=flr_nope",
        None,
    )
    .await;
    assert_eq!(res.body["error"], "invalid_grant");
    let res = post_form(&app, "/token", "grant_type=refresh_token", None).await;
    assert_eq!(res.body["error"], "invalid_request");
    let res = post_form(
        &app,
        "/token",
        "grant_type=password&username=a&password=b",
        None,
    )
    .await;
    assert_eq!(res.body["error"], "unsupported_grant_type");
}

#[tokio::test]
async fn refresh_tokens_stop_working_when_the_user_is_deleted() {
    let app = TestApp::spawn().await;
    let (access, refresh) = login(&app, "alice", 1).await;
    assert_eq!(
        app.delete("/users/alice/", Some(&access)).await.status,
        StatusCode::OK
    );
    let res = post_form(
        &app,
        "/token",
        &format!("grant_type=refresh_token&refresh_token={refresh}"),
        None,
    )
    .await;
    assert_eq!(res.body["error"], "invalid_grant");
}

#[tokio::test]
async fn revocation_of_access_and_refresh_tokens() {
    let app = TestApp::spawn().await;
    let (access, refresh) = login(&app, "alice", 1).await;
    assert_eq!(
        post_form(&app, "/revoke", &format!("token={access}"), None)
            .await
            .status,
        StatusCode::OK
    );
    app.get("/users/me/", Some(&access))
        .await
        .assert_error(StatusCode::UNAUTHORIZED, "TOKEN_REVOKED");

    assert_eq!(
        post_form(
            &app,
            "/revoke",
            &format!("token={refresh}&token_type_hint=refresh_token"),
            None
        )
        .await
        .status,
        StatusCode::OK
    );
    let res = post_form(
        &app,
        "/token",
        &format!("grant_type=refresh_token&refresh_token={refresh}"),
        None,
    )
    .await;
    assert_eq!(res.body["error"], "invalid_grant");

    // Unknown tokens: 200 all the same; no token at all: invalid_request.
    assert_eq!(
        post_form(&app, "/revoke", "token=whatever", None)
            .await
            .status,
        StatusCode::OK
    );
    assert_eq!(
        post_form(&app, "/revoke", "token=flr_unknown", None)
            .await
            .status,
        StatusCode::OK
    );
    assert_eq!(
        post_form(&app, "/revoke", "", None).await.body["error"],
        "invalid_request"
    );
}

#[tokio::test]
async fn introspection_is_for_admins_and_reports_the_truth() {
    let app = TestApp::spawn().await;
    let admin = app.admin_token().await;
    let (access, refresh) = login(&app, "alice", 1).await;

    post_form(&app, "/introspect", &format!("token={access}"), None)
        .await
        .assert_error(StatusCode::UNAUTHORIZED, "NOT_AUTHENTICATED");
    post_form(
        &app,
        "/introspect",
        &format!("token={access}"),
        Some(&access),
    )
    .await
    .assert_error(StatusCode::FORBIDDEN, "FORBIDDEN");

    let res = post_form(
        &app,
        "/introspect",
        &format!("token={access}"),
        Some(&admin),
    )
    .await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.body);
    assert_eq!(res.body["active"], true);
    assert_eq!(res.body["sub"], "alice");
    assert_eq!(res.body["token_type"], "access_token");
    let res = post_form(
        &app,
        "/introspect",
        &format!("token={refresh}"),
        Some(&admin),
    )
    .await;
    assert_eq!(res.body["active"], true);
    assert_eq!(res.body["token_type"], "refresh_token");

    post_form(&app, "/revoke", &format!("token={access}"), None).await;
    let res = post_form(
        &app,
        "/introspect",
        &format!("token={access}"),
        Some(&admin),
    )
    .await;
    assert_eq!(res.body, json!({"active": false}));
    let res = post_form(&app, "/introspect", "token=garbage", Some(&admin)).await;
    assert_eq!(res.body, json!({"active": false}));
}

#[tokio::test]
async fn forged_and_out_of_bounds_tokens_are_refused() {
    let app = TestApp::spawn().await;
    let (genuine, _) = login(&app, "alice", 1).await;
    let (kid, key, jwk) = signing_key(&app).await;
    let rowid: i64 = app
        .db()
        .query_row("SELECT id FROM users WHERE user_id='alice'", [], |r| {
            r.get(0)
        })
        .unwrap();
    let claims = |over: Value| {
        let mut c = json!({
            "iss": app.settings.issuer(), "sub": "alice", "aud": "facelock", "client_id": "facelock",
            "iat": now(), "nbf": now(), "exp": now() + 600, "jti": uuid::Uuid::new_v4().to_string(),
            "role": "user", "amr": ["face"], "ugen": rowid,
        });
        for (k, v) in over.as_object().unwrap() {
            c[k] = v.clone();
        }
        c
    };
    let es256 = |c: Value| {
        let header = Header {
            typ: Some("at+jwt".into()),
            kid: Some(kid.clone()),
            ..Header::new(Algorithm::ES256)
        };
        jsonwebtoken::encode(&header, &c, &key).unwrap()
    };
    // The forging kit works: a well-formed token passes.
    assert_eq!(
        app.get("/users/me/", Some(&es256(claims(json!({})))))
            .await
            .status,
        StatusCode::OK
    );
    assert_eq!(
        app.get("/users/me/", Some(&genuine)).await.status,
        StatusCode::OK
    );

    let refused = [
        (
            "wrong audience",
            es256(claims(json!({"aud": "another-service"}))),
            "INVALID_TOKEN",
        ),
        (
            "wrong issuer",
            es256(claims(json!({"iss": "https://evil.example"}))),
            "INVALID_TOKEN",
        ),
        (
            "expired",
            es256(claims(
                json!({"iat": now() - 7200, "nbf": now() - 7200, "exp": now() - 3600}),
            )),
            "TOKEN_EXPIRED",
        ),
        (
            "not yet valid",
            es256(claims(
                json!({"nbf": now() + 3600, "iat": now() + 3600, "exp": now() + 7200}),
            )),
            "INVALID_TOKEN",
        ),
    ];
    for (what, token, code) in refused {
        let res = app.get("/users/me/", Some(&token)).await;
        assert_eq!(res.status, StatusCode::UNAUTHORIZED, "{what}: {}", res.body);
        assert_eq!(res.code(), code, "{what}");
    }

    // Untyped (an ID token, say) and unknown-kid tokens.
    let untyped = jsonwebtoken::encode(
        &Header {
            kid: Some(kid.clone()),
            ..Header::new(Algorithm::ES256)
        },
        &claims(json!({})),
        &key,
    )
    .unwrap();
    let unknown_kid = jsonwebtoken::encode(
        &Header {
            typ: Some("at+jwt".into()),
            kid: Some("nope".into()),
            ..Header::new(Algorithm::ES256)
        },
        &claims(json!({})),
        &key,
    )
    .unwrap();
    for token in [untyped, unknown_kid] {
        app.get("/users/me/", Some(&token))
            .await
            .assert_error(StatusCode::UNAUTHORIZED, "INVALID_TOKEN");
    }

    // alg: none.
    let head =
        URL_SAFE_NO_PAD.encode(json!({"alg": "none", "typ": "at+jwt", "kid": kid}).to_string());
    let body = URL_SAFE_NO_PAD.encode(claims(json!({"role": "admin"})).to_string());
    app.get("/users/me/", Some(&format!("{head}.{body}.")))
        .await
        .assert_error(StatusCode::UNAUTHORIZED, "INVALID_TOKEN");

    // Key confusion: HS256 "signed" with the public key, in every form a verifier might hold it.
    let x = URL_SAFE_NO_PAD.decode(jwk["x"].as_str().unwrap()).unwrap();
    let y = URL_SAFE_NO_PAD.decode(jwk["y"].as_str().unwrap()).unwrap();
    let mut point = vec![4u8];
    point.extend(&x);
    point.extend(&y);
    for secret in [
        jwk.to_string().into_bytes(),
        point,
        jwk["x"].as_str().unwrap().as_bytes().to_vec(),
    ] {
        let header = Header {
            typ: Some("at+jwt".into()),
            kid: Some(kid.clone()),
            ..Header::new(Algorithm::HS256)
        };
        let token = jsonwebtoken::encode(
            &header,
            &claims(json!({})),
            &EncodingKey::from_secret(&secret),
        )
        .unwrap();
        app.get("/users/me/", Some(&token))
            .await
            .assert_error(StatusCode::UNAUTHORIZED, "INVALID_TOKEN");
    }

    // A token that brings its own key (jku / embedded jwk) is refused even when signed right.
    let mut header = Header {
        typ: Some("at+jwt".into()),
        kid: Some(kid.clone()),
        ..Header::new(Algorithm::ES256)
    };
    header.jku = Some("https://evil.example/jwks.json".into());
    let token = jsonwebtoken::encode(&header, &claims(json!({})), &key).unwrap();
    app.get("/users/me/", Some(&token))
        .await
        .assert_error(StatusCode::UNAUTHORIZED, "INVALID_TOKEN");
}

#[tokio::test]
async fn hs256_compatibility_mode_publishes_no_keys_and_keeps_the_original_tokens() {
    let app = TestApp::spawn_with(|s| {
        s.tokens.secret_key = Some(facelock::config::Secret::new(
            "an-operator-secret-that-is-long-enough-0123456789",
        ));
        s.tokens.algorithm = facelock::config::TokenAlgorithm::Hs256;
    })
    .await;
    let (access, refresh) = login(&app, "alice", 1).await;
    assert_eq!(
        jsonwebtoken::decode_header(&access).unwrap().alg,
        Algorithm::HS256
    );
    // What a backend written for the original does: HS256 with the shared secret, nothing else.
    let data = jsonwebtoken::decode::<Value>(
        &access,
        &DecodingKey::from_secret(b"an-operator-secret-that-is-long-enough-0123456789"),
        &Validation::new(Algorithm::HS256),
    )
    .unwrap();
    assert_eq!(data.claims["sub"], "alice");
    assert_eq!(
        app.get("/.well-known/jwks.json", None).await.body,
        json!({"keys": []})
    );
    let discovery = app.get("/.well-known/openid-configuration", None).await;
    assert!(discovery.body["token_validation_note"]
        .as_str()
        .unwrap()
        .contains("shared secret"));
    // No ID token can be signed: no OpenID Connect endpoints, and a request is sent back.
    assert!(discovery.body["authorization_endpoint"].is_null());
    assert_eq!(
        discovery.body["id_token_signing_alg_values_supported"],
        json!([])
    );
    crate::helpers::add_client(
        &app.state,
        "app",
        "App",
        "https://app.example.com/cb",
        false,
    )
    .await;
    let sent = app
        .get(
            "/authorize?response_type=code&client_id=app&redirect_uri=https%3A%2F%2Fapp.example.com%2Fcb&scope=openid&state=s",
            None,
        )
        .await;
    assert_eq!(sent.status, StatusCode::SEE_OTHER);
    let to = sent.headers["location"].to_str().unwrap();
    assert!(
        to.starts_with("https://app.example.com/cb?error=server_error&")
            && to.contains("&state=s&"),
        "{to}"
    );
    // Refresh and revocation work the same.
    let res = post_form(
        &app,
        "/token",
        &format!("grant_type=refresh_token&refresh_token={refresh}"),
        None,
    )
    .await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.body);
    post_form(&app, "/revoke", &format!("token={access}"), None).await;
    app.get("/users/me/", Some(&access))
        .await
        .assert_error(StatusCode::UNAUTHORIZED, "TOKEN_REVOKED");
}
