//! `GET /api/v1/job/`: every job by id (Kala's shape), or one page.
//!
//! Owns: [`list_jobs`]. A page (at most 10,000 jobs) is encoded in one
//! piece; the full list of more than [`ENCODE_IN_PLACE`] jobs is streamed
//! in id order, [`CHUNK`] jobs at a time, so the server's memory does not
//! grow with the answer (100k jobs are ~90 MB of JSON). The run history of
//! a job is read from the store only if it has finished a run.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use kala_engine::{Engine, EngineError, JobRef};
use kala_job::wire::JobOut;
use kala_job::{Job, RunRecord};
use serde::{Deserialize, Serialize};

use crate::AppState;
use crate::auth::{Caller, Principal};
use crate::error::{ApiResult, json_response};
use crate::extract::{Query, clamp_limit};
use crate::handlers::jobs::{has_history, kala_runs};
use crate::schema::ErrorBody;

/// Page sizes of the job list.
const PAGE_DEFAULT: usize = 100;
const PAGE_MAX: usize = 10_000;

/// Lists up to this many jobs are encoded in one piece.
const ENCODE_IN_PLACE: usize = 1_000;

/// Jobs per piece of a streamed list.
const CHUNK: usize = 256;

fn saturate(n: u64) -> usize {
    usize::try_from(n).unwrap_or(usize::MAX)
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

/// Every job by id (Kala's shape); with `limit` or `cursor`, one page in
/// id order.
#[utoipa::path(get, path = "/api/v1/job/", tag = "jobs", params(ListQuery),
    responses(
        (status = 200, description = "The jobs by id (`next_cursor` only for a page)", body = JobList),
        (status = 400, description = "A query parameter does not decode", body = ErrorBody),
    ))]
pub async fn list_jobs(
    State(s): State<AppState>,
    Caller(p): Caller,
    Query(q): Query<ListQuery>,
) -> ApiResult {
    let page = (q.limit.is_some() || q.cursor.is_some())
        .then(|| clamp_limit(q.limit.map(saturate), PAGE_DEFAULT, PAGE_MAX));
    let with_stats = q.stats.unwrap_or(true);
    if page.is_none() && s.engine.len() > ENCODE_IN_PLACE {
        return Ok(stream_all(s.engine.clone(), s.engine.ids(), with_stats, p));
    }
    let mut jobs = match page {
        Some(limit) => scoped_page(&s.engine, &p, q.cursor.as_deref(), limit),
        None => {
            let mut all = s.engine.list();
            all.retain(|j| p.may_own(&j.owner));
            all
        }
    };
    if with_stats {
        // The store is read for the stats anyway: in a cluster the jobs
        // come from it too (counters of runs on other instances).
        jobs = s.engine.fresh(jobs).await?;
    }
    let stats = match with_stats {
        true => history(&s.engine, &jobs).await?,
        false => BTreeMap::new(),
    };
    Ok(encode_list(&jobs, &stats, page))
}

/// Up to `limit` jobs the caller may see with ids after `after`, in id
/// order (pages of the engine's list are read until there are enough).
fn scoped_page(engine: &Engine, p: &Principal, after: Option<&str>, limit: usize) -> Vec<Arc<Job>> {
    if p.owners.is_none() {
        return engine.list_page(after, limit);
    }
    let mut out = Vec::new();
    let mut cursor = after.map(str::to_string);
    loop {
        let raw = engine.list_page(cursor.as_deref(), limit);
        let full = raw.len() == limit;
        cursor = raw.last().map(|j| j.id.clone());
        out.extend(raw.into_iter().filter(|j| p.may_own(&j.owner)));
        if out.len() >= limit || !full {
            out.truncate(limit);
            return out;
        }
    }
}

/// The run history (Kala's stats) of the jobs in `jobs` that have one.
async fn history(
    engine: &Engine,
    jobs: &[Arc<Job>],
) -> Result<BTreeMap<String, Vec<RunRecord>>, EngineError> {
    let mut stats = BTreeMap::new();
    for j in jobs.iter().filter(|j| has_history(j)) {
        let mut runs = engine.store().runs(&j.id, None).await?;
        kala_store::settle_runs(&mut runs);
        stats.insert(j.id.clone(), kala_runs(runs));
    }
    Ok(stats)
}

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

/// Appends `"id":{job},` for each of `jobs` (sorted by id) to `out`.
fn encode_chunk(
    out: &mut Vec<u8>,
    jobs: &[Arc<Job>],
    stats: &BTreeMap<String, Vec<RunRecord>>,
    first: bool,
) -> serde_json::Result<()> {
    for (k, j) in jobs.iter().enumerate() {
        if !(first && k == 0) {
            out.push(b',');
        }
        serde_json::to_writer(&mut *out, j.id.as_str())?;
        out.push(b':');
        serde_json::to_writer(
            &mut *out,
            &JobOut::new(j, stats.get(&j.id).map(Vec::as_slice)),
        )?;
    }
    Ok(())
}

/// The full list as a stream: `{"jobs":{` then the jobs in id order,
/// [`CHUNK`] at a time (their stats read just before), then `}}`. The
/// producer waits while the client is slow (a channel of 4 pieces), so
/// at most a few pieces are held. A store error after the first piece
/// cannot become a status: the answer is cut short (logged), and the
/// client sees a broken body instead of a wrong list.
fn stream_all(engine: Engine, ids: Vec<JobRef>, with_stats: bool, p: Principal) -> Response {
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(4);
    tokio::spawn(async move {
        if tx
            .send(Ok(Bytes::from_static(b"{\"jobs\":{")))
            .await
            .is_err()
        {
            return;
        }
        let mut first = true;
        for chunk in ids.chunks(CHUNK) {
            // Jobs deleted since the ids were taken are left out.
            let mut jobs = engine.get_many(chunk);
            jobs.retain(|j| p.may_own(&j.owner));
            let read = async {
                if !with_stats {
                    return Ok((jobs, BTreeMap::new()));
                }
                let jobs = engine.fresh(jobs).await?;
                let stats = history(&engine, &jobs).await?;
                Ok::<_, EngineError>((jobs, stats))
            };
            let (jobs, stats) = match read.await {
                Ok(s) => s,
                Err(e) => {
                    tracing::error!(error = %e, "job list cut short: the run history could not be read");
                    let _ = tx.send(Err(std::io::Error::other(e.to_string()))).await;
                    return;
                }
            };
            if jobs.is_empty() {
                continue;
            }
            let mut out = Vec::with_capacity(jobs.len() * 1024);
            if let Err(e) = encode_chunk(&mut out, &jobs, &stats, first) {
                tracing::error!(error = %e, "job list cut short: a job could not be encoded");
                let _ = tx.send(Err(std::io::Error::other(e.to_string()))).await;
                return;
            }
            first = false;
            if tx.send(Ok(Bytes::from(out))).await.is_err() {
                return; // the client went away
            }
        }
        let _ = tx.send(Ok(Bytes::from_static(b"}}\n"))).await;
    });
    // `poll_fn` over the receiver, not `unfold`: the compression layer
    // polls the body once more after it ended, and a receiver answers
    // `None` again where `unfold` panics (which cut gzip answers short).
    let mut rx = rx;
    let stream = futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx));
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, crate::error::JSON_UTF8)],
        axum::body::Body::from_stream(stream),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streamed_pieces_make_the_same_json_as_one_piece() {
        let mut jobs: Vec<Arc<Job>> = (0..600)
            .map(|k| Arc::new(Job::new(format!("job \"{k}\""), "true")))
            .collect();
        jobs.sort_unstable_by(|a, b| a.id.cmp(&b.id));
        let stats = BTreeMap::new();
        let mut streamed = b"{\"jobs\":{".to_vec();
        for (n, chunk) in jobs.chunks(CHUNK).enumerate() {
            encode_chunk(&mut streamed, chunk, &stats, n == 0).unwrap();
        }
        streamed.extend_from_slice(b"}}\n");
        let whole = serde_json::to_vec(&All {
            jobs: jobs
                .iter()
                .map(|j| (j.id.as_str(), JobOut::new(j, None)))
                .collect(),
        })
        .unwrap();
        assert_eq!(
            String::from_utf8(streamed).unwrap(),
            String::from_utf8(whole).unwrap() + "\n"
        );
    }
}
