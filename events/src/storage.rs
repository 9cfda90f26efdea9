//! The tenant's storage ledger (one aggregate per tenant, type `storage`): what an operator
//! decided about the tenant's storage, and what garbage collection removed. Both are audited
//! facts in the log like every file event (`quota.set`, `storage.collected`); the audit trail
//! shows them under the tenant, subscribers are not notified of them.
//!
//! Pure: no IO, no clock reads.

use cqrs_es::event_sink::EventSink;
use cqrs_es::{Aggregate, DomainEvent};
use serde::{Deserialize, Serialize};

use crate::quota::Limits;

/// The id of the one storage ledger of a tenant.
pub const LEDGER_ID: &str = "storage";

/// One blob garbage collection removed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CollectedBlob {
    pub sha256: String,
    pub size: u64,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StorageCommand {
    /// The operator set the tenant's quota (`file-engine quota set`).
    SetQuota { limits: Limits },
    /// Garbage collection is about to remove these blobs (recorded first: a crash after the
    /// record only means the next sweep removes them, and nothing is removed unrecorded).
    RecordCollection { blobs: Vec<CollectedBlob> },
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum StorageEvent {
    QuotaSet {
        bytes: u64,
        files: u64,
    },
    BlobsCollected {
        blobs: Vec<CollectedBlob>,
        bytes: u64,
    },
}

impl StorageEvent {
    pub fn name(&self) -> &'static str {
        match self {
            Self::QuotaSet { .. } => "quota.set",
            Self::BlobsCollected { .. } => "storage.collected",
        }
    }
}

impl DomainEvent for StorageEvent {
    fn event_type(&self) -> String {
        self.name().to_owned()
    }

    fn event_version(&self) -> String {
        "1".to_owned()
    }
}

/// The ledger refuses nothing an operator or the collector states; cqrs-es still needs an
/// error type.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("the storage ledger refused the command")]
pub struct StorageError;

/// State of a tenant's ledger.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TenantStorage {
    /// The operator's quota, if one was set (else the configured default applies).
    pub quota: Option<Limits>,
    /// Bytes reclaimed by garbage collection so far.
    pub reclaimed_bytes: u64,
}

impl TenantStorage {
    pub fn decide(&self, command: StorageCommand) -> Vec<StorageEvent> {
        match command {
            StorageCommand::SetQuota { limits } if self.quota == Some(limits) => vec![],
            StorageCommand::SetQuota { limits } => vec![StorageEvent::QuotaSet {
                bytes: limits.bytes,
                files: limits.files,
            }],
            StorageCommand::RecordCollection { blobs } if blobs.is_empty() => vec![],
            StorageCommand::RecordCollection { blobs } => {
                let bytes = blobs.iter().map(|b| b.size).sum();
                vec![StorageEvent::BlobsCollected { blobs, bytes }]
            }
        }
    }
}

impl Aggregate for TenantStorage {
    const TYPE: &'static str = "storage";
    type Command = StorageCommand;
    type Event = StorageEvent;
    type Error = StorageError;
    type Services = ();

    async fn handle(
        &mut self,
        command: StorageCommand,
        _services: &(),
        sink: &EventSink<Self>,
    ) -> Result<(), StorageError> {
        for event in self.decide(command) {
            sink.write(event, self).await;
        }
        Ok(())
    }

    fn apply(&mut self, event: StorageEvent) {
        match event {
            StorageEvent::QuotaSet { bytes, files } => self.quota = Some(Limits { bytes, files }),
            StorageEvent::BlobsCollected { bytes, .. } => {
                self.reclaimed_bytes = self.reclaimed_bytes.saturating_add(bytes)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn setting_a_quota_records_it_once() {
        let limits = Limits {
            bytes: 10,
            files: 2,
        };
        let mut ledger = TenantStorage::default();
        let events = ledger.decide(StorageCommand::SetQuota { limits });
        assert_eq!(
            events,
            [StorageEvent::QuotaSet {
                bytes: 10,
                files: 2
            }]
        );
        for e in events {
            ledger.apply(e);
        }
        assert_eq!(ledger.quota, Some(limits));
        assert!(ledger
            .decide(StorageCommand::SetQuota { limits })
            .is_empty());
    }

    #[test]
    fn a_collection_records_its_blobs_and_bytes() {
        let blobs = vec![
            CollectedBlob {
                sha256: "a".repeat(64),
                size: 5,
            },
            CollectedBlob {
                sha256: "b".repeat(64),
                size: 7,
            },
        ];
        let mut ledger = TenantStorage::default();
        let events = ledger.decide(StorageCommand::RecordCollection {
            blobs: blobs.clone(),
        });
        assert_eq!(events, [StorageEvent::BlobsCollected { blobs, bytes: 12 }]);
        for e in events {
            ledger.apply(e);
        }
        assert_eq!(ledger.reclaimed_bytes, 12);
        assert!(ledger
            .decide(StorageCommand::RecordCollection { blobs: vec![] })
            .is_empty());
    }
}
