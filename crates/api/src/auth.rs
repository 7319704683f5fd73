//! The bearer token (`--auth-token`): every `/api/v1` request must carry
//! `Authorization: Bearer <token>` (the scheme in any case), compared in
//! constant time.
//!
//! Owns: the auth middleware. Must not: log or echo the token.

use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::AppState;
use crate::error::ApiError;

/// The credentials of an `Authorization` header with the Bearer scheme
/// (RFC 7235: the scheme is case-insensitive).
fn bearer(headers: &HeaderMap) -> &str {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map_or("", |(_, token)| token.trim())
}

pub async fn auth(State(s): State<AppState>, req: Request, next: Next) -> Response {
    if let Some(token) = &s.config.auth_token {
        // From the request itself: a `HeaderMap` extractor would copy
        // every header of every request.
        let given = bearer(req.headers());
        let ok: bool = subtle::ConstantTimeEq::ct_eq(given.as_bytes(), token.as_bytes()).into();
        if !ok {
            let mut resp = ApiError::new(
                StatusCode::UNAUTHORIZED,
                "authorization: a valid \"Authorization: Bearer <token>\" header is required",
            )
            .into_response();
            resp.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            return resp;
        }
    }
    next.run(req).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_scheme_is_case_insensitive() {
        let mut h = HeaderMap::new();
        for (value, want) in [
            ("Bearer abc", "abc"),
            ("bearer abc", "abc"),
            ("BEARER  abc", "abc"),
            ("Basic abc", ""),
            ("Bearerabc", ""),
        ] {
            h.insert(header::AUTHORIZATION, HeaderValue::from_static(value));
            assert_eq!(bearer(&h), want, "{value}");
        }
    }
}
