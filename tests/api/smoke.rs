//! The real binary on a real socket: start it on port 0, talk HTTP to it, stop it with SIGTERM.

use std::{
    io::{BufRead, BufReader},
    process::{Command, Stdio},
    time::Duration,
};

use crate::fake_rekognition::{face_of, FakeRekognition};

// Multi-threaded: this thread blocks reading the child's output while the fake answers it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_serves_register_verify_and_shuts_down_gracefully() {
    let fake = FakeRekognition::start().await;
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_facelock"))
        .current_dir(dir.path())
        .env_clear()
        .env("FACELOCK_PORT", "0")
        .env("FACELOCK_ENGINE", "rekognition")
        .env("AWS_REGION", "us-east-1")
        .env("AWS_ENDPOINT_URL", fake.endpoint())
        .env("AWS_ACCESS_KEY_ID", "AKIDSMOKE")
        .env("AWS_SECRET_ACCESS_KEY", "smoke-secret")
        .env("RUST_LOG", "facelock=info")
        .env("NO_COLOR", "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();

    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let addr = loop {
        let line = rx
            .recv_timeout(Duration::from_secs(30))
            .expect("the server did not report its address");
        if let Some(rest) = line.split("listening on http://").nth(1) {
            break rest.split_whitespace().next().unwrap().to_owned();
        }
    };
    let base = format!("http://{addr}");
    let http = reqwest::Client::new();

    let health: serde_json::Value = http
        .get(format!("{base}/health"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(health["status"], "healthy");

    let form = reqwest::multipart::Form::new()
        .text("user_id", "smoke")
        .part(
            "face_image",
            reqwest::multipart::Part::bytes(face_of(1)).file_name("me.png"),
        );
    let res = http
        .post(format!("{base}/register/"))
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);

    let form = reqwest::multipart::Form::new().part(
        "face_image",
        reqwest::multipart::Part::bytes(face_of(1)).file_name("me.png"),
    );
    let res = http
        .post(format!("{base}/verify/"))
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let token = res.json::<serde_json::Value>().await.unwrap()["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let me = http
        .get(format!("{base}/users/me"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(me.status(), 200);
    assert!(me.headers().contains_key("x-request-id"));

    // The key was generated with owner-only permissions.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.path().join("data/jwt_secret.key"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[cfg(unix)]
    {
        Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .unwrap();
        let status = child.wait().unwrap();
        assert!(status.success(), "graceful shutdown exits 0, got {status}");
    }
    #[cfg(not(unix))]
    child.kill().unwrap();
}
