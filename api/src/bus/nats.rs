//! The NATS bus: core publish/subscribe on `<prefix>.keys.changed`, JSON
//! `{"key_id": "...", "stream_version": n}` for a key, `{"org_id": "...", "stream_version": n}`
//! for an organisation's plan (never a secret).
//!
//! NATS core delivers at most once, to whoever is connected at that moment. What can be
//! missed is handled around it: the relay publishes every change again from the event
//! store; a reconnect or a slow-consumer event counts as a reset (the receiving node drops
//! its whole key cache); and while the connection is down the cache trusts an entry for
//! the short TTL only.

use std::sync::Arc;
use std::time::Duration;

use async_nats::{Client, ConnectOptions, Event};
use async_trait::async_trait;
use domain::bus::{BusError, Notice, NoticeStream, RevocationBus};
use futures::StreamExt;
use tokio::sync::watch;

use super::{BusHealth, PUBLISH_TIMEOUT};

/// A NATS connection publishing and receiving notices on one subject.
pub struct NatsBus {
    client: Client,
    subject: String,
}

impl NatsBus {
    /// Connects in the background (retrying for ever), with a ping every `ping` so that a
    /// silently dead connection is noticed within about two pings.
    pub async fn connect(
        url: &str,
        prefix: &str,
        ping: Duration,
    ) -> Result<(Self, watch::Receiver<BusHealth>), String> {
        let (health, rx) = watch::channel(BusHealth {
            connected: false,
            resets: 0,
        });
        let health = Arc::new(health);
        let events = health.clone();
        let client = ConnectOptions::new()
            .name("keyledger")
            .retry_on_initial_connect()
            .max_reconnects(None)
            .ping_interval(ping)
            .connection_timeout(Duration::from_secs(2))
            .reconnect_delay_callback(|attempts| {
                Duration::from_millis(
                    u64::try_from(attempts)
                        .unwrap_or(u64::MAX)
                        .saturating_mul(100),
                )
                .min(Duration::from_secs(2))
            })
            .event_callback(move |event| {
                let health = events.clone();
                async move { on_event(&health, event) }
            })
            .connect(url)
            .await
            .map_err(|e| format!("cannot use NATS at {url}: {e}"))?;
        Ok((
            Self {
                client,
                subject: format!("{prefix}.keys.changed"),
            },
            rx,
        ))
    }
}

fn on_event(health: &watch::Sender<BusHealth>, event: Event) {
    match event {
        Event::Connected => {
            // Notices published while this node was away are lost to it: a reset.
            health.send_modify(|h| {
                h.connected = true;
                h.resets += 1;
            });
            tracing::info!("revocation bus (NATS) connected");
        }
        Event::Disconnected | Event::Closed => {
            health.send_modify(|h| h.connected = false);
            tracing::warn!(
                "revocation bus (NATS) disconnected; key cache entries now live at most the TTL"
            );
        }
        Event::SlowConsumer(_) => {
            // The client dropped messages for us.
            health.send_modify(|h| h.resets += 1);
            tracing::warn!("revocation bus (NATS): slow consumer; dropping the key cache");
        }
        other => tracing::info!(event = %other, "revocation bus (NATS) event"),
    }
}

#[async_trait]
impl RevocationBus for NatsBus {
    async fn publish(&self, notice: Notice) -> Result<(), BusError> {
        let payload =
            serde_json::to_vec(&notice).map_err(|e| BusError::Unavailable(e.to_string()))?;
        self.client
            .publish(self.subject.clone(), payload.into())
            .await
            .map_err(|e| BusError::Unavailable(e.to_string()))?;
        // Published means on the wire: flush, but never wait for ever on a dead server.
        match tokio::time::timeout(PUBLISH_TIMEOUT, self.client.flush()).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(BusError::Unavailable(e.to_string())),
            Err(_) => Err(BusError::Unavailable("flush timed out".into())),
        }
    }

    fn subscribe(&self) -> NoticeStream {
        let client = self.client.clone();
        let subject = self.subject.clone();
        futures::stream::once(async move { client.subscribe(subject).await })
            .filter_map(|sub| {
                std::future::ready(match sub {
                    Ok(s) => Some(s),
                    Err(e) => {
                        tracing::error!(error = %e, "cannot subscribe to the revocation bus");
                        None
                    }
                })
            })
            .flatten()
            .filter_map(|msg| {
                std::future::ready(match serde_json::from_slice::<Notice>(&msg.payload) {
                    Ok(n) => Some(n),
                    Err(e) => {
                        // Never log the payload: it is not ours to trust.
                        tracing::warn!(error = %e, "ignoring a malformed key change notice");
                        None
                    }
                })
            })
            .boxed()
    }
}
