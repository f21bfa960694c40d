//! Encryption at rest. Descriptors, reference photos and signing keys are sealed with
//! XChaCha20-Poly1305 under a data key; the data key is kept in the store, itself sealed under
//! the master key, which never enters the store: `FACELOCK_MASTER_KEY`, or a key file generated
//! beside the database (mode 0600). Rotating the master key re-seals the data key only, in one
//! step, so it is quick and a crash cannot leave data half re-encrypted.
//!
//! Every sealed value is bound to its row (the face id, the key id) as associated data, so a
//! value copied into another row does not open.

use std::path::{Path, PathBuf};

use base64::{
    engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD},
    Engine as _,
};
use chacha20poly1305::{
    aead::{Aead, KeyInit, Payload},
    XChaCha20Poly1305, XNonce,
};

use crate::files::FileError;

/// Sealed values start with this, so plaintext from before encryption is recognised.
pub const MAGIC: &[u8; 4] = b"FLv1";
const NONCE_LEN: usize = 24;
const KEY_LEN: usize = 32;
/// Associated data of the sealed data key.
const DATA_KEY_AAD: &[u8] = b"facelock data key";

#[derive(Debug, thiserror::Error)]
pub enum VaultError {
    #[error(
        "FACELOCK_MASTER_KEY must be {KEY_LEN} random bytes in base64 (e.g. `openssl rand \
         -base64 32`)"
    )]
    BadMasterKey,
    #[error(
        "the master key does not open this store's data key: set the FACELOCK_MASTER_KEY (or \
         restore the master.key file) the data was written with"
    )]
    WrongMasterKey,
    #[error("a sealed value does not open: it is damaged or belongs to another row")]
    Damaged,
    #[error("the system has no randomness to offer")]
    Randomness(#[source] getrandom::Error),
    #[error(transparent)]
    File(#[from] FileError),
}

/// The key that seals the data key; never stored in the database.
#[derive(Clone)]
pub struct MasterKey([u8; KEY_LEN]);

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MasterKey(**redacted**)")
    }
}

/// Where the master key comes from.
#[derive(Clone, Debug)]
pub enum MasterKeySource {
    /// `FACELOCK_MASTER_KEY`.
    Given(MasterKey),
    /// A file generated on first start.
    File(PathBuf),
}

impl MasterKey {
    pub fn generate() -> Result<Self, VaultError> {
        let mut key = [0u8; KEY_LEN];
        getrandom::fill(&mut key).map_err(VaultError::Randomness)?;
        Ok(Self(key))
    }

    /// Base64 (standard or URL-safe) of 32 bytes.
    pub fn parse(text: &str) -> Result<Self, VaultError> {
        let text = text.trim();
        let bytes = STANDARD
            .decode(text)
            .or_else(|_| URL_SAFE_NO_PAD.decode(text.trim_end_matches('=')))
            .map_err(|_| VaultError::BadMasterKey)?;
        bytes
            .try_into()
            .map(Self)
            .map_err(|_| VaultError::BadMasterKey)
    }

    pub fn to_base64(&self) -> String {
        STANDARD.encode(self.0)
    }

    /// The key from `source`, generating the key file on first use.
    pub fn load(source: &MasterKeySource) -> Result<Self, VaultError> {
        match source {
            MasterKeySource::Given(key) => Ok(key.clone()),
            MasterKeySource::File(path) => match std::fs::read_to_string(path) {
                Ok(text) => Self::parse(&text),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    let key = Self::generate()?;
                    crate::files::write_private(path, key.to_base64().as_bytes())
                        .map_err(FileError::at("writing", path))?;
                    tracing::warn!(path = %path.display(), "generated the master key that encrypts the store; back it up: without it the data cannot be read");
                    Ok(key)
                }
                Err(e) => Err(FileError::new("reading", path.as_path(), e).into()),
            },
        }
    }

    fn cipher(&self) -> XChaCha20Poly1305 {
        XChaCha20Poly1305::new((&self.0).into())
    }
}

/// The default key file beside the database.
pub fn default_key_file(data_dir: &Path) -> PathBuf {
    data_dir.join("master.key")
}

/// Seals and opens values with the data key.
pub struct Vault {
    cipher: XChaCha20Poly1305,
}

impl Vault {
    /// A fresh data key, and that key sealed under `master` (to store).
    pub fn create(master: &MasterKey) -> Result<(Self, Vec<u8>), VaultError> {
        let mut key = [0u8; KEY_LEN];
        getrandom::fill(&mut key).map_err(VaultError::Randomness)?;
        let sealed = seal_with(&master.cipher(), DATA_KEY_AAD, &key)?;
        Ok((
            Self {
                cipher: XChaCha20Poly1305::new((&key).into()),
            },
            sealed,
        ))
    }

    /// Opens the stored data key with `master`.
    pub fn open_with(master: &MasterKey, sealed_key: &[u8]) -> Result<Self, VaultError> {
        let key = open_with(&master.cipher(), DATA_KEY_AAD, sealed_key)
            .map_err(|_| VaultError::WrongMasterKey)?;
        let key: [u8; KEY_LEN] = key.try_into().map_err(|_| VaultError::WrongMasterKey)?;
        Ok(Self {
            cipher: XChaCha20Poly1305::new((&key).into()),
        })
    }

    /// The stored data key re-sealed under `new_master` (master key rotation).
    pub fn reseal_key(
        old_master: &MasterKey,
        new_master: &MasterKey,
        sealed_key: &[u8],
    ) -> Result<Vec<u8>, VaultError> {
        let key = open_with(&old_master.cipher(), DATA_KEY_AAD, sealed_key)
            .map_err(|_| VaultError::WrongMasterKey)?;
        seal_with(&new_master.cipher(), DATA_KEY_AAD, &key)
    }

    /// `plain` sealed and bound to `row`.
    pub fn seal(&self, row: &str, plain: &[u8]) -> Result<Vec<u8>, VaultError> {
        seal_with(&self.cipher, row.as_bytes(), plain)
    }

    /// The plaintext of a value sealed for `row`.
    pub fn open(&self, row: &str, sealed: &[u8]) -> Result<Vec<u8>, VaultError> {
        open_with(&self.cipher, row.as_bytes(), sealed)
    }

    /// Whether `bytes` is a sealed value (rather than plaintext written before encryption).
    pub fn is_sealed(bytes: &[u8]) -> bool {
        bytes.starts_with(MAGIC)
    }
}

fn seal_with(cipher: &XChaCha20Poly1305, aad: &[u8], plain: &[u8]) -> Result<Vec<u8>, VaultError> {
    let mut nonce = [0u8; NONCE_LEN];
    getrandom::fill(&mut nonce).map_err(VaultError::Randomness)?;
    let sealed = cipher
        .encrypt(&XNonce::from(nonce), Payload { msg: plain, aad })
        .map_err(|_| VaultError::Damaged)?;
    let mut out = Vec::with_capacity(MAGIC.len() + NONCE_LEN + sealed.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&nonce);
    out.extend_from_slice(&sealed);
    Ok(out)
}

fn open_with(cipher: &XChaCha20Poly1305, aad: &[u8], sealed: &[u8]) -> Result<Vec<u8>, VaultError> {
    let rest = sealed.strip_prefix(MAGIC).ok_or(VaultError::Damaged)?;
    if rest.len() < NONCE_LEN {
        return Err(VaultError::Damaged);
    }
    let (nonce, body) = rest.split_at(NONCE_LEN);
    let nonce: [u8; NONCE_LEN] = nonce.try_into().map_err(|_| VaultError::Damaged)?;
    cipher
        .decrypt(&XNonce::from(nonce), Payload { msg: body, aad })
        .map_err(|_| VaultError::Damaged)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_values_open_only_in_their_row_and_with_their_key() {
        let master = MasterKey::generate().unwrap();
        let (vault, stored) = Vault::create(&master).unwrap();
        let sealed = vault.seal("face-1", b"descriptor").unwrap();
        assert!(Vault::is_sealed(&sealed));
        assert!(!sealed.windows(10).any(|w| w == b"descriptor"));
        assert_eq!(vault.open("face-1", &sealed).unwrap(), b"descriptor");
        assert!(vault.open("face-2", &sealed).is_err(), "bound to its row");
        let mut tampered = sealed.clone();
        *tampered.last_mut().unwrap() ^= 1;
        assert!(vault.open("face-1", &tampered).is_err());

        // The same data key opens under a rotated master key, and only there.
        let new_master = MasterKey::generate().unwrap();
        let resealed = Vault::reseal_key(&master, &new_master, &stored).unwrap();
        let reopened = Vault::open_with(&new_master, &resealed).unwrap();
        assert_eq!(reopened.open("face-1", &sealed).unwrap(), b"descriptor");
        assert!(matches!(
            Vault::open_with(&master, &resealed),
            Err(VaultError::WrongMasterKey)
        ));
    }

    #[test]
    fn master_keys_parse_from_base64_of_32_bytes() {
        let key = MasterKey::generate().unwrap();
        let parsed = MasterKey::parse(&key.to_base64()).unwrap();
        assert_eq!(parsed.0, key.0);
        assert!(MasterKey::parse("short").is_err());
        assert!(MasterKey::parse(&STANDARD.encode([0u8; 16])).is_err());
        assert!(!format!("{key:?}").contains(&key.to_base64()));
    }
}
