//! Where the server listens and how it treats requests: CORS, limits, timeouts, the demo
//! page, `/metrics` and the proxies it trusts.

use std::{net::SocketAddr, time::Duration};

use super::{flag_or, parse, ConfigError};
use crate::{net::IpNet, secret::Secret};

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
    /// A request body must begin within the header timeout and then arrive at this many bytes
    /// a second on average (`FACELOCK_MIN_BODY_BYTES_PER_SEC`, default 1024; 0 is off).
    pub min_body_bytes_per_sec: u64,
    /// Register/verify/compare requests per minute per client IP (also the burst); 0 is off.
    pub rate_limit_per_minute: u32,
    /// A connection must send a request's headers within this time, also when it sits idle
    /// between requests; otherwise it is closed.
    pub header_timeout: Duration,
    /// Open connections at most; beyond it the oldest idle one is closed. `None`: derived from
    /// the process's open-file limit.
    pub max_connections: Option<usize>,
    /// Open connections at most from one address (`FACELOCK_MAX_CONNECTIONS_PER_ADDRESS`,
    /// default 32; trusted proxies are exempt), so that one client's slow bodies cannot take
    /// every slot.
    pub max_connections_per_address: usize,
    /// Requests doing face work (register, verify, compare, liveness challenges) at once from
    /// one client address (`FACELOCK_MAX_FACE_REQUESTS_PER_ADDRESS`, default 4; 0 is off).
    pub max_face_requests_per_address: usize,
    /// Whether `/demo`, the webcam page, is served (`FACELOCK_DEMO`, on unless set to false).
    pub demo_page: bool,
    pub metrics: MetricsSettings,
    /// `FACELOCK_TRUSTED_PROXIES`: peers whose `X-Forwarded-For` names the client.
    pub trusted_proxies: Vec<IpNet>,
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

pub(super) fn from_lookup(
    get: &impl Fn(&str) -> Option<String>,
) -> Result<ServerSettings, ConfigError> {
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
        min_body_bytes_per_sec: parse(get, "FACELOCK_MIN_BODY_BYTES_PER_SEC", 1024u64)?,
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
        max_connections_per_address: parse(get, "FACELOCK_MAX_CONNECTIONS_PER_ADDRESS", 32usize)?
            .max(1),
        max_face_requests_per_address: match parse(
            get,
            "FACELOCK_MAX_FACE_REQUESTS_PER_ADDRESS",
            4usize,
        )? {
            0 => usize::MAX,
            n => n,
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
