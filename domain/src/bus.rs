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

use crate::events::{ApiKeyEvent, OrganizationEvent};
use crate::ids::{KeyId, OrgId};

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

/// An organisation's plan changed: every node drops the plan it cached for it, so the
/// new plan's rate limit is in force everywhere at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct PlanNotice {
    /// The organisation.
    pub org_id: OrgId,
    /// The organisation stream's version after the change.
    pub stream_version: u64,
}

impl PlanNotice {
    /// The notice to publish after appending `event` at `stream_version` to an
    /// organisation's stream: for a plan change only.
    pub fn for_event(
        org_id: OrgId,
        stream_version: u64,
        event: &OrganizationEvent,
    ) -> Option<Self> {
        matches!(event, OrganizationEvent::PlanChanged(_)).then_some(PlanNotice {
            org_id,
            stream_version,
        })
    }
}

/// What travels on the bus: a key changed, or an organisation's plan did. On the wire it is
/// the inner notice's JSON (`{"key_id", "stream_version"}` or `{"org_id", "stream_version"}`),
/// so key notices read the same as before plan notices existed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Notice {
    /// A key's state changed.
    Key(RevocationNotice),
    /// An organisation's plan changed.
    Plan(PlanNotice),
}

impl From<RevocationNotice> for Notice {
    fn from(n: RevocationNotice) -> Self {
        Notice::Key(n)
    }
}

impl From<PlanNotice> for Notice {
    fn from(n: PlanNotice) -> Self {
        Notice::Plan(n)
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
pub type NoticeStream = Pin<Box<dyn Stream<Item = Notice> + Send>>;

/// The revocation bus port: in-process broadcast on one node, NATS across many. It carries
/// key changes and plan changes ([`Notice`]).
#[async_trait]
pub trait RevocationBus: Send + Sync {
    /// Publishes a notice to every node.
    async fn publish(&self, notice: Notice) -> Result<(), BusError>;

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

    #[test]
    fn it_should_keep_the_key_notice_wire_format_and_read_plan_notices_apart() {
        let key = Notice::Key(RevocationNotice {
            key_id: KeyId::new_v7(),
            stream_version: 3,
        });
        let json = serde_json::to_value(key).unwrap();
        assert!(json.get("key_id").is_some() && json.get("org_id").is_none());
        assert_eq!(serde_json::from_value::<Notice>(json).unwrap(), key);
        let plan = Notice::Plan(PlanNotice {
            org_id: OrgId::new_v7(),
            stream_version: 2,
        });
        let json = serde_json::to_value(plan).unwrap();
        assert_eq!(serde_json::from_value::<Notice>(json).unwrap(), plan);
    }
}
