//! Where the data lives, and the key it is sealed with.

use std::path::PathBuf;

use super::ConfigError;
use crate::{
    secret::Secret,
    store::vault::{default_key_file, MasterKey, MasterKeySource},
};

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

/// The storage variables: the data folder and what lives in it, PostgreSQL, the master key.
pub(super) fn from_lookup(
    get: &impl Fn(&str) -> Option<String>,
) -> Result<StorageSettings, ConfigError> {
    let data_dir = PathBuf::from(get("FACELOCK_DATA_DIR").unwrap_or_else(|| "./data".into()));
    Ok(StorageSettings {
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
    })
}
