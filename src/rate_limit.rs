//! Per-client rate limiting of the endpoints that run the face engine (verify, register,
//! compare): a token bucket per client IP, and a cap on its requests in flight. It slows down
//! brute-force logins (trying photo after photo of a victim) and keeps one client from
//! monopolising the engine.
//!
//! The client is the socket peer address, or the address a trusted proxy forwards
//! (`FACELOCK_TRUSTED_PROXIES`). On a shared store the limit is counted in the store, so every
//! server behind a balancer applies the same one.

use std::{
    collections::HashMap,
    net::IpAddr,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use crate::tally::Tally;

/// Buckets idle for this long are dropped, bounding memory under many clients.
const IDLE: Duration = Duration::from_secs(600);

pub struct RateLimiter {
    /// Requests allowed per minute and per client, also the burst size; 0 turns limiting off.
    per_minute: u32,
    buckets: Mutex<Buckets>,
}

struct Buckets {
    by_ip: HashMap<IpAddr, Bucket>,
    last_sweep: Instant,
}

struct Bucket {
    tokens: f64,
    updated: Instant,
}

impl RateLimiter {
    pub fn new(per_minute: u32) -> Self {
        Self {
            per_minute,
            buckets: Mutex::new(Buckets {
                by_ip: HashMap::new(),
                last_sweep: Instant::now(),
            }),
        }
    }

    /// Takes one request from `ip`'s bucket, or says how long until one is available.
    pub fn check(&self, ip: IpAddr, now: Instant) -> Result<(), Duration> {
        if self.per_minute == 0 {
            return Ok(());
        }
        let capacity = f64::from(self.per_minute);
        let per_second = capacity / 60.0;
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        if now.duration_since(buckets.last_sweep) > IDLE {
            buckets
                .by_ip
                .retain(|_, b| now.duration_since(b.updated) < IDLE);
            buckets.last_sweep = now;
        }
        let bucket = buckets.by_ip.entry(ip).or_insert(Bucket {
            tokens: capacity,
            updated: now,
        });
        let elapsed = now.duration_since(bucket.updated).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * per_second).min(capacity);
        bucket.updated = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - bucket.tokens) / per_second))
        }
    }
}

/// Where the per-address request limit is counted: in this process (a token bucket), or in
/// the store every server shares (fixed one-minute windows), so a client spreading requests
/// over several replicas behind a balancer meets the same limit.
pub enum RequestLimit {
    Local(RateLimiter),
    Shared {
        per_minute: u32,
        counters: std::sync::Arc<dyn crate::store::CounterStore>,
    },
}

impl RequestLimit {
    /// Counts one request from `ip`, or says how long until one is allowed. A store that
    /// cannot be reached lets the request through (logged): the engine's own concurrency
    /// bound still holds, and a login does not fail because a counter could not be written.
    pub async fn admit(&self, ip: IpAddr) -> Result<(), Duration> {
        match self {
            Self::Local(limiter) => limiter.check(ip, Instant::now()),
            Self::Shared { per_minute: 0, .. } => Ok(()),
            Self::Shared {
                per_minute,
                counters,
            } => {
                let now = crate::clock::Timestamp::now().unix_millis();
                let window = now - now.rem_euclid(60_000);
                match counters.count_request(&ip.to_string(), window).await {
                    Ok(count) if count > *per_minute => Err(Duration::from_millis(
                        (window + 60_000 - now).max(1000) as u64,
                    )),
                    Ok(_) => Ok(()),
                    Err(e) => {
                        tracing::warn!(error = %crate::telemetry::error_chain(&e), "could not count a request; letting it through");
                        Ok(())
                    }
                }
            }
        }
    }
}

/// Requests doing face work at once, per client address: a client cannot hold more of the
/// server's memory (bodies of up to the body limit, a decoded frame each) and queue than this.
pub struct InFlight {
    max: usize,
    by_ip: Mutex<Tally<IpAddr>>,
}

/// One request in flight, counted until dropped.
pub struct InFlightGuard {
    owner: Arc<InFlight>,
    ip: IpAddr,
}

impl InFlight {
    pub fn new(max: usize) -> Arc<Self> {
        Arc::new(Self {
            max,
            by_ip: Mutex::new(Tally::default()),
        })
    }

    /// Counts a request of `ip` in, unless it has the most in flight already.
    pub fn enter(self: &Arc<Self>, ip: IpAddr) -> Option<InFlightGuard> {
        let mut by_ip = self.by_ip.lock().unwrap_or_else(|p| p.into_inner());
        if by_ip.get(&ip) >= self.max {
            return None;
        }
        by_ip.add(ip);
        Some(InFlightGuard {
            owner: self.clone(),
            ip,
        })
    }
}

impl Drop for InFlightGuard {
    fn drop(&mut self) {
        let mut by_ip = self.owner.by_ip.lock().unwrap_or_else(|p| p.into_inner());
        by_ip.take(&self.ip);
    }
}

/// Where the per-address delay after failed 1:N logins is kept: in this process, or in the
/// store every server shares, so an address cannot multiply its free attempts by the number of
/// replicas it reaches.
pub enum AddressDelay {
    Local(FailureDelay),
    Shared {
        free: u32,
        max: Duration,
        store: std::sync::Arc<dyn crate::store::LockoutStore>,
    },
}

impl AddressDelay {
    /// How long `ip` must still wait, if at all. A store that cannot be read lets it through
    /// (logged); the account lockout and request limit still hold.
    pub async fn check(&self, ip: IpAddr) -> Result<(), Duration> {
        match self {
            Self::Local(delay) => delay.check(ip, Instant::now()),
            Self::Shared { store, .. } => {
                let now = crate::clock::Timestamp::now();
                match store.address_wait(&ip.to_string()).await {
                    Ok(Some(until)) if until > now => Err(Duration::from_millis(
                        (until.unix_millis() - now.unix_millis()) as u64,
                    )),
                    Ok(_) => Ok(()),
                    Err(e) => {
                        tracing::warn!(error = %crate::telemetry::error_chain(&e), "could not read an address's wait");
                        Ok(())
                    }
                }
            }
        }
    }

    /// Takes back one failure counted against `ip` (a liveness challenge it fetched, once
    /// passed). A wait already earned runs its course.
    pub async fn forgive(&self, ip: IpAddr) {
        match self {
            Self::Local(delay) => delay.forgive(ip),
            Self::Shared { store, .. } => {
                if let Err(e) = store.forgive_address_failure(&ip.to_string()).await {
                    tracing::warn!(error = %crate::telemetry::error_chain(&e), "could not take back a failure of an address");
                }
            }
        }
    }

    /// Counts a failure from `ip`.
    pub async fn failed(&self, ip: IpAddr) {
        match self {
            Self::Local(delay) => {
                delay.failed(ip, Instant::now());
            }
            Self::Shared { free, max, store } => {
                let now = crate::clock::Timestamp::now();
                let address = ip.to_string();
                let counted = store
                    .record_address_failure(&address, now, now - IDLE)
                    .await;
                let result = match counted {
                    Ok(count) => match wait_after(count, *free, *max) {
                        wait if wait.is_zero() => Ok(()),
                        wait => store.set_address_wait(&address, now + wait).await,
                    },
                    Err(e) => Err(e),
                };
                if let Err(e) = result {
                    tracing::warn!(error = %crate::telemetry::error_chain(&e), "could not count a failed login of an address");
                }
            }
        }
    }
}

/// The wait the `count`th failure earns: none for the first `free`, then 1 s, 2 s, 4 s ...
/// up to `max`.
fn wait_after(count: u32, free: u32, max: Duration) -> Duration {
    let over = count.saturating_sub(free);
    if over == 0 {
        Duration::ZERO
    } else {
        Duration::from_secs(1u64 << (over - 1).min(16)).min(max)
    }
}

/// A per-address delay after failed face logins that name no user (1:N, where no account can be
/// locked): the first `free` failures cost nothing, each further one makes the address wait
/// 1 s, 2 s, 4 s ... up to `max`. Failures are forgotten only with time (after ten minutes
/// without one, counted from the end of the last wait): a success from the address clears
/// nothing, or an attacker enrolled under an id of their own would log in between guesses to
/// start afresh.
pub struct FailureDelay {
    free: u32,
    max: Duration,
    by_ip: Mutex<HashMap<IpAddr, Failures>>,
}

struct Failures {
    count: u32,
    wait_until: Instant,
    last: Instant,
}

impl FailureDelay {
    pub fn new(free: u32, max: Duration) -> Self {
        Self {
            free,
            max,
            by_ip: Mutex::new(HashMap::new()),
        }
    }

    /// How long `ip` must still wait, if at all.
    pub fn check(&self, ip: IpAddr, now: Instant) -> Result<(), Duration> {
        let by_ip = self.by_ip.lock().unwrap_or_else(|p| p.into_inner());
        match by_ip.get(&ip) {
            Some(f) if f.wait_until > now => Err(f.wait_until - now),
            _ => Ok(()),
        }
    }

    /// Takes back one failure of `ip`; a wait already earned runs its course.
    pub fn forgive(&self, ip: IpAddr) {
        let mut by_ip = self.by_ip.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(f) = by_ip.get_mut(&ip) {
            f.count = f.count.saturating_sub(1);
        }
    }

    /// Counts a failure from `ip`; returns how long it must now wait.
    pub fn failed(&self, ip: IpAddr, now: Instant) -> Duration {
        let mut by_ip = self.by_ip.lock().unwrap_or_else(|p| p.into_inner());
        if by_ip.len() > 10_000 {
            by_ip.retain(|_, f| now.duration_since(f.last) < IDLE);
        }
        let f = by_ip.entry(ip).or_insert(Failures {
            count: 0,
            wait_until: now,
            last: now,
        });
        // Quiet means ten minutes without a failure after the last wait ran out: a wait longer
        // than that must not wipe the count it was earned by.
        if now.duration_since(f.last.max(f.wait_until)) >= IDLE {
            f.count = 0;
        }
        f.count += 1;
        f.last = now;
        let wait = wait_after(f.count, self.free, self.max);
        f.wait_until = now + wait;
        wait
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_beyond_the_free_ones_make_an_address_wait_longer_each_time() {
        let delay = FailureDelay::new(2, Duration::from_secs(5));
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let other: IpAddr = "192.0.2.2".parse().unwrap();
        let t0 = Instant::now();
        assert_eq!(delay.failed(ip, t0), Duration::ZERO);
        assert_eq!(delay.failed(ip, t0), Duration::ZERO);
        assert_eq!(delay.failed(ip, t0), Duration::from_secs(1));
        assert!(delay.check(ip, t0).is_err());
        assert!(delay.check(other, t0).is_ok());
        let t1 = t0 + Duration::from_secs(1);
        assert!(delay.check(ip, t1).is_ok());
        assert_eq!(delay.failed(ip, t1), Duration::from_secs(2));
        assert_eq!(delay.failed(ip, t1), Duration::from_secs(4));
        assert_eq!(delay.failed(ip, t1), Duration::from_secs(5), "capped");
        // A failure taken back is no longer counted; the wait it earned stays.
        delay.forgive(ip);
        delay.forgive(ip);
        assert!(delay.check(ip, t1).is_err());
        assert_eq!(delay.failed(ip, t1), Duration::from_secs(4));
        // Only ten quiet minutes after the last wait start the count afresh.
        let quiet = t1 + Duration::from_secs(4) + IDLE;
        assert!(delay.check(ip, quiet).is_ok());
        assert_eq!(delay.failed(ip, quiet), Duration::ZERO);
    }

    #[test]
    fn a_wait_longer_than_the_quiet_time_does_not_wipe_the_count() {
        let max = Duration::from_secs(900);
        let delay = FailureDelay::new(0, max);
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let mut now = Instant::now();
        let mut wait = Duration::ZERO;
        while wait < max {
            wait = delay.failed(ip, now);
            now += wait;
        }
        assert!(delay.check(ip, now).is_ok());
        assert_eq!(delay.failed(ip, now + Duration::from_secs(1)), max);
    }

    #[test]
    fn an_address_has_at_most_so_many_requests_in_flight() {
        let in_flight = InFlight::new(2);
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let other: IpAddr = "192.0.2.2".parse().unwrap();
        let first = in_flight.enter(ip).unwrap();
        let _second = in_flight.enter(ip).unwrap();
        assert!(in_flight.enter(ip).is_none());
        assert!(in_flight.enter(other).is_some());
        drop(first);
        assert!(
            in_flight.enter(ip).is_some(),
            "a finished request frees its place"
        );
    }

    #[test]
    fn a_bucket_empties_and_refills() {
        let limiter = RateLimiter::new(3);
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let other: IpAddr = "192.0.2.2".parse().unwrap();
        let t0 = Instant::now();
        for _ in 0..3 {
            assert!(limiter.check(ip, t0).is_ok());
        }
        let wait = limiter.check(ip, t0).unwrap_err();
        assert!(
            wait > Duration::from_secs(15) && wait <= Duration::from_secs(20),
            "{wait:?}"
        );
        assert!(
            limiter.check(other, t0).is_ok(),
            "clients are limited separately"
        );
        assert!(limiter.check(ip, t0 + Duration::from_secs(20)).is_ok());
        assert!(limiter.check(ip, t0 + Duration::from_secs(20)).is_err());
    }

    #[test]
    fn zero_turns_it_off() {
        let limiter = RateLimiter::new(0);
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        for _ in 0..1000 {
            assert!(limiter.check(ip, Instant::now()).is_ok());
        }
    }
}
