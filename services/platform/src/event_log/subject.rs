//! Aggregate ids and the JetStream subjects they map to.
//!
//! The cqrs-es `aggregate_id` of every aggregate is `"<tenant>.<id>"`; its commits live on
//! `fe.ev.<tenant>.<aggregate type>.<id>`. Everything that builds or parses those strings goes
//! through this file, and every function here answers bad input with an error, never a panic:
//! ids reach it from the network.

use super::EventLogError;

/// Prefix of every event subject; the stream captures `fe.ev.>`.
pub const SUBJECT_PREFIX: &str = "fe.ev";
/// Longest id token; keeps subjects and `Nats-Msg-Id` headers short.
const MAX_ID_LEN: usize = 128;
/// Longest aggregate type token.
const MAX_TYPE_LEN: usize = 64;

/// The cqrs-es aggregate id of `id` within `tenant`: `"<tenant>.<id>"`.
///
/// `id` is not checked here (this cannot fail); [`subject_for`] rejects ids with dots or other
/// characters that are not allowed in a subject token.
pub fn aggregate_id(tenant: &events::TenantId, id: &str) -> String {
    format!("{}.{id}", tenant.as_ref())
}

/// The subject of one aggregate instance: `fe.ev.<tenant>.<aggregate type>.<id>`.
pub fn subject_for(aggregate_type: &str, aggregate_id: &str) -> Result<String, EventLogError> {
    check_aggregate_type(aggregate_type)?;
    let (tenant, id) = split_aggregate_id(aggregate_id)?;
    Ok(format!("{SUBJECT_PREFIX}.{tenant}.{aggregate_type}.{id}"))
}

/// The filter subject matching every instance of one aggregate type in every tenant.
pub fn subject_for_type(aggregate_type: &str) -> Result<String, EventLogError> {
    check_aggregate_type(aggregate_type)?;
    Ok(format!("{SUBJECT_PREFIX}.*.{aggregate_type}.>"))
}

/// The parts of an event subject, as found on a message read from the stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubjectParts<'a> {
    pub tenant: &'a str,
    pub aggregate_type: &'a str,
    pub id: &'a str,
}

impl SubjectParts<'_> {
    /// The cqrs-es aggregate id these parts stand for.
    pub fn aggregate_id(&self) -> String {
        format!("{}.{}", self.tenant, self.id)
    }
}

/// Splits `fe.ev.<tenant>.<type>.<id>` and validates every token.
pub fn parse_subject(subject: &str) -> Result<SubjectParts<'_>, EventLogError> {
    let rest = subject
        .strip_prefix(SUBJECT_PREFIX)
        .and_then(|rest| rest.strip_prefix('.'))
        .ok_or_else(|| invalid(subject, "not an event subject"))?;
    let mut tokens = rest.split('.');
    let (Some(tenant), Some(aggregate_type), Some(id), None) =
        (tokens.next(), tokens.next(), tokens.next(), tokens.next())
    else {
        return Err(invalid(subject, "expected fe.ev.<tenant>.<type>.<id>"));
    };
    check_tenant(tenant).map_err(|reason| invalid(subject, reason))?;
    check_aggregate_type(aggregate_type)?;
    check_id(id).map_err(|reason| invalid(subject, reason))?;
    Ok(SubjectParts {
        tenant,
        aggregate_type,
        id,
    })
}

/// Splits `"<tenant>.<id>"` at its only dot and validates both halves.
pub fn split_aggregate_id(aggregate_id: &str) -> Result<(&str, &str), EventLogError> {
    let (tenant, id) = aggregate_id
        .split_once('.')
        .ok_or_else(|| invalid(aggregate_id, "expected <tenant>.<id>"))?;
    check_tenant(tenant).map_err(|reason| invalid(aggregate_id, reason))?;
    check_id(id).map_err(|reason| invalid(aggregate_id, reason))?;
    Ok((tenant, id))
}

/// Tenants follow `events::TenantId` (`[a-z0-9][a-z0-9-]{0,62}`): one rule, one place.
fn check_tenant(tenant: &str) -> Result<(), &'static str> {
    events::TenantId::parse(tenant)
        .map(|_| ())
        .map_err(|_| "tenant must match [a-z0-9][a-z0-9-]{0,62}")
}

/// Ids are single subject tokens: ASCII letters, digits and `-_=:@+~`, no dots.
fn check_id(id: &str) -> Result<(), &'static str> {
    if id.is_empty() {
        return Err("empty id");
    }
    if id.len() > MAX_ID_LEN {
        return Err("id longer than 128 characters");
    }
    let allowed = |b: u8| b.is_ascii_alphanumeric() || b"-_=:@+~".contains(&b);
    if !id.bytes().all(allowed) {
        return Err("id may only contain ASCII letters, digits and -_=:@+~ (no dots)");
    }
    Ok(())
}

fn check_aggregate_type(aggregate_type: &str) -> Result<(), EventLogError> {
    let allowed = |b: u8| b.is_ascii_alphanumeric() || b == b'-' || b == b'_';
    if aggregate_type.is_empty()
        || aggregate_type.len() > MAX_TYPE_LEN
        || !aggregate_type.bytes().all(allowed)
    {
        return Err(invalid(
            aggregate_type,
            "aggregate type must match [A-Za-z0-9_-]{1,64}",
        ));
    }
    Ok(())
}

/// Builds the error, quoting at most a short prefix of the offending input.
fn invalid(input: &str, reason: &str) -> EventLogError {
    let shown: String = input.chars().take(80).collect();
    EventLogError::InvalidAggregateId(format!("{shown:?}: {reason}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subject_of_a_valid_aggregate() {
        assert_eq!(
            subject_for("task", "acme.0190-abc").unwrap(),
            "fe.ev.acme.task.0190-abc"
        );
        assert_eq!(subject_for_type("task").unwrap(), "fe.ev.*.task.>");
    }

    #[test]
    fn rejected_aggregate_ids() {
        for bad in [
            "",
            "acme",
            ".x",
            "acme.",
            "Acme.x",
            "-acme.x",
            "acme.x.y",
            "acme.x*",
            "acme.>",
            "acme.a b",
            "ac_me.x",
            "acme.\r\n",
        ] {
            assert!(subject_for("task", bad).is_err(), "{bad:?} accepted");
        }
        let long_tenant = format!("{}.x", "a".repeat(64));
        assert!(subject_for("task", &long_tenant).is_err());
        let long_id = format!("acme.{}", "a".repeat(129));
        assert!(subject_for("task", &long_id).is_err());
    }

    #[test]
    fn rejected_aggregate_types() {
        for bad in ["", "ta.sk", "t*", ">", "a b"] {
            assert!(subject_for(bad, "acme.x").is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn parse_round_trips() {
        let parts = parse_subject("fe.ev.acme.task.t-1").unwrap();
        assert_eq!(parts.tenant, "acme");
        assert_eq!(parts.aggregate_type, "task");
        assert_eq!(parts.aggregate_id(), "acme.t-1");
        for bad in [
            "fe.ev.acme.task",
            "fe.ev.acme.task.a.b",
            "xx.ev.acme.task.a",
            "fe.ev",
        ] {
            assert!(parse_subject(bad).is_err(), "{bad:?} accepted");
        }
    }
}
