//! `/metrics`: what a Prometheus scrape sees after real requests.

use axum::{
    body::Body,
    http::{header, Request, StatusCode},
};
use facelock::config::Secret;

use crate::{fake_rekognition::face_of, helpers::TestApp};

/// The value of the sample `name` (exact labels included), if present.
fn sample(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
}

#[tokio::test]
async fn a_scrape_counts_requests_outcomes_stages_events_and_enrolment() {
    let app = TestApp::spawn().await;
    assert_eq!(
        app.register("alice", face_of(1), None).await.status,
        StatusCode::OK
    );
    assert_eq!(
        app.verify(face_of(1), None, None).await.status,
        StatusCode::OK
    );
    app.verify(face_of(7), None, None)
        .await
        .assert_error(StatusCode::BAD_REQUEST, "NO_MATCH");

    let res = app.get("/metrics", None).await;
    assert_eq!(res.status, StatusCode::OK);
    assert!(res.headers[header::CONTENT_TYPE]
        .to_str()
        .unwrap()
        .starts_with("text/plain; version=0.0.4"));
    let text = res.body.as_str().unwrap();
    // Each application has its own registry: the counts are exactly this test's requests.
    for (name, expected) in [
        (
            r#"facelock_http_requests_total{method="POST",route="/verify/",status="200"}"#,
            1.0,
        ),
        (
            r#"facelock_http_requests_total{method="POST",route="/verify/",status="400"}"#,
            1.0,
        ),
        (
            r#"facelock_http_requests_total{method="POST",route="/register/",status="200"}"#,
            1.0,
        ),
        (
            r#"facelock_http_request_duration_seconds_count{method="POST",route="/verify/"}"#,
            2.0,
        ),
        (r#"facelock_verify_outcomes_total{outcome="success"}"#, 1.0),
        (r#"facelock_verify_outcomes_total{outcome="NO_MATCH"}"#, 1.0),
        (
            // The registration's duplicate-face check, then each login.
            r#"facelock_engine_stage_duration_seconds_count{engine="rekognition",stage="search_faces_by_image"}"#,
            3.0,
        ),
        (
            r#"facelock_engine_stage_duration_seconds_count{engine="rekognition",stage="index_faces"}"#,
            1.0,
        ),
        (
            r#"facelock_engine_stage_duration_seconds_count{engine="rekognition",stage="decode"}"#,
            3.0,
        ),
        (
            r#"facelock_audit_events_total{kind="login_succeeded"}"#,
            1.0,
        ),
        (r#"facelock_audit_events_total{kind="login_failed"}"#, 1.0),
    ] {
        let value = sample(text, name).unwrap_or_else(|| panic!("{name} missing:\n{text}"));
        assert_eq!(value, expected, "{name}");
    }
    // Read from this server's store at the scrape: exact.
    assert_eq!(sample(text, "facelock_users"), Some(1.0));
    assert_eq!(sample(text, "facelock_faces"), Some(1.0));
    // Routes are templates, never raw paths: a user id does not become a label.
    app.delete("/users/alice/", None).await;
    let text = app.get("/metrics", None).await.body;
    let text = text.as_str().unwrap();
    assert!(text.contains(r#"route="/users/{user_id}/""#), "{text}");
    assert!(!text.contains("/users/alice/"));
}

#[tokio::test]
async fn metrics_can_require_a_token_or_be_turned_off() {
    let app = TestApp::spawn_with(|s| {
        s.server.metrics.token = Some(Secret::new("scrape-secret-0123456789"));
    })
    .await;
    app.get("/metrics", None)
        .await
        .assert_error(StatusCode::UNAUTHORIZED, "NOT_AUTHENTICATED");
    app.get("/metrics", Some("wrong"))
        .await
        .assert_error(StatusCode::UNAUTHORIZED, "INVALID_TOKEN");
    assert_eq!(
        app.get("/metrics", Some("scrape-secret-0123456789"))
            .await
            .status,
        StatusCode::OK
    );

    let off = TestApp::spawn_with(|s| s.server.metrics.enabled = false).await;
    let res = off
        .send(Request::get("/metrics").body(Body::empty()).unwrap())
        .await;
    res.assert_error(StatusCode::NOT_FOUND, "NOT_FOUND");
}
