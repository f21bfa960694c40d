//! The `/demo` page in a real browser: Debian's Chromium, headless, with a fake camera that
//! shows a shared photo, driven over the DevTools protocol. The server is the real one on the
//! embedded engine, on a real socket. Screenshots land in `target/tmp/demo-*.png`.

use std::{
    io::Write,
    net::TcpStream,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use base64::Engine as _;
use facelock::config::{EngineKind, Settings};
use facelock_engine::DEFAULT_MIN_SIMILARITY;
use serde_json::{json, Value};
use tungstenite::{stream::MaybeTlsStream, Message, WebSocket};

use crate::helpers::{models_dir, shared_faces, skip};

/// Debian's Chromium, or `None` after reporting the skip.
fn chromium() -> Option<PathBuf> {
    let found = ["chromium", "chromium-browser"].iter().find_map(|name| {
        std::env::var_os("PATH").and_then(|paths| {
            std::env::split_paths(&paths)
                .map(|dir| dir.join(name))
                .find(|p| p.is_file())
        })
    });
    if found.is_none() {
        skip("no chromium on PATH (apt-get install chromium)");
    }
    found
}

/// A one-frame YUV4MPEG2 video of `photo`, fitted into 640x480 on grey: what the fake camera
/// shows. 4:2:0 chroma, full-range BT.601 as JPEG uses.
fn camera_file(photo: &Path, out: &Path) {
    const W: u32 = 640;
    const H: u32 = 480;
    let image = image::open(photo).unwrap().to_rgb8();
    let scale = f64::min(
        W as f64 / image.width() as f64,
        H as f64 / image.height() as f64,
    );
    let (w, h) = (
        (image.width() as f64 * scale) as u32,
        (image.height() as f64 * scale) as u32,
    );
    let fitted = image::imageops::resize(&image, w, h, image::imageops::FilterType::Triangle);
    let mut frame = image::RgbImage::from_pixel(W, H, image::Rgb([128, 128, 128]));
    image::imageops::overlay(
        &mut frame,
        &fitted,
        ((W - w) / 2).into(),
        ((H - h) / 2).into(),
    );

    let px = |x: u32, y: u32| frame.get_pixel(x, y).0.map(f32::from);
    let mut y_plane = Vec::with_capacity((W * H) as usize);
    for y in 0..H {
        for x in 0..W {
            let [r, g, b] = px(x, y);
            y_plane.push((0.299 * r + 0.587 * g + 0.114 * b).round() as u8);
        }
    }
    let (mut u_plane, mut v_plane) = (Vec::new(), Vec::new());
    for y in (0..H).step_by(2) {
        for x in (0..W).step_by(2) {
            let quad = [px(x, y), px(x + 1, y), px(x, y + 1), px(x + 1, y + 1)];
            let [r, g, b] = [0, 1, 2].map(|c| quad.iter().map(|p| p[c]).sum::<f32>() / 4.0);
            u_plane.push((128.0 - 0.168_736 * r - 0.331_264 * g + 0.5 * b).round() as u8);
            v_plane.push((128.0 + 0.5 * r - 0.418_688 * g - 0.081_312 * b).round() as u8);
        }
    }
    let mut file = std::fs::File::create(out).unwrap();
    write!(file, "YUV4MPEG2 W{W} H{H} F30:1 Ip A1:1 C420jpeg\nFRAME\n").unwrap();
    file.write_all(&y_plane).unwrap();
    file.write_all(&u_plane).unwrap();
    file.write_all(&v_plane).unwrap();
}

/// A headless Chromium whose camera shows one photo, with one page open, driven over the
/// DevTools protocol. Killed on drop.
struct Browser {
    child: Child,
    socket: WebSocket<MaybeTlsStream<TcpStream>>,
    session: String,
    next_id: u64,
    /// Every URL the page asked for, when the browser records its network.
    requests: Vec<String>,
    _profile: tempfile::TempDir,
}

impl Browser {
    /// A browser whose fake camera shows `photo`, on `url`.
    fn launch(chromium: &Path, photo: &Path, url: &str) -> Self {
        let profile = tempfile::tempdir().unwrap();
        let camera = profile.path().join("camera.y4m");
        camera_file(photo, &camera);
        let camera = [
            "--use-fake-ui-for-media-stream".to_owned(),
            "--use-fake-device-for-media-stream".to_owned(),
            format!("--use-file-for-fake-video-capture={}", camera.display()),
        ];
        Self::start(chromium, profile, &camera, url, false)
    }

    /// A browser that can resolve no host name (only the server's 127.0.0.1 is reachable) and
    /// records every request the page makes, on `url`.
    fn offline(chromium: &Path, url: &str) -> Self {
        let profile = tempfile::tempdir().unwrap();
        let cut_off = [
            "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1".to_owned(),
            "--disable-background-networking".to_owned(),
            "--disable-component-update".to_owned(),
            "--disable-sync".to_owned(),
        ];
        Self::start(chromium, profile, &cut_off, url, true)
    }

    fn start(
        chromium: &Path,
        profile: tempfile::TempDir,
        extra: &[String],
        url: &str,
        record_network: bool,
    ) -> Self {
        let child = Command::new(chromium)
            .args([
                "--headless=new",
                // CI runs as root, where Chromium's sandbox cannot start.
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--no-first-run",
                "--no-default-browser-check",
                "--window-size=1000,1500",
                "--remote-debugging-port=0",
            ])
            .args(extra)
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg("about:blank")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        // Chromium writes the port it chose into the profile once DevTools listens.
        let active = profile.path().join("DevToolsActivePort");
        let deadline = Instant::now() + Duration::from_secs(30);
        let endpoint = loop {
            if let Ok(text) = std::fs::read_to_string(&active) {
                let mut lines = text.lines();
                if let (Some(port), Some(path)) = (lines.next(), lines.next()) {
                    break format!("ws://127.0.0.1:{port}{path}");
                }
            }
            assert!(Instant::now() < deadline, "Chromium did not start DevTools");
            std::thread::sleep(Duration::from_millis(50));
        };
        let (socket, _) = tungstenite::connect(endpoint).unwrap();
        let mut browser = Self {
            child,
            socket,
            session: String::new(),
            next_id: 0,
            requests: Vec::new(),
            _profile: profile,
        };
        let target = browser.send(None, "Target.createTarget", json!({ "url": "about:blank" }));
        let attached = browser.send(
            None,
            "Target.attachToTarget",
            json!({ "targetId": target["targetId"], "flatten": true }),
        );
        browser.session = attached["sessionId"].as_str().unwrap().to_owned();
        browser.command("Page.enable", json!({}));
        if record_network {
            browser.command("Network.enable", json!({}));
        }
        browser.command("Page.navigate", json!({ "url": url }));
        browser
    }

    /// Sends one DevTools command and waits for its answer, skipping events.
    fn send(&mut self, session: Option<&str>, method: &str, params: Value) -> Value {
        self.next_id += 1;
        let id = self.next_id;
        let mut message = json!({ "id": id, "method": method, "params": params });
        if let Some(session) = session {
            message["sessionId"] = json!(session);
        }
        self.socket
            .send(Message::text(message.to_string()))
            .unwrap();
        loop {
            let Message::Text(text) = self.socket.read().unwrap() else {
                continue;
            };
            let answer: Value = serde_json::from_str(&text).unwrap();
            if answer["method"] == "Network.requestWillBeSent" {
                let url = &answer["params"]["request"]["url"];
                self.requests
                    .push(url.as_str().unwrap_or_default().to_owned());
            }
            if answer["id"] == id {
                assert!(answer["error"].is_null(), "{method}: {}", answer["error"]);
                return answer["result"].clone();
            }
        }
    }

    fn command(&mut self, method: &str, params: Value) -> Value {
        let session = self.session.clone();
        self.send(Some(&session), method, params)
    }

    /// Runs `script` (an async function body) in the page and returns its value.
    fn run(&mut self, script: &str) -> Value {
        let expression = format!("(async () => {{ {HELPERS} {script} }})()");
        let result = self.command(
            "Runtime.evaluate",
            json!({ "expression": expression, "awaitPromise": true, "returnByValue": true }),
        );
        assert!(
            result["exceptionDetails"].is_null(),
            "in the page: {}",
            result["exceptionDetails"]
        );
        result["result"]["value"].clone()
    }

    fn screenshot(&mut self, name: &str) {
        let shot = self.command(
            "Page.captureScreenshot",
            json!({ "format": "png", "captureBeyondViewport": true }),
        );
        let png = base64::engine::general_purpose::STANDARD
            .decode(shot["data"].as_str().unwrap())
            .unwrap();
        let path = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("demo-{name}.png"));
        std::fs::write(&path, png).unwrap();
        eprintln!("screenshot: {}", path.display());
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Page helpers: wait for the camera, fill a field, press a button and wait for the answer.
const HELPERS: &str = r#"
const el = (id) => document.getElementById(id);
const until = async (what, test, ms = 60000) => {
  const end = Date.now() + ms;
  while (!test()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}: ${el("message").textContent} / ${el("camera-status").textContent}`);
    await new Promise((r) => setTimeout(r, 50));
  }
};
const ready = () => until("page and camera", () => el("camera-status")?.dataset.ready === "true");
const press = async (button, fields = {}) => {
  await ready();
  for (const [id, value] of Object.entries(fields)) el(id).value = value;
  el("result").dataset.state = "sent";
  el(button).click();
  await until("the answer", () => ["success", "error", "idle"].includes(el("result").dataset.state));
  return { state: el("result").dataset.state, code: el("result").dataset.code, message: el("message").textContent };
};
"#;

/// The real server on the embedded engine, on a free port of 127.0.0.1.
async fn serve_local(models: PathBuf, data: &Path) -> (String, tokio::sync::oneshot::Sender<()>) {
    let mut settings = Settings::with_data_dir(data);
    settings.engine.kind = EngineKind::Local;
    settings.engine.models_dir = models;
    settings.engine.min_similarity = DEFAULT_MIN_SIMILARITY;
    settings.server.rate_limit_per_minute = 0;
    serve(facelock::build_state(settings).await.unwrap()).await
}

/// The server of `state` on a free port of 127.0.0.1: its base URL, and the sender that stops
/// it.
async fn serve(state: facelock::AppState) -> (String, tokio::sync::oneshot::Sender<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let (stop, stopped) = tokio::sync::oneshot::channel();
    tokio::spawn(facelock::serve(listener, state, async move {
        let _ = stopped.await;
    }));
    (base, stop)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_page_enrols_and_logs_in_with_a_webcam() {
    let (Some(faces), Some(models)) = (shared_faces(), models_dir()) else {
        return;
    };
    let Some(chromium) = chromium() else {
        return;
    };
    let data = tempfile::tempdir().unwrap();
    let (base, _stop) = serve_local(models, data.path()).await;
    let photo = move |rel: &str| faces.join("faces").join(rel);
    let demo = format!("{base}/demo");

    tokio::task::spawn_blocking(move || {
        // Enrol Obama in front of the camera.
        let mut page = Browser::launch(&chromium, &photo("barack_obama/obama_01.jpg"), &demo);
        let enrolled = page.run(r#"return press("enrol", { "enrol-user": "obama", "enrol-name": "Barack Obama" });"#);
        assert_eq!(enrolled["state"], "success", "{enrolled}");
        drop(page);

        // Another photo of him logs in (1:N); the page shows the token's claims and his profile.
        let mut page = Browser::launch(&chromium, &photo("barack_obama/obama_04.jpg"), &demo);
        let login = page.run(r#"return press("login", { "login-user": "" });"#);
        assert_eq!(login["state"], "success", "{login}");
        let shown = page.run(
            r#"return { claims: JSON.parse(el("claims").textContent), me: JSON.parse(el("me").textContent), hidden: el("session").hidden };"#,
        );
        assert_eq!(shown["hidden"], false);
        assert_eq!(shown["claims"]["sub"], "obama", "{shown}");
        assert_eq!(shown["claims"]["amr"], json!(["face"]));
        assert_eq!(shown["me"]["user_id"], "obama");
        assert_eq!(shown["me"]["full_name"], "Barack Obama");
        page.screenshot("signed-in");
        // The same page on a portrait phone screen: one column, nothing wider than the screen.
        page.command(
            "Emulation.setDeviceMetricsOverride",
            json!({ "width": 390, "height": 844, "deviceScaleFactor": 2, "mobile": true }),
        );
        let layout = page.run(
            r#"return { scroll: document.documentElement.scrollWidth, forms: getComputedStyle(document.querySelector(".forms")).gridTemplateColumns.split(" ").length };"#,
        );
        assert_eq!(layout, json!({ "scroll": 390, "forms": 1 }), "{layout}");
        page.screenshot("phone");
        page.command("Emulation.clearDeviceMetricsOverride", json!({}));

        // The liveness button fetches a challenge, shows what to do, films and sends the
        // frames; a camera that shows one still photo is refused with a sentence. (A burst that
        // passes is tested over HTTP with real head-turn frames: the fake camera cannot follow
        // a challenge drawn at random.)
        let live = page.run(r#"return press("login-live", { "login-user": "" });"#);
        assert_eq!(live["code"], "LIVENESS_MOTION_MISSING", "{live}");
        assert_eq!(
            live["message"],
            "The camera did not see your head move as asked. Start again and follow the instructions."
        );
        let asked = page.run(r#"return el("result").dataset.challenge;"#);
        assert!(asked.as_str().unwrap().contains("turn_"), "{asked}");

        // Biden is refused, 1:N and as Obama, with a sentence rather than a code; his face
        // cannot take Obama's id either.
        let mut other = Browser::launch(&chromium, &photo("joe_biden/biden_01.jpg"), &demo);
        let refused = other.run(r#"return press("login", { "login-user": "" });"#);
        assert_eq!(refused["state"], "error");
        assert_eq!(refused["code"], "NO_MATCH");
        assert_eq!(
            refused["message"],
            "This face does not match an enrolled user."
        );
        let as_obama = other.run(r#"return press("login", { "login-user": "obama" });"#);
        assert_eq!(as_obama["code"], "NO_MATCH", "{as_obama}");
        let taken = other.run(r#"return press("enrol", { "enrol-user": "obama" });"#);
        assert_eq!(taken["code"], "USER_EXISTS", "{taken}");
        other.screenshot("refused");
        drop(other);

        // Obama deletes his account from the page: two clicks, then the server forgets him.
        let first = page.run(r#"el("delete").click(); return el("delete").textContent;"#);
        assert!(first.as_str().unwrap().contains("Click again"), "{first}");
        let deleted = page.run(r#"return press("delete");"#);
        assert_eq!(deleted["state"], "idle", "{deleted}");
        assert!(deleted["message"].as_str().unwrap().starts_with("Deleted obama"));
        let again = page.run(r#"return press("login", { "login-user": "" });"#);
        assert_eq!(again["code"], "NO_MATCH", "{again}");
        drop(page);
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn the_demo_page_is_self_contained_and_can_be_turned_off() {
    let data = tempfile::tempdir().unwrap();
    let fake = crate::fake_rekognition::FakeRekognition::start().await;
    let on = crate::helpers::test_settings(data.path(), &fake);
    let mut off = on.clone();
    off.server.demo_page = false;
    let app = |s: Settings| async move {
        let state = facelock::build_state(s).await.unwrap();
        facelock::app(state)
    };
    let get = |router: axum::Router, path: &'static str| async move {
        use tower::ServiceExt;
        let request = axum::http::Request::get(path)
            .body(axum::body::Body::empty())
            .unwrap();
        router.oneshot(request).await.unwrap()
    };
    let router = app(on).await;
    let page = get(router.clone(), "/demo").await;
    assert_eq!(page.status(), 200);
    let policy = page.headers()["content-security-policy"].to_str().unwrap();
    assert!(policy.contains("default-src 'none'") && policy.contains("frame-ancestors 'none'"));
    use http_body_util::BodyExt;
    let html = page.into_body().collect().await.unwrap().to_bytes();
    let html = String::from_utf8_lossy(&html);
    // Nothing is loaded from elsewhere.
    for attr in ["src=\"http", "href=\"http", "src=\"//", "href=\"//"] {
        assert!(!html.contains(attr), "the page loads {attr}");
    }
    for asset in [
        "/demo/demo.js",
        "/demo/demo.css",
        "/assets/camera.js",
        "/login/login.js",
        "/login/login.css",
    ] {
        assert_eq!(get(router.clone(), asset).await.status(), 200, "{asset}");
    }
    // The sign-in page is the same kind of page, and stays when the demo is off.
    let login = get(router.clone(), "/login").await;
    let policy = login.headers()["content-security-policy"].to_str().unwrap();
    assert!(policy.contains("default-src 'none'") && policy.contains("frame-ancestors 'none'"));
    let off = app(off).await;
    assert_eq!(get(off.clone(), "/demo").await.status(), 404);
    assert_eq!(get(off, "/login").await.status(), 200);
}

/// `/redoc` in a browser that can reach nothing but the server: ReDoc renders Face Lock's
/// operations from its own bundle, and the page asks nothing of any other host.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redoc_renders_the_api_offline() {
    let Some(chromium) = chromium() else { return };
    let data = tempfile::tempdir().unwrap();
    let fake = crate::fake_rekognition::FakeRekognition::start().await;
    let settings = crate::helpers::test_settings(data.path(), &fake);
    let state = facelock::build_state(settings).await.unwrap();
    let (base, stop) = serve(state).await;
    let url = format!("{base}/redoc");
    let document = serde_json::to_value(facelock::openapi()).unwrap();
    let operations: usize = document["paths"]
        .as_object()
        .unwrap()
        .values()
        .map(|item| item.as_object().unwrap().len())
        .sum();
    tokio::task::spawn_blocking(move || {
        let mut page = Browser::offline(&chromium, &url);
        let rendered = page.run(
            r#"
            const end = Date.now() + 60000;
            const found = () => document.querySelector('[data-section-id="operation/verify_face"]');
            while (!found()) {
              if (Date.now() > end) return { found: false, body: document.body.innerText.slice(0, 500) };
              await new Promise((r) => setTimeout(r, 100));
            }
            return { found: true, title: found().querySelector("h2")?.textContent.trim(),
                     operations: document.querySelectorAll('[data-section-id^="operation/"]').length };
            "#,
        );
        assert_eq!(rendered["found"], true, "{rendered}");
        assert_eq!(rendered["title"], "Verify a face and get a token.", "{rendered}");
        assert_eq!(rendered["operations"], operations, "every operation: {rendered}");
        page.screenshot("redoc");
        // Drain the events of what was rendered, then look at every request made.
        page.run("return true;");
        assert!(page.requests.len() >= 3, "{:?}", page.requests);
        for request in &page.requests {
            let own = request.starts_with(&format!("{base}/"))
                || request.starts_with("blob:")
                || request.starts_with("data:");
            assert!(own, "the page asked {request}: {:?}", page.requests);
        }
    })
    .await
    .unwrap();
    let _ = stop.send(());
}

/// "Sign in with Face Lock" in a real browser: an application (the `openidconnect` crate) sends
/// Chromium, whose camera shows Obama, to `/authorize` on the `facelock` binary; the hosted page
/// names the application, fits a phone's screen, films him and sends the browser back with a
/// code, which the application exchanges for an ID token about him.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_hosted_sign_in_page_signs_a_user_in_to_an_application() {
    use openidconnect::{
        core::{CoreAuthenticationFlow, CoreClient, CoreJwsSigningAlgorithm},
        AuthorizationCode, ClientId, CsrfToken, Nonce, PkceCodeChallenge, RedirectUrl,
    };
    let Some(idp) = crate::oidc::Provider::start().await else {
        return;
    };
    let Some(chromium) = chromium() else { return };
    // The application's callback: a socket that takes the one request the browser makes.
    let callback = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let redirect = format!(
        "http://127.0.0.1:{}/cb",
        callback.local_addr().unwrap().port()
    );
    idp.facelock(&[
        "clients",
        "add",
        "browser-app",
        "--name",
        "Browser App",
        "--public",
        "--redirect-uri",
        &redirect,
    ]);
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let client = CoreClient::from_provider_metadata(
        idp.metadata(&http).await,
        ClientId::new("browser-app".into()),
        None,
    )
    .set_redirect_uri(RedirectUrl::new(redirect.clone()).unwrap());
    let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
    let (url, csrf, nonce) = client
        .authorize_url(
            CoreAuthenticationFlow::AuthorizationCode,
            CsrfToken::new_random,
            Nonce::new_random,
        )
        .set_pkce_challenge(challenge)
        .url();
    let photo = idp.faces.join("faces/barack_obama/obama_04.jpg");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let (mut socket, _) = callback.accept().unwrap();
        let mut line = String::new();
        std::io::BufRead::read_line(&mut std::io::BufReader::new(&socket), &mut line).unwrap();
        let _ = socket.write_all(
            b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\nconnection: close\r\n\r\nsigned in",
        );
        let _ = tx.send(line);
    });
    let line = tokio::task::spawn_blocking(move || {
        let mut page = Browser::launch(&chromium, &photo, url.as_str());
        let asking = page.run(r#"await ready(); return el("asking").textContent;"#);
        assert_eq!(asking, "Browser App asks you to sign in.");
        page.command(
            "Emulation.setDeviceMetricsOverride",
            json!({ "width": 390, "height": 844, "deviceScaleFactor": 2, "mobile": true }),
        );
        let scroll = page.run("return document.documentElement.scrollWidth;");
        assert_eq!(scroll, 390, "the page fits a phone's screen");
        page.screenshot("sign-in-phone");
        page.run(r#"el("sign-in").click(); return true;"#);
        rx.recv_timeout(Duration::from_secs(60))
            .expect("the browser came back to the application")
    })
    .await
    .unwrap();
    // GET /cb?code=...&state=...&iss=... HTTP/1.1
    let target = line.split_whitespace().nth(1).unwrap();
    let back = url::Url::parse(&format!("{redirect}{}", &target[3..])).unwrap();
    assert_eq!(
        crate::oidc::query(&back, "state").as_deref(),
        Some(csrf.secret().as_str())
    );
    let code = crate::oidc::query(&back, "code").expect("a code");
    let tokens = client
        .exchange_code(AuthorizationCode::new(code))
        .unwrap()
        .set_pkce_verifier(verifier)
        .request_async(&http)
        .await
        .unwrap();
    let verifier = client
        .id_token_verifier()
        .set_allowed_algs(vec![CoreJwsSigningAlgorithm::EcdsaP256Sha256]);
    let claims = openidconnect::TokenResponse::id_token(&tokens)
        .unwrap()
        .claims(&verifier, &nonce)
        .unwrap();
    assert_eq!(claims.subject().as_str(), "obama");
}

/// The hosted sign-in page in a browser that can reach nothing but the server: it loads,
/// names the application that asks, and asks nothing of any other host.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sign_in_page_loads_nothing_from_elsewhere() {
    let Some(chromium) = chromium() else { return };
    let data = tempfile::tempdir().unwrap();
    let fake = crate::fake_rekognition::FakeRekognition::start().await;
    let settings = crate::helpers::test_settings(data.path(), &fake);
    let state = facelock::build_state(settings).await.unwrap();
    crate::helpers::add_client(
        &state,
        "wiki",
        "The Wiki",
        "https://wiki.example.com/cb",
        false,
    )
    .await;
    let (base, stop) = serve(state).await;
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let sent = http
        .get(format!(
            "{base}/authorize?response_type=code&client_id=wiki&scope=openid\
             &redirect_uri=https%3A%2F%2Fwiki.example.com%2Fcb"
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(sent.status(), 303);
    let page = format!("{base}{}", sent.headers()["location"].to_str().unwrap());
    let own = base.clone();
    tokio::task::spawn_blocking(move || {
        let mut browser = Browser::offline(&chromium, &page);
        let asking = browser.run(
            r#"await until("the request", () => el("asking")?.textContent.includes("asks"));
               return el("asking").textContent;"#,
        );
        assert_eq!(asking, "The Wiki asks you to sign in.");
        browser.run("return true;");
        assert!(browser.requests.len() >= 4, "{:?}", browser.requests);
        for request in &browser.requests {
            assert!(
                request.starts_with(&format!("{own}/")),
                "the page asked {request}: {:?}",
                browser.requests
            );
        }
    })
    .await
    .unwrap();
    let _ = stop.send(());
}
