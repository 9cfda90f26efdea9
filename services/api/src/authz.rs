//! Access decisions for the API: every handler asks [`authorize`] (or a [`Decider`] when it
//! decides many times, like a listing) before it records or looks up anything, so a path the
//! caller may not use answers 403 whether or not it exists.
//!
//! Recursive commands ([`Decider::check_tree`]) are decided over their whole subtree with at
//! most one catalogue query (`events::acl::authorize_tree`).
//!
//! The rules come from the ACL read model (`acl_rules`, read through `platform::access`), held in an in-process cache per
//! tenant: `(version, Arc<AclIndex>)`, where the version is the stream sequence of the
//! tenant's latest ACL event (`acl_versions`). Each decision reads the version (one primary-key
//! lookup) and reloads the rules only when it changed. Because the ACL admin API answers a
//! grant or revoke only after the projection passed its sequence, and the projection bumps the
//! version in the same transaction, every later request sees the change (read-your-writes).
//! The reload reads the version and the rules in one statement (one snapshot), so a cached
//! index is never labelled with a newer version than the rules it holds; a slower reload never
//! replaces a newer cache entry.
//!
//! Role `admin` bypasses the ACL inside its own tenant (no lookup at all): tenant isolation
//! does not depend on this module, every query and subject is rooted at the caller's tenant.
//! Failures to read the rules fail closed (an error response, never an allow). Decisions are
//! counted in `fe_acl_decisions_total{decision}` (no tenant label: bounded cardinality).

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use events::acl::{Access, AclIndex, Denied, TreeAccess};
use events::{Principal, TenantId};
use platform::access::AccessReadError;

use crate::error::ApiError;
use crate::state::AppState;

/// Above this many cached tenants the cache starts over, bounding its memory.
const MAX_CACHED_TENANTS: usize = 10_000;

/// Per-tenant cache of the ACL read model; cheap to clone (shared).
#[derive(Clone, Default)]
pub struct AclCache {
    tenants: Arc<RwLock<HashMap<TenantId, Cached>>>,
}

#[derive(Clone)]
struct Cached {
    version: u64,
    index: Arc<AclIndex>,
}

impl AclCache {
    fn get(&self, tenant: &TenantId, version: u64) -> Option<Arc<AclIndex>> {
        let map = self.tenants.read().unwrap_or_else(|p| p.into_inner());
        map.get(tenant)
            .filter(|c| c.version == version)
            .map(|c| c.index.clone())
    }

    fn store(&self, tenant: &TenantId, version: u64, index: Arc<AclIndex>) {
        let mut map = self.tenants.write().unwrap_or_else(|p| p.into_inner());
        if map.get(tenant).is_some_and(|c| c.version > version) {
            return;
        }
        if map.len() >= MAX_CACHED_TENANTS && !map.contains_key(tenant) {
            map.clear();
        }
        map.insert(tenant.clone(), Cached { version, index });
    }
}

/// Decides whether `caller` may perform `access` (403 `forbidden` if not).
pub async fn authorize(
    state: &AppState,
    caller: &Principal,
    access: Access<'_>,
) -> Result<(), ApiError> {
    Decider::load(state, caller).await?.check(access)
}

/// The caller's decisions against one consistent view of its tenant's rules.
pub struct Decider<'a> {
    caller: &'a Principal,
    index: Arc<AclIndex>,
}

impl<'a> Decider<'a> {
    /// Loads the caller's tenant rules (nothing for an admin, who bypasses them).
    pub async fn load(state: &AppState, caller: &'a Principal) -> Result<Self, ApiError> {
        let index = if caller.is_admin() {
            Arc::new(AclIndex::new())
        } else {
            tenant_index(state, &caller.tenant).await?
        };
        Ok(Self { caller, index })
    }

    /// The decision for one access; records it in the metrics.
    pub fn check(&self, access: Access<'_>) -> Result<(), ApiError> {
        self.record(events::acl::authorize(&self.index, self.caller, access))
    }

    /// The decision for a recursive command over its whole subtree (API.md "Recursive
    /// commands follow the rules inside the subtree"): the rules alone decide unless one of
    /// the caller's rules lies inside the subtree, then one catalogue query says which of
    /// those rule paths exist.
    pub async fn check_tree(
        &self,
        state: &AppState,
        access: TreeAccess<'_>,
    ) -> Result<(), ApiError> {
        let lookups = events::acl::entries_to_look_up(&self.index, self.caller, access);
        let existing =
            platform::access::existing_entries(&state.pool, &self.caller.tenant, &lookups)
                .await
                .map_err(access_error)?;
        let decision = events::acl::authorize_tree(&self.index, self.caller, access, |p| {
            existing.get(p).copied()
        });
        self.record(decision)
    }

    fn record(&self, decision: Result<(), Denied>) -> Result<(), ApiError> {
        match decision {
            Ok(()) => {
                metrics::counter!("fe_acl_decisions_total", "decision" => "allow").increment(1);
                Ok(())
            }
            Err(denied) => {
                metrics::counter!("fe_acl_decisions_total", "decision" => "deny").increment(1);
                Err(ApiError::Forbidden(denied.to_string()))
            }
        }
    }

    /// The children of `dir` a listing shows the caller.
    pub fn visible_children(&self, dir: &events::FilePath) -> events::acl::VisibleChildren {
        events::acl::visible_children(&self.index, self.caller, dir)
    }

    /// Like [`Decider::check`] but only says yes or no (for filtering listings).
    pub fn allows(&self, access: Access<'_>) -> bool {
        self.check(access).is_ok()
    }
}

/// The tenant's rules in force, from the cache when its version is current.
pub async fn tenant_index(state: &AppState, tenant: &TenantId) -> Result<Arc<AclIndex>, ApiError> {
    let version = platform::access::acl_version(&state.pool, tenant)
        .await
        .map_err(access_error)?;
    if let Some(index) = state.acl.get(tenant, version) {
        return Ok(index);
    }
    let (version, index) = platform::access::acl_rules(&state.pool, tenant)
        .await
        .map_err(access_error)?;
    let index = Arc::new(index);
    state.acl.store(tenant, version, index.clone());
    metrics::counter!("fe_acl_cache_reloads_total").increment(1);
    Ok(index)
}

fn access_error(e: AccessReadError) -> ApiError {
    match e {
        AccessReadError::Db(e) => e.into(),
        other => ApiError::internal(other),
    }
}
