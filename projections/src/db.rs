//! The read-model database: one connection pool, either SQLite or Postgres.

use std::str::FromStr;
use std::time::Duration;

use sqlx::AnyPool;
use sqlx::any::AnyPoolOptions;
use sqlx::migrate::Migrator;
use sqlx::postgres::PgPoolOptions;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions};

use crate::runtime::ProjectionError;

/// Which database holds the read models.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// A SQLite file (the embedded default).
    Sqlite,
    /// A Postgres database (production).
    Postgres,
}

impl Backend {
    /// Picks the back end from a database URL's scheme.
    pub fn from_url(url: &str) -> Result<Self, ProjectionError> {
        if url.starts_with("sqlite:") {
            Ok(Backend::Sqlite)
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Ok(Backend::Postgres)
        } else {
            Err(ProjectionError::Config(format!(
                "unsupported read-model database URL scheme in {:?}: expected sqlite:// or postgres://",
                redact_url(url)
            )))
        }
    }
}

/// A pool on the read-model database.
#[derive(Debug, Clone)]
pub struct ReadDb {
    pool: AnyPool,
    backend: Backend,
}

impl ReadDb {
    /// Connects, creating a SQLite file if missing, and applies this crate's migrations.
    pub async fn connect(url: &str) -> Result<Self, ProjectionError> {
        let backend = Backend::from_url(url)?;
        apply_migrations(
            url,
            sqlx::migrate!("./migrations/sqlite"),
            sqlx::migrate!("./migrations/postgres"),
        )
        .await?;
        sqlx::any::install_default_drivers();
        let max = match backend {
            // SQLite has one writer at a time; a few readers are enough.
            Backend::Sqlite => 4,
            Backend::Postgres => 10,
        };
        let pool = AnyPoolOptions::new()
            .max_connections(max)
            .acquire_timeout(Duration::from_secs(10))
            .after_connect(move |conn, _meta| {
                Box::pin(async move {
                    if backend == Backend::Sqlite {
                        // Per-connection settings are not in the URL (WAL persists in
                        // the file): wait for the event store's writer instead of failing.
                        sqlx::query("PRAGMA busy_timeout = 10000")
                            .execute(conn)
                            .await?;
                    }
                    Ok(())
                })
            })
            .connect(url)
            .await?;
        Ok(Self { pool, backend })
    }

    /// A write transaction. On SQLite it takes the write lock up front (`BEGIN
    /// IMMEDIATE`, waiting under the busy timeout): a deferred transaction that reads
    /// first fails at once with "database is locked" when another writer (the event
    /// store's group commit, another projector) commits between its first read and its
    /// first write, since SQLite cannot upgrade a stale read snapshot.
    pub async fn begin_write(&self) -> Result<sqlx::Transaction<'static, sqlx::Any>, sqlx::Error> {
        match self.backend {
            Backend::Sqlite => self.pool.begin_with("BEGIN IMMEDIATE").await,
            Backend::Postgres => self.pool.begin().await,
        }
    }

    /// The pool.
    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// Which back end this is.
    pub fn backend(&self) -> Backend {
        self.backend
    }
}

/// Applies one crate's migrations (one set per back end) to the database at `url`
/// through the native driver (the `Any` driver cannot run them). Other crates use this
/// for their own tables in the read-model database (e.g. the api's idempotency keys).
pub async fn apply_migrations(
    url: &str,
    sqlite: Migrator,
    postgres: Migrator,
) -> Result<(), ProjectionError> {
    match Backend::from_url(url)? {
        Backend::Sqlite => {
            let opts = SqliteConnectOptions::from_str(url)
                .map_err(|e| ProjectionError::Config(format!("bad SQLite URL: {e}")))?
                .create_if_missing(true)
                .journal_mode(SqliteJournalMode::Wal)
                .busy_timeout(Duration::from_secs(10));
            let native = SqlitePoolOptions::new()
                .max_connections(1)
                .connect_with(opts)
                .await?;
            let result = run_migrations(sqlite, &native).await;
            native.close().await;
            result
        }
        Backend::Postgres => {
            let native = PgPoolOptions::new()
                .max_connections(1)
                .acquire_timeout(Duration::from_secs(10))
                .connect(url)
                .await?;
            let result = run_migrations(postgres, &native).await;
            native.close().await;
            result
        }
    }
}

async fn run_migrations<'a, A>(mut migrator: Migrator, conn: A) -> Result<(), ProjectionError>
where
    A: sqlx::Acquire<'a>,
    <A::Connection as std::ops::Deref>::Target: sqlx::migrate::Migrate,
{
    // Other crates (the event store, the data API) migrate the same database with their
    // own version ranges; tolerate their rows in the migrations table.
    migrator.set_ignore_missing(true);
    migrator
        .run(conn)
        .await
        .map_err(|e| ProjectionError::Migration(e.to_string()))
}

/// Drops the password from a URL before it goes into an error message.
pub fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => {
            let creds = &url[s + 3..at];
            match creds.find(':') {
                Some(colon) => format!("{}{}:***{}", &url[..s + 3], &creds[..colon], &url[at..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn it_should_hide_the_password_in_a_url() {
        assert_eq!(
            redact_url("postgres://u:secret@h:5432/db"),
            "postgres://u:***@h:5432/db"
        );
        assert_eq!(redact_url("postgres://u@h/db"), "postgres://u@h/db");
        assert_eq!(redact_url("sqlite://x.db"), "sqlite://x.db");
    }

    #[test]
    fn it_should_refuse_an_unknown_scheme() {
        assert!(Backend::from_url("mysql://x").is_err());
        assert_eq!(Backend::from_url("sqlite://x.db").unwrap(), Backend::Sqlite);
        assert_eq!(
            Backend::from_url("postgresql://x").unwrap(),
            Backend::Postgres
        );
    }
}
