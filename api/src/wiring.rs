//! Builds the concrete adapters from configuration.

use std::sync::Arc;

use anyhow::Context;
use domain::store::EventStore;
use projections::ReadDb;

use crate::config::StoreConfig;

/// The stores a node runs on.
pub struct Stores {
    /// Events.
    pub events: Arc<dyn EventStore>,
    /// Read models.
    pub read_db: ReadDb,
}

/// Connects to (and migrates) the event store and the read-model database.
pub async fn open_stores(cfg: &StoreConfig) -> anyhow::Result<Stores> {
    let events = commands::open_event_store(cfg.eventstore_url())
        .await
        .with_context(|| {
            format!(
                "KEYLEDGER_EVENTSTORE_URL / KEYLEDGER_DATABASE_URL: cannot open the event store at {}",
                projections::db::redact_url(cfg.eventstore_url())
            )
        })?;
    let read_db = ReadDb::connect(&cfg.database_url).await.with_context(|| {
        format!(
            "KEYLEDGER_DATABASE_URL: cannot open the read-model database at {}",
            projections::db::redact_url(&cfg.database_url)
        )
    })?;
    projections::db::apply_migrations(
        &cfg.database_url,
        sqlx::migrate!("./migrations/sqlite"),
        sqlx::migrate!("./migrations/postgres"),
    )
    .await
    .context("KEYLEDGER_DATABASE_URL: cannot migrate the api's tables")?;
    Ok(Stores { events, read_db })
}

/// Every read model this build maintains, in the order they are started.
pub fn projections() -> Vec<Arc<dyn projections::Projection>> {
    projections::all_projections()
}
