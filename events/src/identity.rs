//! Who is asking: [`TenantId`], [`Principal`] and the client-chosen [`IdempotencyKey`].
//!
//! Owns the syntax of these identifiers (API.md "Authentication" and "Idempotency keys").
//! Verifying a token is the API's job; this module only turns already-verified claims into
//! values that cannot be invalid. No IO here.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Longest tenant id: one leading character plus up to 62 more.
const MAX_TENANT_LEN: usize = 63;
/// Longest subject (`sub` claim) and idempotency key, in characters.
const MAX_SUBJECT_LEN: usize = 255;
const MAX_IDEMPOTENCY_KEY_LEN: usize = 255;

/// Why an identifier was rejected. Messages never echo the input.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, thiserror::Error)]
pub enum IdentityError {
    #[error("tenant id must match [a-z0-9][a-z0-9-]{{0,62}}")]
    InvalidTenant,
    #[error("subject must be 1 to 255 characters without control characters")]
    InvalidSubject,
    #[error("idempotency key must be 1 to 255 visible ASCII characters")]
    InvalidIdempotencyKey,
}

/// A tenant identifier, `[a-z0-9][a-z0-9-]{0,62}`. Serialised as its string; deserialising
/// validates.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct TenantId(String);

impl TenantId {
    /// Parses a tenant id (the `tenant` claim).
    pub fn parse(s: &str) -> Result<Self, IdentityError> {
        let mut bytes = s.bytes();
        let first_ok = bytes
            .next()
            .is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
        let rest_ok = bytes.all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if first_ok && rest_ok && s.len() <= MAX_TENANT_LEN {
            Ok(Self(s.to_owned()))
        } else {
            Err(IdentityError::InvalidTenant)
        }
    }

    /// The tenant id string.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for TenantId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for TenantId {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for TenantId {
    type Error = IdentityError;

    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::parse(&s)
    }
}

impl From<TenantId> for String {
    fn from(t: TenantId) -> Self {
        t.0
    }
}

impl std::str::FromStr for TenantId {
    type Err = IdentityError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

/// The `Idempotency-Key` header value: 1..=255 visible ASCII characters (0x21..=0x7E).
/// Scoping it to a principal is the caller's job.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct IdempotencyKey(String);

impl IdempotencyKey {
    /// Parses a header value.
    pub fn parse(s: &str) -> Result<Self, IdentityError> {
        let visible = s.bytes().all(|b| (0x21..=0x7E).contains(&b));
        if visible && !s.is_empty() && s.len() <= MAX_IDEMPOTENCY_KEY_LEN {
            Ok(Self(s.to_owned()))
        } else {
            Err(IdentityError::InvalidIdempotencyKey)
        }
    }

    /// The key string.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for IdempotencyKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for IdempotencyKey {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for IdempotencyKey {
    type Error = IdentityError;

    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::parse(&s)
    }
}

impl From<IdempotencyKey> for String {
    fn from(k: IdempotencyKey) -> Self {
        k.0
    }
}

/// An authenticated caller: the token's `sub`, its tenant and its roles.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Principal {
    pub subject: String,
    pub tenant: TenantId,
    pub roles: Vec<String>,
}

impl Principal {
    /// Builds a principal; the subject must be 1..=255 characters without control characters.
    pub fn new(
        subject: impl Into<String>,
        tenant: TenantId,
        roles: Vec<String>,
    ) -> Result<Self, IdentityError> {
        let subject = subject.into();
        let len = subject.chars().count();
        if len == 0 || len > MAX_SUBJECT_LEN || subject.chars().any(char::is_control) {
            return Err(IdentityError::InvalidSubject);
        }
        Ok(Self {
            subject,
            tenant,
            roles,
        })
    }

    /// Whether the principal holds `role`.
    pub fn has_role(&self, role: &str) -> bool {
        self.roles.iter().any(|r| r == role)
    }

    /// Tenant administrator (role `admin`): bypasses the ACL inside its own tenant.
    pub fn is_admin(&self) -> bool {
        self.has_role("admin")
    }

    /// May read the audit API (role `auditor`).
    pub fn is_auditor(&self) -> bool {
        self.has_role("auditor")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tenant() -> TenantId {
        TenantId::parse("acme").unwrap()
    }

    #[test]
    fn tenant_accepts_lowercase_digits_and_inner_dashes() {
        for ok in ["a", "0", "acme-1", "a-", &"a".repeat(63)] {
            assert_eq!(TenantId::parse(ok).unwrap().as_str(), ok);
        }
    }

    #[test]
    fn tenant_rejects_bad_forms() {
        let long = "a".repeat(64);
        for bad in ["", "-a", "A", "ac me", "acme_1", "é", "a/b", long.as_str()] {
            assert_eq!(
                TenantId::parse(bad),
                Err(IdentityError::InvalidTenant),
                "{bad}"
            );
        }
    }

    #[test]
    fn tenant_serde_validates() {
        let t: TenantId = serde_json::from_str("\"acme\"").unwrap();
        assert_eq!(serde_json::to_string(&t).unwrap(), "\"acme\"");
        assert!(serde_json::from_str::<TenantId>("\"ACME\"").is_err());
    }

    #[test]
    fn idempotency_key_accepts_visible_ascii() {
        let all: String = (0x21u8..=0x7E).map(char::from).collect();
        assert!(IdempotencyKey::parse(&all).is_ok());
        assert!(IdempotencyKey::parse(&"k".repeat(255)).is_ok());
    }

    #[test]
    fn idempotency_key_rejects_bad_forms() {
        let long = "k".repeat(256);
        for bad in ["", "a b", "a\tb", "é", "a\u{7f}", long.as_str()] {
            assert_eq!(
                IdempotencyKey::parse(bad),
                Err(IdentityError::InvalidIdempotencyKey),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn principal_rejects_bad_subjects() {
        for bad in [String::new(), "a\nb".to_owned(), "x".repeat(256)] {
            assert_eq!(
                Principal::new(bad, tenant(), vec![]),
                Err(IdentityError::InvalidSubject)
            );
        }
        assert!(Principal::new("é".repeat(255), tenant(), vec![]).is_ok());
    }

    #[test]
    fn principal_roles() {
        let p = Principal::new("bob", tenant(), vec!["admin".into()]).unwrap();
        assert!(p.is_admin() && !p.is_auditor());
        let p = Principal::new("eve", tenant(), vec!["auditor".into()]).unwrap();
        assert!(!p.is_admin() && p.is_auditor());
    }
}
