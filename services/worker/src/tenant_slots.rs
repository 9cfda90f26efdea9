//! Per-tenant caps on work in progress (`FE_WORKER_TENANT_CONCURRENCY`): one tenant never
//! takes every slot of a worker process. Taking a slot never waits — a tenant at its cap gets
//! its delivery released for later, so its backlog cannot hold slots other tenants need.
//!
//! It also counts each tenant's deliveries that are out released (in this process), so that the
//! release delay can grow with the tenant's backlog: JetStream hands out due redeliveries before
//! new messages, and a large backlog coming back at a fixed pace would crowd out every other
//! tenant's new work. Spacing the releases by the backlog bounds how often one tenant's waiting
//! deliveries come back in total, whatever its size.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use events::TenantId;

/// Slots in use per tenant; a tenant with none in use has no entry (the map stays small).
#[derive(Clone, Debug)]
pub struct TenantSlots {
    cap: usize,
    in_use: Arc<Mutex<HashMap<TenantId, usize>>>,
    released: Arc<Mutex<HashMap<TenantId, usize>>>,
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
            released: Arc::default(),
        }
    }

    /// Notes one more delivery of `tenant` released for later; returns how many are out.
    pub fn note_released(&self, tenant: &TenantId) -> usize {
        let mut released = self.released.lock().unwrap_or_else(PoisonError::into_inner);
        let count = released.entry(tenant.clone()).or_insert(0);
        *count += 1;
        *count
    }

    /// Notes a delivery of `tenant` coming back (any redelivery counts: the figure is a pace
    /// estimate, never a limit).
    pub fn note_returned(&self, tenant: &TenantId) {
        let mut released = self.released.lock().unwrap_or_else(PoisonError::into_inner);
        decrement(&mut released, tenant);
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
        decrement(&mut in_use, &self.tenant);
    }
}

/// Counts one down; a tenant at zero leaves the map.
fn decrement(counts: &mut HashMap<TenantId, usize>, tenant: &TenantId) {
    if let Some(count) = counts.get_mut(tenant) {
        *count = count.saturating_sub(1);
        if *count == 0 {
            counts.remove(tenant);
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
    fn released_deliveries_are_counted_per_tenant_until_they_return() {
        let slots = TenantSlots::new(1);
        let a = TenantId::parse("a").unwrap();
        let b = TenantId::parse("b").unwrap();
        assert_eq!(slots.note_released(&a), 1);
        assert_eq!(slots.note_released(&a), 2);
        assert_eq!(slots.note_released(&b), 1);
        slots.note_returned(&a);
        slots.note_returned(&a);
        slots.note_returned(&a); // more returns than releases: never below zero
        assert_eq!(slots.note_released(&a), 1);
    }

    #[test]
    fn released_tenants_leave_no_entry() {
        let slots = TenantSlots::new(1);
        let a = TenantId::parse("a").unwrap();
        drop(slots.try_take(&a));
        assert!(slots.in_use.lock().unwrap().is_empty());
    }
}
