//! Test support shared by the projections tests: a fresh event store and read-model
//! database per test, on SQLite (a temp file) or Postgres (a new database, dropped at
//! the end).
#![allow(dead_code)] // each test binary uses its own subset

use std::sync::Arc;

use domain::store::EventStore;
use projections::ReadDb;
use uuid::Uuid;

/// A store and a read-model database on the same fresh database.
pub struct Env {
    pub store: Arc<dyn EventStore>,
    pub db: ReadDb,
    pub url: String,
    _dir: Option<tempfile::TempDir>,
    pg: Option<(String, String)>,
}

/// A fresh SQLite file.
pub async fn sqlite_env() -> Env {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("kl.db").display());
    env_at(&url, Some(dir), None).await
}

/// A fresh Postgres database on `KEYLEDGER_TEST_POSTGRES_URL`; `None` (and a note) when
/// the variable is unset. Set but unreachable fails the test.
pub async fn postgres_env() -> Option<Env> {
    let admin = match std::env::var("KEYLEDGER_TEST_POSTGRES_URL") {
        Ok(u) if !u.is_empty() => u,
        _ => {
            eprintln!("KEYLEDGER_TEST_POSTGRES_URL is unset: skipping a Postgres test");
            return None;
        }
    };
    let pool = sqlx::PgPool::connect(&admin)
        .await
        .expect("KEYLEDGER_TEST_POSTGRES_URL is set but unreachable");
    let name = format!("kl_test_{}", Uuid::now_v7().simple());
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&pool)
        .await
        .unwrap();
    pool.close().await;
    let base = admin.rsplit_once('/').map(|(b, _)| b).unwrap_or(&admin);
    let url = format!("{base}/{name}");
    Some(env_at(&url, None, Some((admin.clone(), name))).await)
}

async fn env_at(url: &str, dir: Option<tempfile::TempDir>, pg: Option<(String, String)>) -> Env {
    let store = commands::open_event_store(url).await.unwrap();
    let db = ReadDb::connect(url).await.unwrap();
    Env {
        store,
        db,
        url: url.to_owned(),
        _dir: dir,
        pg,
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        let Some((admin, name)) = self.pg.take() else {
            return;
        };
        // Best effort, on a thread of its own (this may run inside a runtime): a leftover
        // test database is harmless, a hang is not.
        let _ = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            rt.block_on(async move {
                if let Ok(pool) = sqlx::PgPool::connect(&admin).await {
                    let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
                        "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
                    )))
                    .execute(&pool)
                    .await;
                }
            });
        })
        .join();
    }
}
