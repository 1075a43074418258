//! The one mapping from errors to HTTP: RFC 9457 `application/problem+json` with a stable
//! `code`. Every variant documents its status.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use commands::keys::CommandError;
use domain::policy::PolicyError;
use domain::store::StoreError;
use domain::values::{ExpiryError, GracePeriodError, ReasonError};
use domain::{apikey, organization};
use serde::Serialize;

/// One invalid field of a request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct FieldError {
    /// The field, as a JSON path (`name`, `scopes[2]`, `allowed_ips[0]`).
    pub field: String,
    /// Why it is invalid.
    pub message: String,
}

impl FieldError {
    /// A field error.
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }
}

/// What failed its integrity check, for [`ApiError::Integrity`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Integrity {
    /// A bearer token's key (401).
    Authentication,
    /// The key a command is about (409).
    Key,
    /// The organisation a command is about (409).
    Organization,
}

/// An error answered to an HTTP client.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// 400 `malformed_json`: the body is not JSON.
    #[error("malformed JSON: {0}")]
    MalformedJson(String),
    /// 400 `bad_request`: a header or query parameter is unusable.
    #[error("bad request: {0}")]
    BadRequest(String),
    /// 401 `invalid_token`: no usable bearer token (with `WWW-Authenticate`).
    #[error("unauthenticated: {0}")]
    Unauthenticated(String),
    /// 403 `insufficient_scope`: the key lacks the route's scope (named).
    #[error("missing scope {0}")]
    InsufficientScope(String),
    /// 403 `scope_not_held`: a key tried to grant a scope it does not hold itself.
    #[error("cannot grant scope {0}")]
    ScopeNotHeld(String),
    /// 403 `key_not_subordinate`: the target key holds a scope (named) the acting key does
    /// not; a key may update or rotate only keys whose scopes are a subset of its own.
    #[error("key not subordinate: holds {0}")]
    KeyNotSubordinate(String),
    /// 403 `restriction_not_held`: the new or changed key would be less restricted than the
    /// acting key (field named: `expires_at`, `allowed_ips`, `rate_limit_per_minute`).
    #[error("restriction not held: {field}: {message}")]
    RestrictionNotHeld {
        /// The request field at fault.
        field: &'static str,
        /// Why.
        message: String,
    },
    /// 403 `ip_not_allowed`: the client IP is outside the key's allowed CIDRs.
    #[error("client IP not allowed")]
    IpNotAllowed,
    /// 403 `no_route_rule`: no gateway route rule covers the call (method and path named).
    #[error("no gateway route rule for {method} {path}")]
    NoRouteRule {
        /// The original call's method.
        method: String,
        /// The original call's path, without its query.
        path: String,
    },
    /// 403 `plan_required`: the organisation's plan does not allow this.
    #[error("plan required: {0}")]
    PlanRequired(String),
    /// 403 `key_limit_reached`: the plan's active key limit is reached.
    #[error("key limit of {0} reached")]
    KeyLimitReached(u32),
    /// 404 `not_found`: the resource does not exist (or belongs to another organisation).
    #[error("not found")]
    NotFound,
    /// 405 `method_not_allowed`: the route exists but not with this method (with `Allow`).
    #[error("method not allowed")]
    MethodNotAllowed,
    /// 409 `conflict`: concurrent writers won every retry, or a request with this
    /// `Idempotency-Key` is still in progress; sending it again may succeed.
    #[error("conflict: {0}")]
    Conflict(String),
    /// 409 `key_revoked`: the key is revoked; only revoking it again is accepted.
    #[error("the key is revoked")]
    KeyRevoked,
    /// 409 `key_expired`: the key has expired; it cannot be rotated or given a new expiry.
    #[error("the key has expired")]
    KeyExpired,
    /// 409 `key_rotated`: the key was rotated; it cannot be rotated again or given a new
    /// expiry (its successor is named).
    #[error("the key was rotated to {0}")]
    KeyRotated(String),
    /// 409 `already_exists`: the resource to create exists already.
    #[error("already exists: {0}")]
    AlreadyExists(String),
    /// A hash chain is broken (`domain::chain`): 401 `key_integrity` (with
    /// `WWW-Authenticate`) for a token whose key's stream fails its check; 409
    /// `key_integrity` for a command on such a key; 409 `org_integrity` for a command on
    /// an organisation whose stream fails it. The detail names neither the event nor the
    /// break: that goes to the log and to `keyledger audit`.
    #[error("integrity check failed: {0:?}")]
    Integrity(Integrity),
    /// 412 `precondition_failed`: `If-Match` names an older version.
    #[error("precondition failed: current version is {current}")]
    PreconditionFailed {
        /// The resource's current version.
        current: u64,
    },
    /// 413 `payload_too_large`: the body is over the limit.
    #[error("payload too large")]
    PayloadTooLarge,
    /// 415 `unsupported_media_type`: the body is not `application/json`.
    #[error("unsupported media type")]
    UnsupportedMediaType,
    /// 431 `headers_too_large`: the request's header section is over the limit.
    #[error("request header fields too large")]
    HeadersTooLarge,
    /// 422 `validation_failed`: fields are invalid; each is named.
    #[error("validation failed")]
    Validation(Vec<FieldError>),
    /// 422 `idempotency_key_reused`: the `Idempotency-Key` was used with another request.
    #[error("idempotency key reused with a different request")]
    IdempotencyKeyReused,
    /// 429 `rate_limited`: over the key's rate limit (with `Retry-After`).
    #[error("rate limited")]
    RateLimited {
        /// Seconds until a request may succeed.
        retry_after_secs: u64,
    },
    /// 429 `too_many_failed_attempts`: too many wrong tokens for this key id lately; no
    /// more are checked until the window ends (with `Retry-After`).
    #[error("too many failed attempts")]
    TooManyFailedAttempts {
        /// Seconds until tokens for the key are checked again.
        retry_after_secs: u64,
    },
    /// 429 `verification_busy`: too many unproven tokens wait for verification (with
    /// `Retry-After: 1`).
    #[error("verification busy")]
    VerificationBusy,
    /// 503 `unavailable`: a store or the bus is unreachable, the command kept conflicting
    /// with concurrent writers, or the request outran the request timeout
    /// ([`crate::http::middleware::REQUEST_TIMEOUT`]).
    #[error("service unavailable: {0}")]
    Unavailable(String),
    /// 500 `internal`: anything unexpected. The cause is logged, never shown.
    #[error("internal error: {0}")]
    Internal(String),
}

impl ApiError {
    /// A 422 naming one field.
    pub fn field(field: impl Into<String>, message: impl Into<String>) -> Self {
        ApiError::Validation(vec![FieldError::new(field, message)])
    }

    /// A 422 naming the field a refused value is set by.
    pub fn invalid(e: impl Into<FieldError>) -> Self {
        ApiError::Validation(vec![e.into()])
    }

    /// The status and stable code.
    pub fn status_and_code(&self) -> (StatusCode, &'static str) {
        use ApiError::*;
        match self {
            MalformedJson(_) => (StatusCode::BAD_REQUEST, "malformed_json"),
            BadRequest(_) => (StatusCode::BAD_REQUEST, "bad_request"),
            Unauthenticated(_) => (StatusCode::UNAUTHORIZED, "invalid_token"),
            InsufficientScope(_) => (StatusCode::FORBIDDEN, "insufficient_scope"),
            ScopeNotHeld(_) => (StatusCode::FORBIDDEN, "scope_not_held"),
            KeyNotSubordinate(_) => (StatusCode::FORBIDDEN, "key_not_subordinate"),
            RestrictionNotHeld { .. } => (StatusCode::FORBIDDEN, "restriction_not_held"),
            IpNotAllowed => (StatusCode::FORBIDDEN, "ip_not_allowed"),
            NoRouteRule { .. } => (StatusCode::FORBIDDEN, "no_route_rule"),
            PlanRequired(_) => (StatusCode::FORBIDDEN, "plan_required"),
            KeyLimitReached(_) => (StatusCode::FORBIDDEN, "key_limit_reached"),
            NotFound => (StatusCode::NOT_FOUND, "not_found"),
            MethodNotAllowed => (StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed"),
            Conflict(_) => (StatusCode::CONFLICT, "conflict"),
            KeyRevoked => (StatusCode::CONFLICT, "key_revoked"),
            KeyExpired => (StatusCode::CONFLICT, "key_expired"),
            KeyRotated(_) => (StatusCode::CONFLICT, "key_rotated"),
            AlreadyExists(_) => (StatusCode::CONFLICT, "already_exists"),
            Integrity(self::Integrity::Authentication) => {
                (StatusCode::UNAUTHORIZED, "key_integrity")
            }
            Integrity(self::Integrity::Key) => (StatusCode::CONFLICT, "key_integrity"),
            Integrity(self::Integrity::Organization) => (StatusCode::CONFLICT, "org_integrity"),
            PreconditionFailed { .. } => (StatusCode::PRECONDITION_FAILED, "precondition_failed"),
            PayloadTooLarge => (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large"),
            UnsupportedMediaType => (StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type"),
            HeadersTooLarge => (
                StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                "headers_too_large",
            ),
            Validation(_) => (StatusCode::UNPROCESSABLE_ENTITY, "validation_failed"),
            IdempotencyKeyReused => (StatusCode::UNPROCESSABLE_ENTITY, "idempotency_key_reused"),
            RateLimited { .. } => (StatusCode::TOO_MANY_REQUESTS, "rate_limited"),
            TooManyFailedAttempts { .. } => {
                (StatusCode::TOO_MANY_REQUESTS, "too_many_failed_attempts")
            }
            VerificationBusy => (StatusCode::TOO_MANY_REQUESTS, "verification_busy"),
            Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
            Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        }
    }

    fn detail(&self) -> String {
        use ApiError::*;
        match self {
            MalformedJson(why) => format!("the request body is not valid JSON: {why}"),
            BadRequest(why) => why.clone(),
            Unauthenticated(why) => why.clone(),
            InsufficientScope(scope) => format!("this key does not hold the scope {scope}"),
            NoRouteRule { method, path } => format!(
                "no route rule of this gateway covers {method} {path}: calls no rule names are \
                 refused"
            ),
            ScopeNotHeld(scope) => {
                format!("a key cannot grant the scope {scope}, which it does not hold itself")
            }
            KeyNotSubordinate(scope) => format!(
                "the key holds the scope {scope}, which this key does not: a key may update or \
                 rotate only keys whose scopes are a subset of its own"
            ),
            RestrictionNotHeld { field, message } => format!("{field}: {message}"),
            IpNotAllowed => "the client IP is not within this key's allowed IPs".into(),
            PlanRequired(why) => why.clone(),
            KeyLimitReached(limit) => format!(
                "the organisation's plan allows at most {limit} active keys; revoke one or upgrade"
            ),
            NotFound => "the resource does not exist".into(),
            MethodNotAllowed => "this resource does not support the method; see Allow".into(),
            Conflict(why) => why.clone(),
            KeyRevoked => "the key is revoked; only revoking it again is accepted".into(),
            KeyExpired => "the key has expired; it cannot be rotated or given a new expiry".into(),
            KeyRotated(successor) => format!(
                "the key was already rotated to {successor}; it cannot be rotated again or given a new expiry"
            ),
            AlreadyExists(why) => why.clone(),
            Integrity(self::Integrity::Authentication) => {
                "the key's stored history failed its integrity check; \
                 the key cannot be used until an administrator restores it"
                    .into()
            }
            Integrity(self::Integrity::Key) => "the key's stored history failed its integrity \
                 check; it cannot be changed until an administrator restores it"
                .into(),
            Integrity(self::Integrity::Organization) => {
                "the organisation's stored history failed its integrity check; \
                 it cannot be changed until an administrator restores it"
                    .into()
            }
            PreconditionFailed { current } => {
                format!("If-Match does not match the current version {current}")
            }
            PayloadTooLarge => "the request body is too large".into(),
            UnsupportedMediaType => "send the body as application/json".into(),
            HeadersTooLarge => format!(
                "the request's headers are over {} KiB",
                crate::http::bounds::MAX_HEADER_BYTES / 1024
            ),
            Validation(errors) => errors
                .iter()
                .map(|e| format!("{}: {}", e.field, e.message))
                .collect::<Vec<_>>()
                .join("; "),
            IdempotencyKeyReused => {
                "this Idempotency-Key was already used with a different request".into()
            }
            RateLimited { retry_after_secs } => {
                format!("rate limit exceeded; retry in {retry_after_secs} s")
            }
            TooManyFailedAttempts { retry_after_secs } => format!(
                "too many failed attempts with this key's id; retry in {retry_after_secs} s"
            ),
            VerificationBusy => "too many keys are being verified at once; retry shortly".into(),
            Unavailable(_) => "a backing service is unavailable; retry later".into(),
            Internal(_) => "an unexpected error occurred".into(),
        }
    }
}

/// An RFC 9457 problem document with a stable `code`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Problem {
    /// A URI naming the problem type.
    #[serde(rename = "type")]
    pub kind: String,
    /// A short summary of the problem type.
    pub title: String,
    /// The HTTP status.
    pub status: u16,
    /// What went wrong in this occurrence.
    pub detail: String,
    /// A stable, machine-readable code.
    pub code: String,
    /// The first invalid field (422), or the restriction at fault (403
    /// `restriction_not_held`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// Every invalid field (422 only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub errors: Option<Vec<FieldError>>,
    /// The missing scope (403 `insufficient_scope` / `scope_not_held` /
    /// `key_not_subordinate`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
}

impl ApiError {
    /// The problem document answered for this error.
    pub fn problem(&self) -> Problem {
        let (status, code) = self.status_and_code();
        let (field, errors) = match &self {
            ApiError::Validation(errors) => (
                errors.first().map(|e| e.field.clone()),
                Some(errors.clone()),
            ),
            ApiError::RestrictionNotHeld { field, .. } => (Some((*field).to_owned()), None),
            _ => (None, None),
        };
        let scope = match &self {
            ApiError::InsufficientScope(s)
            | ApiError::ScopeNotHeld(s)
            | ApiError::KeyNotSubordinate(s) => Some(s.clone()),
            _ => None,
        };
        Problem {
            kind: format!("https://keyledger.dev/problems/{code}"),
            title: status.canonical_reason().unwrap_or("Error").to_owned(),
            status: status.as_u16(),
            detail: self.detail(),
            code: code.to_owned(),
            field,
            errors,
            scope,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code) = self.status_and_code();
        if status.is_server_error() {
            // The cause goes to the log only; the body stays generic.
            tracing::error!(error = %self, code, "request failed");
        }
        let problem = self.problem();
        let mut res = (status, axum::Json(problem)).into_response();
        let headers = res.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        match &self {
            ApiError::Unauthenticated(_) | ApiError::Integrity(Integrity::Authentication) => {
                headers.insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static(r#"Bearer realm="keyledger", error="invalid_token""#),
                );
            }
            ApiError::InsufficientScope(_) => {
                headers.insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static(
                        r#"Bearer realm="keyledger", error="insufficient_scope""#,
                    ),
                );
            }
            ApiError::RateLimited { retry_after_secs }
            | ApiError::TooManyFailedAttempts { retry_after_secs } => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from(*retry_after_secs));
            }
            ApiError::VerificationBusy => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from(1u64));
            }
            _ => {}
        }
        res
    }
}

// ------------------------------------------------------------------ from the write side
//
// The one mapping of the write side's errors to statuses and codes: a command's error keeps
// the domain's refusal as the domain said it (`CommandError::{Key, Org, Policy}`), apart
// from contention and from store failures, and each domain refusal gets its status, code
// and field here, and nowhere else.

impl From<CommandError> for ApiError {
    fn from(e: CommandError) -> Self {
        match e {
            CommandError::Key(e) => e.into(),
            CommandError::Org(e) => e.into(),
            CommandError::Policy(e) => e.into(),
            CommandError::PreconditionFailed { current } => {
                ApiError::PreconditionFailed { current }
            }
            // Contention is not an outage: 409, and the same request may be sent again.
            e @ CommandError::Contention { .. } => ApiError::Conflict(e.to_string()),
            CommandError::Integrity(broken) if broken.is_org() => {
                ApiError::Integrity(Integrity::Organization)
            }
            CommandError::Integrity(_) => ApiError::Integrity(Integrity::Key),
            // Only an unreachable store is an outage (503); corrupt data is a 500.
            CommandError::Store(StoreError::Unavailable(why)) => ApiError::Unavailable(why),
            CommandError::Store(other) => ApiError::Internal(other.to_string()),
            CommandError::Internal(why) => ApiError::Internal(why),
        }
    }
}

impl From<apikey::Error> for ApiError {
    fn from(e: apikey::Error) -> Self {
        use apikey::Error as E;
        match e {
            E::NotFound => ApiError::NotFound,
            E::AlreadyExists => ApiError::AlreadyExists(e.to_string()),
            E::Revoked => ApiError::KeyRevoked,
            E::Expired => ApiError::KeyExpired,
            E::AlreadyRotated { successor } => ApiError::KeyRotated(successor.to_string()),
            E::InvalidExpiry(e) => ApiError::invalid(e),
            E::InvalidGracePeriod(e) => ApiError::invalid(e),
            E::InvalidReason(e) => ApiError::invalid(e),
            // The handler builds the prefix from the token it generated, and the successor
            // id is a fresh UUID v7: a bug, not input.
            E::PrefixMismatch | E::InvalidSuccessor => ApiError::Internal(e.to_string()),
        }
    }
}

impl From<organization::Error> for ApiError {
    fn from(e: organization::Error) -> Self {
        use organization::Error as E;
        match e {
            E::NotFound | E::UnknownKey { .. } => ApiError::NotFound,
            E::PlanRequired { .. } => ApiError::PlanRequired(
                "the organisation's plan does not allow API keys; upgrade to professional or \
                 enterprise"
                    .into(),
            ),
            E::KeyLimitReached { limit } => ApiError::KeyLimitReached(limit),
            E::AlreadyExists | E::KeyAlreadyIssued { .. } | E::ScopeAlreadyDeclared { .. } => {
                ApiError::AlreadyExists(e.to_string())
            }
            E::ScopeNotDeclared { .. } => ApiError::field("scopes", e.to_string()),
            E::TooManyScopes => ApiError::field("name", e.to_string()),
            E::InvalidScopeDescription => ApiError::field("description", e.to_string()),
        }
    }
}

impl From<PolicyError> for ApiError {
    fn from(e: PolicyError) -> Self {
        match e {
            PolicyError::ScopeNotHeld(scope) => ApiError::ScopeNotHeld(scope.as_str().to_owned()),
            PolicyError::NotSubordinate { scope } => {
                ApiError::KeyNotSubordinate(scope.as_str().to_owned())
            }
            PolicyError::RestrictionNotHeld {
                restriction,
                reason,
            } => ApiError::RestrictionNotHeld {
                field: restriction.field(),
                message: reason.to_owned(),
            },
        }
    }
}

/// The request field each value object is set by: a refused value is a 422 naming it,
/// whether the handler refused it up front or the domain did when deciding.
impl From<ExpiryError> for FieldError {
    fn from(e: ExpiryError) -> Self {
        FieldError::new("expires_at", e.to_string())
    }
}

impl From<GracePeriodError> for FieldError {
    fn from(e: GracePeriodError) -> Self {
        FieldError::new("grace_period_seconds", e.to_string())
    }
}

impl From<ReasonError> for FieldError {
    fn from(e: ReasonError) -> Self {
        FieldError::new("reason", e.to_string())
    }
}

impl From<projections::keys::QueryError> for ApiError {
    fn from(e: projections::keys::QueryError) -> Self {
        match e {
            projections::keys::QueryError::BadCursor => {
                ApiError::field("cursor", "is not a cursor from a previous page")
            }
            projections::keys::QueryError::BadRange(message) => ApiError::field("to", message),
            e @ projections::keys::QueryError::TooManyBuckets { .. } => {
                ApiError::field("from", e.to_string())
            }
            other => ApiError::Internal(other.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use commands::keys::CommandError as C;
    use domain::KeyId;
    use domain::chain::{BreakKind, ChainBreak};
    use domain::plan::Plan;
    use domain::policy::Restriction;
    use domain::scope::Scope;
    use domain::values::ControlCharError;

    use super::*;

    fn status_code(e: impl Into<ApiError>) -> (u16, &'static str) {
        let (status, code) = e.into().status_and_code();
        (status.as_u16(), code)
    }

    /// The status, code and named field of a domain refusal as a command reports it.
    fn answer(e: impl Into<C>) -> (u16, &'static str, Option<String>) {
        let e = ApiError::from(e.into());
        let (status, code) = e.status_and_code();
        (status.as_u16(), code, e.problem().field)
    }

    #[test]
    fn it_should_answer_409_with_its_own_code_for_each_refusal_of_the_key_state() {
        let successor = KeyId::new_v7();
        assert_eq!(
            status_code(C::Key(apikey::Error::AlreadyRotated { successor })),
            (409, "key_rotated")
        );
        assert_eq!(
            status_code(C::Key(apikey::Error::Revoked)),
            (409, "key_revoked")
        );
        assert_eq!(
            status_code(C::Key(apikey::Error::Expired)),
            (409, "key_expired")
        );
        assert_eq!(
            status_code(C::Org(organization::Error::AlreadyExists)),
            (409, "already_exists")
        );
        let detail = ApiError::from(C::Key(apikey::Error::AlreadyRotated { successor }))
            .problem()
            .detail;
        assert!(detail.contains(&successor.to_string()), "{detail}");
    }

    #[test]
    fn it_should_answer_409_not_503_when_contention_won_every_retry() {
        assert_eq!(
            status_code(C::Contention { attempts: 25 }),
            (409, "conflict")
        );
    }

    #[test]
    fn it_should_answer_503_only_for_a_store_outage() {
        assert_eq!(
            status_code(C::Store(StoreError::Unavailable(
                "connection refused".into()
            ))),
            (503, "unavailable")
        );
        assert_eq!(
            status_code(C::Store(StoreError::InvalidAppend("empty".into()))),
            (500, "internal")
        );
        assert_eq!(
            status_code(C::Store(StoreError::Corrupt {
                position: 7,
                reason: "bad".into()
            })),
            (500, "internal")
        );
        assert_eq!(
            status_code(C::Internal("hashing".into())),
            (500, "internal")
        );
    }

    #[test]
    fn it_should_answer_422_naming_the_field_for_a_refused_value() {
        let e = ApiError::from(C::from(apikey::Error::InvalidReason(
            ReasonError::ControlCharacter(ControlCharError { code: 0, index: 3 }),
        )));
        assert_eq!(
            e.status_and_code(),
            (StatusCode::UNPROCESSABLE_ENTITY, "validation_failed")
        );
        assert_eq!(e.problem().field.as_deref(), Some("reason"));
    }

    #[test]
    fn every_refusal_of_a_key_should_have_its_status_code_and_field() {
        let successor = KeyId::new_v7();
        let field = |f: &str| Some(f.to_owned());
        for (error, expected) in [
            (apikey::Error::NotFound, (404, "not_found", None)),
            (apikey::Error::AlreadyExists, (409, "already_exists", None)),
            (apikey::Error::Revoked, (409, "key_revoked", None)),
            (apikey::Error::Expired, (409, "key_expired", None)),
            (
                apikey::Error::AlreadyRotated { successor },
                (409, "key_rotated", None),
            ),
            (
                apikey::Error::InvalidExpiry(ExpiryError),
                (422, "validation_failed", field("expires_at")),
            ),
            (
                apikey::Error::InvalidGracePeriod(GracePeriodError),
                (422, "validation_failed", field("grace_period_seconds")),
            ),
            (
                apikey::Error::InvalidReason(ReasonError::TooLong { max: 500 }),
                (422, "validation_failed", field("reason")),
            ),
            (apikey::Error::InvalidSuccessor, (500, "internal", None)),
            (apikey::Error::PrefixMismatch, (500, "internal", None)),
        ] {
            assert_eq!(answer(error.clone()), expected, "{error:?}");
        }
    }

    #[test]
    fn every_refusal_of_an_organization_should_have_its_status_and_code() {
        let key_id = KeyId::new_v7();
        for (error, expected) in [
            (organization::Error::NotFound, (404, "not_found", None)),
            (
                organization::Error::UnknownKey { key_id },
                (404, "not_found", None),
            ),
            (
                organization::Error::AlreadyExists,
                (409, "already_exists", None),
            ),
            (
                organization::Error::KeyAlreadyIssued { key_id },
                (409, "already_exists", None),
            ),
            (
                organization::Error::PlanRequired {
                    plan: Plan::Starter,
                },
                (403, "plan_required", None),
            ),
            (
                organization::Error::KeyLimitReached { limit: 10 },
                (403, "key_limit_reached", None),
            ),
        ] {
            assert_eq!(answer(error.clone()), expected, "{error:?}");
        }
    }

    #[test]
    fn every_refusal_of_the_policy_should_be_a_403_naming_the_scope_or_field() {
        let scope_of = |e: PolicyError| ApiError::from(C::from(e)).problem().scope;
        assert_eq!(
            answer(PolicyError::ScopeNotHeld(Scope::ASSETS_WRITE)),
            (403, "scope_not_held", None)
        );
        assert_eq!(
            scope_of(PolicyError::ScopeNotHeld(Scope::ASSETS_WRITE)).as_deref(),
            Some("assets:write")
        );
        assert_eq!(
            answer(PolicyError::NotSubordinate {
                scope: Scope::USERS_READ
            }),
            (403, "key_not_subordinate", None)
        );
        assert_eq!(
            scope_of(PolicyError::NotSubordinate {
                scope: Scope::USERS_READ
            })
            .as_deref(),
            Some("users:read")
        );
        assert_eq!(
            answer(PolicyError::RestrictionNotHeld {
                restriction: Restriction::AllowedIps,
                reason: "wider"
            }),
            (403, "restriction_not_held", Some("allowed_ips".to_owned()))
        );
    }

    #[test]
    fn a_broken_chain_should_be_a_409_naming_whose_it_is() {
        let broken = |stream: String| {
            C::Integrity(Box::new(ChainBreak {
                position: 1,
                stream,
                stream_version: 1,
                kind: BreakKind::Altered,
            }))
        };
        assert_eq!(
            status_code(broken(domain::OrgId::new_v7().stream())),
            (409, "org_integrity")
        );
        assert_eq!(
            status_code(broken(KeyId::new_v7().stream())),
            (409, "key_integrity")
        );
    }

    #[test]
    fn a_stale_if_match_should_be_a_412() {
        assert_eq!(
            status_code(C::PreconditionFailed { current: 3 }),
            (412, "precondition_failed")
        );
    }
}
