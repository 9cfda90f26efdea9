//! [`AclIndex`]: one tenant's rules, arranged for fast evaluation.
//!
//! Holds the rules by id (the source of truth, for listing and serialising) and, for
//! evaluation, in the per-segment tree of `tree.rs`, so a decision costs a walk down the
//! asked path rather than a scan of every rule. Decisions do not allocate unless a rule
//! matches. This is pure rule evaluation: the admin bypass lives in `access.rs`. No IO here.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::rule::{AclDecision, AclRule, Permission, Subject};
use super::tree::{Asker, Node};
use crate::identity::Principal;
use crate::path::FilePath;

/// An index of one tenant's rules. Serialised as the list of its rules (see
/// [`AclIndex::rules`]).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(from = "Vec<AclRule>", into = "Vec<AclRule>")]
pub struct AclIndex {
    by_id: HashMap<Uuid, AclRule>,
    tree: Node,
}

impl AclIndex {
    /// An empty index: every question is denied.
    pub fn new() -> Self {
        Self::default()
    }

    /// An index holding `rules` (a later rule with the same id replaces an earlier one).
    pub fn from_rules(rules: impl IntoIterator<Item = AclRule>) -> Self {
        let mut index = Self::new();
        for rule in rules {
            index.insert(rule);
        }
        index
    }

    /// Adds a rule, replacing any rule with the same id.
    pub fn insert(&mut self, rule: AclRule) {
        self.remove(rule.rule_id);
        self.tree.insert(&rule);
        self.by_id.insert(rule.rule_id, rule);
    }

    /// Removes and returns the rule with this id, if present.
    pub fn remove(&mut self, rule_id: Uuid) -> Option<AclRule> {
        let rule = self.by_id.remove(&rule_id)?;
        self.tree.remove(&rule);
        Some(rule)
    }

    /// The rule with this id, if present.
    pub fn get(&self, rule_id: Uuid) -> Option<&AclRule> {
        self.by_id.get(&rule_id)
    }

    /// All rules, ordered by path and then rule id.
    pub fn rules(&self) -> impl Iterator<Item = &AclRule> {
        let mut rules: Vec<&AclRule> = self.by_id.values().collect();
        rules.sort_by(|a, b| (&a.path, a.rule_id).cmp(&(&b.path, b.rule_id)));
        rules.into_iter()
    }

    /// Number of rules.
    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    /// Whether there are no rules.
    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }

    /// The decision for `principal` (its subject, its roles and `*` rules). Does not apply the
    /// admin bypass; see [`super::authorize`] for what an operation needs.
    pub fn decide(
        &self,
        principal: &Principal,
        permission: Permission,
        path: &FilePath,
    ) -> AclDecision {
        self.tree
            .decide(Asker::Principal(principal), permission, path)
    }

    /// The decision when a rule naming any of `permissions` counts: any such deny refuses,
    /// else any such allow allows. Used where one of several permissions serves but a deny of
    /// either must hold (a copy needs `read` or `copy`, and a deny of `read` stops it).
    pub fn decide_any(
        &self,
        principal: &Principal,
        permissions: &[Permission],
        path: &FilePath,
    ) -> AclDecision {
        let bits = permissions.iter().fold(0, |acc, p| acc | p.bit());
        self.tree
            .decide_bits(Asker::Principal(principal), bits, path)
    }

    /// Paths strictly below `root` holding a rule for `principal` that names one of
    /// `permissions`, sorted: where a decision inside the subtree can differ from the one on
    /// `root` (see `subtree.rs`).
    pub fn rule_paths_below(
        &self,
        principal: &Principal,
        permissions: &[Permission],
        root: &FilePath,
    ) -> Vec<FilePath> {
        let bits = permissions.iter().fold(0, |acc, p| acc | p.bit());
        self.tree
            .rule_paths_below(Asker::Principal(principal), bits, root)
    }

    /// The decision for a subject given to `/v1/acl/check`: `user:bob` is covered by rules
    /// for `user:bob` and `*`, `role:x` by rules for `role:x` and `*`.
    pub fn decide_for_subject(
        &self,
        subject: &Subject,
        permission: Permission,
        path: &FilePath,
    ) -> AclDecision {
        self.tree.decide(Asker::Subject(subject), permission, path)
    }
}

impl From<Vec<AclRule>> for AclIndex {
    fn from(rules: Vec<AclRule>) -> Self {
        Self::from_rules(rules)
    }
}

impl From<AclIndex> for Vec<AclRule> {
    fn from(index: AclIndex) -> Self {
        index.rules().cloned().collect()
    }
}

impl PartialEq for AclIndex {
    /// Two indexes are equal when they hold the same rules.
    fn eq(&self, other: &Self) -> bool {
        self.by_id == other.by_id
    }
}

impl Eq for AclIndex {}
