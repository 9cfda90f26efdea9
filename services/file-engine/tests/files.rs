//! Uploads, the malware scan with a real clamd, quarantine, downloads with ranges, versions
//! and signed links, end to end over HTTP.

mod support;

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use support::{eventually, Backend, TestApp};
use testkit::clamd::EICAR;

fn pdf(body: &str) -> Vec<u8> {
    format!("%PDF-1.7\n{body}\n%%EOF\n").into_bytes()
}

async fn get(
    app: &TestApp,
    token: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> reqwest::Response {
    let mut rb = app.request(Method::GET, path, Some(token)).await;
    for (k, v) in headers {
        rb = rb.header(*k, *v);
    }
    rb.send().await.unwrap()
}

async fn code(resp: reqwest::Response) -> (StatusCode, String) {
    let status = resp.status();
    let v: Value = resp.json().await.unwrap_or(Value::Null);
    (status, v["code"].as_str().unwrap_or_default().to_owned())
}

#[tokio::test]
async fn a_clean_upload_becomes_available_and_downloads_byte_identical() {
    clean_upload_round_trip(Backend::Local).await;
}

/// The same scenario with `FE_STORAGE=s3://…` on a real S3-compatible server (moto).
#[tokio::test]
async fn a_clean_upload_becomes_available_and_downloads_byte_identical_on_s3() {
    clean_upload_round_trip(Backend::S3).await;
}

/// Upload, scan, promotion, whole and ranged downloads, conditional GET, HEAD, and a copy that
/// reads the same bytes, on `backend`.
async fn clean_upload_round_trip(backend: Backend) {
    let app = TestApp::spawn_with_scanner_on(backend, &[]).await;
    let t = app.admin("acme");
    let bytes = pdf(&"report ".repeat(5000));
    let task = app
        .upload_and_wait(&t, "/docs/q1/report.pdf", bytes.clone())
        .await;
    assert_eq!(task["status"], "succeeded", "{task}");
    assert_eq!(task["op"], "upload");

    let resp = get(&app, &t, "/v1/files/docs/q1/report.pdf", &[]).await;
    assert_eq!(resp.status(), StatusCode::OK);
    let h = resp.headers().clone();
    assert_eq!(h["content-type"], "application/pdf");
    assert_eq!(h["x-content-type-options"], "nosniff");
    assert!(h["content-disposition"]
        .to_str()
        .unwrap()
        .starts_with("attachment; filename=\"report.pdf\""));
    let sha = hex::encode(Sha256::digest(&bytes));
    assert_eq!(h["etag"].to_str().unwrap(), format!("\"{sha}\""));
    assert_eq!(resp.bytes().await.unwrap().as_ref(), bytes.as_slice());

    let part = get(
        &app,
        &t,
        "/v1/files/docs/q1/report.pdf",
        &[("range", "bytes=5-14")],
    )
    .await;
    assert_eq!(part.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(
        part.headers()["content-range"].to_str().unwrap(),
        format!("bytes 5-14/{}", bytes.len())
    );
    assert_eq!(part.bytes().await.unwrap().as_ref(), &bytes[5..15]);
    let beyond = get(
        &app,
        &t,
        "/v1/files/docs/q1/report.pdf",
        &[("range", &format!("bytes={}-", bytes.len()))],
    )
    .await;
    assert_eq!(beyond.status(), StatusCode::RANGE_NOT_SATISFIABLE);
    let cached = get(
        &app,
        &t,
        "/v1/files/docs/q1/report.pdf",
        &[("if-none-match", &format!("\"{sha}\""))],
    )
    .await;
    assert_eq!(cached.status(), StatusCode::NOT_MODIFIED);

    let head = app
        .request(Method::HEAD, "/v1/files/docs/q1/report.pdf", Some(&t))
        .await
        .send()
        .await
        .unwrap();
    assert_eq!(head.status(), StatusCode::OK);
    assert_eq!(
        head.headers()["content-length"].to_str().unwrap(),
        bytes.len().to_string()
    );

    let (_, stat) = app.get_json(&t, "/v1/stat/docs/q1/report.pdf").await;
    assert_eq!(
        (
            stat["status"].as_str(),
            stat["sha256"].as_str(),
            stat["kind"].as_str()
        ),
        (Some("available"), Some(sha.as_str()), Some("file"))
    );
    let (_, dir) = app.get_json(&t, "/v1/stat/docs/q1").await;
    assert_eq!(
        dir["kind"], "dir",
        "parent directories are created with the file"
    );
    assert_eq!(app.staged_left("acme").await, 0);

    // A copy names the same blob: it reads the same bytes, ranges included, and writes none.
    let writes = app.platform.storage.stats().blob_writes;
    let task = app
        .run(
            &t,
            json!({"op": "copy", "from": "/docs/q1/report.pdf", "to": "/docs/copy.pdf"}),
        )
        .await;
    assert_eq!(task["status"], "succeeded", "{task}");
    let copy = get(&app, &t, "/v1/files/docs/copy.pdf", &[]).await;
    assert_eq!(copy.status(), StatusCode::OK);
    assert_eq!(copy.bytes().await.unwrap().as_ref(), bytes.as_slice());
    let copy_part = get(
        &app,
        &t,
        "/v1/files/docs/copy.pdf",
        &[("range", "bytes=100-199")],
    )
    .await;
    assert_eq!(copy_part.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(copy_part.bytes().await.unwrap().as_ref(), &bytes[100..200]);
    assert_eq!(app.platform.storage.stats().blob_writes, writes);

    // One blob, held by the backend under test (an S3 app writes nothing to its directory).
    let acme = events::TenantId::parse("acme").unwrap();
    let blobs = app.platform.storage.list_blobs(Some(&acme)).await.unwrap();
    assert_eq!(blobs.len(), 1);
    assert_eq!(blobs[0].blob.as_str(), sha);
    assert_eq!(
        app.blob_files("acme").len(),
        usize::from(backend == Backend::Local)
    );
}

#[tokio::test]
async fn an_infected_upload_is_quarantined_and_never_served() {
    infected_upload_is_quarantined(Backend::Local).await;
}

#[tokio::test]
async fn an_infected_upload_is_quarantined_and_never_served_on_s3() {
    infected_upload_is_quarantined(Backend::S3).await;
}

async fn infected_upload_is_quarantined(backend: Backend) {
    let app = TestApp::spawn_with_scanner_on(backend, &[]).await;
    let t = app.admin("acme");
    let task = app.upload_and_wait(&t, "/eicar.txt", EICAR.to_vec()).await;
    assert_eq!(task["status"], "failed");
    assert_eq!(task["error"]["code"], "malware_detected");
    assert_eq!(
        code(get(&app, &t, "/v1/files/eicar.txt", &[]).await).await,
        (StatusCode::CONFLICT, "file_not_available".into())
    );
    let link = app
        .request(Method::POST, "/v1/links", Some(&t))
        .await
        .json(&json!({"path": "/eicar.txt"}))
        .send()
        .await
        .unwrap();
    assert_eq!(
        code(link).await,
        (StatusCode::CONFLICT, "file_not_available".into())
    );
    let (_, stat) = app.get_json(&t, "/v1/stat/eicar.txt").await;
    assert_eq!(stat["status"], "quarantined");
    let acme = events::TenantId::parse("acme").unwrap();
    assert!(
        app.platform
            .storage
            .list_blobs(Some(&acme))
            .await
            .unwrap()
            .is_empty(),
        "infected bytes became a blob"
    );
    assert_eq!(app.quarantined_count("acme").await, 1);
    assert_eq!(app.staged_left("acme").await, 0);
}

#[tokio::test]
async fn uploads_wait_while_clamd_is_down_and_finish_when_it_returns() {
    let mut app = TestApp::spawn_with_scanner(&[]).await;
    let t = app.admin("acme");
    app.clamd.as_mut().unwrap().stop().await;
    let resp = app.upload(&t, "/later.pdf", pdf("later"), &[]).await;
    assert_eq!(resp.status(), StatusCode::ACCEPTED);
    let task_id = resp.json::<Value>().await.unwrap()["task_id"]
        .as_str()
        .unwrap()
        .to_owned();
    eventually(
        "the upload to show as scanning",
        Duration::from_secs(20),
        || async { app.get_json(&t, "/v1/stat/later.pdf").await.1["status"] == "scanning" },
    )
    .await;
    assert_eq!(
        code(get(&app, &t, "/v1/files/later.pdf", &[]).await).await,
        (StatusCode::CONFLICT, "file_not_available".into())
    );
    let (_, task) = app
        .get_json(&t, &format!("/v1/tasks/{task_id}?wait=2"))
        .await;
    assert_eq!(
        task["status"], "pending",
        "nothing may be released while clamd is down"
    );

    app.clamd.as_mut().unwrap().restart().await.unwrap();
    let task = app.wait_task(&t, &task_id).await;
    assert_eq!(task["status"], "succeeded");
    assert_eq!(
        get(&app, &t, "/v1/files/later.pdf", &[]).await.status(),
        StatusCode::OK
    );
}

#[tokio::test]
async fn links_serve_the_linked_version_until_expiry_and_refuse_tampering() {
    let app = TestApp::spawn_with_scanner(&[]).await;
    let t = app.admin("acme");
    app.upload_and_wait(&t, "/v.pdf", pdf("version one")).await;
    let link: Value = app
        .request(Method::POST, "/v1/links", Some(&t))
        .await
        .json(&json!({"path": "/v.pdf", "expires_in_s": 300}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let url = link["url"].as_str().unwrap().to_owned();

    let second = app.upload_and_wait(&t, "/v.pdf", pdf("version two")).await;
    assert_eq!(second["status"], "succeeded");
    let old = app.http.get(app.url(&url)).send().await.unwrap();
    assert_eq!(old.status(), StatusCode::OK);
    assert_eq!(
        old.bytes().await.unwrap().as_ref(),
        pdf("version one").as_slice()
    );
    let current = get(&app, &t, "/v1/files/v.pdf", &[])
        .await
        .bytes()
        .await
        .unwrap();
    assert_eq!(current.as_ref(), pdf("version two").as_slice());

    let mut tampered = url.clone();
    tampered.insert(
        url.len() - 3,
        if url.as_bytes()[url.len() - 3] == b'A' {
            'B'
        } else {
            'A'
        },
    );
    tampered.remove(url.len() - 2);
    assert_eq!(
        code(app.http.get(app.url(&tampered)).send().await.unwrap()).await,
        (StatusCode::FORBIDDEN, "forbidden".into())
    );

    let short: Value = app
        .request(Method::POST, "/v1/links", Some(&t))
        .await
        .json(&json!({"path": "/v.pdf", "expires_in_s": 1}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let short_url = short["url"].as_str().unwrap().to_owned();
    eventually(
        "the short link to expire",
        Duration::from_secs(10),
        || async {
            app.http
                .get(app.url(&short_url))
                .send()
                .await
                .unwrap()
                .status()
                == StatusCode::FORBIDDEN
        },
    )
    .await;

    app.run(&t, json!({"op": "delete", "path": "/v.pdf"})).await;
    assert_eq!(
        app.http.get(app.url(&url)).send().await.unwrap().status(),
        StatusCode::NOT_FOUND
    );
    for bad in [
        json!({"path": "/v.pdf", "expires_in_s": 0}),
        json!({"path": "/v.pdf", "expires_in_s": 604801}),
        json!({"path": "/../x"}),
        json!({"path": "/nope.pdf"}),
    ] {
        let (status, _) = code(
            app.request(Method::POST, "/v1/links", Some(&t))
                .await
                .json(&bad)
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert!(
            status == StatusCode::BAD_REQUEST || status == StatusCode::NOT_FOUND,
            "{bad}: {status}"
        );
    }
}

#[tokio::test]
async fn hostile_uploads_are_refused_and_leave_nothing_behind() {
    let app = TestApp::spawn_with_scanner(&[("FE_MAX_UPLOAD_BYTES", "4096")]).await;
    let t = app.admin("acme");
    assert_eq!(
        code(
            app.upload(&t, "/big.pdf", pdf(&"x".repeat(5000)), &[])
                .await
        )
        .await,
        (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large".into())
    );
    let disguised: [(&str, Vec<u8>); 4] = [
        (
            "/invoice.pdf",
            b"<!DOCTYPE html><script>alert(document.cookie)</script>".to_vec(),
        ),
        (
            "/logo.png",
            b"<svg xmlns=\"http://www.w3.org/2000/svg\" onload=\"alert(1)\"/>".to_vec(),
        ),
        (
            "/notes.txt",
            [
                &b"\x7fELF\x02\x01\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00\x3e\x00"[..],
                &[0u8; 64],
            ]
            .concat(),
        ),
        ("/data.csv", b"<?xml version=\"1.0\"?><x/>".to_vec()),
    ];
    for (path, bytes) in disguised {
        assert_eq!(
            code(app.upload(&t, path, bytes, &[]).await).await,
            (
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type".into()
            ),
            "{path}"
        );
    }
    // A body shorter than its Content-Length, then the connection closes.
    {
        use tokio::io::AsyncWriteExt;
        let host = app.base.trim_start_matches("http://");
        let mut sock = tokio::net::TcpStream::connect(host).await.unwrap();
        let req = format!("PUT /v1/files/cut.pdf HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {t}\r\nContent-Length: 3000\r\n\r\n%PDF-1.7 truncated");
        sock.write_all(req.as_bytes()).await.unwrap();
        sock.shutdown().await.unwrap();
    }
    let bad_path = app.upload(&t, "/a%2Fb.pdf", pdf("x"), &[]).await;
    assert_eq!(code(bad_path).await.1, "path_invalid");
    let user = app.token("bob", "acme", &[]);
    assert_eq!(
        code(app.upload(&user, "/mine.pdf", pdf("x"), &[]).await)
            .await
            .0,
        StatusCode::FORBIDDEN
    );

    eventually("staging to be clean", Duration::from_secs(10), || async {
        app.staged_count("acme") == 0
    })
    .await;
    let (_, root) = app.get_json(&t, "/v1/list/").await;
    assert_eq!(root["entries"], json!([]), "a refused upload left an entry");
    let tasks: i64 = sqlx::query_scalar("SELECT count(*) FROM tasks")
        .fetch_one(&app.platform.pool)
        .await
        .unwrap();
    assert_eq!(tasks, 0);

    let empty = app.upload_and_wait(&t, "/empty.txt", Vec::new()).await;
    assert_eq!(empty["status"], "succeeded");
    let got = get(&app, &t, "/v1/files/empty.txt", &[]).await;
    assert_eq!(got.headers()["content-type"], "text/plain");
}

#[tokio::test]
async fn conditional_and_idempotent_uploads() {
    let app = TestApp::spawn_with_scanner(&[]).await;
    let t = app.admin("acme");
    app.run(&t, json!({"op": "mkdir", "path": "/dir"})).await;
    assert_eq!(
        code(app.upload(&t, "/dir", pdf("x"), &[]).await).await,
        (StatusCode::CONFLICT, "conflict".into())
    );
    app.upload_and_wait(&t, "/once.pdf", pdf("one")).await;
    assert_eq!(
        code(
            app.upload(&t, "/once.pdf", pdf("two"), &[("if-none-match", "*")])
                .await
        )
        .await,
        (StatusCode::CONFLICT, "conflict".into())
    );

    let first: Value = app
        .upload(&t, "/idem.pdf", pdf("same"), &[("idempotency-key", "up-1")])
        .await
        .json()
        .await
        .unwrap();
    let again: Value = app
        .upload(&t, "/idem.pdf", pdf("same"), &[("idempotency-key", "up-1")])
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(first["task_id"], again["task_id"]);
    let other = app
        .upload(
            &t,
            "/idem.pdf",
            pdf("different"),
            &[("idempotency-key", "up-1")],
        )
        .await;
    assert_eq!(
        code(other).await,
        (StatusCode::CONFLICT, "idempotency_key_reused".into())
    );
    app.wait_task(&t, first["task_id"].as_str().unwrap()).await;
    eventually(
        "the replayed staged copies to be removed",
        Duration::from_secs(10),
        || async { app.staged_count("acme") == 0 },
    )
    .await;

    let quoted = app
        .upload_and_wait(&t, "/we%22ird%E2%80%AE.pdf", pdf("q"))
        .await;
    assert_eq!(quoted["status"], "succeeded");
    let resp = get(&app, &t, "/v1/files/we%22ird%E2%80%AE.pdf", &[]).await;
    let cd = resp.headers()["content-disposition"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        cd.starts_with(
            "attachment; filename=\"we_ird_.pdf\"; filename*=UTF-8''we%22ird%E2%80%AE.pdf"
        ),
        "{cd}"
    );
}

#[tokio::test]
async fn upload_needs_write_and_download_and_links_need_read() {
    let app = TestApp::spawn_with_scanner(&[]).await;
    let admin = app.admin("acme");
    for (subject, perms) in [
        ("user:ann", json!(["write"])),
        ("user:rob", json!(["read"])),
    ] {
        let resp = app
            .request(Method::POST, "/v1/acl/rules", Some(&admin))
            .await
            .json(&json!({"subject": subject, "path": "/inbox", "permissions": perms, "effect": "allow"}))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::CREATED);
    }
    let ann = app.token("ann", "acme", &[]);
    let rob = app.token("rob", "acme", &[]);
    let task = app
        .upload_and_wait(&ann, "/inbox/a.pdf", pdf("from ann"))
        .await;
    assert_eq!(task["status"], "succeeded", "{task}");
    assert_eq!(
        code(app.upload(&rob, "/inbox/b.pdf", pdf("x"), &[]).await)
            .await
            .0,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        code(app.upload(&ann, "/elsewhere.pdf", pdf("x"), &[]).await)
            .await
            .0,
        StatusCode::FORBIDDEN
    );

    assert_eq!(
        get(&app, &rob, "/v1/files/inbox/a.pdf", &[]).await.status(),
        StatusCode::OK
    );
    assert_eq!(
        code(get(&app, &ann, "/v1/files/inbox/a.pdf", &[]).await)
            .await
            .0,
        StatusCode::FORBIDDEN
    );
    let link = |token: String| {
        let rb = app
            .http
            .post(app.url("/v1/links"))
            .bearer_auth(token)
            .json(&json!({"path": "/inbox/a.pdf"}));
        async move { rb.send().await.unwrap().status() }
    };
    assert_eq!(link(rob.clone()).await, StatusCode::CREATED);
    assert_eq!(link(ann.clone()).await, StatusCode::FORBIDDEN);
    let other_tenant = app.admin("globex");
    assert_eq!(
        code(get(&app, &other_tenant, "/v1/files/inbox/a.pdf", &[]).await)
            .await
            .0,
        StatusCode::NOT_FOUND
    );
}
