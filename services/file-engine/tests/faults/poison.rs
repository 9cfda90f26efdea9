//! A poison task: its effect fails transiently on every attempt, so the real worker path
//! dead-letters it after `FE_WORKER_MAX_DELIVER` failed attempts; once the fault is removed,
//! `POST /v1/dead-letters/{id}/retry` runs it to success. Exactly one outcome per run.
//!
//! Commands change only the catalogue (storage holds blobs), so the effect that can fail is
//! the promotion of a clean upload: the blob area made immutable with `chattr -R +i` (which
//! even root cannot write through) refuses the new blob, while staging still accepts uploads.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use reqwest::StatusCode;

use super::rig::{Rig, RigSpec};
use super::tally::{Tally, TaskHistory};
use super::Form;

const MAX_DELIVER: &str = "3";

/// Makes a directory tree immutable while it lives; mutable again when dropped, even when
/// the scenario panics (an immutable temporary directory could not be removed).
struct Immutable(PathBuf);

impl Immutable {
    fn set(path: &Path) -> Immutable {
        let status = Command::new("chattr")
            .args(["-R", "+i"])
            .arg(path)
            .status()
            .expect("chattr");
        assert!(
            status.success(),
            "chattr +i failed (needs root and a filesystem with attributes)"
        );
        Immutable(path.to_owned())
    }
}

impl Drop for Immutable {
    fn drop(&mut self) {
        let _ = Command::new("chattr")
            .args(["-R", "-i"])
            .arg(&self.0)
            .status();
    }
}

pub async fn poison(_form: Form) {
    let rig = Rig::start(RigSpec {
        clamd: true,
        env: vec![("FE_WORKER_MAX_DELIVER", MAX_DELIVER.into())],
        ..RigSpec::default()
    })
    .await;
    let token = rig.admin("acme");
    let deadline = || Instant::now() + Duration::from_secs(90);
    // A first upload gives the tenant its blob area.
    let setup = rig
        .upload(&token, "/poison/first.txt", b"first bytes".to_vec())
        .await
        .expect("setup accepted");
    assert_eq!(
        rig.wait_task(&token, &setup, deadline()).await["status"],
        "succeeded"
    );

    // The fault: no blob can be written any more; staging and scanning still work.
    let fault = Immutable::set(&rig.storage.path().join("blobs"));
    let id = rig
        .upload(&token, "/poison/x.txt", b"poisoned bytes".to_vec())
        .await
        .expect("poison accepted");
    let task = rig.wait_task(&token, &id, deadline()).await;
    assert_eq!(task["status"], "dead_lettered", "{task}");
    assert_eq!(task["error"]["code"], "storage_error", "{task}");
    assert_eq!(
        task["attempts"].to_string(),
        MAX_DELIVER,
        "dead-lettered after exactly FE_WORKER_MAX_DELIVER failed attempts: {task}"
    );
    assert!(
        !task["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("os error"),
        "internal error text reached the client: {task}"
    );
    let (status, listed) = rig.get_json(&token, "/v1/dead-letters").await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        listed["dead_letters"]
            .as_array()
            .is_some_and(|l| l.iter().any(|d| d["task_id"] == id.as_str())),
        "not listed as a dead letter: {listed}"
    );
    let (status, _) = rig.get_json(&token, "/v1/stat/poison/x.txt").await;
    assert_ne!(
        status,
        StatusCode::OK,
        "a dead-lettered upload is not available"
    );

    drop(fault);
    let retried = rig
        .http
        .post(rig.url(&format!("/v1/dead-letters/{id}/retry")))
        .bearer_auth(&token)
        .send()
        .await
        .expect("retry");
    assert_eq!(retried.status(), StatusCode::ACCEPTED);
    let finals: std::collections::HashMap<String, serde_json::Value> =
        [(id.clone(), rig.wait_task(&token, &id, deadline()).await)].into();
    assert_eq!(finals[&id]["status"], "succeeded", "{}", finals[&id]);
    let (status, stat) = rig.get_json(&token, "/v1/stat/poison/x.txt").await;
    assert_eq!(
        (status, stat["status"].as_str()),
        (StatusCode::OK, Some("available"))
    );

    let log = rig.read_log().await;
    let history = TaskHistory::of(&log);
    let runs = &history.runs[&id];
    assert_eq!(
        runs.len(),
        2,
        "a run until the dead letter, a run after the retry: {runs:?}"
    );
    let tally = Tally::judge(2, &finals, &log);
    tally.report("poison");
}
