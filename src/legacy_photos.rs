//! Reference photos that servers before 0.2 kept as files, `<reference dir>/<user_id>/<face_id>
//! .<ext>`. At start they move into the store (re-encoded and sealed like every photo now) and
//! the files go, together with the temporary files a crash could leave behind.

use std::path::{Path, PathBuf};

use crate::{domain::UserId, files::FileError};

/// Names this server ever wrote: a user id folder, then `<face id>.<ext>` of hex, dashes and
/// letters.
fn safe_relative(root: &Path, relative: &str) -> Option<PathBuf> {
    let (user, file) = relative.split_once('/')?;
    let safe = |s: &str| {
        !s.is_empty() && s.len() <= 64 && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
    };
    (UserId::parse(user).is_ok() && file.split('.').all(safe)).then(|| root.join(relative))
}

/// Whether `root` holds any user folder, that is anything an older server left to move.
pub fn has_user_folders(root: &Path) -> bool {
    std::fs::read_dir(root).is_ok_and(|entries| entries.flatten().any(|e| e.path().is_dir()))
}

/// The bytes of a legacy photo; `None` when the path is not one this server wrote or the file
/// is gone.
pub fn read(root: &Path, relative: &str) -> Result<Option<Vec<u8>>, FileError> {
    let Some(path) = safe_relative(root, relative) else {
        return Ok(None);
    };
    match std::fs::read(&path) {
        Ok(bytes) => Ok(Some(bytes)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(FileError::new("reading", path, e)),
    }
}

/// Removes a legacy photo and its user's folder once empty.
pub fn remove(root: &Path, relative: &str) -> Result<(), FileError> {
    let Some(path) = safe_relative(root, relative) else {
        return Ok(());
    };
    match std::fs::remove_file(&path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(FileError::new("removing", path, e)),
    }
    if let Some(dir) = path.parent() {
        // Fails harmlessly while another photo of the user is still there.
        let _ = std::fs::remove_dir(dir);
    }
    Ok(())
}

/// Removes the `.tmp-*` files an interrupted write left under `root` (one level of user
/// folders); returns how many.
pub fn sweep_temporary_files(root: &Path) -> usize {
    let Ok(users) = std::fs::read_dir(root) else {
        return 0;
    };
    let mut removed = 0;
    for dir in users.flatten().filter(|e| e.path().is_dir()) {
        let Ok(files) = std::fs::read_dir(dir.path()) else {
            continue;
        };
        for file in files.flatten() {
            if file.file_name().to_string_lossy().starts_with(".tmp-")
                && std::fs::remove_file(file.path()).is_ok()
            {
                removed += 1;
            }
        }
        let _ = std::fs::remove_dir(dir.path());
    }
    removed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_and_removes_only_paths_this_server_wrote() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("alice")).unwrap();
        std::fs::write(dir.path().join("alice/0f0e-12ab.jpg"), b"jpg").unwrap();
        std::fs::write(dir.path().join("alice/.tmp-1234"), b"half").unwrap();
        assert_eq!(
            read(dir.path(), "alice/0f0e-12ab.jpg").unwrap().unwrap(),
            b"jpg"
        );
        assert!(read(dir.path(), "alice/../../etc.passwd")
            .unwrap()
            .is_none());
        assert!(read(dir.path(), "alice/missing.jpg").unwrap().is_none());
        remove(dir.path(), "alice/0f0e-12ab.jpg").unwrap();
        assert_eq!(sweep_temporary_files(dir.path()), 1);
        assert!(!dir.path().join("alice").exists());
    }
}
