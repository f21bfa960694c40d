//! The real binary on a real socket: start it on port 0, talk HTTP to it, stop it with SIGTERM.

use std::{
    io::{BufRead, BufReader},
    process::{Command, Stdio},
    time::Duration,
};

use crate::{
    fake_rekognition::{face_of, FakeRekognition},
    helpers::shared_faces,
};

/// A running server; killed when dropped, so a failing test leaves no process behind.
struct Server(Option<std::process::Child>);

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut child) = self.0.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Starts the binary in an empty folder with `env` on port 0; returns it and its base URL.
fn spawn_server(dir: &std::path::Path, env: &[(&str, String)]) -> (Server, String) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_facelock"));
    command
        .current_dir(dir)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("FACELOCK_PORT", "0")
        .env("RUST_LOG", "facelock=info")
        .env("NO_COLOR", "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    for (k, v) in env {
        command.env(k, v);
    }
    let mut child = command.spawn().unwrap();

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
    (Server(Some(child)), format!("http://{addr}"))
}

/// Stops the server with SIGTERM and checks that it exits cleanly.
fn stop(mut server: Server) {
    let Some(mut child) = server.0.take() else {
        return;
    };
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

fn photo(bytes: Vec<u8>) -> reqwest::multipart::Part {
    reqwest::multipart::Part::bytes(bytes).file_name("me.jpg")
}

// Multi-threaded: this thread blocks reading the child's output while the fake answers it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_serves_register_verify_and_shuts_down_gracefully() {
    let fake = FakeRekognition::start().await;
    let dir = tempfile::tempdir().unwrap();
    let (child, base) = spawn_server(
        dir.path(),
        &[
            ("FACELOCK_ENGINE", "rekognition".into()),
            ("AWS_REGION", "us-east-1".into()),
            ("AWS_ENDPOINT_URL", fake.endpoint()),
            ("AWS_ACCESS_KEY_ID", "AKIDSMOKE".into()),
            ("AWS_SECRET_ACCESS_KEY", "smoke-secret".into()),
        ],
    );
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

    // The database holds the signing keys and face descriptors: owner-only permissions.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.path().join("data/facelock.db"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    stop(child);
}

/// The binary with no configuration at all (the embedded engine), real photos, a real socket.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_default_server_logs_a_real_face_in() {
    let Some(root) = shared_faces() else { return };
    let models = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("models");
    facelock::engine::local::models::ensure(&models).unwrap();
    let dir = tempfile::tempdir().unwrap();
    // Only the models folder is pointed at the shared copy, to fetch it once per checkout.
    let (child, base) = spawn_server(
        dir.path(),
        &[("FACELOCK_MODELS_DIR", models.display().to_string())],
    );
    let http = reqwest::Client::new();
    let read = |p: &str| std::fs::read(root.join(p)).unwrap();

    let health: serde_json::Value = http
        .get(format!("{base}/health"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(health["engine_name"], "local");

    let form = reqwest::multipart::Form::new()
        .text("user_id", "rose")
        .part(
            "face_image",
            photo(read("faces/rose_leslie/rose_leslie_01.jpg")),
        );
    let res = http
        .post(format!("{base}/register/"))
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);

    let form = reqwest::multipart::Form::new()
        .text("similarity_threshold", "90")
        .part(
            "face_image",
            photo(read("faces/rose_leslie/rose_leslie_02.jpg")),
        );
    let res = http
        .post(format!("{base}/verify/"))
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let body: serde_json::Value = res.json().await.unwrap();
    assert_eq!(body["user_id"], "rose");
    let token = body["token"].as_str().unwrap().to_owned();

    let form = reqwest::multipart::Form::new().part(
        "face_image",
        photo(read("faces/kit_harington/kit_harington_03.jpg")),
    );
    let res = http
        .post(format!("{base}/verify/"))
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400);

    let res = http
        .delete(format!("{base}/users/rose/"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    stop(child);
}

/// The operator's commands work on the same data folder as the server.
#[test]
fn operator_commands_manage_keys_and_users() {
    let Some(root) = shared_faces() else { return };
    let models = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("models");
    facelock::engine::local::models::ensure(&models).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let run = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_facelock"))
            .args(args)
            .current_dir(dir.path())
            .env_clear()
            .env("FACELOCK_MODELS_DIR", &models)
            .env("RUST_LOG", "warn")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let photo = root.join("faces/rose_leslie/rose_leslie_01.jpg");
    let added = run(&[
        "users",
        "add",
        "rose",
        "--image",
        photo.to_str().unwrap(),
        "--full-name",
        "Rose",
    ]);
    assert!(added.contains("for rose"), "{added}");
    assert!(run(&["users", "list"]).starts_with("rose\tfaces=1\tRose"));

    let first = run(&["keys", "list"]);
    assert_eq!(first.lines().count(), 1, "{first}");
    assert!(first.contains("active"));
    let rotated = run(&["keys", "rotate"]);
    let new_kid = rotated.split_whitespace().nth(3).unwrap().to_owned();
    let listed = run(&["keys", "list"]);
    assert_eq!(listed.lines().count(), 2, "{listed}");
    assert!(
        listed.lines().next().unwrap().starts_with(&new_kid),
        "newest first: {listed}"
    );
    assert!(listed.contains("retired, published until"));

    assert!(run(&["users", "delete", "rose"]).contains("deleted rose"));
    assert_eq!(run(&["users", "list"]), "");
}
