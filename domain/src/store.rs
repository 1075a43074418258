//! The event store port: append with an expected version, read a stream, read and
//! subscribe to everything in global order.
//!
//! The store is deliberately untyped: it keeps an event's type name, schema version and
//! JSON data. Typed domain events are encoded to and decoded from [`NewEvent`] and
//! [`RecordedEvent`] by the aggregates' modules, which own their wire names and upcasters.

use std::pin::Pin;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use futures_core::Stream;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// The version a stream must be at for an append to succeed.
///
/// Stream versions start at 1: the first event of a stream has version 1, so a stream's
/// version is the number of events in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ExpectedVersion {
    /// Append whatever the stream's version is.
    Any,
    /// The stream must not exist (hold no events) yet.
    NoStream,
    /// The stream's last event must have exactly this version. `Exact(0)` is the same
    /// as `NoStream`.
    Exact(u64),
}

impl ExpectedVersion {
    /// Whether a stream currently at `current` (0 = no stream) satisfies this expectation.
    pub fn matches(self, current: u64) -> bool {
        match self {
            ExpectedVersion::Any => true,
            ExpectedVersion::NoStream => current == 0,
            ExpectedVersion::Exact(n) => current == n,
        }
    }
}

/// Who caused an event and in answer to what: stored beside every event.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Metadata {
    /// The key id or `cli:<user>` that issued the command (`system` for the server itself).
    pub actor: String,
    /// The HTTP request id (or CLI invocation id) that carried the command.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    /// Groups every event caused by one user action.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub correlation_id: Option<String>,
    /// The id of the event or request that directly caused this one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub causation_id: Option<String>,
    /// The hash of the stream's previous event in a hash-chained stream (`None` on the
    /// first event). Set by the store adapters on append; see [`crate::chain`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prev_hash: Option<String>,
    /// This event's own hash in a hash-chained stream. Set by the store adapters on
    /// append (whatever a caller puts here is replaced); see [`crate::chain`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hash: Option<String>,
}

/// An event about to be appended.
#[derive(Debug, Clone, PartialEq)]
pub struct NewEvent {
    /// UUID v7, chosen by the writer so that a retried append can be recognised.
    pub event_id: Uuid,
    /// The stable wire name, e.g. `KeyCreated`.
    pub event_type: String,
    /// The schema version of `data`.
    pub schema_version: u32,
    /// The event's payload.
    pub data: serde_json::Value,
    /// Actor, request and correlation ids.
    pub metadata: Metadata,
}

/// An event as the store keeps it, with its envelope.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecordedEvent {
    /// UUID v7.
    pub event_id: Uuid,
    /// The stream it belongs to, e.g. `apikey-<uuid>`.
    pub stream: String,
    /// Its version within the stream, starting at 1.
    pub stream_version: u64,
    /// Its position in the global order, starting at 1 and strictly increasing.
    pub position: u64,
    /// The stable wire name.
    pub event_type: String,
    /// The schema version of `data` as written.
    pub schema_version: u32,
    /// When the store recorded it.
    pub recorded_at: DateTime<Utc>,
    /// Actor, request and correlation ids.
    pub metadata: Metadata,
    /// The payload.
    pub data: serde_json::Value,
}

/// One stream's part of an atomic multi-stream append.
#[derive(Debug, Clone, PartialEq)]
pub struct AppendRequest {
    /// The target stream.
    pub stream: String,
    /// The version the stream must be at.
    pub expected: ExpectedVersion,
    /// The events, in order. Must not be empty.
    pub events: Vec<NewEvent>,
}

/// Where an append left its stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppendOutcome {
    /// The stream's version after the append (the version of its last new event).
    pub stream_version: u64,
    /// The global position of the last appended event.
    pub position: u64,
}

/// What can go wrong in an event store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The stream was not at the expected version: another writer got there first.
    #[error("wrong expected version on stream {stream}: expected {expected:?}, actual {actual}")]
    WrongExpectedVersion {
        /// The stream.
        stream: String,
        /// What the caller expected.
        expected: ExpectedVersion,
        /// The stream's version when the append was tried (0 = no stream).
        actual: u64,
    },
    /// A stored row could not be decoded (corrupt data or unknown encoding).
    #[error("corrupt event at position {position}: {reason}")]
    Corrupt {
        /// The global position of the bad row.
        position: u64,
        /// What is wrong with it.
        reason: String,
    },
    /// The append was malformed (empty batch, empty stream name, ...).
    #[error("invalid append: {0}")]
    InvalidAppend(String),
    /// The store could not be reached or failed.
    #[error("event store unavailable: {0}")]
    Unavailable(String),
}

/// A live stream of events in global order.
pub type EventStream = Pin<Box<dyn Stream<Item = Result<RecordedEvent, StoreError>> + Send>>;

/// The event store port.
#[async_trait]
pub trait EventStore: Send + Sync {
    /// Appends `events` to `stream` if the stream is at `expected`; atomically.
    async fn append(
        &self,
        stream: &str,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
    ) -> Result<AppendOutcome, StoreError> {
        let mut outcomes = self
            .append_many(vec![AppendRequest {
                stream: stream.to_owned(),
                expected,
                events,
            }])
            .await?;
        outcomes
            .pop()
            .ok_or_else(|| StoreError::InvalidAppend("empty append".into()))
    }

    /// Appends to several streams in one transaction: all or nothing. Used by the usage
    /// writer's group commit and by batched appends. Outcomes are in request order.
    async fn append_many(
        &self,
        requests: Vec<AppendRequest>,
    ) -> Result<Vec<AppendOutcome>, StoreError>;

    /// Reads a stream's events with version `>= from_version`, at most `limit`, in order.
    async fn read_stream(
        &self,
        stream: &str,
        from_version: u64,
        limit: usize,
    ) -> Result<Vec<RecordedEvent>, StoreError>;

    /// The current version of a stream (0 = no stream).
    async fn stream_version(&self, stream: &str) -> Result<u64, StoreError>;

    /// Reads events with position `> after`, at most `limit`, in global order.
    async fn read_all(&self, after: u64, limit: usize) -> Result<Vec<RecordedEvent>, StoreError>;

    /// The position of the last event that a reader may safely see (0 = empty store).
    async fn head_position(&self) -> Result<u64, StoreError>;

    /// Every event with position `> after`: first those already stored (catch up), then
    /// new ones as they are appended by this process or any other (live). Each event is
    /// delivered exactly once, in global order. The stream ends only after an error.
    fn subscribe_all(&self, after: u64) -> EventStream;
}
