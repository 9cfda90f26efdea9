//! The ACL aggregate, one behaviour per test (cqrs-es `TestFramework`), and the
//! point-in-time fold `rules_as_of`.

use std::collections::BTreeSet;

use chrono::{DateTime, TimeZone, Utc};
use cqrs_es::test::TestFramework;
use cqrs_es::{Aggregate, DomainEvent};
use events::acl::{
    rules_as_of, AclAggregate, AclCommand, AclError, AclEvent, AclRule, Effect, Permission, Subject,
};
use events::{FilePath, Principal, TenantId};
use uuid::Uuid;

type Framework = TestFramework<AclAggregate>;

fn admin() -> Principal {
    Principal::new(
        "root",
        TenantId::parse("acme").unwrap(),
        vec!["admin".into()],
    )
    .unwrap()
}

fn bob() -> Principal {
    Principal::new(
        "bob",
        TenantId::parse("acme").unwrap(),
        vec!["auditor".into()],
    )
    .unwrap()
}

fn rule(n: u128, path: &str) -> AclRule {
    AclRule {
        rule_id: Uuid::from_u128(n),
        subject: Subject::User("bob".into()),
        path: FilePath::parse(path).unwrap(),
        permissions: BTreeSet::from([Permission::Read]),
        effect: Effect::Allow,
    }
}

fn granted(n: u128, path: &str) -> AclEvent {
    AclEvent::RuleGranted {
        rule: rule(n, path),
        by: "root".into(),
    }
}

fn revoked(n: u128, path: &str) -> AclEvent {
    AclEvent::RuleRevoked {
        rule_id: Uuid::from_u128(n),
        path: FilePath::parse(path).unwrap(),
        by: "root".into(),
    }
}

#[test]
fn admin_grants_a_rule() {
    Framework::with(())
        .given_no_previous_events()
        .when(AclCommand::Grant {
            rule: rule(1, "/a"),
            principal: admin(),
        })
        .then_expect_events(vec![granted(1, "/a")]);
}

#[test]
fn non_admin_cannot_grant() {
    Framework::with(())
        .given_no_previous_events()
        .when(AclCommand::Grant {
            rule: rule(1, "/a"),
            principal: bob(),
        })
        .then_expect_error(AclError::NotAdmin);
}

#[test]
fn granting_an_existing_rule_id_is_a_duplicate() {
    Framework::with(())
        .given(vec![granted(1, "/a")])
        .when(AclCommand::Grant {
            rule: rule(1, "/b"),
            principal: admin(),
        })
        .then_expect_error(AclError::DuplicateRule);
}

#[test]
fn admin_revokes_a_rule_recording_its_path() {
    Framework::with(())
        .given(vec![granted(1, "/a/b")])
        .when(AclCommand::Revoke {
            rule_id: Uuid::from_u128(1),
            principal: admin(),
        })
        .then_expect_events(vec![revoked(1, "/a/b")]);
}

#[test]
fn revoking_an_unknown_rule_is_not_found() {
    Framework::with(())
        .given(vec![granted(1, "/a")])
        .when(AclCommand::Revoke {
            rule_id: Uuid::from_u128(2),
            principal: admin(),
        })
        .then_expect_error(AclError::RuleNotFound);
}

#[test]
fn revoking_a_revoked_rule_is_not_found() {
    Framework::with(())
        .given(vec![granted(1, "/a"), revoked(1, "/a")])
        .when(AclCommand::Revoke {
            rule_id: Uuid::from_u128(1),
            principal: admin(),
        })
        .then_expect_error(AclError::RuleNotFound);
}

#[test]
fn non_admin_cannot_revoke() {
    Framework::with(())
        .given(vec![granted(1, "/a")])
        .when(AclCommand::Revoke {
            rule_id: Uuid::from_u128(1),
            principal: bob(),
        })
        .then_expect_error(AclError::NotAdmin);
}

#[test]
fn a_revoked_rule_id_can_be_granted_again() {
    Framework::with(())
        .given(vec![granted(1, "/a"), revoked(1, "/a")])
        .when(AclCommand::Grant {
            rule: rule(1, "/a"),
            principal: admin(),
        })
        .then_expect_events(vec![granted(1, "/a")]);
}

#[test]
fn applied_events_change_decisions() {
    let mut acl = AclAggregate::default();
    let path = FilePath::parse("/a/x").unwrap();
    acl.apply(granted(1, "/a"));
    assert!(acl.index().decide(&bob(), Permission::Read, &path).allowed);
    acl.apply(revoked(1, "/a"));
    assert!(!acl.index().decide(&bob(), Permission::Read, &path).allowed);
}

#[test]
fn aggregate_state_round_trips_through_json() {
    let mut acl = AclAggregate::default();
    acl.apply(granted(1, "/a"));
    acl.apply(granted(2, "/b"));
    let back: AclAggregate = serde_json::from_str(&serde_json::to_string(&acl).unwrap()).unwrap();
    assert_eq!(back, acl);
    assert_eq!(back.index().len(), 2);
}

#[test]
fn event_types_and_versions() {
    assert_eq!(granted(1, "/a").event_type(), "acl.rule_granted");
    assert_eq!(revoked(1, "/a").event_type(), "acl.rule_revoked");
    assert_eq!(granted(1, "/a").event_version(), "1");
    assert_eq!(AclAggregate::TYPE, "acl");
}

fn at(minute: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 1, 1, 12, minute, 0).unwrap()
}

#[test]
fn rules_as_of_sees_only_events_up_to_the_instant() {
    let log = vec![
        (at(1), granted(1, "/a")),
        (at(2), granted(2, "/b")),
        (at(3), revoked(1, "/a")),
    ];
    let path_a = FilePath::parse("/a").unwrap();
    let before = rules_as_of(log.clone(), at(0));
    assert!(before.is_empty());
    let during = rules_as_of(log.clone(), at(2));
    assert_eq!(during.len(), 2);
    assert!(during.decide(&bob(), Permission::Read, &path_a).allowed);
    let after = rules_as_of(log, at(3));
    assert_eq!(after.len(), 1);
    assert!(!after.decide(&bob(), Permission::Read, &path_a).allowed);
}
