//! SASL/OAUTHBEARER (RFC 7628) as Kafka's broker-side JWT validation does it (KIP-768):
//! the client sends a signed JWT; the broker checks its signature against a JSON Web Key
//! Set, its `exp` / `nbf` (with clock skew), and, when configured, its audience and issuer.
//! The principal is `User:` + the subject claim (`sub`, or the configured claim name), and
//! the session ends when the token expires (KIP-368 re-authentication).
//!
//! Signatures: RS256/384/512 and ES256/384 on `ring`. Unsigned tokens (`alg: none`) and
//! HMAC (shared secrets) are refused.

use std::collections::BTreeMap;

use data_encoding::BASE64URL_NOPAD;
use ring::signature;
use serde_json::Value;

/// What a token is checked against.
#[derive(Debug, Clone, Default)]
pub struct OAuthConfig {
    /// `sasl.oauthbearer.expected.audience`: if not empty, the token's `aud` must name one.
    pub expected_audience: Vec<String>,
    /// `sasl.oauthbearer.expected.issuer`: if set, the token's `iss` must be it.
    pub expected_issuer: Option<String>,
    /// `sasl.oauthbearer.sub.claim.name` (default `sub`).
    pub sub_claim_name: String,
    /// `sasl.oauthbearer.clock.skew.seconds` (default 30).
    pub clock_skew_seconds: i64,
}

/// One verification key of a JWKS.
#[derive(Debug, Clone)]
enum Key {
    Rsa { n: Vec<u8>, e: Vec<u8> },
    Ec { curve: String, point: Vec<u8> },
}

/// A JSON Web Key Set, by key id.
#[derive(Debug, Clone, Default)]
pub struct Jwks {
    keys: BTreeMap<String, Key>,
}

impl Jwks {
    /// Parses a JWKS document (`{"keys": [...]}`); keys of other types or uses are skipped.
    pub fn parse(json: &[u8]) -> Result<Jwks, String> {
        let v: Value =
            serde_json::from_slice(json).map_err(|e| format!("JWKS is not JSON: {e}"))?;
        let keys = v
            .get("keys")
            .and_then(Value::as_array)
            .ok_or("JWKS has no \"keys\" array")?;
        let mut out = Jwks::default();
        for k in keys {
            let field = |name: &str| k.get(name).and_then(Value::as_str);
            if field("use").is_some_and(|u| u != "sig") {
                continue;
            }
            let kid = field("kid").unwrap_or("").to_string();
            let b64 = |name: &str| -> Result<Vec<u8>, String> {
                BASE64URL_NOPAD
                    .decode(
                        field(name)
                            .ok_or(format!("key {kid}: no {name}"))?
                            .as_bytes(),
                    )
                    .map_err(|_| format!("key {kid}: {name} is not base64url"))
            };
            let key = match field("kty") {
                Some("RSA") => Key::Rsa {
                    n: b64("n")?,
                    e: b64("e")?,
                },
                Some("EC") => {
                    let (x, y) = (b64("x")?, b64("y")?);
                    let mut point = vec![4u8];
                    point.extend(x);
                    point.extend(y);
                    Key::Ec {
                        curve: field("crv").unwrap_or("").to_string(),
                        point,
                    }
                }
                _ => continue,
            };
            out.keys.insert(kid, key);
        }
        Ok(out)
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    pub fn has(&self, kid: &str) -> bool {
        self.keys.contains_key(kid)
    }
}

/// A token that passed every check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidToken {
    /// The subject: the principal's name.
    pub subject: String,
    /// When the token expires (ms since the epoch).
    pub expires_ms: i64,
}

/// The header's key id (to look a key up, or to know a JWKS reload is needed).
pub fn key_id(token: &str) -> Option<String> {
    let header = token.split('.').next()?;
    let v: Value = serde_json::from_slice(&BASE64URL_NOPAD.decode(header.as_bytes()).ok()?).ok()?;
    Some(
        v.get("kid")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string(),
    )
}

/// Checks a compact JWS: signature, time, audience, issuer, subject. `now_ms`: the clock.
pub fn validate(
    token: &str,
    jwks: &Jwks,
    config: &OAuthConfig,
    now_ms: i64,
) -> Result<ValidToken, String> {
    let mut parts = token.split('.');
    let (Some(h), Some(p), Some(s), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err("the token is not a signed JWT (header.payload.signature)".into());
    };
    let decode = |what: &str, part: &str| {
        BASE64URL_NOPAD
            .decode(part.as_bytes())
            .map_err(|_| format!("the token's {what} is not base64url"))
    };
    let header: Value = serde_json::from_slice(&decode("header", h)?)
        .map_err(|_| "the token's header is not JSON".to_string())?;
    let claims: Value = serde_json::from_slice(&decode("payload", p)?)
        .map_err(|_| "the token's payload is not JSON".to_string())?;
    let signature_bytes = decode("signature", s)?;
    let alg = header.get("alg").and_then(Value::as_str).unwrap_or("");
    let kid = header.get("kid").and_then(Value::as_str).unwrap_or("");
    let key = jwks
        .keys
        .get(kid)
        .ok_or_else(|| format!("no key with id '{kid}' in the JWKS"))?;
    let signed = &token.as_bytes()[..h.len() + 1 + p.len()];
    let verified = match (alg, key) {
        ("RS256" | "RS384" | "RS512", Key::Rsa { n, e }) => {
            let params = match alg {
                "RS256" => &signature::RSA_PKCS1_2048_8192_SHA256,
                "RS384" => &signature::RSA_PKCS1_2048_8192_SHA384,
                _ => &signature::RSA_PKCS1_2048_8192_SHA512,
            };
            signature::RsaPublicKeyComponents { n, e }
                .verify(params, signed, &signature_bytes)
                .is_ok()
        }
        ("ES256", Key::Ec { curve, point }) if curve == "P-256" => {
            signature::UnparsedPublicKey::new(&signature::ECDSA_P256_SHA256_FIXED, point)
                .verify(signed, &signature_bytes)
                .is_ok()
        }
        ("ES384", Key::Ec { curve, point }) if curve == "P-384" => {
            signature::UnparsedPublicKey::new(&signature::ECDSA_P384_SHA384_FIXED, point)
                .verify(signed, &signature_bytes)
                .is_ok()
        }
        _ => return Err(format!("algorithm '{alg}' is not accepted for key '{kid}'")),
    };
    if !verified {
        return Err("the token's signature does not verify".into());
    }
    let skew_ms = config.clock_skew_seconds.max(0) * 1000;
    let time = |name: &str| {
        claims
            .get(name)
            .and_then(Value::as_f64)
            .map(|s| (s * 1000.0) as i64)
    };
    let exp = time("exp").ok_or("the token has no exp claim")?;
    if now_ms > exp + skew_ms {
        return Err("the token expired".into());
    }
    if time("nbf").is_some_and(|nbf| now_ms + skew_ms < nbf) {
        return Err("the token is not valid yet (nbf)".into());
    }
    if time("iat").is_some_and(|iat| now_ms + skew_ms < iat) {
        return Err("the token was issued in the future (iat)".into());
    }
    if !config.expected_audience.is_empty() {
        let aud: Vec<&str> = match claims.get("aud") {
            Some(Value::String(a)) => vec![a.as_str()],
            Some(Value::Array(a)) => a.iter().filter_map(Value::as_str).collect(),
            _ => vec![],
        };
        if !aud
            .iter()
            .any(|a| config.expected_audience.iter().any(|e| e == a))
        {
            return Err("the token is not for this audience".into());
        }
    }
    if let Some(iss) = &config.expected_issuer {
        if claims.get("iss").and_then(Value::as_str) != Some(iss.as_str()) {
            return Err("the token is not from the expected issuer".into());
        }
    }
    let sub_claim = if config.sub_claim_name.is_empty() {
        "sub"
    } else {
        &config.sub_claim_name
    };
    let subject = claims
        .get(sub_claim)
        .and_then(Value::as_str)
        .filter(|s| !s.trim().is_empty())
        .ok_or_else(|| format!("the token has no {sub_claim} claim"))?;
    Ok(ValidToken {
        subject: subject.to_string(),
        expires_ms: exp,
    })
}

/// The token of an OAUTHBEARER client initial response (RFC 7628):
/// `n,,\x01auth=Bearer <token>\x01\x01`.
pub fn bearer_token(message: &[u8]) -> Result<&str, String> {
    let text = std::str::from_utf8(message).map_err(|_| "the message is not UTF-8".to_string())?;
    let (gs2, rest) = text
        .split_once('\u{1}')
        .ok_or("the message has no key/value pairs")?;
    if !(gs2.starts_with("n,") || gs2.starts_with("y,")) || !gs2.ends_with(',') {
        return Err("bad GS2 header".into());
    }
    let pairs = rest
        .strip_suffix("\u{1}\u{1}")
        .or_else(|| rest.strip_suffix('\u{1}'))
        .ok_or("the message does not end with \\x01")?;
    for kv in pairs.split('\u{1}') {
        if let Some(v) = kv.strip_prefix("auth=") {
            return v
                .strip_prefix("Bearer ")
                .map(str::trim)
                .filter(|t| !t.is_empty())
                .ok_or_else(|| "auth is not 'Bearer <token>'".to_string());
        }
    }
    Err("the message has no auth=Bearer token".into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use ring::rand::SystemRandom;
    use ring::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};

    fn b64(b: &[u8]) -> String {
        BASE64URL_NOPAD.encode(b)
    }

    /// An ES256 key pair and its JWKS (ring makes EC keys, not RSA ones).
    fn ec_key(kid: &str) -> (EcdsaKeyPair, Jwks) {
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng)
            .unwrap();
        let public = pair.public_key().as_ref();
        let (x, y) = (&public[1..33], &public[33..65]);
        let json = format!(
            r#"{{"keys":[{{"kty":"EC","crv":"P-256","kid":"{kid}","use":"sig","x":"{}","y":"{}"}}]}}"#,
            b64(x),
            b64(y)
        );
        (pair, Jwks::parse(json.as_bytes()).unwrap())
    }

    fn sign(pair: &EcdsaKeyPair, header: &str, claims: &str) -> String {
        let signed = format!("{}.{}", b64(header.as_bytes()), b64(claims.as_bytes()));
        let sig = pair.sign(&SystemRandom::new(), signed.as_bytes()).unwrap();
        format!("{signed}.{}", b64(sig.as_ref()))
    }

    const NOW: i64 = 1_800_000_000_000;

    fn cfg() -> OAuthConfig {
        OAuthConfig {
            expected_audience: vec!["kafka".into()],
            expected_issuer: Some("https://idp".into()),
            sub_claim_name: "sub".into(),
            clock_skew_seconds: 30,
        }
    }

    #[test]
    fn a_signed_current_token_for_us_is_valid() {
        let (pair, jwks) = ec_key("k1");
        let t = sign(
            &pair,
            r#"{"alg":"ES256","kid":"k1"}"#,
            r#"{"sub":"alice","exp":1800000600,"iat":1799999990,"aud":["x","kafka"],"iss":"https://idp"}"#,
        );
        assert_eq!(
            validate(&t, &jwks, &cfg(), NOW),
            Ok(ValidToken {
                subject: "alice".into(),
                expires_ms: 1_800_000_600_000
            })
        );
        assert_eq!(key_id(&t).as_deref(), Some("k1"));
    }

    #[test]
    fn expired_forged_unsigned_and_foreign_tokens_are_refused() {
        let (pair, jwks) = ec_key("k1");
        let (other, _) = ec_key("k1");
        let good = r#"{"sub":"alice","exp":1800000600,"aud":"kafka","iss":"https://idp"}"#;
        let h = r#"{"alg":"ES256","kid":"k1"}"#;
        let cases = [
            (
                sign(
                    &pair,
                    h,
                    r#"{"sub":"alice","exp":1799999000,"aud":"kafka","iss":"https://idp"}"#,
                ),
                "expired",
            ),
            (
                sign(
                    &pair,
                    h,
                    r#"{"sub":"alice","exp":1800000600,"nbf":1800000600,"aud":"kafka","iss":"https://idp"}"#,
                ),
                "not valid yet",
            ),
            (sign(&other, h, good), "signature"),
            (sign(&pair, r#"{"alg":"ES256","kid":"k2"}"#, good), "no key"),
            (
                sign(&pair, r#"{"alg":"none","kid":"k1"}"#, good),
                "algorithm",
            ),
            (
                sign(&pair, r#"{"alg":"RS256","kid":"k1"}"#, good),
                "algorithm",
            ),
            (
                sign(
                    &pair,
                    h,
                    r#"{"sub":"alice","exp":1800000600,"aud":"other","iss":"https://idp"}"#,
                ),
                "audience",
            ),
            (
                sign(
                    &pair,
                    h,
                    r#"{"sub":"alice","exp":1800000600,"aud":"kafka","iss":"https://evil"}"#,
                ),
                "issuer",
            ),
            (
                sign(
                    &pair,
                    h,
                    r#"{"exp":1800000600,"aud":"kafka","iss":"https://idp"}"#,
                ),
                "sub",
            ),
            (
                sign(
                    &pair,
                    h,
                    r#"{"sub":"alice","aud":"kafka","iss":"https://idp"}"#,
                ),
                "exp",
            ),
            ("a.b".to_string(), "signed JWT"),
            ("!!.!!.!!".to_string(), "base64url"),
        ];
        for (token, why) in cases {
            let e = validate(&token, &jwks, &cfg(), NOW).unwrap_err();
            assert!(e.contains(why), "{why}: {e}");
        }
        // A tampered payload under a valid signature.
        let t = sign(&pair, h, good);
        let mut parts: Vec<&str> = t.split('.').collect();
        let forged = b64(br#"{"sub":"admin","exp":1800000600,"aud":"kafka","iss":"https://idp"}"#);
        parts[1] = &forged;
        assert!(validate(&parts.join("."), &jwks, &cfg(), NOW).is_err());
        // Within the clock skew an expired token still passes.
        let t = sign(
            &pair,
            h,
            r#"{"sub":"alice","exp":1799999990,"aud":"kafka","iss":"https://idp"}"#,
        );
        assert!(validate(&t, &jwks, &cfg(), NOW).is_ok());
    }

    #[test]
    fn the_initial_response_carries_the_bearer_token() {
        assert_eq!(
            bearer_token(b"n,,\x01auth=Bearer abc.def.ghi\x01\x01"),
            Ok("abc.def.ghi")
        );
        assert_eq!(
            bearer_token(b"n,a=alice,\x01host=x\x01auth=Bearer t\x01\x01"),
            Ok("t")
        );
        for bad in [
            &b""[..],
            b"n,,",
            b"n,,\x01auth=Basic x\x01\x01",
            b"n,,\x01auth=Bearer \x01\x01",
            b"n,,\x01host=x\x01\x01",
            b"x\x01auth=Bearer t\x01\x01",
            b"n,,\x01auth=Bearer t",
            b"\xff",
        ] {
            assert!(bearer_token(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn jwks_parsing() {
        assert!(Jwks::parse(b"{}").is_err());
        assert!(Jwks::parse(b"nope").is_err());
        let j = Jwks::parse(br#"{"keys":[{"kty":"RSA","kid":"r","n":"AQAB","e":"AQAB"},{"kty":"oct","kid":"h","k":"x"},{"kty":"RSA","kid":"enc","use":"enc","n":"AQAB","e":"AQAB"}]}"#).unwrap();
        assert!(j.has("r") && !j.has("h") && !j.has("enc"));
        assert!(Jwks::parse(br#"{"keys":[{"kty":"RSA","kid":"r","n":"!","e":"AQAB"}]}"#).is_err());
    }
}
