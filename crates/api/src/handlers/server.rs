//! Server-wide routes: app stats, the schedule preview, health, metrics.
//!
//! Owns: their handlers. Must not: change jobs.

use std::collections::BTreeMap;

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

use crate::AppState;
use crate::error::{ApiError, ApiResult, json_response};
use crate::extract::{Json, clamp_limit};
use crate::schema::ErrorBody;

/// `{"Stats": …}`, as Kala wraps them.
#[derive(Serialize, utoipa::ToSchema)]
pub struct Wrapped {
    #[serde(rename = "Stats")]
    stats: kala_job::wire::AppStats,
}

/// Kala's app-level stats (of the caller's owners' jobs when it is
/// limited to owners).
#[utoipa::path(get, path = "/api/v1/stats/", tag = "server",
    responses((status = 200, description = "The app stats", body = Wrapped)))]
pub async fn app_stats(
    State(s): State<AppState>,
    crate::auth::Caller(p): crate::auth::Caller,
) -> ApiResult {
    let stats = match &p.owners {
        None => s.engine.app_stats(),
        // A caller limited to owners counts their jobs only.
        Some(_) => {
            let mut st = kala_job::wire::AppStats {
                created: Some(s.engine.clock().now()),
                ..Default::default()
            };
            for j in s.engine.list().iter().filter(|j| p.may_own(&j.owner)) {
                st.jobs += 1;
                if j.disabled {
                    st.disabled_jobs += 1;
                } else {
                    st.active_jobs += 1;
                    if !j.is_done
                        && let Some(at) = j.next_run_at
                        && st.next_run_at.is_none_or(|n| at < n)
                    {
                        st.next_run_at = Some(at);
                    }
                }
                st.error_count += j.metadata.error_count;
                st.success_count += j.metadata.success_count;
                if j.metadata.last_attempted_run > st.last_attempted_run {
                    st.last_attempted_run = j.metadata.last_attempted_run;
                }
            }
            st
        }
    };
    Ok(json_response(StatusCode::OK, &Wrapped { stats }))
}

/// One instance of the cluster.
#[derive(Serialize, utoipa::ToSchema)]
pub struct NodeOut {
    name: String,
    /// Where its API listens.
    address: String,
    started: String,
    last_heartbeat: String,
    /// Its heartbeat has not run out.
    alive: bool,
    /// Shutting down: it holds nothing and finishes its runs.
    leaving: bool,
    /// The hash partitions of the job ids whose lease it holds.
    partitions: Vec<u32>,
    /// Runs it finished since it started.
    runs_done: u64,
    /// Its tags (`--tag key=value`); absent when it has none.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    tags: BTreeMap<String, String>,
    /// `worker` (runs only what is dispatched to it) or `scheduler`
    /// (dispatches everything, runs nothing); absent for the default
    /// `both`.
    #[serde(skip_serializing_if = "Option::is_none")]
    role: Option<&'static str>,
}

/// The instances sharing this server's database, and what each owns.
#[derive(Serialize, utoipa::ToSchema)]
pub struct ClusterOut {
    /// This instance's name (`--node-name`).
    node: String,
    /// This instance's tags (`--tag key=value`); absent when it has none.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    tags: BTreeMap<String, String>,
    /// Whether it shares its database with other instances (a shared
    /// backend); `false` on the embedded store.
    clustered: bool,
    /// The number of hash partitions of the job ids.
    partitions: u32,
    nodes: Vec<NodeOut>,
}

/// The cluster: every instance on this database, alive or lately gone,
/// with its heartbeat and the partitions it holds.
#[utoipa::path(get, path = "/api/v1/cluster/", tag = "server",
    responses((status = 200, description = "The instances", body = ClusterOut)))]
pub async fn cluster(State(s): State<AppState>) -> ApiResult {
    let status = s.engine.cluster_status().await?;
    let out = match status {
        Some(c) => ClusterOut {
            node: c.node,
            tags: s.engine.node_tags().clone(),
            clustered: true,
            partitions: c.partitions,
            nodes: c
                .nodes
                .into_iter()
                .map(|n| NodeOut {
                    name: n.name,
                    address: n.address,
                    started: n.started.to_string(),
                    last_heartbeat: n.last_heartbeat.to_string(),
                    alive: n.alive,
                    leaving: n.leaving,
                    partitions: n.partitions,
                    runs_done: n.runs_done,
                    tags: n.tags,
                    role: (!n.role.is_both()).then(|| n.role.name()),
                })
                .collect(),
        },
        None => ClusterOut {
            node: s.engine.node_name().to_string(),
            tags: s.engine.node_tags().clone(),
            clustered: false,
            partitions: kala_store::PARTITIONS,
            nodes: Vec::new(),
        },
    };
    Ok(json_response(StatusCode::OK, &out))
}

/// A schedule to preview.
#[derive(Deserialize, utoipa::ToSchema)]
#[schema(example = json!({"schedule": "R/2030-01-01T00:00:00Z/PT1H", "time_zone": "Europe/Berlin", "count": 3}))]
pub struct PreviewRequest {
    /// An ISO 8601 repeating interval or a cron expression.
    schedule: String,
    /// An IANA zone for the schedule (default: its own, else UTC).
    #[serde(default)]
    time_zone: String,
    /// How many runs to list (1 to 100; default 5).
    #[serde(default)]
    count: Option<usize>,
}

/// The next runs of a schedule.
#[derive(Serialize, utoipa::ToSchema)]
pub struct Preview {
    /// The schedule as parsed.
    schedule: String,
    /// In words.
    description: String,
    /// The next run times (RFC 3339).
    next: Vec<String>,
}

/// The next run times of a schedule, without creating a job (kala's
/// extension).
#[utoipa::path(post, path = "/api/v1/schedule/preview/", tag = "server",
    request_body(content = PreviewRequest, content_type = "application/json"),
    responses(
        (status = 200, description = "The next runs", body = Preview),
        (status = 400, description = "The schedule, zone or body is invalid", body = ErrorBody),
        (status = 408, description = "The body was not sent in time", body = ErrorBody),
        (status = 413, description = "The body is larger than --max-body-bytes", body = ErrorBody),
        (status = 415, description = "A content type a browser can send cross-site", body = ErrorBody),
    ))]
pub async fn preview(State(s): State<AppState>, Json(req): Json<PreviewRequest>) -> ApiResult {
    let zone = if req.time_zone.is_empty() {
        None
    } else {
        Some(
            kala_schedule::Zone::get(&req.time_zone)
                .map_err(|e| ApiError::bad_request(format!("time_zone: {e}")))?,
        )
    };
    let schedule = kala_schedule::Schedule::parse_in(&req.schedule, zone.as_ref())
        .map_err(|e| ApiError::bad_request(format!("schedule: {e}")))?;
    let now = s.engine.clock().now();
    let next: Vec<String> = schedule
        .occurrences_after(
            now.checked_sub(jiff::SignedDuration::from_nanos(1))
                .unwrap_or(now),
        )
        .take(clamp_limit(req.count, 5, 100))
        .map(|t| t.to_string())
        .collect();
    Ok(json_response(
        StatusCode::OK,
        &Preview {
            schedule: schedule.to_string(),
            description: schedule.describe(),
            next,
        },
    ))
}

/// The server's health.
#[derive(Serialize, utoipa::ToSchema)]
pub struct Health {
    /// `ok` or `unhealthy`.
    status: &'static str,
    /// Jobs loaded.
    jobs: usize,
    /// The store's backend (`redb`, `postgres`, …).
    store: &'static str,
    /// When this server started serving.
    #[schema(value_type = String, format = DateTime)]
    started: jiff::Timestamp,
    /// Why the store cannot write (only when unhealthy).
    #[serde(skip_serializing_if = "Option::is_none")]
    problem: Option<String>,
}

/// 200 `{"status":"ok",…}`, or 503 `{"status":"unhealthy",…,"problem":…}`
/// while the store says writes fail (e.g. a full disk). Never needs the
/// auth token.
#[utoipa::path(get, path = "/healthz", tag = "server", security(()),
    responses(
        (status = 200, description = "Healthy", body = Health),
        (status = 503, description = "The store cannot write (the problem is named)", body = Health),
    ))]
pub async fn healthz(State(s): State<AppState>) -> Response {
    let problem = s.engine.store().problem();
    let (code, status) = match problem {
        None => (StatusCode::OK, "ok"),
        Some(_) => (StatusCode::SERVICE_UNAVAILABLE, "unhealthy"),
    };
    json_response(
        code,
        &Health {
            status,
            jobs: s.engine.len(),
            store: s.engine.store().name(),
            started: s.started,
            problem,
        },
    )
}

/// Prometheus metrics (text exposition format 0.0.4); with tokens, a
/// reader's.
#[utoipa::path(get, path = "/metrics", tag = "server",
    responses((status = 200, description = "The metrics", body = String,
        content_type = "text/plain; version=0.0.4; charset=utf-8")))]
pub async fn metrics_text(State(s): State<AppState>) -> Response {
    let body = crate::metrics::render(&s.engine, &s.http);
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        body,
    )
        .into_response()
}

/// Who the caller is.
#[derive(Serialize, utoipa::ToSchema)]
pub struct WhoAmI {
    /// The token's name, `jwt:<sub>` for a JWT, `anonymous` without auth.
    name: String,
    role: crate::auth::Role,
    /// The owners the caller is limited to; absent for every owner.
    #[serde(skip_serializing_if = "Option::is_none")]
    owners: Option<Vec<String>>,
    /// `token`, `jwt`, or `none` (the server has no tokens).
    via: &'static str,
    /// The role a job that runs a local command needs here.
    commands_need: crate::auth::Role,
}

/// The caller's name, role and owner scope (for the web UI).
#[utoipa::path(get, path = "/api/v1/whoami/", tag = "server",
    responses((status = 200, description = "The caller", body = WhoAmI)))]
pub async fn whoami(
    State(s): State<AppState>,
    crate::auth::Caller(p): crate::auth::Caller,
) -> Response {
    json_response(
        StatusCode::OK,
        &WhoAmI {
            name: p.name.to_string(),
            role: p.role,
            owners: p.owners.map(|o| o.to_vec()),
            via: p.via,
            commands_need: s.config.allow_commands,
        },
    )
}
