//! Decoding never allocates more than a small multiple of the frame it decodes: a frame
//! that claims a 2-billion-element array costs nothing. Own test binary, because it
//! measures the process-wide allocator.

use bytes::{BufMut, Bytes, BytesMut};
use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::{Config, TestRunner};
use stats_alloc::{Region, StatsAlloc, INSTRUMENTED_SYSTEM};
use std::alloc::System;
use strata_protocol::decode_request;

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

/// Decoded structs are larger than their wire form (a 4-byte array entry can become a
/// 100-byte struct), hence the factor; anything sized from an unchecked length blows far past.
fn bound(frame_len: usize) -> usize {
    256 * frame_len + 64 * 1024
}

fn allocated_by_decode(frame: Bytes) -> usize {
    let len = frame.len();
    let region = Region::new(GLOBAL);
    let _ = decode_request(frame);
    let stats = region.change();
    assert!(
        stats.bytes_allocated <= bound(len),
        "{} bytes allocated decoding a {len}-byte frame",
        stats.bytes_allocated
    );
    stats.bytes_allocated
}

fn frame(key: i16, version: i16, tail: &[u8]) -> Bytes {
    let mut f = BytesMut::new();
    f.put_i16(key);
    f.put_i16(version);
    f.put_i32(1); // correlation id
    f.put_i16(-1); // null client id
    f.put_slice(tail);
    f.freeze()
}

/// One test function: the allocator statistics are process-wide, so a second test running
/// in parallel would count its allocations against ours.
#[test]
fn decoding_allocates_within_a_multiple_of_the_frame() {
    let huge = i32::MAX.to_be_bytes();
    for (key, version) in [(3i16, 1i16), (0, 3), (1, 4), (2, 1), (19, 2), (32, 1)] {
        let mut tail = Vec::new();
        tail.extend_from_slice(&[0xff, 0xff]); // null / -1 where a string comes first
        tail.extend_from_slice(&huge);
        allocated_by_decode(frame(key, version, &huge));
        allocated_by_decode(frame(key, version, &tail));
    }
    // flexible versions: compact lengths as varints near u32::MAX
    allocated_by_decode(frame(3, 12, &[0x00, 0xff, 0xff, 0xff, 0xff, 0x0f]));

    // random frames: inputs are generated first, then decoded one by one, so the
    // generator's own allocations fall outside the measured regions
    let keys = [0i16, 1, 2, 3, 18, 19, 20, 22, 32, 37, 60];
    let strategy = (
        prop::sample::select(keys.to_vec()),
        0i16..13,
        proptest::collection::vec(any::<u8>(), 0..200),
    );
    let mut runner = TestRunner::new(Config {
        cases: 2000,
        ..Config::default()
    });
    let mut frames = Vec::new();
    for _ in 0..2000 {
        let (key, version, tail) = strategy.new_tree(&mut runner).expect("generate").current();
        frames.push(frame(key, version, &tail));
    }
    for f in frames {
        allocated_by_decode(f);
    }
}
