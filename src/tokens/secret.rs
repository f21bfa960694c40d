//! The token signing secret: `SECRET_KEY` when the operator sets one, otherwise a random key
//! generated on first start and kept in the data folder, readable by the owner only.

use std::path::{Path, PathBuf};

use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine as _};

use crate::{
    files::{write_private, FileError},
    secret::Secret,
};

const SECRET_FILE: &str = "jwt_secret.key";

#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error(
        "{} is damaged (too short); delete it to generate a new key (issued tokens will stop \
         working) or set SECRET_KEY",
        .0.display()
    )]
    Damaged(PathBuf),
    #[error("the system has no randomness to offer")]
    Randomness(#[source] getrandom::Error),
    #[error(transparent)]
    File(#[from] FileError),
}

/// Loads the generated secret from `data_dir`, creating it on first use.
pub fn load_or_generate_secret(data_dir: &Path) -> Result<Secret, SecretError> {
    let path = data_dir.join(SECRET_FILE);
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            let key = text.trim();
            if key.len() < 43 {
                return Err(SecretError::Damaged(path));
            }
            warn_if_shared(&path);
            Ok(Secret::new(key))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let mut raw = [0u8; 64];
            getrandom::fill(&mut raw).map_err(SecretError::Randomness)?;
            let key = URL_SAFE_NO_PAD.encode(raw);
            write_private(&path, key.as_bytes()).map_err(FileError::at("writing", &path))?;
            tracing::warn!(
                path = %path.display(),
                "SECRET_KEY is not set: generated a signing key and stored it (mode 0600); keep \
                 this file to keep issued tokens valid across restarts"
            );
            Ok(Secret::new(key))
        }
        Err(source) => Err(FileError::new("reading", path, source).into()),
    }
}

fn warn_if_shared(path: &Path) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if let Ok(meta) = std::fs::metadata(path) {
            if meta.permissions().mode() & 0o077 != 0 {
                tracing::warn!(path = %path.display(), "signing key file is readable by other users; chmod 600 it");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_once_then_reused_with_private_mode() {
        let dir = tempfile::tempdir().unwrap();
        let first = load_or_generate_secret(dir.path()).unwrap();
        let second = load_or_generate_secret(dir.path()).unwrap();
        assert_eq!(first, second);
        assert!(first.expose().len() >= 80);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join(SECRET_FILE))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }

    #[test]
    fn a_damaged_key_file_is_an_error_not_a_weak_key() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(SECRET_FILE), "short").unwrap();
        assert!(load_or_generate_secret(dir.path()).is_err());
    }
}
