//! Many nodes: two `keyledger serve` processes on one Postgres database and one NATS.
//! Keys work on every node at once; a revocation or a scope narrowing on one node stops
//! the key on the other within milliseconds (NATS), within the TTL when NATS is gone; a
//! change made by the CLI reaches the nodes through the relay; when the node leading the
//! projections dies, the other goes on.
//!
//! Needs `KEYLEDGER_TEST_POSTGRES_URL` and `KEYLEDGER_TEST_NATS_URL` (skipped with a note
//! when either is unset). Each test uses its own database and its own NATS subject prefix,
//! so tests running side by side never hear each other; the test that stops NATS starts a
//! `nats-server` of its own and stops only that one.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{Api, Backend, TestApp, TestDb, spawn_node};

/// The shared NATS's URL when Postgres and NATS are both configured; `None` (skip the
/// test, with a note) otherwise.
pub(crate) fn configured() -> Option<String> {
    if Backend::Postgres.skipped() {
        return None;
    }
    match std::env::var("KEYLEDGER_TEST_NATS_URL") {
        Ok(url) if !url.is_empty() => Some(url),
        _ => {
            eprintln!("KEYLEDGER_TEST_NATS_URL is unset: skipping a cluster test");
            None
        }
    }
}

/// Nodes sharing one fresh database (dropped with the cluster) and one subject prefix.
pub(crate) struct Cluster {
    nodes: Vec<Option<TestApp>>,
    env: Vec<(String, String)>,
    pub(crate) org: String,
    pub(crate) root: String,
    // Last: the database goes after the nodes.
    db: TestDb,
}

impl Cluster {
    /// Starts `n` nodes (the first bootstraps) and waits until each reports ready.
    pub(crate) async fn start(n: usize, nats: &str, extra: &[(&str, &str)]) -> Cluster {
        let db = TestDb::new(Backend::Postgres).await;
        let prefix = format!("kltest_{}", uuid::Uuid::now_v7().simple());
        let mut env = vec![
            ("KEYLEDGER_NATS_URL".to_owned(), nats.to_owned()),
            ("KEYLEDGER_NATS_SUBJECT_PREFIX".to_owned(), prefix),
        ];
        env.extend(
            extra
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
        );
        let mut cluster = Cluster {
            nodes: Vec::new(),
            env,
            org: String::new(),
            root: String::new(),
            db,
        };
        for _ in 0..n {
            cluster.add_node().await;
        }
        let (org, root) = cluster.node(0).bootstrap();
        cluster.org = org;
        cluster.root = root;
        cluster
    }

    async fn add_node(&mut self) -> usize {
        let env: Vec<(&str, &str)> = self
            .env
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let node = spawn_node(self.db.url(), &env);
        wait_ready(&node).await;
        self.nodes.push(Some(node));
        self.nodes.len() - 1
    }

    pub(crate) fn node(&self, i: usize) -> &TestApp {
        self.nodes[i].as_ref().expect("node was killed")
    }

    /// Kills a node's process (its database stays).
    fn kill(&mut self, i: usize) {
        self.nodes[i] = None;
    }

    /// Node `i`'s API, as the organisation's root key.
    pub(crate) fn api(&self, i: usize) -> Api<'_> {
        self.node(i).api(&self.org, &self.root)
    }

    /// Creates a key through node `i`: `(id, secret)`.
    async fn create_key(&self, i: usize, scopes: &[&str]) -> (String, String) {
        let body = self
            .api(i)
            .new_key(json!({"name": "cluster test", "scopes": scopes}))
            .await;
        (
            body["id"].as_str().unwrap().to_owned(),
            body["secret"].as_str().unwrap().to_owned(),
        )
    }

    async fn revoke(&self, i: usize, id: &str) {
        let revoked = self
            .api(i)
            .revoke_key(id, Some(json!({"reason": "cluster test"})))
            .await;
        assert_eq!(revoked.status, StatusCode::OK, "{}", revoked.text);
    }

    /// The ids in node `i`'s key list.
    async fn listed_ids(&self, i: usize) -> (Vec<String>, Value) {
        let list = self.api(i).list_keys("").await.body;
        let ids = list["items"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|k| k["id"].as_str().map(str::to_owned))
            .collect();
        (ids, list)
    }

    async fn get(&self, i: usize, path: &str, token: &str) -> StatusCode {
        self.node(i)
            .client
            .get(self.node(i).url(path))
            .bearer_auth(token)
            .send()
            .await
            .unwrap()
            .status()
    }

    fn assets(&self) -> String {
        format!("/organizations/{}/assets", self.org)
    }
}

async fn readyz(node: &TestApp) -> (StatusCode, Value) {
    let res = node.client.get(node.url("/readyz")).send().await.unwrap();
    let status = res.status();
    (status, res.json().await.unwrap_or(Value::Null))
}

async fn wait_ready(node: &TestApp) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (status, body) = readyz(node).await;
        if status == StatusCode::OK {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "node never ready: {body}\n{}",
            node.output_text()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Polls `GET path` on node `i` until it answers `want`; returns how long that took.
async fn until_status(
    c: &Cluster,
    i: usize,
    path: &str,
    token: &str,
    want: StatusCode,
    limit: Duration,
) -> Duration {
    let started = Instant::now();
    loop {
        let got = c.get(i, path, token).await;
        if got == want {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < limit,
            "node {i} still answers {got} (not {want}) after {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

#[tokio::test]
async fn a_key_created_on_one_node_works_on_the_other_at_once() {
    let Some(nats) = configured() else { return };
    // Arrange
    let c = Cluster::start(2, &nats, &[]).await;

    // Act: create on A, use on B straight away.
    let (id, secret) = c.create_key(0, &["assets:read"]).await;
    let on_b = c.get(1, "/whoami", &secret).await;

    // Assert
    assert_eq!(on_b, StatusCode::OK);
    // Read-your-writes on a node that does not lead the projections: a key created on B
    // is in B's list at once (with A's, written before).
    let (id_b, _) = c.create_key(1, &["assets:read"]).await;
    for (i, want) in [(0, vec![&id]), (1, vec![&id, &id_b])] {
        let (ids, list) = c.listed_ids(i).await;
        for w in want {
            assert!(ids.contains(w), "node {i}: {list}");
        }
    }
}

#[tokio::test]
async fn a_revocation_on_one_node_stops_the_key_on_the_other_within_milliseconds() {
    let Some(nats) = configured() else { return };
    // Arrange: the key is in B's cache (and argon2 has accepted it there).
    let c = Cluster::start(2, &nats, &[]).await;
    let (id, secret) = c.create_key(0, &["assets:read"]).await;
    assert_eq!(c.get(1, "/whoami", &secret).await, StatusCode::OK);

    // Act
    c.revoke(0, &id).await;
    let revoked_at = Instant::now();
    let delay = until_status(
        &c,
        1,
        "/whoami",
        &secret,
        StatusCode::UNAUTHORIZED,
        Duration::from_secs(5),
    )
    .await;

    // Assert: well within the 30 s TTL, so it came over the bus.
    eprintln!(
        "revocation on A -> 401 on B: {:?} after the revoke response ({:?} of polling)",
        revoked_at.elapsed(),
        delay
    );
    assert!(delay < Duration::from_secs(2), "took {delay:?}");
    assert_eq!(c.get(0, "/whoami", &secret).await, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn a_scope_narrowed_on_one_node_is_enforced_on_the_other() {
    let Some(nats) = configured() else { return };
    // Arrange
    let c = Cluster::start(2, &nats, &[]).await;
    let (id, secret) = c.create_key(0, &["assets:read", "work-orders:read"]).await;
    assert_eq!(c.get(1, &c.assets(), &secret).await, StatusCode::OK);

    // Act
    let narrowed = c
        .api(0)
        .patch_key(&id, json!({"scopes": ["work-orders:read"]}))
        .await;
    assert_eq!(narrowed.status, StatusCode::OK, "{}", narrowed.text);

    // Assert
    let delay = until_status(
        &c,
        1,
        &c.assets(),
        &secret,
        StatusCode::FORBIDDEN,
        Duration::from_secs(5),
    )
    .await;
    eprintln!("scope narrowing on A -> 403 on B: {delay:?}");
    assert!(delay < Duration::from_secs(2), "took {delay:?}");
    let work_orders = format!("/organizations/{}/work-orders", c.org);
    assert_eq!(c.get(1, &work_orders, &secret).await, StatusCode::OK);
}

#[tokio::test]
async fn a_revocation_by_the_cli_reaches_every_node_through_the_relay() {
    let Some(nats) = configured() else { return };
    // Arrange: the CLI appends to the store and publishes nothing itself.
    let c = Cluster::start(2, &nats, &[]).await;
    let (id, secret) = c.create_key(0, &["assets:read"]).await;
    assert_eq!(c.get(0, "/whoami", &secret).await, StatusCode::OK);
    assert_eq!(c.get(1, "/whoami", &secret).await, StatusCode::OK);

    // Act
    c.node(0).cli(&["keys", "revoke", &id]);

    // Assert: both nodes, well within the 30 s TTL.
    for i in [0, 1] {
        let delay = until_status(
            &c,
            i,
            "/whoami",
            &secret,
            StatusCode::UNAUTHORIZED,
            Duration::from_secs(5),
        )
        .await;
        eprintln!("CLI revocation -> 401 on node {i}: {delay:?}");
    }
}

/// A `nats-server` of this test's own, on a free port; killed on drop.
struct OwnNats {
    child: Option<Child>,
    port: u16,
}

impl OwnNats {
    fn start_on(port: u16) -> OwnNats {
        let bin = [
            "nats-server",
            "/usr/sbin/nats-server",
            "/usr/bin/nats-server",
        ]
        .into_iter()
        .find(|b| {
            Command::new(b)
                .arg("--version")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok()
        })
        .expect("this test needs nats-server on the PATH");
        let child = Command::new(bin)
            .args(["-a", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start nats-server");
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "nats-server did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        OwnNats {
            child: Some(child),
            port,
        }
    }

    fn start() -> OwnNats {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        Self::start_on(port)
    }

    fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for OwnNats {
    fn drop(&mut self) {
        self.stop();
    }
}

#[tokio::test]
async fn with_nats_down_a_revocation_still_takes_effect_within_the_ttl() {
    if configured().is_none() {
        return;
    }
    // Arrange: our own NATS (the shared one is never stopped), a 2 s TTL, the key cached
    // on B.
    let mut nats = OwnNats::start();
    let c = Cluster::start(2, &nats.url(), &[("KEYLEDGER_CACHE_TTL_SECONDS", "2")]).await;
    let (id, secret) = c.create_key(0, &["assets:read"]).await;
    assert_eq!(c.get(1, "/whoami", &secret).await, StatusCode::OK);

    // Act 1: NATS goes away.
    nats.stop();

    // Assert 1: both nodes say so.
    for i in [0, 1] {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let (status, body) = readyz(c.node(i)).await;
            if status == StatusCode::SERVICE_UNAVAILABLE {
                assert_eq!(body["bus"], "down", "{body}");
                break;
            }
            assert!(Instant::now() < deadline, "node {i} still ready: {body}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    // Act 2: revoke on A while no notice can reach B.
    c.revoke(0, &id).await;

    // Assert 2: B stops the key once its entry is older than the TTL (2 s), not later.
    let delay = until_status(
        &c,
        1,
        "/whoami",
        &secret,
        StatusCode::UNAUTHORIZED,
        Duration::from_secs(6),
    )
    .await;
    eprintln!("revocation on A with NATS down -> 401 on B: {delay:?} (TTL 2 s)");
    assert!(delay <= Duration::from_millis(2500), "took {delay:?}");

    // Act 3: NATS comes back on the same port; the nodes reconnect and report ready.
    let _back = OwnNats::start_on(nats.port);
    for i in [0, 1] {
        wait_ready(c.node(i)).await;
    }
    let (id2, secret2) = c.create_key(0, &["assets:read"]).await;
    assert_eq!(c.get(1, "/whoami", &secret2).await, StatusCode::OK);
    c.revoke(0, &id2).await;
    let delay = until_status(
        &c,
        1,
        "/whoami",
        &secret2,
        StatusCode::UNAUTHORIZED,
        Duration::from_secs(5),
    )
    .await;
    eprintln!("after NATS came back: revocation on A -> 401 on B: {delay:?}");
    assert!(delay < Duration::from_secs(1), "took {delay:?}");
}

#[tokio::test]
async fn when_the_leading_node_dies_the_other_goes_on_projecting() {
    let Some(nats) = configured() else { return };
    // Arrange: A started first, so A leads the projections.
    let mut c = Cluster::start(2, &nats, &[]).await;
    let (first, _) = c.create_key(0, &["assets:read"]).await;

    // Act: A dies; B takes writes.
    c.kill(0);
    let (second, secret) = c.create_key(1, &["assets:read"]).await;

    // Assert: B's read models include both keys (read-your-writes on B: it took over).
    let (ids, list) = c.listed_ids(1).await;
    assert!(ids.contains(&first), "{list}");
    assert!(ids.contains(&second), "{list}");
    assert_eq!(c.get(1, "/whoami", &secret).await, StatusCode::OK);

    // And a node started now (C) follows B's lead.
    let i = c.add_node().await;
    assert_eq!(c.get(i, "/whoami", &secret).await, StatusCode::OK);
    c.revoke(i, &second).await;
    until_status(
        &c,
        1,
        "/whoami",
        &secret,
        StatusCode::UNAUTHORIZED,
        Duration::from_secs(5),
    )
    .await;
}

/// Polls `GET /whoami` on node `i` until its `RateLimit-Limit` reads `limit`; the time it took.
async fn until_limit(
    c: &Cluster,
    i: usize,
    token: &str,
    limit: &str,
    within: Duration,
) -> Duration {
    let started = Instant::now();
    loop {
        let res = c
            .node(i)
            .client
            .get(c.node(i).url("/whoami"))
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        if res
            .headers()
            .get("ratelimit-limit")
            .and_then(|v| v.to_str().ok())
            == Some(limit)
        {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < within,
            "node {i} still enforces {:?} after {within:?}",
            res.headers().get("ratelimit-limit")
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_plan_change_by_the_cli_reaches_every_nodes_rate_limiter_at_once() {
    let Some(nats) = configured() else { return };
    // Arrange: both nodes have the enterprise plan (500 a minute) cached for the org.
    let c = Cluster::start(2, &nats, &[]).await;
    let (_, secret) = c.create_key(0, &["assets:read"]).await;
    for i in [0, 1] {
        until_limit(&c, i, &secret, "500", Duration::from_secs(5)).await;
    }

    // Act: the CLI (no node) moves the organisation to professional (100 a minute).
    c.node(0).cli(&["orgs", "set-plan", &c.org, "professional"]);

    // Assert: both nodes enforce the new limit well within the plan cache's 30 s.
    for i in [0, 1] {
        let delay = until_limit(&c, i, &secret, "100", Duration::from_secs(5)).await;
        eprintln!("CLI plan change -> new limit on node {i}: {delay:?}");
    }
}
