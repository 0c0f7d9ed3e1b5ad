//! The OS-backed file: vectored writes (more slices than IOV_MAX, empty slices) land as one
//! contiguous range, and a file descriptor is available for sendfile.

use strata_storage::{Fs, RealFs};

#[test]
fn vectored_write_concatenates_every_slice() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("v.log");
    let file = RealFs.open(&path, true).unwrap();
    let chunks: Vec<Vec<u8>> = (0..2500u32)
        .map(|i| vec![(i % 251) as u8; (i % 7) as usize])
        .collect();
    let slices: Vec<&[u8]> = chunks.iter().map(Vec::as_slice).collect();
    file.write_all_at(b"head", 0).unwrap();
    file.write_all_vectored_at(&slices, 4).unwrap();
    let expected: Vec<u8> = b"head".iter().copied().chain(chunks.concat()).collect();
    let mut got = vec![0u8; expected.len()];
    file.read_exact_at(&mut got, 0).unwrap();
    assert_eq!(got, expected);
    assert_eq!(file.len().unwrap(), expected.len() as u64);
    assert!(file.as_fd().is_some());
}
