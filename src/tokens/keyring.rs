//! ES256 signing keys: generated on first start, kept in the store, rotated by
//! `facelock keys rotate`, published as a JWKS.
//!
//! The newest key that is not retired signs. A rotation retires the previous key, which stays
//! published (and accepted) until every access token it signed has expired, then drops out.
//! Every server sharing the store reloads the key set every 30 seconds, and at once (at most
//! every 2 seconds) when a token names a key it does not know: a rotation needs no restart.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, RwLock},
    time::{Duration, Instant},
};

use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine as _};
use jsonwebtoken::{DecodingKey, EncodingKey};
use p256::{elliptic_curve::sec1::ToEncodedPoint, pkcs8::EncodePrivateKey};
use sha2::{Digest, Sha256};

use super::TokenError;
use crate::{
    clock::Timestamp,
    store::{KeyStore, StoredKey},
};

const RELOAD_EVERY: Duration = Duration::from_secs(30);
const RELOAD_ON_MISS_EVERY: Duration = Duration::from_secs(2);

/// A new P-256 key with its JWK and RFC 7638 thumbprint as `kid`.
pub fn generate_es256() -> Result<StoredKey, TokenError> {
    let secret = loop {
        let mut raw = [0u8; 32];
        getrandom::fill(&mut raw).map_err(TokenError::Randomness)?;
        // Fails only for the (astronomically rare) scalars outside the curve order.
        if let Ok(key) = p256::SecretKey::from_slice(&raw) {
            break key;
        }
    };
    let point = secret.public_key().to_encoded_point(false);
    let (Some(x), Some(y)) = (point.x(), point.y()) else {
        return Err(TokenError::KeyEncoding("no affine point".into()));
    };
    let (x, y) = (URL_SAFE_NO_PAD.encode(x), URL_SAFE_NO_PAD.encode(y));
    // RFC 7638: the hash of the required members, in lexicographic order, without spaces.
    let canonical = format!(r#"{{"crv":"P-256","kty":"EC","x":"{x}","y":"{y}"}}"#);
    let kid = URL_SAFE_NO_PAD.encode(Sha256::digest(canonical.as_bytes()));
    let jwk = serde_json::json!({
        "kty": "EC", "crv": "P-256", "x": x, "y": y,
        "kid": kid, "use": "sig", "alg": "ES256",
    });
    let der = secret
        .to_pkcs8_der()
        .map_err(|e| TokenError::KeyEncoding(e.to_string()))?;
    Ok(StoredKey {
        kid,
        alg: "ES256".into(),
        private_der: der.as_bytes().to_vec(),
        public_jwk: jwk.to_string(),
        created_at: Timestamp::now(),
        retired_at: None,
    })
}

/// Whether a key may still verify tokens: live, or retired less than a token lifetime ago.
fn is_published(key: &StoredKey, token_ttl: Duration, now: Timestamp) -> bool {
    key.retired_at
        .is_none_or(|retired| retired + token_ttl + RETIRED_GRACE > now)
}

/// How long after its last token can have expired a retired key is still published.
const RETIRED_GRACE: Duration = Duration::from_secs(60);

struct Loaded {
    signing: Option<(String, Arc<EncodingKey>)>,
    verifying: HashMap<String, Arc<DecodingKey>>,
    jwks: Vec<serde_json::Value>,
}

pub struct KeyRing {
    store: Arc<dyn KeyStore>,
    token_ttl: Duration,
    loaded: RwLock<Loaded>,
    last_reload: Mutex<Instant>,
}

impl KeyRing {
    /// Loads the keys, creating the first one if the store has none that signs.
    pub async fn open(store: Arc<dyn KeyStore>, token_ttl: Duration) -> Result<Self, TokenError> {
        let keys = store.signing_keys().await?;
        if keys.iter().all(|k| k.retired_at.is_some()) {
            let key = generate_es256()?;
            tracing::info!(kid = %key.kid, "generated the first ES256 signing key");
            store.add_signing_key(key, Timestamp::now()).await?;
        }
        let ring = Self {
            store,
            token_ttl,
            loaded: RwLock::new(Loaded {
                signing: None,
                verifying: HashMap::new(),
                jwks: Vec::new(),
            }),
            last_reload: Mutex::new(Instant::now()),
        };
        ring.reload().await?;
        Ok(ring)
    }

    /// Adds a new signing key and retires the current one. Returns the new key.
    pub async fn rotate(store: &dyn KeyStore) -> Result<StoredKey, TokenError> {
        let key = generate_es256()?;
        store.add_signing_key(key.clone(), Timestamp::now()).await?;
        Ok(key)
    }

    /// Until when a retired key stays published.
    pub fn published_until(key: &StoredKey, token_ttl: Duration) -> Option<Timestamp> {
        key.retired_at.map(|r| r + token_ttl + RETIRED_GRACE)
    }

    /// Re-reads the key set from the store and forgets keys no token can need any more.
    pub async fn reload(&self) -> Result<(), TokenError> {
        let now = Timestamp::now();
        let cutoff = now - self.token_ttl - RETIRED_GRACE;
        self.store.drop_keys_retired_before(cutoff).await?;
        let keys = self.store.signing_keys().await?;
        let mut loaded = Loaded {
            signing: None,
            verifying: HashMap::new(),
            jwks: Vec::new(),
        };
        for key in keys.iter().filter(|k| is_published(k, self.token_ttl, now)) {
            let damaged = |reason: String| TokenError::DamagedKey {
                kid: key.kid.clone(),
                reason,
            };
            let jwk: serde_json::Value =
                serde_json::from_str(&key.public_jwk).map_err(|e| damaged(e.to_string()))?;
            let (Some(x), Some(y)) = (jwk["x"].as_str(), jwk["y"].as_str()) else {
                return Err(damaged("no public point".into()));
            };
            let decoding =
                DecodingKey::from_ec_components(x, y).map_err(|e| damaged(e.to_string()))?;
            loaded.verifying.insert(key.kid.clone(), Arc::new(decoding));
            loaded.jwks.push(jwk);
            if key.retired_at.is_none() && loaded.signing.is_none() {
                loaded.signing = Some((
                    key.kid.clone(),
                    Arc::new(EncodingKey::from_ec_der(&key.private_der)),
                ));
            }
        }
        *self.loaded.write().unwrap_or_else(|p| p.into_inner()) = loaded;
        *self.last_reload.lock().unwrap_or_else(|p| p.into_inner()) = Instant::now();
        Ok(())
    }

    fn due(&self, every: Duration) -> bool {
        self.last_reload
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .elapsed()
            >= every
    }

    /// Reloads when the periodic interval has passed.
    pub async fn refresh_if_due(&self) {
        if self.due(RELOAD_EVERY) {
            if let Err(e) = self.reload().await {
                tracing::warn!(error = %crate::telemetry::error_chain(&e), "could not reload signing keys");
            }
        }
    }

    /// The key that signs now, and its `kid`.
    pub async fn signing_key(&self) -> Result<(String, Arc<EncodingKey>), TokenError> {
        self.refresh_if_due().await;
        let loaded = self.loaded.read().unwrap_or_else(|p| p.into_inner());
        loaded.signing.clone().ok_or(TokenError::NoSigningKey)
    }

    /// The published key named `kid`; an unknown `kid` triggers one early reload.
    pub async fn verifying_key(&self, kid: &str) -> Option<Arc<DecodingKey>> {
        self.refresh_if_due().await;
        let found = {
            let loaded = self.loaded.read().unwrap_or_else(|p| p.into_inner());
            loaded.verifying.get(kid).cloned()
        };
        if found.is_some() || !self.due(RELOAD_ON_MISS_EVERY) {
            return found;
        }
        if let Err(e) = self.reload().await {
            tracing::warn!(error = %crate::telemetry::error_chain(&e), "could not reload signing keys");
        }
        let loaded = self.loaded.read().unwrap_or_else(|p| p.into_inner());
        loaded.verifying.get(kid).cloned()
    }

    /// The public keys, for `/.well-known/jwks.json`.
    pub async fn jwks(&self) -> Vec<serde_json::Value> {
        self.refresh_if_due().await;
        self.loaded
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .jwks
            .clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_keys_sign_and_verify_and_carry_a_thumbprint() {
        let key = generate_es256().unwrap();
        assert_eq!(key.kid.len(), 43, "base64url of a SHA-256");
        let jwk: serde_json::Value = serde_json::from_str(&key.public_jwk).unwrap();
        let encoding = EncodingKey::from_ec_der(&key.private_der);
        let decoding =
            DecodingKey::from_ec_components(jwk["x"].as_str().unwrap(), jwk["y"].as_str().unwrap())
                .unwrap();
        let header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256);
        let claims = serde_json::json!({"sub": "a", "exp": Timestamp::now().unix_seconds() + 60});
        let token = jsonwebtoken::encode(&header, &claims, &encoding).unwrap();
        let mut v = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::ES256);
        v.required_spec_claims.clear();
        jsonwebtoken::decode::<serde_json::Value>(&token, &decoding, &v).unwrap();
        assert_ne!(generate_es256().unwrap().kid, key.kid);
    }
}
