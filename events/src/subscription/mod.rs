//! Webhook subscriptions: what a tenant asked to be notified about, and the per-tenant
//! aggregate that records subscriptions being created, deleted and disabled.
//!
//! - `spec.rs`: [`Subscription`] (target, event types, path prefix) and the pure matching
//!   rules (type filter, whole-segment path prefix).
//! - `command.rs`, `event.rs`, `aggregate.rs`: the aggregate (one per tenant, like the ACL).
//!
//! The signing secret is never part of a subscription or of its events: the log is immutable
//! and readable by auditors, so a secret written there could never be withdrawn. Secrets are
//! derived from a server-side key and the subscription id where they are needed (see
//! `platform::webhook`). The target URL is validated (syntax, SSRF) by the caller: resolving
//! a host is IO and does not belong in this crate.
//!
//! Pure: no IO, no clock reads.

mod aggregate;
mod command;
mod event;
mod spec;

pub use aggregate::{SubscriptionAggregate, SubscriptionError, SubscriptionStatus};
pub use command::SubscriptionCommand;
pub use event::SubscriptionEvent;
pub use spec::{Subscription, MAX_ACTIVE_PER_TENANT, MAX_DISABLE_REASON_CHARS, MAX_URL_BYTES};
