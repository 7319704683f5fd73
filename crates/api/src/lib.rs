//! # kala-api
//!
//! Kala's JSON-over-HTTP API on axum, wire-compatible with Kala (see
//! docs/COMPATIBILITY.md for every deliberate difference):
//!
//! | method | path | answer |
//! |---|---|---|
//! | POST | `/api/v1/job/` | 201 `{"id":…}` |
//! | GET | `/api/v1/job/` | 200 `{"jobs":{id:job}}` (`?limit=&cursor=` pages) |
//! | GET, DELETE | `/api/v1/job/{id}/` | 200 `{"job":…}` / 204 |
//! | DELETE | `/api/v1/job/all/` | 204 |
//! | GET | `/api/v1/job/stats/{id}/` | 200 `{"job_stats":[…]}` |
//! | POST | `/api/v1/job/start/{id}/`, `/enable/{id}/`, `/disable/{id}/` | 204 |
//! | GET | `/api/v1/stats/` | 200 `{"Stats":{…}}` |
//! | GET | `/api/v1/job/{id}/runs/` | 200 `{"runs":[…]}` with output tails |
//! | POST | `/api/v1/schedule/preview/` | the next run times of a schedule |
//! | GET | `/api/v1/audit/` | 200 `{"entries":[…],"next_cursor":…}`: who changed what |
//! | GET | `/api/v1/whoami/` | 200 the caller's name, role and owners |
//! | GET | `/healthz`, `/metrics` | health, Prometheus text |
//! | GET | `/api/v1/openapi.json` | the OpenAPI 3.1 document of all of this ([`ApiDoc`]) |
//!
//! Every route answers with and without the trailing slash. Errors are
//! `{"error":"<field>: <problem>"}` with a 4xx status, or a generic message
//! with a request id and a 5xx status (details in the server's log); a 2xx
//! on a write means the change is in the store.
//!
//! Modules: this file (the routes and the middleware stack), `handlers`
//! (one module per resource), `error` ([`ApiError`]), `extract` (typed
//! body extractors, limits), `guard` (Host, Origin and content-type checks against
//! cross-site and DNS-rebinding attacks), `auth` (tokens, roles, JWT, owner
//! scopes), `webui`, `metrics`.

pub mod auth;
mod error;
mod extract;
mod guard;
mod handlers;
mod metrics;
mod openapi;
mod schema;
mod webui;

pub use openapi::{ApiDoc, document as openapi_document};

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post, put};
use axum::{Router, ServiceExt};
use kala_engine::Engine;
use tower::Layer;
use tower_http::compression::CompressionLayer;
use tower_http::normalize_path::{NormalizePath, NormalizePathLayer};

pub use auth::jwt::{JwtConfig, Verifier as JwtVerifier};
pub use auth::{Auth, Principal, Role, TokenSet, TokenSpec, hash_of, new_token};
pub use error::{ApiError, JSON_UTF8};
pub use metrics::HttpMetrics;

use handlers::{audit, jobs, list, notify, server};

#[derive(Debug, Clone)]
pub struct ApiConfig {
    /// Owner given to jobs created without one (`--default-owner`).
    pub default_owner: String,
    /// Largest accepted request body.
    pub max_body_bytes: usize,
    /// `--auth-token`: one admin token; every `/api/v1` request then
    /// needs `Authorization: Bearer <token>`.
    pub auth_token: Option<String>,
    /// Named tokens with roles and the JWT verifier (see [`auth`]); keep
    /// a clone to reload the tokens.
    pub auth: Auth,
    /// The role a job that runs a local command needs (`--allow-commands`;
    /// admin by default).
    pub allow_commands: Role,
    /// Host names (besides IP addresses and `localhost`) that requests may
    /// name in `Host` (`--allowed-host`; `*` allows any). See `guard`.
    pub allowed_hosts: Vec<String>,
}

impl Default for ApiConfig {
    fn default() -> Self {
        ApiConfig {
            default_owner: String::new(),
            max_body_bytes: 1 << 20,
            auth_token: None,
            auth: Auth::default(),
            allow_commands: Role::Admin,
            allowed_hosts: Vec::new(),
        }
    }
}

/// What every handler gets.
#[derive(Clone)]
pub(crate) struct AppState {
    engine: Engine,
    config: Arc<ApiConfig>,
    http: Arc<HttpMetrics>,
    /// How many refused requests the audit log takes a second.
    refusals: Arc<auth::RefusalLimit>,
    /// When the API was built (the server's start, for `/healthz`).
    started: jiff::Timestamp,
}

/// The HTTP service type.
pub type App = NormalizePath<Router>;

/// The whole HTTP service: routes, trailing-slash handling, gzip, auth,
/// request metrics. Serve it with `axum::serve(listener, into_service(app(…)))`.
pub fn app(engine: Engine, config: ApiConfig) -> App {
    if let Some(t) = &config.auth_token {
        config.auth.set_admin_token(t);
    }
    let state = AppState {
        engine,
        config: Arc::new(config),
        http: Arc::new(HttpMetrics::default()),
        refusals: Arc::new(auth::RefusalLimit::default()),
        started: jiff::Timestamp::now(),
    };
    let api = Router::new()
        .route("/api/v1/job", post(jobs::create_job).get(list::list_jobs))
        .route("/api/v1/job/all", delete(jobs::delete_all))
        .route(
            "/api/v1/job/{id}",
            get(jobs::get_job).delete(jobs::delete_job),
        )
        .route("/api/v1/job/{id}/runs", get(jobs::job_runs))
        .route("/api/v1/job/{id}/notify", put(notify::set_notify))
        .route("/api/v1/job/stats/{id}", get(jobs::job_stats))
        .route("/api/v1/job/start/{id}", post(jobs::start_job))
        .route("/api/v1/job/enable/{id}", post(jobs::enable_job))
        .route("/api/v1/job/disable/{id}", post(jobs::disable_job))
        .route("/api/v1/stats", get(server::app_stats))
        .route("/api/v1/schedule/preview", post(server::preview))
        .route("/api/v1/cluster", get(server::cluster))
        .route("/api/v1/whoami", get(server::whoami))
        .route("/api/v1/audit", get(audit::audit_log))
        .route("/metrics", get(server::metrics_text))
        // Always there: tokens may come with a reload, and the handlers
        // read the caller it finds.
        .route_layer(middleware::from_fn_with_state(state.clone(), auth::auth));
    let router = Router::new()
        .merge(api)
        .route("/", get(webui::redirect))
        .route("/webui", get(webui::index))
        .route("/webui/app.js", get(webui::js))
        .route("/webui/app.css", get(webui::css))
        .route("/api/v1/openapi.json", get(openapi::openapi_json))
        .route("/healthz", get(server::healthz))
        .fallback(not_found)
        .layer(middleware::from_fn_with_state(state.clone(), front))
        // The fastest level: the full list of 100k jobs is 74 MB of
        // JSON, and compressing it at the default level took 0.74 s of
        // one core (0.2 s unzipped); JSON this repetitive still shrinks
        // ~10x (BENCHMARKS.md).
        .layer(
            CompressionLayer::new()
                .gzip(true)
                .quality(tower_http::CompressionLevel::Fastest),
        )
        .with_state(state);
    NormalizePathLayer::trim_trailing_slash().layer(router)
}

/// The app as something `axum::serve` takes.
pub fn into_service(
    app: NormalizePath<Router>,
) -> axum::routing::IntoMakeService<NormalizePath<Router>> {
    ServiceExt::<Request>::into_make_service(app)
}

async fn not_found(req: Request) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        format!("no route for {} {}", req.method(), req.uri().path()),
    )
}

/// In front of every route: the Host and Origin guard (`guard`), the
/// request counters, and a JSON body for axum's empty 405 (it answers a
/// wrong method with only an `Allow` header). One layer, not three: axum
/// clones each layer's service for every request, and a GET of one job
/// spent ~5 % of the server's CPU on those clones.
async fn front(State(s): State<AppState>, req: Request, next: Next) -> Response {
    let method = req.method().clone();
    let resp = match guard::check(&s, &req) {
        Some(refused) => refused,
        None => {
            let uri = req.uri().clone();
            let resp = next.run(req).await;
            match resp.status() {
                StatusCode::METHOD_NOT_ALLOWED => method_not_allowed(resp, &method, uri.path()),
                _ => resp,
            }
        }
    };
    s.http.count(&method, resp.status());
    resp
}

fn method_not_allowed(resp: Response, method: &axum::http::Method, path: &str) -> Response {
    let allow = resp.headers().get(header::ALLOW).cloned();
    let mut out = ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        format!("method {method} is not allowed on {path}"),
    )
    .into_response();
    if let Some(a) = allow {
        out.headers_mut().insert(header::ALLOW, a);
    }
    out
}
