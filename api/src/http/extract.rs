//! Our own extractors, so that every rejection is the same problem+json:
//! - [`AppJson`]: 400 for a body that is not JSON, 415 for a wrong content type, 413 over
//!   the size limit, and 422 naming the field for unknown fields, wrong types and missing
//!   fields;
//! - [`Tenant`] and [`TenantKey`]: the path's organisation when it is the calling key's
//!   own (and the path's key id), else 404: another tenant's resources are
//!   indistinguishable from missing ones;
//! - [`IfMatch`]: the version named by `If-Match` (400 when unreadable).
//!
//! Handlers take them in this order: the tenant first, headers next, the body last (axum
//! runs extractors in order), so a request for another organisation is a 404 whatever its
//! body, and a body is never parsed for a path the key may not see.

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, RawPathParams, Request};
use axum::http::header;
use axum::http::request::Parts;
use domain::ids::{KeyId, OrgId};
use serde::de::DeserializeOwned;

use crate::app::AppState;
use crate::auth::Principal;
use crate::http::error::{ApiError, FieldError};

/// The `{org}` of the path, when it is the calling key's organisation (else 404).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tenant(pub OrgId);

/// The `{org}` and `{id}` of a key's path: the calling key's organisation and a well-formed
/// key id (else 404). That the key belongs to the organisation is the query's business.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TenantKey {
    pub org_id: OrgId,
    pub key_id: KeyId,
}

/// A path parameter by name.
async fn path_param(parts: &mut Parts, state: &AppState, name: &str) -> Result<String, ApiError> {
    let params = RawPathParams::from_request_parts(parts, state)
        .await
        .map_err(|_| ApiError::NotFound)?;
    params
        .iter()
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_owned())
        .ok_or_else(|| ApiError::Internal(format!("the route has no {{{name}}} parameter")))
}

impl FromRequestParts<AppState> for Tenant {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let principal = Principal::from_request_parts(parts, state).await?;
        let org = path_param(parts, state, "org").await?;
        principal.require_org(&org).map(Tenant)
    }
}

impl FromRequestParts<AppState> for TenantKey {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let Tenant(org_id) = Tenant::from_request_parts(parts, state).await?;
        let id = path_param(parts, state, "id").await?;
        let key_id = id.parse::<KeyId>().map_err(|_| ApiError::NotFound)?;
        Ok(TenantKey { org_id, key_id })
    }
}

/// The version named by `If-Match` (`"3"`, `W/"3"` or `3`); `None` without the header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IfMatch(pub Option<u64>);

impl<S: Send + Sync> FromRequestParts<S> for IfMatch {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, ApiError> {
        if_match(&parts.headers).map(IfMatch)
    }
}

fn if_match(headers: &axum::http::HeaderMap) -> Result<Option<u64>, ApiError> {
    let Some(value) = headers.get(header::IF_MATCH) else {
        return Ok(None);
    };
    let raw = value
        .to_str()
        .map_err(|_| ApiError::BadRequest("If-Match is not visible ASCII".into()))?
        .trim();
    let raw = raw.strip_prefix("W/").unwrap_or(raw).trim_matches('"');
    raw.parse::<u64>().map(Some).map_err(|_| {
        ApiError::BadRequest(format!(
            "If-Match must be a version from this resource's ETag, got {raw:?}"
        ))
    })
}

/// `Json<T>` with keyledger's problem+json rejections.
#[derive(Debug, Clone, Copy, Default)]
pub struct AppJson<T>(pub T);

impl<S, T> FromRequest<S> for AppJson<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let is_json = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .map(|mime| {
                let mime = mime.trim().to_ascii_lowercase();
                mime == "application/json" || mime.ends_with("+json")
            })
            .unwrap_or(false);
        if !is_json {
            return Err(ApiError::UnsupportedMediaType);
        }
        let bytes = Bytes::from_request(req, state).await.map_err(|rejection| {
            if rejection.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::PayloadTooLarge
            } else {
                ApiError::BadRequest(rejection.body_text())
            }
        })?;
        parse_json(&bytes).map(AppJson)
    }
}

/// Parses a JSON body into `T`, mapping errors to 400 (syntax) or 422 (data, naming the
/// field).
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    // First make sure it is JSON at all: a syntax error is a 400, not a 422.
    let value: serde_json::Value = serde_json::from_slice(bytes)
        .map_err(|e| ApiError::MalformedJson(format!("line {} column {}", e.line(), e.column())))?;
    from_value(value)
}

/// Deserialises an already-parsed JSON value into `T`, naming the field on error (422).
///
/// Every request body of this API is a JSON object: anything else is a 422 naming `body`.
/// (serde would otherwise read a struct from an array of its fields in order, so that
/// `[null, null]` passed for an empty change.)
pub fn from_value<T: DeserializeOwned>(value: serde_json::Value) -> Result<T, ApiError> {
    if !value.is_object() {
        return Err(ApiError::field("body", "must be a JSON object"));
    }
    serde_path_to_error::deserialize(value).map_err(|err| {
        let path = err.path().to_string();
        let message = err.inner().to_string();
        ApiError::Validation(vec![FieldError::new(field_name(&path, &message), message)])
    })
}

/// The field a serde error is about: the path (which already ends in an unknown field),
/// or for a missing field the name inside the message's backticks, joined to the path of
/// its parent object.
fn field_name(path: &str, message: &str) -> String {
    let named = if message.starts_with("missing field") {
        message.split('`').nth(1)
    } else {
        None
    };
    let parent = if path == "." { "" } else { path };
    match named {
        Some(name) if parent.is_empty() => name.to_owned(),
        Some(name) => format!("{parent}.{name}"),
        None if parent.is_empty() => "body".to_owned(),
        None => parent.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use axum::http::{HeaderMap, HeaderValue};
    use serde::Deserialize;

    use super::*;

    #[test]
    fn it_should_read_if_match_in_every_usual_form() {
        for (raw, want) in [("\"3\"", 3), ("W/\"4\"", 4), ("5", 5)] {
            let mut h = HeaderMap::new();
            h.insert(header::IF_MATCH, HeaderValue::from_static(raw));
            assert_eq!(if_match(&h).unwrap(), Some(want));
        }
        let mut h = HeaderMap::new();
        h.insert(header::IF_MATCH, HeaderValue::from_static("\"abc\""));
        assert!(matches!(if_match(&h), Err(ApiError::BadRequest(_))));
        assert_eq!(if_match(&HeaderMap::new()).unwrap(), None);
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)] // fields exist to be deserialised
    struct Body {
        name: String,
        scopes: Option<Vec<String>>,
        limit: Option<u32>,
    }

    fn field_of(json: &str) -> String {
        match parse_json::<Body>(json.as_bytes()) {
            Err(ApiError::Validation(errors)) => errors[0].field.clone(),
            other => panic!("expected a 422, got {other:?}"),
        }
    }

    #[test]
    fn it_should_name_an_unknown_field() {
        assert_eq!(field_of(r#"{"name":"a","colour":"red"}"#), "colour");
    }

    #[test]
    fn it_should_name_a_field_of_the_wrong_type() {
        assert_eq!(field_of(r#"{"name":5}"#), "name");
        assert_eq!(field_of(r#"{"name":"a","scopes":["x",3]}"#), "scopes[1]");
        assert_eq!(field_of(r#"{"name":"a","limit":-1}"#), "limit");
    }

    #[test]
    fn it_should_name_a_missing_field() {
        assert_eq!(field_of(r#"{}"#), "name");
    }

    #[test]
    fn it_should_refuse_a_body_that_is_not_an_object_naming_the_body() {
        for json in [r#"["a", null, null]"#, "null", "3", r#""a""#] {
            match parse_json::<Body>(json.as_bytes()) {
                Err(ApiError::Validation(errors)) => assert_eq!(errors[0].field, "body", "{json}"),
                other => panic!("{json}: expected a 422, got {other:?}"),
            }
        }
    }

    #[test]
    fn it_should_answer_400_for_malformed_json() {
        assert!(matches!(
            parse_json::<Body>(b"{\"name\": "),
            Err(ApiError::MalformedJson(_))
        ));
    }
}
