//! keyledger's write side: the event store ([`store`]: SQLite for the embedded default,
//! Postgres for production, KurrentDB / EventStoreDB behind the `kurrentdb` cargo feature)
//! behind the `domain::store::EventStore` port, the key
//! lifecycle's command handlers ([`keys::KeyService`]: load an aggregate, decide, append
//! with an expected version), and argon2 token hashing ([`hashing`]).
//!
//! Adapters are reached through [`open_event_store`], which picks one by URL scheme, or
//! constructed directly ([`SqliteEventStore`], [`PostgresEventStore`]).
#![forbid(unsafe_code)]

pub mod audit;
pub mod hashing;
pub mod keys;
pub mod store;

pub use keys::{CommandContext, CommandError, KeyService};
#[cfg(feature = "conformance")]
pub use store::conformance;
#[cfg(feature = "kurrentdb")]
pub use store::{KurrentDbEventStore, kurrentdb};
pub use store::{
    NO_KURRENTDB_SUPPORT, PendingAppend, PostgresEventStore, SqliteEventStore, is_kurrentdb_url,
    open_event_store, postgres, sqlite,
};
