//! Step 5 of the auth order ([`crate::auth`]): per-key rate limits, GCRA (governor), one limiter per key with the key's quota (its
//! plan's, or its own if lower: `App::requests_per_minute`), so a key may spend its whole
//! minute's allowance in a burst and then gets one request back every `60 / limit` seconds.

use std::num::NonZeroU32;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use domain::ids::{KeyId, OrgId};
use domain::plan::Plan;
use governor::clock::{Clock, DefaultClock};
use governor::middleware::StateInformationMiddleware;
use governor::state::{InMemoryState, NotKeyed};
use governor::{Quota, RateLimiter};

use crate::auth::RateLimitState;

type Limiter = RateLimiter<NotKeyed, InMemoryState, DefaultClock, StateInformationMiddleware>;

/// The outcome of a check that failed.
#[derive(Debug, Clone, Copy)]
pub struct Exceeded {
    /// The state to report in headers.
    pub state: RateLimitState,
    /// Seconds until one more request is allowed (at least 1).
    pub retry_after_seconds: u64,
}

/// Every key's limiter on this node.
#[derive(Clone)]
pub struct RateLimits {
    limiters: moka::sync::Cache<KeyId, Arc<(u32, Limiter, AtomicU32)>>,
    /// Each organisation's plan and the version of its stream it was read at.
    plans: moka::future::Cache<OrgId, (Plan, u64)>,
    clock: DefaultClock,
}

impl Default for RateLimits {
    fn default() -> Self {
        Self::new()
    }
}

impl RateLimits {
    /// Limiters for up to 100k keys idle for at most 10 minutes; plans cached 30 s.
    pub fn new() -> Self {
        Self {
            limiters: moka::sync::Cache::builder()
                .max_capacity(100_000)
                .time_to_idle(Duration::from_secs(600))
                .build(),
            plans: moka::future::Cache::builder()
                .max_capacity(100_000)
                .time_to_live(Duration::from_secs(30))
                .build(),
            clock: DefaultClock::default(),
        }
    }

    /// The organisation's plan, from the cache or `load` (the plan and the stream version
    /// it was read at).
    pub async fn plan<F, Fut>(&self, org: OrgId, load: F) -> Option<Plan>
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = Option<(Plan, u64)>>,
    {
        if let Some((plan, _)) = self.plans.get(&org).await {
            return Some(plan);
        }
        let (plan, version) = load().await?;
        self.fill_plan(org, plan, version).await;
        Some(plan)
    }

    /// Caches a plan read at `version`, unless a newer one is cached: a slow read that
    /// started before a plan change cannot put the old plan back after its notice.
    pub async fn fill_plan(&self, org: OrgId, plan: Plan, version: u64) {
        self.plans
            .entry(org)
            .and_compute_with(|existing| {
                let op = match existing {
                    Some(e) if e.value().1 > version => moka::ops::compute::Op::Nop,
                    _ => moka::ops::compute::Op::Put((plan, version)),
                };
                std::future::ready(op)
            })
            .await;
    }

    /// The stream version of the cached plan, if any.
    pub async fn plan_version(&self, org: OrgId) -> Option<u64> {
        self.plans.get(&org).await.map(|(_, v)| v)
    }

    /// Forgets a cached plan (it is read again on its next use).
    pub async fn forget_plan(&self, org: OrgId) {
        self.plans.invalidate(&org).await;
    }

    /// Forgets every cached plan (the bus was reset: notices may have been missed).
    pub fn forget_all_plans(&self) {
        self.plans.invalidate_all();
    }

    /// The key's state without taking a request (for responses refused before the rate
    /// limit is checked): its allowance as last seen, or whole.
    pub fn peek(&self, key: KeyId, per_minute: u32) -> RateLimitState {
        let per_minute = per_minute.max(1);
        match self.limiters.get(&key).filter(|e| e.0 == per_minute) {
            Some(e) => {
                let remaining = e.2.load(std::sync::atomic::Ordering::Relaxed);
                let missing = per_minute.saturating_sub(remaining);
                RateLimitState {
                    limit: per_minute,
                    remaining,
                    reset_seconds: (f64::from(missing) * 60.0 / f64::from(per_minute)).ceil()
                        as u64,
                }
            }
            None => RateLimitState {
                limit: per_minute,
                remaining: per_minute,
                reset_seconds: 0,
            },
        }
    }

    /// Takes one request from `key`'s allowance of `per_minute`.
    pub fn check(&self, key: KeyId, per_minute: u32) -> Result<RateLimitState, Exceeded> {
        let per_minute = per_minute.max(1);
        let entry = self.limiters.get(&key).filter(|e| e.0 == per_minute);
        let entry = match entry {
            Some(e) => e,
            None => {
                // A new key, or its limit changed: a fresh allowance with the new quota.
                let quota =
                    Quota::per_minute(NonZeroU32::new(per_minute).unwrap_or(NonZeroU32::MIN));
                let limiter =
                    RateLimiter::direct(quota).with_middleware::<StateInformationMiddleware>();
                let e = Arc::new((per_minute, limiter, AtomicU32::new(per_minute)));
                self.limiters.insert(key, e.clone());
                e
            }
        };
        let per_cell = 60.0 / f64::from(per_minute);
        match entry.1.check() {
            Ok(snapshot) => {
                let remaining = snapshot.remaining_burst_capacity();
                entry.2.store(remaining, Ordering::Relaxed);
                let missing = per_minute.saturating_sub(remaining);
                Ok(RateLimitState {
                    limit: per_minute,
                    remaining,
                    reset_seconds: (f64::from(missing) * per_cell).ceil() as u64,
                })
            }
            Err(not_until) => {
                entry.2.store(0, Ordering::Relaxed);
                let wait = not_until.wait_time_from(self.clock.now());
                Err(Exceeded {
                    state: RateLimitState {
                        limit: per_minute,
                        remaining: 0,
                        reset_seconds: 60,
                    },
                    retry_after_seconds: wait.as_secs_f64().ceil().max(1.0) as u64,
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn it_should_allow_a_whole_minute_in_a_burst_then_refuse() {
        let limits = RateLimits::new();
        let key = KeyId::new_v7();
        for i in 0..100 {
            let state = limits.check(key, 100).unwrap();
            assert_eq!(state.remaining, 99 - i);
        }
        let refused = limits.check(key, 100).unwrap_err();
        assert_eq!(refused.state.remaining, 0);
        assert_eq!(refused.retry_after_seconds, 1);
    }

    #[test]
    fn it_should_give_each_key_its_own_allowance_and_follow_a_new_limit() {
        let limits = RateLimits::new();
        let (a, b) = (KeyId::new_v7(), KeyId::new_v7());
        for _ in 0..3 {
            limits.check(a, 3).unwrap();
        }
        assert!(limits.check(a, 3).is_err());
        assert!(limits.check(b, 3).is_ok());
        // A raised limit takes effect at once.
        assert!(limits.check(a, 10).is_ok());
    }
}
