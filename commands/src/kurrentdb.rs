//! The KurrentDB / EventStoreDB event store (cargo feature `kurrentdb`), on the official
//! `kurrentdb` gRPC client. Chosen by [`crate::open_event_store`] for `esdb://`,
//! `esdb+discover://`, `kurrentdb://` and `kurrentdb+discover://` URLs (and the client's
//! aliases `kurrent://`, `kdb://`); read models stay in SQL (`KEYLEDGER_DATABASE_URL`).
//!
//! **Versions.** Our stream versions start at 1 (a stream's version is its number of
//! events); KurrentDB revisions start at 0. So event version `v` is revision `v - 1`;
//! `Exact(0)` and `NoStream` are `StreamState::NoStream`, `Exact(n)` is
//! `StreamState::StreamRevision(n - 1)`, `Any` is `Any`; a wrong-expected-version answer
//! with current revision `r` reports `actual = r + 1` (no stream: 0).
//!
//! **Positions.** KurrentDB orders `$all` by `(commit, prepare)` log positions. An event
//! appended through gRPC is committed on its own (implicit transaction), and the server
//! gives it the position `(p, p)`, `p` being its own byte offset in the log; explicit
//! multi-event transactions existed only in the legacy TCP API. So **our position is the
//! commit position**: unique per event, strictly increasing in `$all` order, and never 0
//! (the log starts with the server's own epoch records). `read_all(after)` and
//! `subscribe_all(after)` turn it back into `Position { commit: after, prepare: after }`
//! (0 = the start). An event whose commit and prepare positions differ (written in a
//! legacy explicit transaction) is reported as [`StoreError::Corrupt`]; an event read
//! without a `$all` position (servers before 22.6 on stream reads) as
//! [`StoreError::Unavailable`]: keyledger needs EventStoreDB 22.6 or later, or KurrentDB.
//!
//! **Envelope.** The KurrentDB event id is our event id; the event type is our wire name;
//! data is the JSON payload; the event's custom metadata is a JSON object holding our
//! [`Metadata`] (actor, request_id, correlation_id, causation_id, prev_hash, hash) plus
//! `schema_version` and `recorded_at` (this adapter's clock at the append, RFC 3339 with
//! microseconds: the hash chain covers it, so it must be known before the server writes).
//!
//! **Multi-stream appends are not atomic.** KurrentDB 1.2's client has no multi-stream
//! transaction, so [`EventStore::append_many`] first checks every expected version it
//! can (one read per stream named with `NoStream`/`Exact`), then appends the requests one
//! by one, in order. A conflict that exists before the call fails it with nothing
//! written; but a conflict that appears between two of the appends (another writer
//! getting in), or an outage half-way, leaves the earlier streams written: logged as an
//! error naming them. For keyledger that means: a key created (or rotated) at the moment
//! its organisation or old key changes concurrently can leave a `KeyIssued` on the
//! organisation without the key's `KeyCreated` (the key does not exist; it is retried
//! under a new id); a usage batch is written stream by stream (one round trip each).
//!
//! **Hash chain.** Sealed as the SQL adapters do, but without a lock: read the stream's
//! last event (its revision and hash), seal the new events on top of it, and append with
//! that exact revision as the expected state, so a concurrent writer makes the append
//! fail instead of forking the chain. With `Any`, a lost race is retried a few times.
//!
//! **Event ids** are not unique across streams in KurrentDB (it keeps no id index), so a
//! duplicate id is not rejected as the SQL adapters do; a retried append of the same
//! events at the same expected version is recognised by the server (idempotent).
//!
//! **Subscriptions** are catch-up subscriptions to `$all` with a server-side filter
//! (system events out, or only this store's stream prefix); events of `$`-streams are
//! dropped here too. After a disconnect the subscription resubscribes from the last
//! delivered position (backing off up to 5 s), so nothing is skipped or repeated; only an
//! error that a retry cannot fix (access denied, a corrupt event) ends it.
//!
//! Every operation asks for the leader (`requires_leader`), so that a read sees the
//! writes acknowledged before it, as the command handlers and read-your-writes expect.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use ::kurrentdb::{
    AppendToStreamOptions, Client, ClientSettings, CurrentRevision, EventData, Position,
    ReadAllOptions, ReadStreamOptions, ResolvedEvent, StreamPosition, StreamState,
    SubscribeToAllOptions, Subscription, SubscriptionEvent, SubscriptionFilter,
};
use async_trait::async_trait;
use chrono::{DateTime, SubsecRound, Utc};
use domain::chain::{self, HashInput};
use domain::store::{
    AppendOutcome, AppendRequest, EventStore, EventStream, ExpectedVersion, Metadata, NewEvent,
    RecordedEvent, StoreError,
};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::codec;

pub use crate::is_kurrentdb_url;

/// How many times an `Any` append to a hash-chained stream is retried after losing the
/// race for the chain's head to another writer.
const CHAIN_RETRIES: u32 = 5;
/// The longest pause between two resubscription attempts.
const MAX_RESUBSCRIBE_DELAY: Duration = Duration::from_secs(5);

/// Settings beyond the URL.
#[derive(Debug, Clone)]
pub struct KurrentDbOptions {
    /// How long the start-up check (connect and one read of `$all`) may take.
    pub connect_timeout: Duration,
    /// The deadline of each append and read.
    pub operation_timeout: Duration,
    /// A prefix for every stream name (empty: none). Several stores (e.g. test runs) can
    /// share one KurrentDB database, each seeing only its own streams. Must not start
    /// with `$` (KurrentDB's system streams).
    pub stream_prefix: String,
}

impl Default for KurrentDbOptions {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(10),
            operation_timeout: Duration::from_secs(30),
            stream_prefix: String::new(),
        }
    }
}

/// An [`EventStore`] on KurrentDB / EventStoreDB. Cheap to clone (the client is shared).
#[derive(Clone)]
pub struct KurrentDbEventStore {
    client: Client,
    options: KurrentDbOptions,
    /// The server(s), for error messages: `host:port[,host:port]`, never credentials.
    target: String,
}

impl std::fmt::Debug for KurrentDbEventStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KurrentDbEventStore")
            .field("target", &self.target)
            .field("stream_prefix", &self.options.stream_prefix)
            .finish_non_exhaustive()
    }
}

impl KurrentDbEventStore {
    /// Connects to `url` with default options; see [`KurrentDbEventStore::connect_with`].
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        Self::connect_with(url, KurrentDbOptions::default()).await
    }

    /// Parses `url`, connects, and reads one event of `$all` within
    /// `options.connect_timeout`, so that a wrong URL, an unreachable server or a user
    /// without access to `$all` stops start-up with a clear
    /// [`StoreError::Unavailable`] naming the server (never the password).
    pub async fn connect_with(url: &str, options: KurrentDbOptions) -> Result<Self, StoreError> {
        install_crypto_provider();
        if options.stream_prefix.starts_with('$') {
            return Err(StoreError::Unavailable(
                "invalid configuration: a KurrentDB stream prefix must not start with '$' \
                 (system streams)"
                    .into(),
            ));
        }
        let settings = parse_settings(url)?;
        let target = describe_target(&settings);
        let client = Client::new(settings).map_err(|e| {
            StoreError::Unavailable(scrub(
                &format!("cannot set up a KurrentDB client for {target}: {e}"),
                url,
            ))
        })?;
        let store = Self {
            client,
            options,
            target,
        };
        match tokio::time::timeout(store.options.connect_timeout, store.probe()).await {
            Ok(Ok(())) => Ok(store),
            Ok(Err(error)) => Err(StoreError::Unavailable(scrub(
                &format!(
                    "cannot use KurrentDB at {}: {}",
                    store.target,
                    describe_error(&error)
                ),
                url,
            ))),
            Err(_) => Err(StoreError::Unavailable(format!(
                "KurrentDB at {} did not answer within {:?} (unreachable, or TLS settings do \
                 not match the server: `?tls=false` for an insecure node)",
                store.target, store.options.connect_timeout
            ))),
        }
    }

    /// The servers this store talks to (`host:port`, comma-separated), for messages.
    pub fn target(&self) -> &str {
        &self.target
    }

    /// One cheap read: the last event of `$all` (checks the connection, TLS and the
    /// right to read `$all`, which subscriptions need).
    async fn probe(&self) -> Result<(), ::kurrentdb::Error> {
        let options = ReadAllOptions::default()
            .position(StreamPosition::End)
            .max_count(1)
            .requires_leader(true)
            .deadline(self.options.connect_timeout);
        let mut stream = self.client.read_all(&options).await?;
        stream.next().await?;
        Ok(())
    }

    fn full_name(&self, stream: &str) -> String {
        format!("{}{stream}", self.options.stream_prefix)
    }

    /// The server-side filter for `$all` reads and subscriptions.
    fn filter(&self) -> SubscriptionFilter {
        if self.options.stream_prefix.is_empty() {
            SubscriptionFilter::on_event_type().exclude_system_events()
        } else {
            SubscriptionFilter::on_stream_name().add_prefix(&self.options.stream_prefix)
        }
    }

    fn read_all_options(&self, from: StreamPosition<Position>, count: usize) -> ReadAllOptions {
        ReadAllOptions::default()
            .position(from)
            .max_count(count)
            .filter(self.filter())
            .requires_leader(true)
            .deadline(self.options.operation_timeout)
    }

    fn map_error(&self, error: ::kurrentdb::Error) -> StoreError {
        StoreError::Unavailable(format!(
            "KurrentDB at {}: {}",
            self.target,
            describe_error(&error)
        ))
    }

    /// The stream's version and, for a chained stream, its last event's hash.
    async fn head_of(&self, stream: &str) -> Result<(u64, Option<String>), StoreError> {
        let options = ReadStreamOptions::default()
            .position(StreamPosition::End)
            .max_count(1)
            .requires_leader(true)
            .deadline(self.options.operation_timeout);
        let mut read = match self
            .client
            .read_stream(self.full_name(stream), &options)
            .await
        {
            Ok(read) => read,
            Err(e) if is_missing_stream(&e) => return Ok((0, None)),
            Err(e) => return Err(self.map_error(e)),
        };
        match read.next().await {
            Ok(Some(event)) => {
                let Some(original) = original(&event) else {
                    return Ok((0, None));
                };
                let version = revision_to_version(original.revision);
                let hash = if chain::is_chained_stream(stream) {
                    serde_json::from_slice::<StoredMetadata>(&original.custom_metadata)
                        .ok()
                        .and_then(|m| m.metadata.hash)
                } else {
                    None
                };
                Ok((version, hash))
            }
            Ok(None) => Ok((0, None)),
            Err(e) if is_missing_stream(&e) => Ok((0, None)),
            Err(e) => Err(self.map_error(e)),
        }
    }

    /// Checks every expectation of an `append_many` against the streams as they are now,
    /// following versions through requests that name a stream twice. Streams named only
    /// with `Any` are not read.
    async fn precheck(&self, requests: &[AppendRequest]) -> Result<(), StoreError> {
        let checked: HashSet<&str> = requests
            .iter()
            .filter(|r| r.expected != ExpectedVersion::Any)
            .map(|r| r.stream.as_str())
            .collect();
        let mut versions: HashMap<&str, u64> = HashMap::with_capacity(checked.len());
        for stream in &checked {
            let (version, _) = self.head_of(stream).await?;
            versions.insert(stream, version);
        }
        for request in requests {
            if let Some(version) = versions.get_mut(request.stream.as_str()) {
                if !request.expected.matches(*version) {
                    return Err(StoreError::WrongExpectedVersion {
                        stream: request.stream.clone(),
                        expected: request.expected,
                        actual: *version,
                    });
                }
                *version += request.events.len() as u64;
            }
        }
        Ok(())
    }

    /// Appends one request: sealed on the chain's head for a chained stream.
    async fn append_one(&self, request: &AppendRequest) -> Result<AppendOutcome, StoreError> {
        let chained = chain::is_chained_stream(&request.stream);
        let mut attempt = 0;
        loop {
            // KurrentDB keeps what we send: hash exactly the microseconds stored.
            let recorded_at = Utc::now().trunc_subsecs(6);
            let (state, events) = if chained {
                let (current, head_hash) = self.head_of(&request.stream).await?;
                if !request.expected.matches(current) {
                    return Err(StoreError::WrongExpectedVersion {
                        stream: request.stream.clone(),
                        expected: request.expected,
                        actual: current,
                    });
                }
                // Append at exactly the head we sealed on, whatever the expectation was.
                let state = expected_to_state(ExpectedVersion::Exact(current));
                let events = seal_events(request, current, head_hash, &recorded_at)?;
                (state, events)
            } else {
                let events = seal_events(request, 0, None, &recorded_at)?;
                (expected_to_state(request.expected), events)
            };
            let options = AppendToStreamOptions::default()
                .stream_state(state)
                .requires_leader(true)
                .deadline(self.options.operation_timeout);
            match self
                .client
                .append_to_stream(self.full_name(&request.stream), &options, events)
                .await
            {
                Ok(written) => {
                    let stream_version = revision_to_version(written.next_expected_version);
                    let position = match valid_position(written.position) {
                        Some(position) => position,
                        // An idempotent replay answers without a position: read it.
                        None => self.position_of(&request.stream, stream_version).await?,
                    };
                    return Ok(AppendOutcome {
                        stream_version,
                        position,
                    });
                }
                Err(::kurrentdb::Error::WrongExpectedVersion { current, .. }) => {
                    if chained
                        && request.expected == ExpectedVersion::Any
                        && attempt < CHAIN_RETRIES
                    {
                        attempt += 1;
                        continue;
                    }
                    return Err(StoreError::WrongExpectedVersion {
                        stream: request.stream.clone(),
                        expected: request.expected,
                        actual: actual_version(current),
                    });
                }
                Err(error) => return Err(self.map_error(error)),
            }
        }
    }

    /// The `$all` position of version `version` of `stream`.
    async fn position_of(&self, stream: &str, version: u64) -> Result<u64, StoreError> {
        let events = self.read_stream(stream, version, 1).await?;
        events
            .first()
            .filter(|e| e.stream_version == version)
            .map(|e| e.position)
            .ok_or_else(|| {
                StoreError::Unavailable(format!(
                    "KurrentDB at {}: version {version} of {stream} is not readable after its append",
                    self.target
                ))
            })
    }

    /// Decodes one event of this store, or `None` for system events and other streams.
    fn decode(&self, event: &ResolvedEvent) -> Result<Option<RecordedEvent>, StoreError> {
        let Some(original) = original(event) else {
            return Ok(None);
        };
        let Some(stream) = accept(
            original.stream_id(),
            &original.event_type,
            &self.options.stream_prefix,
        ) else {
            return Ok(None);
        };
        let position = our_position(original.position)?;
        decode_parts(RawParts {
            stream: stream.to_owned(),
            revision: original.revision,
            position,
            event_type: original.event_type.clone(),
            event_id: original.id,
            data: &original.data,
            custom_metadata: &original.custom_metadata,
            created: original.created,
        })
        .map(Some)
    }
}

/// Installs ring as the process's rustls crypto provider. The `kurrentdb` crate enables
/// both of rustls' back ends (ring through reqwest, aws-lc-rs through tonic), and with
/// two compiled in rustls cannot choose one itself: building a TLS client config would
/// panic. Installing twice (or after someone else) is harmless, so the result is ignored.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// Parses a connection string; an error names what is wrong without the password.
pub fn parse_settings(url: &str) -> Result<ClientSettings, StoreError> {
    if !is_kurrentdb_url(url) {
        return Err(StoreError::Unavailable(format!(
            "not a KurrentDB URL: {}; expected one of {}",
            redact(url),
            "esdb://, esdb+discover://, kurrentdb:// or kurrentdb+discover://"
        )));
    }
    url.parse::<ClientSettings>().map_err(|e| {
        // The client's message may quote the whole URL: only say what kind of error it is,
        // and scrub the password from whatever is left.
        let reason = match e.error() {
            Some(parse) => format!("not a valid URL ({parse})"),
            None => e.message().to_owned(),
        };
        StoreError::Unavailable(scrub(
            &format!("invalid KurrentDB URL {}: {reason}", redact(url)),
            url,
        ))
    })
}

/// `host:port` of every configured node, comma-separated (with `discover ` first when
/// the nodes are found by DNS / gossip).
pub fn describe_target(settings: &ClientSettings) -> String {
    let hosts: Vec<String> = settings
        .hosts()
        .iter()
        .map(|e| format!("{}:{}", e.host, e.port))
        .collect();
    let hosts = hosts.join(",");
    if settings.is_dns_discovery_enabled() {
        format!("discover {hosts}")
    } else {
        hosts
    }
}

/// The URL with its password replaced by `***`.
pub fn redact(url: &str) -> String {
    match password_of(url) {
        Some(password) => url.replacen(&format!(":{password}@"), ":***@", 1),
        None => url.to_owned(),
    }
}

/// `text` with every occurrence of `url`'s password replaced by `***`.
pub fn scrub(text: &str, url: &str) -> String {
    match password_of(url) {
        Some(password) => text.replace(password, "***"),
        None => text.to_owned(),
    }
}

fn password_of(url: &str) -> Option<&str> {
    let rest = &url[url.find("://")? + 3..];
    let authority = rest.split(['/', '?', '#']).next().unwrap_or(rest);
    let userinfo = &authority[..authority.rfind('@')?];
    let (_, password) = userinfo.split_once(':')?;
    (!password.is_empty()).then_some(password)
}

/// What went wrong, for people: a few client errors get a hint.
pub fn describe_error(error: &::kurrentdb::Error) -> String {
    use ::kurrentdb::Error as E;
    match error {
        E::AccessDenied => "access denied: the user needs to read $all and write keyledger's \
                            streams (e.g. a member of $admins or $ops)"
            .into(),
        E::DeadlineExceeded => "the server did not answer in time (deadline exceeded)".into(),
        E::NotLeaderException(leader) => {
            format!(
                "not the leader (the leader is {}:{})",
                leader.host, leader.port
            )
        }
        E::GrpcConnectionError(inner) => format!(
            "cannot connect (is the node up, and do the URL's TLS settings match it? \
             `?tls=false` for an insecure node): {inner}"
        ),
        E::UnsupportedFeature => "the server does not support this operation (EventStoreDB \
                                  22.6 or later, or KurrentDB, is needed)"
            .into(),
        other => other.to_string(),
    }
}

/// Whether a failed subscription may be retried (a disconnect, a leader change, a
/// timeout), as opposed to errors that the next attempt would meet again.
pub fn is_transient(error: &::kurrentdb::Error) -> bool {
    use ::kurrentdb::Error as E;
    !matches!(
        error,
        E::AccessDenied
            | E::UnsupportedFeature
            | E::InitializationError(_)
            | E::InternalParsingError(_)
            | E::InternalClientError
            | E::IllegalStateError(_)
            | E::ResourceDeleted
    )
}

fn is_missing_stream(error: &::kurrentdb::Error) -> bool {
    matches!(
        error,
        ::kurrentdb::Error::ResourceNotFound | ::kurrentdb::Error::ResourceDeleted
    )
}

/// Our expectation as KurrentDB's (versions from 1, revisions from 0).
pub fn expected_to_state(expected: ExpectedVersion) -> StreamState {
    match expected {
        ExpectedVersion::Any => StreamState::Any,
        ExpectedVersion::NoStream | ExpectedVersion::Exact(0) => StreamState::NoStream,
        ExpectedVersion::Exact(n) => StreamState::StreamRevision(n - 1),
    }
}

/// The version of a stream whose last event has `revision`.
pub fn revision_to_version(revision: u64) -> u64 {
    revision.saturating_add(1)
}

/// The revision of the event with `version` (`None` for 0: no event).
pub fn version_to_revision(version: u64) -> Option<u64> {
    version.checked_sub(1)
}

/// Our stream version from a wrong-expected-version answer.
pub fn actual_version(current: CurrentRevision) -> u64 {
    match current {
        CurrentRevision::Current(revision) => revision_to_version(revision),
        CurrentRevision::NoStream => 0,
    }
}

/// Where a read or subscription of `$all` starts for events after our position `after`.
pub fn from_position(after: u64) -> StreamPosition<Position> {
    if after == 0 {
        StreamPosition::Start
    } else {
        StreamPosition::Position(Position {
            commit: after,
            prepare: after,
        })
    }
}

/// Our position of an event at `$all` position `position`.
pub fn our_position(position: Position) -> Result<u64, StoreError> {
    if position.commit == u64::MAX || position.prepare == u64::MAX {
        return Err(StoreError::Unavailable(
            "KurrentDB returned an event without its $all position (EventStoreDB before 22.6 \
             does so on stream reads); keyledger needs EventStoreDB 22.6 or later, or KurrentDB"
                .into(),
        ));
    }
    if position.commit != position.prepare {
        return Err(StoreError::Corrupt {
            position: position.commit,
            reason: format!(
                "event at {position} was written in an explicit transaction (commit and prepare \
                 positions differ); keyledger cannot give it a position of its own"
            ),
        });
    }
    if position.commit == 0 {
        return Err(StoreError::Corrupt {
            position: 0,
            reason: "event at log position 0".into(),
        });
    }
    Ok(position.commit)
}

/// A write's position, unless the server sent none (an idempotent replay).
fn valid_position(position: Position) -> Option<u64> {
    our_position(position).ok()
}

/// The event itself (a link's target is not resolved: links are system events here).
fn original(event: &ResolvedEvent) -> Option<&::kurrentdb::RecordedEvent> {
    event.event.as_ref().or(event.link.as_ref())
}

/// The stream name as keyledger knows it, or `None` for events that are not this
/// store's: system events (`$`-types or `$`-streams) and, with a prefix, other streams.
pub fn accept<'a>(stream: &'a str, event_type: &str, prefix: &str) -> Option<&'a str> {
    if stream.starts_with('$') || event_type.starts_with('$') {
        return None;
    }
    stream.strip_prefix(prefix).filter(|s| !s.is_empty())
}

/// The custom metadata of an event: [`Metadata`] plus what the SQL adapters keep in
/// columns of their own.
#[derive(Debug, Serialize, Deserialize)]
struct StoredMetadata {
    #[serde(flatten)]
    metadata: Metadata,
    schema_version: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    recorded_at: Option<String>,
}

/// The parts of a stored event, before validation.
pub struct RawParts<'a> {
    /// Stream name without the store's prefix.
    pub stream: String,
    /// KurrentDB revision (from 0).
    pub revision: u64,
    /// Our position (already mapped).
    pub position: u64,
    /// The event type.
    pub event_type: String,
    /// The event id.
    pub event_id: Uuid,
    /// The data bytes (JSON).
    pub data: &'a [u8],
    /// The custom metadata bytes (JSON).
    pub custom_metadata: &'a [u8],
    /// The server's timestamp, used when the metadata has no `recorded_at`.
    pub created: DateTime<Utc>,
}

/// Validates and decodes a stored event; a bad part is [`StoreError::Corrupt`].
pub fn decode_parts(raw: RawParts<'_>) -> Result<RecordedEvent, StoreError> {
    let corrupt = |reason: String| codec::corrupt_at(raw.position, reason);
    let data: serde_json::Value =
        serde_json::from_slice(raw.data).map_err(|e| corrupt(format!("invalid data: {e}")))?;
    let stored: StoredMetadata = serde_json::from_slice(raw.custom_metadata)
        .map_err(|e| corrupt(format!("invalid metadata: {e}")))?;
    let recorded_at = match &stored.recorded_at {
        Some(text) => DateTime::parse_from_rfc3339(text)
            .map_err(|e| corrupt(format!("invalid recorded_at {text:?}: {e}")))?
            .with_timezone(&Utc),
        None => raw.created,
    };
    Ok(RecordedEvent {
        event_id: raw.event_id,
        stream: raw.stream,
        stream_version: revision_to_version(raw.revision),
        position: raw.position,
        event_type: raw.event_type,
        schema_version: stored.schema_version,
        recorded_at,
        metadata: stored.metadata,
        data,
    })
}

/// Encodes one event for KurrentDB (its metadata already sealed).
pub fn encode_event(
    event: &NewEvent,
    sealed: Metadata,
    recorded_at: &DateTime<Utc>,
) -> Result<EventData, StoreError> {
    let stored = StoredMetadata {
        metadata: sealed,
        schema_version: event.schema_version,
        recorded_at: Some(chain::timestamp_text(recorded_at)),
    };
    EventData::json(&event.event_type, &event.data)
        .and_then(|data| data.id(event.event_id).metadata_as_json(&stored))
        .map_err(|e| StoreError::InvalidAppend(format!("event cannot be encoded: {e}")))
}

/// Seals and encodes a request's events on top of version `current` whose hash is
/// `head_hash` (unchained streams get their hashes cleared).
fn seal_events(
    request: &AppendRequest,
    current: u64,
    head_hash: Option<String>,
    recorded_at: &DateTime<Utc>,
) -> Result<Vec<EventData>, StoreError> {
    let mut prev_hash = head_hash;
    let mut out = Vec::with_capacity(request.events.len());
    for (version, event) in (current + 1..).zip(&request.events) {
        let mut sealed = event.metadata.clone();
        prev_hash = chain::seal(
            HashInput {
                stream: &request.stream,
                stream_version: version,
                event_id: event.event_id,
                event_type: &event.event_type,
                schema_version: event.schema_version,
                recorded_at,
                data: &event.data,
                metadata: &event.metadata,
                prev_hash: prev_hash.as_deref(),
            },
            &mut sealed,
        );
        out.push(encode_event(event, sealed, recorded_at)?);
    }
    Ok(out)
}

/// What KurrentDB needs beyond [`codec::validate`]: no `$` names (system streams and
/// events), and no event id twice in one call.
fn validate(requests: &[AppendRequest]) -> Result<(), StoreError> {
    codec::validate(requests)?;
    let mut ids = HashSet::new();
    for request in requests {
        if request.stream.starts_with('$') {
            return Err(StoreError::InvalidAppend(format!(
                "stream {} starts with '$', which KurrentDB reserves for system streams",
                request.stream
            )));
        }
        for event in &request.events {
            if event.event_type.is_empty() || event.event_type.starts_with('$') {
                return Err(StoreError::InvalidAppend(format!(
                    "event type {:?} is empty or starts with '$' (system events)",
                    event.event_type
                )));
            }
            if !ids.insert(event.event_id) {
                return Err(StoreError::InvalidAppend(format!(
                    "event id {} appears twice in one append",
                    event.event_id
                )));
            }
        }
    }
    Ok(())
}

#[async_trait]
impl EventStore for KurrentDbEventStore {
    async fn append_many(
        &self,
        requests: Vec<AppendRequest>,
    ) -> Result<Vec<AppendOutcome>, StoreError> {
        validate(&requests)?;
        if requests.len() > 1 {
            self.precheck(&requests).await?;
        }
        let mut outcomes = Vec::with_capacity(requests.len());
        for (i, request) in requests.iter().enumerate() {
            match self.append_one(request).await {
                Ok(outcome) => outcomes.push(outcome),
                Err(error) => {
                    if i > 0 {
                        let written: Vec<&str> =
                            requests[..i].iter().map(|r| r.stream.as_str()).collect();
                        tracing::error!(
                            %error,
                            failed = %request.stream,
                            written = ?written,
                            "append_many failed part-way; the earlier streams stay written \
                             (KurrentDB has no multi-stream transaction)"
                        );
                    }
                    return Err(error);
                }
            }
        }
        Ok(outcomes)
    }

    async fn read_stream(
        &self,
        stream: &str,
        from_version: u64,
        limit: usize,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        // Revisions are i64 on the server: beyond that, nothing can be stored.
        if limit == 0 || from_version > i64::MAX as u64 {
            return Ok(Vec::new());
        }
        let from = version_to_revision(from_version).unwrap_or(0);
        let options = ReadStreamOptions::default()
            .position(StreamPosition::Position(from))
            .forwards()
            .max_count(limit)
            .requires_leader(true)
            .deadline(self.options.operation_timeout);
        let mut read = match self
            .client
            .read_stream(self.full_name(stream), &options)
            .await
        {
            Ok(read) => read,
            Err(e) if is_missing_stream(&e) => return Ok(Vec::new()),
            Err(e) => return Err(self.map_error(e)),
        };
        let mut events = Vec::new();
        loop {
            match read.next().await {
                Ok(Some(event)) => {
                    if let Some(event) = self.decode(&event)? {
                        events.push(event);
                    }
                    if events.len() >= limit {
                        break;
                    }
                }
                Ok(None) => break,
                Err(e) if is_missing_stream(&e) => break,
                Err(e) => return Err(self.map_error(e)),
            }
        }
        Ok(events)
    }

    async fn stream_version(&self, stream: &str) -> Result<u64, StoreError> {
        Ok(self.head_of(stream).await?.0)
    }

    async fn read_all(&self, after: u64, limit: usize) -> Result<Vec<RecordedEvent>, StoreError> {
        let mut events = Vec::new();
        let mut cursor = after;
        while events.len() < limit {
            // The read starts *at* `cursor` (inclusive): ask for one more.
            let count = (limit - events.len()).saturating_add(1);
            let mut read = self
                .client
                .read_all(&self.read_all_options(from_position(cursor), count))
                .await
                .map_err(|e| self.map_error(e))?;
            let mut received = 0;
            let mut advanced = false;
            while let Some(event) = read.next().await.map_err(|e| self.map_error(e))? {
                received += 1;
                let Some(recorded) = original(&event) else {
                    continue;
                };
                let position = recorded.position.commit;
                if position <= cursor {
                    continue;
                }
                cursor = position;
                advanced = true;
                if let Some(event) = self.decode(&event)? {
                    events.push(event);
                    if events.len() >= limit {
                        break;
                    }
                }
            }
            // Fewer than asked for: the end of $all. Nothing new: nothing more to read.
            if received < count || !advanced {
                break;
            }
        }
        Ok(events)
    }

    async fn head_position(&self) -> Result<u64, StoreError> {
        let options = ReadAllOptions::default()
            .position(StreamPosition::End)
            .filter(self.filter())
            .requires_leader(true)
            .deadline(self.options.operation_timeout);
        let mut read = self
            .client
            .read_all(&options)
            .await
            .map_err(|e| self.map_error(e))?;
        // Backwards, server-filtered: the first of this store's events is the head. The
        // read is dropped (cancelled) as soon as it is found.
        while let Some(event) = read.next().await.map_err(|e| self.map_error(e))? {
            let Some(recorded) = original(&event) else {
                continue;
            };
            if accept(
                recorded.stream_id(),
                &recorded.event_type,
                &self.options.stream_prefix,
            )
            .is_some()
            {
                return our_position(recorded.position);
            }
        }
        Ok(0)
    }

    fn subscribe_all(&self, after: u64) -> EventStream {
        let state = SubscriptionState {
            store: self.clone(),
            last: after,
            subscription: None,
            failures: 0,
            done: false,
        };
        Box::pin(futures::stream::unfold(state, next_event))
    }
}

struct SubscriptionState {
    store: KurrentDbEventStore,
    /// The position of the last event delivered (or the caller's `after`).
    last: u64,
    subscription: Option<Subscription>,
    /// Consecutive failed attempts (for the backoff).
    failures: u32,
    done: bool,
}

/// The pause before resubscription attempt `failures` (1, 2, ...): 100 ms doubling, at
/// most [`MAX_RESUBSCRIBE_DELAY`].
pub fn resubscribe_delay(failures: u32) -> Duration {
    let exponent = failures.saturating_sub(1).min(16);
    Duration::from_millis(100u64.saturating_mul(1 << exponent)).min(MAX_RESUBSCRIBE_DELAY)
}

async fn next_event(
    mut state: SubscriptionState,
) -> Option<(Result<RecordedEvent, StoreError>, SubscriptionState)> {
    if state.done {
        return None;
    }
    loop {
        let subscription = match state.subscription.as_mut() {
            Some(subscription) => subscription,
            None => {
                let options = SubscribeToAllOptions::default()
                    .position(from_position(state.last))
                    .filter(state.store.filter())
                    .requires_leader(true);
                state
                    .subscription
                    .insert(state.store.client.subscribe_to_all(&options).await)
            }
        };
        match subscription.next_subscription_event().await {
            Ok(SubscriptionEvent::EventAppeared(event)) => {
                state.failures = 0;
                // The start position may be delivered again (and a resubscription repeats
                // nothing after `last`): keep only what is strictly after it.
                let position = original(&event).map_or(0, |e| e.position.commit);
                if position <= state.last {
                    continue;
                }
                match state.store.decode(&event) {
                    Ok(Some(recorded)) => {
                        state.last = recorded.position;
                        return Some((Ok(recorded), state));
                    }
                    Ok(None) => {}
                    Err(error) => {
                        state.done = true;
                        return Some((Err(error), state));
                    }
                }
            }
            // Not on `Confirmed`: a server that confirms and then drops the subscription
            // at once must still see the backoff grow.
            Ok(SubscriptionEvent::CaughtUp(_)) => state.failures = 0,
            Ok(_) => {}
            Err(error) if is_transient(&error) => {
                state.subscription = None;
                state.failures = state.failures.saturating_add(1);
                let delay = resubscribe_delay(state.failures);
                tracing::warn!(
                    error = %describe_error(&error),
                    server = %state.store.target,
                    after = state.last,
                    retry_in_ms = delay.as_millis() as u64,
                    "KurrentDB subscription dropped; resubscribing from the last delivered position"
                );
                tokio::time::sleep(delay).await;
            }
            Err(error) => {
                state.done = true;
                return Some((Err(state.store.map_error(error)), state));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn new_event(n: u64) -> NewEvent {
        NewEvent {
            event_id: Uuid::now_v7(),
            event_type: "KeyRenamed".into(),
            schema_version: 2,
            data: serde_json::json!({ "n": n, "name": "ünïcødé \"quoted\"" }),
            metadata: Metadata {
                actor: "cli:test".into(),
                request_id: Some(format!("req-{n}")),
                correlation_id: Some("corr".into()),
                ..Metadata::default()
            },
        }
    }

    #[test]
    fn it_should_map_expected_versions_to_revisions_from_zero() {
        assert_eq!(expected_to_state(ExpectedVersion::Any), StreamState::Any);
        assert_eq!(
            expected_to_state(ExpectedVersion::NoStream),
            StreamState::NoStream
        );
        assert_eq!(
            expected_to_state(ExpectedVersion::Exact(0)),
            StreamState::NoStream
        );
        assert_eq!(
            expected_to_state(ExpectedVersion::Exact(1)),
            StreamState::StreamRevision(0)
        );
        assert_eq!(
            expected_to_state(ExpectedVersion::Exact(42)),
            StreamState::StreamRevision(41)
        );
        assert_eq!(revision_to_version(0), 1);
        assert_eq!(version_to_revision(1), Some(0));
        assert_eq!(version_to_revision(0), None);
        assert_eq!(revision_to_version(u64::MAX), u64::MAX);
    }

    #[test]
    fn it_should_report_the_actual_version_of_a_conflict_from_one() {
        assert_eq!(actual_version(CurrentRevision::NoStream), 0);
        assert_eq!(actual_version(CurrentRevision::Current(0)), 1);
        assert_eq!(actual_version(CurrentRevision::Current(2)), 3);
    }

    #[test]
    fn it_should_use_the_commit_position_and_accept_it_back() {
        let at = |p: u64| Position {
            commit: p,
            prepare: p,
        };
        assert_eq!(our_position(at(4_711)).unwrap(), 4_711);
        assert_eq!(from_position(0), StreamPosition::Start);
        assert_eq!(from_position(4_711), StreamPosition::Position(at(4_711)));
        assert!(our_position(at(10)).unwrap() < our_position(at(11)).unwrap());
    }

    #[test]
    fn it_should_refuse_positions_it_cannot_map() {
        let legacy = Position {
            commit: 900,
            prepare: 800,
        };
        assert!(matches!(
            our_position(legacy),
            Err(StoreError::Corrupt { position: 900, .. })
        ));
        let none = Position {
            commit: u64::MAX,
            prepare: u64::MAX,
        };
        match our_position(none) {
            Err(StoreError::Unavailable(reason)) => assert!(reason.contains("22.6"), "{reason}"),
            other => panic!("expected Unavailable, got {other:?}"),
        }
        assert!(our_position(Position::start()).is_err());
        assert_eq!(valid_position(Position::start()), None);
    }

    #[test]
    fn it_should_keep_system_events_and_other_prefixes_out() {
        assert_eq!(accept("apikey-1", "KeyCreated", ""), Some("apikey-1"));
        assert_eq!(accept("$stats-127.0.0.1:2113", "StatsCollected", ""), None);
        assert_eq!(accept("$ce-apikey", "$>", ""), None);
        assert_eq!(accept("apikey-1", "$metadata", ""), None);
        assert_eq!(accept("t1-apikey-1", "KeyCreated", "t1-"), Some("apikey-1"));
        assert_eq!(accept("t2-apikey-1", "KeyCreated", "t1-"), None);
        assert_eq!(accept("t1-", "KeyCreated", "t1-"), None);
    }

    #[test]
    fn it_should_round_trip_the_envelope_through_custom_metadata() {
        let event = new_event(7);
        let at = Utc::now().trunc_subsecs(6);
        let stored = StoredMetadata {
            metadata: event.metadata.clone(),
            schema_version: event.schema_version,
            recorded_at: Some(chain::timestamp_text(&at)),
        };
        let metadata = serde_json::to_vec(&stored).unwrap();
        let json: serde_json::Value = serde_json::from_slice(&metadata).unwrap();
        assert_eq!(json["actor"], "cli:test");
        assert_eq!(json["request_id"], "req-7");
        assert_eq!(json["schema_version"], 2);
        assert!(json.get("hash").is_none());
        let data = serde_json::to_vec(&event.data).unwrap();
        let decoded = decode_parts(RawParts {
            stream: "apikey-1".into(),
            revision: 4,
            position: 1_234,
            event_type: event.event_type.clone(),
            event_id: event.event_id,
            data: &data,
            custom_metadata: &metadata,
            created: DateTime::UNIX_EPOCH,
        })
        .unwrap();
        assert_eq!(decoded.stream_version, 5);
        assert_eq!(decoded.position, 1_234);
        assert_eq!(decoded.event_id, event.event_id);
        assert_eq!(decoded.schema_version, 2);
        assert_eq!(decoded.recorded_at, at);
        assert_eq!(decoded.metadata, event.metadata);
        assert_eq!(decoded.data, event.data);
        // Encoding the same event goes through the client's EventData unharmed.
        assert!(encode_event(&event, event.metadata.clone(), &at).is_ok());
    }

    #[test]
    fn it_should_seal_a_chained_stream_on_its_head() {
        let at = Utc::now().trunc_subsecs(6);
        let request = AppendRequest {
            stream: "apikey-0190".into(),
            expected: ExpectedVersion::Exact(3),
            events: vec![new_event(1), new_event(2)],
        };
        assert_eq!(
            seal_events(&request, 3, Some("head".into()), &at)
                .unwrap()
                .len(),
            2
        );
        // The same sealing as the SQL adapters: a recorded event with the stored fields
        // verifies against the hash this adapter computes.
        let mut sealed = request.events[0].metadata.clone();
        let hash = chain::seal(
            HashInput {
                stream: &request.stream,
                stream_version: 4,
                event_id: request.events[0].event_id,
                event_type: &request.events[0].event_type,
                schema_version: 2,
                recorded_at: &at,
                data: &request.events[0].data,
                metadata: &request.events[0].metadata,
                prev_hash: Some("head"),
            },
            &mut sealed,
        );
        let stored = serde_json::to_vec(&StoredMetadata {
            metadata: sealed,
            schema_version: 2,
            recorded_at: Some(chain::timestamp_text(&at)),
        })
        .unwrap();
        let data = serde_json::to_vec(&request.events[0].data).unwrap();
        let recorded = decode_parts(RawParts {
            stream: request.stream.clone(),
            revision: 3,
            position: 99,
            event_type: "KeyRenamed".into(),
            event_id: request.events[0].event_id,
            data: &data,
            custom_metadata: &stored,
            created: DateTime::UNIX_EPOCH,
        })
        .unwrap();
        assert_eq!(recorded.metadata.prev_hash.as_deref(), Some("head"));
        assert_eq!(recorded.metadata.hash, hash);
        assert_eq!(Some(HashInput::of(&recorded).hash()), hash);
    }

    #[test]
    fn it_should_report_corrupt_events_at_their_position() {
        let decode = |data: &[u8], metadata: &[u8]| {
            decode_parts(RawParts {
                stream: "s".into(),
                revision: 0,
                position: 77,
                event_type: "T".into(),
                event_id: Uuid::now_v7(),
                data,
                custom_metadata: metadata,
                created: DateTime::UNIX_EPOCH,
            })
        };
        let good = br#"{"actor":"x","schema_version":1}"#;
        assert!(decode(b"{}", good).is_ok());
        assert_eq!(
            decode(b"{}", good).unwrap().recorded_at,
            DateTime::<Utc>::UNIX_EPOCH,
            "without recorded_at, the server's timestamp"
        );
        for (data, metadata) in [
            (&b"not json"[..], &good[..]),
            (b"{}", br#"{"schema_version":1}"#),
            (b"{}", br#"{"actor":"x"}"#),
            (b"{}", br#"{"actor":5,"schema_version":1}"#),
            (
                b"{}",
                br#"{"actor":"x","schema_version":1,"recorded_at":"yesterday"}"#,
            ),
            (b"{}", b""),
        ] {
            assert!(
                matches!(
                    decode(data, metadata),
                    Err(StoreError::Corrupt { position: 77, .. })
                ),
                "{:?} / {:?}",
                String::from_utf8_lossy(data),
                String::from_utf8_lossy(metadata)
            );
        }
    }

    #[test]
    fn it_should_refuse_appends_kurrentdb_would_misread() {
        let request = |stream: &str, events: Vec<NewEvent>| AppendRequest {
            stream: stream.into(),
            expected: ExpectedVersion::Any,
            events,
        };
        assert!(validate(&[request("apikey-1", vec![new_event(1)])]).is_ok());
        let system = validate(&[request("$apikey-1", vec![new_event(1)])]);
        assert!(matches!(system, Err(StoreError::InvalidAppend(_))));
        let mut typed = new_event(1);
        typed.event_type = "$metadata".into();
        assert!(validate(&[request("s", vec![typed])]).is_err());
        let twice = new_event(1);
        assert!(validate(&[request("a", vec![twice.clone()]), request("b", vec![twice])]).is_err());
        assert!(validate(&[]).is_err());
    }

    #[test]
    fn it_should_recognise_kurrentdb_urls() {
        for url in [
            "esdb://localhost:2113?tls=false",
            "esdb+discover://cluster.example:2113",
            "kurrentdb://admin:changeit@localhost:2113",
            "kurrentdb+discover://a:1,b:2",
            "KurrentDB://localhost",
            "kdb://localhost",
        ] {
            assert!(is_kurrentdb_url(url), "{url}");
        }
        for url in [
            "postgres://x",
            "sqlite://x.db",
            "esdb",
            "http://localhost:2113",
        ] {
            assert!(!is_kurrentdb_url(url), "{url}");
        }
    }

    #[test]
    fn it_should_parse_settings_and_name_the_nodes() {
        let settings = parse_settings("esdb://admin:changeit@db.example:2113?tls=false").unwrap();
        assert_eq!(describe_target(&settings), "db.example:2113");
        assert!(!settings.is_secure_mode_enabled());
        let cluster = parse_settings("kurrentdb://n1:2113,n2:2114,n3:2115").unwrap();
        assert_eq!(describe_target(&cluster), "n1:2113,n2:2114,n3:2115");
        let discover = parse_settings("esdb+discover://cluster.example").unwrap();
        assert_eq!(describe_target(&discover), "discover cluster.example:2113");
    }

    #[test]
    fn it_should_reject_a_bad_url_without_showing_the_password() {
        for url in [
            "esdb://admin:hunter2@db.example:2113/some/path",
            "esdb://admin:hunter2@db.example:notaport",
            "esdb://admin:hunter2@db.example:2113?nodePreference=sideways",
            "esdb://admin:hunter2@db.example:2113?tls=maybe",
            "esdb://admin:hunter2@:2113",
            "mysql://admin:hunter2@db.example",
        ] {
            match parse_settings(url) {
                Err(StoreError::Unavailable(message)) => {
                    assert!(!message.contains("hunter2"), "{message}");
                    assert!(message.contains("admin:***@"), "{message}");
                }
                other => panic!("{url}: expected Unavailable, got {other:?}"),
            }
        }
    }

    #[test]
    fn it_should_redact_and_scrub_passwords() {
        assert_eq!(
            redact("esdb://admin:changeit@h:2113?tls=false"),
            "esdb://admin:***@h:2113?tls=false"
        );
        assert_eq!(redact("esdb://h:2113"), "esdb://h:2113");
        assert_eq!(redact("esdb://admin@h:2113"), "esdb://admin@h:2113");
        assert_eq!(
            scrub("failed for changeit", "esdb://admin:changeit@h"),
            "failed for ***"
        );
        assert_eq!(scrub("text", "esdb://h"), "text");
    }

    #[test]
    fn it_should_explain_client_errors() {
        use ::kurrentdb::Error as E;
        assert!(describe_error(&E::AccessDenied).contains("$all"));
        assert!(describe_error(&E::DeadlineExceeded).contains("in time"));
        let leader = ::kurrentdb::Endpoint {
            host: "n2".into(),
            port: 2113,
        };
        assert!(describe_error(&E::NotLeaderException(leader)).contains("n2:2113"));
        assert!(is_transient(&E::ConnectionClosed));
        assert!(is_transient(&E::ServerError("unavailable".into())));
        assert!(is_transient(&E::DeadlineExceeded));
        assert!(!is_transient(&E::AccessDenied));
        assert!(!is_transient(&E::UnsupportedFeature));
    }

    #[test]
    fn it_should_back_off_up_to_five_seconds() {
        assert_eq!(resubscribe_delay(1), Duration::from_millis(100));
        assert_eq!(resubscribe_delay(2), Duration::from_millis(200));
        assert_eq!(resubscribe_delay(4), Duration::from_millis(800));
        assert_eq!(resubscribe_delay(10), MAX_RESUBSCRIBE_DELAY);
        assert_eq!(resubscribe_delay(u32::MAX), MAX_RESUBSCRIBE_DELAY);
    }

    /// A port nothing listens on: bound, then released.
    fn closed_port() -> u16 {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    }

    async fn assert_unreachable(url: &str, port: u16) {
        let options = KurrentDbOptions {
            connect_timeout: Duration::from_secs(3),
            ..KurrentDbOptions::default()
        };
        let started = std::time::Instant::now();
        match KurrentDbEventStore::connect_with(url, options).await {
            Err(StoreError::Unavailable(message)) => {
                eprintln!("start-up error: {message}");
                assert!(message.contains(&format!("127.0.0.1:{port}")), "{message}");
                assert!(!message.contains("s3cr3t"), "{message}");
            }
            other => panic!("expected Unavailable, got {other:?}"),
        }
        assert!(started.elapsed() < Duration::from_secs(10));
    }

    #[tokio::test]
    async fn it_should_fail_start_up_on_an_unreachable_server() {
        let port = closed_port();
        assert_unreachable(
            &format!("esdb://admin:s3cr3t@127.0.0.1:{port}?tls=false"),
            port,
        )
        .await;
    }

    #[tokio::test]
    async fn it_should_fail_start_up_over_tls_without_panicking() {
        // TLS on (the default): the client builds a rustls config, which panics unless
        // one crypto provider is installed.
        let port = closed_port();
        assert_unreachable(&format!("kurrentdb://admin:s3cr3t@127.0.0.1:{port}"), port).await;
    }

    #[tokio::test]
    async fn it_should_refuse_a_system_stream_prefix() {
        let options = KurrentDbOptions {
            stream_prefix: "$x-".into(),
            ..KurrentDbOptions::default()
        };
        assert!(
            KurrentDbEventStore::connect_with("esdb://127.0.0.1:1?tls=false", options)
                .await
                .is_err()
        );
    }
}
