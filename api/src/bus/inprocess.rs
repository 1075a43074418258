//! The in-process bus: a tokio broadcast channel. The embedded default, where one node
//! is the whole cluster (the relay still publishes changes made by the CLI beside it).

use async_trait::async_trait;
use domain::bus::{BusError, Notice, NoticeStream, RevocationBus};
use futures::StreamExt;
use tokio::sync::{broadcast, watch};
use tokio_stream::wrappers::BroadcastStream;
use tokio_stream::wrappers::errors::BroadcastStreamRecvError;

use super::BusHealth;

/// Notices buffered per receiver before a slow one lags (and drops its cache).
const CAPACITY: usize = 4096;

/// A broadcast channel of notices.
pub struct InProcessBus {
    sender: broadcast::Sender<Notice>,
    health: std::sync::Arc<watch::Sender<BusHealth>>,
}

impl InProcessBus {
    /// A bus and its health (always connected; a lagging receiver counts as a reset).
    pub fn new() -> (Self, watch::Receiver<BusHealth>) {
        let (sender, _) = broadcast::channel(CAPACITY);
        let (health, rx) = watch::channel(BusHealth {
            connected: true,
            resets: 0,
        });
        (
            Self {
                sender,
                health: std::sync::Arc::new(health),
            },
            rx,
        )
    }
}

#[async_trait]
impl RevocationBus for InProcessBus {
    async fn publish(&self, notice: Notice) -> Result<(), BusError> {
        // No receiver is not an error: nobody has anything cached to drop.
        let _ = self.sender.send(notice);
        Ok(())
    }

    fn subscribe(&self) -> NoticeStream {
        let health = self.health.clone();
        BroadcastStream::new(self.sender.subscribe())
            .filter_map(move |item| {
                let out = match item {
                    Ok(notice) => Some(notice),
                    Err(BroadcastStreamRecvError::Lagged(missed)) => {
                        tracing::warn!(
                            missed,
                            "in-process bus receiver lagged; dropping the key cache"
                        );
                        health.send_modify(|h| h.resets += 1);
                        None
                    }
                };
                std::future::ready(out)
            })
            .boxed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use domain::bus::RevocationNotice;
    use domain::ids::KeyId;

    #[tokio::test]
    async fn it_should_deliver_a_notice_to_every_subscriber() {
        let (bus, health) = InProcessBus::new();
        let mut a = bus.subscribe();
        let mut b = bus.subscribe();
        let notice = Notice::Key(RevocationNotice {
            key_id: KeyId::new_v7(),
            stream_version: 3,
        });
        bus.publish(notice).await.unwrap();
        assert_eq!(a.next().await, Some(notice));
        assert_eq!(b.next().await, Some(notice));
        assert!(health.borrow().connected);
    }

    #[tokio::test]
    async fn it_should_count_a_lagging_receiver_as_a_reset() {
        let (bus, health) = InProcessBus::new();
        let mut slow = bus.subscribe();
        for v in 0..(CAPACITY as u64 + 10) {
            bus.publish(Notice::Key(RevocationNotice {
                key_id: KeyId::new_v7(),
                stream_version: v,
            }))
            .await
            .unwrap();
        }
        // The first item read reports the lag (as a reset), then notices flow again.
        assert!(slow.next().await.is_some());
        assert_eq!(health.borrow().resets, 1);
    }
}
