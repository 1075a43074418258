//! `spawn_app()`: the real binary on port 0 with a fresh database.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Which back end a test app runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// A running `keyledger serve`, killed on drop.
pub struct TestApp {
    pub address: String,
    pub client: reqwest::Client,
    pub database_url: String,
    /// Every line the process wrote to stdout and stderr so far.
    pub output: Arc<Mutex<Vec<String>>>,
    child: Child,
    _dir: Option<tempfile::TempDir>,
    pg_db: Option<(String, String)>,
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.address, path)
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The server's resident memory in MiB (from `/proc`).
    pub fn rss_mib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap();
        let kib: u64 = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap();
        kib / 1024
    }

    /// The body of `GET /metrics`.
    pub async fn metrics_text(&self) -> String {
        self.client
            .get(self.url("/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    /// A counter's value in `/metrics` (the sum over its series matching `filter`).
    pub async fn metric(&self, name: &str, filter: &str) -> f64 {
        let text = self.metrics_text().await;
        text.lines()
            .filter(|l| l.starts_with(name) && l.contains(filter))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }

    pub fn output_text(&self) -> String {
        self.output.lock().unwrap().join("\n")
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some((admin_url, db)) = self.pg_db.take() {
            // Best effort: a leftover test database is harmless, a hang is not.
            let _ = std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                rt.block_on(async move {
                    if let Ok(pool) = sqlx::PgPool::connect(&admin_url).await {
                        let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
                            "DROP DATABASE IF EXISTS {db} WITH (FORCE)"
                        )))
                        .execute(&pool)
                        .await;
                    }
                });
            })
            .join();
        }
    }
}

/// The Postgres server for tests, from `KEYLEDGER_TEST_POSTGRES_URL`; `None` when unset
/// (the test is then skipped with a note; CI always sets it, and an unreachable server
/// fails the test).
pub fn postgres_url() -> Option<String> {
    match std::env::var("KEYLEDGER_TEST_POSTGRES_URL") {
        Ok(url) if !url.is_empty() => Some(url),
        _ => {
            eprintln!("KEYLEDGER_TEST_POSTGRES_URL is unset: skipping a Postgres test");
            None
        }
    }
}

/// Creates a fresh database on the test server and returns its URL and name.
pub async fn fresh_postgres_database(admin_url: &str) -> (String, String) {
    let pool = sqlx::PgPool::connect(admin_url)
        .await
        .unwrap_or_else(|e| panic!("KEYLEDGER_TEST_POSTGRES_URL is set but unreachable: {e}"));
    let name = format!("kl_bb_{}", uuid::Uuid::now_v7().simple());
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&pool)
        .await
        .unwrap();
    let base = admin_url
        .rsplit_once('/')
        .map(|(b, _)| b)
        .unwrap_or(admin_url);
    (format!("{base}/{name}"), name)
}

pub async fn spawn_app(backend: Backend) -> TestApp {
    spawn_app_with(backend, &[]).await
}

/// Starts the binary with extra environment variables.
pub async fn spawn_app_with(backend: Backend, env: &[(&str, &str)]) -> TestApp {
    let (database_url, dir, pg_db) = match backend {
        Backend::Sqlite => {
            let dir = tempfile::tempdir().unwrap();
            let url = format!("sqlite://{}", dir.path().join("keyledger.db").display());
            (url, Some(dir), None)
        }
        Backend::Postgres => {
            let admin = postgres_url().expect("Postgres tests need KEYLEDGER_TEST_POSTGRES_URL");
            let (url, name) = fresh_postgres_database(&admin).await;
            (url, None, Some((admin, name)))
        }
    };
    start(database_url, dir, pg_db, env)
}

/// Starts another node on an existing database (no cleanup of its own).
pub fn spawn_node(database_url: &str, env: &[(&str, &str)]) -> TestApp {
    start(database_url.to_owned(), None, None, env)
}

fn start(
    database_url: String,
    dir: Option<tempfile::TempDir>,
    pg_db: Option<(String, String)>,
    env: &[(&str, &str)],
) -> TestApp {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_keyledger-blackbox"));
    cmd.arg("serve")
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("KEYLEDGER_LISTEN", "127.0.0.1:0")
        .env("KEYLEDGER_DATABASE_URL", &database_url)
        .env("RUST_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("start keyledger");
    let output = Arc::new(Mutex::new(Vec::new()));
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    let stdout = child.stdout.take().unwrap();
    let stderr = child.stderr.take().unwrap();
    for (stream, tx) in [
        (Box::new(stdout) as Box<dyn std::io::Read + Send>, Some(tx)),
        (Box::new(stderr) as Box<dyn std::io::Read + Send>, None),
    ] {
        let output = output.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stream).lines().map_while(Result::ok) {
                if std::env::var("TEST_LOG").is_ok() {
                    eprintln!("[keyledger] {line}");
                }
                if let Some(tx) = &tx {
                    let _ = tx.send(line.clone());
                }
                output.lock().unwrap().push(line);
            }
        });
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    let address = loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) => {
                if let Some(addr) = line.strip_prefix("listening on ") {
                    break addr.trim().to_owned();
                }
            }
            Err(_) => {
                let _ = child.kill();
                panic!(
                    "keyledger did not start; output:\n{}",
                    output.lock().unwrap().join("\n")
                );
            }
        }
    };
    TestApp {
        address,
        client: reqwest::Client::new(),
        database_url,
        output,
        child,
        _dir: dir,
        pg_db,
    }
}

impl TestApp {
    /// Creates a key through the API (201 asserted) and returns the response body.
    pub async fn create_key(
        &self,
        org: &str,
        root: &str,
        body: serde_json::Value,
    ) -> serde_json::Value {
        let res = self
            .client
            .post(self.url(&format!("/organizations/{org}/api-keys")))
            .bearer_auth(root)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), reqwest::StatusCode::CREATED);
        res.json().await.unwrap()
    }

    /// Kills the process with SIGKILL (no shutdown, no drain) and waits for it; the
    /// database stays (it goes with this `TestApp`).
    pub fn kill_9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Sends SIGTERM (a graceful shutdown) and waits up to `timeout` for the process to
    /// exit; returns whether it exited successfully.
    pub fn terminate(&mut self, timeout: Duration) -> bool {
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        let deadline = Instant::now() + timeout;
        loop {
            match self.child.try_wait() {
                Ok(Some(status)) => return status.success(),
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(20));
                }
                _ => return false,
            }
        }
    }

    /// The root key and organisation printed by the bootstrap of an empty store.
    pub fn bootstrap(&self) -> (String, String) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let text = self.output_text();
            let org = text
                .lines()
                .find_map(|l| l.split("(plan enterprise): ").nth(1))
                .map(|s| s.trim().to_owned());
            let key = text
                .lines()
                .find_map(|l| l.split("store it now): ").nth(1))
                .map(|s| s.trim().to_owned());
            if let (Some(org), Some(key)) = (org, key) {
                return (org, key);
            }
            assert!(Instant::now() < deadline, "no bootstrap output:\n{text}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Runs the CLI against this app's database and returns its stdout.
    pub fn cli(&self, args: &[&str]) -> String {
        let out = Command::new(env!("CARGO_BIN_EXE_keyledger-blackbox"))
            .args(args)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("KEYLEDGER_DATABASE_URL", &self.database_url)
            .env("USER", "tester")
            .env("RUST_LOG", "warn")
            .output()
            .expect("run the CLI");
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        self.output
            .lock()
            .unwrap()
            .extend(stdout.lines().chain(stderr.lines()).map(str::to_owned));
        assert!(out.status.success(), "keyledger {args:?} failed:\n{stderr}");
        stdout
    }

    /// Every value in every row of every table of this app's database, as text.
    pub async fn dump_database(&self) -> String {
        use sqlx::{Column, Row};
        let mut all = String::new();
        if self.database_url.starts_with("sqlite:") {
            let pool = sqlx::SqlitePool::connect(&self.database_url).await.unwrap();
            let tables: Vec<String> =
                sqlx::query_scalar("SELECT name FROM sqlite_master WHERE type = 'table'")
                    .fetch_all(&pool)
                    .await
                    .unwrap();
            for t in tables {
                let rows = sqlx::query(sqlx::AssertSqlSafe(format!("SELECT * FROM \"{t}\"")))
                    .fetch_all(&pool)
                    .await
                    .unwrap();
                for row in rows {
                    all.push_str(&t);
                    all.push(':');
                    for (i, col) in row.columns().iter().enumerate() {
                        let text = row
                            .try_get::<Option<String>, _>(i)
                            .map(|v| v.unwrap_or_default())
                            .or_else(|_| row.try_get::<Option<i64>, _>(i).map(|v| format!("{v:?}")))
                            .or_else(|_| row.try_get::<Option<f64>, _>(i).map(|v| format!("{v:?}")))
                            .or_else(|_| {
                                row.try_get::<Option<Vec<u8>>, _>(i).map(|v| {
                                    String::from_utf8_lossy(&v.unwrap_or_default()).into_owned()
                                })
                            })
                            .unwrap_or_default();
                        all.push_str(&format!(" {}={text}", col.name()));
                    }
                    all.push('\n');
                }
            }
        } else {
            let pool = sqlx::PgPool::connect(&self.database_url).await.unwrap();
            let tables: Vec<String> = sqlx::query_scalar(
                "SELECT table_name::text FROM information_schema.tables WHERE table_schema = 'public'",
            )
            .fetch_all(&pool)
            .await
            .unwrap();
            for t in tables {
                let rows: Vec<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
                    "SELECT row_to_json(t)::text FROM \"{t}\" t"
                )))
                .fetch_all(&pool)
                .await
                .unwrap();
                for r in rows {
                    all.push_str(&format!("{t}: {r}\n"));
                }
            }
        }
        all
    }
}
