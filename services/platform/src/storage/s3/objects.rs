//! The S3 calls [`super::S3Storage`] is built from: HEAD, copy (single or multipart),
//! delete, paginated listings of objects, multipart uploads and their parts, aborts.
//!
//! Every call maps its SDK error through [`super::errors::storage_err`] with a short context;
//! "not there" is an `Ok(None)` / `Ok(false)` where the trait wants one.

use std::time::SystemTime;

use aws_sdk_s3::types::{ChecksumAlgorithm, CompletedMultipartUpload, CompletedPart};

use super::errors::storage_err;
use super::{S3Storage, MIN_PART_SIZE};
use crate::storage::StorageError;

/// The largest part of a multipart copy: S3 allows 5 GiB, but one server-side copy request
/// must finish within the per-attempt timeout.
const MAX_COPY_PART: u64 = 1 << 30;

impl S3Storage {
    /// The size of the object at `key`, `None` when there is none.
    pub(super) async fn head(&self, key: &str, ctx: &str) -> Result<Option<u64>, StorageError> {
        match self
            .client
            .head_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
        {
            Ok(out) => Ok(Some(
                out.content_length()
                    .and_then(|n| u64::try_from(n).ok())
                    .unwrap_or(0),
            )),
            Err(e) => match storage_err(e, ctx) {
                StorageError::NotFound(_) => Ok(None),
                other => Err(other),
            },
        }
    }

    /// Copies `from` onto `to` (both in the bucket) whose source is `len` bytes: one
    /// `CopyObject` up to the single-copy limit (5 GiB on S3), else a multipart copy. Either
    /// way the target appears complete or not at all.
    pub(super) async fn copy(
        &self,
        from: &str,
        to: &str,
        len: u64,
        ctx: &str,
    ) -> Result<(), StorageError> {
        if len > self.copy_limit {
            return self.multipart_copy(from, to, len, ctx).await;
        }
        // The copy gets a checksum of its own whole content, which whole-object reads verify
        // (a multipart source only has a composite one; moto would even copy that verbatim).
        self.client
            .copy_object()
            .bucket(&self.bucket)
            .key(to)
            .copy_source(format!("{}/{from}", self.bucket))
            .checksum_algorithm(ChecksumAlgorithm::Crc32)
            .send()
            .await
            .map_err(|e| storage_err(e, ctx))?;
        Ok(())
    }

    /// `UploadPartCopy` of consecutive ranges of `from`, then `CompleteMultipartUpload`; an
    /// upload that fails is aborted (best effort: the janitor does not see it, it is not a
    /// staging key, but the bucket's `AbortIncompleteMultipartUpload` rule does).
    async fn multipart_copy(
        &self,
        from: &str,
        to: &str,
        len: u64,
        ctx: &str,
    ) -> Result<(), StorageError> {
        let created = self
            .client
            .create_multipart_upload()
            .bucket(&self.bucket)
            .key(to)
            .send()
            .await
            .map_err(|e| storage_err(e, ctx))?;
        let upload_id = created
            .upload_id()
            .map(str::to_owned)
            .ok_or_else(|| StorageError::Io(format!("{ctx}: S3 returned no upload id")))?;
        let part_size = self.copy_limit.clamp(MIN_PART_SIZE as u64, MAX_COPY_PART);
        let copied = async {
            let mut parts = Vec::new();
            let mut start = 0;
            while start < len {
                let end = (start + part_size).min(len);
                let number = i32::try_from(parts.len() + 1)
                    .map_err(|_| StorageError::Io(format!("{ctx}: too many copy parts")))?;
                let out = self
                    .client
                    .upload_part_copy()
                    .bucket(&self.bucket)
                    .key(to)
                    .upload_id(&upload_id)
                    .part_number(number)
                    .copy_source(format!("{}/{from}", self.bucket))
                    .copy_source_range(format!("bytes={start}-{}", end - 1))
                    .send()
                    .await
                    .map_err(|e| storage_err(e, ctx))?;
                let e_tag = out
                    .copy_part_result()
                    .and_then(|r| r.e_tag())
                    .map(str::to_owned);
                parts.push(
                    CompletedPart::builder()
                        .set_e_tag(e_tag)
                        .part_number(number)
                        .build(),
                );
                start = end;
            }
            self.client
                .complete_multipart_upload()
                .bucket(&self.bucket)
                .key(to)
                .upload_id(&upload_id)
                .multipart_upload(
                    CompletedMultipartUpload::builder()
                        .set_parts(Some(parts))
                        .build(),
                )
                .send()
                .await
                .map_err(|e| storage_err(e, ctx))?;
            Ok(())
        }
        .await;
        if copied.is_err() {
            let _ = self
                .client
                .abort_multipart_upload()
                .bucket(&self.bucket)
                .key(to)
                .upload_id(&upload_id)
                .send()
                .await;
        }
        copied
    }

    pub(super) async fn delete(&self, key: &str, ctx: &str) -> Result<(), StorageError> {
        self.client
            .delete_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
            .map_err(|e| storage_err(e, ctx))?;
        Ok(())
    }

    /// Every object below `prefix`: (key, size, last modified).
    pub(super) async fn list(
        &self,
        prefix: &str,
    ) -> Result<Vec<(String, u64, SystemTime)>, StorageError> {
        let mut pages = self
            .client
            .list_objects_v2()
            .bucket(&self.bucket)
            .prefix(prefix)
            .into_paginator()
            .send();
        let mut found = Vec::new();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| storage_err(e, "listing the bucket"))?;
            for object in page.contents() {
                let Some(key) = object.key() else {
                    continue;
                };
                let size = object
                    .size()
                    .and_then(|n| u64::try_from(n).ok())
                    .unwrap_or(0);
                found.push((key.to_owned(), size, system_time(object.last_modified())));
            }
        }
        Ok(found)
    }

    /// Incomplete multipart uploads below `prefix`: (key, upload id, initiated).
    pub(super) async fn multipart_uploads(
        &self,
        prefix: &str,
    ) -> Result<Vec<(String, String, SystemTime)>, StorageError> {
        let mut found = Vec::new();
        let (mut key_marker, mut id_marker) = (None::<String>, None::<String>);
        loop {
            let page = self
                .client
                .list_multipart_uploads()
                .bucket(&self.bucket)
                .prefix(prefix)
                .set_key_marker(key_marker.take())
                .set_upload_id_marker(id_marker.take())
                .send()
                .await
                .map_err(|e| storage_err(e, "listing multipart uploads"))?;
            for upload in page.uploads() {
                if let (Some(key), Some(id)) = (upload.key(), upload.upload_id()) {
                    found.push((
                        key.to_owned(),
                        id.to_owned(),
                        system_time(upload.initiated()),
                    ));
                }
            }
            if page.is_truncated() != Some(true) {
                return Ok(found);
            }
            key_marker = page.next_key_marker().map(str::to_owned);
            id_marker = page.next_upload_id_marker().map(str::to_owned);
            if key_marker.is_none() && id_marker.is_none() {
                return Ok(found);
            }
        }
    }

    /// When a multipart upload last received a part (its start when it has none).
    pub(super) async fn last_activity(
        &self,
        key: &str,
        upload_id: &str,
        initiated: SystemTime,
    ) -> Result<SystemTime, StorageError> {
        let mut pages = self
            .client
            .list_parts()
            .bucket(&self.bucket)
            .key(key)
            .upload_id(upload_id)
            .into_paginator()
            .send();
        let mut latest = initiated;
        while let Some(page) = pages.next().await {
            let page = match page {
                Ok(page) => page,
                // A 200 the SDK cannot read: a server whose ListParts document is not quite
                // S3's (moto names its root element `ListPartsResponse`). Its part timestamps
                // are still there; without any, the start of the upload is all there is.
                Err(e) if e.raw_response().map(|r| r.status().as_u16()) == Some(200) => {
                    let body = e.raw_response().and_then(|r| r.body().bytes());
                    let parts = body.map(part_times).unwrap_or_default();
                    return Ok(parts.into_iter().fold(initiated, SystemTime::max));
                }
                // Completed or aborted since it was listed: not idle, just gone.
                Err(e) => match storage_err(e, "listing parts") {
                    StorageError::NotFound(_) => return Ok(SystemTime::now()),
                    other => return Err(other),
                },
            };
            for part in page.parts() {
                latest = latest.max(system_time(part.last_modified()));
            }
        }
        Ok(latest)
    }

    /// Aborts every incomplete multipart upload of `key`.
    pub(super) async fn abort_uploads_of(&self, key: &str, ctx: &str) -> Result<(), StorageError> {
        for (upload_key, upload_id, _) in self.multipart_uploads(key).await? {
            if upload_key != key {
                continue;
            }
            let aborted = self
                .client
                .abort_multipart_upload()
                .bucket(&self.bucket)
                .key(key)
                .upload_id(upload_id)
                .send()
                .await;
            match aborted.map_err(|e| storage_err(e, ctx)) {
                Ok(_) | Err(StorageError::NotFound(_)) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}

/// An S3 timestamp as a `SystemTime` (the epoch when absent or out of range, which makes an
/// undated object look old: it is reported, never hidden).
fn system_time(t: Option<&aws_sdk_s3::primitives::DateTime>) -> SystemTime {
    t.and_then(|t| SystemTime::try_from(*t).ok())
        .unwrap_or(std::time::UNIX_EPOCH)
}

/// The `<LastModified>` times in a raw `ListParts` document.
fn part_times(xml: &[u8]) -> Vec<SystemTime> {
    let text = String::from_utf8_lossy(xml);
    text.split("<LastModified>")
        .skip(1)
        .filter_map(|rest| rest.split_once("</LastModified>"))
        .filter_map(|(time, _)| {
            aws_sdk_s3::primitives::DateTime::from_str(
                time.trim(),
                aws_sdk_s3::primitives::DateTimeFormat::DateTime,
            )
            .ok()
        })
        .map(|t| system_time(Some(&t)))
        .collect()
}
#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn part_times_are_read_from_a_raw_list_parts_document() {
        let xml = b"<ListPartsResponse><Part><PartNumber>1</PartNumber>\
            <LastModified>2026-12-02T01:04:57.000Z</LastModified></Part><Part>\
            <LastModified>2026-12-02T01:04:59.000Z</LastModified></Part>\
            <Part><LastModified>garbage</LastModified></Part></ListPartsResponse>";
        let times = part_times(xml);
        assert_eq!(times.len(), 2);
        assert_eq!(
            times[1].duration_since(times[0]).unwrap(),
            Duration::from_secs(2)
        );
        assert!(part_times(b"<Error/>").is_empty());
    }
}
