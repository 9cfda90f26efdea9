//! The projector: follows the event log and keeps the PostgreSQL read models (tasks, file
//! catalogue, ACL, subscriptions, audit index) up to date.
//!
//! The log is split into partitions by tenant (`FE_PARTITIONS`, [`events::partition`]).
//! Each partition is followed by exactly one replica at a time ([`ownership`]), which applies
//! its commits in batches, one transaction per batch together with the partition's
//! checkpoint; a commit at or below the checkpoint is skipped, so redelivery and restarts
//! change nothing ([`partition`]). A commit that cannot be applied for a reason retrying will
//! not fix parks its tenant only; the tenant's later commits wait in order until an operator
//! resumes it ([`resume`]); every other tenant goes on. `replay` truncates the read models and
//! rebuilds them from sequence 1; every value written is taken from the log (event data or
//! the commit's JetStream timestamp), never from the clock, so a replay produces identical
//! rows.

mod acl;
mod apply;
pub mod audit;
mod catalogue;
pub mod ownership;
mod partition;
mod quotas;
mod resume;
mod runner;
mod subscriptions;
mod tasks;

pub use partition::{BATCH_WINDOW, MAX_BATCH};
pub use runner::{apply_commit, replay, replay_with_partitions, run, ProjectorError};
