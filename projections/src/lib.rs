//! keyledger's read side: the projector runtime and the read models it maintains.
//!
//! A projector follows the event store's global order from its checkpoint, applies each
//! event to its read model, and stores the new checkpoint in the same transaction as the
//! rows it changed, so a crash or restart neither loses nor double-counts an event.
//! Read models live in SQLite (embedded default) or Postgres; queries go through sqlx's
//! `Any` driver so that each statement is written once for both back ends.
#![forbid(unsafe_code)]

use std::sync::Arc;

pub mod db;
pub mod feed;
pub mod integrity;
pub mod keys;
pub mod orgs;
pub mod page;
pub mod runtime;
mod sqlval;
pub mod usage;

pub use db::{Backend, ReadDb};
pub use feed::Feed;
pub use keys::{KeyListProjection, KeyQueries, KeyRow, KeyUsage};
pub use orgs::{OrgQueries, OrgRow, OrgSummary, OrganizationsProjection};
pub use page::{Cursor, Page, QueryError};
pub use runtime::{Projection, ProjectionError, Projector, ProjectorHandle, rebuild};
pub use usage::{
    Bucket, Granularity, RouteUsage, UsageCounts, UsageProjection, UsageQueries, UsageScope,
    UsageTotals,
};

/// Every read model this crate maintains, for the server to run and for
/// `keyledger projections rebuild [NAME]` to find by [`Projection::name`].
pub fn all_projections() -> Vec<Arc<dyn Projection>> {
    vec![
        Arc::new(KeyListProjection),
        Arc::new(OrganizationsProjection),
        Arc::new(UsageProjection),
    ]
}
