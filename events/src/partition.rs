//! Which projection partition a tenant's commits belong to.
//!
//! The log is split into a fixed number of partitions by tenant; every commit of a tenant is
//! projected by its partition, in log order, and everything that waits for the projection
//! waits for that partition only. The function is FNV-1a (32 bit) of the tenant id modulo the
//! partition count: the same hash nats-server's `{{partition(N,k)}}` subject mapping uses,
//! so moving the split into the stream (a subject transform) later keeps every tenant where
//! it is. Pure arithmetic: no IO.

use crate::TenantId;

/// FNV-1a 32-bit offset basis and prime.
const FNV_OFFSET: u32 = 0x811c_9dc5;
const FNV_PRIME: u32 = 0x0100_0193;

/// The partition (`0..partitions`) of `tenant`; `partitions` of 0 is treated as 1.
pub fn partition_of(tenant: &TenantId, partitions: u32) -> u32 {
    partition_of_str(tenant.as_str(), partitions)
}

/// [`partition_of`] for a tenant id already known to be valid (e.g. read from a subject).
pub fn partition_of_str(tenant: &str, partitions: u32) -> u32 {
    let hash = tenant.bytes().fold(FNV_OFFSET, |h, b| {
        (h ^ u32::from(b)).wrapping_mul(FNV_PRIME)
    });
    hash % partitions.max(1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn known_fnv1a_values() {
        // Reference values of FNV-1a 32 ("" and "a" from the FNV specification).
        assert_eq!(partition_of_str("", u32::MAX), 0x811c_9dc5);
        assert_eq!(partition_of_str("a", u32::MAX), 0xe40c_292c);
        assert_eq!(partition_of_str("acme", 1), 0);
    }

    proptest! {
        #[test]
        fn stable_and_in_range(tenant in "[a-z0-9][a-z0-9-]{0,62}", n in 1u32..1024) {
            let t = TenantId::parse(&tenant).unwrap();
            let p = partition_of(&t, n);
            prop_assert!(p < n);
            prop_assert_eq!(p, partition_of(&t, n));
            prop_assert_eq!(partition_of(&t, 1), 0);
        }
    }

    #[test]
    fn tenants_spread_over_partitions() {
        let mut counts = [0u32; 8];
        for i in 0..800 {
            let t = TenantId::parse(&format!("tenant-{i}")).unwrap();
            counts[partition_of(&t, 8) as usize] += 1;
        }
        assert!(counts.iter().all(|c| *c > 50), "{counts:?}");
    }
}
