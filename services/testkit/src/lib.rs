//! Test support: real components on free ports, owned by the test that started them.
//!
//! Nothing here mocks a server: [`nats`] spawns a real `nats-server` with its own store
//! directory, [`postgres`] creates a fresh database on a real PostgreSQL server, and [`jwt`]
//! generates signing keys at test time (no keys are committed) and mints tokens; [`s3`] spawns
//! a real S3-compatible server (moto) and creates a bucket per test.
//! For fault scenarios: [`nats_cluster`] runs a 3-node cluster from `nats/cluster-node.conf`,
//! [`pg_cluster`] a private PostgreSQL server that may be crashed, and [`role`] the
//! `file-engine` roles as processes that can be killed with SIGKILL and restarted.

pub mod clamd;
pub mod jwt;
pub mod nats;
pub mod nats_cluster;
pub mod pg_cluster;
pub mod postgres;
mod process;
pub mod role;
pub mod s3;

pub use process::free_port;
