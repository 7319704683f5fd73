//! Who may do what. A request to `/api/v1` or `/metrics` carries
//! `Authorization: Bearer <token>` (the scheme in any case) when the
//! server has tokens: a named token of the config file (`[[tokens]]`,
//! checked by its SHA-256 hash in constant time), the `--auth-token`
//! (one admin token), or a JWT signed by a key of `--jwt-jwks`. The
//! caller's [`Principal`] (name, [`Role`], owner scope) goes into the
//! request's extensions; the route's required role ([`rights`]) is
//! checked here, the owner scope by the handlers (`scope.rs`).
//!
//! Without any token source the API is open and every caller is an
//! anonymous admin, as Kala is. Once a server has had tokens it never
//! goes back to open: a reload to an empty set refuses everyone.
//!
//! Owns: the auth middleware, [`Auth`] (the reloadable token set).
//! Must not: log or echo a token.

pub mod jwt;
pub mod rights;
pub(crate) mod scope;
pub mod tokens;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use arc_swap::ArcSwap;
use axum::extract::{FromRequestParts, MatchedPath, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

pub use tokens::{Principal, Role, TokenSet, TokenSpec, hash_of, new_token};

use crate::AppState;
use crate::error::ApiError;

/// The server's credentials: the named tokens (replaced whole on a
/// reload; a request keeps the principal it started with), the
/// `--auth-token`, and the JWT verifier. Clones share one set.
#[derive(Clone, Default)]
pub struct Auth {
    inner: Arc<AuthInner>,
}

#[derive(Default)]
struct AuthInner {
    tokens: ArcSwap<TokenSet>,
    jwt: Option<jwt::Verifier>,
    /// `--auth-token`, kept apart from the named tokens (a reload
    /// replaces only those).
    admin: std::sync::OnceLock<TokenSet>,
    /// Whether any credential has ever been configured.
    on: AtomicBool,
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Auth")
            .field("tokens", &self.inner.tokens.load().len())
            .field("jwt", &self.inner.jwt.is_some())
            .field("on", &self.is_on())
            .finish()
    }
}

impl Auth {
    /// The named tokens and an optional JWT verifier.
    pub fn new(tokens: TokenSet, jwt: Option<jwt::Verifier>) -> Auth {
        let on = !tokens.is_empty() || jwt.is_some();
        Auth {
            inner: Arc::new(AuthInner {
                tokens: ArcSwap::from_pointee(tokens),
                jwt,
                admin: std::sync::OnceLock::new(),
                on: AtomicBool::new(on),
            }),
        }
    }

    /// `--auth-token`: one admin token (named `auth-token`) besides the
    /// named ones; set once.
    pub fn set_admin_token(&self, token: &str) {
        if self
            .inner
            .admin
            .set(TokenSet::default().with_admin_token(token))
            .is_ok()
        {
            self.inner.on.store(true, Ordering::Release);
        }
    }

    /// Replaces the tokens (SIGHUP): requests from now on are checked
    /// against `tokens`; those in flight keep their principal.
    pub fn replace(&self, tokens: TokenSet) {
        if !tokens.is_empty() {
            self.inner.on.store(true, Ordering::Release);
        }
        self.inner.tokens.store(Arc::new(tokens));
    }

    /// Whether requests must authenticate.
    pub fn is_on(&self) -> bool {
        self.inner.on.load(Ordering::Acquire)
    }

    /// The principal of a bearer credential, `None` if it is not valid.
    pub async fn authenticate(&self, credential: &str) -> Option<Principal> {
        if credential.is_empty() {
            return None;
        }
        let named = self.inner.tokens.load().check(credential);
        let admin = self.inner.admin.get().and_then(|a| a.check(credential));
        if let Some(p) = named.or(admin) {
            return Some(p);
        }
        match &self.inner.jwt {
            Some(v) if jwt::looks_like_jwt(credential) => v.verify(credential).await.ok(),
            _ => None,
        }
    }
}

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

fn unauthorized() -> Response {
    let mut resp = ApiError::new(
        StatusCode::UNAUTHORIZED,
        "authorization: a valid \"Authorization: Bearer <token>\" header is required",
    )
    .into_response();
    resp.headers_mut()
        .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    resp
}

/// A 403 naming what the caller lacks.
pub(crate) fn forbidden(message: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::FORBIDDEN, message)
}

pub(crate) async fn auth(State(s): State<AppState>, mut req: Request, next: Next) -> Response {
    let principal = if s.config.auth.is_on() {
        // From the request itself: a `HeaderMap` extractor would copy
        // every header of every request.
        match s.config.auth.authenticate(bearer(req.headers())).await {
            Some(p) => p,
            None => {
                refused(&s, &req, None, 401);
                return unauthorized();
            }
        }
    } else {
        Principal::anonymous()
    };
    let path = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| req.uri().path().to_string(), |m| m.as_str().to_string());
    let need = rights::required(req.method(), &path);
    if principal.role < need {
        refused(&s, &req, Some(&principal), 403);
        return forbidden(format!(
            "role: {} {path} needs the {need} role; {} has {}",
            req.method(),
            principal.name,
            principal.role
        ))
        .into_response();
    }
    let audit_403 = s.config.auth.is_on().then(|| {
        (
            principal.clone(),
            req.method().clone(),
            req.uri().path().to_string(),
            source_of(req.extensions()),
        )
    });
    req.extensions_mut().insert(principal);
    let resp = next.run(req).await;
    // A handler's 403 (an owner scope, a local command) is a refusal too.
    if resp.status() == StatusCode::FORBIDDEN
        && let Some((p, method, path, source)) = audit_403
    {
        record_refusal(&s, Some(&p), method.as_str(), &path, source, 403);
    }
    resp
}

/// The client's address, as the server put it in the request.
fn source_of(ext: &axum::http::Extensions) -> String {
    ext.get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .map(|c| c.0.to_string())
        .unwrap_or_default()
}

/// Records a refused request in the audit log (at most [`REFUSALS_PER_SECOND`]
/// a second: a flood of bad tokens must not fill the store).
fn refused(s: &AppState, req: &Request, p: Option<&Principal>, status: u16) {
    record_refusal(
        s,
        p,
        req.method().as_str(),
        req.uri().path(),
        source_of(req.extensions()),
        status,
    );
}

/// Refusals recorded per second, at most; the rest are counted in the log.
const REFUSALS_PER_SECOND: u32 = 20;

fn record_refusal(
    s: &AppState,
    p: Option<&Principal>,
    method: &str,
    path: &str,
    source: String,
    status: u16,
) {
    if !s.engine.audits() || !s.refusals.admit() {
        return;
    }
    let actor = kala_engine::Actor {
        name: p.map_or_else(
            || "(no valid credential)".to_string(),
            |p| p.name.to_string(),
        ),
        source,
        request_id: String::new(),
    };
    let detail = serde_json::json!({ "status": status, "method": method, "path": path });
    let engine = s.engine.clone();
    tokio::spawn(async move {
        if let Err(e) = engine.record_audit(&actor, "refused", detail).await {
            tracing::warn!(error = %e, "a refused request could not be audited");
        }
    });
}

/// A fixed-window limit of refusals recorded per second.
#[derive(Default)]
pub(crate) struct RefusalLimit {
    window: std::sync::Mutex<(Option<std::time::Instant>, u32, u64)>,
}

impl RefusalLimit {
    fn admit(&self) -> bool {
        let Ok(mut w) = self.window.lock() else {
            return false;
        };
        let now = std::time::Instant::now();
        if w.0
            .is_none_or(|t| now.duration_since(t) >= std::time::Duration::from_secs(1))
        {
            if w.2 > 0 {
                tracing::warn!(
                    dropped = w.2,
                    "refused requests over the audit limit were not recorded"
                );
            }
            *w = (Some(now), 0, 0);
        }
        if w.1 < REFUSALS_PER_SECOND {
            w.1 += 1;
            true
        } else {
            w.2 += 1;
            false
        }
    }
}

/// The caller as the audit log names it, and its principal: the
/// principal's name, the client's address, and the request's id (the
/// client's `x-request-id` when it is a plain token of up to 64
/// characters, else a new one).
pub(crate) struct Acting(pub kala_engine::Actor, pub Principal);

impl<S: Send + Sync> FromRequestParts<S> for Acting {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, s: &S) -> Result<Self, Self::Rejection> {
        let Ok(Caller(p)) = Caller::from_request_parts(parts, s).await;
        let request_id = parts
            .headers
            .get("x-request-id")
            .and_then(|v| v.to_str().ok())
            .filter(|v| {
                !v.is_empty()
                    && v.len() <= 64
                    && v.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b))
            })
            .map_or_else(
                || format!("{:016x}", kala_store::unique_u64()),
                str::to_string,
            );
        let actor = kala_engine::Actor {
            name: p.name.to_string(),
            source: source_of(&parts.extensions),
            request_id,
        };
        Ok(Acting(actor, p))
    }
}

/// The caller, for handlers: the principal the middleware found (an
/// anonymous admin when the middleware did not run).
pub(crate) struct Caller(pub Principal);

impl<S: Send + Sync> FromRequestParts<S> for Caller {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(Caller(
            parts
                .extensions
                .get::<Principal>()
                .cloned()
                .unwrap_or_else(Principal::anonymous),
        ))
    }
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

    #[tokio::test]
    async fn a_reload_to_no_tokens_refuses_everyone() {
        let auth = Auth::new(TokenSet::default().with_admin_token("a"), None);
        assert!(auth.authenticate("a").await.is_some());
        auth.replace(TokenSet::default());
        assert!(auth.is_on());
        assert!(auth.authenticate("a").await.is_none());
        let open = Auth::default();
        assert!(!open.is_on());
        open.replace(TokenSet::default().with_admin_token("b"));
        assert!(open.is_on() && open.authenticate("b").await.is_some());
    }
}
