//! SASL on one connection of a SASL_PLAINTEXT or SASL_SSL listener (Kafka's
//! `SaslServerAuthenticator`): which requests the connection may send in each state, and the
//! SaslHandshake / SaslAuthenticate answers. The mechanisms themselves are
//! `strata_security`'s; credentials come from the cluster metadata image.
//!
//! ```text
//!   Handshake --SaslHandshake(m)--> Authenticating(m) --SaslAuthenticate...--> Authenticated
//!       ^ ApiVersions only             SaslAuthenticate only          every API; SaslHandshake
//!                                                                     starts a re-authentication
//! ```
//!
//! Before the first success nothing but ApiVersions, SaslHandshake and SaslAuthenticate is
//! read (anything else closes the connection), and frames are bounded by
//! `sasl.server.max.receive.size`. A failed authentication is answered after
//! `connection.failed.authentication.delay.ms` and the connection closed. With
//! `connections.max.reauth.ms` (KIP-368) the session ends after that long: the client
//! re-authenticates on the same connection (as the same principal) or a later request
//! closes it.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::{SaslAuthenticateResponse, SaslHandshakeResponse};
use strata_cluster::MetadataImage;
use strata_protocol::{Request, RequestFrame};
use strata_security::{
    AuthError, CredentialStore, Mechanism, SaslServer, ScramCredential, ScramMechanism, Step,
};

use crate::connection::ConnectionContext;
use crate::handlers::{encode, str, Outcome};

/// The cluster metadata (SCRAM credentials), the OAUTHBEARER validator and the listener's
/// own PLAIN users as a credential store.
pub(crate) struct ImageCredentials(
    pub Arc<MetadataImage>,
    pub Option<Arc<crate::oauth::OAuthValidator>>,
    pub Option<Arc<strata_security::JaasUsers>>,
);

impl CredentialStore for ImageCredentials {
    fn check_plain(&self, user: &str, password: &[u8]) -> Option<bool> {
        self.2.as_ref()?.check_plain(user, password)
    }

    fn validate_token(&self, token: &str) -> Result<strata_security::oauth::ValidToken, String> {
        match &self.1 {
            Some(v) => v.validate(token),
            None => Err("OAUTHBEARER is not configured".into()),
        }
    }

    fn scram_credential(&self, user: &str, mechanism: ScramMechanism) -> Option<ScramCredential> {
        self.0
            .scram_credential(user, mechanism.name())
            .map(|c| ScramCredential {
                mechanism,
                salt: c.salt.clone(),
                stored_key: c.stored_key.clone(),
                server_key: c.server_key.clone(),
                iterations: c.iterations,
            })
    }
}

/// What the connection does with one request.
pub(crate) enum Admit {
    /// Not SASL's: dispatch it as usual.
    Pass(Box<RequestFrame>),
    /// SASL's answer; the exchange goes on.
    Answer(Outcome),
    /// The client failed to authenticate: answer with this after the failed-authentication
    /// delay, then close.
    Fail { response: Outcome, reason: String },
    /// A request the connection may not send in its state: closed without an answer.
    Close(String),
}

enum State {
    Handshake,
    Authenticating(Box<SaslServer>, Mechanism),
    Authenticated,
}

pub(crate) struct Authenticator {
    mechanisms: Vec<Mechanism>,
    state: State,
    /// The principal of the first authentication (a re-authentication must keep it).
    principal: Option<String>,
    /// KIP-368: when the session ends.
    expires: Option<Instant>,
    max_reauth: Option<Duration>,
}

impl Authenticator {
    pub(crate) fn new(mechanisms: Vec<Mechanism>, max_reauth_ms: u64) -> Authenticator {
        Authenticator {
            mechanisms,
            state: State::Handshake,
            principal: None,
            expires: None,
            max_reauth: (max_reauth_ms > 0).then(|| Duration::from_millis(max_reauth_ms)),
        }
    }

    /// Whether the connection has authenticated (at least once).
    pub(crate) fn authenticated(&self) -> bool {
        self.principal.is_some()
    }

    fn mechanism_names(&self) -> Vec<kafka_protocol::protocol::StrBytes> {
        self.mechanisms.iter().map(|m| str(m.name())).collect()
    }

    /// Decides about one request; on success sets the connection's principal.
    pub(crate) fn admit(
        &mut self,
        frame: RequestFrame,
        store: impl FnOnce() -> ImageCredentials,
        context: &mut ConnectionContext,
        now: Instant,
    ) -> Admit {
        let RequestFrame {
            api_key: key,
            version,
            header,
            request,
        } = frame;
        let cid = header.correlation_id;
        let pass = |request| {
            Admit::Pass(Box::new(RequestFrame {
                api_key: key,
                version,
                header,
                request,
            }))
        };
        match (&mut self.state, request) {
            (
                State::Handshake,
                request @ (Request::ApiVersions(_) | Request::ApiVersionsTooNew),
            ) => pass(request),
            (State::Handshake | State::Authenticated, Request::SaslHandshake(r)) => {
                let asked = r.mechanism.to_string();
                let mut response = SaslHandshakeResponse::default();
                response.mechanisms = self.mechanism_names();
                if version == 0 {
                    response.error_code = ResponseError::UnsupportedVersion.code();
                    return Admit::Fail {
                        response: encode(cid, key, version, &response),
                        reason: "SaslHandshake v0 (raw SASL tokens) is not supported: use a client that sends SaslAuthenticate (Kafka 1.0 or later)".into(),
                    };
                }
                match Mechanism::parse(&asked).filter(|m| self.mechanisms.contains(m)) {
                    Some(m) => {
                        self.state = State::Authenticating(Box::new(SaslServer::new(m)), m);
                        Admit::Answer(encode(cid, key, version, &response))
                    }
                    None => {
                        response.error_code = ResponseError::UnsupportedSaslMechanism.code();
                        Admit::Fail {
                            response: encode(cid, key, version, &response),
                            reason: format!(
                                "SASL mechanism {:?} is not enabled (enabled: {})",
                                truncate(&asked),
                                self.mechanisms
                                    .iter()
                                    .map(|m| m.name())
                                    .collect::<Vec<_>>()
                                    .join(",")
                            ),
                        }
                    }
                }
            }
            (State::Authenticating(server, mechanism), Request::SaslAuthenticate(r)) => {
                let mechanism = *mechanism;
                let store = store();
                let mut response = SaslAuthenticateResponse::default();
                match server.step(&r.auth_bytes, &store) {
                    Ok(Step::Challenge(bytes)) => {
                        response.auth_bytes = Bytes::from(bytes);
                        Admit::Answer(encode(cid, key, version, &response))
                    }
                    Ok(Step::Authenticated {
                        user,
                        response: last,
                        expires_ms,
                    }) => {
                        let principal = format!("User:{user}");
                        if let Some(before) = self.principal.as_ref().filter(|p| **p != principal) {
                            response.error_code = ResponseError::SaslAuthenticationFailed.code();
                            let why = format!(
                                "re-authentication as {principal} on a connection of {before}"
                            );
                            response.error_message = Some(str(&why));
                            return Admit::Fail {
                                response: encode(cid, key, version, &response),
                                reason: why,
                            };
                        }
                        tracing::debug!(peer = %context.peer, listener = %context.listener, %principal, %mechanism, reauthentication = self.principal.is_some(), "SASL authentication succeeded");
                        response.auth_bytes = Bytes::from(last);
                        if let Some(max) = self.max_reauth {
                            // A token's session also ends with the token (KIP-368).
                            let left = expires_ms.map(|exp| {
                                Duration::from_millis((exp - wall_clock_ms()).max(0) as u64)
                            });
                            let lifetime = left.map_or(max, |l| l.min(max));
                            // SaslAuthenticate v0 cannot say so: such a client is simply
                            // closed when its session ends.
                            if version >= 1 {
                                response.session_lifetime_ms = lifetime.as_millis() as i64;
                            }
                            self.expires = Some(now + lifetime);
                        }
                        context.principal = principal.clone();
                        self.principal = Some(principal);
                        self.state = State::Authenticated;
                        Admit::Answer(encode(cid, key, version, &response))
                    }
                    Err(e) => {
                        response.error_code = match e {
                            AuthError::Finished(_) => ResponseError::IllegalSaslState,
                            _ => ResponseError::SaslAuthenticationFailed,
                        }
                        .code();
                        response.error_message = Some(str(&e.to_string()));
                        Admit::Fail {
                            response: encode(cid, key, version, &response),
                            reason: format!("SASL/{mechanism}: {e}"),
                        }
                    }
                }
            }
            (State::Handshake | State::Authenticated, Request::SaslAuthenticate(_)) => {
                let response = SaslAuthenticateResponse::default()
                    .with_error_code(ResponseError::IllegalSaslState.code())
                    .with_error_message(Some(str("SaslAuthenticate before SaslHandshake")));
                Admit::Fail {
                    response: encode(cid, key, version, &response),
                    reason: "SaslAuthenticate before SaslHandshake".into(),
                }
            }
            (State::Authenticated, request) => {
                if self.expires.is_some_and(|at| now >= at) {
                    return Admit::Close(format!(
                        "SASL session of {} expired (connections.max.reauth.ms) and was not renewed",
                        self.principal.as_deref().unwrap_or("?")
                    ));
                }
                pass(request)
            }
            (State::Handshake, _) | (State::Authenticating(..), _) => Admit::Close(format!(
                "unexpected {key:?} request during SASL authentication"
            )),
        }
    }
}

fn wall_clock_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// A client-chosen string as it may appear in a log line.
fn truncate(s: &str) -> String {
    s.chars().take(64).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::{
        ApiKey, ApiVersionsRequest, MetadataRequest, RequestHeader, SaslAuthenticateRequest,
        SaslHandshakeRequest,
    };
    use strata_cluster::MetadataRecord;

    fn image(users: &[(&str, &str)]) -> Arc<MetadataImage> {
        let mut image = MetadataImage::default();
        for (user, password) in users {
            let c = ScramCredential::from_password(ScramMechanism::Sha256, password, 4096);
            image
                .apply(&MetadataRecord::ScramCredential {
                    user: user.to_string(),
                    mechanism: "SCRAM-SHA-256".into(),
                    salt: c.salt,
                    stored_key: c.stored_key,
                    server_key: c.server_key,
                    iterations: 4096,
                })
                .unwrap();
        }
        Arc::new(image)
    }

    fn frame(api_key: ApiKey, version: i16, request: Request) -> RequestFrame {
        RequestFrame {
            api_key,
            version,
            header: RequestHeader::default().with_correlation_id(1),
            request,
        }
    }

    fn handshake(m: &str) -> RequestFrame {
        let r = SaslHandshakeRequest::default().with_mechanism(str(m));
        frame(ApiKey::SaslHandshake, 1, Request::SaslHandshake(r))
    }

    fn plain(user: &str, password: &str) -> RequestFrame {
        let bytes = Bytes::from(format!("\0{user}\0{password}"));
        let r = SaslAuthenticateRequest::default().with_auth_bytes(bytes);
        frame(ApiKey::SaslAuthenticate, 2, Request::SaslAuthenticate(r))
    }

    fn metadata() -> RequestFrame {
        frame(
            ApiKey::Metadata,
            12,
            Request::Metadata(MetadataRequest::default()),
        )
    }

    struct Conn {
        auth: Authenticator,
        context: ConnectionContext,
        image: Arc<MetadataImage>,
    }

    impl Conn {
        fn new(reauth_ms: u64) -> Conn {
            Conn {
                auth: Authenticator::new(
                    vec![Mechanism::Plain, Mechanism::Scram(ScramMechanism::Sha256)],
                    reauth_ms,
                ),
                context: ConnectionContext::on(
                    "127.0.0.1:1".parse().unwrap(),
                    Arc::from("SASL_PLAINTEXT"),
                    crate::listeners::SecurityProtocol::SaslPlaintext,
                ),
                image: image(&[("alice", "pw-a"), ("bob", "pw-b")]),
            }
        }

        fn admit(&mut self, f: RequestFrame, at: Instant) -> &'static str {
            let image = self.image.clone();
            match self.auth.admit(
                f,
                || ImageCredentials(image, None, None),
                &mut self.context,
                at,
            ) {
                Admit::Pass(_) => "pass",
                Admit::Answer(_) => "answer",
                Admit::Fail { .. } => "fail",
                Admit::Close(_) => "close",
            }
        }
    }

    #[test]
    fn only_api_versions_and_sasl_before_authentication() {
        let now = Instant::now();
        let mut c = Conn::new(0);
        let versions = Request::ApiVersions(ApiVersionsRequest::default());
        assert_eq!(
            c.admit(frame(ApiKey::ApiVersions, 3, versions), now),
            "pass"
        );
        assert_eq!(c.admit(metadata(), now), "close");
        let mut c = Conn::new(0);
        assert_eq!(
            c.admit(plain("alice", "pw-a"), now),
            "fail",
            "no handshake yet"
        );
        let mut c = Conn::new(0);
        assert_eq!(
            c.admit(handshake("SCRAM-SHA-512"), now),
            "fail",
            "not enabled"
        );
        let mut c = Conn::new(0);
        assert_eq!(c.admit(handshake("PLAIN"), now), "answer");
        assert_eq!(c.admit(metadata(), now), "close", "mid-exchange");
    }

    #[test]
    fn plain_success_sets_the_principal_and_failure_does_not() {
        let now = Instant::now();
        let mut c = Conn::new(0);
        c.admit(handshake("PLAIN"), now);
        assert_eq!(c.admit(plain("alice", "wrong"), now), "fail");
        assert_eq!(c.context.principal, crate::connection::ANONYMOUS);
        assert!(!c.auth.authenticated());
        let mut c = Conn::new(0);
        c.admit(handshake("PLAIN"), now);
        assert_eq!(c.admit(plain("alice", "pw-a"), now), "answer");
        assert_eq!(c.context.principal, "User:alice");
        assert!(c.auth.authenticated());
        assert_eq!(c.admit(metadata(), now), "pass");
        assert_eq!(
            c.admit(plain("alice", "pw-a"), now),
            "fail",
            "no handshake before"
        );
    }

    #[test]
    fn sessions_expire_and_reauthentication_keeps_the_principal() {
        let t0 = Instant::now();
        let later = t0 + Duration::from_millis(1500);
        let mut c = Conn::new(1000);
        c.admit(handshake("PLAIN"), t0);
        c.admit(plain("alice", "pw-a"), t0);
        assert_eq!(c.admit(metadata(), t0), "pass");
        assert_eq!(c.admit(metadata(), later), "close", "expired");
        // Renewed in time: requests go on past the first session's end.
        let mut c = Conn::new(1000);
        c.admit(handshake("PLAIN"), t0);
        c.admit(plain("alice", "pw-a"), t0);
        let renew = t0 + Duration::from_millis(900);
        assert_eq!(c.admit(handshake("PLAIN"), renew), "answer");
        assert_eq!(c.admit(plain("alice", "pw-a"), renew), "answer");
        assert_eq!(c.admit(metadata(), later), "pass");
        // Re-authenticating as someone else fails.
        assert_eq!(c.admit(handshake("PLAIN"), later), "answer");
        assert_eq!(c.admit(plain("bob", "pw-b"), later), "fail");
        assert_eq!(c.context.principal, "User:alice");
    }
}
