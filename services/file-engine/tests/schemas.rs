//! The JSON Schemas in `schemas/` describe exactly what the platform emits: every event an
//! end-to-end scenario produces (commands, a failed task, ACL changes, a clean and an
//! infected upload), fetched through `GET /v1/audit/export`, validates against the envelope
//! and its type's schema; every stored-event fixture (all types, old versions included) maps
//! to a valid event; and an event that drifts from its schema is rejected.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use chrono::DateTime;
use events::public::{cloud_event, EventContext, LogEvent, ALL_TYPES};
use events::TenantId;
use jsonschema::Validator;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use support::TestApp;
use testkit::clamd::EICAR;

fn schema_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../schemas")
}

/// Every schema file, by name without `.json`, compiled (draft 2020-12, formats asserted).
fn schemas() -> BTreeMap<String, Validator> {
    let mut out = BTreeMap::new();
    for entry in std::fs::read_dir(schema_dir()).unwrap() {
        let path = entry.unwrap().path();
        let Some(name) = path
            .file_name()
            .unwrap()
            .to_str()
            .unwrap()
            .strip_suffix(".json")
        else {
            continue;
        };
        let schema: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        assert!(
            jsonschema::draft202012::meta::is_valid(&schema),
            "{name} is not a valid schema"
        );
        let validator = jsonschema::draft202012::options()
            .should_validate_formats(true)
            .build(&schema)
            .unwrap();
        out.insert(name.to_owned(), validator);
    }
    out
}

/// Errors of `event` against the envelope and its type's schema (empty = valid).
fn violations(schemas: &BTreeMap<String, Validator>, event: &Value) -> Vec<String> {
    let short = event["type"]
        .as_str()
        .and_then(events::public::short_type)
        .unwrap_or("<no type>");
    let Some(typed) = schemas.get(short) else {
        return vec![format!("no schema for {short}")];
    };
    [&schemas["cloudevent"], typed]
        .into_iter()
        .flat_map(|v| {
            v.iter_errors(event)
                .map(|e| format!("{short}: {e} at {}", e.instance_path))
        })
        .collect()
}

#[test]
fn there_is_one_schema_per_type_and_one_for_the_envelope() {
    let names: BTreeSet<String> = schemas().into_keys().collect();
    let mut expected: BTreeSet<String> = ALL_TYPES.iter().map(|t| (*t).to_owned()).collect();
    expected.insert("cloudevent".into());
    assert_eq!(names, expected);
}

#[test]
fn every_stored_event_fixture_maps_to_a_valid_event() {
    let schemas = schemas();
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../events/tests/fixtures/stored_events.json");
    let fixtures: Vec<Value> =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let tenant = TenantId::parse("acme").unwrap();
    let mut seen = BTreeSet::new();
    for (i, f) in fixtures.iter().enumerate() {
        let ctx = EventContext {
            seq: 10 + i as u64,
            logseq: 20 + i as u64,
            index: 0,
            time: DateTime::from_timestamp(1_767_323_045, 123_456_789).unwrap(),
            tenant: &tenant,
            principal: "alice",
            actor: "system:worker",
            traceparent: Some("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"),
        };
        let s = |k: &str| f[k].as_str().unwrap();
        let event = LogEvent {
            aggregate_type: s("aggregate_type"),
            aggregate_id: s("aggregate_id"),
            event_type: s("event_type"),
            event_version: s("event_version"),
            payload: &f["payload"],
        };
        let ev =
            serde_json::to_value(cloud_event(&event, &ctx, Some("/task/path")).unwrap()).unwrap();
        assert_eq!(violations(&schemas, &ev), Vec::<String>::new(), "{ev}");
        seen.insert(s("event_type").to_owned());
    }
    assert_eq!(seen.len(), ALL_TYPES.len());
}

/// A change that makes an event disagree with its schema.
type Drift = fn(&mut Value);

#[test]
fn drifted_events_are_rejected() {
    let schemas = schemas();
    let valid = json!({
        "specversion": "1.0", "id": "7181d692-15ea-51aa-ad38-58f885256af3",
        "source": "/tenants/acme", "type": "io.file-engine.entry.moved.v1",
        "time": "2026-01-02T03:04:05.123456Z", "subject": "/a/x",
        "datacontenttype": "application/json", "tenant": "acme", "principal": "alice", "actor": "system:worker", "seq": 7, "logseq": 12,
        "data": {"task_id": "0190a0b0-0000-7000-8000-000000000001", "from": "/a/x", "to": "/b/x",
                 "overwrite": false}
    });
    assert_eq!(violations(&schemas, &valid), Vec::<String>::new());
    let drifts: Vec<(&str, Drift)> = vec![
        ("data field removed", |e| {
            e["data"].as_object_mut().unwrap().remove("to");
        }),
        ("data field of the wrong type", |e| {
            e["data"]["overwrite"] = json!("no")
        }),
        ("data field added", |e| e["data"]["mode"] = json!(1)),
        ("relative path", |e| e["data"]["to"] = json!("b/x")),
        ("seq as a string", |e| e["seq"] = json!("7")),
        ("envelope field removed", |e| {
            e.as_object_mut().unwrap().remove("specversion");
        }),
        ("unknown extension", |e| e["extra"] = json!(true)),
        ("not a time", |e| e["time"] = json!("yesterday")),
        ("bad tenant source", |e| {
            e["source"] = json!("/tenants/ACME")
        }),
        ("another type's data", |e| {
            e["type"] = json!("io.file-engine.dir.created.v1")
        }),
        ("position missing", |e| {
            e.as_object_mut().unwrap().remove("seq");
        }),
        ("actor missing", |e| {
            e.as_object_mut().unwrap().remove("actor");
        }),
        ("seq below 1", |e| e["seq"] = json!(0)),
        ("unknown type", |e| {
            e["type"] = json!("io.file-engine.entry.teleported.v1")
        }),
    ];
    for (what, drift) in drifts {
        let mut ev = valid.clone();
        drift(&mut ev);
        assert!(
            !violations(&schemas, &ev).is_empty(),
            "{what} was accepted: {ev}"
        );
    }
}

/// Runs the scenario in `acme` and returns every event of the tenant, via the export.
async fn emitted_events(app: &TestApp) -> Vec<Value> {
    let admin = app.admin("acme");
    for body in [
        json!({"op": "mkdir", "path": "/a/b", "parents": true}),
        json!({"op": "move", "from": "/a/b", "to": "/b"}),
        json!({"op": "copy", "from": "/b", "to": "/c"}),
        json!({"op": "delete", "path": "/c", "recursive": true}),
        json!({"op": "mkdir", "path": "/b"}),
    ] {
        app.run(&admin, body).await;
    }
    let pdf = b"%PDF-1.7\nhello\n%%EOF\n".to_vec();
    assert_eq!(
        app.upload_and_wait(&admin, "/a/r.pdf", pdf).await["status"],
        "succeeded"
    );
    assert_eq!(
        app.upload_and_wait(&admin, "/a/e.txt", EICAR.to_vec())
            .await["status"],
        "failed"
    );
    let grant = json!({"subject": "role:ops", "path": "/a", "permissions": ["read", "list"], "effect": "deny"});
    let resp = app
        .request(Method::POST, "/v1/acl/rules", Some(&admin))
        .await
        .json(&grant)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::CREATED);
    let rule: Value = resp.json().await.unwrap();
    let url = format!("/v1/acl/rules/{}", rule["rule_id"].as_str().unwrap());
    let resp = app
        .request(Method::DELETE, &url, Some(&admin))
        .await
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    // The revocation answered only once projected, and its audit row shares that transaction.
    let resp = app
        .request(Method::GET, "/v1/audit/export", Some(&admin))
        .await
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let body = resp.text().await.unwrap();
    let mut lines: Vec<Value> = body
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    // The trailer closes the export; event lines carry their chain hash.
    let trailer = lines.pop().unwrap();
    let n = lines.len() as u64;
    assert_eq!(trailer["export"]["tenant"], "acme");
    assert_eq!(
        (
            trailer["export"]["first_seq"].as_u64(),
            trailer["export"]["last_seq"].as_u64()
        ),
        (Some(1), Some(n))
    );
    assert_eq!(
        trailer["export"]["head_hash"],
        lines[lines.len() - 1]["chainhash"]
    );
    lines
}

#[tokio::test]
async fn every_event_the_platform_emits_matches_its_schema() {
    let app = TestApp::spawn_with_scanner(&[]).await;
    let events = emitted_events(&app).await;
    let schemas = schemas();
    let mut seen = BTreeSet::new();
    for ev in &events {
        assert_eq!(violations(&schemas, ev), Vec::<String>::new(), "{ev}");
        seen.insert(
            events::public::short_type(ev["type"].as_str().unwrap())
                .unwrap()
                .to_owned(),
        );
    }
    for ty in [
        "task.requested",
        "task.started",
        "task.succeeded",
        "task.failed",
        "dir.created",
        "entry.moved",
        "entry.copied",
        "entry.deleted",
        "file.uploaded",
        "file.scanned",
        "file.available",
        "file.quarantined",
        "acl.rule_granted",
        "acl.rule_revoked",
    ] {
        assert!(seen.contains(ty), "the scenario produced no {ty}: {seen:?}");
    }
    // Every event carries the request's trace context.
    assert!(
        events.iter().all(|e| e["traceparent"].is_string()),
        "an event lacks traceparent"
    );
}
