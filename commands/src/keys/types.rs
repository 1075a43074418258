//! What commands take and give back: who issued them, the inputs of a create and a
//! patch, and where a command left the store.

use chrono::{DateTime, Utc};
use domain::apikey;
use domain::store::Metadata;
use domain::{AllowedIps, Environment, KeyId, KeyName, RateLimit, Scopes, Token};

/// Who issued a command, and in answer to which request: becomes every event's metadata.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CommandContext {
    /// The acting key's id, `cli:<user>`, or `system` (the server itself).
    pub actor: String,
    /// The HTTP request id or CLI invocation id.
    pub request_id: Option<String>,
    /// Groups every event caused by one user action.
    pub correlation_id: Option<String>,
}

impl CommandContext {
    /// A command issued by `actor` with no request id.
    pub fn new(actor: impl Into<String>) -> CommandContext {
        CommandContext {
            actor: actor.into(),
            request_id: None,
            correlation_id: None,
        }
    }

    /// A command issued by the server itself (bootstrap).
    pub fn system() -> CommandContext {
        CommandContext::new("system")
    }

    /// A command issued through the CLI by `user`: actor `cli:<user>`.
    pub fn cli(user: &str) -> CommandContext {
        CommandContext::new(format!("cli:{user}"))
    }

    /// A command issued by an API key: actor = the key id.
    pub fn key(id: KeyId) -> CommandContext {
        CommandContext::new(id.to_string())
    }

    /// The events' metadata (no causation id, no hash chain yet).
    pub fn metadata(&self) -> Metadata {
        Metadata {
            actor: self.actor.clone(),
            request_id: self.request_id.clone(),
            correlation_id: self.correlation_id.clone(),
            causation_id: None,
            prev_hash: None,
            hash: None,
        }
    }
}

/// Where a command left the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Written {
    /// The global position of the last appended event: what a read model must have
    /// passed for read-your-writes. When the command changed nothing, the position of the
    /// stream's last event (0 for an empty stream).
    pub position: u64,
    /// The (main) stream's version after the command: the key's, or the organisation's
    /// for [`super::KeyService::change_plan`]. Use it as the `ETag` / `If-Match` value.
    pub version: u64,
}

/// A key to create.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewKey {
    /// Its name.
    pub name: KeyName,
    /// Its scopes; `None` means [`domain::Scope::data_scopes`].
    pub scopes: Option<Scopes>,
    /// `live` or `test`.
    pub environment: Environment,
    /// Where it may be used from (empty: anywhere).
    pub allowed_ips: AllowedIps,
    /// When it stops working, if ever; must be in the future.
    pub expires_at: Option<DateTime<Utc>>,
    /// Its own rate limit, replacing the plan's.
    pub rate_limit_per_minute: Option<RateLimit>,
}

/// A key just created (or made by a rotation), with its token: the only time the token
/// exists outside its owner's hands.
#[derive(Debug, Clone)]
pub struct CreatedKey {
    /// The key's state right after creation (version 1).
    pub key: apikey::State,
    /// The full token. Show it once; never log it.
    pub token: Token,
    /// Where the append left the store.
    pub written: Written,
}

/// Changes to a key; `None` leaves a field alone. All changes are appended at once.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeyPatch {
    /// A new name.
    pub name: Option<KeyName>,
    /// New scopes (replacing the old ones).
    pub scopes: Option<Scopes>,
    /// New allowed networks (empty: anywhere).
    pub allowed_ips: Option<AllowedIps>,
    /// A new expiry: `Some(None)` clears it, `Some(Some(t))` sets it (in the future).
    pub expires_at: Option<Option<DateTime<Utc>>>,
}
