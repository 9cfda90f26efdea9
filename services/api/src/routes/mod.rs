//! HTTP routes, one module per resource.

pub mod acl;
pub mod audit;
pub mod commands;
pub mod dead_letters;
pub mod event_stream;
pub mod ops;
pub mod reads;
pub mod subscriptions;
pub mod tasks;
pub mod usage;
