//! Per-tenant caps on work in progress (`FE_WORKER_TENANT_CONCURRENCY`): one tenant never
//! takes every slot of a worker process.
//!
//! A delivery of a tenant at its cap may wait a short while in a bounded line for the next of
//! its tenant's slots ([`TenantSlots::take_or_wait`]): at most `line` deliveries wait in all,
//! and at most half of them (at least one) of one tenant, so a busy tenant keeps its own slots
//! busy (work set aside comes back only after a delay) while its backlog still cannot hold the
//! slots other tenants need. Past the line or the wait, the work is set aside for later
//! (`crate::deferred`).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use events::TenantId;
use tokio::sync::Notify;

/// Slots in use per tenant; a tenant with none in use has no entry (the map stays small).
#[derive(Clone, Debug)]
pub struct TenantSlots {
    cap: usize,
    /// Most deliveries waiting in line, all tenants together.
    line: usize,
    in_use: Arc<Mutex<HashMap<TenantId, usize>>>,
    waiting: Arc<Mutex<Waiting>>,
    /// Woken whenever a slot is given back.
    freed: Arc<Notify>,
}

/// Deliveries waiting in line, per tenant and in all.
#[derive(Debug, Default)]
struct Waiting {
    per_tenant: HashMap<TenantId, usize>,
    total: usize,
}

/// One slot of one tenant, given back when dropped.
#[derive(Debug)]
pub struct TenantSlot {
    tenant: TenantId,
    in_use: Arc<Mutex<HashMap<TenantId, usize>>>,
    freed: Arc<Notify>,
}

/// A place in the waiting line, given back when dropped (slot taken, wait over, or the
/// delivery dropped at shutdown).
struct InLine {
    tenant: TenantId,
    waiting: Arc<Mutex<Waiting>>,
}

impl TenantSlots {
    /// At most `cap` slots per tenant (at least 1), `line` deliveries waiting in all and half
    /// of them per tenant.
    pub fn new(cap: usize, line: usize) -> Self {
        TenantSlots {
            cap: cap.max(1),
            line,
            in_use: Arc::default(),
            waiting: Arc::default(),
            freed: Arc::default(),
        }
    }

    /// A slot for `tenant`: at once when one is free, else after waiting in line for at most
    /// `wait`; `None` when the line is full (for the tenant or in all) or the wait ran out.
    pub async fn take_or_wait(&self, tenant: &TenantId, wait: Duration) -> Option<TenantSlot> {
        if let Some(slot) = self.try_take(tenant) {
            return Some(slot);
        }
        let _in_line = self.join_line(tenant)?;
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            // Registered before the check, so a slot given back in between still wakes us.
            let freed = self.freed.notified();
            tokio::pin!(freed);
            freed.as_mut().enable();
            if let Some(slot) = self.try_take(tenant) {
                return Some(slot);
            }
            if tokio::time::timeout_at(deadline, freed).await.is_err() {
                return None;
            }
        }
    }

    fn join_line(&self, tenant: &TenantId) -> Option<InLine> {
        let mut waiting = self.waiting.lock().unwrap_or_else(PoisonError::into_inner);
        let mine = waiting.per_tenant.get(tenant).copied().unwrap_or(0);
        if waiting.total >= self.line || mine >= (self.line / 2).max(1) {
            return None;
        }
        waiting.total += 1;
        waiting.per_tenant.insert(tenant.clone(), mine + 1);
        Some(InLine {
            tenant: tenant.clone(),
            waiting: self.waiting.clone(),
        })
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
            freed: self.freed.clone(),
        })
    }
}

impl Drop for TenantSlot {
    fn drop(&mut self) {
        let mut in_use = self.in_use.lock().unwrap_or_else(PoisonError::into_inner);
        decrement(&mut in_use, &self.tenant);
        drop(in_use);
        self.freed.notify_waiters();
    }
}

impl Drop for InLine {
    fn drop(&mut self) {
        let mut waiting = self.waiting.lock().unwrap_or_else(PoisonError::into_inner);
        waiting.total = waiting.total.saturating_sub(1);
        decrement(&mut waiting.per_tenant, &self.tenant);
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
        let slots = TenantSlots::new(2, 4);
        let a = TenantId::parse("a").unwrap();
        let b = TenantId::parse("b").unwrap();
        let first = slots.try_take(&a).unwrap();
        let _second = slots.try_take(&a).unwrap();
        assert!(slots.try_take(&a).is_none());
        assert!(slots.try_take(&b).is_some());
        drop(first);
        assert!(slots.try_take(&a).is_some());
    }

    #[tokio::test]
    async fn a_delivery_in_line_gets_the_next_slot_its_tenant_gives_back() {
        let slots = TenantSlots::new(1, 4);
        let a = TenantId::parse("a").unwrap();
        let held = slots.try_take(&a).unwrap();
        let waiter = {
            let (slots, a) = (slots.clone(), a.clone());
            tokio::spawn(async move { slots.take_or_wait(&a, Duration::from_secs(30)).await })
        };
        // The waiter is in line once the tenant's line shows it.
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while slots.waiting.lock().unwrap().total == 0 {
            assert!(
                std::time::Instant::now() < deadline,
                "the waiter never joined the line"
            );
            tokio::task::yield_now().await;
        }
        drop(held);
        let slot = waiter.await.unwrap();
        assert!(
            slot.is_some(),
            "the freed slot went to the delivery in line"
        );
        assert_eq!(slots.waiting.lock().unwrap().total, 0, "the line is left");
    }

    #[tokio::test(start_paused = true)]
    async fn the_line_is_bounded_per_tenant_and_in_all_and_the_wait_runs_out() {
        let slots = TenantSlots::new(1, 2);
        let [a, b, c] = ["a", "b", "c"].map(|t| TenantId::parse(t).unwrap());
        let _held = [&a, &b, &c].map(|t| slots.try_take(t).unwrap());
        let _a_in_line = slots.join_line(&a).unwrap();
        assert!(
            slots.join_line(&a).is_none(),
            "one tenant may not wait beyond its cap"
        );
        let _b_in_line = slots.join_line(&b).unwrap();
        assert!(
            slots.join_line(&c).is_none(),
            "the line is full for every tenant"
        );
        let waited = slots.take_or_wait(&c, Duration::from_secs(1)).await;
        assert!(waited.is_none(), "a full line sets the work aside at once");
        drop(_b_in_line);
        let waited = slots.take_or_wait(&c, Duration::from_secs(1)).await;
        assert!(waited.is_none(), "no slot freed within the wait");
        assert_eq!(slots.waiting.lock().unwrap().per_tenant.get(&c), None);
    }

    #[test]
    fn released_tenants_leave_no_entry() {
        let slots = TenantSlots::new(1, 4);
        let a = TenantId::parse("a").unwrap();
        drop(slots.try_take(&a));
        assert!(slots.in_use.lock().unwrap().is_empty());
    }
}
