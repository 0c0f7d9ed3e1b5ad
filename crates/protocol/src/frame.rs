//! Size-prefixed frames: a big-endian i32 length, then that many bytes.

use crate::ProtocolError;

pub const FRAME_LENGTH_BYTES: usize = 4;
/// Kafka's `socket.request.max.bytes` default (100 MiB).
pub const REQUEST_BYTES_MAX_DEFAULT: usize = 100 * 1024 * 1024;

/// Checks the frame at the start of `buf`: `Ok(None)` if more bytes are needed ("incomplete"
/// is a value, not an error), `Ok(Some(len))` when the whole body of `len` bytes is there.
/// The length is checked against `max` before anything is read or allocated for it.
pub fn frame_length(buf: &[u8], max: usize) -> Result<Option<usize>, ProtocolError> {
    if buf.len() < FRAME_LENGTH_BYTES {
        return Ok(None);
    }
    let length = i32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]);
    if length < 0 {
        return Err(ProtocolError::NegativeLength(length));
    }
    if length as usize > max {
        return Err(ProtocolError::FrameTooLarge {
            length: i64::from(length),
            max,
        });
    }
    if buf.len() - FRAME_LENGTH_BYTES < length as usize {
        return Ok(None);
    }
    Ok(Some(length as usize))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn incomplete_complete_and_bounded() {
        assert_eq!(frame_length(&[0, 0], 100), Ok(None));
        assert_eq!(frame_length(&[0, 0, 0, 3, 1, 2], 100), Ok(None));
        assert_eq!(frame_length(&[0, 0, 0, 3, 1, 2, 3], 100), Ok(Some(3)));
        assert_eq!(
            frame_length(&[0, 0, 1, 0], 100),
            Err(ProtocolError::FrameTooLarge {
                length: 256,
                max: 100
            })
        );
        assert_eq!(
            frame_length(&[0xff, 0, 0, 0], 100),
            Err(ProtocolError::NegativeLength(-16777216))
        );
    }
}
