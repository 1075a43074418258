//! The event store: the adapters behind the `domain::store::EventStore` port, and
//! [`open_event_store`], which picks one by URL scheme.
//!
//! - [`sqlite`] (the embedded default) and [`postgres`] are two back ends of one SQL event
//!   store (`sql`): the version checks, the hash-chain sealing, the insert's bookkeeping,
//!   the reads and the row decoding are written once there; each back end supplies its
//!   SQL text (one statement per file in `store/sql/<back end>/`) and the few things its
//!   database does differently (how an append takes the write lock, how lists and rows are
//!   bound, how columns are typed).
//! - `kurrentdb` (cargo feature `kurrentdb`) is an adapter of its own on the gRPC client.
//! - `codec` holds what all adapters share (validating appends, sealing events on their
//!   chain, checking decoded rows); `subscription` the catch-up-then-live loop of the SQL
//!   back ends.
//! - `conformance` (cargo feature `conformance`) is the suite every adapter passes.

mod codec;
#[cfg(feature = "conformance")]
pub mod conformance;
#[cfg(feature = "kurrentdb")]
pub mod kurrentdb;
pub mod postgres;
mod sql;
pub mod sqlite;
mod subscription;

use std::sync::Arc;

use domain::store::{EventStore, StoreError};

#[cfg(feature = "kurrentdb")]
pub use kurrentdb::KurrentDbEventStore;
pub use postgres::{PendingAppend, PostgresEventStore};
pub use sqlite::SqliteEventStore;

/// URL schemes of KurrentDB / EventStoreDB servers (the client's aliases included).
const KURRENTDB_SCHEMES: &[&str] = &[
    "esdb",
    "esdb+discover",
    "kurrentdb",
    "kurrentdb+discover",
    "kurrent",
    "kurrent+discover",
    "kdb",
    "kdb+discover",
];

/// Whether `url` names a KurrentDB / EventStoreDB server (`esdb://`, `esdb+discover://`,
/// `kurrentdb://`, `kurrentdb+discover://`, or the client's aliases `kurrent://`,
/// `kdb://`), whether or not this build can open it.
pub fn is_kurrentdb_url(url: &str) -> bool {
    url.split_once("://").is_some_and(|(scheme, _)| {
        KURRENTDB_SCHEMES.contains(&scheme.to_ascii_lowercase().as_str())
    })
}

/// What `open_event_store` answers for a KurrentDB URL in a build without the feature.
pub const NO_KURRENTDB_SUPPORT: &str =
    "this build has no KurrentDB support; rebuild with --features kurrentdb";

/// Opens the event store named by `url` and brings its schema up to date.
///
/// `sqlite:` URLs (`sqlite://keyledger.db`, `sqlite::memory:`) open a [`SqliteEventStore`]
/// (the file is created if missing); `postgres://` and `postgresql://` URLs open a
/// [`PostgresEventStore`]; KurrentDB URLs ([`is_kurrentdb_url`]) open a
/// `KurrentDbEventStore` when built with the `kurrentdb` feature (after a start-up check
/// that the server answers) and are refused with [`NO_KURRENTDB_SUPPORT`] otherwise. Any
/// other scheme is reported as [`StoreError::Unavailable`] naming the scheme. Migrations
/// are idempotent and tolerate other crates' migrations on the same database.
pub async fn open_event_store(url: &str) -> Result<Arc<dyn EventStore>, StoreError> {
    if url.starts_with("sqlite:") {
        let store = SqliteEventStore::connect(url).await?;
        store.migrate().await?;
        Ok(Arc::new(store))
    } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        let store = PostgresEventStore::connect(url).await?;
        store.migrate().await?;
        Ok(Arc::new(store))
    } else if is_kurrentdb_url(url) {
        open_kurrentdb(url).await
    } else {
        let scheme = url.split_once(':').map_or(url, |(scheme, _)| scheme);
        Err(StoreError::Unavailable(format!(
            "unsupported event store URL scheme {scheme:?}: expected sqlite://, postgres://, \
             postgresql://, esdb://, esdb+discover://, kurrentdb:// or kurrentdb+discover://"
        )))
    }
}

#[cfg(feature = "kurrentdb")]
async fn open_kurrentdb(url: &str) -> Result<Arc<dyn EventStore>, StoreError> {
    // No schema to migrate: KurrentDB streams need none.
    Ok(Arc::new(KurrentDbEventStore::connect(url).await?))
}

#[cfg(not(feature = "kurrentdb"))]
async fn open_kurrentdb(_url: &str) -> Result<Arc<dyn EventStore>, StoreError> {
    Err(StoreError::Unavailable(NO_KURRENTDB_SUPPORT.into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn it_should_recognise_kurrentdb_urls_by_scheme() {
        assert!(is_kurrentdb_url("esdb://localhost:2113?tls=false"));
        assert!(is_kurrentdb_url("esdb+discover://cluster:2113"));
        assert!(is_kurrentdb_url(
            "kurrentdb://admin:changeit@localhost:2113"
        ));
        assert!(is_kurrentdb_url("kurrentdb+discover://cluster"));
        assert!(!is_kurrentdb_url("postgres://localhost/db"));
        assert!(!is_kurrentdb_url("sqlite://esdb.db"));
    }

    #[tokio::test]
    async fn it_should_name_the_schemes_it_opens_when_the_scheme_is_unknown() {
        match open_event_store("mysql://u:p@h/db").await {
            Err(StoreError::Unavailable(message)) => {
                assert!(message.contains("\"mysql\""), "{message}");
                assert!(message.contains("esdb://"), "{message}");
            }
            other => panic!("expected Unavailable, got {:?}", other.map(|_| ())),
        }
    }

    #[cfg(not(feature = "kurrentdb"))]
    #[tokio::test]
    async fn kurrentdb_urls_need_the_kurrentdb_feature() {
        for url in [
            "esdb://localhost:2113?tls=false",
            "kurrentdb+discover://cluster",
        ] {
            match open_event_store(url).await {
                Err(StoreError::Unavailable(message)) => assert_eq!(message, NO_KURRENTDB_SUPPORT),
                other => panic!("expected Unavailable, got {:?}", other.map(|_| ())),
            }
        }
    }

    #[cfg(feature = "kurrentdb")]
    #[tokio::test]
    async fn kurrentdb_urls_open_the_kurrentdb_adapter() {
        // Nothing listens on port 1: the adapter's start-up check answers, naming the node.
        match open_event_store("esdb://admin:pw123456@127.0.0.1:1?tls=false").await {
            Err(StoreError::Unavailable(message)) => {
                assert!(message.contains("127.0.0.1:1"), "{message}");
                assert!(!message.contains("pw123456"), "{message}");
                assert_ne!(message, NO_KURRENTDB_SUPPORT);
            }
            other => panic!("expected Unavailable, got {:?}", other.map(|_| ())),
        }
    }
}
