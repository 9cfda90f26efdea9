//! Test support: real components on free ports, owned by the test that started them.
//!
//! Nothing here mocks a server: [`nats`] spawns a real `nats-server` with its own store
//! directory, [`postgres`] creates a fresh database on a real PostgreSQL server, and [`jwt`]
//! generates signing keys at test time (no keys are committed) and mints tokens.

pub mod clamd;
pub mod jwt;
pub mod nats;
pub mod postgres;
mod process;
