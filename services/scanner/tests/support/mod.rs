//! The scanner's test harness: a spawned nats-server with the event stream, local storage in
//! a temporary directory, a real clamd, and scanner instances started and stopped on demand.
//! Test bodies read as scenarios: stage bytes, request the upload, wait for the verdict.

use std::collections::HashMap;
use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::jetstream::consumer::{pull, AckPolicy, DeliverPolicy};
use events::task::{Task, TaskCommand, TaskSpec, UploadSpec};
use events::{FilePath, TenantId};
use futures::StreamExt;
use platform::event_log::{aggregate_id, subject_for, Commit, EventLog, StoredEvent};
use platform::storage::{LocalStorage, Storage};
use platform::streams::{self, StreamSettings};
use scanner::{ClamdClient, ScannerDeps};
use testkit::clamd::Clamd;
use testkit::nats::NatsServer;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// Long enough for a loaded CI machine; every wait polls a condition and returns early.
pub const DEADLINE: Duration = Duration::from_secs(60);
const POLL: Duration = Duration::from_millis(50);

pub struct Harness {
    /// Kept alive for the test's duration (killed on drop).
    _nats: NatsServer,
    pub clamd: Clamd,
    pub log: EventLog,
    pub storage: Arc<LocalStorage>,
    pub root: tempfile::TempDir,
    pub tenant: TenantId,
}

/// A scanner instance running in the background of a test.
pub struct RunningScanner {
    stop: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

impl RunningScanner {
    /// Requests shutdown and waits until the instance has finished.
    pub async fn stop(self) {
        self.stop.cancel();
        self.task.await.unwrap();
    }
}

impl Harness {
    pub async fn start() -> Self {
        let nats = NatsServer::start().await.unwrap();
        let js = async_nats::jetstream::new(nats.client().await.unwrap());
        streams::ensure_event_stream(&js, &StreamSettings::default())
            .await
            .unwrap();
        let root = tempfile::tempdir().unwrap();
        Harness {
            clamd: Clamd::start().await.unwrap(),
            log: EventLog::new(js),
            storage: Arc::new(LocalStorage::new(root.path()).unwrap()),
            root,
            tenant: TenantId::parse("acme").unwrap(),
            _nats: nats,
        }
    }

    pub fn start_scanner(&self) -> RunningScanner {
        let deps = ScannerDeps {
            log: self.log.clone(),
            storage: self.storage.clone(),
            clamd: ClamdClient::new(self.clamd.addr.clone(), Duration::from_secs(60)),
            concurrency: 2,
            ack_wait: Duration::from_secs(10),
            drain: Duration::from_secs(5),
        };
        let stop = CancellationToken::new();
        let task = tokio::spawn(scanner::run(deps, stop.clone()));
        RunningScanner { stop, task }
    }

    /// Stages `bytes` as a new upload (in 64 KiB writes, as the API streams them).
    pub async fn stage(&self, name: &str, bytes: &[u8]) -> UploadSpec {
        let upload_id = Uuid::now_v7();
        let mut writer = self
            .storage
            .create_staged(&self.tenant, upload_id)
            .await
            .unwrap();
        for chunk in bytes.chunks(64 * 1024) {
            writer.write(chunk).await.unwrap();
        }
        let size = writer.finish().await.unwrap();
        UploadSpec {
            path: FilePath::parse(&format!("/{name}")).unwrap(),
            upload_id,
            size,
            sha256: "0".repeat(64),
            content_type: "application/octet-stream".into(),
        }
    }

    /// Requests the upload task as the API would; returns its aggregate id.
    pub async fn request_upload(&self, upload: UploadSpec) -> String {
        let task_id = Uuid::now_v7();
        let id = aggregate_id(&self.tenant, &task_id.to_string());
        let command = TaskCommand::Request {
            task_id,
            tenant: self.tenant.clone(),
            principal: "alice".into(),
            roles: vec![],
            spec: TaskSpec::Upload(upload),
            idempotency_key: None,
            body_hash: None,
            requested_at: chrono::Utc::now(),
        };
        let metadata = HashMap::from([
            ("principal".to_string(), "alice".to_string()),
            ("request_id".to_string(), format!("req-{task_id}")),
            (
                "traceparent".to_string(),
                "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01".to_string(),
            ),
        ]);
        self.log
            .execute::<Task>(&id, command, &(), metadata)
            .await
            .unwrap();
        id
    }

    pub async fn task(&self, id: &str) -> Task {
        self.log.load::<Task>(id).await.unwrap().aggregate
    }

    /// Polls the task until `done` holds; panics with the last state after [`DEADLINE`].
    pub async fn wait_task(&self, id: &str, done: impl Fn(&Task) -> bool) -> Task {
        let deadline = Instant::now() + DEADLINE;
        loop {
            let task = self.task(id).await;
            if done(&task) {
                return task;
            }
            assert!(Instant::now() < deadline, "condition not reached: {task:?}");
            tokio::time::sleep(POLL).await;
        }
    }

    /// Every event of the aggregate, in log order, read straight from the stream.
    pub async fn events(&self, id: &str) -> Vec<StoredEvent> {
        let stream = self
            .log
            .jetstream()
            .get_stream(streams::EVENTS_STREAM)
            .await
            .unwrap();
        let consumer = stream
            .create_consumer(pull::Config {
                filter_subject: subject_for("task", id).unwrap(),
                deliver_policy: DeliverPolicy::All,
                ack_policy: AckPolicy::None,
                ..Default::default()
            })
            .await
            .unwrap();
        let mut batch = consumer
            .fetch()
            .max_messages(1000)
            .messages()
            .await
            .unwrap();
        let mut events = Vec::new();
        while let Some(message) = batch.next().await {
            let commit: Commit = serde_json::from_slice(&message.unwrap().payload).unwrap();
            events.extend(commit.events);
        }
        events
    }

    pub async fn count_events(&self, id: &str, event_type: &str) -> usize {
        let events = self.events(id).await;
        events.iter().filter(|e| e.event_type == event_type).count()
    }

    /// Where local storage keeps a quarantined upload.
    pub fn quarantined_path(&self, upload: &UploadSpec) -> PathBuf {
        self.root
            .path()
            .join("quarantine")
            .join(self.tenant.as_str())
            .join(upload.upload_id.to_string())
    }

    /// Waits until the scanner's consumer has acknowledged every commit stored so far.
    pub async fn wait_scanner_caught_up(&self) {
        let stream = self
            .log
            .jetstream()
            .get_stream(streams::EVENTS_STREAM)
            .await
            .unwrap();
        let mut stream_info = stream.clone();
        let last = stream_info.info().await.unwrap().state.last_sequence;
        poll(|| async {
            let Ok(info) = stream.consumer_info(scanner::CONSUMER_NAME).await else {
                return false; // not created yet
            };
            info.ack_floor.stream_sequence >= last && info.num_ack_pending == 0
        })
        .await;
    }
}

/// Polls `condition` until it holds; panics after [`DEADLINE`].
pub async fn poll<F, Fut>(condition: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + DEADLINE;
    while !condition().await {
        assert!(Instant::now() < deadline, "condition not reached in time");
        tokio::time::sleep(POLL).await;
    }
}
