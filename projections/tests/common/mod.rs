//! Test support shared by the projections tests: an event store and the read models on
//! one fresh database per test ([`test_support::TestDb`]: SQLite or Postgres, migrated,
//! dropped at the end).
#![allow(dead_code)] // each test binary uses its own subset

use std::sync::Arc;

use domain::store::EventStore;
use projections::ReadDb;
use test_support::{Backend, TestDb};

/// A store and a read-model database on the same fresh database.
pub struct Env {
    pub store: Arc<dyn EventStore>,
    pub db: ReadDb,
    pub url: String,
    // Last: the database is dropped after the pools on it.
    _db: TestDb,
}

/// A fresh database on `backend`, opened as a node opens it.
pub async fn env(backend: Backend) -> Env {
    let test_db = TestDb::new(backend).await;
    let store = commands::open_event_store(test_db.url()).await.unwrap();
    let db = ReadDb::connect(test_db.url()).await.unwrap();
    Env {
        store,
        db,
        url: test_db.url().to_owned(),
        _db: test_db,
    }
}
