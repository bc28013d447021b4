//! The IDX reader on arbitrary bytes, raw and inside gzip: it returns the data or an error, never
//! panics, and what it returns agrees with the header.
#![no_main]
use libfuzzer_sys::fuzz_target;
use std::io::Write;
use std::path::Path;
use train::data::{images_from_bytes, labels_from_bytes, NUM_CLASSES};

fn check(bytes: Vec<u8>) {
    let path = Path::new("fuzz.idx");
    if let Ok((pixels, count, rows, cols)) = images_from_bytes(bytes.clone(), path) {
        assert_eq!(pixels.len(), count * rows * cols);
        assert!(rows > 0 && cols > 0);
    }
    if let Ok(labels) = labels_from_bytes(bytes, path) {
        assert!(labels.iter().all(|&l| (l as usize) < NUM_CLASSES));
    }
}

fuzz_target!(|data: &[u8]| {
    // The first byte chooses: the bytes as they are (which may themselves be gzip), or gzipped
    // here so that the decompressed IDX is what the fuzzer shapes.
    let Some((&mode, rest)) = data.split_first() else { return };
    if mode & 1 == 0 {
        check(rest.to_vec());
    } else {
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(rest).unwrap();
        check(gz.finish().unwrap());
    }
});
