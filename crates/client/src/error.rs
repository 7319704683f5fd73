//! [`Error`]: what a call can fail with.

use reqwest::StatusCode;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The server answered with an error status; `message` is its JSON
    /// `error` (which names the field for a 4xx), `request_id` the id a
    /// 5xx carries for the server's log.
    #[error("{status}: {message}")]
    Api {
        status: StatusCode,
        message: String,
        request_id: Option<String>,
    },
    /// The request did not get an answer (connection refused, TLS, timeout).
    #[error("request failed: {0}")]
    Http(#[from] reqwest::Error),
    /// The answer was not what the API describes.
    #[error("unexpected answer: {0}")]
    Decode(String),
    /// The client could not be built (address, certificate).
    #[error("client configuration: {0}")]
    Config(String),
}

impl Error {
    /// The HTTP status, for [`Error::Api`].
    pub fn status(&self) -> Option<StatusCode> {
        match self {
            Error::Api { status, .. } => Some(*status),
            Error::Http(e) => e.status(),
            _ => None,
        }
    }

    /// Whether the job (or route) does not exist.
    pub fn is_not_found(&self) -> bool {
        self.status() == Some(StatusCode::NOT_FOUND)
    }

    pub(crate) async fn from_response(resp: reqwest::Response) -> Error {
        let status = resp.status();
        let request_id = resp
            .headers()
            .get("x-request-id")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let bytes = resp.bytes().await.unwrap_or_default();
        let message = serde_json::from_slice::<serde_json::Value>(&bytes)
            .ok()
            .and_then(|v| v.get("error").and_then(|e| e.as_str()).map(str::to_string))
            .unwrap_or_else(|| {
                let text = String::from_utf8_lossy(&bytes).trim().to_string();
                if text.is_empty() {
                    status.canonical_reason().unwrap_or("error").to_string()
                } else {
                    text
                }
            });
        Error::Api {
            status,
            message,
            request_id,
        }
    }
}
