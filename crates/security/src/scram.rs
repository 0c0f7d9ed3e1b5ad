//! SCRAM (RFC 5802) with SHA-256 and SHA-512 (RFC 7677), as Kafka uses it: no channel
//! binding, no SASLprep (passwords are their UTF-8 bytes, as in Kafka), the `tokenauth`
//! extension refused (Strata has no delegation tokens).
//!
//! A credential is what the server keeps: salt, iteration count, StoredKey = H(ClientKey)
//! and ServerKey, never the password. The exchange:
//!
//! ```text
//! client-first  n,,n=alice,r=<cnonce>
//! server-first  r=<cnonce><snonce>,s=<salt>,i=<iterations>
//! client-final  c=biws,r=<cnonce><snonce>,p=<ClientProof>
//! server-final  v=<ServerSignature>
//! ```

use std::num::NonZeroU32;
use std::sync::OnceLock;

use data_encoding::BASE64;
use ring::rand::SecureRandom;
use ring::{digest, hmac, pbkdf2};

use crate::{constant_time_eq, AuthError, CredentialStore, Step};

/// Kafka's bounds on a SCRAM credential's iteration count (`ScramMechanism`, and
/// AlterUserScramCredentials refuses more than 16384).
pub const SCRAM_ITERATIONS_MIN: u32 = 4096;
pub const SCRAM_ITERATIONS_MAX: u32 = 16384;

/// Bytes of random server nonce (base64-encoded into the message).
const SERVER_NONCE_BYTES: usize = 24;
/// Bytes of salt in credentials made here (Kafka's `ScramFormatter.secureRandomBytes`).
const SALT_BYTES: usize = 32;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ScramMechanism {
    Sha256,
    Sha512,
}

impl ScramMechanism {
    pub fn parse(name: &str) -> Option<ScramMechanism> {
        match name {
            "SCRAM-SHA-256" => Some(ScramMechanism::Sha256),
            "SCRAM-SHA-512" => Some(ScramMechanism::Sha512),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            ScramMechanism::Sha256 => "SCRAM-SHA-256",
            ScramMechanism::Sha512 => "SCRAM-SHA-512",
        }
    }

    /// Kafka's wire code (AlterUserScramCredentials, DescribeUserScramCredentials).
    pub fn code(self) -> i8 {
        match self {
            ScramMechanism::Sha256 => 1,
            ScramMechanism::Sha512 => 2,
        }
    }

    pub fn from_code(code: i8) -> Option<ScramMechanism> {
        match code {
            1 => Some(ScramMechanism::Sha256),
            2 => Some(ScramMechanism::Sha512),
            _ => None,
        }
    }

    /// Bytes of the hash (and of every key and proof).
    pub fn hash_len(self) -> usize {
        match self {
            ScramMechanism::Sha256 => 32,
            ScramMechanism::Sha512 => 64,
        }
    }

    fn hmac_algorithm(self) -> hmac::Algorithm {
        match self {
            ScramMechanism::Sha256 => hmac::HMAC_SHA256,
            ScramMechanism::Sha512 => hmac::HMAC_SHA512,
        }
    }

    fn hmac(self, key: &[u8], data: &[u8]) -> Vec<u8> {
        hmac::sign(&hmac::Key::new(self.hmac_algorithm(), key), data)
            .as_ref()
            .to_vec()
    }

    fn hash(self, data: &[u8]) -> Vec<u8> {
        let algorithm = match self {
            ScramMechanism::Sha256 => &digest::SHA256,
            ScramMechanism::Sha512 => &digest::SHA512,
        };
        digest::digest(algorithm, data).as_ref().to_vec()
    }
}

/// SCRAM's Hi(password, salt, iterations): PBKDF2 with the mechanism's HMAC.
pub fn salted_password(
    mechanism: ScramMechanism,
    password: &[u8],
    salt: &[u8],
    iterations: u32,
) -> Vec<u8> {
    let algorithm = match mechanism {
        ScramMechanism::Sha256 => pbkdf2::PBKDF2_HMAC_SHA256,
        ScramMechanism::Sha512 => pbkdf2::PBKDF2_HMAC_SHA512,
    };
    let mut out = vec![0u8; mechanism.hash_len()];
    let iterations = NonZeroU32::new(iterations.max(1)).expect("at least one iteration");
    pbkdf2::derive(algorithm, iterations, salt, password, &mut out);
    out
}

/// A fresh random salt and the password salted with it: what an admin client sends in
/// AlterUserScramCredentials (the password itself never leaves it).
pub fn salt_password(
    mechanism: ScramMechanism,
    password: &str,
    iterations: u32,
) -> (Vec<u8>, Vec<u8>) {
    let mut salt = vec![0u8; SALT_BYTES];
    random(&mut salt);
    let salted = salted_password(mechanism, password.as_bytes(), &salt, iterations);
    (salt, salted)
}

/// What the server stores for one user and mechanism.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScramCredential {
    pub mechanism: ScramMechanism,
    pub salt: Vec<u8>,
    pub stored_key: Vec<u8>,
    pub server_key: Vec<u8>,
    pub iterations: u32,
}

impl ScramCredential {
    /// From the salted password an admin client sends (AlterUserScramCredentials).
    pub fn from_salted_password(
        mechanism: ScramMechanism,
        salt: Vec<u8>,
        salted: &[u8],
        iterations: u32,
    ) -> ScramCredential {
        let client_key = mechanism.hmac(salted, b"Client Key");
        ScramCredential {
            mechanism,
            salt,
            stored_key: mechanism.hash(&client_key),
            server_key: mechanism.hmac(salted, b"Server Key"),
            iterations,
        }
    }

    /// From a password, with a fresh random salt (`strata format --add-scram`).
    pub fn from_password(
        mechanism: ScramMechanism,
        password: &str,
        iterations: u32,
    ) -> ScramCredential {
        let (salt, salted) = salt_password(mechanism, password, iterations);
        Self::from_salted_password(mechanism, salt, &salted, iterations)
    }

    /// Whether `password` is this credential's (SASL/PLAIN checks against SCRAM credentials).
    pub fn verifies_password(&self, password: &[u8]) -> bool {
        let salted = salted_password(self.mechanism, password, &self.salt, self.iterations);
        let client_key = self.mechanism.hmac(&salted, b"Client Key");
        constant_time_eq(&self.mechanism.hash(&client_key), &self.stored_key)
    }

    /// Credentials for a user that does not exist, the same every time for one name within
    /// a process, so an exchange for an unknown user looks like one for a known user with a
    /// wrong password until its last step.
    pub(crate) fn made_up(mechanism: ScramMechanism, user: &str) -> ScramCredential {
        let secret = process_secret();
        let salt = mechanism.hmac(secret, format!("salt\0{user}").as_bytes());
        let salt = salt[..SALT_BYTES.min(salt.len())].to_vec();
        ScramCredential {
            mechanism,
            salt,
            stored_key: mechanism.hmac(secret, format!("stored\0{user}").as_bytes()),
            server_key: mechanism.hmac(secret, format!("server\0{user}").as_bytes()),
            iterations: SCRAM_ITERATIONS_MIN,
        }
    }

    /// Why this credential may not be stored, if it may not.
    pub fn invalid(&self) -> Option<String> {
        if self.iterations < SCRAM_ITERATIONS_MIN || self.iterations > SCRAM_ITERATIONS_MAX {
            return Some(format!(
                "Iterations {} must be between {SCRAM_ITERATIONS_MIN} and {SCRAM_ITERATIONS_MAX}",
                self.iterations
            ));
        }
        if self.salt.is_empty() {
            return Some("the salt must not be empty".into());
        }
        let n = self.mechanism.hash_len();
        if self.stored_key.len() != n || self.server_key.len() != n {
            return Some(format!("{} keys are {n} bytes", self.mechanism.name()));
        }
        None
    }
}

fn random(out: &mut [u8]) {
    ring::rand::SystemRandom::new()
        .fill(out)
        .expect("the operating system's random source works");
}

fn process_secret() -> &'static [u8] {
    static SECRET: OnceLock<[u8; 32]> = OnceLock::new();
    SECRET.get_or_init(|| {
        let mut s = [0u8; 32];
        random(&mut s);
        s
    })
}

pub(crate) struct ScramServer {
    mechanism: ScramMechanism,
    stage: Stage,
}

enum Stage {
    ClientFirst,
    ClientFinal(Box<Exchange>),
    Over,
}

/// What the server remembers between its first message and the client's last.
struct Exchange {
    user: String,
    gs2_header: String,
    client_first_bare: String,
    server_first: String,
    nonce: String,
    credential: ScramCredential,
    known: bool,
}

impl ScramServer {
    pub(crate) fn new(mechanism: ScramMechanism) -> ScramServer {
        ScramServer {
            mechanism,
            stage: Stage::ClientFirst,
        }
    }

    pub(crate) fn mechanism(&self) -> ScramMechanism {
        self.mechanism
    }

    fn malformed(&self, why: impl Into<String>) -> AuthError {
        AuthError::Malformed {
            mechanism: self.mechanism.name(),
            why: why.into(),
        }
    }

    pub(crate) fn step(
        &mut self,
        input: &[u8],
        store: &dyn CredentialStore,
    ) -> Result<Step, AuthError> {
        let stage = std::mem::replace(&mut self.stage, Stage::Over);
        let text =
            std::str::from_utf8(input).map_err(|_| self.malformed("the message is not UTF-8"))?;
        match stage {
            Stage::ClientFirst => self.client_first(text, store),
            Stage::ClientFinal(x) => {
                let verified = self.client_final(
                    text,
                    &x.gs2_header,
                    &x.client_first_bare,
                    &x.server_first,
                    &x.nonce,
                    &x.credential,
                )?;
                match verified {
                    Some(server_final) if x.known => Ok(Step::Authenticated {
                        user: x.user,
                        response: server_final.into_bytes(),
                        expires_ms: None,
                    }),
                    _ => Err(AuthError::InvalidCredentials(self.mechanism.name())),
                }
            }
            Stage::Over => Err(AuthError::Finished(self.mechanism.name())),
        }
    }

    fn client_first(&mut self, text: &str, store: &dyn CredentialStore) -> Result<Step, AuthError> {
        // gs2-header: cbind-flag "," [authzid] ","
        let (flag, rest) = text
            .split_once(',')
            .ok_or_else(|| self.malformed("no GS2 header"))?;
        match flag {
            "n" | "y" => {}
            f if f.starts_with("p=") => {
                return Err(AuthError::Unsupported {
                    mechanism: self.mechanism.name(),
                    what: "channel binding",
                })
            }
            _ => return Err(self.malformed("bad channel binding flag")),
        }
        let (authzid, bare) = rest
            .split_once(',')
            .ok_or_else(|| self.malformed("no GS2 header"))?;
        let authzid = match authzid {
            "" => None,
            a => Some(
                sasl_name(
                    a.strip_prefix("a=")
                        .ok_or_else(|| self.malformed("bad authorization id"))?,
                )
                .ok_or_else(|| self.malformed("bad authorization id"))?,
            ),
        };
        let gs2_header = text[..text.len() - bare.len()].to_string();
        let mut attrs = bare.split(',');
        let user = match attrs.next() {
            Some(a) if a.starts_with("m=") => {
                return Err(AuthError::Unsupported {
                    mechanism: self.mechanism.name(),
                    what: "mandatory extension",
                })
            }
            Some(a) => a
                .strip_prefix("n=")
                .and_then(sasl_name)
                .ok_or_else(|| self.malformed("no user name"))?,
            None => return Err(self.malformed("no user name")),
        };
        if user.is_empty() {
            return Err(self.malformed("empty user name"));
        }
        if authzid.as_ref().is_some_and(|a| *a != user) {
            return Err(self.malformed("the authorization id differs from the user name"));
        }
        let client_nonce = attrs
            .next()
            .and_then(|a| a.strip_prefix("r="))
            .ok_or_else(|| self.malformed("no nonce"))?;
        if client_nonce.is_empty() || !client_nonce.bytes().all(|b| (0x21..=0x7e).contains(&b)) {
            return Err(self.malformed("the nonce must be printable characters"));
        }
        for extension in attrs {
            let (key, value) = extension
                .split_once('=')
                .ok_or_else(|| self.malformed("bad extension"))?;
            if key == "tokenauth" && value.eq_ignore_ascii_case("true") {
                return Err(AuthError::Unsupported {
                    mechanism: self.mechanism.name(),
                    what: "delegation token authentication",
                });
            }
        }
        let (credential, known) = match store.scram_credential(&user, self.mechanism) {
            Some(c) if c.mechanism == self.mechanism && c.invalid().is_none() => (c, true),
            _ => (ScramCredential::made_up(self.mechanism, &user), false),
        };
        let mut server_nonce = [0u8; SERVER_NONCE_BYTES];
        random(&mut server_nonce);
        let nonce = format!("{client_nonce}{}", BASE64.encode(&server_nonce));
        let server_first = format!(
            "r={nonce},s={},i={}",
            BASE64.encode(&credential.salt),
            credential.iterations
        );
        self.stage = Stage::ClientFinal(Box::new(Exchange {
            user,
            gs2_header,
            client_first_bare: bare.to_string(),
            server_first: server_first.clone(),
            nonce,
            credential,
            known,
        }));
        Ok(Step::Challenge(server_first.into_bytes()))
    }

    /// The server-final message if the proof verifies, None if it does not.
    fn client_final(
        &self,
        text: &str,
        gs2_header: &str,
        client_first_bare: &str,
        server_first: &str,
        nonce: &str,
        credential: &ScramCredential,
    ) -> Result<Option<String>, AuthError> {
        // The proof is the last attribute; everything before it is signed.
        let at = text
            .rfind(",p=")
            .ok_or_else(|| self.malformed("no proof"))?;
        let without_proof = &text[..at];
        let proof = BASE64
            .decode(&text.as_bytes()[at + 3..])
            .map_err(|_| self.malformed("the proof is not base64"))?;
        let mut attrs = without_proof.split(',');
        let binding = attrs
            .next()
            .and_then(|a| a.strip_prefix("c="))
            .ok_or_else(|| self.malformed("no channel binding"))?;
        let binding = BASE64
            .decode(binding.as_bytes())
            .map_err(|_| self.malformed("the channel binding is not base64"))?;
        if binding != gs2_header.as_bytes() {
            return Err(self.malformed("the channel binding differs from the GS2 header"));
        }
        let final_nonce = attrs
            .next()
            .and_then(|a| a.strip_prefix("r="))
            .ok_or_else(|| self.malformed("no nonce"))?;
        // CVE-2024-56128: Kafka accepted any nonce here. librdkafka before 2.6.1 (Debian
        // bookworm's 2.0.2 among them) sends its own nonce once more in front of the
        // exchange's (librdkafka#4895); that exact form still carries the whole server
        // nonce, so it is accepted, and nothing else.
        let buggy_librdkafka = final_nonce
            .strip_prefix(client_nonce(client_first_bare))
            .is_some_and(|rest| rest == nonce);
        if final_nonce != nonce && !buggy_librdkafka {
            return Err(self.malformed("the nonce is not the one of this exchange"));
        }
        let m = self.mechanism;
        if proof.len() != m.hash_len() {
            return Err(self.malformed("the proof has the wrong length"));
        }
        let auth_message = format!("{client_first_bare},{server_first},{without_proof}");
        let client_signature = m.hmac(&credential.stored_key, auth_message.as_bytes());
        let client_key: Vec<u8> = proof
            .iter()
            .zip(&client_signature)
            .map(|(p, s)| p ^ s)
            .collect();
        if !constant_time_eq(&m.hash(&client_key), &credential.stored_key) {
            return Ok(None);
        }
        let server_signature = m.hmac(&credential.server_key, auth_message.as_bytes());
        Ok(Some(format!("v={}", BASE64.encode(&server_signature))))
    }
}

/// The client side of SCRAM (a broker authenticating to another, the CLI): first message,
/// answer to the server's challenge, and the check of the server's signature (the server
/// must prove it knows the credential too).
pub struct ScramClient {
    mechanism: ScramMechanism,
    user: String,
    password: String,
    nonce: String,
    server_signature: Option<Vec<u8>>,
}

impl ScramClient {
    pub fn new(mechanism: ScramMechanism, user: &str, password: &str) -> ScramClient {
        let mut nonce = [0u8; SERVER_NONCE_BYTES];
        random(&mut nonce);
        ScramClient {
            mechanism,
            user: user.to_string(),
            password: password.to_string(),
            nonce: BASE64.encode(&nonce),
            server_signature: None,
        }
    }

    fn bare(&self) -> String {
        let user = self.user.replace('=', "=3D").replace(',', "=2C");
        format!("n={user},r={}", self.nonce)
    }

    /// The client-first message.
    pub fn first(&self) -> Vec<u8> {
        format!("n,,{}", self.bare()).into_bytes()
    }

    /// The client-final message for the server-first one.
    pub fn last(&mut self, server_first: &[u8]) -> Result<Vec<u8>, AuthError> {
        let bad = |why: &str| AuthError::Malformed {
            mechanism: self.mechanism.name(),
            why: format!("server-first message: {why}"),
        };
        let text = std::str::from_utf8(server_first).map_err(|_| bad("not UTF-8"))?;
        let (mut nonce, mut salt, mut iterations) = (None, None, None);
        for attr in text.split(',') {
            match attr.split_at_checked(2) {
                Some(("r=", v)) => nonce = Some(v),
                Some(("s=", v)) => salt = BASE64.decode(v.as_bytes()).ok(),
                Some(("i=", v)) => iterations = v.parse::<u32>().ok(),
                _ => {}
            }
        }
        let nonce = nonce.ok_or_else(|| bad("no nonce"))?;
        if !nonce.starts_with(&self.nonce) || nonce.len() == self.nonce.len() {
            return Err(bad("the nonce does not extend ours"));
        }
        let salt = salt.ok_or_else(|| bad("no salt"))?;
        let iterations = iterations.ok_or_else(|| bad("no iteration count"))?;
        if !(SCRAM_ITERATIONS_MIN..=SCRAM_ITERATIONS_MAX).contains(&iterations) {
            return Err(bad("iteration count out of bounds"));
        }
        let m = self.mechanism;
        let salted = salted_password(m, self.password.as_bytes(), &salt, iterations);
        let client_key = m.hmac(&salted, b"Client Key");
        let stored_key = m.hash(&client_key);
        let without_proof = format!("c=biws,r={nonce}");
        let auth = format!("{},{text},{without_proof}", self.bare());
        let signature = m.hmac(&stored_key, auth.as_bytes());
        let proof: Vec<u8> = client_key
            .iter()
            .zip(&signature)
            .map(|(a, b)| a ^ b)
            .collect();
        let server_key = m.hmac(&salted, b"Server Key");
        self.server_signature = Some(m.hmac(&server_key, auth.as_bytes()));
        Ok(format!("{without_proof},p={}", BASE64.encode(&proof)).into_bytes())
    }

    /// Checks the server-final message: the server knew the credential.
    pub fn verify(&self, server_final: &[u8]) -> Result<(), AuthError> {
        let expected = self
            .server_signature
            .as_ref()
            .ok_or(AuthError::Finished(self.mechanism.name()))?;
        let got = std::str::from_utf8(server_final)
            .ok()
            .and_then(|t| t.strip_prefix("v="))
            .and_then(|v| BASE64.decode(v.as_bytes()).ok());
        match got {
            Some(sig) if constant_time_eq(&sig, expected) => Ok(()),
            _ => Err(AuthError::InvalidCredentials(self.mechanism.name())),
        }
    }
}

/// The `r=` attribute of a client-first-message-bare (already validated).
fn client_nonce(client_first_bare: &str) -> &str {
    client_first_bare
        .split(',')
        .find_map(|a| a.strip_prefix("r="))
        .unwrap_or_default()
}

/// RFC 5802's saslname: `=2C` is ',' and `=3D` is '='; any other '=' is invalid.
fn sasl_name(s: &str) -> Option<String> {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(at) = rest.find('=') {
        out.push_str(&rest[..at]);
        match rest.get(at..at + 3) {
            Some("=2C") => out.push(','),
            Some("=3D") => out.push('='),
            _ => return None,
        }
        rest = &rest[at + 3..];
    }
    out.push_str(rest);
    Some(out)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::{Mechanism, SaslServer};
    use std::collections::HashMap;

    pub(crate) struct Users(pub HashMap<(String, ScramMechanism), ScramCredential>);

    impl CredentialStore for Users {
        fn scram_credential(&self, user: &str, m: ScramMechanism) -> Option<ScramCredential> {
            self.0.get(&(user.to_string(), m)).cloned()
        }
    }

    pub(crate) fn users(list: &[(&str, &str, ScramMechanism)]) -> Users {
        Users(
            list.iter()
                .map(|(u, p, m)| {
                    (
                        (u.to_string(), *m),
                        ScramCredential::from_password(*m, p, SCRAM_ITERATIONS_MIN),
                    )
                })
                .collect(),
        )
    }

    /// A client as RFC 5802 describes it, to drive the server.
    struct Client {
        m: ScramMechanism,
        user: String,
        password: String,
        nonce: String,
    }

    impl Client {
        fn first(&self) -> String {
            format!("n,,n={},r={}", self.user, self.nonce)
        }

        /// (client-final, expected server signature)
        fn last(&self, server_first: &str) -> (String, String) {
            self.last_with(server_first, None)
        }

        fn last_with(&self, server_first: &str, nonce: Option<&str>) -> (String, String) {
            let mut nonce_s = "";
            let mut salt = vec![];
            let mut iterations = 0;
            for a in server_first.split(',') {
                match a.split_at(2) {
                    ("r=", v) => nonce_s = v,
                    ("s=", v) => salt = BASE64.decode(v.as_bytes()).unwrap(),
                    ("i=", v) => iterations = v.parse().unwrap(),
                    _ => {}
                }
            }
            let m = self.m;
            let salted = salted_password(m, self.password.as_bytes(), &salt, iterations);
            let client_key = m.hmac(&salted, b"Client Key");
            let stored_key = m.hash(&client_key);
            let without_proof = format!("c=biws,r={}", nonce.unwrap_or(nonce_s));
            let auth = format!("{},{server_first},{without_proof}", &self.first()[3..]);
            let sig = m.hmac(&stored_key, auth.as_bytes());
            let proof: Vec<u8> = client_key.iter().zip(&sig).map(|(a, b)| a ^ b).collect();
            let server_key = m.hmac(&salted, b"Server Key");
            let expected = BASE64.encode(&m.hmac(&server_key, auth.as_bytes()));
            (
                format!("{without_proof},p={}", BASE64.encode(&proof)),
                format!("v={expected}"),
            )
        }
    }

    fn client(m: ScramMechanism, user: &str, password: &str) -> Client {
        Client {
            m,
            user: user.into(),
            password: password.into(),
            nonce: "fyko+d2lbbFgONRv9qkxdawL".into(),
        }
    }

    fn challenge(step: Result<Step, AuthError>) -> String {
        match step {
            Ok(Step::Challenge(b)) => String::from_utf8(b).unwrap(),
            other => panic!("expected a challenge, got {other:?}"),
        }
    }

    #[test]
    fn a_right_password_authenticates_with_both_hashes() {
        for m in [ScramMechanism::Sha256, ScramMechanism::Sha512] {
            let store = users(&[("alice", "alice-secret", m)]);
            let c = client(m, "alice", "alice-secret");
            let mut server = SaslServer::new(Mechanism::Scram(m));
            let first = challenge(server.step(c.first().as_bytes(), &store));
            assert!(first.starts_with(&format!("r={}", c.nonce)), "{first}");
            assert!(first.ends_with(",i=4096"), "{first}");
            let (last, signature) = c.last(&first);
            match server.step(last.as_bytes(), &store) {
                Ok(Step::Authenticated { user, response, .. }) => {
                    assert_eq!(user, "alice");
                    assert_eq!(String::from_utf8(response).unwrap(), signature);
                }
                other => panic!("{other:?}"),
            }
            assert!(matches!(
                server.step(b"again", &store),
                Err(AuthError::Finished(_))
            ));
        }
    }

    #[test]
    fn a_wrong_password_and_an_unknown_user_fail_the_same_way_at_the_end() {
        let m = ScramMechanism::Sha256;
        let store = users(&[("alice", "alice-secret", m)]);
        for (user, password) in [("alice", "wrong"), ("mallory", "alice-secret")] {
            let c = client(m, user, password);
            let mut server = SaslServer::new(Mechanism::Scram(m));
            let first = challenge(server.step(c.first().as_bytes(), &store));
            let (last, _) = c.last(&first);
            assert_eq!(
                server.step(last.as_bytes(), &store),
                Err(AuthError::InvalidCredentials("SCRAM-SHA-256"))
            );
        }
        // The made-up salt is stable, so asking twice does not reveal the user is unknown.
        let salt = |u: &str| {
            let mut s = SaslServer::new(Mechanism::Scram(m));
            let first = challenge(s.step(client(m, u, "x").first().as_bytes(), &store));
            first.split(',').nth(1).unwrap().to_string()
        };
        assert_eq!(salt("mallory"), salt("mallory"));
        assert_ne!(salt("mallory"), salt("trudy"));
    }

    #[test]
    fn a_nonce_other_than_the_exchanges_is_refused_even_with_a_valid_proof() {
        // CVE-2024-56128: the proof is computed over whatever nonce the client sends, so
        // only the nonce check stops a replayed or forged client-final.
        let m = ScramMechanism::Sha512;
        let store = users(&[("alice", "alice-secret", m)]);
        let c = client(m, "alice", "alice-secret");
        let mut server = SaslServer::new(Mechanism::Scram(m));
        let first = challenge(server.step(c.first().as_bytes(), &store));
        let (last, _) = c.last_with(&first, Some("fyko+d2lbbFgONRv9qkxdawL"));
        assert!(matches!(
            server.step(last.as_bytes(), &store),
            Err(AuthError::Malformed { .. })
        ));
        // The server's part alone, or the nonce with anything but the client nonce in
        // front, neither.
        for wrong in [0, 1] {
            let mut server = SaslServer::new(Mechanism::Scram(m));
            let first = challenge(server.step(c.first().as_bytes(), &store));
            let nonce = &first[2..first.find(',').unwrap()];
            let wrong = match wrong {
                0 => nonce[c.nonce.len()..].to_string(),
                _ => format!("x{nonce}"),
            };
            let (last, _) = c.last_with(&first, Some(&wrong));
            assert!(server.step(last.as_bytes(), &store).is_err(), "{wrong}");
        }
    }

    #[test]
    fn librdkafkas_doubled_client_nonce_is_accepted_and_verified() {
        // librdkafka < 2.6.1 answers with r=<cnonce><cnonce><snonce> (librdkafka#4895).
        let m = ScramMechanism::Sha512;
        let store = users(&[("alice", "alice-secret", m)]);
        for (password, ok) in [("alice-secret", true), ("wrong", false)] {
            let c = client(m, "alice", password);
            let mut server = SaslServer::new(Mechanism::Scram(m));
            let first = challenge(server.step(c.first().as_bytes(), &store));
            let doubled = format!("{}{}", c.nonce, &first[2..first.find(',').unwrap()]);
            let (last, _) = c.last_with(&first, Some(&doubled));
            let got = server.step(last.as_bytes(), &store);
            assert_eq!(got.is_ok(), ok, "{got:?}");
        }
    }

    #[test]
    fn the_mechanism_asked_must_be_the_credentials() {
        let store = users(&[("alice", "alice-secret", ScramMechanism::Sha512)]);
        let c = client(ScramMechanism::Sha256, "alice", "alice-secret");
        let mut server = SaslServer::new(Mechanism::Scram(ScramMechanism::Sha256));
        let first = challenge(server.step(c.first().as_bytes(), &store));
        let (last, _) = c.last(&first);
        assert!(server.step(last.as_bytes(), &store).is_err());
    }

    #[test]
    fn malformed_and_unsupported_client_first_messages() {
        let store = users(&[]);
        for (input, unsupported) in [
            ("p=tls-unique,,n=a,r=x", true),
            ("n,,m=ext,n=a,r=x", true),
            ("n,,n=a,r=x,tokenauth=true", true),
            ("", false),
            ("n", false),
            ("n,,", false),
            ("x,,n=a,r=x", false),
            ("n,,n=a", false),
            ("n,,n=,r=x", false),
            ("n,,n=a=,r=x", false),
            ("n,,n=a,r=", false),
            ("n,,n=a,r=x y", false),
            ("n,a=b,n=a,r=x", false),
            ("n,,n=a,r=x,bad", false),
        ] {
            let mut server = SaslServer::new(Mechanism::Scram(ScramMechanism::Sha256));
            let got = server.step(input.as_bytes(), &store);
            match (unsupported, &got) {
                (true, Err(AuthError::Unsupported { .. })) => {}
                (false, Err(AuthError::Malformed { .. })) => {}
                _ => panic!("{input:?}: {got:?}"),
            }
        }
        let mut server = SaslServer::new(Mechanism::Scram(ScramMechanism::Sha256));
        assert!(server.step(&[0xff, 0xfe], &store).is_err());
    }

    #[test]
    fn our_client_and_server_agree_and_each_checks_the_other() {
        for m in [ScramMechanism::Sha256, ScramMechanism::Sha512] {
            let store = users(&[("a,b=c", "pw", m)]);
            let mut client = ScramClient::new(m, "a,b=c", "pw");
            let mut server = SaslServer::new(Mechanism::Scram(m));
            let first = challenge(server.step(&client.first(), &store));
            let last = client.last(first.as_bytes()).unwrap();
            let Ok(Step::Authenticated { user, response, .. }) = server.step(&last, &store) else {
                panic!("not authenticated")
            };
            assert_eq!(user, "a,b=c");
            client.verify(&response).unwrap();
            assert!(
                client.verify(b"v=AAAA").is_err(),
                "a server without the key is caught"
            );
        }
        let mut client = ScramClient::new(ScramMechanism::Sha256, "u", "pw");
        assert!(client.last(b"r=someone-elses,s=AAAA,i=4096").is_err());
        let n = String::from_utf8(client.first()).unwrap();
        let r = &n[n.find("r=").unwrap() + 2..];
        assert!(
            client
                .last(format!("r={r}x,s=AAAA,i=10").as_bytes())
                .is_err(),
            "too few iterations"
        );
        assert!(client
            .last(format!("r={r}x,s=AAAA,i=4096").as_bytes())
            .is_ok());
    }

    #[test]
    fn malformed_client_final_messages() {
        let m = ScramMechanism::Sha256;
        let store = users(&[("alice", "pw", m)]);
        let c = client(m, "alice", "pw");
        let (last, _) = {
            let mut server = SaslServer::new(Mechanism::Scram(m));
            let first = challenge(server.step(c.first().as_bytes(), &store));
            c.last(&first)
        };
        for bad in [
            "c=biws,r=x".to_string(),
            "c=eSws,r=x,p=AAAA".to_string(),
            "r=x,p=AAAA".to_string(),
            last.replace("p=", "p=!"),
            "c=biws,r=fyko,p=AAAA".to_string(),
        ] {
            let mut server = SaslServer::new(Mechanism::Scram(m));
            challenge(server.step(c.first().as_bytes(), &store));
            assert!(server.step(bad.as_bytes(), &store).is_err(), "{bad}");
        }
    }

    #[test]
    fn escaped_user_names_and_authzid() {
        assert_eq!(sasl_name("a=2Cb=3Dc").as_deref(), Some("a,b=c"));
        assert_eq!(sasl_name("a=2"), None);
        assert_eq!(sasl_name("a=41"), None);
        let m = ScramMechanism::Sha256;
        let store = users(&[("a,b", "pw", m)]);
        // An authorization id equal to the (escaped) user name is accepted.
        let mut server = SaslServer::new(Mechanism::Scram(m));
        challenge(server.step(b"n,a=a=2Cb,n=a=2Cb,r=fyko+d2lbbFgONRv9qkxdawL", &store));
        let c = client(m, "a=2Cb", "pw");
        let mut server = SaslServer::new(Mechanism::Scram(m));
        let first = challenge(server.step(c.first().as_bytes(), &store));
        let (last, _) = c.last(&first);
        assert!(matches!(
            server.step(last.as_bytes(), &store),
            Ok(Step::Authenticated { user, .. }) if user == "a,b"
        ));
    }

    #[test]
    fn rfc7677_test_vector_for_sha256() {
        // RFC 7677 section 3: user "user", password "pencil".
        let m = ScramMechanism::Sha256;
        let salt = BASE64.decode(b"W22ZaJ0SNY7soEsUEjb6gQ==").unwrap();
        let salted = salted_password(m, b"pencil", &salt, 4096);
        let cred = ScramCredential::from_salted_password(m, salt, &salted, 4096);
        let auth = "n=user,r=rOprNGfwEbeRWgbNEkqO,\
                    r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096,\
                    c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0";
        let client_key = m.hmac(&salted, b"Client Key");
        let sig = m.hmac(&cred.stored_key, auth.as_bytes());
        let proof: Vec<u8> = client_key.iter().zip(&sig).map(|(a, b)| a ^ b).collect();
        assert_eq!(
            BASE64.encode(&proof),
            "dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="
        );
        assert_eq!(
            BASE64.encode(&m.hmac(&cred.server_key, auth.as_bytes())),
            "6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="
        );
        assert!(cred.verifies_password(b"pencil"));
        assert!(!cred.verifies_password(b"pencil "));
    }

    #[test]
    fn stored_credentials_are_checked() {
        let m = ScramMechanism::Sha256;
        let mut c = ScramCredential::from_password(m, "pw", 4096);
        assert_eq!(c.invalid(), None);
        c.iterations = 4095;
        assert!(c.invalid().unwrap().contains("4096"));
        c.iterations = 16385;
        assert!(c.invalid().is_some());
        c.iterations = 8192;
        c.stored_key.pop();
        assert!(c.invalid().is_some());
    }
}
