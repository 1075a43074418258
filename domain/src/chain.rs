//! Tamper evidence: a hash chain over every lifecycle stream (`apikey-<id>`, `org-<id>`).
//!
//! Each event of a chained stream carries, in its metadata, `prev_hash` (the hash of the
//! stream's previous event; absent on version 1) and `hash` (its own hash). Both are
//! computed by the event store adapters inside the append transaction, under the lock
//! that already serialises the stream's version check, so no writer can forget them or
//! race another writer for the predecessor.
//!
//! **The event hash** is `sha256` (lowercase hex) of the canonical JSON (object keys
//! sorted, no whitespace, strings escaped as `serde_json` does) of
//!
//! ```text
//! {"data": <data>, "event_id": "<uuid>", "event_type": "<wire name>",
//!  "metadata": <metadata without prev_hash and hash>, "prev_hash": "<hex>" | null,
//!  "recorded_at": "<RFC 3339, UTC, microseconds, Z>", "schema_version": <n>,
//!  "stream": "<stream>", "stream_version": <n>}
//! ```
//!
//! The global position is not hashed: it is assigned by the database after the hash is
//! computed. Reordering is still detected, because each event names its predecessor's
//! hash and its own stream version.
//!
//! [`ChainVerifier`] replays events and reports each [`ChainBreak`]: an event whose
//! content no longer matches its hash (altered, or its version changed), a missing
//! version (deleted or moved), a `prev_hash` that does not name the predecessor, or an
//! unhashed event after hashed ones. Usage streams are not chained: they are high-volume
//! measurements, and chaining them would serialise every usage write on its predecessor.
//!
//! Limits (documented in the README): the hash is unkeyed, so someone who can write the
//! database and recompute every later hash can forge a consistent chain; and deleting a
//! stream's *last* events leaves a shorter, valid chain. Anchor the heads externally
//! (e.g. a periodic `keyledger audit verify` output kept elsewhere) to catch both.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::fmt::Write as _;
use std::sync::{Mutex, OnceLock, PoisonError};

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::Value;
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::aggregate::Aggregate;
use crate::events::{DecodeError, DomainEvent};
use crate::ids::{APIKEY_STREAM_PREFIX, APIKEY_USAGE_STREAM_PREFIX, ORG_STREAM_PREFIX};
use crate::store::{Metadata, RecordedEvent};

/// Whether events of `stream` are hash-chained: key lifecycle and organisation streams.
pub fn is_chained_stream(stream: &str) -> bool {
    stream.starts_with(ORG_STREAM_PREFIX)
        || (stream.starts_with(APIKEY_STREAM_PREFIX)
            && !stream.starts_with(APIKEY_USAGE_STREAM_PREFIX))
}

/// `recorded_at` as it is hashed (and as the SQLite adapter stores it): RFC 3339, UTC,
/// microseconds, `Z`. Stores keep microseconds, so callers truncate before storing.
pub fn timestamp_text(at: &DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Micros, true)
}

/// The fields of an event that its hash covers.
#[derive(Debug, Clone, Copy)]
pub struct HashInput<'a> {
    /// The stream.
    pub stream: &'a str,
    /// The version within the stream.
    pub stream_version: u64,
    /// The event id.
    pub event_id: Uuid,
    /// The wire name.
    pub event_type: &'a str,
    /// The schema version of `data` as written.
    pub schema_version: u32,
    /// When the store recorded it (hashed at microsecond precision).
    pub recorded_at: &'a DateTime<Utc>,
    /// The payload as stored.
    pub data: &'a Value,
    /// The metadata; its `prev_hash` and `hash` fields are ignored.
    pub metadata: &'a Metadata,
    /// The predecessor's hash (`None` for the first event of a chain).
    pub prev_hash: Option<&'a str>,
}

impl<'a> HashInput<'a> {
    /// The hash input of a recorded event, with its stored `prev_hash`.
    pub fn of(event: &'a RecordedEvent) -> HashInput<'a> {
        HashInput {
            stream: &event.stream,
            stream_version: event.stream_version,
            event_id: event.event_id,
            event_type: &event.event_type,
            schema_version: event.schema_version,
            recorded_at: &event.recorded_at,
            data: &event.data,
            metadata: &event.metadata,
            prev_hash: event.metadata.prev_hash.as_deref(),
        }
    }

    /// The event hash: sha256 (hex) of the canonical encoding (see the module docs).
    pub fn hash(&self) -> String {
        let metadata = Metadata {
            prev_hash: None,
            hash: None,
            ..self.metadata.clone()
        };
        // Serialising a struct of strings cannot fail; were it ever to, hashing `null`
        // still yields a value that will not match, which verification reports.
        let metadata = serde_json::to_value(&metadata).unwrap_or(Value::Null);
        let envelope = serde_json::json!({
            "data": self.data,
            "event_id": self.event_id.to_string(),
            "event_type": self.event_type,
            "metadata": metadata,
            "prev_hash": self.prev_hash,
            "recorded_at": timestamp_text(self.recorded_at),
            "schema_version": self.schema_version,
            "stream": self.stream,
            "stream_version": self.stream_version,
        });
        let mut text = String::with_capacity(256);
        canonical_json(&envelope, &mut text);
        let digest = Sha256::digest(text.as_bytes());
        let mut hex = String::with_capacity(64);
        for byte in digest {
            // Writing to a String cannot fail.
            let _ = write!(hex, "{byte:02x}");
        }
        hex
    }
}

/// Writes `value` as canonical JSON: object keys sorted by their UTF-8 bytes, no
/// whitespace; strings and numbers exactly as `serde_json` writes them.
pub fn canonical_json(value: &Value, out: &mut String) {
    match value {
        Value::Object(map) => {
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            entries.sort_unstable_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
            out.push('{');
            for (i, (key, item)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_scalar(&Value::String(key.clone()), out);
                out.push(':');
                canonical_json(item, out);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                canonical_json(item, out);
            }
            out.push(']');
        }
        scalar => write_scalar(scalar, out),
    }
}

fn write_scalar(value: &Value, out: &mut String) {
    // `Value`'s Display is compact JSON and cannot fail for a scalar.
    let _ = write!(out, "{value}");
}

/// What is wrong at a [`ChainBreak`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BreakKind {
    /// The event's content (data, metadata, type, version, time, id) no longer matches
    /// the hash stored with it: altered, or moved to another version.
    Altered,
    /// Versions `from..=to` of the stream are missing before this event: deleted (or
    /// moved after it).
    Missing {
        /// The first missing version.
        from: u64,
        /// The last missing version.
        to: u64,
    },
    /// The event's version is not above its predecessor's: reordered or duplicated.
    OutOfOrder {
        /// The version of the event read before it.
        previous: u64,
    },
    /// `prev_hash` does not name the hash of the stream's previous event: the predecessor
    /// was altered, replaced, deleted or reordered.
    PrevHashMismatch,
    /// The event has no hash although earlier events of its stream do: its hash was
    /// stripped, or it was written around the store.
    Unhashed,
}

impl fmt::Display for BreakKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BreakKind::Altered => f.write_str("altered: its content does not match its hash"),
            BreakKind::Missing { from, to } if from == to => {
                write!(
                    f,
                    "version {from} is missing before it: deleted or reordered"
                )
            }
            BreakKind::Missing { from, to } => write!(
                f,
                "versions {from} to {to} are missing before it: deleted or reordered"
            ),
            BreakKind::OutOfOrder { previous } => {
                write!(f, "out of order: it follows version {previous}: reordered")
            }
            BreakKind::PrevHashMismatch => f.write_str(
                "prev_hash does not match the previous event: \
                 the predecessor was altered, deleted or reordered",
            ),
            BreakKind::Unhashed => f.write_str("no hash, after hashed events: hash removed"),
        }
    }
}

/// One place where a chain does not hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainBreak {
    /// The global position of the event where the break shows.
    pub position: u64,
    /// Its stream.
    pub stream: String,
    /// Its stream version as stored.
    pub stream_version: u64,
    /// What is wrong.
    pub kind: BreakKind,
}

impl ChainBreak {
    /// `org` for an organisation stream, `apikey` for a key's lifecycle stream: a fixed
    /// set, fit for a metric label.
    pub fn stream_kind(&self) -> &'static str {
        if self.stream.starts_with(ORG_STREAM_PREFIX) {
            "org"
        } else {
            "apikey"
        }
    }

    /// Whether the broken stream is an organisation's.
    pub fn is_org(&self) -> bool {
        self.stream.starts_with(ORG_STREAM_PREFIX)
    }
}

impl fmt::Display for ChainBreak {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "position {} (stream {}, version {}): {}",
            self.position, self.stream, self.stream_version, self.kind
        )
    }
}

/// Where one stream's chain stands after the events checked so far: what its next
/// event must link to. Kept in memory by a fold, or stored beside a read-model row (a
/// projection applies one event at a time).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ChainHead {
    /// The version of the last event checked (0: none yet).
    pub version: u64,
    /// That event's hash (`None`: it had none).
    pub hash: Option<String>,
    /// Whether any event checked so far carried a hash: after one, an unhashed event is
    /// a break, before one it is a legacy event (written before chaining existed).
    pub hashed: bool,
}

impl ChainHead {
    /// A stream with no events checked yet.
    pub fn new() -> ChainHead {
        ChainHead::default()
    }

    /// Checks the stream's next event against the chain so far, then moves the head to
    /// it. This is the one chain check every path that folds a lifecycle stream runs
    /// (command handlers, the auth cache fill, projections, audit replay, `audit
    /// verify`). Events of unchained streams are ignored. Every break found is returned
    /// (usually none, at most a few); the chain then continues from this event, so one
    /// tampered event is reported once. Cost: one sha256 over the event's canonical
    /// encoding.
    pub fn check(&mut self, event: &RecordedEvent) -> Vec<ChainBreak> {
        self.check_counting(event).0
    }

    /// [`ChainHead::check`], also telling whether the event was a legacy (unhashed,
    /// before any hashed) one.
    fn check_counting(&mut self, event: &RecordedEvent) -> (Vec<ChainBreak>, bool) {
        let mut breaks = Vec::new();
        if !is_chained_stream(&event.stream) {
            return (breaks, false);
        }
        let mut legacy = false;
        let mut found = |kind: BreakKind| {
            breaks.push(ChainBreak {
                position: event.position,
                stream: event.stream.clone(),
                stream_version: event.stream_version,
                kind,
            });
        };
        let own_hash = event.metadata.hash.as_deref();
        match own_hash {
            Some(stored) if HashInput::of(event).hash() != stored => found(BreakKind::Altered),
            Some(_) => {}
            None if self.hashed => found(BreakKind::Unhashed),
            // Written before chaining existed (or an empty prefix): nothing to check.
            None => legacy = true,
        }
        if event.stream_version <= self.version {
            found(BreakKind::OutOfOrder {
                previous: self.version,
            });
        } else if event.stream_version > self.version + 1 {
            found(BreakKind::Missing {
                from: self.version + 1,
                to: event.stream_version - 1,
            });
        } else if own_hash.is_some() && event.metadata.prev_hash.as_deref() != self.hash.as_deref()
        {
            found(BreakKind::PrevHashMismatch);
        }
        self.version = self.version.max(event.stream_version);
        self.hash = own_hash.map(str::to_owned);
        self.hashed |= own_hash.is_some();
        (breaks, legacy)
    }
}

/// Checks chains event by event. Feed it each stream's events in stream order (events
/// of different streams may interleave, e.g. in global order); memory is one entry per
/// stream seen.
#[derive(Debug, Default)]
pub struct ChainVerifier {
    heads: HashMap<String, ChainHead>,
    checked: u64,
    legacy: u64,
}

impl ChainVerifier {
    /// A verifier that has seen nothing.
    pub fn new() -> ChainVerifier {
        ChainVerifier::default()
    }

    /// Checks one event against its stream's chain so far ([`ChainHead::check`]);
    /// events of unchained streams are ignored.
    pub fn check(&mut self, event: &RecordedEvent) -> Vec<ChainBreak> {
        if !is_chained_stream(&event.stream) {
            return Vec::new();
        }
        self.checked += 1;
        let head = self.heads.entry(event.stream.clone()).or_default();
        let (breaks, legacy) = head.check_counting(event);
        self.legacy += u64::from(legacy);
        breaks
    }

    /// Chained events checked so far.
    pub fn checked(&self) -> u64 {
        self.checked
    }

    /// Chained events seen without a hash at the start of their stream (written before
    /// chaining existed): they are counted, not verified.
    pub fn legacy(&self) -> u64 {
        self.legacy
    }

    /// Streams seen.
    pub fn streams(&self) -> usize {
        self.heads.len()
    }
}

/// Sets `metadata.prev_hash` and `metadata.hash` of a new event of a chained stream, as
/// the adapters do inside their append transaction; returns the new hash (the next
/// event's `prev_hash`). On unchained streams both are cleared and `None` is returned,
/// so that no caller can plant a hash of its own.
pub fn seal(input: HashInput<'_>, metadata: &mut Metadata) -> Option<String> {
    if !is_chained_stream(input.stream) {
        metadata.prev_hash = None;
        metadata.hash = None;
        return None;
    }
    let hash = input.hash();
    metadata.prev_hash = input.prev_hash.map(str::to_owned);
    metadata.hash = Some(hash.clone());
    Some(hash)
}

/// A stream folded into an aggregate's state with its hash chain checked on the way:
/// the one fold behind every reader of a lifecycle stream that decides or displays
/// something from it (command handlers and the auth cache fill through
/// `commands::keys`, `keyledger audit KEY`). The chain is checked before each event is
/// decoded, so a tampered event that no longer decodes still shows as a break.
pub struct CheckedFold<A: Aggregate> {
    /// The state after the events applied so far.
    pub state: A::State,
    /// The stream version of the last event applied (0: none).
    pub version: u64,
    /// Its global position (0: none).
    pub position: u64,
    chain: ChainHead,
    breaks: Vec<ChainBreak>,
}

impl<A: Aggregate> fmt::Debug for CheckedFold<A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CheckedFold")
            .field("version", &self.version)
            .field("position", &self.position)
            .field("breaks", &self.breaks)
            .finish_non_exhaustive()
    }
}

impl<A: Aggregate> Default for CheckedFold<A> {
    fn default() -> Self {
        CheckedFold {
            state: A::initial(),
            version: 0,
            position: 0,
            chain: ChainHead::new(),
            breaks: Vec::new(),
        }
    }
}

impl<A: Aggregate> CheckedFold<A> {
    /// A fold at the start of a stream.
    pub fn new() -> Self {
        Self::default()
    }

    /// Checks `recorded` against the chain, then decodes and applies it. Returns the
    /// decoded event and the breaks this event showed (also kept: [`Self::breaks`]).
    /// The state keeps folding past a break, so that a reader that marks breaks (audit)
    /// can still show every state; a reader that decides (commands, auth) refuses when
    /// [`Self::first_break`] is set.
    pub fn apply(
        &mut self,
        recorded: &RecordedEvent,
    ) -> Result<(A::Event, Vec<ChainBreak>), DecodeError> {
        let breaks = self.chain.check(recorded);
        self.breaks.extend(breaks.iter().cloned());
        let event = A::Event::from_recorded(recorded)?;
        let state = std::mem::replace(&mut self.state, A::initial());
        self.state = A::evolve(state, &event);
        self.version = recorded.stream_version;
        self.position = recorded.position;
        Ok((event, breaks))
    }

    /// The first break found so far, if any.
    pub fn first_break(&self) -> Option<&ChainBreak> {
        self.breaks.first()
    }

    /// Every break found so far, in stream order.
    pub fn breaks(&self) -> &[ChainBreak] {
        &self.breaks
    }
}

/// Breaks remembered at most (then every later one counts as already reported).
const REPORTED_CAPACITY: usize = 10_000;

/// Whether this process has not reported this break (its stream and version) before,
/// and remembers it. Readers log a break at ERROR the first time and at a lower level
/// afterwards, so that a broken key presented on every request logs one ERROR line, not
/// one per request. Memory is bounded ([`REPORTED_CAPACITY`] breaks).
pub fn first_report(broken: &ChainBreak) -> bool {
    static REPORTED: OnceLock<Mutex<HashSet<(String, u64)>>> = OnceLock::new();
    let reported = REPORTED.get_or_init(|| Mutex::new(HashSet::new()));
    // A poisoned lock only means another thread panicked while inserting: the set
    // itself is still usable.
    let mut reported = reported.lock().unwrap_or_else(PoisonError::into_inner);
    let key = (broken.stream.clone(), broken.stream_version);
    if reported.contains(&key) || reported.len() >= REPORTED_CAPACITY {
        return false;
    }
    reported.insert(key)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn chain(stream: &str, n: u64) -> Vec<RecordedEvent> {
        let mut prev: Option<String> = None;
        let at = Utc.with_ymd_and_hms(2025, 3, 1, 9, 0, 0).unwrap();
        (1..=n)
            .map(|v| {
                let mut event = RecordedEvent {
                    event_id: Uuid::now_v7(),
                    stream: stream.to_owned(),
                    stream_version: v,
                    position: v * 10,
                    event_type: "KeyRenamed".into(),
                    schema_version: 1,
                    recorded_at: at,
                    metadata: Metadata {
                        actor: "cli:test".into(),
                        ..Metadata::default()
                    },
                    data: serde_json::json!({"name": format!("n{v}"), "z": 1, "a": [1.5, "x"]}),
                };
                let mut metadata = event.metadata.clone();
                prev = seal(
                    HashInput {
                        prev_hash: prev.as_deref(),
                        ..HashInput::of(&event)
                    },
                    &mut metadata,
                );
                event.metadata = metadata;
                event
            })
            .collect()
    }

    fn verify(events: &[RecordedEvent]) -> Vec<ChainBreak> {
        let mut verifier = ChainVerifier::new();
        events.iter().flat_map(|e| verifier.check(e)).collect()
    }

    #[test]
    fn it_should_chain_only_lifecycle_streams() {
        assert!(is_chained_stream("apikey-0190"));
        assert!(is_chained_stream("org-0190"));
        assert!(!is_chained_stream("apikey-usage-0190"));
        assert!(!is_chained_stream("test-1"));
    }

    #[test]
    fn it_should_link_each_event_to_its_predecessor() {
        let events = chain("apikey-1", 3);
        assert_eq!(events[0].metadata.prev_hash, None);
        assert_eq!(events[1].metadata.prev_hash, events[0].metadata.hash);
        assert_eq!(events[2].metadata.prev_hash, events[1].metadata.hash);
        assert_eq!(events[0].metadata.hash.as_ref().map(String::len), Some(64));
        assert!(verify(&events).is_empty());
    }

    #[test]
    fn it_should_not_depend_on_key_order_or_the_stored_hashes() {
        let events = chain("org-1", 1);
        let mut reordered = events[0].clone();
        reordered.data = serde_json::json!({"a": [1.5, "x"], "z": 1, "name": "n1"});
        reordered.metadata.hash = Some("ignored".into());
        assert_eq!(
            HashInput::of(&reordered).hash(),
            HashInput::of(&events[0]).hash()
        );
    }

    #[test]
    fn it_should_name_an_altered_event() {
        let mut events = chain("apikey-1", 3);
        events[1].data["name"] = "evil".into();
        let breaks = verify(&events);
        assert_eq!(breaks.len(), 1, "{breaks:?}");
        assert_eq!(breaks[0].position, 20);
        assert_eq!(breaks[0].kind, BreakKind::Altered);
        // The last event is covered too: it carries its own hash.
        let mut events = chain("apikey-1", 3);
        events[2].metadata.actor = "someone-else".into();
        assert_eq!(verify(&events)[0].position, 30);
    }

    #[test]
    fn it_should_name_the_event_after_a_deleted_one() {
        let mut events = chain("apikey-1", 4);
        events.remove(1);
        let breaks = verify(&events);
        assert_eq!(breaks.len(), 1, "{breaks:?}");
        assert_eq!(breaks[0].stream_version, 3);
        assert_eq!(breaks[0].kind, BreakKind::Missing { from: 2, to: 2 });
        assert!(breaks[0].to_string().contains("version 2 is missing"));
    }

    #[test]
    fn it_should_catch_reordered_and_replaced_events() {
        // Two events swap their versions: both no longer match their hashes.
        let mut events = chain("apikey-1", 3);
        events[1].stream_version = 3;
        events[2].stream_version = 2;
        events.swap(1, 2);
        let breaks = verify(&events);
        assert!(
            breaks
                .iter()
                .all(|b| b.kind == BreakKind::Altered
                    || matches!(b.kind, BreakKind::PrevHashMismatch))
        );
        assert!(breaks.iter().any(|b| b.position == 20));
        // An event replaced by a self-consistent forgery breaks its successor's link.
        let mut events = chain("apikey-1", 3);
        let forged = chain("apikey-1", 2).remove(1);
        events[1] = RecordedEvent {
            position: 20,
            ..forged
        };
        let breaks = verify(&events);
        assert_eq!(breaks.len(), 2, "{breaks:?}");
        assert_eq!(breaks[0].kind, BreakKind::PrevHashMismatch);
        assert_eq!(breaks[0].position, 20);
    }

    #[test]
    fn it_should_report_a_stripped_hash_and_tolerate_legacy_events() {
        let mut events = chain("org-1", 2);
        events[1].metadata.hash = None;
        assert_eq!(verify(&events)[0].kind, BreakKind::Unhashed);
        let mut legacy = chain("org-1", 2);
        for event in &mut legacy {
            event.metadata.hash = None;
            event.metadata.prev_hash = None;
        }
        let mut verifier = ChainVerifier::new();
        assert!(legacy.iter().all(|e| verifier.check(e).is_empty()));
        assert_eq!(verifier.legacy(), 2);
    }

    /// An organisation stream (created, then two plan changes), sealed as a store would.
    fn org_stream() -> Vec<RecordedEvent> {
        use crate::organization::{self, Command};
        use crate::{OrgId, OrgName, Plan};
        let org_id = OrgId::new_v7();
        let mut state = None;
        let mut events = Vec::new();
        for command in [
            Command::CreateOrganization {
                org_id,
                name: OrgName::parse("acme").unwrap(),
                plan: Plan::Starter,
            },
            Command::ChangePlan {
                plan: Plan::Professional,
            },
            Command::ChangePlan {
                plan: Plan::Enterprise,
            },
        ] {
            for event in organization::decide(&state, command).unwrap() {
                state = organization::evolve(state, &event);
                events.push(event);
            }
        }
        let at = Utc.with_ymd_and_hms(2025, 3, 1, 9, 0, 0).unwrap();
        let mut prev: Option<String> = None;
        events
            .iter()
            .enumerate()
            .map(|(i, event)| {
                let new = event.to_new_event(Metadata::default());
                let v = i as u64 + 1;
                let mut recorded = RecordedEvent {
                    event_id: new.event_id,
                    stream: org_id.stream(),
                    stream_version: v,
                    position: v,
                    event_type: new.event_type,
                    schema_version: new.schema_version,
                    recorded_at: at,
                    metadata: new.metadata,
                    data: new.data,
                };
                let mut metadata = recorded.metadata.clone();
                prev = seal(
                    HashInput {
                        prev_hash: prev.as_deref(),
                        ..HashInput::of(&recorded)
                    },
                    &mut metadata,
                );
                recorded.metadata = metadata;
                recorded
            })
            .collect()
    }

    #[test]
    fn given_an_intact_stream_the_checked_fold_should_find_no_break() {
        let mut fold = CheckedFold::<crate::organization::Organization>::new();
        for event in org_stream() {
            let (_, breaks) = fold.apply(&event).unwrap();
            assert!(breaks.is_empty());
        }
        assert_eq!(fold.version, 3);
        assert!(fold.first_break().is_none());
        assert_eq!(fold.state.map(|o| o.plan), Some(crate::Plan::Enterprise));
    }

    #[test]
    fn given_an_event_edited_in_the_database_the_checked_fold_should_name_it_and_keep_folding() {
        let mut events = org_stream();
        events[1].data["plan"] = "enterprise".into();
        let mut fold = CheckedFold::<crate::organization::Organization>::new();
        let marks: Vec<usize> = events
            .iter()
            .map(|e| fold.apply(e).unwrap().1.len())
            .collect();
        assert_eq!(marks, vec![0, 1, 0]);
        let first = fold.first_break().unwrap();
        assert_eq!(
            (first.stream_version, &first.kind),
            (2, &BreakKind::Altered)
        );
        assert_eq!(fold.version, 3, "the fold goes on past the break");
    }

    #[test]
    fn given_legacy_events_the_checked_fold_should_not_report_a_break() {
        let mut events = org_stream();
        for event in &mut events {
            event.metadata.hash = None;
            event.metadata.prev_hash = None;
        }
        let mut fold = CheckedFold::<crate::organization::Organization>::new();
        for event in &events {
            fold.apply(event).unwrap();
        }
        assert!(fold.breaks().is_empty());
    }

    #[test]
    fn given_a_head_stored_beside_a_row_the_next_event_should_be_checked_against_it() {
        // A projection keeps only (version, hash, hashed) between events.
        let events = org_stream();
        let mut head = ChainHead::new();
        assert!(head.check(&events[0]).is_empty());
        let mut stored = ChainHead {
            version: 1,
            hash: head.hash.clone(),
            hashed: true,
        };
        assert!(stored.check(&events[1]).is_empty());
        // Skipping an event (deleted row) is a gap.
        let mut skipped = head.clone();
        assert_eq!(
            skipped.check(&events[2])[0].kind,
            BreakKind::Missing { from: 2, to: 2 }
        );
    }

    #[test]
    fn it_should_report_each_break_once_per_process() {
        let broken = ChainBreak {
            position: 1,
            stream: format!("apikey-{}", Uuid::now_v7()),
            stream_version: 4,
            kind: BreakKind::Altered,
        };
        assert!(first_report(&broken));
        assert!(!first_report(&broken));
        assert!(first_report(&ChainBreak {
            stream_version: 5,
            ..broken.clone()
        }));
    }

    #[test]
    fn it_should_clear_hashes_on_unchained_streams() {
        let event = &chain("apikey-usage-1", 1)[0];
        assert_eq!(event.metadata.hash, None);
        assert!(verify(std::slice::from_ref(event)).is_empty());
    }
}
