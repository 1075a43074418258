//! The operator's surface, black-box: keys created and rotated by the CLI and used over
//! HTTP, `orgs list`, `keys list`'s LAST USED column, and the next step `serve` prints on
//! a first start (its curl run by bash and zsh). On both back ends.

use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::helpers::{Backend, TestApp, spawn_app};

/// `keys create ORG ... --json`: the key's JSON (with its secret).
fn cli_key(app: &TestApp, org: &str, name: &str, scopes: &str) -> Value {
    let out = app.cli(&[
        "keys", "create", org, "--name", name, "--scopes", scopes, "--json",
    ]);
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("not JSON ({e}):\n{out}"))
}

fn sorted(v: &Value) -> Vec<String> {
    let mut names: Vec<String> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap().to_owned())
        .collect();
    names.sort();
    names
}

async fn a_key_created_by_the_cli_works_over_http_with_the_scopes_given(backend: Backend) {
    // Arrange
    let app = spawn_app(backend).await;
    let (org, _root) = app.bootstrap();

    // Act
    let key = cli_key(&app, &org, "SAP ERP", "work-orders:read,assets:read");
    let secret = key["secret"].as_str().unwrap();
    let whoami = app.api(&org, secret).whoami().await;
    let orders = app
        .api(&org, secret)
        .get(&format!("/organizations/{org}/work-orders"))
        .await;
    let keys = app.api(&org, secret).list_keys("").await;

    // Assert
    assert_eq!(whoami.status, 200, "{}", whoami.text);
    assert_eq!(whoami.str("id"), key["id"].as_str().unwrap());
    assert_eq!(whoami.str("name"), "SAP ERP");
    assert_eq!(
        sorted(&whoami.body["scopes"]),
        ["assets:read", "work-orders:read"]
    );
    assert_eq!(sorted(&key["scopes"]), ["assets:read", "work-orders:read"]);
    assert_eq!(orders.status, 200, "{}", orders.text);
    assert_eq!(keys.status, 403, "a scope not given: {}", keys.text);
}

async fn a_key_rotated_by_the_cli_stops_after_its_grace_period(backend: Backend) {
    // Arrange
    let app = spawn_app(backend).await;
    let (org, _root) = app.bootstrap();
    let old = cli_key(&app, &org, "SCADA", "assets:write");
    let old_id = old["id"].as_str().unwrap();
    let old_secret = old["secret"].as_str().unwrap();
    assert_eq!(app.api(&org, old_secret).whoami().await.status, 200);

    // Act: the grace period starts during the CLI's run, so after `rotated`.
    let rotated = Instant::now();
    let out = app.cli(&[
        "keys",
        "rotate",
        old_id,
        "--grace-period-seconds",
        "2",
        "--json",
    ]);
    let new: Value = serde_json::from_str(&out).unwrap();
    let new_secret = new["secret"].as_str().unwrap();

    // Assert: the successor works at once, with the same scopes; the old key until the
    // grace period is over, then never again.
    assert_eq!(new["rotated_from"], old_id);
    let whoami = app.api(&org, new_secret).whoami().await;
    assert_eq!(whoami.status, 200, "{}", whoami.text);
    assert_eq!(sorted(&whoami.body["scopes"]), ["assets:write"]);
    let during = app.api(&org, old_secret).whoami().await;
    if rotated.elapsed() < Duration::from_millis(1500) {
        assert_eq!(
            during.status, 200,
            "within the grace period: {}",
            during.text
        );
    }
    let deadline = rotated + Duration::from_secs(30);
    loop {
        let reply = app.api(&org, old_secret).whoami().await;
        if reply.status == 401 {
            assert!(
                rotated.elapsed() >= Duration::from_secs(2),
                "refused before the grace period ended"
            );
            break;
        }
        assert_eq!(reply.status, 200, "{}", reply.text);
        assert!(
            Instant::now() < deadline,
            "the old key still works 30 s after a 2 s grace period"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(app.api(&org, new_secret).whoami().await.status, 200);
}

async fn orgs_list_shows_each_organisation_with_its_plan_and_active_keys(backend: Backend) {
    // Arrange
    let app = spawn_app(backend).await;
    let (default_org, _root) = app.bootstrap();
    let (acme, _acme_root, _) = app.cli_org("Acme Plant", "professional");
    cli_key(&app, &acme, "ERP", "work-orders:read");
    let revoked = cli_key(&app, &acme, "old", "work-orders:read");
    app.cli(&["keys", "revoke", revoked["id"].as_str().unwrap()]);

    // Act
    let json: Value = serde_json::from_str(&app.cli(&["orgs", "list", "--json"])).unwrap();
    let table = app.cli(&["orgs", "list"]);

    // Assert: root + ERP active in Acme (the revoked one not counted).
    let orgs = json.as_array().unwrap();
    let find = |id: &str| {
        orgs.iter()
            .find(|o| o["id"] == id)
            .unwrap_or_else(|| panic!("{id} missing: {json}"))
    };
    assert_eq!(find(&acme)["name"], "Acme Plant");
    assert_eq!(find(&acme)["plan"], "professional");
    assert_eq!(find(&acme)["active_keys"], 2);
    assert_eq!(find(&default_org)["plan"], "enterprise");
    assert_eq!(find(&default_org)["active_keys"], 1);
    let header = table.lines().next().unwrap();
    assert!(
        header.contains("PLAN") && header.contains("ACTIVE KEYS"),
        "{table}"
    );
    let row = table
        .lines()
        .find(|l| l.starts_with(&acme))
        .unwrap_or_else(|| panic!("{table}"));
    assert!(
        row.contains("professional") && row.ends_with("Acme Plant"),
        "{row}"
    );
}

async fn keys_list_shows_when_each_key_was_last_used(backend: Backend) {
    // Arrange
    let app = spawn_app(backend).await;
    let (org, _root) = app.bootstrap();
    let key = cli_key(&app, &org, "field app", "work-orders:read");
    let id = key["id"].as_str().unwrap().to_owned();
    let row = |table: &str| {
        table
            .lines()
            .find(|l| l.starts_with(&id))
            .map(str::to_owned)
    };
    let before = app.cli(&["keys", "list", &org]);
    assert!(
        before.lines().next().unwrap().contains("LAST USED"),
        "{before}"
    );
    assert!(row(&before).unwrap().contains("never"), "{before}");

    // Act
    assert_eq!(
        app.api(&org, key["secret"].as_str().unwrap())
            .whoami()
            .await
            .status,
        200
    );

    // Assert: once the call is recorded, the row shows its time instead of `never`.
    let deadline = Instant::now() + Duration::from_secs(20);
    let shown = loop {
        let table = app.cli(&["keys", "list", &org]);
        let line = row(&table).unwrap();
        if !line.contains("never") {
            break line;
        }
        assert!(Instant::now() < deadline, "still never used:\n{table}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    // Columns: ID PREFIX STATUS CREATED LAST_USED NAME; both times are stored RFC 3339
    // UTC with microseconds, so text order is time order.
    let columns: Vec<&str> = shown.split_whitespace().collect();
    let (created, last_used) = (columns[3], columns[4]);
    assert!(
        last_used.ends_with('Z') && last_used.contains('T'),
        "{shown}"
    );
    assert!(last_used > created, "{shown}");
}

async fn a_bad_scope_fails_with_a_clear_message_and_creates_nothing(backend: Backend) {
    // Arrange
    let app = spawn_app(backend).await;
    let (org, _root) = app.bootstrap();
    let count = |app: &TestApp| -> usize {
        let json: Value =
            serde_json::from_str(&app.cli(&["keys", "list", &org, "--json"])).unwrap();
        json.as_array().unwrap().len()
    };
    let keys_before = count(&app);

    // Act
    let (ok, stdout, stderr) = app.cli_status(&[
        "keys",
        "create",
        &org,
        "--name",
        "typo",
        "--scopes",
        "work-orders:read,work-order:write",
    ]);
    let (no_org_ok, _, no_org_err) = app.cli_status(&[
        "keys",
        "create",
        "01a23500-0000-7000-8000-000000000000",
        "--name",
        "x",
        "--scopes",
        "assets:read",
    ]);

    // Assert
    assert!(!ok, "a bad scope must fail:\n{stdout}");
    assert!(
        stderr.contains("--scopes: unknown scope \"work-order:write\""),
        "{stderr}"
    );
    assert!(
        stderr.contains("work-orders:write"),
        "the catalogue is listed: {stderr}"
    );
    assert!(!stdout.contains("kl_"), "no secret printed: {stdout}");
    assert!(!no_org_ok, "an unknown organisation must fail");
    assert!(
        no_org_err.contains(
            "error: cannot create a key in organization 01a23500-0000-7000-8000-000000000000: organization not found"
        ),
        "{no_org_err}"
    );
    assert_eq!(count(&app), keys_before);
}

/// Runs `line` with `shell -c`: (success, stdout, stderr).
fn run_in(shell: &str, line: &str) -> (bool, String, String) {
    let out = Command::new(shell).args(["-c", line]).output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn has(program: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {program}")])
        .output()
        .is_ok_and(|o| o.status.success())
}

async fn a_first_start_prints_the_console_and_a_curl_that_works_in_bash_and_zsh(backend: Backend) {
    // Arrange
    let app = spawn_app(backend).await;
    let (_org, root) = app.bootstrap();

    // Act: the next step follows the `listening on` line.
    let deadline = Instant::now() + Duration::from_secs(10);
    let text = loop {
        let text = app.output_text();
        if text.lines().any(|l| l.trim_start().starts_with("curl ")) {
            break text;
        }
        assert!(Instant::now() < deadline, "no next step printed:\n{text}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };

    // Assert
    let console = format!("{}/console", app.address);
    assert!(
        text.lines()
            .any(|l| l.starts_with("next step:") && l.contains(&console)),
        "no console URL {console}:\n{text}"
    );
    let curl = text
        .lines()
        .map(str::trim)
        .find(|l| l.starts_with("curl "))
        .unwrap()
        .to_owned();
    assert!(curl.contains(&root), "{curl}");
    assert!(
        curl.contains(&format!("'{}/whoami'", app.address)),
        "{curl}"
    );
    assert!(has("curl"), "curl is needed to run the printed line");
    let shells = shells();
    for shell in shells {
        let (ok, stdout, stderr) = run_in(shell, &curl);
        assert!(ok, "{shell} -c {curl}: {stderr}");
        let body: Value = serde_json::from_str(&stdout)
            .unwrap_or_else(|e| panic!("{shell}: not JSON ({e}): {stdout} {stderr}"));
        assert_eq!(body["name"], "root", "{shell}: {stdout}");
    }
}

/// The README's ```sh blocks, each as its lines.
fn readme_sh_blocks() -> Vec<Vec<String>> {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md"))
        .expect("README.md");
    let mut blocks = Vec::new();
    let mut current: Option<Vec<String>> = None;
    for line in readme.lines() {
        match (&mut current, line.trim_start().strip_prefix("```")) {
            (None, Some(lang)) if lang.trim() == "sh" => current = Some(Vec::new()),
            (Some(_), Some(_)) => blocks.extend(current.take()),
            (None, Some(_)) => {}
            (Some(block), None) => block.push(line.to_owned()),
            (None, None) => {}
        }
    }
    blocks
}

/// The line without its quoted parts and its comment.
fn unquoted(line: &str) -> String {
    let mut out = String::new();
    let mut quote: Option<char> = None;
    let mut prev = ' ';
    for c in line.chars() {
        match quote {
            Some(q) if c == q => quote = None,
            Some(_) => {}
            None if c == '\'' || c == '"' => quote = Some(c),
            None if c == '#' && prev.is_whitespace() => break,
            None => out.push(c),
        }
        prev = c;
    }
    out
}

/// zsh stops a command with `no matches found` on an unquoted `?`, `*` or `[`; `$ `
/// prompts and a lone `&` break a paste in both shells.
#[test]
fn the_readmes_shell_commands_quote_every_url_and_glob_character() {
    let blocks = readme_sh_blocks();
    assert!(blocks.len() >= 5, "found only {} sh blocks", blocks.len());
    let mut bad = Vec::new();
    for line in blocks.iter().flatten() {
        let bare = unquoted(line);
        let lone_amp = bare.replace("&&", "").contains('&');
        if bare.contains(['?', '*', '[']) || lone_amp || line.trim_start().starts_with("$ ") {
            bad.push(line.clone());
        }
    }
    assert!(
        bad.is_empty(),
        "not safe to paste into zsh and bash:\n{}",
        bad.join("\n")
    );
}

/// The Quick start's shell block, with the node's address and real keys put in, run by
/// bash and zsh as pasted.
async fn the_readmes_quick_start_works_in_bash_and_zsh(backend: Backend) {
    // Arrange
    let app = spawn_app(backend).await;
    let (org, root) = app.bootstrap();
    let key = cli_key(&app, &org, "reader", "work-orders:read");
    let host = app.address.trim_start_matches("http://");
    let block = readme_sh_blocks()
        .into_iter()
        .find(|b| b.iter().any(|l| l.starts_with("ROOT='kl_live_...'")))
        .expect("the Quick start block");
    assert!(
        block.iter().any(|l| l.contains(&format!("ORG='{org}'"))),
        "the README's ORG is the bootstrap organisation's id {org}"
    );
    let script = block
        .iter()
        .map(|l| {
            l.replace("127.0.0.1:8080", host)
                .replace("ROOT='kl_live_...'", &format!("ROOT='{root}'"))
                .replace(
                    "KEY='kl_live_...'",
                    &format!("KEY='{}'", key["secret"].as_str().unwrap()),
                )
        })
        .collect::<Vec<_>>()
        .join("\n");
    assert!(
        !script.contains("kl_live_...'"),
        "a placeholder left:\n{script}"
    );
    let shells = shells();
    for shell in shells {
        // Act
        let (ok, stdout, stderr) = run_in(shell, &format!("set -e\n{script}"));

        // Assert: the create answered the key, the last call the page of work orders.
        assert!(ok, "{shell}: {stderr}\n{stdout}");
        // curl adds no newline: the two bodies follow each other.
        let mut answers = serde_json::Deserializer::from_str(&stdout).into_iter::<Value>();
        let created = answers.next().unwrap().unwrap();
        assert_eq!(created["name"], "SAP ERP Integration", "{shell}: {stdout}");
        let page = answers.next().unwrap().unwrap();
        assert!(page["items"].is_array(), "{shell}: {stdout}");
    }
}

test_support::backend_tests!(
    a_key_created_by_the_cli_works_over_http_with_the_scopes_given,
    a_key_rotated_by_the_cli_stops_after_its_grace_period,
    orgs_list_shows_each_organisation_with_its_plan_and_active_keys,
    keys_list_shows_when_each_key_was_last_used,
    a_bad_scope_fails_with_a_clear_message_and_creates_nothing,
    a_first_start_prints_the_console_and_a_curl_that_works_in_bash_and_zsh,
    the_readmes_quick_start_works_in_bash_and_zsh,
);

/// The shells to paste into: bash, and zsh where it is installed. `.ci/run` installs zsh
/// and sets `KEYLEDGER_TEST_REQUIRE_ZSH=1`, so that CI fails rather than skip it.
fn shells() -> Vec<&'static str> {
    if has("zsh") {
        return vec!["bash", "zsh"];
    }
    assert!(
        std::env::var_os("KEYLEDGER_TEST_REQUIRE_ZSH").is_none(),
        "KEYLEDGER_TEST_REQUIRE_ZSH is set but zsh is not installed"
    );
    eprintln!("note: zsh is not installed; run by bash only");
    vec!["bash"]
}
