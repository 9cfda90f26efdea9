//! Upcasting: turns the stored payload of an older event version into the current shape.
//!
//! Events are immutable once logged, so when an event's shape changes, the old messages stay
//! in the stream as they were written and every reader upgrades them on the way in. Each
//! stored event carries its `event_version`; [`upcast`] applies the registered steps
//! (`v0 -> v1`, later `v1 -> v2`, ...) in order until the payload is at
//! [`CURRENT_VERSION`]. Readers (the projector, the public-event mapping, the audit verifier)
//! call it before deserialising a payload, so the domain types only ever know one shape.
//!
//! Registered steps:
//! - `dir.created` v0 -> v1: v0 had no `parents` flag (directories were always created
//!   alone); v1 makes it explicit, so a v0 event reads as `parents: false`.
//!
//! Pure: a function of (event type, version, payload), no IO.

use serde_json::Value;

/// The version every event is written with today.
pub const CURRENT_VERSION: &str = "1";

/// Why a stored payload cannot be brought to the current version. Messages name the event
/// type and version, never payload content.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum UpcastError {
    #[error("unknown version {version:?} of event {event_type}")]
    UnknownVersion { event_type: String, version: String },
    #[error("version {version} of event {event_type} does not have the expected shape")]
    Malformed { event_type: String, version: String },
}

/// One step: upgrades a payload of `from` to the next version, or fails if it is malformed.
type Step = fn(Value) -> Option<Value>;

/// The steps registered for `event_type` at `version`, if any.
fn step(event_type: &str, version: &str) -> Option<(Step, &'static str)> {
    match (event_type, version) {
        ("dir.created", "0") => Some((dir_created_v0_to_v1, "1")),
        _ => None,
    }
}

/// Brings `payload` of (`event_type`, `version`) to [`CURRENT_VERSION`].
///
/// A payload already at the current version is returned unchanged; a version with no
/// registered path to the current one is an error (never guessed at).
pub fn upcast(event_type: &str, version: &str, payload: Value) -> Result<Value, UpcastError> {
    let mut version = version.to_owned();
    let mut payload = payload;
    // Each step strictly raises the version, so this terminates; the bound guards against a
    // mistakenly cyclic registration.
    for _ in 0..16 {
        if version == CURRENT_VERSION {
            return Ok(payload);
        }
        let (step, next) =
            step(event_type, &version).ok_or_else(|| UpcastError::UnknownVersion {
                event_type: event_type.to_owned(),
                version: version.clone(),
            })?;
        payload = step(payload).ok_or_else(|| UpcastError::Malformed {
            event_type: event_type.to_owned(),
            version: version.clone(),
        })?;
        version = next.to_owned();
    }
    Err(UpcastError::UnknownVersion {
        event_type: event_type.to_owned(),
        version,
    })
}

/// `{"DirCreated":{"path":..}}` -> `{"DirCreated":{"path":..,"parents":false}}`.
fn dir_created_v0_to_v1(mut payload: Value) -> Option<Value> {
    let body = payload.get_mut("DirCreated")?.as_object_mut()?;
    body.get("path")?.as_str()?;
    body.entry("parents").or_insert(Value::Bool(false));
    Some(payload)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn current_version_passes_through_unchanged() {
        let p = json!({"DirCreated": {"path": "/a", "parents": true}});
        assert_eq!(upcast("dir.created", "1", p.clone()), Ok(p));
        assert_eq!(
            upcast("task.succeeded", "1", json!("TaskSucceeded")),
            Ok(json!("TaskSucceeded"))
        );
    }

    #[test]
    fn dir_created_v0_gains_parents_false() {
        let v0 = json!({"DirCreated": {"path": "/a"}});
        assert_eq!(
            upcast("dir.created", "0", v0),
            Ok(json!({"DirCreated": {"path": "/a", "parents": false}}))
        );
    }

    #[test]
    fn unknown_versions_and_malformed_payloads_are_errors() {
        assert!(matches!(
            upcast("dir.created", "7", json!({})),
            Err(UpcastError::UnknownVersion { .. })
        ));
        assert!(matches!(
            upcast("entry.moved", "0", json!({})),
            Err(UpcastError::UnknownVersion { .. })
        ));
        assert!(matches!(
            upcast("dir.created", "0", json!({"EntryMoved": {}})),
            Err(UpcastError::Malformed { .. })
        ));
    }
}
