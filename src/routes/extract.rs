//! Extractors that guard routes: the bearer-token caller and the face-engine quota. They turn
//! request parts into the core's plain values; the decisions are the core's.

use std::{
    net::{IpAddr, Ipv4Addr, SocketAddr},
    time::Instant,
};

use axum::{
    extract::{ConnectInfo, FromRequestParts},
    http::{header::AUTHORIZATION, request::Parts},
};

use super::{error::ApiError, AppState};
use crate::{
    service::{Caller, Origin},
    tokens::TokenProblem,
};

/// Where the request came from: the socket peer and the request id.
pub struct RequestOrigin(pub Origin);

fn origin(parts: &Parts) -> Origin {
    Origin {
        address: parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|c| c.0.ip()),
        request_id: parts
            .headers
            .get("x-request-id")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned),
    }
}

impl<S: Send + Sync> FromRequestParts<S> for RequestOrigin {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(Self(origin(parts)))
    }
}

/// The caller behind a valid bearer token; a missing or bad token is a 401.
pub struct Authenticated(pub Caller);

/// The caller when a bearer token is sent, `None` when none is; a bad token is still a 401.
pub struct MaybeAuthenticated(pub Option<Caller>);

fn bearer(parts: &Parts) -> Result<Option<&str>, ApiError> {
    let Some(value) = parts.headers.get(AUTHORIZATION) else {
        return Ok(None);
    };
    let value = value
        .to_str()
        .map_err(|_| ApiError::Unauthorized(TokenProblem::Malformed))?;
    match value.split_once(' ') {
        Some((scheme, token))
            if scheme.eq_ignore_ascii_case("bearer") && !token.trim().is_empty() =>
        {
            Ok(Some(token.trim()))
        }
        _ => Err(ApiError::Unauthorized(TokenProblem::Malformed)),
    }
}

impl FromRequestParts<AppState> for Authenticated {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let token = bearer(parts)?.ok_or(ApiError::Unauthorized(TokenProblem::Missing))?;
        Ok(Self(
            state.facelock.authenticate(token, &origin(parts)).await?,
        ))
    }
}

impl FromRequestParts<AppState> for MaybeAuthenticated {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        match bearer(parts)? {
            None => Ok(Self(None)),
            Some(token) => Ok(Self(Some(
                state.facelock.authenticate(token, &origin(parts)).await?,
            ))),
        }
    }
}

/// Spends one request of the client's face-engine quota (per socket peer address).
pub struct EngineQuota;

impl FromRequestParts<AppState> for EngineQuota {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let ip = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |c| c.0.ip());
        state
            .limiter
            .check(ip, Instant::now())
            .map(|()| EngineQuota)
            .map_err(|wait| {
                tracing::warn!(%ip, "rate limit reached");
                crate::metrics::global().rate_limited("client");
                ApiError::RateLimited {
                    retry_after_secs: wait.as_secs().max(1) as u32,
                }
            })
    }
}
