//! Each command's decision, run by [`execute`](super::execute::execute): what it reads,
//! which pure decisions it asks (`domain::apikey`, `domain::organization`,
//! `domain::policy`), and what it appends. A decision holds only its inputs and what it
//! keeps across attempts (a new key's hashed token, keys known not to count).

use std::collections::HashSet;

use chrono::{DateTime, TimeDelta, Utc};
use domain::aggregate::Aggregate;
use domain::apikey::{self, ApiKey};
use domain::events::ApiKeyEvent;
use domain::organization::{self, Organization};
use domain::policy::{self, Actor, Restrictions};
use domain::store::EventStore;
use domain::{
    AllowedIps, Environment, KeyId, KeyName, OrgId, OrgName, Plan, Scope, Scopes, SecretHash,
    Token, token,
};
use futures::{StreamExt, TryStreamExt};

use super::execute::{Attempt, Decision, load};
use super::{CommandError, KeyPatch, NewKey};
use crate::hashing;

/// Key streams loaded at once while reading the keys an organisation's key limit counts.
const LOAD_CONCURRENCY: usize = 8;

/// Moves an organisation to another plan.
pub(super) struct ChangePlan {
    pub(super) org: OrgId,
    pub(super) plan: Plan,
}

impl Decision for ChangePlan {
    type Output = ();

    fn stream(&self) -> String {
        self.org.stream()
    }

    async fn decide(&mut self, tx: &mut Attempt) -> Result<(), CommandError> {
        let stream = self.org.stream();
        let org = tx.load::<Organization>(&stream).await?;
        let events =
            organization::decide(&org, organization::Command::ChangePlan { plan: self.plan })?;
        tx.append(&stream, &events);
        Ok(())
    }
}

/// Declares or deletes one of an organisation's custom scopes.
pub(super) struct ChangeScopes {
    pub(super) org: OrgId,
    pub(super) command: organization::Command,
}

impl Decision for ChangeScopes {
    type Output = ();

    fn stream(&self) -> String {
        self.org.stream()
    }

    async fn decide(&mut self, tx: &mut Attempt) -> Result<(), CommandError> {
        let stream = self.org.stream();
        let org = tx.load::<Organization>(&stream).await?;
        let events = organization::decide(&org, self.command.clone())?;
        tx.append(&stream, &events);
        Ok(())
    }
}

/// Creates an organisation with a given id and its root key, atomically. When the org
/// stream exists already (another writer created it first), the organisation refuses:
/// `AlreadyExists`.
pub(super) struct CreateOrganization {
    org_id: OrgId,
    name: OrgName,
    plan: Plan,
    root_key_env: Environment,
    root_name: KeyName,
    key_id: KeyId,
    secret: NewSecret,
}

impl CreateOrganization {
    pub(super) fn new(
        org_id: OrgId,
        name: OrgName,
        plan: Plan,
        root_key_env: Environment,
        root_name: KeyName,
    ) -> CreateOrganization {
        let key_id = KeyId::new_v7();
        CreateOrganization {
            org_id,
            name,
            plan,
            root_key_env,
            root_name,
            key_id,
            secret: NewSecret::new(root_key_env, key_id),
        }
    }
}

impl Decision for CreateOrganization {
    /// The organisation as created, its root key and the root key's token.
    type Output = (organization::State, apikey::State, Token);

    fn stream(&self) -> String {
        self.key_id.stream()
    }

    async fn decide(&mut self, tx: &mut Attempt) -> Result<Self::Output, CommandError> {
        let now = Utc::now();
        let org_stream = self.org_id.stream();
        let existing = tx.load::<Organization>(&org_stream).await?;
        let mut org_events = organization::decide(
            &existing,
            organization::Command::CreateOrganization {
                org_id: self.org_id,
                name: self.name.clone(),
                plan: self.plan,
            },
        )?;
        org_events.extend(organization::decide(
            &Organization::replay(&org_events),
            organization::Command::IssueRootKey {
                key_id: self.key_id,
                name: self.root_name.clone(),
            },
        )?);
        let org = Organization::replay(&org_events).ok_or_else(|| {
            CommandError::Internal("a created organisation replays to nothing".into())
        })?;
        let (token, secret_hash) = self.secret.get().await?;
        let env = self.root_key_env;
        let (key_events, key) = decide_new_key(apikey::CreateKey {
            key_id: self.key_id,
            org_id: self.org_id,
            name: self.root_name.clone(),
            environment: env,
            scopes: Scope::all(),
            allowed_ips: AllowedIps::any(),
            expires_at: None,
            rate_limit_per_minute: None,
            secret_hash,
            prefix: token::prefix_of(env, self.key_id),
            rotated_from: None,
            now,
        })?;
        tx.append(&org_stream, &org_events);
        tx.append(&self.key_id.stream(), &key_events);
        Ok((org, key, token))
    }
}

/// Creates a key within the organisation's plan, by the acting key's policy.
pub(super) struct CreateKey<'a> {
    org: OrgId,
    actor: &'a Actor,
    new: &'a NewKey,
    scopes: Scopes,
    restrictions: Restrictions,
    key_id: KeyId,
    secret: NewSecret,
    /// Keys seen not to count against the limit, which never count again: later attempts
    /// skip them.
    inactive: HashSet<KeyId>,
}

impl<'a> CreateKey<'a> {
    /// `scopes` are the new key's, with the default applied.
    pub(super) fn new(
        org: OrgId,
        actor: &'a Actor,
        new: &'a NewKey,
        scopes: Scopes,
        key_id: KeyId,
    ) -> CreateKey<'a> {
        CreateKey {
            org,
            actor,
            new,
            scopes,
            restrictions: Restrictions {
                allowed_ips: new.allowed_ips.clone(),
                expires_at: new.expires_at,
                rate_limit_per_minute: new.rate_limit_per_minute,
            },
            key_id,
            secret: NewSecret::new(new.environment, key_id),
            inactive: HashSet::new(),
        }
    }
}

impl Decision for CreateKey<'_> {
    /// The new key and its token.
    type Output = (apikey::State, Token);

    fn stream(&self) -> String {
        self.key_id.stream()
    }

    async fn decide(&mut self, tx: &mut Attempt) -> Result<Self::Output, CommandError> {
        let now = Utc::now();
        let org_stream = self.org.stream();
        let org = tx.load::<Organization>(&org_stream).await?;
        let Some(current) = &org else {
            return Err(organization::Error::NotFound.into());
        };
        // The plan gives the effective rate limit of an actor without an override.
        policy::ensure_may_create(self.actor, &self.scopes, &self.restrictions, current.plan)?;
        let keys = keys_to_count(tx.store(), current, now, &mut self.inactive).await?;
        let new = self.new;
        let org_events = organization::decide(
            &org,
            organization::Command::IssueKey {
                key_id: self.key_id,
                name: new.name.clone(),
                keys,
                now,
                scopes: self.scopes.clone(),
            },
        )?;
        let (token, secret_hash) = self.secret.get().await?;
        let (key_events, key) = decide_new_key(apikey::CreateKey {
            key_id: self.key_id,
            org_id: self.org,
            name: new.name.clone(),
            environment: new.environment,
            scopes: self.scopes.clone(),
            allowed_ips: new.allowed_ips.clone(),
            expires_at: new.expires_at,
            rate_limit_per_minute: new.rate_limit_per_minute,
            secret_hash,
            prefix: token::prefix_of(new.environment, self.key_id),
            rotated_from: None,
            now,
        })?;
        tx.append(&org_stream, &org_events);
        tx.append(&self.key_id.stream(), &key_events);
        Ok((key, token))
    }
}

/// Changes a key's name, scopes, allowed networks and expiry, in one append.
pub(super) struct UpdateKey<'a> {
    pub(super) org: OrgId,
    pub(super) id: KeyId,
    pub(super) actor: &'a Actor,
    pub(super) patch: &'a KeyPatch,
    /// The version the caller decided on (`If-Match`). After a lost race the key is at
    /// another one, so the re-decision refuses: `PreconditionFailed`.
    pub(super) if_match: Option<u64>,
}

impl Decision for UpdateKey<'_> {
    type Output = ();

    fn stream(&self) -> String {
        self.id.stream()
    }

    async fn decide(&mut self, tx: &mut Attempt) -> Result<(), CommandError> {
        let stream = self.id.stream();
        let key = tx.load::<ApiKey>(&stream).await?;
        let current = owned_by(&key, self.org)?;
        let version = tx.version(&stream);
        if let Some(expected) = self.if_match
            && expected != version
        {
            return Err(CommandError::PreconditionFailed { current: version });
        }
        policy::ensure_may_manage(self.actor, &current.scopes)?;
        // New custom scopes must be declared by the organisation (read, not appended to:
        // a scope deleted meanwhile is caught on the next change).
        if let Some(scopes) = &self.patch.scopes
            && scopes.iter().any(|s| s.is_custom())
        {
            let org = tx
                .load::<Organization>(&self.org.stream())
                .await?
                .ok_or(organization::Error::NotFound)?;
            if let Some(scope) = scopes
                .iter()
                .filter(|s| s.is_custom())
                .find(|s| !org.custom_scopes.contains_key(s))
            {
                return Err(organization::Error::ScopeNotDeclared { scope }.into());
            }
        }
        let (events, after) = decide_patch(&key, self.actor, self.patch, Utc::now())?;
        if let (Actor::Key(_), Some(after)) = (self.actor, &after) {
            let (before, after) = (Restrictions::of(current), Restrictions::of(after));
            if before != after {
                let plan = tx
                    .load::<Organization>(&self.org.stream())
                    .await?
                    .map(|o| o.plan)
                    .ok_or(organization::Error::NotFound)?;
                policy::ensure_may_change(self.actor, &before, &after, plan)?;
            }
        }
        tx.append(&stream, &events);
        Ok(())
    }
}

/// Revokes a key, for good (a no-op on a revoked key).
pub(super) struct Revoke<'a> {
    pub(super) org: OrgId,
    pub(super) id: KeyId,
    pub(super) reason: Option<&'a str>,
}

impl Decision for Revoke<'_> {
    /// Whether the key was revoked now (`false`: it was already).
    type Output = bool;

    fn stream(&self) -> String {
        self.id.stream()
    }

    async fn decide(&mut self, tx: &mut Attempt) -> Result<bool, CommandError> {
        let stream = self.id.stream();
        let key = tx.load::<ApiKey>(&stream).await?;
        owned_by(&key, self.org)?;
        let events = apikey::decide(
            &key,
            apikey::Command::Revoke {
                reason: self.reason.map(str::to_owned),
                now: Utc::now(),
            },
        )?;
        tx.append(&stream, &events);
        Ok(!events.is_empty())
    }
}

/// Rotates a key: its successor, the old key's end of grace and the organisation's
/// `KeyIssued`, in one append.
pub(super) struct Rotate<'a> {
    org: OrgId,
    id: KeyId,
    actor: &'a Actor,
    grace_period: TimeDelta,
    successor_id: KeyId,
    /// Made once the old key is known (its environment is the successor's).
    secret: Option<NewSecret>,
}

impl<'a> Rotate<'a> {
    pub(super) fn new(
        org: OrgId,
        id: KeyId,
        actor: &'a Actor,
        grace_period: TimeDelta,
        successor_id: KeyId,
    ) -> Rotate<'a> {
        Rotate {
            org,
            id,
            actor,
            grace_period,
            successor_id,
            secret: None,
        }
    }
}

impl Decision for Rotate<'_> {
    /// The successor and its token.
    type Output = (apikey::State, Token);

    fn stream(&self) -> String {
        self.successor_id.stream()
    }

    async fn decide(&mut self, tx: &mut Attempt) -> Result<Self::Output, CommandError> {
        let now = Utc::now();
        let (old_stream, org_stream) = (self.id.stream(), self.org.stream());
        let old_key = tx.load::<ApiKey>(&old_stream).await?;
        let old = owned_by(&old_key, self.org)?;
        let org = tx.load::<Organization>(&org_stream).await?;
        policy::ensure_may_manage(self.actor, &old.scopes)?;
        let old_events = apikey::decide(
            &old_key,
            apikey::Command::Rotate {
                successor_id: self.successor_id,
                grace_period: self.grace_period,
                now,
            },
        )?;
        let org_events = organization::decide(
            &org,
            organization::Command::IssueRotatedKey {
                key_id: self.successor_id,
                name: old.name.clone(),
                rotated_from: self.id,
            },
        )?;
        let env = old.environment;
        let successor_id = self.successor_id;
        let (token, secret_hash) = self
            .secret
            .get_or_insert_with(|| NewSecret::new(env, successor_id))
            .get()
            .await?;
        let (key_events, key) = decide_new_key(apikey::CreateKey {
            key_id: successor_id,
            org_id: self.org,
            name: old.name.clone(),
            environment: env,
            scopes: old.scopes.clone(),
            allowed_ips: old.allowed_ips.clone(),
            expires_at: old.expires_at,
            rate_limit_per_minute: old.rate_limit_per_minute,
            secret_hash,
            prefix: token::prefix_of(env, successor_id),
            rotated_from: Some(self.id),
            now,
        })?;
        tx.append(&org_stream, &org_events);
        tx.append(&old_stream, &old_events);
        tx.append(&successor_id.stream(), &key_events);
        Ok((key, token))
    }
}

// ------------------------------------------------------------------ shared steps

/// The states the key-limit decision needs ([`organization::State::keys_to_count`]),
/// loaded at most [`LOAD_CONCURRENCY`] at a time. `inactive` holds keys seen not to count
/// ([`organization::counts_against_limit`]), which never count again: they are skipped,
/// and the ones found now are added. A key whose chain is broken is left out: it can
/// neither authenticate nor be changed (it is reported where it was loaded).
async fn keys_to_count(
    store: &dyn EventStore,
    org: &organization::State,
    now: DateTime<Utc>,
    inactive: &mut HashSet<KeyId>,
) -> Result<Vec<apikey::State>, CommandError> {
    let to_load: Vec<KeyId> = org
        .keys_to_count()
        .iter()
        .copied()
        .filter(|id| !inactive.contains(id))
        .collect();
    let keys: Vec<apikey::State> = futures::stream::iter(to_load)
        .map(|id| async move {
            match load::<ApiKey>(store, &id.stream()).await {
                Ok(loaded) => Ok(loaded.state),
                Err(CommandError::Integrity(_)) => Ok(None),
                Err(e) => Err(e),
            }
        })
        .buffer_unordered(LOAD_CONCURRENCY)
        .try_filter_map(|key| async move { Ok(key) })
        .try_collect()
        .await?;
    inactive.extend(
        keys.iter()
            .filter(|key| !organization::counts_against_limit(key, now))
            .map(|key| key.id),
    );
    Ok(keys)
}

/// The key, if it exists and belongs to `org`; else `NotFound` (another organisation's
/// key is indistinguishable from a missing one).
fn owned_by(key: &Option<apikey::State>, org: OrgId) -> Result<&apikey::State, CommandError> {
    match key {
        Some(key) if key.org_id == org => Ok(key),
        _ => Err(apikey::Error::NotFound.into()),
    }
}

/// Decides a new key's creation: its events and its state after them.
fn decide_new_key(
    create: apikey::CreateKey,
) -> Result<(Vec<ApiKeyEvent>, apikey::State), CommandError> {
    let events = apikey::decide(&None, apikey::Command::CreateKey(Box::new(create)))?;
    let key = ApiKey::replay(&events)
        .ok_or_else(|| CommandError::Internal("a created key replays to nothing".into()))?;
    Ok((events, key))
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

/// A new key's token: generated and hashed (off the async workers) on first need, then
/// reused by every later attempt of the same command.
struct NewSecret {
    env: Environment,
    key_id: KeyId,
    made: Option<(Token, SecretHash)>,
}

impl NewSecret {
    fn new(env: Environment, key_id: KeyId) -> NewSecret {
        NewSecret {
            env,
            key_id,
            made: None,
        }
    }

    async fn get(&mut self) -> Result<(Token, SecretHash), CommandError> {
        if let Some(made) = &self.made {
            return Ok(made.clone());
        }
        let token = Token::try_generate(self.env, self.key_id)
            .map_err(|e| CommandError::Internal(format!("token generation failed: {e}")))?;
        let to_hash = token.clone();
        let hash =
            tokio::task::spawn_blocking(move || hashing::hash_token(to_hash.expose_secret()))
                .await
                .map_err(|e| CommandError::Internal(format!("hashing task failed: {e}")))?
                .map_err(|e| CommandError::Internal(format!("token hashing failed: {e}")))?;
        Ok(self.made.insert((token, hash)).clone())
    }
}
