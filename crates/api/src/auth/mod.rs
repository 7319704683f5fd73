//! Who may do what. A request to `/api/v1` or `/metrics` carries
//! `Authorization: Bearer <token>` (the scheme in any case) when the
//! server has tokens: a named token of the config file (`[[tokens]]`,
//! checked by its SHA-256 hash in constant time), the `--auth-token`
//! (one admin token), or a JWT signed by a key of `--jwt-jwks`. The
//! caller's [`Principal`] (name, [`Role`], owner scope) goes into the
//! request's extensions; the route's required role ([`rights`]) is
//! checked here, the owner scope by the handlers ([`scope`]).
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
            None => return unauthorized(),
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
        return forbidden(format!(
            "role: {} {path} needs the {need} role; {} has {}",
            req.method(),
            principal.name,
            principal.role
        ))
        .into_response();
    }
    req.extensions_mut().insert(principal);
    next.run(req).await
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
