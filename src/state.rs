//! What every handler can reach: the service and the token issuer.

use std::sync::Arc;

use crate::{auth::TokenService, rate_limit::RateLimiter, service::FaceLock};

#[derive(Clone)]
pub struct AppState {
    pub facelock: Arc<FaceLock>,
    pub tokens: Arc<TokenService>,
    pub limiter: Arc<RateLimiter>,
}
