//! Events of the ACL aggregate: the facts `acl.rule_granted` and `acl.rule_revoked`.

use cqrs_es::DomainEvent;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::rule::AclRule;
use crate::path::FilePath;

/// A recorded change to a tenant's rules; `by` is the `sub` of the admin who made it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum AclEvent {
    RuleGranted {
        rule: AclRule,
        by: String,
    },
    /// `path` is the revoked rule's path, so audit queries by path find the revocation.
    RuleRevoked {
        rule_id: Uuid,
        path: FilePath,
        by: String,
    },
}

impl AclEvent {
    /// The path the event is about (the CloudEvents `subject`).
    pub fn path(&self) -> &FilePath {
        match self {
            Self::RuleGranted { rule, .. } => &rule.path,
            Self::RuleRevoked { path, .. } => path,
        }
    }
}

impl DomainEvent for AclEvent {
    fn event_type(&self) -> String {
        match self {
            Self::RuleGranted { .. } => "acl.rule_granted",
            Self::RuleRevoked { .. } => "acl.rule_revoked",
        }
        .to_owned()
    }

    fn event_version(&self) -> String {
        "1".to_owned()
    }
}
