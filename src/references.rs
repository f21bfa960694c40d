//! Reference copies of enrolment photos: `reference_faces/<user_id>/<face_id>.<ext>`.
//!
//! Paths are built only from a parsed [`UserId`] and an engine face id checked to be hex and
//! dashes, so nothing a caller sends can steer a path. Files are written to a temporary name in
//! the same folder and renamed into place, so a crash never leaves half a photo.

use std::{
    io::Write,
    path::{Path, PathBuf},
};

use crate::{domain::UserId, files::FileError, images::Format};

#[derive(Debug, thiserror::Error)]
pub enum ReferenceError {
    #[error("{0:?} is not a file name this server writes")]
    UnsafeName(String),
    #[error(transparent)]
    File(#[from] FileError),
    #[error("a file task failed")]
    Task(#[from] tokio::task::JoinError),
}

#[derive(Clone, Debug)]
pub struct ReferenceFiles {
    root: PathBuf,
}

impl ReferenceFiles {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Stores `bytes` as the reference image of a face; returns the path relative to the root.
    pub async fn save(
        &self,
        user: &UserId,
        face_id: &str,
        format: Format,
        bytes: Vec<u8>,
    ) -> Result<String, ReferenceError> {
        if !is_safe_name(face_id) {
            return Err(ReferenceError::UnsafeName(face_id.to_owned()));
        }
        let relative = format!("{}/{}.{}", user, face_id, format.extension());
        let dir = self.root.join(user.as_str());
        let target = self.root.join(&relative);
        tokio::task::spawn_blocking(move || {
            write_atomically(&dir, &target, &bytes)
                .map_err(|source| ReferenceError::from(FileError::new("writing", target, source)))
        })
        .await??;
        Ok(relative)
    }

    /// Removes a stored reference image (a missing file is not an error) and the user's folder
    /// once it is empty.
    pub async fn remove(&self, relative: &str) -> Result<(), ReferenceError> {
        let Some((user, file)) = relative.split_once('/') else {
            return Ok(());
        };
        if UserId::parse(user).is_err() || !file.split('.').all(is_safe_name) {
            return Err(ReferenceError::UnsafeName(relative.to_owned()));
        }
        let path = self.root.join(relative);
        let dir = self.root.join(user);
        tokio::task::spawn_blocking(move || {
            match std::fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(source) => return Err(FileError::new("removing", path, source).into()),
            }
            // Fails harmlessly when another face of the user still lives there.
            let _ = std::fs::remove_dir(&dir);
            Ok(())
        })
        .await?
    }
}

fn is_safe_name(s: &str) -> bool {
    !s.is_empty() && s.len() <= 64 && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

fn write_atomically(dir: &Path, target: &Path, bytes: &[u8]) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let tmp = dir.join(format!(".tmp-{}", uuid::Uuid::new_v4()));
    let result = (|| {
        let mut file = std::fs::File::create_new(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        std::fs::rename(&tmp, target)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn save_and_remove() {
        let dir = tempfile::tempdir().unwrap();
        let refs = ReferenceFiles::new(dir.path());
        let user = UserId::parse("alice").unwrap();
        let rel = refs
            .save(&user, "0f0e-12ab", Format::Png, b"png".to_vec())
            .await
            .unwrap();
        assert_eq!(rel, "alice/0f0e-12ab.png");
        assert_eq!(std::fs::read(dir.path().join(&rel)).unwrap(), b"png");
        refs.remove(&rel).await.unwrap();
        assert!(!dir.path().join("alice").exists());
        refs.remove(&rel).await.unwrap();
    }

    #[tokio::test]
    async fn refuses_unsafe_names() {
        let dir = tempfile::tempdir().unwrap();
        let refs = ReferenceFiles::new(dir.path());
        let user = UserId::parse("alice").unwrap();
        assert!(refs
            .save(&user, "../x", Format::Jpeg, vec![])
            .await
            .is_err());
        assert!(refs.remove("alice/../../etc.passwd").await.is_err());
    }
}
