//! Part of step 2 of the auth order ([`crate::auth`]): bounded work for tokens a node has
//! not yet proven (DESIGN section 6).
//!
//! A key id is not secret (it is in every token and in `created_by` fields), so anyone can
//! make well-formed tokens with a right checksum for a real key and a wrong secret. Until a
//! node has proven a key's token once with argon2, each such token would cost an argon2
//! verification (~20 ms of CPU and ~19 MiB of memory). Three bounds keep a flood of them
//! from exhausting a node:
//!
//! 1. **Bounded concurrency**: at most `concurrency` argon2 verifications run at once
//!    (default: half the cores, at least one), and at most [`MAX_WAITING`] requests wait
//!    for one; beyond that a request is refused at once (429 `verification_busy`).
//! 2. **Refused tokens are remembered**: the `sha256` of a token argon2 refused is kept for
//!    [`REFUSED_TTL`], so the same forged token is refused again without argon2.
//! 3. **A failure budget per key id**: after `failure_budget` refused tokens for one key id
//!    within [`FAILURE_WINDOW`], further unproven tokens for it are refused without argon2
//!    (429 `too_many_failed_attempts`, with `Retry-After`) until the window ends.
//!
//! A key already proven on this node is not affected: its token is compared with the
//! remembered `sha256` before any of this, so it keeps working at full speed during a flood.
//! The price of bound 3: while a key id is under attack, its legitimate holder cannot be
//! proven on a node that has not proven it yet, until the window ends.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use domain::ids::KeyId;
use moka::future::Cache;
use tokio::sync::{Semaphore, SemaphorePermit};

/// The window of the per-key failure budget.
pub const FAILURE_WINDOW: Duration = Duration::from_secs(60);
/// How long a refused token's fingerprint is remembered.
pub const REFUSED_TTL: Duration = Duration::from_secs(600);
/// The most requests waiting for an argon2 slot at once.
pub const MAX_WAITING: usize = 256;
/// The most refused fingerprints and budgets held (memory stays bounded whatever the flood).
const CAPACITY: u64 = 100_000;

/// The bounds' settings.
#[derive(Debug, Clone, Copy)]
pub struct ProofConfig {
    /// argon2 verifications at once.
    pub concurrency: usize,
    /// Refused tokens per key id per [`FAILURE_WINDOW`] before attempts are refused cheaply.
    pub failure_budget: u32,
}

impl ProofConfig {
    /// Half the cores (at least one) and 20 failures a minute.
    pub fn default_for_machine() -> Self {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        ProofConfig {
            concurrency: (cores / 2).max(1),
            failure_budget: 20,
        }
    }
}

/// Why an unproven token was refused before argon2 ran.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// This very token was refused before.
    KnownBad,
    /// The key id's failure budget is spent; retry after this many seconds.
    BudgetSpent {
        /// Seconds until the window ends.
        retry_after_secs: u64,
    },
    /// Too many requests are waiting for argon2.
    Busy,
}

/// A key id's failures in its current window.
struct Failures {
    since: Instant,
    count: AtomicU32,
}

/// One request waiting for a slot.
struct Waiting<'a>(&'a AtomicUsize);

impl<'a> Waiting<'a> {
    fn enter(count: &'a AtomicUsize) -> Option<Self> {
        if count.fetch_add(1, Ordering::AcqRel) >= MAX_WAITING {
            count.fetch_sub(1, Ordering::AcqRel);
            return None;
        }
        Some(Waiting(count))
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The bounds, shared by every request of a node.
#[derive(Clone)]
pub struct ProofLimits {
    permits: Arc<Semaphore>,
    waiting: Arc<AtomicUsize>,
    refused: Cache<[u8; 32], ()>,
    failures: Cache<KeyId, Arc<Failures>>,
    budget: u32,
}

impl ProofLimits {
    /// Bounds with `config`.
    pub fn new(config: ProofConfig) -> Self {
        ProofLimits {
            permits: Arc::new(Semaphore::new(config.concurrency.max(1))),
            waiting: Arc::new(AtomicUsize::new(0)),
            refused: Cache::builder()
                .max_capacity(CAPACITY)
                .time_to_live(REFUSED_TTL)
                .build(),
            failures: Cache::builder()
                .max_capacity(CAPACITY)
                .time_to_live(FAILURE_WINDOW)
                .build(),
            budget: config.failure_budget.max(1),
        }
    }

    /// Checks the cheap refusals (known bad token, spent budget); `Ok` means argon2 may be
    /// tried, after [`ProofLimits::slot`].
    pub async fn precheck(&self, key: KeyId, fingerprint: &[u8; 32]) -> Result<(), Refusal> {
        if self.refused.contains_key(fingerprint) {
            return Err(Refusal::KnownBad);
        }
        if let Some(f) = self.failures.get(&key).await
            && f.count.load(Ordering::Relaxed) >= self.budget
        {
            let left = FAILURE_WINDOW.saturating_sub(f.since.elapsed());
            return Err(Refusal::BudgetSpent {
                retry_after_secs: left.as_secs().max(1),
            });
        }
        Ok(())
    }

    /// Waits for an argon2 slot, unless too many requests wait already.
    pub async fn slot(&self) -> Result<SemaphorePermit<'_>, Refusal> {
        // Counted out on drop, so a request dropped while it waits (the client went away)
        // leaves the count right.
        let _waiting = Waiting::enter(&self.waiting).ok_or(Refusal::Busy)?;
        // The semaphore is never closed.
        self.permits.acquire().await.map_err(|_| Refusal::Busy)
    }

    /// Records that argon2 refused `fingerprint` for `key`.
    pub async fn failed(&self, key: KeyId, fingerprint: [u8; 32]) {
        self.refused.insert(fingerprint, ()).await;
        let entry = self
            .failures
            .get_with(key, async {
                Arc::new(Failures {
                    since: Instant::now(),
                    count: AtomicU32::new(0),
                })
            })
            .await;
        entry.count.fetch_add(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(budget: u32) -> ProofLimits {
        ProofLimits::new(ProofConfig {
            concurrency: 1,
            failure_budget: budget,
        })
    }

    #[tokio::test]
    async fn it_should_refuse_a_token_refused_before_without_argon2() {
        let l = limits(10);
        let key = KeyId::new_v7();
        assert_eq!(l.precheck(key, &[1; 32]).await, Ok(()));
        l.failed(key, [1; 32]).await;
        assert_eq!(l.precheck(key, &[1; 32]).await, Err(Refusal::KnownBad));
        assert_eq!(l.precheck(key, &[2; 32]).await, Ok(()));
    }

    #[tokio::test]
    async fn it_should_spend_a_key_ids_budget_and_leave_other_keys_alone() {
        let l = limits(3);
        let (attacked, other) = (KeyId::new_v7(), KeyId::new_v7());
        for i in 0..3u8 {
            assert_eq!(l.precheck(attacked, &[10 + i; 32]).await, Ok(()));
            l.failed(attacked, [10 + i; 32]).await;
        }
        match l.precheck(attacked, &[99; 32]).await {
            Err(Refusal::BudgetSpent { retry_after_secs }) => {
                assert!((1..=60).contains(&retry_after_secs));
            }
            other => panic!("expected a spent budget, got {other:?}"),
        }
        assert_eq!(l.precheck(other, &[99; 32]).await, Ok(()));
    }

    #[tokio::test]
    async fn it_should_hand_out_no_more_slots_than_its_concurrency() {
        let l = limits(3);
        let first = l.slot().await.unwrap();
        let second = tokio::time::timeout(Duration::from_millis(50), l.slot()).await;
        assert!(second.is_err(), "a second slot while the first is held");
        drop(first);
        assert!(l.slot().await.is_ok());
        assert_eq!(
            l.waiting.load(Ordering::Acquire),
            0,
            "a dropped waiter is counted out"
        );
    }
}
