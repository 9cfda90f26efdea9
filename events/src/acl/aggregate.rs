//! The ACL aggregate (one per tenant): `handle` reads like the rules for changing rules,
//! `apply` only folds events into the tenant's [`AclIndex`]. Also [`rules_as_of`], the
//! same fold cut off at an instant, for `/v1/acl/check?at=`.

use chrono::{DateTime, Utc};
use cqrs_es::event_sink::EventSink;
use cqrs_es::Aggregate;
use serde::{Deserialize, Serialize};

use super::command::AclCommand;
use super::event::AclEvent;
use super::index::AclIndex;
use crate::identity::Principal;

/// Why an ACL command was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AclError {
    #[error("only a tenant administrator may change ACL rules")]
    NotAdmin,
    #[error("no such ACL rule")]
    RuleNotFound,
    #[error("an ACL rule with this id already exists")]
    DuplicateRule,
}

/// One tenant's rules, as established by its events.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AclAggregate {
    index: AclIndex,
}

impl AclAggregate {
    /// The tenant's rules in force.
    pub fn index(&self) -> &AclIndex {
        &self.index
    }
}

impl Aggregate for AclAggregate {
    const TYPE: &'static str = "acl";
    type Command = AclCommand;
    type Event = AclEvent;
    type Error = AclError;
    type Services = ();

    async fn handle(
        &mut self,
        command: AclCommand,
        _services: &(),
        sink: &EventSink<Self>,
    ) -> Result<(), AclError> {
        match command {
            AclCommand::Grant { rule, principal } => {
                require_admin(&principal)?;
                if self.index.get(rule.rule_id).is_some() {
                    return Err(AclError::DuplicateRule);
                }
                let by = principal.subject;
                sink.write(AclEvent::RuleGranted { rule, by }, self).await;
            }
            AclCommand::Revoke { rule_id, principal } => {
                require_admin(&principal)?;
                let path = match self.index.get(rule_id) {
                    Some(rule) => rule.path.clone(),
                    None => return Err(AclError::RuleNotFound),
                };
                let by = principal.subject;
                let event = AclEvent::RuleRevoked { rule_id, path, by };
                sink.write(event, self).await;
            }
        }
        Ok(())
    }

    fn apply(&mut self, event: AclEvent) {
        fold(&mut self.index, event);
    }
}

fn require_admin(principal: &Principal) -> Result<(), AclError> {
    if principal.is_admin() {
        Ok(())
    } else {
        Err(AclError::NotAdmin)
    }
}

fn fold(index: &mut AclIndex, event: AclEvent) {
    match event {
        AclEvent::RuleGranted { rule, .. } => index.insert(rule),
        AclEvent::RuleRevoked { rule_id, .. } => {
            index.remove(rule_id);
        }
    }
}

/// The rules in force at `at`: the fold of the events (given in log order, with the time
/// each was recorded) up to and including `at`.
pub fn rules_as_of(
    events: impl IntoIterator<Item = (DateTime<Utc>, AclEvent)>,
    at: DateTime<Utc>,
) -> AclIndex {
    let mut index = AclIndex::new();
    for (recorded_at, event) in events {
        if recorded_at > at {
            // Log order is time order for one tenant's aggregate, so nothing later counts.
            break;
        }
        fold(&mut index, event);
    }
    index
}
