//! The Kafka wire protocol, without sockets: framing, the API versions Strata serves, and
//! decoding requests / encoding responses over the `kafka-protocol` message types.
//!
//! Decoding is pure and bounded: a frame is checked against `request_bytes_max` before its
//! body is read, every decode works on the frame's bytes only, and the vendored
//! `kafka-protocol` checks every length against the bytes left before allocating.

mod api;
mod error;
mod frame;
mod request;
mod response;

pub use api::{supported_versions, ApiRange, INTER_BROKER_APIS, SUPPORTED_APIS};
pub use error::ProtocolError;
pub use frame::{frame_length, FRAME_LENGTH_BYTES, REQUEST_BYTES_MAX_DEFAULT};
pub use request::{decode_inter_broker_request, decode_request, Request, RequestFrame};
pub use response::{decode_response_frame, encode_request, encode_response};

pub use kafka_protocol;
