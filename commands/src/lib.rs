//! keyledger's write side: the event store adapters (SQLite for the embedded default,
//! Postgres for production) behind the `domain::store::EventStore` port, the key
//! lifecycle's command handlers ([`keys::KeyService`]: load an aggregate, decide, append
//! with an expected version), and argon2 token hashing ([`hashing`]).
//!
//! Adapters are reached through [`open_event_store`], which picks one by URL scheme, or
//! constructed directly ([`SqliteEventStore`], [`PostgresEventStore`]).
#![forbid(unsafe_code)]

pub mod audit;
mod codec;
#[cfg(feature = "conformance")]
pub mod conformance;
pub mod hashing;
pub mod keys;
pub mod postgres;
pub mod sqlite;
mod subscription;

use std::sync::Arc;

use domain::store::{EventStore, StoreError};

pub use keys::{CommandContext, CommandError, KeyService};
pub use postgres::{PendingAppend, PostgresEventStore};
pub use sqlite::SqliteEventStore;

/// Opens the event store named by `url` and brings its schema up to date.
///
/// `sqlite:` URLs (`sqlite://keyledger.db`, `sqlite::memory:`) open a [`SqliteEventStore`]
/// (the file is created if missing); `postgres://` and `postgresql://` URLs open a
/// [`PostgresEventStore`]. Any other scheme is reported as [`StoreError::Unavailable`]
/// naming the scheme. Migrations are idempotent and
/// tolerate other crates' migrations on the same database.
pub async fn open_event_store(url: &str) -> Result<Arc<dyn EventStore>, StoreError> {
    if url.starts_with("sqlite:") {
        let store = SqliteEventStore::connect(url).await?;
        store.migrate().await?;
        Ok(Arc::new(store))
    } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        let store = PostgresEventStore::connect(url).await?;
        store.migrate().await?;
        Ok(Arc::new(store))
    } else {
        let scheme = url.split_once(':').map_or(url, |(scheme, _)| scheme);
        Err(StoreError::Unavailable(format!(
            "unsupported event store URL scheme {scheme:?}: expected sqlite://, postgres:// or postgresql://"
        )))
    }
}
