//! Typed extractors whose rejection is the API's own error: a request
//! body read under `--max-body-bytes`, JSON decoded with the problem
//! named, and page sizes clamped in one place.
//!
//! Owns: [`Body`], [`Json`], [`Path`], [`Query`], [`clamp_limit`]. Must not: validate jobs
//! (the job model does).

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::StatusCode;
use axum::http::request::Parts;
use serde::de::DeserializeOwned;

use crate::AppState;
use crate::error::ApiError;

/// How long a client has to send a request's body (a 408 after).
pub const BODY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// The raw request body, at most `max_body_bytes` long (413 otherwise),
/// sent within [`BODY_TIMEOUT`] (408 otherwise).
pub struct Body(pub Bytes);

impl FromRequest<AppState> for Body {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        let limit = state.config.max_body_bytes;
        let read = axum::body::to_bytes(req.into_body(), limit);
        match tokio::time::timeout(BODY_TIMEOUT, read).await {
            Ok(Ok(bytes)) => Ok(Body(bytes)),
            Ok(Err(_)) => Err(ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("body: larger than the limit of {limit} bytes"),
            )),
            Err(_) => Err(ApiError::new(
                StatusCode::REQUEST_TIMEOUT,
                format!("body: not received within {BODY_TIMEOUT:?}"),
            )),
        }
    }
}

/// A JSON body decoded into `T`; a 400 names what does not decode.
pub struct Json<T>(pub T);

impl<T: DeserializeOwned> FromRequest<AppState> for Json<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        let Body(bytes) = Body::from_request(req, state).await?;
        serde_json::from_slice(&bytes)
            .map(Json)
            .map_err(|e| ApiError::bad_request(format!("body: {e}")))
    }
}

/// A path parameter; a 400 with a JSON body when it does not decode (a
/// percent-encoded byte sequence that is not UTF-8), not axum's text.
pub struct Path<T>(pub T);

impl<T, S> FromRequestParts<S> for Path<T>
where
    T: DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Path(v)| Path(v))
            .map_err(|e| ApiError::bad_request(format!("path: {}", e.body_text())))
    }
}

/// A query string; a 400 with a JSON body naming the parameter that does
/// not decode (`?limit=x`, `?stats=maybe`), not axum's text.
pub struct Query<T>(pub T);

impl<T, S> FromRequestParts<S> for Query<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Query(v)| Query(v))
            .map_err(|e| ApiError::bad_request(format!("query: {}", e.body_text())))
    }
}

/// Every `limit`/`count` of the API: `default` when absent, within
/// `1..=max` otherwise.
pub fn clamp_limit(given: Option<usize>, default: usize, max: usize) -> usize {
    given.unwrap_or(default).clamp(1, max)
}

#[cfg(test)]
mod tests {
    use super::clamp_limit;

    #[test]
    fn limits_are_clamped() {
        assert_eq!(clamp_limit(None, 100, 10_000), 100);
        assert_eq!(clamp_limit(Some(0), 100, 10_000), 1);
        assert_eq!(clamp_limit(Some(usize::MAX), 100, 10_000), 10_000);
    }
}
