//! The `ApiKey` aggregate (stream `apikey-<id>`): a key's lifecycle.
//!
//! Rules: a revoked key never becomes active again; every change to a revoked key is
//! refused, except `Revoke`, which is idempotent; commands that change nothing produce
//! no events; an expiry is never in the past; rotation never extends a key's life.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, TimeDelta, Utc};
use serde::{Deserialize, Serialize};

use crate::aggregate::Aggregate;
use crate::events::{
    AllowedIpsChanged, ApiKeyEvent, ExpiryChanged, KeyCreated, KeyRenamed, KeyRevoked, KeyRotated,
    ScopesChanged, SecretHash,
};
use crate::ids::{KeyId, OrgId};
use crate::plan::Plan;
use crate::scope::Scopes;
use crate::token::{self, Environment};
use crate::values::{
    AllowedIps, Expiry, ExpiryError, GracePeriod, GracePeriodError, KeyName, RateLimit,
    ReasonError, RevocationReason,
};

/// The events of this aggregate.
pub type Event = ApiKeyEvent;

/// A key's status at a given moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum KeyStatus {
    /// Usable.
    Active,
    /// Revoked: for good.
    Revoked,
    /// Past its expiry (including the end of a rotation's grace period).
    Expired,
}

impl KeyStatus {
    /// `"active"`, `"revoked"` or `"expired"`.
    pub const fn as_str(self) -> &'static str {
        match self {
            KeyStatus::Active => "active",
            KeyStatus::Revoked => "revoked",
            KeyStatus::Expired => "expired",
        }
    }
}

impl fmt::Display for KeyStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An unknown status name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown key status {0:?}: expected active, revoked or expired")]
pub struct KeyStatusError(pub String);

impl FromStr for KeyStatus {
    type Err = KeyStatusError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "active" => Ok(KeyStatus::Active),
            "revoked" => Ok(KeyStatus::Revoked),
            "expired" => Ok(KeyStatus::Expired),
            other => Err(KeyStatusError(other.to_owned())),
        }
    }
}

/// An existing key. "Not yet created" is `None` in `Option<State>`.
///
/// `Debug` redacts the secret hash and `Serialize` leaves it out, so the state can be
/// printed as is (e.g. by `keyledger audit`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct State {
    /// Its id.
    pub id: KeyId,
    /// The organisation that owns it.
    pub org_id: OrgId,
    /// Its name.
    pub name: KeyName,
    /// `live` or `test`.
    pub environment: Environment,
    /// What it may do.
    pub scopes: Scopes,
    /// Where it may be used from (empty: anywhere).
    pub allowed_ips: AllowedIps,
    /// When it stops working, if ever.
    pub expires_at: Option<DateTime<Utc>>,
    /// Its own rate limit, replacing the plan's.
    pub rate_limit_per_minute: Option<RateLimit>,
    /// argon2id PHC string of its token. Never serialized.
    #[serde(skip_serializing)]
    pub secret_hash: SecretHash,
    /// The displayed prefix, as its `KeyCreated` recorded it: the token's first
    /// [`token::PREFIX_LEN`] characters (keys of the first releases: 16). Never recomputed.
    pub prefix: String,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// When it was revoked, if it was.
    pub revoked_at: Option<DateTime<Utc>>,
    /// Why it was revoked, if a reason was given.
    pub revocation_reason: Option<String>,
    /// The key it replaced, if it was made by a rotation.
    pub rotated_from: Option<KeyId>,
    /// Its successor, if it was rotated.
    pub rotated_to: Option<KeyId>,
    /// The stream version: the number of events folded so far. Caches compare it so
    /// that an older fill never replaces a newer entry.
    pub version: u64,
}

impl State {
    /// The status at `now`. Revocation wins over expiry, and nothing undoes it.
    pub fn status(&self, now: DateTime<Utc>) -> KeyStatus {
        if self.revoked_at.is_some() {
            KeyStatus::Revoked
        } else if self.expires_at.is_some_and(|at| at <= now) {
            KeyStatus::Expired
        } else {
            KeyStatus::Active
        }
    }

    /// Whether the key is revoked.
    pub fn is_revoked(&self) -> bool {
        self.revoked_at.is_some()
    }

    /// Requests per minute on its organisation's `plan`: the plan's limit, or the key's own
    /// limit if that is lower ([`Plan::effective_requests_per_minute`]).
    pub fn requests_per_minute(&self, plan: Plan) -> u32 {
        plan.effective_requests_per_minute(self.rate_limit_per_minute)
    }
}

/// Everything needed to create a key. The handler hashes the token and fills
/// `secret_hash` and `prefix` before deciding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreateKey {
    /// The new key's id (also encoded in its token).
    pub key_id: KeyId,
    /// The owning organisation.
    pub org_id: OrgId,
    /// Its name.
    pub name: KeyName,
    /// `live` or `test`.
    pub environment: Environment,
    /// Its scopes (the handler defaults them to [`crate::Scope::data_scopes`] and checks
    /// them and the restrictions below against the acting key: [`crate::policy`]).
    pub scopes: Scopes,
    /// Where it may be used from.
    pub allowed_ips: AllowedIps,
    /// When it stops working, if ever; must be after `now` ([`Expiry`]).
    pub expires_at: Option<DateTime<Utc>>,
    /// Its own rate limit.
    pub rate_limit_per_minute: Option<RateLimit>,
    /// argon2id PHC string of its token.
    pub secret_hash: SecretHash,
    /// The token's displayed prefix; must be [`token::prefix_of`] `key_id` and
    /// `environment` (today's length: only `KeyCreated` events already stored carry the
    /// legacy one).
    pub prefix: String,
    /// The key it replaces, when made by a rotation.
    pub rotated_from: Option<KeyId>,
    /// The command's clock.
    pub now: DateTime<Utc>,
}

/// What can be asked of a key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Create the key.
    CreateKey(Box<CreateKey>),
    /// Rename it.
    Rename {
        /// The new name.
        name: KeyName,
    },
    /// Replace its scopes.
    ChangeScopes {
        /// The new scopes.
        scopes: Scopes,
    },
    /// Replace its allowed networks (empty: anywhere).
    ChangeAllowedIps {
        /// The new networks.
        allowed_ips: AllowedIps,
    },
    /// Set or clear its expiry.
    ChangeExpiry {
        /// The new expiry (`None`: never); must be after `now` ([`Expiry`]).
        expires_at: Option<DateTime<Utc>>,
        /// The command's clock.
        now: DateTime<Utc>,
    },
    /// Revoke it, for good. Idempotent.
    Revoke {
        /// Why, as [`RevocationReason::parse`] accepts it (trimmed; blank means none).
        reason: Option<String>,
        /// The command's clock.
        now: DateTime<Utc>,
    },
    /// Rotate it: the handler creates `successor_id` with the same name, scopes and
    /// IPs; this key stops at `now + grace_period` (or its own expiry, if sooner).
    Rotate {
        /// The new key.
        successor_id: KeyId,
        /// How long the old key keeps working, as [`GracePeriod::new`] accepts it (0 to
        /// 30 days).
        grace_period: TimeDelta,
        /// The command's clock.
        now: DateTime<Utc>,
    },
}

/// Why a key command was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// The key does not exist (404).
    #[error("API key not found")]
    NotFound,
    /// `CreateKey` on an existing key (409).
    #[error("API key already exists")]
    AlreadyExists,
    /// The key is revoked; only `Revoke` is still accepted (409 `key_revoked`).
    #[error("API key is revoked")]
    Revoked,
    /// The key has expired and cannot be rotated or given a new expiry (409 `key_expired`).
    #[error("API key has expired")]
    Expired,
    /// The key was already rotated (409 `key_rotated`).
    #[error("API key was already rotated to {successor}")]
    AlreadyRotated {
        /// Its successor.
        successor: KeyId,
    },
    /// An expiry at or before the command's clock ([`Expiry`]; 422 on `expires_at`).
    #[error("expires_at {0}")]
    InvalidExpiry(ExpiryError),
    /// A grace period below zero or above 30 days ([`GracePeriod`]; 422 on
    /// `grace_period_seconds`).
    #[error("grace period {0}")]
    InvalidGracePeriod(GracePeriodError),
    /// A key cannot succeed itself (a handler bug: successors get fresh ids; 500).
    #[error("a key cannot be rotated to itself")]
    InvalidSuccessor,
    /// A revocation reason that is too long or holds a control character other than a tab
    /// or a line break ([`RevocationReason`]; 422 on `reason`). Checked before anything is
    /// written, so a revocation never fails in the store because of its reason.
    #[error("reason {0}")]
    InvalidReason(ReasonError),
    /// The prefix does not belong to the key id and environment (a handler bug; 500).
    #[error("prefix does not match the key id and environment")]
    PrefixMismatch,
}

/// Decides what `command` does to the key.
pub fn decide(state: &Option<State>, command: Command) -> Result<Vec<Event>, Error> {
    let key = match (state, command) {
        (None, Command::CreateKey(create)) => return create_key(*create),
        (Some(_), Command::CreateKey(_)) => return Err(Error::AlreadyExists),
        (None, _) => return Err(Error::NotFound),
        (Some(key), Command::Revoke { reason, now }) => return revoke(key, reason, now),
        (Some(key), _) if key.is_revoked() => return Err(Error::Revoked),
        (Some(key), command) => (key, command),
    };
    match key {
        (key, Command::Rename { name }) => Ok(if name == key.name {
            vec![]
        } else {
            vec![KeyRenamed { name }.into()]
        }),
        (key, Command::ChangeScopes { scopes }) => Ok(if scopes == key.scopes {
            vec![]
        } else {
            vec![
                ScopesChanged {
                    before: key.scopes.clone(),
                    after: scopes,
                }
                .into(),
            ]
        }),
        (key, Command::ChangeAllowedIps { allowed_ips }) => Ok(if allowed_ips == key.allowed_ips {
            vec![]
        } else {
            vec![
                AllowedIpsChanged {
                    before: key.allowed_ips.clone(),
                    after: allowed_ips,
                }
                .into(),
            ]
        }),
        (key, Command::ChangeExpiry { expires_at, now }) => {
            if let Some(successor) = key.rotated_to {
                // The grace period is over when the rotation said; extending it would
                // keep a replaced key alive.
                return Err(Error::AlreadyRotated { successor });
            }
            if key.status(now) == KeyStatus::Expired {
                return Err(Error::Expired);
            }
            if let Some(at) = expires_at {
                Expiry::parse(at, now).map_err(Error::InvalidExpiry)?;
            }
            Ok(if expires_at == key.expires_at {
                vec![]
            } else {
                vec![ExpiryChanged { expires_at }.into()]
            })
        }
        (
            key,
            Command::Rotate {
                successor_id,
                grace_period,
                now,
            },
        ) => {
            if let Some(successor) = key.rotated_to {
                return Err(Error::AlreadyRotated { successor });
            }
            if key.status(now) == KeyStatus::Expired {
                return Err(Error::Expired);
            }
            let grace_period = GracePeriod::new(grace_period).map_err(Error::InvalidGracePeriod)?;
            if successor_id == key.id {
                return Err(Error::InvalidSuccessor);
            }
            // Only a clock near the end of time overflows.
            let end_of_grace = now
                .checked_add_signed(grace_period.as_delta())
                .ok_or(Error::InvalidGracePeriod(GracePeriodError))?;
            // Rotation never extends a key's life.
            let old_key_expires_at = key
                .expires_at
                .map_or(end_of_grace, |at| at.min(end_of_grace));
            Ok(vec![
                KeyRotated {
                    successor_id,
                    old_key_expires_at,
                    rotated_at: now,
                }
                .into(),
            ])
        }
        (_, Command::CreateKey(_)) => Err(Error::AlreadyExists),
        (key, Command::Revoke { reason, now }) => revoke(key, reason, now),
    }
}

fn create_key(c: CreateKey) -> Result<Vec<Event>, Error> {
    if let Some(at) = c.expires_at {
        Expiry::parse(at, c.now).map_err(Error::InvalidExpiry)?;
    }
    if c.prefix != token::prefix_of(c.environment, c.key_id) {
        return Err(Error::PrefixMismatch);
    }
    Ok(vec![
        KeyCreated {
            key_id: c.key_id,
            org_id: c.org_id,
            name: c.name,
            environment: c.environment,
            scopes: c.scopes,
            allowed_ips: c.allowed_ips,
            expires_at: c.expires_at,
            rate_limit_per_minute: c.rate_limit_per_minute,
            secret_hash: c.secret_hash,
            prefix: c.prefix,
            rotated_from: c.rotated_from,
            created_at: c.now,
        }
        .into(),
    ])
}

fn revoke(key: &State, reason: Option<String>, now: DateTime<Utc>) -> Result<Vec<Event>, Error> {
    if key.is_revoked() {
        return Ok(vec![]);
    }
    let reason =
        RevocationReason::parse_optional(reason.as_deref()).map_err(Error::InvalidReason)?;
    Ok(vec![
        KeyRevoked {
            reason: reason.map(String::from),
            revoked_at: now,
        }
        .into(),
    ])
}

/// Applies one event. An event other than `KeyCreated` on a missing key is ignored (the
/// store never holds such a stream). Once revoked, a key stays revoked.
pub fn evolve(state: Option<State>, event: &Event) -> Option<State> {
    match (state, event) {
        (None, Event::KeyCreated(e)) => Some(State {
            id: e.key_id,
            org_id: e.org_id,
            name: e.name.clone(),
            environment: e.environment,
            scopes: e.scopes.clone(),
            allowed_ips: e.allowed_ips.clone(),
            expires_at: e.expires_at,
            rate_limit_per_minute: e.rate_limit_per_minute,
            secret_hash: e.secret_hash.clone(),
            prefix: e.prefix.clone(),
            created_at: e.created_at,
            revoked_at: None,
            revocation_reason: None,
            rotated_from: e.rotated_from,
            rotated_to: None,
            version: 1,
        }),
        (None, _) => None,
        (Some(mut key), event) => {
            key.version += 1;
            match event {
                Event::KeyCreated(_) => {}
                Event::KeyRenamed(e) => key.name = e.name.clone(),
                Event::ScopesChanged(e) => key.scopes = e.after.clone(),
                Event::AllowedIpsChanged(e) => key.allowed_ips = e.after.clone(),
                Event::ExpiryChanged(e) => key.expires_at = e.expires_at,
                Event::KeyRotated(e) => {
                    key.rotated_to = Some(e.successor_id);
                    key.expires_at = Some(e.old_key_expires_at);
                }
                Event::KeyRevoked(e) => {
                    // The first revocation is the one that counts.
                    if key.revoked_at.is_none() {
                        key.revoked_at = Some(e.revoked_at);
                        key.revocation_reason = e.reason.clone();
                    }
                }
            }
            Some(key)
        }
    }
}

/// The `ApiKey` aggregate, for code generic over [`Aggregate`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ApiKey;

impl Aggregate for ApiKey {
    type State = Option<State>;
    type Command = Command;
    type Event = Event;
    type Error = Error;

    fn initial() -> Self::State {
        None
    }

    fn decide(state: &Self::State, command: Command) -> Result<Vec<Event>, Error> {
        decide(state, command)
    }

    fn evolve(state: Self::State, event: &Event) -> Self::State {
        evolve(state, event)
    }
}

#[cfg(test)]
mod tests;
