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
//! | GET | `/healthz`, `/metrics` | health, Prometheus text |
//!
//! Every route answers with and without the trailing slash. Errors are
//! `{"error":"<field>: <problem>"}` with a 4xx/5xx status; a 2xx on a write
//! means the change is in the store.

mod metrics;

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Router, ServiceExt};
use kala_engine::{Engine, EngineError};
use kala_job::wire::{JobOut, StatOut, job_from_json};
use kala_job::{JobError, Outcome};
use kala_store::StoreError;
use serde::{Deserialize, Serialize};
use tower::Layer;
use tower_http::compression::CompressionLayer;
use tower_http::normalize_path::{NormalizePath, NormalizePathLayer};

pub use metrics::HttpMetrics;

/// Kala's success content type, spelled as Kala spells it.
pub const JSON_UTF8: &str = "application/json;charset=UTF-8";

#[derive(Debug, Clone)]
pub struct ApiConfig {
    /// Owner given to jobs created without one (`--default-owner`).
    pub default_owner: String,
    /// Largest accepted request body.
    pub max_body_bytes: usize,
    /// When set, every `/api/v1` request needs `Authorization: Bearer <token>`.
    pub auth_token: Option<String>,
}

impl Default for ApiConfig {
    fn default() -> Self {
        ApiConfig {
            default_owner: String::new(),
            max_body_bytes: 1 << 20,
            auth_token: None,
        }
    }
}

#[derive(Clone)]
struct AppState {
    engine: Engine,
    config: Arc<ApiConfig>,
    http: Arc<HttpMetrics>,
}

/// The whole HTTP service: routes, trailing-slash handling, gzip, auth,
/// request metrics. Serve it with `axum::serve(listener, app(…).into_make_service())`.
/// The HTTP service type.
pub type App = NormalizePath<Router>;

pub fn app(engine: Engine, config: ApiConfig) -> App {
    let state = AppState {
        engine,
        config: Arc::new(config),
        http: Arc::new(HttpMetrics::default()),
    };
    let api = Router::new()
        .route("/api/v1/job", post(create_job).get(list_jobs))
        .route("/api/v1/job/all", delete(delete_all))
        .route("/api/v1/job/{id}", get(get_job).delete(delete_job))
        .route("/api/v1/job/{id}/runs", get(job_runs))
        .route("/api/v1/job/stats/{id}", get(job_stats))
        .route("/api/v1/job/start/{id}", post(start_job))
        .route("/api/v1/job/enable/{id}", post(enable_job))
        .route("/api/v1/job/disable/{id}", post(disable_job))
        .route("/api/v1/stats", get(app_stats))
        .route("/api/v1/schedule/preview", post(preview))
        .route_layer(middleware::from_fn_with_state(state.clone(), auth));
    let router = Router::new()
        .merge(api)
        .route("/", get(webui_redirect))
        .route("/webui", get(webui_index))
        .route("/webui/app.js", get(webui_js))
        .route("/webui/app.css", get(webui_css))
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics_text))
        .fallback(not_found)
        .layer(middleware::from_fn(method_not_allowed_json))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            count_requests,
        ))
        .layer(CompressionLayer::new().gzip(true))
        .with_state(state);
    NormalizePathLayer::trim_trailing_slash().layer(router)
}

/// The app as something `axum::serve` takes.
pub fn into_service(
    app: NormalizePath<Router>,
) -> axum::routing::IntoMakeService<NormalizePath<Router>> {
    ServiceExt::<Request>::into_make_service(app)
}

/// An error answer: status plus `{"error": message}`.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    message: String,
}

impl ApiError {
    fn new(status: StatusCode, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            message: message.into(),
        }
    }
}

impl From<JobError> for ApiError {
    fn from(e: JobError) -> Self {
        ApiError::new(StatusCode::BAD_REQUEST, e.to_string())
    }
}

impl From<EngineError> for ApiError {
    fn from(e: EngineError) -> Self {
        let status = match &e {
            EngineError::NotFound(_) => StatusCode::NOT_FOUND,
            EngineError::Invalid(_) => StatusCode::BAD_REQUEST,
            EngineError::Store(StoreError::Unavailable(_)) | EngineError::ShuttingDown => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            EngineError::Store(_) => StatusCode::INTERNAL_SERVER_ERROR,
        };
        ApiError::new(status, e.to_string())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        #[derive(Serialize)]
        struct Body<'a> {
            error: &'a str,
        }
        let mut resp = json_response(
            self.status,
            &Body {
                error: &self.message,
            },
        );
        resp.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        resp
    }
}

/// Compact JSON plus a newline, as Kala writes it.
fn json_response<T: Serialize>(status: StatusCode, value: &T) -> Response {
    match serde_json::to_vec(value) {
        Ok(mut body) => {
            body.push(b'\n');
            (status, [(header::CONTENT_TYPE, JSON_UTF8)], body).into_response()
        }
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("{{\"error\":\"cannot encode: {e}\"}}\n"),
        )
            .into_response(),
    }
}

fn no_content() -> Response {
    StatusCode::NO_CONTENT.into_response()
}

type ApiResult = Result<Response, ApiError>;

async fn create_job(State(s): State<AppState>, req: Request) -> ApiResult {
    let limit = s.config.max_body_bytes;
    let body: Bytes = axum::body::to_bytes(req.into_body(), limit)
        .await
        .map_err(|_| {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("body: larger than the limit of {limit} bytes"),
            )
        })?;
    let mut job = job_from_json(&body)?;
    if job.owner.is_empty() {
        job.owner.clone_from(&s.config.default_owner);
    }
    let id = s.engine.create(job).await?;
    #[derive(Serialize)]
    struct Created {
        id: String,
    }
    Ok(json_response(StatusCode::CREATED, &Created { id }))
}

#[derive(Deserialize, Default)]
struct ListQuery {
    limit: Option<usize>,
    cursor: Option<String>,
    /// `stats=false` leaves run history out of each job.
    stats: Option<bool>,
}

async fn list_jobs(State(s): State<AppState>, Query(q): Query<ListQuery>) -> ApiResult {
    let paged = q.limit.is_some() || q.cursor.is_some();
    let jobs = if paged {
        s.engine
            .list_page(q.cursor.as_deref(), q.limit.unwrap_or(100).clamp(1, 10_000))
    } else {
        s.engine.list()
    };
    let with_stats = q.stats.unwrap_or(true);
    let mut stats = BTreeMap::new();
    if with_stats {
        for j in &jobs {
            let runs = s
                .engine
                .store()
                .runs(&j.id, None)
                .await
                .map_err(EngineError::from)?;
            stats.insert(j.id.clone(), kala_runs(runs));
        }
    }
    let map: BTreeMap<&str, JobOut<'_>> = jobs
        .iter()
        .map(|j| {
            (
                j.id.as_str(),
                JobOut::new(j, stats.get(&j.id).map(Vec::as_slice)),
            )
        })
        .collect();
    if paged {
        #[derive(Serialize)]
        struct Page<'a> {
            jobs: BTreeMap<&'a str, JobOut<'a>>,
            next_cursor: Option<&'a str>,
        }
        let limit = q.limit.unwrap_or(100).clamp(1, 10_000);
        let next_cursor = if jobs.len() == limit {
            jobs.last().map(|j| j.id.as_str())
        } else {
            None
        };
        return Ok(json_response(
            StatusCode::OK,
            &Page {
                jobs: map,
                next_cursor,
            },
        ));
    }
    #[derive(Serialize)]
    struct All<'a> {
        jobs: BTreeMap<&'a str, JobOut<'a>>,
    }
    Ok(json_response(StatusCode::OK, &All { jobs: map }))
}

/// Kala's stats: one per executed run (skipped runs are left out).
fn kala_runs(runs: Vec<kala_job::RunRecord>) -> Vec<kala_job::RunRecord> {
    runs.into_iter()
        .filter(|r| r.outcome != Outcome::Skipped)
        .collect()
}

#[derive(Deserialize, Default)]
struct StatsQuery {
    /// `stats=false` leaves run history out (and answers from memory, so it
    /// works while the store is unreachable).
    stats: Option<bool>,
}

async fn get_job(
    State(s): State<AppState>,
    Path(id): Path<String>,
    Query(q): Query<StatsQuery>,
) -> ApiResult {
    let job = s
        .engine
        .get(&id)
        .ok_or_else(|| EngineError::NotFound(id.clone()))?;
    let runs = match q.stats.unwrap_or(true) {
        true => Some(kala_runs(s.engine.runs(&id, None).await?)),
        false => None,
    };
    #[derive(Serialize)]
    struct One<'a> {
        job: JobOut<'a>,
    }
    Ok(json_response(
        StatusCode::OK,
        &One {
            job: JobOut::new(&job, runs.as_deref()),
        },
    ))
}

async fn delete_job(State(s): State<AppState>, Path(id): Path<String>) -> ApiResult {
    s.engine.delete(&id).await?;
    Ok(no_content())
}

async fn delete_all(State(s): State<AppState>) -> ApiResult {
    s.engine.delete_all().await?;
    Ok(no_content())
}

async fn job_stats(State(s): State<AppState>, Path(id): Path<String>) -> ApiResult {
    let runs = kala_runs(s.engine.runs(&id, None).await?);
    #[derive(Serialize)]
    struct Stats<'a> {
        job_stats: Option<Vec<StatOut<'a>>>,
    }
    let job_stats = (!runs.is_empty()).then(|| runs.iter().map(StatOut::new).collect());
    Ok(json_response(StatusCode::OK, &Stats { job_stats }))
}

#[derive(Deserialize, Default)]
struct RunsQuery {
    limit: Option<usize>,
}

async fn job_runs(
    State(s): State<AppState>,
    Path(id): Path<String>,
    Query(q): Query<RunsQuery>,
) -> ApiResult {
    let runs = s.engine.runs(&id, q.limit).await?;
    #[derive(Serialize)]
    struct Runs {
        runs: Vec<kala_job::RunRecord>,
    }
    Ok(json_response(StatusCode::OK, &Runs { runs }))
}

async fn start_job(State(s): State<AppState>, Path(id): Path<String>) -> ApiResult {
    s.engine.run_now(&id).await?;
    Ok(no_content())
}

async fn enable_job(State(s): State<AppState>, Path(id): Path<String>) -> ApiResult {
    s.engine.enable(&id).await?;
    Ok(no_content())
}

async fn disable_job(State(s): State<AppState>, Path(id): Path<String>) -> ApiResult {
    s.engine.disable(&id).await?;
    Ok(no_content())
}

async fn app_stats(State(s): State<AppState>) -> ApiResult {
    #[derive(Serialize)]
    struct Wrapped {
        #[serde(rename = "Stats")]
        stats: kala_job::wire::AppStats,
    }
    Ok(json_response(
        StatusCode::OK,
        &Wrapped {
            stats: s.engine.app_stats(),
        },
    ))
}

async fn preview(State(s): State<AppState>, body: Bytes) -> ApiResult {
    #[derive(Deserialize)]
    struct Req {
        schedule: String,
        #[serde(default)]
        time_zone: String,
        #[serde(default)]
        count: Option<usize>,
    }
    let req: Req = serde_json::from_slice(&body)
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, format!("body: {e}")))?;
    let zone = if req.time_zone.is_empty() {
        None
    } else {
        Some(
            kala_schedule::Zone::get(&req.time_zone)
                .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, format!("time_zone: {e}")))?,
        )
    };
    let schedule = kala_schedule::Schedule::parse_in(&req.schedule, zone.as_ref())
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, format!("schedule: {e}")))?;
    let now = s.engine.clock().now();
    let next: Vec<String> = schedule
        .occurrences_after(
            now.checked_sub(jiff::SignedDuration::from_nanos(1))
                .unwrap_or(now),
        )
        .take(req.count.unwrap_or(5).min(100))
        .map(|t| t.to_string())
        .collect();
    #[derive(Serialize)]
    struct Preview {
        schedule: String,
        description: String,
        next: Vec<String>,
    }
    Ok(json_response(
        StatusCode::OK,
        &Preview {
            schedule: schedule.to_string(),
            description: schedule.describe(),
            next,
        },
    ))
}

async fn healthz(State(s): State<AppState>) -> Response {
    #[derive(Serialize)]
    struct Health {
        status: &'static str,
        jobs: usize,
        store: &'static str,
    }
    json_response(
        StatusCode::OK,
        &Health {
            status: "ok",
            jobs: s.engine.len(),
            store: s.engine.store().name(),
        },
    )
}

async fn metrics_text(State(s): State<AppState>) -> Response {
    let body = metrics::render(&s.engine, &s.http);
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        body,
    )
        .into_response()
}

async fn not_found(req: Request) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        format!("no route for {} {}", req.method(), req.uri().path()),
    )
}

/// axum answers a wrong method with an empty 405 and an `Allow` header;
/// give it a JSON body too.
async fn method_not_allowed_json(req: Request, next: Next) -> Response {
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let resp = next.run(req).await;
    if resp.status() != StatusCode::METHOD_NOT_ALLOWED {
        return resp;
    }
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

async fn auth(State(s): State<AppState>, headers: HeaderMap, req: Request, next: Next) -> Response {
    if let Some(token) = &s.config.auth_token {
        let given = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or("");
        let ok: bool = subtle::ConstantTimeEq::ct_eq(given.as_bytes(), token.as_bytes()).into();
        if !ok {
            let mut resp = ApiError::new(
                StatusCode::UNAUTHORIZED,
                "authorization: a valid \"Authorization: Bearer <token>\" header is required",
            )
            .into_response();
            resp.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            return resp;
        }
    }
    next.run(req).await
}

async fn count_requests(State(s): State<AppState>, req: Request, next: Next) -> Response {
    let method = req.method().clone();
    let resp = next.run(req).await;
    s.http.count(&method, resp.status());
    resp
}

// ---------- web UI ----------
// Three files, compiled into the binary: no CDN, no build step, works
// offline. The API calls it makes carry the token the user typed.

const WEBUI_CSP: &str = "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; connect-src 'self'; frame-ancestors 'none'";

fn webui_asset(content_type: &'static str, body: &'static str) -> Response {
    let mut resp = (StatusCode::OK, body).into_response();
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(WEBUI_CSP),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    resp
}

async fn webui_index() -> Response {
    webui_asset(
        "text/html; charset=utf-8",
        include_str!("../webui/index.html"),
    )
}

async fn webui_js() -> Response {
    webui_asset(
        "text/javascript; charset=utf-8",
        include_str!("../webui/app.js"),
    )
}

async fn webui_css() -> Response {
    webui_asset("text/css; charset=utf-8", include_str!("../webui/app.css"))
}

async fn webui_redirect() -> Response {
    let mut resp = StatusCode::FOUND.into_response();
    resp.headers_mut()
        .insert(header::LOCATION, HeaderValue::from_static("/webui/"));
    resp
}
