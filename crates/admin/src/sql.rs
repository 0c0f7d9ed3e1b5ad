//! SQL passthrough: `/v1/sql/{ksql,query,query-stream,close-query,info}` are forwarded to
//! this node's SQL engine (ksqlDB's REST API on `--sql-listen`), headers and body as they
//! came (so its HTTP Basic authentication applies), the answer streamed back as it comes
//! (push queries' rows as they arrive). The request body is bounded before it is read.

use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};

use crate::peers::Unreachable;
use crate::{error, Body, MAX_BODY_BYTES};

/// The SQL engine's endpoints the passthrough forwards.
pub const ENDPOINTS: [&str; 5] = ["ksql", "query", "query-stream", "close-query", "info"];

/// Headers that belong to one hop, not passed on (RFC 9110 §7.6.1).
const HOP_BY_HOP: [&str; 7] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

pub async fn forward(sql_addr: &str, endpoint: &str, req: Request<Incoming>) -> Response<Body> {
    let (parts, body) = req.into_parts();
    let body = match Limited::new(body, MAX_BODY_BYTES).collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) => {
            return error(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("request body unreadable or over {MAX_BODY_BYTES} bytes: {e}"),
            )
        }
    };
    let mut sender = match crate::peers::http1::<Full<bytes::Bytes>>(sql_addr).await {
        Ok(s) => s,
        Err(Unreachable::Connect(e)) => {
            return error(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("the SQL engine at {sql_addr} is not reachable: {e}"),
            )
        }
        Err(Unreachable::Handshake(e)) => {
            return error(StatusCode::BAD_GATEWAY, format!("SQL engine: {e}"))
        }
    };
    let mut builder = Request::builder()
        .method(parts.method)
        .uri(format!("/{endpoint}"))
        .header("host", sql_addr);
    for (name, value) in &parts.headers {
        if name != "host" && !HOP_BY_HOP.contains(&name.as_str()) {
            builder = builder.header(name, value);
        }
    }
    let Ok(forwarded) = builder.body(Full::new(body)) else {
        return error(
            StatusCode::BAD_REQUEST,
            "request headers cannot be forwarded",
        );
    };
    match sender.send_request(forwarded).await {
        Ok(response) => {
            let (mut parts, body) = response.into_parts();
            for name in HOP_BY_HOP {
                parts.headers.remove(name);
            }
            Response::from_parts(parts, body.map_err(Into::into).boxed())
        }
        Err(e) => error(StatusCode::BAD_GATEWAY, format!("SQL engine: {e}")),
    }
}
