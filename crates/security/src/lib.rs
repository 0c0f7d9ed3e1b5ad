//! Authentication without sockets: the SASL mechanisms a broker offers (PLAIN, SCRAM-SHA-256
//! and SCRAM-SHA-512) as state machines that take the client's bytes and answer with the
//! server's, and the SCRAM credentials they check against (RFC 5802, RFC 7677).
//!
//! A [`SaslServer`] knows nothing of Kafka's framing or of the network: the broker hands it
//! the `auth_bytes` of each SaslAuthenticate request and a [`CredentialStore`] (the cluster
//! metadata), and gets back the bytes to answer with, or the authenticated user name. Every
//! input is bounded by the caller's frame limit and parsed without allocation sized from it.
//!
//! What it is stricter about than Kafka was: the client-final nonce must be exactly the nonce
//! of the exchange (CVE-2024-56128), an unknown user goes through the whole SCRAM exchange
//! with made-up credentials and fails only at its end (no user enumeration), and stored
//! credentials below 4096 iterations are refused.

pub mod acl;
mod jaas;
pub mod oauth;
mod plain;
pub mod principal;
mod scram;

pub use jaas::JaasUsers;
pub use scram::{
    salt_password, salted_password, ScramClient, ScramCredential, ScramMechanism,
    SCRAM_ITERATIONS_MAX, SCRAM_ITERATIONS_MIN,
};

use thiserror::Error;

/// A SASL mechanism, by Kafka's name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Mechanism {
    Plain,
    Scram(ScramMechanism),
    OAuthBearer,
}

impl Mechanism {
    /// All the mechanisms Strata implements.
    pub const ALL: [Mechanism; 4] = [
        Mechanism::Plain,
        Mechanism::Scram(ScramMechanism::Sha256),
        Mechanism::Scram(ScramMechanism::Sha512),
        Mechanism::OAuthBearer,
    ];

    pub fn parse(name: &str) -> Option<Mechanism> {
        match name {
            "PLAIN" => Some(Mechanism::Plain),
            "OAUTHBEARER" => Some(Mechanism::OAuthBearer),
            _ => ScramMechanism::parse(name).map(Mechanism::Scram),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Mechanism::Plain => "PLAIN",
            Mechanism::Scram(s) => s.name(),
            Mechanism::OAuthBearer => "OAUTHBEARER",
        }
    }
}

impl std::fmt::Display for Mechanism {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Where a server looks credentials up (the cluster metadata in the broker).
pub trait CredentialStore {
    fn scram_credential(&self, user: &str, mechanism: ScramMechanism) -> Option<ScramCredential>;

    /// Checks a PLAIN password against a list of the store's own (a JAAS line's users):
    /// None when the user is not listed there (then the SCRAM credentials decide).
    fn check_plain(&self, _user: &str, _password: &[u8]) -> Option<bool> {
        None
    }

    /// Checks an OAUTHBEARER token (signature, time, audience, issuer).
    fn validate_token(&self, _token: &str) -> Result<oauth::ValidToken, String> {
        Err("OAUTHBEARER is not configured".into())
    }
}

/// What one step of an exchange gave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Send these bytes; the client answers with its next message.
    Challenge(Vec<u8>),
    /// The client is `user` (Kafka's principal is `User:` + it); send `response` (empty for
    /// PLAIN and OAUTHBEARER, SCRAM's server-final message) and the exchange is over. A
    /// token's credentials end at `expires_ms` (ms since the epoch).
    Authenticated {
        user: String,
        response: Vec<u8>,
        expires_ms: Option<i64>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum AuthError {
    /// Wrong password, unknown user, or a proof that does not verify: one answer for all,
    /// worded as Kafka words it.
    #[error("Authentication failed during authentication due to invalid credentials with SASL mechanism {0}")]
    InvalidCredentials(&'static str),
    /// The client's message breaks the mechanism's grammar.
    #[error("Authentication failed: invalid SASL/{mechanism} message: {why}")]
    Malformed {
        mechanism: &'static str,
        why: String,
    },
    /// An OAUTHBEARER token that does not pass (expired, forged, not for us).
    #[error("Authentication failed: invalid OAUTHBEARER token: {0}")]
    InvalidToken(String),
    /// A feature of the mechanism Strata does not offer (channel binding, delegation tokens).
    #[error("Authentication failed: SASL/{mechanism} {what} is not supported")]
    Unsupported {
        mechanism: &'static str,
        what: &'static str,
    },
    #[error("SASL/{0} exchange already finished")]
    Finished(&'static str),
}

/// The server side of one authentication exchange.
pub struct SaslServer {
    state: State,
}

enum State {
    Plain,
    Scram(scram::ScramServer),
    OAuthBearer,
    Done(&'static str),
}

impl SaslServer {
    pub fn new(mechanism: Mechanism) -> SaslServer {
        let state = match mechanism {
            Mechanism::Plain => State::Plain,
            Mechanism::Scram(m) => State::Scram(scram::ScramServer::new(m)),
            Mechanism::OAuthBearer => State::OAuthBearer,
        };
        SaslServer { state }
    }

    /// Takes the client's next message. After an error or `Authenticated` the exchange is
    /// over; a further call fails.
    pub fn step(&mut self, input: &[u8], store: &dyn CredentialStore) -> Result<Step, AuthError> {
        let (result, name) = match &mut self.state {
            State::Done(name) => return Err(AuthError::Finished(name)),
            State::Plain => (plain::authenticate(input, store), "PLAIN"),
            State::OAuthBearer => (oauth_step(input, store), "OAUTHBEARER"),
            State::Scram(s) => {
                let name = s.mechanism().name();
                let result = s.step(input, store);
                if matches!(result, Ok(Step::Challenge(_))) {
                    return result;
                }
                (result, name)
            }
        };
        self.state = State::Done(name);
        result
    }
}

fn oauth_step(input: &[u8], store: &dyn CredentialStore) -> Result<Step, AuthError> {
    let token = oauth::bearer_token(input).map_err(|why| AuthError::Malformed {
        mechanism: "OAUTHBEARER",
        why,
    })?;
    let valid = store
        .validate_token(token)
        .map_err(AuthError::InvalidToken)?;
    Ok(Step::Authenticated {
        user: valid.subject,
        response: Vec::new(),
        expires_ms: Some(valid.expires_ms),
    })
}

/// The `key="value"` option of a JAAS configuration line (Kafka's `sasl.jaas.config`:
/// `…ScramLoginModule required username="alice" password="…";`).
pub fn jaas_option(jaas: &str, key: &str) -> Option<String> {
    let at = jaas.find(&format!("{key}="))?;
    let rest = jaas[at + key.len() + 1..].strip_prefix('"')?;
    Some(rest[..rest.find('"')?].to_string())
}

/// Equal lengths and bytes, in time that depends only on the length.
pub(crate) fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mechanism_names_round_trip() {
        for m in Mechanism::ALL {
            assert_eq!(Mechanism::parse(m.name()), Some(m));
        }
        assert_eq!(Mechanism::parse("GSSAPI"), None);
        assert_eq!(
            Mechanism::parse("scram-sha-256"),
            None,
            "names are case-sensitive"
        );
    }

    #[test]
    fn jaas_username_and_password() {
        let j = r#"org.apache.kafka.common.security.scram.ScramLoginModule required username="broker" password="s3cr=t";"#;
        assert_eq!(jaas_option(j, "username").as_deref(), Some("broker"));
        assert_eq!(jaas_option(j, "password").as_deref(), Some("s3cr=t"));
        assert_eq!(jaas_option(j, "user"), None);
    }

    #[test]
    fn constant_time_eq_compares_bytes_and_lengths() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
        assert!(constant_time_eq(b"", b""));
    }
}

#[cfg(test)]
mod properties {
    use super::*;
    use proptest::prelude::*;

    struct Alice(ScramCredential);

    impl CredentialStore for Alice {
        fn scram_credential(&self, user: &str, m: ScramMechanism) -> Option<ScramCredential> {
            (user == "alice" && m == self.0.mechanism).then(|| self.0.clone())
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(300))]

        /// Whatever a client sends (before authenticating, anyone may), each mechanism
        /// answers with a value: no panic, and no success without the password.
        #[test]
        fn arbitrary_client_messages_never_panic_or_authenticate(
            which in 0usize..3,
            messages in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..300), 1..4),
        ) {
            let store = Alice(ScramCredential::from_salted_password(
                ScramMechanism::Sha256, vec![1; 16], &[2; 32], 4096));
            let mut server = SaslServer::new(Mechanism::ALL[which]);
            for m in &messages {
                match server.step(m, &store) {
                    Ok(Step::Authenticated { .. }) => prop_assert!(false, "authenticated by noise"),
                    Ok(Step::Challenge(_)) => {}
                    Err(_) => break,
                }
            }
        }

        /// Messages that look like SCRAM (the right shape, random fields) never panic either.
        #[test]
        fn scram_shaped_messages_never_panic(
            user in "[a-z=,]{0,12}",
            nonce in "[!-~]{0,40}",
            proof in "[A-Za-z0-9+/=]{0,100}",
            binding in "[A-Za-z0-9+/=]{0,12}",
        ) {
            let store = Alice(ScramCredential::from_salted_password(
                ScramMechanism::Sha512, vec![1; 16], &[2; 64], 4096));
            let mut server = SaslServer::new(Mechanism::Scram(ScramMechanism::Sha512));
            let first = format!("n,,n={user},r={nonce}");
            if let Ok(Step::Challenge(c)) = server.step(first.as_bytes(), &store) {
                let c = String::from_utf8(c).unwrap();
                let r = c.split(',').next().unwrap_or_default();
                let last = format!("c={binding},{r},p={proof}");
                let authenticated =
                    matches!(server.step(last.as_bytes(), &store), Ok(Step::Authenticated { .. }));
                prop_assert!(!authenticated, "authenticated by noise");
            }
        }
    }
}
