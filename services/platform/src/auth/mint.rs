//! Token minting from a private key PEM: used by the `file-engine dev-token` subcommand for
//! local development. ES256 for an EC (P-256) key, RS256 for an RSA key, detected from the PEM.
//!
//! Errors never contain key material.

use jsonwebtoken::{Algorithm, EncodingKey, Header};

/// Why a token could not be minted.
#[derive(Debug, thiserror::Error)]
pub enum MintError {
    #[error("not a PKCS#8 EC (P-256) or RSA private key PEM")]
    InvalidKey,
    #[error("claims must be a JSON object")]
    ClaimsNotObject,
    #[error("signing failed: {0}")]
    Signing(#[source] jsonwebtoken::errors::Error),
}

/// Signs `claims` (a JSON object) with the private key; `kid` goes into the header.
pub fn mint_token(
    private_key_pem: &[u8],
    claims: &serde_json::Value,
    kid: Option<&str>,
) -> Result<String, MintError> {
    if !claims.is_object() {
        return Err(MintError::ClaimsNotObject);
    }
    let (alg, key) = if let Ok(key) = EncodingKey::from_ec_pem(private_key_pem) {
        (Algorithm::ES256, key)
    } else if let Ok(key) = EncodingKey::from_rsa_pem(private_key_pem) {
        (Algorithm::RS256, key)
    } else {
        return Err(MintError::InvalidKey);
    };
    let mut header = Header::new(alg);
    header.kid = kid.map(str::to_owned);
    jsonwebtoken::encode(&header, claims, &key).map_err(MintError::Signing)
}
