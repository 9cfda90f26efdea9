//! Files that would evade the scanner: an encrypted archive and one nested past clamd's
//! recursion limit are quarantined with a reason, never available. The archives are made by
//! Info-ZIP's `zip` (installed by `deploy/dev/setup.sh`).

use std::path::Path;
use std::process::Command;

use file_engine::Role;
use reqwest::{Method, StatusCode};
use serde_json::Value;
use testkit::clamd::{Clamd, EICAR};

use super::support::TestApp;

/// Runs `zip` in `dir` with `args`; panics with its output if it fails.
fn zip(dir: &Path, args: &[&str]) {
    let out = Command::new("zip")
        .current_dir(dir)
        .args(args)
        .output()
        .expect("Info-ZIP `zip` must be installed (deploy/dev/setup.sh installs it)");
    assert!(out.status.success(), "zip {args:?}: {out:?}");
}

/// Uploads `bytes` and returns the terminal task, the stat and the download status.
async fn upload(
    app: &TestApp,
    token: &str,
    path: &str,
    bytes: Vec<u8>,
) -> (Value, Value, StatusCode) {
    let task = app.upload_and_wait(token, path, bytes).await;
    let (_, stat) = app.get_json(token, &format!("/v1/stat{path}")).await;
    let download = app
        .request(Method::GET, &format!("/v1/files{path}"), Some(token))
        .await
        .send()
        .await
        .unwrap()
        .status();
    (task, stat, download)
}

#[tokio::test]
async fn encrypted_and_too_deeply_nested_archives_are_quarantined_with_a_reason() {
    let clamd = Clamd::start_with(&[("MaxRecursion", "3")])
        .await
        .expect("clamd");
    let app = TestApp::spawn_with(
        &[Role::Api, Role::Projector, Role::Worker, Role::Scanner],
        &[("FE_CLAMD_ADDR", clamd.addr.as_str())],
    )
    .await;
    let admin = app.admin("acme");
    let work = tempfile::tempdir().unwrap();
    std::fs::write(work.path().join("eicar.txt"), EICAR).unwrap();

    zip(
        work.path(),
        &["-q", "-P", "not-a-secret", "encrypted.zip", "eicar.txt"],
    );
    let encrypted = std::fs::read(work.path().join("encrypted.zip")).unwrap();
    let (task, stat, download) = upload(&app, &admin, "/enc.zip", encrypted).await;
    assert_eq!(task["error"]["code"], "malware_detected", "{task}");
    assert!(
        task["error"]["message"]
            .as_str()
            .unwrap()
            .contains("encrypted"),
        "{task}"
    );
    assert_eq!(stat["status"], "quarantined", "{stat}");
    assert_eq!(download, StatusCode::CONFLICT);

    // Each level wraps the previous archive: 6 levels, far past MaxRecursion 3.
    zip(work.path(), &["-q", "level1.zip", "eicar.txt"]);
    for level in 2..=6 {
        let (outer, inner) = (
            format!("level{level}.zip"),
            format!("level{}.zip", level - 1),
        );
        zip(work.path(), &["-q", &outer, &inner]);
    }
    let nested = std::fs::read(work.path().join("level6.zip")).unwrap();
    let (task, stat, download) = upload(&app, &admin, "/nested.zip", nested).await;
    assert_eq!(task["error"]["code"], "malware_detected", "{task}");
    assert!(
        task["error"]["message"]
            .as_str()
            .unwrap()
            .contains("limits"),
        "{task}"
    );
    assert_eq!(stat["status"], "quarantined", "{stat}");
    assert_eq!(download, StatusCode::CONFLICT);

    // A harmless archive within the limits still becomes available.
    std::fs::write(work.path().join("fine.txt"), b"just text").unwrap();
    zip(work.path(), &["-q", "fine.zip", "fine.txt"]);
    let fine = std::fs::read(work.path().join("fine.zip")).unwrap();
    let (task, stat, download) = upload(&app, &admin, "/fine.zip", fine).await;
    assert_eq!(task["status"], "succeeded", "{task}");
    assert_eq!(stat["status"], "available");
    assert_eq!(download, StatusCode::OK);
}
