//! One test per rule of API.md "Authorization (ACL)": how `AclIndex` evaluates rules
//! (inheritance, deny precedence, subjects, permissions) and how it stores them.

use std::collections::BTreeSet;

use events::acl::{AclDecision, AclIndex, AclRule, Effect, Permission, Subject};
use events::{FilePath, Principal, TenantId};
use uuid::Uuid;

fn p(s: &str) -> FilePath {
    FilePath::parse(s).unwrap()
}

fn principal(sub: &str, roles: &[&str]) -> Principal {
    let roles = roles.iter().map(|r| r.to_string()).collect();
    Principal::new(sub, TenantId::parse("acme").unwrap(), roles).unwrap()
}

fn bob() -> Principal {
    principal("bob", &["editors"])
}

fn rule(n: u128, subject: &str, path: &str, perms: &[Permission], effect: Effect) -> AclRule {
    AclRule {
        rule_id: Uuid::from_u128(n),
        subject: Subject::parse(subject).unwrap(),
        path: p(path),
        permissions: perms.iter().copied().collect::<BTreeSet<_>>(),
        effect,
    }
}

fn allow(n: u128, subject: &str, path: &str, perms: &[Permission]) -> AclRule {
    rule(n, subject, path, perms, Effect::Allow)
}

fn deny(n: u128, subject: &str, path: &str, perms: &[Permission]) -> AclRule {
    rule(n, subject, path, perms, Effect::Deny)
}

fn ids(ns: &[u128]) -> Vec<Uuid> {
    ns.iter().map(|n| Uuid::from_u128(*n)).collect()
}

use Permission::*;

// ---- evaluation -------------------------------------------------------------------------

#[test]
fn no_rule_means_deny() {
    let d = AclIndex::new().decide(&bob(), Read, &p("/a"));
    assert_eq!(
        d,
        AclDecision {
            allowed: false,
            rule_ids: vec![]
        }
    );
}

#[test]
fn rule_applies_to_its_path_and_everything_below() {
    let index = AclIndex::from_rules([allow(1, "user:bob", "/a", &[Read])]);
    for path in ["/a", "/a/b", "/a/b/c/d"] {
        let d = index.decide(&bob(), Read, &p(path));
        assert_eq!(
            d,
            AclDecision {
                allowed: true,
                rule_ids: ids(&[1])
            },
            "{path}"
        );
    }
}

#[test]
fn rule_does_not_apply_above_or_beside_its_path() {
    let index = AclIndex::from_rules([allow(1, "user:bob", "/a/b", &[Read])]);
    for path in ["/", "/a", "/a/bc", "/ab", "/x/a/b"] {
        assert!(!index.decide(&bob(), Read, &p(path)).allowed, "{path}");
    }
}

#[test]
fn root_rule_covers_everything() {
    let index = AclIndex::from_rules([allow(1, "*", "/", &[List])]);
    assert!(index.decide(&bob(), List, &p("/")).allowed);
    assert!(index.decide(&bob(), List, &p("/deep/er")).allowed);
}

#[test]
fn each_permission_grants_only_itself() {
    for granted in Permission::ALL {
        let index = AclIndex::from_rules([allow(1, "user:bob", "/a", &[granted])]);
        for asked in Permission::ALL {
            let allowed = index.decide(&bob(), asked, &p("/a/x")).allowed;
            assert_eq!(
                allowed,
                asked == granted,
                "granted {granted}, asked {asked}"
            );
        }
    }
}

#[test]
fn deny_on_ancestor_beats_allow_on_descendant() {
    let index = AclIndex::from_rules([
        deny(1, "user:bob", "/a", &[Read]),
        allow(2, "user:bob", "/a/b/c", &[Read]),
    ]);
    let d = index.decide(&bob(), Read, &p("/a/b/c/d"));
    assert_eq!(
        d,
        AclDecision {
            allowed: false,
            rule_ids: ids(&[1])
        }
    );
}

#[test]
fn deny_on_descendant_beats_allow_on_ancestor() {
    let index = AclIndex::from_rules([
        allow(1, "*", "/", &[Read]),
        deny(2, "role:editors", "/a/b", &[Read]),
    ]);
    assert!(index.decide(&bob(), Read, &p("/a")).allowed);
    let d = index.decide(&bob(), Read, &p("/a/b/x"));
    assert_eq!(
        d,
        AclDecision {
            allowed: false,
            rule_ids: ids(&[2])
        }
    );
}

#[test]
fn deny_of_another_permission_does_not_interfere() {
    let index = AclIndex::from_rules([
        allow(1, "user:bob", "/a", &[Read]),
        deny(2, "user:bob", "/a", &[Write]),
    ]);
    assert!(index.decide(&bob(), Read, &p("/a")).allowed);
    assert!(!index.decide(&bob(), Write, &p("/a")).allowed);
}

#[test]
fn decision_lists_all_deciding_rules_root_first() {
    let index = AclIndex::from_rules([
        allow(9, "user:bob", "/a/b", &[Read]),
        allow(5, "*", "/a", &[Read, Write]),
        allow(3, "role:editors", "/a/b", &[Read]),
        deny(4, "user:alice", "/a", &[Read]),
    ]);
    let d = index.decide(&bob(), Read, &p("/a/b/c"));
    assert_eq!(
        d,
        AclDecision {
            allowed: true,
            rule_ids: ids(&[5, 3, 9])
        }
    );
}

#[test]
fn user_subject_matches_only_that_user() {
    let index = AclIndex::from_rules([allow(1, "user:bob", "/", &[Read])]);
    assert!(index.decide(&bob(), Read, &p("/x")).allowed);
    assert!(
        !index
            .decide(&principal("alice", &["editors"]), Read, &p("/x"))
            .allowed
    );
}

#[test]
fn role_subject_matches_holders_of_the_role() {
    let index = AclIndex::from_rules([allow(1, "role:editors", "/", &[Read])]);
    assert!(index.decide(&bob(), Read, &p("/x")).allowed);
    assert!(
        index
            .decide(&principal("carol", &["x", "editors"]), Read, &p("/x"))
            .allowed
    );
    assert!(
        !index
            .decide(&principal("dave", &[]), Read, &p("/x"))
            .allowed
    );
}

#[test]
fn role_named_like_a_user_does_not_match_the_user() {
    let index = AclIndex::from_rules([allow(1, "role:bob", "/", &[Read])]);
    assert!(!index.decide(&principal("bob", &[]), Read, &p("/x")).allowed);
}

#[test]
fn everyone_subject_matches_any_principal() {
    let index = AclIndex::from_rules([allow(1, "*", "/pub", &[Read])]);
    assert!(
        index
            .decide(&principal("anyone", &[]), Read, &p("/pub/f"))
            .allowed
    );
}

#[test]
fn admin_role_is_not_a_bypass_in_pure_evaluation() {
    let index = AclIndex::from_rules([deny(1, "*", "/", &[Read])]);
    assert!(
        !index
            .decide(&principal("root", &["admin"]), Read, &p("/x"))
            .allowed
    );
}

#[test]
fn decide_for_subject_user_sees_user_and_everyone_rules() {
    let index = AclIndex::from_rules([
        allow(1, "user:bob", "/a", &[Read]),
        allow(2, "*", "/b", &[Read]),
        allow(3, "role:editors", "/c", &[Read]),
    ]);
    let bob = Subject::parse("user:bob").unwrap();
    assert!(index.decide_for_subject(&bob, Read, &p("/a")).allowed);
    assert!(index.decide_for_subject(&bob, Read, &p("/b")).allowed);
    assert!(!index.decide_for_subject(&bob, Read, &p("/c")).allowed);
}

#[test]
fn decide_for_subject_role_sees_role_and_everyone_rules() {
    let index = AclIndex::from_rules([
        allow(1, "user:bob", "/a", &[Read]),
        deny(2, "*", "/b", &[Read]),
        allow(3, "role:editors", "/", &[Read]),
    ]);
    let editors = Subject::parse("role:editors").unwrap();
    let d = index.decide_for_subject(&editors, Read, &p("/a"));
    assert_eq!(
        d,
        AclDecision {
            allowed: true,
            rule_ids: ids(&[3])
        }
    );
    let d = index.decide_for_subject(&editors, Read, &p("/b"));
    assert_eq!(
        d,
        AclDecision {
            allowed: false,
            rule_ids: ids(&[2])
        }
    );
    let everyone = Subject::Everyone;
    assert!(!index.decide_for_subject(&everyone, Read, &p("/a")).allowed);
}

#[test]
fn remove_and_replace_rules() {
    let mut index = AclIndex::from_rules([allow(1, "user:bob", "/a", &[Read])]);
    assert_eq!(index.len(), 1);
    index.insert(allow(1, "user:bob", "/b", &[Read]));
    assert_eq!(index.len(), 1);
    assert!(!index.decide(&bob(), Read, &p("/a")).allowed);
    assert!(index.decide(&bob(), Read, &p("/b")).allowed);
    assert_eq!(
        index.remove(Uuid::from_u128(1)).map(|r| r.path),
        Some(p("/b"))
    );
    assert!(index.is_empty());
    assert!(!index.decide(&bob(), Read, &p("/b")).allowed);
    assert_eq!(index.remove(Uuid::from_u128(1)), None);
}

#[test]
fn rules_are_listed_by_path_then_id_and_serialise_as_a_list() {
    let index = AclIndex::from_rules([
        allow(3, "*", "/b", &[Read]),
        allow(2, "*", "/a", &[Read]),
        allow(1, "*", "/b", &[Read]),
    ]);
    let order: Vec<Uuid> = index.rules().map(|r| r.rule_id).collect();
    assert_eq!(order, ids(&[2, 1, 3]));
    let json = serde_json::to_value(&index).unwrap();
    assert_eq!(json.as_array().map(Vec::len), Some(3));
    let back: AclIndex = serde_json::from_value(json).unwrap();
    assert_eq!(back, index);
    assert_eq!(
        back.get(Uuid::from_u128(3)).map(|r| &r.path),
        Some(&p("/b"))
    );
}
