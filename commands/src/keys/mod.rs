//! The key lifecycle's command handlers, as one facade: [`KeyService`].
//!
//! Every handler has the same shape: load the streams it needs from the event store,
//! decide with the pure aggregates (`domain::apikey`, `domain::organization`), append
//! with an `Exact` (or `NoStream`) expected version, and on a `WrongExpectedVersion`
//! reload and decide again, a bounded number of times, with a small jittered backoff.
//! Because the re-decision sees the winner's events, rules that span keys (the plan's key
//! limit) hold under concurrency: the organisation's stream is appended to in the same
//! atomic `append_many` as the key's stream, so two creates cannot both pass against the
//! same organisation version.
//!
//! No token, secret or hash ever reaches a span field or a log line: spans skip every
//! argument that could hold one, `Token`'s `Debug` shows only the prefix and
//! `SecretHash`'s shows nothing.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use argon2::password_hash::rand_core::{OsRng, RngCore};
use chrono::{DateTime, TimeDelta, Utc};
use domain::aggregate::Aggregate;
use domain::apikey::{self, ApiKey, KeyStatus};
use domain::chain::{ChainBreak, CheckedFold};
use domain::events::{ApiKeyEvent, OrganizationEvent};
use domain::organization::{self, Organization};
use domain::policy::{self, Actor, PolicyError, Restrictions};
use domain::scope::ScopeError;
use domain::store::{
    AppendOutcome, AppendRequest, EventStore, ExpectedVersion, Metadata, StoreError,
};
use domain::{
    AllowedIps, Environment, KeyId, KeyName, OrgId, OrgName, Plan, RateLimit, Scope, Scopes,
    SecretHash, Token, token,
};
use futures::{StreamExt, TryStreamExt};
use uuid::Uuid;

use crate::hashing;

/// The bootstrap organisation's fixed id (`00000000-0000-7000-8000-000000000001`).
///
/// Fixed so that nodes racing to bootstrap an empty store all append `NoStream` to the
/// same stream, `org-00000000-0000-7000-8000-000000000001`: exactly one wins.
pub const BOOTSTRAP_ORG_ID: OrgId =
    OrgId::from_uuid(Uuid::from_u128(0x0000_0000_0000_7000_8000_0000_0000_0001));

/// The bootstrap organisation's name.
pub const BOOTSTRAP_ORG_NAME: &str = "default";

/// The name of an organisation's root key.
pub const ROOT_KEY_NAME: &str = "root";

/// How many times a command is decided before contention is reported as
/// [`CommandError::Contention`].
const MAX_ATTEMPTS: u32 = 25;

/// Events per `read_stream` call while loading an aggregate.
const PAGE: usize = 1000;

/// Key streams loaded at once while counting an organisation's active keys.
const LOAD_CONCURRENCY: usize = 8;

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
    /// for [`KeyService::change_plan`]. Use it as the `ETag` / `If-Match` value.
    pub version: u64,
}

/// A key to create.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewKey {
    /// Its name.
    pub name: KeyName,
    /// Its scopes; `None` means [`Scope::data_scopes`].
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

/// Why a command was refused or failed. Suggested HTTP statuses in brackets.
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    /// The key or organisation does not exist, or the key belongs to another
    /// organisation (404).
    #[error("not found")]
    NotFound,
    /// The organisation's plan (starter) may not create keys (403 `plan_required`).
    #[error(
        "the organization's plan cannot create API keys; upgrade to professional or enterprise"
    )]
    PlanRequired,
    /// The plan's limit of active keys is reached (403 `key_limit_reached`).
    #[error("the plan allows at most {limit} active keys")]
    KeyLimitReached {
        /// The plan's limit.
        limit: u32,
    },
    /// The acting key tried to grant a scope it does not hold (403 `scope_not_held`).
    #[error("cannot grant scope {0} that the acting key does not hold")]
    ScopeNotHeld(Scope),
    /// The target key holds a scope the acting key does not: a key may update or rotate
    /// only keys whose scopes are a subset of its own (403 `key_not_subordinate`).
    #[error("the key holds scope {scope}, which the acting key does not")]
    KeyNotSubordinate {
        /// The first of the target's scopes that the acting key lacks.
        scope: Scope,
    },
    /// The new or changed key would be less restricted than the acting key allows
    /// (403 `restriction_not_held`, naming the field): see `domain::policy`.
    #[error("{field}: {message}")]
    RestrictionNotHeld {
        /// `expires_at`, `allowed_ips` or `rate_limit_per_minute`.
        field: &'static str,
        /// Why.
        message: String,
    },
    /// The key is revoked; only revoking it again is accepted (409 `key_revoked`).
    #[error("API key is revoked")]
    KeyRevoked,
    /// The key has expired and cannot be rotated or given a new expiry (409 `key_expired`).
    #[error("API key has expired")]
    KeyExpired,
    /// `If-Match` named another version than the key's current one (412).
    #[error("the key is at version {current}")]
    PreconditionFailed {
        /// The key's current version.
        current: u64,
    },
    /// A field's value is refused (422), e.g. `expires_at` in the past or a
    /// `grace_period_seconds` out of range.
    #[error("{field}: {message}")]
    Invalid {
        /// The request field at fault.
        field: &'static str,
        /// Why.
        message: String,
    },
    /// The key was already rotated: it cannot be rotated again or given a new expiry
    /// (409 `key_rotated`).
    #[error("API key was already rotated to {successor}")]
    KeyRotated {
        /// Its successor.
        successor: KeyId,
    },
    /// The key or organisation to create exists already (409 `already_exists`).
    #[error("{0}")]
    AlreadyExists(String),
    /// Another writer won every one of [`MAX_ATTEMPTS`] attempts (409 `conflict`): the
    /// request may be sent again as is.
    #[error("too much contention: gave up after {attempts} attempts; try again")]
    Contention {
        /// How many times the command was decided.
        attempts: u32,
    },
    /// The stream's hash chain is broken: an event was altered, deleted, reordered or
    /// had its hash stripped (`domain::chain`). Nothing decided from that stream is
    /// trusted: a key's (409 `key_integrity`; its token answers 401 `key_integrity`) or
    /// an organisation's (409 `org_integrity`). Already logged and counted.
    #[error("hash chain broken at {0}")]
    Integrity(Box<ChainBreak>),
    /// The event store failed (503, or 500 for corrupt data).
    #[error(transparent)]
    Store(StoreError),
    /// The token could not be generated or hashed, or a handler built a command the
    /// domain refuses as a bug (500). Never contains the token.
    #[error("token generation failed: {0}")]
    Hash(String),
}

impl From<StoreError> for CommandError {
    fn from(error: StoreError) -> Self {
        CommandError::Store(error)
    }
}

impl From<apikey::Error> for CommandError {
    fn from(error: apikey::Error) -> Self {
        use apikey::Error as E;
        match error {
            E::NotFound => CommandError::NotFound,
            E::Revoked => CommandError::KeyRevoked,
            E::Expired => CommandError::KeyExpired,
            E::ExpiryInPast => CommandError::Invalid {
                field: "expires_at",
                message: error.to_string(),
            },
            E::InvalidGracePeriod => CommandError::Invalid {
                field: "grace_period_seconds",
                message: error.to_string(),
            },
            E::ReasonTooLong { .. } => CommandError::Invalid {
                field: "reason",
                message: error.to_string(),
            },
            E::ReasonControlCharacter(_) => CommandError::Invalid {
                field: "reason",
                message: error.to_string(),
            },
            E::AlreadyRotated { successor } => CommandError::KeyRotated { successor },
            E::AlreadyExists => CommandError::AlreadyExists(error.to_string()),
            // The handler builds the prefix from the token it generated, and the successor
            // id is a fresh UUID v7: a bug, not input.
            E::PrefixMismatch | E::InvalidSuccessor => CommandError::Hash(error.to_string()),
        }
    }
}

impl From<PolicyError> for CommandError {
    fn from(error: PolicyError) -> Self {
        match error {
            PolicyError::ScopeNotHeld(scope) => CommandError::ScopeNotHeld(scope),
            PolicyError::NotSubordinate { scope } => CommandError::KeyNotSubordinate { scope },
            PolicyError::RestrictionNotHeld {
                restriction,
                reason,
            } => CommandError::RestrictionNotHeld {
                field: restriction.field(),
                message: reason.to_owned(),
            },
        }
    }
}

impl From<organization::Error> for CommandError {
    fn from(error: organization::Error) -> Self {
        use organization::Error as E;
        match error {
            E::NotFound | E::UnknownKey { .. } => CommandError::NotFound,
            E::PlanRequired { .. } => CommandError::PlanRequired,
            E::KeyLimitReached { limit } => CommandError::KeyLimitReached { limit },
            E::AlreadyExists | E::KeyAlreadyIssued { .. } => {
                CommandError::AlreadyExists(error.to_string())
            }
        }
    }
}

impl From<ScopeError> for CommandError {
    fn from(error: ScopeError) -> Self {
        match error {
            ScopeError::NotHeld(scope) => CommandError::ScopeNotHeld(scope),
            ScopeError::Unknown(_) => CommandError::Invalid {
                field: "scopes",
                message: error.to_string(),
            },
        }
    }
}

/// An aggregate's state as loaded, with where its stream ends.
struct Loaded<S> {
    state: S,
    /// The stream's version (0 = no stream).
    version: u64,
    /// The global position of the stream's last event (0 = no stream).
    position: u64,
}

impl<S> Loaded<S> {
    fn unchanged(&self) -> Written {
        Written {
            position: self.position,
            version: self.version,
        }
    }

    fn expected(&self) -> ExpectedVersion {
        if self.version == 0 {
            ExpectedVersion::NoStream
        } else {
            ExpectedVersion::Exact(self.version)
        }
    }
}

/// One decision's outcome inside a retry loop.
enum Attempt<T> {
    Done(T),
    /// Another writer moved a stream on: decide again.
    Retry,
}

/// Counts a handler's attempts and sleeps between them: a short, jittered, growing
/// backoff, so that racing writers spread out instead of colliding again.
#[derive(Default)]
struct Backoff {
    attempts: u32,
}

impl Backoff {
    /// Waits before the next attempt, or gives up after [`MAX_ATTEMPTS`].
    async fn wait(&mut self) -> Result<(), CommandError> {
        self.attempts += 1;
        if self.attempts >= MAX_ATTEMPTS {
            tracing::warn!(attempts = self.attempts, "gave up under contention");
            return Err(CommandError::Contention {
                attempts: self.attempts,
            });
        }
        tracing::debug!(attempt = self.attempts, "concurrent write; deciding again");
        let cap_ms = u64::from(self.attempts.min(10)) * 4;
        let jitter_ms = u64::from(OsRng.next_u32()) % (cap_ms + 1);
        tokio::time::sleep(Duration::from_millis(1 + jitter_ms)).await;
        Ok(())
    }
}

/// The key lifecycle's command handlers. Cheap to clone; holds only the store.
#[derive(Clone)]
pub struct KeyService {
    store: Arc<dyn EventStore>,
}

impl std::fmt::Debug for KeyService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyService").finish_non_exhaustive()
    }
}

impl KeyService {
    /// A service appending to `store`.
    pub fn new(store: Arc<dyn EventStore>) -> Self {
        KeyService { store }
    }

    /// The event store it appends to.
    pub fn store(&self) -> &Arc<dyn EventStore> {
        &self.store
    }

    /// Replays a key's stream from the event store: `None` if it does not exist.
    #[tracing::instrument(level = "debug", skip(self))]
    pub async fn load_key(&self, id: KeyId) -> Result<Option<apikey::State>, CommandError> {
        Ok(self.load::<ApiKey>(&id.stream()).await?.state)
    }

    /// Replays an organisation's stream: `None` if it does not exist.
    #[tracing::instrument(level = "debug", skip(self))]
    pub async fn load_org(&self, id: OrgId) -> Result<Option<organization::State>, CommandError> {
        Ok(self.load::<Organization>(&id.stream()).await?.state)
    }

    /// Every key the organisation ever issued, oldest first (revoked and expired ones
    /// included). `NotFound` if the organisation does not exist.
    #[tracing::instrument(level = "debug", skip(self))]
    pub async fn list_org_key_ids(&self, org: OrgId) -> Result<Vec<KeyId>, CommandError> {
        self.load_org(org)
            .await?
            .map(|o| o.issued_keys)
            .ok_or(CommandError::NotFound)
    }

    /// Creates an organisation and its root key (holding [`Scope::all`]), atomically. The
    /// root key is created whatever the plan, and counts among the organisation's active
    /// keys afterwards.
    #[tracing::instrument(skip(self, ctx, name), fields(actor = %ctx.actor))]
    pub async fn create_organization(
        &self,
        ctx: &CommandContext,
        name: OrgName,
        plan: Plan,
        root_key_env: Environment,
    ) -> Result<(organization::State, CreatedKey), CommandError> {
        self.create_org_with_id(ctx, OrgId::new_v7(), name, plan, root_key_env)
            .await?
            // A fresh UUID v7 never names an existing stream.
            .ok_or_else(|| CommandError::AlreadyExists("organization already exists".into()))
    }

    /// On an empty event store, creates the organisation `default` (plan enterprise,
    /// id [`BOOTSTRAP_ORG_ID`]) and its root key. `None` when the store is not empty, or
    /// when another node bootstrapped it first.
    #[tracing::instrument(skip(self))]
    pub async fn bootstrap(
        &self,
        env: Environment,
    ) -> Result<Option<(organization::State, CreatedKey)>, CommandError> {
        if self.store.head_position().await? != 0 {
            return Ok(None);
        }
        let name = OrgName::parse(BOOTSTRAP_ORG_NAME).map_err(|e| CommandError::Invalid {
            field: "name",
            message: e.to_string(),
        })?;
        let created = self
            .create_org_with_id(
                &CommandContext::system(),
                BOOTSTRAP_ORG_ID,
                name,
                Plan::Enterprise,
                env,
            )
            .await?;
        match created {
            Some(created) => {
                tracing::info!(org_id = %BOOTSTRAP_ORG_ID, key_id = %created.1.key.id, "bootstrapped an empty event store");
                Ok(Some(created))
            }
            // Another node's bootstrap won the race for the fixed org stream.
            None => {
                tracing::info!("another node bootstrapped the event store first");
                Ok(None)
            }
        }
    }

    /// Moves an organisation to another plan. Existing keys keep working after a
    /// downgrade; only new keys are held to the new limit.
    #[tracing::instrument(skip(self, ctx), fields(actor = %ctx.actor))]
    pub async fn change_plan(
        &self,
        ctx: &CommandContext,
        org: OrgId,
        plan: Plan,
    ) -> Result<Written, CommandError> {
        let mut backoff = Backoff::default();
        loop {
            let loaded = self.load::<Organization>(&org.stream()).await?;
            let events =
                organization::decide(&loaded.state, organization::Command::ChangePlan { plan })?;
            if events.is_empty() {
                return Ok(loaded.unchanged());
            }
            let request = AppendRequest {
                stream: org.stream(),
                expected: loaded.expected(),
                events: OrganizationEvent::to_new_events(&events, &ctx.metadata()),
            };
            match self.append(vec![request]).await? {
                Some(outcomes) => return Ok(written(&outcomes, 0)),
                None => backoff.wait().await?,
            }
        }
    }

    /// Creates a key in `org` on behalf of `actor`, within the plan's key limit even under
    /// concurrent creates. A key actor can grant only scopes it holds, and the new key's
    /// restrictions must be at least as tight as its own (`domain::policy`); an operator
    /// ([`Actor::Operator`]) is not bound.
    #[tracing::instrument(skip(self, ctx, actor, new), fields(actor = %ctx.actor, key_id))]
    pub async fn create_key(
        &self,
        ctx: &CommandContext,
        org: OrgId,
        actor: &Actor,
        new: NewKey,
    ) -> Result<CreatedKey, CommandError> {
        let scopes = new.scopes.clone().unwrap_or_else(Scope::data_scopes);
        // Scopes first: they need no load, and a refusal names the scope.
        policy::ensure_may_grant(actor, &scopes)?;
        let restrictions = Restrictions {
            allowed_ips: new.allowed_ips.clone(),
            expires_at: new.expires_at,
            rate_limit_per_minute: new.rate_limit_per_minute,
        };
        if new.expires_at.is_some_and(|at| at <= Utc::now()) {
            return Err(apikey::Error::ExpiryInPast.into());
        }
        let key_id = KeyId::new_v7();
        tracing::Span::current().record("key_id", tracing::field::display(key_id));
        // Hashed once, lazily: only after the organisation accepted the key, and reused
        // across retries.
        let mut secret: Option<(Token, SecretHash)> = None;
        // Keys seen revoked or expired stay so for good: skip them on later attempts.
        let mut inactive: HashSet<KeyId> = HashSet::new();
        let mut backoff = Backoff::default();
        let created = loop {
            let now = Utc::now();
            let org_loaded = self.load::<Organization>(&org.stream()).await?;
            let Some(org_state) = &org_loaded.state else {
                return Err(CommandError::NotFound);
            };
            // The plan gives the effective rate limit of an actor without an override.
            policy::ensure_may_create(actor, &scopes, &restrictions, org_state.plan)?;
            let active_keys = match org_state.plan.max_active_keys() {
                // Starter: the decision refuses whatever the count.
                Some(0) | None => 0,
                Some(_) => {
                    self.count_active_keys(org_state, now, &mut inactive)
                        .await?
                }
            };
            let org_events = organization::decide(
                &org_loaded.state,
                organization::Command::IssueKey {
                    key_id,
                    name: new.name.clone(),
                    active_keys,
                },
            )?;
            let (token, secret_hash) = match &secret {
                Some(pair) => pair.clone(),
                None => secret
                    .insert(generate_token(new.environment, key_id).await?)
                    .clone(),
            };
            let create = apikey::CreateKey {
                key_id,
                org_id: org,
                name: new.name.clone(),
                environment: new.environment,
                scopes: scopes.clone(),
                allowed_ips: new.allowed_ips.clone(),
                expires_at: new.expires_at,
                rate_limit_per_minute: new.rate_limit_per_minute,
                secret_hash,
                prefix: token::prefix_of(new.environment, key_id),
                rotated_from: None,
                now,
            };
            match self
                .append_new_key(ctx, &org_loaded, org_events, vec![], create, token)
                .await?
            {
                Attempt::Done(created) => break created,
                Attempt::Retry => backoff.wait().await?,
            }
        };
        tracing::info!(key_id = %created.key.id, position = created.written.position, "API key created");
        Ok(created)
    }

    /// Changes a key's name, scopes, allowed networks and expiry, in one append. With
    /// `if_match`, the key must be at that version (else `PreconditionFailed`) and a lost
    /// race is reported, not retried. A key actor may change only keys whose scopes are a
    /// subset of its own, grant only scopes it holds, and loosen a restriction only as far
    /// as its own bounds it (`domain::policy`).
    #[tracing::instrument(skip(self, ctx, actor, patch), fields(actor = %ctx.actor))]
    pub async fn update_key(
        &self,
        ctx: &CommandContext,
        org: OrgId,
        id: KeyId,
        actor: &Actor,
        patch: KeyPatch,
        if_match: Option<u64>,
    ) -> Result<Written, CommandError> {
        let mut backoff = Backoff::default();
        loop {
            let loaded = self.load_owned_key(org, id).await?;
            if let Some(expected) = if_match
                && expected != loaded.version
            {
                return Err(CommandError::PreconditionFailed {
                    current: loaded.version,
                });
            }
            if let Some(key) = &loaded.state {
                policy::ensure_may_manage(actor, &key.scopes)?;
            }
            let (events, after) = decide_patch(&loaded.state, actor, &patch, Utc::now())?;
            if let (Actor::Key(_), Some(before), Some(after)) = (actor, &loaded.state, &after) {
                let (before, after) = (Restrictions::of(before), Restrictions::of(after));
                if before != after {
                    let plan = self
                        .load_org(org)
                        .await?
                        .map(|o| o.plan)
                        .ok_or(CommandError::NotFound)?;
                    policy::ensure_may_change(actor, &before, &after, plan)?;
                }
            }
            if events.is_empty() {
                return Ok(loaded.unchanged());
            }
            let request = key_request(id, &loaded, &events, ctx);
            match self.append(vec![request]).await? {
                Some(outcomes) => return Ok(written(&outcomes, 0)),
                // The caller decided on the version it named; that version is gone.
                None if if_match.is_some() => {
                    return Err(CommandError::PreconditionFailed {
                        current: self.store.stream_version(&id.stream()).await?,
                    });
                }
                None => backoff.wait().await?,
            }
        }
    }

    /// Revokes a key, for good. Revoking a revoked key changes nothing and succeeds.
    #[tracing::instrument(skip(self, ctx, reason), fields(actor = %ctx.actor))]
    pub async fn revoke(
        &self,
        ctx: &CommandContext,
        org: OrgId,
        id: KeyId,
        reason: Option<String>,
    ) -> Result<Written, CommandError> {
        let mut backoff = Backoff::default();
        let written = loop {
            let loaded = self.load_owned_key(org, id).await?;
            let events = apikey::decide(
                &loaded.state,
                apikey::Command::Revoke {
                    reason: reason.clone(),
                    now: Utc::now(),
                },
            )?;
            if events.is_empty() {
                return Ok(loaded.unchanged());
            }
            let request = key_request(id, &loaded, &events, ctx);
            match self.append(vec![request]).await? {
                Some(outcomes) => break written(&outcomes, 0),
                None => backoff.wait().await?,
            }
        };
        tracing::info!(position = written.position, "API key revoked");
        Ok(written)
    }

    /// Rotates a key: a new key with the same name, scopes, networks, environment, rate
    /// limit and expiry (`rotated_from` set), while the old key keeps working until
    /// `now + grace_period` (or its own expiry, if sooner). One atomic append. A key actor
    /// may rotate only keys whose scopes are a subset of its own (rotation hands out a new
    /// secret with them); the successor's restrictions are the old key's, never looser.
    #[tracing::instrument(skip(self, ctx, actor), fields(actor = %ctx.actor, successor_id))]
    pub async fn rotate(
        &self,
        ctx: &CommandContext,
        org: OrgId,
        id: KeyId,
        actor: &Actor,
        grace_period: TimeDelta,
    ) -> Result<CreatedKey, CommandError> {
        let successor_id = KeyId::new_v7();
        tracing::Span::current().record("successor_id", tracing::field::display(successor_id));
        let mut secret: Option<(Token, SecretHash)> = None;
        let mut backoff = Backoff::default();
        let created = loop {
            let now = Utc::now();
            let old = self.load_owned_key(org, id).await?;
            let org_loaded = self.load::<Organization>(&org.stream()).await?;
            let Some(old_state) = &old.state else {
                return Err(CommandError::NotFound);
            };
            policy::ensure_may_manage(actor, &old_state.scopes)?;
            let old_events = apikey::decide(
                &old.state,
                apikey::Command::Rotate {
                    successor_id,
                    grace_period,
                    now,
                },
            )?;
            let org_events = organization::decide(
                &org_loaded.state,
                organization::Command::IssueRotatedKey {
                    key_id: successor_id,
                    name: old_state.name.clone(),
                    rotated_from: id,
                },
            )?;
            let env = old_state.environment;
            let (token, secret_hash) = match &secret {
                Some(pair) => pair.clone(),
                None => secret
                    .insert(generate_token(env, successor_id).await?)
                    .clone(),
            };
            let create = apikey::CreateKey {
                key_id: successor_id,
                org_id: org,
                name: old_state.name.clone(),
                environment: env,
                scopes: old_state.scopes.clone(),
                allowed_ips: old_state.allowed_ips.clone(),
                expires_at: old_state.expires_at,
                rate_limit_per_minute: old_state.rate_limit_per_minute,
                secret_hash,
                prefix: token::prefix_of(env, successor_id),
                rotated_from: Some(id),
                now,
            };
            let old_request = key_request(id, &old, &old_events, ctx);
            match self
                .append_new_key(
                    ctx,
                    &org_loaded,
                    org_events,
                    vec![old_request],
                    create,
                    token,
                )
                .await?
            {
                Attempt::Done(created) => break created,
                Attempt::Retry => backoff.wait().await?,
            }
        };
        tracing::info!(position = created.written.position, "API key rotated");
        Ok(created)
    }

    // ------------------------------------------------------------------ internals

    /// Creates an organisation with this id and its root key; `None` when the org stream
    /// already exists (another writer created it first).
    async fn create_org_with_id(
        &self,
        ctx: &CommandContext,
        org_id: OrgId,
        name: OrgName,
        plan: Plan,
        root_key_env: Environment,
    ) -> Result<Option<(organization::State, CreatedKey)>, CommandError> {
        let now = Utc::now();
        let none: Loaded<Option<organization::State>> = Loaded {
            state: None,
            version: 0,
            position: 0,
        };
        let mut org_events = organization::decide(
            &None,
            organization::Command::CreateOrganization { org_id, name, plan },
        )?;
        let created_org = Organization::replay(&org_events);
        let key_id = KeyId::new_v7();
        let root_name = KeyName::parse(ROOT_KEY_NAME).map_err(|e| CommandError::Invalid {
            field: "name",
            message: e.to_string(),
        })?;
        org_events.extend(organization::decide(
            &created_org,
            organization::Command::IssueRootKey {
                key_id,
                name: root_name.clone(),
            },
        )?);
        let (token, secret_hash) = generate_token(root_key_env, key_id).await?;
        let create = apikey::CreateKey {
            key_id,
            org_id,
            name: root_name,
            environment: root_key_env,
            scopes: Scope::all(),
            allowed_ips: AllowedIps::any(),
            expires_at: None,
            rate_limit_per_minute: None,
            secret_hash,
            prefix: token::prefix_of(root_key_env, key_id),
            rotated_from: None,
            now,
        };
        let org_state = Organization::replay(&org_events);
        match self
            .append_new_key(ctx, &none, org_events, vec![], create, token)
            .await?
        {
            Attempt::Done(created) => {
                let org_state = org_state.ok_or(CommandError::NotFound)?;
                tracing::info!(org_id = %org_id, key_id = %created.key.id, "organization created");
                Ok(Some((org_state, created)))
            }
            Attempt::Retry => Ok(None),
        }
    }

    /// Appends, in one transaction: the org's events (at its loaded version), `others`,
    /// then the new key's `KeyCreated` (`NoStream`). `Retry` when a stream moved on.
    async fn append_new_key(
        &self,
        ctx: &CommandContext,
        org: &Loaded<Option<organization::State>>,
        org_events: Vec<OrganizationEvent>,
        others: Vec<AppendRequest>,
        create: apikey::CreateKey,
        token: Token,
    ) -> Result<Attempt<CreatedKey>, CommandError> {
        let key_id = create.key_id;
        let key_events = apikey::decide(&None, apikey::Command::CreateKey(Box::new(create)))?;
        let Some(key) = ApiKey::replay(&key_events) else {
            return Err(CommandError::NotFound);
        };
        let org_id = key.org_id;
        let mut requests = vec![AppendRequest {
            stream: org_id.stream(),
            expected: org.expected(),
            events: OrganizationEvent::to_new_events(&org_events, &ctx.metadata()),
        }];
        requests.extend(others);
        requests.push(AppendRequest {
            stream: key_id.stream(),
            expected: ExpectedVersion::NoStream,
            events: ApiKeyEvent::to_new_events(&key_events, &ctx.metadata()),
        });
        let last = requests.len() - 1;
        Ok(match self.append(requests).await? {
            Some(outcomes) => Attempt::Done(CreatedKey {
                key,
                token,
                written: written(&outcomes, last),
            }),
            None => Attempt::Retry,
        })
    }

    /// `append_many`, with a lost race as `None`.
    async fn append(
        &self,
        requests: Vec<AppendRequest>,
    ) -> Result<Option<Vec<AppendOutcome>>, CommandError> {
        match self.store.append_many(requests).await {
            Ok(outcomes) => Ok(Some(outcomes)),
            Err(StoreError::WrongExpectedVersion { .. }) => Ok(None),
            Err(error) => Err(error.into()),
        }
    }

    /// Loads a key that must exist and belong to `org` (else `NotFound`: another
    /// organisation's key is indistinguishable from a missing one).
    async fn load_owned_key(
        &self,
        org: OrgId,
        id: KeyId,
    ) -> Result<Loaded<Option<apikey::State>>, CommandError> {
        let loaded = self.load::<ApiKey>(&id.stream()).await?;
        match &loaded.state {
            Some(key) if key.org_id == org => Ok(loaded),
            _ => Err(CommandError::NotFound),
        }
    }

    /// How many of the organisation's keys count against its plan's limit at `now`: every
    /// active one, the root key included. `inactive` caches keys seen revoked or expired,
    /// which never come back.
    async fn count_active_keys(
        &self,
        org: &organization::State,
        now: DateTime<Utc>,
        inactive: &mut HashSet<KeyId>,
    ) -> Result<u32, CommandError> {
        let to_load: Vec<KeyId> = org
            .issued_keys
            .iter()
            .copied()
            .filter(|id| !inactive.contains(id))
            .collect();
        let keys: Vec<apikey::State> = futures::stream::iter(to_load)
            .map(|id| async move {
                match self.load_key(id).await {
                    // A key whose chain is broken cannot authenticate nor be changed: it
                    // does not count as active (it is reported where it was loaded).
                    Err(CommandError::Integrity(_)) => Ok(None),
                    other => other,
                }
            })
            .buffer_unordered(LOAD_CONCURRENCY)
            .try_filter_map(|key| async move { Ok(key) })
            .try_collect()
            .await?;
        // Every active key counts, the root key included: "at most 10 active keys" is
        // what the organisation holds, as its key list shows. (Rotation is exempt from
        // the check in the domain, so a key at the limit can still be rotated; during the
        // grace period both the old and the new key are active.)
        let mut active = 0u32;
        for key in &keys {
            if key.status(now) == KeyStatus::Active {
                active += 1;
            } else {
                inactive.insert(key.id);
            }
        }
        Ok(active)
    }

    /// Replays a stream into an aggregate's state, checking its hash chain on the way
    /// ([`CheckedFold`]): every command handler and every key cache fill goes through
    /// here, so a broken chain is refused with [`CommandError::Integrity`] (reported once:
    /// [`crate::audit::report_break`]) instead of being decided on. The check is one
    /// sha256 per event already read, and runs only when a stream is folded (a command,
    /// or a cache fill), never per authenticated request.
    async fn load<A>(&self, stream: &str) -> Result<Loaded<A::State>, CommandError>
    where
        A: Aggregate,
    {
        let mut fold = CheckedFold::<A>::new();
        loop {
            let batch = self
                .store
                .read_stream(stream, fold.version + 1, PAGE)
                .await?;
            let full = batch.len() == PAGE;
            for recorded in &batch {
                let decoded = fold.apply(recorded);
                if let Some(broken) = fold.first_break() {
                    crate::audit::report_break(crate::audit::Reader::Commands, broken);
                    return Err(CommandError::Integrity(Box::new(broken.clone())));
                }
                decoded.map_err(|e| StoreError::Corrupt {
                    position: e.position,
                    reason: e.to_string(),
                })?;
            }
            if !full {
                return Ok(Loaded {
                    state: fold.state,
                    version: fold.version,
                    position: fold.position,
                });
            }
        }
    }
}

/// Decides every change of `patch`, in order, each against the state left by the ones
/// before, so that the events replay to the patched key; returns them and that key.
fn decide_patch(
    key: &Option<apikey::State>,
    actor: &Actor,
    patch: &KeyPatch,
    now: DateTime<Utc>,
) -> Result<(Vec<ApiKeyEvent>, Option<apikey::State>), CommandError> {
    let mut commands = Vec::new();
    if let Some(name) = &patch.name {
        commands.push(apikey::Command::Rename { name: name.clone() });
    }
    if let Some(scopes) = &patch.scopes {
        // Only the scopes the key gains are granted: narrowing needs no extra scope.
        if let Some(current) = key {
            let gained: Scopes = scopes
                .iter()
                .filter(|s| !current.scopes.contains(*s))
                .collect();
            policy::ensure_may_grant(actor, &gained)?;
        }
        commands.push(apikey::Command::ChangeScopes {
            scopes: scopes.clone(),
        });
    }
    if let Some(allowed_ips) = &patch.allowed_ips {
        commands.push(apikey::Command::ChangeAllowedIps {
            allowed_ips: allowed_ips.clone(),
        });
    }
    if let Some(expires_at) = patch.expires_at {
        commands.push(apikey::Command::ChangeExpiry { expires_at, now });
    }
    let mut state = key.clone();
    let mut events = Vec::new();
    for command in commands {
        for event in apikey::decide(&state, command)? {
            state = apikey::evolve(state, &event);
            events.push(event);
        }
    }
    Ok((events, state))
}

/// Generates a token for `key_id` and hashes it off the async workers.
async fn generate_token(
    env: Environment,
    key_id: KeyId,
) -> Result<(Token, SecretHash), CommandError> {
    let token = Token::try_generate(env, key_id).map_err(|e| CommandError::Hash(e.to_string()))?;
    let to_hash = token.clone();
    let hash = tokio::task::spawn_blocking(move || hashing::hash_token(to_hash.expose_secret()))
        .await
        .map_err(|e| CommandError::Hash(format!("hashing task failed: {e}")))?
        .map_err(|e| CommandError::Hash(e.to_string()))?;
    Ok((token, hash))
}

fn key_request(
    id: KeyId,
    loaded: &Loaded<Option<apikey::State>>,
    events: &[ApiKeyEvent],
    ctx: &CommandContext,
) -> AppendRequest {
    AppendRequest {
        stream: id.stream(),
        expected: loaded.expected(),
        events: ApiKeyEvent::to_new_events(events, &ctx.metadata()),
    }
}

/// The outcome of the request at `main`, with the position of the append's last event.
fn written(outcomes: &[AppendOutcome], main: usize) -> Written {
    Written {
        position: outcomes.iter().map(|o| o.position).max().unwrap_or(0),
        version: outcomes.get(main).map_or(0, |o| o.stream_version),
    }
}
