//! `/metrics` for Prometheus, and the middleware that counts every routed request.

use std::time::Instant;

use axum::{
    extract::{MatchedPath, Request, State},
    http::{header, HeaderMap, HeaderValue, StatusCode},
    middleware::Next,
    response::{IntoResponse, Response},
};

use super::{error::ApiError, AppState};
use crate::tokens::TokenProblem;

/// Counts a routed request by its route template, method and status, with its latency.
pub async fn track(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|m| m.as_str().to_owned());
    let method = request.method().clone();
    let started = Instant::now();
    let response = next.run(request).await;
    if let Some(route) = route {
        state.facelock.metrics().request(
            method.as_str(),
            &route,
            response.status().as_u16(),
            started.elapsed(),
        );
    }
    response
}

/// Prometheus metrics (text format).
///
/// Requests by route and status with latency histograms, verify outcomes by code, face
/// engine stage latencies, audit events by kind (logins, lockouts, refused tokens), rate-limit
/// refusals, users and faces enrolled. With `FACELOCK_METRICS_TOKEN` set, the scraper sends it
/// as a bearer token; `FACELOCK_METRICS=false` turns the endpoint off (404).
#[utoipa::path(
    get,
    path = "/metrics", operation_id = "metrics",
    tag = "system",
    responses(
        (status = 200, description = "The metrics", content_type = "text/plain; version=0.0.4", body = String),
        (status = 401, description = "`NOT_AUTHENTICATED` or `INVALID_TOKEN`: FACELOCK_METRICS_TOKEN is set and was not sent", body = super::error::ErrorBody),
        (status = 404, description = "`NOT_FOUND`: metrics are turned off", body = super::error::ErrorBody),
    )
)]
pub async fn scrape(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let settings = &state.settings.server.metrics;
    if !settings.enabled {
        return Ok(StatusCode::NOT_FOUND.into_response());
    }
    if let Some(expected) = &settings.token {
        let sent = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .ok_or(ApiError::Unauthorized(TokenProblem::Missing))?;
        if !crate::secret::same_bytes(sent.as_bytes(), expected.expose().as_bytes()) {
            return Err(ApiError::Unauthorized(TokenProblem::Invalid));
        }
    }
    let (users, faces) = state.facelock.census().await?;
    let text = state.facelock.metrics().render(users, faces);
    Ok((
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
        )],
        text,
    )
        .into_response())
}
