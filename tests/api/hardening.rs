//! Brute force and its traces: per-account lockout shared through the store, the per-address
//! delay of 1:N logins, and the audit trail that records both.

use axum::http::StatusCode;
use facelock::{
    domain::UserId,
    store::{AuditQuery, AuditRecord},
};

use crate::{fake_rekognition::face_of, helpers::TestApp};

const ALICE: u8 = 1;
const MALLORY: u8 = 2;

async fn events(app: &TestApp, kind: &str) -> Vec<AuditRecord> {
    app.state
        .facelock
        .store()
        .audit_events(AuditQuery {
            kind: Some(kind.into()),
            limit: 1000,
            ..Default::default()
        })
        .await
        .unwrap()
}

fn retry_after(res: &crate::helpers::TestResponse) -> u64 {
    res.headers["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap()
}

#[tokio::test]
async fn five_failures_from_any_addresses_lock_the_account_whatever_succeeds_between() {
    let app = TestApp::spawn().await;
    assert_eq!(
        app.register("alice", face_of(ALICE), None).await.status,
        StatusCode::OK
    );

    // Four failures, then alice herself gets in; her login takes back only its own count,
    // so one more failure locks the account, for the right face too: a genuine login does
    // not hand whoever is guessing a fresh allowance.
    for i in 0..4 {
        app.verify_from(
            &format!("127.0.0.{}", 20 + i),
            face_of(MALLORY),
            Some("alice"),
        )
        .await
        .assert_error(StatusCode::BAD_REQUEST, "NO_MATCH");
    }
    let ok = app
        .verify_from("127.0.0.2", face_of(ALICE), Some("alice"))
        .await;
    assert_eq!(ok.status, StatusCode::OK, "{}", ok.body);
    app.verify_from("127.0.0.24", face_of(MALLORY), Some("alice"))
        .await
        .assert_error(StatusCode::BAD_REQUEST, "NO_MATCH");
    let locked = app
        .verify_from("127.0.0.2", face_of(ALICE), Some("alice"))
        .await;
    locked.assert_error(StatusCode::TOO_MANY_REQUESTS, "ACCOUNT_LOCKED");
    let wait = retry_after(&locked);
    assert!((25..=30).contains(&wait), "Retry-After {wait}");
    // A 1:N login that lands on the locked account is refused as well.
    app.verify_from("127.0.0.3", face_of(ALICE), None)
        .await
        .assert_error(StatusCode::TOO_MANY_REQUESTS, "ACCOUNT_LOCKED");

    // The lock shows in the audit trail with the addresses that caused it.
    let locks = events(&app, "account_locked").await;
    assert_eq!(locks.len(), 1);
    assert_eq!(locks[0].user_id.as_deref(), Some("alice"));
    assert_eq!(locks[0].detail["failures"], 5);
    assert_eq!(locks[0].address.as_deref(), Some("127.0.0.24"));
    let failed = events(&app, "login_failed").await;
    assert_eq!(failed.len(), 5);
    assert!(failed.iter().all(|e| e.request_id.is_some()));
    assert_eq!(events(&app, "login_refused_locked").await.len(), 2);

    // Once the lock has passed, the next failure locks for twice as long.
    app.db()
        .execute("UPDATE lockouts SET locked_until = 0", [])
        .unwrap();
    app.verify_from("127.0.0.30", face_of(MALLORY), Some("alice"))
        .await
        .assert_error(StatusCode::BAD_REQUEST, "NO_MATCH");
    let again = app
        .verify_from("127.0.0.2", face_of(ALICE), Some("alice"))
        .await;
    again.assert_error(StatusCode::TOO_MANY_REQUESTS, "ACCOUNT_LOCKED");
    assert!(
        (55..=60).contains(&retry_after(&again)),
        "{}",
        retry_after(&again)
    );

    // The operator's unlock lets alice in at once.
    let store = app.state.facelock.store();
    assert!(store
        .clear_lockout(&UserId::parse("alice").unwrap())
        .await
        .unwrap());
    let res = app
        .verify_from("127.0.0.2", face_of(ALICE), Some("alice"))
        .await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.body);
}

#[tokio::test]
async fn a_lockout_is_shared_by_every_server_on_the_store() {
    let app = TestApp::spawn().await;
    app.register("alice", face_of(ALICE), None).await;
    // A second server on the same data folder.
    let other = facelock::build_state(app.settings.clone()).await.unwrap();
    let other = TestApp {
        router: facelock::app(other.clone()),
        state: other,
        ..TestApp::spawn().await
    };
    for i in 0..5 {
        let server = if i % 2 == 0 { &app } else { &other };
        server
            .verify_from("127.0.0.9", face_of(MALLORY), Some("alice"))
            .await
            .assert_error(StatusCode::BAD_REQUEST, "NO_MATCH");
    }
    other
        .verify_from("127.0.0.2", face_of(ALICE), Some("alice"))
        .await
        .assert_error(StatusCode::TOO_MANY_REQUESTS, "ACCOUNT_LOCKED");
}

#[tokio::test]
async fn unknown_user_ids_lock_the_same_way_so_nothing_is_revealed() {
    let app = TestApp::spawn().await;
    for _ in 0..5 {
        app.verify_from("127.0.0.9", face_of(MALLORY), Some("nobody"))
            .await
            .assert_error(StatusCode::BAD_REQUEST, "NO_MATCH");
    }
    app.verify_from("127.0.0.9", face_of(MALLORY), Some("nobody"))
        .await
        .assert_error(StatusCode::TOO_MANY_REQUESTS, "ACCOUNT_LOCKED");
}

#[tokio::test]
async fn failed_one_to_n_logins_slow_down_their_address_only() {
    let app = TestApp::spawn().await;
    app.register("alice", face_of(ALICE), None).await;
    for _ in 0..6 {
        app.verify_from("127.0.0.40", face_of(MALLORY), None)
            .await
            .assert_error(StatusCode::BAD_REQUEST, "NO_MATCH");
    }
    let slowed = app.verify_from("127.0.0.40", face_of(ALICE), None).await;
    slowed.assert_error(StatusCode::TOO_MANY_REQUESTS, "RATE_LIMITED");
    assert!(retry_after(&slowed) >= 1);
    // Another address is not affected, and no account was locked by 1:N failures.
    let res = app.verify_from("127.0.0.41", face_of(ALICE), None).await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.body);
    assert!(events(&app, "account_locked").await.is_empty());
}

/// An attacker enrolled under an id of their own logs in with their own face between guesses
/// at strangers: the address's 1:N delay is not reset by it, only by time.
#[tokio::test]
async fn logging_in_as_oneself_does_not_reset_an_addresses_delay() {
    const STRANGER: u8 = 9;
    let app = TestApp::spawn().await;
    app.register("alice", face_of(ALICE), None).await;
    app.register("mallory", face_of(MALLORY), None).await;
    let from = "127.0.0.42";
    for _ in 0..6 {
        app.verify_from(from, face_of(STRANGER), None)
            .await
            .assert_error(StatusCode::BAD_REQUEST, "NO_MATCH");
    }
    // The sixth failure earned a second's wait; then mallory logs in as mallory.
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let own = app.verify_from(from, face_of(MALLORY), None).await;
    assert_eq!(own.status, StatusCode::OK, "{}", own.body);
    // The seventh failure costs two seconds at once, as if the login had not happened.
    app.verify_from(from, face_of(STRANGER), None)
        .await
        .assert_error(StatusCode::BAD_REQUEST, "NO_MATCH");
    let slowed = app.verify_from(from, face_of(STRANGER), None).await;
    slowed.assert_error(StatusCode::TOO_MANY_REQUESTS, "RATE_LIMITED");
    assert!(retry_after(&slowed) >= 1);
}

/// Face squatting: with open registration (the default) anyone enrols another person's public
/// photo under an id of their own first. `FACELOCK_REGISTRATION` closes that door: `liveness`
/// refuses a photo alone for a new id, `admin` refuses anyone but an administrator; adding a
/// face to one's own id is unchanged.
#[tokio::test]
async fn registration_can_demand_liveness_or_an_administrator() {
    use facelock::config::RegistrationPolicy;
    let open = TestApp::spawn().await;
    let squatted = open.register("mallory", face_of(ALICE), None).await;
    assert_eq!(squatted.status, StatusCode::OK, "{}", squatted.body);

    let live = TestApp::spawn_with(|s| s.engine.registration = RegistrationPolicy::Liveness).await;
    live.register("mallory", face_of(ALICE), None)
        .await
        .assert_error(StatusCode::BAD_REQUEST, "LIVENESS_REQUIRED");
    assert_eq!(live.db_count("users"), 0);

    let closed = TestApp::spawn_with(|s| s.engine.registration = RegistrationPolicy::Admin).await;
    closed
        .register("mallory", face_of(ALICE), None)
        .await
        .assert_error(StatusCode::FORBIDDEN, "FORBIDDEN");
    let admin = closed.admin_token().await;
    let enrolled = closed.register("alice", face_of(ALICE), Some(&admin)).await;
    assert_eq!(enrolled.status, StatusCode::OK, "{}", enrolled.body);
    // Alice adds a second face to her own id with her own token.
    let alice = closed.login(face_of(ALICE)).await;
    let added = closed.register("alice", face_of(ALICE), Some(&alice)).await;
    assert_eq!(added.status, StatusCode::OK, "{}", added.body);
    assert_eq!(added.body["user_id"], "alice");
}

/// Finding 3 of the attacker: 100 wrong guesses at one account sent at once from 100
/// addresses. At most the lockout's five are compared; the rest are refused before any image
/// work, and the owner's face is locked out with them.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_burst_of_guesses_gets_no_more_comparisons_than_the_lockout_allows() {
    let app = std::sync::Arc::new(TestApp::spawn().await);
    app.register("alice", face_of(ALICE), None).await;
    let before = app.get("/metrics", None).await.body;
    let count = |text: &serde_json::Value, stage: &str| {
        let name = format!(
            r#"facelock_engine_stage_duration_seconds_count{{engine="rekognition",stage="{stage}"}}"#
        );
        text.as_str()
            .unwrap()
            .lines()
            .find_map(|l| l.strip_prefix(name.as_str())?.trim().parse::<u32>().ok())
            .unwrap_or(0)
    };
    let guesses = (0..100).map(|i| {
        let app = app.clone();
        tokio::spawn(async move {
            let from = format!("10.9.{}.{}", i / 200, i % 200 + 1);
            app.verify_from(&from, face_of(MALLORY), Some("alice"))
                .await
        })
    });
    let mut codes = std::collections::BTreeMap::new();
    for guess in guesses.collect::<Vec<_>>() {
        let res = guess.await.unwrap();
        *codes.entry(res.code().to_owned()).or_insert(0) += 1;
    }
    assert_eq!(codes.get("NO_MATCH"), Some(&5), "{codes:?}");
    assert_eq!(codes.get("ACCOUNT_LOCKED"), Some(&95), "{codes:?}");
    let after = app.get("/metrics", None).await.body;
    assert_eq!(
        count(&after, "search_faces_by_image") - count(&before, "search_faces_by_image"),
        5,
        "face comparisons"
    );
    assert_eq!(
        count(&after, "decode") - count(&before, "decode"),
        5,
        "photos decoded"
    );
    app.verify_from("10.9.9.9", face_of(ALICE), Some("alice"))
        .await
        .assert_error(StatusCode::TOO_MANY_REQUESTS, "ACCOUNT_LOCKED");
}

#[tokio::test]
async fn the_audit_trail_records_logins_tokens_and_admin_actions_without_secrets() {
    let app = TestApp::spawn().await;
    app.register("alice", face_of(ALICE), None).await;
    let res = app.verify_from("127.0.0.5", face_of(ALICE), None).await;
    assert_eq!(res.status, StatusCode::OK);
    let token = res.body["token"].as_str().unwrap().to_owned();
    let refresh = res.body["refresh_token"].as_str().unwrap().to_owned();
    app.get("/users/me/", Some("not.a.token"))
        .await
        .assert_error(StatusCode::UNAUTHORIZED, "INVALID_TOKEN");
    let admin = app.admin_token().await;
    assert_eq!(
        app.get("/users/?limit=5", Some(&admin)).await.status,
        StatusCode::OK
    );
    assert_eq!(
        app.delete("/users/alice/", Some(&admin)).await.status,
        StatusCode::OK
    );

    let ok = events(&app, "login_succeeded").await;
    let alice = ok
        .iter()
        .find(|e| e.user_id.as_deref() == Some("alice"))
        .unwrap();
    assert_eq!(alice.address.as_deref(), Some("127.0.0.5"));
    assert!(alice.detail["similarity"].as_f64().unwrap() >= 90.0);
    assert!(alice.request_id.as_deref().is_some_and(|r| !r.is_empty()));
    let refused = events(&app, "token_refused").await;
    assert_eq!(refused[0].detail["reason"], "malformed");
    assert_eq!(events(&app, "user_registered").await.len(), 2);
    let deleted = events(&app, "user_deleted").await;
    assert_eq!(deleted[0].user_id.as_deref(), Some("alice"));
    assert_eq!(deleted[0].actor.as_deref(), Some("admin"));
    assert_eq!(
        events(&app, "users_listed").await[0].actor.as_deref(),
        Some("admin")
    );

    // Nothing secret was written: no token, refresh token or image bytes.
    let all = app
        .state
        .facelock
        .store()
        .audit_events(AuditQuery {
            limit: 1000,
            ..Default::default()
        })
        .await
        .unwrap();
    let text = serde_json::to_string(&all).unwrap();
    for secret in [&token, &refresh, &admin] {
        assert!(!text.contains(secret.as_str()));
    }
}

#[tokio::test]
async fn browsers_of_listed_origins_may_send_credentials_and_others_get_nothing() {
    use facelock::config::CorsOrigins;
    let app = TestApp::spawn_with(|s| {
        s.server.cors = CorsOrigins::List(vec!["https://app.example.com".into()]);
        s.server.cors_allow_credentials = true;
    })
    .await;
    let preflight = |origin: &str| {
        axum::http::Request::builder()
            .method("OPTIONS")
            .uri("/verify/")
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header("access-control-request-headers", "authorization")
            .body(axum::body::Body::empty())
            .unwrap()
    };
    let allowed = app.send(preflight("https://app.example.com")).await;
    assert_eq!(
        allowed.headers["access-control-allow-origin"],
        "https://app.example.com"
    );
    assert_eq!(allowed.headers["access-control-allow-credentials"], "true");
    let other = app.send(preflight("https://evil.example.net")).await;
    assert!(other.headers.get("access-control-allow-origin").is_none());
    // A real request from the listed origin is answered with the same headers.
    let get = axum::http::Request::get("/health/live")
        .header("origin", "https://app.example.com")
        .body(axum::body::Body::empty())
        .unwrap();
    let res = app.send(get).await;
    assert_eq!(res.headers["access-control-allow-credentials"], "true");
}

/// Behind a trusted proxy the client is the last untrusted address of `X-Forwarded-For`;
/// anyone else's `X-Forwarded-For` is ignored, so a client cannot pick the address it is
/// counted and locked out under.
#[tokio::test]
async fn forwarded_addresses_are_believed_only_from_trusted_proxies() {
    use facelock::config::IpNet;
    let app = TestApp::spawn_with(|s| {
        s.server.trusted_proxies = vec![IpNet::parse("10.0.0.0/8").unwrap()];
    })
    .await;
    let failed_login_from = |peer: &'static str, forwarded: &'static str| {
        let form =
            crate::helpers::Multipart::new().file("face_image", "face.png", face_of(MALLORY));
        let (content_type, body) = form.finish();
        let mut request = axum::http::Request::post("/verify/")
            .header("content-type", content_type)
            .header("x-forwarded-for", forwarded)
            .body(axum::body::Body::from(body))
            .unwrap();
        let peer: std::net::SocketAddr = format!("{peer}:40000").parse().unwrap();
        request
            .extensions_mut()
            .insert(axum::extract::ConnectInfo(peer));
        app.send(request)
    };
    // Through two proxies of ours; the first entry is the client's own claim, not believed.
    failed_login_from("10.0.0.1", "203.0.113.99, 198.51.100.7, 10.0.0.2")
        .await
        .assert_error(StatusCode::BAD_REQUEST, "NO_MATCH");
    // Straight from the internet, with a forged header.
    failed_login_from("192.0.2.50", "198.51.100.8")
        .await
        .assert_error(StatusCode::BAD_REQUEST, "NO_MATCH");
    let addresses: Vec<Option<String>> = events(&app, "login_failed")
        .await
        .into_iter()
        .map(|e| e.address)
        .collect();
    assert_eq!(
        addresses,
        [Some("192.0.2.50".into()), Some("198.51.100.7".into())]
    );
}

/// A body that sends its first bytes and then nothing more, ever.
struct Stalled(bool);

impl futures_core::Stream for Stalled {
    type Item = Result<axum::body::Bytes, std::io::Error>;

    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        if self.0 {
            return std::task::Poll::Pending;
        }
        self.0 = true;
        let start = "--x\r\nContent-Disposition: form-data; name=\"face_image\"; filename=\"a.jpg\"\r\n\r\n";
        std::task::Poll::Ready(Some(Ok(axum::body::Bytes::from_static(start.as_bytes()))))
    }
}

/// A request that outlives `FACELOCK_REQUEST_TIMEOUT_SECS` is answered 504 with its own code,
/// not as a server fault.
#[tokio::test]
async fn a_request_that_times_out_says_so() {
    let app = TestApp::spawn_with(|s| {
        s.server.request_timeout = std::time::Duration::from_millis(300);
    })
    .await;
    let request = axum::http::Request::post("/verify/")
        .header("content-type", "multipart/form-data; boundary=x")
        .body(axum::body::Body::from_stream(Stalled(false)))
        .unwrap();
    let res = app.send(request).await;
    res.assert_error(StatusCode::GATEWAY_TIMEOUT, "TIMEOUT");
    assert!(res.body["request_id"].is_string(), "{}", res.body);
}
