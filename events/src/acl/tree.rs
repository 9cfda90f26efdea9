//! The tree behind [`super::AclIndex`]: one node per path segment, each holding the rules
//! set on exactly that path, bucketed by subject.
//!
//! Deciding walks the asked path once from the root (one hash per segment) and, at each node,
//! looks only into the buckets that can apply to the asker: `*`, the user, and each of the
//! principal's roles. So the cost grows with the path depth and with the rules that concern
//! the asker, not with the tenant's total number of rules. Buckets are kept sorted by rule
//! id so results do not depend on insertion order. No IO here.

use std::collections::HashMap;

use uuid::Uuid;

use super::rule::{AclDecision, AclRule, Effect, Permission, Subject};
use crate::identity::Principal;
use crate::path::FilePath;

/// Who the question is about.
#[derive(Clone, Copy)]
pub(super) enum Asker<'a> {
    /// A principal: its own rules, its roles' rules and `*` rules apply.
    Principal(&'a Principal),
    /// A subject named in `/v1/acl/check`: its own rules and `*` rules apply.
    Subject(&'a Subject),
}

/// One path segment's node.
#[derive(Clone, Debug, Default)]
pub(super) struct Node {
    rules: NodeRules,
    children: HashMap<Box<str>, Node>,
}

/// The rules set on one path, by subject.
#[derive(Clone, Debug, Default)]
struct NodeRules {
    everyone: Vec<CompiledRule>,
    users: HashMap<Box<str>, Vec<CompiledRule>>,
    roles: HashMap<Box<str>, Vec<CompiledRule>>,
}

/// What evaluation needs of a rule; path and subject are implied by where it is stored.
#[derive(Clone, Copy, Debug)]
struct CompiledRule {
    rule_id: Uuid,
    permissions: u8,
    effect: Effect,
}

/// The matching rules found so far.
#[derive(Default)]
struct Matches {
    allows: Vec<Uuid>,
    denies: Vec<Uuid>,
}

impl Node {
    /// Adds `rule` (the caller has removed any rule with the same id).
    pub(super) fn insert(&mut self, rule: &AclRule) {
        let mut node = self;
        for segment in rule.path.segments() {
            node = node.children.entry(segment.into()).or_default();
        }
        let bucket = node.rules.bucket_mut(&rule.subject);
        let at = bucket.partition_point(|r| r.rule_id < rule.rule_id);
        let compiled = CompiledRule {
            rule_id: rule.rule_id,
            permissions: rule.permissions.iter().fold(0, |acc, p| acc | p.bit()),
            effect: rule.effect,
        };
        bucket.insert(at, compiled);
    }

    /// Removes `rule`, pruning nodes left empty so revoked rules leave no memory behind.
    pub(super) fn remove(&mut self, rule: &AclRule) {
        let segments: Vec<&str> = rule.path.segments().collect();
        self.remove_at(&segments, &rule.subject, rule.rule_id);
    }

    /// Returns whether this node is empty afterwards.
    fn remove_at(&mut self, segments: &[&str], subject: &Subject, rule_id: Uuid) -> bool {
        match segments.split_first() {
            None => self.rules.remove(subject, rule_id),
            Some((first, rest)) => {
                if let Some(child) = self.children.get_mut(*first) {
                    if child.remove_at(rest, subject, rule_id) {
                        self.children.remove(*first);
                    }
                }
            }
        }
        self.rules.is_empty() && self.children.is_empty()
    }

    /// Collects the matching rules on `path` and its ancestors: any deny decides, else any
    /// allow, else nothing matched and the answer is no. Rule ids come root-first, then by id.
    pub(super) fn decide(
        &self,
        asker: Asker<'_>,
        permission: Permission,
        path: &FilePath,
    ) -> AclDecision {
        self.decide_bits(asker, permission.bit(), path)
    }

    /// Like [`Node::decide`] for a set of permissions (`bits`): a rule naming any of them
    /// matches.
    pub(super) fn decide_bits(&self, asker: Asker<'_>, bit: u8, path: &FilePath) -> AclDecision {
        let mut matches = Matches::default();
        let mut node = self;
        node.rules.collect(asker, bit, &mut matches);
        for segment in path.segments() {
            match node.children.get(segment) {
                Some(child) => node = child,
                None => break,
            }
            node.rules.collect(asker, bit, &mut matches);
        }
        if matches.denies.is_empty() {
            AclDecision {
                allowed: !matches.allows.is_empty(),
                rule_ids: matches.allows,
            }
        } else {
            AclDecision {
                allowed: false,
                rule_ids: matches.denies,
            }
        }
    }
}

impl Node {
    /// Paths strictly below `root` that carry at least one rule applying to `asker` and
    /// naming one of the permissions in `bits`: the only places inside the subtree where a
    /// decision can differ from the decision on `root` itself. Sorted, so results do not
    /// depend on hash order.
    pub(super) fn rule_paths_below(
        &self,
        asker: Asker<'_>,
        bits: u8,
        root: &FilePath,
    ) -> Vec<FilePath> {
        let mut node = self;
        for segment in root.segments() {
            match node.children.get(segment) {
                Some(child) => node = child,
                None => return Vec::new(),
            }
        }
        let mut found = Vec::new();
        node.collect_rule_paths(asker, bits, root, &mut found);
        found.sort();
        found
    }

    fn collect_rule_paths(
        &self,
        asker: Asker<'_>,
        bits: u8,
        at: &FilePath,
        found: &mut Vec<FilePath>,
    ) {
        for (segment, child) in &self.children {
            // Segments come from valid rule paths, so the join cannot fail; a failure would
            // only drop a path that could not name an entry either.
            let Ok(path) = at.join(segment) else {
                continue;
            };
            let mut matches = Matches::default();
            child.rules.collect(asker, bits, &mut matches);
            if !matches.allows.is_empty() || !matches.denies.is_empty() {
                found.push(path.clone());
            }
            child.collect_rule_paths(asker, bits, &path, found);
        }
    }
}

impl NodeRules {
    fn bucket_mut(&mut self, subject: &Subject) -> &mut Vec<CompiledRule> {
        match subject {
            Subject::Everyone => &mut self.everyone,
            Subject::User(user) => self.users.entry(user.as_str().into()).or_default(),
            Subject::Role(role) => self.roles.entry(role.as_str().into()).or_default(),
        }
    }

    fn remove(&mut self, subject: &Subject, rule_id: Uuid) {
        let (map, name) = match subject {
            Subject::Everyone => {
                self.everyone.retain(|r| r.rule_id != rule_id);
                return;
            }
            Subject::User(user) => (&mut self.users, user),
            Subject::Role(role) => (&mut self.roles, role),
        };
        if let Some(bucket) = map.get_mut(name.as_str()) {
            bucket.retain(|r| r.rule_id != rule_id);
            if bucket.is_empty() {
                map.remove(name.as_str());
            }
        }
    }

    fn is_empty(&self) -> bool {
        self.everyone.is_empty() && self.users.is_empty() && self.roles.is_empty()
    }

    /// Adds this node's rules that apply to `asker` and name the permission `bit`.
    fn collect(&self, asker: Asker<'_>, bit: u8, matches: &mut Matches) {
        let before = (matches.allows.len(), matches.denies.len());
        matches.add(&self.everyone, bit);
        match asker {
            Asker::Principal(principal) => {
                if let Some(bucket) = self.users.get(principal.subject.as_str()) {
                    matches.add(bucket, bit);
                }
                for (i, role) in principal.roles.iter().enumerate() {
                    // A role listed twice in a token must not count its rules twice.
                    if principal.roles[..i].contains(role) {
                        continue;
                    }
                    if let Some(bucket) = self.roles.get(role.as_str()) {
                        matches.add(bucket, bit);
                    }
                }
            }
            Asker::Subject(Subject::User(user)) => {
                if let Some(bucket) = self.users.get(user.as_str()) {
                    matches.add(bucket, bit);
                }
            }
            Asker::Subject(Subject::Role(role)) => {
                if let Some(bucket) = self.roles.get(role.as_str()) {
                    matches.add(bucket, bit);
                }
            }
            Asker::Subject(Subject::Everyone) => {}
        }
        // Buckets are each sorted; merge this node's contributions into id order.
        matches.allows[before.0..].sort_unstable();
        matches.denies[before.1..].sort_unstable();
    }
}

impl Matches {
    fn add(&mut self, bucket: &[CompiledRule], bit: u8) {
        for rule in bucket.iter().filter(|r| r.permissions & bit != 0) {
            match rule.effect {
                Effect::Allow => self.allows.push(rule.rule_id),
                Effect::Deny => self.denies.push(rule.rule_id),
            }
        }
    }
}
