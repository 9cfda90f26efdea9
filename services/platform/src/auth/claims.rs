//! From a verified token's claims to a [`Principal`], and from `jsonwebtoken` errors to
//! [`AuthError`].
//!
//! Runs only after the signature, `exp`/`nbf`, `iss` and `aud` have been checked; it owns the
//! application claims (`sub`, `tenant`, `roles`). Every rejection names the claim, never its
//! value.

use events::{Principal, TenantId};
use jsonwebtoken::errors::{Error as JwtError, ErrorKind};
use serde_json::{Map, Value};

use super::AuthError;

/// Builds the principal from already-verified claims.
pub(crate) fn principal_from_claims(
    claims: &Map<String, Value>,
    issuer: &str,
) -> Result<Principal, AuthError> {
    // `jsonwebtoken` also accepts an `iss` array that contains ours; RFC 7519 makes `iss` a
    // single StringOrURI, so anything but that exact string is the wrong issuer.
    if claims.get("iss").and_then(Value::as_str) != Some(issuer) {
        return Err(AuthError::WrongIssuer);
    }
    let subject = claims
        .get("sub")
        .and_then(Value::as_str)
        .ok_or(AuthError::InvalidClaims("sub"))?;
    let tenant = claims
        .get("tenant")
        .and_then(Value::as_str)
        .ok_or(AuthError::InvalidClaims("tenant"))?;
    let tenant = TenantId::parse(tenant).map_err(|_| AuthError::InvalidClaims("tenant"))?;
    let roles = roles(claims.get("roles"))?;
    Principal::new(subject, tenant, roles).map_err(|_| AuthError::InvalidClaims("sub"))
}

/// `roles` is optional (absent or `null` = no roles); otherwise an array of strings.
fn roles(value: Option<&Value>) -> Result<Vec<String>, AuthError> {
    match value {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Array(items)) => items
            .iter()
            .map(|r| {
                r.as_str()
                    .map(str::to_owned)
                    .ok_or(AuthError::InvalidClaims("roles"))
            })
            .collect(),
        Some(_) => Err(AuthError::InvalidClaims("roles")),
    }
}

/// Maps a `jsonwebtoken` failure to the reason reported upstream.
pub(crate) fn map_jwt_error(error: &JwtError) -> AuthError {
    match error.kind() {
        ErrorKind::InvalidSignature
        | ErrorKind::InvalidEcdsaKey
        | ErrorKind::InvalidRsaKey(_)
        | ErrorKind::InvalidKeyFormat => AuthError::BadSignature,
        ErrorKind::InvalidAlgorithm
        | ErrorKind::UnsupportedAlgorithm
        | ErrorKind::MissingAlgorithm
        | ErrorKind::InvalidAlgorithmName => AuthError::UnsupportedAlgorithm,
        ErrorKind::ExpiredSignature => AuthError::Expired,
        ErrorKind::ImmatureSignature => AuthError::NotYetValid,
        ErrorKind::InvalidIssuer => AuthError::WrongIssuer,
        ErrorKind::InvalidAudience => AuthError::WrongAudience,
        ErrorKind::InvalidSubject => AuthError::InvalidClaims("sub"),
        ErrorKind::MissingRequiredClaim(claim) | ErrorKind::InvalidClaimFormat(claim) => {
            AuthError::InvalidClaims(static_claim_name(claim))
        }
        _ => AuthError::Malformed,
    }
}

/// `AuthError::InvalidClaims` carries a `&'static str`; only registered claim names occur.
fn static_claim_name(claim: &str) -> &'static str {
    match claim {
        "exp" => "exp",
        "nbf" => "nbf",
        "iss" => "iss",
        "aud" => "aud",
        "sub" => "sub",
        _ => "claims",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn claims(v: Value) -> Map<String, Value> {
        v.as_object().cloned().unwrap()
    }

    #[test]
    fn roles_must_be_strings() {
        assert_eq!(roles(None).unwrap(), Vec::<String>::new());
        assert_eq!(roles(Some(&json!(["a", "b"]))).unwrap(), vec!["a", "b"]);
        for bad in [json!("admin"), json!([1]), json!(["a", null]), json!({})] {
            assert!(matches!(
                roles(Some(&bad)),
                Err(AuthError::InvalidClaims("roles"))
            ));
        }
    }

    #[test]
    fn issuer_array_is_rejected_even_if_it_contains_ours() {
        let c = claims(json!({"iss": ["fe", "x"], "sub": "a", "tenant": "t"}));
        assert!(matches!(
            principal_from_claims(&c, "fe"),
            Err(AuthError::WrongIssuer)
        ));
    }

    #[test]
    fn subject_must_be_a_non_empty_string() {
        for sub in [json!(""), json!(7), json!("x".repeat(256))] {
            let c = claims(json!({"iss": "fe", "sub": sub, "tenant": "t"}));
            assert!(matches!(
                principal_from_claims(&c, "fe"),
                Err(AuthError::InvalidClaims("sub"))
            ));
        }
    }
}
