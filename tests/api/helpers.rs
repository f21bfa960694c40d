//! `TestApp`: the real application (router, SQLite store, Rekognition engine through the AWS
//! SDK) on a temporary data folder, talking to a [`FakeRekognition`] on 127.0.0.1.

use std::time::Duration;

use axum::{
    body::Body,
    http::{header, Request, StatusCode},
    Router,
};
use facelock::{
    config::{EngineKind, Secret, Settings},
    domain::UserId,
    service::{Actor, Evidence, Origin, Registration},
    AppState,
};
use http_body_util::BodyExt;
use serde_json::Value;
use tower::ServiceExt;

use crate::fake_rekognition::{face_of, FakeRekognition};

pub const COLLECTION: &str = "FaceLockTests";
pub const ADMIN: &str = "admin";
/// The admin's face in every test app.
pub const ADMIN_PERSON: u8 = 9;

pub struct TestApp {
    pub router: Router,
    pub state: AppState,
    pub fake: FakeRekognition,
    pub settings: Settings,
    pub dir: tempfile::TempDir,
}

/// Settings for a test server in `dir` using the fake Rekognition at `fake`.
pub fn test_settings(dir: &std::path::Path, fake: &FakeRekognition) -> Settings {
    let mut s = Settings::with_data_dir(dir.join("data"));
    s.storage.reference_dir = dir.join("reference_faces");
    s.engine.kind = EngineKind::Rekognition;
    let aws = &mut s.engine.rekognition;
    aws.collection_id = COLLECTION.into();
    aws.region = Some("us-east-1".into());
    aws.endpoint_url = Some(fake.endpoint());
    aws.access_key_id = Some("AKIDTESTTESTTEST".into());
    aws.secret_access_key = Some(Secret::new("test-secret-access-key"));
    aws.max_attempts = 3;
    aws.initial_backoff = Duration::from_millis(10);
    s.admin_users = [UserId::parse(ADMIN).unwrap()].into();
    s.server.max_body_bytes = 2 * 1024 * 1024;
    // Tests hammer the engine on purpose; the limiter has its own test.
    s.server.rate_limit_per_minute = 0;
    s
}

impl TestApp {
    pub async fn spawn() -> Self {
        Self::spawn_with(|_| {}).await
    }

    pub async fn spawn_with(configure: impl FnOnce(&mut Settings)) -> Self {
        let fake = FakeRekognition::start().await;
        let dir = tempfile::tempdir().unwrap();
        let mut settings = test_settings(dir.path(), &fake);
        configure(&mut settings);
        let state = facelock::build_state(settings.clone()).await.unwrap();
        let router = facelock::app(state.clone());
        Self {
            router,
            state,
            fake,
            settings,
            dir,
        }
    }

    /// A test server on the local engine, or `None` after reporting the skip.
    pub async fn local() -> Option<Self> {
        Self::local_with(|_| {}).await
    }

    /// [`TestApp::local`] with more settings changed.
    pub async fn local_with(configure: impl FnOnce(&mut Settings)) -> Option<Self> {
        let dir = models_dir()?;
        Some(
            Self::spawn_with(move |s| {
                s.engine.kind = EngineKind::Local;
                s.engine.models_dir = dir;
                s.engine.min_similarity = facelock_engine::DEFAULT_MIN_SIMILARITY;
                configure(s);
            })
            .await,
        )
    }

    /// Enrols the admin as the operator would, then logs in with the admin's face.
    pub async fn admin_token(&self) -> String {
        if self
            .state
            .facelock
            .store()
            .user(&UserId::parse(ADMIN).unwrap())
            .await
            .unwrap()
            .is_none()
        {
            self.state
                .facelock
                .register(
                    Registration {
                        user_id: UserId::parse(ADMIN).unwrap(),
                        full_name: None,
                        email: None,
                        evidence: Evidence::Photo(face_of(ADMIN_PERSON)),
                        origin: Origin::operator(),
                    },
                    Actor::Operator,
                )
                .await
                .unwrap();
        }
        self.login(face_of(ADMIN_PERSON)).await
    }

    /// Logs in with `image` (1:N), asserting success; returns the access token.
    pub async fn login(&self, image: Vec<u8>) -> String {
        let res = self.verify(image, None, None).await;
        assert_eq!(res.status, StatusCode::OK, "{}", res.body);
        res.body["token"].as_str().unwrap().to_owned()
    }

    pub async fn send(&self, request: Request<Body>) -> TestResponse {
        let response = self.router.clone().oneshot(request).await.unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        let body = serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
        TestResponse {
            status,
            headers,
            body,
        }
    }

    pub async fn get(&self, path: &str, token: Option<&str>) -> TestResponse {
        self.send(
            with_token(Request::get(path), token)
                .body(Body::empty())
                .unwrap(),
        )
        .await
    }

    pub async fn delete(&self, path: &str, token: Option<&str>) -> TestResponse {
        self.send(
            with_token(Request::delete(path), token)
                .body(Body::empty())
                .unwrap(),
        )
        .await
    }

    pub async fn put_json(&self, path: &str, body: Value, token: Option<&str>) -> TestResponse {
        self.send(
            with_token(Request::put(path), token)
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from(body.to_string()))
                .unwrap(),
        )
        .await
    }

    pub async fn post_form(
        &self,
        path: &str,
        form: Multipart,
        token: Option<&str>,
    ) -> TestResponse {
        let (content_type, body) = form.finish();
        self.send(
            with_token(Request::post(path), token)
                .header(header::CONTENT_TYPE, content_type)
                .body(Body::from(body))
                .unwrap(),
        )
        .await
    }

    pub async fn register(
        &self,
        user_id: &str,
        image: Vec<u8>,
        token: Option<&str>,
    ) -> TestResponse {
        let form = Multipart::new()
            .text("user_id", user_id)
            .text("full_name", "Test User")
            .text("email", "test@example.com")
            .file("face_image", "face.png", image);
        self.post_form("/register/", form, token).await
    }

    pub async fn verify(
        &self,
        image: Vec<u8>,
        threshold: Option<&str>,
        user_id: Option<&str>,
    ) -> TestResponse {
        let mut form = Multipart::new().file("face_image", "face.png", image);
        if let Some(t) = threshold {
            form = form.text("similarity_threshold", t);
        }
        if let Some(u) = user_id {
            form = form.text("user_id", u);
        }
        self.post_form("/verify/", form, None).await
    }

    /// A login (1:1 when `user_id` is given) as if sent from `address`, as a real socket would
    /// tell the server.
    pub async fn verify_from(
        &self,
        address: &str,
        image: Vec<u8>,
        user_id: Option<&str>,
    ) -> TestResponse {
        let mut form = Multipart::new().file("face_image", "face.png", image);
        if let Some(u) = user_id {
            form = form.text("user_id", u);
        }
        self.post_form_from(address, "/verify/", form).await
    }

    /// A form posted as if sent from `address`, as a real socket would tell the server.
    pub async fn post_form_from(&self, address: &str, path: &str, form: Multipart) -> TestResponse {
        let (content_type, body) = form.finish();
        let peer: std::net::SocketAddr = format!("{address}:40000").parse().unwrap();
        let mut request = Request::post(path)
            .header(header::CONTENT_TYPE, content_type)
            .body(Body::from(body))
            .unwrap();
        request
            .extensions_mut()
            .insert(axum::extract::ConnectInfo(peer));
        self.send(request).await
    }

    /// The reference photos in the store, as `<user_id>/<face_id>.<ext>`.
    pub fn reference_photos(&self) -> Vec<String> {
        let db = self.db();
        let mut stmt = db
            .prepare(
                "SELECT u.user_id || '/' || p.face_id || '.' || p.format
                 FROM reference_photos p JOIN faces f ON f.face_id = p.face_id
                 JOIN users u ON u.id = f.user_rowid ORDER BY 1",
            )
            .unwrap();
        let rows = stmt.query_map([], |r| r.get(0)).unwrap();
        rows.map(Result::unwrap).collect()
    }

    /// A direct connection to the server's SQLite database.
    pub fn db(&self) -> rusqlite::Connection {
        rusqlite::Connection::open(&self.settings.storage.database_path).unwrap()
    }

    pub fn db_count(&self, table: &str) -> i64 {
        self.db()
            .query_row(&format!("SELECT COUNT(*) FROM {table}"), [], |r| r.get(0))
            .unwrap()
    }
}

fn with_token(
    builder: axum::http::request::Builder,
    token: Option<&str>,
) -> axum::http::request::Builder {
    match token {
        Some(t) => builder.header(header::AUTHORIZATION, format!("Bearer {t}")),
        None => builder,
    }
}

pub struct TestResponse {
    pub status: StatusCode,
    pub headers: axum::http::HeaderMap,
    pub body: Value,
}

impl TestResponse {
    pub fn code(&self) -> &str {
        self.body["code"].as_str().unwrap_or_default()
    }

    /// Asserts the shared error shape and returns the code.
    pub fn assert_error(&self, status: StatusCode, code: &str) {
        assert_eq!(self.status, status, "body: {}", self.body);
        assert_eq!(self.code(), code, "body: {}", self.body);
        assert!(self.body["detail"].as_str().is_some_and(|d| !d.is_empty()));
        assert!(self.body["request_id"]
            .as_str()
            .is_some_and(|r| !r.is_empty()));
    }
}

/// A `multipart/form-data` body built by hand, as a browser or `curl -F` sends it.
pub struct Multipart {
    boundary: String,
    body: Vec<u8>,
}

impl Multipart {
    pub fn new() -> Self {
        Self {
            boundary: format!("----facelock{}", uuid::Uuid::new_v4().simple()),
            body: Vec::new(),
        }
    }

    pub fn text(mut self, name: &str, value: &str) -> Self {
        self.body.extend_from_slice(
            format!(
                "--{}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n",
                self.boundary
            )
            .as_bytes(),
        );
        self
    }

    pub fn file(mut self, name: &str, filename: &str, bytes: Vec<u8>) -> Self {
        self.body.extend_from_slice(
            format!(
                "--{}\r\nContent-Disposition: form-data; name=\"{name}\"; filename=\"{filename}\"\r\nContent-Type: application/octet-stream\r\n\r\n",
                self.boundary
            )
            .as_bytes(),
        );
        self.body.extend_from_slice(&bytes);
        self.body.extend_from_slice(b"\r\n");
        self
    }

    pub fn finish(mut self) -> (String, Vec<u8>) {
        self.body
            .extend_from_slice(format!("--{}--\r\n", self.boundary).as_bytes());
        (
            format!("multipart/form-data; boundary={}", self.boundary),
            self.body,
        )
    }
}

/// Registers an application with Face Lock's OIDC provider: one redirect URI, no logout URI.
pub async fn add_client(state: &AppState, id: &str, name: &str, redirect_uri: &str, public: bool) {
    facelock::oidc::Clients::new(state.facelock.store().clone())
        .add(facelock::oidc::NewClient {
            client_id: facelock::oidc::ClientId::parse(id).unwrap(),
            name: name.into(),
            redirect_uris: vec![facelock::oidc::RedirectUri::parse(redirect_uri).unwrap()],
            post_logout_redirect_uris: vec![],
            public,
        })
        .await
        .unwrap();
}

/// Says that the running test skipped and why, where `cargo test` shows it (straight to the
/// terminal, past the harness's output capture). Under CI (`CI=true`) a skip is a failure: a
/// missing install step must not pass as a green run.
pub fn skip(reason: &str) {
    let test = std::thread::current().name().unwrap_or("a test").to_owned();
    if std::env::var("CI").is_ok_and(|v| v.eq_ignore_ascii_case("true") || v == "1") {
        panic!("{test} cannot run: {reason}; under CI=true a skipped test is a failure");
    }
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "SKIPPED {test}: {reason}");
}

/// `../shared/<name>` beside the checkout, or `None` after reporting the skip when absent.
fn shared(name: &str) -> Option<std::path::PathBuf> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../shared")
        .join(name);
    if dir.is_dir() {
        Some(dir)
    } else {
        skip(&format!("../shared/{name} is not present"));
        None
    }
}

/// The shared face fixtures, or `None` after reporting the skip when they are absent.
pub fn shared_faces() -> Option<std::path::PathBuf> {
    shared("faces")
}

/// The larger labelled set (`../shared/faces-dev`), or `None` after reporting the skip.
pub fn shared_faces_dev() -> Option<std::path::PathBuf> {
    shared("faces-dev")
}

/// The local engine's models, those of every descriptor, in one cache folder outside the
/// checkout, shared by every test; fetched (with npm, as at a first start) on first use.
/// `None` after reporting the skip when they cannot be had.
pub fn models_dir() -> Option<std::path::PathBuf> {
    static DIR: std::sync::OnceLock<Result<std::path::PathBuf, String>> =
        std::sync::OnceLock::new();
    let ready = DIR.get_or_init(|| {
        let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("facelock-models");
        facelock_engine::FaceModel::ALL
            .into_iter()
            .try_for_each(|model| facelock_engine::models::ensure(&dir, model))
            .map(|()| dir)
            .map_err(|e| facelock::error_chain(&e))
    });
    match ready {
        Ok(dir) => Some(dir.clone()),
        Err(why) => {
            skip(&format!("the face models cannot be fetched: {why}"));
            None
        }
    }
}

/// A PNG of `side` x `side` 16-bit RGBA pixels, all zero: a few hundred kilobytes that
/// would decode to `side * side * 8` bytes.
pub fn png_bomb(side: u32) -> Vec<u8> {
    use std::io::Write;
    let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
    let chunk = |out: &mut Vec<u8>, kind: &[u8], data: &[u8]| {
        out.extend_from_slice(&(data.len() as u32).to_be_bytes());
        let start = out.len();
        out.extend_from_slice(kind);
        out.extend_from_slice(data);
        let crc = crc32(&out[start..]);
        out.extend_from_slice(&crc.to_be_bytes());
    };
    let mut header = side.to_be_bytes().to_vec();
    header.extend_from_slice(&side.to_be_bytes());
    header.extend_from_slice(&[16, 6, 0, 0, 0]);
    chunk(&mut out, b"IHDR", &header);
    let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::best());
    let row = vec![0u8; 1 + side as usize * 8];
    for _ in 0..side {
        z.write_all(&row).unwrap();
    }
    chunk(&mut out, b"IDAT", &z.finish().unwrap());
    chunk(&mut out, b"IEND", &[]);
    out
}

fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in bytes {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}
