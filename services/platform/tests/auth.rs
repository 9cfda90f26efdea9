//! Bearer-token verification against real keys generated at test time (`testkit::jwt`):
//! accepted tokens, rotation, and the hostile cases of API.md "Authentication".

use std::path::Path;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use platform::auth::{
    mint_token, AuthError, AuthSettings, InvalidKey, KeyLoadError, MintError, TokenVerifier,
};
use serde_json::{json, Value};
use testkit::jwt::{jwks, now, TestKeys, TEST_AUDIENCE, TEST_ISSUER};

const DEV_SECRET: &str = "development-secret-of-at-least-32-bytes!";

fn settings(path: Option<&Path>) -> AuthSettings {
    AuthSettings {
        public_keys_path: path.map(Path::to_path_buf),
        issuer: TEST_ISSUER.to_owned(),
        audience: TEST_AUDIENCE.to_owned(),
        leeway_s: 30,
        dev_hs256_secret: None,
    }
}

fn verifier(keys: &TestKeys) -> TokenVerifier {
    TokenVerifier::from_settings(&settings(Some(&keys.public_pem_path))).unwrap()
}

/// Valid claims for tenant `acme`, with `changes` merged in (`null` removes a claim).
fn claims(changes: Value) -> Value {
    let now = now();
    let mut c = json!({
        "sub": "alice", "tenant": "acme", "roles": ["admin", "auditor"],
        "iss": TEST_ISSUER, "aud": TEST_AUDIENCE, "iat": now, "exp": now + 600,
    });
    for (k, v) in changes.as_object().unwrap() {
        if v.is_null() {
            c.as_object_mut().unwrap().remove(k);
        } else {
            c[k] = v.clone();
        }
    }
    c
}

fn b64(v: &Value) -> String {
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(v).unwrap())
}

fn write(dir: &Path, name: &str, content: &[u8]) -> std::path::PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, content).unwrap();
    path
}

#[test]
fn es256_token_yields_the_principal() {
    let keys = TestKeys::es256();
    let p = verifier(&keys)
        .verify(&keys.token("alice", "acme", &["admin"]))
        .unwrap();
    assert_eq!(p.subject, "alice");
    assert_eq!(p.tenant.as_str(), "acme");
    assert_eq!(p.roles, vec!["admin"]);
}

#[test]
fn rs256_token_yields_the_principal() {
    let keys = TestKeys::rs256();
    let p = verifier(&keys)
        .verify(&keys.token("bob", "t-1", &["auditor", "x"]))
        .unwrap();
    assert_eq!((p.subject.as_str(), p.tenant.as_str()), ("bob", "t-1"));
    assert_eq!(p.roles, vec!["auditor", "x"]);
}

#[test]
fn roles_are_optional() {
    let keys = TestKeys::es256();
    let p = verifier(&keys)
        .verify(&keys.token_with(claims(json!({"roles": null}))))
        .unwrap();
    assert!(p.roles.is_empty());
}

#[test]
fn bearer_scheme_is_case_insensitive() {
    let keys = TestKeys::es256();
    let v = verifier(&keys);
    let token = keys.token("alice", "acme", &[]);
    for header in [
        format!("Bearer {token}"),
        format!("bearer {token}"),
        format!("BEARER  {token}"),
    ] {
        assert_eq!(v.verify_header(Some(&header)).unwrap().subject, "alice");
    }
}

#[test]
fn garbage_authorization_headers_are_rejected() {
    let keys = TestKeys::es256();
    let v = verifier(&keys);
    let token = keys.token("alice", "acme", &[]);
    assert_eq!(v.verify_header(None).unwrap_err(), AuthError::Missing);
    assert_eq!(v.verify_header(Some("")).unwrap_err(), AuthError::Missing);
    assert_eq!(
        v.verify_header(Some("   ")).unwrap_err(),
        AuthError::Missing
    );
    for bad in [
        "Basic x".to_owned(),
        "Basic dXNlcjpwYXNz".to_owned(),
        "Bearer".to_owned(),
        "Bearer ".to_owned(),
        "Bearer garbage".to_owned(),
        "Bearer a.b.c".to_owned(),
        "Bearer a.b.c.d".to_owned(),
        "Bearer ....".to_owned(),
        format!("Token {token}"),
        format!("Bearer{token}"),
        format!("Bearer {token} extra"),
        format!("Bearer {token}=="),
    ] {
        assert_eq!(
            v.verify_header(Some(&bad)).unwrap_err(),
            AuthError::Malformed,
            "{bad}"
        );
    }
}

#[test]
fn jwks_with_two_keys_verifies_tokens_of_either_kid() {
    let old = TestKeys::es256().with_kid("old");
    let new = TestKeys::rs256().with_kid("new");
    let dir = tempfile::tempdir().unwrap();
    let path = write(
        dir.path(),
        "jwks.json",
        jwks(&[&old, &new]).to_string().as_bytes(),
    );
    let v = TokenVerifier::from_settings(&settings(Some(&path))).unwrap();
    assert_eq!(v.verify(&old.token("a", "acme", &[])).unwrap().subject, "a");
    assert_eq!(v.verify(&new.token("b", "acme", &[])).unwrap().subject, "b");

    let retired = TestKeys::es256().with_kid("retired");
    assert_eq!(
        v.verify(&retired.token("c", "acme", &[])).unwrap_err(),
        AuthError::UnknownKey
    );
    // The `kid` picks the key, and that key decides the algorithm.
    let lying = TestKeys::es256().with_kid("new");
    assert_eq!(
        v.verify(&lying.token("d", "acme", &[])).unwrap_err(),
        AuthError::UnsupportedAlgorithm
    );
}

#[test]
fn jwks_kid_selects_the_key_to_verify_with() {
    let a = TestKeys::es256().with_kid("a");
    let b = TestKeys::es256().with_kid("b");
    let dir = tempfile::tempdir().unwrap();
    let path = write(
        dir.path(),
        "jwks.json",
        jwks(&[&a, &b]).to_string().as_bytes(),
    );
    let v = TokenVerifier::from_settings(&settings(Some(&path))).unwrap();
    // Signed by `a` but claiming to be `b`: only `b` is tried.
    let mut header = Header::new(Algorithm::ES256);
    header.kid = Some("b".into());
    let token = a.token_with_header(&header, &claims(json!({})));
    assert_eq!(v.verify(&token).unwrap_err(), AuthError::BadSignature);
    // Without a kid every key of the family is tried.
    let token = a.token_with_header(&Header::new(Algorithm::ES256), &claims(json!({})));
    assert!(v.verify(&token).is_ok());
}

#[test]
fn concatenated_pem_keys_rotate() {
    let first = TestKeys::es256();
    let second = TestKeys::rs256();
    let dir = tempfile::tempdir().unwrap();
    let pem = [
        first.public_pem(),
        b"# next key\n".to_vec(),
        second.public_pem(),
    ]
    .concat();
    let path = write(dir.path(), "keys.pem", &pem);
    let v = TokenVerifier::from_settings(&settings(Some(&path))).unwrap();
    assert!(v.verify(&first.token("a", "acme", &[])).is_ok());
    assert!(v.verify(&second.token("b", "acme", &[])).is_ok());
    // PEM keys have no id: a token naming one still verifies against them.
    assert!(v
        .verify(&first.with_kid("k1").token("a", "acme", &[]))
        .is_ok());
}

#[test]
fn token_signed_by_another_key_is_rejected() {
    let keys = TestKeys::es256();
    let other = TestKeys::es256();
    let v = verifier(&keys);
    assert_eq!(
        v.verify(&other.token("a", "acme", &[])).unwrap_err(),
        AuthError::BadSignature
    );
    let rsa = TestKeys::rs256();
    let other_rsa = TestKeys::rs256();
    assert_eq!(
        verifier(&rsa)
            .verify(&other_rsa.token("a", "acme", &[]))
            .unwrap_err(),
        AuthError::BadSignature
    );
}

#[test]
fn tampered_payload_is_rejected() {
    let keys = TestKeys::es256();
    let v = verifier(&keys);
    let token = keys.token("alice", "acme", &[]);
    let parts: Vec<&str> = token.split('.').collect();
    let forged = b64(&claims(json!({"tenant": "victim", "roles": ["admin"]})));
    let tampered = format!("{}.{}.{}", parts[0], forged, parts[2]);
    assert_eq!(v.verify(&tampered).unwrap_err(), AuthError::BadSignature);
}

#[test]
fn alg_none_is_rejected() {
    let keys = TestKeys::es256();
    let v = verifier(&keys);
    let body = b64(&claims(json!({})));
    let signature = keys
        .token("a", "acme", &[])
        .rsplit('.')
        .next()
        .unwrap()
        .to_owned();
    for alg in ["none", "None", "NONE"] {
        let header = b64(&json!({"alg": alg, "typ": "JWT"}));
        for sig in ["", signature.as_str()] {
            let token = format!("{header}.{body}.{sig}");
            assert_eq!(
                v.verify(&token).unwrap_err(),
                AuthError::UnsupportedAlgorithm
            );
        }
    }
}

#[test]
fn hs256_is_rejected_unless_the_development_secret_is_set() {
    let keys = TestKeys::es256();
    let hs = |secret: &[u8]| {
        jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &claims(json!({})),
            &EncodingKey::from_secret(secret),
        )
        .unwrap()
    };
    let token = hs(DEV_SECRET.as_bytes());
    assert_eq!(
        verifier(&keys).verify(&token).unwrap_err(),
        AuthError::UnsupportedAlgorithm
    );

    let mut s = settings(Some(&keys.public_pem_path));
    s.dev_hs256_secret = Some(DEV_SECRET.to_owned());
    let dev = TokenVerifier::from_settings(&s).unwrap();
    assert_eq!(dev.verify(&token).unwrap().subject, "alice");
    assert!(dev.verify(&keys.token("b", "acme", &[])).is_ok());
    assert_eq!(
        dev.verify(&hs(b"another-secret-another-secret-xx"))
            .unwrap_err(),
        AuthError::BadSignature
    );

    // The secret alone, without any public key, is enough for local development.
    let mut s = settings(None);
    s.dev_hs256_secret = Some(DEV_SECRET.to_owned());
    assert!(TokenVerifier::from_settings(&s)
        .unwrap()
        .verify(&token)
        .is_ok());
}

#[test]
fn public_key_used_as_hmac_secret_is_rejected() {
    let keys = TestKeys::rs256().with_kid("rsa");
    let forge = |kid: Option<&str>| {
        let mut header = Header::new(Algorithm::HS256);
        header.kid = kid.map(str::to_owned);
        jsonwebtoken::encode(
            &header,
            &claims(json!({})),
            &EncodingKey::from_secret(&keys.public_pem()),
        )
        .unwrap()
    };
    let pem_verifier = verifier(&keys);
    assert_eq!(
        pem_verifier.verify(&forge(None)).unwrap_err(),
        AuthError::UnsupportedAlgorithm
    );

    let dir = tempfile::tempdir().unwrap();
    let path = write(
        dir.path(),
        "jwks.json",
        jwks(&[&keys]).to_string().as_bytes(),
    );
    let mut s = settings(Some(&path));
    s.dev_hs256_secret = Some(DEV_SECRET.to_owned());
    // Even with HS256 enabled, the RSA key is never an HMAC secret.
    let v = TokenVerifier::from_settings(&s).unwrap();
    assert_eq!(
        v.verify(&forge(Some("rsa"))).unwrap_err(),
        AuthError::UnsupportedAlgorithm
    );
    assert_eq!(v.verify(&forge(None)).unwrap_err(), AuthError::BadSignature);
}

#[test]
fn expiry_honours_a_bounded_leeway() {
    let keys = TestKeys::es256();
    let v = verifier(&keys); // leeway 30 s
    let now = now();
    let token = |exp: u64| keys.token_with(claims(json!({"exp": exp})));
    assert_eq!(v.verify(&token(now - 120)).unwrap_err(), AuthError::Expired);
    assert!(v.verify(&token(now - 10)).is_ok());

    let mut s = settings(Some(&keys.public_pem_path));
    s.leeway_s = 10_000; // clamped to 300
    let lax = TokenVerifier::from_settings(&s).unwrap();
    assert!(lax.verify(&token(now - 200)).is_ok());
    assert_eq!(
        lax.verify(&token(now - 400)).unwrap_err(),
        AuthError::Expired
    );
}

#[test]
fn not_before_in_the_future_is_rejected() {
    let keys = TestKeys::es256();
    let v = verifier(&keys);
    let now = now();
    let token = |nbf: u64| keys.token_with(claims(json!({"nbf": nbf})));
    assert_eq!(
        v.verify(&token(now + 120)).unwrap_err(),
        AuthError::NotYetValid
    );
    assert!(v.verify(&token(now + 10)).is_ok());
    assert!(v.verify(&token(now - 10)).is_ok());
}

#[test]
fn issuer_and_audience_must_match() {
    let keys = TestKeys::es256();
    let v = verifier(&keys);
    let verify = |changes: Value| v.verify(&keys.token_with(claims(changes)));
    assert_eq!(
        verify(json!({"iss": "someone-else"})).unwrap_err(),
        AuthError::WrongIssuer
    );
    assert_eq!(
        verify(json!({"iss": [TEST_ISSUER]})).unwrap_err(),
        AuthError::WrongIssuer
    );
    assert_eq!(
        verify(json!({"aud": "other-api"})).unwrap_err(),
        AuthError::WrongAudience
    );
    assert_eq!(
        verify(json!({"aud": ["a", "b"]})).unwrap_err(),
        AuthError::WrongAudience
    );
    assert!(verify(json!({"aud": ["other-api", TEST_AUDIENCE]})).is_ok());
}

#[test]
fn required_claims_must_be_present() {
    let keys = TestKeys::es256();
    let v = verifier(&keys);
    for claim in ["sub", "tenant", "exp", "iss", "aud"] {
        let token = keys.token_with(claims(json!({ claim: null })));
        assert_eq!(
            v.verify(&token).unwrap_err(),
            AuthError::InvalidClaims(claim),
            "{claim}"
        );
    }
    for sub in [json!(""), json!(42), json!("x".repeat(256)), json!("a\nb")] {
        let token = keys.token_with(claims(json!({ "sub": sub })));
        assert_eq!(
            v.verify(&token).unwrap_err(),
            AuthError::InvalidClaims("sub")
        );
    }
}

#[test]
fn tenant_must_be_a_valid_tenant_id() {
    let keys = TestKeys::es256();
    let v = verifier(&keys);
    let long = "a".repeat(64);
    for tenant in [
        json!("Acme"),
        json!("-x"),
        json!(long),
        json!("../x"),
        json!(""),
        json!(7),
    ] {
        let token = keys.token_with(claims(json!({ "tenant": tenant })));
        assert_eq!(
            v.verify(&token).unwrap_err(),
            AuthError::InvalidClaims("tenant"),
            "{tenant}"
        );
    }
    let longest = "a".repeat(63);
    let token = keys.token_with(claims(json!({ "tenant": longest })));
    assert_eq!(v.verify(&token).unwrap().tenant.as_str(), longest);
}

#[test]
fn roles_must_be_an_array_of_strings() {
    let keys = TestKeys::es256();
    let v = verifier(&keys);
    for roles in [
        json!("admin"),
        json!([1, 2]),
        json!(["admin", {}]),
        json!({"admin": true}),
    ] {
        let token = keys.token_with(claims(json!({ "roles": roles })));
        assert_eq!(
            v.verify(&token).unwrap_err(),
            AuthError::InvalidClaims("roles")
        );
    }
}

#[test]
fn oversized_token_is_rejected_before_parsing() {
    let keys = TestKeys::es256();
    let v = verifier(&keys);
    let token = keys.token_with(claims(json!({"pad": "x".repeat(9 * 1024)})));
    assert_eq!(v.verify(&token).unwrap_err(), AuthError::Malformed);
    let token = keys.token_with(claims(json!({"pad": "x".repeat(4 * 1024)})));
    assert!(
        v.verify(&token).is_ok(),
        "a large but bounded token is fine"
    );
}

#[test]
fn critical_header_extensions_are_rejected() {
    let keys = TestKeys::es256();
    let mut header = Header::new(Algorithm::ES256);
    header.crit = Some(vec!["exp".into()]);
    let token = keys.token_with_header(&header, &claims(json!({})));
    assert_eq!(
        verifier(&keys).verify(&token).unwrap_err(),
        AuthError::Malformed
    );
}

/// Loads a key file with this content and returns the error.
fn load_error(name: &str, content: &[u8]) -> KeyLoadError {
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), name, content);
    TokenVerifier::from_settings(&settings(Some(&path))).unwrap_err()
}

fn rejected_key(err: &KeyLoadError) -> Option<InvalidKey> {
    match err {
        KeyLoadError::Key { reason, .. } => Some(*reason),
        _ => None,
    }
}

fn jwks_of(jwk: Value) -> String {
    json!({ "keys": [jwk] }).to_string()
}

#[test]
fn pem_key_file_problems_are_reported_without_key_material() {
    let keys = TestKeys::es256();
    let err = load_error("private.pem", &keys.private_pem);
    assert_eq!(rejected_key(&err), Some(InvalidKey::PrivateKey), "{err}");
    let pem = String::from_utf8(keys.private_pem.clone()).unwrap();
    let body_line = pem.lines().nth(1).unwrap();
    assert!(!err.to_string().contains(body_line));

    let err = load_error("garbage", b"not a key");
    assert!(matches!(err, KeyLoadError::UnknownFormat { .. }), "{err}");
    let err = load_error("truncated.pem", b"-----BEGIN PUBLIC KEY-----\nAAAA\n");
    assert_eq!(rejected_key(&err), Some(InvalidKey::NotPublicKey), "{err}");
    let missing = TokenVerifier::from_settings(&settings(Some(Path::new("/nonexistent/k.pem"))));
    assert!(matches!(missing.unwrap_err(), KeyLoadError::Io { .. }));

    let dir = tempfile::tempdir().unwrap();
    let private = dir.path().join("weak.pem");
    let public = dir.path().join("weak.pub.pem");
    let run = |args: &[&str]| {
        let ok = std::process::Command::new("openssl")
            .args(args)
            .status()
            .unwrap()
            .success();
        assert!(ok, "openssl {args:?}");
    };
    let (private, public) = (private.to_str().unwrap(), public.to_str().unwrap());
    run(&[
        "genpkey",
        "-algorithm",
        "RSA",
        "-pkeyopt",
        "rsa_keygen_bits:1024",
        "-out",
        private,
    ]);
    run(&["pkey", "-in", private, "-pubout", "-out", public]);
    let err = load_error("weak.pem", &std::fs::read(public).unwrap());
    assert_eq!(rejected_key(&err), Some(InvalidKey::WeakRsaKey), "{err}");
}

#[test]
fn jwks_problems_are_reported_and_unusable_keys_skipped() {
    let keys = TestKeys::es256();
    let oct = json!({"kty": "oct", "k": "c2VjcmV0", "kid": "s"});
    let err = load_error("oct.json", jwks_of(oct).as_bytes());
    assert_eq!(rejected_key(&err), Some(InvalidKey::SymmetricKey), "{err}");

    let mut private = keys.jwk();
    private["d"] = json!("c2VjcmV0");
    let err = load_error("d.json", jwks_of(private).as_bytes());
    assert_eq!(rejected_key(&err), Some(InvalidKey::PrivateKey), "{err}");

    let err = load_error("broken.json", b"{\"keys\": [");
    assert!(matches!(err, KeyLoadError::Json { .. }), "{err}");

    // Keys of kinds we do not verify with are skipped; a file of nothing else is empty.
    let x = "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo";
    let ed = json!({"kty": "OKP", "crv": "Ed25519", "x": x, "kid": "ed"});
    let err = load_error("ed.json", jwks_of(ed.clone()).as_bytes());
    assert!(matches!(err, KeyLoadError::Empty { .. }), "{err}");
    let dir = tempfile::tempdir().unwrap();
    let mixed = json!({"keys": [ed, keys.jwk()]}).to_string();
    let mixed = write(dir.path(), "mixed.json", mixed.as_bytes());
    let v = TokenVerifier::from_settings(&settings(Some(&mixed))).unwrap();
    assert!(v.verify(&keys.token("a", "acme", &[])).is_ok());

    let a = TestKeys::es256().with_kid("same");
    let b = TestKeys::es256().with_kid("same");
    let err = load_error("dup.json", jwks(&[&a, &b]).to_string().as_bytes());
    assert!(matches!(err, KeyLoadError::DuplicateKid { .. }), "{err}");
}

#[test]
fn settings_without_keys_or_with_a_weak_dev_secret_are_refused() {
    let err = TokenVerifier::from_settings(&settings(None)).unwrap_err();
    assert!(matches!(err, KeyLoadError::NoKeys), "{err}");
    let mut s = settings(None);
    s.dev_hs256_secret = Some("short".into());
    let err = TokenVerifier::from_settings(&s).unwrap_err();
    assert!(matches!(err, KeyLoadError::WeakDevSecret), "{err}");
    let keys = TestKeys::es256();
    let mut s = settings(Some(&keys.public_pem_path));
    s.issuer = String::new();
    assert!(matches!(
        TokenVerifier::from_settings(&s).unwrap_err(),
        KeyLoadError::EmptySetting("FE_JWT_ISSUER")
    ));
}

#[test]
fn minted_tokens_verify() {
    for keys in [TestKeys::es256(), TestKeys::rs256()] {
        let token = mint_token(&keys.private_pem, &claims(json!({})), Some("dev")).unwrap();
        let header = jsonwebtoken::decode_header(&token).unwrap();
        assert_eq!(
            (header.alg, header.kid.as_deref()),
            (keys.algorithm(), Some("dev"))
        );
        assert_eq!(verifier(&keys).verify(&token).unwrap().subject, "alice");
    }
    let keys = TestKeys::es256();
    assert!(matches!(
        mint_token(&keys.public_pem(), &claims(json!({})), None),
        Err(MintError::InvalidKey)
    ));
    assert!(matches!(
        mint_token(&keys.private_pem, &json!(["not", "an", "object"]), None),
        Err(MintError::ClaimsNotObject)
    ));
}

#[test]
fn a_token_verified_before_is_answered_from_the_cache_but_a_changed_one_is_not() {
    let keys = TestKeys::es256();
    let v = verifier(&keys);
    let token = keys.token_with(claims(json!({})));
    let first = v.verify(&token).unwrap();
    assert_eq!(v.verify(&token).unwrap(), first);
    // Same header and claims, another signature byte: verified in full, and refused.
    let (signed, signature) = token.rsplit_once('.').unwrap();
    let mut sig = URL_SAFE_NO_PAD.decode(signature).unwrap();
    sig[10] ^= 1;
    let forged = format!("{signed}.{}", URL_SAFE_NO_PAD.encode(sig));
    assert_eq!(v.verify(&forged).unwrap_err(), AuthError::BadSignature);
    // Claims swapped under the verified signature: refused as well.
    let (_, rest) = token.split_once('.').unwrap();
    let (_, sig) = rest.split_once('.').unwrap();
    let header = token.split('.').next().unwrap();
    let swapped = format!(
        "{header}.{}.{sig}",
        b64(&claims(json!({"tenant": "other"})))
    );
    assert_eq!(v.verify(&swapped).unwrap_err(), AuthError::BadSignature);
    // A token expired beyond the leeway is refused even after a cache miss.
    let expired = keys.token_with(claims(json!({"exp": now() - 31})));
    assert_eq!(v.verify(&expired).unwrap_err(), AuthError::Expired);
}
