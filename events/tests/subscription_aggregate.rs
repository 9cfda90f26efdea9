//! The subscription aggregate, one behaviour per test (cqrs-es `TestFramework`).

use std::collections::BTreeSet;

use cqrs_es::test::TestFramework;
use cqrs_es::DomainEvent;
use events::subscription::{
    Subscription, SubscriptionAggregate, SubscriptionCommand, SubscriptionError, SubscriptionEvent,
    MAX_ACTIVE_PER_TENANT, MAX_DISABLE_REASON_CHARS,
};
use events::{FilePath, Principal, TenantId};
use uuid::Uuid;

type Framework = TestFramework<SubscriptionAggregate>;

fn principal(roles: &[&str]) -> Principal {
    let roles = roles.iter().map(|r| r.to_string()).collect();
    Principal::new("root", TenantId::parse("acme").unwrap(), roles).unwrap()
}

fn admin() -> Principal {
    principal(&["admin"])
}

fn sub(n: u128) -> Subscription {
    Subscription {
        id: Uuid::from_u128(n),
        url: "https://hooks.example.com/x".into(),
        types: BTreeSet::from(["dir.created".to_owned()]),
        path_prefix: FilePath::parse("/reports").unwrap(),
    }
}

fn created(n: u128) -> SubscriptionEvent {
    SubscriptionEvent::Created {
        subscription: sub(n),
        by: "root".into(),
    }
}

fn deleted(n: u128) -> SubscriptionEvent {
    SubscriptionEvent::Deleted {
        id: Uuid::from_u128(n),
        path_prefix: FilePath::parse("/reports").unwrap(),
        by: "root".into(),
    }
}

fn disabled(n: u128, reason: &str) -> SubscriptionEvent {
    SubscriptionEvent::Disabled {
        id: Uuid::from_u128(n),
        path_prefix: FilePath::parse("/reports").unwrap(),
        reason: reason.into(),
    }
}

fn create(n: u128, principal: Principal) -> SubscriptionCommand {
    SubscriptionCommand::Create {
        subscription: sub(n),
        principal,
    }
}

#[test]
fn admin_creates_a_subscription() {
    Framework::with(())
        .given_no_previous_events()
        .when(create(1, admin()))
        .then_expect_events(vec![created(1)]);
}

#[test]
fn non_admin_cannot_create() {
    Framework::with(())
        .given_no_previous_events()
        .when(create(1, principal(&["auditor"])))
        .then_expect_error(SubscriptionError::NotAdmin);
}

#[test]
fn an_id_cannot_be_reused_even_after_deletion() {
    Framework::with(())
        .given(vec![created(1), deleted(1)])
        .when(create(1, admin()))
        .then_expect_error(SubscriptionError::Duplicate);
}

#[test]
fn a_tenant_has_a_bounded_number_of_subscriptions() {
    let full: Vec<SubscriptionEvent> = (0..MAX_ACTIVE_PER_TENANT as u128).map(created).collect();
    Framework::with(())
        .given(full)
        .when(create(1_000, admin()))
        .then_expect_error(SubscriptionError::TooMany);
}

#[test]
fn deleted_subscriptions_free_their_place() {
    let mut history: Vec<SubscriptionEvent> =
        (0..MAX_ACTIVE_PER_TENANT as u128).map(created).collect();
    history.push(deleted(0));
    Framework::with(())
        .given(history)
        .when(create(1_000, admin()))
        .then_expect_events(vec![created(1_000)]);
}

#[test]
fn admin_deletes_recording_the_prefix() {
    Framework::with(())
        .given(vec![created(1)])
        .when(SubscriptionCommand::Delete {
            id: Uuid::from_u128(1),
            principal: admin(),
        })
        .then_expect_events(vec![deleted(1)]);
}

#[test]
fn deleting_an_unknown_or_deleted_subscription_is_not_found() {
    for history in [vec![], vec![created(1), deleted(1)]] {
        Framework::with(())
            .given(history)
            .when(SubscriptionCommand::Delete {
                id: Uuid::from_u128(1),
                principal: admin(),
            })
            .then_expect_error(SubscriptionError::NotFound);
    }
}

#[test]
fn a_disabled_subscription_can_still_be_deleted() {
    Framework::with(())
        .given(vec![created(1), disabled(1, "gone")])
        .when(SubscriptionCommand::Delete {
            id: Uuid::from_u128(1),
            principal: admin(),
        })
        .then_expect_events(vec![deleted(1)]);
}

#[test]
fn non_admin_cannot_delete() {
    Framework::with(())
        .given(vec![created(1)])
        .when(SubscriptionCommand::Delete {
            id: Uuid::from_u128(1),
            principal: principal(&[]),
        })
        .then_expect_error(SubscriptionError::NotAdmin);
}

#[test]
fn the_notifier_disables_an_active_subscription() {
    Framework::with(())
        .given(vec![created(1)])
        .when(SubscriptionCommand::Disable {
            id: Uuid::from_u128(1),
            reason: "failing for 24 h".into(),
        })
        .then_expect_events(vec![disabled(1, "failing for 24 h")]);
}

#[test]
fn disabling_twice_or_after_deletion_records_nothing() {
    for history in [
        vec![created(1), disabled(1, "x")],
        vec![created(1), deleted(1)],
        vec![],
    ] {
        Framework::with(())
            .given(history)
            .when(SubscriptionCommand::Disable {
                id: Uuid::from_u128(1),
                reason: "again".into(),
            })
            .then_expect_events(vec![]);
    }
}

#[test]
fn long_disable_reasons_are_cut() {
    let long = "x".repeat(MAX_DISABLE_REASON_CHARS + 50);
    Framework::with(())
        .given(vec![created(1)])
        .when(SubscriptionCommand::Disable {
            id: Uuid::from_u128(1),
            reason: long.clone(),
        })
        .then_expect_events(vec![disabled(1, &long[..MAX_DISABLE_REASON_CHARS])]);
}

#[test]
fn event_names_and_round_trip() {
    assert_eq!(created(1).event_type(), "subscription.created");
    assert_eq!(deleted(1).event_type(), "subscription.deleted");
    assert_eq!(disabled(1, "r").event_type(), "subscription.disabled");
    let json = serde_json::to_value(created(1)).unwrap();
    assert!(json.to_string().contains("hooks.example.com"));
    assert!(!json.to_string().contains("secret"));
    let back: SubscriptionEvent = serde_json::from_value(json).unwrap();
    assert_eq!(back, created(1));
}
