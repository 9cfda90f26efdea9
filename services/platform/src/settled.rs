//! Wake-ups per task: the projector announces every task its batch made terminal
//! (`NOTIFY fe_task_settled, '<tenant>:<task id>'`, delivered when the batch commits, so the
//! read models already show the outcome), and a long poll on one task (`GET
//! /v1/tasks/{id}?wait=`) waits for its own task's announcement instead of waking, and reading
//! its row again, at every step of its tenant's partition.
//!
//! A notification can be lost (the listener reconnects); a waiter therefore also looks again
//! after [`RECHECK`], so a lost one only delays an answer.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use events::TenantId;
use tokio::sync::{broadcast, Notify};
use uuid::Uuid;

/// `NOTIFY` channel of tasks made terminal; payload `<tenant>:<task id>`.
pub const SETTLED_CHANNEL: &str = "fe_task_settled";
/// Longest a waiter relies on notifications alone before it looks again.
pub const RECHECK: Duration = Duration::from_secs(1);

fn key(tenant: &str, task_id: Uuid) -> String {
    format!("{tenant}:{task_id}")
}

/// The payloads announcing `settled` on [`SETTLED_CHANNEL`]; the projector sends them with
/// `pg_notify` inside the transaction that makes the tasks terminal.
pub fn announcements(settled: &[(&str, Uuid)]) -> Vec<String> {
    settled.iter().map(|(t, id)| key(t, *id)).collect()
}

/// Announcements a [`SettledTasks::feed`] subscriber may fall behind by before it is told it
/// lagged (and must look the state up instead).
pub const FEED_CAPACITY: usize = 4096;

/// The tasks someone waits for in this process, each with the [`Notify`] its waiters share,
/// and a feed of every announcement for those that follow them all (the worker's deferred
/// work, [`SettledTasks::feed`]).
#[derive(Clone, Debug)]
pub struct SettledTasks {
    waiting: Arc<Mutex<HashMap<String, Arc<Notify>>>>,
    all: broadcast::Sender<Arc<str>>,
}

impl Default for SettledTasks {
    fn default() -> Self {
        SettledTasks {
            waiting: Arc::default(),
            all: broadcast::channel(FEED_CAPACITY).0,
        }
    }
}

/// One settled task as announced: `(tenant, task id)`; `None` for a payload of another shape.
pub fn parse_announcement(payload: &str) -> Option<(TenantId, Uuid)> {
    let (tenant, id) = payload.split_once(':')?;
    Some((TenantId::parse(tenant).ok()?, Uuid::parse_str(id).ok()?))
}

/// One waiter's registration; leaves the registry with its last waiter.
pub struct SettledWatch {
    key: String,
    notify: Arc<Notify>,
    registry: SettledTasks,
}

impl SettledTasks {
    /// Registers a waiter for the task. Enable a `notified()` future of the watch before
    /// reading the task's state, so an announcement in between is not missed.
    pub fn watch(&self, tenant: &TenantId, task_id: Uuid) -> SettledWatch {
        let key = key(tenant.as_str(), task_id);
        let mut waiting = self.waiting.lock().unwrap_or_else(PoisonError::into_inner);
        let notify = waiting.entry(key.clone()).or_default().clone();
        SettledWatch {
            key,
            notify,
            registry: self.clone(),
        }
    }

    /// Every announcement from now on, as its payload `<tenant>:<task id>` (see
    /// [`parse_announcement`]); a subscriber that falls more than [`FEED_CAPACITY`] behind
    /// receives `Lagged` and must look the state up.
    pub fn feed(&self) -> broadcast::Receiver<Arc<str>> {
        self.all.subscribe()
    }

    /// Wakes the waiters of the task a notification names (nobody, mostly), and passes it to
    /// the feed's subscribers.
    pub fn announce(&self, payload: &str) {
        if self.all.receiver_count() > 0 {
            let _ = self.all.send(Arc::from(payload));
        }
        let waiting = self.waiting.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(notify) = waiting.get(payload) {
            notify.notify_waiters();
        }
    }

    #[cfg(test)]
    fn waiters(&self) -> usize {
        self.waiting
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }
}

impl SettledWatch {
    /// Resolves when the task is announced; create and enable it before looking at the task.
    pub fn notified(&self) -> tokio::sync::futures::Notified<'_> {
        self.notify.notified()
    }
}

impl Drop for SettledWatch {
    fn drop(&mut self) {
        let mut waiting = self
            .registry
            .waiting
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        // The registry's reference and this one: no other waiter shares the entry.
        if Arc::strong_count(&self.notify) <= 2 {
            waiting.remove(&self.key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_feed_passes_on_every_announcement_in_order() {
        let tasks = SettledTasks::default();
        let mut feed = tasks.feed();
        let (first, second) = (Uuid::new_v4(), Uuid::new_v4());
        tasks.announce(&format!("acme:{first}"));
        tasks.announce(&format!("globex:{second}"));
        let acme = TenantId::parse("acme").unwrap();
        let globex = TenantId::parse("globex").unwrap();
        let got = parse_announcement(&feed.recv().await.unwrap());
        assert_eq!(got, Some((acme, first)));
        let got = parse_announcement(&feed.recv().await.unwrap());
        assert_eq!(got, Some((globex, second)));
    }

    #[test]
    fn hostile_announcements_are_not_parsed() {
        let id = Uuid::new_v4();
        for payload in [
            String::new(),
            "acme".into(),
            format!(":{id}"),
            format!("../etc:{id}"),
            format!("ACME:{id}"),
            "acme:not-a-uuid".into(),
            format!("acme:{id}:x"),
            format!("{}:{id}", "a".repeat(10_000)),
        ] {
            assert_eq!(parse_announcement(&payload), None, "{payload:.40}");
        }
    }

    #[tokio::test]
    async fn an_announcement_wakes_the_waiters_of_its_task_only() {
        let tasks = SettledTasks::default();
        let acme = TenantId::parse("acme").unwrap();
        let (mine, other) = (Uuid::new_v4(), Uuid::new_v4());
        let watch = tasks.watch(&acme, mine);
        let second = tasks.watch(&acme, mine);
        let unrelated = tasks.watch(&acme, other);
        {
            let woken = watch.notified();
            tokio::pin!(woken);
            woken.as_mut().enable();
            let not_woken = unrelated.notified();
            tokio::pin!(not_woken);
            not_woken.as_mut().enable();
            tasks.announce(&format!("acme:{mine}"));
            tasks.announce("globex:whatever");
            tokio::time::timeout(Duration::from_secs(5), woken)
                .await
                .expect("the announced task's waiter was not woken");
            assert!(
                futures::poll!(not_woken).is_pending(),
                "another task's waiter was woken"
            );
        }
        drop(watch);
        assert_eq!(
            tasks.waiters(),
            2,
            "a shared entry stays while a waiter is left"
        );
        drop(second);
        drop(unrelated);
        assert_eq!(
            tasks.waiters(),
            0,
            "the registry keeps no entry without waiters"
        );
    }
}
