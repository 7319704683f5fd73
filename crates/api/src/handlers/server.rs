//! Server-wide routes: app stats, the schedule preview, health, metrics.
//!
//! Owns: their handlers. Must not: change jobs.

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

use crate::AppState;
use crate::error::{ApiError, ApiResult, json_response};
use crate::extract::{Json, clamp_limit};

pub async fn app_stats(State(s): State<AppState>) -> ApiResult {
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

#[derive(Deserialize)]
pub struct PreviewRequest {
    schedule: String,
    #[serde(default)]
    time_zone: String,
    #[serde(default)]
    count: Option<usize>,
}

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

/// 200 `{"status":"ok",…}`, or 503 `{"status":"unhealthy",…,"problem":…}`
/// while the store says writes fail (e.g. a full disk).
pub async fn healthz(State(s): State<AppState>) -> Response {
    #[derive(Serialize)]
    struct Health {
        status: &'static str,
        jobs: usize,
        store: &'static str,
        #[serde(skip_serializing_if = "Option::is_none")]
        problem: Option<String>,
    }
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
            problem,
        },
    )
}

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
