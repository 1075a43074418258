//! `spawn_app()`: the real binary on port 0 with a fresh database of its own
//! ([`test_support::TestDb`]); [`client`] is the typed client over its HTTP API.

mod client;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub use client::{Api, Reply};
pub use test_support::{Backend, TestDb};

/// A running `keyledger serve`, killed on drop.
pub struct TestApp {
    pub address: String,
    pub client: reqwest::Client,
    pub database_url: String,
    /// Every line the process wrote to stdout and stderr so far.
    pub output: Arc<Mutex<Vec<String>>>,
    /// Every response body a typed call ([`Api`]) received, in order.
    replies: Mutex<Vec<String>>,
    child: Child,
    /// The database, when it is this app's own: dropped after the process is killed.
    _db: Option<TestDb>,
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
        // The process first: then `db` (the database) goes, after every connection to it.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub async fn spawn_app(backend: Backend) -> TestApp {
    spawn_app_with(backend, &[]).await
}

/// Starts the binary with extra environment variables, on a fresh migrated database.
pub async fn spawn_app_with(backend: Backend, env: &[(&str, &str)]) -> TestApp {
    spawn_app_on(TestDb::new(backend).await, env)
}

/// Starts the binary on `db` (e.g. [`TestDb::empty`] for a first start), which goes with
/// the app.
pub fn spawn_app_on(db: TestDb, env: &[(&str, &str)]) -> TestApp {
    start(db.url().to_owned(), Some(db), env)
}

/// Starts another node on an existing database (no cleanup of its own).
pub fn spawn_node(database_url: &str, env: &[(&str, &str)]) -> TestApp {
    start(database_url.to_owned(), None, env)
}

fn start(database_url: String, db: Option<TestDb>, env: &[(&str, &str)]) -> TestApp {
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
        replies: Mutex::new(Vec::new()),
        child,
        _db: db,
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
        self.api(org, root).new_key(body).await
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

    /// Runs the CLI against this app's database and returns its stdout (success asserted).
    pub fn cli(&self, args: &[&str]) -> String {
        let (ok, stdout, stderr) = self.cli_status(args);
        assert!(ok, "keyledger {args:?} failed:\n{stderr}");
        stdout
    }

    /// Runs the CLI against this app's database: (success, stdout, stderr), whatever the
    /// exit code. Its output joins the app's.
    pub fn cli_status(&self, args: &[&str]) -> (bool, String, String) {
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
        (out.status.success(), stdout, stderr)
    }

    /// Another organisation, made by the CLI (`orgs create --json`): (id, root key, root
    /// key id).
    pub fn cli_org(&self, name: &str, plan: &str) -> (String, String, String) {
        let out = self.cli(&["orgs", "create", "--name", name, "--plan", plan, "--json"]);
        let org: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
        let field = |f: &str| org[f].as_str().unwrap().to_owned();
        (field("org_id"), field("root_key"), field("root_key_id"))
    }

    /// Runs one SQL statement on this app's database, behind its back; the rows changed.
    pub async fn sql(&self, sql: &str) -> u64 {
        test_support::sql::execute(&self.database_url, sql).await
    }

    /// How many events the stream `apikey-usage-<key_id>` holds (straight from the store).
    pub async fn usage_events(&self, key_id: &str) -> i64 {
        let sql = "SELECT count(*) FROM events WHERE stream = $1";
        let stream = format!("apikey-usage-{key_id}");
        test_support::sql::scalar(&self.database_url, sql, &stream).await
    }

    /// Every value in every row of every table of this app's database, as text.
    pub async fn dump_database(&self) -> String {
        test_support::sql::dump(&self.database_url).await
    }

    /// Every response body a typed call ([`Api`]) to this app received so far.
    pub fn replies(&self) -> Vec<String> {
        self.replies.lock().unwrap().clone()
    }
}
