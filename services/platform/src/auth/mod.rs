//! Bearer-token (JWT) verification: turns an `Authorization` header into a verified
//! [`Principal`], or says why not ([`AuthError`]).
//!
//! Owns the rules of API.md "Authentication" / "Tokens" and DESIGN.md "Security defaults":
//! RS256/ES256 (plus RS384/RS512/ES384) against configured public keys, HS256 only with the
//! explicit development secret, never `none`; the algorithm a token may use is decided by the
//! key, not by the token, so a public key can never be used as an HMAC secret. `exp`, `iss`,
//! `aud`, `sub` and `tenant` are required, `nbf` is honoured, leeway is at most 300 s. Tokens
//! are bounded to 8 KiB before anything is parsed. Nothing here logs or echoes a token.
//!
//! Key loading lives in [`keys`], claim rules in [`claims`], token minting (for the
//! `dev-token` subcommand and tests) in [`mint`], tokens already verified in [`cache`].

mod cache;
mod claims;
mod keys;
mod mint;

use std::path::PathBuf;
use std::sync::Arc;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use events::Principal;
use jsonwebtoken::{Algorithm, Validation};
use serde_json::{Map, Value};

pub use keys::{InvalidKey, KeyLoadError, VerificationKey};
pub use mint::{mint_token, MintError};

/// Largest accepted token; anything longer is rejected before any decoding.
pub const MAX_TOKEN_BYTES: usize = 8 * 1024;
/// Upper bound of the clock-skew leeway, whatever the configuration says.
pub const MAX_LEEWAY_S: u64 = 300;

/// Why a request is not authenticated. Every variant answers 401 upstream; the messages are
/// short and never contain the token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("missing bearer token")]
    Missing,
    #[error("malformed token")]
    Malformed,
    #[error("invalid token signature")]
    BadSignature,
    #[error("token expired")]
    Expired,
    #[error("token not yet valid")]
    NotYetValid,
    #[error("wrong token issuer")]
    WrongIssuer,
    #[error("wrong token audience")]
    WrongAudience,
    #[error("unknown token key id")]
    UnknownKey,
    #[error("unsupported token algorithm")]
    UnsupportedAlgorithm,
    #[error("invalid token claim `{0}`")]
    InvalidClaims(&'static str),
}

/// What [`TokenVerifier::from_settings`] needs (from `FE_JWT_*`).
#[derive(Clone, Debug)]
pub struct AuthSettings {
    /// PEM public key(s) or JWKS file (`FE_JWT_PUBLIC_KEYS`).
    pub public_keys_path: Option<PathBuf>,
    /// Required `iss` (`FE_JWT_ISSUER`).
    pub issuer: String,
    /// Required member of `aud` (`FE_JWT_AUDIENCE`).
    pub audience: String,
    /// Clock skew allowed for `exp`/`nbf` (`FE_JWT_LEEWAY_S`), clamped to [`MAX_LEEWAY_S`].
    pub leeway_s: u64,
    /// Development-only HS256 secret (`FE_JWT_DEV_HS256_SECRET`); `None` disables HS256.
    pub dev_hs256_secret: Option<String>,
}

/// Verifies bearer tokens. Cheap to clone (Arc inside).
#[derive(Clone)]
pub struct TokenVerifier(Arc<Inner>);

struct Inner {
    keys: Vec<VerificationKey>,
    issuer: String,
    /// `iss`/`aud`/`exp`/`nbf`/leeway rules; `algorithms` is set per token from its key.
    validation: Validation,
    /// Tokens that passed every check, so a repeated token skips the signature check.
    verified: cache::VerifiedTokens,
}

impl std::fmt::Debug for TokenVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenVerifier")
            .field("keys", &self.0.keys.len())
            .field("issuer", &self.0.issuer)
            .finish_non_exhaustive()
    }
}

/// The part of the JOSE header read before choosing a key.
#[derive(serde::Deserialize)]
struct JoseHeader {
    alg: String,
    #[serde(default)]
    kid: Option<String>,
    #[serde(default)]
    crit: Option<Value>,
}

impl TokenVerifier {
    /// Loads the configured key file and/or the development HS256 secret.
    pub fn from_settings(s: &AuthSettings) -> Result<Self, KeyLoadError> {
        if s.issuer.is_empty() {
            return Err(KeyLoadError::EmptySetting("FE_JWT_ISSUER"));
        }
        if s.audience.is_empty() {
            return Err(KeyLoadError::EmptySetting("FE_JWT_AUDIENCE"));
        }
        let mut keys = match &s.public_keys_path {
            Some(path) => keys::load_key_file(path)?,
            None => Vec::new(),
        };
        if let Some(secret) = &s.dev_hs256_secret {
            if secret.len() < keys::MIN_DEV_SECRET_BYTES {
                return Err(KeyLoadError::WeakDevSecret);
            }
            tracing::warn!(
                "FE_JWT_DEV_HS256_SECRET is set: HS256 tokens are accepted; never use this outside development"
            );
            keys.push(VerificationKey::hs256_dev_secret(secret.as_bytes()));
        }
        if keys.is_empty() {
            return Err(KeyLoadError::NoKeys);
        }
        if s.leeway_s > MAX_LEEWAY_S {
            tracing::warn!(
                configured = s.leeway_s,
                used = MAX_LEEWAY_S,
                "FE_JWT_LEEWAY_S clamped"
            );
        }
        tracing::info!(keys = keys.len(), "JWT verification keys loaded");
        Ok(Self::from_keys(keys, &s.issuer, &s.audience, s.leeway_s))
    }

    /// A verifier over explicit keys (several keys = rotation). HS256 is possible only if an
    /// HMAC key ([`VerificationKey::hs256_dev_secret`]) is among them.
    pub fn from_keys(
        keys: Vec<VerificationKey>,
        issuer: impl Into<String>,
        audience: impl Into<String>,
        leeway_s: u64,
    ) -> Self {
        let issuer = issuer.into();
        let mut validation = Validation::new(Algorithm::RS256);
        validation.leeway = leeway_s.min(MAX_LEEWAY_S);
        validation.validate_exp = true;
        validation.validate_nbf = true;
        validation.validate_aud = true;
        validation.set_issuer(&[issuer.as_str()]);
        validation.set_audience(&[audience.into()]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        Self(Arc::new(Inner {
            keys,
            issuer,
            validation,
            verified: cache::VerifiedTokens::default(),
        }))
    }

    /// Verifies `Authorization: Bearer <jwt>` (scheme case-insensitive).
    pub fn verify_header(&self, authorization: Option<&str>) -> Result<Principal, AuthError> {
        let value = authorization.map(str::trim).unwrap_or_default();
        if value.is_empty() {
            return Err(AuthError::Missing);
        }
        let (scheme, token) = value.split_once(' ').ok_or(AuthError::Malformed)?;
        if !scheme.eq_ignore_ascii_case("bearer") {
            return Err(AuthError::Malformed);
        }
        self.verify(token.trim_start_matches(' '))
    }

    /// Verifies a compact JWS token and returns its principal. A token that passed every
    /// check before is answered from the cache after its expiry is checked again.
    pub fn verify(&self, token: &str) -> Result<Principal, AuthError> {
        if token.len() > MAX_TOKEN_BYTES {
            return Err(AuthError::Malformed);
        }
        let now = jsonwebtoken::get_current_timestamp() as i64;
        if let Some(principal) = self.0.verified.get(token, now, self.0.validation.leeway) {
            return Ok(principal);
        }
        let (principal, exp) = self.verify_in_full(token)?;
        self.0.verified.insert(token, &principal, exp);
        Ok(principal)
    }

    /// Every check: shape, header, key, signature, time, issuer, audience, claims; returns
    /// the principal and the token's `exp`.
    fn verify_in_full(&self, token: &str) -> Result<(Principal, i64), AuthError> {
        let header = parse_header(token)?;
        let alg: Algorithm = header
            .alg
            .parse()
            .map_err(|_| AuthError::UnsupportedAlgorithm)?;
        let candidates = self.candidates(alg, header.kid.as_deref())?;
        let mut validation = self.0.validation.clone();
        validation.algorithms = vec![alg];
        for key in candidates {
            match jsonwebtoken::decode::<Map<String, Value>>(token, key.decoding_key(), &validation)
            {
                Ok(data) => {
                    let principal = claims::principal_from_claims(&data.claims, &self.0.issuer)?;
                    // `exp` is required and was validated as a number by `decode`.
                    let exp = data
                        .claims
                        .get("exp")
                        .and_then(|v| v.as_i64().or_else(|| v.as_f64().map(|f| f as i64)))
                        .ok_or(AuthError::InvalidClaims("exp"))?;
                    return Ok((principal, exp));
                }
                Err(e) => match claims::map_jwt_error(&e) {
                    // Wrong key of the right family: try the next one (rotation without `kid`).
                    AuthError::BadSignature => {}
                    // The signature matched (claims are checked after it) or the token is
                    // broken: no other key can change that.
                    other => return Err(other),
                },
            }
        }
        Err(AuthError::BadSignature)
    }

    /// The keys a token with `alg` and `kid` may be verified with. A `kid` naming a key picks
    /// it; an unknown `kid` falls back to keys without id (PEM keys cannot carry one, and
    /// issuers put `kid` in every token), and is [`AuthError::UnknownKey`] when there are none.
    fn candidates(
        &self,
        alg: Algorithm,
        kid: Option<&str>,
    ) -> Result<Vec<&VerificationKey>, AuthError> {
        let fitting: Vec<&VerificationKey> = self
            .0
            .keys
            .iter()
            .filter(|k| k.algorithms().contains(&alg))
            .collect();
        if fitting.is_empty() {
            return Err(AuthError::UnsupportedAlgorithm);
        }
        let Some(kid) = kid else {
            return Ok(fitting);
        };
        if let Some(named) = self.0.keys.iter().find(|k| k.kid.as_deref() == Some(kid)) {
            // The named key decides the algorithm: an RSA key's id in an HS256 header is
            // the classic confusion attack.
            return if named.algorithms().contains(&alg) {
                Ok(vec![named])
            } else {
                Err(AuthError::UnsupportedAlgorithm)
            };
        }
        let anonymous: Vec<&VerificationKey> =
            fitting.into_iter().filter(|k| k.kid.is_none()).collect();
        if anonymous.is_empty() {
            Err(AuthError::UnknownKey)
        } else {
            Ok(anonymous)
        }
    }
}

/// Checks the token's shape (size, three base64url segments) and reads its header.
fn parse_header(token: &str) -> Result<JoseHeader, AuthError> {
    if token.is_empty() || token.len() > MAX_TOKEN_BYTES {
        return Err(AuthError::Malformed);
    }
    let segments: Vec<&str> = token.split('.').collect();
    // An empty signature is left to signature verification, so that `alg: none` tokens are
    // reported as what they are (unsupported algorithm) rather than as a shape error.
    let well_formed = segments.len() == 3
        && !segments[0].is_empty()
        && !segments[1].is_empty()
        && segments.iter().all(|s| {
            s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        });
    if !well_formed {
        return Err(AuthError::Malformed);
    }
    let json = URL_SAFE_NO_PAD
        .decode(segments[0])
        .map_err(|_| AuthError::Malformed)?;
    let header: JoseHeader = serde_json::from_slice(&json).map_err(|_| AuthError::Malformed)?;
    // RFC 7515 §4.1.11: extensions listed in `crit` must be understood; we understand none.
    if header.crit.is_some() {
        return Err(AuthError::Malformed);
    }
    Ok(header)
}
