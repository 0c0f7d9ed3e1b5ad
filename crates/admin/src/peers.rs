//! The other nodes' admin APIs, for what one node cannot answer alone (cluster-wide
//! statistics). Each broker registers its HTTP listener among its endpoints
//! (`strata_broker::config::HTTP_ENDPOINT`); a node asks its live peers' over HTTP/1.1 with
//! the caller's own credentials (every node checks them against the same users), each
//! within `PEER_WAIT`, and says which did not answer rather than wait for them.

use std::time::Duration;

use http_body_util::{BodyExt, Empty, Limited};
use hyper::header::{HeaderValue, AUTHORIZATION};
use hyper::Request;
use serde_json::Value;
use strata_broker::Broker;

/// How long a peer has to answer.
const PEER_WAIT: Duration = Duration::from_secs(2);
/// The largest answer taken from a peer.
const PEER_ANSWER_MAX: usize = 1 << 20;

/// The live brokers other than this one that registered an HTTP listener: (node id,
/// `host:port`), and the live ones that did not (their HTTP listener is off).
pub(crate) fn live_peers(broker: &Broker) -> (Vec<(i32, String)>, Vec<i32>) {
    let image = broker.image();
    let mut reachable = Vec::new();
    let mut without = Vec::new();
    for b in image.brokers() {
        if b.fenced || b.node_id == broker.config.node_id {
            continue;
        }
        match b
            .endpoints
            .iter()
            .find(|e| e.listener == strata_broker::config::HTTP_ENDPOINT)
        {
            Some(e) => reachable.push((b.node_id, format!("{}:{}", e.host, e.port))),
            None => without.push(b.node_id),
        }
    }
    (reachable, without)
}

/// Why an HTTP/1.1 connection to another server could not be made.
pub(crate) enum Unreachable {
    /// No TCP connection (the server is down or the address wrong).
    Connect(std::io::Error),
    /// Connected, but the HTTP handshake failed.
    Handshake(hyper::Error),
}

/// An HTTP/1.1 client connection to `addr` (its I/O driven by a task of its own): the admin
/// API's way to the SQL engine (`sql.rs`) and to its peers.
pub(crate) async fn http1<B>(
    addr: &str,
) -> Result<hyper::client::conn::http1::SendRequest<B>, Unreachable>
where
    B: hyper::body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let stream = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(Unreachable::Connect)?;
    let (sender, connection) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .map_err(Unreachable::Handshake)?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(sender)
}

/// `GET path` at a peer's admin API, as JSON.
pub(crate) async fn get_json(
    addr: &str,
    path: &str,
    authorization: Option<HeaderValue>,
) -> Result<Value, String> {
    let asked = async {
        let mut sender = http1::<Empty<bytes::Bytes>>(addr)
            .await
            .map_err(|e| match e {
                Unreachable::Connect(e) => format!("cannot connect: {e}"),
                Unreachable::Handshake(e) => e.to_string(),
            })?;
        let mut request = Request::get(path).header("host", addr);
        if let Some(a) = authorization {
            request = request.header(AUTHORIZATION, a);
        }
        let request = request
            .body(Empty::<bytes::Bytes>::new())
            .map_err(|e| e.to_string())?;
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| e.to_string())?;
        let status = response.status();
        let body = Limited::new(response.into_body(), PEER_ANSWER_MAX)
            .collect()
            .await
            .map_err(|e| format!("unreadable answer: {e}"))?
            .to_bytes();
        if !status.is_success() {
            return Err(format!("answered {status}"));
        }
        serde_json::from_slice(&body).map_err(|e| format!("not JSON: {e}"))
    };
    tokio::time::timeout(PEER_WAIT, asked)
        .await
        .map_err(|_| format!("no answer within {PEER_WAIT:?}"))?
}
