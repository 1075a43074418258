//! keyledger's read side: the projector runtime and the read models it maintains.
//!
//! A projector follows the event store's global order from its checkpoint, applies each
//! event to its read model, and stores the new checkpoint in the same transaction as the
//! rows it changed, so a crash or restart neither loses nor double-counts an event.
//! Read models live in SQLite (embedded default) or Postgres; queries go through sqlx's
//! `Any` driver so that each statement is written once for both back ends.
#![forbid(unsafe_code)]

pub mod db;
pub mod page;
pub mod runtime;

pub use db::{Backend, ReadDb};
pub use page::{Cursor, Page, QueryError};
pub use runtime::{Projection, ProjectionError, Projector, ProjectorHandle, rebuild};

