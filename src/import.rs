//! Users found in the original server's `reference_faces` folder, to enrol with
//! `facelock import`. Two layouts are read: a folder per user (`<user_id>/<any name>.jpg`) and
//! one photo per user named after it (`<user_id>.jpg`). JPEG, PNG and WebP files are taken;
//! anything else is left alone.

use std::path::{Path, PathBuf};

use crate::{domain::UserId, files::FileError};

/// A user id found in the folder and the photos found for it, in name order.
#[derive(Debug, PartialEq, Eq)]
pub struct FoundUser {
    /// The folder or file name the id comes from: not necessarily a valid user id.
    pub name: String,
    pub user_id: Option<UserId>,
    pub photos: Vec<PathBuf>,
}

fn is_photo(path: &Path) -> bool {
    path.is_file()
        && path.extension().and_then(|e| e.to_str()).is_some_and(|e| {
            matches!(
                e.to_ascii_lowercase().as_str(),
                "jpg" | "jpeg" | "png" | "webp"
            )
        })
}

fn sorted_entries(dir: &Path) -> Result<Vec<PathBuf>, FileError> {
    let entries = std::fs::read_dir(dir).map_err(|e| FileError::new("reading", dir, e))?;
    let mut paths: Vec<PathBuf> = entries.flatten().map(|e| e.path()).collect();
    paths.sort();
    Ok(paths)
}

/// The users under `root`, ordered by name; a user found in both layouts has all their photos.
pub fn scan(root: &Path) -> Result<Vec<FoundUser>, FileError> {
    let mut found: std::collections::BTreeMap<String, Vec<PathBuf>> = Default::default();
    for path in sorted_entries(root)? {
        let Some(name) = path.file_name().and_then(|n| n.to_str()).map(str::to_owned) else {
            continue;
        };
        if path.is_dir() {
            let photos: Vec<PathBuf> = sorted_entries(&path)?
                .into_iter()
                .filter(|p| is_photo(p))
                .collect();
            if !photos.is_empty() {
                found.entry(name).or_default().extend(photos);
            }
        } else if is_photo(&path) {
            let stem = path
                .file_stem()
                .and_then(|s| s.to_str())
                .unwrap_or_default()
                .to_owned();
            found.entry(stem).or_default().push(path);
        }
    }
    Ok(found
        .into_iter()
        .map(|(name, photos)| FoundUser {
            user_id: UserId::parse(&name).ok(),
            name,
            photos,
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_layouts_are_read_and_other_files_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join("alice")).unwrap();
        std::fs::create_dir_all(root.join("bad id!")).unwrap();
        std::fs::create_dir_all(root.join("empty")).unwrap();
        for f in [
            "alice/2.png",
            "alice/1.JPG",
            "alice/notes.txt",
            "bad id!/x.jpg",
            "bob.jpeg",
            "alice.webp",
            "readme.md",
        ] {
            std::fs::write(root.join(f), b"x").unwrap();
        }
        let found = scan(root).unwrap();
        let names: Vec<&str> = found.iter().map(|u| u.name.as_str()).collect();
        assert_eq!(names, ["alice", "bad id!", "bob"]);
        let alice = &found[0];
        assert_eq!(alice.user_id.as_ref().map(|u| u.as_str()), Some("alice"));
        let files: Vec<String> = alice
            .photos
            .iter()
            .map(|p| p.strip_prefix(root).unwrap().display().to_string())
            .collect();
        assert_eq!(files, ["alice/1.JPG", "alice/2.png", "alice.webp"]);
        assert!(found[1].user_id.is_none());
        assert_eq!(found[2].photos.len(), 1);
    }
}
