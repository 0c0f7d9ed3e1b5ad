use thiserror::Error;

/// Why a frame could not be turned into a request. Each of these closes the connection that
/// sent it (Kafka does the same), and nothing else.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum ProtocolError {
    #[error("frame of {length} bytes exceeds socket.request.max.bytes {max}")]
    FrameTooLarge { length: i64, max: usize },
    #[error("negative frame length {0}")]
    NegativeLength(i32),
    #[error("frame too short for a request header ({0} bytes)")]
    ShortFrame(usize),
    #[error("unknown API key {0}")]
    UnknownApiKey(i16),
    #[error("API key {api_key} version {version} is not supported")]
    UnsupportedVersion { api_key: i16, version: i16 },
    #[error("malformed request (API key {api_key} version {version}): {reason}")]
    Malformed {
        api_key: i16,
        version: i16,
        reason: String,
    },
    #[error("could not encode {what}: {reason}")]
    Encode { what: &'static str, reason: String },
}
