//! HTTP Basic authentication of the REST API (ksqlDB's `authentication.method=BASIC`)
//! against the broker's own users: a username and password are good when this node's SASL
//! listener takes them (SASL/PLAIN or SCRAM, as a Kafka client would log in), so SQL and
//! Kafka share one set of credentials and one place to change them. A success is
//! remembered for a minute (by a keyed hash of the credentials, never the password), so a
//! busy client does not cost a SASL exchange per request.
//!
//! Authentication only: an authenticated user may run any statement, and the engine acts
//! on the log as its node's principal (as ksqlDB acts as its service principal).

use std::collections::HashMap;
use std::hash::{BuildHasher, Hasher};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use strata_client::{Client, ClientError, ClientSasl, ClientSecurity};

/// How long a verified username and password are taken without asking the broker again.
const REMEMBERED: Duration = Duration::from_secs(60);
/// At most this many remembered credentials (the oldest go first).
const REMEMBERED_MAX: usize = 4096;
/// SASL_AUTHENTICATION_FAILED.
const SASL_AUTHENTICATION_FAILED: i16 = 58;

/// What a request's credentials come to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// The user they name.
    User(String),
    /// Missing, malformed or refused.
    Refused,
    /// The broker could not be asked (the reason).
    Unavailable(String),
}

pub struct BasicAuth {
    /// This node's SASL listener and how to reach it (TLS when it uses TLS).
    addr: String,
    tls: ClientSecurity,
    mechanism: String,
    keys: std::hash::RandomState,
    verified: Mutex<HashMap<u64, Instant>>,
}

impl BasicAuth {
    /// Checks credentials against the SASL listener at `addr` with `mechanism` (PLAIN,
    /// SCRAM-SHA-256 or SCRAM-SHA-512), over TLS when `tls` has it (its SASL is ignored).
    pub fn new(addr: String, tls: ClientSecurity, mechanism: &str) -> Result<BasicAuth, String> {
        ClientSasl::for_mechanism(mechanism, String::new(), String::new()).ok_or_else(|| {
            format!("SQL authentication: mechanism {mechanism} is not PLAIN or SCRAM")
        })?;
        Ok(BasicAuth {
            addr,
            tls,
            mechanism: mechanism.to_string(),
            keys: std::hash::RandomState::new(),
            verified: Mutex::new(HashMap::new()),
        })
    }

    /// The verdict on an `Authorization` header's value.
    pub async fn check(&self, authorization: Option<&str>) -> Verdict {
        let Some((user, password)) = authorization.and_then(parse_basic) else {
            return Verdict::Refused;
        };
        let key = {
            let mut h = self.keys.build_hasher();
            h.write(user.as_bytes());
            h.write_u8(0);
            h.write(password.as_bytes());
            h.finish()
        };
        let remembered = self
            .verified
            .lock()
            .expect("auth lock")
            .get(&key)
            .is_some_and(|at| at.elapsed() < REMEMBERED);
        if remembered {
            return Verdict::User(user);
        }
        let Some(sasl) = ClientSasl::for_mechanism(&self.mechanism, user.clone(), password) else {
            return Verdict::Unavailable(format!("mechanism {}", self.mechanism));
        };
        let security = ClientSecurity {
            tls: self.tls.tls.clone(),
            sasl: Some(sasl),
        };
        match Client::connect_secure(&self.addr, &security).await {
            Ok(_) => {
                let mut verified = self.verified.lock().expect("auth lock");
                if verified.len() >= REMEMBERED_MAX {
                    verified.retain(|_, at| at.elapsed() < REMEMBERED);
                    if verified.len() >= REMEMBERED_MAX {
                        verified.clear();
                    }
                }
                verified.insert(key, Instant::now());
                Verdict::User(user)
            }
            Err(ClientError::Kafka { code, .. }) if code == SASL_AUTHENTICATION_FAILED => {
                Verdict::Refused
            }
            Err(ClientError::Security(_)) => Verdict::Refused,
            Err(e) => Verdict::Unavailable(e.to_string()),
        }
    }
}

/// `Basic <base64(user:password)>`'s user and password.
fn parse_basic(header: &str) -> Option<(String, String)> {
    let (scheme, encoded) = header.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = strata_sql::format::base64_decode(encoded.trim())?;
    let text = String::from_utf8(decoded).ok()?;
    let (user, password) = text.split_once(':')?;
    (!user.is_empty()).then(|| (user.to_string(), password.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basic_credentials_are_read_from_the_header() {
        // "alice:s3cr:et" — a password may hold colons; the user may not.
        assert_eq!(
            parse_basic("Basic YWxpY2U6czNjcjpldA=="),
            Some(("alice".into(), "s3cr:et".into()))
        );
        assert_eq!(
            parse_basic("basic YWxpY2U6czNjcjpldA=="),
            parse_basic("Basic YWxpY2U6czNjcjpldA==")
        );
        assert_eq!(parse_basic("Bearer YWxpY2U6czNjcjpldA=="), None);
        assert_eq!(parse_basic("Basic !!!"), None);
        // ":pw" names no user.
        assert_eq!(parse_basic("Basic OnB3"), None);
        assert_eq!(parse_basic("Basic"), None);
    }
}
