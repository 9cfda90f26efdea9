//! Unit tests of the public event mapping: one per event shape, plus ids, types and errors.

use super::*;
use crate::acl::{AclRule, Effect, Permission, Subject};
use crate::task::{FileCommand, TaskFailure, TaskSpec, UploadSpec};
use crate::FilePath;
use serde_json::json;

const TASK: &str = "0190a0b0-0000-7000-8000-000000000001";

fn tenant() -> TenantId {
    TenantId::parse("acme").unwrap()
}

fn map_with(event: &impl Serialize, agg: &str, name: &str, path: Option<&str>) -> CloudEvent {
    let tenant = tenant();
    let ctx = EventContext {
        seq: 7,
        logseq: 42,
        index: 1,
        time: DateTime::from_timestamp(1_700_000_000, 5).unwrap(),
        tenant: &tenant,
        principal: "alice",
        actor: "system:worker",
        traceparent: Some("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"),
    };
    let payload = serde_json::to_value(event).unwrap();
    let id = format!("acme.{TASK}");
    let ev = LogEvent {
        aggregate_type: agg,
        aggregate_id: &id,
        event_type: name,
        event_version: "1",
        payload: &payload,
    };
    cloud_event(&ev, &ctx, path).unwrap()
}

fn task(event: TaskEvent) -> CloudEvent {
    let name = event.name();
    map_with(&event, "task", name, None)
}

fn p(s: &str) -> FilePath {
    FilePath::parse(s).unwrap()
}

fn upload() -> UploadSpec {
    UploadSpec {
        path: p("/r/q1.pdf"),
        upload_id: Uuid::nil(),
        size: 12,
        sha256: "ab".repeat(32),
        content_type: "application/pdf".into(),
    }
}

#[test]
fn envelope_carries_the_extensions_and_a_deterministic_id() {
    let ev = task(TaskEvent::DirCreated {
        path: p("/a"),
        parents: true,
    });
    assert_eq!(ev.specversion, "1.0");
    assert_eq!(ev.event_type, "io.file-engine.dir.created.v1");
    assert_eq!(ev.source, "/tenants/acme");
    assert_eq!(ev.tenant, "acme");
    assert_eq!(ev.principal, "alice");
    assert_eq!(ev.actor, "system:worker");
    assert_eq!((ev.seq, ev.logseq), (7, 42));
    assert_eq!(ev.datacontenttype, "application/json");
    assert_eq!(ev.id, event_id(42, 1));
    // 1_700_000_000 s + 5 ns: sub-microsecond digits are dropped.
    assert_eq!(ev.time, DateTime::from_timestamp(1_700_000_000, 0).unwrap());
    assert_ne!(event_id(42, 1), event_id(42, 0));
    assert_ne!(event_id(42, 1), event_id(421, 0));
    let json = serde_json::to_value(&ev).unwrap();
    assert_eq!(json["type"], "io.file-engine.dir.created.v1");
    assert!(json["traceparent"].as_str().unwrap().starts_with("00-0af7"));
    assert_eq!(serde_json::from_value::<CloudEvent>(json).unwrap(), ev);
}

#[test]
fn dir_created_and_deleted() {
    let ev = task(TaskEvent::DirCreated {
        path: p("/a/b"),
        parents: true,
    });
    assert_eq!(ev.subject, "/a/b");
    assert_eq!(
        ev.data,
        json!({"task_id": TASK, "path": "/a/b", "parents": true})
    );
    let ev = task(TaskEvent::EntryDeleted {
        within: None,
        path: p("/a"),
        recursive: false,
    });
    assert_eq!(ev.subject, "/a");
    assert_eq!(
        ev.data,
        json!({"task_id": TASK, "path": "/a", "recursive": false})
    );
}

#[test]
fn moves_and_copies_have_the_source_as_subject_and_data_to_as_target() {
    for (ev, short) in [
        (
            TaskEvent::EntryMoved {
                within: None,
                from: p("/a/x"),
                to: p("/b/x"),
                overwrite: false,
            },
            "entry.moved",
        ),
        (
            TaskEvent::EntryCopied {
                within: None,
                from: p("/a/x"),
                to: p("/b/x"),
                overwrite: true,
            },
            "entry.copied",
        ),
    ] {
        let overwrite = matches!(ev, TaskEvent::EntryCopied { .. });
        let ev = task(ev);
        assert_eq!(ev.short_type(), Some(short));
        assert_eq!(ev.subject, "/a/x");
        assert_eq!(ev.target(), Some("/b/x"));
        assert_eq!(
            ev.data,
            json!({"task_id": TASK, "from": "/a/x", "to": "/b/x", "overwrite": overwrite})
        );
    }
}

#[test]
fn file_events_show_the_upload_without_internal_ids() {
    let ev = task(TaskEvent::FileUploaded { upload: upload() });
    assert_eq!(ev.subject, "/r/q1.pdf");
    assert_eq!(ev.data["size"], 12);
    assert!(ev.data.get("upload_id").is_none());
    let ev = task(TaskEvent::FileAvailable {
        upload: upload(),
        version: "v2".into(),
        previous_version: None,
    });
    assert_eq!(
        ev.data,
        json!({"task_id": TASK, "path": "/r/q1.pdf", "size": 12, "sha256": "ab".repeat(32),
               "content_type": "application/pdf", "version": "v2", "previous_version": null})
    );
    let ev = task(TaskEvent::FileQuarantined {
        upload: upload(),
        signature: Some("Eicar".into()),
    });
    assert_eq!(ev.subject, "/r/q1.pdf");
    assert_eq!(ev.data["signature"], "Eicar");
}

#[test]
fn pathless_task_events_use_the_task_path_when_known_else_root() {
    let failed = TaskEvent::TaskFailed {
        error: TaskFailure::new("not_found", "no such entry"),
    };
    let ev = task(failed.clone());
    assert_eq!(ev.subject, "/");
    assert_eq!(
        ev.data,
        json!({"task_id": TASK, "error": {"code": "not_found", "message": "no such entry"}})
    );
    let ev = map_with(&failed, "task", "task.failed", Some("/a/x"));
    assert_eq!(ev.subject, "/a/x");
    let ev = task(TaskEvent::TaskDeadLettered {
        error: TaskFailure::new("timeout", "t"),
        attempts: 5,
    });
    assert_eq!(ev.data["attempts"], 5);
    assert_eq!(ev.data["error"]["code"], "timeout");
    assert_eq!(
        task(TaskEvent::TaskSucceeded).data,
        json!({"task_id": TASK})
    );
    assert_eq!(
        task(TaskEvent::TaskStarted { attempt: 2 }).data["attempt"],
        2
    );
    assert_eq!(
        task(TaskEvent::TaskRetried { by: "root".into() }).data["by"],
        "root"
    );
    let scanned = task(TaskEvent::FileScanned {
        clean: false,
        signature: Some("S".into()),
    });
    assert_eq!(
        scanned.data,
        json!({"task_id": TASK, "clean": false, "signature": "S"})
    );
}

#[test]
fn task_requested_flattens_the_command() {
    let ev = task(TaskEvent::TaskRequested {
        task_id: Uuid::parse_str(TASK).unwrap(),
        tenant: tenant(),
        principal: "alice".into(),
        roles: vec![],
        spec: TaskSpec::Command(FileCommand::Move {
            from: p("/a"),
            to: p("/b"),
            overwrite: false,
        }),
        idempotency_key: Some("k1".into()),
        body_hash: Some("h".into()),
        requested_at: DateTime::from_timestamp(1_700_000_000, 0).unwrap(),
    });
    assert_eq!(ev.subject, "/a");
    assert_eq!(ev.target(), Some("/b"));
    assert_eq!(
        ev.data,
        json!({"task_id": TASK, "op": "move", "from": "/a", "to": "/b", "overwrite": false,
               "requested_at": "2023-11-14T22:13:20Z"})
    );
}

#[test]
fn acl_events_have_the_rule_path_as_subject() {
    let rule = AclRule {
        rule_id: Uuid::nil(),
        subject: Subject::User("bob".into()),
        path: p("/shared"),
        permissions: [Permission::Read, Permission::List].into(),
        effect: Effect::Allow,
    };
    let ev = map_with(
        &AclEvent::RuleGranted {
            rule,
            by: "root".into(),
        },
        "acl",
        "acl.rule_granted",
        None,
    );
    assert_eq!(ev.subject, "/shared");
    assert_eq!(
        ev.data,
        json!({"rule_id": Uuid::nil(), "subject": "user:bob", "path": "/shared",
               "permissions": ["list", "read"], "effect": "allow"})
    );
    let revoked = AclEvent::RuleRevoked {
        rule_id: Uuid::nil(),
        path: p("/shared"),
        by: "root".into(),
    };
    let ev = map_with(&revoked, "acl", "acl.rule_revoked", None);
    assert_eq!(ev.data, json!({"rule_id": Uuid::nil(), "path": "/shared"}));
}

#[test]
fn to_cloud_event_maps_current_payloads() {
    let tenant = tenant();
    let ctx = EventContext {
        seq: 1,
        logseq: 1,
        index: 0,
        time: DateTime::from_timestamp(0, 0).unwrap(),
        tenant: &tenant,
        principal: "p",
        actor: "p",
        traceparent: None,
    };
    let payload = json!({"DirCreated": {"path": "/a", "parents": false}});
    let id = format!("acme.{TASK}");
    let ev = to_cloud_event("task", &id, "dir.created", &payload, &ctx).unwrap();
    assert_eq!(ev.subject, "/a");
    assert!(serde_json::to_value(&ev)
        .unwrap()
        .get("traceparent")
        .is_none());
    let unit =
        to_cloud_event("task", &id, "task.succeeded", &json!("TaskSucceeded"), &ctx).unwrap();
    assert_eq!(unit.subject, "/");
}

#[test]
fn bad_inputs_are_errors_not_panics() {
    let tenant = tenant();
    let ctx = EventContext {
        seq: 1,
        logseq: 1,
        index: 0,
        time: DateTime::from_timestamp(0, 0).unwrap(),
        tenant: &tenant,
        principal: "p",
        actor: "p",
        traceparent: None,
    };
    let id = format!("acme.{TASK}");
    let dir = json!({"DirCreated": {"path": "/a", "parents": false}});
    let err = |agg: &str, id: &str, ty: &str, payload: &Value| {
        to_cloud_event(agg, id, ty, payload, &ctx).unwrap_err()
    };
    assert!(matches!(
        err("task", &id, "entry.moved", &dir),
        PublicEventError::TypeMismatch { .. }
    ));
    assert!(matches!(
        err("blob", &id, "Blob Made", &dir),
        PublicEventError::UnknownAggregate(_)
    ));
    assert_eq!(
        err("task", "acme.nope", "dir.created", &dir),
        PublicEventError::InvalidTaskId
    );
    let bad_path = json!({"DirCreated": {"path": "/../x", "parents": false}});
    assert!(matches!(
        err("task", &id, "dir.created", &bad_path),
        PublicEventError::Payload { .. }
    ));
    assert!(matches!(
        err("task", &id, "dir.created", &json!(7)),
        PublicEventError::Payload { .. }
    ));
}

#[test]
fn types_and_public_list() {
    assert_eq!(
        short_type("io.file-engine.dir.created.v1"),
        Some("dir.created")
    );
    assert_eq!(
        short_type(&full_type("acl.rule_revoked")),
        Some("acl.rule_revoked")
    );
    for bad in [
        "dir.created",
        "io.file-engine..v1",
        "io.file-engine.dir.created.v2",
        "",
    ] {
        assert_eq!(short_type(bad), None, "{bad:?}");
    }
    assert_eq!(PUBLIC_TYPES.len(), 11);
    assert!(PUBLIC_TYPES
        .iter()
        .all(|t| is_public(t) && ALL_TYPES.contains(t)));
    assert!(!is_public("task.requested") && !is_public("task.succeeded"));
}

#[test]
fn events_of_unmodelled_aggregates_pass_through() {
    let payload = json!({"path": "/x", "size": 3});
    let ev = map_with(&payload, "quota", "quota.exceeded", None);
    assert_eq!(ev.short_type(), Some("quota.exceeded"));
    assert_eq!(ev.subject, "/x");
    assert_eq!(ev.data, payload);
    let ev = map_with(&json!({"path": "../x"}), "quota", "quota.raised", None);
    assert_eq!(ev.subject, "/");
}

#[test]
fn subscription_events_never_show_the_target_url() {
    let created = json!({"Created": {"subscription": {"id": Uuid::nil(),
        "url": "https://hooks.example.com/secret-token", "types": ["dir.created"],
        "path_prefix": "/p"}, "by": "root"}});
    let ev = map_with(&created, "subscription", "subscription.created", None);
    assert_eq!(ev.subject, "/p");
    assert_eq!(
        ev.data,
        json!({"subscription_id": Uuid::nil(), "types": ["dir.created"], "path_prefix": "/p"})
    );
    assert!(!serde_json::to_string(&ev).unwrap().contains("secret-token"));
    let disabled = json!({"Disabled": {"id": Uuid::nil(), "path_prefix": "/", "reason": "r"}});
    let ev = map_with(&disabled, "subscription", "subscription.disabled", None);
    assert_eq!(ev.data["reason"], "r");
}

#[test]
fn principal_is_who_asked_and_actor_who_acted() {
    assert_eq!(
        attribution("system:worker", Some("alice")),
        ("alice", "system:worker")
    );
    // An admin retrying alice's task acts; the task is still alice's request.
    assert_eq!(attribution("root", Some("alice")), ("alice", "root"));
    // Outside a task (an ACL change) the committer both asked and acted.
    assert_eq!(attribution("root", None), ("root", "root"));
}
