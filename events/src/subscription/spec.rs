//! One subscription's definition ([`Subscription`]) and the rule deciding which public
//! events it receives.
//!
//! Matching: the event's short type must be listed in `types` (an empty list means every
//! public type), and one of the event's paths must lie at or below `path_prefix` by whole
//! segments (`/a` covers `/a` and `/a/x`, never `/ab`). An event has its subject as a path,
//! and a move or copy also its target, so a subscriber of `/b` hears of `/a/x` moved to
//! `/b/x`. No IO here.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::path::FilePath;

/// Longest accepted target URL, in bytes.
pub const MAX_URL_BYTES: usize = 2048;
/// Most subscriptions a tenant may have active (or disabled) at once.
pub const MAX_ACTIVE_PER_TENANT: usize = 100;
/// Longest reason recorded when a subscription is disabled (longer ones are cut).
pub const MAX_DISABLE_REASON_CHARS: usize = 500;

/// What a tenant asked to be notified about and where. The URL has been validated by the
/// caller (scheme, no credentials, allowed target addresses).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Subscription {
    pub id: Uuid,
    pub url: String,
    /// Short public event types (`dir.created`, ...); empty means every public type.
    pub types: BTreeSet<String>,
    pub path_prefix: FilePath,
}

impl Subscription {
    /// Whether an event of `short_type` passes the type filter.
    pub fn wants_type(&self, short_type: &str) -> bool {
        self.types.is_empty() || self.types.contains(short_type)
    }

    /// Whether any of `paths` lies at or below the prefix, by whole segments. An event
    /// without any path only reaches subscriptions on the root.
    pub fn wants_paths<'a>(&self, paths: impl IntoIterator<Item = &'a FilePath>) -> bool {
        let mut any = false;
        for path in paths {
            if self.path_prefix.contains(path) {
                return true;
            }
            any = true;
        }
        !any && self.path_prefix.is_root()
    }

    /// Whether the subscription receives an event of `short_type` about `paths`.
    pub fn matches<'a>(
        &self,
        short_type: &str,
        paths: impl IntoIterator<Item = &'a FilePath>,
    ) -> bool {
        self.wants_type(short_type) && self.wants_paths(paths)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sub(types: &[&str], prefix: &str) -> Subscription {
        Subscription {
            id: Uuid::from_u128(1),
            url: "https://example.com/hook".into(),
            types: types.iter().map(|t| t.to_string()).collect(),
            path_prefix: FilePath::parse(prefix).unwrap(),
        }
    }

    fn p(s: &str) -> FilePath {
        FilePath::parse(s).unwrap()
    }

    #[test]
    fn empty_types_mean_every_type() {
        let s = sub(&[], "/");
        assert!(s.wants_type("dir.created") && s.wants_type("acl.rule_granted"));
    }

    #[test]
    fn listed_types_filter() {
        let s = sub(&["file.available"], "/");
        assert!(s.wants_type("file.available"));
        assert!(!s.wants_type("dir.created"));
    }

    #[test]
    fn prefix_matches_whole_segments_only() {
        let s = sub(&[], "/reports");
        assert!(s.matches("dir.created", [&p("/reports")]));
        assert!(s.matches("dir.created", [&p("/reports/2026/q1.pdf")]));
        assert!(!s.matches("dir.created", [&p("/reports2")]));
        assert!(!s.matches("dir.created", [&p("/")]));
    }

    #[test]
    fn a_move_matches_by_source_or_target() {
        let s = sub(&[], "/b");
        assert!(s.matches("entry.moved", [&p("/a/x"), &p("/b/x")]));
        assert!(!s.matches("entry.moved", [&p("/a/x"), &p("/c/x")]));
    }

    #[test]
    fn events_without_paths_reach_only_root_subscriptions() {
        assert!(sub(&[], "/").matches("task.failed", []));
        assert!(!sub(&[], "/a").matches("task.failed", []));
    }
}
