//! `/api/v1/job/…`: create, list, read, delete, stats, runs, start,
//! enable, disable.
//!
//! Owns: the job handlers and their query types. Must not: render a job
//! other than through `kala_job::wire`.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use kala_engine::EngineError;
use kala_job::wire::{JobOut, StatOut, job_from_json};
use kala_job::{Job, Outcome, RunRecord};
use serde::{Deserialize, Serialize};

use crate::AppState;
use crate::auth::{Acting, Caller, scope};
use crate::error::{ApiResult, json_response};
use crate::extract::{Body, Path, Query, clamp_limit};
use crate::schema::ErrorBody;

/// The most run records one answer holds.
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
    request_body(content = crate::schema::JobIn, content_type = "application/json"),
    responses(
        (status = 201, description = "Created and stored", body = Created),
        (status = 400, description = "A field is invalid (the message names it)", body = ErrorBody),
        (status = 408, description = "The body was not sent in time", body = ErrorBody),
        (status = 413, description = "The body is larger than --max-body-bytes", body = ErrorBody),
        (status = 415, description = "A content type a browser can send cross-site", body = ErrorBody),
    ))]
pub async fn create_job(
    State(s): State<AppState>,
    Acting(actor, p): Acting,
    Body(body): Body,
) -> ApiResult {
    let mut job = job_from_json(&body)?;
    if job.owner.is_empty() && p.may_own(&s.config.default_owner) {
        job.owner.clone_from(&s.config.default_owner);
    }
    scope::check_create(&s, &p, &mut job)?;
    let id = s.engine.create_as(job, &actor).await?;
    Ok(json_response(StatusCode::CREATED, &Created { id }))
}

/// Whether a job may have run records Kala's stats show: a job that never
/// finished a run has none (a skipped run is not counted and not shown),
/// so its stats are `null` without reading the store.
pub(crate) fn has_history(job: &Job) -> bool {
    job.metadata.number_of_finished_runs > 0
}

/// Kala's stats: one per executed run (skipped runs are left out).
pub(crate) fn kala_runs(runs: Vec<RunRecord>) -> Vec<RunRecord> {
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
    Caller(p): Caller,
    Path(id): Path<String>,
    Query(q): Query<StatsQuery>,
) -> ApiResult {
    scope::visible(&s, &p, &id)?;
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
        true if has_history(&job) => Some(kala_runs(s.engine.runs(&id, None).await?)),
        true | false => None,
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
pub async fn delete_job(
    State(s): State<AppState>,
    Acting(actor, p): Acting,
    Path(id): Path<String>,
) -> ApiResult {
    scope::check_delete(&s, &p, &id)?;
    s.engine.delete_as(&id, &actor).await?;
    Ok(no_content())
}

/// Deletes every job and all run history.
#[utoipa::path(delete, path = "/api/v1/job/all/", tag = "jobs",
    responses((status = 204, description = "Everything deleted")))]
pub async fn delete_all(State(s): State<AppState>, Acting(actor, p): Acting) -> ApiResult {
    scope::check_delete_all(&p)?;
    s.engine.delete_all_as(&actor).await?;
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
pub async fn job_stats(
    State(s): State<AppState>,
    Caller(p): Caller,
    Path(id): Path<String>,
) -> ApiResult {
    scope::visible(&s, &p, &id)?;
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
    Caller(p): Caller,
    Path(id): Path<String>,
    Query(q): Query<RunsQuery>,
) -> ApiResult {
    scope::visible(&s, &p, &id)?;
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
pub async fn start_job(
    State(s): State<AppState>,
    Acting(actor, p): Acting,
    Path(id): Path<String>,
) -> ApiResult {
    scope::visible(&s, &p, &id)?;
    s.engine.run_now_as(&id, &actor).await?;
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
pub async fn enable_job(
    State(s): State<AppState>,
    Acting(actor, p): Acting,
    Path(id): Path<String>,
) -> ApiResult {
    scope::visible(&s, &p, &id)?;
    s.engine.enable_as(&id, &actor).await?;
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
pub async fn disable_job(
    State(s): State<AppState>,
    Acting(actor, p): Acting,
    Path(id): Path<String>,
) -> ApiResult {
    scope::visible(&s, &p, &id)?;
    s.engine.disable_as(&id, &actor).await?;
    Ok(no_content())
}
