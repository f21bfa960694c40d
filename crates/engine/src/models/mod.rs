//! The weight files of the embedded engine: which ones, their checksums, and fetching them.
//!
//! They come from npm packages, each pinned by version and by the sha256 of its tarball and of
//! every file used: `@vladmandic/face-api` (MIT) for the detector, the landmarks and dlib's
//! descriptor, and `faceplugin-face-recognition-js` (MIT) for the MobileFaceNet descriptor.
//! A start with files missing from the models folder runs `npm pack` for that exact version,
//! checks the tarball, and unpacks the files; after that the server needs no network. Nothing
//! is ever fetched while serving requests.

use std::{
    io::Read,
    path::{Path, PathBuf},
    process::Command,
    sync::Mutex,
};

use sha2::{Digest, Sha256};

use crate::files::FileError;

pub mod onnx;
pub mod weights;

/// An npm package that holds model files: its name, version, the sha256 of its tarball, and
/// the files used from its `model/` folder with their sha256.
#[derive(Debug, PartialEq, Eq)]
pub struct Package {
    pub name: &'static str,
    pub version: &'static str,
    tarball_sha256: &'static str,
    pub files: &'static [(&'static str, &'static str)],
}

impl std::fmt::Display for Package {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}@{}", self.name, self.version)
    }
}

/// The detector, the landmarks and dlib's descriptor (TensorFlow.js weight files).
pub const FACE_API: Package = Package {
    name: "@vladmandic/face-api",
    version: "1.7.15",
    tarball_sha256: "0d77fffeef362ef9c0939cf6c567f3a2e8e177f114fa257a3270cbd2e509b031",
    files: &[
        (
            "tiny_face_detector_model-weights_manifest.json",
            "5d1af4849ac48d5b985f4a9b16010c512353ddd6fcc63d50fd0bc9e9e64296e5",
        ),
        (
            "tiny_face_detector_model.bin",
            "b7503ce7df31039b1c43316a9b865cab6a70dd748cc602d3fa28b551503c3871",
        ),
        (
            "face_landmark_68_model-weights_manifest.json",
            "ca4886639f86e99b39fed0c155f81b63317225773bd9616716e887b0153389c9",
        ),
        (
            "face_landmark_68_model.bin",
            "4611ef65c87d836d03d684b30eec4d195d8b219fa1dd58fc58945831c6b9299b",
        ),
        (
            "face_recognition_model-weights_manifest.json",
            "cbaffa501b0b9275a12b63357a6843e7e30c054e1c9151e1a5f879b26e32986b",
        ),
        (
            "face_recognition_model.bin",
            "b413e420d6840b2775fba32008db6f3cddb07d485967fb42cfcf379c16a8c589",
        ),
    ],
};

/// The MobileFaceNet descriptor (ONNX).
pub const FACEPLUGIN: Package = Package {
    name: "faceplugin-face-recognition-js",
    version: "0.0.1",
    tarball_sha256: "7ea06031d9a3f83753254fcff60506a07b81b46fc84d4ee024cd041f260ec1ba",
    files: &[(
        "fr_feature.onnx",
        "87aacdfe57510db2af90c0251df680e8eec88f122ee94712121d09bcaaaf3581",
    )],
};

/// The descriptor networks the engine can compute. Every stored face records which one
/// described it ([`FaceModel::id`]): descriptors of different models are never compared.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FaceModel {
    /// dlib's 29-layer ResNet: 150x150 chips, 128 numbers, Euclidean distance.
    DlibResnet,
    /// A margin-trained MobileFaceNet: 112x112 chips on five points, 512 numbers, cosine.
    MobileFaceNet,
}

impl FaceModel {
    pub const ALL: [Self; 2] = [Self::DlibResnet, Self::MobileFaceNet];

    /// The name an operator gives (`FACELOCK_FACE_MODEL`).
    pub fn name(self) -> &'static str {
        match self {
            Self::DlibResnet => "dlib",
            Self::MobileFaceNet => "mobilefacenet",
        }
    }

    /// The model named by `name`, as [`FaceModel::name`] or [`FaceModel::id`] spell it.
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|m| m.name().eq_ignore_ascii_case(name.trim()) || m.id() == name.trim())
    }

    /// Names the network stored beside every face it described.
    pub fn id(self) -> &'static str {
        match self {
            Self::DlibResnet => "dlib-resnet-v1@face-api-1.7.15",
            Self::MobileFaceNet => "mobilefacenet@faceplugin-face-recognition-js-0.0.1",
        }
    }

    /// Numbers in one descriptor.
    pub fn descriptor_len(self) -> usize {
        match self {
            Self::DlibResnet => crate::networks::recognition::DESCRIPTOR_LEN,
            Self::MobileFaceNet => crate::networks::mobilefacenet::DESCRIPTOR_LEN,
        }
    }

    /// The packages whose files this model needs (the detector's and landmarks' always).
    pub fn packages(self) -> &'static [&'static Package] {
        match self {
            Self::DlibResnet => &[&FACE_API],
            Self::MobileFaceNet => &[&FACE_API, &FACEPLUGIN],
        }
    }
}

impl std::fmt::Display for FaceModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Why the model files could not be made ready. Each message says what to do.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error(
        "model file {} is corrupt (its sha256 does not match {package}); delete it and start \
         again to fetch a fresh copy",
        path.display()
    )]
    Corrupt {
        path: PathBuf,
        package: &'static Package,
    },
    #[error(
        "the face models are missing from {} and npm could not be run to fetch them. Install \
         Node.js with npm and start again, or copy the files of {package} (folder model/) \
         there, or set FACELOCK_ENGINE=rekognition",
        dir.display()
    )]
    NoNpm {
        dir: PathBuf,
        package: &'static Package,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "npm pack {package} failed ({status}): {output}. Check that the npm registry is \
         reachable, or copy the model files into {} by hand",
        dir.display()
    )]
    NpmFailed {
        dir: PathBuf,
        package: &'static Package,
        status: std::process::ExitStatus,
        output: String,
    },
    #[error("npm pack {0} produced no tarball")]
    NoTarball(&'static Package),
    #[error(
        "the downloaded {package} does not match its pinned checksum (sha256 {actual}); \
         refusing to use it"
    )]
    Checksum {
        package: &'static Package,
        actual: String,
    },
    #[error("the package did not contain {0:?}")]
    Incomplete(Vec<&'static str>),
    #[error(transparent)]
    File(#[from] FileError),
}

fn io<'a>(action: &'static str, path: &'a Path) -> impl Fn(std::io::Error) -> FetchError + 'a {
    move |source| FileError::new(action, path, source).into()
}

/// One fetch at a time within this process.
static FETCH: Mutex<()> = Mutex::new(());

fn sha256_file(path: &Path) -> std::io::Result<String> {
    let mut file = std::fs::File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hex(&hasher.finalize()))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Which files of `package` are missing; errors when a present file does not match its
/// checksum.
fn missing_files(dir: &Path, package: &'static Package) -> Result<Vec<&'static str>, FetchError> {
    let mut missing = Vec::new();
    for &(name, sum) in package.files {
        let path = dir.join(name);
        match sha256_file(&path) {
            Ok(actual) if actual == sum => {}
            Ok(_) => return Err(FetchError::Corrupt { path, package }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => missing.push(name),
            Err(e) => return Err(io("reading", &path)(e)),
        }
    }
    Ok(missing)
}

/// Makes sure every file `model` needs is in `dir`, fetching them with npm when missing.
pub fn ensure(dir: &Path, model: FaceModel) -> Result<(), FetchError> {
    for package in model.packages() {
        ensure_package(dir, package)?;
    }
    Ok(())
}

fn ensure_package(dir: &Path, package: &'static Package) -> Result<(), FetchError> {
    let _guard = FETCH.lock().unwrap_or_else(|p| p.into_inner());
    if missing_files(dir, package)?.is_empty() {
        return Ok(());
    }
    std::fs::create_dir_all(dir).map_err(io("creating the models folder", dir))?;
    // npm runs in the work folder, so every path handed to it must be absolute.
    let dir = &std::fs::canonicalize(dir).map_err(io("resolving", dir))?;
    tracing::info!(dir = %dir.display(), "fetching face models: npm pack {package}");
    let work = dir.join(format!(".fetch-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&work).map_err(io("creating", &work))?;
    let result = fetch_into(dir, &work, package);
    let _ = std::fs::remove_dir_all(&work);
    result?;
    let still = missing_files(dir, package)?;
    if still.is_empty() {
        tracing::info!(dir = %dir.display(), "face models ready");
        Ok(())
    } else {
        Err(FetchError::Incomplete(still))
    }
}

fn fetch_into(dir: &Path, work: &Path, package: &'static Package) -> Result<(), FetchError> {
    let spec = package.to_string();
    let output = Command::new("npm")
        // Errors only: `--silent` would hide npm's own reason when the fetch fails.
        .args(["pack", &spec, "--loglevel=error", "--pack-destination"])
        .arg(work)
        .current_dir(work)
        .output()
        .map_err(|source| FetchError::NoNpm {
            dir: dir.to_owned(),
            package,
            source,
        })?;
    if !output.status.success() {
        return Err(FetchError::NpmFailed {
            dir: dir.to_owned(),
            package,
            status: output.status,
            output: format!(
                "{} {}",
                String::from_utf8_lossy(&output.stderr).trim(),
                String::from_utf8_lossy(&output.stdout).trim()
            ),
        });
    }
    let tarball: PathBuf = std::fs::read_dir(work)
        .map_err(io("reading", work))?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|e| e == "tgz"))
        .ok_or(FetchError::NoTarball(package))?;
    let actual = sha256_file(&tarball).map_err(io("reading", &tarball))?;
    if actual != package.tarball_sha256 {
        return Err(FetchError::Checksum { package, actual });
    }
    let unpack = io("unpacking", &tarball);
    let file = std::fs::File::open(&tarball).map_err(&unpack)?;
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(file));
    for entry in archive.entries().map_err(&unpack)? {
        let mut entry = entry.map_err(&unpack)?;
        let path = entry.path().map_err(&unpack)?.into_owned();
        let Some(name) = path
            .strip_prefix("package/model")
            .ok()
            .and_then(|p| p.to_str())
            .filter(|n| package.files.iter().any(|(f, _)| f == n))
            .map(str::to_owned)
        else {
            continue;
        };
        let tmp = work.join(format!("{name}.part"));
        let write = io("writing", &tmp);
        let mut out = std::fs::File::create(&tmp).map_err(&write)?;
        std::io::copy(&mut entry, &mut out).map_err(&write)?;
        out.sync_all().map_err(&write)?;
        std::fs::rename(&tmp, dir.join(&name)).map_err(&write)?;
    }
    Ok(())
}
