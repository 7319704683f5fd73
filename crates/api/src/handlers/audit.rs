//! `GET /api/v1/audit/`: the audit log, newest first, filtered by job,
//! actor and time, one page at a time. A caller limited to owners sees
//! only entries about its owners' jobs.
//!
//! Owns: [`audit_log`]. Must not: change an entry (none can be changed
//! through any route).

use axum::extract::State;
use axum::http::StatusCode;
use kala_store::AuditEntry;
use serde::{Deserialize, Serialize};

use crate::AppState;
use crate::auth::Caller;
use crate::error::{ApiError, ApiResult, json_response};
use crate::extract::{Query, clamp_limit};
use crate::schema::ErrorBody;

const PAGE_DEFAULT: usize = 100;
const PAGE_MAX: usize = 1_000;
/// Entries read from the store per step while filtering (without a
/// filter a step is the page itself).
const STEP: usize = 500;

#[derive(Deserialize, Default, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AuditQuery {
    /// Only entries about this job id.
    job: Option<String>,
    /// Only entries by this actor (a token's name, `jwt:<sub>`).
    actor: Option<String>,
    /// Only entries at or after this time (RFC 3339).
    since: Option<String>,
    /// The `next_cursor` of the previous page.
    cursor: Option<String>,
    /// Page size (default 100; clamped to 1…1,000).
    #[param(maximum = 9007199254740991_u64)]
    limit: Option<u64>,
}

/// One entry.
#[derive(Serialize, utoipa::ToSchema)]
pub struct AuditOut {
    id: String,
    /// When (RFC 3339).
    at: String,
    /// Who: a token's name, `jwt:<sub>`, `anonymous`, `engine`.
    actor: String,
    /// The client's address.
    source: String,
    request_id: String,
    /// create, delete, delete_all, enable, disable, start, notify, import,
    /// tokens_reloaded, refused.
    action: String,
    /// The job; absent for actions about no job (delete_all, refused,
    /// tokens_reloaded).
    #[serde(skip_serializing_if = "String::is_empty")]
    job_id: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    job_name: String,
    /// The instance that made the change.
    node: String,
    /// `{"field": {"before": …, "after": …}}`, secrets masked; details
    /// for actions without a job.
    #[schema(value_type = Object)]
    diff: kala_store::AuditDiff,
}

impl From<AuditEntry> for AuditOut {
    fn from(e: AuditEntry) -> Self {
        AuditOut {
            id: e.id,
            at: e.at.to_string(),
            actor: e.actor,
            source: e.source,
            request_id: e.request_id,
            action: e.action,
            job_id: e.job_id,
            job_name: e.job_name,
            node: e.node,
            diff: e.diff,
        }
    }
}

/// `{"entries": […], "next_cursor": …}`.
#[derive(Serialize, utoipa::ToSchema)]
pub struct AuditPage {
    entries: Vec<AuditOut>,
    /// Pass as `cursor` for the next page; `null` on the last.
    next_cursor: Option<String>,
}

/// The audit log of changes (kala's extension), newest first.
#[utoipa::path(get, path = "/api/v1/audit/", tag = "server", params(AuditQuery),
    responses(
        (status = 200, description = "One page of entries", body = AuditPage),
        (status = 400, description = "A query parameter does not decode", body = ErrorBody),
    ))]
pub async fn audit_log(
    State(s): State<AppState>,
    Caller(p): Caller,
    Query(q): Query<AuditQuery>,
) -> ApiResult {
    let limit = clamp_limit(
        q.limit.map(|l| usize::try_from(l).unwrap_or(usize::MAX)),
        PAGE_DEFAULT,
        PAGE_MAX,
    );
    let since = match q.since.as_deref() {
        Some(t) => Some(t.parse::<jiff::Timestamp>().map_err(|e| {
            ApiError::bad_request(format!("since: {t:?} is not an RFC 3339 time: {e}"))
        })?),
        None => None,
    };
    let keep = |e: &AuditEntry| {
        q.job.as_ref().is_none_or(|j| &e.job_id == j)
            && q.actor.as_ref().is_none_or(|a| &e.actor == a)
            && (p.owners.is_none() || (!e.job_id.is_empty() && p.may_own(&e.owner)))
    };
    let filtered = q.job.is_some() || q.actor.is_some() || since.is_some() || p.owners.is_some();
    let step = if filtered { STEP } else { limit };
    let mut out: Vec<AuditEntry> = Vec::new();
    let mut before = q.cursor.clone();
    let mut more = true;
    'read: while out.len() < limit {
        let page = s.engine.audit_log(before.as_deref(), step).await?;
        let full = page.len() == step;
        for e in page {
            before = Some(e.id.clone());
            if since.is_some_and(|t| e.at < t) {
                more = false;
                break 'read;
            }
            if keep(&e) {
                out.push(e);
                if out.len() == limit {
                    break 'read;
                }
            }
        }
        if !full {
            more = false;
            break;
        }
    }
    let next_cursor = (more && out.len() == limit)
        .then(|| out.last().map(|e| e.id.clone()))
        .flatten();
    Ok(json_response(
        StatusCode::OK,
        &AuditPage {
            entries: out.into_iter().map(AuditOut::from).collect(),
            next_cursor,
        },
    ))
}
