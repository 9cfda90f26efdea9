//! Commands of the subscription aggregate (one aggregate per tenant), sent by the
//! subscriptions API (`Create`, `Delete`, by an admin) and by the notifier (`Disable`).

use uuid::Uuid;

use super::spec::Subscription;
use crate::identity::Principal;

/// A change to a tenant's subscriptions.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SubscriptionCommand {
    /// Add `subscription` (its id is chosen by the caller, so a retry cannot add it twice).
    Create {
        subscription: Subscription,
        principal: Principal,
    },
    /// Remove the subscription; pending deliveries are abandoned.
    Delete { id: Uuid, principal: Principal },
    /// Stop delivering to a subscription that kept failing (sent by the notifier). Does
    /// nothing when the subscription is no longer active.
    Disable { id: Uuid, reason: String },
}
