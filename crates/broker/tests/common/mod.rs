//! Helpers shared by the broker's integration tests.
#![allow(dead_code)]

use std::sync::Arc;

use kafka_protocol::messages::{ApiKey, RequestHeader, ResponseHeader};
use kafka_protocol::protocol::Decodable;
use strata_broker::handlers::{dispatch, Outcome};
use strata_broker::Broker;
use strata_protocol::{Request, RequestFrame};

/// Sends `req` through the broker's request dispatch (as a client connection would) and
/// decodes the response.
pub async fn call<R: Decodable>(
    broker: &Arc<Broker>,
    key: ApiKey,
    version: i16,
    req: Request,
) -> R {
    let header = RequestHeader::default()
        .with_request_api_key(key as i16)
        .with_request_api_version(version)
        .with_correlation_id(1);
    let frame = RequestFrame {
        api_key: key,
        version,
        header,
        request: req,
    };
    let Outcome::Respond(mut bytes) = dispatch(
        broker,
        frame,
        &strata_broker::connection::ConnectionContext::client("127.0.0.1:1".parse().unwrap()),
    )
    .await
    else {
        panic!("no response");
    };
    // size, correlation id, then (flexible versions) the response header's tagged fields
    let header_version = key.response_header_version(version);
    let _ = bytes::Buf::get_i32(&mut bytes);
    ResponseHeader::decode(&mut bytes, header_version).unwrap();
    R::decode(&mut bytes, version).unwrap()
}
