//! Files the server keeps private: written atomically with owner-only permissions, in folders
//! only the owner can read. The error type is the engine crate's, so a failure reads the same
//! wherever it happened.

use std::{io::Write, path::Path};

pub use facelock_engine::files::{read, FileError};

/// Writes `bytes` to `path` atomically with owner-only permissions; an existing file is kept.
pub fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let mut tmp = tempfile_in(dir)?;
    tmp.1.write_all(bytes)?;
    tmp.1.sync_all()?;
    // `hard_link` fails if the target exists, so a concurrent first start cannot overwrite a
    // key another process already handed out tokens with.
    let linked = std::fs::hard_link(&tmp.0, path);
    let _ = std::fs::remove_file(&tmp.0);
    linked
}

fn tempfile_in(dir: &Path) -> std::io::Result<(std::path::PathBuf, std::fs::File)> {
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let path = dir.join(format!(".tmp-{}", uuid::Uuid::new_v4()));
    let file = opts.open(&path)?;
    Ok((path, file))
}

/// Creates `dir` (and its parents) readable by the owner only, and narrows an existing one.
pub fn create_private_dir(dir: &Path) -> Result<(), FileError> {
    std::fs::create_dir_all(dir).map_err(FileError::at("creating", dir))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
            .map_err(FileError::at("restricting", dir))?;
    }
    Ok(())
}

/// Bytes an unprivileged process may still write in the file system holding `dir` (Unix;
/// `None` elsewhere or when it cannot be read).
pub fn free_bytes(dir: &Path) -> Option<u64> {
    #[cfg(unix)]
    {
        use std::os::unix::ffi::OsStrExt;
        let path = std::ffi::CString::new(dir.as_os_str().as_bytes()).ok()?;
        let mut stats = std::mem::MaybeUninit::<libc::statvfs>::uninit();
        // SAFETY: `path` is a NUL-terminated string and `stats` a buffer of the right type;
        // statvfs fills it when it returns 0, and it is read only then.
        let stats = unsafe {
            if libc::statvfs(path.as_ptr(), stats.as_mut_ptr()) != 0 {
                return None;
            }
            stats.assume_init()
        };
        #[allow(clippy::unnecessary_cast)] // the fields' widths differ between platforms
        Some(stats.f_bavail as u64 * stats.f_frsize as u64)
    }
    #[cfg(not(unix))]
    {
        let _ = dir;
        None
    }
}
