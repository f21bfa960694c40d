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
use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, CHACHA20_POLY1305};

use crate::files::FileError;

/// Sealed values start with this, so plaintext from before encryption is recognised.
pub const MAGIC: &[u8; 4] = b"FLv1";
const NONCE_LEN: usize = 24;
const KEY_LEN: usize = 32;
const TAG_LEN: usize = 16;
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
        XChaCha20Poly1305 { key: self.0 }
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
                cipher: XChaCha20Poly1305 { key },
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
            cipher: XChaCha20Poly1305 { key },
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

    /// The plaintext of a value sealed for `row`, decrypted where it lies (no copy: loading
    /// every descriptor at start-up is mostly this).
    pub fn open_in_place<'a>(
        &self,
        row: &str,
        sealed: &'a mut [u8],
    ) -> Result<&'a [u8], VaultError> {
        if !sealed.starts_with(MAGIC) {
            return Err(VaultError::Damaged);
        }
        self.cipher
            .open_in_place(row.as_bytes(), &mut sealed[MAGIC.len()..])
    }

    /// Whether `bytes` is a sealed value (rather than plaintext written before encryption).
    pub fn is_sealed(bytes: &[u8]) -> bool {
        bytes.starts_with(MAGIC)
    }
}

/// XChaCha20-Poly1305 (draft-irtf-cfrg-xchacha): HChaCha20 derives a subkey from the key and
/// the first 16 bytes of the 24-byte nonce, and ChaCha20-Poly1305 (RFC 8439) seals with that
/// subkey and a 12-byte nonce of four zero bytes and the nonce's last 8. The AEAD is ring's,
/// whose vector code is chosen at run time (several times faster than the portable crates
/// here, and a start-up opens every descriptor); a test checks the result against the
/// `chacha20poly1305` crate that sealed the values of earlier releases.
struct XChaCha20Poly1305 {
    key: [u8; KEY_LEN],
}

impl XChaCha20Poly1305 {
    fn subkey(&self, nonce: &[u8; NONCE_LEN]) -> Result<(LessSafeKey, Nonce), VaultError> {
        let (head, tail) = nonce.split_at(16);
        let head: [u8; 16] = head.try_into().map_err(|_| VaultError::Damaged)?;
        let subkey =
            chacha20::hchacha::<chacha20::cipher::consts::U10>(&self.key.into(), &head.into());
        let key = UnboundKey::new(&CHACHA20_POLY1305, &subkey).map_err(|_| VaultError::Damaged)?;
        let mut short = [0u8; 12];
        short[4..].copy_from_slice(tail);
        Ok((LessSafeKey::new(key), Nonce::assume_unique_for_key(short)))
    }

    /// A random nonce, then the ciphertext and its tag.
    fn seal(&self, aad: &[u8], plain: &[u8]) -> Result<Vec<u8>, VaultError> {
        let mut nonce = [0u8; NONCE_LEN];
        getrandom::fill(&mut nonce).map_err(VaultError::Randomness)?;
        let (key, short) = self.subkey(&nonce)?;
        let mut out = Vec::with_capacity(NONCE_LEN + plain.len() + TAG_LEN);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(plain);
        let tag = key
            .seal_in_place_separate_tag(short, Aad::from(aad), &mut out[NONCE_LEN..])
            .map_err(|_| VaultError::Damaged)?;
        out.extend_from_slice(tag.as_ref());
        Ok(out)
    }

    /// Opens what [`Self::seal`] made, in place; the plaintext is a prefix of what follows
    /// the nonce.
    fn open_in_place<'a>(&self, aad: &[u8], sealed: &'a mut [u8]) -> Result<&'a [u8], VaultError> {
        if sealed.len() < NONCE_LEN + TAG_LEN {
            return Err(VaultError::Damaged);
        }
        let (nonce, body) = sealed.split_at_mut(NONCE_LEN);
        let nonce: &[u8; NONCE_LEN] = (&*nonce).try_into().map_err(|_| VaultError::Damaged)?;
        let (key, short) = self.subkey(nonce)?;
        key.open_in_place(short, Aad::from(aad), body)
            .map(|plain| &*plain)
            .map_err(|_| VaultError::Damaged)
    }
}

fn seal_with(cipher: &XChaCha20Poly1305, aad: &[u8], plain: &[u8]) -> Result<Vec<u8>, VaultError> {
    let sealed = cipher.seal(aad, plain)?;
    let mut out = Vec::with_capacity(MAGIC.len() + sealed.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&sealed);
    Ok(out)
}

fn open_with(cipher: &XChaCha20Poly1305, aad: &[u8], sealed: &[u8]) -> Result<Vec<u8>, VaultError> {
    let rest = sealed.strip_prefix(MAGIC).ok_or(VaultError::Damaged)?;
    let mut body = rest.to_vec();
    let len = cipher.open_in_place(aad, &mut body)?.len();
    body.drain(..NONCE_LEN);
    body.truncate(len);
    Ok(body)
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
    fn values_are_xchacha20_poly1305_as_earlier_releases_sealed_them() {
        use chacha20poly1305::{
            aead::{Aead, KeyInit, Payload},
            XNonce,
        };
        let key = [7u8; KEY_LEN];
        let ours = XChaCha20Poly1305 { key };
        let reference = chacha20poly1305::XChaCha20Poly1305::new(&key.into());
        let plain: Vec<u8> = (0..=255u8).cycle().take(700).collect();
        for len in [0, 1, 16, 63, 64, 65, 512, 700] {
            let nonce = [len as u8 ^ 0x5a; NONCE_LEN];
            let msg = &plain[..len];
            let theirs = reference
                .encrypt(
                    &XNonce::from(nonce),
                    Payload {
                        msg,
                        aad: b"face-1",
                    },
                )
                .unwrap();
            let mut sealed = nonce.to_vec();
            sealed.extend_from_slice(&theirs);
            assert_eq!(
                ours.open_in_place(b"face-1", &mut sealed.clone()).unwrap(),
                msg
            );
            assert!(ours.open_in_place(b"face-2", &mut sealed.clone()).is_err());
            // And what we seal, the reference opens.
            let mine = ours.seal(b"face-1", msg).unwrap();
            let (n, body) = mine.split_at(NONCE_LEN);
            let opened = reference
                .decrypt(
                    &XNonce::from(<[u8; NONCE_LEN]>::try_from(n).unwrap()),
                    Payload {
                        msg: body,
                        aad: b"face-1",
                    },
                )
                .unwrap();
            assert_eq!(opened, msg);
        }
        assert!(
            ours.open_in_place(b"", &mut [0u8; 39]).is_err(),
            "too short"
        );
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
