//! Produced-batch validation and recovery scanning must never panic, whatever the bytes.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = strata_records::validate_produce(data);
    let _ = strata_records::scan_batches(data, None);
    let _ = strata_records::scan_batches(data, Some(0));
});
