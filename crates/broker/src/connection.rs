//! One client connection: read frames, dispatch them, write responses in request order.
//!
//! The reader decodes a frame as soon as it is whole and hands it to the handlers; up to
//! `connection_in_flight_max` responses may be pending at once (a bounded channel), so a
//! client that pipelines (librdkafka keeps several produces in flight) is not serialised
//! behind each fdatasync. A frame that is too large, malformed, or of an unknown API or
//! version closes this connection only, after a log line saying why.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use strata_protocol::{decode_request, frame_length, FRAME_LENGTH_BYTES};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::tcp::OwnedWriteHalf;
use tokio::net::TcpStream;
use tokio::sync::{mpsc, watch, OwnedSemaphorePermit};
use tracing::{debug, warn};

use crate::handlers::{dispatch, Outcome, PendingResponse};
use crate::listeners::SecurityProtocol;
use crate::sasl::{Admit, Authenticator};
use crate::Broker;

/// Bytes read from the socket at a time (the buffer grows only up to a checked frame size).
const READ_CHUNK_BYTES: usize = 64 * 1024;
/// Largest single reservation for a frame being received.
const FRAME_RESERVE_STEP_BYTES: usize = 8 << 20;
/// The buffer of a connection that has not authenticated or sent anything yet.
const SMALL_CHUNK_BYTES: usize = 4 * 1024;
/// The memory pool counts KiB in a semaphore, whose permits are bounded.
const MAX_POOL_KIB: usize = 1 << 28;

/// What a request knows about the connection it came on: the peer, the listener (Metadata
/// answers with each broker's endpoint on this same listener, as Kafka does) and the
/// authenticated principal.
#[derive(Debug, Clone)]
pub struct ConnectionContext {
    /// The client's address (Kafka's `client_host` is `/` + its IP).
    pub peer: SocketAddr,
    /// The listener the connection was accepted on, by Kafka's listener name.
    pub listener: Arc<str>,
    pub protocol: SecurityProtocol,
    /// Kafka's principal: `User:ANONYMOUS` until a client certificate or SASL names one.
    pub principal: String,
    /// A client over its quota: the connection reads no further request until then
    /// (KIP-219's muted channel).
    pub muted_until: Arc<std::sync::Mutex<Option<Instant>>>,
}

impl ConnectionContext {
    /// Keeps the connection from reading requests for `throttle` from now (the longest
    /// throttle wins).
    pub fn mute_for(&self, throttle: Duration) {
        if throttle.is_zero() {
            return;
        }
        let until = Instant::now() + throttle;
        let mut m = self.muted_until.lock().unwrap_or_else(|p| p.into_inner());
        if m.is_none_or(|u| u < until) {
            *m = Some(until);
        }
    }

    fn muted(&self) -> Option<Instant> {
        let m = self.muted_until.lock().unwrap_or_else(|p| p.into_inner());
        m.filter(|u| *u > Instant::now())
    }
}

impl ConnectionContext {
    /// A connection on the default PLAINTEXT listener.
    pub fn client(peer: SocketAddr) -> Self {
        Self::on(peer, Arc::from("PLAINTEXT"), SecurityProtocol::Plaintext)
    }

    pub fn on(peer: SocketAddr, listener: Arc<str>, protocol: SecurityProtocol) -> Self {
        ConnectionContext {
            peer,
            listener,
            protocol,
            principal: ANONYMOUS.to_string(),
            muted_until: Default::default(),
        }
    }
}

/// Kafka's principal of a client that did not authenticate.
pub const ANONYMOUS: &str = "User:ANONYMOUS";

/// Where responses are written: a TCP socket (fetched record bytes go with sendfile) or a
/// TLS stream (they are read, then encrypted).
pub enum ResponseWriter {
    Tcp(OwnedWriteHalf),
    Stream(Box<dyn AsyncWrite + Send + Unpin>),
}

impl ResponseWriter {
    async fn write_all(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        match self {
            ResponseWriter::Tcp(w) => w.write_all(bytes).await,
            ResponseWriter::Stream(w) => w.write_all(bytes).await,
        }
    }

    async fn write_parts(&mut self, parts: Vec<crate::zero_copy::Part>) -> std::io::Result<()> {
        match self {
            ResponseWriter::Tcp(w) => crate::zero_copy::write_parts(w, parts).await,
            ResponseWriter::Stream(w) => {
                for part in parts {
                    match part {
                        crate::zero_copy::Part::Bytes(b) => w.write_all(&b).await?,
                        crate::zero_copy::Part::File(range) => {
                            let bytes = tokio::task::spawn_blocking(move || range.read())
                                .await
                                .map_err(std::io::Error::other)??;
                            w.write_all(&bytes).await?;
                        }
                    }
                }
                w.flush().await
            }
        }
    }

    async fn flush(&mut self) -> std::io::Result<()> {
        match self {
            ResponseWriter::Tcp(_) => Ok(()),
            ResponseWriter::Stream(w) => w.flush().await,
        }
    }

    async fn shutdown(&mut self) -> std::io::Result<()> {
        match self {
            ResponseWriter::Tcp(w) => w.shutdown().await,
            ResponseWriter::Stream(w) => w.shutdown().await,
        }
    }
}

/// A connection's two directions.
pub struct Transport {
    pub reader: Box<dyn AsyncRead + Send + Unpin>,
    pub writer: ResponseWriter,
}

impl Transport {
    pub fn tcp(stream: TcpStream) -> Self {
        let _ = stream.set_nodelay(true);
        let (reader, writer) = stream.into_split();
        Transport {
            reader: Box::new(reader),
            writer: ResponseWriter::Tcp(writer),
        }
    }

    pub fn stream<S: AsyncRead + AsyncWrite + Send + 'static>(stream: S) -> Self {
        let (reader, writer) = tokio::io::split(stream);
        Transport {
            reader: Box::new(reader),
            writer: ResponseWriter::Stream(Box::new(writer)),
        }
    }
}

/// A response to come, in request order, with its API's counters (None for the answers
/// authentication gives before a request reaches a handler).
struct Queued {
    pending: PendingResponse,
    stats: Option<Arc<crate::metrics::RequestStats>>,
}

impl Queued {
    fn answer(pending: PendingResponse) -> Queued {
        Queued {
            pending,
            stats: None,
        }
    }
}

pub async fn serve(
    broker: Arc<Broker>,
    transport: Transport,
    mut context: ConnectionContext,
    mut shutdown: watch::Receiver<bool>,
) {
    let peer = context.peer;
    let Transport {
        mut reader,
        mut writer,
    } = transport;
    let (tx, mut rx) = mpsc::channel::<Queued>(broker.config.connection_in_flight_max);
    let write_task = tokio::spawn(async move {
        while let Some(Queued { pending, stats }) = rx.recv().await {
            let outcome = pending.await;
            let sending = Instant::now();
            match outcome {
                Outcome::Respond(bytes) => {
                    let written = match writer.write_all(&bytes).await {
                        Ok(()) => writer.flush().await,
                        e => e,
                    };
                    if let Err(e) = written {
                        debug!(%peer, error = %e, "write failed; closing");
                        return;
                    }
                }
                Outcome::RespondParts(parts) => {
                    if let Err(e) = writer.write_parts(parts).await {
                        debug!(%peer, error = %e, "write failed; closing");
                        return;
                    }
                }
                Outcome::NoResponse => {}
                Outcome::Close => break,
            }
            if let Some(stats) = stats {
                stats.send_time.observe(sending.elapsed());
            }
        }
        let _ = writer.shutdown().await;
    });

    // A SASL listener's connection authenticates before anything else, with small frames.
    let mut auth = context.protocol.uses_sasl().then(|| {
        Authenticator::new(
            broker.config.sasl_mechanisms().unwrap_or_default(),
            broker.config.connections_max_reauth_ms,
        )
    });
    let request_max = broker.config.socket_request_max_bytes;
    let unauthenticated_max = request_max.min(broker.config.sasl_server_max_receive_size);
    let idle_max = std::time::Duration::from_millis(broker.config.connections_max_idle_ms);
    // Until a connection has authenticated (or sent a first frame), it gets a small buffer.
    let mut buf = BytesMut::with_capacity(SMALL_CHUNK_BYTES);
    // The share of `queued.max.request.bytes` the frame being received holds (KiB).
    let pool = broker.request_memory.clone();
    let pool_kib = (broker.config.queued_max_request_bytes / 1024).clamp(1, MAX_POOL_KIB) as u32;
    let mut frame_memory: Option<OwnedSemaphorePermit> = None;
    let mut sent_a_frame = false;
    'conn: loop {
        let mut max = match &auth {
            Some(a) if !a.authenticated() => unauthenticated_max,
            _ => request_max,
        };
        // Dispatch every whole frame already buffered.
        loop {
            match frame_length(&buf, max) {
                Ok(Some(len)) => {
                    sent_a_frame = true;
                    let read = Instant::now();
                    let mut frame = buf.split_to(FRAME_LENGTH_BYTES + len);
                    let body = frame.split_off(FRAME_LENGTH_BYTES).freeze();
                    match decode_request(body) {
                        Ok(mut request) => {
                            if let Some(a) = &mut auth {
                                let plain_users =
                                    broker.plain_users.get(&*context.listener).cloned();
                                let store = || {
                                    crate::sasl::ImageCredentials(
                                        broker.image(),
                                        broker.oauth.clone(),
                                        plain_users,
                                    )
                                };
                                match a.admit(request, store, &mut context, Instant::now()) {
                                    Admit::Pass(r) => request = *r,
                                    Admit::Answer(outcome) => {
                                        if a.authenticated() {
                                            max = request_max;
                                        }
                                        if tx
                                            .send(Queued::answer(Box::pin(async move { outcome })))
                                            .await
                                            .is_err()
                                        {
                                            break 'conn;
                                        }
                                        continue;
                                    }
                                    Admit::Fail { response, reason } => {
                                        broker.audit.authentication_failed(&context, &reason);
                                        let delay = Duration::from_millis(
                                            broker.config.connection_failed_authentication_delay_ms,
                                        );
                                        let delayed = Box::pin(async move {
                                            tokio::time::sleep(delay).await;
                                            response
                                        });
                                        if tx.send(Queued::answer(delayed)).await.is_ok() {
                                            let _ = tx
                                                .send(Queued::answer(Box::pin(async {
                                                    Outcome::Close
                                                })))
                                                .await;
                                        }
                                        break 'conn;
                                    }
                                    Admit::Close(reason) => {
                                        warn!(%peer, listener = %context.listener, %reason, "closing connection");
                                        break 'conn;
                                    }
                                }
                            }
                            // A throttled client's next request waits (KIP-219).
                            let queued = read.elapsed();
                            let muted = Instant::now();
                            if let Some(until) = context.muted() {
                                tokio::select! {
                                    _ = tokio::time::sleep_until(until.into()) => {}
                                    _ = shutdown.changed() => break 'conn,
                                }
                            }
                            let throttled = muted.elapsed();
                            let client_id = request
                                .header
                                .client_id
                                .as_ref()
                                .map(|c| c.to_string())
                                .unwrap_or_default();
                            let started = Instant::now();
                            let key = request.api_key;
                            let stats = broker
                                .metrics
                                .request_by_key(key as i16, || format!("{key:?}"));
                            stats.queue_time.observe(queued);
                            stats.throttle_time.observe(throttled);
                            let pending = dispatch(&broker, request, &context);
                            let pending = crate::metrics::measured(pending, stats.clone(), started);
                            // KIP-124: the time the request keeps the broker busy (dispatching
                            // and each poll of its future; not the waits between polls, which
                            // are purgatory in Kafka's terms) counts against request_percentage.
                            let pending = crate::quotas::timed(
                                pending,
                                started.elapsed(),
                                broker.clone(),
                                context.clone(),
                                client_id,
                            );
                            // The frame's memory stays counted until its response is out.
                            let pending: PendingResponse = match frame_memory.take() {
                                None => pending,
                                Some(held) => Box::pin(async move {
                                    let out = pending.await;
                                    drop(held);
                                    out
                                }),
                            };
                            let queued = Queued {
                                pending,
                                stats: Some(stats),
                            };
                            if tx.send(queued).await.is_err() {
                                break 'conn;
                            }
                        }
                        Err(e) => {
                            warn!(%peer, error = %e, "closing connection: bad request");
                            break 'conn;
                        }
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    warn!(%peer, error = %e, "closing connection: bad frame");
                    break 'conn;
                }
            }
        }
        // Room for the rest of the current frame (its length was checked against the limit)
        // in one allocation; very large frames grow in steps so that a header alone cannot
        // make us hold the whole limit. When the buffer lacks room, the unread bytes move to a
        // fresh buffer of exactly the size needed: `BytesMut::reserve` would instead grow the
        // old allocation by doubling (its consumed front still counts), which held ~100 MB per
        // busy producer connection under sustained 1 MB produce requests.
        //
        // A length prefix alone claims little: the room grows with what has arrived (at most
        // doubling), so holding memory means sending bytes. Room beyond the base chunk comes
        // from the broker-wide `queued.max.request.bytes`; when it is spent, the connection
        // waits (reads nothing) until other requests finish.
        let chunk = match &auth {
            Some(a) if !a.authenticated() => SMALL_CHUNK_BYTES,
            _ if !sent_a_frame => SMALL_CHUNK_BYTES,
            _ => READ_CHUNK_BYTES,
        };
        let mut frame_total = None;
        let want = match frame_length(&buf, max) {
            Ok(None) if buf.len() >= FRAME_LENGTH_BYTES => {
                let len = i32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
                frame_total = Some(FRAME_LENGTH_BYTES + len);
                (FRAME_LENGTH_BYTES + len - buf.len())
                    .min(FRAME_RESERVE_STEP_BYTES)
                    .min(buf.len().max(chunk))
            }
            _ => chunk,
        };
        if buf.capacity() - buf.len() < want {
            let size = buf.len() + want;
            if let Some(total) = frame_total.filter(|_| size > READ_CHUNK_BYTES) {
                let need = (size.div_ceil(1024) as u32).min(pool_kib);
                let held = frame_memory.as_ref().map_or(0, |p| p.num_permits() as u32);
                if need > held {
                    match pool.clone().try_acquire_many_owned(need - held) {
                        Ok(more) => match &mut frame_memory {
                            Some(p) => p.merge(more),
                            None => frame_memory = Some(more),
                        },
                        Err(_) => {
                            // The pool is spent: wait for the whole frame's share at once,
                            // holding none meanwhile, so connections never wait on each
                            // other's partial shares.
                            drop(frame_memory.take());
                            let whole = (total.div_ceil(1024) as u32).min(pool_kib);
                            frame_memory = Some(tokio::select! {
                                p = pool.clone().acquire_many_owned(whole) => match p {
                                    Ok(p) => p,
                                    Err(_) => break,
                                },
                                _ = shutdown.changed() => break,
                            });
                        }
                    }
                }
            }
            let mut fresh = BytesMut::with_capacity(size);
            fresh.extend_from_slice(&buf);
            buf = fresh;
        }
        tokio::select! {
            read = reader.read_buf(&mut buf) => match read {
                Ok(0) => break,
                Ok(_) => {}
                Err(e) => {
                    debug!(%peer, error = %e, "read failed; closing");
                    break;
                }
            },
            _ = shutdown.changed() => break,
            // Kafka's connections.max.idle.ms: a connection that sends nothing (including one
            // stuck halfway through a frame) is closed, so it cannot hold its buffer forever.
            _ = tokio::time::sleep(idle_max) => {
                debug!(%peer, idle_ms = broker.config.connections_max_idle_ms, "closing idle connection");
                break;
            }
        }
    }
    drop(tx);
    // Let already-dispatched requests finish and their responses go out.
    let _ = write_task.await;
    debug!(%peer, "connection closed");
}
