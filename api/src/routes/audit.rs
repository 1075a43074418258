//! The audit view: a key's complete history, straight from the event store.
//!
//! `GET /organizations/{org}/api-keys/{id}/events` (scope `api-keys:read`) answers the
//! key's lifecycle stream (`apikey-<id>`) in order and, with `?include=usage`, its usage
//! stream (`apikey-usage-<id>`) merged in global position order; `from` / `to` (RFC 3339)
//! keep events recorded in that interval (both inclusive). The body is `{"items": [...]}`,
//! or one item per line with `Accept: application/x-ndjson`. Either way it is streamed:
//! the handler pages through `read_stream` and writes each page as it goes, so a key with
//! millions of usage events takes constant memory.
//!
//! Items carry the envelope and the data with the secret hash removed
//! ([`domain::events::redact_data`]): never a secret or a hash of one.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use domain::chain::{ChainBreak, ChainVerifier, timestamp_text};
use domain::events::{redact_data, wire};
use domain::ids::KeyId;
use domain::store::{EventStore, RecordedEvent, StoreError};
use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::app::AppState;
use crate::auth::Principal;
use crate::http::error::{ApiError, Problem};
use crate::routes::usage::parse_time;

/// Events read per page (per stream) while streaming a history.
pub const PAGE: usize = 500;

/// The NDJSON media type.
pub const NDJSON: &str = "application/x-ndjson";

/// The audit routes.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(key_events))
}

/// What `?include=` may name (documentation only).
#[derive(Debug, ToSchema)]
#[schema(rename_all = "lowercase")]
pub enum IncludeName {
    Usage,
}

/// One event of a key's history, as auditors see it.
#[derive(Debug, Serialize, ToSchema)]
pub struct AuditEvent {
    /// UUID v7.
    pub event_id: String,
    /// `apikey-<id>` or `apikey-usage-<id>`.
    pub stream: String,
    /// Version within the stream, from 1.
    pub stream_version: u64,
    /// Global position.
    pub position: u64,
    /// Wire name, e.g. `KeyCreated`.
    #[serde(rename = "type")]
    pub event_type: String,
    /// Schema version of `data` as written.
    pub schema_version: u32,
    /// RFC 3339, UTC.
    pub recorded_at: String,
    /// The key id or `cli:<user>` that caused it.
    pub actor: String,
    /// The request that carried the command.
    pub request_id: Option<String>,
    /// Groups the events of one user action.
    pub correlation_id: Option<String>,
    /// What directly caused it.
    pub causation_id: Option<String>,
    /// The payload as stored, without the secret hash.
    #[schema(value_type = Object)]
    pub data: Value,
    /// `broken` when this event fails its stream's hash-chain check (it was altered, an
    /// event before it was deleted or reordered, or its hash was stripped); absent when it
    /// passes. A key with a broken event does not authenticate (401 `key_integrity`).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>, example = "broken")]
    pub integrity: Option<&'static str>,
    /// What is wrong, when `integrity` is `broken`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub integrity_problem: Option<String>,
}

impl AuditEvent {
    /// The audit view of a stored event: envelope, metadata and redacted data.
    pub fn of(event: &RecordedEvent) -> AuditEvent {
        AuditEvent {
            event_id: event.event_id.to_string(),
            stream: event.stream.clone(),
            stream_version: event.stream_version,
            position: event.position,
            event_type: event.event_type.clone(),
            schema_version: event.schema_version,
            recorded_at: timestamp_text(&event.recorded_at),
            actor: event.metadata.actor.clone(),
            request_id: event.metadata.request_id.clone(),
            correlation_id: event.metadata.correlation_id.clone(),
            causation_id: event.metadata.causation_id.clone(),
            data: redact_data(&event.data),
            integrity: None,
            integrity_problem: None,
        }
    }

    /// Marks the event with the breaks its chain check found (none: unchanged).
    pub fn with_breaks(mut self, breaks: &[ChainBreak]) -> AuditEvent {
        if !breaks.is_empty() {
            self.integrity = Some("broken");
            self.integrity_problem = Some(
                breaks
                    .iter()
                    .map(|b| b.kind.to_string())
                    .collect::<Vec<_>>()
                    .join("; "),
            );
        }
        self
    }

    /// One compact JSON line (no trailing newline).
    pub fn to_json_line(&self) -> String {
        // A struct of strings, numbers and a JSON value always serializes.
        serde_json::to_string(self).unwrap_or_else(|_| "{}".to_owned())
    }
}

/// `{"items": [...]}`: the JSON form of a history.
#[derive(Debug, Serialize, ToSchema)]
pub struct AuditEventList {
    /// In global position order.
    pub items: Vec<AuditEvent>,
}

/// One stream read page by page.
struct Cursor {
    stream: String,
    next_version: u64,
    buffer: VecDeque<RecordedEvent>,
    exhausted: bool,
}

impl Cursor {
    fn new(stream: String) -> Cursor {
        Cursor {
            stream,
            next_version: 1,
            buffer: VecDeque::new(),
            exhausted: false,
        }
    }

    async fn fill(&mut self, store: &dyn EventStore) -> Result<(), StoreError> {
        if self.buffer.is_empty() && !self.exhausted {
            let page = store
                .read_stream(&self.stream, self.next_version, PAGE)
                .await?;
            self.exhausted = page.len() < PAGE;
            if let Some(last) = page.last() {
                self.next_version = last.stream_version + 1;
            }
            self.buffer.extend(page);
        }
        Ok(())
    }
}

/// The events of several streams merged in global position order, filtered by
/// `recorded_at`; at most one page per stream in memory.
///
/// Every event read is checked against its stream's hash chain (before the time
/// filter, so that a filtered-out event leaves no false gap); breaks are reported
/// ([`commands::audit::report_break`]) and returned with the event.
pub struct History {
    store: Arc<dyn EventStore>,
    cursors: Vec<Cursor>,
    from: Option<DateTime<Utc>>,
    to: Option<DateTime<Utc>>,
    chains: ChainVerifier,
}

impl History {
    /// A merged reader of `streams`, keeping events recorded within `from..=to`.
    pub fn new(
        store: Arc<dyn EventStore>,
        streams: Vec<String>,
        from: Option<DateTime<Utc>>,
        to: Option<DateTime<Utc>>,
    ) -> History {
        History {
            store,
            cursors: streams.into_iter().map(Cursor::new).collect(),
            from,
            to,
            chains: ChainVerifier::new(),
        }
    }

    /// The next event with the chain breaks it shows (usually none), or `None` at the end.
    pub async fn next(&mut self) -> Result<Option<(RecordedEvent, Vec<ChainBreak>)>, StoreError> {
        loop {
            for cursor in &mut self.cursors {
                cursor.fill(self.store.as_ref()).await?;
            }
            let next = self
                .cursors
                .iter_mut()
                .filter(|c| !c.buffer.is_empty())
                .min_by_key(|c| c.buffer.front().map_or(u64::MAX, |e| e.position));
            let Some(event) = next.and_then(|c| c.buffer.pop_front()) else {
                return Ok(None);
            };
            let breaks = self.chains.check(&event);
            for broken in &breaks {
                commands::audit::report_break(commands::audit::Reader::Audit, broken);
            }
            let after_from = self.from.is_none_or(|from| event.recorded_at >= from);
            let before_to = self.to.is_none_or(|to| event.recorded_at <= to);
            if after_from && before_to {
                return Ok(Some((event, breaks)));
            }
        }
    }
}

fn wants_ndjson(headers: &HeaderMap) -> bool {
    headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|accept| {
            accept
                .split(',')
                .any(|part| part.trim().starts_with(NDJSON))
        })
}

/// Whether the key's stream exists and belongs to `org`: the org id is in `KeyCreated`.
async fn key_belongs_to(
    store: &dyn EventStore,
    key: KeyId,
    org: domain::ids::OrgId,
) -> Result<bool, ApiError> {
    let first = store
        .read_stream(&key.stream(), 1, 1)
        .await
        .map_err(store_error)?;
    Ok(first.first().is_some_and(|event| {
        event.event_type == wire::KEY_CREATED
            && event.data.get("org_id").and_then(Value::as_str) == Some(&org.to_string())
    }))
}

fn store_error(error: StoreError) -> ApiError {
    match error {
        StoreError::Unavailable(why) => ApiError::Unavailable(why),
        other => ApiError::Internal(other.to_string()),
    }
}

/// A key's complete history: every lifecycle event in order, and with
/// `?include=usage` its usage events merged by global position. `from` / `to` filter on
/// `recorded_at`. `Accept: application/x-ndjson` answers one event per line. Secrets and
/// secret hashes are never included.
#[utoipa::path(get, path = "/organizations/{org}/api-keys/{id}/events", tag = "api-keys",
    params(("org" = String, Path, description = "organisation id"),
           ("id" = String, Path, description = "key id"),
           ("include" = Option<IncludeName>, Query, description = "`usage`: merge the key's usage events"),
           ("from" = Option<DateTime<Utc>>, Query, description = "RFC 3339: events recorded at or after"),
           ("to" = Option<DateTime<Utc>>, Query, description = "RFC 3339: events recorded at or before")),
    responses((status = 200, body = AuditEventList, description = "JSON, or NDJSON of `AuditEvent` for `Accept: application/x-ndjson`"),
              (status = 401, body = Problem), (status = 403, body = Problem),
              (status = 404, body = Problem), (status = 422, body = Problem)),
    security(("bearer" = ["api-keys:read"])))]
pub async fn key_events(
    State(state): State<AppState>,
    principal: Principal,
    Path((org, id)): Path<(String, String)>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let org_id = principal.require_org(&org)?;
    let key = id.parse::<KeyId>().map_err(|_| ApiError::NotFound)?;

    let mut include_usage = false;
    let (mut from, mut to) = (None, None);
    for (name, value) in &query {
        match name.as_str() {
            // The one value the document's enum has; anything else (empty included) is
            // a 422 naming the parameter.
            "include" if value == "usage" => include_usage = true,
            "include" => {
                return Err(ApiError::field(
                    "include",
                    format!("unknown value {value:?}: expected usage"),
                ));
            }
            "from" => from = Some(parse_time("from", value)?),
            "to" => to = Some(parse_time("to", value)?),
            other => {
                return Err(ApiError::field(
                    other,
                    "unknown query parameter: expected include, from or to",
                ));
            }
        }
    }
    if let (Some(from), Some(to)) = (from, to)
        && from > to
    {
        return Err(ApiError::field("to", "must not be before from"));
    }

    let store = Arc::clone(&state.store);
    if !key_belongs_to(store.as_ref(), key, org_id).await? {
        return Err(ApiError::NotFound);
    }
    let mut streams = vec![key.stream()];
    if include_usage {
        streams.push(key.usage_stream());
    }
    let history = History::new(store, streams, from, to);
    let ndjson = wants_ndjson(&headers);
    let content_type = if ndjson { NDJSON } else { "application/json" };
    let body = Body::from_stream(body_stream(history, ndjson));
    Ok((
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
        ],
        body,
    )
        .into_response())
}

/// Where the body stream is.
enum Phase {
    Start,
    Items { first: bool },
    Done,
}

/// The response body, one chunk per page of events: a JSON document
/// (`{"items":[...]}`) or NDJSON. A store error after the first byte can no longer
/// change the status: it is logged and the body ends with an error, so that the client
/// sees a truncated (invalid) document rather than a silently short one.
fn body_stream(
    history: History,
    ndjson: bool,
) -> impl futures::Stream<Item = Result<Bytes, std::io::Error>> + Send {
    futures::stream::unfold(
        (history, Phase::Start),
        move |(mut history, phase)| async move {
            let first = match phase {
                Phase::Done => return None,
                Phase::Start if !ndjson => {
                    return Some((
                        Ok(Bytes::from_static(b"{\"items\":[")),
                        (history, Phase::Items { first: true }),
                    ));
                }
                Phase::Start => true,
                Phase::Items { first } => first,
            };
            let mut chunk = String::new();
            let mut first = first;
            while chunk.len() < 64 * 1024 {
                match history.next().await {
                    Ok(Some((event, breaks))) => {
                        if !ndjson && !first {
                            chunk.push(',');
                        }
                        first = false;
                        chunk.push_str(&AuditEvent::of(&event).with_breaks(&breaks).to_json_line());
                        if ndjson {
                            chunk.push('\n');
                        }
                    }
                    Ok(None) => {
                        if !ndjson {
                            chunk.push_str("]}");
                        }
                        return Some((Ok(Bytes::from(chunk)), (history, Phase::Done)));
                    }
                    Err(error) => {
                        tracing::error!(%error, "audit history: event store read failed mid-stream");
                        return Some((
                            Err(std::io::Error::other("event store read failed")),
                            (history, Phase::Done),
                        ));
                    }
                }
            }
            Some((Ok(Bytes::from(chunk)), (history, Phase::Items { first })))
        },
    )
}
