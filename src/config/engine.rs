//! The face engine: which one, its models, its floor and what it accepts, and AWS
//! Rekognition's settings.

use std::{path::PathBuf, time::Duration};

use facelock_engine::{cpu::Isa, FaceModel};

use super::{flag, parse, ConfigError};
use crate::secret::Secret;

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
    /// threshold; for the local engine, 90 on its descriptor's calibrated scale (a false-match
    /// rate of at most 1e-3 on the development set with the MobileFaceNet).
    pub fn default_min_similarity(self) -> f32 {
        match self {
            EngineKind::Local => facelock_engine::DEFAULT_MIN_SIMILARITY,
            EngineKind::Rekognition => 90.0,
        }
    }
}

/// The local engine's descriptor when `FACELOCK_FACE_MODEL` is unset.
pub const DEFAULT_FACE_MODEL: FaceModel = FaceModel::MobileFaceNet;

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

/// The face engine and what it accepts.
#[derive(Clone, Debug)]
pub struct EngineSettings {
    pub kind: EngineKind,
    /// Weights of the local engine (fetched here on first start).
    pub models_dir: PathBuf,
    /// `FACELOCK_FACE_MODEL`: the local engine's descriptor network.
    pub face_model: FaceModel,
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
    /// `FACELOCK_REGISTRATION`: who may enrol a new user id.
    pub registration: RegistrationPolicy,
    /// `FACELOCK_MAX_CPU_ISA`: the widest vector instructions the local engine's kernels may
    /// use (`None`: the widest the processor has).
    pub max_cpu_isa: Option<Isa>,
    pub rekognition: RekognitionSettings,
    /// Why `kind` is the engine.
    pub chosen_by: EngineChoice,
}

/// Who may enrol a new user id (`FACELOCK_REGISTRATION`). Adding a face to an existing id
/// always needs a token of that user or of an admin.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RegistrationPolicy {
    /// Anyone, with one photo (the original's behaviour, the default). Anyone may then enrol
    /// another person's public photo under a new id before that person does.
    Open,
    /// Anyone who passes a liveness challenge: a photo alone does not enrol a new id.
    Liveness,
    /// Only administrators (over HTTP with an admin's token, or `facelock users add`).
    Admin,
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

pub(super) fn from_lookup(
    get: &impl Fn(&str) -> Option<String>,
) -> Result<EngineSettings, ConfigError> {
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
        face_model: match get("FACELOCK_FACE_MODEL") {
            None => DEFAULT_FACE_MODEL,
            Some(raw) => FaceModel::parse(&raw).ok_or_else(|| {
                ConfigError::new(
                    "FACELOCK_FACE_MODEL",
                    format!("unknown model {raw:?}; the models are: dlib, mobilefacenet"),
                )
            })?,
        },
        min_similarity,
        max_image_pixels: parse(get, "FACELOCK_MAX_IMAGE_PIXELS", 40_000_000)?,
        allow_duplicate_faces: flag(get, "FACELOCK_ALLOW_DUPLICATE_FACES"),
        require_liveness: flag(get, "FACELOCK_REQUIRE_LIVENESS"),
        registration: match get("FACELOCK_REGISTRATION").as_deref().map(str::trim) {
            None | Some("open") => RegistrationPolicy::Open,
            Some("liveness") => RegistrationPolicy::Liveness,
            Some("admin") => RegistrationPolicy::Admin,
            Some(other) => {
                return Err(ConfigError::new(
                    "FACELOCK_REGISTRATION",
                    format!("{other:?} is not a policy; use open, liveness or admin"),
                ))
            }
        },
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
