//! Signed link tokens: `base64url(claims) "." base64url(HMAC-SHA256(key, claims))`, bound to
//! tenant, path and version and expiring. Signing uses the first configured secret;
//! verification accepts any of them, so secrets rotate by prepending a new one and dropping
//! the old after the longest link lifetime. Comparison is constant-time (hmac's verify).

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LinkClaims {
    #[serde(rename = "t")]
    pub tenant: String,
    #[serde(rename = "p")]
    pub path: String,
    #[serde(rename = "v")]
    pub version: String,
    /// Expiry, unix seconds.
    #[serde(rename = "e")]
    pub expires: i64,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TokenError {
    #[error("links are not configured")]
    NoKey,
    #[error("the link is malformed or its signature is wrong")]
    Invalid,
    #[error("the link has expired")]
    Expired,
}

fn mac(key: &[u8], data: &[u8]) -> Result<Hmac<Sha256>, TokenError> {
    let mut m = Hmac::<Sha256>::new_from_slice(key).map_err(|_| TokenError::NoKey)?;
    m.update(data);
    Ok(m)
}

pub fn sign(secrets: &[String], claims: &LinkClaims) -> Result<String, TokenError> {
    let key = secrets.first().ok_or(TokenError::NoKey)?;
    let body = URL_SAFE_NO_PAD.encode(serde_json::to_vec(claims).map_err(|_| TokenError::Invalid)?);
    let sig = mac(key.as_bytes(), body.as_bytes())?
        .finalize()
        .into_bytes();
    Ok(format!("{body}.{}", URL_SAFE_NO_PAD.encode(sig)))
}

pub fn verify(secrets: &[String], token: &str, now: i64) -> Result<LinkClaims, TokenError> {
    if secrets.is_empty() {
        return Err(TokenError::NoKey);
    }
    if token.len() > 4096 {
        return Err(TokenError::Invalid);
    }
    let (body, sig) = token.split_once('.').ok_or(TokenError::Invalid)?;
    let sig = URL_SAFE_NO_PAD
        .decode(sig)
        .map_err(|_| TokenError::Invalid)?;
    let signed_by_any = secrets
        .iter()
        .any(|k| mac(k.as_bytes(), body.as_bytes()).is_ok_and(|m| m.verify_slice(&sig).is_ok()));
    if !signed_by_any {
        return Err(TokenError::Invalid);
    }
    let raw = URL_SAFE_NO_PAD
        .decode(body)
        .map_err(|_| TokenError::Invalid)?;
    let claims: LinkClaims = serde_json::from_slice(&raw).map_err(|_| TokenError::Invalid)?;
    if claims.expires <= now {
        return Err(TokenError::Expired);
    }
    Ok(claims)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims() -> LinkClaims {
        LinkClaims {
            tenant: "acme".into(),
            path: "/a.pdf".into(),
            version: "v1".into(),
            expires: 2_000,
        }
    }

    #[test]
    fn a_signed_token_verifies_until_it_expires() {
        let keys = vec!["k1".to_owned()];
        let t = sign(&keys, &claims()).unwrap();
        assert_eq!(verify(&keys, &t, 1_000).unwrap(), claims());
        assert_eq!(verify(&keys, &t, 2_000), Err(TokenError::Expired));
    }

    #[test]
    fn tampering_is_detected() {
        let keys = vec!["k1".to_owned()];
        let t = sign(&keys, &claims()).unwrap();
        let (body, sig) = t.split_once('.').unwrap();
        let mut forged = claims();
        forged.path = "/other.pdf".into();
        let forged_body = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&forged).unwrap());
        assert_eq!(
            verify(&keys, &format!("{forged_body}.{sig}"), 1_000),
            Err(TokenError::Invalid)
        );
        assert_eq!(
            verify(&keys, &format!("{body}.{}x", &sig[..sig.len() - 1]), 1_000),
            Err(TokenError::Invalid)
        );
        assert_eq!(verify(&keys, "garbage", 1_000), Err(TokenError::Invalid));
        assert_eq!(
            verify(&["other".to_owned()], &t, 1_000),
            Err(TokenError::Invalid)
        );
    }

    #[test]
    fn rotation_accepts_old_keys_and_signs_with_the_first() {
        let old = vec!["old".to_owned()];
        let t = sign(&old, &claims()).unwrap();
        let rotated = vec!["new".to_owned(), "old".to_owned()];
        assert!(verify(&rotated, &t, 1_000).is_ok());
        let t2 = sign(&rotated, &claims()).unwrap();
        assert_eq!(verify(&old, &t2, 1_000), Err(TokenError::Invalid));
    }
}
