//! The web UI: three files compiled into the binary (no CDN, no build
//! step, works offline), served with a strict Content-Security-Policy.
//! The API calls the page makes carry the token the user typed.
//!
//! Owns: the asset routes and their headers. Must not: serve anything but
//! these files.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

const WEBUI_CSP: &str = "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; connect-src 'self'; frame-ancestors 'none'";

fn asset(content_type: &'static str, body: &'static str) -> Response {
    let mut resp = (StatusCode::OK, body).into_response();
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(WEBUI_CSP),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    resp
}

pub async fn index() -> Response {
    asset(
        "text/html; charset=utf-8",
        include_str!("../webui/index.html"),
    )
}

pub async fn js() -> Response {
    asset(
        "text/javascript; charset=utf-8",
        include_str!("../webui/app.js"),
    )
}

pub async fn css() -> Response {
    asset("text/css; charset=utf-8", include_str!("../webui/app.css"))
}

pub async fn redirect() -> Response {
    let mut resp = StatusCode::FOUND.into_response();
    resp.headers_mut()
        .insert(header::LOCATION, HeaderValue::from_static("/webui/"));
    resp
}
