//! Signing keys generated at test time and tokens minted with them.
//!
//! No key is committed: [`TestKeys::es256`] draws a fresh P-256 key with the `p256` crate,
//! [`TestKeys::rs256`] has `openssl genpkey` create a 2048-bit RSA key in the key's temporary
//! directory. The public key is written there as an SPKI PEM, ready for `FE_JWT_PUBLIC_KEYS`.
//! Tokens are signed with `jsonwebtoken` directly: this crate must not depend on `platform`,
//! whose own tests use it to check the verifier.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{SystemTime, UNIX_EPOCH};

use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use p256::pkcs8::{EncodePrivateKey, EncodePublicKey, LineEnding};
use serde_json::{json, Value};

/// `iss` of every token minted by [`TestKeys::token`]; configure it as `FE_JWT_ISSUER`.
pub const TEST_ISSUER: &str = "fe-test";
/// `aud` of every token minted by [`TestKeys::token`]; configure it as `FE_JWT_AUDIENCE`.
pub const TEST_AUDIENCE: &str = "fe-test-aud";
/// Lifetime of tokens minted by [`TestKeys::token`].
const TOKEN_TTL_S: u64 = 600;

/// A key pair owned by one test: the public key as a PEM file (deleted with `dir`), the
/// private key in memory, and the `kid` put into token headers (none by default).
pub struct TestKeys {
    pub dir: tempfile::TempDir,
    pub public_pem_path: PathBuf,
    pub private_pem: Vec<u8>,
    pub kid: Option<String>,
    algorithm: Algorithm,
}

impl TestKeys {
    /// A fresh P-256 key (tokens are ES256).
    pub fn es256() -> Self {
        let secret = loop {
            // A random 32-byte string is a valid scalar except with negligible probability.
            if let Ok(key) = p256::SecretKey::from_slice(&rand::random::<[u8; 32]>()) {
                break key;
            }
        };
        let private_pem = secret
            .to_pkcs8_pem(LineEnding::LF)
            .expect("encode P-256 private key")
            .as_bytes()
            .to_vec();
        let public_pem = secret
            .public_key()
            .to_public_key_pem(LineEnding::LF)
            .expect("encode P-256 public key");
        let dir = tempfile::tempdir().expect("key directory");
        let public_pem_path = dir.path().join("public.pem");
        std::fs::write(&public_pem_path, public_pem).expect("write public key");
        Self {
            dir,
            public_pem_path,
            private_pem,
            kid: None,
            algorithm: Algorithm::ES256,
        }
    }

    /// A fresh 2048-bit RSA key made by `openssl` (tokens are RS256).
    pub fn rs256() -> Self {
        let dir = tempfile::tempdir().expect("key directory");
        let private_path = dir.path().join("private.pem");
        let public_pem_path = dir.path().join("public.pem");
        openssl(&[
            "genpkey",
            "-algorithm",
            "RSA",
            "-pkeyopt",
            "rsa_keygen_bits:2048",
            "-out",
            path_str(&private_path),
        ]);
        openssl(&[
            "pkey",
            "-in",
            path_str(&private_path),
            "-pubout",
            "-out",
            path_str(&public_pem_path),
        ]);
        let private_pem = std::fs::read(&private_path).expect("read RSA private key");
        Self {
            dir,
            public_pem_path,
            private_pem,
            kid: None,
            algorithm: Algorithm::RS256,
        }
    }

    /// The same key, naming itself `kid` in token headers and in [`TestKeys::jwk`].
    pub fn with_kid(mut self, kid: &str) -> Self {
        self.kid = Some(kid.to_owned());
        self
    }

    /// ES256 or RS256.
    pub fn algorithm(&self) -> Algorithm {
        self.algorithm
    }

    /// The public key PEM (the content of `public_pem_path`).
    pub fn public_pem(&self) -> Vec<u8> {
        std::fs::read(&self.public_pem_path).expect("read public key")
    }

    /// A valid token: `iss` [`TEST_ISSUER`], `aud` [`TEST_AUDIENCE`], expiring in 10 minutes.
    pub fn token(&self, sub: &str, tenant: &str, roles: &[&str]) -> String {
        let now = now();
        self.token_with(json!({
            "sub": sub, "tenant": tenant, "roles": roles,
            "iss": TEST_ISSUER, "aud": TEST_AUDIENCE, "iat": now, "exp": now + TOKEN_TTL_S,
        }))
    }

    /// A token with exactly these claims (for hostile tests), signed with this key.
    pub fn token_with(&self, claims: Value) -> String {
        let mut header = Header::new(self.algorithm);
        header.kid = self.kid.clone();
        self.token_with_header(&header, &claims)
    }

    /// A token with this header and these claims, signed with this key (the header's `alg`
    /// must be one the key can sign with).
    pub fn token_with_header(&self, header: &Header, claims: &Value) -> String {
        jsonwebtoken::encode(header, claims, &self.encoding_key()).expect("sign test token")
    }

    /// The public key as a JWK (with `kid` and `alg`), for JWKS files.
    pub fn jwk(&self) -> Value {
        let mut jwk =
            Jwk::from_encoding_key(&self.encoding_key(), self.algorithm).expect("public JWK");
        jwk.common.key_id = self.kid.clone();
        serde_json::to_value(jwk).expect("serialise JWK")
    }

    fn encoding_key(&self) -> EncodingKey {
        match self.algorithm {
            Algorithm::ES256 => EncodingKey::from_ec_pem(&self.private_pem),
            _ => EncodingKey::from_rsa_pem(&self.private_pem),
        }
        .expect("test private key")
    }
}

/// A JWKS document (`{"keys": [...]}`) of these keys' public halves.
pub fn jwks(keys: &[&TestKeys]) -> Value {
    json!({ "keys": keys.iter().map(|k| k.jwk()).collect::<Vec<_>>() })
}

/// Seconds since the Unix epoch, the unit of `exp`/`nbf`/`iat`.
pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs()
}

fn openssl(args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .output()
        .expect("run openssl (is it installed?)");
    assert!(
        out.status.success(),
        "openssl {}: {}",
        args.first().copied().unwrap_or_default(),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn path_str(path: &Path) -> &str {
    path.to_str().expect("temporary paths are UTF-8")
}
