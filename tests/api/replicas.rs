//! Two `facelock` servers on one PostgreSQL, as behind a load balancer, on the embedded engine
//! with real photos: what one does, the other knows at once.

use std::{
    process::Command,
    time::{Duration, Instant},
};

use facelock::store::MasterKey;

use crate::{
    helpers::{models_dir, shared_faces},
    postgres::PgServer,
    smoke::{spawn_server, stop, Api},
};

/// Engine requests per minute and client address, across both replicas.
const LIMIT: u32 = 40;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_on_one_postgres_agree_at_once() {
    let (Some(faces), Some(models)) = (shared_faces(), models_dir()) else {
        return;
    };
    let Some(pg) = PgServer::start() else {
        return;
    };
    let url = pg.database("replicas").await;
    let env: Vec<(&str, String)> = vec![
        ("FACELOCK_DATABASE_URL", url),
        // Every replica opens the store with the same master key.
        (
            "FACELOCK_MASTER_KEY",
            MasterKey::generate().unwrap().to_base64(),
        ),
        ("FACELOCK_ENGINE", "local".into()),
        ("FACELOCK_MODELS_DIR", models.display().to_string()),
        // Counted in PostgreSQL, so both replicas share it.
        ("FACELOCK_RATE_LIMIT_PER_MINUTE", LIMIT.to_string()),
    ];
    let photo = |rel: &str| std::fs::read(faces.join("faces").join(rel)).unwrap();
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (server_a, base_a) = spawn_server(dir_a.path(), &env);
    let (server_b, base_b) = spawn_server(dir_b.path(), &env);
    let (a, b) = (Api::new(base_a), Api::new(base_b));

    // Registered on A: B logs the face in within a second.
    let res = a
        .post_photo(
            "/register/",
            &[("user_id", "obama")],
            photo("barack_obama/obama_01.jpg"),
        )
        .await;
    assert_eq!(res.status(), 200);
    let registered = Instant::now();
    let login = loop {
        let (status, body) = b.verify(&[], photo("barack_obama/obama_04.jpg")).await;
        if status == 200 {
            break body;
        }
        assert!(
            registered.elapsed() < Duration::from_secs(1),
            "B still answers {status} {body} a second after A registered"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    eprintln!(
        "B logged in a face registered on A after {:?}",
        registered.elapsed()
    );

    // One refresh token presented to both at once is used exactly once.
    let refresh = login["refresh_token"].as_str().unwrap().to_owned();
    let present = |api: &Api| {
        let request = api
            .http
            .post(format!("{}/token", api.base))
            .form(&[("grant_type", "refresh_token"), ("refresh_token", &refresh)]);
        async move { request.send().await.unwrap().status().as_u16() }
    };
    let (from_a, from_b) = tokio::join!(present(&a), present(&b));
    let mut statuses = [from_a, from_b];
    statuses.sort();
    assert_eq!(statuses, [200, 400], "exactly one replica accepts it");

    // A liveness challenge issued by A is answered once: on B, and then never again on A.
    // (The frames are not photos: the answer spends the challenge before reading them, which
    // takes back the failure its fetch counted; each refused answer then counts against this
    // address, on both replicas.)
    let challenge: serde_json::Value = a
        .http
        .post(format!("{}/liveness/challenge", a.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = challenge["challenge_id"].as_str().unwrap().to_owned();
    let answer = |api: &Api| {
        let mut form = reqwest::multipart::Form::new()
            .text("challenge_id", id.clone())
            .text("user_id", "nobody");
        for i in 0..5 {
            let part = reqwest::multipart::Part::bytes(b"not a frame".to_vec())
                .file_name(format!("frame{i}.jpg"));
            form = form.part("frames", part);
        }
        let request = api
            .http
            .post(format!("{}/verify/", api.base))
            .multipart(form);
        async move {
            let res = request.send().await.unwrap();
            (
                res.status().as_u16(),
                res.json::<serde_json::Value>().await.unwrap(),
            )
        }
    };
    let (status, body) = answer(&b).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (415, Some("UNSUPPORTED_IMAGE")),
        "{body}"
    );
    let (status, body) = answer(&a).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (400, Some("CHALLENGE_USED")),
        "{body}"
    );

    // A key rotation is served by both at once.
    let rotated = Command::new(env!("CARGO_BIN_EXE_facelock"))
        .args(["keys", "rotate"])
        .current_dir(dir_a.path())
        .env_clear()
        .envs(env.iter().map(|(k, v)| (k, v)))
        .env("RUST_LOG", "warn")
        .output()
        .unwrap();
    assert!(rotated.status.success(), "{rotated:?}");
    let stdout = String::from_utf8(rotated.stdout).unwrap();
    let kid = stdout.split_whitespace().nth(3).unwrap().to_owned();
    let rotated_at = Instant::now();
    for api in [&a, &b] {
        loop {
            let jwks: serde_json::Value = api
                .get("/.well-known/jwks.json", None)
                .await
                .json()
                .await
                .unwrap();
            if jwks.to_string().contains(&kid) {
                break;
            }
            assert!(
                rotated_at.elapsed() < Duration::from_secs(1),
                "{} does not publish {kid} a second after the rotation",
                api.base
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    // Deleted on A: B refuses the user's token and face at once.
    let (_, on_a) = a.verify(&[], photo("barack_obama/obama_04.jpg")).await;
    let (_, on_b) = b.verify(&[], photo("barack_obama/obama_04.jpg")).await;
    let token_b = on_b["token"].as_str().unwrap();
    assert_eq!(b.get("/users/me/", Some(token_b)).await.status(), 200);
    let deleted = a
        .http
        .delete(format!("{}/users/obama/", a.base))
        .bearer_auth(on_a["token"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), 200);
    assert_eq!(b.get("/users/me/", Some(token_b)).await.status(), 401);
    let (status, body) = b.verify(&[], photo("barack_obama/obama_04.jpg")).await;
    assert_eq!((status, body["code"].as_str()), (400, Some("NO_MATCH")));

    // Failed logins against one account count on both: the fifth locks it everywhere.
    let res = b
        .post_photo(
            "/register/",
            &[("user_id", "biden")],
            photo("joe_biden/biden_01.jpg"),
        )
        .await;
    assert_eq!(res.status(), 200);
    for attempt in 0..5 {
        let api = if attempt % 2 == 0 { &a } else { &b };
        let (status, _) = api
            .verify(
                &[("user_id", "biden")],
                photo("kit_harington/kit_harington_01.jpeg"),
            )
            .await;
        assert_eq!(status, 400, "attempt {attempt}");
    }
    for api in [&a, &b] {
        let (status, body) = api
            .verify(&[("user_id", "biden")], photo("joe_biden/biden_02.jpg"))
            .await;
        assert_eq!(
            (status, body["code"].as_str()),
            (429, Some("ACCOUNT_LOCKED"))
        );
    }

    // Failed logins from one address count on both: after the five free ones, the next is
    // refused on either replica, not after five more on each. (Three above: the two junk
    // answers to a challenge, refused before any comparison, and one 1:N failure.)
    let mut statuses = Vec::new();
    for attempt in 0..6 {
        let api = if attempt % 2 == 0 { &a } else { &b };
        let (status, body) = api
            .verify(&[], photo("kit_harington/kit_harington_01.jpeg"))
            .await;
        statuses.push((status, body["code"].as_str().unwrap_or_default().to_owned()));
    }
    let refused = statuses
        .iter()
        .position(|(s, c)| *s == 429 && c == "RATE_LIMITED")
        .expect("an address that keeps failing is made to wait");
    assert_eq!(refused, 3, "{statuses:?}");
    // Let that wait pass, so what follows meets only the request limit.
    tokio::time::sleep(Duration::from_millis(1100)).await;

    // The request limit counts on both: spreading requests over the replicas gains nothing.
    // Counts go by the minute; start the burst well inside one.
    let second = facelock::clock::Timestamp::now().unix_millis() % 60_000;
    if second > 50_000 {
        tokio::time::sleep(Duration::from_millis((60_500 - second) as u64)).await;
    }
    let (mut accepted, mut limited) = (0, [false, false]);
    for i in 0..60 {
        let api = [&a, &b][i % 2];
        let res = api
            .post_photo("/verify/", &[], b"not an image".to_vec())
            .await;
        match res.status().as_u16() {
            429 => limited[i % 2] = true,
            _ => accepted += 1,
        }
    }
    assert!(
        accepted <= LIMIT,
        "{accepted} requests passed a limit of {LIMIT} per minute"
    );
    assert_eq!(
        limited,
        [true, true],
        "both replicas refuse once the shared limit is reached"
    );

    stop(server_a);
    stop(server_b);
}
