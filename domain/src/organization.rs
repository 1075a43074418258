//! The `Organization` aggregate (stream `org-<id>`): a tenant, its plan, and the keys it
//! has issued.
//!
//! The plan's key limit is enforced here, race-free: to create a key, the command handler
//! counts the organisation's active keys among [`State::issued_keys`], decides
//! [`Command::IssueKey`], and appends the resulting `KeyIssued` to the org stream with an
//! `Exact` expected version in the same atomic append as the key's `KeyCreated`. Two
//! concurrent creates cannot both pass: the second append fails with a wrong expected
//! version, and the retry counts the first key.

use serde::Serialize;

use crate::aggregate::Aggregate;
use crate::events::{KeyIssued, OrganizationCreated, OrganizationEvent, PlanChanged};
use crate::ids::{KeyId, OrgId};
use crate::plan::Plan;
use crate::values::{KeyName, OrgName};

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
    /// Every key it ever issued, oldest first (revoked and expired ones included: the
    /// handler counts the active ones).
    pub issued_keys: Vec<KeyId>,
    /// The stream version: the number of events folded so far.
    pub version: u64,
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
        /// How many of the organisation's issued keys are active now (counted by the
        /// handler at the version it will append at).
        active_keys: u32,
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
                active_keys,
            },
        ) => {
            ensure_new(org, key_id)?;
            match org.plan.max_active_keys() {
                Some(0) => return Err(Error::PlanRequired { plan: org.plan }),
                Some(limit) if active_keys >= limit => {
                    return Err(Error::KeyLimitReached { limit });
                }
                _ => {}
            }
            Ok(vec![
                KeyIssued {
                    key_id,
                    name,
                    rotated_from: None,
                }
                .into(),
            ])
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

fn ensure_new(org: &State, key_id: KeyId) -> Result<(), Error> {
    if org.issued_keys.contains(&key_id) {
        Err(Error::KeyAlreadyIssued { key_id })
    } else {
        Ok(())
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
    use super::*;
    use crate::testing;

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

    fn issue(n: u128, active_keys: u32) -> Command {
        Command::IssueKey {
            key_id: key(n),
            name: name(),
            active_keys,
        }
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
        given([]).when(issue(1, 0)).then_error(Error::NotFound);
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
            .when(issue(1, 0))
            .then_error(Error::PlanRequired {
                plan: Plan::Starter,
            });
    }

    #[test]
    fn it_should_issue_a_key_below_the_limit() {
        given([created(Plan::Professional)])
            .when(issue(1, 9))
            .then([issued(1)]);
    }

    #[test]
    fn it_should_not_issue_an_eleventh_professional_key() {
        given([created(Plan::Professional)])
            .when(issue(11, 10))
            .then_error(Error::KeyLimitReached { limit: 10 });
    }

    #[test]
    fn it_should_issue_any_number_of_enterprise_keys() {
        given([created(Plan::Enterprise)])
            .when(issue(1, 10_000))
            .then([issued(1)]);
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
        .when(issue(1, 0))
        .then_error(Error::PlanRequired {
            plan: Plan::Starter,
        });
    }

    #[test]
    fn it_should_not_issue_the_same_key_twice() {
        given([created(Plan::Enterprise), issued(1)])
            .when(issue(1, 1))
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
}
