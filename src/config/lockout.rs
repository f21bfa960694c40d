//! Brute-force defences and the audit trail's retention.

use std::time::Duration;

use super::{parse, ConfigError};

/// Brute-force defences: account lockout after failed face logins (the FIDO biometric model:
/// a few attempts, then a growing wait), and the audit trail's retention.
#[derive(Clone, Debug)]
pub struct LockoutSettings {
    /// Failed logins against one claimed user id before it is locked.
    pub threshold: u32,
    /// The first lock; each further failure doubles it.
    pub first_lock: Duration,
    /// The longest lock.
    pub max_lock: Duration,
    /// Failures are forgotten once this long passes without one (a success does not forget
    /// them).
    pub window: Duration,
    /// Failed 1:N logins an address makes before it must wait between attempts.
    pub free_address_failures: u32,
    /// Audit events are kept this long.
    pub audit_retention: Duration,
}

pub(super) fn from_lookup(
    get: &impl Fn(&str) -> Option<String>,
) -> Result<LockoutSettings, ConfigError> {
    let threshold: u32 = parse(get, "FACELOCK_LOCKOUT_THRESHOLD", 5)?;
    if !(1..=100).contains(&threshold) {
        return Err(ConfigError::new(
            "FACELOCK_LOCKOUT_THRESHOLD",
            "must be between 1 and 100",
        ));
    }
    let first: u64 = parse(get, "FACELOCK_LOCKOUT_SECONDS", 30)?;
    let max: u64 = parse(get, "FACELOCK_LOCKOUT_MAX_SECONDS", 900)?;
    if first == 0 || max < first {
        return Err(ConfigError::new(
            "FACELOCK_LOCKOUT_MAX_SECONDS",
            "must be at least FACELOCK_LOCKOUT_SECONDS, which must be above 0",
        ));
    }
    let days: u64 = parse(get, "FACELOCK_AUDIT_RETENTION_DAYS", 90)?;
    if days == 0 {
        return Err(ConfigError::new(
            "FACELOCK_AUDIT_RETENTION_DAYS",
            "must be at least 1",
        ));
    }
    Ok(LockoutSettings {
        threshold,
        first_lock: Duration::from_secs(first),
        max_lock: Duration::from_secs(max),
        window: Duration::from_secs(3600),
        free_address_failures: 5,
        audit_retention: Duration::from_secs(days * 24 * 3600),
    })
}
