//! `/api/v1/job/{id}/notify`: a job's notification targets replaced;
//! and how a run's notifications are shown in its history.
//!
//! Owns: [`set_notify`], [`NotificationOut`].

use axum::extract::State;
use axum::http::StatusCode;
use serde::Serialize;

use crate::AppState;
use crate::error::{ApiError, ApiResult, json_response};
use crate::extract::{Body, Path};
use crate::schema::ErrorBody;

/// `{"notify": […]}`: a job's targets after a change.
#[derive(Serialize, utoipa::ToSchema)]
pub struct Targets {
    notify: Vec<kala_job::NotifyTarget>,
}

/// Replaces the job's notification targets (kala's extension). The body
/// is the new list, `[{"on": ["failure"], "webhook": "https://…"}, …]`
/// (`[]` removes them), checked like `notify` at creation.
#[utoipa::path(put, path = "/api/v1/job/{id}/notify/", tag = "jobs",
    params(("id" = String, Path, description = "The job's id")),
    request_body(content = Vec<crate::schema::NotifyTargetIn>, description = "The targets (at most 16)"),
    responses(
        (status = 200, description = "The targets now", body = Targets),
        (status = 400, description = "A target is invalid (the message names it)", body = ErrorBody),
        (status = 404, description = "No such job", body = ErrorBody),
        (status = 413, description = "The body is larger than --max-body-bytes", body = ErrorBody),
        (status = 415, description = "A content type a browser can send cross-site", body = ErrorBody),
    ))]
pub async fn set_notify(
    State(s): State<AppState>,
    crate::auth::Acting(actor, p): crate::auth::Acting,
    Path(id): Path<String>,
    Body(body): Body,
) -> ApiResult {
    crate::auth::scope::visible(&s, &p, &id)?;
    let value: serde_json::Value = serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad_request(format!("body: invalid JSON: {e}")))?;
    let targets = kala_job::wire::notify_from_value("notify", value)
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    s.engine.set_notify_as(&id, targets.clone(), &actor).await?;
    Ok(json_response(StatusCode::OK, &Targets { notify: targets }))
}

/// One notification of a run and how its delivery went.
#[derive(Serialize, utoipa::ToSchema)]
pub struct NotificationOut {
    id: String,
    /// failure, success, retry, skipped or interrupted.
    event: String,
    /// `webhook` or `email`.
    kind: &'static str,
    /// The webhook's URL or the email address.
    target: String,
    /// pending, held (over the email rate limit, for a summary),
    /// delivered, summarized or dropped.
    state: String,
    attempts: u32,
    #[schema(value_type = Option<String>, format = DateTime)]
    #[serde(skip_serializing_if = "Option::is_none")]
    next_attempt_at: Option<jiff::Timestamp>,
    #[serde(skip_serializing_if = "Option::is_none")]
    last_error: Option<String>,
    #[schema(value_type = Option<String>, format = DateTime)]
    #[serde(skip_serializing_if = "Option::is_none")]
    done_at: Option<jiff::Timestamp>,
}

impl NotificationOut {
    pub fn new(n: kala_store::Notice) -> NotificationOut {
        let next_attempt_at = n.is_pending().then_some(n.next_attempt_at);
        let (kind, target) = if n.target.webhook.is_empty() {
            ("email", n.target.email)
        } else {
            ("webhook", n.target.webhook)
        };
        let state = serde_json::to_value(n.state)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default();
        NotificationOut {
            id: n.id,
            event: n.event.as_str().to_string(),
            kind,
            target,
            state,
            attempts: n.attempts,
            next_attempt_at,
            last_error: n.last_error,
            done_at: n.done_at,
        }
    }
}
