//! Commands of the ACL aggregate (one aggregate per tenant), sent by `/v1/acl/rules`.

use uuid::Uuid;

use super::rule::AclRule;
use crate::identity::Principal;

/// A change to a tenant's rules, with the principal asking for it (who must be an admin).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AclCommand {
    /// Add `rule` (its `rule_id` is chosen by the caller, so a retry cannot add it twice).
    Grant { rule: AclRule, principal: Principal },
    /// Remove the rule with this id.
    Revoke { rule_id: Uuid, principal: Principal },
}
