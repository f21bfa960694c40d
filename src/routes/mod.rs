//! The HTTP edge, and the only part of Face Lock that knows HTTP: routes, their OpenAPI
//! description (generated from the same definitions, so the two cannot drift), request bodies,
//! extractors, the error body, documentation pages and the middleware stack. Handlers are a few
//! lines: parse the request into domain values, call the core, shape the answer.

mod body_rate;
mod demo;
mod discovery;
mod embedded;
pub mod error;
mod error_docs;
mod extract;
mod faces;
pub mod forms;
pub mod listener;
mod liveness;
mod login_page;
mod metrics;
mod oauth;
mod oidc;
mod redoc;
mod system;
mod users;

use std::{sync::Arc, time::Duration};

use axum::{
    extract::{DefaultBodyLimit, Request},
    http::{header, HeaderName, HeaderValue, Method, StatusCode, Uri},
    middleware, Router,
};
use tower::ServiceBuilder;
use tower_http::{
    catch_panic::CatchPanicLayer,
    cors::{AllowOrigin, Any, CorsLayer},
    limit::RequestBodyLimitLayer,
    request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer},
    timeout::TimeoutLayer,
    trace::TraceLayer,
};
use utoipa::{
    openapi::{
        security::{HttpAuthScheme, HttpBuilder, SecurityScheme},
        OpenApi as OpenApiDoc,
    },
    Modify, OpenApi,
};
use utoipa_axum::{router::OpenApiRouter, routes};
use utoipa_swagger_ui::SwaggerUi;

use crate::{
    config::{CorsOrigins, Settings},
    rate_limit::RequestLimit,
    service::FaceLock,
};

/// What every handler can reach: the application core and the per-client rate limiter.
#[derive(Clone)]
pub struct AppState {
    pub facelock: Arc<FaceLock>,
    pub limiter: Arc<RequestLimit>,
    /// Face requests in flight per client address.
    pub in_flight: Arc<crate::rate_limit::InFlight>,
    pub settings: Arc<Settings>,
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Face Lock",
        description = "Face authentication: enrol a face with `POST /register/`, verify a new photo \
                       with `POST /verify/` and receive a signed JWT. Every error has the body \
                       `{detail, code, request_id}`. Paths work with and without a trailing slash.",
        license(name = "MIT")
    ),
    modifiers(&BearerScheme),
    components(schemas(error::ErrorBody)),
    tags(
        (name = "faces", description = "Enrol and verify faces"),
        (name = "users", description = "Users (bearer token required)"),
        (name = "auth", description = "OAuth2 endpoints"),
        (name = "openid", description = "OpenID Connect: sign users in to other applications with their face"),
        (name = "system", description = "Health and documentation"),
    )
)]
struct ApiDoc;

struct BearerScheme;

impl Modify for BearerScheme {
    fn modify(&self, openapi: &mut OpenApiDoc) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .description(Some("The `token` returned by `POST /verify/`"))
                    .build(),
            ),
        );
    }
}

/// The API routes and their OpenAPI document.
fn api_routes() -> (Router<AppState>, OpenApiDoc) {
    let (router, mut doc) = OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(faces::register))
        .routes(routes!(faces::verify))
        .routes(routes!(faces::compare))
        .routes(routes!(liveness::challenge))
        .routes(routes!(oauth::token))
        .routes(routes!(oauth::revoke))
        .routes(routes!(oauth::introspect))
        .routes(routes!(discovery::jwks))
        .routes(routes!(discovery::openid_configuration))
        .routes(routes!(oidc::authorize))
        .routes(routes!(oidc::pending, oidc::sign_in))
        .routes(routes!(oidc::decline))
        .routes(routes!(oidc::userinfo, oidc::userinfo_post))
        .routes(routes!(oidc::end_session))
        .routes(routes!(users::me))
        .routes(routes!(users::list))
        .routes(routes!(users::delete))
        .routes(routes!(users::set_role))
        .routes(routes!(system::root))
        .routes(routes!(system::health))
        .routes(routes!(system::live))
        .routes(routes!(system::ready))
        .routes(routes!(system::api_docs))
        .routes(routes!(metrics::scrape))
        .split_for_parts();
    error_docs::document(&mut doc);
    (router, doc)
}

/// The OpenAPI document the server publishes at `/openapi.json`.
pub fn openapi() -> OpenApiDoc {
    api_routes().1
}

/// The whole application: routes, documentation pages and middleware.
pub fn app(state: AppState) -> Router {
    let settings = state.settings.server.clone();
    let track = middleware::from_fn_with_state(state.clone(), metrics::track);
    let fair_share = middleware::from_fn_with_state(state.clone(), extract::as_client);
    let (api, doc) = api_routes();
    let canonical = Arc::new(CanonicalPaths::new(&doc));
    let routes = api
        .with_state(state)
        .merge(SwaggerUi::new("/docs").url("/openapi.json", doc))
        .merge(redoc::routes())
        .merge(login_page::routes());
    let routes = if settings.demo_page {
        routes.merge(demo::routes())
    } else {
        routes
    }
    .route_layer(fair_share)
    .route_layer(track)
    .layer(DefaultBodyLimit::max(settings.max_body_bytes));

    // Paths are rewritten before routing, so the router sits behind the rewrite as a fallback.
    let rewritten = ServiceBuilder::new()
        .map_request(move |req: Request| canonical.rewrite(req))
        .service(routes);
    // Outermost first: request id, error bodies, trace, panic catcher, timeout, body rate, body
    // limit, CORS.
    // `Router::layer` wraps what came before, so the calls below go from the inside out; the
    // error envelope sits in its own call because it needs plain `Body` responses beneath it.
    let request_id = HeaderName::from_static("x-request-id");
    let body_rate = body_rate::MinRate {
        bytes_per_sec: settings.min_body_bytes_per_sec,
        grace: settings.header_timeout,
    };
    Router::new()
        .fallback_service(rewritten)
        .layer(
            ServiceBuilder::new()
                .layer(middleware::from_fn(move |request, next| {
                    body_rate.enforce(request, next)
                }))
                .layer(RequestBodyLimitLayer::new(settings.max_body_bytes))
                .layer(cors(&settings.cors, settings.cors_allow_credentials)),
        )
        .layer(
            ServiceBuilder::new()
                .layer(TraceLayer::new_for_http().make_span_with(request_span))
                .layer(CatchPanicLayer::new())
                .layer(TimeoutLayer::with_status_code(
                    StatusCode::GATEWAY_TIMEOUT,
                    settings.request_timeout,
                )),
        )
        .layer(middleware::from_fn(error::error_envelope))
        .layer(
            ServiceBuilder::new()
                .layer(SetRequestIdLayer::new(request_id.clone(), MakeRequestUuid))
                .layer(PropagateRequestIdLayer::new(request_id)),
        )
}

/// The span every log line of a request is written in: method, path (never the query) and the
/// request id the client is told, so a quoted id finds the request's lines.
fn request_span(request: &Request) -> tracing::Span {
    let id = request
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    tracing::info_span!(
        "request",
        method = %request.method(),
        path = %request.uri().path(),
        request_id = %id,
    )
}

fn cors(origins: &CorsOrigins, allow_credentials: bool) -> CorsLayer {
    let base = CorsLayer::new()
        .allow_methods([
            Method::GET,
            Method::POST,
            Method::PUT,
            Method::DELETE,
            Method::OPTIONS,
        ])
        .allow_headers([header::AUTHORIZATION, header::CONTENT_TYPE])
        .expose_headers([HeaderName::from_static("x-request-id")])
        .max_age(Duration::from_secs(600))
        // The settings refuse credentials with `*`, which browsers (and tower-http) forbid.
        .allow_credentials(allow_credentials);
    match origins {
        CorsOrigins::Any => base.allow_origin(Any),
        CorsOrigins::List(list) => base.allow_origin(AllowOrigin::list(
            // The settings checked each origin's form, so none is dropped here.
            list.iter().filter_map(|o| HeaderValue::from_str(o).ok()),
        )),
    }
}

/// Serves every documented path with and without its trailing slash: a request path is
/// rewritten to the documented spelling before routing. Built from the OpenAPI document, so a
/// new route needs nothing here; paths that are not documented (the doc pages) are left alone.
struct CanonicalPaths {
    /// Documented paths as segments (`None` stands for a path parameter), and whether the
    /// documented spelling ends in `/`.
    documented: Vec<(Vec<Option<String>>, bool)>,
}

impl CanonicalPaths {
    fn new(doc: &OpenApiDoc) -> Self {
        let documented = doc
            .paths
            .paths
            .keys()
            .filter(|p| p.len() > 1)
            .map(|p| {
                let segments = p
                    .trim_matches('/')
                    .split('/')
                    .map(|s| (!s.starts_with('{')).then(|| s.to_owned()))
                    .collect();
                (segments, p.ends_with('/'))
            })
            .collect();
        Self { documented }
    }

    fn canonical(&self, path: &str) -> Option<String> {
        let bare = path.trim_end_matches('/');
        if bare.is_empty() {
            return None;
        }
        let segments: Vec<&str> = bare.trim_start_matches('/').split('/').collect();
        let (_, with_slash) = self.documented.iter().find(|(pattern, _)| {
            pattern.len() == segments.len()
                && pattern
                    .iter()
                    .zip(&segments)
                    .all(|(p, s)| p.as_deref().is_none_or(|p| p == *s))
        })?;
        let canonical = if *with_slash {
            format!("{bare}/")
        } else {
            bare.to_owned()
        };
        (canonical != path).then_some(canonical)
    }

    fn rewrite(&self, mut req: Request) -> Request {
        if let Some(path) = self.canonical(req.uri().path()) {
            let path_and_query = match req.uri().query() {
                Some(q) => format!("{path}?{q}"),
                None => path,
            };
            let mut parts = req.uri().clone().into_parts();
            if let Ok(pq) = path_and_query.parse() {
                parts.path_and_query = Some(pq);
                if let Ok(uri) = Uri::from_parts(parts) {
                    *req.uri_mut() = uri;
                }
            }
        }
        req
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trailing_slashes_follow_the_documented_spelling() {
        let c = CanonicalPaths::new(&openapi());
        assert_eq!(c.canonical("/register").as_deref(), Some("/register/"));
        assert_eq!(c.canonical("/register/"), None);
        assert_eq!(
            c.canonical("/users/alice").as_deref(),
            Some("/users/alice/")
        );
        assert_eq!(c.canonical("/users/me").as_deref(), Some("/users/me/"));
        assert_eq!(c.canonical("/users").as_deref(), Some("/users/"));
        assert_eq!(c.canonical("/health/").as_deref(), Some("/health"));
        assert_eq!(c.canonical("/health"), None);
        assert_eq!(c.canonical("/"), None);
        assert_eq!(c.canonical("/nope/"), None);
        assert_eq!(c.canonical("/docs/"), None);
    }
}
