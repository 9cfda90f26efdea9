//! Verification keys: what a [`VerificationKey`] is and how the key file named by
//! `FE_JWT_PUBLIC_KEYS` becomes a list of them.
//!
//! A key file holds either one or several concatenated PEM public keys (`PUBLIC KEY` /
//! `RSA PUBLIC KEY` blocks, RSA or EC) or a JWKS document (`{"keys": [...]}`, or a single JWK);
//! the format is detected from the content. Several keys mean rotation. Each key carries the
//! algorithms it may verify, fixed here from the key type (never from a token header), which is
//! what rules out algorithm confusion later. This module refuses private or symmetric key
//! material in a public key file, and no error it returns ever contains key bytes.

use std::io::Read;
use std::path::{Path, PathBuf};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey};

/// Largest key file read; a JWKS with dozens of RSA keys stays far below it.
const MAX_KEY_FILE_BYTES: u64 = 1 << 20;
/// Smallest RSA modulus accepted, in bytes (2048 bits).
const MIN_RSA_MODULUS_BYTES: usize = 256;
/// Smallest development HS256 secret, in bytes (the HS256 output size).
pub(crate) const MIN_DEV_SECRET_BYTES: usize = 32;

const RSA_ALGORITHMS: &[Algorithm] = &[Algorithm::RS256, Algorithm::RS384, Algorithm::RS512];

/// Why one key was rejected. Never contains key material.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum InvalidKey {
    #[error("not an RSA or EC (P-256/P-384) public key")]
    NotPublicKey,
    #[error("private key material where a public key was expected")]
    PrivateKey,
    #[error("symmetric keys are not accepted as public keys")]
    SymmetricKey,
    #[error("unsupported elliptic curve (P-256 and P-384 are supported)")]
    UnsupportedCurve,
    #[error("RSA modulus shorter than 2048 bits")]
    WeakRsaKey,
    #[error("the key's `alg` is not RS256/RS384/RS512/ES256/ES384 or does not fit the key type")]
    UnsupportedAlgorithm,
    #[error("invalid key parameters")]
    InvalidParameters,
}

/// Why the key file could not be loaded. Names the file, never its content.
#[derive(Debug, thiserror::Error)]
pub enum KeyLoadError {
    #[error("no JWT verification key configured (FE_JWT_PUBLIC_KEYS)")]
    NoKeys,
    #[error("reading JWT key file {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("JWT key file {path} is larger than 1 MiB")]
    TooLarge { path: PathBuf },
    #[error("JWT key file {path} is neither PEM nor JWKS JSON")]
    UnknownFormat { path: PathBuf },
    #[error("JWT key file {path} contains no usable public key")]
    Empty { path: PathBuf },
    #[error("JWT key file {path}: key #{index}: {reason}")]
    Key {
        path: PathBuf,
        index: usize,
        reason: InvalidKey,
    },
    #[error("JWT key file {path}: invalid JSON at line {line}, column {column}")]
    Json {
        path: PathBuf,
        line: usize,
        column: usize,
    },
    #[error("JWT key file {path}: key id {kid:?} appears twice")]
    DuplicateKid { path: PathBuf, kid: String },
    #[error("FE_JWT_DEV_HS256_SECRET must be at least 32 bytes")]
    WeakDevSecret,
    #[error("{0} must not be empty")]
    EmptySetting(&'static str),
}

/// One public key (or the development HMAC secret) and the algorithms it may verify.
#[derive(Clone, Debug)]
pub struct VerificationKey {
    /// The key id tokens name in their `kid` header; `None` for PEM keys.
    pub kid: Option<String>,
    algorithms: Vec<Algorithm>,
    key: DecodingKey,
}

impl VerificationKey {
    /// Parses one PEM public key block (`PUBLIC KEY` SPKI or `RSA PUBLIC KEY` PKCS#1).
    pub fn from_pem(pem: &[u8], kid: Option<String>) -> Result<Self, InvalidKey> {
        let text = std::str::from_utf8(pem).map_err(|_| InvalidKey::NotPublicKey)?;
        if text.contains("PRIVATE KEY") {
            return Err(InvalidKey::PrivateKey);
        }
        if let Ok(key) = DecodingKey::from_ec_pem(pem) {
            return Self::ec(key, kid);
        }
        let key = DecodingKey::from_rsa_pem(pem).map_err(|_| InvalidKey::NotPublicKey)?;
        Self::rsa(key, kid)
    }

    /// Converts one JWK (RSA or EC public key); its `alg`, when present, narrows the
    /// algorithms the key may verify.
    pub fn from_jwk(jwk: &Jwk) -> Result<Self, InvalidKey> {
        let kid = jwk.common.key_id.clone();
        let key = match &jwk.algorithm {
            AlgorithmParameters::RSA(_) | AlgorithmParameters::EllipticCurve(_) => {
                DecodingKey::from_jwk(jwk).map_err(|_| InvalidKey::InvalidParameters)?
            }
            AlgorithmParameters::OctetKey(_) => return Err(InvalidKey::SymmetricKey),
            _ => return Err(InvalidKey::NotPublicKey),
        };
        let mut parsed = match &jwk.algorithm {
            AlgorithmParameters::EllipticCurve(p) => match p.curve {
                EllipticCurve::P256 | EllipticCurve::P384 => Self::ec(key, kid)?,
                _ => return Err(InvalidKey::UnsupportedCurve),
            },
            _ => Self::rsa(key, kid)?,
        };
        if let Some(alg) = jwk.common.key_algorithm {
            let alg: Algorithm = alg
                .to_string()
                .parse()
                .map_err(|_| InvalidKey::UnsupportedAlgorithm)?;
            if !parsed.algorithms.contains(&alg) {
                return Err(InvalidKey::UnsupportedAlgorithm);
            }
            parsed.algorithms = vec![alg];
        }
        Ok(parsed)
    }

    /// The development HS256 secret (`FE_JWT_DEV_HS256_SECRET`). Never loaded from a key file.
    pub fn hs256_dev_secret(secret: &[u8]) -> Self {
        Self {
            kid: None,
            algorithms: vec![Algorithm::HS256],
            key: DecodingKey::from_secret(secret),
        }
    }

    /// The algorithms this key may verify.
    pub fn algorithms(&self) -> &[Algorithm] {
        &self.algorithms
    }

    pub(crate) fn decoding_key(&self) -> &DecodingKey {
        &self.key
    }

    /// An EC key: P-256 verifies ES256 only, P-384 ES384 only, so a token cannot pick a hash
    /// weaker than the curve. The point itself is checked by a probe verification, which builds
    /// the verifier (and fails) for a point that is not on the curve.
    fn ec(key: DecodingKey, kid: Option<String>) -> Result<Self, InvalidKey> {
        let point = key
            .try_get_as_bytes()
            .map_err(|_| InvalidKey::InvalidParameters)?;
        let alg = match point.len() {
            33 | 65 => Algorithm::ES256,
            49 | 97 => Algorithm::ES384,
            _ => return Err(InvalidKey::UnsupportedCurve),
        };
        jsonwebtoken::crypto::verify("AA", b"probe", &key, alg)
            .map_err(|_| InvalidKey::InvalidParameters)?;
        Ok(Self {
            kid,
            algorithms: vec![alg],
            key,
        })
    }

    /// An RSA key: the modulus is extracted (which parses the key now rather than at the first
    /// request) and must be at least 2048 bits.
    fn rsa(key: DecodingKey, kid: Option<String>) -> Result<Self, InvalidKey> {
        let jwk = Jwk::from_decoding_key(&key, None).map_err(|_| InvalidKey::InvalidParameters)?;
        let AlgorithmParameters::RSA(params) = &jwk.algorithm else {
            return Err(InvalidKey::NotPublicKey);
        };
        let modulus = URL_SAFE_NO_PAD
            .decode(&params.n)
            .map_err(|_| InvalidKey::InvalidParameters)?;
        let significant = modulus.iter().skip_while(|b| **b == 0).count();
        if significant < MIN_RSA_MODULUS_BYTES {
            return Err(InvalidKey::WeakRsaKey);
        }
        Ok(Self {
            kid,
            algorithms: RSA_ALGORITHMS.to_vec(),
            key,
        })
    }
}

/// Loads every key of the file at `path` (PEM or JWKS, detected by content).
pub(crate) fn load_key_file(path: &Path) -> Result<Vec<VerificationKey>, KeyLoadError> {
    let bytes = read_bounded(path)?;
    let text = std::str::from_utf8(&bytes).map_err(|_| KeyLoadError::UnknownFormat {
        path: path.to_owned(),
    })?;
    let trimmed = text.trim_start();
    let keys = if trimmed.starts_with('{') {
        parse_jwks(path, trimmed)?
    } else if trimmed.contains("-----BEGIN ") {
        parse_pem_blocks(path, trimmed)?
    } else {
        return Err(KeyLoadError::UnknownFormat {
            path: path.to_owned(),
        });
    };
    if keys.is_empty() {
        return Err(KeyLoadError::Empty {
            path: path.to_owned(),
        });
    }
    reject_duplicate_kids(path, &keys)?;
    Ok(keys)
}

fn read_bounded(path: &Path) -> Result<Vec<u8>, KeyLoadError> {
    let io = |source| KeyLoadError::Io {
        path: path.to_owned(),
        source,
    };
    let file = std::fs::File::open(path).map_err(io)?;
    let mut bytes = Vec::new();
    file.take(MAX_KEY_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(io)?;
    if bytes.len() as u64 > MAX_KEY_FILE_BYTES {
        return Err(KeyLoadError::TooLarge {
            path: path.to_owned(),
        });
    }
    Ok(bytes)
}

/// Splits concatenated PEM blocks; text between blocks (comments, `Bag Attributes`) is ignored.
fn parse_pem_blocks(path: &Path, text: &str) -> Result<Vec<VerificationKey>, KeyLoadError> {
    let mut keys = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find("-----BEGIN ") {
        let index = keys.len() + 1;
        let key_error = |reason| KeyLoadError::Key {
            path: path.to_owned(),
            index,
            reason,
        };
        let block = &rest[start..];
        let end = block
            .find("-----END ")
            .and_then(|e| block[e + 9..].find("-----").map(|tail| e + 9 + tail + 5))
            .ok_or_else(|| key_error(InvalidKey::NotPublicKey))?;
        keys.push(VerificationKey::from_pem(&block.as_bytes()[..end], None).map_err(key_error)?);
        rest = &block[end..];
    }
    Ok(keys)
}

/// A JWKS (`{"keys": [...]}`) or a single JWK. Keys meant for encryption (`use: enc`) or of a
/// kind we do not verify with are skipped; private (`d`), symmetric (`oct`) or broken keys make
/// the whole file invalid, because such a file is a misconfiguration that would leak or weaken
/// signing keys.
fn parse_jwks(path: &Path, text: &str) -> Result<Vec<VerificationKey>, KeyLoadError> {
    let doc: serde_json::Value = serde_json::from_str(text).map_err(|e| KeyLoadError::Json {
        path: path.to_owned(),
        line: e.line(),
        column: e.column(),
    })?;
    let entries = match doc.get("keys") {
        Some(serde_json::Value::Array(keys)) => keys.clone(),
        Some(_) => {
            return Err(KeyLoadError::UnknownFormat {
                path: path.to_owned(),
            })
        }
        None => vec![doc],
    };
    let mut keys = Vec::new();
    for (i, entry) in entries.into_iter().enumerate() {
        let key_error = |reason| KeyLoadError::Key {
            path: path.to_owned(),
            index: i + 1,
            reason,
        };
        if entry.get("d").is_some() {
            return Err(key_error(InvalidKey::PrivateKey));
        }
        let jwk: Jwk =
            serde_json::from_value(entry).map_err(|_| key_error(InvalidKey::InvalidParameters))?;
        if matches!(jwk.common.public_key_use, Some(PublicKeyUse::Encryption)) {
            continue;
        }
        match VerificationKey::from_jwk(&jwk) {
            Ok(key) => keys.push(key),
            // An identity provider's JWKS may also publish keys we cannot use (EdDSA, PS256,
            // P-521); they are skipped, so tokens signed with them fail as unknown keys.
            Err(
                reason @ (InvalidKey::NotPublicKey
                | InvalidKey::UnsupportedCurve
                | InvalidKey::UnsupportedAlgorithm),
            ) => tracing::warn!(
                path = %path.display(),
                index = i + 1,
                kid = jwk.common.key_id.as_deref().unwrap_or("-"),
                %reason,
                "JWKS key skipped"
            ),
            Err(reason) => return Err(key_error(reason)),
        }
    }
    Ok(keys)
}

fn reject_duplicate_kids(path: &Path, keys: &[VerificationKey]) -> Result<(), KeyLoadError> {
    let mut seen = std::collections::HashSet::new();
    for kid in keys.iter().filter_map(|k| k.kid.as_deref()) {
        if !seen.insert(kid) {
            return Err(KeyLoadError::DuplicateKid {
                path: path.to_owned(),
                kid: kid.to_owned(),
            });
        }
    }
    Ok(())
}
