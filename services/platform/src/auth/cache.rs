//! Tokens already verified: a bounded map from the SHA-256 of a token to the principal it
//! proved and its `exp`, so that a client sending the same bearer token on every request pays
//! the signature check (an ES256/RS256 verify, the largest CPU cost of accepting a command)
//! once, not per request.
//!
//! Safe because a JWT is immutable and self-contained: the same bytes always verify the same
//! way against the same keys (keys are fixed for the life of a verifier), except for time, and
//! time is re-checked on every hit (`exp` plus the configured leeway; `nbf` only ever becomes
//! true). Only successful verifications are remembered, under a hash of the whole token, so
//! a changed byte anywhere (a forged signature) misses the cache and is verified in full. The
//! token itself is never stored. Bounded: past [`MAX_ENTRIES`] the map starts over.

use std::collections::HashMap;
use std::sync::RwLock;

use events::Principal;
use sha2::{Digest, Sha256};

/// Upper bound of remembered tokens (a few hundred bytes each).
pub const MAX_ENTRIES: usize = 50_000;

#[derive(Clone)]
struct Entry {
    principal: Principal,
    /// `exp` of the token, seconds since the epoch.
    exp: i64,
}

/// The cache; one per [`super::TokenVerifier`].
#[derive(Default)]
pub struct VerifiedTokens {
    entries: RwLock<HashMap<[u8; 32], Entry>>,
}

impl VerifiedTokens {
    /// The principal of a token verified before, if it has not expired at `now` (seconds since
    /// the epoch) given `leeway_s`.
    pub fn get(&self, token: &str, now: i64, leeway_s: u64) -> Option<Principal> {
        let key = digest(token);
        let map = self.entries.read().unwrap_or_else(|p| p.into_inner());
        let entry = map.get(&key)?;
        fresh(entry.exp, now, leeway_s).then(|| entry.principal.clone())
    }

    /// Remembers a token that was just verified in full.
    pub fn insert(&self, token: &str, principal: &Principal, exp: i64) {
        let mut map = self.entries.write().unwrap_or_else(|p| p.into_inner());
        if map.len() >= MAX_ENTRIES {
            map.clear();
        }
        map.insert(
            digest(token),
            Entry {
                principal: principal.clone(),
                exp,
            },
        );
    }
}

fn digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// `exp` is still in force at `now`: the same rule as the full check (`exp + leeway ≥ now`).
pub fn fresh(exp: i64, now: i64, leeway_s: u64) -> bool {
    exp.saturating_add(leeway_s.min(i64::MAX as u64) as i64) >= now
}

#[cfg(test)]
mod tests {
    use super::*;
    use events::TenantId;

    fn principal() -> Principal {
        Principal::new("bob", TenantId::parse("acme").unwrap(), vec![]).unwrap()
    }

    #[test]
    fn expiry_is_checked_on_every_hit() {
        let cache = VerifiedTokens::default();
        cache.insert("a.b.c", &principal(), 1_000);
        assert_eq!(cache.get("a.b.c", 1_000, 0), Some(principal()));
        assert_eq!(cache.get("a.b.c", 1_001, 0), None);
        assert_eq!(cache.get("a.b.c", 1_030, 30), Some(principal()));
        assert_eq!(cache.get("a.b.c", 1_031, 30), None);
    }

    #[test]
    fn only_the_exact_token_hits() {
        let cache = VerifiedTokens::default();
        cache.insert("a.b.c", &principal(), i64::MAX);
        assert!(cache.get("a.b.d", 0, 0).is_none());
        assert!(cache.get("a.b.c ", 0, 0).is_none());
        assert!(fresh(i64::MAX, i64::MAX, u64::MAX));
    }

    #[test]
    fn the_cache_is_bounded() {
        let cache = VerifiedTokens::default();
        for i in 0..=MAX_ENTRIES {
            cache.insert(&i.to_string(), &principal(), i64::MAX);
        }
        let len = cache.entries.read().unwrap().len();
        assert!(len <= MAX_ENTRIES, "{len} entries");
    }
}
