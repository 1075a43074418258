//! The KurrentDB / EventStoreDB event store (cargo feature `kurrentdb`), on the official
//! `kurrentdb` gRPC client. Chosen by [`crate::store::open_event_store`] for `esdb://`,
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
//! [`Metadata`](domain::store::Metadata) (actor, request_id, correlation_id, causation_id,
//! prev_hash, hash) plus `schema_version` and `recorded_at` (this adapter's clock at the
//! append, RFC 3339 with microseconds: the hash chain covers it, so it must be known
//! before the server writes).
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
//!
//! Files: this one holds the store (connect, appends, reads); `envelope` the stored form
//! of an event, `mapping` versions and positions, `settings` URLs and error text,
//! `subscription` the resubscribing live stream, `tests` the unit tests.

mod envelope;
mod mapping;
mod settings;
mod subscription;
#[cfg(test)]
mod tests;

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use ::kurrentdb::{
    AppendToStreamOptions, Client, Position, ReadAllOptions, ReadStreamOptions, ResolvedEvent,
    StreamPosition, SubscriptionFilter,
};
use async_trait::async_trait;
use chrono::{SubsecRound, Utc};
use domain::chain;
use domain::store::{
    AppendOutcome, AppendRequest, EventStore, EventStream, ExpectedVersion, RecordedEvent,
    StoreError,
};

use envelope::{RawParts, StoredMetadata, decode_parts, seal_events, validate};
use mapping::{
    accept, actual_version, expected_to_state, from_position, original, our_position,
    revision_to_version, valid_position, version_to_revision,
};
use settings::{
    describe_error, describe_target, install_crypto_provider, is_missing_stream, parse_settings,
    scrub,
};

pub use super::is_kurrentdb_url;

/// How many times an `Any` append to a hash-chained stream is retried after losing the
/// race for the chain's head to another writer.
const CHAIN_RETRIES: u32 = 5;

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
        subscription::subscribe(self.clone(), after)
    }
}
