//! The Rekognition engine through the real AWS SDK over HTTP, against the fake server: signing,
//! the JSON 1.1 protocol, collections, throttling and refused credentials.

use axum::http::{header, StatusCode};

use crate::{
    fake_rekognition::{face_of, FakeRekognition},
    helpers::{test_settings, TestApp, COLLECTION},
};

#[tokio::test]
async fn start_creates_the_collection_and_every_request_is_signed() {
    let app = TestApp::spawn().await;
    assert!(app.fake.has_collection(COLLECTION));
    app.register("alice", face_of(1), None).await;
    app.verify(face_of(1), None, None).await;
    assert_eq!(app.fake.unsigned_requests(), 0);
    let calls = app.fake.calls();
    assert_eq!(
        calls,
        [
            "DescribeCollection",
            "CreateCollection",
            // Enrolment first checks that the face is nobody else's.
            "SearchFacesByImage",
            "IndexFaces",
            "SearchFacesByImage"
        ]
    );
}

#[tokio::test]
async fn a_collection_deleted_behind_our_back_is_recreated_on_enrolment() {
    let app = TestApp::spawn().await;
    app.register("alice", face_of(1), None).await;
    app.fake.drop_collection(COLLECTION);

    // Searching a missing collection finds nobody; health says so.
    app.verify(face_of(1), None, None)
        .await
        .assert_error(StatusCode::BAD_REQUEST, "NO_MATCH");
    let health = app.get("/health", None).await;
    assert_eq!(health.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(health.body["engine"]["status"], "down");
    assert_eq!(health.body["store"]["status"], "up");

    let res = app.register("bob", face_of(2), None).await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.body);
    assert!(app.fake.has_collection(COLLECTION));
    assert_eq!(app.get("/health", None).await.status, StatusCode::OK);
}

#[tokio::test]
async fn throttling_is_retried_then_becomes_503_with_retry_after() {
    let app = TestApp::spawn().await;
    // Two throttled answers fit in three attempts.
    app.fake.throttle_next(2);
    let res = app.register("alice", face_of(1), None).await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.body);

    app.fake.throttle_next(100);
    let searches = || {
        app.fake
            .calls()
            .iter()
            .filter(|c| *c == "SearchFacesByImage")
            .count()
    };
    let before = searches();
    let res = app.verify(face_of(1), None, None).await;
    res.assert_error(StatusCode::SERVICE_UNAVAILABLE, "ENGINE_UNAVAILABLE");
    assert!(res.headers.contains_key(header::RETRY_AFTER));
    assert_eq!(searches() - before, 3, "the configured number of attempts");
}

#[tokio::test]
async fn refused_credentials_are_502_and_unhealthy() {
    let app = TestApp::spawn().await;
    app.fake.reject_credentials(true);
    app.register("alice", face_of(1), None)
        .await
        .assert_error(StatusCode::BAD_GATEWAY, "UPSTREAM_AUTH");
    assert_eq!(
        app.get("/health", None).await.status,
        StatusCode::SERVICE_UNAVAILABLE
    );
    // Not ready, but alive: an orchestrator must not restart servers for an AWS outage.
    let ready = app.get("/health/ready", None).await;
    assert_eq!(ready.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(ready.body["engine"]["status"], "down");
    let live = app.get("/health/live", None).await;
    assert_eq!(live.status, StatusCode::OK);
    assert_eq!(live.body["status"], "alive");
    assert_eq!(app.db_count("users"), 0);
}

#[tokio::test]
async fn an_unreachable_service_is_503() {
    let app = TestApp::spawn_with(|s| {
        s.engine.rekognition.max_attempts = 1;
    })
    .await;
    // Point a second server at a port nobody listens on, sharing nothing with the first.
    let dir = tempfile::tempdir().unwrap();
    let mut settings = test_settings(dir.path(), &app.fake);
    settings.engine.rekognition.endpoint_url = Some("http://127.0.0.1:9".into());
    settings.engine.rekognition.max_attempts = 1;
    let err = facelock::build_state(settings)
        .await
        .err()
        .map(|e| facelock::error_chain(&e))
        .expect("start must fail");
    assert!(err.contains("rekognition"), "{err}");
}

#[tokio::test]
async fn starting_without_aws_settings_says_what_to_set() {
    let fake = FakeRekognition::start().await;
    let dir = tempfile::tempdir().unwrap();
    let mut settings = test_settings(dir.path(), &fake);
    settings.engine.rekognition.region = None;
    let err = facelock::error_chain(&facelock::build_state(settings).await.err().unwrap());
    assert!(err.contains("AWS_REGION"), "{err}");

    let mut settings = test_settings(dir.path(), &fake);
    settings.engine.rekognition.secret_access_key = None;
    let err = facelock::error_chain(&facelock::build_state(settings).await.err().unwrap());
    assert!(err.contains("AWS_SECRET_ACCESS_KEY"), "{err}");
}
