//! The projector: follows the event log and keeps the PostgreSQL read models (tasks, file
//! catalogue, ...) up to date.
//!
//! Each log commit is applied in one database transaction together with the checkpoint (the
//! commit's stream sequence); a commit at or below the checkpoint is skipped, so redelivery
//! and restarts change nothing. After each transaction the projector sends
//! `NOTIFY fe_projected, '<seq>'`, which the API uses for read-your-writes and long polls.
//! Only one projector is active per database: it holds a session advisory lock, and further
//! replicas wait for it (hot standby). `replay` truncates the read models and rebuilds them
//! from sequence 1; every value written is taken from the log (event data or the commit's
//! JetStream timestamp), never from the clock, so a replay produces identical rows.

mod acl;
pub mod audit;
mod catalogue;
mod quotas;
mod runner;
mod subscriptions;
mod tasks;

pub use runner::{apply_commit, replay, run, ProjectorError};
