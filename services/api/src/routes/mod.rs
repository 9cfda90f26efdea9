//! HTTP routes, one module per resource.

pub mod acl;
pub mod commands;
pub mod ops;
pub mod reads;
pub mod tasks;
