//! Event visibility on SSE: rule (and subscription) events reach admins only, every other
//! public event whoever may list its path. Walks every public event type for an admin, a
//! plain user and an auditor.

use std::collections::{BTreeSet, HashMap};
use std::pin::Pin;
use std::time::{Duration, Instant};

use events::public::{is_admin_only, PUBLIC_TYPES};
use events::task::{Task, TaskCommand, TaskFailure};
use file_engine::Role;
use futures::{Stream, StreamExt};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use testkit::clamd::{Clamd, EICAR};

use super::grant;
use super::support::TestApp;

type Bytes = Pin<Box<dyn Stream<Item = reqwest::Result<Vec<u8>>> + Send>>;

/// A minimal SSE client collecting `(event, subject)` of each frame.
struct SseClient {
    body: Bytes,
    buf: String,
}

impl SseClient {
    async fn connect(app: &TestApp, token: &str) -> Self {
        let resp = app
            .request(Method::GET, "/v1/events", Some(token))
            .await
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        Self {
            body: Box::pin(resp.bytes_stream().map(|c| c.map(|b| b.to_vec()))),
            buf: String::new(),
        }
    }

    /// Frames up to and including the first `dir.created` of `last`, within 60 s.
    async fn until(&mut self, last: &str) -> Vec<(String, String)> {
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut seen = Vec::new();
        loop {
            while let Some(end) = self.buf.find("\n\n") {
                let block: String = self.buf.drain(..end + 2).collect();
                let event = block.lines().find_map(|l| l.strip_prefix("event: "));
                let data = block.lines().find_map(|l| l.strip_prefix("data: "));
                if let (Some(event), Some(data)) = (event, data) {
                    let data: Value = serde_json::from_str(data).unwrap();
                    let subject = data["subject"].as_str().unwrap_or_default().to_owned();
                    let done = event == "dir.created" && subject == last;
                    seen.push((event.to_owned(), subject));
                    if done {
                        return seen;
                    }
                }
            }
            let left = deadline.saturating_duration_since(Instant::now());
            let chunk = tokio::time::timeout(left, self.body.next())
                .await
                .unwrap_or_else(|_| panic!("no {last} frame in time; saw {seen:?}"))
                .expect("the stream is open")
                .unwrap();
            self.buf.push_str(std::str::from_utf8(&chunk).unwrap());
        }
    }
}

#[tokio::test]
async fn every_public_event_type_reaches_exactly_the_principals_entitled_to_it() {
    // Worker and scanner start later, so a task can be dead-lettered before anyone runs it.
    let clamd = Clamd::start().await.expect("clamd");
    let app = TestApp::spawn_with(
        &[Role::Api, Role::Projector],
        &[("FE_CLAMD_ADDR", clamd.addr.as_str())],
    )
    .await;
    let admin = app.admin("acme");
    let user = app.token("bob", "acme", &[]);
    let auditor = app.token("audrey", "acme", &["auditor"]);
    let mut streams = [
        ("admin", SseClient::connect(&app, &admin).await),
        ("user", SseClient::connect(&app, &user).await),
        ("auditor", SseClient::connect(&app, &auditor).await),
    ];

    // acl.rule_granted: everyone may list and read everything (so only the type decides).
    grant(&app, &admin, "*", "/", &["list", "read"], "allow").await;
    // task.dead_lettered, recorded as a worker would after its last delivery.
    let dead = app
        .submit(
            &admin,
            json!({"op": "mkdir", "path": "/w/dead", "parents": true}),
        )
        .await;
    let aggregate =
        platform::event_log::aggregate_id(&events::TenantId::parse("acme").unwrap(), &dead);
    for command in [
        TaskCommand::Start,
        TaskCommand::DeadLetter {
            error: TaskFailure::new("storage_error", "storage unavailable"),
            failed_attempts: 1,
        },
    ] {
        app.platform
            .log
            .execute::<Task>(&aggregate, command, &(), HashMap::new())
            .await
            .unwrap();
    }
    let services = file_engine::start(&app.platform, &[Role::Worker, Role::Scanner])
        .await
        .expect("worker and scanner");

    let mkdir = |p: &str| json!({"op": "mkdir", "path": p, "parents": true});
    assert_eq!(app.run(&admin, mkdir("/w")).await["status"], "succeeded");
    let ok = app
        .upload_and_wait(&admin, "/w/f.txt", b"plain text".to_vec())
        .await;
    assert_eq!(ok["status"], "succeeded", "{ok}");
    let bad = app
        .upload_and_wait(&admin, "/w/eicar.txt", EICAR.to_vec())
        .await;
    assert_eq!(bad["error"]["code"], "malware_detected", "{bad}");
    for body in [
        json!({"op": "copy", "from": "/w/f.txt", "to": "/w/g.txt"}),
        json!({"op": "move", "from": "/w/g.txt", "to": "/w/h.txt"}),
        json!({"op": "delete", "path": "/w/h.txt"}),
    ] {
        assert_eq!(
            app.run(&admin, body.clone()).await["status"],
            "succeeded",
            "{body}"
        );
    }
    let failed = app
        .run(&admin, json!({"op": "delete", "path": "/w/none"}))
        .await;
    assert_eq!(failed["status"], "failed");
    // acl.rule_revoked
    let rule = grant(&app, &admin, "user:bob", "/w", &["write"], "allow").await;
    let revoked = app
        .request(
            Method::DELETE,
            &format!("/v1/acl/rules/{rule}"),
            Some(&admin),
        )
        .await
        .send()
        .await
        .unwrap();
    assert_eq!(revoked.status(), StatusCode::NO_CONTENT);
    assert_eq!(
        app.run(&admin, mkdir("/w/end")).await["status"],
        "succeeded"
    );

    let all: BTreeSet<&str> = PUBLIC_TYPES.iter().copied().collect();
    let not_admin_only: BTreeSet<&str> =
        all.iter().copied().filter(|t| !is_admin_only(t)).collect();
    assert!(
        not_admin_only.len() < all.len(),
        "rule events are admin-only"
    );
    for (who, stream) in &mut streams {
        let frames = stream.until("/w/end").await;
        let types: BTreeSet<&str> = frames.iter().map(|(t, _)| t.as_str()).collect();
        let expected = if *who == "admin" {
            &all
        } else {
            &not_admin_only
        };
        assert_eq!(&types, expected, "{who} saw {frames:?}");
    }
    services.shutdown().await;
}
