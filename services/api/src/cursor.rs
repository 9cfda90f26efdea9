//! Listing cursors: opaque and tamper-proof ([`CursorKey`]).
//!
//! A cursor holds the name of the last entry of the page, sealed with ChaCha20-Poly1305
//! (ring's AEAD) under a server key, with the listing it belongs to (tenant, principal,
//! directory) as associated data: it cannot be read, forged, altered, or replayed against
//! another directory or by another principal (all of these are 400 `bad_request`). Listings
//! page over visible entries only, so the sealed name is one the caller was shown anyway.
//!
//! The key is derived (HMAC-SHA256 with a fixed label) from the first `FE_LINK_SECRET`, else
//! from `FE_WEBHOOK_SECRET_KEY`, so every API replica sharing those secrets accepts the
//! others' cursors. With neither configured, a random key per process is used: cursors then
//! stop working across restarts and replicas (the client starts the listing over).

use base64::Engine;
use hmac::{Hmac, Mac};
use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, CHACHA20_POLY1305, NONCE_LEN};
use sha2::Sha256;

const LABEL: &[u8] = b"file-engine/list-cursor/v1";

/// The key listing cursors are sealed with. Never logged (no `Debug`).
pub struct CursorKey(LessSafeKey);

/// A cursor that is not one this server issued for this listing.
#[derive(Debug, thiserror::Error)]
#[error("invalid cursor")]
pub struct InvalidCursor;

impl CursorKey {
    /// Derives the key from a configured secret, or makes a random one without.
    pub fn derive(secret: Option<&str>) -> Self {
        let bytes: [u8; 32] = match secret {
            Some(secret) => {
                let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret.as_bytes())
                    .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
                mac.update(LABEL);
                mac.finalize().into_bytes().into()
            }
            None => rand::random(),
        };
        let key = UnboundKey::new(&CHACHA20_POLY1305, &bytes)
            .unwrap_or_else(|_| unreachable!("a 32-byte key fits ChaCha20-Poly1305"));
        Self(LessSafeKey::new(key))
    }

    /// Seals `name` as the cursor of the listing identified by `context`.
    pub fn seal(&self, context: &[&str], name: &str) -> String {
        let nonce_bytes: [u8; NONCE_LEN] = rand::random();
        let mut data = name.as_bytes().to_vec();
        let sealed = self.0.seal_in_place_append_tag(
            Nonce::assume_unique_for_key(nonce_bytes),
            Aad::from(aad(context)),
            &mut data,
        );
        // Sealing only fails for inputs over ~256 GiB; a name is at most 255 bytes.
        if sealed.is_err() {
            data.clear();
        }
        let mut out = nonce_bytes.to_vec();
        out.extend_from_slice(&data);
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(out)
    }

    /// The name sealed in `cursor`, if this server sealed it for the listing `context`.
    pub fn open(&self, context: &[&str], cursor: &str) -> Result<String, InvalidCursor> {
        if cursor.len() > 1024 {
            return Err(InvalidCursor);
        }
        let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(cursor)
            .map_err(|_| InvalidCursor)?;
        if raw.len() < NONCE_LEN {
            return Err(InvalidCursor);
        }
        let (nonce, sealed) = raw.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| InvalidCursor)?;
        let mut sealed = sealed.to_vec();
        let plain = self
            .0
            .open_in_place(nonce, Aad::from(aad(context)), &mut sealed)
            .map_err(|_| InvalidCursor)?;
        String::from_utf8(plain.to_vec()).map_err(|_| InvalidCursor)
    }
}

/// The listing a cursor belongs to, unambiguously joined (parts never contain NUL).
fn aad(context: &[&str]) -> Vec<u8> {
    context.join("\0").into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cursor_opens_only_for_its_listing_and_key() {
        let key = CursorKey::derive(Some("a-secret-of-sufficient-length-000"));
        let ctx = ["acme", "bob", "/dir"];
        let cursor = key.seal(&ctx, "report.pdf");
        assert!(!cursor.contains("report"));
        assert_eq!(key.open(&ctx, &cursor).unwrap(), "report.pdf");
        assert!(key.open(&["acme", "eve", "/dir"], &cursor).is_err());
        assert!(key.open(&["acme", "bob", "/other"], &cursor).is_err());
        let other = CursorKey::derive(Some("another-secret-of-sufficient-len"));
        assert!(other.open(&ctx, &cursor).is_err());
        // Same secret, same key: replicas accept each other's cursors.
        let same = CursorKey::derive(Some("a-secret-of-sufficient-length-000"));
        assert_eq!(same.open(&ctx, &cursor).unwrap(), "report.pdf");
    }

    #[test]
    fn altered_or_garbage_cursors_are_refused() {
        let key = CursorKey::derive(None);
        let ctx = ["t", "p", "/"];
        let cursor = key.seal(&ctx, "x");
        let mut raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(&cursor)
            .unwrap();
        let last = raw.len() - 1;
        raw[last] ^= 1;
        let flipped = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw);
        for bad in [flipped.as_str(), "", "!!", "eA", &"A".repeat(5000)] {
            assert!(key.open(&ctx, bad).is_err(), "{bad:?}");
        }
    }
}
