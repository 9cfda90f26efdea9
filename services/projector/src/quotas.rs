//! Per-tenant quotas set by the operator: the `quota.set` events of each tenant's storage
//! ledger (`events::storage`) become the `tenant_quotas` row that API and worker read
//! (through `platform::catalogue::standing`). `storage.collected` events need no read model:
//! they are audited like every event.

use events::storage::StorageEvent;
use platform::event_log::LoggedCommit;
use sqlx::{Postgres, Transaction};

use crate::ProjectorError;

pub async fn apply_commit(
    tx: &mut Transaction<'_, Postgres>,
    commit: &LoggedCommit,
) -> Result<(), ProjectorError> {
    for stored in &commit.events {
        let payload = events::upcast::upcast(
            &stored.event_type,
            &stored.event_version,
            stored.payload.clone(),
        )
        .map_err(|e| ProjectorError::Corrupt {
            seq: commit.stream_seq,
            reason: e.to_string(),
        })?;
        let event: StorageEvent =
            serde_json::from_value(payload).map_err(|e| ProjectorError::Corrupt {
                seq: commit.stream_seq,
                reason: e.to_string(),
            })?;
        if let StorageEvent::QuotaSet { bytes, files } = event {
            let clamp = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
            sqlx::query(
                "INSERT INTO tenant_quotas (tenant, max_bytes, max_files, updated_seq)
                 VALUES ($1, $2, $3, $4)
                 ON CONFLICT (tenant) DO UPDATE SET max_bytes = EXCLUDED.max_bytes,
                    max_files = EXCLUDED.max_files, updated_seq = EXCLUDED.updated_seq",
            )
            .bind(commit.tenant.as_str())
            .bind(clamp(bytes))
            .bind(clamp(files))
            .bind(commit.stream_seq as i64)
            .execute(&mut **tx)
            .await?;
        }
    }
    Ok(())
}
