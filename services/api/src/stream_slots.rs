//! Slots for open event streams (`GET /v1/events`): each open stream holds one slot of the
//! process (`FE_SSE_MAX_CONNECTIONS`), one of its tenant (`FE_SSE_MAX_PER_TENANT`) and one of
//! its principal (`FE_SSE_MAX_PER_PRINCIPAL`), so idle or abandoned streams of one tenant or
//! one client can exhaust neither the process nor what other tenants may open. The process cap
//! answers 503 (this server is full: try another replica); the tenant and principal caps
//! answer 429 (the caller holds its share: close a stream first).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use events::{Principal, TenantId};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Which cap refused a new stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Full {
    Process,
    Tenant,
    Principal,
}

/// The caps and the streams open under them; cheap to clone.
#[derive(Clone, Debug)]
pub struct StreamSlots {
    process: Arc<Semaphore>,
    per_tenant: usize,
    per_principal: usize,
    open: Arc<Mutex<Counts>>,
}

#[derive(Debug, Default)]
struct Counts {
    tenants: HashMap<TenantId, usize>,
    principals: HashMap<(TenantId, String), usize>,
}

/// One open stream's slots, given back when dropped (when the stream ends).
#[derive(Debug)]
pub struct StreamSlot {
    _process: OwnedSemaphorePermit,
    tenant: TenantId,
    subject: String,
    open: Arc<Mutex<Counts>>,
}

impl StreamSlots {
    pub fn new(process: usize, per_tenant: usize, per_principal: usize) -> Self {
        StreamSlots {
            process: Arc::new(Semaphore::new(process.max(1))),
            per_tenant: per_tenant.max(1),
            per_principal: per_principal.max(1),
            open: Arc::default(),
        }
    }

    /// Slots for one more stream of `caller`, or the cap that refuses it.
    pub fn try_open(&self, caller: &Principal) -> Result<StreamSlot, Full> {
        // Counted only under the lock and never left half-updated: a poisoned lock is sound.
        let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        let principal = (caller.tenant.clone(), caller.subject.clone());
        if open.tenants.get(&caller.tenant).copied().unwrap_or(0) >= self.per_tenant {
            return Err(Full::Tenant);
        }
        if open.principals.get(&principal).copied().unwrap_or(0) >= self.per_principal {
            return Err(Full::Principal);
        }
        let process = self
            .process
            .clone()
            .try_acquire_owned()
            .map_err(|_| Full::Process)?;
        *open.tenants.entry(caller.tenant.clone()).or_insert(0) += 1;
        *open.principals.entry(principal).or_insert(0) += 1;
        Ok(StreamSlot {
            _process: process,
            tenant: caller.tenant.clone(),
            subject: caller.subject.clone(),
            open: self.open.clone(),
        })
    }
}

impl Drop for StreamSlot {
    fn drop(&mut self) {
        let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        let Counts {
            tenants,
            principals,
        } = &mut *open;
        release(tenants, &self.tenant);
        release(
            principals,
            &(self.tenant.clone(), std::mem::take(&mut self.subject)),
        );
    }
}

/// Counts one down; an entry at zero is removed so the maps hold only open streams.
fn release<K: std::hash::Hash + Eq>(counts: &mut HashMap<K, usize>, key: &K) {
    if let Some(n) = counts.get_mut(key) {
        *n = n.saturating_sub(1);
        if *n == 0 {
            counts.remove(key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn who(tenant: &str, sub: &str) -> Principal {
        Principal {
            subject: sub.into(),
            tenant: TenantId::parse(tenant).unwrap(),
            roles: vec![],
        }
    }

    #[test]
    fn each_cap_refuses_beyond_its_share_and_frees_on_close() {
        let slots = StreamSlots::new(4, 3, 2);
        let a1 = slots.try_open(&who("a", "u1")).unwrap();
        let _a1b = slots.try_open(&who("a", "u1")).unwrap();
        assert_eq!(
            slots.try_open(&who("a", "u1")).unwrap_err(),
            Full::Principal
        );
        let _a2 = slots.try_open(&who("a", "u2")).unwrap();
        assert_eq!(slots.try_open(&who("a", "u3")).unwrap_err(), Full::Tenant);
        let _b = slots.try_open(&who("b", "u1")).unwrap();
        assert_eq!(slots.try_open(&who("c", "u1")).unwrap_err(), Full::Process);
        drop(a1);
        let _again = slots.try_open(&who("a", "u1")).unwrap();
    }

    #[test]
    fn closed_streams_leave_no_counts() {
        let slots = StreamSlots::new(4, 3, 2);
        drop(slots.try_open(&who("a", "u1")).unwrap());
        let open = slots.open.lock().unwrap();
        assert!(open.tenants.is_empty() && open.principals.is_empty());
    }
}
