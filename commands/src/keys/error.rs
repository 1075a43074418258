//! Why a command was refused or failed, with the three kinds kept apart: the domain
//! refused it (the aggregate's or the policy's own error, as the domain said it), other
//! writers won every attempt (contention: nothing was refused, the same command may be
//! sent again), or the store failed. As in cqrs-es (`UserError` vs `AggregateConflict`)
//! and disintegrate (`Error<DE> { EventStore, Domain(DE) }`). Nothing here is HTTP: `api`
//! maps each case to a status and a code, in one place (`api/src/http/error.rs`).

use domain::apikey;
use domain::chain::ChainBreak;
use domain::organization;
use domain::policy::PolicyError;
use domain::store::StoreError;

/// Why a command was refused or failed.
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    /// The key refused the command: it does not exist or belongs to another organisation
    /// (`NotFound`: the two are indistinguishable), it is revoked, expired or rotated, or a
    /// value is refused (expiry, grace period, reason).
    #[error(transparent)]
    Key(#[from] apikey::Error),
    /// The organisation refused it: it does not exist, its plan may not create keys or its
    /// key limit is reached, or it exists already.
    #[error(transparent)]
    Org(#[from] organization::Error),
    /// The key-management policy refused the acting key (`domain::policy`): a scope it
    /// does not hold, a key it may not manage, a restriction looser than its own.
    #[error(transparent)]
    Policy(#[from] PolicyError),
    /// `If-Match` named another version than the key's current one: the caller decided on
    /// a version that is gone.
    #[error("the key is at version {current}")]
    PreconditionFailed {
        /// The key's current version.
        current: u64,
    },
    /// Other writers moved the command's streams on in every one of its attempts: nothing
    /// was refused, and the same command may be sent again as is.
    #[error("too much contention: gave up after {attempts} attempts; try again")]
    Contention {
        /// How many times the command was decided.
        attempts: u32,
    },
    /// The hash chain of a stream the command read is broken: an event was altered,
    /// deleted, reordered or had its hash stripped (`domain::chain`). Nothing is decided
    /// from that stream: a key's or an organisation's ([`ChainBreak::is_org`]). Already
    /// logged and counted.
    #[error("hash chain broken at {0}")]
    Integrity(Box<ChainBreak>),
    /// The event store failed (unreachable, or corrupt data).
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Not the caller's doing: a token could not be generated or hashed, or a value this
    /// crate builds itself (a constant name) was refused. Never contains a token.
    #[error("internal error: {0}")]
    Internal(String),
}
