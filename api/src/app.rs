//! The application state every handler shares: [`App`] and its cheap handle [`AppState`].
//! The router and its layers are in [`crate::http`].

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use commands::keys::KeyService;
use domain::apikey;
use domain::plan::Plan;
use domain::store::EventStore;
use ipnet::IpNet;
use projections::keys::KeyQueries;
use projections::{ProjectorHandle, ReadDb};

use crate::auth::Authenticator;

/// How long a management read waits for the read models to include this node's last
/// write (read-your-writes) before answering with what they have.
pub const READ_YOUR_WRITES_TIMEOUT: Duration = Duration::from_secs(5);

/// Everything a request handler may need.
pub struct App {
    /// The event store.
    pub store: Arc<dyn EventStore>,
    /// The read-model database.
    pub read_db: ReadDb,
    /// The write side's command handlers.
    pub keys: Arc<KeyService>,
    /// Key verification with this node's cache.
    pub auth: Authenticator,
    /// Key list and details.
    pub key_queries: KeyQueries,
    /// Proxies whose `X-Forwarded-For` is believed.
    pub trusted_proxies: Vec<IpNet>,
    /// This node's projectors (read-your-writes waits for them).
    pub projectors: Vec<ProjectorHandle>,
    /// The global position of this node's last write.
    pub last_written: AtomicU64,
    /// Per-key rate limits and the plans they follow.
    pub limits: crate::auth::rate_limit::RateLimits,
    /// The group-commit writer of `ApiCallRecorded` events.
    pub usage: crate::usage::UsageRecorder,
    /// The gateway's route rules (`KEYLEDGER_GATEWAY_ROUTES`).
    pub gateway: crate::routes::gateway::GatewayRules,
}

impl App {
    /// Waits until every read model includes `position` (and remembers it as this node's
    /// last write, so later reads wait for it too).
    pub async fn read_your_writes(&self, position: u64) {
        self.last_written.fetch_max(position, Ordering::AcqRel);
        for p in &self.projectors {
            if !p.wait_for(position, READ_YOUR_WRITES_TIMEOUT).await {
                tracing::warn!(
                    projection = p.name(),
                    position,
                    "read model did not catch up in time; answering with what it has"
                );
            }
        }
    }

    /// The global position of this node's last write.
    pub fn last_written(&self) -> u64 {
        self.last_written.load(Ordering::Acquire)
    }

    /// The requests per minute `key` may make, by the domain's one rule
    /// ([`apikey::State::requests_per_minute`]: its plan's limit, or its own if lower).
    /// The plan comes from the rate limiter's cache, read from the store on a miss; when it
    /// cannot be read, the lowest plan's limit applies.
    pub async fn requests_per_minute(&self, key: &apikey::State) -> u32 {
        let plan = self
            .limits
            .plan(key.org_id, || async {
                self.keys
                    .load_org(key.org_id)
                    .await
                    .ok()
                    .flatten()
                    .map(|o| (o.plan, o.version))
            })
            .await
            .unwrap_or(Plan::Starter);
        key.requests_per_minute(plan)
    }
}

/// Cheap to clone: handlers share one `App`.
#[derive(Clone)]
pub struct AppState(pub Arc<App>);

/// Handlers read the shared `App` through the state: `state.keys`, `state.auth`.
impl std::ops::Deref for AppState {
    type Target = App;

    fn deref(&self) -> &App {
        &self.0
    }
}
