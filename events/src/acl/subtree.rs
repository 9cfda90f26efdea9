//! Recursive commands follow the rules inside the subtree ([`TreeAccess`], [`authorize_tree`]).
//!
//! API.md "Authorization (ACL)": a non-admin's recursive `move`, `copy` or `delete` of a
//! directory needs its permission on every entry of the subtree, and `overwrite: true` also
//! needs `write` on the replaced target and, when that target is a directory, `delete` on it
//! and everything below it (replacing a directory removes it, like a recursive delete). A copy
//! needs `read` or `copy` on each entry, and a deny of either inside the tree refuses it: a
//! copy of an entry the caller may not read would be a readable duplicate.
//!
//! Deciding this must not cost a query per entry. It does not have to: the decision on an
//! entry depends only on the rules on its ancestors, so inside a subtree it can differ from
//! the decision on the subtree's root only at paths that carry a rule for the caller naming
//! the permission ([`AclIndex::rule_paths_below`], computed on the in-memory index). An entry
//! below such a path is decided exactly like the deepest such path above it, and that path is
//! itself an entry whenever anything below it exists (the catalogue is a tree). So the whole
//! subtree is decided by the root plus those rule paths that exist: the caller asks
//! [`entries_to_look_up`], looks them up in the catalogue in one query, and passes the answer
//! to [`authorize_tree`]. The property test below checks this equals the conjunction of the
//! single-path decisions over every entry of the subtree. No IO here.

use super::access::Denied;
use super::index::AclIndex;
use super::rule::Permission;
use crate::identity::Principal;
use crate::path::FilePath;

/// What the catalogue holds at a path that was looked up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Existing {
    File,
    Dir,
}

/// A command that acts on whole subtrees, with the paths it names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TreeAccess<'a> {
    /// Delete `path` (and, for a directory, everything below it).
    Delete { path: &'a FilePath },
    /// Move `from` (and everything below it) to `to`.
    Move {
        from: &'a FilePath,
        to: &'a FilePath,
        overwrite: bool,
    },
    /// Copy `from` (and everything below it) to `to`.
    Copy {
        from: &'a FilePath,
        to: &'a FilePath,
        overwrite: bool,
    },
}

/// How far one requirement reaches.
#[derive(Clone, Copy, Debug)]
enum Reach {
    /// The path alone, whether or not it exists (decided from rules).
    Path,
    /// The path, whether or not it exists, and every existing entry below it.
    Subtree,
    /// Only when the path is an existing directory: it and every entry below it.
    ReplacedDir,
}

/// One permission check of a tree access on what `reach` covers: a rule naming any of
/// `any_of` counts, so a deny of any of them refuses (a copy needs `read` or `copy`, and a
/// deny of `read` inside the tree stops the copy: it would hand out a readable duplicate).
#[derive(Clone, Copy, Debug)]
struct Requirement<'a> {
    path: &'a FilePath,
    any_of: &'static [Permission],
    reach: Reach,
}

use Permission as P;

impl<'a> TreeAccess<'a> {
    fn requirements(&self, target_parent: &'a FilePath) -> Vec<Requirement<'a>> {
        let req = |path, any_of, reach| Requirement {
            path,
            any_of,
            reach,
        };
        let (from, to, overwrite, source_needs): (_, _, _, &'static [Permission]) = match *self {
            TreeAccess::Delete { path } => return vec![req(path, &[P::Delete], Reach::Subtree)],
            TreeAccess::Move {
                from,
                to,
                overwrite,
            } => (from, to, overwrite, &[P::Move]),
            TreeAccess::Copy {
                from,
                to,
                overwrite,
            } => (from, to, overwrite, &[P::Copy, P::Read]),
        };
        let mut reqs = vec![
            req(from, source_needs, Reach::Subtree),
            req(target_parent, &[P::Write], Reach::Path),
        ];
        if overwrite {
            reqs.push(req(to, &[P::Write], Reach::Path));
            reqs.push(req(to, &[P::Delete], Reach::ReplacedDir));
        }
        reqs
    }

    /// The directory a move or copy writes into (`/` for a root-level target).
    fn target_parent(&self) -> FilePath {
        match self {
            TreeAccess::Delete { path } => path.parent().unwrap_or_else(FilePath::root),
            TreeAccess::Move { to, .. } | TreeAccess::Copy { to, .. } => {
                to.parent().unwrap_or_else(FilePath::root)
            }
        }
    }
}

/// The paths whose presence in the catalogue decides `access` beyond the rules alone; empty
/// for an admin and whenever no rule of the caller lies inside the subtrees (then no catalogue
/// query is needed at all). Sorted and without duplicates.
pub fn entries_to_look_up(
    index: &AclIndex,
    principal: &Principal,
    access: TreeAccess<'_>,
) -> Vec<FilePath> {
    if principal.is_admin() {
        return Vec::new();
    }
    let parent = access.target_parent();
    let mut paths = Vec::new();
    for req in access.requirements(&parent) {
        match req.reach {
            Reach::Path => {}
            Reach::Subtree => paths.extend(index.rule_paths_below(principal, req.any_of, req.path)),
            Reach::ReplacedDir => {
                paths.push(req.path.clone());
                paths.extend(index.rule_paths_below(principal, req.any_of, req.path));
            }
        }
    }
    paths.sort();
    paths.dedup();
    paths
}

/// Decides `access` for `principal`, given what the catalogue holds at the paths of
/// [`entries_to_look_up`] (`existing` answers `None` for a path that does not exist).
///
/// Role `admin` is always allowed (its own tenant's index is the caller's guarantee). A
/// refusal names the path the command named, never an entry inside the subtree, so a 403
/// does not reveal which entries exist below.
pub fn authorize_tree(
    index: &AclIndex,
    principal: &Principal,
    access: TreeAccess<'_>,
    existing: impl Fn(&FilePath) -> Option<Existing>,
) -> Result<(), Denied> {
    if principal.is_admin() {
        return Ok(());
    }
    let parent = access.target_parent();
    for req in access.requirements(&parent) {
        let denied = || Denied {
            permission: req.any_of[0],
            path: req.path.clone(),
        };
        let holds = |path: &FilePath| index.decide_any(principal, req.any_of, path).allowed;
        let whole_tree = match req.reach {
            Reach::Path => false,
            Reach::Subtree => true,
            Reach::ReplacedDir => existing(req.path) == Some(Existing::Dir),
        };
        let check_root = !matches!(req.reach, Reach::ReplacedDir) || whole_tree;
        if check_root && !holds(req.path) {
            return Err(denied());
        }
        if whole_tree {
            let inside = index.rule_paths_below(principal, req.any_of, req.path);
            if inside.iter().any(|p| existing(p).is_some() && !holds(p)) {
                return Err(denied());
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};

    use proptest::prelude::*;
    use uuid::Uuid;

    use super::*;
    use crate::acl::{AclRule, Effect, Subject};
    use crate::identity::TenantId;

    fn path(s: &str) -> FilePath {
        FilePath::parse(s).unwrap()
    }

    fn bob() -> Principal {
        Principal::new("bob", TenantId::parse("t").unwrap(), vec!["staff".into()]).unwrap()
    }

    fn rule(subject: &str, at: &str, permissions: &[Permission], effect: Effect) -> AclRule {
        AclRule {
            rule_id: Uuid::now_v7(),
            subject: Subject::parse(subject).unwrap(),
            path: path(at),
            permissions: permissions.iter().copied().collect(),
            effect,
        }
    }

    /// A catalogue as a map, closed under ancestors like the real one.
    fn catalogue(entries: &[(&str, Existing)]) -> BTreeMap<FilePath, Existing> {
        entries.iter().map(|(p, k)| (path(p), *k)).collect()
    }

    fn decide_with(
        index: &AclIndex,
        access: TreeAccess<'_>,
        catalogue: &BTreeMap<FilePath, Existing>,
    ) -> Result<(), Denied> {
        let looked_up: BTreeSet<FilePath> = entries_to_look_up(index, &bob(), access)
            .into_iter()
            .collect();
        // Only what was asked for is known: the decision must not need anything else.
        authorize_tree(index, &bob(), access, |p| {
            looked_up
                .contains(p)
                .then(|| catalogue.get(p).copied())
                .flatten()
        })
    }

    #[test]
    fn copy_with_a_denied_entry_inside_is_refused_at_the_named_source() {
        let index = AclIndex::from_rules([
            rule("user:bob", "/shared", &[P::Read, P::Copy], Effect::Allow),
            rule("user:bob", "/shared/hr", &[P::Read], Effect::Deny),
            rule("user:bob", "/bob", &[P::Write], Effect::Allow),
        ]);
        let cat = catalogue(&[
            ("/shared", Existing::Dir),
            ("/shared/hr", Existing::Dir),
            ("/shared/hr/pay.txt", Existing::File),
            ("/bob", Existing::Dir),
        ]);
        let (from, to) = (path("/shared"), path("/bob/copy"));
        let access = TreeAccess::Copy {
            from: &from,
            to: &to,
            overwrite: false,
        };
        // `copy` is still allowed on /shared/hr, but a copy would be readable in /bob.
        let denied = decide_with(&index, access, &cat).unwrap_err();
        assert_eq!(denied.path, from, "the refusal names the source, not hr");
        let sub = path("/shared/other");
        let elsewhere = TreeAccess::Copy {
            from: &sub,
            to: &to,
            overwrite: false,
        };
        assert_eq!(decide_with(&index, elsewhere, &cat), Ok(()));
    }

    #[test]
    fn a_deny_on_a_path_that_does_not_exist_does_not_block() {
        let index = AclIndex::from_rules([
            rule("user:bob", "/area", &[P::Delete], Effect::Allow),
            rule("user:bob", "/area/keep", &[P::Delete], Effect::Deny),
        ]);
        let a = path("/area");
        let access = TreeAccess::Delete { path: &a };
        let without_keep = catalogue(&[("/area", Existing::Dir), ("/area/x", Existing::File)]);
        assert_eq!(decide_with(&index, access, &without_keep), Ok(()));
        let with_keep = catalogue(&[("/area", Existing::Dir), ("/area/keep", Existing::File)]);
        assert!(decide_with(&index, access, &with_keep).is_err());
    }

    #[test]
    fn overwrite_needs_write_on_the_target_and_delete_inside_a_replaced_directory() {
        let index = AclIndex::from_rules([
            rule(
                "user:bob",
                "/",
                &[P::Move, P::Write, P::Delete],
                Effect::Allow,
            ),
            rule("user:bob", "/dst/locked.txt", &[P::Write], Effect::Deny),
            rule("user:bob", "/dir/keep", &[P::Delete], Effect::Deny),
        ]);
        let cat = catalogue(&[
            ("/src", Existing::File),
            ("/dst", Existing::Dir),
            ("/dst/locked.txt", Existing::File),
            ("/dir", Existing::Dir),
            ("/dir/keep", Existing::File),
        ]);
        let (src, locked, dir) = (path("/src"), path("/dst/locked.txt"), path("/dir"));
        let mv = |to, overwrite| TreeAccess::Move {
            from: &src,
            to,
            overwrite,
        };
        assert!(decide_with(&index, mv(&locked, true), &cat).is_err());
        assert!(decide_with(&index, mv(&dir, true), &cat).is_err());
        // Without overwrite nothing is replaced (the task fails `already_exists` instead).
        assert_eq!(decide_with(&index, mv(&dir, false), &cat), Ok(()));
    }

    #[test]
    fn admin_is_never_refused_and_needs_no_lookup() {
        let admin =
            Principal::new("root", TenantId::parse("t").unwrap(), vec!["admin".into()]).unwrap();
        let index = AclIndex::from_rules([rule("*", "/a/b", &[P::Delete], Effect::Deny)]);
        let a = path("/a");
        let access = TreeAccess::Delete { path: &a };
        assert!(entries_to_look_up(&index, &admin, access).is_empty());
        assert_eq!(
            authorize_tree(&index, &admin, access, |_| Some(Existing::Dir)),
            Ok(())
        );
    }

    // ---- property: the fast decision equals the conjunction over the whole subtree ----

    const SEGMENTS: [&str; 3] = ["a", "b", "c"];
    const SUBJECTS: [&str; 5] = ["user:bob", "user:eve", "role:staff", "role:other", "*"];
    const PERMS: [Permission; 5] = [P::Move, P::Copy, P::Read, P::Delete, P::Write];

    fn arb_path(min_depth: usize) -> impl Strategy<Value = FilePath> {
        prop::collection::vec(prop::sample::select(&SEGMENTS[..]), min_depth..=3).prop_map(|segs| {
            if segs.is_empty() {
                FilePath::root()
            } else {
                path(&format!("/{}", segs.join("/")))
            }
        })
    }

    fn arb_rule() -> impl Strategy<Value = AclRule> {
        (
            prop::sample::select(&SUBJECTS[..]),
            arb_path(0),
            prop::sample::subsequence(&PERMS[..], 1..=PERMS.len()),
            any::<bool>(),
        )
            .prop_map(|(subject, at, perms, deny)| AclRule {
                rule_id: Uuid::now_v7(),
                subject: Subject::parse(subject).unwrap(),
                path: at,
                permissions: perms.into_iter().collect(),
                effect: if deny { Effect::Deny } else { Effect::Allow },
            })
    }

    /// Random entries closed under ancestors; an entry with children is a directory.
    fn arb_catalogue() -> impl Strategy<Value = BTreeMap<FilePath, Existing>> {
        prop::collection::vec((arb_path(1), any::<bool>()), 0..12).prop_map(|leaves| {
            let mut cat = BTreeMap::new();
            for (leaf, dir) in leaves {
                for ancestor in leaf.ancestors_and_self().filter(|p| !p.is_root()) {
                    let kind = if ancestor == leaf && !dir {
                        Existing::File
                    } else {
                        Existing::Dir
                    };
                    let slot = cat.entry(ancestor).or_insert(kind);
                    if kind == Existing::Dir {
                        *slot = Existing::Dir;
                    }
                }
            }
            cat
        })
    }

    /// The definition: every single-path decision over what each requirement covers.
    fn conjunction(
        index: &AclIndex,
        access: TreeAccess<'_>,
        cat: &BTreeMap<FilePath, Existing>,
    ) -> bool {
        let me = bob();
        let parent = access.target_parent();
        access.requirements(&parent).iter().all(|req| {
            let holds = |p: &FilePath| index.decide_any(&me, req.any_of, p).allowed;
            let below = || {
                cat.keys()
                    .filter(|e| req.path.contains(e) && *e != req.path)
                    .all(holds)
            };
            match req.reach {
                Reach::Path => holds(req.path),
                Reach::Subtree => holds(req.path) && below(),
                Reach::ReplacedDir => {
                    cat.get(req.path) != Some(&Existing::Dir) || (holds(req.path) && below())
                }
            }
        })
    }

    fn arb_access() -> impl Strategy<Value = (u8, FilePath, FilePath, bool)> {
        (0u8..3, arb_path(1), arb_path(1), any::<bool>())
    }

    proptest! {
        #[test]
        fn recursive_decision_is_the_conjunction_over_the_subtree(
            rules in prop::collection::vec(arb_rule(), 0..10),
            cat in arb_catalogue(),
            (kind, from, to, overwrite) in arb_access(),
        ) {
            let index = AclIndex::from_rules(rules);
            let access = match kind {
                0 => TreeAccess::Delete { path: &from },
                1 => TreeAccess::Move { from: &from, to: &to, overwrite },
                _ => TreeAccess::Copy { from: &from, to: &to, overwrite },
            };
            prop_assert_eq!(
                decide_with(&index, access, &cat).is_ok(),
                conjunction(&index, access, &cat)
            );
        }
    }
}
