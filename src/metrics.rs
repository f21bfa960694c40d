//! What an operator graphs and alerts on, in Prometheus's text format at `/metrics`: requests
//! by route and status with their latency, verify outcomes by code, the face engine's stage
//! latencies, audit events (logins, lockouts, refused tokens) by kind, rate-limit refusals,
//! and, read at each scrape, the users and faces enrolled.
//!
//! The registry is made once by [`crate::build_facelock`] and handed to what records into it
//! (the engine, the core, the routes through the application state): no process-wide static,
//! so each application (and each test) counts its own requests.

use std::time::Duration;

use prometheus_client::{
    encoding::{text::encode, EncodeLabelSet},
    metrics::{
        counter::Counter,
        family::Family,
        gauge::Gauge,
        histogram::{exponential_buckets, Histogram},
    },
    registry::Registry,
};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    method: String,
    /// The route's template (`/users/{user_id}/`), never the raw path: bounded cardinality.
    route: String,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    method: String,
    route: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    /// `success`, or the error code answered.
    outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StageLabels {
    engine: String,
    stage: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabels {
    kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct LimitLabels {
    /// `client`: requests per minute per address; `failed_logins`: the wait an address earns
    /// with failed 1:N logins.
    limit: String,
}

type Histograms<L> = Family<L, Histogram, fn() -> Histogram>;

pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    request_seconds: Histograms<RouteLabels>,
    verify_outcomes: Family<OutcomeLabels, Counter>,
    engine_stage_seconds: Histograms<StageLabels>,
    events: Family<KindLabels, Counter>,
    rate_limited: Family<LimitLabels, Counter>,
    users: Gauge,
    faces: Gauge,
}

/// 1 ms to about 16 s, doubling.
fn latency_buckets() -> Histogram {
    Histogram::new(exponential_buckets(0.001, 2.0, 15))
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("facelock");
        let requests = Family::default();
        registry.register(
            "http_requests",
            "HTTP requests answered, by method, route and status",
            requests.clone(),
        );
        let request_seconds: Histograms<RouteLabels> =
            Family::new_with_constructor(latency_buckets);
        registry.register(
            "http_request_duration_seconds",
            "Time to answer an HTTP request, by method and route",
            request_seconds.clone(),
        );
        let verify_outcomes = Family::default();
        registry.register(
            "verify_outcomes",
            "Face logins (POST /verify/) by outcome: success or the error code",
            verify_outcomes.clone(),
        );
        let engine_stage_seconds: Histograms<StageLabels> =
            Family::new_with_constructor(latency_buckets);
        registry.register(
            "engine_stage_duration_seconds",
            "Time spent in each stage of the face engine",
            engine_stage_seconds.clone(),
        );
        let events = Family::default();
        registry.register(
            "audit_events",
            "Audit events by kind: logins succeeded and failed, accounts locked, tokens refused, ...",
            events.clone(),
        );
        let rate_limited = Family::default();
        registry.register(
            "rate_limited",
            "Requests refused by a rate limit, by limit",
            rate_limited.clone(),
        );
        let users = Gauge::default();
        registry.register("users", "Users enrolled", users.clone());
        let faces = Gauge::default();
        registry.register(
            "faces",
            "Faces enrolled in the engine in use",
            faces.clone(),
        );
        Self {
            registry,
            requests,
            request_seconds,
            verify_outcomes,
            engine_stage_seconds,
            events,
            rate_limited,
            users,
            faces,
        }
    }

    pub fn request(&self, method: &str, route: &str, status: u16, took: Duration) {
        self.requests
            .get_or_create(&RequestLabels {
                method: method.to_owned(),
                route: route.to_owned(),
                status,
            })
            .inc();
        self.request_seconds
            .get_or_create(&RouteLabels {
                method: method.to_owned(),
                route: route.to_owned(),
            })
            .observe(took.as_secs_f64());
    }

    pub fn verify_outcome(&self, outcome: &str) {
        self.verify_outcomes
            .get_or_create(&OutcomeLabels {
                outcome: outcome.to_owned(),
            })
            .inc();
    }

    pub fn engine_stage(&self, engine: &str, stage: &str, took: Duration) {
        self.engine_stage_seconds
            .get_or_create(&StageLabels {
                engine: engine.to_owned(),
                stage: stage.to_owned(),
            })
            .observe(took.as_secs_f64());
    }

    pub fn event(&self, kind: &str) {
        self.events
            .get_or_create(&KindLabels {
                kind: kind.to_owned(),
            })
            .inc();
    }

    pub fn rate_limited(&self, limit: &str) {
        self.rate_limited
            .get_or_create(&LimitLabels {
                limit: limit.to_owned(),
            })
            .inc();
    }

    /// The text exposition, with the enrolment counts read just now.
    pub fn render(&self, users: u64, faces: u64) -> String {
        self.users.set(i64::try_from(users).unwrap_or(i64::MAX));
        self.faces.set(i64::try_from(faces).unwrap_or(i64::MAX));
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = encode(&mut out, &self.registry);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_exposition_names_every_family_with_its_labels() {
        let m = Metrics::new();
        m.request("GET", "/users/{user_id}/", 200, Duration::from_millis(3));
        m.verify_outcome("NO_MATCH");
        m.engine_stage("local", "detect", Duration::from_millis(20));
        m.event("account_locked");
        m.rate_limited("client");
        let text = m.render(3, 4);
        for line in [
            r#"facelock_http_requests_total{method="GET",route="/users/{user_id}/",status="200"} 1"#,
            r#"facelock_verify_outcomes_total{outcome="NO_MATCH"} 1"#,
            r#"facelock_engine_stage_duration_seconds_count{engine="local",stage="detect"} 1"#,
            r#"facelock_audit_events_total{kind="account_locked"} 1"#,
            r#"facelock_rate_limited_total{limit="client"} 1"#,
            "facelock_users 3",
            "facelock_faces 4",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "{line} missing from\n{text}"
            );
        }
    }
}
