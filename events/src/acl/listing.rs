//! Which children of a directory a caller may see in a listing ([`visible_children`]), in a
//! form the catalogue query can apply before it pages.
//!
//! An entry is shown when the caller may `list` or `read` it. A child's decision differs from
//! the decision a rule-less child would get (the directory's own) only when a rule for the
//! caller naming `list` or `read` sits on the child's own path. So the visible children are
//! "all except a few names" or "only a few names", both computed on the in-memory index: the
//! listing query filters with them and pages over visible entries only, so pages are full and
//! a cursor never points at a hidden name. No IO here.

use super::access::{authorize, Access};
use super::index::AclIndex;
use super::rule::Permission;
use crate::identity::Principal;
use crate::path::FilePath;

/// The children of one directory the caller may see, by name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum VisibleChildren {
    /// Every child except these names.
    AllExcept(Vec<String>),
    /// Only these names.
    Only(Vec<String>),
}

impl VisibleChildren {
    /// Whether a child with this name is shown.
    pub fn shows(&self, name: &str) -> bool {
        match self {
            Self::AllExcept(hidden) => !hidden.iter().any(|h| h == name),
            Self::Only(shown) => shown.iter().any(|s| s == name),
        }
    }
}

/// The children of `dir` that `principal` may see (an admin sees all).
pub fn visible_children(
    index: &AclIndex,
    principal: &Principal,
    dir: &FilePath,
) -> VisibleChildren {
    if principal.is_admin() {
        return VisibleChildren::AllExcept(Vec::new());
    }
    let by_default = authorize(index, principal, Access::ListEntry(dir)).is_ok();
    let child_depth = dir.depth() + 1;
    let exceptions: Vec<String> = index
        .rule_paths_below(principal, &[Permission::List, Permission::Read], dir)
        .into_iter()
        .filter(|p| p.depth() == child_depth)
        .filter(|p| authorize(index, principal, Access::ListEntry(p)).is_ok() != by_default)
        .filter_map(|p| p.name().map(str::to_owned))
        .collect();
    if by_default {
        VisibleChildren::AllExcept(exceptions)
    } else {
        VisibleChildren::Only(exceptions)
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use uuid::Uuid;

    use super::*;
    use crate::acl::{AclRule, Effect, Subject};
    use crate::identity::TenantId;

    const SEGMENTS: [&str; 3] = ["a", "b", "c"];
    const SUBJECTS: [&str; 4] = ["user:bob", "user:eve", "role:staff", "*"];
    const PERMS: [Permission; 3] = [Permission::List, Permission::Read, Permission::Write];

    fn bob() -> Principal {
        Principal::new("bob", TenantId::parse("t").unwrap(), vec!["staff".into()]).unwrap()
    }

    fn arb_path() -> impl Strategy<Value = FilePath> {
        prop::collection::vec(prop::sample::select(&SEGMENTS[..]), 0..=3).prop_map(|segs| {
            if segs.is_empty() {
                FilePath::root()
            } else {
                FilePath::parse(&format!("/{}", segs.join("/"))).unwrap()
            }
        })
    }

    fn arb_rule() -> impl Strategy<Value = AclRule> {
        (
            prop::sample::select(&SUBJECTS[..]),
            arb_path(),
            prop::sample::subsequence(&PERMS[..], 1..=PERMS.len()),
            any::<bool>(),
        )
            .prop_map(|(subject, path, perms, deny)| AclRule {
                rule_id: Uuid::now_v7(),
                subject: Subject::parse(subject).unwrap(),
                path,
                permissions: perms.into_iter().collect(),
                effect: if deny { Effect::Deny } else { Effect::Allow },
            })
    }

    proptest! {
        #[test]
        fn visible_children_agree_with_the_per_entry_decision(
            rules in prop::collection::vec(arb_rule(), 0..10),
            dir in arb_path(),
        ) {
            let index = AclIndex::from_rules(rules);
            let visible = visible_children(&index, &bob(), &dir);
            for name in SEGMENTS.iter().chain(&["zz"]) {
                let child = dir.join(name).unwrap();
                let allowed = authorize(&index, &bob(), Access::ListEntry(&child)).is_ok();
                prop_assert_eq!(visible.shows(name), allowed, "{}", child.as_str());
            }
        }
    }
}
