//! Backup and restore of the event stream through nats-server's own stream snapshot API
//! (`$JS.API.STREAM.SNAPSHOT` / `$JS.API.STREAM.RESTORE`, what `nats stream backup/restore`
//! uses): the snapshot is the server's byte-exact archive of the stream's blocks, so a
//! restore keeps every message's sequence, subject, headers and storage time (the commit
//! time the audit chain is computed over), and the durable consumers' positions.
//!
//! A backup directory holds `stream.snapshot` (the archive as the server sent it) and
//! `stream.json` (the stream's configuration and state at snapshot time, the archive's size
//! and SHA-256). A restore refuses an archive whose hash differs, requires that the stream
//! does not exist on the target server (restore into a fresh server, before any role starts:
//! a role would create an empty stream), and checks that the restored stream holds what the
//! snapshot recorded.
//!
//! Only `FE_NATS_URL` is used; the connecting user needs the JetStream API permissions of the
//! operations account (`nats/accounts.conf`), not a service user's.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context as _};
use bytes::Bytes;
use futures::StreamExt as _;
use serde_json::{json, Value};
use sha2::{Digest as _, Sha256};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

const CHUNK: usize = 128 * 1024;
/// How long the server may pause between two chunks before the backup is abandoned.
const CHUNK_TIMEOUT: Duration = Duration::from_secs(60);
/// How long the server may take to unpack and verify a restored stream.
const RESTORE_TIMEOUT: Duration = Duration::from_secs(1800);

const ARCHIVE: &str = "stream.snapshot";
const MANIFEST: &str = "stream.json";

/// Snapshots `stream` into `dir` (created if missing) and returns the manifest written.
pub async fn snapshot(
    nats: &async_nats::Client,
    stream: &str,
    dir: &Path,
) -> anyhow::Result<Value> {
    tokio::fs::create_dir_all(dir)
        .await
        .with_context(|| format!("creating {}", dir.display()))?;
    let started = Instant::now();
    let inbox = nats.new_inbox();
    let mut chunks = nats.subscribe(inbox.clone()).await?;
    let request = json!({"deliver_subject": inbox, "chunk_size": CHUNK, "jsck": true});
    let answer = nats
        .request(
            format!("$JS.API.STREAM.SNAPSHOT.{stream}"),
            serde_json::to_vec(&request)?.into(),
        )
        .await
        .context("asking for a stream snapshot")?;
    let answer: Value = serde_json::from_slice(&answer.payload).context("snapshot answer")?;
    api_error(&answer, "snapshot")?;

    let partial = dir.join(format!("{ARCHIVE}.partial"));
    let mut file = tokio::fs::File::create(&partial).await?;
    let mut hash = Sha256::new();
    let mut bytes = 0u64;
    loop {
        let msg = tokio::time::timeout(CHUNK_TIMEOUT, chunks.next())
            .await
            .context("the server stopped sending the snapshot")?
            .context("the snapshot subscription ended")?;
        if msg.payload.is_empty() {
            // End of the archive; a status other than 204 is the server's error report.
            if let Some(status) = msg.status.filter(|s| s.as_u16() != 204) {
                bail!(
                    "snapshot failed: {} {}",
                    status.as_u16(),
                    msg.description.unwrap_or_default()
                );
            }
            break;
        }
        file.write_all(&msg.payload).await?;
        hash.update(&msg.payload);
        bytes += msg.payload.len() as u64;
        // Flow control: the server sends more once chunks are acknowledged.
        if let Some(reply) = msg.reply {
            nats.publish(reply, Bytes::new()).await?;
        }
    }
    file.sync_all().await?;
    drop(file);
    tokio::fs::rename(&partial, dir.join(ARCHIVE)).await?;

    let manifest = json!({
        "stream": stream,
        "config": answer["config"],
        "state": answer["state"],
        "archive_bytes": bytes,
        "archive_sha256": hex::encode(hash.finalize()),
        "taken_at": chrono::Utc::now().to_rfc3339(),
        "seconds": started.elapsed().as_secs_f64(),
    });
    write_durably(&dir.join(MANIFEST), &serde_json::to_vec_pretty(&manifest)?).await?;
    Ok(manifest)
}

/// Restores the stream recorded in `dir` into the server of `nats`; returns a summary.
pub async fn restore(nats: &async_nats::Client, dir: &Path) -> anyhow::Result<Value> {
    let started = Instant::now();
    let manifest: Value = serde_json::from_slice(
        &tokio::fs::read(dir.join(MANIFEST))
            .await
            .with_context(|| format!("reading {}", dir.join(MANIFEST).display()))?,
    )
    .context("the backup manifest is not JSON")?;
    let stream = manifest["stream"].as_str().context("manifest: stream")?;
    let archive = tokio::fs::read(dir.join(ARCHIVE))
        .await
        .with_context(|| format!("reading {}", dir.join(ARCHIVE).display()))?;
    ensure!(
        Some(hex::encode(Sha256::digest(&archive)).as_str()) == manifest["archive_sha256"].as_str(),
        "the archive does not match the manifest's SHA-256 (damaged or replaced backup)"
    );

    let request = json!({"config": manifest["config"], "state": manifest["state"]});
    let answer = nats
        .request(
            format!("$JS.API.STREAM.RESTORE.{stream}"),
            serde_json::to_vec(&request)?.into(),
        )
        .await
        .context("asking to restore the stream")?;
    let answer: Value = serde_json::from_slice(&answer.payload).context("restore answer")?;
    api_error(
        &answer,
        "restore (does the stream already exist on this server?)",
    )?;
    let deliver = answer["deliver_subject"]
        .as_str()
        .context("restore answer without deliver_subject")?
        .to_owned();

    let mut reader = &archive[..];
    let mut chunk = vec![0u8; CHUNK];
    loop {
        let n = reader.read(&mut chunk).await?;
        if n == 0 {
            break;
        }
        nats.request(deliver.clone(), Bytes::copy_from_slice(&chunk[..n]))
            .await
            .context("sending a chunk of the archive")?;
    }
    let done = nats
        .send_request(
            deliver,
            async_nats::Request::new()
                .payload(Bytes::new())
                .timeout(Some(RESTORE_TIMEOUT)),
        )
        .await
        .context("finishing the restore")?;
    let done: Value = serde_json::from_slice(&done.payload).context("restore result")?;
    api_error(&done, "restore")?;

    // The restored stream must hold exactly what the snapshot recorded.
    let (want, got) = (&manifest["state"], &done["state"]);
    for field in ["messages", "first_seq", "last_seq", "bytes"] {
        ensure!(
            want[field] == got[field],
            "restored stream differs in {field}: snapshot {}, restored {}",
            want[field],
            got[field]
        );
    }
    Ok(json!({
        "stream": stream,
        "messages": got["messages"],
        "last_seq": got["last_seq"],
        "consumers": got["consumer_count"],
        "seconds": started.elapsed().as_secs_f64(),
    }))
}

fn api_error(answer: &Value, what: &str) -> anyhow::Result<()> {
    match answer.get("error") {
        Some(e) => bail!(
            "{what}: the server answered {} ({})",
            e["description"].as_str().unwrap_or("an error"),
            e["code"]
        ),
        None => Ok(()),
    }
}

async fn write_durably(path: &Path, data: &[u8]) -> anyhow::Result<()> {
    let mut file = tokio::fs::File::create(path).await?;
    file.write_all(data).await?;
    file.sync_all().await?;
    Ok(())
}
