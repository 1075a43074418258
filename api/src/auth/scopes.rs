//! Step 4 of the auth order ([`crate::auth`]): which scope each authenticated route
//! requires, one table read by the auth layer.
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

/// The access rule of a route, `None` when the route is not in the table with this
/// method. `HEAD` follows `GET` (axum answers `HEAD` with the `GET` handler).
pub fn access(method: &Method, route: &str) -> Option<Access> {
    let method = if method == Method::HEAD {
        &Method::GET
    } else {
        method
    };
    ROUTES
        .iter()
        .find(|(m, r, _)| m == method && *r == route)
        .map(|(_, _, a)| *a)
}

/// The methods the table has for a route (for `Allow`), `HEAD` beside `GET`; empty when
/// the route is not in the table.
pub fn methods_of(route: &str) -> Vec<&'static str> {
    let mut methods = Vec::new();
    for (m, r, _) in ROUTES {
        if *r == route {
            methods.push(m.as_str());
            if m == Method::GET {
                methods.push("HEAD");
            }
        }
    }
    methods
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
    fn it_should_allow_head_where_get_is_allowed_and_list_the_methods_of_a_route() {
        assert_eq!(access(&Method::HEAD, "/whoami"), Some(Access::AnyKey));
        assert_eq!(
            methods_of("/organizations/{org}/api-keys/{id}"),
            vec!["GET", "HEAD", "PATCH", "DELETE"]
        );
        assert!(methods_of("/nowhere").is_empty());
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
