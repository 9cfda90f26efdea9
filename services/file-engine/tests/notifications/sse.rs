//! `GET /v1/events` end to end: live frames, resuming with `Last-Event-ID` without gaps or
//! duplicates, tenant isolation and ACL filtering.

use std::pin::Pin;
use std::time::{Duration, Instant};

use futures::{Stream, StreamExt};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use super::mkdir;
use crate::support::TestApp;

type Bytes = Pin<Box<dyn Stream<Item = reqwest::Result<Vec<u8>>> + Send>>;

/// One SSE frame.
#[derive(Debug)]
struct Frame {
    id: String,
    event: String,
    data: Value,
}

/// A minimal SSE client over a streamed response.
struct SseClient {
    body: Bytes,
    buf: String,
}

impl SseClient {
    async fn connect(app: &TestApp, token: &str, last_event_id: Option<&str>) -> Self {
        let mut rb = app.request(Method::GET, "/v1/events", Some(token)).await;
        if let Some(id) = last_event_id {
            rb = rb.header("Last-Event-ID", id);
        }
        let resp = rb.send().await.unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        let ct = resp.headers()["content-type"].to_str().unwrap().to_owned();
        assert!(ct.starts_with("text/event-stream"), "{ct}");
        Self {
            body: Box::pin(resp.bytes_stream().map(|c| c.map(|b| b.to_vec()))),
            buf: String::new(),
        }
    }

    /// The next frame with data (keep-alive comments skipped), waiting up to 20 s.
    async fn next(&mut self) -> Frame {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(frame) = self.take_frame() {
                return frame;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            let chunk = tokio::time::timeout(left, self.body.next())
                .await
                .expect("a frame within 20 s")
                .expect("the stream is open")
                .unwrap();
            self.buf.push_str(std::str::from_utf8(&chunk).unwrap());
        }
    }

    fn take_frame(&mut self) -> Option<Frame> {
        loop {
            let end = self.buf.find("\n\n")?;
            let block: String = self.buf.drain(..end + 2).collect();
            let (mut id, mut event, mut data) = (None, None, None);
            for line in block.lines() {
                if let Some(v) = line.strip_prefix("id: ") {
                    id = Some(v.to_owned());
                } else if let Some(v) = line.strip_prefix("event: ") {
                    event = Some(v.to_owned());
                } else if let Some(v) = line.strip_prefix("data: ") {
                    data = Some(serde_json::from_str(v).unwrap());
                }
            }
            if let (Some(id), Some(event), Some(data)) = (id, event, data) {
                return Some(Frame { id, event, data });
            }
        }
    }

    /// The subjects of the next `n` frames.
    async fn subjects(&mut self, n: usize) -> Vec<String> {
        let mut out = Vec::new();
        for _ in 0..n {
            out.push(
                self.next().await.data["subject"]
                    .as_str()
                    .unwrap()
                    .to_owned(),
            );
        }
        out
    }
}

#[tokio::test]
async fn reconnecting_with_last_event_id_resumes_without_gaps_or_duplicates() {
    let app = TestApp::spawn().await;
    let admin = app.admin("live");
    let other = app.admin("elsewhere");
    let mut first = SseClient::connect(&app, &admin, None).await;
    app.run(&admin, mkdir("/s1")).await;
    app.run(&admin, mkdir("/s2")).await;
    let a = first.next().await;
    let b = first.next().await;
    assert_eq!(
        (a.event.as_str(), b.event.as_str()),
        ("dir.created", "dir.created")
    );
    assert_eq!(
        (&a.data["subject"], &b.data["subject"]),
        (&json!("/s1"), &json!("/s2"))
    );
    assert_eq!(a.data["type"], "io.file-engine.dir.created.v1");
    assert_eq!(
        b.id,
        b.data["seq"].to_string(),
        "the frame id is the log sequence"
    );
    assert!(a.id.parse::<u64>().unwrap() < b.id.parse::<u64>().unwrap());
    drop(first);

    app.run(&admin, mkdir("/s3")).await;
    app.run(&other, mkdir("/foreign")).await;
    app.run(&admin, mkdir("/s4")).await;
    let mut resumed = SseClient::connect(&app, &admin, Some(&b.id)).await;
    app.run(&admin, mkdir("/s5")).await;
    assert_eq!(resumed.subjects(3).await, ["/s3", "/s4", "/s5"]);
    app.run(&admin, mkdir("/s6")).await;
    assert_eq!(
        resumed.subjects(1).await,
        ["/s6"],
        "no duplicate after the seam"
    );
}

#[tokio::test]
async fn an_id_past_the_last_event_resumes_at_the_live_tail_without_hiding_new_events() {
    let app = TestApp::spawn().await;
    let admin = app.admin("live");
    app.run(&admin, mkdir("/before")).await;
    // An id this tenant's history never issued (say, seen before a restore from backup).
    let mut resumed = SseClient::connect(&app, &admin, Some("1000000")).await;
    app.run(&admin, mkdir("/after1")).await;
    app.run(&admin, mkdir("/after2")).await;
    assert_eq!(resumed.subjects(2).await, ["/after1", "/after2"]);
}

#[tokio::test]
async fn a_reconnect_resumes_in_the_middle_of_a_commit_and_every_door_shows_one_event() {
    let app = super::spawn(&[]).await;
    let admin = app.admin("mid");
    let receiver = super::Receiver::start(super::Behaviour::Statuses(vec![200])).await;
    super::subscribe(
        &app,
        &admin,
        json!({"url": receiver.url("/hook"), "types": ["dir.created"]}),
    )
    .await;
    let mut live = SseClient::connect(&app, &admin, None).await;
    // One commit, three events: /m and /m/n are created implicitly, then /m/n/o.
    app.run(&admin, mkdir("/m/n/o")).await;
    let frames = [live.next().await, live.next().await, live.next().await];
    let subjects: Vec<&str> = frames
        .iter()
        .map(|f| f.data["subject"].as_str().unwrap())
        .collect();
    assert_eq!(subjects, ["/m", "/m/n", "/m/n/o"]);
    let seqs: Vec<u64> = frames.iter().map(|f| f.id.parse().unwrap()).collect();
    assert_eq!(
        seqs,
        [seqs[0], seqs[0] + 1, seqs[0] + 2],
        "every event its own seq"
    );
    assert!(
        frames
            .iter()
            .all(|f| f.data["logseq"] == frames[0].data["logseq"]),
        "one commit"
    );
    drop(live);

    // Resuming after the first event of the commit delivers exactly the rest of it.
    let mut resumed = SseClient::connect(&app, &admin, Some(&frames[0].id)).await;
    app.run(&admin, mkdir("/after")).await;
    assert_eq!(resumed.subjects(3).await, ["/m/n", "/m/n/o", "/after"]);

    // The audit API, the webhook body and the SSE data are one and the same event.
    let auditor = app.token("carol", "mid", &["auditor"]);
    let (status, page) = app.get_json(&auditor, "/v1/audit?type=dir.created").await;
    assert_eq!(status, StatusCode::OK);
    let audited = page["events"].as_array().unwrap().clone();
    crate::support::eventually("the webhooks", Duration::from_secs(30), || {
        let n = receiver.received().len();
        async move { n >= 4 }
    })
    .await;
    let hooks: Vec<Value> = receiver.received().iter().map(|r| r.json()).collect();
    for frame in &frames {
        let id = &frame.data["id"];
        let in_audit = audited.iter().find(|e| &e["id"] == id).expect("audited");
        let in_hook = hooks.iter().find(|e| &e["id"] == id).expect("delivered");
        assert_eq!(in_audit, &frame.data);
        assert_eq!(in_hook, &frame.data);
    }
    assert_eq!(frames[0].data["principal"], "root");
    assert_eq!(frames[0].data["actor"], "system:worker");
}

#[tokio::test]
async fn the_stream_shows_only_paths_the_caller_may_list() {
    let app = TestApp::spawn().await;
    let admin = app.admin("acme");
    let rule =
        json!({"subject": "user:bob", "path": "/pub", "permissions": ["list"], "effect": "allow"});
    let resp = app
        .request(Method::POST, "/v1/acl/rules", Some(&admin))
        .await
        .json(&rule)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::CREATED);
    let bob = app.token("bob", "acme", &[]);
    let mut stream = SseClient::connect(&app, &bob, None).await;

    app.run(&admin, mkdir("/pub/a")).await;
    app.run(&admin, mkdir("/priv/b")).await;
    app.run(&admin, mkdir("/pub/c")).await;
    let moved = json!({"op": "move", "from": "/pub/c", "to": "/priv/c"});
    app.run(&admin, moved).await;
    app.run(&app.admin("other"), mkdir("/pub/z")).await;
    app.run(&admin, mkdir("/pub/end")).await;
    let frames: Vec<Frame> = vec![
        stream.next().await,
        stream.next().await,
        stream.next().await,
        stream.next().await,
    ];
    let seen: Vec<(&str, &str)> = frames
        .iter()
        .map(|f| (f.event.as_str(), f.data["subject"].as_str().unwrap()))
        .collect();
    assert_eq!(
        seen,
        [
            ("dir.created", "/pub"),
            ("dir.created", "/pub/a"),
            ("dir.created", "/pub/c"),
            ("dir.created", "/pub/end")
        ],
        "no /priv path, no move into /priv, no other tenant"
    );
    assert!(frames.iter().all(|f| f.data["tenant"] == "acme"));
}

#[tokio::test]
async fn the_stream_needs_a_token_and_a_valid_last_event_id() {
    let app = TestApp::spawn().await;
    let resp = app
        .request(Method::GET, "/v1/events", None)
        .await
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    let admin = app.admin("acme");
    for bad in ["abc", "-1", "1.5", "99999999999999999999999"] {
        let resp = app
            .request(Method::GET, "/v1/events", Some(&admin))
            .await
            .header("Last-Event-ID", bad)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::BAD_REQUEST, "{bad}");
    }
}

#[tokio::test]
async fn open_streams_do_not_hold_up_a_graceful_shutdown() {
    let mut app = TestApp::spawn().await;
    let admin = app.admin("acme");
    let mut stream = SseClient::connect(&app, &admin, None).await;
    tokio::time::timeout(Duration::from_secs(15), app.stop_services())
        .await
        .expect("the server stops while a stream is open");
    let ended = tokio::time::timeout(Duration::from_secs(5), async {
        while let Some(Ok(_)) = stream.body.next().await {}
    })
    .await;
    assert!(ended.is_ok(), "the stream ended with the server");
}
