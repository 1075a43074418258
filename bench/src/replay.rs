//! `bench replay`: how fast an auditor's replay reads and folds events.
//!
//! Builds one key with `--events` usage events (default 1,000,000, appended in batches of
//! `--batch`, default 5,000, within a time bound) beside a few hundred ordinary keys,
//! then measures, in events per second:
//!
//! 1. replay one key: `read_stream` of its usage stream in pages, decode every event
//!    (through the upcaster) and fold it into counters, as `GET .../events?include=usage`
//!    and the usage projection do;
//! 2. replay the whole store: `read_all` in pages, decode each event by stream kind and
//!    fold it (key states through `apikey::evolve`, usage counters);
//! 3. verify the whole store's hash chains (`audit::verify_all`, what `keyledger audit
//!    verify` runs).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use chrono::Utc;
use domain::apikey;
use domain::events::{ApiCallRecorded, ApiKeyEvent, KeyCreated, SecretHash, UsageEvent};
use domain::ids::{KeyId, OrgId};
use domain::scope::Scope;
use domain::store::{AppendRequest, EventStore, ExpectedVersion, Metadata, NewEvent};
use domain::token::Environment;
use domain::values::{AllowedIps, KeyName};
use uuid::Uuid;

use crate::{Backend, Row, report, with_fresh_store};

/// The most time spent appending the big key's events; the run measures what it has then.
const BUILD_BOUND: Duration = Duration::from_secs(240);
/// Keys besides the big one, each with a `KeyCreated` (hash-chained lifecycle streams).
const OTHER_KEYS: u64 = 500;
/// Events per read.
const PAGE: usize = 1_000;

struct Options {
    backends: Vec<Backend>,
    events: u64,
    batch: u64,
}

fn parse(args: &[String]) -> Result<Options> {
    let mut options = Options {
        backends: vec![Backend::Sqlite, Backend::Postgres],
        events: 1_000_000,
        batch: 5_000,
    };
    let mut rest = args.iter();
    while let Some(arg) = rest.next() {
        let mut value = || rest.next().context("a flag without its value");
        match arg.as_str() {
            "--backend" => {
                options.backends = match value()?.as_str() {
                    "sqlite" => vec![Backend::Sqlite],
                    "postgres" => vec![Backend::Postgres],
                    "all" => vec![Backend::Sqlite, Backend::Postgres],
                    other => bail!("--backend takes sqlite, postgres or all, not {other:?}"),
                }
            }
            "--events" => options.events = value()?.parse().context("--events")?,
            "--batch" => options.batch = value()?.parse::<u64>().context("--batch")?.max(1),
            other => bail!("unknown argument {other:?}"),
        }
    }
    Ok(options)
}

/// `bench replay [--backend sqlite|postgres|all] [--events N] [--batch B]`.
pub async fn run(args: &[String]) -> Result<Vec<Row>> {
    let options = parse(args)?;
    let mut rows = Vec::new();
    for backend in options.backends.clone() {
        eprintln!("== {} (replay)", backend.name());
        rows.extend(with_store(backend, &options).await?);
    }
    Ok(rows)
}

async fn with_store(backend: Backend, options: &Options) -> Result<Vec<Row>> {
    with_fresh_store(backend, |store| cases(backend, store, options)).await
}

fn metadata(actor: &str) -> Metadata {
    Metadata {
        actor: actor.to_owned(),
        request_id: Some(Uuid::now_v7().to_string()),
        ..Metadata::default()
    }
}

fn key_created(key: KeyId, org: OrgId) -> Result<ApiKeyEvent> {
    Ok(KeyCreated {
        key_id: key,
        org_id: org,
        name: KeyName::parse("bench")?,
        environment: Environment::Live,
        scopes: Scope::data_scopes(),
        allowed_ips: AllowedIps::any(),
        expires_at: None,
        rate_limit_per_minute: None,
        // Not a real hash: nothing verifies it here.
        secret_hash: SecretHash::new("$argon2id$v=19$m=19456,t=2,p=1$YmVuY2g$YmVuY2g"),
        prefix: "kl_live_benchkey".into(),
        rotated_from: None,
        created_at: Utc::now(),
    }
    .into())
}

fn call(org: OrgId, n: u64) -> UsageEvent {
    ApiCallRecorded {
        org_id: org,
        at: Utc::now(),
        method: "GET".into(),
        route: "/organizations/{org}/work-orders".into(),
        status: if n.is_multiple_of(50) { 429 } else { 200 },
        latency_us: 1_000 + n % 1_000,
        client_ip: Some(std::net::IpAddr::from([203, 0, 113, 7])),
        request_id: Some(format!("req-{n}")),
    }
    .into()
}

#[derive(Default)]
struct Counters {
    calls: u64,
    successful: u64,
    rate_limited: u64,
    latency_us: u64,
}

impl Counters {
    fn add(&mut self, event: &UsageEvent) {
        let UsageEvent::ApiCallRecorded(call) = event;
        self.calls += 1;
        self.latency_us += call.latency_us;
        match call.outcome() {
            domain::events::CallOutcome::Success => self.successful += 1,
            domain::events::CallOutcome::RateLimited => self.rate_limited += 1,
            _ => {}
        }
    }
}

async fn cases(
    backend: Backend,
    store: Arc<dyn EventStore>,
    options: &Options,
) -> Result<Vec<Row>> {
    let name = backend.name();
    let org = OrgId::new_v7();
    let actor = "cli:bench".to_owned();

    // Build: ordinary keys (chained lifecycle streams), then the big key's usage.
    let mut requests = Vec::new();
    for _ in 0..OTHER_KEYS {
        let key = KeyId::new_v7();
        requests.push(AppendRequest {
            stream: key.stream(),
            expected: ExpectedVersion::NoStream,
            events: vec![key_created(key, org)?.to_new_event(metadata(&actor))],
        });
    }
    store.append_many(requests).await?;
    let big = KeyId::new_v7();
    store
        .append(
            &big.stream(),
            ExpectedVersion::NoStream,
            vec![key_created(big, org)?.to_new_event(metadata(&actor))],
        )
        .await?;
    let usage_stream = big.usage_stream();
    let started = Instant::now();
    let mut appended = 0;
    let mut last_note = Instant::now();
    while appended < options.events && started.elapsed() < BUILD_BOUND {
        let count = options.batch.min(options.events - appended);
        let batch: Vec<NewEvent> = (appended..appended + count)
            .map(|n| call(org, n).to_new_event(metadata(&big.to_string())))
            .collect();
        store
            .append(&usage_stream, ExpectedVersion::Exact(appended), batch)
            .await?;
        appended += count;
        if last_note.elapsed() > Duration::from_secs(10) {
            eprintln!("{name}: {appended} usage events appended");
            last_note = Instant::now();
        }
    }
    if appended < options.events {
        eprintln!(
            "{name}: stopped building after {:.0} s with {appended} of {} usage events",
            started.elapsed().as_secs_f64(),
            options.events
        );
    }
    let mut rows = vec![report(
        name,
        "build: append usage, batches of --batch (1 stream)",
        appended,
        started,
    )];

    // 1. Replay one key: its usage stream, decoded and folded.
    let started = Instant::now();
    let mut counters = Counters::default();
    let mut from = 1;
    loop {
        let page = store.read_stream(&usage_stream, from, PAGE).await?;
        let Some(last) = page.last() else { break };
        from = last.stream_version + 1;
        for recorded in &page {
            counters.add(&UsageEvent::from_recorded(recorded)?);
        }
    }
    if counters.calls != appended {
        bail!("replayed {} of {appended} events", counters.calls);
    }
    rows.push(report(
        name,
        "replay one key (read_stream pages of 1000, decode, fold)",
        counters.calls,
        started,
    ));

    // 2. Replay the whole store: every stream kind, decoded and folded.
    let started = Instant::now();
    let mut keys: HashMap<String, Option<apikey::State>> = HashMap::new();
    let mut usage: HashMap<String, Counters> = HashMap::new();
    let mut read = 0_u64;
    let mut after = 0;
    loop {
        let page = store.read_all(after, PAGE).await?;
        let Some(last) = page.last() else { break };
        after = last.position;
        for recorded in &page {
            read += 1;
            if recorded
                .stream
                .starts_with(domain::ids::APIKEY_USAGE_STREAM_PREFIX)
            {
                let event = UsageEvent::from_recorded(recorded)?;
                match usage.get_mut(recorded.stream.as_str()) {
                    Some(counters) => counters.add(&event),
                    None => {
                        let mut counters = Counters::default();
                        counters.add(&event);
                        usage.insert(recorded.stream.clone(), counters);
                    }
                }
            } else if recorded
                .stream
                .starts_with(domain::ids::APIKEY_STREAM_PREFIX)
            {
                let event = ApiKeyEvent::from_recorded(recorded)?;
                let state = keys.remove(&recorded.stream).flatten();
                keys.insert(recorded.stream.clone(), apikey::evolve(state, &event));
            }
        }
    }
    rows.push(report(
        name,
        "replay whole store (read_all pages of 1000, decode, fold)",
        read,
        started,
    ));
    eprintln!(
        "{name}: {} keys, {} usage streams, {} calls ({} ok, {} rate-limited, mean latency {} us)",
        keys.len(),
        usage.len(),
        counters.calls,
        counters.successful,
        counters.rate_limited,
        counters.latency_us / counters.calls.max(1)
    );

    // 3. Verify every hash chain (reads everything; hashes the lifecycle events).
    let started = Instant::now();
    let verified = commands::audit::verify_all(store.as_ref()).await?;
    if !verified.is_intact() {
        bail!(
            "the bench store's chains are broken: {:?}",
            verified.first_break()
        );
    }
    rows.push(report(
        name,
        "audit verify whole store (read_all, hash lifecycle events)",
        read,
        started,
    ));
    Ok(rows)
}
