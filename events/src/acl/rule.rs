//! The vocabulary of ACL rules: [`Permission`], [`Effect`], [`Subject`] and [`AclRule`].
//!
//! Owns their syntax and wire forms (API.md "Authorization (ACL)"); evaluation lives in
//! `index.rs`. No IO here.

use std::collections::BTreeSet;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::identity::Principal;
use crate::path::FilePath;

/// A permission a rule grants or denies.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Permission {
    List,
    Read,
    Write,
    Mkdir,
    Move,
    Copy,
    Delete,
}

impl Permission {
    /// Every permission, in declaration order.
    pub const ALL: [Permission; 7] = [
        Self::List,
        Self::Read,
        Self::Write,
        Self::Mkdir,
        Self::Move,
        Self::Copy,
        Self::Delete,
    ];

    /// The wire name, e.g. `"mkdir"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::List => "list",
            Self::Read => "read",
            Self::Write => "write",
            Self::Mkdir => "mkdir",
            Self::Move => "move",
            Self::Copy => "copy",
            Self::Delete => "delete",
        }
    }

    /// A distinct bit per permission, for compact sets in the index.
    pub(crate) fn bit(self) -> u8 {
        1 << (self as u8)
    }
}

impl fmt::Display for Permission {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A string that names no permission.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("unknown permission (expected one of list, read, write, mkdir, move, copy, delete)")]
pub struct UnknownPermission;

impl FromStr for Permission {
    type Err = UnknownPermission;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|p| p.as_str() == s)
            .ok_or(UnknownPermission)
    }
}

/// Whether a matching rule allows or denies. Any matching deny wins.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Effect {
    Allow,
    Deny,
}

/// Whom a rule is about: `user:<sub>`, `role:<role>` or `*` (every principal of the tenant).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum Subject {
    User(String),
    Role(String),
    Everyone,
}

/// A subject string that is not `user:<sub>`, `role:<role>` or `*`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("subject must be \"user:<sub>\", \"role:<role>\" or \"*\" (name 1 to 255 characters, no control characters)")]
pub struct InvalidSubject;

impl Subject {
    /// Parses `user:<sub>`, `role:<role>` or `*`; the name must be 1..=255 characters
    /// without control characters (the same rule as a token's `sub`).
    pub fn parse(s: &str) -> Result<Self, InvalidSubject> {
        if s == "*" {
            return Ok(Self::Everyone);
        }
        let (kind, name) = s.split_once(':').ok_or(InvalidSubject)?;
        let len = name.chars().count();
        if len == 0 || len > 255 || name.chars().any(char::is_control) {
            return Err(InvalidSubject);
        }
        match kind {
            "user" => Ok(Self::User(name.to_owned())),
            "role" => Ok(Self::Role(name.to_owned())),
            _ => Err(InvalidSubject),
        }
    }

    /// Whether a rule about `self` applies to `principal` (its subject or one of its roles).
    pub fn matches_principal(&self, principal: &Principal) -> bool {
        match self {
            Self::User(sub) => *sub == principal.subject,
            Self::Role(role) => principal.has_role(role),
            Self::Everyone => true,
        }
    }

    /// Whether a rule about `self` applies when the question is asked for `asked`, as in
    /// `/v1/acl/check`: `user:bob` is covered by `user:bob` and `*` rules, `role:x` by
    /// `role:x` and `*` rules, `*` by `*` rules only.
    pub fn matches_subject(&self, asked: &Subject) -> bool {
        matches!(self, Self::Everyone) || self == asked
    }
}

impl fmt::Display for Subject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::User(sub) => write!(f, "user:{sub}"),
            Self::Role(role) => write!(f, "role:{role}"),
            Self::Everyone => f.write_str("*"),
        }
    }
}

impl FromStr for Subject {
    type Err = InvalidSubject;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl TryFrom<String> for Subject {
    type Error = InvalidSubject;

    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::parse(&s)
    }
}

impl From<Subject> for String {
    fn from(s: Subject) -> Self {
        s.to_string()
    }
}

/// One ACL rule of a tenant: it applies to `path` and everything below it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AclRule {
    pub rule_id: Uuid,
    pub subject: Subject,
    pub path: FilePath,
    pub permissions: BTreeSet<Permission>,
    pub effect: Effect,
}

/// The outcome of an ACL evaluation.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AclDecision {
    pub allowed: bool,
    /// The rules that decided: the denying ones for a deny, the allowing ones for an allow,
    /// empty when no rule matched. Ordered root-first by rule path, then by rule id.
    pub rule_ids: Vec<Uuid>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permission_round_trips_through_its_name() {
        for p in Permission::ALL {
            assert_eq!(p.as_str().parse::<Permission>(), Ok(p));
            assert_eq!(serde_json::to_string(&p).unwrap(), format!("\"{p}\""));
        }
        assert!("READ".parse::<Permission>().is_err());
    }

    #[test]
    fn permission_bits_are_distinct() {
        let all = Permission::ALL.iter().fold(0u8, |acc, p| {
            assert_eq!(acc & p.bit(), 0);
            acc | p.bit()
        });
        assert_eq!(all.count_ones(), 7);
    }

    #[test]
    fn subject_parses_and_displays() {
        for s in ["user:bob", "role:editors", "*", "user:a:b"] {
            assert_eq!(Subject::parse(s).unwrap().to_string(), s);
        }
        assert_eq!(Subject::parse("user:a:b"), Ok(Subject::User("a:b".into())));
    }

    #[test]
    fn subject_rejects_bad_forms() {
        for bad in ["", "bob", "user:", "group:x", "**", "role:a\nb", "User:bob"] {
            assert_eq!(Subject::parse(bad), Err(InvalidSubject), "{bad:?}");
        }
    }

    #[test]
    fn rule_serialises_with_wire_names() {
        let rule = AclRule {
            rule_id: Uuid::nil(),
            subject: Subject::Role("ops".into()),
            path: FilePath::parse("/a").unwrap(),
            permissions: [Permission::Read, Permission::List].into(),
            effect: Effect::Deny,
        };
        let json = serde_json::to_value(&rule).unwrap();
        assert_eq!(json["subject"], "role:ops");
        assert_eq!(json["effect"], "deny");
        assert_eq!(json["permissions"], serde_json::json!(["list", "read"]));
        let back: AclRule = serde_json::from_value(json).unwrap();
        assert_eq!(back, rule);
    }
}
