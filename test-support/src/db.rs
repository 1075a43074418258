//! A fresh database per test. [`TestDb::new`] copies a template database that holds every
//! crate's migrations; the template is built once (per migration set, see [`fingerprint`])
//! and kept, so a test starts on a migrated, empty database without running a migration.
//!
//! - Postgres: the template `kl_template_<fingerprint>` on the server of
//!   `KEYLEDGER_TEST_POSTGRES_URL`, built under an advisory lock (test processes of other
//!   checkouts share the server), migrated under another name and renamed when complete,
//!   then closed to connections (`CREATE DATABASE .. TEMPLATE` fails while anyone is
//!   connected to the template). Each test gets `CREATE DATABASE kl_test_<uuid> TEMPLATE
//!   kl_template_<fingerprint>`, dropped (`WITH (FORCE)`) when the [`TestDb`] is.
//! - SQLite: the template `keyledger-test-template-<fingerprint>.db` in the temp folder,
//!   copied into a temp folder of the test's own, removed with it.

use std::path::{Path, PathBuf};
use std::str::FromStr;

use sha2::{Digest, Sha256};
use sqlx::migrate::Migrator;
use sqlx::postgres::PgPoolOptions;
use sqlx::sqlite::{SqliteConnectOptions, SqlitePoolOptions};
use sqlx::{Connection, Executor, PgConnection};
use tokio::sync::OnceCell;

/// Which database a test runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// A SQLite file in a temp folder: always available.
    Sqlite,
    /// A database of its own on `KEYLEDGER_TEST_POSTGRES_URL`.
    Postgres,
}

impl Backend {
    /// Whether tests on this back end are skipped here: Postgres when
    /// `KEYLEDGER_TEST_POSTGRES_URL` is unset (saying so on stderr). A URL that is set but
    /// unreachable is not skipped: the test fails when it connects.
    pub fn skipped(self) -> bool {
        match self {
            Backend::Sqlite => false,
            Backend::Postgres if postgres_url().is_some() => false,
            Backend::Postgres => {
                eprintln!("KEYLEDGER_TEST_POSTGRES_URL is unset: skipping a Postgres test");
                true
            }
        }
    }
}

/// The test Postgres server's URL, from `KEYLEDGER_TEST_POSTGRES_URL` (`None` when unset
/// or empty). Its database is only used to connect: tests get databases of their own.
pub fn postgres_url() -> Option<String> {
    std::env::var("KEYLEDGER_TEST_POSTGRES_URL")
        .ok()
        .filter(|url| !url.is_empty())
}

/// A database of one test's own, removed on drop.
#[derive(Debug)]
pub struct TestDb {
    backend: Backend,
    url: String,
    /// The SQLite file's folder (removed on drop).
    _dir: Option<tempfile::TempDir>,
    /// The Postgres database's name (dropped on drop).
    postgres: Option<String>,
}

impl TestDb {
    /// A fresh database with every crate's migrations applied (and nothing else: no
    /// event, no organisation). Panics if the back end is not configured (check
    /// [`Backend::skipped`] first) or unreachable.
    pub async fn new(backend: Backend) -> TestDb {
        match backend {
            Backend::Sqlite => {
                let template = sqlite_template().await;
                let (dir, path) = sqlite_file();
                std::fs::copy(template, &path)
                    .unwrap_or_else(|e| panic!("cannot copy the SQLite template: {e}"));
                TestDb::sqlite(dir, &path)
            }
            Backend::Postgres => {
                let template = postgres_template().await;
                TestDb::postgres(Some(template)).await
            }
        }
    }

    /// A fresh database without any table, for tests of migrations and of first starts.
    pub async fn empty(backend: Backend) -> TestDb {
        match backend {
            Backend::Sqlite => {
                let (dir, path) = sqlite_file();
                TestDb::sqlite(dir, &path)
            }
            Backend::Postgres => TestDb::postgres(None).await,
        }
    }

    /// The database's URL (`sqlite://..` or `postgres://..`).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Which back end it is on.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    fn sqlite(dir: tempfile::TempDir, path: &Path) -> TestDb {
        TestDb {
            backend: Backend::Sqlite,
            url: format!("sqlite://{}", path.display()),
            _dir: Some(dir),
            postgres: None,
        }
    }

    async fn postgres(template: Option<&str>) -> TestDb {
        let name = format!("kl_test_{}", uuid::Uuid::now_v7().simple());
        let create = match template {
            Some(template) => format!("CREATE DATABASE {name} TEMPLATE {template}"),
            None => format!("CREATE DATABASE {name}"),
        };
        let mut admin = admin().await;
        admin
            .execute(sqlx::AssertSqlSafe(create))
            .await
            .unwrap_or_else(|e| panic!("cannot create the test database {name}: {e}"));
        let _ = admin.close().await;
        TestDb {
            backend: Backend::Postgres,
            url: postgres_database_url(&name),
            _dir: None,
            postgres: Some(name),
        }
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let Some(name) = self.postgres.take() else {
            return;
        };
        // On a thread of its own: this may run inside a runtime, which cannot drive a
        // connection while it is blocked here. Best effort: a leftover test database is
        // harmless, a hang is not. FORCE ends the connections pools still hold.
        let _ = std::thread::spawn(move || {
            let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            runtime.block_on(async move {
                let Some(url) = postgres_url() else { return };
                if let Ok(mut admin) = PgConnection::connect(&url).await {
                    let drop = format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)");
                    let _ = admin.execute(sqlx::AssertSqlSafe(drop)).await;
                    let _ = admin.close().await;
                }
            });
        })
        .join();
    }
}

/// Every crate's migrations for `backend`, in the order a node applies them (the event
/// store, the read models, the api's tables). Each crate embeds the same files with its
/// own `sqlx::migrate!`, so a node finds them applied, with the same checksums.
fn migrators(backend: Backend) -> [Migrator; 3] {
    match backend {
        Backend::Sqlite => [
            sqlx::migrate!("../commands/migrations/sqlite"),
            sqlx::migrate!("../projections/migrations/sqlite"),
            sqlx::migrate!("../api/migrations/sqlite"),
        ],
        Backend::Postgres => [
            sqlx::migrate!("../commands/migrations/postgres"),
            sqlx::migrate!("../projections/migrations/postgres"),
            sqlx::migrate!("../api/migrations/postgres"),
        ],
    }
}

/// Applies every crate's migrations; each crate's set tolerates the others' rows in the
/// shared migrations table, as it does in a node.
async fn migrate<'a, A>(backend: Backend, conn: A)
where
    A: sqlx::Acquire<'a> + Copy,
    <A::Connection as std::ops::Deref>::Target: sqlx::migrate::Migrate,
{
    for mut migrator in migrators(backend) {
        migrator.set_ignore_missing(true);
        migrator
            .run(conn)
            .await
            .unwrap_or_else(|e| panic!("cannot migrate the {backend:?} template: {e}"));
    }
}

/// A short hash of the migrations (versions and checksums): a template is built for one
/// migration set and reused only by suites with the same set.
fn fingerprint(backend: Backend) -> String {
    let mut hash = Sha256::new();
    for migrator in migrators(backend) {
        for migration in migrator.iter() {
            hash.update(migration.version.to_be_bytes());
            hash.update(&migration.checksum);
        }
    }
    hash.finalize()[..8]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn sqlite_file() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("cannot create a temp folder: {e}"));
    let path = dir.path().join("keyledger.db");
    (dir, path)
}

/// The migrated SQLite template's path, built by the first test of this process that
/// needs it, unless an earlier run left it.
async fn sqlite_template() -> &'static Path {
    static TEMPLATE: OnceCell<PathBuf> = OnceCell::const_new();
    TEMPLATE.get_or_init(build_sqlite_template).await
}

async fn build_sqlite_template() -> PathBuf {
    let name = format!(
        "keyledger-test-template-{}.db",
        fingerprint(Backend::Sqlite)
    );
    let path = std::env::temp_dir().join(name);
    if path.exists() {
        return path;
    }
    // Built under a name of this process's own and renamed when complete: a process
    // racing this one renames an identical file, and none sees a half-built one.
    let building = path.with_extension(format!("{}.building", uuid::Uuid::now_v7().simple()));
    let options = SqliteConnectOptions::from_str(&format!("sqlite://{}", building.display()))
        .unwrap_or_else(|e| panic!("bad SQLite template path: {e}"))
        .create_if_missing(true);
    let pool = SqlitePoolOptions::new()
        .max_connections(1)
        .connect_with(options)
        .await
        .unwrap_or_else(|e| panic!("cannot create the SQLite template: {e}"));
    migrate(Backend::Sqlite, &pool).await;
    pool.close().await;
    std::fs::rename(&building, &path)
        .unwrap_or_else(|e| panic!("cannot put the SQLite template in place: {e}"));
    path
}

/// A connection to the test server's own database, for creating and dropping others.
async fn admin() -> PgConnection {
    let url = postgres_url()
        .unwrap_or_else(|| panic!("a Postgres test needs KEYLEDGER_TEST_POSTGRES_URL"));
    PgConnection::connect(&url)
        .await
        .unwrap_or_else(|e| panic!("KEYLEDGER_TEST_POSTGRES_URL is set but unreachable: {e}"))
}

/// The URL of database `name` on the test server.
fn postgres_database_url(name: &str) -> String {
    database_url_on(&postgres_url().unwrap_or_default(), name)
}

/// The URL of database `name` on the server of `admin` (its query string kept).
fn database_url_on(admin: &str, name: &str) -> String {
    let (base, query) = match admin.split_once('?') {
        Some((base, query)) => (base, format!("?{query}")),
        None => (admin, String::new()),
    };
    let server = match base.rsplit_once('/') {
        // `postgres://host/db`: drop the database; `postgres://host` names none.
        Some((server, _)) if !server.ends_with('/') => server,
        _ => base,
    };
    format!("{server}/{name}{query}")
}

/// The Postgres template's name, built by the first test of this process that needs it,
/// unless a process before it built the same one.
async fn postgres_template() -> &'static str {
    static TEMPLATE: OnceCell<String> = OnceCell::const_new();
    TEMPLATE.get_or_init(build_postgres_template).await
}

/// An arbitrary, fixed advisory lock key: "one template build at a time on this server".
const TEMPLATE_LOCK: i64 = 0x6b6c_7465_6d70;

async fn build_postgres_template() -> String {
    let template = format!("kl_template_{}", fingerprint(Backend::Postgres));
    let mut admin = admin().await;
    sqlx::query("SELECT pg_advisory_lock($1)")
        .bind(TEMPLATE_LOCK)
        .execute(&mut admin)
        .await
        .unwrap_or_else(|e| panic!("cannot take the template lock: {e}"));
    let exists: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)")
            .bind(&template)
            .fetch_one(&mut admin)
            .await
            .unwrap_or_else(|e| panic!("cannot look for the template: {e}"));
    if !exists {
        // A build that died half-way left `<template>_building`: start again.
        let building = format!("{template}_building");
        run(
            &mut admin,
            [
                format!("DROP DATABASE IF EXISTS {building} WITH (FORCE)"),
                format!("CREATE DATABASE {building}"),
            ],
        )
        .await;
        let pool = PgPoolOptions::new()
            .max_connections(1)
            .connect(&postgres_database_url(&building))
            .await
            .unwrap_or_else(|e| panic!("cannot connect to the template: {e}"));
        migrate(Backend::Postgres, &pool).await;
        pool.close().await;
        run(
            &mut admin,
            [
                format!("ALTER DATABASE {building} RENAME TO {template}"),
                format!("ALTER DATABASE {template} WITH ALLOW_CONNECTIONS false"),
            ],
        )
        .await;
    }
    // Closing the session releases the advisory lock.
    let _ = admin.close().await;
    template
}

/// Runs each statement on the admin connection (a template build step).
async fn run(admin: &mut PgConnection, statements: [String; 2]) {
    for sql in statements {
        admin
            .execute(sqlx::AssertSqlSafe(sql.clone()))
            .await
            .unwrap_or_else(|e| panic!("building the template: {sql}: {e}"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_database_url_keeps_the_server_and_the_query() {
        let cases = [
            ("postgres://u@h:5432/postgres", "postgres://u@h:5432/kl_x"),
            (
                "postgres://u@h:5432/postgres?sslmode=disable",
                "postgres://u@h:5432/kl_x?sslmode=disable",
            ),
            ("postgres://u@h:5432", "postgres://u@h:5432/kl_x"),
        ];
        for (admin, want) in cases {
            assert_eq!(database_url_on(admin, "kl_x"), want, "{admin}");
        }
    }
}
