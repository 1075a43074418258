//! Organisation plans and the limits they carry.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

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

    /// The most active keys an organisation may hold: `Some(0)` means it may not create
    /// keys at all, `None` means no limit.
    pub const fn max_active_keys(self) -> Option<u32> {
        match self {
            Plan::Starter => Some(0),
            Plan::Professional => Some(10),
            Plan::Enterprise => None,
        }
    }

    /// Whether the plan allows creating keys at all.
    pub const fn can_create_keys(self) -> bool {
        !matches!(self.max_active_keys(), Some(0))
    }

    /// The default per-key rate limit. Starter gets 60 (one a second): enough to try the
    /// API with its root key, below every paid plan. A key's override replaces it.
    pub const fn requests_per_minute(self) -> u32 {
        match self {
            Plan::Starter => 60,
            Plan::Professional => 100,
            Plan::Enterprise => 500,
        }
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
        assert_eq!(Plan::Starter.max_active_keys(), Some(0));
        assert!(!Plan::Starter.can_create_keys());
        assert_eq!(Plan::Professional.max_active_keys(), Some(10));
        assert_eq!(Plan::Enterprise.max_active_keys(), None);
        assert_eq!(Plan::Starter.requests_per_minute(), 60);
        assert_eq!(Plan::Professional.requests_per_minute(), 100);
        assert_eq!(Plan::Enterprise.requests_per_minute(), 500);
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
