//! The public events of one log commit, as the notifier and the SSE endpoint deliver them.
//!
//! [`public_events`] maps every event of a commit whose type is public
//! (`events::public::PUBLIC_TYPES`) to its CloudEvent with `events::public::cloud_event`, and
//! adds the paths it is about: its `subject`, plus `data.to` for moves and copies. Task events
//! whose payload names no path (`task.failed`, `task.dead_lettered`) are about the task's
//! paths, taken from a `task.requested` in the same commit or else from the `tasks` read
//! model; callers that need them must have waited for the projection to pass the commit
//! (the notifier and SSE both do). When a task's paths are still unknown the event has no
//! paths: subscriptions on `/` and admins see it, nobody else.
//!
//! An event that cannot be mapped (a corrupt payload) is skipped, counted in
//! `fe_public_event_errors_total` and logged with its sequence; redelivery could not fix it.

use events::public::{self, CloudEvent, EventContext, LogEvent};
use events::task::{TaskEvent, TaskSpec};
use events::FilePath;
use sqlx::PgPool;
use uuid::Uuid;

use crate::event_log::LoggedCommit;

/// One public event of a commit with the paths it is about.
#[derive(Clone, Debug, PartialEq)]
pub struct PublicEvent {
    /// `dir.created`, ...
    pub short_type: String,
    pub event: CloudEvent,
    /// The subject and, for moves and copies, the target; empty when unknown.
    pub paths: Vec<FilePath>,
}

/// Short types whose payload names no path: their subject is the task's.
const PATHLESS_TYPES: &[&str] = &["task.failed", "task.dead_lettered"];

/// The public events of `commit`, in commit order.
pub async fn public_events(
    pool: &PgPool,
    commit: &LoggedCommit,
) -> Result<Vec<PublicEvent>, sqlx::Error> {
    let wanted: Vec<usize> = commit
        .events
        .iter()
        .enumerate()
        .filter(|(_, e)| public::is_public(&e.event_type))
        .map(|(i, _)| i)
        .collect();
    if wanted.is_empty() {
        return Ok(Vec::new());
    }
    let needs_task = wanted
        .iter()
        .any(|&i| PATHLESS_TYPES.contains(&commit.events[i].event_type.as_str()));
    let task_spec = match needs_task {
        true => task_spec(pool, commit).await?,
        false => None,
    };
    let task_paths: Vec<FilePath> = task_spec
        .as_ref()
        .map(|s| s.paths().into_iter().cloned().collect())
        .unwrap_or_default();
    let principal = principal_of(commit);
    let mut out = Vec::with_capacity(wanted.len());
    for index in wanted {
        if let Some(event) = map_one(commit, index, &principal, &task_paths) {
            out.push(event);
        }
    }
    Ok(out)
}

fn map_one(
    commit: &LoggedCommit,
    index: usize,
    principal: &str,
    task_paths: &[FilePath],
) -> Option<PublicEvent> {
    let stored = &commit.events[index];
    let ctx = EventContext {
        seq: commit.stream_seq,
        index,
        time: commit.time,
        tenant: &commit.tenant,
        principal,
        traceparent: commit.headers.traceparent.as_deref(),
    };
    let log_event = LogEvent {
        aggregate_type: &commit.aggregate_type,
        aggregate_id: &commit.aggregate_id,
        event_type: &stored.event_type,
        event_version: &stored.event_version,
        payload: &stored.payload,
    };
    let task_path = task_paths.first().map(FilePath::as_str);
    let event = match public::cloud_event(&log_event, &ctx, task_path) {
        Ok(event) => event,
        Err(e) => {
            metrics::counter!("fe_public_event_errors_total").increment(1);
            tracing::error!(seq = commit.stream_seq, index, error = %e, "event cannot be mapped to a public event; skipped");
            return None;
        }
    };
    let paths = if PATHLESS_TYPES.contains(&stored.event_type.as_str()) {
        task_paths.to_vec()
    } else {
        let subject = FilePath::parse(&event.subject).ok();
        let target = event.target().and_then(|t| FilePath::parse(t).ok());
        subject.into_iter().chain(target).collect()
    };
    Some(PublicEvent {
        short_type: stored.event_type.clone(),
        event,
        paths,
    })
}

/// The principal of a commit: the header, else the first event's metadata, else `system`.
fn principal_of(commit: &LoggedCommit) -> String {
    commit
        .headers
        .principal
        .clone()
        .or_else(|| {
            commit
                .events
                .first()
                .and_then(|e| e.metadata_value("principal"))
                .map(str::to_owned)
        })
        .unwrap_or_else(|| "system".to_owned())
}

/// The spec of the commit's task: from its own `task.requested`, else from the read model.
async fn task_spec(pool: &PgPool, commit: &LoggedCommit) -> Result<Option<TaskSpec>, sqlx::Error> {
    if commit.aggregate_type != "task" {
        return Ok(None);
    }
    for stored in &commit.events {
        if let Ok(TaskEvent::TaskRequested { spec, .. }) =
            serde_json::from_value::<TaskEvent>(stored.payload.clone())
        {
            return Ok(Some(spec));
        }
    }
    let Some(task_id) = commit
        .aggregate_id
        .split_once('.')
        .and_then(|(_, id)| Uuid::parse_str(id).ok())
    else {
        return Ok(None);
    };
    let spec: Option<serde_json::Value> =
        sqlx::query_scalar("SELECT spec FROM tasks WHERE tenant = $1 AND task_id = $2")
            .bind(commit.tenant.as_str())
            .bind(task_id)
            .fetch_optional(pool)
            .await?;
    Ok(spec.and_then(|s| serde_json::from_value(s).ok()))
}
