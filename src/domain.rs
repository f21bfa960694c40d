//! Domain types parsed once at the edge, so that nothing further in can hold an unchecked string.
//!
//! A [`UserId`] is used as a directory name under `reference_faces/`, as a Rekognition
//! `ExternalImageId` and as the `sub` of issued tokens, so its alphabet is deliberately narrow.

use std::fmt;

use serde::{Deserialize, Serialize};

/// A validated user identifier: 1-128 characters of `[A-Za-z0-9_.-]`, and not `.` or `..`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct UserId(String);

/// Why a field was refused; the message is safe to show to the caller.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct InvalidField(pub String);

/// A request field that was refused, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct InvalidInput {
    pub field: &'static str,
    pub message: String,
}

impl InvalidInput {
    pub fn new(field: &'static str, message: impl Into<String>) -> Self {
        Self {
            field,
            message: message.into(),
        }
    }
}

impl UserId {
    pub const MAX_LEN: usize = 128;

    pub fn parse(raw: &str) -> Result<Self, InvalidField> {
        if raw.is_empty() || raw.len() > Self::MAX_LEN {
            return Err(InvalidField(format!(
                "user_id must be 1 to {} characters long",
                Self::MAX_LEN
            )));
        }
        if !raw
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
        {
            return Err(InvalidField(
                "user_id may contain only letters, digits, '_', '.' and '-'".into(),
            ));
        }
        // The alphabet already excludes '/', but "." and ".." would still name a directory.
        if raw.bytes().all(|b| b == b'.') {
            return Err(InvalidField("user_id cannot consist only of dots".into()));
        }
        Ok(Self(raw.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Hashes and compares as its text, so maps keyed by ids are searched with a `&str`.
impl std::borrow::Borrow<str> for UserId {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for UserId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for UserId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(d)?;
        UserId::parse(&raw).map_err(serde::de::Error::custom)
    }
}

/// An e-mail address, checked for shape only (one `@`, a dotted domain, no spaces or controls).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct Email(String);

impl Email {
    pub fn parse(raw: &str) -> Result<Self, InvalidField> {
        let raw = raw.trim();
        let bad = || InvalidField("email is not a valid e-mail address".into());
        if raw.len() > 254 || raw.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(bad());
        }
        let (local, domain) = raw.split_once('@').ok_or_else(bad)?;
        if local.is_empty()
            || domain.contains('@')
            || !domain.contains('.')
            || domain.starts_with('.')
            || domain.ends_with('.')
        {
            return Err(bad());
        }
        Ok(Self(raw.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A display name: trimmed, at most 200 characters, no control characters.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct FullName(String);

impl FullName {
    pub const MAX_CHARS: usize = 200;

    pub fn parse(raw: &str) -> Result<Self, InvalidField> {
        let raw = raw.trim();
        if raw.chars().count() > Self::MAX_CHARS {
            return Err(InvalidField(format!(
                "full_name must be at most {} characters",
                Self::MAX_CHARS
            )));
        }
        if raw.chars().any(char::is_control) {
            return Err(InvalidField(
                "full_name must not contain control characters".into(),
            ));
        }
        Ok(Self(raw.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A similarity on the 0-100 scale the original API uses.
#[derive(Clone, Copy, Debug, PartialEq, PartialOrd, Serialize)]
#[serde(transparent)]
pub struct Similarity(f32);

impl Similarity {
    pub fn new(value: f32) -> Result<Self, InvalidField> {
        if value.is_finite() && (0.0..=100.0).contains(&value) {
            Ok(Self(value))
        } else {
            Err(InvalidField(
                "similarity_threshold must be a number from 0 to 100".into(),
            ))
        }
    }

    /// For values an engine computed; clamps rather than fails.
    pub fn clamped(value: f32) -> Self {
        Self(if value.is_nan() {
            0.0
        } else {
            value.clamp(0.0, 100.0)
        })
    }

    pub fn value(self) -> f32 {
        self.0
    }
}

/// A registered user as the rest of Face Lock sees it.
#[derive(Clone, Debug)]
pub struct User {
    /// The user's generation: a store row id that is never reused, so a user deleted and
    /// registered again under the same id is another generation, and tokens bound to the old one
    /// stay refused.
    pub generation: i64,
    pub user_id: UserId,
    pub full_name: Option<String>,
    pub email: Option<String>,
    pub registered_at: crate::clock::Timestamp,
    pub face_count: u32,
    /// Whether the store grants this user the admin role (besides `FACELOCK_ADMIN_USERS`).
    pub admin: bool,
}

/// Keyset pagination over user ids, in ascending order.
#[derive(Clone, Debug)]
pub struct Page {
    /// 1 to [`Page::MAX_LIMIT`] users.
    pub limit: u32,
    /// Users whose id sorts after this one.
    pub after: Option<UserId>,
}

impl Page {
    pub const MAX_LIMIT: u32 = 500;
    pub const DEFAULT_LIMIT: u32 = 100;

    /// A page request as a client sends it: a limit (default 100) and the previous page's last
    /// user id.
    pub fn parse(limit: Option<u32>, after: Option<&str>) -> Result<Self, InvalidInput> {
        let limit = limit.unwrap_or(Self::DEFAULT_LIMIT);
        if !(1..=Self::MAX_LIMIT).contains(&limit) {
            return Err(InvalidInput::new(
                "limit",
                format!("must be between 1 and {}", Self::MAX_LIMIT),
            ));
        }
        let after = after
            .map(UserId::parse)
            .transpose()
            .map_err(|e| InvalidInput::new("cursor", e.0))?;
        Ok(Self { limit, after })
    }
}

/// The role a user holds: admins are the users granted it in the store, and the user ids
/// listed in `FACELOCK_ADMIN_USERS` (the bootstrap).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    User,
    Admin,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_id_accepts_the_documented_alphabet() {
        for ok in ["a", "user123", "Jane.Doe-01_x", &"x".repeat(128)] {
            assert!(UserId::parse(ok).is_ok(), "{ok}");
        }
    }

    #[test]
    fn user_id_refuses_traversal_and_odd_characters() {
        for bad in [
            "",
            ".",
            "..",
            "...",
            "../etc",
            "a/b",
            "a\\b",
            "a b",
            "é",
            "a\0b",
            "%2e%2e",
            &"x".repeat(129),
        ] {
            assert!(UserId::parse(bad).is_err(), "{bad:?} should be refused");
        }
    }

    #[test]
    fn email_shape() {
        assert!(Email::parse("a@b.co").is_ok());
        for bad in [
            "", "a", "a@b", "@b.co", "a@.co", "a@b.", "a b@c.de", "a@b@c.de",
        ] {
            assert!(Email::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn similarity_range() {
        assert!(Similarity::new(0.0).is_ok());
        assert!(Similarity::new(100.0).is_ok());
        assert!(Similarity::new(-0.1).is_err());
        assert!(Similarity::new(100.1).is_err());
        assert!(Similarity::new(f32::NAN).is_err());
        assert_eq!(Similarity::clamped(150.0).value(), 100.0);
    }
}
