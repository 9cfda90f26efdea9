//! Reads the log for the verifier: every commit of one tenant from a start sequence up to a
//! given sequence, as the audit rows it should have produced, numbered on from the tenant's
//! last verified position.
//!
//! A commit of a task whose `task.requested` lies before the start takes the task's context
//! from the index row of that request: that part of the index was already proven against
//! the log.
//!
//! Uses an ephemeral pull consumer without acks, filtered on the scope's subjects; the number
//! of matching messages at creation (`num_pending`) tells where the log ends, so reading
//! never waits for messages that will not come. The consumer is deleted when done where the
//! NATS user may do so; the service users of `nats/accounts.conf` may create consumers but not
//! delete them, so there it expires after a minute of inactivity (as it does if the process
//! dies).

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use async_nats::jetstream::{self, consumer};
use futures::StreamExt;
use platform::event_log::LoggedCommit;
use platform::streams::EVENTS_STREAM;
use sqlx::PgPool;

use super::entry::{entries, needs_task_context, requested_context, AuditEntry, TaskContext};
use super::verify::VerifyError;

/// How long one message may take to arrive before the read is abandoned.
const MESSAGE_TIMEOUT: Duration = Duration::from_secs(30);

/// What the log says at one position.
pub(super) enum Expected {
    Entry(Box<AuditEntry>),
    /// A commit that cannot be read or mapped (the projector cannot have indexed it either).
    Unreadable {
        seq: u64,
        reason: String,
    },
}

impl Expected {
    pub(super) fn key(&self) -> (u64, u32) {
        match self {
            Self::Entry(e) => (e.logseq, e.idx),
            Self::Unreadable { seq, .. } => (*seq, 0),
        }
    }
}

pub(super) struct LogReader {
    pool: PgPool,
    tenant: String,
    /// The tenant's position the next event takes.
    next_seq: u64,
    /// Index rows up to this position are proven: a task context may come from them.
    trusted_seq: u64,
    /// Events read from the log.
    pub(super) read: u64,
    stream: jetstream::stream::Stream,
    consumer_name: Option<String>,
    messages: Option<consumer::pull::Stream>,
    remaining: u64,
    through: u64,
    buf: VecDeque<Expected>,
    /// Context of open tasks, for their later commits (dropped when they finish).
    tasks: HashMap<String, TaskContext>,
}

impl LogReader {
    /// Starts reading `tenant`'s commits after stream seq `after` up to and including
    /// `through`; its next event is the tenant's position `trusted_seq + 1`.
    pub(super) async fn open(
        js: &jetstream::Context,
        pool: &PgPool,
        tenant: &str,
        after: u64,
        trusted_seq: u64,
        through: u64,
    ) -> Result<Self, VerifyError> {
        let log = |e: &dyn std::fmt::Display| VerifyError::Log(e.to_string());
        let stream = js.get_stream(EVENTS_STREAM).await.map_err(|e| log(&e))?;
        let mut reader = LogReader {
            pool: pool.clone(),
            tenant: tenant.to_owned(),
            next_seq: trusted_seq + 1,
            trusted_seq,
            read: 0,
            stream,
            consumer_name: None,
            messages: None,
            remaining: 0,
            through,
            buf: VecDeque::new(),
            tasks: HashMap::new(),
        };
        if through <= after {
            return Ok(reader);
        }
        let consumer = reader
            .stream
            .create_consumer(consumer::pull::Config {
                filter_subject: format!("fe.ev.{tenant}.>"),
                deliver_policy: consumer::DeliverPolicy::ByStartSequence {
                    start_sequence: after + 1,
                },
                ack_policy: consumer::AckPolicy::None,
                inactive_threshold: Duration::from_secs(60),
                ..Default::default()
            })
            .await
            .map_err(|e| log(&e))?;
        let info = consumer.cached_info();
        reader.remaining = info.num_pending;
        reader.consumer_name = Some(info.name.clone());
        reader.messages = Some(consumer.messages().await.map_err(|e| log(&e))?);
        Ok(reader)
    }

    /// The next expected row without consuming it.
    pub(super) async fn peek(&mut self) -> Result<Option<&Expected>, VerifyError> {
        while self.buf.is_empty() && self.read_commit().await? {}
        Ok(self.buf.front())
    }

    pub(super) fn advance(&mut self) -> Option<Expected> {
        self.buf.pop_front()
    }

    /// Reads one commit into the buffer; false at the end of the scope.
    async fn read_commit(&mut self) -> Result<bool, VerifyError> {
        let Some(messages) = self.messages.as_mut() else {
            return Ok(false);
        };
        if self.remaining == 0 {
            return Ok(false);
        }
        let next = tokio::time::timeout(MESSAGE_TIMEOUT, messages.next())
            .await
            .map_err(|_| VerifyError::Log("timed out reading the log".into()))?;
        let message = match next {
            Some(m) => m.map_err(|e| VerifyError::Log(e.to_string()))?,
            None => return Err(VerifyError::Log("the log consumer ended early".into())),
        };
        self.remaining -= 1;
        let seq = message.info().map(|i| i.stream_sequence).unwrap_or(0);
        if seq > self.through {
            self.remaining = 0;
            return Ok(false);
        }
        match LoggedCommit::from_message(&message) {
            Ok(commit) => self.expect_commit(&commit).await?,
            Err(e) => self.buf.push_back(Expected::Unreadable {
                seq,
                reason: e.to_string(),
            }),
        }
        Ok(true)
    }

    /// The context of the commit's task: remembered from this read, else from the proven
    /// part of the index.
    async fn task_context(
        &mut self,
        commit: &LoggedCommit,
    ) -> Result<Option<TaskContext>, VerifyError> {
        if let Some(known) = self.tasks.get(&commit.aggregate_id) {
            return Ok(Some(known.clone()));
        }
        if self.trusted_seq == 0 || !needs_task_context(commit) {
            return Ok(None);
        }
        let found = super::proven_task_context(&self.pool, commit, self.trusted_seq as i64).await?;
        if let Some(context) = &found {
            self.tasks
                .insert(commit.aggregate_id.clone(), context.clone());
        }
        Ok(found)
    }

    async fn expect_commit(&mut self, commit: &LoggedCommit) -> Result<(), VerifyError> {
        if commit.tenant.as_str() != self.tenant {
            return Ok(());
        }
        let known = self.task_context(commit).await?;
        match entries(commit, known.as_ref(), self.next_seq) {
            Ok(rows) => {
                self.next_seq += rows.len() as u64;
                self.read += rows.len() as u64;
                if let Some(context) = requested_context(&rows) {
                    self.tasks.insert(commit.aggregate_id.clone(), context);
                }
                // Succeeded and failed tasks get no further events (only dead-lettered
                // ones can be retried), so their context is no longer needed.
                if rows
                    .iter()
                    .any(|r| r.short_type == "task.succeeded" || r.short_type == "task.failed")
                {
                    self.tasks.remove(&commit.aggregate_id);
                }
                self.buf
                    .extend(rows.into_iter().map(|r| Expected::Entry(Box::new(r))));
            }
            Err(reason) => self.buf.push_back(Expected::Unreadable {
                seq: commit.stream_seq,
                reason,
            }),
        }
        Ok(())
    }

    /// Deletes the consumer (best effort: it expires by itself otherwise).
    pub(super) async fn close(mut self) {
        self.messages = None;
        if let Some(name) = self.consumer_name.take() {
            if let Err(e) = self.stream.delete_consumer(&name).await {
                tracing::debug!(error = %e, "audit verify: consumer left to expire");
            }
        }
    }
}
