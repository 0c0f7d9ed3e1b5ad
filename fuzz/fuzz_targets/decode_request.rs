//! Request decoding must never panic or allocate beyond the frame, whatever the bytes.
//! Run: `cargo +nightly fuzz run decode_request` (or RUSTC_BOOTSTRAP=1 cargo fuzz run ...).
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // Through the framing check too, as the broker does.
    if let Ok(Some(len)) = strata_protocol::frame_length(data, 1 << 20) {
        let _ = strata_protocol::decode_request(bytes::Bytes::copy_from_slice(&data[4..4 + len]));
    }
    let _ = strata_protocol::decode_request(bytes::Bytes::copy_from_slice(data));
});
