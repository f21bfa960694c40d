//! Welcome, health and documentation pointers.

use axum::{extract::State, http::StatusCode, Json};
use serde::Serialize;
use utoipa::ToSchema;

use super::AppState;
use crate::service::DependencyStatus;

#[derive(Serialize, ToSchema)]
pub struct Welcome {
    pub message: String,
    pub version: String,
    /// Where the interactive API documentation lives.
    pub docs: String,
}

/// Welcome message.
#[utoipa::path(get, path = "/", operation_id = "welcome", tag = "system", responses((status = 200, body = Welcome)))]
pub async fn root() -> Json<Welcome> {
    Json(Welcome {
        message: "Welcome to Face Lock: face authentication that issues signed tokens".into(),
        version: env!("CARGO_PKG_VERSION").into(),
        docs: "/docs".into(),
    })
}

#[derive(Serialize, ToSchema)]
pub struct DependencyHealth {
    /// `up`, `degraded` (answers but cannot do all its work: a store whose disk is full) or
    /// `down`.
    pub status: String,
    /// Why it is degraded or down.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct HealthResponse {
    /// `healthy` when every dependency is up, `degraded` when one cannot do all its work and
    /// none is down, else `unhealthy`. Only `healthy` answers 200.
    pub status: String,
    pub version: String,
    /// The face engine in use (`rekognition`).
    pub engine_name: String,
    pub engine: DependencyHealth,
    pub store: DependencyHealth,
}

impl From<DependencyStatus> for DependencyHealth {
    fn from(status: DependencyStatus) -> Self {
        match status {
            DependencyStatus::Up => Self {
                status: "up".into(),
                error: None,
            },
            DependencyStatus::Degraded(why) => Self {
                status: "degraded".into(),
                error: Some(why),
            },
            DependencyStatus::Down(why) => Self {
                status: "down".into(),
                error: Some(why),
            },
        }
    }
}

/// Health of the server, its face engine and its store.
#[utoipa::path(
    get,
    path = "/health", operation_id = "health",
    tag = "system",
    responses(
        (status = 200, description = "Everything is up", body = HealthResponse),
        (status = 503, description = "A dependency is down", body = HealthResponse),
    )
)]
pub async fn health(State(state): State<AppState>) -> (StatusCode, Json<HealthResponse>) {
    dependencies(&state).await
}

#[derive(Serialize, ToSchema)]
pub struct Alive {
    /// Always `alive`.
    pub status: String,
}

/// Liveness probe: the process answers. Never looks at the engine or the store, so an outage
/// of AWS does not make an orchestrator restart every server.
#[utoipa::path(get, path = "/health/live", operation_id = "health_live", tag = "system", responses((status = 200, body = Alive)))]
pub async fn live() -> Json<Alive> {
    Json(Alive {
        status: "alive".into(),
    })
}

/// Readiness probe: the engine and the store answer, so requests can be served.
#[utoipa::path(
    get,
    path = "/health/ready", operation_id = "health_ready",
    tag = "system",
    responses(
        (status = 200, description = "Ready", body = HealthResponse),
        (status = 503, description = "A dependency is down", body = HealthResponse),
    )
)]
pub async fn ready(State(state): State<AppState>) -> (StatusCode, Json<HealthResponse>) {
    dependencies(&state).await
}

async fn dependencies(state: &AppState) -> (StatusCode, Json<HealthResponse>) {
    let health = state.facelock.health().await;
    let healthy = matches!(
        (&health.engine, &health.store),
        (DependencyStatus::Up, DependencyStatus::Up)
    );
    let down = [&health.engine, &health.store]
        .iter()
        .any(|d| matches!(d, DependencyStatus::Down(_)));
    let status = if healthy {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let summary = match (healthy, down) {
        (true, _) => "healthy",
        (false, false) => "degraded",
        (false, true) => "unhealthy",
    };
    (
        status,
        Json(HealthResponse {
            status: summary.into(),
            version: env!("CARGO_PKG_VERSION").into(),
            engine_name: state.facelock.engine_name().into(),
            engine: health.engine.into(),
            store: health.store.into(),
        }),
    )
}

#[derive(Serialize, ToSchema)]
pub struct ApiDocsInfo {
    pub message: String,
    pub swagger_ui: String,
    /// ReDoc's three-pane reference of the same document, served offline like the Swagger UI.
    pub redoc: String,
    pub openapi: String,
}

/// Where the API documentation is.
#[utoipa::path(get, path = "/api-docs", operation_id = "api_docs", tag = "system", responses((status = 200, body = ApiDocsInfo)))]
pub async fn api_docs() -> Json<ApiDocsInfo> {
    Json(ApiDocsInfo {
        message: "Face Lock API documentation".into(),
        swagger_ui: "/docs".into(),
        redoc: "/redoc".into(),
        openapi: "/openapi.json".into(),
    })
}
