//! Enrolment and verification: what a caller can get wrong, and what an attacker can try.

use axum::http::StatusCode;

use crate::{
    fake_rekognition::{face_of, scene_image, Scene},
    helpers::{shared_faces, Multipart, TestApp, COLLECTION},
};

fn scene(person: u8, faces: u8, quality: u8) -> Vec<u8> {
    scene_image(Scene {
        person,
        faces,
        quality,
    })
}

#[tokio::test]
async fn no_face_two_faces_and_poor_quality_are_refused_and_leave_nothing() {
    let app = TestApp::spawn().await;
    app.register("nf", scene(1, 0, 0), None)
        .await
        .assert_error(StatusCode::BAD_REQUEST, "NO_FACE");
    app.register("two", scene(1, 2, 0), None)
        .await
        .assert_error(StatusCode::BAD_REQUEST, "MULTIPLE_FACES");
    app.register("blurry", scene(1, 1, 1), None)
        .await
        .assert_error(StatusCode::BAD_REQUEST, "LOW_SHARPNESS");
    app.register("far", scene(1, 1, 2), None)
        .await
        .assert_error(StatusCode::BAD_REQUEST, "SMALL_BOUNDING_BOX");
    assert!(
        app.fake.face_ids(COLLECTION).is_empty(),
        "the two-face photo was taken back"
    );
    assert!(app.reference_photos().is_empty());
    assert_eq!(app.db_count("users"), 0);

    app.verify(scene(1, 0, 0), None, None)
        .await
        .assert_error(StatusCode::BAD_REQUEST, "NO_FACE");
}

#[tokio::test]
async fn undecodable_files_get_clear_errors() {
    let app = TestApp::spawn().await;
    let cases: Vec<(Vec<u8>, StatusCode, &str)> = vec![
        (
            b"this is plain text, not a photo".to_vec(),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "UNSUPPORTED_IMAGE",
        ),
        (
            b"GIF89a\x01\x00\x01\x00\x00\x00\x00;".to_vec(),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "UNSUPPORTED_IMAGE",
        ),
        (
            Vec::new(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "VALIDATION_ERROR",
        ),
        (
            face_of(1)[..200].to_vec(),
            StatusCode::BAD_REQUEST,
            "INVALID_IMAGE",
        ),
    ];
    for (bytes, status, code) in cases {
        app.register("x", bytes.clone(), None)
            .await
            .assert_error(status, code);
        app.verify(bytes, None, None)
            .await
            .assert_error(status, code);
    }
    assert_eq!(app.db_count("users"), 0);
}

#[tokio::test]
async fn adversarial_fixture_files_never_crash_the_server() {
    let Some(root) = shared_faces() else { return };
    let app = TestApp::spawn().await;
    let broken = [
        "zero_bytes.jpg",
        "not_an_image.jpg",
        "truncated_header_only.jpg",
        "truncated_half.jpg",
        "truncated.png",
        "one_pixel.jpg",
        "one_pixel.png",
    ];
    for name in broken {
        let bytes = std::fs::read(root.join("adversarial/derived").join(name)).unwrap();
        let res = app.verify(bytes, None, None).await;
        assert!(
            res.status.is_client_error(),
            "{name}: expected a 4xx, got {} {}",
            res.status,
            res.body
        );
        assert!(!res.code().is_empty(), "{name}: {}", res.body);
    }
    // Decodable ones reach the engine (which, faked, sees no face in them): never a 5xx.
    for name in [
        "cmyk.jpg",
        "exif_orientation_6.jpg",
        "rgba_transparent.png",
        "huge_6000x4000.jpg",
        "png_with_jpg_extension.jpg",
        "corrupt_scan_bytes.jpg",
    ] {
        let bytes = std::fs::read(root.join("adversarial/derived").join(name)).unwrap();
        let res = app.verify(bytes, None, None).await;
        assert!(
            res.status.is_client_error(),
            "{name}: {} {}",
            res.status,
            res.body
        );
    }
}

#[tokio::test]
async fn oversized_bodies_are_413_json() {
    let app = TestApp::spawn().await;
    let big = vec![0u8; app.settings.server.max_body_bytes + 1024];
    app.register("big", big, None)
        .await
        .assert_error(StatusCode::PAYLOAD_TOO_LARGE, "PAYLOAD_TOO_LARGE");
}

#[tokio::test]
async fn oversized_images_are_refused_before_decoding() {
    let app = TestApp::spawn_with(|s| s.engine.max_image_pixels = 100 * 100).await;
    app.register("huge", face_of(1), None)
        .await
        .assert_error(StatusCode::PAYLOAD_TOO_LARGE, "IMAGE_TOO_LARGE");
}

#[tokio::test]
async fn a_taken_user_id_is_409_unless_the_owner_or_an_admin_adds_a_face() {
    let app = TestApp::spawn().await;
    assert_eq!(
        app.register("dave", face_of(1), None).await.status,
        StatusCode::OK
    );
    app.register("dave", face_of(2), None)
        .await
        .assert_error(StatusCode::CONFLICT, "USER_EXISTS");

    // Another user's token does not help.
    app.register("erin", face_of(3), None).await;
    let erin = app.login(face_of(3)).await;
    app.register("dave", face_of(2), Some(&erin))
        .await
        .assert_error(StatusCode::CONFLICT, "USER_EXISTS");
    // The impostor's face must not have logged in as dave.
    app.verify(face_of(2), None, Some("dave"))
        .await
        .assert_error(StatusCode::BAD_REQUEST, "NO_MATCH");

    // Dave's own token adds a second face.
    let dave = app.login(face_of(1)).await;
    let res = app.register("dave", face_of(1), Some(&dave)).await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.body);
    assert_eq!(
        app.get("/users/me/", Some(&dave)).await.body["face_count"],
        2
    );

    // An admin may add faces to anyone.
    let admin = app.admin_token().await;
    assert_eq!(
        app.register("erin", face_of(3), Some(&admin)).await.status,
        StatusCode::OK
    );

    // A bad token is an error, not an anonymous request.
    app.register("newbie", face_of(4), Some("garbage"))
        .await
        .assert_error(StatusCode::UNAUTHORIZED, "INVALID_TOKEN");
}

#[tokio::test]
async fn nobody_can_claim_an_admin_id_by_enrolling_first() {
    let app = TestApp::spawn().await;
    app.register("admin", face_of(5), None)
        .await
        .assert_error(StatusCode::FORBIDDEN, "FORBIDDEN");
    assert_eq!(app.db_count("users"), 0);
}

#[tokio::test]
async fn a_client_threshold_cannot_lower_the_floor() {
    let app = TestApp::spawn().await;
    app.register("frank", face_of(1), None).await;
    // Person 2 scores 13 against frank in the fake: far below the floor of 90.
    for threshold in ["0", "0.0", "13", "89.9"] {
        app.verify(face_of(2), Some(threshold), None)
            .await
            .assert_error(StatusCode::BAD_REQUEST, "NO_MATCH");
    }
    // Raising it is allowed; above the real similarity it refuses the genuine face.
    assert_eq!(
        app.verify(face_of(1), Some("99"), None).await.status,
        StatusCode::OK
    );
    app.verify(face_of(1), Some("99.9"), None)
        .await
        .assert_error(StatusCode::BAD_REQUEST, "NO_MATCH");
    for bad in ["-1", "100.5", "NaN", "ninety"] {
        app.verify(face_of(1), Some(bad), None)
            .await
            .assert_error(StatusCode::UNPROCESSABLE_ENTITY, "VALIDATION_ERROR");
    }
}

#[tokio::test]
async fn one_to_one_verification_checks_only_the_claimed_user() {
    let app = TestApp::spawn().await;
    app.register("gina", face_of(1), None).await;
    app.register("hank", face_of(2), None).await;
    let res = app.verify(face_of(1), None, Some("gina")).await;
    assert_eq!(res.status, StatusCode::OK);
    assert_eq!(res.body["user_id"], "gina");
    // Gina's face claiming to be hank, or an unknown user: the same answer, no enumeration.
    for claim in ["hank", "nobody"] {
        app.verify(face_of(1), None, Some(claim))
            .await
            .assert_error(StatusCode::BAD_REQUEST, "NO_MATCH");
    }
}

#[tokio::test]
async fn user_ids_cannot_traverse_paths() {
    let app = TestApp::spawn().await;
    for bad in ["../../etc/passwd", "..", "a/b", "a\\b", "x y", "%2e%2e", ""] {
        let res = app.register(bad, face_of(1), None).await;
        res.assert_error(StatusCode::UNPROCESSABLE_ENTITY, "VALIDATION_ERROR");
    }
    assert!(app.reference_photos().is_empty());
    assert!(!app.dir.path().join("etc").exists());
    let admin = app.admin_token().await;
    for path in ["/users/..%2F..%2Fetc/", "/users/%2e%2e/", "/users/a%5Cb/"] {
        let res = app.delete(path, Some(&admin)).await;
        res.assert_error(StatusCode::UNPROCESSABLE_ENTITY, "VALIDATION_ERROR");
    }
}

#[tokio::test]
async fn missing_fields_and_wrong_content_types() {
    let app = TestApp::spawn().await;
    app.post_form(
        "/register/",
        Multipart::new().file("face_image", "a.png", face_of(1)),
        None,
    )
    .await
    .assert_error(StatusCode::UNPROCESSABLE_ENTITY, "VALIDATION_ERROR");
    app.post_form("/verify/", Multipart::new().text("user_id", "a"), None)
        .await
        .assert_error(StatusCode::UNPROCESSABLE_ENTITY, "VALIDATION_ERROR");
    app.post_form(
        "/register/",
        Multipart::new()
            .text("user_id", "ivy")
            .text("email", "not-an-email")
            .file("face_image", "a.png", face_of(1)),
        None,
    )
    .await
    .assert_error(StatusCode::UNPROCESSABLE_ENTITY, "VALIDATION_ERROR");
    let res = app
        .send(
            axum::http::Request::post("/verify/")
                .header("content-type", "application/json")
                .body(axum::body::Body::from("{}"))
                .unwrap(),
        )
        .await;
    res.assert_error(StatusCode::BAD_REQUEST, "BAD_REQUEST");
}

#[tokio::test]
async fn compare_needs_a_token_and_reports_a_verdict() {
    let app = TestApp::spawn().await;
    let form = || {
        Multipart::new()
            .file("source_image", "a.png", face_of(1))
            .file("target_image", "b.png", face_of(1))
    };
    app.post_form("/compare/", form(), None)
        .await
        .assert_error(StatusCode::UNAUTHORIZED, "NOT_AUTHENTICATED");
    let admin = app.admin_token().await;
    let same = app.post_form("/compare/", form(), Some(&admin)).await;
    assert_eq!(same.status, StatusCode::OK, "{}", same.body);
    assert_eq!(same.body["match"], true);
    let other = app
        .post_form(
            "/compare/",
            Multipart::new()
                .file("source_image", "a.png", face_of(1))
                .file("target_image", "b.png", face_of(2)),
            Some(&admin),
        )
        .await;
    assert_eq!(other.body["match"], false);
    assert!(other.body["similarity"].as_f64().unwrap() < 90.0);
}

#[tokio::test]
async fn repeated_attempts_are_rate_limited_before_reaching_the_engine() {
    let app = TestApp::spawn_with(|s| s.server.rate_limit_per_minute = 2).await;
    app.register("judy", face_of(1), None).await;
    app.verify(face_of(2), None, None)
        .await
        .assert_error(StatusCode::BAD_REQUEST, "NO_MATCH");
    let calls_before = app.fake.calls().len();
    let res = app.verify(face_of(1), None, None).await;
    res.assert_error(StatusCode::TOO_MANY_REQUESTS, "RATE_LIMITED");
    let wait: u64 = res.headers["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=30).contains(&wait), "{wait}");
    assert_eq!(
        app.fake.calls().len(),
        calls_before,
        "the engine was not called"
    );
}

#[tokio::test]
async fn a_face_enrolled_for_one_user_is_refused_for_another_but_not_for_its_owner() {
    let app = TestApp::spawn().await;
    assert_eq!(
        app.register("alice", face_of(1), None).await.status,
        StatusCode::OK
    );
    let indexed = |app: &TestApp| {
        app.fake
            .calls()
            .iter()
            .filter(|c| *c == "IndexFaces")
            .count()
    };
    let before = indexed(&app);
    app.register("mallory", face_of(1), None)
        .await
        .assert_error(StatusCode::CONFLICT, "FACE_ALREADY_ENROLLED");
    assert_eq!(indexed(&app), before, "refused before anything is indexed");
    assert_eq!(app.db_count("users"), 1);

    // alice may add the same face to her own account.
    let token = app.login(face_of(1)).await;
    let res = app.register("alice", face_of(1), Some(&token)).await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.body);

    // A deployment that wants it can allow one face under several ids.
    let open = TestApp::spawn_with(|s| s.engine.allow_duplicate_faces = true).await;
    open.register("alice", face_of(1), None).await;
    let res = open.register("mallory", face_of(1), None).await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.body);
}

#[tokio::test]
async fn a_decompression_bomb_is_refused_from_its_header() {
    let app = TestApp::spawn().await;
    // 311 KB of PNG, under the 40 MP pixel limit, that would decode to 320 MB.
    let bomb = crate::helpers::png_bomb(6324);
    assert!(bomb.len() < 400_000, "{} bytes", bomb.len());
    let started = std::time::Instant::now();
    let res = app.verify(bomb, None, None).await;
    res.assert_error(StatusCode::PAYLOAD_TOO_LARGE, "IMAGE_TOO_LARGE");
    assert!(res.body["detail"]
        .as_str()
        .unwrap()
        .contains("bytes decoded"));
    assert!(started.elapsed() < std::time::Duration::from_secs(2));
}
