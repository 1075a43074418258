//! `bench propagation [--keys N] [--bin PATH]`: how fast a revocation reaches another
//! node. Starts two real `keyledger serve` release binaries (build them first with
//! `cargo build --release -p api`) on one fresh Postgres database and the real NATS, then
//! for each of N keys (default 200): creates it on node A, uses it once on node B (so B
//! holds it in its cache, argon2 done), revokes it on A, and polls `GET /whoami` on B
//! back to back until it answers 401. The propagation time is from the moment A's revoke
//! response is received to the moment B's first 401 is received.
//!
//! Postgres: `KEYLEDGER_BENCH_POSTGRES_URL` (default
//! `postgres://postgres@127.0.0.1:5432/postgres`); NATS: `KEYLEDGER_BENCH_NATS_URL`, else
//! `KEYLEDGER_TEST_NATS_URL`, else `nats://127.0.0.1:4222`. The nodes record usage
//! asynchronously (`KEYLEDGER_USAGE_DURABILITY=async`), so that B's polls, which are
//! authenticated calls, do not each wait for a usage commit and blur the measurement.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};
use sqlx::{Connection, Executor};
use uuid::Uuid;

/// A running node, killed on drop.
pub(crate) struct Node {
    child: Child,
    pub(crate) address: String,
    /// What it printed before its address (the bootstrap lines).
    pub(crate) startup: Vec<String>,
}

impl Node {
    /// The node's process id.
    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub(crate) fn start_node(bin: &PathBuf, env: &[(&str, String)]) -> Result<Node> {
    let mut cmd = Command::new(bin);
    cmd.arg("serve")
        .env("KEYLEDGER_LISTEN", "127.0.0.1:0")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd
        .spawn()
        .with_context(|| format!("cannot start {}", bin.display()))?;
    let stdout = child.stdout.take().context("no stdout")?;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        // Keeps reading to the end, so the node never writes into a closed pipe.
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut lines = Vec::new();
    let address = loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = rx
            .recv_timeout(left)
            .context("the node did not print its address in time")?;
        if let Some(a) = line.strip_prefix("listening on ") {
            break a.trim().to_owned();
        }
        lines.push(line);
    };
    Ok(Node {
        child,
        address,
        startup: lines,
    })
}

pub(crate) async fn wait_ready(client: &reqwest::Client, node: &Node) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(r) = client.get(format!("{}/readyz", node.address)).send().await
            && r.status() == reqwest::StatusCode::OK
        {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("node {} never became ready", node.address);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

pub(crate) fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// Runs the benchmark and prints a Markdown table.
pub async fn run(args: &[String]) -> Result<()> {
    let mut keys = 200usize;
    let mut bin: Option<PathBuf> = None;
    let mut rest = args.iter();
    while let Some(arg) = rest.next() {
        match arg.as_str() {
            "--keys" => {
                keys = rest
                    .next()
                    .and_then(|v| v.parse().ok())
                    .context("--keys takes a number")?;
            }
            "--bin" => bin = rest.next().map(PathBuf::from),
            other => bail!("unknown argument {other:?}"),
        }
    }
    let bin = crate::keyledger_binary(bin)?;
    let admin = std::env::var("KEYLEDGER_BENCH_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
    let nats = std::env::var("KEYLEDGER_BENCH_NATS_URL")
        .or_else(|_| std::env::var("KEYLEDGER_TEST_NATS_URL"))
        .unwrap_or_else(|_| "nats://127.0.0.1:4222".into());

    let db = format!("kl_bench_{}", Uuid::now_v7().simple());
    let mut conn = sqlx::PgConnection::connect(&admin)
        .await
        .context("KEYLEDGER_BENCH_POSTGRES_URL: cannot connect")?;
    conn.execute(sqlx::AssertSqlSafe(format!("CREATE DATABASE {db}")))
        .await?;
    let base = admin.rsplit_once('/').map(|(b, _)| b).unwrap_or(&admin);
    let url = format!("{base}/{db}");
    let result = measure(&bin, &url, &nats, keys).await;
    let _ = conn
        .execute(sqlx::AssertSqlSafe(format!(
            "DROP DATABASE IF EXISTS {db} WITH (FORCE)"
        )))
        .await;
    result
}

async fn measure(bin: &PathBuf, url: &str, nats: &str, keys: usize) -> Result<()> {
    let env = vec![
        ("KEYLEDGER_DATABASE_URL", url.to_owned()),
        ("KEYLEDGER_NATS_URL", nats.to_owned()),
        (
            "KEYLEDGER_NATS_SUBJECT_PREFIX",
            format!("klbench_{}", Uuid::now_v7().simple()),
        ),
        ("KEYLEDGER_USAGE_DURABILITY", "async".to_owned()),
    ];
    let a = start_node(bin, &env)?;
    let b = start_node(bin, &env)?;
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(4)
        .build()?;
    wait_ready(&client, &a).await?;
    wait_ready(&client, &b).await?;
    let (org, root) = {
        let mut org = None;
        let mut root = None;
        for line in &a.startup {
            if let Some(o) = line.split("(plan enterprise): ").nth(1) {
                org = Some(o.trim().to_owned());
            }
            if let Some(k) = line.split("store it now): ").nth(1) {
                root = Some(k.trim().to_owned());
            }
        }
        match (org, root) {
            (Some(o), Some(r)) => (o, r),
            _ => bail!("node A printed no bootstrap root key"),
        }
    };
    let keys_url = format!("{}/organizations/{org}/api-keys", a.address);
    let whoami_b = format!("{}/whoami", b.address);

    // A key may spend its minute's allowance (500 on enterprise) in a burst: a fresh
    // admin key for every 200 keys keeps the admin calls under it.
    let mut admin = root.clone();
    let mut samples = Vec::with_capacity(keys);
    let mut first_poll_401 = 0usize;
    let mut polls = 0usize;
    for i in 0..keys {
        if i > 0 && i % 200 == 0 {
            let r: Value = client
                .post(&keys_url)
                .bearer_auth(&root)
                .json(&json!({"name": format!("bench admin {i}"), "scopes": ["api-keys:read", "api-keys:create", "api-keys:revoke", "assets:read"]}))
                .send()
                .await?
                .error_for_status()?
                .json()
                .await?;
            admin = r["secret"].as_str().context("no secret")?.to_owned();
        }
        let created: Value = client
            .post(&keys_url)
            .bearer_auth(&admin)
            .json(&json!({"name": format!("bench {i}"), "scopes": ["assets:read"]}))
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        let id = created["id"].as_str().context("no id")?.to_owned();
        let secret = created["secret"].as_str().context("no secret")?.to_owned();
        let warm = client.get(&whoami_b).bearer_auth(&secret).send().await?;
        if warm.status() != reqwest::StatusCode::OK {
            bail!("key {i} does not work on B: {}", warm.status());
        }
        client
            .post(format!("{keys_url}/{id}/revoke"))
            .bearer_auth(&admin)
            .json(&json!({}))
            .send()
            .await?
            .error_for_status()?;
        let revoked = Instant::now();
        let mut n = 0usize;
        loop {
            n += 1;
            let status = client
                .get(&whoami_b)
                .bearer_auth(&secret)
                .send()
                .await?
                .status();
            if status == reqwest::StatusCode::UNAUTHORIZED {
                break;
            }
            if revoked.elapsed() > Duration::from_secs(60) {
                bail!("key {i} still works on B a minute after its revocation");
            }
        }
        samples.push(revoked.elapsed());
        polls += n;
        if n == 1 {
            first_poll_401 += 1;
        }
    }
    samples.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!();
    println!(
        "| keys | p50 ms | p90 ms | p99 ms | max ms | 401 on B's first poll | polls per key |"
    );
    println!("| ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
    println!(
        "| {} | {:.2} | {:.2} | {:.2} | {:.2} | {} of {} | {:.2} |",
        samples.len(),
        ms(percentile(&samples, 50.0)),
        ms(percentile(&samples, 90.0)),
        ms(percentile(&samples, 99.0)),
        ms(samples.last().copied().unwrap_or_default()),
        first_poll_401,
        samples.len(),
        polls as f64 / samples.len().max(1) as f64
    );
    Ok(())
}
