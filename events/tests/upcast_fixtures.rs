//! Stored events of every type and version, frozen in `tests/fixtures/stored_events.json`,
//! must still map to their public form. An event whose shape changes without an upcaster
//! (or an upcaster that stops producing the current shape) breaks this test.

use chrono::DateTime;
use events::public::{cloud_event, EventContext, LogEvent, ALL_TYPES};
use events::TenantId;
use serde::Deserialize;
use serde_json::Value;

#[derive(Deserialize)]
struct Fixture {
    aggregate_type: String,
    aggregate_id: String,
    event_type: String,
    event_version: String,
    payload: Value,
    expected: Expected,
}

#[derive(Deserialize)]
struct Expected {
    subject: String,
    data: Value,
}

fn fixtures() -> Vec<Fixture> {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/stored_events.json"
    );
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

#[test]
fn every_stored_version_maps_to_its_public_form() {
    let tenant = TenantId::parse("acme").unwrap();
    let ctx = EventContext {
        seq: 9,
        logseq: 9,
        index: 0,
        time: DateTime::from_timestamp(1_767_323_045, 0).unwrap(),
        tenant: &tenant,
        principal: "alice",
        actor: "alice",
        traceparent: None,
    };
    for f in fixtures() {
        let event = LogEvent {
            aggregate_type: &f.aggregate_type,
            aggregate_id: &f.aggregate_id,
            event_type: &f.event_type,
            event_version: &f.event_version,
            payload: &f.payload,
        };
        let label = format!("{} v{}", f.event_type, f.event_version);
        let ev = cloud_event(&event, &ctx, None).unwrap_or_else(|e| panic!("{label}: {e}"));
        assert_eq!(ev.subject, f.expected.subject, "{label}");
        assert_eq!(ev.data, f.expected.data, "{label}");
        assert_eq!(ev.short_type(), Some(f.event_type.as_str()), "{label}");
    }
}

#[test]
fn fixtures_cover_every_type_and_an_old_version() {
    let all = fixtures();
    for ty in ALL_TYPES {
        assert!(
            all.iter()
                .any(|f| f.event_type == *ty && f.event_version == "1"),
            "no v1 fixture of {ty}"
        );
    }
    assert!(all.iter().any(|f| f.event_version == "0"));
}

#[test]
fn an_old_version_without_its_upcaster_is_refused() {
    let all = fixtures();
    let v0 = all.iter().find(|f| f.event_version == "0").unwrap();
    let tenant = TenantId::parse("acme").unwrap();
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
    // Read as if it were current, the v0 payload lacks `parents` and does not parse.
    let as_current = LogEvent {
        aggregate_type: &v0.aggregate_type,
        aggregate_id: &v0.aggregate_id,
        event_type: &v0.event_type,
        event_version: "1",
        payload: &v0.payload,
    };
    assert!(cloud_event(&as_current, &ctx, None).is_err());
}
