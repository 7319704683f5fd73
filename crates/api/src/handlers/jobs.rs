//! `/api/v1/job/…`: create, list, read, delete, stats, runs, start,
//! enable, disable.
//!
//! Owns: the job handlers and their query types. Must not: render a job
//! other than through `kala_job::wire`.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use kala_engine::EngineError;
use kala_job::wire::{JobOut, StatOut, job_from_json};
use kala_job::{Job, Outcome, RunRecord};
use serde::{Deserialize, Serialize};

use crate::AppState;
use crate::error::{ApiError, ApiResult, json_response};
use crate::extract::{Body, clamp_limit};

/// Page sizes of the job list.
const PAGE_DEFAULT: usize = 100;
const PAGE_MAX: usize = 10_000;

fn no_content() -> Response {
    StatusCode::NO_CONTENT.into_response()
}

pub async fn create_job(State(s): State<AppState>, Body(body): Body) -> ApiResult {
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
pub struct ListQuery {
    limit: Option<usize>,
    cursor: Option<String>,
    /// `stats=false` leaves run history out of each job.
    stats: Option<bool>,
}

pub async fn list_jobs(State(s): State<AppState>, Query(q): Query<ListQuery>) -> ApiResult {
    let page = (q.limit.is_some() || q.cursor.is_some())
        .then(|| clamp_limit(q.limit, PAGE_DEFAULT, PAGE_MAX));
    let jobs = match page {
        Some(limit) => s.engine.list_page(q.cursor.as_deref(), limit),
        None => s.engine.list(),
    };
    let mut stats = BTreeMap::new();
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
        #[derive(Serialize)]
        struct Page<'a> {
            jobs: BTreeMap<&'a str, JobOut<'a>>,
            next_cursor: Option<&'a str>,
        }
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
    #[derive(Serialize)]
    struct All<'a> {
        jobs: BTreeMap<&'a str, JobOut<'a>>,
    }
    json_response(StatusCode::OK, &All { jobs: map })
}

/// Kala's stats: one per executed run (skipped runs are left out).
fn kala_runs(runs: Vec<RunRecord>) -> Vec<RunRecord> {
    runs.into_iter()
        .filter(|r| r.outcome != Outcome::Skipped)
        .collect()
}

#[derive(Deserialize, Default)]
pub struct StatsQuery {
    /// `stats=false` leaves run history out (and answers from memory, so it
    /// works while the store is unreachable).
    stats: Option<bool>,
}

pub async fn get_job(
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

pub async fn delete_job(State(s): State<AppState>, Path(id): Path<String>) -> ApiResult {
    s.engine.delete(&id).await?;
    Ok(no_content())
}

pub async fn delete_all(State(s): State<AppState>) -> ApiResult {
    s.engine.delete_all().await?;
    Ok(no_content())
}

pub async fn job_stats(State(s): State<AppState>, Path(id): Path<String>) -> ApiResult {
    let runs = kala_runs(s.engine.runs(&id, None).await?);
    #[derive(Serialize)]
    struct Stats<'a> {
        job_stats: Option<Vec<StatOut<'a>>>,
    }
    let job_stats = (!runs.is_empty()).then(|| runs.iter().map(StatOut::new).collect());
    Ok(json_response(StatusCode::OK, &Stats { job_stats }))
}

#[derive(Deserialize, Default)]
pub struct RunsQuery {
    limit: Option<usize>,
}

pub async fn job_runs(
    State(s): State<AppState>,
    Path(id): Path<String>,
    Query(q): Query<RunsQuery>,
) -> ApiResult {
    let limit = q.limit.map(|l| clamp_limit(Some(l), PAGE_MAX, PAGE_MAX));
    let runs = s.engine.runs(&id, limit).await?;
    #[derive(Serialize)]
    struct Runs {
        runs: Vec<RunRecord>,
    }
    Ok(json_response(StatusCode::OK, &Runs { runs }))
}

pub async fn start_job(State(s): State<AppState>, Path(id): Path<String>) -> ApiResult {
    s.engine.run_now(&id).await?;
    Ok(no_content())
}

pub async fn enable_job(State(s): State<AppState>, Path(id): Path<String>) -> ApiResult {
    s.engine.enable(&id).await?;
    Ok(no_content())
}

pub async fn disable_job(State(s): State<AppState>, Path(id): Path<String>) -> ApiResult {
    s.engine.disable(&id).await?;
    Ok(no_content())
}
