//! A real nginx (Debian's, with `auth_request`) in front of a small upstream this test
//! runs, configured with `deploy/nginx/keyledger-gateway.conf`, asking node 0 of a
//! two-node cluster (Postgres, NATS). Needs `nginx` on the PATH (`.ci/run` installs it),
//! and Postgres and NATS like the cluster tests.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::rules_file;
use crate::cluster::{Cluster, configured};

/// The deployed configuration, as the tests run it.
const GATEWAY_CONF: &str = include_str!("../../../../deploy/nginx/keyledger-gateway.conf");

/// nginx in the foreground, one process (`master_process off`, so that killing it leaves
/// no worker behind), with its own prefix directory; stopped on drop.
struct Nginx {
    child: Child,
    port: u16,
    dir: tempfile::TempDir,
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Nginx {
    fn start(keyledger: &str, upstream: u16) -> Nginx {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let server = GATEWAY_CONF
            .replace("{{LISTEN}}", &format!("127.0.0.1:{port}"))
            .replace("{{KEYLEDGER}}", keyledger)
            .replace("{{UPSTREAM}}", &format!("127.0.0.1:{upstream}"));
        let d = dir.path().display();
        std::fs::write(dir.path().join("gateway.conf"), server).unwrap();
        // As root, nginx's workers would switch to `nobody`; keep them as this user.
        let user = if is_root() { "user root;" } else { "" };
        let main = format!(
            "{user}\nworker_processes 1;\ndaemon off;\nmaster_process off;\n\
             error_log {d}/error.log warn;\n\
             pid {d}/nginx.pid;\nevents {{ worker_connections 256; }}\nhttp {{\n\
             access_log off;\nclient_body_temp_path {d}/body;\nproxy_temp_path {d}/proxy;\n\
             fastcgi_temp_path {d}/fastcgi;\nuwsgi_temp_path {d}/uwsgi;\n\
             scgi_temp_path {d}/scgi;\ninclude {d}/gateway.conf;\n}}\n"
        );
        std::fs::write(dir.path().join("nginx.conf"), main).unwrap();
        let child = Command::new("nginx")
            .args(["-p", &d.to_string(), "-c", &format!("{d}/nginx.conf")])
            .args(["-e", &format!("{d}/error.log")])
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("nginx is needed for this test (apt-get install nginx-light)");
        let nginx = Nginx { child, port, dir };
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "nginx did not start: {}",
                nginx.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        nginx
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("error.log")).unwrap_or_default()
    }
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

/// What the upstream saw of each request: its head (request line and headers).
type Seen = Arc<Mutex<Vec<String>>>;

/// A tiny HTTP/1.1 upstream on a free port: answers 200 `key=<X-Keyledger-Key-Id>`.
async fn upstream() -> (u16, Seen) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen: Seen = Arc::default();
    let record = seen.clone();
    tokio::spawn(async move {
        loop {
            let Ok((mut socket, _)) = listener.accept().await else {
                return;
            };
            let record = record.clone();
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut buf = [0u8; 4096];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match socket.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let head = String::from_utf8_lossy(&head).to_string();
                let key = head
                    .lines()
                    .find_map(|l| {
                        let (name, value) = l.split_once(':')?;
                        name.eq_ignore_ascii_case("x-keyledger-key-id")
                            .then(|| value.trim().to_owned())
                    })
                    .unwrap_or_default();
                record.lock().unwrap().push(head);
                let body = format!("key={key}");
                let res = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\
                     Connection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = socket.write_all(res.as_bytes()).await;
            });
        }
    });
    (port, seen)
}

#[tokio::test]
async fn nginx_with_auth_request_forwards_only_what_keyledger_allows() {
    let Some(nats) = configured() else { return };
    // Arrange: two nodes with the rules; nginx asks node 0; keys are made on node 0.
    let (_rules_dir, rules) = rules_file();
    let cluster = Cluster::start(
        2,
        &nats,
        &[
            ("KEYLEDGER_GATEWAY_ROUTES", rules.as_str()),
            ("KEYLEDGER_TRUSTED_PROXIES", "127.0.0.1/32"),
        ],
    )
    .await;
    let root = cluster.api(0);
    let reader = root
        .new_key(json!({"name": "invoice reader", "scopes": ["work-orders:read"]}))
        .await;
    let (reader_id, reader_key) = (
        reader["id"].as_str().unwrap().to_owned(),
        reader["secret"].as_str().unwrap().to_owned(),
    );
    let limited = root
        .new_key(
            json!({"name": "slow", "scopes": ["work-orders:read"], "rate_limit_per_minute": 2}),
        )
        .await;
    let limited_key = limited["secret"].as_str().unwrap().to_owned();
    let (upstream_port, seen) = upstream().await;
    let node0 = cluster
        .node(0)
        .address
        .trim_start_matches("http://")
        .to_owned();
    let nginx = Nginx::start(&node0, upstream_port);
    let client = reqwest::Client::new();
    let call = |method: reqwest::Method, path: &str, key: Option<&str>| {
        let mut req = client.request(method, nginx.url(path));
        if let Some(key) = key {
            req = req.bearer_auth(key);
        }
        req.send()
    };

    // Act and Assert: a valid key reaches the upstream, with its id and without its secret.
    let ok = call(reqwest::Method::GET, "/invoices/1?x=1", Some(&reader_key))
        .await
        .unwrap();
    assert_eq!(ok.status(), StatusCode::OK, "{}", nginx.log());
    assert_eq!(ok.text().await.unwrap(), format!("key={reader_id}"));
    let heads = seen.lock().unwrap().clone();
    assert_eq!(heads.len(), 1);
    assert!(
        !heads[0].to_ascii_lowercase().contains("authorization"),
        "{}",
        heads[0]
    );

    // No key, a scope the key lacks: stopped by nginx with keyledger's status.
    let none = call(reqwest::Method::GET, "/invoices/1", None)
        .await
        .unwrap();
    assert_eq!(none.status(), StatusCode::UNAUTHORIZED);
    let wrong = call(reqwest::Method::POST, "/payments/1", Some(&reader_key))
        .await
        .unwrap();
    assert_eq!(wrong.status(), StatusCode::FORBIDDEN);

    // An exhausted limit: 429 with Retry-After.
    let mut last = StatusCode::OK;
    let mut retry_after = None;
    for _ in 0..5 {
        let res = call(reqwest::Method::GET, "/invoices/2", Some(&limited_key))
            .await
            .unwrap();
        last = res.status();
        retry_after = res.headers().get("retry-after").cloned();
        if last == StatusCode::TOO_MANY_REQUESTS {
            break;
        }
    }
    assert_eq!(last, StatusCode::TOO_MANY_REQUESTS, "{}", nginx.log());
    assert!(retry_after.is_some());
    // Only the calls keyledger allowed reached the upstream.
    assert!(seen.lock().unwrap().len() <= 3);

    // Revoked on node 1: nginx (asking node 0) stops it within milliseconds (NATS).
    assert_eq!(
        cluster.api(1).revoke_key(&reader_id, None).await.status,
        StatusCode::OK
    );
    let revoked_at = Instant::now();
    loop {
        let res = call(reqwest::Method::GET, "/invoices/1", Some(&reader_key))
            .await
            .unwrap();
        if res.status() == StatusCode::UNAUTHORIZED {
            break;
        }
        assert!(
            revoked_at.elapsed() < Duration::from_secs(2),
            "still {} after 2 s",
            res.status()
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }

    // The calls through nginx are in the key's usage, under the rule's pattern.
    let usage = root
        .get(&format!("{}/usage", root.key_path(&reader_id)))
        .await;
    assert_eq!(usage.status, StatusCode::OK, "{}", usage.text);
    assert!(
        usage.body["all_time"]["total_calls"].as_i64().unwrap() >= 2,
        "{}",
        usage.text
    );
    let details = root.get_key(&reader_id).await;
    let routes = details.body["usage"]["by_route"]
        .as_array()
        .unwrap()
        .clone();
    assert!(
        routes
            .iter()
            .any(|r| r["method"] == "GET" && r["route"] == "/invoices/*"),
        "{routes:?}"
    );
    assert!(
        routes
            .iter()
            .any(|r| r["method"] == "POST" && r["route"] == "/payments/**"),
        "{routes:?}"
    );
}
