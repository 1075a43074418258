//! The usage recorder: every call that identified a key becomes an `ApiCallRecorded`
//! event, appended by a group-commit writer. Calls queue on a channel; one task takes up
//! to `batch_size` of them (waiting at most `max_delay` for a batch to fill) and appends
//! them in one transaction (`append_many`); it lingers only until the batch is as large
//! as the last one, so a lone call is written at once. In durable mode (the default) a response waits
//! until its event is committed; in async mode it does not. Shutdown drains the queue.

use std::sync::Arc;
use std::time::{Duration, Instant};

use domain::events::{ApiCallRecorded, UsageEvent};
use domain::ids::KeyId;
use domain::store::{AppendRequest, EventStore, ExpectedVersion, Metadata};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

/// Whether a response waits for its usage event to be durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Durability {
    /// The response waits for the commit (nothing is lost on a crash).
    Durable,
    /// The response does not wait (faster; a crash may lose the last batch).
    Async,
}

/// Group-commit settings.
#[derive(Debug, Clone, Copy)]
pub struct RecorderConfig {
    /// The most events in one append.
    pub batch_size: usize,
    /// The longest the first event of a batch waits for others.
    pub max_delay: Duration,
    /// Durable or async.
    pub durability: Durability,
}

struct Pending {
    key_id: KeyId,
    call: ApiCallRecorded,
    done: Option<oneshot::Sender<bool>>,
}

/// A handle to the writer; cheap to clone.
#[derive(Clone)]
pub struct UsageRecorder {
    tx: mpsc::Sender<Pending>,
    durability: Durability,
}

/// The writer task; `shutdown` drains it.
pub struct RecorderTask {
    handle: JoinHandle<()>,
}

impl UsageRecorder {
    /// Starts the writer.
    pub fn start(store: Arc<dyn EventStore>, config: RecorderConfig) -> (Self, RecorderTask) {
        let (tx, rx) = mpsc::channel(config.batch_size.max(1) * 64);
        let handle = tokio::spawn(run(store, rx, config));
        (
            Self {
                tx,
                durability: config.durability,
            },
            RecorderTask { handle },
        )
    }

    /// Records one call; in durable mode, returns once it is committed. Returns whether
    /// it was (or, in async mode, whether it was queued).
    pub async fn record(&self, key_id: KeyId, call: ApiCallRecorded) -> bool {
        match self.durability {
            Durability::Durable => {
                let (done, wait) = oneshot::channel();
                let queued = self
                    .tx
                    .send(Pending {
                        key_id,
                        call,
                        done: Some(done),
                    })
                    .await
                    .is_ok();
                queued && wait.await.unwrap_or(false)
            }
            Durability::Async => self
                .tx
                .send(Pending {
                    key_id,
                    call,
                    done: None,
                })
                .await
                .is_ok(),
        }
    }
}

impl RecorderTask {
    /// Waits until every queued event is written. Call after every `UsageRecorder` clone
    /// is dropped (the server has stopped taking requests).
    pub async fn shutdown(self) {
        if let Err(e) = self.handle.await {
            tracing::error!(error = %e, "usage writer ended abnormally");
        }
    }
}

async fn run(store: Arc<dyn EventStore>, mut rx: mpsc::Receiver<Pending>, config: RecorderConfig) {
    let batch_size = config.batch_size.max(1);
    let mut batch: Vec<Pending> = Vec::with_capacity(batch_size);
    // How many events the last batch carried: under a steady load, about as many calls
    // come back while a batch commits, so the next batch lingers (at most `max_delay`)
    // only until it is that large, not for the whole delay; a lone call is written at once.
    let mut expected = 1;
    // `recv` returns None only once every sender is gone and the queue is empty: that is
    // the drain on shutdown.
    while let Some(first) = rx.recv().await {
        batch.push(first);
        // Whatever is already queued goes into this batch.
        while batch.len() < batch_size {
            match rx.try_recv() {
                Ok(p) => batch.push(p),
                Err(_) => break,
            }
        }
        let deadline = tokio::time::Instant::now() + config.max_delay;
        while batch.len() < expected.min(batch_size) {
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some(p)) => batch.push(p),
                Ok(None) | Err(_) => break,
            }
        }
        expected = batch.len();
        write(&*store, &mut batch).await;
    }
}

async fn write(store: &dyn EventStore, batch: &mut Vec<Pending>) {
    let size = batch.len();
    // One request per stream, in arrival order, so a key's calls stay in order.
    let mut requests: Vec<AppendRequest> = Vec::new();
    for p in batch.iter() {
        let stream = p.key_id.usage_stream();
        let event = UsageEvent::ApiCallRecorded(p.call.clone()).to_new_event(Metadata {
            actor: p.key_id.to_string(),
            request_id: p.call.request_id.clone(),
            ..Metadata::default()
        });
        match requests.iter_mut().find(|r| r.stream == stream) {
            Some(r) => r.events.push(event),
            None => requests.push(AppendRequest {
                stream,
                expected: ExpectedVersion::Any,
                events: vec![event],
            }),
        }
    }
    let started = Instant::now();
    let mut ok = false;
    // A transient failure is retried a few times; after that the calls are reported as
    // not recorded (and counted), never silently dropped.
    for attempt in 0..3u32 {
        match store.append_many(requests.clone()).await {
            Ok(_) => {
                ok = true;
                break;
            }
            Err(e) => {
                tracing::error!(error = %e, attempt, size, "cannot append usage events");
                tokio::time::sleep(Duration::from_millis(50 * u64::from(attempt + 1))).await;
            }
        }
    }
    metrics::histogram!("keyledger_usage_batch_size").record(size as f64);
    metrics::histogram!("keyledger_usage_commit_seconds").record(started.elapsed().as_secs_f64());
    if !ok {
        metrics::counter!("keyledger_usage_events_lost_total").increment(size as u64);
    }
    for p in batch.drain(..) {
        if let Some(done) = p.done {
            let _ = done.send(ok);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Utc;
    use domain::ids::OrgId;

    fn call() -> ApiCallRecorded {
        ApiCallRecorded {
            org_id: OrgId::new_v7(),
            at: Utc::now(),
            method: "GET".into(),
            route: "/whoami".into(),
            status: 200,
            latency_us: 10,
            client_ip: None,
            request_id: None,
        }
    }

    #[tokio::test]
    async fn a_lone_call_is_committed_without_waiting_for_the_delay() {
        // Arrange: a long max delay, durable mode.
        let store = commands::open_event_store("sqlite::memory:").await.unwrap();
        let (recorder, task) = UsageRecorder::start(
            store.clone(),
            RecorderConfig {
                batch_size: 256,
                max_delay: Duration::from_secs(5),
                durability: Durability::Durable,
            },
        );
        let key = KeyId::new_v7();

        // Act + Assert: a lone call does not wait for others.
        let started = Instant::now();
        assert!(recorder.record(key, call()).await);
        assert!(
            started.elapsed() < Duration::from_millis(2500),
            "a lone call waited for the delay"
        );

        // Act: a burst of 50 concurrent calls (its last batch may linger up to the delay).
        let calls = (0..50).map(|_| {
            let r = recorder.clone();
            async move { r.record(key, call()).await }
        });
        let results = futures::future::join_all(calls).await;

        // Assert: all committed, and all in the store.
        assert!(results.iter().all(|ok| *ok));
        drop(recorder);
        task.shutdown().await;
        assert_eq!(store.read_all(0, 1000).await.unwrap().len(), 51);
    }
}
