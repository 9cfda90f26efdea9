//! [`S3StagedWriter`]: streams one upload into its staging key with bounded memory.
//!
//! Every part carries a CRC32 checksum declared when the upload is created and repeated in
//! `CompleteMultipartUpload`, as S3 requires once an upload has a checksum algorithm (the
//! SDK checksums each part by default; an upload created without the algorithm would refuse
//! them).
//!
//! Bytes are buffered up to one part ([`super::S3Settings::part_size`]). The first full part
//! starts a multipart upload and every full part is uploaded as it fills, so at most one part
//! is held (plus the one in flight). `finish` either completes the multipart upload or, for an
//! upload smaller than one part, writes it with a single `PutObject`; both carry
//! `If-None-Match: *`, so a second writer for the same id loses with `AlreadyExists` where the
//! server supports conditional writes (AWS S3 and moto do). Until `finish` nothing is visible
//! under the staging key: a multipart upload shows no object before it is completed.
//!
//! A writer dropped unfinished aborts its multipart upload on the runtime, best effort; when
//! that cannot run (the process dies), the upload stays incomplete and the janitor finds it
//! through [`super::S3Storage::stale_staged`], or the bucket's `AbortIncompleteMultipartUpload`
//! lifecycle rule removes it.

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{ChecksumAlgorithm, CompletedMultipartUpload, CompletedPart};
use aws_sdk_s3::Client;
use bytes::BytesMut;

use super::errors::storage_err;
use crate::storage::{StagedWriter, StorageError};

/// S3's limit on the number of parts of one upload.
const MAX_PARTS: i32 = 10_000;

pub(super) struct S3StagedWriter {
    client: Client,
    bucket: String,
    key: String,
    /// Short error context (`staged upload <id>`).
    ctx: String,
    part_size: usize,
    buf: BytesMut,
    /// The multipart upload, once the first part was full.
    upload_id: Option<String>,
    parts: Vec<CompletedPart>,
    written: u64,
    finished: bool,
}

impl S3StagedWriter {
    pub(super) fn new(
        client: Client,
        bucket: String,
        key: String,
        ctx: String,
        part_size: usize,
    ) -> Self {
        Self {
            client,
            bucket,
            key,
            ctx,
            part_size,
            buf: BytesMut::new(),
            upload_id: None,
            parts: Vec::new(),
            written: 0,
            finished: false,
        }
    }

    /// Uploads what is buffered as the next part, starting the multipart upload if needed.
    async fn upload_part(&mut self) -> Result<(), StorageError> {
        let upload_id = match &self.upload_id {
            Some(id) => id.clone(),
            None => {
                let created = self
                    .client
                    .create_multipart_upload()
                    .bucket(&self.bucket)
                    .key(&self.key)
                    .checksum_algorithm(ChecksumAlgorithm::Crc32)
                    .send()
                    .await
                    .map_err(|e| storage_err(e, &self.ctx))?;
                let id = created.upload_id().map(str::to_owned).ok_or_else(|| {
                    StorageError::Io(format!("{}: S3 returned no upload id", self.ctx))
                })?;
                self.upload_id = Some(id.clone());
                id
            }
        };
        let number = i32::try_from(self.parts.len() + 1).unwrap_or(i32::MAX);
        if number > MAX_PARTS {
            return Err(StorageError::Io(format!(
                "{}: larger than S3's {MAX_PARTS} parts of {} bytes",
                self.ctx, self.part_size
            )));
        }
        // `split` hands the filled bytes to the request without copying; once the part is
        // uploaded and its `Bytes` dropped, `reserve` reuses the same allocation.
        let part = self.buf.split().freeze();
        let uploaded = self
            .client
            .upload_part()
            .bucket(&self.bucket)
            .key(&self.key)
            .upload_id(upload_id)
            .part_number(number)
            .checksum_algorithm(ChecksumAlgorithm::Crc32)
            .body(ByteStream::from(part))
            .send()
            .await
            .map_err(|e| storage_err(e, &self.ctx))?;
        self.parts.push(
            CompletedPart::builder()
                .set_e_tag(uploaded.e_tag().map(str::to_owned))
                .set_checksum_crc32(uploaded.checksum_crc32().map(str::to_owned))
                .part_number(number)
                .build(),
        );
        Ok(())
    }
}

#[async_trait::async_trait]
impl StagedWriter for S3StagedWriter {
    async fn write(&mut self, mut chunk: &[u8]) -> Result<(), StorageError> {
        while !chunk.is_empty() {
            if self.buf.capacity() < self.part_size {
                self.buf.reserve(self.part_size - self.buf.len());
            }
            let take = (self.part_size - self.buf.len()).min(chunk.len());
            self.buf.extend_from_slice(&chunk[..take]);
            chunk = &chunk[take..];
            self.written += take as u64;
            if self.buf.len() >= self.part_size {
                self.upload_part().await?;
            }
        }
        Ok(())
    }

    async fn finish(mut self: Box<Self>) -> Result<u64, StorageError> {
        match self.upload_id.clone() {
            None => {
                let body = self.buf.split().freeze();
                self.client
                    .put_object()
                    .bucket(&self.bucket)
                    .key(&self.key)
                    .if_none_match("*")
                    .body(ByteStream::from(body))
                    .send()
                    .await
                    .map_err(|e| storage_err(e, &self.ctx))?;
            }
            Some(upload_id) => {
                if !self.buf.is_empty() {
                    self.upload_part().await?;
                }
                let parts = CompletedMultipartUpload::builder()
                    .set_parts(Some(std::mem::take(&mut self.parts)))
                    .build();
                self.client
                    .complete_multipart_upload()
                    .bucket(&self.bucket)
                    .key(&self.key)
                    .upload_id(upload_id)
                    .multipart_upload(parts)
                    .if_none_match("*")
                    .send()
                    .await
                    .map_err(|e| storage_err(e, &self.ctx))?;
            }
        }
        self.finished = true;
        Ok(self.written)
    }
}

impl Drop for S3StagedWriter {
    fn drop(&mut self) {
        if self.finished {
            return;
        }
        let Some(upload_id) = self.upload_id.take() else {
            // Nothing was sent: a small upload exists only in this buffer.
            return;
        };
        // Drop cannot await: the abort runs on the runtime. Without one (or when it is shut
        // down before the task runs) the janitor aborts the upload later.
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let (client, bucket, key) = (self.client.clone(), self.bucket.clone(), self.key.clone());
        let ctx = std::mem::take(&mut self.ctx);
        runtime.spawn(async move {
            let aborted = client
                .abort_multipart_upload()
                .bucket(bucket)
                .key(key)
                .upload_id(upload_id)
                .send()
                .await;
            if let Err(e) = aborted {
                let e = storage_err(e, &ctx);
                tracing::warn!(error = %e, "abandoned multipart upload not aborted; the janitor will");
            }
        });
    }
}
