//! [`EventLog`] as a cqrs-es `PersistedEventRepository`, so a `PersistedEventStore` /
//! `CqrsFramework` can run on it. [`EventLog::execute`] is the richer entry point; this impl
//! exists for code and tests written against cqrs-es itself.
//!
//! Snapshots: `get_snapshot` always answers `None` and `persist` ignores `snapshot_update`
//! (cqrs-es 0.5 snapshots hold new events applied twice; see the module docs of
//! [`crate::event_log`]). Use `PersistedEventStore::new_event_store`.

use async_nats::jetstream::consumer::{pull::OrderedConfig, Consumer, DeliverPolicy};
use cqrs_es::persist::{
    PersistedEventRepository, PersistenceError, ReplayFeed, ReplayStream, SerializedEvent,
    SerializedSnapshot,
};
use cqrs_es::Aggregate;
use futures::StreamExt;
use serde_json::Value;

use super::commit::LoggedCommit;
use super::read::RawCommit;
use super::subject::{subject_for, subject_for_type};
use super::{EventLog, EventLogError};

/// Events buffered between the reader task and a slow `ReplayStream` consumer.
const REPLAY_QUEUE: usize = 256;

impl PersistedEventRepository for EventLog {
    async fn get_events<A: Aggregate>(
        &self,
        aggregate_id: &str,
    ) -> Result<Vec<SerializedEvent>, PersistenceError> {
        let subject = subject_for(A::TYPE, aggregate_id)?;
        Ok(flatten(self.read_commits(&subject).await?).collect())
    }

    async fn get_last_events<A: Aggregate>(
        &self,
        aggregate_id: &str,
        last_sequence: usize,
    ) -> Result<Vec<SerializedEvent>, PersistenceError> {
        let subject = subject_for(A::TYPE, aggregate_id)?;
        let commits = self.read_commits(&subject).await?;
        Ok(flatten(commits)
            .filter(|e| e.sequence > last_sequence)
            .collect())
    }

    async fn get_snapshot<A: Aggregate>(
        &self,
        _aggregate_id: &str,
    ) -> Result<Option<SerializedSnapshot>, PersistenceError> {
        Ok(None)
    }

    async fn persist<A: Aggregate>(
        &self,
        events: &[SerializedEvent],
        _snapshot_update: Option<(String, Value, usize)>,
    ) -> Result<(), PersistenceError> {
        // cqrs-es commits even when a command produced no events.
        if events.is_empty() {
            return Ok(());
        }
        self.append(events).await.map(|_| ())
    }

    async fn stream_events<A: Aggregate>(
        &self,
        aggregate_id: &str,
    ) -> Result<ReplayStream, PersistenceError> {
        let events: Vec<SerializedEvent> = self.get_events::<A>(aggregate_id).await?;
        let (mut feed, stream) = ReplayStream::new(REPLAY_QUEUE);
        tokio::spawn(async move {
            for event in events {
                if feed.push(Ok(event)).await.is_err() {
                    return; // the reader went away
                }
            }
        });
        Ok(stream)
    }

    async fn stream_all_events<A: Aggregate>(&self) -> Result<ReplayStream, PersistenceError> {
        let filter = subject_for_type(A::TYPE)?;
        let stream = self.stream().await?;
        let consumer = stream
            .create_consumer(OrderedConfig {
                filter_subject: filter.clone(),
                deliver_policy: DeliverPolicy::All,
                ..Default::default()
            })
            .await
            .map_err(|e| EventLogError::Nats(format!("reading {filter}: {e}")))?;
        let (feed, replay) = ReplayStream::new(REPLAY_QUEUE);
        tokio::spawn(feed_replay(consumer, feed));
        Ok(replay)
    }
}

fn flatten(commits: Vec<RawCommit>) -> impl Iterator<Item = SerializedEvent> {
    commits
        .into_iter()
        .flat_map(|raw| raw.commit.events)
        .map(SerializedEvent::from)
}

/// Pushes every event the consumer had pending when it was created (and any that arrive
/// meanwhile), then ends the stream: it stops when a message reports nothing pending after
/// it, so it never waits for a message that will not come.
async fn feed_replay(consumer: Consumer<OrderedConfig>, mut feed: ReplayFeed) {
    if consumer.cached_info().num_pending == 0 {
        return;
    }
    let connection_error = |e: &dyn std::fmt::Display| {
        PersistenceError::from(EventLogError::Nats(format!("replaying: {e}")))
    };
    let mut messages = match consumer.messages().await {
        Ok(messages) => messages,
        Err(e) => {
            let _ = feed.push(Err(connection_error(&e))).await;
            return;
        }
    };
    while let Some(msg) = messages.next().await {
        let msg = match msg {
            Ok(msg) => msg,
            Err(e) => {
                let _ = feed.push(Err(connection_error(&e))).await;
                return;
            }
        };
        let pending = msg.info().map(|i| i.pending).unwrap_or(0);
        let events = match LoggedCommit::from_message(&msg) {
            Ok(commit) => commit.events,
            Err(e) => {
                let _ = feed.push(Err(e.into())).await;
                return;
            }
        };
        for event in events {
            if feed.push(Ok(event.into())).await.is_err() {
                return;
            }
        }
        if pending == 0 {
            return;
        }
    }
}
