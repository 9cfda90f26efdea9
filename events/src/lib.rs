//! Pure domain of File Engine.
//!
//! Owns the vocabulary every service speaks: validated identifiers ([`TenantId`],
//! [`FilePath`], [`IdempotencyKey`], [`Principal`]), permissions and ACL evaluation, the
//! commands clients send, the events the log records and the aggregates that turn one into
//! the other.
//!
//! This crate must never do IO: no files, no network, no clock reads inside decisions, no
//! async runtime, no NATS or SQL types. Everything here is deterministic and testable with
//! plain unit and property tests.

pub mod acl;
pub mod audit_chain;
pub mod audit_export;
pub mod identity;
pub mod partition;
pub mod path;
pub mod public;
pub mod quota;
pub mod storage;
pub mod subscription;
pub mod task;
pub mod upcast;

pub use identity::{IdempotencyKey, IdentityError, Principal, TenantId};
pub use path::{FilePath, PathError};
