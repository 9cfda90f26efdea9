//! The audit hash chain: canonical event bytes and the chained SHA-256 of the audit index.
//!
//! Every row of the audit index carries
//! `hash = SHA-256(prev_hash ‖ seq ‖ canonical event bytes)` where `seq` is the event's
//! position in its tenant's history (1, 2, 3, …) as 8 bytes big-endian and `prev_hash` the
//! hash of the tenant's previous event ([`GENESIS`], 32 zero bytes, before its first). The
//! event bytes carry `logseq` and `id`, so the log position is covered too. Everything needed
//! to recompute a chain is in the events themselves: an export verifies offline. A per-tenant chain lets
//! a tenant's auditor verify their own slice without seeing other tenants' events; it is
//! deterministic under replay because the log order within a tenant never changes.
//!
//! Canonical bytes are compact JSON with object keys sorted at every level, whatever map
//! implementation `serde_json` was built with, so the hash never depends on a cargo feature.
//!
//! Pure: no IO.

use serde_json::Value;
use sha2::{Digest, Sha256};

/// `prev_hash` of a tenant's first event.
pub const GENESIS: [u8; 32] = [0; 32];

/// Compact JSON of `value` with object keys sorted (byte order) at every level.
pub fn canonical_json(value: &Value) -> String {
    let mut out = String::new();
    write_canonical(value, &mut out);
    out
}

fn write_canonical(value: &Value, out: &mut String) {
    match value {
        Value::Object(map) => {
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            entries.sort_by(|a, b| a.0.cmp(b.0));
            out.push('{');
            for (i, (key, item)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(key.clone()).to_string());
                out.push(':');
                write_canonical(item, out);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(item, out);
            }
            out.push(']');
        }
        // Scalars have one compact form in serde_json.
        scalar => out.push_str(&scalar.to_string()),
    }
}

/// The chained hash of the tenant's event number `seq`.
pub fn chain_hash(prev: &[u8; 32], seq: u64, canonical_event: &[u8]) -> [u8; 32] {
    let mut hasher = Sha256::new();
    hasher.update(prev);
    hasher.update(seq.to_be_bytes());
    hasher.update(canonical_event);
    hasher.finalize().into()
}

/// Plain SHA-256 of `bytes` (for digests over chain heads).
pub fn sha256(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

/// Lowercase hex of `bytes`, the form hashes take in reports and JSON.
pub fn to_hex(bytes: &[u8]) -> String {
    hex::encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn canonical_json_sorts_keys_at_every_level_and_is_compact() {
        let v = json!({"b": 1, "a": {"z": [true, null, "x\"y"], "c": 2.5}});
        assert_eq!(
            canonical_json(&v),
            r#"{"a":{"c":2.5,"z":[true,null,"x\"y"]},"b":1}"#
        );
        let reparsed: Value = serde_json::from_str(&canonical_json(&v)).unwrap();
        assert_eq!(canonical_json(&reparsed), canonical_json(&v));
    }

    #[test]
    fn chain_hash_depends_on_every_input() {
        let base = chain_hash(&GENESIS, 7, b"{}");
        assert_ne!(base, chain_hash(&[1; 32], 7, b"{}"));
        assert_ne!(base, chain_hash(&GENESIS, 8, b"{}"));
        assert_ne!(base, chain_hash(&GENESIS, 7, b"{ }"));
        assert_eq!(base, chain_hash(&GENESIS, 7, b"{}"));
    }
}
