//! Offline verification of an audit export (`GET /v1/audit/export`): proves from the lines
//! alone that an export is complete and untampered, with no database or log access
//! (`file-engine audit-verify --file export.ndjson`, or any auditor's own reimplementation).
//!
//! An export is NDJSON: one CloudEvent per line carrying the `chainhash` extension, then the
//! trailer `{"export": {"tenant", "first_seq", "last_seq", "head_hash", "prev_hash"}}`. The
//! chain is recomputed line by line (see `audit_chain`):
//! `chainhash(n) = SHA-256(chainhash(n-1) ‖ seq ‖ canonical JSON of line n without chainhash)`,
//! starting from `prev_hash`. Every line must be the tenant's next `seq` (no gap, no repeat,
//! no reordering), carry the trailer's tenant, and match its own `chainhash`; the last must be
//! `last_seq` with hash `head_hash`. The first line that does not fit is named by its `seq`.
//!
//! What this proves: the lines are one unbroken stretch of the tenant's chain ending in
//! `head_hash`. Compare `head_hash` (or any line's `chainhash`) with `GET /v1/audit/verify` or
//! a head recorded earlier to tie the export to the live index.
//!
//! Pure: no IO.

use serde::Deserialize;
use serde_json::Value;

use crate::audit_chain::{canonical_json, chain_hash, to_hex};

/// The extension carrying an export line's chain hash (not part of the hashed bytes).
pub const CHAIN_HASH_FIELD: &str = "chainhash";

/// What a verified export holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExportSummary {
    pub tenant: String,
    /// `None` for an export without events.
    pub first_seq: Option<u64>,
    pub last_seq: Option<u64>,
    pub events: u64,
    /// Hex chain hash after the last event (`prev_hash` for an empty export).
    pub head_hash: String,
}

/// Why an export is rejected. `seq` is the position the offending line should hold.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ExportError {
    #[error("the export has no trailer line (it was cut short or is not an export)")]
    NoTrailer,
    #[error("the trailer is malformed: {0}")]
    BadTrailer(String),
    #[error("seq {seq}: {reason}")]
    Rejected { seq: u64, reason: String },
}

#[derive(Deserialize)]
struct TrailerLine {
    export: Trailer,
}

#[derive(Deserialize)]
struct Trailer {
    tenant: String,
    first_seq: Option<u64>,
    last_seq: Option<u64>,
    head_hash: Option<String>,
    prev_hash: Option<String>,
}

/// Verifies a whole export (its text).
pub fn verify_export(text: &str) -> Result<ExportSummary, ExportError> {
    let mut lines: Vec<&str> = text.split('\n').collect();
    while lines.last().is_some_and(|l| l.trim().is_empty()) {
        lines.pop();
    }
    let trailer_text = lines.pop().ok_or(ExportError::NoTrailer)?;
    let trailer: TrailerLine = serde_json::from_str(trailer_text).map_err(|_| {
        match serde_json::from_str::<Value>(trailer_text) {
            Ok(v) if v.get("export").is_none() => ExportError::NoTrailer,
            _ => ExportError::BadTrailer("not the export object".into()),
        }
    })?;
    let t = trailer.export;
    let prev_hex = t.prev_hash.as_deref().unwrap_or(&"0".repeat(64)).to_owned();
    let mut prev = parse_hash(&prev_hex)
        .ok_or_else(|| ExportError::BadTrailer("prev_hash is not 64 hex digits".into()))?;
    let first = t.first_seq.unwrap_or(1);
    if first == 0 {
        return Err(ExportError::BadTrailer(
            "first_seq must be at least 1".into(),
        ));
    }
    let mut expected = first;
    for line in &lines {
        prev = verify_line(line, expected, &t.tenant, &prev)?;
        expected += 1;
    }
    let events = lines.len() as u64;
    let last = (events > 0).then(|| expected - 1);
    let reject = |reason: &str| ExportError::Rejected {
        seq: expected,
        reason: reason.into(),
    };
    if t.last_seq != last || (events > 0 && t.first_seq != Some(first)) {
        return Err(reject(
            "the trailer's seq range does not match the lines (events missing at the end?)",
        ));
    }
    let head = to_hex(&prev);
    match (&t.head_hash, events) {
        (Some(h), _) if *h == head => {}
        (None, 0) => {}
        _ => {
            return Err(reject(
                "the trailer's head_hash does not match the recomputed chain",
            ))
        }
    }
    Ok(ExportSummary {
        tenant: t.tenant,
        first_seq: t.first_seq,
        last_seq: last,
        events,
        head_hash: head,
    })
}

/// Checks one event line as the tenant's event `seq` after chain hash `prev`; returns its
/// chain hash.
fn verify_line(
    line: &str,
    seq: u64,
    tenant: &str,
    prev: &[u8; 32],
) -> Result<[u8; 32], ExportError> {
    let reject = |reason: String| ExportError::Rejected { seq, reason };
    let mut event: Value =
        serde_json::from_str(line).map_err(|_| reject("the line is not valid JSON".into()))?;
    let object = event
        .as_object_mut()
        .ok_or_else(|| reject("the line is not a JSON object".into()))?;
    let claimed = object
        .remove(CHAIN_HASH_FIELD)
        .and_then(|v| v.as_str().and_then(parse_hash))
        .ok_or_else(|| reject("the line has no valid chainhash".into()))?;
    match object.get("seq").and_then(Value::as_u64) {
        Some(s) if s == seq => {}
        Some(s) => {
            return Err(reject(format!(
                "the line holds seq {s}: events are missing, repeated or reordered"
            )))
        }
        None => return Err(reject("the line has no seq".into())),
    }
    if object.get("tenant").and_then(Value::as_str) != Some(tenant) {
        return Err(reject("the line belongs to another tenant".into()));
    }
    let computed = chain_hash(prev, seq, canonical_json(&event).as_bytes());
    if computed != claimed {
        return Err(reject(
            "the event does not match its chainhash (edited, or the chain before it was)".into(),
        ));
    }
    Ok(computed)
}

fn parse_hash(hex_text: &str) -> Option<[u8; 32]> {
    hex::decode(hex_text).ok()?.try_into().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit_chain::GENESIS;
    use proptest::prelude::*;
    use serde_json::json;

    /// An export of `n` events of tenant `acme` starting at `first`, as the API writes it.
    fn export(first: u64, n: u64) -> String {
        let mut prev = GENESIS;
        let prev_hash = to_hex(&prev);
        let mut out = String::new();
        for seq in first..first + n {
            let event = json!({"id": format!("e{seq}"), "seq": seq, "tenant": "acme",
                               "subject": "/a", "data": {"path": "/a"}});
            prev = chain_hash(&prev, seq, canonical_json(&event).as_bytes());
            let mut line = event;
            line[CHAIN_HASH_FIELD] = json!(to_hex(&prev));
            out.push_str(&canonical_json(&line));
            out.push('\n');
        }
        let trailer = json!({"export": {"tenant": "acme", "first_seq": (n > 0).then_some(first),
            "last_seq": (n > 0).then(|| first + n - 1), "head_hash": (n > 0).then(|| to_hex(&prev)),
            "prev_hash": prev_hash}});
        out.push_str(&canonical_json(&trailer));
        out.push('\n');
        out
    }

    fn rejected_seq(text: &str) -> u64 {
        match verify_export(text) {
            Err(ExportError::Rejected { seq, .. }) => seq,
            other => panic!("expected a rejection, got {other:?}"),
        }
    }

    #[test]
    fn a_complete_export_verifies() {
        let s = verify_export(&export(1, 5)).unwrap();
        assert_eq!((s.first_seq, s.last_seq, s.events), (Some(1), Some(5), 5));
        assert_eq!(s.tenant, "acme");
    }

    #[test]
    fn an_empty_export_verifies() {
        assert_eq!(verify_export(&export(1, 0)).unwrap().events, 0);
    }

    #[test]
    fn an_edited_event_is_named_by_its_seq() {
        let text = export(1, 5).replace("\"e3\"", "\"e9\"");
        assert_eq!(rejected_seq(&text), 3);
    }

    #[test]
    fn a_dropped_or_swapped_line_is_named() {
        let text = export(1, 5);
        let lines: Vec<&str> = text.lines().collect();
        let dropped: String = [lines[0], lines[1], lines[3], lines[4], lines[5]]
            .map(|l| format!("{l}\n"))
            .concat();
        assert_eq!(rejected_seq(&dropped), 3);
        let swapped: String = [lines[0], lines[2], lines[1], lines[3], lines[4], lines[5]]
            .map(|l| format!("{l}\n"))
            .concat();
        assert_eq!(rejected_seq(&swapped), 2);
    }

    #[test]
    fn a_cut_export_has_no_trailer() {
        let text = export(1, 5);
        let cut: String = text.lines().take(4).map(|l| format!("{l}\n")).collect();
        assert_eq!(verify_export(&cut), Err(ExportError::NoTrailer));
        assert_eq!(verify_export(""), Err(ExportError::NoTrailer));
    }

    proptest! {
        /// Changing any one byte of any event line is caught and named by that line's seq
        /// (or, when the line stops parsing as an event, still by that seq).
        #[test]
        fn any_one_byte_edit_of_an_event_line_is_rejected_at_its_seq(
            n in 1u64..8, line in 0usize..8, at in 0usize..400, byte in 0x20u8..0x7f,
        ) {
            let text = export(1, n);
            let line = line % n as usize;
            let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
            let target = &mut lines[line];
            let at = at % target.len();
            prop_assume!(target.as_bytes()[at] != byte);
            let mut bytes = target.clone().into_bytes();
            bytes[at] = byte;
            *target = String::from_utf8(bytes).unwrap();
            let edited: String = lines.iter().map(|l| format!("{l}\n")).collect();
            match verify_export(&edited) {
                Err(ExportError::Rejected { seq, .. }) => prop_assert_eq!(seq, line as u64 + 1),
                // An edit that only reformats (e.g. a space outside a string) keeps the
                // canonical bytes: the event is unchanged, so it may verify.
                Ok(_) => prop_assert!(serde_json::from_str::<Value>(&lines[line]).is_ok()),
                Err(other) => prop_assert!(false, "unexpected {:?}", other),
            }
        }
    }
}
