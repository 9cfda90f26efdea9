//! Per-tenant quotas on logical usage: pure decisions, no IO.
//!
//! Usage is logical: every file entry counts what it holds, so a copy counts in full even
//! though it shares its blob with the original (what a tenant *can read* is what it uses; the
//! platform's deduplication is not the tenant's credit). An operation is described by what it
//! adds and what it replaces; it is refused only when it *grows* a dimension beyond the limit,
//! so a tenant over its quota (after the operator lowered it) can still delete, move and
//! shrink.

use serde::{Deserialize, Serialize};

/// Bytes and files, as used or as limited.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    pub bytes: u64,
    pub files: u64,
}

/// The limits of one tenant.
pub type Limits = Usage;

/// What an operation would do to a tenant's usage.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Change {
    /// What the new entries hold.
    pub adds: Usage,
    /// What the entries they replace held (an overwrite).
    pub replaces: Usage,
}

/// Why an operation does not fit.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum QuotaExceeded {
    #[error(
        "the tenant's byte quota ({limit}) would be exceeded: {used} used, {wanted} more asked"
    )]
    Bytes { used: u64, wanted: u64, limit: u64 },
    #[error(
        "the tenant's file quota ({limit}) would be exceeded: {used} used, {wanted} more asked"
    )]
    Files { used: u64, wanted: u64, limit: u64 },
}

/// Whether `change` fits in `limits` given what is `used`.
pub fn admit(limits: Limits, used: Usage, change: Change) -> Result<(), QuotaExceeded> {
    let grows = |add: u64, replaced: u64| add.saturating_sub(replaced);
    let more_bytes = grows(change.adds.bytes, change.replaces.bytes);
    if more_bytes > 0 && used.bytes.saturating_add(more_bytes) > limits.bytes {
        return Err(QuotaExceeded::Bytes {
            used: used.bytes,
            wanted: more_bytes,
            limit: limits.bytes,
        });
    }
    let more_files = grows(change.adds.files, change.replaces.files);
    if more_files > 0 && used.files.saturating_add(more_files) > limits.files {
        return Err(QuotaExceeded::Files {
            used: used.files,
            wanted: more_files,
            limit: limits.files,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const fn u(bytes: u64, files: u64) -> Usage {
        Usage { bytes, files }
    }

    #[test]
    fn an_upload_that_fits_exactly_is_admitted_and_one_byte_more_is_not() {
        let limits = u(100, 10);
        let one_file = |bytes| Change {
            adds: u(bytes, 1),
            replaces: u(0, 0),
        };
        assert_eq!(admit(limits, u(60, 3), one_file(40)), Ok(()));
        assert_eq!(
            admit(limits, u(60, 3), one_file(41)),
            Err(QuotaExceeded::Bytes {
                used: 60,
                wanted: 41,
                limit: 100
            })
        );
        assert_eq!(
            admit(limits, u(0, 10), one_file(1)),
            Err(QuotaExceeded::Files {
                used: 10,
                wanted: 1,
                limit: 10
            })
        );
    }

    #[test]
    fn an_overwrite_counts_only_what_it_adds_beyond_the_replaced_file() {
        let limits = u(100, 1);
        let overwrite = Change {
            adds: u(90, 1),
            replaces: u(50, 1),
        };
        assert_eq!(admit(limits, u(50, 1), overwrite), Ok(()));
        let bigger = Change {
            adds: u(101, 1),
            replaces: u(50, 1),
        };
        assert!(admit(limits, u(50, 1), bigger).is_err());
    }

    #[test]
    fn a_tenant_over_its_quota_may_still_shrink() {
        let shrink = Change {
            adds: u(10, 1),
            replaces: u(500, 1),
        };
        assert_eq!(admit(u(100, 1), u(900, 5), shrink), Ok(()));
    }

    proptest! {
        #[test]
        fn what_is_admitted_never_ends_above_a_limit_it_grows_past(
            limit_b in 0u64..1_000_000, limit_f in 0u64..1000,
            used_b in 0u64..1_000_000, used_f in 0u64..1000,
            add_b in 0u64..1_000_000, add_f in 0u64..100,
            rep_b in 0u64..1_000_000, rep_f in 0u64..2,
        ) {
            let change = Change { adds: u(add_b, add_f), replaces: u(rep_b, rep_f) };
            let after_b = used_b + add_b.saturating_sub(rep_b);
            let after_f = used_f + add_f.saturating_sub(rep_f);
            match admit(u(limit_b, limit_f), u(used_b, used_f), change) {
                Ok(()) => {
                    prop_assert!(add_b <= rep_b || after_b <= limit_b);
                    prop_assert!(add_f <= rep_f || after_f <= limit_f);
                }
                Err(_) => prop_assert!(after_b > limit_b || after_f > limit_f),
            }
        }

        #[test]
        fn a_change_that_grows_nothing_is_always_admitted(
            limit_b in 0u64..1000, limit_f in 0u64..10,
            used_b in 0u64..u64::MAX / 2, used_f in 0u64..u64::MAX / 2,
            add_b in 0u64..1000, add_f in 0u64..10,
        ) {
            let change = Change { adds: u(add_b, add_f), replaces: u(add_b, add_f) };
            prop_assert_eq!(admit(u(limit_b, limit_f), u(used_b, used_f), change), Ok(()));
        }
    }
}
