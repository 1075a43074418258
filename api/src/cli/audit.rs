//! `keyledger audit`: replay a key's history (`audit KEY_ID [--at T] [--json]`), export an
//! organisation's events for a warehouse (`audit export`), and verify the hash chains
//! (`audit verify`).
//!
//! Everything here reads the event store directly (no read model, no server), page by
//! page, and never prints a secret or a secret hash: states are serialized without the
//! hash and event data goes through [`domain::events::redact_data`].

use std::io::Write;
use std::sync::Arc;

use anyhow::Context as _;
use chrono::{DateTime, Utc};
use clap::{Args, Subcommand};
use domain::apikey::{self, ApiKey};
use domain::chain::{ChainBreak, ChainVerifier, CheckedFold, timestamp_text};
use domain::ids::{KeyId, OrgId};
use domain::store::EventStore;

use crate::config::StoreConfig;
use crate::routes::audit::AuditEvent;

/// Events per read.
const PAGE: usize = 1_000;

/// `keyledger audit`: either a key id (replay) or one of the subcommands.
#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct AuditArgs {
    #[command(subcommand)]
    command: Option<AuditCommand>,
    /// The key whose history to replay.
    #[arg(value_name = "KEY_ID", required = true)]
    key: Option<KeyId>,
    /// Print only the key's state at this moment (RFC 3339), e.g. 2025-03-01T09:00:00Z.
    #[arg(long)]
    at: Option<DateTime<Utc>>,
    /// NDJSON: one `{position, stream_version, type, recorded_at, actor, state}` per line
    /// (plus `integrity: "broken"` and `integrity_problem` on an event that fails its
    /// hash-chain check).
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    stores: StoreConfig,
}

#[derive(Debug, Subcommand)]
enum AuditCommand {
    /// Write every event of an organisation's streams (its own, its keys' lifecycle and
    /// usage streams) as NDJSON, secret hashes removed: for a data warehouse.
    #[command(
        after_help = "Example:\n  keyledger audit export --org ORG_ID --output events.ndjson"
    )]
    Export {
        /// The organisation's id.
        #[arg(long)]
        org: OrgId,
        /// Where to write; stdout when omitted.
        #[arg(long)]
        output: Option<std::path::PathBuf>,
        #[command(flatten)]
        stores: StoreConfig,
    },
    /// Recompute every hash chain (or one organisation's) and name the first event that
    /// was altered, deleted or reordered. Exits non-zero if any chain is broken.
    #[command(
        after_help = "Examples:\n  keyledger audit verify\n  keyledger audit verify --org ORG_ID"
    )]
    Verify {
        /// Only this organisation's stream and its keys' streams.
        #[arg(long)]
        org: Option<OrgId>,
        #[command(flatten)]
        stores: StoreConfig,
    },
}

/// Runs `keyledger audit ...`.
pub async fn run(args: AuditArgs) -> anyhow::Result<()> {
    match args.command {
        Some(AuditCommand::Export {
            org,
            output,
            stores,
        }) => export(&stores, org, output.as_deref()).await,
        Some(AuditCommand::Verify { org, stores }) => verify(&stores, org).await,
        None => {
            let key = args
                .key
                .ok_or_else(|| anyhow::anyhow!("KEY_ID: give a key id, or export / verify"))?;
            replay(&args.stores, key, args.at, args.json).await
        }
    }
}

async fn open(stores: &StoreConfig) -> anyhow::Result<Arc<dyn EventStore>> {
    commands::open_event_store(stores.eventstore_url())
        .await
        .context("KEYLEDGER_EVENTSTORE_URL / KEYLEDGER_DATABASE_URL")
}

/// The state as printed: the aggregate's state (which never serializes the secret
/// hash) plus its status at `now`.
fn state_json(
    state: &Option<apikey::State>,
    now: DateTime<Utc>,
) -> anyhow::Result<serde_json::Value> {
    Ok(match state {
        None => serde_json::Value::Null,
        Some(state) => {
            let mut value = serde_json::to_value(state)?;
            if let Some(map) = value.as_object_mut() {
                map.remove(domain::events::SECRET_HASH_FIELD);
                map.insert("status".into(), state.status(now).as_str().into());
            }
            value
        }
    })
}

/// `keyledger audit KEY_ID [--at T] [--json]`.
async fn replay(
    stores: &StoreConfig,
    key: KeyId,
    at: Option<DateTime<Utc>>,
    json: bool,
) -> anyhow::Result<()> {
    let store = open(stores).await?;
    let stream = key.stream();
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    // The one chain-checked fold (as the command handlers use): each event is checked
    // against its predecessor's hash before it is decoded; a broken one is marked, and
    // the replay goes on so that the auditor sees every state.
    let mut fold = CheckedFold::<ApiKey>::new();
    let mut seen = 0_u64;
    'read: loop {
        let page = store.read_stream(&stream, fold.version + 1, PAGE).await?;
        if page.is_empty() {
            break;
        }
        for recorded in &page {
            if at.is_some_and(|at| recorded.recorded_at > at) {
                break 'read;
            }
            // Decoding upcasts events written at older schema versions.
            let decoded = fold.apply(recorded);
            let breaks: Vec<ChainBreak> = fold
                .breaks()
                .iter()
                .filter(|b| b.position == recorded.position)
                .cloned()
                .collect();
            for broken in &breaks {
                commands::audit::report_break(commands::audit::Reader::Audit, broken);
            }
            let (event, _) = decoded?;
            let state = &fold.state;
            seen += 1;
            if at.is_some() {
                continue;
            }
            let now = recorded.recorded_at;
            let problem = (!breaks.is_empty()).then(|| {
                breaks
                    .iter()
                    .map(|b| b.kind.to_string())
                    .collect::<Vec<_>>()
                    .join("; ")
            });
            if json {
                let mut line = serde_json::json!({
                    "position": recorded.position,
                    "stream_version": recorded.stream_version,
                    "type": event.event_type(),
                    "recorded_at": timestamp_text(&recorded.recorded_at),
                    "actor": recorded.metadata.actor,
                    "state": state_json(state, now)?,
                });
                if let (Some(problem), Some(map)) = (&problem, line.as_object_mut()) {
                    map.insert("integrity".into(), "broken".into());
                    map.insert("integrity_problem".into(), problem.clone().into());
                }
                writeln!(out, "{line}")?;
            } else if let Some(s) = state {
                if seen == 1 {
                    writeln!(
                        out,
                        "{:>8}  {:>3}  {:<17}  {:<27}  {:<36}  {:<7}  {:<20}  SCOPES",
                        "POSITION", "VER", "TYPE", "RECORDED_AT", "ACTOR", "STATUS", "NAME"
                    )?;
                }
                writeln!(
                    out,
                    "{:>8}  {:>3}  {:<17}  {:<27}  {:<36}  {:<7}  {:<20}  {}",
                    recorded.position,
                    recorded.stream_version,
                    event.event_type(),
                    timestamp_text(&recorded.recorded_at),
                    recorded.metadata.actor,
                    s.status(now).as_str(),
                    s.name.as_str(),
                    s.scopes.names().join(",")
                )?;
                if let Some(problem) = &problem {
                    writeln!(
                        out,
                        "{:>8}  ^^^ INTEGRITY BROKEN at version {}: {problem}; \
                         the state above is what the tampered stream says",
                        "", recorded.stream_version
                    )?;
                }
            }
        }
    }
    let state = fold.state.clone();
    if seen == 0 && at.is_none() {
        anyhow::bail!("no key {key}: its stream {stream} is empty");
    }
    if let Some(at) = at {
        let value = state_json(&state, at)?;
        if json {
            writeln!(out, "{value}")?;
        } else if state.is_none() {
            writeln!(out, "key {key} did not exist at {}", timestamp_text(&at))?;
        } else {
            writeln!(
                out,
                "state of key {key} at {} (after {seen} events):",
                timestamp_text(&at)
            )?;
            writeln!(out, "{}", serde_json::to_string_pretty(&value)?)?;
        }
    }
    out.flush()?;
    if let Some(first) = fold.first_break() {
        anyhow::bail!(
            "hash chain broken: the key's history was tampered with, first at {first}; \
             the key does not authenticate (401 key_integrity)"
        );
    }
    Ok(())
}

/// `keyledger audit export --org ORG [--output FILE]`: stream by stream (the
/// organisation's, then each key's lifecycle and usage streams in issue order); each
/// line carries `position`, so a warehouse can restore the global order.
async fn export(
    stores: &StoreConfig,
    org: OrgId,
    output: Option<&std::path::Path>,
) -> anyhow::Result<()> {
    let store = open(stores).await?;
    if store.stream_version(&org.stream()).await? == 0 {
        anyhow::bail!("no organisation {org}");
    }
    let streams = commands::audit::org_streams(store.as_ref(), org).await?;
    let mut out: Box<dyn Write> = match output {
        Some(path) => Box::new(std::io::BufWriter::new(
            std::fs::File::create(path)
                .with_context(|| format!("--output: cannot create {}", path.display()))?,
        )),
        None => Box::new(std::io::BufWriter::new(std::io::stdout().lock())),
    };
    let mut count = 0_u64;
    let mut chains = ChainVerifier::new();
    for stream in &streams {
        let mut from = 1;
        loop {
            let page = store.read_stream(stream, from, PAGE).await?;
            let Some(last) = page.last() else { break };
            from = last.stream_version + 1;
            for event in &page {
                let breaks = chains.check(event);
                for broken in &breaks {
                    commands::audit::report_break(commands::audit::Reader::Audit, broken);
                }
                let line = AuditEvent::of(event).with_breaks(&breaks).to_json_line();
                writeln!(out, "{line}")?;
                count += 1;
            }
        }
    }
    out.flush()?;
    eprintln!("exported {count} events from {} streams", streams.len());
    Ok(())
}

/// `keyledger audit verify [--org ORG]`.
async fn verify(stores: &StoreConfig, org: Option<OrgId>) -> anyhow::Result<()> {
    let store = open(stores).await?;
    let report = match org {
        Some(org) => commands::audit::verify_org(store.as_ref(), org).await?,
        None => commands::audit::verify_all(store.as_ref()).await?,
    };
    println!(
        "checked {} events in {} chained streams ({} written before chaining, not verifiable)",
        report.checked, report.streams, report.legacy
    );
    for stream in &report.missing_streams {
        println!("MISSING: stream {stream} was issued but holds no events (deleted)");
    }
    for broken in &report.breaks {
        println!("BROKEN: {broken}");
    }
    if let Some(first) = report.first_break() {
        anyhow::bail!("hash chain broken; first tampered event at {first}");
    }
    if let Some(stream) = report.missing_streams.first() {
        anyhow::bail!("hash chain broken; stream {stream} was deleted");
    }
    println!("OK: every hash chain is intact");
    Ok(())
}
