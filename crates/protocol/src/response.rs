//! Encoding responses (broker side) and requests / decoding responses (client side).

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, RequestHeader, ResponseHeader};
use kafka_protocol::protocol::{Decodable, Encodable};

use crate::ProtocolError;

fn encode_err(what: &'static str, e: impl std::fmt::Display) -> ProtocolError {
    ProtocolError::Encode {
        what,
        reason: e.to_string(),
    }
}

/// A whole response frame: length prefix, response header, body.
pub fn encode_response<R: Encodable>(
    correlation_id: i32,
    api_key: ApiKey,
    version: i16,
    body: &R,
) -> Result<Bytes, ProtocolError> {
    let header_version = api_key.response_header_version(version);
    let header = ResponseHeader::default().with_correlation_id(correlation_id);
    let size = header
        .compute_size(header_version)
        .map_err(|e| encode_err("response header", e))?
        + body
            .compute_size(version)
            .map_err(|e| encode_err("response body", e))?;
    let mut buf = BytesMut::with_capacity(4 + size);
    buf.put_i32(size as i32);
    header
        .encode(&mut buf, header_version)
        .map_err(|e| encode_err("response header", e))?;
    body.encode(&mut buf, version)
        .map_err(|e| encode_err("response body", e))?;
    Ok(buf.freeze())
}

/// A whole request frame, for clients.
pub fn encode_request<R: Encodable>(
    header: &RequestHeader,
    api_key: ApiKey,
    body: &R,
) -> Result<Bytes, ProtocolError> {
    let version = header.request_api_version;
    let header_version = api_key.request_header_version(version);
    let mut buf = BytesMut::new();
    buf.put_i32(0);
    header
        .encode(&mut buf, header_version)
        .map_err(|e| encode_err("request header", e))?;
    body.encode(&mut buf, version)
        .map_err(|e| encode_err("request body", e))?;
    let len = (buf.len() - 4) as i32;
    buf[0..4].copy_from_slice(&len.to_be_bytes());
    Ok(buf.freeze())
}

/// Decodes a response frame body (without length prefix), for clients.
pub fn decode_response_frame<R: Decodable>(
    mut frame: Bytes,
    api_key: ApiKey,
    version: i16,
) -> Result<(i32, R), ProtocolError> {
    let malformed = |e: anyhow_like::E| ProtocolError::Malformed {
        api_key: api_key as i16,
        version,
        reason: e.0,
    };
    let header_version = api_key.response_header_version(version);
    let header = ResponseHeader::decode(&mut frame, header_version)
        .map_err(|e| malformed(anyhow_like::E(e.to_string())))?;
    let body =
        R::decode(&mut frame, version).map_err(|e| malformed(anyhow_like::E(e.to_string())))?;
    Ok((header.correlation_id, body))
}

mod anyhow_like {
    pub struct E(pub String);
}
