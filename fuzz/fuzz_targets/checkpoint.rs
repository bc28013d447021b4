//! The checkpoint loader on arbitrary bytes: header, metadata, tensor table. It returns a
//! checkpoint or an error naming the file, never panics; a checkpoint it returns has consistent
//! tensors, and its metadata is then parsed as a run's (as `--resume` and `eval` do).
#![no_main]
use libfuzzer_sys::fuzz_target;
use std::path::Path;
use train::checkpoint::{check_against, from_bytes};
use train::state::RunMeta;

fuzz_target!(|data: &[u8]| {
    let path = Path::new("fuzz.safetensors");
    match from_bytes(data, path) {
        Ok(ckpt) => {
            for t in &ckpt.tensors {
                assert_eq!(t.numel(), Some(t.data.len()), "{}", t.name);
            }
            let _ = RunMeta::from_checkpoint(&ckpt, path);
            let _ = check_against(&ckpt, &[("0.0.weight".into(), vec![96, 1, 11, 11])]);
        }
        Err(e) => assert!(e.to_string().contains("fuzz.safetensors"), "{e}"),
    }
});
