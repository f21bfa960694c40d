//! Extractors that guard routes: the bearer-token caller and the face-engine quota. They turn
//! request parts into the core's plain values; the decisions are the core's.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use axum::{
    extract::{ConnectInfo, FromRequestParts},
    http::{header::AUTHORIZATION, request::Parts},
};

use super::{error::ApiError, AppState};
use crate::{
    net::IpNet,
    service::{Caller, Origin},
    tokens::TokenProblem,
};

/// Where the request came from: the client's address and the request id.
pub struct RequestOrigin(pub Origin);

/// The client's address: the socket peer, or, when the peer is a trusted proxy, the last
/// address in `X-Forwarded-For` that is not a trusted proxy (earlier entries are whatever
/// the client wrote, so they are never believed).
fn client_address(parts: &Parts, trusted: &[IpNet]) -> Option<IpAddr> {
    let peer = parts.extensions.get::<ConnectInfo<SocketAddr>>()?.0.ip();
    let is_trusted = |ip: IpAddr| trusted.iter().any(|net| net.contains(ip));
    if !is_trusted(peer) {
        return Some(peer);
    }
    let mut hops: Vec<&str> = parts
        .headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .collect();
    while let Some(hop) = hops.pop() {
        match hop.parse::<IpAddr>() {
            Ok(ip) if is_trusted(ip) => continue,
            Ok(ip) => return Some(ip),
            // A garbled entry: nothing before it can be believed either.
            Err(_) => return Some(peer),
        }
    }
    Some(peer)
}

/// Runs the request on behalf of its client, so that its face work gets its fair share of the
/// cores ([`crate::fair`]).
pub async fn as_client(
    axum::extract::State(state): axum::extract::State<AppState>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let (parts, body) = request.into_parts();
    let client = client_address(&parts, &state.settings.server.trusted_proxies);
    let request = axum::extract::Request::from_parts(parts, body);
    crate::fair::as_client(client, next.run(request)).await
}

fn origin(parts: &Parts, state: &AppState) -> Origin {
    Origin {
        address: client_address(parts, &state.settings.server.trusted_proxies),
        request_id: parts
            .headers
            .get("x-request-id")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned),
    }
}

impl FromRequestParts<AppState> for RequestOrigin {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        Ok(Self(origin(parts, state)))
    }
}

/// The caller behind a valid bearer token; a missing or bad token is a 401.
pub struct Authenticated(pub Caller);

/// The caller when a bearer token is sent, `None` when none is; a bad token is still a 401.
pub struct MaybeAuthenticated(pub Option<Caller>);

fn bearer(parts: &Parts) -> Result<Option<&str>, ApiError> {
    bearer_token(&parts.headers)
}

/// The bearer token of `Authorization`, if one is sent; any other scheme is malformed.
pub fn bearer_token(headers: &axum::http::HeaderMap) -> Result<Option<&str>, ApiError> {
    let Some(value) = headers.get(AUTHORIZATION) else {
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
            state
                .facelock
                .authenticate(token, &origin(parts, state))
                .await?,
        ))
    }
}

impl FromRequestParts<AppState> for MaybeAuthenticated {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        match bearer(parts)? {
            None => Ok(Self(None)),
            Some(token) => Ok(Self(Some(
                state
                    .facelock
                    .authenticate(token, &origin(parts, state))
                    .await?,
            ))),
        }
    }
}

/// Spends one request of the client's face-engine quota (per socket peer address), and holds
/// one of its places for requests in flight until the handler is done. (Requests with no peer
/// address, made in-process, are not counted.)
pub struct EngineQuota {
    _in_flight: Option<crate::rate_limit::InFlightGuard>,
}

impl FromRequestParts<AppState> for EngineQuota {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let ip = client_address(parts, &state.settings.server.trusted_proxies)
            .unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
        let in_flight = match ip {
            IpAddr::V4(Ipv4Addr::UNSPECIFIED) => None,
            ip => Some(state.in_flight.enter(ip).ok_or_else(|| {
                tracing::warn!(%ip, "too many face requests in flight");
                state.facelock.metrics().rate_limited("in_flight");
                ApiError::RateLimited {
                    retry_after_secs: 1,
                }
            })?),
        };
        admit(ip, state).await?;
        Ok(EngineQuota {
            _in_flight: in_flight,
        })
    }
}

/// Spends one request of the client's quota, as a face request does: for requests that make
/// the server hold something (an authorization request), so that one address cannot fill the
/// store.
pub struct RequestQuota;

impl FromRequestParts<AppState> for RequestQuota {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let ip = client_address(parts, &state.settings.server.trusted_proxies)
            .unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
        admit(ip, state).await.map(|()| RequestQuota)
    }
}

async fn admit(ip: IpAddr, state: &AppState) -> Result<(), ApiError> {
    state.limiter.admit(ip).await.map_err(|wait| {
        tracing::warn!(%ip, "rate limit reached");
        state.facelock.metrics().rate_limited("client");
        ApiError::RateLimited {
            retry_after_secs: wait.as_secs().max(1) as u32,
        }
    })
}
