//! Delivery signatures and subscription secrets.
//!
//! Every delivery carries `FileEngine-Signature: t=<unix seconds>,v1=<hex>` where the hex is
//! HMAC-SHA256 keyed with the subscription's secret (its UTF-8 bytes, `whsec_...` included)
//! over `"<t>.<body>"` (API.md "Notifications"). Receivers recompute it over the raw body,
//! compare in constant time, and reject timestamps too far from their clock (replays);
//! [`verify`] does exactly that and is what the tests' receiver uses.
//!
//! Secrets are never stored: [`SecretKey::subscription_secret`] derives each one as
//! `whsec_` + hex HMAC-SHA256(`FE_WEBHOOK_SECRET_KEY`, tenant ‖ 0 ‖ subscription id). The API
//! derives it once to show it in the creation response, the notifier derives it again to
//! sign. Nothing secret is in the immutable log or in PostgreSQL, a replay or restore loses
//! nothing, and rotating the key changes every subscription's secret at once (subscribers
//! must then be re-created or told the new secrets).

use hmac::{Hmac, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// The delivery header carrying the signature.
pub const SIGNATURE_HEADER: &str = "FileEngine-Signature";
/// Shortest accepted `FE_WEBHOOK_SECRET_KEY`, in bytes.
pub const MIN_KEY_BYTES: usize = 32;
/// Prefix of every subscription secret.
pub const SECRET_PREFIX: &str = "whsec_";
const DERIVATION_LABEL: &[u8] = b"file-engine webhook secret v1\0";

/// Why a signature or a key was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("FE_WEBHOOK_SECRET_KEY must be at least {MIN_KEY_BYTES} bytes")]
    KeyTooShort,
    #[error("the signature header is malformed")]
    Malformed,
    #[error("the signature timestamp is outside the tolerance")]
    Stale,
    #[error("the signature does not match")]
    Mismatch,
}

/// The server-side key subscription secrets are derived from (`FE_WEBHOOK_SECRET_KEY`).
/// It has no `Debug` and no accessor: it can only derive.
#[derive(Clone)]
pub struct SecretKey(Vec<u8>);

impl SecretKey {
    /// Accepts a key of at least [`MIN_KEY_BYTES`] bytes (e.g. `openssl rand -hex 32`).
    pub fn new(raw: &str) -> Result<Self, SignatureError> {
        if raw.len() < MIN_KEY_BYTES {
            return Err(SignatureError::KeyTooShort);
        }
        Ok(Self(raw.as_bytes().to_vec()))
    }

    /// The signing secret of one subscription.
    pub fn subscription_secret(&self, tenant: &events::TenantId, id: uuid::Uuid) -> String {
        let mut mac = mac(&self.0);
        mac.update(DERIVATION_LABEL);
        mac.update(tenant.as_str().as_bytes());
        mac.update(b"\0");
        mac.update(id.as_bytes());
        format!(
            "{SECRET_PREFIX}{}",
            hex::encode(mac.finalize().into_bytes())
        )
    }
}

fn mac(key: &[u8]) -> HmacSha256 {
    // HMAC accepts keys of any length; `new_from_slice` cannot fail for it.
    <HmacSha256 as Mac>::new_from_slice(key)
        .unwrap_or_else(|_| unreachable!("HMAC takes any key length"))
}

fn signed_mac(secret: &str, timestamp: i64, body: &[u8]) -> HmacSha256 {
    let mut mac = mac(secret.as_bytes());
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    mac
}

/// The `FileEngine-Signature` value for `body` sent at `timestamp` (unix seconds).
pub fn sign(secret: &str, timestamp: i64, body: &[u8]) -> String {
    let digest = signed_mac(secret, timestamp, body).finalize().into_bytes();
    format!("t={timestamp},v1={}", hex::encode(digest))
}

/// Checks a `FileEngine-Signature` value against `body`: well-formed, `t` within
/// `tolerance_s` of `now`, and one of its `v1` values matching (compared in constant time).
pub fn verify(
    secret: &str,
    header: &str,
    body: &[u8],
    now: i64,
    tolerance_s: i64,
) -> Result<(), SignatureError> {
    let mut timestamp = None;
    let mut candidates = Vec::new();
    for part in header.split(',') {
        match part.trim().split_once('=') {
            Some(("t", t)) => {
                timestamp = Some(t.parse::<i64>().map_err(|_| SignatureError::Malformed)?)
            }
            Some(("v1", v)) => {
                candidates.push(hex::decode(v).map_err(|_| SignatureError::Malformed)?)
            }
            _ => {}
        }
    }
    let timestamp = timestamp.ok_or(SignatureError::Malformed)?;
    if candidates.is_empty() {
        return Err(SignatureError::Malformed);
    }
    if now.abs_diff(timestamp) > tolerance_s.unsigned_abs() {
        return Err(SignatureError::Stale);
    }
    let matches = candidates
        .iter()
        .any(|c| signed_mac(secret, timestamp, body).verify_slice(c).is_ok());
    if matches {
        Ok(())
    } else {
        Err(SignatureError::Mismatch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "whsec_test";

    #[test]
    fn signature_is_hmac_of_timestamp_dot_body() {
        // Independently computed: HMAC-SHA256("whsec_test", "1700000000.{\"a\":1}").
        let mut mac = HmacSha256::new_from_slice(SECRET.as_bytes()).unwrap();
        mac.update(b"1700000000.{\"a\":1}");
        let expected = hex::encode(mac.finalize().into_bytes());
        assert_eq!(
            sign(SECRET, 1_700_000_000, br#"{"a":1}"#),
            format!("t=1700000000,v1={expected}")
        );
    }

    #[test]
    fn a_signature_verifies_within_tolerance() {
        let header = sign(SECRET, 1_000, b"body");
        assert_eq!(verify(SECRET, &header, b"body", 1_100, 300), Ok(()));
    }

    #[test]
    fn tampering_is_detected() {
        let header = sign(SECRET, 1_000, b"body");
        assert_eq!(
            verify(SECRET, &header, b"bodz", 1_000, 300),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify("whsec_other", &header, b"body", 1_000, 300),
            Err(SignatureError::Mismatch)
        );
        let shifted = header.replace("t=1000", "t=1001");
        assert_eq!(
            verify(SECRET, &shifted, b"body", 1_000, 300),
            Err(SignatureError::Mismatch)
        );
    }

    #[test]
    fn stale_and_malformed_headers_are_refused() {
        let header = sign(SECRET, 1_000, b"body");
        assert_eq!(
            verify(SECRET, &header, b"body", 2_000, 300),
            Err(SignatureError::Stale)
        );
        for bad in ["", "t=1000", "v1=00", "t=x,v1=00", "t=1000,v1=zz"] {
            assert_eq!(
                verify(SECRET, bad, b"body", 1_000, 300),
                Err(SignatureError::Malformed),
                "{bad}"
            );
        }
    }

    #[test]
    fn secrets_are_derived_per_tenant_and_subscription() {
        let key = SecretKey::new(&"k".repeat(32)).unwrap();
        let acme = events::TenantId::parse("acme").unwrap();
        let other = events::TenantId::parse("other").unwrap();
        let id = uuid::Uuid::from_u128(7);
        let secret = key.subscription_secret(&acme, id);
        assert!(secret.starts_with(SECRET_PREFIX) && secret.len() == SECRET_PREFIX.len() + 64);
        assert_eq!(secret, key.subscription_secret(&acme, id));
        assert_ne!(secret, key.subscription_secret(&other, id));
        assert_ne!(
            secret,
            key.subscription_secret(&acme, uuid::Uuid::from_u128(8))
        );
        let rotated = SecretKey::new(&"j".repeat(32)).unwrap();
        assert_ne!(secret, rotated.subscription_secret(&acme, id));
    }

    #[test]
    fn short_keys_are_refused() {
        assert!(matches!(
            SecretKey::new("short"),
            Err(SignatureError::KeyTooShort)
        ));
    }
}
