//! How connections on the controller listener are secured, as Kafka secures a controller
//! listener mapped to SSL, SASL_PLAINTEXT or SASL_SSL: TLS first (rustls, with the
//! application's server and client configurations), then a SASL exchange (PLAIN or
//! SCRAM-SHA-256/512, [`strata_security::SaslServer`]) before any raft RPC, then the
//! application's decision whether the authenticated principal may take part (Kafka:
//! CLUSTER_ACTION on the cluster, or a super user).
//!
//! The quorum only moves bytes: certificates, credentials and the admission rule come from
//! the application ([`Transport`]); a default transport is plaintext and admits everyone.
//!
//! SASL on this listener uses the listener's own framing: the client sends
//! `kind = 9` frames whose body is a one-byte mechanism-name length, the name, then the
//! mechanism's bytes; the server answers a frame whose first byte is 0 (a challenge follows),
//! 1 (authenticated; the server's final message follows) or 2 (refused; the reason follows).
//! Until a connection authenticated, frames are bounded by [`AUTH_FRAME_MAX`] and the whole
//! handshake by [`HANDSHAKE_TIMEOUT`] (an unauthenticated peer gets a small fixed budget).

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use strata_cluster::MetadataImage;
pub use strata_security::JaasUsers;
use strata_security::{CredentialStore, Mechanism, SaslServer, ScramClient, Step};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tracing::warn;

/// What a controller connection runs over: TCP, or TLS on TCP.
pub trait Io: AsyncRead + AsyncWrite + Unpin + Send + Sync {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send + Sync> Io for T {}

pub type Stream = Box<dyn Io>;

/// The request kind that carries SASL bytes (see the module doc).
pub(crate) const AUTHENTICATE: u8 = 9;

/// The largest frame read before a connection authenticated.
pub const AUTH_FRAME_MAX: u32 = 8 << 10;

/// How long TLS and SASL together may take before the connection is dropped.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The user name a client certificate (DER) maps to, if any.
pub type CertificateUser = Arc<dyn Fn(&[u8]) -> Option<String> + Send + Sync>;

/// The server side of TLS on the controller listener.
#[derive(Clone)]
pub struct TlsServer {
    /// Called at each handshake, so certificates renewed at runtime apply to new
    /// connections.
    pub acceptor: Arc<dyn Fn() -> tokio_rustls::TlsAcceptor + Send + Sync>,
    /// The user name a client certificate (DER) maps to (`ssl.principal.mapping.rules`);
    /// None: no rule matches, the connection is refused.
    pub user_of: CertificateUser,
}

/// SASL on the controller listener: how this node logs in to its peers, and what it accepts.
#[derive(Clone)]
pub struct Sasl {
    /// `sasl.mechanism.controller.protocol`: the mechanism this node authenticates with.
    pub mechanism: Mechanism,
    pub user: String,
    pub password: String,
    /// What peers may authenticate with (PLAIN and SCRAM only).
    pub accepted: Vec<Mechanism>,
    /// Where their credentials are checked.
    pub credentials: Arc<dyn CredentialStore + Send + Sync>,
    /// `connection.failed.authentication.delay.ms`.
    pub failure_delay: Duration,
}

/// Who is on the other end of an accepted connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Peer {
    /// Kafka's form: `User:name`, `User:ANONYMOUS` when nothing authenticated it.
    pub principal: String,
    pub addr: SocketAddr,
}

/// Whether a peer may use the controller listener, decided on this node's latest image.
pub type Admit = Arc<dyn Fn(&Peer, &MetadataImage) -> bool + Send + Sync>;

/// The security of the controller listener, both ways. Every member of a quorum uses the
/// same protocol (Kafka: the first of `controller.listener.names`).
#[derive(Clone, Default)]
pub struct Transport {
    pub tls_server: Option<TlsServer>,
    /// TLS to peers: the CAs trusted and, for peers that require it, this node's
    /// certificate. Set together with `tls_server`.
    pub tls_client: Option<Arc<rustls::ClientConfig>>,
    pub sasl: Option<Sasl>,
    /// None: every peer that got through TLS and SASL is admitted.
    pub admit: Option<Admit>,
}

impl std::fmt::Debug for Transport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Transport")
            .field("tls", &self.tls_client.is_some())
            .field("sasl", &self.sasl.as_ref().map(|s| s.mechanism))
            .field("admit", &self.admit.is_some())
            .finish()
    }
}

fn refused(why: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::PermissionDenied, why.into())
}

/// Reads one `u32` length and that many bytes, refusing lengths above `max` before
/// allocating.
pub(crate) async fn read_bounded<S: AsyncRead + Unpin + ?Sized>(
    stream: &mut S,
    max: u32,
) -> io::Result<Vec<u8>> {
    let len = stream.read_u32().await?;
    if len > max {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("frame of {len} bytes exceeds {max}"),
        ));
    }
    let mut buf = vec![0u8; len as usize];
    stream.read_exact(&mut buf).await?;
    Ok(buf)
}

async fn write_answer<S: AsyncWrite + Unpin + ?Sized>(
    stream: &mut S,
    tag: u8,
    bytes: &[u8],
) -> io::Result<()> {
    let len = u32::try_from(bytes.len() + 1).map_err(io::Error::other)?;
    let mut frame = Vec::with_capacity(bytes.len() + 5);
    frame.extend_from_slice(&len.to_be_bytes());
    frame.push(tag);
    frame.extend_from_slice(bytes);
    stream.write_all(&frame).await?;
    stream.flush().await
}

async fn send_auth<S: AsyncWrite + Unpin + ?Sized>(
    stream: &mut S,
    mechanism: Mechanism,
    bytes: &[u8],
) -> io::Result<()> {
    let name = mechanism.name().as_bytes();
    let len = u32::try_from(1 + name.len() + bytes.len())
        .ok()
        .filter(|&l| l <= AUTH_FRAME_MAX)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "SASL message too large"))?;
    let mut frame = vec![AUTHENTICATE];
    frame.extend_from_slice(&len.to_be_bytes());
    frame.push(name.len() as u8);
    frame.extend_from_slice(name);
    frame.extend_from_slice(bytes);
    stream.write_all(&frame).await?;
    stream.flush().await
}

/// The server's answer to one SASL message: the bytes that follow the tag, or the refusal.
async fn read_auth_answer<S: AsyncRead + Unpin + ?Sized>(
    stream: &mut S,
) -> io::Result<(u8, Vec<u8>)> {
    let mut body = read_bounded(stream, AUTH_FRAME_MAX).await?;
    if body.is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "empty SASL answer",
        ));
    }
    let rest = body.split_off(1);
    match body[0] {
        2 => Err(refused(format!(
            "the controller refused authentication: {}",
            String::from_utf8_lossy(&rest)
        ))),
        tag @ (0 | 1) => Ok((tag, rest)),
        tag => Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("unknown SASL answer {tag}"),
        )),
    }
}

/// The client side of the SASL exchange.
async fn login<S: AsyncRead + AsyncWrite + Unpin + ?Sized>(
    stream: &mut S,
    sasl: &Sasl,
) -> io::Result<()> {
    match sasl.mechanism {
        Mechanism::Plain => {
            let token = format!("\0{}\0{}", sasl.user, sasl.password);
            send_auth(stream, sasl.mechanism, token.as_bytes()).await?;
            match read_auth_answer(stream).await? {
                (1, _) => Ok(()),
                _ => Err(refused("SASL/PLAIN: the controller asked for more")),
            }
        }
        Mechanism::Scram(m) => {
            let mut scram = ScramClient::new(m, &sasl.user, &sasl.password);
            send_auth(stream, sasl.mechanism, &scram.first()).await?;
            let (tag, server_first) = read_auth_answer(stream).await?;
            if tag != 0 {
                return Err(refused(format!("{}: no server-first message", m.name())));
            }
            let last = scram
                .last(&server_first)
                .map_err(|e| refused(e.to_string()))?;
            send_auth(stream, sasl.mechanism, &last).await?;
            let (tag, server_final) = read_auth_answer(stream).await?;
            if tag != 1 {
                return Err(refused(format!("{}: not authenticated", m.name())));
            }
            scram.verify(&server_final).map_err(|_| {
                refused(format!(
                    "{}: the controller's signature does not verify",
                    m.name()
                ))
            })
        }
        Mechanism::OAuthBearer => Err(refused(
            "OAUTHBEARER is not offered on the controller listener",
        )),
    }
}

/// The server side: SASL messages until the peer authenticated; its user name.
async fn authenticate<S: AsyncRead + AsyncWrite + Unpin + ?Sized>(
    stream: &mut S,
    sasl: &Sasl,
) -> io::Result<String> {
    let mut server: Option<(Mechanism, SaslServer)> = None;
    loop {
        let kind = stream.read_u8().await?;
        if kind != AUTHENTICATE {
            return Err(refused(format!(
                "request kind {kind} before authenticating: this controller listener requires SASL"
            )));
        }
        let body = read_bounded(stream, AUTH_FRAME_MAX).await?;
        let name_len = usize::from(*body.first().unwrap_or(&0));
        let name = body
            .get(1..1 + name_len)
            .and_then(|n| std::str::from_utf8(n).ok())
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "malformed SASL frame"))?;
        let Some(mechanism) = Mechanism::parse(name).filter(|m| sasl.accepted.contains(m)) else {
            let why = format!("mechanism {name} is not enabled on the controller listener");
            write_answer(stream, 2, why.as_bytes()).await?;
            return Err(refused(why));
        };
        let (expected, exchange) =
            server.get_or_insert_with(|| (mechanism, SaslServer::new(mechanism)));
        if *expected != mechanism {
            return Err(refused("the SASL mechanism changed during the exchange"));
        }
        match exchange.step(&body[1 + name_len..], sasl.credentials.as_ref()) {
            Ok(Step::Challenge(bytes)) => write_answer(stream, 0, &bytes).await?,
            Ok(Step::Authenticated { user, response, .. }) => {
                write_answer(stream, 1, &response).await?;
                return Ok(user);
            }
            Err(e) => {
                tokio::time::sleep(sasl.failure_delay).await;
                let why = e.to_string();
                let _ = write_answer(stream, 2, why.as_bytes()).await;
                return Err(refused(why));
            }
        }
    }
}

impl Transport {
    /// Plaintext, everyone admitted.
    pub fn plaintext() -> Arc<Transport> {
        Arc::new(Transport::default())
    }

    /// Connects to a peer's controller listener: TCP, TLS, SASL as configured.
    pub async fn connect(&self, addr: &str) -> io::Result<Stream> {
        let tcp = TcpStream::connect(addr).await?;
        tcp.set_nodelay(true)?;
        let mut stream: Stream = match &self.tls_client {
            None => Box::new(tcp),
            Some(config) => {
                let host = addr.rsplit_once(':').map_or(addr, |(h, _)| h);
                let host = host.trim_start_matches('[').trim_end_matches(']');
                let name = rustls::pki_types::ServerName::try_from(host.to_string())
                    .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
                let connector = tokio_rustls::TlsConnector::from(config.clone());
                Box::new(connector.connect(name, tcp).await?)
            }
        };
        if let Some(sasl) = &self.sasl {
            login(&mut stream, sasl).await?;
        }
        Ok(stream)
    }

    /// The server side of a new connection: TLS, SASL and admission within
    /// [`HANDSHAKE_TIMEOUT`]; the stream to serve and who is on it.
    pub async fn accept(
        &self,
        tcp: TcpStream,
        addr: SocketAddr,
        image: impl Fn() -> Arc<MetadataImage>,
    ) -> io::Result<(Stream, Peer)> {
        match tokio::time::timeout(HANDSHAKE_TIMEOUT, self.handshake(tcp, addr)).await {
            Ok(Ok((stream, peer))) => {
                if let Some(admit) = &self.admit {
                    if !admit(&peer, &image()) {
                        warn!(principal = %peer.principal, peer = %addr, "controller listener: principal not allowed CLUSTER_ACTION on the cluster; connection closed");
                        return Err(refused(format!(
                            "{} may not use the controller listener",
                            peer.principal
                        )));
                    }
                }
                Ok((stream, peer))
            }
            Ok(Err(e)) => {
                if e.kind() == io::ErrorKind::PermissionDenied {
                    warn!(peer = %addr, error = %e, "controller listener: authentication failed");
                }
                Err(e)
            }
            Err(_) => Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("handshake not finished within {HANDSHAKE_TIMEOUT:?}"),
            )),
        }
    }

    async fn handshake(&self, tcp: TcpStream, addr: SocketAddr) -> io::Result<(Stream, Peer)> {
        tcp.set_nodelay(true)?;
        let mut user = None;
        let mut stream: Stream = match &self.tls_server {
            None => Box::new(tcp),
            Some(tls) => {
                let stream = (tls.acceptor)().accept(tcp).await?;
                if let Some(cert) = stream
                    .get_ref()
                    .1
                    .peer_certificates()
                    .and_then(|c| c.first())
                {
                    user = Some((tls.user_of)(cert.as_ref()).ok_or_else(|| {
                        refused("no ssl.principal.mapping.rules rule matches the certificate")
                    })?);
                }
                Box::new(stream)
            }
        };
        if let Some(sasl) = &self.sasl {
            user = Some(authenticate(&mut stream, sasl).await?);
        }
        let principal = format!("User:{}", user.as_deref().unwrap_or("ANONYMOUS"));
        Ok((stream, Peer { principal, addr }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use strata_security::ScramMechanism;

    fn sasl(mechanism: Mechanism, user: &str, password: &str) -> Sasl {
        Sasl {
            mechanism,
            user: user.into(),
            password: password.into(),
            accepted: vec![
                Mechanism::Plain,
                Mechanism::Scram(ScramMechanism::Sha256),
                Mechanism::Scram(ScramMechanism::Sha512),
            ],
            credentials: Arc::new(
                JaasUsers::parse(
                    r#"org.apache.kafka.common.security.plain.PlainLoginModule required username="ctl" password="x" user_ctl="ctl-secret" user_ops="ops pw";"#,
                )
                .with_scram(),
            ),
            failure_delay: Duration::ZERO,
        }
    }

    /// Both sides of the exchange over an in-memory pipe: the server's verdict.
    async fn exchange(client: Sasl, server: Sasl) -> (io::Result<()>, io::Result<String>) {
        let (mut a, mut b) = tokio::io::duplex(64 << 10);
        tokio::join!(login(&mut a, &client), authenticate(&mut b, &server))
    }

    #[tokio::test]
    async fn every_mechanism_authenticates_with_the_right_password_only() {
        for m in [
            Mechanism::Plain,
            Mechanism::Scram(ScramMechanism::Sha256),
            Mechanism::Scram(ScramMechanism::Sha512),
        ] {
            let (client, server) = exchange(
                sasl(m, "ops", "ops pw"),
                sasl(Mechanism::Plain, "ctl", "ctl-secret"),
            )
            .await;
            client.unwrap_or_else(|e| panic!("{m}: {e}"));
            assert_eq!(server.unwrap(), "ops", "{m}");
            let (client, server) =
                exchange(sasl(m, "ops", "wrong"), sasl(Mechanism::Plain, "ctl", "")).await;
            assert!(client.is_err(), "{m}: a wrong password is refused");
            assert_eq!(
                server.unwrap_err().kind(),
                io::ErrorKind::PermissionDenied,
                "{m}"
            );
            let (client, server) =
                exchange(sasl(m, "nobody", "ops pw"), sasl(Mechanism::Plain, "", "")).await;
            assert!(client.is_err() && server.is_err(), "{m}: an unknown user");
        }
    }

    #[tokio::test]
    async fn a_mechanism_not_accepted_is_refused_with_a_reason() {
        let mut server = sasl(Mechanism::Plain, "ctl", "ctl-secret");
        server.accepted = vec![Mechanism::Scram(ScramMechanism::Sha512)];
        let (client, server) = exchange(sasl(Mechanism::Plain, "ctl", "ctl-secret"), server).await;
        let e = client.unwrap_err().to_string();
        assert!(e.contains("PLAIN is not enabled"), "{e}");
        assert!(server.is_err());
    }

    proptest::proptest! {
        /// Whatever an unauthenticated peer sends (well framed or not) ends in an error or
        /// an authentication, never a panic or a hang.
        #[test]
        fn arbitrary_sasl_frames_never_panic(
            frames in proptest::collection::vec(proptest::collection::vec(proptest::num::u8::ANY, 0..300), 1..4),
            raw in proptest::bool::ANY,
        ) {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            rt.block_on(async {
                let server = sasl(Mechanism::Plain, "ctl", "ctl-secret");
                let (mut a, mut b) = tokio::io::duplex(64 << 10);
                for f in &frames {
                    if raw {
                        a.write_all(f).await.unwrap();
                    } else {
                        let mut framed = vec![AUTHENTICATE];
                        framed.extend_from_slice(&(f.len() as u32).to_be_bytes());
                        framed.extend_from_slice(f);
                        a.write_all(&framed).await.unwrap();
                    }
                }
                drop(a);
                let _ = authenticate(&mut b, &server).await;
            });
        }
    }

    #[tokio::test]
    async fn raft_traffic_before_authenticating_is_refused_and_frames_are_bounded() {
        let server = sasl(Mechanism::Plain, "ctl", "ctl-secret");
        // An AppendEntries (kind 1) straight away.
        let (mut a, mut b) = tokio::io::duplex(1024);
        a.write_all(&[1, 0, 0, 0, 2, b'{', b'}']).await.unwrap();
        let e = authenticate(&mut b, &server).await.unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::PermissionDenied);
        assert!(e.to_string().contains("requires SASL"), "{e}");
        // A SASL frame announcing 1 GiB is refused before anything is allocated for it.
        let (mut a, mut b) = tokio::io::duplex(1024);
        a.write_all(&[AUTHENTICATE, 0x40, 0, 0, 0]).await.unwrap();
        let e = authenticate(&mut b, &server).await.unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidData);
        assert!(e.to_string().contains("exceeds"), "{e}");
        // Garbage where the mechanism name goes.
        let (mut a, mut b) = tokio::io::duplex(1024);
        a.write_all(&[AUTHENTICATE, 0, 0, 0, 2, 200, b'P'])
            .await
            .unwrap();
        let e = authenticate(&mut b, &server).await.unwrap_err();
        assert!(e.to_string().contains("malformed"), "{e}");
    }
}
