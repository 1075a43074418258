//! The `Organization` aggregate (stream `org-<id>`): a tenant, its plan, and the keys it
//! has issued.
//!
//! The plan's key limit is one decision over the organisation and its keys, made here:
//! [`Command::IssueKey`] carries the states of the keys [`State::keys_to_count`] names,
//! and the decision counts those that [`counts_against_limit`] and holds the count to the
//! plan's [`KeyAllowance`]. It is race-free: the command handler loads the keys at the
//! organisation's version and appends the resulting `KeyIssued` to the org stream with an
//! `Exact` expected version in the same atomic append as the key's `KeyCreated`. Two
//! concurrent creates cannot both pass: the second append fails with a wrong expected
//! version, and the retry counts the first key.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::aggregate::Aggregate;
use crate::apikey::{self, KeyStatus};
use crate::events::{
    KeyIssued, OrganizationCreated, OrganizationEvent, PlanChanged, ScopeDeclared, ScopeDeleted,
};
use crate::ids::{KeyId, OrgId};
use crate::plan::{KeyAllowance, Plan};
use crate::scope::{Scope, Scopes};
use crate::values::{KeyName, OrgName, check_single_line};

/// How many custom scopes an organisation may declare.
pub const MAX_CUSTOM_SCOPES: usize = 100;

/// The longest description of a custom scope, in characters.
pub const MAX_SCOPE_DESCRIPTION: usize = 200;

/// The events of this aggregate.
pub type Event = OrganizationEvent;

/// An existing organisation. "Not yet created" is `None` in `Option<State>`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct State {
    /// Its id.
    pub id: OrgId,
    /// Its name.
    pub name: OrgName,
    /// Its current plan.
    pub plan: Plan,
    /// Every key it ever issued, oldest first (revoked and expired ones included).
    pub issued_keys: Vec<KeyId>,
    /// Its custom scopes and their descriptions.
    pub custom_scopes: BTreeMap<Scope, String>,
    /// The stream version: the number of events folded so far.
    pub version: u64,
}

impl State {
    /// The keys whose states [`Command::IssueKey`] needs: every issued key when the plan
    /// allows a number of them; none when it allows none or any number, since the count
    /// cannot change the decision then.
    pub fn keys_to_count(&self) -> &[KeyId] {
        match self.plan.key_allowance() {
            KeyAllowance::UpTo(_) => &self.issued_keys,
            KeyAllowance::None | KeyAllowance::Unlimited => &[],
        }
    }
}

/// Whether `key` counts against its organisation's key limit at `now`: every active key
/// does, the root key included ("at most 10 active keys" is what the organisation holds, as
/// its key list shows). A revoked or expired key never counts again: neither comes back.
/// (Rotation is exempt from the limit, so a key at the limit can still be rotated; during
/// the grace period both the old and the new key count.)
pub fn counts_against_limit(key: &apikey::State, now: DateTime<Utc>) -> bool {
    key.status(now) == KeyStatus::Active
}

/// What can be asked of an organisation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Create the organisation.
    CreateOrganization {
        /// Its id (the stream is `org-<org_id>`).
        org_id: OrgId,
        /// Its name.
        name: OrgName,
        /// Its plan.
        plan: Plan,
    },
    /// Move to another plan. Existing keys keep working after a downgrade; only new
    /// keys are held to the new limit.
    ChangePlan {
        /// The new plan.
        plan: Plan,
    },
    /// Issue a key through the API, within the plan's key limit.
    IssueKey {
        /// The new key.
        key_id: KeyId,
        /// Its name.
        name: KeyName,
        /// The states of the keys [`State::keys_to_count`] names, read at the version the
        /// events will be appended at. Keys known not to count may be left out, since they
        /// never count again, and so may keys that cannot be read; keys the organisation
        /// did not issue are not counted.
        keys: Vec<apikey::State>,
        /// The command's clock: which keys are active.
        now: DateTime<Utc>,
        /// The new key's scopes: its custom ones must be declared here.
        scopes: Scopes,
    },
    /// Declare a custom scope its keys may hold.
    DeclareScope {
        /// A custom scope ([`Scope::declare`]).
        scope: Scope,
        /// What it allows: 1 to 200 characters, one line.
        description: String,
    },
    /// Delete a custom scope: no key may be given it from now on.
    DeleteScope {
        /// The scope.
        scope: Scope,
    },
    /// Issue the organisation's root key (bootstrap and `keyledger orgs create`): exempt
    /// from the plan, since every organisation needs one key to start with.
    IssueRootKey {
        /// The new key.
        key_id: KeyId,
        /// Its name.
        name: KeyName,
    },
    /// Issue the successor of a rotated key: exempt from the limit, since the old key
    /// stops after its grace period, so rotation never grows the set of keys for good.
    IssueRotatedKey {
        /// The new key.
        key_id: KeyId,
        /// Its name.
        name: KeyName,
        /// The key being rotated; must have been issued by this organisation.
        rotated_from: KeyId,
    },
}

/// Why an organisation command was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// The organisation does not exist (404).
    #[error("organization not found")]
    NotFound,
    /// `CreateOrganization` on an existing organisation (409).
    #[error("organization already exists")]
    AlreadyExists,
    /// The plan may not create keys: `starter` (403 `plan_required`).
    #[error("the {plan} plan cannot create API keys; upgrade to professional or enterprise")]
    PlanRequired {
        /// The organisation's plan.
        plan: Plan,
    },
    /// The plan's limit of active keys is reached (403 `key_limit_reached`).
    #[error("the plan allows at most {limit} active keys")]
    KeyLimitReached {
        /// The plan's limit.
        limit: u32,
    },
    /// This key id was issued before (409).
    #[error("key {key_id} was already issued")]
    KeyAlreadyIssued {
        /// The duplicate id.
        key_id: KeyId,
    },
    /// A custom scope this organisation has not declared (422 naming the scope).
    #[error("the scope {scope} is not declared in this organization")]
    ScopeNotDeclared {
        /// The scope.
        scope: Scope,
    },
    /// The custom scope is declared already (409 `already_exists`).
    #[error("the scope {scope} is declared already")]
    ScopeAlreadyDeclared {
        /// The scope.
        scope: Scope,
    },
    /// The organisation has [`MAX_CUSTOM_SCOPES`] custom scopes (422).
    #[error("an organization may declare at most {MAX_CUSTOM_SCOPES} custom scopes")]
    TooManyScopes,
    /// A custom scope's description is empty, too long or not one line (422).
    #[error("a scope's description must be 1 to {MAX_SCOPE_DESCRIPTION} characters on one line")]
    InvalidScopeDescription,
    /// The rotated key was not issued by this organisation (404).
    #[error("key {key_id} does not belong to this organization")]
    UnknownKey {
        /// The unknown id.
        key_id: KeyId,
    },
}

/// Decides what `command` does to the organisation.
pub fn decide(state: &Option<State>, command: Command) -> Result<Vec<Event>, Error> {
    let org = match (state, command) {
        (None, Command::CreateOrganization { org_id, name, plan }) => {
            return Ok(vec![OrganizationCreated { org_id, name, plan }.into()]);
        }
        (Some(_), Command::CreateOrganization { .. }) => return Err(Error::AlreadyExists),
        (None, _) => return Err(Error::NotFound),
        (Some(org), command) => (org, command),
    };
    match org {
        (_, Command::CreateOrganization { .. }) => Err(Error::AlreadyExists),
        (org, Command::ChangePlan { plan }) => Ok(if plan == org.plan {
            vec![]
        } else {
            vec![PlanChanged { plan }.into()]
        }),
        (
            org,
            Command::IssueKey {
                key_id,
                name,
                keys,
                now,
                scopes,
            },
        ) => {
            ensure_new(org, key_id)?;
            ensure_declared(org, &scopes)?;
            ensure_within_allowance(org, &keys, now)?;
            Ok(vec![
                KeyIssued {
                    key_id,
                    name,
                    rotated_from: None,
                }
                .into(),
            ])
        }
        (org, Command::DeclareScope { scope, description }) => {
            if org.custom_scopes.contains_key(&scope) {
                return Err(Error::ScopeAlreadyDeclared { scope });
            }
            if org.custom_scopes.len() >= MAX_CUSTOM_SCOPES {
                return Err(Error::TooManyScopes);
            }
            let description = description.trim().to_owned();
            let n = description.chars().count();
            if n == 0 || n > MAX_SCOPE_DESCRIPTION || check_single_line(&description).is_err() {
                return Err(Error::InvalidScopeDescription);
            }
            Ok(vec![ScopeDeclared { scope, description }.into()])
        }
        (org, Command::DeleteScope { scope }) => {
            if !org.custom_scopes.contains_key(&scope) {
                return Err(Error::ScopeNotDeclared { scope });
            }
            Ok(vec![ScopeDeleted { scope }.into()])
        }
        (org, Command::IssueRootKey { key_id, name }) => {
            ensure_new(org, key_id)?;
            Ok(vec![
                KeyIssued {
                    key_id,
                    name,
                    rotated_from: None,
                }
                .into(),
            ])
        }
        (
            org,
            Command::IssueRotatedKey {
                key_id,
                name,
                rotated_from,
            },
        ) => {
            ensure_new(org, key_id)?;
            if !org.issued_keys.contains(&rotated_from) {
                return Err(Error::UnknownKey {
                    key_id: rotated_from,
                });
            }
            Ok(vec![
                KeyIssued {
                    key_id,
                    name,
                    rotated_from: Some(rotated_from),
                }
                .into(),
            ])
        }
    }
}

/// The plan's key limit: a key may be issued while fewer of the organisation's keys than
/// its plan allows count against it.
fn ensure_within_allowance(
    org: &State,
    keys: &[apikey::State],
    now: DateTime<Utc>,
) -> Result<(), Error> {
    match org.plan.key_allowance() {
        KeyAllowance::None => Err(Error::PlanRequired { plan: org.plan }),
        KeyAllowance::Unlimited => Ok(()),
        KeyAllowance::UpTo(limit) => {
            let counted = keys
                .iter()
                .filter(|key| org.issued_keys.contains(&key.id))
                .filter(|key| counts_against_limit(key, now))
                .map(|key| key.id)
                .collect::<BTreeSet<KeyId>>()
                .len();
            if counted >= usize::try_from(limit).unwrap_or(usize::MAX) {
                Err(Error::KeyLimitReached { limit })
            } else {
                Ok(())
            }
        }
    }
}

fn ensure_new(org: &State, key_id: KeyId) -> Result<(), Error> {
    if org.issued_keys.contains(&key_id) {
        Err(Error::KeyAlreadyIssued { key_id })
    } else {
        Ok(())
    }
}

/// Every custom scope of `scopes` is declared by `org`.
fn ensure_declared(org: &State, scopes: &Scopes) -> Result<(), Error> {
    match scopes
        .iter()
        .find(|s| s.is_custom() && !org.custom_scopes.contains_key(s))
    {
        Some(scope) => Err(Error::ScopeNotDeclared { scope }),
        None => Ok(()),
    }
}

/// Applies one event. An event other than `OrganizationCreated` on a missing
/// organisation is ignored (the store never holds such a stream).
pub fn evolve(state: Option<State>, event: &Event) -> Option<State> {
    match (state, event) {
        (None, Event::OrganizationCreated(e)) => Some(State {
            id: e.org_id,
            name: e.name.clone(),
            plan: e.plan,
            issued_keys: Vec::new(),
            custom_scopes: BTreeMap::new(),
            version: 1,
        }),
        (None, _) => None,
        (Some(mut org), event) => {
            org.version += 1;
            match event {
                Event::OrganizationCreated(_) => {}
                Event::PlanChanged(e) => org.plan = e.plan,
                Event::KeyIssued(e) => {
                    if !org.issued_keys.contains(&e.key_id) {
                        org.issued_keys.push(e.key_id);
                    }
                }
                Event::ScopeDeclared(e) => {
                    org.custom_scopes.insert(e.scope, e.description.clone());
                }
                Event::ScopeDeleted(e) => {
                    org.custom_scopes.remove(&e.scope);
                }
            }
            Some(org)
        }
    }
}

/// The `Organization` aggregate, for code generic over [`Aggregate`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Organization;

impl Aggregate for Organization {
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
mod tests {
    use chrono::TimeZone;
    use proptest::prelude::*;

    use super::*;
    use crate::events::SecretHash;
    use crate::scope::Scope;
    use crate::testing;
    use crate::token::{self, Environment};
    use crate::values::AllowedIps;

    fn given(events: impl IntoIterator<Item = Event>) -> testing::Given<Organization> {
        testing::given(events)
    }

    fn org_id() -> OrgId {
        OrgId::from_uuid(uuid::Uuid::from_u128(1))
    }

    fn created(plan: Plan) -> Event {
        OrganizationCreated {
            org_id: org_id(),
            name: OrgName::parse("acme").unwrap(),
            plan,
        }
        .into()
    }

    fn key(n: u128) -> KeyId {
        KeyId::from_uuid(uuid::Uuid::from_u128(100 + n))
    }

    fn name() -> KeyName {
        KeyName::parse("k").unwrap()
    }

    fn issued(n: u128) -> Event {
        KeyIssued {
            key_id: key(n),
            name: name(),
            rotated_from: None,
        }
        .into()
    }

    fn t(seconds: i64) -> DateTime<Utc> {
        Utc.timestamp_opt(1_750_000_000 + seconds, 0).unwrap()
    }

    /// An active key of the organisation, expiring at `expires_at`.
    fn key_state(id: KeyId, expires_at: Option<DateTime<Utc>>) -> apikey::State {
        apikey::State {
            id,
            org_id: org_id(),
            name: name(),
            environment: Environment::Live,
            scopes: Scope::data_scopes(),
            allowed_ips: AllowedIps::any(),
            expires_at,
            rate_limit_per_minute: None,
            secret_hash: SecretHash::new("$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA"),
            prefix: token::prefix_of(Environment::Live, id),
            created_at: t(0),
            revoked_at: None,
            revocation_reason: None,
            rotated_from: None,
            rotated_to: None,
            version: 1,
        }
    }

    /// Keys 1 to `n`, active.
    fn active(n: u128) -> Vec<apikey::State> {
        (1..=n).map(|i| key_state(key(i), None)).collect()
    }

    /// An organisation on `plan` that issued keys 1 to `n`.
    fn with_issued(plan: Plan, n: u128) -> Vec<Event> {
        std::iter::once(created(plan))
            .chain((1..=n).map(issued))
            .collect()
    }

    fn issue_seeing(n: u128, keys: Vec<apikey::State>, now: DateTime<Utc>) -> Command {
        Command::IssueKey {
            key_id: key(n),
            name: name(),
            keys,
            now,
            scopes: Scope::data_scopes(),
        }
    }

    fn issue(n: u128, keys: Vec<apikey::State>) -> Command {
        issue_seeing(n, keys, t(10))
    }

    fn billing() -> Scope {
        Scope::declare("billing:read").unwrap()
    }

    fn declared(scope: Scope) -> Event {
        ScopeDeclared {
            scope,
            description: "Read invoices".into(),
        }
        .into()
    }

    fn declare(scope: Scope, description: &str) -> Command {
        Command::DeclareScope {
            scope,
            description: description.into(),
        }
    }

    #[test]
    fn it_should_declare_a_custom_scope_once() {
        given([created(Plan::Enterprise)])
            .when(declare(billing(), "  Read invoices "))
            .then([declared(billing())]);
        given([created(Plan::Enterprise), declared(billing())])
            .when(declare(billing(), "again"))
            .then_error(Error::ScopeAlreadyDeclared { scope: billing() });
    }

    #[test]
    fn it_should_refuse_an_empty_long_or_multi_line_description() {
        for bad in ["", "   ", "a\nb", &"x".repeat(201)] {
            given([created(Plan::Enterprise)])
                .when(declare(billing(), bad))
                .then_error(Error::InvalidScopeDescription);
        }
    }

    #[test]
    fn it_should_hold_the_number_of_custom_scopes() {
        let mut events = vec![created(Plan::Enterprise)];
        for i in 0..MAX_CUSTOM_SCOPES {
            events.push(declared(Scope::declare(&format!("s{i}:read")).unwrap()));
        }
        given(events)
            .when(declare(billing(), "one more"))
            .then_error(Error::TooManyScopes);
    }

    #[test]
    fn it_should_issue_a_key_with_declared_custom_scopes_only() {
        let with = |scopes: Scopes| Command::IssueKey {
            key_id: key(1),
            name: name(),
            keys: vec![],
            now: t(10),
            scopes,
        };
        given([created(Plan::Enterprise)])
            .when(with([billing()].into_iter().collect()))
            .then_error(Error::ScopeNotDeclared { scope: billing() });
        given([created(Plan::Enterprise), declared(billing())])
            .when(with([billing(), Scope::ASSETS_READ].into_iter().collect()))
            .then([issued(1)]);
        let deleted: Event = ScopeDeleted { scope: billing() }.into();
        given([created(Plan::Enterprise), declared(billing()), deleted])
            .when(with([billing()].into_iter().collect()))
            .then_error(Error::ScopeNotDeclared { scope: billing() });
    }

    #[test]
    fn it_should_delete_only_a_declared_scope() {
        given([created(Plan::Enterprise), declared(billing())])
            .when(Command::DeleteScope { scope: billing() })
            .then([ScopeDeleted { scope: billing() }.into()]);
        given([created(Plan::Enterprise)])
            .when(Command::DeleteScope { scope: billing() })
            .then_error(Error::ScopeNotDeclared { scope: billing() });
    }

    #[test]
    fn it_should_create_an_organization() {
        given([])
            .when(Command::CreateOrganization {
                org_id: org_id(),
                name: OrgName::parse("acme").unwrap(),
                plan: Plan::Professional,
            })
            .then([created(Plan::Professional)]);
    }

    #[test]
    fn it_should_not_create_an_organization_twice() {
        given([created(Plan::Starter)])
            .when(Command::CreateOrganization {
                org_id: org_id(),
                name: OrgName::parse("acme").unwrap(),
                plan: Plan::Starter,
            })
            .then_error(Error::AlreadyExists);
    }

    #[test]
    fn it_should_refuse_commands_to_a_missing_organization() {
        given([])
            .when(Command::ChangePlan {
                plan: Plan::Enterprise,
            })
            .then_error(Error::NotFound);
        given([]).when(issue(1, vec![])).then_error(Error::NotFound);
    }

    #[test]
    fn it_should_change_the_plan() {
        given([created(Plan::Starter)])
            .when(Command::ChangePlan {
                plan: Plan::Enterprise,
            })
            .then([PlanChanged {
                plan: Plan::Enterprise,
            }
            .into()]);
    }

    #[test]
    fn it_should_do_nothing_when_the_plan_is_unchanged() {
        given([created(Plan::Starter)])
            .when(Command::ChangePlan {
                plan: Plan::Starter,
            })
            .then_nothing();
    }

    #[test]
    fn it_should_not_let_a_starter_organization_issue_keys() {
        given([created(Plan::Starter)])
            .when(issue(1, vec![]))
            .then_error(Error::PlanRequired {
                plan: Plan::Starter,
            });
    }

    #[test]
    fn it_should_issue_a_key_below_the_limit() {
        given(with_issued(Plan::Professional, 9))
            .when(issue(10, active(9)))
            .then([issued(10)]);
    }

    #[test]
    fn it_should_not_issue_an_eleventh_professional_key() {
        given(with_issued(Plan::Professional, 10))
            .when(issue(11, active(10)))
            .then_error(Error::KeyLimitReached { limit: 10 });
    }

    #[test]
    fn it_should_not_count_revoked_or_expired_keys_against_the_limit() {
        let mut keys = active(10);
        keys[0].revoked_at = Some(t(1));
        keys[1].expires_at = Some(t(10));
        given(with_issued(Plan::Professional, 10))
            .when(issue_seeing(11, keys.clone(), t(10)))
            .then([issued(11)]);
        // Before the second key's expiry, nine count: one more may still be issued.
        given(with_issued(Plan::Professional, 10))
            .when(issue_seeing(11, keys, t(9)))
            .then([issued(11)]);
    }

    #[test]
    fn it_should_count_a_key_that_expires_after_the_clock() {
        let mut keys = active(10);
        keys[0].expires_at = Some(t(11));
        given(with_issued(Plan::Professional, 10))
            .when(issue_seeing(11, keys, t(10)))
            .then_error(Error::KeyLimitReached { limit: 10 });
    }

    #[test]
    fn it_should_not_count_a_key_the_organization_did_not_issue() {
        let mut keys = active(9);
        keys.push(key_state(key(99), None));
        given(with_issued(Plan::Professional, 9))
            .when(issue(10, keys))
            .then([issued(10)]);
    }

    #[test]
    fn it_should_count_a_key_seen_twice_once() {
        let mut keys = active(9);
        keys.push(keys[0].clone());
        given(with_issued(Plan::Professional, 9))
            .when(issue(10, keys))
            .then([issued(10)]);
    }

    #[test]
    fn it_should_issue_any_number_of_enterprise_keys() {
        given(with_issued(Plan::Enterprise, 20))
            .when(issue(21, active(20)))
            .then([issued(21)]);
    }

    #[test]
    fn it_should_need_the_keys_only_of_a_plan_with_a_number_of_keys() {
        for (plan, needed) in [
            (Plan::Starter, 0),
            (Plan::Professional, 3),
            (Plan::Enterprise, 0),
        ] {
            let org = Organization::replay(&with_issued(plan, 3)).unwrap();
            assert_eq!(org.keys_to_count().len(), needed, "{plan}");
        }
    }

    #[test]
    fn it_should_apply_the_new_plan_after_a_change() {
        given([
            created(Plan::Enterprise),
            PlanChanged {
                plan: Plan::Starter,
            }
            .into(),
        ])
        .when(issue(1, vec![]))
        .then_error(Error::PlanRequired {
            plan: Plan::Starter,
        });
    }

    #[test]
    fn it_should_not_issue_the_same_key_twice() {
        given([created(Plan::Enterprise), issued(1)])
            .when(issue(1, active(1)))
            .then_error(Error::KeyAlreadyIssued { key_id: key(1) });
    }

    #[test]
    fn it_should_issue_a_root_key_on_any_plan() {
        given([created(Plan::Starter)])
            .when(Command::IssueRootKey {
                key_id: key(1),
                name: name(),
            })
            .then([issued(1)]);
    }

    #[test]
    fn it_should_issue_a_rotated_key_beyond_the_limit() {
        given([created(Plan::Professional), issued(1)])
            .when(Command::IssueRotatedKey {
                key_id: key(2),
                name: name(),
                rotated_from: key(1),
            })
            .then([KeyIssued {
                key_id: key(2),
                name: name(),
                rotated_from: Some(key(1)),
            }
            .into()]);
    }

    #[test]
    fn it_should_not_rotate_a_key_of_another_organization() {
        given([created(Plan::Professional)])
            .when(Command::IssueRotatedKey {
                key_id: key(2),
                name: name(),
                rotated_from: key(1),
            })
            .then_error(Error::UnknownKey { key_id: key(1) });
    }

    #[test]
    fn it_should_remember_issued_keys_and_count_versions() {
        let state =
            Organization::replay(&[created(Plan::Enterprise), issued(1), issued(2)]).unwrap();
        assert_eq!(state.issued_keys, [key(1), key(2)]);
        assert_eq!(state.version, 3);
        assert_eq!(state.id, org_id());
    }

    // ------------------------------------------------------------------ properties

    #[derive(Debug, Clone)]
    enum Step {
        /// Issue a key, expiring this many seconds later (if at all).
        Issue(Option<i64>),
        /// Revoke the n-th key issued so far (modulo their number).
        Revoke(usize),
        /// Let time pass.
        Wait(i64),
    }

    fn any_step() -> impl Strategy<Value = Step> {
        prop_oneof![
            4 => proptest::option::of(1i64..50).prop_map(Step::Issue),
            1 => any::<usize>().prop_map(Step::Revoke),
            1 => (0i64..30).prop_map(Step::Wait),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// Whatever keys are issued, revoked or expire, an organisation never holds more
        /// active keys than its plan allows, a key is refused only at the limit, and a
        /// plan without keys issues none.
        #[test]
        fn an_organization_should_never_hold_more_active_keys_than_its_plan_allows(
            plan in proptest::sample::select(Plan::ALL.to_vec()),
            steps in proptest::collection::vec(any_step(), 0..40),
        ) {
            let mut org = Organization::replay(&[created(plan)]);
            let mut keys: Vec<apikey::State> = Vec::new();
            let mut now = 0i64;
            for (n, step) in steps.into_iter().enumerate() {
                match step {
                    Step::Issue(expires_in) => {
                        let n = u128::try_from(n).unwrap() + 1;
                        let needed = org.as_ref().unwrap().keys_to_count().to_vec();
                        let seen = keys.iter().filter(|k| needed.contains(&k.id)).cloned().collect();
                        let before = keys.iter().filter(|k| counts_against_limit(k, t(now))).count();
                        match decide(&org, issue_seeing(n, seen, t(now))) {
                            Ok(events) => {
                                org = events.iter().fold(org, evolve);
                                keys.push(key_state(key(n), expires_in.map(|s| t(now + s))));
                                if let KeyAllowance::UpTo(limit) = plan.key_allowance() {
                                    prop_assert!(before < limit as usize);
                                }
                            }
                            Err(Error::KeyLimitReached { limit }) => {
                                prop_assert_eq!(before, limit as usize);
                            }
                            Err(Error::PlanRequired { .. }) => {
                                prop_assert_eq!(plan.key_allowance(), KeyAllowance::None);
                            }
                            Err(other) => prop_assert!(false, "{other:?}"),
                        }
                    }
                    Step::Revoke(i) if !keys.is_empty() => {
                        let len = keys.len();
                        keys[i % len].revoked_at.get_or_insert(t(now));
                    }
                    Step::Revoke(_) => {}
                    Step::Wait(seconds) => now += seconds,
                }
                let active = keys.iter().filter(|k| counts_against_limit(k, t(now))).count();
                match plan.key_allowance() {
                    KeyAllowance::None => prop_assert!(keys.is_empty()),
                    KeyAllowance::UpTo(limit) => prop_assert!(active <= limit as usize),
                    KeyAllowance::Unlimited => {}
                }
            }
        }
    }
}
