//! Organisation plans and the limits they carry.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::values::RateLimit;

/// How many active keys a plan lets an organisation hold (the root key included).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KeyAllowance {
    /// It may not create keys through the API (`plan_required`).
    None,
    /// At most this many active keys.
    UpTo(u32),
    /// Any number.
    Unlimited,
}

/// An organisation's plan.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Plan {
    /// May not create keys through the API (`plan_required`); the organisation's root
    /// key, made by the CLI, still works at 60 requests per minute.
    Starter,
    /// Up to 10 active keys, 100 requests per minute per key.
    Professional,
    /// No key limit, 500 requests per minute per key.
    Enterprise,
}

impl Plan {
    /// Every plan, cheapest first.
    pub const ALL: [Plan; 3] = [Plan::Starter, Plan::Professional, Plan::Enterprise];

    /// How many active keys the plan allows. The decision that applies it is
    /// `organization::decide` on `IssueKey`.
    pub const fn key_allowance(self) -> KeyAllowance {
        match self {
            Plan::Starter => KeyAllowance::None,
            Plan::Professional => KeyAllowance::UpTo(10),
            Plan::Enterprise => KeyAllowance::Unlimited,
        }
    }

    /// The plan's per-key rate limit. Starter gets 60 (one a second): enough to try the
    /// API with its root key, below every paid plan.
    pub const fn requests_per_minute(self) -> u32 {
        match self {
            Plan::Starter => 60,
            Plan::Professional => 100,
            Plan::Enterprise => 500,
        }
    }

    /// The rate limit a key with its own limit `own` gets on this plan: the smaller of the
    /// two. A key's own limit can only lower its plan's, never raise it, so an operator's
    /// override cannot buy a key more than its organisation pays for (README, differences
    /// from the design). The one rule every rate limit answer follows: the auth layer's
    /// check, its `RateLimit-*` headers and `/whoami`.
    pub fn effective_requests_per_minute(self, own: Option<RateLimit>) -> u32 {
        let plan = self.requests_per_minute();
        own.map_or(plan, |own| own.per_minute().min(plan))
    }

    /// `"starter"`, `"professional"` or `"enterprise"`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Plan::Starter => "starter",
            Plan::Professional => "professional",
            Plan::Enterprise => "enterprise",
        }
    }
}

impl fmt::Display for Plan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An unknown plan name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown plan {0:?}: expected starter, professional or enterprise")]
pub struct PlanError(pub String);

impl FromStr for Plan {
    type Err = PlanError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Plan::ALL
            .into_iter()
            .find(|plan| plan.as_str() == s)
            .ok_or_else(|| PlanError(s.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn it_should_carry_the_limits_of_the_contract() {
        assert_eq!(Plan::Starter.key_allowance(), KeyAllowance::None);
        assert_eq!(Plan::Professional.key_allowance(), KeyAllowance::UpTo(10));
        assert_eq!(Plan::Enterprise.key_allowance(), KeyAllowance::Unlimited);
        assert_eq!(Plan::Starter.requests_per_minute(), 60);
        assert_eq!(Plan::Professional.requests_per_minute(), 100);
        assert_eq!(Plan::Enterprise.requests_per_minute(), 500);
    }

    fn limit(n: u64) -> Option<RateLimit> {
        Some(RateLimit::parse(n).unwrap())
    }

    #[test]
    fn a_key_without_its_own_limit_should_get_its_plans() {
        for plan in Plan::ALL {
            assert_eq!(
                plan.effective_requests_per_minute(None),
                plan.requests_per_minute()
            );
        }
    }

    #[test]
    fn a_keys_lower_limit_should_throttle_it_below_its_plan() {
        assert_eq!(
            Plan::Professional.effective_requests_per_minute(limit(3)),
            3
        );
    }

    #[test]
    fn a_keys_higher_limit_should_not_lift_it_above_its_plan() {
        assert_eq!(
            Plan::Professional.effective_requests_per_minute(limit(5000)),
            100
        );
        assert_eq!(Plan::Starter.effective_requests_per_minute(limit(61)), 60);
    }

    proptest::proptest! {
        /// The effective limit is never above the plan's nor above the key's own, and is
        /// one of the two.
        #[test]
        fn the_effective_limit_should_be_the_smaller_of_the_plans_and_the_keys(
            plan in proptest::sample::select(Plan::ALL.to_vec()),
            own in proptest::option::of(1u64..=1_000_000),
        ) {
            let own = own.map(|n| RateLimit::parse(n).unwrap());
            let effective = plan.effective_requests_per_minute(own);
            proptest::prop_assert!(effective <= plan.requests_per_minute());
            proptest::prop_assert!(own.is_none_or(|own| effective <= own.per_minute()));
            proptest::prop_assert!(
                effective == plan.requests_per_minute()
                    || own.is_some_and(|own| effective == own.per_minute())
            );
        }
    }

    #[test]
    fn it_should_parse_and_serialize_lowercase_names() {
        for plan in Plan::ALL {
            assert_eq!(plan.as_str().parse(), Ok(plan));
            assert_eq!(serde_json::to_string(&plan).unwrap(), format!("\"{plan}\""));
        }
        assert_eq!("gold".parse::<Plan>(), Err(PlanError("gold".into())));
    }
}
