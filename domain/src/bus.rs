//! The revocation bus port: tells every node at once that a key's cached verdict is stale.
//!
//! Published after the change is committed to the event store (never before). A notice
//! only says "drop what you cached for this key up to this version"; nodes reload the key
//! from the store, so a lost or duplicated notice is harmless beyond its delay, and the
//! cache TTL bounds that delay when the bus is cut off.

use std::pin::Pin;

use async_trait::async_trait;
use futures_core::Stream;
use serde::{Deserialize, Serialize};

use crate::events::ApiKeyEvent;
use crate::ids::KeyId;

/// A key changed in a way that matters to the auth layer: drop it from every cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct RevocationNotice {
    /// The key.
    pub key_id: KeyId,
    /// The key stream's version after the change: cache entries at or below it are stale.
    pub stream_version: u64,
}

impl RevocationNotice {
    /// The notice to publish after appending `event` at `stream_version`: for every event
    /// the auth layer reads (all but a rename). Widening changes are published too, so a
    /// newly granted scope works everywhere at once; those that restrict access (see
    /// [`ApiKeyEvent::restricts_access`]) are the ones that must never be missed.
    pub fn for_event(key_id: KeyId, stream_version: u64, event: &ApiKeyEvent) -> Option<Self> {
        let matters = !matches!(event, ApiKeyEvent::KeyRenamed(_));
        matters.then_some(RevocationNotice {
            key_id,
            stream_version,
        })
    }
}

/// Why the bus failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BusError {
    /// The bus could not be reached or refused the message.
    #[error("revocation bus unavailable: {0}")]
    Unavailable(String),
}

/// Notices as they arrive, from every node (this one included).
pub type NoticeStream = Pin<Box<dyn Stream<Item = RevocationNotice> + Send>>;

/// The revocation bus port: in-process broadcast on one node, NATS across many.
#[async_trait]
pub trait RevocationBus: Send + Sync {
    /// Publishes a notice to every node.
    async fn publish(&self, notice: RevocationNotice) -> Result<(), BusError>;

    /// Notices published from now on. The stream ends only if the bus shuts down.
    fn subscribe(&self) -> NoticeStream;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::{KeyRenamed, KeyRevoked};
    use crate::values::KeyName;

    #[test]
    fn it_should_notify_a_revocation_but_not_a_rename() {
        let key_id = KeyId::new_v7();
        let revoked = ApiKeyEvent::from(KeyRevoked {
            reason: None,
            revoked_at: chrono::Utc::now(),
        });
        assert_eq!(
            RevocationNotice::for_event(key_id, 4, &revoked),
            Some(RevocationNotice {
                key_id,
                stream_version: 4
            })
        );
        let renamed = ApiKeyEvent::from(KeyRenamed {
            name: KeyName::parse("x").unwrap(),
        });
        assert_eq!(RevocationNotice::for_event(key_id, 5, &renamed), None);
    }
}
