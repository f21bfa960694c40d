//! The whole life of a user, through the router.

use axum::http::StatusCode;

use crate::{
    fake_rekognition::face_of,
    helpers::{TestApp, COLLECTION},
};

#[tokio::test]
async fn register_verify_use_token_list_delete_and_lose_access() {
    let app = TestApp::spawn().await;
    let admin = app.admin_token().await;

    let res = app.register("alice", face_of(1), None).await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.body);
    assert_eq!(res.body["success"], true);
    assert_eq!(res.body["user_id"], "alice");
    assert_eq!(res.body["message"], "User registered successfully");
    let face_id = res.body["face_id"].as_str().unwrap().to_owned();
    assert!(app.fake.face_ids(COLLECTION).contains(&face_id));
    let alice_files: Vec<String> = app
        .reference_photos()
        .into_iter()
        .filter(|f| f.starts_with("alice/"))
        .collect();
    assert_eq!(alice_files, [format!("alice/{face_id}.png")]);

    let res = app.verify(face_of(1), Some("95"), None).await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.body);
    assert_eq!(res.body["user_id"], "alice");
    assert_eq!(res.body["message"], "Face verified successfully");
    assert!(res.body["similarity"].as_f64().unwrap() >= 95.0);
    let token = res.body["token"].as_str().unwrap().to_owned();

    let me = app.get("/users/me/", Some(&token)).await;
    assert_eq!(me.status, StatusCode::OK, "{}", me.body);
    assert_eq!(me.body["user_id"], "alice");
    assert_eq!(me.body["full_name"], "Test User");
    assert_eq!(me.body["email"], "test@example.com");
    assert_eq!(me.body["face_count"], 1);
    assert_eq!(me.body["role"], "user");
    assert!(me.body["registered_at"].as_str().unwrap().ends_with('Z'));

    // A plain user may not list everyone; an admin may.
    app.get("/users/", Some(&token))
        .await
        .assert_error(StatusCode::FORBIDDEN, "FORBIDDEN");
    let list = app.get("/users/", Some(&admin)).await;
    assert_eq!(list.status, StatusCode::OK, "{}", list.body);
    let ids: Vec<&str> = list.body["users"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["user_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["admin", "alice"]);
    assert_eq!(list.body["total"], 2);

    let del = app.delete("/users/alice/", Some(&token)).await;
    assert_eq!(del.status, StatusCode::OK, "{}", del.body);
    assert_eq!(del.body["success"], true);

    // Gone everywhere: engine, files, database; the token is dead; the face no longer logs in.
    assert!(!app.fake.face_ids(COLLECTION).contains(&face_id));
    assert!(app
        .reference_photos()
        .iter()
        .all(|f| !f.starts_with("alice/")));
    app.get("/users/me/", Some(&token))
        .await
        .assert_error(StatusCode::UNAUTHORIZED, "TOKEN_REVOKED");
    app.verify(face_of(1), None, None)
        .await
        .assert_error(StatusCode::BAD_REQUEST, "NO_MATCH");
    app.delete("/users/alice/", Some(&admin))
        .await
        .assert_error(StatusCode::NOT_FOUND, "USER_NOT_FOUND");
}

#[tokio::test]
async fn a_recreated_user_id_does_not_revive_old_tokens() {
    let app = TestApp::spawn().await;
    app.register("bob", face_of(2), None).await;
    let old = app.login(face_of(2)).await;
    assert_eq!(
        app.delete("/users/bob", Some(&old)).await.status,
        StatusCode::OK
    );
    // Someone else takes the id.
    assert_eq!(
        app.register("bob", face_of(3), None).await.status,
        StatusCode::OK
    );
    app.get("/users/me", Some(&old))
        .await
        .assert_error(StatusCode::UNAUTHORIZED, "TOKEN_REVOKED");
}

#[tokio::test]
async fn paths_work_with_and_without_trailing_slash() {
    let app = TestApp::spawn().await;
    let admin = app.admin_token().await;
    for path in ["/users", "/users/", "/users/me", "/users/me/"] {
        assert_eq!(
            app.get(path, Some(&admin)).await.status,
            StatusCode::OK,
            "{path}"
        );
    }
    for path in ["/health", "/health/", "/api-docs", "/api-docs/", "/"] {
        assert_eq!(app.get(path, None).await.status, StatusCode::OK, "{path}");
    }
    let res = app
        .post_form(
            "/register",
            crate::helpers::Multipart::new()
                .text("user_id", "carol")
                .file("face_image", "c.png", face_of(4)),
            None,
        )
        .await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.body);
}

#[tokio::test]
async fn list_pages_with_a_cursor() {
    let app = TestApp::spawn().await;
    let admin = app.admin_token().await;
    for (i, id) in ["u1", "u2", "u3", "u4"].iter().enumerate() {
        app.register(id, face_of(i as u8 + 1), None).await;
    }
    let mut seen = Vec::new();
    let mut path = "/users/?limit=2".to_owned();
    loop {
        let page = app.get(&path, Some(&admin)).await;
        assert_eq!(page.status, StatusCode::OK, "{}", page.body);
        assert_eq!(page.body["total"], 5);
        for u in page.body["users"].as_array().unwrap() {
            seen.push(u["user_id"].as_str().unwrap().to_owned());
        }
        match page.body["next_cursor"].as_str() {
            Some(c) => path = format!("/users/?limit=2&cursor={c}"),
            None => break,
        }
    }
    assert_eq!(seen, ["admin", "u1", "u2", "u3", "u4"]);
    app.get("/users/?limit=0", Some(&admin))
        .await
        .assert_error(StatusCode::UNPROCESSABLE_ENTITY, "VALIDATION_ERROR");
    app.get("/users/?cursor=../x", Some(&admin))
        .await
        .assert_error(StatusCode::UNPROCESSABLE_ENTITY, "VALIDATION_ERROR");
}

#[tokio::test]
async fn token_endpoint_answers_like_oauth2() {
    let app = TestApp::spawn().await;
    let res = app
        .send(
            axum::http::Request::post("/token")
                .header("content-type", "application/x-www-form-urlencoded")
                .body(axum::body::Body::from(
                    "grant_type=password&username=a&password=b",
                ))
                .unwrap(),
        )
        .await;
    assert_eq!(res.status, StatusCode::BAD_REQUEST);
    assert_eq!(res.body["error"], "unsupported_grant_type");
}
