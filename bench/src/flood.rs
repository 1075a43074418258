//! `bench flood [--tokens N] [--concurrency C] [--bin PATH]`: a flood of forged tokens for
//! a known key id (right checksum, wrong secret), against a real `keyledger serve` release
//! binary on SQLite, twice side by side: with the default bounds on unproven tokens, and
//! with them lifted (`KEYLEDGER_ARGON2_CONCURRENCY=512`, a failure budget nobody reaches),
//! which is how the node behaved before the bounds existed.
//!
//! For each: argon2 verifications during the flood (from `/metrics`), the flood's
//! duration, the server's RSS before and after (and its peak, `VmHWM`), and the latency of
//! a key already proven on the node, called one request after another during the flood
//! (p50, p99), beside the same before the flood.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use domain::ids::KeyId;
use domain::token::{Environment, SECRET_BYTES, Token};
use futures::StreamExt;
use serde_json::{Value, json};

use crate::propagation::{Node, percentile, start_node, wait_ready};

struct Outcome {
    case: &'static str,
    argon2: f64,
    refused_cheaply: usize,
    flood: Duration,
    rss_before: u64,
    rss_after: u64,
    rss_peak: u64,
    before: (Duration, Duration),
    during: (Duration, Duration),
    probes: usize,
    /// The proven key's answers other than 200 during the flood, by status.
    refused: std::collections::BTreeMap<String, usize>,
}

fn proc_status_mib(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix(field))
                .and_then(|v| v.split_whitespace().next())
                .and_then(|v| v.parse::<u64>().ok())
        })
        .map_or(0, |kib| kib / 1024)
}

async fn argon2_count(client: &reqwest::Client, node: &Node) -> Result<f64> {
    let text = client
        .get(format!("{}/metrics", node.address))
        .send()
        .await?
        .text()
        .await?;
    Ok(text
        .lines()
        .filter(|l| l.starts_with("keyledger_argon2_verifications_total"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum())
}

async fn call(client: &reqwest::Client, url: &str, token: &str) -> Result<(u16, String)> {
    let res = client.get(url).bearer_auth(token).send().await?;
    let status = res.status().as_u16();
    let body: Value = res.json().await.unwrap_or(Value::Null);
    Ok((status, body["code"].as_str().unwrap_or_default().to_owned()))
}

fn p50_p99(mut v: Vec<Duration>) -> (Duration, Duration) {
    v.sort();
    (percentile(&v, 50.0), percentile(&v, 99.0))
}

/// How many proven keys the probe calls in turn.
const PROBE_KEYS: usize = 16;

async fn one_case(
    bin: &PathBuf,
    case: &'static str,
    extra: &[(&str, String)],
    tokens: usize,
    concurrency: usize,
) -> Result<Outcome> {
    let dir = tempfile::tempdir()?;
    let mut env = vec![(
        "KEYLEDGER_DATABASE_URL",
        format!("sqlite://{}", dir.path().join("keyledger.db").display()),
    )];
    env.extend(extra.iter().cloned());
    let node = start_node(bin, &env)?;
    let client = reqwest::Client::new();
    wait_ready(&client, &node).await?;
    let find = |marker: &str| {
        node.startup
            .iter()
            .find_map(|l| l.split(marker).nth(1))
            .map(|s| s.trim().to_owned())
    };
    let org = find("(plan enterprise): ").context("no bootstrap organisation")?;
    let root = find("store it now): ").context("no bootstrap root key")?;
    let res = client
        .post(format!("{}/organizations/{org}/api-keys", node.address))
        .bearer_auth(&root)
        .json(&json!({"name": "attacked"}))
        .send()
        .await?;
    if res.status() != reqwest::StatusCode::CREATED {
        bail!("cannot create the attacked key: {}", res.status());
    }
    let target: Value = res.json().await?;
    let target_id: KeyId = target["id"]
        .as_str()
        .context("no key id")?
        .parse()
        .map_err(|_| anyhow::anyhow!("bad key id"))?;
    let whoami = format!("{}/whoami", node.address);
    // The proven keys the probe calls in turn: several, so that the probe stays inside
    // each key's rate limit (the enterprise plan's 500 a minute) and a 429 can only mean
    // the flood reached them.
    let mut proven = Vec::new();
    for i in 0..PROBE_KEYS {
        let res = client
            .post(format!("{}/organizations/{org}/api-keys", node.address))
            .bearer_auth(&root)
            .json(&json!({"name": format!("probe {i}")}))
            .send()
            .await?;
        if res.status() != reqwest::StatusCode::CREATED {
            bail!("cannot create a probe key: {}", res.status());
        }
        let key: Value = res.json().await?;
        let secret = key["secret"].as_str().context("no secret")?.to_owned();
        call(&client, &whoami, &secret).await?;
        proven.push(secret);
    }
    let mut before = Vec::new();
    for i in 0..200 {
        let t = Instant::now();
        call(&client, &whoami, &proven[i % proven.len()]).await?;
        before.push(t.elapsed());
    }
    let pid = node.pid();
    let rss_before = proc_status_mib(pid, "VmRSS:");
    let argon2_before = argon2_count(&client, &node).await?;

    let forged: Vec<String> = (0..tokens)
        .map(|i| {
            let mut secret = [0u8; SECRET_BYTES];
            secret[..8].copy_from_slice(&(i as u64 + 1).to_be_bytes());
            Token::from_parts(Environment::Live, target_id, &secret)
                .expose_secret()
                .to_owned()
        })
        .collect();
    let done = std::sync::atomic::AtomicBool::new(false);
    let started = Instant::now();
    let flood = async {
        let results: Vec<Result<(u16, String)>> = futures::stream::iter(forged.iter())
            .map(|t| call(&client, &whoami, t))
            .buffer_unordered(concurrency)
            .collect()
            .await;
        done.store(true, std::sync::atomic::Ordering::Release);
        (results, started.elapsed())
    };
    let probe = async {
        let mut during = Vec::new();
        let mut refused = std::collections::BTreeMap::<String, usize>::new();
        let mut turn = 0;
        while !done.load(std::sync::atomic::Ordering::Acquire) {
            turn += 1;
            let t = Instant::now();
            match call(&client, &whoami, &proven[turn % proven.len()]).await {
                Ok((200, _)) => {}
                Ok((status, code)) => *refused.entry(format!("{status} {code}")).or_default() += 1,
                Err(_) => *refused.entry("error".to_owned()).or_default() += 1,
            }
            during.push(t.elapsed());
        }
        (during, refused)
    };
    let ((results, flood_time), (during, refused)) = tokio::join!(flood, probe);
    let refused_cheaply = results.iter().filter(|r| matches!(r, Ok((429, _)))).count();
    if results.iter().any(|r| matches!(r, Ok((200, _)))) {
        bail!("a forged token was accepted");
    }
    let probes = during.len();
    Ok(Outcome {
        case,
        argon2: argon2_count(&client, &node).await? - argon2_before,
        refused_cheaply,
        flood: flood_time,
        rss_before,
        rss_after: proc_status_mib(pid, "VmRSS:"),
        rss_peak: proc_status_mib(pid, "VmHWM:"),
        before: p50_p99(before),
        during: p50_p99(during),
        probes,
        refused,
    })
}

/// Runs both cases and prints a Markdown table.
pub async fn run(args: &[String]) -> Result<()> {
    let (mut tokens, mut concurrency, mut bin) = (500usize, 64usize, None::<PathBuf>);
    let mut rest = args.iter();
    while let Some(arg) = rest.next() {
        let mut number = |what: &str| -> Result<usize> {
            rest.next()
                .and_then(|v| v.parse().ok())
                .with_context(|| format!("{what} takes a number"))
        };
        match arg.as_str() {
            "--tokens" => tokens = number("--tokens")?,
            "--concurrency" => concurrency = number("--concurrency")?,
            "--bin" => bin = rest.next().map(PathBuf::from),
            other => bail!("unknown argument {other:?}"),
        }
    }
    let bin = crate::keyledger_binary(bin)?;
    let unbounded = [
        ("KEYLEDGER_ARGON2_CONCURRENCY", "512".to_owned()),
        ("KEYLEDGER_AUTH_FAILURE_BUDGET", u32::MAX.to_string()),
    ];
    let rows = [
        one_case(&bin, "bounds on (defaults)", &[], tokens, concurrency).await?,
        one_case(&bin, "bounds lifted", &unbounded, tokens, concurrency).await?,
    ];
    println!("{tokens} forged tokens for one known key id at {concurrency} concurrency (SQLite)\n");
    println!(
        "| case | argon2 runs | refused without argon2 (429) | flood took | RSS before | RSS after | RSS peak | proven key p50 / p99 before | during the flood ({} calls) | proven key not 200 |",
        rows[0].probes
    );
    println!("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |");
    for r in &rows {
        println!(
            "| {} | {} | {} | {:.2} s | {} MiB | {} MiB | {} MiB | {:.2} / {:.2} ms | {:.2} / {:.2} ms ({} calls) | {} |",
            r.case,
            r.argon2,
            r.refused_cheaply,
            r.flood.as_secs_f64(),
            r.rss_before,
            r.rss_after,
            r.rss_peak,
            r.before.0.as_secs_f64() * 1e3,
            r.before.1.as_secs_f64() * 1e3,
            r.during.0.as_secs_f64() * 1e3,
            r.during.1.as_secs_f64() * 1e3,
            r.probes,
            if r.refused.is_empty() {
                "none".to_owned()
            } else {
                r.refused
                    .iter()
                    .map(|(s, n)| format!("{n} x {s}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            },
        );
    }
    Ok(())
}
