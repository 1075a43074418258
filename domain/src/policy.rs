//! Key-management policy: what an acting key may do to the other keys of its organisation
//! (DESIGN section 7, management). Pure functions over the actor's state and the target or
//! new key, written once and used by every command handler that creates, changes or
//! rotates a key.
//!
//! 1. **Grant**: a key cannot give a key a scope it does not hold itself.
//! 2. **Subordination**: a key may update (`PATCH`) or rotate only keys whose scopes are a
//!    subset of its own ([`PolicyError::NotSubordinate`], 403 `key_not_subordinate`), so
//!    an `api-keys:write`-only key cannot narrow, IP-lock or rename the root key.
//! 3. **Creation**: a new key's restrictions are at least as tight as its creator's
//!    ([`ensure_may_create`]): its expiry no later (a creator with an expiry cannot create
//!    a key without one), its allowed IPs within the creator's when the creator has any
//!    (every child network inside some network of the creator's; no allowlist is looser
//!    than any), its rate limit no higher than the creator's effective limit (a creator with
//!    an override: the child needs an override no higher).
//! 4. **Loosening**: a change that loosens a key's restriction (removes or widens its
//!    allowlist, extends or removes its expiry, raises its limit) is allowed only as far as
//!    the actor's own restriction still bounds the result ([`ensure_may_change`]); tightening
//!    is always allowed. Refusals of 3 and 4 are [`PolicyError::RestrictionNotHeld`]
//!    (403 `restriction_not_held`), naming the field.
//!
//! Rotation copies the old key's restrictions to the successor (never loosened) and needs
//! only rule 2. Revoking is deliberately outside this policy: any `api-keys:revoke` holder
//! of the organisation may revoke any of its keys (incident response must not wait for a
//! stronger key). Operators (the CLI, `cli:<user>`, and the server itself) are
//! [`Actor::Operator`] and bound by none of it.

use std::fmt;

use chrono::{DateTime, Utc};
use ipnet::{IpNet, Ipv4Net};

use crate::apikey;
use crate::plan::Plan;
use crate::scope::{Scope, Scopes};
use crate::values::{AllowedIps, Cidr, RateLimit};

/// A key's restrictions: where it may be used from, until when, and how fast.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Restrictions {
    /// Where it may be used from (empty: anywhere).
    pub allowed_ips: AllowedIps,
    /// When it stops working (`None`: never).
    pub expires_at: Option<DateTime<Utc>>,
    /// Its own requests-per-minute limit (`None`: the plan's).
    pub rate_limit_per_minute: Option<RateLimit>,
}

impl Restrictions {
    /// The restrictions of an existing key.
    pub fn of(key: &apikey::State) -> Restrictions {
        Restrictions {
            allowed_ips: key.allowed_ips.clone(),
            expires_at: key.expires_at,
            rate_limit_per_minute: key.rate_limit_per_minute,
        }
    }
}

/// What an acting key holds: the bounds of what it may do to other keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authority {
    /// Its scopes.
    pub scopes: Scopes,
    /// Its own restrictions.
    pub restrictions: Restrictions,
}

/// Who issues a key-management command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Actor {
    /// An operator at the CLI (`cli:<user>`) or the server itself (`system`): not bound by
    /// key policy.
    Operator,
    /// An API key, bound by what it holds.
    Key(Authority),
}

impl Actor {
    /// The actor for a command issued with `key` (its state when the request was
    /// authenticated).
    pub fn key(key: &apikey::State) -> Actor {
        Actor::Key(Authority {
            scopes: key.scopes.clone(),
            restrictions: Restrictions::of(key),
        })
    }
}

/// Which restriction a refusal is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Restriction {
    /// `expires_at`.
    Expiry,
    /// `allowed_ips`.
    AllowedIps,
    /// `rate_limit_per_minute`.
    RateLimit,
}

impl Restriction {
    /// The request field it is set by.
    pub const fn field(self) -> &'static str {
        match self {
            Restriction::Expiry => "expires_at",
            Restriction::AllowedIps => "allowed_ips",
            Restriction::RateLimit => "rate_limit_per_minute",
        }
    }
}

impl fmt::Display for Restriction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.field())
    }
}

/// Why the policy refused a command. All are 403s: the request is well-formed, the actor
/// is not allowed to do it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    /// The actor tried to grant a scope it does not hold (403 `scope_not_held`).
    #[error("cannot grant scope {0}, which the acting key does not hold")]
    ScopeNotHeld(Scope),
    /// The target key holds a scope the actor does not: a key may update or rotate only
    /// keys whose scopes are a subset of its own (403 `key_not_subordinate`).
    #[error(
        "the key holds the scope {scope}, which the acting key does not: a key may update or \
         rotate only keys whose scopes are a subset of its own"
    )]
    NotSubordinate {
        /// The first scope of the target's that the actor lacks.
        scope: Scope,
    },
    /// The result would be looser than the actor's own restriction (403
    /// `restriction_not_held`, naming the field).
    #[error("{restriction}: {reason}")]
    RestrictionNotHeld {
        /// Which restriction.
        restriction: Restriction,
        /// Why, in words.
        reason: &'static str,
    },
}

/// Rule 1: `requested` scopes must all be held by the actor.
pub fn ensure_may_grant(actor: &Actor, requested: &Scopes) -> Result<(), PolicyError> {
    match actor {
        Actor::Operator => Ok(()),
        Actor::Key(a) => match requested.first_missing_from(&a.scopes) {
            Some(missing) => Err(PolicyError::ScopeNotHeld(missing)),
            None => Ok(()),
        },
    }
}

/// Rule 2: the actor may update or rotate a key holding `target` only if `target` is a
/// subset of its own scopes.
pub fn ensure_may_manage(actor: &Actor, target: &Scopes) -> Result<(), PolicyError> {
    match actor {
        Actor::Operator => Ok(()),
        Actor::Key(a) => match target.first_missing_from(&a.scopes) {
            Some(scope) => Err(PolicyError::NotSubordinate { scope }),
            None => Ok(()),
        },
    }
}

/// Rules 1 and 3: the actor may create a key with `scopes` and `child` restrictions in an
/// organisation on `plan` (whose per-key limit is the effective limit of a key without an
/// override).
pub fn ensure_may_create(
    actor: &Actor,
    scopes: &Scopes,
    child: &Restrictions,
    plan: Plan,
) -> Result<(), PolicyError> {
    ensure_may_grant(actor, scopes)?;
    let Actor::Key(a) = actor else {
        return Ok(());
    };
    let bound = &a.restrictions;
    if !expiry_within(child.expires_at, bound.expires_at) {
        return Err(PolicyError::RestrictionNotHeld {
            restriction: Restriction::Expiry,
            reason: "the acting key expires: a key it creates must expire no later",
        });
    }
    if !ips_within(&child.allowed_ips, &bound.allowed_ips) {
        return Err(PolicyError::RestrictionNotHeld {
            restriction: Restriction::AllowedIps,
            reason: "the acting key has an IP allowlist: every network of a key it creates \
                     must lie within it",
        });
    }
    if !rate_within(
        child.rate_limit_per_minute,
        bound.rate_limit_per_minute,
        plan,
    ) {
        return Err(PolicyError::RestrictionNotHeld {
            restriction: Restriction::RateLimit,
            reason: "a key it creates needs a rate limit no higher than the acting key's \
                     (an override no higher than the acting key's override, if it has one)",
        });
    }
    Ok(())
}

/// Rule 4: the actor may change a key's restrictions from `before` to `after` if every
/// restriction is tightened, kept, or loosened no further than the actor's own bound.
/// (Rule 2 is checked apart, with [`ensure_may_manage`].)
pub fn ensure_may_change(
    actor: &Actor,
    before: &Restrictions,
    after: &Restrictions,
    plan: Plan,
) -> Result<(), PolicyError> {
    let Actor::Key(a) = actor else {
        return Ok(());
    };
    let bound = &a.restrictions;
    if !(expiry_within(after.expires_at, before.expires_at)
        || expiry_within(after.expires_at, bound.expires_at))
    {
        return Err(PolicyError::RestrictionNotHeld {
            restriction: Restriction::Expiry,
            reason: "extending or removing a key's expiry needs an acting key that expires no \
                     earlier than the new expiry (or never)",
        });
    }
    if !ips_within_either(&after.allowed_ips, &before.allowed_ips, &bound.allowed_ips) {
        return Err(PolicyError::RestrictionNotHeld {
            restriction: Restriction::AllowedIps,
            reason: "removing a key's IP allowlist or adding networks to it needs an acting \
                     key whose own allowlist covers them (or that has none)",
        });
    }
    if !(rate_within(
        after.rate_limit_per_minute,
        before.rate_limit_per_minute,
        plan,
    ) || rate_within(
        after.rate_limit_per_minute,
        bound.rate_limit_per_minute,
        plan,
    )) {
        return Err(PolicyError::RestrictionNotHeld {
            restriction: Restriction::RateLimit,
            reason: "raising a key's rate limit needs an acting key whose own limit is at \
                     least the new one",
        });
    }
    Ok(())
}

/// Whether a key expiring at `child` stops no later than one expiring at `bound`
/// (`None`: never).
pub fn expiry_within(child: Option<DateTime<Utc>>, bound: Option<DateTime<Utc>>) -> bool {
    match (child, bound) {
        (_, None) => true,
        (None, Some(_)) => false,
        (Some(c), Some(b)) => c <= b,
    }
}

/// Whether every address `child` permits, `bound` permits too: an empty `bound` permits
/// anywhere; an empty `child` (anywhere) is within only an empty `bound`; otherwise every
/// network of `child` lies inside some network of `bound`.
pub fn ips_within(child: &AllowedIps, bound: &AllowedIps) -> bool {
    if bound.is_empty() {
        return true;
    }
    !child.is_empty() && child.iter().all(|c| covered(c, bound))
}

/// Whether every address `after` permits, `before` or `bound` permits: the actor adds no
/// network that neither the key already had nor the actor holds.
fn ips_within_either(after: &AllowedIps, before: &AllowedIps, bound: &AllowedIps) -> bool {
    if before.is_empty() || bound.is_empty() {
        return true;
    }
    !after.is_empty()
        && after
            .iter()
            .all(|c| covered(c, before) || covered(c, bound))
}

/// Whether `net` lies inside some network of the non-empty `set`.
fn covered(net: Cidr, set: &AllowedIps) -> bool {
    set.iter().any(|outer| cidr_within(net, outer))
}

/// Whether network `inner` lies inside network `outer`. An IPv4-mapped IPv6 network
/// (`::ffff:a.b.c.d/n`, n >= 96) counts as its IPv4 network, as addresses do when a key's
/// allowlist is checked.
pub fn cidr_within(inner: Cidr, outer: Cidr) -> bool {
    let (inner, outer) = (inner.as_ipnet(), outer.as_ipnet());
    if outer.contains(&inner) {
        return true;
    }
    match (inner, outer) {
        (IpNet::V6(v6), IpNet::V4(outer4)) if v6.prefix_len() >= 96 => v6
            .network()
            .to_ipv4_mapped()
            .and_then(|addr| Ipv4Net::new(addr, v6.prefix_len() - 96).ok())
            .is_some_and(|inner4| outer4.contains(&inner4)),
        _ => false,
    }
}

/// Whether a key with override `child` is limited at least as tightly as one with override
/// `bound` in an organisation on `plan`. A `bound` override is only respected by a child
/// override no higher (a child on the plan's limit would follow later plan changes past
/// it); without a `bound` override, a child override must not exceed the plan's limit.
pub fn rate_within(child: Option<RateLimit>, bound: Option<RateLimit>, plan: Plan) -> bool {
    match (child, bound) {
        (None, None) => true,
        (Some(c), None) => c.per_minute() <= plan.requests_per_minute(),
        (None, Some(_)) => false,
        (Some(c), Some(b)) => c.per_minute() <= b.per_minute(),
    }
}

#[cfg(test)]
mod tests;
