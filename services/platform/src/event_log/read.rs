//! Reading commits back: the last commit of a subject, all commits of one aggregate, the
//! fold of an aggregate's state, and an aggregate's history with commit times
//! ([`EventLog::load_commits`]).
//!
//! Every read starts with the subject's last message (`STREAM.MSG.GET`, answered by the stream
//! leader, so it is never stale). Its stream sequence is where the read stops, so a reader
//! never waits for a message that will not come. What happens next depends on how many events
//! precede that last commit:
//!
//! * none: the last commit is the only one (most task aggregates);
//! * a few ([`WALK_LIMIT`]): one `next_by_subject` get per earlier commit;
//! * more: an ordered consumer filtered on the subject (one consumer, streamed).

use async_nats::jetstream::consumer::{pull::OrderedConfig, DeliverPolicy};
use async_nats::jetstream::message::StreamMessage;
use async_nats::jetstream::stream::LastRawMessageErrorKind;
use cqrs_es::persist::SerializedEvent;
use cqrs_es::{Aggregate, EventEnvelope};
use futures::StreamExt;

use super::commit::{headers, Commit, LoggedCommit};
use super::subject::subject_for;
use super::{EventLog, EventLogError, Loaded, READ_TIMEOUT};

/// Up to this many earlier events, earlier commits are fetched one by one instead of through
/// a consumer (each earlier commit holds at least one event, so at most this many requests).
const WALK_LIMIT: usize = 8;

/// A commit together with the stream sequence it was stored at.
#[derive(Debug, Clone)]
pub(crate) struct RawCommit {
    pub stream_seq: u64,
    pub commit: Commit,
    /// The `Fe-Commit-Id` header (absent on commits read through a consumer, where it is
    /// not needed).
    pub commit_id: Option<String>,
}

impl RawCommit {
    fn from_stream_message(subject: &str, msg: &StreamMessage) -> Result<Self, EventLogError> {
        Ok(RawCommit {
            stream_seq: msg.sequence,
            commit: Commit::parse(msg.sequence, subject, &msg.payload)?,
            commit_id: msg
                .headers
                .get(headers::COMMIT_ID)
                .map(|v| v.as_str().to_string()),
        })
    }
}

impl EventLog {
    /// Loads one aggregate: its state folded from all events, its last sequence and the
    /// stream sequence of its last commit (both 0 for an aggregate without events).
    pub async fn load<A: Aggregate>(&self, aggregate_id: &str) -> Result<Loaded<A>, EventLogError> {
        let subject = subject_for(A::TYPE, aggregate_id)?;
        let commits = self.read_commits(&subject).await?;
        let mut loaded = Loaded {
            aggregate: A::default(),
            sequence: 0,
            last_stream_seq: 0,
        };
        for raw in commits {
            for event in raw.commit.events {
                let envelope =
                    EventEnvelope::<A>::try_from(SerializedEvent::from(event)).map_err(|_| {
                        EventLogError::Corrupt {
                            seq: raw.stream_seq,
                            reason: format!("an event does not deserialize as a {} event", A::TYPE),
                        }
                    })?;
                loaded.sequence = envelope.sequence;
                loaded.aggregate.apply(envelope.payload);
            }
            loaded.last_stream_seq = raw.stream_seq;
        }
        Ok(loaded)
    }

    /// All commits of one aggregate in log order, each with its JetStream storage time: the
    /// history behind point-in-time questions (`/v1/acl/check?at=`). Empty for an aggregate
    /// without events. Reads through an ordered consumer up to the subject's last commit.
    pub async fn load_commits(
        &self,
        aggregate_type: &str,
        aggregate_id: &str,
    ) -> Result<Vec<LoggedCommit>, EventLogError> {
        let subject = subject_for(aggregate_type, aggregate_id)?;
        let Some(last) = self.last_commit(&subject).await? else {
            return Ok(Vec::new());
        };
        let commits = tokio::time::timeout(
            READ_TIMEOUT,
            self.logged_commits_until(&subject, last.stream_seq),
        )
        .await
        .map_err(|_| EventLogError::Timeout(subject.clone()))??;
        let mut expected_next = 1;
        for commit in &commits {
            let first = commit.events.first().map_or(0, |e| e.sequence);
            if first != expected_next {
                return Err(EventLogError::Corrupt {
                    seq: commit.stream_seq,
                    reason: format!(
                        "aggregate sequence {first} where {expected_next} was expected"
                    ),
                });
            }
            expected_next = commit.events.last().map_or(first, |e| e.sequence) + 1;
        }
        Ok(commits)
    }

    /// Commits on `subject` up to and including stream sequence `until`, with their times.
    async fn logged_commits_until(
        &self,
        subject: &str,
        until: u64,
    ) -> Result<Vec<LoggedCommit>, EventLogError> {
        let nats = |e: &dyn std::fmt::Display| reading_error(subject, e);
        let mut messages = self.subject_messages(subject).await?;
        let mut commits = Vec::new();
        while let Some(msg) = messages.next().await {
            let msg = msg.map_err(|e| nats(&e))?;
            let commit = LoggedCommit::from_message(&msg)?;
            let seq = commit.stream_seq;
            if seq <= until {
                commits.push(commit);
            }
            if seq >= until {
                return Ok(commits);
            }
        }
        Err(nats(&"consumer ended early"))
    }

    /// Every message on `subject` from its first, in order, through an ordered consumer.
    async fn subject_messages(
        &self,
        subject: &str,
    ) -> Result<async_nats::jetstream::consumer::pull::Ordered, EventLogError> {
        let stream = self.stream().await?;
        let consumer = stream
            .create_consumer(OrderedConfig {
                filter_subject: subject.to_string(),
                deliver_policy: DeliverPolicy::All,
                ..Default::default()
            })
            .await
            .map_err(|e| reading_error(subject, &e))?;
        consumer
            .messages()
            .await
            .map_err(|e| reading_error(subject, &e))
    }

    /// The last commit on `subject`, or `None` if the subject is empty.
    pub(crate) async fn last_commit(
        &self,
        subject: &str,
    ) -> Result<Option<RawCommit>, EventLogError> {
        let stream = self.stream().await?;
        match stream.get_last_raw_message_by_subject(subject).await {
            Ok(msg) => Ok(Some(RawCommit::from_stream_message(subject, &msg)?)),
            Err(e) if e.kind() == LastRawMessageErrorKind::NoMessageFound => Ok(None),
            Err(e) => Err(EventLogError::Nats(format!(
                "reading the last commit of {subject}: {e}"
            ))),
        }
    }

    /// The commit stored at stream sequence `seq` (must be on `subject`).
    pub(crate) async fn commit_at(
        &self,
        subject: &str,
        seq: u64,
    ) -> Result<RawCommit, EventLogError> {
        let stream = self.stream().await?;
        let msg = stream
            .get_raw_message(seq)
            .await
            .map_err(|e| EventLogError::Nats(format!("reading stream sequence {seq}: {e}")))?;
        if msg.subject.as_str() != subject {
            return Err(EventLogError::Corrupt {
                seq,
                reason: format!("expected a commit on {subject}"),
            });
        }
        RawCommit::from_stream_message(subject, &msg)
    }

    /// The commit stored at stream sequence `seq`, whatever its subject, as a consumer would
    /// have delivered it.
    pub async fn logged_commit_at(&self, seq: u64) -> Result<LoggedCommit, EventLogError> {
        let stream = self.stream().await?;
        let msg = stream
            .get_raw_message(seq)
            .await
            .map_err(|e| EventLogError::Nats(format!("reading stream sequence {seq}: {e}")))?;
        LoggedCommit::from_stream_message(&msg)
    }

    /// All commits on `subject` in order, checked to form one gap-free sequence from 1.
    pub(crate) async fn read_commits(
        &self,
        subject: &str,
    ) -> Result<Vec<RawCommit>, EventLogError> {
        let Some(last) = self.last_commit(subject).await? else {
            return Ok(Vec::new());
        };
        let earlier_events = last.commit.first_sequence().saturating_sub(1);
        let read_earlier = async {
            if earlier_events == 0 {
                Ok(Vec::new())
            } else if earlier_events <= WALK_LIMIT {
                self.walk(subject, last.stream_seq).await
            } else {
                self.read_with_consumer(subject, last.stream_seq).await
            }
        };
        let mut commits = tokio::time::timeout(READ_TIMEOUT, read_earlier)
            .await
            .map_err(|_| EventLogError::Timeout(subject.to_string()))??;
        commits.push(last);
        check_continuity(&commits)?;
        Ok(commits)
    }

    /// Commits on `subject` stored before stream sequence `until`, one get each.
    async fn walk(&self, subject: &str, until: u64) -> Result<Vec<RawCommit>, EventLogError> {
        let stream = self.stream().await?;
        let mut commits = Vec::new();
        let mut from = 1;
        loop {
            let msg = stream
                .raw_message_builder()
                .sequence(from)
                .next_by_subject(subject)
                .send()
                .await
                .map_err(|e| EventLogError::Nats(format!("reading {subject} from {from}: {e}")))?;
            if msg.sequence >= until {
                return Ok(commits);
            }
            commits.push(RawCommit::from_stream_message(subject, &msg)?);
            from = msg.sequence + 1;
        }
    }

    /// Commits on `subject` stored before stream sequence `until`, through an ordered consumer.
    async fn read_with_consumer(
        &self,
        subject: &str,
        until: u64,
    ) -> Result<Vec<RawCommit>, EventLogError> {
        let nats = |e: &dyn std::fmt::Display| reading_error(subject, e);
        let mut messages = self.subject_messages(subject).await?;
        let mut commits = Vec::new();
        while let Some(msg) = messages.next().await {
            let msg = msg.map_err(|e| nats(&e))?;
            let seq = msg.info().map_err(|e| nats(&e))?.stream_sequence;
            if seq >= until {
                return Ok(commits);
            }
            commits.push(RawCommit {
                stream_seq: seq,
                commit: Commit::parse(seq, subject, &msg.payload)?,
                commit_id: None,
            });
        }
        Err(nats(&"consumer ended early"))
    }
}

fn reading_error(subject: &str, e: &dyn std::fmt::Display) -> EventLogError {
    EventLogError::Nats(format!("reading {subject}: {e}"))
}

/// The aggregate's events must run 1, 2, 3, ... across its commits.
fn check_continuity(commits: &[RawCommit]) -> Result<(), EventLogError> {
    let mut expected_next = 1;
    for raw in commits {
        if raw.commit.first_sequence() != expected_next {
            return Err(EventLogError::Corrupt {
                seq: raw.stream_seq,
                reason: format!(
                    "aggregate sequence {} where {expected_next} was expected",
                    raw.commit.first_sequence()
                ),
            });
        }
        expected_next = raw.commit.last_sequence() + 1;
    }
    Ok(())
}
