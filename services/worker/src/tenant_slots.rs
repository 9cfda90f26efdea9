//! Per-tenant caps on work in progress (`FE_WORKER_TENANT_CONCURRENCY`): one tenant never
//! takes every slot of a worker process. Taking a slot never waits — a tenant at its cap gets
//! its delivery released for later, so its backlog cannot hold slots other tenants need.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use events::TenantId;

/// Slots in use per tenant; a tenant with none in use has no entry (the map stays small).
#[derive(Clone, Debug)]
pub struct TenantSlots {
    cap: usize,
    in_use: Arc<Mutex<HashMap<TenantId, usize>>>,
}

/// One slot of one tenant, given back when dropped.
#[derive(Debug)]
pub struct TenantSlot {
    tenant: TenantId,
    in_use: Arc<Mutex<HashMap<TenantId, usize>>>,
}

impl TenantSlots {
    /// At most `cap` slots per tenant (at least 1).
    pub fn new(cap: usize) -> Self {
        TenantSlots {
            cap: cap.max(1),
            in_use: Arc::default(),
        }
    }

    /// A slot for `tenant`, or `None` while the tenant is at its cap.
    pub fn try_take(&self, tenant: &TenantId) -> Option<TenantSlot> {
        // The map is only counted up and down under the lock; a panic elsewhere cannot leave
        // it half-updated, so a poisoned lock is still consistent.
        let mut in_use = self.in_use.lock().unwrap_or_else(PoisonError::into_inner);
        let count = in_use.entry(tenant.clone()).or_insert(0);
        if *count >= self.cap {
            return None;
        }
        *count += 1;
        Some(TenantSlot {
            tenant: tenant.clone(),
            in_use: self.in_use.clone(),
        })
    }
}

impl Drop for TenantSlot {
    fn drop(&mut self) {
        let mut in_use = self.in_use.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(count) = in_use.get_mut(&self.tenant) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                in_use.remove(&self.tenant);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tenant_at_its_cap_leaves_room_for_others() {
        let slots = TenantSlots::new(2);
        let a = TenantId::parse("a").unwrap();
        let b = TenantId::parse("b").unwrap();
        let first = slots.try_take(&a).unwrap();
        let _second = slots.try_take(&a).unwrap();
        assert!(slots.try_take(&a).is_none());
        assert!(slots.try_take(&b).is_some());
        drop(first);
        assert!(slots.try_take(&a).is_some());
    }

    #[test]
    fn released_tenants_leave_no_entry() {
        let slots = TenantSlots::new(1);
        let a = TenantId::parse("a").unwrap();
        drop(slots.try_take(&a));
        assert!(slots.in_use.lock().unwrap().is_empty());
    }
}
