//! Shared runtime of File Engine services.
//!
//! Everything that touches the outside world and is needed by more than one service lives
//! here: configuration, telemetry, the JetStream event log (a cqrs-es repository), stream and
//! consumer definitions, the Postgres pool and migrations, JWT verification and storage.
//! Services stay thin adapters around `events` plus these pieces.

pub mod access;
pub mod auth;
pub mod catalogue;
pub mod config;
pub mod consumer;
pub mod db;
pub mod event_log;
pub mod nats_client;
pub mod projection;
pub mod public_events;
pub mod retention;
pub mod settled;
pub mod storage;
pub mod streams;
pub mod telemetry;
pub mod tls;
pub mod webhook;
