//! Errors as answers: every error is `{"error": "..."}` with a 4xx or 5xx
//! status. A 4xx names the problem (the field and what is wrong with it);
//! a 5xx says only what kind of failure it was and a request id, and the
//! details go to the server's log under that id.
//!
//! Owns: [`ApiError`], the JSON body writer. Must not: decide statuses of
//! engine operations other than by the error's kind.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use kala_engine::EngineError;
use kala_job::JobError;
use kala_store::StoreError;
use serde::Serialize;

/// Kala's success content type, spelled as Kala spells it.
pub const JSON_UTF8: &str = "application/json;charset=UTF-8";

/// An error answer: status plus `{"error": message}`.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    /// What the client sees.
    message: String,
    /// What the log gets for a 5xx (the client sees a request id instead).
    detail: Option<String>,
}

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            message: message.into(),
            detail: None,
        }
    }

    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, message)
    }

    /// A server-side failure: `public` is what the client is told, `detail`
    /// is logged with the request id.
    pub fn internal(status: StatusCode, public: &str, detail: impl Into<String>) -> ApiError {
        ApiError {
            status,
            message: public.to_string(),
            detail: Some(detail.into()),
        }
    }

    pub fn status(&self) -> StatusCode {
        self.status
    }
}

impl From<JobError> for ApiError {
    fn from(e: JobError) -> Self {
        ApiError::bad_request(e.to_string())
    }
}

impl From<EngineError> for ApiError {
    fn from(e: EngineError) -> Self {
        match &e {
            EngineError::NotFound(_) => ApiError::new(StatusCode::NOT_FOUND, e.to_string()),
            EngineError::Invalid(_) => ApiError::bad_request(e.to_string()),
            EngineError::ShuttingDown => {
                ApiError::new(StatusCode::SERVICE_UNAVAILABLE, e.to_string())
            }
            EngineError::Store(StoreError::Unavailable(_)) => ApiError::internal(
                StatusCode::SERVICE_UNAVAILABLE,
                "storage unavailable: the change was not made; try again",
                e.to_string(),
            ),
            EngineError::Store(StoreError::Full(_)) => ApiError::internal(
                StatusCode::INSUFFICIENT_STORAGE,
                "storage full: the disk holding the store has no space left; the change was not made",
                e.to_string(),
            ),
            EngineError::Store(_) | EngineError::Executor(_) => ApiError::internal(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal error: the server could not complete the request",
                e.to_string(),
            ),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        #[derive(Serialize)]
        struct Body<'a> {
            error: &'a str,
        }
        let mut request_id = None;
        let message = match &self.detail {
            Some(detail) => {
                let id = uuid::Uuid::new_v4().simple().to_string();
                tracing::error!(request_id = %id, status = self.status.as_u16(), error = %detail, "request failed");
                let m = format!("{} (request id {id})", self.message);
                request_id = Some(id);
                m
            }
            None => {
                tracing::info!(status = self.status.as_u16(), error = %self.message, "request refused");
                self.message
            }
        };
        let mut resp = json_response(self.status, &Body { error: &message });
        let h = resp.headers_mut();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        // The body was not read to its end: the connection cannot carry
        // another request, and a pooled client must be told.
        if matches!(
            self.status,
            StatusCode::PAYLOAD_TOO_LARGE | StatusCode::REQUEST_TIMEOUT
        ) {
            h.insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        if let Some(id) = request_id.and_then(|id| HeaderValue::from_str(&id).ok()) {
            h.insert("x-request-id", id);
        }
        resp
    }
}

/// Compact JSON plus a newline, as Kala writes it.
pub fn json_response<T: Serialize>(status: StatusCode, value: &T) -> Response {
    match serde_json::to_vec(value) {
        Ok(mut body) => {
            body.push(b'\n');
            (status, [(header::CONTENT_TYPE, JSON_UTF8)], body).into_response()
        }
        Err(e) => ApiError::internal(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal error: the answer could not be encoded",
            e.to_string(),
        )
        .into_response(),
    }
}

pub type ApiResult = Result<Response, ApiError>;
