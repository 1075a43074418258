//! Audit support over any [`EventStore`]: verifying the hash chains
//! ([`domain::chain`]) of the whole store or of one organisation, and finding an
//! organisation's streams for exports. Reads page through the store, so memory stays
//! bounded by the page size plus one chain head per stream.

use domain::chain::{ChainBreak, ChainVerifier};
use domain::events::wire;
use domain::ids::{KeyId, OrgId};
use domain::store::{EventStore, StoreError};

/// Which reader found a broken chain: the `reader` label of
/// `keyledger_integrity_failures_total` (a fixed set).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reader {
    /// A command handler or a key cache fill (`commands::keys`).
    Commands,
    /// A replay for auditors (`keyledger audit KEY`, `GET .../events`).
    Audit,
}

impl Reader {
    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Reader::Commands => "commands",
            Reader::Audit => "audit",
        }
    }
}

/// Reports a broken chain found by `reader`: counts it in
/// `keyledger_integrity_failures_total{stream="apikey"|"org", reader=...}` every time,
/// and logs it at ERROR (naming the stream and version) the first time this process
/// meets it ([`domain::chain::first_report`]), at DEBUG afterwards. The projections
/// report theirs the same way, with `reader="projection"`.
pub fn report_break(reader: Reader, broken: &ChainBreak) {
    metrics::counter!(
        "keyledger_integrity_failures_total",
        "stream" => broken.stream_kind(),
        "reader" => reader.as_str(),
    )
    .increment(1);
    if domain::chain::first_report(broken) {
        tracing::error!(
            stream = %broken.stream,
            stream_version = broken.stream_version,
            position = broken.position,
            reader = reader.as_str(),
            "hash chain broken: {}; the stream is not trusted",
            broken.kind
        );
    } else {
        tracing::debug!(
            stream = %broken.stream,
            stream_version = broken.stream_version,
            "hash chain broken (already reported)"
        );
    }
}

/// Events per read while verifying or exporting.
pub const PAGE: usize = 1_000;

/// What a verification found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VerifyReport {
    /// Chained events checked.
    pub checked: u64,
    /// Chained events without a hash, written before chaining existed: not verifiable.
    pub legacy: u64,
    /// Chained streams seen.
    pub streams: usize,
    /// Every break, ordered by global position: the first is the earliest tampering.
    pub breaks: Vec<ChainBreak>,
    /// Keys the organisation stream says were issued but whose lifecycle stream is empty
    /// (its events were all deleted). Only checked per organisation.
    pub missing_streams: Vec<String>,
}

impl VerifyReport {
    /// Whether every chain holds.
    pub fn is_intact(&self) -> bool {
        self.breaks.is_empty() && self.missing_streams.is_empty()
    }

    /// The earliest break (by global position), if any.
    pub fn first_break(&self) -> Option<&ChainBreak> {
        self.breaks.first()
    }

    fn finish(mut self, verifier: &ChainVerifier) -> VerifyReport {
        self.checked = verifier.checked();
        self.legacy = verifier.legacy();
        self.streams = verifier.streams();
        self.breaks.sort_by_key(|b| b.position);
        self
    }
}

/// Verifies every chained stream of the store, reading everything in global order.
pub async fn verify_all(store: &dyn EventStore) -> Result<VerifyReport, StoreError> {
    let mut verifier = ChainVerifier::new();
    let mut report = VerifyReport::default();
    let mut after = 0;
    loop {
        let page = store.read_all(after, PAGE).await?;
        let Some(last) = page.last() else { break };
        after = last.position;
        for event in &page {
            report.breaks.extend(verifier.check(event));
        }
    }
    Ok(report.finish(&verifier))
}

/// Verifies one organisation's stream and the lifecycle streams of every key it issued.
pub async fn verify_org(store: &dyn EventStore, org: OrgId) -> Result<VerifyReport, StoreError> {
    let mut verifier = ChainVerifier::new();
    let mut report = VerifyReport::default();
    let mut keys = Vec::new();
    let org_stream = org.stream();
    let mut from = 1;
    loop {
        let page = store.read_stream(&org_stream, from, PAGE).await?;
        let Some(last) = page.last() else { break };
        from = last.stream_version + 1;
        for event in &page {
            report.breaks.extend(verifier.check(event));
            if let Some(key) = issued_key(event) {
                keys.push(key);
            }
        }
    }
    for key in keys {
        let stream = key.stream();
        let mut from = 1;
        let mut seen = false;
        loop {
            let page = store.read_stream(&stream, from, PAGE).await?;
            let Some(last) = page.last() else { break };
            seen = true;
            from = last.stream_version + 1;
            for event in &page {
                report.breaks.extend(verifier.check(event));
            }
        }
        if !seen {
            report.missing_streams.push(stream);
        }
    }
    Ok(report.finish(&verifier))
}

/// The key a `KeyIssued` event names (read from raw data, so that a verifier need not
/// decode events whose data may have been tampered with).
fn issued_key(event: &domain::store::RecordedEvent) -> Option<KeyId> {
    if event.event_type != wire::KEY_ISSUED {
        return None;
    }
    event
        .data
        .get("key_id")
        .and_then(|v| v.as_str())
        .and_then(|s| s.parse().ok())
}

/// Every stream of an organisation, in the order an export reads them: the organisation
/// stream, then for each key it issued (in issue order) its lifecycle stream and its
/// usage stream.
pub async fn org_streams(store: &dyn EventStore, org: OrgId) -> Result<Vec<String>, StoreError> {
    let org_stream = org.stream();
    let mut streams = vec![org_stream.clone()];
    let mut from = 1;
    loop {
        let page = store.read_stream(&org_stream, from, PAGE).await?;
        let Some(last) = page.last() else { break };
        from = last.stream_version + 1;
        for key in page.iter().filter_map(issued_key) {
            streams.push(key.stream());
            streams.push(key.usage_stream());
        }
    }
    Ok(streams)
}
