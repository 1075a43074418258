//! What the management endpoints answer with: a key in a list, a key's details, a created
//! key with its secret (shown once), and the enums the document names.

use chrono::{DateTime, Utc};
use commands::keys::CreatedKey;
use domain::values::RateLimit;
use projections::keys::KeyRow;
use serde::Serialize;
use utoipa::ToSchema;

/// A key's status, as lists, details and the `status` filter name it (documentation only).
#[derive(Debug, ToSchema)]
#[schema(rename_all = "lowercase")]
pub enum KeyStatusName {
    Active,
    Revoked,
    Expired,
}

/// `live` or `test` (documentation only).
#[derive(Debug, ToSchema)]
#[schema(rename_all = "lowercase")]
pub enum EnvironmentName {
    Live,
    Test,
}

/// A new key, with its secret: shown once.
#[derive(Debug, Serialize, ToSchema)]
pub struct CreatedKeyResponse {
    pub id: String,
    pub org_id: String,
    pub name: String,
    pub prefix: String,
    /// The full key. It is not stored and cannot be shown again.
    pub secret: String,
    pub scopes: Vec<String>,
    pub environment: String,
    pub allowed_ips: Vec<String>,
    pub status: String,
    pub created_at: DateTime<Utc>,
    pub expires_at: Option<DateTime<Utc>>,
    pub rate_limit_per_minute: Option<u32>,
    pub rotated_from: Option<String>,
    pub version: u64,
}

/// One key in a list.
#[derive(Debug, Serialize, ToSchema)]
pub struct KeySummary {
    pub id: String,
    pub name: String,
    pub prefix: String,
    pub status: String,
    pub environment: String,
    pub scopes: Vec<String>,
    pub created_at: String,
    pub expires_at: Option<String>,
    pub last_used_at: Option<String>,
    pub total_calls: i64,
    /// Successful (2xx/3xx) over all calls, 0 to 1; null before the first call.
    pub success_rate: Option<f64>,
    /// The key's hash-chain check: `intact`, `broken` (its stored history was altered:
    /// it cannot authenticate nor be changed) or `unverifiable` (written before the
    /// chain existed).
    pub integrity: String,
}

/// A page of keys.
#[derive(Debug, Serialize, ToSchema)]
pub struct KeyPage {
    pub items: Vec<KeySummary>,
    /// Pass as `cursor` for the next page; null on the last page.
    pub next_cursor: Option<String>,
}

/// Usage of one key.
#[derive(Debug, Serialize, ToSchema)]
pub struct UsageSummary {
    pub total_calls: i64,
    pub successful_calls: i64,
    pub error_calls: i64,
    pub rate_limited_calls: i64,
    pub success_rate: Option<f64>,
    pub last_used_at: Option<String>,
    /// Per method and route template, busiest first.
    pub by_route: Vec<crate::routes::usage::RouteUsageView>,
}

/// A key's details (never its secret or hash).
#[derive(Debug, Serialize, ToSchema)]
pub struct KeyDetails {
    pub id: String,
    pub org_id: String,
    pub name: String,
    pub prefix: String,
    pub status: String,
    pub environment: String,
    pub scopes: Vec<String>,
    pub allowed_ips: Vec<String>,
    pub created_at: String,
    pub created_by: Option<String>,
    pub expires_at: Option<String>,
    pub revoked_at: Option<String>,
    pub revoked_by: Option<String>,
    pub rotated_from: Option<String>,
    pub rotated_to: Option<String>,
    pub rate_limit_per_minute: Option<i64>,
    pub last_used_at: Option<String>,
    pub total_calls: i64,
    pub success_rate: Option<f64>,
    pub usage: UsageSummary,
    /// The stream version, also sent as the `ETag`; send it back in `If-Match`.
    pub version: u64,
    /// `intact`, `broken` or `unverifiable`, as in the list.
    pub integrity: String,
    /// The stream version where the first break showed (`broken` only).
    pub integrity_version: Option<i64>,
}

impl From<KeyRow> for KeySummary {
    fn from(r: KeyRow) -> Self {
        KeySummary {
            id: r.id,
            name: r.name,
            prefix: r.prefix,
            status: r.status,
            environment: r.environment,
            scopes: r.scopes,
            created_at: r.created_at,
            expires_at: r.expires_at,
            last_used_at: r.usage.last_used_at,
            total_calls: r.usage.total_calls,
            success_rate: r.usage.success_rate,
            integrity: r.integrity,
        }
    }
}

impl From<KeyRow> for KeyDetails {
    fn from(r: KeyRow) -> Self {
        KeyDetails {
            id: r.id,
            org_id: r.org_id,
            name: r.name,
            prefix: r.prefix,
            status: r.status,
            environment: r.environment,
            scopes: r.scopes,
            allowed_ips: r.allowed_ips,
            created_at: r.created_at,
            created_by: r.created_by,
            expires_at: r.expires_at,
            revoked_at: r.revoked_at,
            revoked_by: r.revoked_by,
            rotated_from: r.rotated_from,
            rotated_to: r.rotated_to,
            rate_limit_per_minute: r.rate_limit_per_minute,
            last_used_at: r.usage.last_used_at.clone(),
            total_calls: r.usage.total_calls,
            success_rate: r.usage.success_rate,
            usage: UsageSummary {
                total_calls: r.usage.total_calls,
                successful_calls: r.usage.successful_calls,
                error_calls: r.usage.error_calls,
                rate_limited_calls: r.usage.rate_limited_calls,
                success_rate: r.usage.success_rate,
                last_used_at: r.usage.last_used_at,
                by_route: Vec::new(),
            },
            version: u64::try_from(r.version).unwrap_or(0),
            integrity: r.integrity,
            integrity_version: r.integrity_version,
        }
    }
}

pub(super) fn created_response(created: &CreatedKey) -> CreatedKeyResponse {
    let key = &created.key;
    CreatedKeyResponse {
        id: key.id.to_string(),
        org_id: key.org_id.to_string(),
        name: key.name.as_str().to_owned(),
        prefix: key.prefix.clone(),
        secret: created.token.expose_secret().to_owned(),
        scopes: key.scopes.names().iter().map(|s| (*s).to_owned()).collect(),
        environment: key.environment.as_str().to_owned(),
        allowed_ips: key.allowed_ips.to_strings(),
        status: key.status(Utc::now()).to_string(),
        created_at: key.created_at,
        expires_at: key.expires_at,
        rate_limit_per_minute: key.rate_limit_per_minute.map(RateLimit::per_minute),
        rotated_from: key.rotated_from.map(|k| k.to_string()),
        version: key.version,
    }
}
