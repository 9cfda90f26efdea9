//! The scanner end to end: a real nats-server, local storage in a temp dir and a real clamd.
//! Each test owns all three, so tests run in parallel.

mod support;

use std::time::{Duration, Instant};

use events::task::TaskStatus;
use platform::storage::{Storage, StorageError};
use support::{poll, Harness};
use testkit::clamd::EICAR;
use tokio::io::AsyncReadExt;

async fn staged_bytes(h: &Harness, upload_id: uuid::Uuid) -> Result<Vec<u8>, StorageError> {
    let mut reader = h.storage.open_staged(&h.tenant, upload_id).await?;
    let mut bytes = Vec::new();
    reader.read_to_end(&mut bytes).await.unwrap();
    Ok(bytes)
}

#[tokio::test]
async fn a_clean_upload_is_recorded_clean_and_stays_staged_for_promotion() {
    let h = Harness::start().await;
    let scanner = h.start_scanner();
    let upload = h.stage("report.txt", b"quarterly numbers\n").await;
    let upload_id = upload.upload_id;
    let id = h.request_upload(upload).await;

    let task = h.wait_task(&id, |t| t.scanned_clean.is_some()).await;
    assert_eq!(task.scanned_clean, Some(true));
    assert_eq!(task.status, TaskStatus::Pending, "the worker finishes it");
    assert_eq!(
        staged_bytes(&h, upload_id).await.unwrap(),
        b"quarterly numbers\n"
    );

    let events = h.events(&id).await;
    let scanned = events
        .iter()
        .find(|e| e.event_type == "file.scanned")
        .unwrap();
    assert_eq!(scanned.metadata_value("principal"), Some("system:scanner"));
    let requested = &events[0];
    assert_eq!(
        scanned.metadata_value("request_id"),
        requested.metadata_value("request_id")
    );
    assert_eq!(
        scanned.metadata_value("traceparent"),
        requested.metadata_value("traceparent")
    );
    scanner.stop().await;
}

#[tokio::test]
async fn an_infected_upload_is_quarantined_and_the_task_fails() {
    let h = Harness::start().await;
    let scanner = h.start_scanner();
    let upload = h.stage("eicar.com", EICAR).await;
    let quarantined = h.quarantined_path(&upload);
    let upload_id = upload.upload_id;
    let id = h.request_upload(upload).await;

    let task = h.wait_task(&id, |t| t.status.is_terminal()).await;
    assert_eq!(task.status, TaskStatus::Failed);
    assert_eq!(task.error.unwrap().code, "malware_detected");
    assert_eq!(task.scanned_clean, Some(false));
    assert!(matches!(
        staged_bytes(&h, upload_id).await,
        Err(StorageError::NotFound(_))
    ));
    assert_eq!(std::fs::read(&quarantined).unwrap(), EICAR);

    let events = h.events(&id).await;
    let scanned = events
        .iter()
        .find(|e| e.event_type == "file.scanned")
        .unwrap();
    let signature = scanned.payload.to_string();
    assert!(signature.contains("Eicar"), "{signature}");
    assert_eq!(h.count_events(&id, "file.quarantined").await, 1);
    scanner.stop().await;
}

#[tokio::test]
async fn uploads_wait_while_clamd_is_down_and_are_scanned_when_it_returns() {
    let mut h = Harness::start().await;
    h.clamd.stop().await;
    let scanner = h.start_scanner();
    let upload = h.stage("eicar.com", EICAR).await;
    let upload_id = upload.upload_id;
    let id = h.request_upload(upload).await;

    // The scanner tries, fails, and is retried by redelivery (not a single attempt).
    let stream = h
        .log
        .jetstream()
        .get_stream(platform::streams::EVENTS_STREAM)
        .await
        .unwrap();
    poll(|| async {
        let info = stream.consumer_info(scanner::CONSUMER_NAME).await;
        info.is_ok_and(|i| i.num_redelivered >= 1 || i.delivered.consumer_sequence >= 2)
    })
    .await;
    // For a few seconds of clamd being down, the task keeps waiting, unscanned and staged.
    let watched_until = Instant::now() + Duration::from_secs(3);
    while Instant::now() < watched_until {
        let task = h.task(&id).await;
        assert_eq!(task.status, TaskStatus::Pending, "{task:?}");
        assert_eq!(task.scanned_clean, None, "{task:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(staged_bytes(&h, upload_id).await.unwrap(), EICAR);

    h.clamd.restart().await.unwrap();
    let task = h.wait_task(&id, |t| t.status.is_terminal()).await;
    assert_eq!(task.error.unwrap().code, "malware_detected");
    assert_eq!(h.count_events(&id, "file.scanned").await, 1);
    scanner.stop().await;
}

#[tokio::test]
async fn redelivery_and_competing_instances_record_exactly_one_verdict() {
    let h = Harness::start().await;
    let (first, second) = (h.start_scanner(), h.start_scanner());
    let mut ids = Vec::new();
    for n in 0..4 {
        let upload = h
            .stage(&format!("clean-{n}.txt"), format!("file {n}").as_bytes())
            .await;
        ids.push(h.request_upload(upload).await);
    }
    let infected = h.request_upload(h.stage("eicar.com", EICAR).await).await;
    for id in &ids {
        h.wait_task(id, |t| t.scanned_clean == Some(true)).await;
    }
    h.wait_task(&infected, |t| t.status.is_terminal()).await;
    first.stop().await;
    second.stop().await;

    // Every commit is delivered again to a fresh consumer, as after a lost ack.
    let stream = h
        .log
        .jetstream()
        .get_stream(platform::streams::EVENTS_STREAM)
        .await
        .unwrap();
    stream
        .delete_consumer(scanner::CONSUMER_NAME)
        .await
        .unwrap();
    let third = h.start_scanner();
    h.wait_scanner_caught_up().await;
    third.stop().await;

    for id in &ids {
        assert_eq!(h.count_events(id, "file.scanned").await, 1, "{id}");
    }
    for event_type in ["file.scanned", "file.quarantined", "task.failed"] {
        assert_eq!(
            h.count_events(&infected, event_type).await,
            1,
            "{event_type}"
        );
    }
}

#[tokio::test]
async fn an_infected_verdict_interrupted_after_quarantine_is_completed_on_redelivery() {
    let h = Harness::start().await;
    let upload = h.stage("eicar.com", EICAR).await;
    let (tenant, upload_id) = (h.tenant.clone(), upload.upload_id);
    let id = h.request_upload(upload).await;
    // An earlier attempt quarantined the bytes and crashed before recording the verdict.
    h.storage.quarantine(&tenant, upload_id).await.unwrap();

    let scanner = h.start_scanner();
    let task = h.wait_task(&id, |t| t.status.is_terminal()).await;
    assert_eq!(task.error.unwrap().code, "malware_detected");
    assert_eq!(h.count_events(&id, "file.quarantined").await, 1);
    scanner.stop().await;
}

#[tokio::test]
async fn a_discarded_upload_is_acknowledged_without_a_verdict() {
    let h = Harness::start().await;
    let upload = h.stage("gone.txt", b"bytes").await;
    let (tenant, upload_id) = (h.tenant.clone(), upload.upload_id);
    let id = h.request_upload(upload).await;
    h.storage.discard_staged(&tenant, upload_id).await.unwrap();

    let scanner = h.start_scanner();
    h.wait_scanner_caught_up().await;
    let task = h.task(&id).await;
    assert_eq!(
        (task.status, task.scanned_clean),
        (TaskStatus::Pending, None)
    );
    assert_eq!(h.count_events(&id, "file.scanned").await, 0);
    scanner.stop().await;
}

#[tokio::test]
async fn an_upload_over_clamds_limit_fails_and_is_never_released() {
    let h = Harness::start().await;
    let scanner = h.start_scanner();
    // testkit's clamd has StreamMaxLength 200M.
    let upload = h.stage("huge.bin", &vec![b'a'; 201 << 20]).await;
    let quarantined = h.quarantined_path(&upload);
    let id = h.request_upload(upload).await;

    let task = h.wait_task(&id, |t| t.status.is_terminal()).await;
    assert_eq!(task.status, TaskStatus::Failed);
    assert_eq!(task.error.unwrap().code, "storage_error");
    assert_eq!(task.scanned_clean, None, "no verdict was reached");
    poll(|| async { quarantined.exists() }).await;
    assert_eq!(std::fs::metadata(&quarantined).unwrap().len(), 201 << 20);
    assert_eq!(h.count_events(&id, "file.scanned").await, 0);
    scanner.stop().await;
}
