//! The one time type of Face Lock: every stored or compared instant is a [`Timestamp`], unix
//! milliseconds in UTC. Token claims carry seconds because JWT says so; they are converted here
//! and nowhere else.

use std::{
    fmt,
    ops::{Add, Sub},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

/// An instant as unix milliseconds (UTC).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(i64);

impl Timestamp {
    pub fn now() -> Self {
        let ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or_default();
        Self(ms)
    }

    pub const fn from_unix_millis(ms: i64) -> Self {
        Self(ms)
    }

    pub const fn from_unix_seconds(s: i64) -> Self {
        Self(s.saturating_mul(1000))
    }

    pub const fn unix_millis(self) -> i64 {
        self.0
    }

    /// Whole seconds, rounded down: the unit of JWT's `iat`, `nbf` and `exp`.
    pub const fn unix_seconds(self) -> i64 {
        self.0.div_euclid(1000)
    }

    /// RFC 3339 in UTC, e.g. `2026-01-31T12:00:00Z`.
    pub fn rfc3339(self) -> String {
        let nanos = i128::from(self.0) * 1_000_000;
        time::OffsetDateTime::from_unix_timestamp_nanos(nanos)
            .ok()
            .and_then(|t| {
                // Second precision reads better and is all a registration time needs.
                t.replace_nanosecond(0)
                    .ok()?
                    .format(&time::format_description::well_known::Rfc3339)
                    .ok()
            })
            .unwrap_or_else(|| self.0.to_string())
    }
}

impl Add<Duration> for Timestamp {
    type Output = Self;
    fn add(self, d: Duration) -> Self {
        Self(self.0.saturating_add(d.as_millis() as i64))
    }
}

impl Sub<Duration> for Timestamp {
    type Output = Self;
    fn sub(self, d: Duration) -> Self {
        Self(self.0.saturating_sub(d.as_millis() as i64))
    }
}

impl Sub for Timestamp {
    type Output = Duration;
    /// The time from `other` to `self`; zero when `other` is later.
    fn sub(self, other: Self) -> Duration {
        Duration::from_millis(self.0.saturating_sub(other.0).max(0) as u64)
    }
}

/// Serialised as RFC 3339, for people and JSON lines.
impl serde::Serialize for Timestamp {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.rfc3339())
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.rfc3339())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seconds_and_rfc3339() {
        let t = Timestamp::from_unix_millis(1_769_860_800_123);
        assert_eq!(t.unix_seconds(), 1_769_860_800);
        assert_eq!(t.rfc3339(), "2026-01-31T12:00:00Z");
        assert_eq!(
            Timestamp::from_unix_seconds(10) + Duration::from_secs(5),
            Timestamp::from_unix_seconds(15)
        );
        assert_eq!(
            Timestamp::from_unix_seconds(15) - Timestamp::from_unix_seconds(10),
            Duration::from_secs(5)
        );
        assert_eq!(
            Timestamp::from_unix_seconds(10) - Timestamp::from_unix_seconds(15),
            Duration::ZERO
        );
    }
}
