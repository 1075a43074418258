//! The key lifecycle's command handlers, as one facade: [`KeyService`].
//!
//! Every handler is one [`Decision`](execute::Decision) (`decisions.rs`) run by
//! `execute` (`execute.rs`), the command loop written
//! once: load the streams the decision needs, decide with the pure aggregates
//! (`domain::apikey`, `domain::organization`) and the policy (`domain::policy`), append
//! at exactly the versions read, and on a lost race decide again. Because the re-decision
//! sees the winner's events, rules that span keys (the plan's key limit) hold under
//! concurrency: the organisation's stream is appended to in the same atomic `append_many`
//! as the key's stream, so two creates cannot both pass against the same organisation
//! version. Refusals come back as the domain's own errors inside [`CommandError`].
//!
//! No token, secret or hash ever reaches a span field or a log line: spans skip every
//! argument that could hold one, `Token`'s `Debug` shows only the prefix and
//! `SecretHash`'s shows nothing.

use std::sync::Arc;

use chrono::{TimeDelta, Utc};
use domain::apikey::{self, ApiKey};
use domain::organization::{self, Organization};
use domain::policy::{self, Actor};
use domain::store::EventStore;
use domain::values::Expiry;
use domain::{Environment, KeyId, KeyName, OrgId, OrgName, Plan, Scope};
use uuid::Uuid;

mod decisions;
mod error;
mod execute;
mod types;

use decisions::{
    ChangePlan, ChangeScopes, CreateKey, CreateOrganization, Revoke, Rotate, UpdateKey,
};
pub use error::CommandError;
use execute::{execute, load};
pub use types::{CommandContext, CreatedKey, KeyPatch, NewKey, Written};

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
        Ok(load::<ApiKey>(self.store.as_ref(), &id.stream())
            .await?
            .state)
    }

    /// Replays an organisation's stream: `None` if it does not exist.
    #[tracing::instrument(level = "debug", skip(self))]
    pub async fn load_org(&self, id: OrgId) -> Result<Option<organization::State>, CommandError> {
        Ok(load::<Organization>(self.store.as_ref(), &id.stream())
            .await?
            .state)
    }

    /// Every key the organisation ever issued, oldest first (revoked and expired ones
    /// included). `NotFound` if the organisation does not exist.
    #[tracing::instrument(level = "debug", skip(self))]
    pub async fn list_org_key_ids(&self, org: OrgId) -> Result<Vec<KeyId>, CommandError> {
        self.load_org(org)
            .await?
            .map(|o| o.issued_keys)
            .ok_or_else(|| organization::Error::NotFound.into())
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
            .await
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
        let name = OrgName::parse(BOOTSTRAP_ORG_NAME)
            .map_err(|e| CommandError::Internal(format!("{BOOTSTRAP_ORG_NAME:?}: {e}")))?;
        let created = self
            .create_org_with_id(
                &CommandContext::system(),
                BOOTSTRAP_ORG_ID,
                name,
                Plan::Enterprise,
                env,
            )
            .await;
        match created {
            Ok(created) => {
                tracing::info!(org_id = %BOOTSTRAP_ORG_ID, key_id = %created.1.key.id, "bootstrapped an empty event store");
                Ok(Some(created))
            }
            // Another node's bootstrap won the race for the fixed org stream.
            Err(CommandError::Org(organization::Error::AlreadyExists)) => {
                tracing::info!("another node bootstrapped the event store first");
                Ok(None)
            }
            Err(e) => Err(e),
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
        let ((), written) = execute(&self.store, ctx, &mut ChangePlan { org, plan }).await?;
        Ok(written)
    }

    /// Declares a custom scope of `org` (a name [`Scope::declare`] accepts).
    #[tracing::instrument(skip(self, ctx, description), fields(actor = %ctx.actor))]
    pub async fn declare_scope(
        &self,
        ctx: &CommandContext,
        org: OrgId,
        scope: Scope,
        description: String,
    ) -> Result<Written, CommandError> {
        let command = organization::Command::DeclareScope { scope, description };
        let ((), written) = execute(&self.store, ctx, &mut ChangeScopes { org, command }).await?;
        Ok(written)
    }

    /// Deletes a custom scope of `org`: no key may be given it from now on.
    #[tracing::instrument(skip(self, ctx), fields(actor = %ctx.actor))]
    pub async fn delete_scope(
        &self,
        ctx: &CommandContext,
        org: OrgId,
        scope: Scope,
    ) -> Result<Written, CommandError> {
        let command = organization::Command::DeleteScope { scope };
        let ((), written) = execute(&self.store, ctx, &mut ChangeScopes { org, command }).await?;
        Ok(written)
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
        // Scopes and the expiry first: they need no load (and no hashing), and a refusal
        // names the scope or the field.
        policy::ensure_may_grant(actor, &scopes)?;
        if let Some(at) = new.expires_at {
            Expiry::parse(at, Utc::now()).map_err(apikey::Error::InvalidExpiry)?;
        }
        let key_id = KeyId::new_v7();
        tracing::Span::current().record("key_id", tracing::field::display(key_id));
        let mut decision = CreateKey::new(org, actor, &new, scopes, key_id);
        let ((key, token), written) = execute(&self.store, ctx, &mut decision).await?;
        tracing::info!(key_id = %key.id, position = written.position, "API key created");
        Ok(CreatedKey {
            key,
            token,
            written,
        })
    }

    /// Changes a key's name, scopes, allowed networks and expiry, in one append. With
    /// `if_match`, the key must be at that version (else `PreconditionFailed`, also when
    /// a concurrent write moved it on). A key actor may change only keys whose scopes are
    /// a subset of its own, grant only scopes it holds, and loosen a restriction only as
    /// far as its own bounds it (`domain::policy`).
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
        let mut decision = UpdateKey {
            org,
            id,
            actor,
            patch: &patch,
            if_match,
        };
        let ((), written) = execute(&self.store, ctx, &mut decision).await?;
        Ok(written)
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
        let mut decision = Revoke {
            org,
            id,
            reason: reason.as_deref(),
        };
        let (revoked, written) = execute(&self.store, ctx, &mut decision).await?;
        if revoked {
            tracing::info!(position = written.position, "API key revoked");
        }
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
        let mut decision = Rotate::new(org, id, actor, grace_period, successor_id);
        let ((key, token), written) = execute(&self.store, ctx, &mut decision).await?;
        tracing::info!(position = written.position, "API key rotated");
        Ok(CreatedKey {
            key,
            token,
            written,
        })
    }

    /// Creates an organisation with this id and its root key; `AlreadyExists` when the org
    /// stream exists already (another writer created it first).
    async fn create_org_with_id(
        &self,
        ctx: &CommandContext,
        org_id: OrgId,
        name: OrgName,
        plan: Plan,
        root_key_env: Environment,
    ) -> Result<(organization::State, CreatedKey), CommandError> {
        let root_name = KeyName::parse(ROOT_KEY_NAME)
            .map_err(|e| CommandError::Internal(format!("{ROOT_KEY_NAME:?}: {e}")))?;
        let mut decision = CreateOrganization::new(org_id, name, plan, root_key_env, root_name);
        let ((org, key, token), written) = execute(&self.store, ctx, &mut decision).await?;
        tracing::info!(org_id = %org_id, key_id = %key.id, "organization created");
        Ok((
            org,
            CreatedKey {
                key,
                token,
                written,
            },
        ))
    }
}
