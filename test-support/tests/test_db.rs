//! What a [`TestDb`] promises: a migrated database holds every crate's tables and no row,
//! an empty one holds nothing, each test's database is its own and goes when it is
//! dropped, and a Postgres URL that is set but unreachable fails the test (CI sets it: a
//! Postgres that is down must not pass as skipped).
// Test code: a failed step is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;

use test_support::{Backend, TestDb, sql};

/// One table of each crate's migrations: the event store, the read models, the api.
const TABLES: [&str; 3] = ["events", "api_keys", "idempotency_keys"];

async fn table_count(db: &TestDb, table: &str) -> i64 {
    let sql = match db.backend() {
        Backend::Sqlite => "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = $1",
        Backend::Postgres => {
            "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public' \
             AND table_name = $1"
        }
    };
    sql::scalar(db.url(), sql, table).await
}

fn sqlite_path(db: &TestDb) -> std::path::PathBuf {
    db.url().trim_start_matches("sqlite://").into()
}

async fn a_migrated_database_has_every_crates_tables_and_no_row(backend: Backend) {
    // Act
    let db = TestDb::new(backend).await;

    // Assert
    for table in TABLES {
        assert_eq!(table_count(&db, table).await, 1, "{table}");
    }
    let events = sql::scalar(
        db.url(),
        "SELECT count(*) FROM events WHERE stream <> $1",
        "",
    )
    .await;
    assert_eq!(events, 0);
}

async fn an_empty_database_has_no_table(backend: Backend) {
    // Act
    let db = TestDb::empty(backend).await;

    // Assert: no SQLite file yet (the code under test creates it), no Postgres table.
    match backend {
        Backend::Sqlite => assert!(!sqlite_path(&db).exists()),
        Backend::Postgres => {
            for table in TABLES {
                assert_eq!(table_count(&db, table).await, 0, "{table}");
            }
        }
    }
}

async fn each_test_gets_a_database_of_its_own(backend: Backend) {
    // Arrange
    let a = TestDb::new(backend).await;
    let b = TestDb::new(backend).await;

    // Act
    let written = sql::execute(
        a.url(),
        "INSERT INTO projection_checkpoints (name, position, updated_at) VALUES ('mine', 7, 'now')",
    )
    .await;

    // Assert
    assert_eq!(written, 1);
    assert_ne!(a.url(), b.url());
    let count = "SELECT count(*) FROM projection_checkpoints WHERE name = $1";
    assert_eq!(sql::scalar(a.url(), count, "mine").await, 1);
    assert_eq!(sql::scalar(b.url(), count, "mine").await, 0);
    assert_eq!(
        sql::scalar(TestDb::new(backend).await.url(), count, "mine").await,
        0,
        "the template is untouched"
    );
}

test_support::backend_tests!(
    a_migrated_database_has_every_crates_tables_and_no_row,
    an_empty_database_has_no_table,
    each_test_gets_a_database_of_its_own,
);

#[tokio::test]
async fn a_postgres_test_database_is_dropped_with_its_test_db() {
    if Backend::Postgres.skipped() {
        return;
    }
    // Arrange
    let db = TestDb::new(Backend::Postgres).await;
    let name = db.url().rsplit('/').next().unwrap().to_owned();
    let server = test_support::postgres_url().unwrap();
    let exists = "SELECT count(*) FROM pg_database WHERE datname = $1";
    assert_eq!(sql::scalar(&server, exists, &name).await, 1);

    // Act
    drop(db);

    // Assert
    assert_eq!(sql::scalar(&server, exists, &name).await, 0);
}

#[tokio::test]
async fn a_sqlite_test_database_is_removed_with_its_test_db() {
    // Arrange
    let db = TestDb::new(Backend::Sqlite).await;
    let path = sqlite_path(&db);
    assert!(path.exists());

    // Act
    drop(db);

    // Assert
    assert!(!path.exists());
}

/// Run only by the next test, in a child process of its own, with the URL it sets.
#[tokio::test]
#[ignore = "run by a_set_but_unreachable_postgres_url_fails_and_an_unset_one_skips"]
async fn probe_a_postgres_database() {
    if Backend::Postgres.skipped() {
        return;
    }
    TestDb::new(Backend::Postgres).await;
}

/// Runs `probe_a_postgres_database` in a child process with `url` (`None`: unset).
fn probe(url: Option<&str>) -> (bool, String) {
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args([
        "probe_a_postgres_database",
        "--exact",
        "--ignored",
        "--nocapture",
    ]);
    match url {
        Some(url) => cmd.env("KEYLEDGER_TEST_POSTGRES_URL", url),
        None => cmd.env_remove("KEYLEDGER_TEST_POSTGRES_URL"),
    };
    let out = cmd.output().unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), text)
}

#[test]
fn a_set_but_unreachable_postgres_url_fails_and_an_unset_one_skips() {
    // Arrange: nothing listens on port 1.
    let unreachable = "postgres://postgres@127.0.0.1:1/postgres";

    // Act
    let (set_passed, set_output) = probe(Some(unreachable));
    let (unset_passed, unset_output) = probe(None);

    // Assert
    assert!(!set_passed, "an unreachable Postgres passed:\n{set_output}");
    assert!(
        set_output.contains("KEYLEDGER_TEST_POSTGRES_URL is set but unreachable"),
        "{set_output}"
    );
    assert!(unset_passed, "{unset_output}");
    assert!(
        unset_output.contains("KEYLEDGER_TEST_POSTGRES_URL is unset: skipping"),
        "{unset_output}"
    );
}
