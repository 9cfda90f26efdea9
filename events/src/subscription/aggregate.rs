//! The subscription aggregate (one per tenant): `handle` reads like the rules for changing a
//! tenant's subscriptions, `apply` only folds events into the map of subscriptions.
//!
//! Deleted subscriptions stay in the state (as `Deleted`) so their ids can never be reused,
//! and only live ones (active or disabled) count towards [`MAX_ACTIVE_PER_TENANT`].

use std::collections::BTreeMap;

use cqrs_es::event_sink::EventSink;
use cqrs_es::Aggregate;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::command::SubscriptionCommand;
use super::event::SubscriptionEvent;
use super::spec::{Subscription, MAX_ACTIVE_PER_TENANT, MAX_DISABLE_REASON_CHARS};
use crate::identity::Principal;

/// Why a subscription command was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SubscriptionError {
    #[error("only a tenant administrator may manage subscriptions")]
    NotAdmin,
    #[error("no such subscription")]
    NotFound,
    #[error("a subscription with this id already exists")]
    Duplicate,
    #[error("the tenant already has the maximum of {MAX_ACTIVE_PER_TENANT} subscriptions")]
    TooMany,
}

/// Where a subscription stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SubscriptionStatus {
    /// Deliveries are made.
    Active,
    /// The notifier gave up after sustained failure; nothing is delivered any more.
    Disabled,
    /// Removed by an admin.
    Deleted,
}

impl SubscriptionStatus {
    /// The wire name: `active`, `disabled` or `deleted`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Disabled => "disabled",
            Self::Deleted => "deleted",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct Entry {
    subscription: Subscription,
    status: SubscriptionStatus,
}

/// One tenant's subscriptions, as established by its events.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubscriptionAggregate {
    subscriptions: BTreeMap<Uuid, Entry>,
}

impl SubscriptionAggregate {
    /// A subscription and its status, deleted ones included.
    pub fn get(&self, id: Uuid) -> Option<(&Subscription, SubscriptionStatus)> {
        self.subscriptions
            .get(&id)
            .map(|e| (&e.subscription, e.status))
    }

    /// Subscriptions that are not deleted.
    pub fn live_count(&self) -> usize {
        self.subscriptions
            .values()
            .filter(|e| e.status != SubscriptionStatus::Deleted)
            .count()
    }

    fn live(&self, id: Uuid) -> Option<&Entry> {
        self.subscriptions
            .get(&id)
            .filter(|e| e.status != SubscriptionStatus::Deleted)
    }

    fn create(
        &self,
        subscription: Subscription,
        principal: Principal,
    ) -> Result<SubscriptionEvent, SubscriptionError> {
        require_admin(&principal)?;
        if self.subscriptions.contains_key(&subscription.id) {
            return Err(SubscriptionError::Duplicate);
        }
        if self.live_count() >= MAX_ACTIVE_PER_TENANT {
            return Err(SubscriptionError::TooMany);
        }
        Ok(SubscriptionEvent::Created {
            subscription,
            by: principal.subject,
        })
    }

    fn delete(
        &self,
        id: Uuid,
        principal: Principal,
    ) -> Result<SubscriptionEvent, SubscriptionError> {
        require_admin(&principal)?;
        let entry = self.live(id).ok_or(SubscriptionError::NotFound)?;
        Ok(SubscriptionEvent::Deleted {
            id,
            path_prefix: entry.subscription.path_prefix.clone(),
            by: principal.subject,
        })
    }

    /// `None` when there is nothing to disable (unknown, already disabled or deleted): the
    /// notifier may ask more than once, from several replicas.
    fn disable(&self, id: Uuid, reason: String) -> Option<SubscriptionEvent> {
        let entry = self
            .subscriptions
            .get(&id)
            .filter(|e| e.status == SubscriptionStatus::Active)?;
        Some(SubscriptionEvent::Disabled {
            id,
            path_prefix: entry.subscription.path_prefix.clone(),
            reason: reason.chars().take(MAX_DISABLE_REASON_CHARS).collect(),
        })
    }
}

impl Aggregate for SubscriptionAggregate {
    const TYPE: &'static str = "subscription";
    type Command = SubscriptionCommand;
    type Event = SubscriptionEvent;
    type Error = SubscriptionError;
    type Services = ();

    async fn handle(
        &mut self,
        command: SubscriptionCommand,
        _services: &(),
        sink: &EventSink<Self>,
    ) -> Result<(), SubscriptionError> {
        let event = match command {
            SubscriptionCommand::Create {
                subscription,
                principal,
            } => Some(self.create(subscription, principal)?),
            SubscriptionCommand::Delete { id, principal } => Some(self.delete(id, principal)?),
            SubscriptionCommand::Disable { id, reason } => self.disable(id, reason),
        };
        if let Some(event) = event {
            sink.write(event, self).await;
        }
        Ok(())
    }

    fn apply(&mut self, event: SubscriptionEvent) {
        match event {
            SubscriptionEvent::Created { subscription, .. } => {
                let entry = Entry {
                    subscription,
                    status: SubscriptionStatus::Active,
                };
                self.subscriptions.insert(entry.subscription.id, entry);
            }
            SubscriptionEvent::Deleted { id, .. } => {
                self.set_status(id, SubscriptionStatus::Deleted)
            }
            SubscriptionEvent::Disabled { id, .. } => {
                self.set_status(id, SubscriptionStatus::Disabled)
            }
        }
    }
}

impl SubscriptionAggregate {
    fn set_status(&mut self, id: Uuid, status: SubscriptionStatus) {
        if let Some(entry) = self.subscriptions.get_mut(&id) {
            entry.status = status;
        }
    }
}

fn require_admin(principal: &Principal) -> Result<(), SubscriptionError> {
    if principal.is_admin() {
        Ok(())
    } else {
        Err(SubscriptionError::NotAdmin)
    }
}
