//! Cross-site and DNS-rebinding defences: kala runs commands on its host,
//! so a web page the user happens to visit must not be able to reach it.
//!
//! * **Host**: a request whose `Host` names neither an IP address,
//!   `localhost`, nor a name given with `--allowed-host` is refused (421)
//!   — a rebinding attack needs a DNS name of its own.
//! * **Origin / Sec-Fetch-Site**: a request that changes anything (any
//!   method but GET, HEAD, OPTIONS) is refused (403) when the browser says
//!   it comes from another site (`Sec-Fetch-Site: cross-site|same-site`)
//!   or its `Origin` is not this server (`null` included).
//! * **Content type**: bodies a browser can send cross-site without a CORS
//!   preflight are refused (415): `text/plain` and `multipart/form-data`
//!   always; `application/x-www-form-urlencoded` when the request comes
//!   from a browser (it carries `Origin` or `Sec-Fetch-*`), because it is
//!   what `curl -d` sends and Kala's scripts rely on it.
//!
//! Owns: the guard middleware. Must not: authenticate (that is `auth`).
//! docs/SECURITY.md has the model.

use axum::extract::Request;
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::AppState;
use crate::error::ApiError;

/// The host part of a `Host` header or an origin's authority (no port,
/// IPv6 brackets removed), lower-cased.
fn host_of(authority: &str) -> String {
    let a = authority.trim();
    let host = if let Some(rest) = a.strip_prefix('[') {
        rest.split(']').next().unwrap_or("")
    } else {
        a.rsplit_once(':')
            .filter(|(_, port)| port.bytes().all(|b| b.is_ascii_digit()))
            .map_or(a, |(h, _)| h)
    };
    host.trim_end_matches('.').to_ascii_lowercase()
}

/// Whether `Host` may reach this server.
pub fn host_allowed(host_header: &str, allowed: &[String]) -> bool {
    let host = host_of(host_header);
    if host.is_empty() {
        return false;
    }
    host == "localhost"
        || host.ends_with(".localhost")
        || host.parse::<std::net::IpAddr>().is_ok()
        || allowed.iter().any(|a| a == "*" || host_of(a) == host)
}

/// Why a state-changing request is refused, if it is.
pub fn cross_site(method: &Method, headers: &HeaderMap) -> Option<ApiError> {
    if matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS) {
        return None;
    }
    let get = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let from_browser = get("origin").is_some() || get("sec-fetch-site").is_some();
    if let Some(site) = get("sec-fetch-site")
        && matches!(site, "cross-site" | "same-site")
    {
        return Some(ApiError::new(
            StatusCode::FORBIDDEN,
            format!("origin: cross-site request refused (Sec-Fetch-Site: {site})"),
        ));
    }
    if let Some(origin) = get("origin") {
        let host = get("host").unwrap_or("");
        let origin_host = origin
            .split_once("://")
            .map(|(_, rest)| rest.split('/').next().unwrap_or(""))
            .unwrap_or("");
        if origin == "null" || !origin_host.eq_ignore_ascii_case(host) {
            return Some(ApiError::new(
                StatusCode::FORBIDDEN,
                format!("origin: cross-site request refused (Origin {origin:?} is not {host:?})"),
            ));
        }
    }
    let content_type = get("content-type")
        .and_then(|c| c.split(';').next())
        .map(|c| c.trim().to_ascii_lowercase())
        .unwrap_or_default();
    let refused = match content_type.as_str() {
        "text/plain" | "multipart/form-data" => true,
        "application/x-www-form-urlencoded" => from_browser,
        _ => false,
    };
    refused.then(|| {
        ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!(
                "content-type: {content_type} is refused (a browser can send it from any site); send application/json"
            ),
        )
    })
}

/// The request's refusal, if it names another host or comes from another
/// site's page; `None` lets it through.
pub fn check(s: &AppState, req: &Request) -> Option<Response> {
    let host = req
        .headers()
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .or_else(|| req.uri().authority().map(|a| a.as_str()))
        .unwrap_or("");
    if !host_allowed(host, &s.config.allowed_hosts) {
        return Some(
            ApiError::new(
                StatusCode::MISDIRECTED_REQUEST,
                format!(
                    "host: {host:?} is not a name of this server; use its address, localhost, or start it with --allowed-host"
                ),
            )
            .into_response(),
        );
    }
    cross_site(req.method(), req.headers()).map(IntoResponse::into_response)
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn hosts() {
        let allowed = vec!["kala.internal".to_string()];
        for ok in [
            "127.0.0.1:8000",
            "localhost:8000",
            "LOCALHOST",
            "[::1]:8000",
            "10.1.2.3",
            "kala.internal:8000",
        ] {
            assert!(host_allowed(ok, &allowed), "{ok}");
        }
        for bad in [
            "evil.example",
            "evil.example:8000",
            "",
            "127.0.0.1.evil.example",
        ] {
            assert!(!host_allowed(bad, &allowed), "{bad}");
        }
        assert!(host_allowed("anything", &["*".to_string()]));
    }

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_static(v));
        }
        h
    }

    #[test]
    fn browsers_from_other_sites_are_refused_and_curl_is_not() {
        let post = Method::POST;
        let status = |h: &[(&'static str, &'static str)]| {
            cross_site(&post, &headers(h)).map(|e| e.status().as_u16())
        };
        // curl -d (form content type, no browser headers), Kala's clients.
        assert_eq!(
            status(&[("content-type", "application/x-www-form-urlencoded")]),
            None
        );
        assert_eq!(status(&[("content-type", "application/json")]), None);
        assert_eq!(status(&[]), None);
        // The web UI: same origin.
        assert_eq!(
            status(&[
                ("host", "127.0.0.1:8000"),
                ("origin", "http://127.0.0.1:8000"),
                ("sec-fetch-site", "same-origin"),
                ("content-type", "application/json"),
            ]),
            None
        );
        // A page elsewhere.
        assert_eq!(
            status(&[
                ("host", "127.0.0.1:8000"),
                ("origin", "http://evil.example")
            ]),
            Some(403)
        );
        assert_eq!(status(&[("sec-fetch-site", "cross-site")]), Some(403));
        assert_eq!(status(&[("host", "h"), ("origin", "null")]), Some(403));
        assert_eq!(
            status(&[("content-type", "text/plain;charset=UTF-8")]),
            Some(415)
        );
        assert_eq!(
            status(&[
                ("host", "127.0.0.1:8000"),
                ("origin", "http://127.0.0.1:8000"),
                ("content-type", "application/x-www-form-urlencoded"),
            ]),
            Some(415)
        );
        assert_eq!(
            cross_site(&Method::GET, &headers(&[("sec-fetch-site", "cross-site")]))
                .map(|e| e.status()),
            None
        );
    }
}
