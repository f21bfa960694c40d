//! Settings: every environment variable the server reads, typed and checked once at start-up,
//! in one typed part per area (server, storage, engine, tokens, lockout).
//!
//! `main` loads `.env` (dotenvy) and calls [`Settings::from_env`]; tests build a [`Settings`]
//! directly instead of touching process-wide variables. Secrets are held as
//! [`Secret`](crate::secret::Secret), whose `Debug` shows a placeholder.

mod engine;
mod lockout;
mod server;
mod storage;
mod tokens;

use std::{collections::BTreeSet, path::PathBuf};

pub use self::{
    engine::{
        EngineChoice, EngineKind, EngineSettings, RegistrationPolicy, RekognitionSettings,
        DEFAULT_FACE_MODEL,
    },
    lockout::LockoutSettings,
    server::{CorsOrigins, MetricsSettings, ServerSettings},
    storage::StorageSettings,
    tokens::{TokenAlgorithm, TokenSettings},
};
use crate::domain::UserId;
pub use crate::{net::IpNet, secret::Secret};

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
        Self::from_lookup(|key| env_value(key, std::env::var(key).ok()))
    }

    /// Builds settings from any key lookup, so the parsing is testable without the environment.
    /// Every default is written here and nowhere else.
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        Ok(Self {
            server: server::from_lookup(&get)?,
            storage: storage::from_lookup(&get)?,
            engine: engine::from_lookup(&get)?,
            tokens: tokens::from_lookup(&get)?,
            lockout: lockout::from_lookup(&get)?,
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

/// What a variable of the environment says. An empty value counts as unset (`.env.example`
/// lists some with empty values), except `SECRET_KEY`: an empty secret is a mistake to stop
/// on, not a reason to sign tokens with another algorithm than the one its owner meant.
fn env_value(key: &str, raw: Option<String>) -> Option<String> {
    raw.filter(|v| key == "SECRET_KEY" || !v.trim().is_empty())
}

/// A yes/no variable: `1`, `true`, `yes` or `on` (any case) are yes.
pub(crate) fn flag(get: &impl Fn(&str) -> Option<String>, key: &str) -> bool {
    get(key).is_some_and(|v| {
        matches!(
            v.trim().to_ascii_lowercase().as_str(),
            "1" | "true" | "yes" | "on"
        )
    })
}

/// A yes/no variable with a default; anything but a recognised yes or no stops the start.
pub(crate) fn flag_or(
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

pub(crate) fn parse<T: std::str::FromStr>(
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

#[cfg(test)]
mod tests {
    use std::{collections::HashMap, time::Duration};

    use facelock_engine::cpu::Isa;

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

    /// The environment as `from_env` reads it: an empty value is unset, but an empty
    /// `SECRET_KEY` stops the start instead of silently switching tokens to ES256.
    #[test]
    fn an_empty_secret_key_stops_the_start() {
        let env = |pairs: &[(&str, &str)]| {
            Settings::from_lookup(|key| {
                let raw = pairs
                    .iter()
                    .find(|(k, _)| *k == key)
                    .map(|(_, v)| v.to_string());
                env_value(key, raw)
            })
        };
        for empty in ["", "  "] {
            let refused = env(&[("SECRET_KEY", empty)]).unwrap_err();
            assert_eq!(refused.variable, "SECRET_KEY");
        }
        let unset = env(&[("FACELOCK_CORS_ORIGINS", ""), ("FACELOCK_ADMIN_USERS", "")]).unwrap();
        assert_eq!(unset.tokens.algorithm, TokenAlgorithm::Es256);
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
