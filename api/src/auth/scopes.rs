//! Step 4 of the auth order ([`crate::auth`]): which scope each authenticated route
//! requires.
//!
//! No table is written by hand. Each route declares its scope once, in the `security` of
//! its `#[utoipa::path]` annotation (`security(("bearer" = ["api-keys:read"]))`, or
//! `("bearer" = [])` for any valid key); the same annotation gives `routes!` its path and
//! method. [`AccessTable::from_openapi`] reads the scopes back from the document of the
//! routes behind the auth layer ([`crate::routes::protected`]), so the router, the served
//! document and the auth layer cannot disagree. A route behind the layer that the table
//! does not know is refused (fail closed).

use std::collections::BTreeMap;

use axum::http::Method;
use domain::scope::Scope;
use serde_json::Value;

/// What a route demands of a valid key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Any valid key (`GET /whoami`).
    AnyKey,
    /// A key holding this scope.
    Scope(Scope),
}

/// An annotation the table cannot read: a start-up error (the binary refuses to serve).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AccessTableError {
    #[error("{method} {path}: no `bearer` security requirement in its annotation")]
    NoSecurity { method: String, path: String },
    #[error("{method} {path}: more than one scope in its annotation")]
    SeveralScopes { method: String, path: String },
    #[error("{method} {path}: unknown scope {scope:?} in its annotation")]
    UnknownScope {
        method: String,
        path: String,
        scope: String,
    },
}

/// `route template -> [(method, access)]`, read from the routes' annotations.
#[derive(Debug, Clone, Default)]
pub struct AccessTable {
    routes: BTreeMap<String, Vec<(Method, Access)>>,
}

/// The methods an OpenAPI path item may hold, in the order `Allow` lists them.
const METHODS: [(&str, Method); 5] = [
    ("get", Method::GET),
    ("post", Method::POST),
    ("put", Method::PUT),
    ("patch", Method::PATCH),
    ("delete", Method::DELETE),
];

impl AccessTable {
    /// Every operation of `doc` with the scope its annotation declares. Every operation
    /// must declare exactly one `bearer` requirement holding at most one scope.
    pub fn from_openapi(doc: &utoipa::openapi::OpenApi) -> Result<Self, AccessTableError> {
        let doc = serde_json::to_value(doc).unwrap_or_default();
        let mut routes: BTreeMap<String, Vec<(Method, Access)>> = BTreeMap::new();
        let Some(paths) = doc.get("paths").and_then(Value::as_object) else {
            return Ok(Self { routes });
        };
        for (path, item) in paths {
            for (name, method) in &METHODS {
                let Some(op) = item.get(*name) else { continue };
                let access = access_of(op, name, path)?;
                routes
                    .entry(path.clone())
                    .or_default()
                    .push((method.clone(), access));
            }
        }
        Ok(Self { routes })
    }

    /// The access rule of a route, `None` when the route does not have this method.
    /// `HEAD` follows `GET` (axum answers `HEAD` with the `GET` handler).
    pub fn access(&self, method: &Method, route: &str) -> Option<Access> {
        let method = if method == Method::HEAD {
            &Method::GET
        } else {
            method
        };
        self.routes
            .get(route)?
            .iter()
            .find(|(m, _)| m == method)
            .map(|(_, a)| *a)
    }

    /// The methods a route has (for `Allow`), `HEAD` beside `GET`; empty when the route is
    /// not in the table.
    pub fn methods_of(&self, route: &str) -> Vec<&str> {
        let mut methods = Vec::new();
        for (m, _) in self.routes.get(route).into_iter().flatten() {
            methods.push(m.as_str());
            if m == Method::GET {
                methods.push("HEAD");
            }
        }
        methods
    }

    /// Every `(method, route, access)`, for tests and documentation.
    pub fn iter(&self) -> impl Iterator<Item = (&Method, &str, Access)> {
        self.routes
            .iter()
            .flat_map(|(r, ms)| ms.iter().map(move |(m, a)| (m, r.as_str(), *a)))
    }
}

fn access_of(op: &Value, method: &str, path: &str) -> Result<Access, AccessTableError> {
    let method = method.to_ascii_uppercase();
    let path = path.to_owned();
    let scopes = op
        .get("security")
        .and_then(Value::as_array)
        .and_then(|reqs| reqs.iter().find_map(|r| r.get("bearer")))
        .and_then(Value::as_array);
    let Some(scopes) = scopes else {
        return Err(AccessTableError::NoSecurity { method, path });
    };
    match scopes.as_slice() {
        [] => Ok(Access::AnyKey),
        [one] => {
            let name = one.as_str().unwrap_or_default();
            Scope::parse(name)
                .map(Access::Scope)
                .map_err(|_| AccessTableError::UnknownScope {
                    method,
                    path,
                    scope: name.to_owned(),
                })
        }
        _ => Err(AccessTableError::SeveralScopes { method, path }),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn table() -> AccessTable {
        AccessTable::from_openapi(crate::routes::protected().get_openapi())
            .expect("every annotation names one known scope")
    }

    fn doc(op: Value) -> utoipa::openapi::OpenApi {
        serde_json::from_value(json!({
            "openapi": "3.1.0",
            "info": {"title": "t", "version": "1"},
            "paths": {"/x": {"get": op}}
        }))
        .unwrap()
    }

    #[test]
    fn it_should_ask_for_read_to_list_and_write_to_create_work_orders() {
        let table = table();
        assert_eq!(
            table.access(&Method::GET, "/organizations/{org}/work-orders"),
            Some(Access::Scope(Scope::WORK_ORDERS_READ))
        );
        assert_eq!(
            table.access(&Method::POST, "/organizations/{org}/work-orders"),
            Some(Access::Scope(Scope::WORK_ORDERS_WRITE))
        );
        assert_eq!(
            table.access(&Method::PUT, "/organizations/{org}/work-orders"),
            None
        );
    }

    #[test]
    fn it_should_give_each_management_route_the_scope_of_the_contract() {
        let table = table();
        let keys = "/organizations/{org}/api-keys";
        let key = "/organizations/{org}/api-keys/{id}";
        for (method, route, scope) in [
            (Method::POST, keys.to_owned(), Scope::API_KEYS_CREATE),
            (Method::GET, keys.to_owned(), Scope::API_KEYS_READ),
            (Method::GET, key.to_owned(), Scope::API_KEYS_READ),
            (Method::PATCH, key.to_owned(), Scope::API_KEYS_WRITE),
            (Method::DELETE, key.to_owned(), Scope::API_KEYS_REVOKE),
            (
                Method::POST,
                format!("{key}/revoke"),
                Scope::API_KEYS_REVOKE,
            ),
            (
                Method::POST,
                format!("{key}/rotate"),
                Scope::API_KEYS_CREATE,
            ),
            (Method::GET, format!("{key}/usage"), Scope::API_KEYS_READ),
            (Method::GET, format!("{key}/events"), Scope::API_KEYS_READ),
            (
                Method::GET,
                "/organizations/{org}/usage".to_owned(),
                Scope::API_KEYS_READ,
            ),
        ] {
            assert_eq!(
                table.access(&method, &route),
                Some(Access::Scope(scope)),
                "{method} {route}"
            );
        }
    }

    #[test]
    fn it_should_allow_head_where_get_is_allowed_and_list_the_methods_of_a_route() {
        let table = table();
        assert_eq!(table.access(&Method::HEAD, "/whoami"), Some(Access::AnyKey));
        assert_eq!(
            table.methods_of("/organizations/{org}/api-keys/{id}"),
            vec!["GET", "HEAD", "PATCH", "DELETE"]
        );
        assert!(table.methods_of("/nowhere").is_empty());
    }

    #[test]
    fn it_should_refuse_an_annotation_without_security_or_with_an_unknown_scope() {
        assert_eq!(
            AccessTable::from_openapi(&doc(json!({"responses": {}}))).unwrap_err(),
            AccessTableError::NoSecurity {
                method: "GET".into(),
                path: "/x".into()
            }
        );
        assert!(matches!(
            AccessTable::from_openapi(&doc(
                json!({"responses": {}, "security": [{"bearer": ["nope:read"]}]})
            )),
            Err(AccessTableError::UnknownScope { .. })
        ));
        assert!(matches!(
            AccessTable::from_openapi(&doc(
                json!({"responses": {}, "security": [{"bearer": ["assets:read", "iot:read"]}]})
            )),
            Err(AccessTableError::SeveralScopes { .. })
        ));
    }
}
