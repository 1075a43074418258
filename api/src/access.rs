//! Which scope each authenticated route requires: one table, read by the auth layer.
//! A route under the auth layer that is missing here is refused (fail closed), and a test
//! checks that every documented route has an entry.

use axum::http::Method;
use domain::scope::Scope;

/// What a route demands of a valid key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Any valid key (`GET /whoami`).
    AnyKey,
    /// A key holding this scope.
    Scope(Scope),
}

/// `(method, route template, access)`.
pub const ROUTES: &[(Method, &str, Access)] = &[
    // Data API.
    (
        Method::GET,
        "/organizations/{org}/work-orders",
        Access::Scope(Scope::WORK_ORDERS_READ),
    ),
    (
        Method::POST,
        "/organizations/{org}/work-orders",
        Access::Scope(Scope::WORK_ORDERS_WRITE),
    ),
    (
        Method::GET,
        "/organizations/{org}/work-orders/{id}",
        Access::Scope(Scope::WORK_ORDERS_READ),
    ),
    (
        Method::PATCH,
        "/organizations/{org}/work-orders/{id}",
        Access::Scope(Scope::WORK_ORDERS_WRITE),
    ),
    (
        Method::GET,
        "/organizations/{org}/assets",
        Access::Scope(Scope::ASSETS_READ),
    ),
    (
        Method::POST,
        "/organizations/{org}/assets",
        Access::Scope(Scope::ASSETS_WRITE),
    ),
    (
        Method::GET,
        "/organizations/{org}/locations",
        Access::Scope(Scope::LOCATIONS_READ),
    ),
    (Method::GET, "/whoami", Access::AnyKey),
    // Management.
    (
        Method::POST,
        "/organizations/{org}/api-keys",
        Access::Scope(Scope::API_KEYS_CREATE),
    ),
    (
        Method::GET,
        "/organizations/{org}/api-keys",
        Access::Scope(Scope::API_KEYS_READ),
    ),
    (
        Method::GET,
        "/organizations/{org}/api-keys/{id}",
        Access::Scope(Scope::API_KEYS_READ),
    ),
    (
        Method::PATCH,
        "/organizations/{org}/api-keys/{id}",
        Access::Scope(Scope::API_KEYS_WRITE),
    ),
    (
        Method::DELETE,
        "/organizations/{org}/api-keys/{id}",
        Access::Scope(Scope::API_KEYS_REVOKE),
    ),
    (
        Method::POST,
        "/organizations/{org}/api-keys/{id}/revoke",
        Access::Scope(Scope::API_KEYS_REVOKE),
    ),
    (
        Method::POST,
        "/organizations/{org}/api-keys/{id}/rotate",
        Access::Scope(Scope::API_KEYS_CREATE),
    ),
    (
        Method::GET,
        "/organizations/{org}/api-keys/{id}/usage",
        Access::Scope(Scope::API_KEYS_READ),
    ),
    (
        Method::GET,
        "/organizations/{org}/api-keys/{id}/events",
        Access::Scope(Scope::API_KEYS_READ),
    ),
    (
        Method::GET,
        "/organizations/{org}/usage",
        Access::Scope(Scope::API_KEYS_READ),
    ),
];

/// The access rule of a route, `None` when the route is not in the table.
pub fn access(method: &Method, route: &str) -> Option<Access> {
    ROUTES
        .iter()
        .find(|(m, r, _)| m == method && *r == route)
        .map(|(_, _, a)| *a)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn it_should_ask_for_read_to_list_and_write_to_create_work_orders() {
        assert_eq!(
            access(&Method::GET, "/organizations/{org}/work-orders"),
            Some(Access::Scope(Scope::WORK_ORDERS_READ))
        );
        assert_eq!(
            access(&Method::POST, "/organizations/{org}/work-orders"),
            Some(Access::Scope(Scope::WORK_ORDERS_WRITE))
        );
        assert_eq!(
            access(&Method::PUT, "/organizations/{org}/work-orders"),
            None
        );
    }

    #[test]
    fn it_should_list_each_route_once() {
        for (i, (m, r, _)) in ROUTES.iter().enumerate() {
            assert!(
                !ROUTES[i + 1..].iter().any(|(m2, r2, _)| m2 == m && r2 == r),
                "{m} {r} twice"
            );
        }
    }
}
