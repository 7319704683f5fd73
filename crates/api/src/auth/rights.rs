//! The role each route needs, in one table: the middleware checks it and
//! the OpenAPI document shows it (`x-kala-role` on every operation).
//! A route missing from the table needs `admin`, so a new route is closed
//! until it is listed (a test checks every documented route is).
//!
//! Owns: [`ROUTES`], [`required`]. Job-level rights (owner scopes, local
//! commands) are the handlers' (`scope`).

use axum::http::Method;

use super::Role;

/// Method, route (as the router matches it, without the trailing slash),
/// role.
pub const ROUTES: &[(Method, &str, Role)] = &[
    (Method::GET, "/api/v1/job", Role::Reader),
    (Method::POST, "/api/v1/job", Role::Editor),
    (Method::DELETE, "/api/v1/job/all", Role::Admin),
    (Method::GET, "/api/v1/job/{id}", Role::Reader),
    (Method::DELETE, "/api/v1/job/{id}", Role::Editor),
    (Method::GET, "/api/v1/job/{id}/runs", Role::Reader),
    (Method::PUT, "/api/v1/job/{id}/notify", Role::Editor),
    (Method::GET, "/api/v1/job/stats/{id}", Role::Reader),
    (Method::POST, "/api/v1/job/start/{id}", Role::Operator),
    (Method::POST, "/api/v1/job/enable/{id}", Role::Operator),
    (Method::POST, "/api/v1/job/disable/{id}", Role::Operator),
    (Method::GET, "/api/v1/stats", Role::Reader),
    (Method::POST, "/api/v1/schedule/preview", Role::Reader),
    (Method::GET, "/api/v1/cluster", Role::Reader),
    (Method::GET, "/api/v1/whoami", Role::Reader),
    (Method::GET, "/api/v1/audit", Role::Reader),
    (Method::GET, "/metrics", Role::Reader),
];

/// The role `method` on `route` needs (a HEAD is a GET).
pub fn required(method: &Method, route: &str) -> Role {
    let route = match route.strip_suffix('/') {
        Some(r) if !r.is_empty() => r,
        _ => route,
    };
    let method = if method == Method::HEAD {
        &Method::GET
    } else {
        method
    };
    ROUTES
        .iter()
        .find(|(m, r, _)| m == method && *r == route)
        .map_or(Role::Admin, |(_, _, role)| *role)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_routes_need_admin_and_slashes_do_not_matter() {
        assert_eq!(required(&Method::GET, "/api/v1/job/"), Role::Reader);
        assert_eq!(required(&Method::HEAD, "/api/v1/job"), Role::Reader);
        assert_eq!(required(&Method::PATCH, "/api/v1/job"), Role::Admin);
        assert_eq!(required(&Method::GET, "/api/v1/secret"), Role::Admin);
        assert_eq!(required(&Method::DELETE, "/api/v1/job/all/"), Role::Admin);
    }
}
