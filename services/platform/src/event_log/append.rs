//! Appending one commit with optimistic concurrency.
//!
//! The publish carries `Nats-Expected-Last-Subject-Sequence` (the stream sequence of the
//! aggregate's previous commit, 0 for a new aggregate), so JetStream itself refuses a commit
//! computed from stale state (error 10071 → [`EventLogError::Conflict`]). A publish whose ack
//! is lost is retried with the same `Nats-Msg-Id`.
//!
//! Racing writers compute the same `Nats-Msg-Id`
//! (`<aggregate type>:<aggregate id>:<first sequence>`) and, for equal commands, even
//! byte-identical bodies. So every publish also carries a random
//! `Fe-Commit-Id` header, and an answer that may stand for an earlier message (a *duplicate*
//! ack on 2.9, a 10071 after a retried publish on newer servers) counts as success only when
//! the stored message carries our commit id.
//!
//! [`EventLog::append`] (the cqrs-es `persist` path) has no identity beyond the events
//! themselves: a commit equal to the aggregate's last commit, metadata included, is taken as
//! a retry of it. Callers should put a request id in the metadata so that two distinct
//! commands never produce equal commits.

use async_nats::jetstream::context::PublishErrorKind;
use async_nats::jetstream::message::PublishMessage;
use bytes::Bytes;
use cqrs_es::persist::{PersistenceError, SerializedEvent};

use super::commit::{headers, Commit};
use super::{EventLog, EventLogError};

/// Publishes whose ack timed out are retried this many times in total.
const PUBLISH_ATTEMPTS: usize = 3;

impl EventLog {
    /// Appends one commit (events already serialized, sequences consecutive) and returns the
    /// stream sequence it got.
    ///
    /// The aggregate's last commit is looked up first: its last event must be the one just
    /// before these events, else `OptimisticLockError`. Appending a commit that is already the
    /// aggregate's last commit (a retry) returns that commit's stream sequence.
    pub async fn append(&self, events: &[SerializedEvent]) -> Result<u64, PersistenceError> {
        let commit = Commit::from_new_events(events)?;
        Ok(self.append_checked(&commit).await?)
    }

    async fn append_checked(&self, commit: &Commit) -> Result<u64, EventLogError> {
        let subject = commit.subject()?;
        let expected = match self.last_commit(&subject).await? {
            None if commit.first_sequence() == 1 => 0,
            None => return Err(EventLogError::Conflict),
            Some(last) if last.commit.last_sequence() + 1 == commit.first_sequence() => {
                last.stream_seq
            }
            Some(last) if last.commit == *commit => return Ok(last.stream_seq),
            Some(_) => return Err(EventLogError::Conflict),
        };
        self.publish_commit(&subject, commit, expected).await
    }

    /// Publishes `commit` on `subject`, expecting the subject's last stream sequence to be
    /// `expected` (0: the subject must be empty).
    pub(crate) async fn publish_commit(
        &self,
        subject: &str,
        commit: &Commit,
        expected: u64,
    ) -> Result<u64, EventLogError> {
        let body = Bytes::from(
            serde_json::to_vec(commit)
                .map_err(|_| EventLogError::InvalidCommit("cannot encode the commit".into()))?,
        );
        let message_id = commit.message_id()?;
        let commit_id = uuid::Uuid::new_v4().to_string();
        let mut headers = commit.headers()?;
        headers.insert(headers::COMMIT_ID, commit_id.as_str());
        for attempt in 0..PUBLISH_ATTEMPTS {
            let message = PublishMessage::build()
                .payload(body.clone())
                .headers(headers.clone())
                .message_id(&message_id)
                .expected_last_subject_sequence(expected);
            let result = async {
                self.js
                    .send_publish(subject.to_string(), message)
                    .await?
                    .await
            };
            match result.await {
                Ok(ack) if !ack.duplicate => return Ok(ack.sequence),
                // nats-server 2.9 checks Nats-Msg-Id before the expected sequence, so a racing
                // writer's commit (same id) is answered as a duplicate of the winner's.
                Ok(ack) => return self.confirm_ours(subject, ack.sequence, &commit_id).await,
                // Newer servers check the expected sequence first: after a lost ack, our own
                // first attempt may be what moved the subject on.
                Err(e) if e.kind() == PublishErrorKind::WrongLastSequence => {
                    if attempt > 0 {
                        if let Some(last) = self.last_commit(subject).await? {
                            if last.commit_id.as_deref() == Some(commit_id.as_str()) {
                                return Ok(last.stream_seq);
                            }
                        }
                    }
                    return Err(EventLogError::Conflict);
                }
                Err(e) if e.kind() == PublishErrorKind::TimedOut => {
                    tracing::warn!(
                        subject,
                        attempt,
                        "publish not acknowledged in time; retrying"
                    );
                }
                Err(e) => return Err(EventLogError::Nats(format!("publishing on {subject}: {e}"))),
            }
        }
        Err(EventLogError::Nats(format!(
            "publishing on {subject}: no acknowledgement after {PUBLISH_ATTEMPTS} attempts"
        )))
    }

    /// A duplicate ack names the message stored under our `Nats-Msg-Id`; it is ours only if
    /// it carries this publish's commit id.
    async fn confirm_ours(
        &self,
        subject: &str,
        seq: u64,
        commit_id: &str,
    ) -> Result<u64, EventLogError> {
        let stored = self.commit_at(subject, seq).await?;
        if stored.commit_id.as_deref() == Some(commit_id) {
            Ok(seq)
        } else {
            Err(EventLogError::Conflict)
        }
    }
}
