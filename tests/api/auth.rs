//! The token guard, attacked: missing, malformed, forged, expired, `alg: none`, wrong rights.

use axum::http::{header, StatusCode};
use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine as _};
use facelock::config::{Secret, TokenAlgorithm};
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use serde_json::json;

use crate::{fake_rekognition::face_of, helpers::TestApp};

const SECRET: &str = "test-secret-that-is-long-enough-for-hs256-0123456789";

async fn app_with_user() -> (TestApp, String, i64) {
    // The original's configuration: SECRET_KEY with ALGORITHM=HS256.
    let app = TestApp::spawn_with(|s| {
        s.tokens.secret_key = Some(Secret::new(SECRET));
        s.tokens.algorithm = TokenAlgorithm::Hs256;
    })
    .await;
    app.register("alice", face_of(1), None).await;
    let token = app.login(face_of(1)).await;
    let rowid: i64 = app
        .db()
        .query_row("SELECT id FROM users WHERE user_id = 'alice'", [], |r| {
            r.get(0)
        })
        .unwrap();
    (app, token, rowid)
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn sign(claims: serde_json::Value, alg: Algorithm, secret: &str) -> String {
    encode(
        &Header::new(alg),
        &claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    )
    .unwrap()
}

#[tokio::test]
async fn the_issued_token_is_hs256_with_the_documented_claims() {
    let (app, token, rowid) = app_with_user().await;
    let mut v = jsonwebtoken::Validation::new(Algorithm::HS256);
    v.set_required_spec_claims(&["exp", "iat", "sub"]);
    // As a backend written for the original validates: no audience expected, none present.
    assert!(jsonwebtoken::decode_header(&token).unwrap().typ.as_deref() == Some("JWT"));
    let data = jsonwebtoken::decode::<serde_json::Value>(
        &token,
        &jsonwebtoken::DecodingKey::from_secret(SECRET.as_bytes()),
        &v,
    )
    .unwrap();
    let c = data.claims;
    assert_eq!(c["sub"], "alice");
    assert_eq!(c["iss"], app.settings.issuer());
    assert!(
        c.get("aud").is_none(),
        "HS256 mode adds no aud unless configured"
    );
    assert_eq!(c["amr"], json!(["face"]));
    assert_eq!(c["role"], "user");
    assert_eq!(c["ugen"], rowid);
    assert!(c["similarity"].as_f64().unwrap() >= 90.0);
    assert!(c["jti"].as_str().unwrap().len() >= 32);
    assert_eq!(
        c["exp"].as_i64().unwrap() - c["iat"].as_i64().unwrap(),
        30 * 60
    );
}

#[tokio::test]
async fn missing_malformed_forged_expired_and_unsigned_tokens_are_401() {
    let (app, _token, rowid) = app_with_user().await;
    let iss = app.settings.issuer();
    let claims = |exp: i64| json!({"iss": iss, "sub": "alice", "iat": now() - 10, "nbf": now() - 10, "exp": exp, "jti": "j", "role": "admin", "ugen": rowid});

    let res = app.get("/users/me/", None).await;
    res.assert_error(StatusCode::UNAUTHORIZED, "NOT_AUTHENTICATED");
    assert_eq!(res.headers[header::WWW_AUTHENTICATE], "Bearer");

    let cases = [
        ("not.a.jwt", "INVALID_TOKEN"),
        ("abc", "INVALID_TOKEN"),
        (
            &sign(
                claims(now() + 600),
                Algorithm::HS256,
                "someone-elses-secret-someone-elses-secret",
            ) as &str,
            "INVALID_TOKEN",
        ),
        (
            &sign(claims(now() - 3600), Algorithm::HS256, SECRET),
            "TOKEN_EXPIRED",
        ),
        (
            &sign(claims(now() + 600), Algorithm::HS512, SECRET),
            "INVALID_TOKEN",
        ),
    ];
    for (token, code) in cases {
        let res = app.get("/users/me/", Some(token)).await;
        res.assert_error(StatusCode::UNAUTHORIZED, code);
        assert!(res.headers[header::WWW_AUTHENTICATE]
            .to_str()
            .unwrap()
            .starts_with("Bearer"));
    }

    // alg: none, with and without a signature part.
    let head = URL_SAFE_NO_PAD.encode(r#"{"alg":"none","typ":"JWT"}"#);
    let body = URL_SAFE_NO_PAD.encode(claims(now() + 600).to_string());
    for token in [format!("{head}.{body}."), format!("{head}.{body}.c2ln")] {
        app.get("/users/me/", Some(&token))
            .await
            .assert_error(StatusCode::UNAUTHORIZED, "INVALID_TOKEN");
    }

    // A wrong scheme is refused too.
    let res = app
        .send(
            axum::http::Request::get("/users/me/")
                .header(header::AUTHORIZATION, "Basic YWxpY2U6cHc=")
                .body(axum::body::Body::empty())
                .unwrap(),
        )
        .await;
    res.assert_error(StatusCode::UNAUTHORIZED, "INVALID_TOKEN");
}

#[tokio::test]
async fn a_self_minted_admin_role_is_not_enough() {
    // Even a correctly signed token claiming `admin` gives no admin rights to a user id that is
    // not in FACELOCK_ADMIN_USERS.
    let (app, _token, rowid) = app_with_user().await;
    let token = sign(
        json!({"iss": app.settings.issuer(), "sub": "alice", "iat": now(), "nbf": now(), "exp": now() + 600, "jti": "j", "role": "admin", "ugen": rowid}),
        Algorithm::HS256,
        SECRET,
    );
    app.get("/users/", Some(&token))
        .await
        .assert_error(StatusCode::FORBIDDEN, "FORBIDDEN");
}

#[tokio::test]
async fn users_may_delete_only_themselves() {
    let (app, alice, _) = app_with_user().await;
    app.register("bob", face_of(2), None).await;
    app.delete("/users/bob/", Some(&alice))
        .await
        .assert_error(StatusCode::FORBIDDEN, "FORBIDDEN");
    // Unknown users are 403 too for a non-admin: no probing for who exists.
    app.delete("/users/nobody/", Some(&alice))
        .await
        .assert_error(StatusCode::FORBIDDEN, "FORBIDDEN");
    let admin = app.admin_token().await;
    assert_eq!(
        app.delete("/users/bob/", Some(&admin)).await.status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn admin_tokens_carry_the_role() {
    let (app, _, _) = app_with_user().await;
    let admin = app.admin_token().await;
    let me = app.get("/users/me/", Some(&admin)).await;
    assert_eq!(me.body["role"], "admin");
}

#[tokio::test]
async fn the_admin_role_lives_in_the_store_and_changes_at_once() {
    let (app, alice, _) = app_with_user().await;
    let admin = app.admin_token().await;
    let grant = json!({ "role": "admin" });
    // Only admins grant it; a user cannot promote themself.
    app.put_json("/users/alice/role", grant.clone(), Some(&alice))
        .await
        .assert_error(StatusCode::FORBIDDEN, "FORBIDDEN");
    app.put_json("/users/alice/role", grant.clone(), None)
        .await
        .assert_error(StatusCode::UNAUTHORIZED, "NOT_AUTHENTICATED");
    let granted = app
        .put_json("/users/alice/role", grant.clone(), Some(&admin))
        .await;
    assert_eq!(granted.status, StatusCode::OK, "{}", granted.body);
    assert_eq!(granted.body["role"], "admin");
    assert_eq!(granted.body["user_id"], "alice");
    // Her old token still says `user`: a role is never more than the token claims.
    app.get("/users/", Some(&alice))
        .await
        .assert_error(StatusCode::FORBIDDEN, "FORBIDDEN");
    let alice_admin = app.login(face_of(1)).await;
    let listed = app.get("/users/", Some(&alice_admin)).await;
    assert_eq!(listed.status, StatusCode::OK, "{}", listed.body);
    let roles: Vec<(String, String)> = listed.body["users"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| {
            (
                u["user_id"].as_str().unwrap().into(),
                u["role"].as_str().unwrap().into(),
            )
        })
        .collect();
    assert!(
        roles.contains(&("alice".into(), "admin".into())),
        "{roles:?}"
    );
    assert!(
        roles.contains(&("admin".into(), "admin".into())),
        "{roles:?}"
    );

    // Withdrawn: her admin token loses the role on its next request.
    let withdrawn = app
        .put_json("/users/alice/role", json!({ "role": "user" }), Some(&admin))
        .await;
    assert_eq!(withdrawn.body["role"], "user");
    app.get("/users/", Some(&alice_admin))
        .await
        .assert_error(StatusCode::FORBIDDEN, "FORBIDDEN");
    assert_eq!(
        app.get("/users/me/", Some(&alice_admin)).await.body["role"],
        "user"
    );

    // A listed admin keeps the role; unknown users and roles are refused with their codes.
    app.put_json("/users/admin/role", json!({ "role": "user" }), Some(&admin))
        .await
        .assert_error(StatusCode::FORBIDDEN, "FORBIDDEN");
    app.put_json("/users/nobody/role", grant.clone(), Some(&admin))
        .await
        .assert_error(StatusCode::NOT_FOUND, "USER_NOT_FOUND");
    app.put_json("/users/alice/role", json!({ "role": "root" }), Some(&admin))
        .await
        .assert_error(StatusCode::UNPROCESSABLE_ENTITY, "VALIDATION_ERROR");
    let kinds: i64 = app
        .db()
        .query_row(
            "SELECT COUNT(*) FROM audit_events WHERE kind = 'role_changed'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(kinds, 2);
}
