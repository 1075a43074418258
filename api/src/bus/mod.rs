//! The revocation bus adapters, behind the `domain::bus::RevocationBus` port:
//!
//! - [`inprocess`]: a tokio broadcast channel, for the embedded default (one node);
//! - [`nats`]: NATS core publish/subscribe on `<prefix>.keys.changed`, for many nodes.
//!
//! A notice carries a key id and the key stream's version (or, for a plan change, an
//! organisation id and its stream's version), never a secret. Every change
//! that the auth layer reads is published twice: at once by the node that handled the
//! command (right after the append, see [`crate::auth::Authenticator::refresh`]), and
//! reliably by the [`relay`], which follows the event store from a checkpoint of its own,
//! so that a crash between an append and its publish loses nothing. Receivers ignore
//! notices at or below the version they hold, so duplicates cost nothing.
//!
//! [`Bus`] adds what the port does not say: whether the bus is connected (for the cache's
//! trust rule and `/readyz`), and a count of *resets*: moments after which this node may
//! have missed notices (a NATS reconnect, a slow consumer, a lagging in-process receiver),
//! on which the auth cache drops everything it holds.

pub mod inprocess;
pub mod nats;
pub mod relay;

use std::sync::Arc;
use std::time::Duration;

use domain::bus::{Notice, RevocationBus};
use tokio::sync::watch;

/// The bus's state as this node sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BusHealth {
    /// Connected: notices published now reach this node.
    pub connected: bool,
    /// How many times this node may have missed notices (reconnects, lag).
    pub resets: u64,
}

/// The bus a node runs with, and its health.
#[derive(Clone)]
pub struct Bus {
    port: Arc<dyn RevocationBus>,
    health: watch::Receiver<BusHealth>,
    kind: &'static str,
}

impl std::fmt::Debug for Bus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bus")
            .field("kind", &self.kind)
            .field("health", &*self.health.borrow())
            .finish()
    }
}

/// How long a publish may wait for NATS to take the message before it is reported lost
/// (the relay then retries; other nodes' caches are bounded by the TTL meanwhile).
pub const PUBLISH_TIMEOUT: Duration = Duration::from_secs(2);

impl Bus {
    /// The in-process bus (one node; always connected).
    pub fn in_process() -> Bus {
        let (bus, health) = inprocess::InProcessBus::new();
        Bus {
            port: Arc::new(bus),
            health,
            kind: "in-process",
        }
    }

    /// NATS at `url`, on subjects under `prefix`. Connects in the background and keeps
    /// reconnecting: a node starts (and reports the bus down) while NATS is away.
    pub async fn nats(url: &str, prefix: &str, ping: Duration) -> Result<Bus, String> {
        let (bus, health) = nats::NatsBus::connect(url, prefix, ping).await?;
        Ok(Bus {
            port: Arc::new(bus),
            health,
            kind: "nats",
        })
    }

    /// The port, for the relay and the listener.
    pub fn port(&self) -> Arc<dyn RevocationBus> {
        self.port.clone()
    }

    /// `in-process` or `nats`.
    pub fn kind(&self) -> &'static str {
        self.kind
    }

    /// Whether notices published now reach this node.
    pub fn is_connected(&self) -> bool {
        self.health.borrow().connected
    }

    /// The health, to watch for resets.
    pub fn health(&self) -> watch::Receiver<BusHealth> {
        self.health.clone()
    }

    /// Publishes a notice for the node-local path: best effort, never fails the caller.
    /// While the bus is down it is skipped (it would only queue up): the relay publishes
    /// every change again once the bus is back, and other nodes' caches are bounded by the
    /// TTL meanwhile.
    pub async fn publish(&self, notice: impl Into<Notice>) {
        if !self.is_connected() {
            metrics::counter!("keyledger_bus_publish_skipped_total").increment(1);
            return;
        }
        let notice = notice.into();
        match self.port.publish(notice).await {
            Ok(()) => metrics::counter!("keyledger_bus_published_total").increment(1),
            Err(e) => {
                metrics::counter!("keyledger_bus_publish_errors_total").increment(1);
                tracing::warn!(?notice, error = %e, "cannot publish a change notice");
            }
        }
    }
}

/// Checks a NATS subject prefix: dot-separated tokens of letters, digits, `-` and `_`.
pub fn valid_subject_prefix(prefix: &str) -> bool {
    !prefix.is_empty()
        && prefix.split('.').all(|t| {
            !t.is_empty()
                && t.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn it_should_accept_plain_subject_prefixes_only() {
        assert!(valid_subject_prefix("keyledger"));
        assert!(valid_subject_prefix("kl.test-1_a"));
        assert!(!valid_subject_prefix(""));
        assert!(!valid_subject_prefix("a..b"));
        assert!(!valid_subject_prefix("a.*"));
        assert!(!valid_subject_prefix("a b"));
        assert!(!valid_subject_prefix("a.>"));
    }
}
