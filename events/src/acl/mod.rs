//! Access control: ACL rules, their evaluation and the per-tenant ACL aggregate.
//!
//! - `rule.rs`: the vocabulary ([`Permission`], [`Effect`], [`Subject`], [`AclRule`]).
//! - `index.rs`: [`AclIndex`], one tenant's rules arranged for fast decisions.
//! - `access.rs`: what each API operation needs ([`Access`], [`authorize`], admin bypass).
//! - `listing.rs`: which children a listing shows, as a filter applied before paging
//!   ([`visible_children`]).
//! - `subtree.rs`: recursive commands decided over their whole subtrees ([`TreeAccess`],
//!   [`authorize_tree`]) without a catalogue query per entry.
//! - `command.rs`, `event.rs`, `aggregate.rs`: the ACL aggregate that records grants and
//!   revocations, and [`rules_as_of`] for point-in-time checks.
//!
//! Pure: no IO, no clock reads (callers pass instants in).

mod access;
mod aggregate;
mod command;
mod event;
mod index;
mod listing;
mod rule;
mod subtree;
mod tree;

pub use access::{authorize, Access, Denied};
pub use aggregate::{rules_as_of, AclAggregate, AclError};
pub use command::AclCommand;
pub use event::AclEvent;
pub use index::AclIndex;
pub use listing::{visible_children, VisibleChildren};
pub use rule::{
    AclDecision, AclRule, Effect, InvalidSubject, Permission, Subject, UnknownPermission,
};
pub use subtree::{authorize_tree, entries_to_look_up, Existing, TreeAccess};
