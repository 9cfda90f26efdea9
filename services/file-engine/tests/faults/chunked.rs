//! An upload streamed with chunked transfer encoding (no Content-Length, so the size is only
//! known while streaming) past `FE_MAX_UPLOAD_BYTES`: cut off with 413 problem+json, no staged
//! bytes left anywhere in storage, and nothing appended to the log.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use super::rig::{Rig, RigSpec};
use super::tally::Tally;
use super::Form;

const LIMIT: usize = 64 * 1024;

pub async fn chunked_413(form: Form) {
    let rig = Rig::start(RigSpec {
        env: vec![("FE_MAX_UPLOAD_BYTES", LIMIT.to_string())],
        ..RigSpec::default()
    })
    .await;
    let token = rig.admin("acme");
    let attempts = if form == Form::Full { 10 } else { 3 };
    let before = rig.read_log().await.len();
    for i in 0..attempts {
        // 16× the limit in 8 KiB chunks; the server must stop reading long before the end.
        let (status, body) = put_chunked(&rig, &token, &format!("/big/{i}.bin"), LIMIT * 16).await;
        assert_eq!(status, 413, "chunked upload past the limit: {body}");
        assert!(body.contains("application/problem+json"), "{body}");
    }
    // The API removes the staged part; wait for it to be gone rather than for a fixed time.
    let end = Instant::now() + Duration::from_secs(10);
    while staged_bytes(rig.storage.path()) > 0 {
        assert!(
            Instant::now() < end,
            "staged bytes left behind: {}",
            staged_bytes(rig.storage.path())
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let after = rig.read_log().await.len();
    assert_eq!(before, after, "a refused upload appended to the log");
    let (status, _) = rig.get_json(&token, "/v1/files/big/0.bin").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = rig.get_json(&token, "/v1/stat/big/0.bin").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let tally = Tally {
        sent: attempts,
        ..Tally::default()
    };
    tally.report("chunked_413");
}

/// Sends `PUT /v1/files<path>` with `Transfer-Encoding: chunked` over a raw connection and
/// returns the status code and the response head and body (the server may close the
/// connection while we still write: that is the point).
async fn put_chunked(rig: &Rig, token: &str, path: &str, total: usize) -> (u16, String) {
    let authority = rig.base.trim_start_matches("http://").to_owned();
    let stream = tokio::net::TcpStream::connect(&authority)
        .await
        .expect("connect");
    let (mut read, mut write) = stream.into_split();
    let head = format!(
        "PUT /v1/files{path} HTTP/1.1\r\nHost: {authority}\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: application/octet-stream\r\nTransfer-Encoding: chunked\r\n\r\n"
    );
    let writer = tokio::spawn(async move {
        write.write_all(head.as_bytes()).await?;
        let chunk = vec![b'z'; 8192];
        let mut sent = 0;
        while sent < total {
            write
                .write_all(format!("{:x}\r\n", chunk.len()).as_bytes())
                .await?;
            write.write_all(&chunk).await?;
            write.write_all(b"\r\n").await?;
            sent += chunk.len();
        }
        write.write_all(b"0\r\n\r\n").await?;
        Ok::<usize, std::io::Error>(sent)
    });
    let mut response = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(20), read.read_to_end(&mut response)).await;
    writer.abort();
    let text = String::from_utf8_lossy(&response).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, text)
}

/// Bytes in regular files anywhere under the storage root (layout-independent: a refused
/// upload must leave none).
fn staged_bytes(root: &std::path::Path) -> u64 {
    let mut total = 0;
    let mut pending = vec![root.to_owned()];
    while let Some(dir) = pending.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            match entry.file_type() {
                Ok(t) if t.is_dir() => pending.push(entry.path()),
                Ok(t) if t.is_file() => total += entry.metadata().map(|m| m.len()).unwrap_or(0),
                _ => {}
            }
        }
    }
    total
}
