//! The event store on a fresh test database ([`test_support::TestDb`]: migrated, empty,
//! dropped at the end), for the conformance suite and the command handlers' tests.
#![allow(dead_code)] // each test binary uses its own subset

use std::sync::Arc;

use async_trait::async_trait;
use commands::conformance::TestDatabase;
use domain::store::EventStore;
use test_support::{Backend, TestDb};

/// A test database that opens event stores (`commands::open_event_store`, which picks
/// the adapter by the URL's scheme and migrates).
pub struct StoreDb(pub TestDb);

impl StoreDb {
    pub async fn new(backend: Backend) -> StoreDb {
        StoreDb(TestDb::new(backend).await)
    }

    pub fn url(&self) -> &str {
        self.0.url()
    }
}

#[async_trait]
impl TestDatabase for StoreDb {
    async fn open(&self) -> Arc<dyn EventStore> {
        commands::open_event_store(self.url()).await.unwrap()
    }
}

/// For `event_store_conformance_tests!`: a fresh SQLite database.
pub async fn fresh_sqlite() -> Option<StoreDb> {
    Some(StoreDb::new(Backend::Sqlite).await)
}

/// For `event_store_conformance_tests!`: a fresh Postgres database, `None` (skip) when
/// `KEYLEDGER_TEST_POSTGRES_URL` is unset.
pub async fn fresh_postgres() -> Option<StoreDb> {
    if Backend::Postgres.skipped() {
        return None;
    }
    Some(StoreDb::new(Backend::Postgres).await)
}

/// For `event_store_conformance_tests!`: the database goes when it is dropped.
pub async fn cleanup(_db: StoreDb) {}
