//! keyledger benchmarks (not tests).
//!
//! `cargo run --release -p bench -- store [--backend sqlite|postgres|all]` measures the
//! event store adapters side by side: appends of one event, batched appends of 100
//! events, and `read_all` throughput. `... -- replay [--backend ..] [--events N]
//! [--batch B]` measures audit replays (see `replay.rs`). `... -- propagation [--keys N]`
//! measures how fast a revocation on one node reaches another (see `propagation.rs`). `... -- flood`
//! floods a node with forged tokens for a known key id (see `flood.rs`). Postgres comes from `KEYLEDGER_BENCH_POSTGRES_URL`
//! (default `postgres://postgres@127.0.0.1:5432/postgres`); each run creates a fresh
//! database and drops it at the end. SQLite uses a temp file.
#![forbid(unsafe_code)]

mod flood;
mod propagation;
mod replay;

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use commands::{PostgresEventStore, SqliteEventStore};
use domain::store::{AppendRequest, EventStore, ExpectedVersion, Metadata, NewEvent};
use sqlx::{Connection, Executor};
use uuid::Uuid;

/// Every measurement stops at whichever comes first: its event count or this duration.
const TIME_BOUND: Duration = Duration::from_secs(8);
const SINGLE_APPENDS: u64 = 5_000;
const CONCURRENT_WRITERS: u64 = 8;
const BATCH: u64 = 100;
const BATCHED_EVENTS: u64 = 50_000;
const READ_EVENTS: u64 = 200_000;
const READ_PAGE: usize = 1_000;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    fn name(self) -> &'static str {
        match self {
            Backend::Sqlite => "SQLite",
            Backend::Postgres => "Postgres",
        }
    }
}

struct Row {
    backend: &'static str,
    case: &'static str,
    events: u64,
    elapsed: Duration,
}

impl Row {
    fn per_second(&self) -> f64 {
        self.events as f64 / self.elapsed.as_secs_f64().max(f64::EPSILON)
    }
}

#[tokio::main]
async fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut backends = vec![Backend::Sqlite, Backend::Postgres];
    match args.first().map(String::as_str) {
        Some("store") => {}
        Some("propagation") => return propagation::run(&args[1..]).await,
        Some("flood") => return flood::run(&args[1..]).await,
        Some("replay") => {
            let rows = replay::run(&args[1..]).await?;
            print_rows(&rows);
            return Ok(());
        }
        _ => bail!(
            "usage: bench store [--backend sqlite|postgres|all] | \
             bench replay [--backend ..] [--events N] [--batch B] | \
             bench propagation [--keys N] [--bin PATH] | \
             bench flood [--tokens N] [--concurrency C] [--bin PATH]"
        ),
    }
    let mut rest = args[1..].iter();
    while let Some(arg) = rest.next() {
        match arg.as_str() {
            "--backend" => {
                backends = match rest.next().map(String::as_str) {
                    Some("sqlite") => vec![Backend::Sqlite],
                    Some("postgres") => vec![Backend::Postgres],
                    Some("all") => vec![Backend::Sqlite, Backend::Postgres],
                    other => bail!("--backend takes sqlite, postgres or all, not {other:?}"),
                }
            }
            other => bail!("unknown argument {other:?}"),
        }
    }

    let mut rows = Vec::new();
    for backend in backends {
        eprintln!("== {}", backend.name());
        rows.extend(run_backend(backend).await?);
    }
    print_rows(&rows);
    Ok(())
}

/// The `keyledger` binary a benchmark starts: `--bin`, or the one built next to this
/// bench binary.
pub(crate) fn keyledger_binary(bin: Option<std::path::PathBuf>) -> Result<std::path::PathBuf> {
    let bin = match bin {
        Some(b) => b,
        None => std::env::current_exe()?
            .parent()
            .context("no directory for the bench binary")?
            .join("keyledger"),
    };
    if !bin.exists() {
        bail!(
            "{} not found: build it first with `cargo build --release -p api`",
            bin.display()
        );
    }
    Ok(bin)
}

fn print_rows(rows: &[Row]) {
    println!();
    println!("| backend | case | events | seconds | events/s |");
    println!("| --- | --- | ---: | ---: | ---: |");
    for row in rows {
        println!(
            "| {} | {} | {} | {:.2} | {:.0} |",
            row.backend,
            row.case,
            row.events,
            row.elapsed.as_secs_f64(),
            row.per_second()
        );
    }
}

async fn run_backend(backend: Backend) -> Result<Vec<Row>> {
    with_fresh_store(backend, |store| run_cases(backend, store)).await
}

/// Runs `work` on a fresh, migrated event store: a temp SQLite file, or a new Postgres
/// database on `KEYLEDGER_BENCH_POSTGRES_URL` that is dropped afterwards.
pub(crate) async fn with_fresh_store<F, Fut>(backend: Backend, work: F) -> Result<Vec<Row>>
where
    F: FnOnce(Arc<dyn EventStore>) -> Fut,
    Fut: std::future::Future<Output = Result<Vec<Row>>>,
{
    match backend {
        Backend::Sqlite => {
            let dir = tempfile::tempdir()?;
            let url = format!("sqlite://{}", dir.path().join("bench.db").display());
            let store = SqliteEventStore::connect(&url).await?;
            store.migrate().await?;
            work(Arc::new(store)).await
        }
        Backend::Postgres => {
            let base = std::env::var("KEYLEDGER_BENCH_POSTGRES_URL")
                .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
            let name = format!("kl_bench_{}", Uuid::now_v7().simple());
            let mut admin = sqlx::PgConnection::connect(&base)
                .await
                .context("connecting to KEYLEDGER_BENCH_POSTGRES_URL")?;
            admin
                .execute(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
                .await?;
            let server = base
                .split('?')
                .next()
                .and_then(|url| url.rsplit_once('/'))
                .map(|(server, _)| server)
                .context("the Postgres URL must name a database")?;
            let result = async {
                let store = PostgresEventStore::connect(&format!("{server}/{name}")).await?;
                store.migrate().await?;
                let rows = work(Arc::new(store.clone())).await;
                store.pool().close().await;
                rows
            }
            .await;
            let drop = format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)");
            if let Err(error) = admin.execute(sqlx::AssertSqlSafe(drop)).await {
                eprintln!("could not drop {name}: {error}");
            }
            result
        }
    }
}

/// A usage event of realistic size (~300 bytes of JSON).
fn event(n: u64) -> NewEvent {
    NewEvent {
        event_id: Uuid::now_v7(),
        event_type: "ApiCallRecorded".into(),
        schema_version: 1,
        data: serde_json::json!({
            "at": "2025-01-01T12:00:00.123456Z",
            "method": "GET",
            "route": "/organizations/{org}/work-orders",
            "status": 200,
            "latency_us": 1234 + n % 1000,
            "client_ip": "203.0.113.7",
            "request_id": format!("req-{n}"),
        }),
        metadata: Metadata {
            actor: "0190a5d4-7c1e-7000-8000-000000000001".into(),
            request_id: Some(format!("req-{n}")),
            correlation_id: Some(format!("corr-{n}")),
            causation_id: None,
            prev_hash: None,
            hash: None,
        },
    }
}

async fn run_cases(backend: Backend, store: Arc<dyn EventStore>) -> Result<Vec<Row>> {
    let name = backend.name();
    let mut rows = Vec::new();

    // 1. One event per append, one writer.
    let stream = format!("bench-single-{}", Uuid::now_v7().simple());
    let started = Instant::now();
    let mut appended = 0;
    while appended < SINGLE_APPENDS && started.elapsed() < TIME_BOUND {
        store
            .append(
                &stream,
                ExpectedVersion::Exact(appended),
                vec![event(appended)],
            )
            .await?;
        appended += 1;
    }
    rows.push(report(
        name,
        "append, 1 event per append, 1 writer",
        appended,
        started,
    ));

    // 2. One event per append, concurrent writers on their own streams.
    let started = Instant::now();
    let mut writers = Vec::new();
    for _ in 0..CONCURRENT_WRITERS {
        let store = Arc::clone(&store);
        writers.push(tokio::spawn(async move {
            let stream = format!("bench-concurrent-{}", Uuid::now_v7().simple());
            let mut appended = 0;
            while appended < SINGLE_APPENDS / CONCURRENT_WRITERS && started.elapsed() < TIME_BOUND {
                store
                    .append(
                        &stream,
                        ExpectedVersion::Exact(appended),
                        vec![event(appended)],
                    )
                    .await?;
                appended += 1;
            }
            Ok::<u64, anyhow::Error>(appended)
        }));
    }
    let mut appended = 0;
    for writer in writers {
        appended += writer.await??;
    }
    rows.push(report(
        name,
        "append, 1 event per append, 8 writers",
        appended,
        started,
    ));

    // 3. 100 events per append, one stream.
    let stream = format!("bench-batch-{}", Uuid::now_v7().simple());
    let started = Instant::now();
    let mut appended = 0;
    while appended < BATCHED_EVENTS && started.elapsed() < TIME_BOUND {
        let batch = (appended..appended + BATCH).map(event).collect();
        store
            .append(&stream, ExpectedVersion::Exact(appended), batch)
            .await?;
        appended += BATCH;
    }
    rows.push(report(
        name,
        "append, 100 events per append (1 stream)",
        appended,
        started,
    ));

    // 4. append_many of 100 streams x 1 event (the usage writer's group commit).
    let started = Instant::now();
    let mut appended = 0;
    while appended < BATCHED_EVENTS && started.elapsed() < TIME_BOUND {
        let requests = (0..BATCH)
            .map(|i| AppendRequest {
                stream: format!("apikey-usage-{}", Uuid::now_v7().simple()),
                expected: ExpectedVersion::Any,
                events: vec![event(appended + i)],
            })
            .collect();
        store.append_many(requests).await?;
        appended += BATCH;
    }
    rows.push(report(
        name,
        "append_many, 100 streams x 1 event",
        appended,
        started,
    ));

    // 5. read_all over READ_EVENTS events, in pages.
    let head = store.head_position().await?;
    let mut stored = head;
    eprintln!("{name}: filling to {READ_EVENTS} events for read_all");
    while stored < READ_EVENTS {
        let stream = format!("bench-fill-{}", Uuid::now_v7().simple());
        let batch = (0..1_000).map(event).collect();
        stored = store
            .append(&stream, ExpectedVersion::NoStream, batch)
            .await?
            .position;
    }
    let started = Instant::now();
    let mut after = 0;
    let mut read = 0;
    while read < READ_EVENTS && started.elapsed() < TIME_BOUND {
        let page = store.read_all(after, READ_PAGE).await?;
        let Some(last) = page.last() else { break };
        after = last.position;
        read += page.len() as u64;
    }
    rows.push(report(name, "read_all, pages of 1000", read, started));
    Ok(rows)
}

fn report(backend: &'static str, case: &'static str, events: u64, started: Instant) -> Row {
    let row = Row {
        backend,
        case,
        events,
        elapsed: started.elapsed(),
    };
    eprintln!(
        "{backend}: {case}: {events} events, {:.0}/s",
        row.per_second()
    );
    row
}
