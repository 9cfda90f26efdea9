//! `s3` section: the S3 storage backend's upload and download throughput against the same
//! SDK client doing a plain `PutObject` / `GetObject` of the same bytes, in the same run, on a
//! scratch S3-compatible server (moto, through the test kit).
//!
//! - upload: `create_staged` + writes of 1 MiB chunks + `finish` (multipart, 8 MiB parts) +
//!   `publish` (server-side copy onto the blob key, delete of the staged object) vs one
//!   `PutObject` of the whole payload. The figure therefore includes the promotion's copy,
//!   which a plain put does not do: that is the price of never showing a partial blob.
//! - download: `open_blob` read to the end vs `GetObject` collected.
//!
//! Rounds alternate figure and baseline so that machine noise hits both alike; the figure is
//! total bytes over total time of each side.

use std::time::{Duration, Instant};

use anyhow::Context as _;
use platform::storage::{BlobId, S3Settings, S3Storage, Storage};
use rand::RngCore;
use sha2::{Digest, Sha256};
use tokio::io::AsyncReadExt;

use super::report::{FigureBuilder, Report, Target};
use super::Options;

const CHUNK: usize = 1 << 20;

pub async fn run(report: &mut Report, opts: &Options) -> anyhow::Result<()> {
    let (payload_mib, rounds) = if opts.quick { (16, 2) } else { (64, 5) };
    let server = testkit::s3::S3Server::start()
        .await
        .context("starting moto_server")?;
    let bucket = server.create_bucket().await?;
    let endpoint = server.endpoint.clone();
    let settings = S3Settings::parse(&format!("s3://{bucket}/bench"), |name| {
        match name {
            "AWS_ACCESS_KEY_ID" => Some(testkit::s3::ACCESS_KEY_ID),
            "AWS_SECRET_ACCESS_KEY" => Some(testkit::s3::SECRET_ACCESS_KEY),
            "AWS_REGION" => Some(testkit::s3::REGION),
            "FE_S3_ENDPOINT" => Some(endpoint.as_str()),
            _ => None,
        }
        .map(str::to_owned)
    })?;
    let storage = S3Storage::new(&settings);
    storage.check().await?;
    let client = storage.client().clone();
    let tenant = events::TenantId::parse("bench").context("tenant")?;

    let mut data = vec![0u8; payload_mib << 20];
    rand::rng().fill_bytes(&mut data);
    let blob = BlobId::parse(&hex::encode(Sha256::digest(&data)))?;
    let raw_key = format!("bench/raw/{}", blob.as_str());

    let (mut ours_up, mut raw_up) = (Duration::ZERO, Duration::ZERO);
    let (mut ours_down, mut raw_down) = (Duration::ZERO, Duration::ZERO);
    for _ in 0..rounds {
        let started = Instant::now();
        let id = uuid::Uuid::now_v7();
        let mut writer = storage.create_staged(&tenant, id).await?;
        for chunk in data.chunks(CHUNK) {
            writer.write(chunk).await?;
        }
        writer.finish().await?;
        storage.publish(&tenant, id, &blob).await?;
        ours_up += started.elapsed();

        let started = Instant::now();
        client
            .put_object()
            .bucket(&bucket)
            .key(&raw_key)
            .body(data.clone().into())
            .send()
            .await
            .context("raw PutObject")?;
        raw_up += started.elapsed();

        let started = Instant::now();
        let (mut reader, size) = storage.open_blob(&tenant, &blob, None).await?;
        let mut read = Vec::with_capacity(size as usize);
        reader.read_to_end(&mut read).await?;
        ours_down += started.elapsed();
        anyhow::ensure!(read == data, "the blob read back differs");

        let started = Instant::now();
        let got = client
            .get_object()
            .bucket(&bucket)
            .key(&raw_key)
            .send()
            .await
            .context("raw GetObject")?;
        let bytes = got.body.collect().await.context("raw GetObject body")?;
        raw_down += started.elapsed();
        anyhow::ensure!(bytes.into_bytes().len() == data.len(), "short raw read");
    }

    let total_mib = (payload_mib * rounds) as f64;
    let rate = |took: Duration| total_mib / took.as_secs_f64().max(f64::EPSILON);
    let note = format!(
        "moto {} on loopback, {} MiB parts; rounds alternate",
        server.endpoint,
        settings.part_size >> 20
    );
    report.add(
        FigureBuilder::new(
            "s3",
            format!("{payload_mib} MiB staged upload + publish, MiB/s"),
            "MiB/s",
        )
        .measured(rate(ours_up), None)
        .baseline("same SDK, one PutObject, MiB/s", rate(raw_up), None)
        .conditions(1, data.len(), rounds)
        .target(Target::None)
        .note(format!("{note}; includes the promotion's server-side copy"))
        .build(),
        opts.json,
    );
    report.add(
        FigureBuilder::new(
            "s3",
            format!("{payload_mib} MiB blob download, MiB/s"),
            "MiB/s",
        )
        .measured(rate(ours_down), None)
        .baseline("same SDK, GetObject collected, MiB/s", rate(raw_down), None)
        .conditions(1, data.len(), rounds)
        .target(Target::None)
        .note(note)
        .build(),
        opts.json,
    );
    Ok(())
}
