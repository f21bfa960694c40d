//! Settings: every environment variable the server reads, typed and checked once at start-up.
//!
//! `main` loads `.env` (dotenvy) and calls [`Settings::from_env`]; tests build a [`Settings`]
//! directly instead of touching process-wide variables. Secrets are never printed: `Debug` on
//! [`Secret`] shows a placeholder.

use std::{collections::BTreeSet, fmt, net::SocketAddr, path::PathBuf, time::Duration};

use facelock_engine::cpu::Isa;

use crate::{
    domain::UserId,
    store::vault::{default_key_file, MasterKey, MasterKeySource},
};

/// Which face engine answers register, verify and delete.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EngineKind {
    /// The embedded engine (the default): everything runs on this machine.
    Local,
    /// AWS Rekognition.
    Rekognition,
}

impl EngineKind {
    pub fn as_str(self) -> &'static str {
        match self {
            EngineKind::Local => "local",
            EngineKind::Rekognition => "rekognition",
        }
    }

    /// The server's similarity floor for this engine when `FACELOCK_MIN_SIMILARITY` is unset;
    /// clients may ask for more, never less. For Rekognition it is the original default request
    /// threshold; for the local engine it is descriptor distance 0.6 (dlib's threshold), which
    /// the local similarity scale puts at 90 too.
    pub fn default_min_similarity(self) -> f32 {
        match self {
            EngineKind::Local => facelock_engine::DEFAULT_MIN_SIMILARITY,
            EngineKind::Rekognition => 90.0,
        }
    }
}

/// A string that must never reach a log.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(**redacted**)")
    }
}

/// How access tokens are signed (`ALGORITHM`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TokenAlgorithm {
    /// ECDSA P-256 with keys kept in the store and published as a JWKS: backends verify
    /// tokens without being able to mint them. The default when `SECRET_KEY` is unset.
    Es256,
    /// A shared secret, as the original server: every verifier can also forge.
    Hs256,
    Hs384,
    Hs512,
}

impl TokenAlgorithm {
    fn parse(raw: &str) -> Result<Self, ConfigError> {
        match raw.trim().to_ascii_uppercase().as_str() {
            "ES256" => Ok(Self::Es256),
            "HS256" => Ok(Self::Hs256),
            "HS384" => Ok(Self::Hs384),
            "HS512" => Ok(Self::Hs512),
            other => Err(ConfigError::new(
                "ALGORITHM",
                format!("{other:?} is not supported; use ES256, HS256, HS384 or HS512"),
            )),
        }
    }

    pub fn jwt(self) -> jsonwebtoken::Algorithm {
        match self {
            Self::Es256 => jsonwebtoken::Algorithm::ES256,
            Self::Hs256 => jsonwebtoken::Algorithm::HS256,
            Self::Hs384 => jsonwebtoken::Algorithm::HS384,
            Self::Hs512 => jsonwebtoken::Algorithm::HS512,
        }
    }

    pub fn is_hmac(self) -> bool {
        self != Self::Es256
    }
}

/// Settings of the AWS Rekognition engine. Credentials and region that are `None` fall back to the
/// AWS SDK's default chain (profile files, web identity, container and instance roles).
#[derive(Clone, Debug, Default)]
pub struct RekognitionSettings {
    pub collection_id: String,
    pub region: Option<String>,
    pub endpoint_url: Option<String>,
    pub access_key_id: Option<String>,
    pub secret_access_key: Option<Secret>,
    pub session_token: Option<Secret>,
    /// Attempts for a throttled call before it becomes a 503.
    pub max_attempts: u32,
    /// First retry delay; later ones grow exponentially.
    pub initial_backoff: Duration,
}

/// Where the server listens and how it treats requests.
#[derive(Clone, Debug)]
pub struct ServerSettings {
    pub listen: SocketAddr,
    pub cors: CorsOrigins,
    /// Whether browsers may send cookies and credentials cross-origin
    /// (`Access-Control-Allow-Credentials`); only with a list of origins, never with `*`.
    pub cors_allow_credentials: bool,
    pub max_body_bytes: usize,
    pub request_timeout: Duration,
    /// Register/verify/compare requests per minute per client IP (also the burst); 0 is off.
    pub rate_limit_per_minute: u32,
    /// A connection must send a request's headers within this time, also when it sits idle
    /// between requests; otherwise it is closed.
    pub header_timeout: Duration,
    /// Open connections at most; beyond it the oldest idle one is closed. `None`: derived from
    /// the process's open-file limit.
    pub max_connections: Option<usize>,
    /// Whether `/demo`, the webcam page, is served (`FACELOCK_DEMO`, on unless set to false).
    pub demo_page: bool,
    pub metrics: MetricsSettings,
    /// `FACELOCK_TRUSTED_PROXIES`: peers whose `X-Forwarded-For` names the client.
    pub trusted_proxies: Vec<IpNet>,
}

/// An address or a network (`10.0.0.0/8`, `fd00::/8`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IpNet {
    pub address: std::net::IpAddr,
    pub prefix: u8,
}

impl IpNet {
    pub fn parse(raw: &str) -> Option<Self> {
        let (address, prefix) = match raw.split_once('/') {
            Some((a, p)) => (a.parse().ok()?, Some(p.parse::<u8>().ok()?)),
            None => (raw.parse().ok()?, None),
        };
        let max = match address {
            std::net::IpAddr::V4(_) => 32,
            std::net::IpAddr::V6(_) => 128,
        };
        let prefix = prefix.unwrap_or(max);
        (prefix <= max).then_some(Self { address, prefix })
    }

    pub fn contains(&self, ip: std::net::IpAddr) -> bool {
        let bits = |ip: std::net::IpAddr| match ip {
            std::net::IpAddr::V4(a) => (u128::from(u32::from(a)) << 96, 32),
            std::net::IpAddr::V6(a) => (u128::from(a), 128),
        };
        let ((net, len), (candidate, other)) = (bits(self.address), bits(ip));
        if len != other {
            return false;
        }
        let mask = if self.prefix == 0 {
            0
        } else {
            u128::MAX << (128 - u32::from(self.prefix))
        };
        net & mask == candidate & mask
    }
}

/// Prometheus's `/metrics`.
#[derive(Clone, Debug)]
pub struct MetricsSettings {
    /// `FACELOCK_METRICS`: on unless set to false.
    pub enabled: bool,
    /// `FACELOCK_METRICS_TOKEN`: when set, scrapers must send it as a bearer token.
    pub token: Option<Secret>,
}

/// Browser origins allowed to call the API (`FACELOCK_CORS_ORIGINS`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CorsOrigins {
    /// `*`: any origin (development only).
    Any,
    /// These origins, each `scheme://host[:port]`; empty allows none.
    List(Vec<String>),
}

/// Where the data lives, and the key it is sealed with.
#[derive(Clone, Debug)]
pub struct StorageSettings {
    pub data_dir: PathBuf,
    /// SQLite database file.
    pub database_path: PathBuf,
    /// `FACELOCK_DATABASE_URL`: a PostgreSQL database (`postgres://…`) instead of the SQLite
    /// file, shared by several servers.
    pub database_url: Option<Secret>,
    /// Where servers before 0.2 kept reference photos; their photos move into the store.
    pub reference_dir: PathBuf,
    /// `FACELOCK_MASTER_KEY`; `None`: a key file in the data folder.
    pub master_key: Option<MasterKey>,
}

impl StorageSettings {
    /// Every file under `data_dir`.
    pub fn under(data_dir: impl Into<PathBuf>) -> Self {
        let data_dir = data_dir.into();
        Self {
            database_path: data_dir.join("facelock.db"),
            database_url: None,
            reference_dir: data_dir.join("reference_faces"),
            data_dir,
            master_key: None,
        }
    }

    /// Where the master key comes from.
    pub fn master_key_source(&self) -> MasterKeySource {
        match &self.master_key {
            Some(key) => MasterKeySource::Given(key.clone()),
            None => MasterKeySource::File(default_key_file(&self.data_dir)),
        }
    }
}

/// The face engine and what it accepts.
#[derive(Clone, Debug)]
pub struct EngineSettings {
    pub kind: EngineKind,
    /// Weights of the local engine (fetched here on first start).
    pub models_dir: PathBuf,
    /// The lowest similarity (0-100) at which a face may log in, whatever the client asks for.
    pub min_similarity: f32,
    /// Images whose width times height exceed this are refused before they are decoded.
    pub max_image_pixels: u64,
    /// Whether a face that already belongs to another user may be enrolled again under a new
    /// id (off: 409 `FACE_ALREADY_ENROLLED`).
    pub allow_duplicate_faces: bool,
    /// Whether `/verify/` refuses a single photo and logs in only after a passed liveness
    /// challenge (off: the original clients keep working).
    pub require_liveness: bool,
    /// `FACELOCK_MAX_CPU_ISA`: the widest vector instructions the local engine's kernels may
    /// use (`None`: the widest the processor has).
    pub max_cpu_isa: Option<Isa>,
    pub rekognition: RekognitionSettings,
    /// Why `kind` is the engine.
    pub chosen_by: EngineChoice,
}

/// How the engine was chosen, so start-up can say it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EngineChoice {
    /// `FACELOCK_ENGINE` names it.
    Configured,
    /// `FACELOCK_ENGINE` is unset, so the embedded engine runs; these AWS variables were set
    /// all the same (the original server's configuration, whose users are in Rekognition).
    Default { aws_hints: Vec<&'static str> },
}

/// How tokens are issued.
#[derive(Clone, Debug)]
pub struct TokenSettings {
    pub algorithm: TokenAlgorithm,
    /// `SECRET_KEY`: the shared secret of the HMAC algorithms. With an HMAC `ALGORITHM` and no
    /// secret, one is generated and kept in the data folder.
    pub secret_key: Option<Secret>,
    pub access_token_ttl: Duration,
    /// Refresh tokens expire this long after the face login that started their family.
    pub refresh_token_ttl: Duration,
    /// `iss` of issued tokens; `None`: the server's own base URL.
    pub issuer: Option<String>,
    /// Audiences a token may be issued for; the first is the default.
    pub audiences: Vec<String>,
    /// Whether `FACELOCK_AUDIENCE` was set: in HMAC mode tokens carry `aud` only then, as the
    /// original's did not (some JWT libraries refuse an `aud` they were not told to expect).
    pub audience_configured: bool,
}

/// Brute-force defences: account lockout after failed face logins (the FIDO biometric model:
/// a few attempts, then a growing wait), and the audit trail's retention.
#[derive(Clone, Debug)]
pub struct LockoutSettings {
    /// Failed logins against one claimed user id before it is locked.
    pub threshold: u32,
    /// The first lock; each further failure doubles it.
    pub first_lock: Duration,
    /// The longest lock.
    pub max_lock: Duration,
    /// Failures older than this are forgotten.
    pub window: Duration,
    /// Failed 1:N logins an address makes before it must wait between attempts.
    pub free_address_failures: u32,
    /// Audit events are kept this long.
    pub audit_retention: Duration,
}

/// How log lines are written (`FACELOCK_LOG_FORMAT`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    /// One readable line per event (colours only on a terminal).
    Text,
    /// One JSON object per event, for log collectors.
    Json,
}

/// Every setting, built once at start-up.
#[derive(Clone, Debug)]
pub struct Settings {
    pub server: ServerSettings,
    pub storage: StorageSettings,
    pub engine: EngineSettings,
    pub tokens: TokenSettings,
    pub lockout: LockoutSettings,
    pub admin_users: BTreeSet<UserId>,
    pub debug: bool,
    pub log_format: LogFormat,
}

/// A setting that could not be used; the message names the variable and what to do.
#[derive(Debug, thiserror::Error)]
#[error("{variable}: {message}")]
pub struct ConfigError {
    pub variable: &'static str,
    pub message: String,
}

impl ConfigError {
    pub fn new(variable: &'static str, message: impl Into<String>) -> Self {
        Self {
            variable,
            message: message.into(),
        }
    }
}

impl Default for Settings {
    /// The settings of a server started with nothing configured.
    fn default() -> Self {
        Self::from_lookup(|_| None).expect("the defaults are valid settings")
    }
}

impl Settings {
    /// Default settings with every file under `data_dir` (tests and tools use this).
    pub fn with_data_dir(data_dir: impl Into<PathBuf>) -> Self {
        Self {
            storage: StorageSettings::under(data_dir),
            ..Self::default()
        }
    }

    /// Reads the process environment (after `.env` has been loaded).
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|key| std::env::var(key).ok().filter(|v| !v.trim().is_empty()))
    }

    /// Builds settings from any key lookup, so the parsing is testable without the environment.
    /// Every default is written here and nowhere else.
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let data_dir = PathBuf::from(get("FACELOCK_DATA_DIR").unwrap_or_else(|| "./data".into()));
        let storage = StorageSettings {
            database_path: get("FACELOCK_DATABASE_PATH")
                .map_or_else(|| data_dir.join("facelock.db"), PathBuf::from),
            database_url: get("FACELOCK_DATABASE_URL")
                .map(|url| {
                    let url = url.trim().to_owned();
                    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
                        Ok(Secret::new(url))
                    } else {
                        Err(ConfigError::new(
                            "FACELOCK_DATABASE_URL",
                            "must be a PostgreSQL URL, postgres://user:password@host:port/database \
                             (leave it unset for the SQLite file)",
                        ))
                    }
                })
                .transpose()?,
            // The original keeps reference images in ./reference_faces beside the server.
            reference_dir: PathBuf::from(
                get("FACELOCK_REFERENCE_DIR").unwrap_or_else(|| "./reference_faces".into()),
            ),
            master_key: get("FACELOCK_MASTER_KEY")
                .map(|raw| {
                    MasterKey::parse(&raw)
                        .map_err(|e| ConfigError::new("FACELOCK_MASTER_KEY", e.to_string()))
                })
                .transpose()?,
            data_dir,
        };
        Ok(Self {
            server: server_settings(&get)?,
            storage,
            engine: engine_settings(&get)?,
            tokens: token_settings(&get)?,
            lockout: lockout_settings(&get)?,
            admin_users: get("FACELOCK_ADMIN_USERS")
                .unwrap_or_default()
                .split(',')
                .map(str::trim)
                .filter(|id| !id.is_empty())
                .map(|id| {
                    UserId::parse(id).map_err(|e| ConfigError::new("FACELOCK_ADMIN_USERS", e.0))
                })
                .collect::<Result<_, _>>()?,
            debug: flag(&get, "DEBUG"),
            log_format: match get("FACELOCK_LOG_FORMAT").as_deref().map(str::trim) {
                None | Some("text") => LogFormat::Text,
                Some("json") => LogFormat::Json,
                Some(other) => {
                    return Err(ConfigError::new(
                        "FACELOCK_LOG_FORMAT",
                        format!("{other:?} is not a log format; use text or json"),
                    ))
                }
            },
        })
    }

    pub fn is_admin(&self, user: &UserId) -> bool {
        self.admin_users.contains(user)
    }

    /// `FACELOCK_ISSUER`, or the base URL the server listens on.
    pub fn issuer(&self) -> String {
        self.tokens.issuer.clone().unwrap_or_else(|| {
            let mut addr = self.server.listen;
            if addr.ip().is_unspecified() {
                addr.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
            }
            format!("http://{addr}")
        })
    }
}

fn server_settings(get: &impl Fn(&str) -> Option<String>) -> Result<ServerSettings, ConfigError> {
    let host = get("FACELOCK_HOST").unwrap_or_else(|| "127.0.0.1".into());
    let port: u16 = parse(get, "FACELOCK_PORT", 8000)?;
    let listen = format!("{host}:{port}")
        .parse()
        .or_else(|_| format!("[{host}]:{port}").parse())
        .map_err(|_| ConfigError::new("FACELOCK_HOST", "must be an IP address"))?;
    let cors = cors_origins(get("FACELOCK_CORS_ORIGINS").as_deref().unwrap_or_default())?;
    let cors_allow_credentials = flag_or(get, "FACELOCK_CORS_ALLOW_CREDENTIALS", false)?;
    if cors_allow_credentials && cors == CorsOrigins::Any {
        return Err(ConfigError::new(
            "FACELOCK_CORS_ALLOW_CREDENTIALS",
            "credentials cannot be allowed to every origin (`*`): list the origins in \
             FACELOCK_CORS_ORIGINS",
        ));
    }
    Ok(ServerSettings {
        listen,
        cors,
        cors_allow_credentials,
        max_body_bytes: parse(get, "FACELOCK_MAX_BODY_BYTES", 10 * 1024 * 1024)?,
        request_timeout: Duration::from_secs(
            parse(get, "FACELOCK_REQUEST_TIMEOUT_SECS", 30u64)?.max(1),
        ),
        rate_limit_per_minute: parse(get, "FACELOCK_RATE_LIMIT_PER_MINUTE", 30)?,
        header_timeout: Duration::from_secs(
            parse(get, "FACELOCK_HEADER_TIMEOUT_SECS", 10u64)?.clamp(1, 300),
        ),
        demo_page: flag_or(get, "FACELOCK_DEMO", true)?,
        trusted_proxies: get("FACELOCK_TRUSTED_PROXIES")
            .unwrap_or_default()
            .split(',')
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .map(|p| {
                IpNet::parse(p).ok_or_else(|| {
                    ConfigError::new(
                        "FACELOCK_TRUSTED_PROXIES",
                        format!("{p:?} is not an address or a network like 10.0.0.0/8"),
                    )
                })
            })
            .collect::<Result<_, _>>()?,
        metrics: MetricsSettings {
            enabled: flag_or(get, "FACELOCK_METRICS", true)?,
            token: get("FACELOCK_METRICS_TOKEN").map(Secret::new),
        },
        max_connections: get("FACELOCK_MAX_CONNECTIONS")
            .map(|raw| {
                raw.trim()
                    .parse::<usize>()
                    .ok()
                    .filter(|n| *n >= 2)
                    .ok_or_else(|| {
                        ConfigError::new(
                            "FACELOCK_MAX_CONNECTIONS",
                            "must be a number of at least 2",
                        )
                    })
            })
            .transpose()?,
    })
}

fn engine_settings(get: &impl Fn(&str) -> Option<String>) -> Result<EngineSettings, ConfigError> {
    let chosen_by = if get("FACELOCK_ENGINE").is_some() {
        EngineChoice::Configured
    } else {
        EngineChoice::Default {
            aws_hints: [
                "AWS_ACCESS_KEY_ID",
                "AWS_PROFILE",
                "AWS_ROLE_ARN",
                "FACELOCK_COLLECTION_ID",
            ]
            .into_iter()
            .filter(|key| get(key).is_some())
            .collect(),
        }
    };
    let kind = match get("FACELOCK_ENGINE").as_deref().map(str::trim) {
        None | Some("local") => EngineKind::Local,
        Some("rekognition") => EngineKind::Rekognition,
        Some(other) => {
            return Err(ConfigError::new(
                "FACELOCK_ENGINE",
                format!("unknown engine {other:?}; the engines are: local, rekognition"),
            ))
        }
    };
    let min_similarity = parse(
        get,
        "FACELOCK_MIN_SIMILARITY",
        kind.default_min_similarity(),
    )?;
    if !(0.0..=100.0).contains(&min_similarity) {
        return Err(ConfigError::new(
            "FACELOCK_MIN_SIMILARITY",
            "must be between 0 and 100",
        ));
    }
    let rekognition = RekognitionSettings {
        collection_id: get("FACELOCK_COLLECTION_ID").unwrap_or_else(|| "FaceLockUsers".into()),
        region: get("AWS_REGION").or_else(|| get("AWS_DEFAULT_REGION")),
        endpoint_url: get("AWS_ENDPOINT_URL_REKOGNITION").or_else(|| get("AWS_ENDPOINT_URL")),
        access_key_id: get("AWS_ACCESS_KEY_ID"),
        secret_access_key: get("AWS_SECRET_ACCESS_KEY").map(Secret::new),
        session_token: get("AWS_SESSION_TOKEN").map(Secret::new),
        max_attempts: parse(get, "FACELOCK_AWS_MAX_ATTEMPTS", 4)?,
        initial_backoff: Duration::from_millis(500),
    };
    validate_collection_id(&rekognition.collection_id)?;
    Ok(EngineSettings {
        kind,
        models_dir: PathBuf::from(get("FACELOCK_MODELS_DIR").unwrap_or_else(|| "./models".into())),
        min_similarity,
        max_image_pixels: parse(get, "FACELOCK_MAX_IMAGE_PIXELS", 40_000_000)?,
        allow_duplicate_faces: flag(get, "FACELOCK_ALLOW_DUPLICATE_FACES"),
        require_liveness: flag(get, "FACELOCK_REQUIRE_LIVENESS"),
        max_cpu_isa: get("FACELOCK_MAX_CPU_ISA")
            .map(|raw| {
                Isa::parse(&raw).ok_or_else(|| {
                    ConfigError::new(
                        "FACELOCK_MAX_CPU_ISA",
                        format!(
                            "unknown instruction set {raw:?}; the sets are: {}",
                            Isa::NAMES
                        ),
                    )
                })
            })
            .transpose()?,
        rekognition,
        chosen_by,
    })
}

fn token_settings(get: &impl Fn(&str) -> Option<String>) -> Result<TokenSettings, ConfigError> {
    let secret_key = get("SECRET_KEY").map(Secret::new);
    if let Some(key) = &secret_key {
        if key.expose().len() < 32 {
            return Err(ConfigError::new(
                "SECRET_KEY",
                "must be at least 32 characters; leave it unset to have a key generated",
            ));
        }
    }
    let algorithm = match get("ALGORITHM") {
        Some(alg) => TokenAlgorithm::parse(&alg)?,
        // The original's configuration (a secret) keeps the original's tokens.
        None if secret_key.is_some() => TokenAlgorithm::Hs256,
        None => TokenAlgorithm::Es256,
    };
    let days: u64 = parse(get, "FACELOCK_REFRESH_TOKEN_EXPIRE_DAYS", 14)?;
    if !(1..=365).contains(&days) {
        return Err(ConfigError::new(
            "FACELOCK_REFRESH_TOKEN_EXPIRE_DAYS",
            "must be between 1 and 365",
        ));
    }
    let minutes: u64 = parse(get, "ACCESS_TOKEN_EXPIRE_MINUTES", 30)?;
    if minutes == 0 || minutes > 24 * 60 {
        return Err(ConfigError::new(
            "ACCESS_TOKEN_EXPIRE_MINUTES",
            "must be between 1 and 1440",
        ));
    }
    let (audiences, audience_configured) = match get("FACELOCK_AUDIENCE") {
        Some(raw) => {
            let list: Vec<String> = raw
                .split(',')
                .map(|a| a.trim().to_owned())
                .filter(|a| !a.is_empty())
                .collect();
            if list.is_empty() {
                return Err(ConfigError::new("FACELOCK_AUDIENCE", "lists no audience"));
            }
            (list, true)
        }
        None => (vec!["facelock".to_owned()], false),
    };
    Ok(TokenSettings {
        algorithm,
        secret_key,
        access_token_ttl: Duration::from_secs(minutes * 60),
        refresh_token_ttl: Duration::from_secs(days * 24 * 3600),
        issuer: get("FACELOCK_ISSUER").map(|i| i.trim().trim_end_matches('/').to_owned()),
        audiences,
        audience_configured,
    })
}

fn lockout_settings(get: &impl Fn(&str) -> Option<String>) -> Result<LockoutSettings, ConfigError> {
    let threshold: u32 = parse(get, "FACELOCK_LOCKOUT_THRESHOLD", 5)?;
    if !(1..=100).contains(&threshold) {
        return Err(ConfigError::new(
            "FACELOCK_LOCKOUT_THRESHOLD",
            "must be between 1 and 100",
        ));
    }
    let first: u64 = parse(get, "FACELOCK_LOCKOUT_SECONDS", 30)?;
    let max: u64 = parse(get, "FACELOCK_LOCKOUT_MAX_SECONDS", 900)?;
    if first == 0 || max < first {
        return Err(ConfigError::new(
            "FACELOCK_LOCKOUT_MAX_SECONDS",
            "must be at least FACELOCK_LOCKOUT_SECONDS, which must be above 0",
        ));
    }
    let days: u64 = parse(get, "FACELOCK_AUDIT_RETENTION_DAYS", 90)?;
    if days == 0 {
        return Err(ConfigError::new(
            "FACELOCK_AUDIT_RETENTION_DAYS",
            "must be at least 1",
        ));
    }
    Ok(LockoutSettings {
        threshold,
        first_lock: Duration::from_secs(first),
        max_lock: Duration::from_secs(max),
        window: Duration::from_secs(24 * 3600),
        free_address_failures: 5,
        audit_retention: Duration::from_secs(days * 24 * 3600),
    })
}

/// `*`, or a comma-separated list of origins (`scheme://host[:port]`); anything else stops the
/// start, since a silently dropped origin is a browser client that cannot work.
fn cors_origins(raw: &str) -> Result<CorsOrigins, ConfigError> {
    let items: Vec<&str> = raw
        .split(',')
        .map(|o| o.trim().trim_end_matches('/'))
        .filter(|o| !o.is_empty())
        .collect();
    if items.contains(&"*") {
        return if items.len() == 1 {
            Ok(CorsOrigins::Any)
        } else {
            Err(ConfigError::new(
                "FACELOCK_CORS_ORIGINS",
                "`*` allows every origin and cannot be combined with a list",
            ))
        };
    }
    items
        .into_iter()
        .map(|o| {
            if is_origin(o) {
                Ok(o.to_owned())
            } else {
                Err(ConfigError::new(
                    "FACELOCK_CORS_ORIGINS",
                    format!(
                        "{o:?} is not an origin; write scheme://host[:port], e.g. \
                         https://app.example.com"
                    ),
                ))
            }
        })
        .collect::<Result<_, _>>()
        .map(CorsOrigins::List)
}

/// `http(s)://host[:port]` with no path, query, user or spaces.
fn is_origin(o: &str) -> bool {
    let Some((scheme, rest)) = o.split_once("://") else {
        return false;
    };
    let (host, port) = match rest.rsplit_once(':') {
        Some((h, p)) if !h.ends_with(']') || h.starts_with('[') => (h, Some(p)),
        _ => (rest, None),
    };
    matches!(scheme, "http" | "https")
        && !host.is_empty()
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'[' | b']' | b':'))
        && port.is_none_or(|p| p.parse::<u16>().is_ok_and(|p| p > 0))
}

/// A yes/no variable: `1`, `true`, `yes` or `on` (any case) are yes.
fn flag(get: &impl Fn(&str) -> Option<String>, key: &str) -> bool {
    get(key).is_some_and(|v| {
        matches!(
            v.trim().to_ascii_lowercase().as_str(),
            "1" | "true" | "yes" | "on"
        )
    })
}

/// A yes/no variable with a default; anything but a recognised yes or no stops the start.
fn flag_or(
    get: &impl Fn(&str) -> Option<String>,
    key: &'static str,
    default: bool,
) -> Result<bool, ConfigError> {
    match get(key).map(|v| v.trim().to_ascii_lowercase()).as_deref() {
        None => Ok(default),
        Some("1" | "true" | "yes" | "on") => Ok(true),
        Some("0" | "false" | "no" | "off") => Ok(false),
        Some(other) => Err(ConfigError::new(
            key,
            format!("{other:?} is not yes or no; use true or false"),
        )),
    }
}

fn parse<T: std::str::FromStr>(
    get: &impl Fn(&str) -> Option<String>,
    key: &'static str,
    default: T,
) -> Result<T, ConfigError> {
    match get(key) {
        None => Ok(default),
        Some(raw) => raw
            .trim()
            .parse()
            .map_err(|_| ConfigError::new(key, format!("{raw:?} is not a valid value"))),
    }
}

/// Rekognition accepts `[a-zA-Z0-9_.\-]+`, up to 255 characters.
fn validate_collection_id(id: &str) -> Result<(), ConfigError> {
    let ok = !id.is_empty()
        && id.len() <= 255
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(ConfigError::new(
            "FACELOCK_COLLECTION_ID",
            "must be 1-255 characters of letters, digits, '_', '.' and '-'",
        ))
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn from(pairs: &[(&str, &str)]) -> Result<Settings, ConfigError> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Settings::from_lookup(|k| map.get(k).cloned())
    }

    #[test]
    fn defaults_are_safe() {
        let s = from(&[]).unwrap();
        assert_eq!(s.server.listen.to_string(), "127.0.0.1:8000");
        assert_eq!(s.engine.min_similarity, 90.0);
        assert!(s.tokens.secret_key.is_none());
        assert_eq!(s.server.cors, CorsOrigins::List(Vec::new()));
        assert_eq!(s.tokens.access_token_ttl, Duration::from_secs(1800));
        assert_eq!(s.storage.reference_dir, PathBuf::from("./reference_faces"));
        assert_eq!(s.storage.database_path, PathBuf::from("./data/facelock.db"));
    }

    #[test]
    fn refuses_short_secrets_and_foreign_algorithms() {
        assert_eq!(
            from(&[("SECRET_KEY", "short")]).unwrap_err().variable,
            "SECRET_KEY"
        );
        assert_eq!(
            from(&[("ALGORITHM", "none")]).unwrap_err().variable,
            "ALGORITHM"
        );
        assert_eq!(
            from(&[("ALGORITHM", "RS256")]).unwrap_err().variable,
            "ALGORITHM"
        );
        assert!(from(&[("ALGORITHM", "hs512")]).is_ok());
    }

    #[test]
    fn a_secret_keeps_the_original_hs256_tokens() {
        assert_eq!(from(&[]).unwrap().tokens.algorithm, TokenAlgorithm::Es256);
        let secret = "0123456789abcdef0123456789abcdef-x";
        assert_eq!(
            from(&[("SECRET_KEY", secret)]).unwrap().tokens.algorithm,
            TokenAlgorithm::Hs256
        );
        let s = from(&[("FACELOCK_AUDIENCE", "shop, admin-console")]).unwrap();
        assert_eq!(s.tokens.audiences, ["shop", "admin-console"]);
        assert!(s.tokens.audience_configured);
        assert_eq!(
            from(&[("FACELOCK_PORT", "9000")]).unwrap().issuer(),
            "http://127.0.0.1:9000"
        );
    }

    #[test]
    fn the_kernels_cap_is_one_of_the_sets_or_refused() {
        assert_eq!(from(&[]).unwrap().engine.max_cpu_isa, None);
        let capped = from(&[("FACELOCK_MAX_CPU_ISA", "AVX2")]).unwrap();
        assert_eq!(capped.engine.max_cpu_isa, Some(Isa::Avx2));
        let refused = from(&[("FACELOCK_MAX_CPU_ISA", "sse4")]).unwrap_err();
        assert_eq!(refused.variable, "FACELOCK_MAX_CPU_ISA");
    }

    #[test]
    fn admin_ids_are_parsed_like_user_ids() {
        let s = from(&[("FACELOCK_ADMIN_USERS", "alice, bob")]).unwrap();
        assert!(s.is_admin(&UserId::parse("bob").unwrap()));
        assert!(from(&[("FACELOCK_ADMIN_USERS", "../root")]).is_err());
    }

    #[test]
    fn cors_origins_are_checked_not_dropped() {
        let ok = from(&[(
            "FACELOCK_CORS_ORIGINS",
            "https://app.example.com, http://localhost:5173/",
        )])
        .unwrap();
        assert_eq!(
            ok.server.cors,
            CorsOrigins::List(vec![
                "https://app.example.com".into(),
                "http://localhost:5173".into()
            ])
        );
        assert_eq!(
            from(&[("FACELOCK_CORS_ORIGINS", "*")]).unwrap().server.cors,
            CorsOrigins::Any
        );
        for bad in [
            "app.example.com",
            "https://app.example.com/path",
            "ftp://example.com",
            "https://exa mple.com",
            "https://example.com:99999",
            "*, https://a.example",
        ] {
            assert_eq!(
                from(&[("FACELOCK_CORS_ORIGINS", bad)])
                    .unwrap_err()
                    .variable,
                "FACELOCK_CORS_ORIGINS",
                "{bad}"
            );
        }
    }

    #[test]
    fn secrets_do_not_leak_through_debug() {
        let s = from(&[("SECRET_KEY", "0123456789abcdef0123456789abcdef-very-secret")]).unwrap();
        assert!(!format!("{s:?}").contains("very-secret"));
    }

    #[test]
    fn the_demo_page_is_on_unless_turned_off_in_words_it_understands() {
        assert!(from(&[]).unwrap().server.demo_page);
        assert!(
            !from(&[("FACELOCK_DEMO", "False")])
                .unwrap()
                .server
                .demo_page
        );
        assert!(from(&[("FACELOCK_DEMO", "on")]).unwrap().server.demo_page);
        let e = from(&[("FACELOCK_DEMO", "nope")]).unwrap_err();
        assert_eq!(e.variable, "FACELOCK_DEMO");
    }

    #[test]
    fn credentialed_cors_needs_a_list_of_origins() {
        let s = from(&[
            ("FACELOCK_CORS_ORIGINS", "https://app.example.com"),
            ("FACELOCK_CORS_ALLOW_CREDENTIALS", "true"),
        ])
        .unwrap();
        assert!(s.server.cors_allow_credentials);
        let e = from(&[
            ("FACELOCK_CORS_ORIGINS", "*"),
            ("FACELOCK_CORS_ALLOW_CREDENTIALS", "true"),
        ])
        .unwrap_err();
        assert_eq!(e.variable, "FACELOCK_CORS_ALLOW_CREDENTIALS");
    }

    #[test]
    fn the_engine_choice_remembers_aws_settings_left_from_the_original() {
        let chosen = |pairs: &[(&str, &str)]| from(pairs).unwrap().engine.chosen_by;
        assert_eq!(chosen(&[]), EngineChoice::Default { aws_hints: vec![] });
        assert_eq!(
            chosen(&[
                ("AWS_ACCESS_KEY_ID", "AKID"),
                ("AWS_SECRET_ACCESS_KEY", "x")
            ]),
            EngineChoice::Default {
                aws_hints: vec!["AWS_ACCESS_KEY_ID"]
            }
        );
        assert_eq!(
            chosen(&[("FACELOCK_ENGINE", "local"), ("AWS_ACCESS_KEY_ID", "AKID")]),
            EngineChoice::Configured
        );
    }

    #[test]
    fn trusted_proxies_are_addresses_or_networks() {
        let s = from(&[("FACELOCK_TRUSTED_PROXIES", "10.0.0.0/8, 192.0.2.7,fd00::/8")]).unwrap();
        let nets = &s.server.trusted_proxies;
        let ip = |s: &str| s.parse().unwrap();
        assert!(nets[0].contains(ip("10.1.2.3")));
        assert!(!nets[0].contains(ip("11.0.0.1")));
        assert!(nets[1].contains(ip("192.0.2.7")) && !nets[1].contains(ip("192.0.2.8")));
        assert!(nets[2].contains(ip("fd12::1")) && !nets[2].contains(ip("10.0.0.1")));
        assert!(from(&[("FACELOCK_TRUSTED_PROXIES", "10.0.0.0/33")]).is_err());
        assert!(from(&[("FACELOCK_TRUSTED_PROXIES", "proxy.local")]).is_err());
    }

    /// Every variable the server reads is explained in `.env.example` and the README.
    #[test]
    fn every_setting_is_documented() {
        let read = std::sync::Mutex::new(Vec::new());
        Settings::from_lookup(|key| {
            read.lock().unwrap().push(key.to_owned());
            None
        })
        .unwrap();
        let root = env!("CARGO_MANIFEST_DIR");
        let example = std::fs::read_to_string(format!("{root}/.env.example")).unwrap();
        let readme = std::fs::read_to_string(format!("{root}/README.md")).unwrap();
        // AWS_* are the AWS SDK's own variables, documented by AWS.
        for key in read.into_inner().unwrap() {
            if key.starts_with("AWS_") {
                continue;
            }
            assert!(example.contains(&key), "{key} is not in .env.example");
            assert!(readme.contains(&key), "{key} is not in the README");
        }
    }
}
