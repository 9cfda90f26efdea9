//! Files: streamed uploads into staging (hashed and sniffed on the fly, size-limited while
//! streaming), downloads with ranges, and signed links to one version of a file.

pub mod disposition;
pub mod download;
pub mod links;
pub mod sniff;
pub mod token;
pub mod upload;
