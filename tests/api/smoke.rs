//! The real binary on a real socket: start it on port 0, talk HTTP to it, stop it with SIGTERM.

use std::{
    io::{BufRead, BufReader},
    process::{Command, Stdio},
    time::Duration,
};

use crate::{
    fake_rekognition::{face_of, FakeRekognition},
    helpers::{models_dir, shared_faces},
};

/// A running server; killed when dropped, so a failing test leaves no process behind.
pub(crate) struct Server(
    Option<std::process::Child>,
    std::sync::mpsc::Receiver<String>,
);

impl Server {
    /// The log lines written since the last call.
    fn logs(&self) -> Vec<String> {
        self.1.try_iter().collect()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut child) = self.0.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Starts the binary in an empty folder with `env` on port 0; returns it and its base URL.
pub(crate) fn spawn_server(dir: &std::path::Path, env: &[(&str, String)]) -> (Server, String) {
    spawn_server_in(Command::new(env!("CARGO_BIN_EXE_facelock")), dir, env)
}

/// Like [`spawn_server`], with the binary started by `command` (under `prlimit`, say).
fn spawn_server_in(
    mut command: Command,
    dir: &std::path::Path,
    env: &[(&str, String)],
) -> (Server, String) {
    command
        .current_dir(dir)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("FACELOCK_PORT", "0")
        .env("RUST_LOG", "facelock=info")
        .env("NO_COLOR", "1")
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    for (k, v) in env {
        command.env(k, v);
    }
    let mut child = command.spawn().unwrap();

    let logs = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(logs).lines().map_while(Result::ok) {
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
    (Server(Some(child), rx), format!("http://{addr}"))
}

/// The environment of a server on the Rekognition engine, answered by `fake`.
fn rekognition_env(fake: &FakeRekognition) -> Vec<(&'static str, String)> {
    vec![
        ("FACELOCK_ENGINE", "rekognition".into()),
        ("AWS_REGION", "us-east-1".into()),
        ("AWS_ENDPOINT_URL", fake.endpoint()),
        ("AWS_ACCESS_KEY_ID", "AKIDSMOKE".into()),
        ("AWS_SECRET_ACCESS_KEY", "smoke-secret".into()),
    ]
}

/// Stops the server with SIGTERM and checks that it exits cleanly.
pub(crate) fn stop(mut server: Server) {
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

/// A client of a running server.
pub(crate) struct Api {
    pub http: reqwest::Client,
    pub base: String,
}

impl Api {
    pub fn new(base: String) -> Self {
        Self {
            http: reqwest::Client::new(),
            base,
        }
    }

    pub async fn get(&self, path: &str, token: Option<&str>) -> reqwest::Response {
        let mut req = self.http.get(format!("{}{path}", self.base));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        req.send().await.unwrap()
    }

    /// A multipart POST with text `fields` and a photo as `face_image`.
    pub async fn post_photo(
        &self,
        path: &str,
        fields: &[(&str, &str)],
        photo: Vec<u8>,
    ) -> reqwest::Response {
        let mut form = reqwest::multipart::Form::new();
        for (name, value) in fields {
            form = form.text(name.to_string(), value.to_string());
        }
        let part = reqwest::multipart::Part::bytes(photo).file_name("me.jpg");
        let form = form.part("face_image", part);
        self.http
            .post(format!("{}{path}", self.base))
            .multipart(form)
            .send()
            .await
            .unwrap()
    }

    /// Logs in with `photo`; returns the response body.
    pub async fn verify(
        &self,
        fields: &[(&str, &str)],
        photo: Vec<u8>,
    ) -> (u16, serde_json::Value) {
        let res = self.post_photo("/verify/", fields, photo).await;
        (res.status().as_u16(), res.json().await.unwrap())
    }
}

// Multi-threaded: this thread blocks reading the child's output while the fake answers it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_serves_register_verify_and_shuts_down_gracefully() {
    let fake = FakeRekognition::start().await;
    let dir = tempfile::tempdir().unwrap();
    let (child, base) = spawn_server(dir.path(), &rekognition_env(&fake));
    let api = Api::new(base);
    let health: serde_json::Value = api.get("/health", None).await.json().await.unwrap();
    assert_eq!(health["status"], "healthy");

    let res = api
        .post_photo("/register/", &[("user_id", "smoke")], face_of(1))
        .await;
    assert_eq!(res.status(), 200);
    let (status, body) = api.verify(&[], face_of(1)).await;
    assert_eq!(status, 200);
    let me = api.get("/users/me", body["token"].as_str()).await;
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
    let Some(models) = models_dir() else { return };
    let dir = tempfile::tempdir().unwrap();
    // Only the models folder is pointed at the tests' shared copy, to fetch it once.
    let (child, base) = spawn_server(
        dir.path(),
        &[("FACELOCK_MODELS_DIR", models.display().to_string())],
    );
    let api = Api::new(base);
    let read = |p: &str| std::fs::read(root.join(p)).unwrap();

    let health: serde_json::Value = api.get("/health", None).await.json().await.unwrap();
    assert_eq!(health["engine_name"], "local");

    // Every log line of a request carries the id the client was given.
    let failed = api
        .http
        .post(format!("{}/verify/", api.base))
        .header("x-request-id", "smoke-request-7")
        .multipart(reqwest::multipart::Form::new().part(
            "face_image",
            reqwest::multipart::Part::bytes(read("faces/kit_harington/kit_harington_01.jpeg")),
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(failed.status(), 400);
    std::thread::sleep(Duration::from_millis(200));
    let lines: Vec<String> = child
        .logs()
        .into_iter()
        .filter(|l| l.contains("/verify/"))
        .collect();
    assert!(
        lines.iter().any(|l| l.contains("login_failed")),
        "{lines:#?}"
    );
    assert!(
        lines
            .iter()
            .all(|l| l.contains("request_id=smoke-request-7")),
        "{lines:#?}"
    );

    let res = api
        .post_photo(
            "/register/",
            &[("user_id", "rose")],
            read("faces/rose_leslie/rose_leslie_01.jpg"),
        )
        .await;
    assert_eq!(res.status(), 200);
    let (status, body) = api
        .verify(
            &[("similarity_threshold", "90")],
            read("faces/rose_leslie/rose_leslie_02.jpg"),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(body["user_id"], "rose");
    let token = body["token"].as_str().unwrap().to_owned();

    let (status, _) = api
        .verify(&[], read("faces/kit_harington/kit_harington_03.jpg"))
        .await;
    assert_eq!(status, 400);

    let res = api
        .http
        .delete(format!("{}/users/rose/", api.base))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    stop(child);
}

/// The binary on the Rekognition engine answered by `fake`, with `settings` besides, under
/// an open-file limit of 1,024; `None` after reporting the skip when `prlimit` is missing.
fn spawn_with_few_files(
    fake: &FakeRekognition,
    dir: &std::path::Path,
    settings: &[(&'static str, String)],
) -> Option<(Server, String)> {
    if Command::new("prlimit").arg("--version").output().is_err() {
        crate::helpers::skip("prlimit (util-linux) is not installed");
        return None;
    }
    let mut command = Command::new("prlimit");
    command.args(["--nofile=1024:1024", env!("CARGO_BIN_EXE_facelock")]);
    let mut env = rekognition_env(fake);
    env.extend_from_slice(settings);
    Some(spawn_server_in(command, dir, &env))
}

/// `/health` answers 200 within a second, on a new connection as a load balancer's probe
/// opens.
async fn health_answers_within_a_second(base: &str) {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(1))
        .pool_max_idle_per_host(0)
        .build()
        .unwrap();
    let started = std::time::Instant::now();
    let health = http.get(format!("{base}/health")).send().await.unwrap();
    assert_eq!(health.status(), 200);
    assert!(started.elapsed() < Duration::from_secs(1));
}

/// Half-open connections cannot starve the server: at an open-file limit of 1,024, 1,100 clients
/// that sent half a request line and nothing more leave `/health` answering within a second,
/// and each of them is closed after the header timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_half_open_connections_cannot_starve_the_server() {
    let fake = FakeRekognition::start().await;
    let dir = tempfile::tempdir().unwrap();
    let settings = [
        ("FACELOCK_HEADER_TIMEOUT_SECS", "2".into()),
        // All from one address here: the cap on all connections is what is tested.
        ("FACELOCK_MAX_CONNECTIONS_PER_ADDRESS", "2000".into()),
    ];
    let Some((child, base)) = spawn_with_few_files(&fake, dir.path(), &settings) else {
        return;
    };
    let addr: std::net::SocketAddr = base.trim_start_matches("http://").parse().unwrap();
    let slow: Vec<std::net::TcpStream> = tokio::task::spawn_blocking(move || {
        (0..1100)
            .map(|_| {
                let mut s =
                    std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(5)).unwrap();
                std::io::Write::write_all(&mut s, b"GET /health HT").unwrap();
                s
            })
            .collect()
    })
    .await
    .unwrap();

    health_answers_within_a_second(&base).await;

    // The last half-open client is closed once the header timeout passes.
    let mut last = slow.into_iter().last().unwrap();
    last.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let started = std::time::Instant::now();
    let mut buf = [0u8; 64];
    let read = std::io::Read::read(&mut last, &mut buf);
    assert!(
        matches!(read, Ok(0)) || read.is_err(),
        "expected the connection closed, got {read:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(5));
    stop(child);
}

/// Finding 5 of the attacker: slow bodies. At an open-file limit of 1,024, 1,000 connections
/// from one address each send the headers of a request with a 100 kB body and then a byte
/// now and then: the address holds its 32 connections and no more, so `/health` from
/// another address answers within a second, also while the bodies keep trickling in.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_bodies_from_one_address_cannot_take_every_slot() {
    use tokio::io::AsyncWriteExt;
    let fake = FakeRekognition::start().await;
    let dir = tempfile::tempdir().unwrap();
    let Some((child, base)) = spawn_with_few_files(&fake, dir.path(), &[]) else {
        return;
    };
    let addr: std::net::SocketAddr = base.trim_start_matches("http://").parse().unwrap();
    let head = b"POST /revoke HTTP/1.1\r\nHost: facelock\r\n\
        Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 100000\r\n\r\nt";
    // Connections are opened in waves, as an attacker replaces those that are dropped, so
    // that no slot a wave left free is free when `/health` comes.
    let mut held = Vec::new();
    for wave in [700, 100, 100, 100] {
        for _ in 0..wave {
            let socket = tokio::net::TcpSocket::new_v4().unwrap();
            socket.bind("127.0.0.2:0".parse().unwrap()).unwrap();
            let Ok(mut stream) = socket.connect(addr).await else {
                continue;
            };
            if stream.write_all(head).await.is_ok() {
                held.push(stream);
            }
        }
        health_answers_within_a_second(&base).await;
        // Another byte of every body still open.
        let mut open = 0;
        for stream in &mut held {
            open += usize::from(stream.write_all(b"t").await.is_ok());
        }
        eprintln!("{open} slow connections still written to");
    }
    drop(held);
    stop(child);
}

/// A body trickling in at a byte a second is cut once the grace period (the header timeout,
/// 2 s here) is over: answered 408 `BODY_TOO_SLOW` and closed, long before the 30 s request
/// timeout, so a slow client holds its slot for seconds. A body sent at a normal pace is not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trickling_body_is_cut_after_the_grace_period() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let fake = FakeRekognition::start().await;
    let dir = tempfile::tempdir().unwrap();
    let mut env = rekognition_env(&fake);
    env.push(("FACELOCK_HEADER_TIMEOUT_SECS", "2".into()));
    let (child, base) = spawn_server(dir.path(), &env);
    let addr = base.trim_start_matches("http://").to_owned();
    let mut stream = tokio::net::TcpStream::connect(&addr).await.unwrap();
    stream
        .write_all(
            b"POST /verify/ HTTP/1.1\r\nHost: facelock\r\n\
              Content-Type: multipart/form-data; boundary=b\r\nContent-Length: 100000\r\n\r\n\
              --b\r\nContent-Disposition: form-data; name=\"face_image\"; filename=\"a.jpg\"\r\n\r\n",
        )
        .await
        .unwrap();
    let started = std::time::Instant::now();
    let (mut reader, mut writer) = stream.into_split();
    let mut answer = vec![0u8; 4096];
    let read = loop {
        tokio::select! {
            read = reader.read(&mut answer) => break read.unwrap(),
            () = tokio::time::sleep(Duration::from_secs(1)) => {
                assert!(started.elapsed() < Duration::from_secs(20), "no answer in 20 s");
                let _ = writer.write_all(b"x").await;
            }
        }
    };
    let mut answer = answer[..read].to_vec();
    // The rest of the answer, up to the close.
    let _ = tokio::time::timeout(Duration::from_secs(5), reader.read_to_end(&mut answer)).await;
    let answer = String::from_utf8_lossy(&answer);
    assert!(
        answer.starts_with("HTTP/1.1 408"),
        "{answer}\n{:#?}",
        child.logs()
    );
    assert!(answer.contains("BODY_TOO_SLOW"), "{answer}");
    assert!(started.elapsed() < Duration::from_secs(20));

    // A photo uploaded at once still goes through to the engine (here: no face in it).
    let api = Api::new(base);
    let (status, body) = api.verify(&[], crate::helpers::png_bomb(64)).await;
    assert_ne!(body["code"], "BODY_TOO_SLOW", "{status} {body}");
    stop(child);
}

/// A small file system of its own, mounted for the test and unmounted when dropped.
struct SmallDisk(tempfile::TempDir);

impl SmallDisk {
    /// A tmpfs of `megabytes`; `None` after reporting the skip when mounting is not allowed
    /// (it needs root).
    fn mount(megabytes: u32) -> Option<Self> {
        let dir = tempfile::tempdir().unwrap();
        let mounted = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={megabytes}m"), "tmpfs"])
            .arg(dir.path())
            .output();
        match mounted {
            Ok(out) if out.status.success() => Some(Self(dir)),
            other => {
                crate::helpers::skip(&format!("cannot mount a tmpfs (needs root): {other:?}"));
                None
            }
        }
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.0.path()).status();
    }
}

/// A full disk is the operator's to fix, not a server error: writes answer 503 `STORAGE_FULL`
/// with nothing half-written, `/health` says the store is degraded, reads keep working, and
/// once space is freed everything works again, with nothing lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_answers_503_and_health_says_degraded() {
    use std::io::Write;
    let Some(disk) = SmallDisk::mount(24) else {
        return;
    };
    let fake = FakeRekognition::start().await;
    let (child, base) = spawn_server(disk.0.path(), &rekognition_env(&fake));
    let api = Api::new(base);
    let res = api
        .post_photo("/register/", &[("user_id", "alice")], face_of(1))
        .await;
    assert_eq!(res.status(), 200);
    let (status, alice) = api.verify(&[], face_of(1)).await;
    assert_eq!(status, 200, "{alice}");
    let token = alice["token"].as_str().unwrap().to_owned();

    // Fill the disk.
    let filler_path = disk.0.path().join("filler");
    let mut filler = std::fs::File::create(&filler_path).unwrap();
    let chunk = vec![7u8; 64 << 10];
    while filler.write_all(&chunk).is_ok() {}
    drop(filler);

    let health = api.get("/health", None).await;
    assert_eq!(health.status(), 503);
    let health: serde_json::Value = health.json().await.unwrap();
    assert_eq!(health["status"], "degraded", "{health}");
    assert_eq!(health["store"]["status"], "degraded", "{health}");
    for user in ["bob", "carol"] {
        let res = api
            .post_photo("/register/", &[("user_id", user)], face_of(2))
            .await;
        assert_eq!(res.status(), 503);
        assert!(res.headers().contains_key("retry-after"));
        let body: serde_json::Value = res.json().await.unwrap();
        assert_eq!(body["code"], "STORAGE_FULL", "{body}");
    }
    // Reads still work.
    let me = api.get("/users/me/", Some(&token)).await;
    assert_eq!(me.status(), 200);

    std::fs::remove_file(&filler_path).unwrap();
    let health = api.get("/health", None).await;
    assert_eq!(health.status(), 200);
    let res = api
        .post_photo("/register/", &[("user_id", "bob")], face_of(2))
        .await;
    assert_eq!(res.status(), 200);
    for (person, user) in [(1, "alice"), (2, "bob")] {
        let (status, body) = api.verify(&[], face_of(person)).await;
        assert_eq!(
            (status, body["user_id"].as_str()),
            (200, Some(user)),
            "{body}"
        );
    }
    stop(child);
    drop(disk);
}

/// The operator's commands work on the same data folder as the server.
#[test]
fn operator_commands_manage_keys_and_users() {
    let Some(root) = shared_faces() else { return };
    let Some(models) = models_dir() else { return };
    let dir = tempfile::tempdir().unwrap();
    // Only `users add` loads the engine: every other command is given no models (and, with
    // the environment cleared, no npm to fetch them), so one that loaded the engine would fail.
    let run = |args: &[&str]| {
        let models = if args[..2] == ["users", "add"] {
            models.clone()
        } else {
            dir.path().join("no-models-here")
        };
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
    assert!(added.contains("for rose (user)"), "{added}");
    let listed = run(&["users", "list"]);
    let fields: Vec<&str> = listed.trim_end().split('\t').collect();
    assert_eq!(fields[..3], ["rose", "user", "faces=1"], "{listed}");
    assert!(
        fields[3].ends_with('Z') && fields[3].contains('T'),
        "RFC 3339: {listed}"
    );
    assert_eq!(fields[4..], ["Rose", "-"], "{listed}");
    assert_eq!(run(&["users", "role", "rose", "admin"]), "rose: admin\n");
    assert!(run(&["users", "list"]).starts_with("rose\tadmin\tfaces=1"));
    assert_eq!(run(&["users", "role", "rose", "user"]), "rose: user\n");

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

    // A new master key: the store still opens, and only under the new key.
    let key_file = dir.path().join("data/master.key");
    let before = std::fs::read_to_string(&key_file).unwrap();
    assert!(run(&["keys", "rotate-master"]).contains("master key rotated"));
    assert_ne!(std::fs::read_to_string(&key_file).unwrap(), before);
    assert!(run(&["users", "list"]).starts_with("rose\tuser\tfaces=1"));

    assert!(run(&["users", "delete", "rose"]).contains("deleted rose"));
    assert_eq!(run(&["users", "list"]), "");
    assert_eq!(run(&["users", "unlock", "rose"]), "rose: was not locked\n");

    // OpenID Connect clients: a secret printed once, listed, rotated, removed.
    let added = run(&[
        "clients",
        "add",
        "grafana",
        "--name",
        "Grafana",
        "--redirect-uri",
        "https://grafana.example.com/login/generic_oauth",
        "--post-logout-redirect-uri",
        "https://grafana.example.com/",
    ]);
    let secret = added
        .lines()
        .find_map(|l| l.strip_prefix("client_secret\t"))
        .unwrap_or_else(|| panic!("{added}"));
    assert!(secret.len() >= 43, "{added}");
    assert!(run(&[
        "clients",
        "add",
        "cli",
        "--name",
        "CLI",
        "--public",
        "--redirect-uri",
        "http://127.0.0.1/cb"
    ])
    .contains("public"));
    let listed = run(&["clients", "list"]);
    assert_eq!(listed.lines().count(), 2, "{listed}");
    assert!(
        listed.starts_with("cli\tpublic\tCLI\thttp://127.0.0.1/cb\t\t"),
        "{listed}"
    );
    assert!(!listed.contains(secret), "the secret is never shown again");
    let rotated = run(&["clients", "rotate-secret", "grafana"]);
    assert!(rotated.starts_with("client_secret\t") && !rotated.contains(secret));
    assert_eq!(run(&["clients", "remove", "cli"]), "removed cli\n");

    // Every command above left its trace, as JSON lines on stdout and nothing else there.
    let trail = run(&["audit", "--since", "1h"]);
    let events: Vec<serde_json::Value> = trail
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let kinds: Vec<&str> = events.iter().map(|e| e["kind"].as_str().unwrap()).collect();
    for kind in [
        "user_registered",
        "role_changed",
        "key_rotated",
        "user_deleted",
        "lockout_cleared",
        "client_registered",
        "client_secret_rotated",
        "client_removed",
    ] {
        assert!(kinds.contains(&kind), "{kind} missing from {kinds:?}");
    }
    assert!(events.iter().all(|e| e["actor"] == "operator"));
    // The signing key and the master key.
    assert_eq!(kinds.iter().filter(|k| **k == "key_rotated").count(), 2);
    let deleted = run(&["audit", "--kind", "user_deleted", "--user", "rose"]);
    assert_eq!(deleted.lines().count(), 1, "{deleted}");
}

/// kill -9 in the middle of concurrent registrations and deletions: after a restart the
/// database, the data folder and the engine agree. Every user left has its face and photo and
/// logs in; every deletion that was answered is complete; no file is left behind.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kill_during_registrations_and_deletions_leaves_everything_in_agreement() {
    let Some(root) = shared_faces() else { return };
    let Some(models) = models_dir() else { return };
    let photos: Vec<Vec<u8>> = facelock_engine::tools::bench::photos_under(&root.join("faces"))
        .iter()
        .map(|p| std::fs::read(p).unwrap())
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let env = [
        ("FACELOCK_MODELS_DIR", models.display().to_string()),
        ("FACELOCK_RATE_LIMIT_PER_MINUTE", "0".to_owned()),
    ];
    let (child, base) = spawn_server(dir.path(), &env);
    let api = std::sync::Arc::new(Api::new(base));

    // Four clients each register users and delete every other one, until the kill.
    let deleted = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let workers: Vec<_> = (0..4)
        .map(|w| {
            let (api, photos, deleted) = (api.clone(), photos.clone(), deleted.clone());
            tokio::spawn(async move {
                for i in 0.. {
                    let user = format!("w{w}u{i}");
                    let photo = photos[(w * 7 + i) % photos.len()].clone();
                    let Ok(res) = api
                        .http
                        .post(format!("{}/register/", api.base))
                        .multipart(
                            reqwest::multipart::Form::new()
                                .text("user_id", user.clone())
                                .part("face_image", reqwest::multipart::Part::bytes(photo)),
                        )
                        .send()
                        .await
                    else {
                        return;
                    };
                    if res.status() != 200 || i % 2 == 1 {
                        continue;
                    }
                    let Ok(login) = api
                        .http
                        .post(format!("{}/verify/", api.base))
                        .multipart(
                            reqwest::multipart::Form::new()
                                .text("user_id", user.clone())
                                .part(
                                    "face_image",
                                    reqwest::multipart::Part::bytes(
                                        photos[(w * 7 + i) % photos.len()].clone(),
                                    ),
                                ),
                        )
                        .send()
                        .await
                    else {
                        return;
                    };
                    let token = login.json::<serde_json::Value>().await.unwrap_or_default()
                        ["token"]
                        .as_str()
                        .unwrap_or_default()
                        .to_owned();
                    match api
                        .http
                        .delete(format!("{}/users/{user}/", api.base))
                        .bearer_auth(token)
                        .send()
                        .await
                    {
                        Ok(r) if r.status() == 200 => deleted.lock().unwrap().push(user),
                        Ok(_) => {}
                        Err(_) => return,
                    }
                }
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(2500)).await;
    drop(child); // SIGKILL, mid-request
    eprintln!(
        "killed after {} answered deletions",
        deleted.lock().unwrap().len()
    );
    for w in workers {
        let _ = w.await;
    }
    let deleted = deleted.lock().unwrap().clone();
    assert!(!deleted.is_empty(), "the workload ran before the kill");

    // The database: every face has its photo, every user a face.
    let db = rusqlite::Connection::open(dir.path().join("data/facelock.db")).unwrap();
    let count = |sql: &str| -> i64 { db.query_row(sql, [], |r| r.get(0)).unwrap() };
    assert_eq!(
        count("SELECT COUNT(*) FROM faces f LEFT JOIN reference_photos p USING (face_id) WHERE p.face_id IS NULL"),
        0
    );
    assert_eq!(
        count("SELECT COUNT(*) FROM users u WHERE NOT EXISTS (SELECT 1 FROM faces f WHERE f.user_rowid = u.id)"),
        0
    );
    let users: Vec<String> = {
        let mut stmt = db.prepare("SELECT user_id FROM users").unwrap();
        let rows = stmt.query_map([], |r| r.get(0)).unwrap();
        rows.map(Result::unwrap).collect()
    };
    assert!(!users.is_empty());
    drop(db);

    // The data folder holds the database and the key, nothing half-written.
    let mut files: Vec<String> = std::fs::read_dir(dir.path().join("data"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    files.sort();
    for f in &files {
        assert!(
            f.starts_with("facelock.db") || f == "master.key",
            "unexpected file {f} in {files:?}"
        );
    }

    // The engine, rebuilt at restart, agrees with the database.
    let (child, base) = spawn_server(dir.path(), &env);
    let api = Api::new(base);
    for user in &users {
        let (w, i) = user[1..].split_once('u').unwrap();
        let (w, i): (usize, usize) = (w.parse().unwrap(), i.parse().unwrap());
        let (status, body) = api
            .verify(
                &[("user_id", user.as_str())],
                photos[(w * 7 + i) % photos.len()].clone(),
            )
            .await;
        assert_eq!(
            status, 200,
            "{user} cannot log in after the restart: {body}"
        );
    }
    for user in &deleted {
        assert!(
            !users.contains(user),
            "{user} was deleted but is still stored"
        );
    }
    stop(child);
}

/// `serve --host --port` win over the environment, and FACELOCK_LOG_FORMAT=json writes one JSON
/// object per log line, request id included.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_flags_override_the_environment_and_logs_can_be_json() {
    let fake = FakeRekognition::start().await;
    let dir = tempfile::tempdir().unwrap();
    let mut command = Command::new(env!("CARGO_BIN_EXE_facelock"));
    command.args(["serve", "--host", "127.0.0.1", "--port", "0"]);
    let mut env = rekognition_env(&fake);
    env.push(("FACELOCK_HOST", "10.255.255.1".into()));
    env.push(("FACELOCK_LOG_FORMAT", "json".into()));
    let (child, base) = spawn_server_in(command, dir.path(), &env);
    let api = Api::new(base);
    let ready = api.get("/health/ready", None).await;
    assert_eq!(ready.status(), 200);
    // A failed login writes an audit event inside the request.
    let res = api
        .http
        .post(format!("{}/verify/", api.base))
        .header("x-request-id", "json-log-1")
        .multipart(
            reqwest::multipart::Form::new()
                .part("face_image", reqwest::multipart::Part::bytes(face_of(2))),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400);
    std::thread::sleep(Duration::from_millis(200));
    let lines = child.logs();
    assert!(!lines.is_empty());
    for line in &lines {
        let event: serde_json::Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("not a JSON log line ({e}): {line}"));
        assert!(
            event["level"].is_string() && event["fields"].is_object(),
            "{line}"
        );
    }
    assert!(lines.iter().any(|l| l.contains("json-log-1")), "{lines:#?}");
    stop(child);
}

/// `facelock import` reads the original's reference_faces folder in both layouts, enrols what
/// it can, says why it refused the rest, and adds nothing twice when run again.
#[test]
fn import_enrols_the_original_reference_folder() {
    let Some(root) = shared_faces() else { return };
    let Some(models) = models_dir() else { return };
    let dir = tempfile::tempdir().unwrap();
    let folder = dir.path().join("reference_faces");
    let copy = |from: &str, to: &str| {
        let to = folder.join(to);
        std::fs::create_dir_all(to.parent().unwrap()).unwrap();
        std::fs::copy(root.join(from), to).unwrap();
    };
    copy("faces/barack_obama/obama_01.jpg", "obama/1.jpg");
    copy("faces/barack_obama/obama_02.jpg", "obama/2.jpg");
    copy("faces/joe_biden/biden_01.jpg", "biden.jpg");
    copy("no_face/fruits.jpg", "fruit/fruits.jpg");
    copy("faces/rose_leslie/rose_leslie_01.jpg", "rose leslie/r.jpg");
    let run = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_facelock"))
            .args(args)
            .current_dir(dir.path())
            .env_clear()
            .env("FACELOCK_MODELS_DIR", &models)
            .env("RUST_LOG", "warn")
            // The original's .env: AWS keys and no FACELOCK_ENGINE.
            .env("AWS_ACCESS_KEY_ID", "AKIDFROMTHEORIGINAL")
            .output()
            .unwrap()
    };
    let out = run(&["import", folder.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "some photos are refused");
    let report = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<Vec<&str>> = report.lines().map(|l| l.split('\t').collect()).collect();
    let outcome = |user: &str| -> Vec<&str> {
        lines
            .iter()
            .filter(|l| l[1] == user)
            .map(|l| l[0])
            .collect()
    };
    assert_eq!(outcome("obama"), ["imported", "imported"], "{report}");
    assert_eq!(outcome("biden"), ["imported"], "{report}");
    assert_eq!(outcome("fruit"), ["refused"], "{report}");
    assert_eq!(outcome("rose leslie"), ["refused"], "{report}");
    let fruit = lines.iter().find(|l| l[1] == "fruit").unwrap();
    assert!(fruit[3].contains("face"), "the reason is given: {report}");
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(
        stderr.contains("3 photos imported, 2 refused, 0 skipped"),
        "{stderr}"
    );
    // Start-up said loudly that the embedded engine runs despite the AWS settings.
    assert!(
        stderr.contains("FACELOCK_ENGINE is not set, although AWS_ACCESS_KEY_ID is set")
            && stderr.contains("NO_MATCH"),
        "{stderr}"
    );

    let again = run(&["import", folder.to_str().unwrap()]);
    let report = String::from_utf8(again.stdout).unwrap();
    assert_eq!(
        report.lines().filter(|l| l.starts_with("skipped")).count(),
        3,
        "{report}"
    );
    let listed = String::from_utf8(run(&["users", "list"]).stdout).unwrap();
    let users: Vec<(&str, &str)> = listed
        .lines()
        .map(|l| {
            let f: Vec<&str> = l.split('\t').collect();
            (f[0], f[2])
        })
        .collect();
    assert_eq!(users, [("biden", "faces=1"), ("obama", "faces=2")]);
}

/// `facelock users add` beside a running server on the same SQLite folder: the server logs the
/// new user in within a couple of seconds, with no restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_running_server_sees_users_the_command_line_adds() {
    let Some(root) = shared_faces() else { return };
    let Some(models) = models_dir() else { return };
    let dir = tempfile::tempdir().unwrap();
    let env = [("FACELOCK_MODELS_DIR", models.display().to_string())];
    let (server, base) = spawn_server(dir.path(), &env);
    let api = Api::new(base);
    let image = root.join("faces/rose_leslie/rose_leslie_01.jpg");
    let added = facelock_command(
        dir.path(),
        &models,
        &[
            "users",
            "add",
            "rose",
            "--image",
            &image.display().to_string(),
        ],
    );
    assert!(added.status.success(), "{added:?}");
    let photo = std::fs::read(root.join("faces/rose_leslie/rose_leslie_02.jpg")).unwrap();
    let took = logs_in_within_five_seconds(&api, photo, "rose", "users add").await;
    eprintln!("seen after {took:?}");
    stop(server);
}

/// Tries `photo` at /verify/ every 200 ms until it logs `user` in, for at most five seconds
/// after `what` (else the test fails); how long it took.
async fn logs_in_within_five_seconds(
    api: &Api,
    photo: Vec<u8>,
    user: &str,
    what: &str,
) -> Duration {
    let started = std::time::Instant::now();
    loop {
        let (status, body) = api.verify(&[], photo.clone()).await;
        if status == 200 {
            assert_eq!(body["user_id"], user);
            return started.elapsed();
        }
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "still {status} {body} five seconds after {what}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Runs the binary with `args` in `dir` with the local engine's models; its output.
pub(crate) fn facelock_command(
    dir: &std::path::Path,
    models: &std::path::Path,
    args: &[&str],
) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_facelock"))
        .args(args)
        .current_dir(dir)
        .env_clear()
        .env("FACELOCK_MODELS_DIR", models)
        .env("RUST_LOG", "warn")
        .output()
        .unwrap()
}

/// After a model change, faces of the old model are left out of logins; `facelock reindex`
/// describes them again from their stored photos while a server runs, and the server logs
/// their users in again within seconds. A second run has nothing left to do.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reindex_describes_faces_of_another_model_again() {
    let Some(root) = shared_faces() else { return };
    let Some(models) = models_dir() else { return };
    let dir = tempfile::tempdir().unwrap();
    for (user, photo) in [
        ("rose", "faces/rose_leslie/rose_leslie_01.jpg"),
        ("kit", "faces/kit_harington/kit_harington_01.jpeg"),
    ] {
        let photo = root.join(photo).display().to_string();
        let added = facelock_command(
            dir.path(),
            &models,
            &["users", "add", user, "--image", &photo],
        );
        assert!(added.status.success(), "{added:?}");
    }
    // As if an older model had described them: the server may not compare these descriptors.
    let db = rusqlite::Connection::open(dir.path().join("data/facelock.db")).unwrap();
    let (old_rose,): (String,) = db
        .query_row(
            "SELECT f.face_id FROM faces f JOIN users u ON u.id = f.user_rowid WHERE u.user_id = 'rose'",
            [],
            |r| Ok((r.get(0)?,)),
        )
        .unwrap();
    assert_eq!(
        db.execute("UPDATE faces SET model = 'older-model@1'", [])
            .unwrap(),
        2
    );
    drop(db);

    let env = [("FACELOCK_MODELS_DIR", models.display().to_string())];
    let (server, base) = spawn_server(dir.path(), &env);
    let api = Api::new(base);
    let login = std::fs::read(root.join("faces/rose_leslie/rose_leslie_02.jpg")).unwrap();
    let (status, body) = api.verify(&[], login.clone()).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (400, Some("NO_MATCH")),
        "{body}"
    );

    let out = facelock_command(dir.path(), &models, &["reindex"]);
    assert!(out.status.success(), "{out:?}");
    let stdout = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<Vec<&str>> = stdout.lines().map(|l| l.split('\t').collect()).collect();
    assert_eq!(lines.len(), 2, "{stdout}");
    let rose = lines.iter().find(|l| l[1] == "rose").expect("rose's line");
    assert_eq!(
        &rose[..4],
        ["redescribed", "rose", old_rose.as_str(), "older-model@1"]
    );
    assert_ne!(rose[4], old_rose, "a new face id");
    assert!(lines.iter().all(|l| l[0] == "redescribed"), "{stdout}");

    let took = logs_in_within_five_seconds(&api, login, "rose", "reindex").await;
    eprintln!("reindexed face logged in after {took:?}");

    let again = facelock_command(dir.path(), &models, &["reindex"]);
    assert!(again.status.success(), "{again:?}");
    assert!(again.stdout.is_empty(), "nothing left to describe");
    let audit = facelock_command(
        dir.path(),
        &models,
        &["audit", "--kind", "face_redescribed"],
    );
    assert_eq!(
        String::from_utf8_lossy(&audit.stdout).lines().count(),
        2,
        "{audit:?}"
    );
    stop(server);
}
