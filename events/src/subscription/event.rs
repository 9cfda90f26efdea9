//! Events of the subscription aggregate: `subscription.created`, `subscription.deleted` and
//! `subscription.disabled`. They are internal (audited, not delivered to subscribers) and
//! never carry the signing secret.

use cqrs_es::DomainEvent;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::spec::Subscription;
use crate::path::FilePath;

/// A recorded change to a tenant's subscriptions. Every event names the subscription's path
/// prefix, so audit queries by path find all of them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum SubscriptionEvent {
    /// `by` is the `sub` of the admin who created it.
    Created {
        subscription: Subscription,
        by: String,
    },
    Deleted {
        id: Uuid,
        path_prefix: FilePath,
        by: String,
    },
    /// The notifier gave up on the target; `reason` says why (no response bodies, no secrets).
    Disabled {
        id: Uuid,
        path_prefix: FilePath,
        reason: String,
    },
}

impl SubscriptionEvent {
    /// The subscription the event is about.
    pub fn id(&self) -> Uuid {
        match self {
            Self::Created { subscription, .. } => subscription.id,
            Self::Deleted { id, .. } | Self::Disabled { id, .. } => *id,
        }
    }

    /// The path the event is about (the subscription's prefix).
    pub fn path(&self) -> &FilePath {
        match self {
            Self::Created { subscription, .. } => &subscription.path_prefix,
            Self::Deleted { path_prefix, .. } | Self::Disabled { path_prefix, .. } => path_prefix,
        }
    }
}

impl DomainEvent for SubscriptionEvent {
    fn event_type(&self) -> String {
        match self {
            Self::Created { .. } => "subscription.created",
            Self::Deleted { .. } => "subscription.deleted",
            Self::Disabled { .. } => "subscription.disabled",
        }
        .to_owned()
    }

    fn event_version(&self) -> String {
        "1".to_owned()
    }
}
