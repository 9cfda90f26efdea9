//! Property test: `AclIndex::decide` agrees with a deliberately naive reference model (a
//! linear scan over every rule, matching paths by string prefix on segment boundaries) on
//! random rule sets, principals, permissions and paths. Alphabets are tiny so that rules
//! collide, overlap and contradict each other often.

use std::collections::BTreeSet;

use events::acl::{AclDecision, AclIndex, AclRule, Effect, Permission, Subject};
use events::{FilePath, Principal, TenantId};
use proptest::prelude::*;
use uuid::Uuid;

/// The API.md rule, written as plainly as possible.
fn reference_decide(
    rules: &[AclRule],
    applies: impl Fn(&Subject) -> bool,
    permission: Permission,
    path: &str,
) -> AclDecision {
    let covers = |rule_path: &str| {
        rule_path == "/" || path == rule_path || path.starts_with(&format!("{rule_path}/"))
    };
    let mut matching: Vec<&AclRule> = rules
        .iter()
        .filter(|r| covers(r.path.as_str()))
        .filter(|r| applies(&r.subject))
        .filter(|r| r.permissions.contains(&permission))
        .collect();
    // The index reports root-first, then by rule id.
    matching.sort_by_key(|r| (r.path.depth(), r.rule_id));
    let of = |effect: Effect| -> Vec<Uuid> {
        matching
            .iter()
            .filter(|r| r.effect == effect)
            .map(|r| r.rule_id)
            .collect()
    };
    let denies = of(Effect::Deny);
    if !denies.is_empty() {
        return AclDecision {
            allowed: false,
            rule_ids: denies,
        };
    }
    let allows = of(Effect::Allow);
    AclDecision {
        allowed: !allows.is_empty(),
        rule_ids: allows,
    }
}

fn path() -> impl Strategy<Value = FilePath> {
    prop::collection::vec(prop::sample::select(vec!["a", "b", "ab"]), 0..4)
        .prop_map(|segs| FilePath::parse(&format!("/{}", segs.join("/"))).unwrap())
}

fn name() -> impl Strategy<Value = String> {
    prop::sample::select(vec!["x", "y", "z"]).prop_map(str::to_owned)
}

fn subject() -> impl Strategy<Value = Subject> {
    prop_oneof![
        name().prop_map(Subject::User),
        name().prop_map(Subject::Role),
        Just(Subject::Everyone),
    ]
}

fn permission() -> impl Strategy<Value = Permission> {
    prop::sample::select(Permission::ALL.to_vec())
}

fn rules() -> impl Strategy<Value = Vec<AclRule>> {
    let rule = (
        subject(),
        path(),
        prop::collection::btree_set(permission(), 1..4),
        prop::bool::ANY,
    );
    prop::collection::vec(rule, 0..25).prop_map(|raw| {
        raw.into_iter()
            .enumerate()
            .map(|(i, (subject, path, permissions, deny))| AclRule {
                // Ids in reverse of insertion order, so sorting by id is actually exercised.
                rule_id: Uuid::from_u128(1000 - i as u128),
                subject,
                path,
                permissions: permissions.into_iter().collect::<BTreeSet<_>>(),
                effect: if deny { Effect::Deny } else { Effect::Allow },
            })
            .collect()
    })
}

fn principal() -> impl Strategy<Value = Principal> {
    (name(), prop::collection::vec(name(), 0..3))
        .prop_map(|(sub, roles)| Principal::new(sub, TenantId::parse("t").unwrap(), roles).unwrap())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn decide_agrees_with_reference(
        rules in rules(),
        removed in prop::collection::vec(0usize..25, 0..5),
        who in principal(),
        permission in permission(),
        path in path(),
    ) {
        let mut index = AclIndex::from_rules(rules.clone());
        let mut kept = rules;
        for i in removed {
            if i < kept.len() {
                let gone = kept.remove(i);
                prop_assert_eq!(index.remove(gone.rule_id), Some(gone));
            }
        }
        prop_assert_eq!(index.len(), kept.len());
        let expected = reference_decide(
            &kept,
            |s| match s {
                Subject::User(u) => *u == who.subject,
                Subject::Role(r) => who.roles.contains(r),
                Subject::Everyone => true,
            },
            permission,
            path.as_str(),
        );
        prop_assert_eq!(index.decide(&who, permission, &path), expected);
    }

    #[test]
    fn decide_for_subject_agrees_with_reference(
        rules in rules(),
        asked in subject(),
        permission in permission(),
        path in path(),
    ) {
        let index = AclIndex::from_rules(rules.clone());
        let expected = reference_decide(
            &rules,
            |s| *s == Subject::Everyone || *s == asked,
            permission,
            path.as_str(),
        );
        prop_assert_eq!(index.decide_for_subject(&asked, permission, &path), expected);
    }
}
