//! `/api/v1/job/…`: create, list, read, delete, stats, runs, start,
//! enable, disable.
//!
//! Owns: the job handlers and their query types. Must not: render a job
//! other than through `kala_job::wire`.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use kala_engine::EngineError;
use kala_job::wire::{JobOut, StatOut, job_from_json};
use kala_job::{Job, Outcome, RunRecord};
use serde::{Deserialize, Serialize};

use crate::AppState;
use crate::error::{ApiError, ApiResult, json_response};
use crate::extract::{Body, Path, Query, clamp_limit};
use crate::openapi::ErrorBody;

/// Page sizes of the job list.
const PAGE_DEFAULT: usize = 100;
const PAGE_MAX: usize = 10_000;

fn saturate(n: u64) -> usize {
    usize::try_from(n).unwrap_or(usize::MAX)
}

fn no_content() -> Response {
    StatusCode::NO_CONTENT.into_response()
}

/// `201` to a create: the new job's id.
#[derive(Serialize, utoipa::ToSchema)]
pub struct Created {
    pub id: String,
}

/// Creates a job (Kala's fields; keys are case-insensitive and `_` is
/// ignored, as Go's decoder reads them). A job without a schedule runs
/// once, now.
#[utoipa::path(post, path = "/api/v1/job/", tag = "jobs",
    request_body(content = crate::openapi::JobIn, content_type = "application/json"),
    responses(
        (status = 201, description = "Created and stored", body = Created),
        (status = 400, description = "A field is invalid (the message names it)", body = ErrorBody),
        (status = 408, description = "The body was not sent in time", body = ErrorBody),
        (status = 413, description = "The body is larger than --max-body-bytes", body = ErrorBody),
        (status = 415, description = "A content type a browser can send cross-site", body = ErrorBody),
    ))]
pub async fn create_job(State(s): State<AppState>, Body(body): Body) -> ApiResult {
    let mut job = job_from_json(&body)?;
    if job.owner.is_empty() {
        job.owner.clone_from(&s.config.default_owner);
    }
    let id = s.engine.create(job).await?;
    Ok(json_response(StatusCode::CREATED, &Created { id }))
}

#[derive(Deserialize, Default, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// Page size (default 100; clamped to 1…10,000). With `limit` or
    /// `cursor`, the answer is one page with `next_cursor`.
    #[param(maximum = 9007199254740991_u64)]
    limit: Option<u64>,
    /// The `next_cursor` of the previous page.
    cursor: Option<String>,
    /// `stats=false` leaves run history out of each job.
    stats: Option<bool>,
}

/// Every job by id (Kala's shape); with `limit` or `cursor`, one page in
/// id order.
#[utoipa::path(get, path = "/api/v1/job/", tag = "jobs", params(ListQuery),
    responses(
        (status = 200, description = "The jobs by id (`next_cursor` only for a page)", body = JobList),
        (status = 400, description = "A query parameter does not decode", body = ErrorBody),
    ))]
pub async fn list_jobs(State(s): State<AppState>, Query(q): Query<ListQuery>) -> ApiResult {
    let page = (q.limit.is_some() || q.cursor.is_some())
        .then(|| clamp_limit(q.limit.map(saturate), PAGE_DEFAULT, PAGE_MAX));
    let jobs = match page {
        Some(limit) => s.engine.list_page(q.cursor.as_deref(), limit),
        None => s.engine.list(),
    };
    let mut stats = BTreeMap::new();
    let jobs = if q.stats.unwrap_or(true) {
        // The store is read for the stats anyway: in a cluster the jobs
        // come from it too (counters of runs on other instances).
        s.engine.fresh(jobs).await?
    } else {
        jobs
    };
    if q.stats.unwrap_or(true) {
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
    // Encoding a large list (100k jobs is ~90 MB of JSON) takes long
    // enough to stall a runtime worker: do it on a blocking thread.
    let small = jobs.len() <= ENCODE_IN_PLACE;
    let encode = move || encode_list(&jobs, &stats, page);
    if small {
        return Ok(encode());
    }
    tokio::task::spawn_blocking(encode).await.map_err(|e| {
        ApiError::internal(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal error: the list could not be encoded",
            e.to_string(),
        )
    })
}

/// Lists up to this many jobs are encoded in place.
const ENCODE_IN_PLACE: usize = 1_000;

/// `{"jobs": {id: job}}`, plus `next_cursor` for a page.
fn encode_list(
    jobs: &[Arc<Job>],
    stats: &BTreeMap<String, Vec<RunRecord>>,
    page: Option<usize>,
) -> Response {
    let map: BTreeMap<&str, JobOut<'_>> = jobs
        .iter()
        .map(|j| {
            (
                j.id.as_str(),
                JobOut::new(j, stats.get(&j.id).map(Vec::as_slice)),
            )
        })
        .collect();
    if let Some(limit) = page {
        let next_cursor = if jobs.len() == limit {
            jobs.last().map(|j| j.id.as_str())
        } else {
            None
        };
        return json_response(
            StatusCode::OK,
            &Page {
                jobs: map,
                next_cursor,
            },
        );
    }
    json_response(StatusCode::OK, &All { jobs: map })
}

#[derive(Serialize)]
struct Page<'a> {
    jobs: BTreeMap<&'a str, JobOut<'a>>,
    next_cursor: Option<&'a str>,
}

#[derive(Serialize)]
struct All<'a> {
    jobs: BTreeMap<&'a str, JobOut<'a>>,
}

/// The job list's schema: Kala's `{"jobs": {id: job}}`, and for a page the
/// cursor of the next one (`null` on the last page).
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub struct JobList {
    #[schema(value_type = BTreeMap<String, JobOut>)]
    jobs: (),
    #[schema(value_type = Option<String>)]
    next_cursor: (),
}

/// Kala's stats: one per executed run (skipped runs are left out).
fn kala_runs(runs: Vec<RunRecord>) -> Vec<RunRecord> {
    runs.into_iter()
        .filter(|r| r.outcome != Outcome::Skipped)
        .collect()
}

#[derive(Deserialize, Default, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct StatsQuery {
    /// `stats=false` leaves run history out (and answers from memory, so it
    /// works while the store is unreachable).
    stats: Option<bool>,
}

/// `{"job": …}`.
#[derive(Serialize, utoipa::ToSchema)]
pub struct One<'a> {
    job: JobOut<'a>,
}

/// One job, with its stats unless `stats=false`.
#[utoipa::path(get, path = "/api/v1/job/{id}/", tag = "jobs",
    params(("id" = String, Path, description = "The job's id"), StatsQuery),
    responses(
        (status = 200, description = "The job", body = One),
        (status = 400, description = "The id or a query parameter does not decode", body = ErrorBody),
        (status = 404, description = "No such job", body = ErrorBody),
    ))]
pub async fn get_job(
    State(s): State<AppState>,
    Path(id): Path<String>,
    Query(q): Query<StatsQuery>,
) -> ApiResult {
    // With stats the store is read anyway: the job comes from it too in a
    // cluster (its counters as every instance wrote them). Without, from
    // memory (served through a database outage).
    let with_stats = q.stats.unwrap_or(true);
    let job = match with_stats {
        true => s.engine.fetch(&id).await?,
        false => s.engine.get(&id),
    }
    .ok_or_else(|| EngineError::NotFound(id.clone()))?;
    let runs = match with_stats {
        true => Some(kala_runs(s.engine.runs(&id, None).await?)),
        false => None,
    };
    Ok(json_response(
        StatusCode::OK,
        &One {
            job: JobOut::new(&job, runs.as_deref()),
        },
    ))
}

/// Deletes a job with its run history; its children go with it.
#[utoipa::path(delete, path = "/api/v1/job/{id}/", tag = "jobs",
    params(("id" = String, Path, description = "The job's id")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 400, description = "The id does not decode", body = ErrorBody),
        (status = 404, description = "No such job", body = ErrorBody),
    ))]
pub async fn delete_job(State(s): State<AppState>, Path(id): Path<String>) -> ApiResult {
    s.engine.delete(&id).await?;
    Ok(no_content())
}

/// Deletes every job and all run history.
#[utoipa::path(delete, path = "/api/v1/job/all/", tag = "jobs",
    responses((status = 204, description = "Everything deleted")))]
pub async fn delete_all(State(s): State<AppState>) -> ApiResult {
    s.engine.delete_all().await?;
    Ok(no_content())
}

/// `{"job_stats": […]}` (`null` when the job has not run).
#[derive(Serialize, utoipa::ToSchema)]
pub struct Stats<'a> {
    job_stats: Option<Vec<StatOut<'a>>>,
}

/// Kala's stats of a job: one per executed run, oldest first.
#[utoipa::path(get, path = "/api/v1/job/stats/{id}/", tag = "jobs",
    params(("id" = String, Path, description = "The job's id")),
    responses(
        (status = 200, description = "The job's stats", body = Stats),
        (status = 400, description = "The id does not decode", body = ErrorBody),
        (status = 404, description = "No such job", body = ErrorBody),
    ))]
pub async fn job_stats(State(s): State<AppState>, Path(id): Path<String>) -> ApiResult {
    let runs = kala_runs(s.engine.runs(&id, None).await?);
    let job_stats = (!runs.is_empty()).then(|| runs.iter().map(StatOut::new).collect());
    Ok(json_response(StatusCode::OK, &Stats { job_stats }))
}

#[derive(Deserialize, Default, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct RunsQuery {
    /// Only the newest `limit` runs (clamped to 1…10,000).
    #[param(maximum = 9007199254740991_u64)]
    limit: Option<u64>,
}

/// `{"runs": […]}`.
#[derive(Serialize, utoipa::ToSchema)]
pub struct Runs {
    runs: Vec<RunOut>,
}

/// A run, with the delivery of its notifications when it has any.
#[derive(Serialize, utoipa::ToSchema)]
pub struct RunOut {
    #[serde(flatten)]
    run: RunRecord,
    /// Only when the run caused notifications (the job's `notify`
    /// targets, or the server's defaults).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    notifications: Vec<crate::handlers::notify::NotificationOut>,
}

/// The job's run records (kala's extension): every run with its outcome,
/// trigger, schedule point, exit code, error and output tail, oldest first.
#[utoipa::path(get, path = "/api/v1/job/{id}/runs/", tag = "jobs",
    params(("id" = String, Path, description = "The job's id"), RunsQuery),
    responses(
        (status = 200, description = "The job's runs", body = Runs),
        (status = 400, description = "The id or a query parameter does not decode", body = ErrorBody),
        (status = 404, description = "No such job", body = ErrorBody),
    ))]
pub async fn job_runs(
    State(s): State<AppState>,
    Path(id): Path<String>,
    Query(q): Query<RunsQuery>,
) -> ApiResult {
    let limit = q
        .limit
        .map(|l| clamp_limit(Some(saturate(l)), PAGE_MAX, PAGE_MAX));
    let runs = s.engine.runs(&id, limit).await?;
    let mut notices: std::collections::HashMap<
        jiff::Timestamp,
        Vec<crate::handlers::notify::NotificationOut>,
    > = std::collections::HashMap::new();
    for n in s.engine.notices(&id).await? {
        notices
            .entry(n.run.ran_at)
            .or_default()
            .push(crate::handlers::notify::NotificationOut::new(n));
    }
    let runs = runs
        .into_iter()
        .map(|run| RunOut {
            notifications: notices.remove(&run.ran_at).unwrap_or_default(),
            run,
        })
        .collect();
    Ok(json_response(StatusCode::OK, &Runs { runs }))
}

/// Runs the job now (its retries and chain included).
#[utoipa::path(post, path = "/api/v1/job/start/{id}/", tag = "jobs",
    params(("id" = String, Path, description = "The job's id")),
    responses(
        (status = 204, description = "Done"),
        (status = 400, description = "The id does not decode", body = ErrorBody),
        (status = 404, description = "No such job", body = ErrorBody),
    ))]
pub async fn start_job(State(s): State<AppState>, Path(id): Path<String>) -> ApiResult {
    s.engine.run_now(&id).await?;
    Ok(no_content())
}

/// Enables the job and arms its next run.
#[utoipa::path(post, path = "/api/v1/job/enable/{id}/", tag = "jobs",
    params(("id" = String, Path, description = "The job's id")),
    responses(
        (status = 204, description = "Done"),
        (status = 400, description = "The id does not decode", body = ErrorBody),
        (status = 404, description = "No such job", body = ErrorBody),
    ))]
pub async fn enable_job(State(s): State<AppState>, Path(id): Path<String>) -> ApiResult {
    s.engine.enable(&id).await?;
    Ok(no_content())
}

/// Disables the job: its pending run is cancelled.
#[utoipa::path(post, path = "/api/v1/job/disable/{id}/", tag = "jobs",
    params(("id" = String, Path, description = "The job's id")),
    responses(
        (status = 204, description = "Done"),
        (status = 400, description = "The id does not decode", body = ErrorBody),
        (status = 404, description = "No such job", body = ErrorBody),
    ))]
pub async fn disable_job(State(s): State<AppState>, Path(id): Path<String>) -> ApiResult {
    s.engine.disable(&id).await?;
    Ok(no_content())
}
