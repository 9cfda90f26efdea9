//! Idempotency keys (API.md "Precise semantics"): a key binds the whole request (method,
//! path and body; for uploads the content hash) for 24 hours.
//!
//! A key maps to a task id without a lookup table, so "same key = same task" stays race-free
//! (two concurrent requests target the same aggregate and the log's optimistic concurrency
//! lets one create it). To let a key expire, the id also names the 24-hour window (of the Unix
//! epoch) the request falls in: a request in window `w` first looks for a task of its key in
//! window `w - 1` that is still within 24 hours, and otherwise uses window `w`, where a task
//! found is necessarily younger than 24 hours. So a key is honoured for exactly 24 hours and
//! may be used afresh afterwards. No IO here.

use chrono::{DateTime, Duration, Utc};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use super::aggregate::{Task, TaskStatus};
use crate::{IdempotencyKey, TenantId};

/// How long a key binds its request.
pub const IDEMPOTENCY_KEY_TTL: Duration = Duration::hours(24);

/// The fixed namespace of idempotency-derived task ids (a random v4 uuid, chosen once).
const IDEMPOTENCY_NAMESPACE: Uuid = Uuid::from_u128(0x6f0c_2b51_8f3d_4c2e_9a71_0d5e_44b3_a9c1);

/// The 24-hour window of the epoch `at` falls in.
pub fn key_window(at: DateTime<Utc>) -> i64 {
    at.timestamp().div_euclid(IDEMPOTENCY_KEY_TTL.num_seconds())
}

/// The task id a key maps to in `window`: a name-based UUID of (tenant, principal, key,
/// window).
pub fn task_id_for_idempotency_key(
    tenant: &TenantId,
    subject: &str,
    key: &IdempotencyKey,
    window: i64,
) -> Uuid {
    let name = format!(
        "{}\u{0}{}\u{0}{}\u{0}{window}",
        tenant.as_str(),
        subject,
        key.as_str()
    );
    Uuid::new_v5(&IDEMPOTENCY_NAMESPACE, name.as_bytes())
}

/// What a key binds: SHA-256 (hex) of the method, the path (the command route, or the file
/// path of an upload) and the body's digest (the canonical JSON hash, or the content hash).
pub fn request_fingerprint(method: &str, path: &str, body_digest: &str) -> String {
    let mut hasher = Sha256::new();
    for part in [method, path, body_digest] {
        hasher.update(part.as_bytes());
        hasher.update([0u8]);
    }
    hex::encode(hasher.finalize())
}

impl Task {
    /// Whether this task still holds its idempotency key at `at` (it exists and was requested
    /// less than [`IDEMPOTENCY_KEY_TTL`] before).
    pub fn holds_key_at(&self, at: DateTime<Utc>) -> bool {
        self.status != TaskStatus::Unknown
            && self
                .requested_at
                .is_some_and(|requested| at - requested < IDEMPOTENCY_KEY_TTL)
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    #[test]
    fn idempotency_ids_are_scoped_to_tenant_principal_and_window() {
        let t1 = TenantId::parse("t1").unwrap();
        let t2 = TenantId::parse("t2").unwrap();
        let k = IdempotencyKey::parse("key-1").unwrap();
        let id = task_id_for_idempotency_key(&t1, "alice", &k, 7);
        assert_eq!(id, task_id_for_idempotency_key(&t1, "alice", &k, 7));
        assert_ne!(id, task_id_for_idempotency_key(&t2, "alice", &k, 7));
        assert_ne!(id, task_id_for_idempotency_key(&t1, "bob", &k, 7));
        assert_ne!(id, task_id_for_idempotency_key(&t1, "alice", &k, 8));
    }

    #[test]
    fn windows_are_whole_days_of_the_epoch() {
        let day = |d, h| Utc.with_ymd_and_hms(2026, 1, d, h, 0, 0).unwrap();
        assert_eq!(key_window(day(2, 0)), key_window(day(2, 23)));
        assert_eq!(key_window(day(2, 0)) + 1, key_window(day(3, 0)));
    }

    #[test]
    fn fingerprints_bind_method_path_and_body() {
        let f = request_fingerprint("PUT", "/a.txt", "abc");
        assert_ne!(f, request_fingerprint("PUT", "/b.txt", "abc"));
        assert_ne!(f, request_fingerprint("POST", "/a.txt", "abc"));
        assert_ne!(f, request_fingerprint("PUT", "/a.txt", "abd"));
        // Parts are delimited: moving a character between them changes the fingerprint.
        assert_ne!(
            request_fingerprint("PUT", "/a", "bc"),
            request_fingerprint("PUT", "/ab", "c")
        );
    }
}

#[cfg(test)]
mod expiry_tests {
    use chrono::TimeZone;
    use cqrs_es::Aggregate;

    use super::*;
    use crate::task::{FileCommand, TaskCommand, TaskError, TaskSpec};

    fn request(at: DateTime<Utc>, fingerprint: &str) -> TaskCommand {
        TaskCommand::Request {
            task_id: Uuid::nil(),
            tenant: TenantId::parse("t").unwrap(),
            principal: "alice".into(),
            roles: vec![],
            spec: TaskSpec::Command(FileCommand::Mkdir {
                path: crate::FilePath::parse("/a").unwrap(),
                parents: false,
            }),
            idempotency_key: Some("k".into()),
            body_hash: Some(fingerprint.into()),
            requested_at: at,
        }
    }

    #[test]
    fn a_key_binds_its_request_for_exactly_24_hours() {
        let t0 = Utc.with_ymd_and_hms(2026, 3, 1, 12, 0, 0).unwrap();
        let mut task = Task::default();
        for event in task.decide(request(t0, "f")).unwrap() {
            task.apply(event);
        }
        let almost = t0 + IDEMPOTENCY_KEY_TTL - Duration::seconds(1);
        assert!(task.holds_key_at(almost));
        assert_eq!(task.decide(request(almost, "f")), Ok(vec![]));
        assert_eq!(
            task.decide(request(almost, "other")),
            Err(TaskError::IdempotencyKeyReused)
        );
        let expired = t0 + IDEMPOTENCY_KEY_TTL;
        assert!(!task.holds_key_at(expired));
        assert_eq!(
            task.decide(request(expired, "f")),
            Err(TaskError::IdempotencyKeyExpired)
        );
    }
}
