//! Shutdown with a deadline: every role, run as a real process of the binary, exits cleanly
//! within `FE_SHUTDOWN_TIMEOUT_S` after SIGTERM even when NATS has vanished first, with a scan
//! stuck in flight, and with a tenant's projection parked (its commits held).

mod support;

use std::process::Stdio;
use std::time::{Duration, Instant};

use file_engine::Role;
use serde_json::json;
use support::TestApp;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// The deadline the processes are given; short so the test is quick.
const DEADLINE_S: u64 = 4;

/// Starts `file-engine <role>` and returns once it logged that its roles started.
async fn spawn_role(app: &TestApp, role: &str, clamd: &str) -> Child {
    let deadline = DEADLINE_S.to_string();
    let env = app.env(&[
        ("FE_SHUTDOWN_TIMEOUT_S", deadline.as_str()),
        ("FE_LOG_LEVEL", "info"),
        ("FE_CLAMD_ADDR", clamd),
        (
            "FE_WEBHOOK_SECRET_KEY",
            "a-webhook-secret-key-of-32-bytes-or-more",
        ),
    ]);
    let mut child = Command::new(env!("CARGO_BIN_EXE_file-engine"))
        .arg(role)
        .envs(env)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn file-engine");
    let stdout = child.stdout.take().expect("stdout");
    let mut lines = BufReader::new(stdout).lines();
    let started = tokio::time::timeout(Duration::from_secs(60), async {
        while let Ok(Some(line)) = lines.next_line().await {
            if line.contains("roles started") {
                return true;
            }
        }
        false
    })
    .await;
    assert_eq!(started, Ok(true), "{role} did not start");
    // Keep draining the output so the process never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    child
}

fn sigterm(child: &Child) {
    let pid = child.id().expect("running").to_string();
    let status = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill");
    assert!(status.success());
}

/// Sends SIGTERM to `child` and checks it exits successfully within the deadline.
async fn terminates_within_the_deadline(child: &mut Child, what: &str) {
    let sent = Instant::now();
    sigterm(child);
    let exited = tokio::time::timeout(Duration::from_secs(DEADLINE_S + 10), child.wait()).await;
    let took = sent.elapsed();
    let status = exited
        .unwrap_or_else(|_| panic!("{what} still running {took:?} after SIGTERM"))
        .expect("wait");
    eprintln!("{what}: exited {status} {took:?} after SIGTERM");
    assert!(status.success(), "{what} exited with {status}");
    assert!(
        took < Duration::from_secs(DEADLINE_S),
        "{what} took {took:?}, deadline {DEADLINE_S} s"
    );
}

#[tokio::test]
async fn every_role_exits_within_the_deadline_after_sigterm_with_nats_gone() {
    let clamd = testkit::clamd::Clamd::start().await.expect("clamd");
    for role in ["api", "projector", "worker", "scanner", "notifier", "all"] {
        let mut app = TestApp::spawn_with(&[Role::Api, Role::Projector], &[]).await;
        // Work on the log, so consumers have deliveries in flight or queued.
        let t = app.admin("acme");
        for i in 0..5 {
            app.submit(
                &t,
                json!({"op": "mkdir", "path": format!("/s{i}"), "parents": true}),
            )
            .await;
        }
        let mut child = spawn_role(&app, role, &clamd.addr).await;
        app.stop_services().await;
        app.nats.stop().await;
        terminates_within_the_deadline(&mut child, &format!("{role} with NATS gone")).await;
    }
}

#[tokio::test]
async fn a_scan_stuck_in_flight_is_released_and_the_scanner_exits_within_the_deadline() {
    // A clamd that accepts connections and never answers: the scan hangs until released.
    let black_hole = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = black_hole.local_addr().unwrap().to_string();
    let mut app = TestApp::spawn_with(&[Role::Api, Role::Projector], &[]).await;
    let t = app.admin("acme");
    let resp = app
        .upload(&t, "/stuck.txt", b"never scanned".to_vec(), &[])
        .await;
    assert_eq!(resp.status(), reqwest::StatusCode::ACCEPTED);
    let mut child = spawn_role(&app, "scanner", &addr).await;
    let (_held, _) = tokio::time::timeout(Duration::from_secs(30), black_hole.accept())
        .await
        .expect("the scanner to start the scan")
        .unwrap();
    app.stop_services().await;
    app.nats.stop().await;
    terminates_within_the_deadline(&mut child, "scanner with a scan in flight").await;
}

#[tokio::test]
async fn a_projector_with_a_parked_tenant_exits_within_the_deadline() {
    // The projector runs only as the process under test (it never talks to clamd).
    let app = TestApp::spawn_with(&[Role::Api], &[]).await;
    let mut child = spawn_role(&app, "projector", "127.0.0.1:9").await;
    // A commit no projector can read parks its tenant; later commits of the tenant are held.
    let task = uuid::Uuid::now_v7();
    app.inject_task_commit(
        "poisoned",
        task,
        vec![("task.requested".into(), json!({"NotATaskEvent": {}}))],
    )
    .await;
    app.inject_task_commit(
        "poisoned",
        uuid::Uuid::now_v7(),
        vec![("task.requested".into(), json!({"NotATaskEvent": {}}))],
    )
    .await;
    let pool = app.platform.pool.clone();
    support::eventually("the tenant to be parked", Duration::from_secs(30), || {
        let pool = pool.clone();
        async move {
            platform::projection::parked_tenant(&pool, "poisoned")
                .await
                .unwrap()
                .is_some()
        }
    })
    .await;
    terminates_within_the_deadline(&mut child, "projector with a parked tenant").await;
    // The parking outlives the process: nothing was skipped on the way out.
    assert!(platform::projection::parked_tenant(&pool, "poisoned")
        .await
        .unwrap()
        .is_some());
}
