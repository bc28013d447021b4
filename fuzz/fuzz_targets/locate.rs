//! The dataset-locating code on arbitrary environment values and paths: `cache_dir` from any
//! XDG_CACHE_HOME and HOME, `search` over any --data, FASHION_MNIST_DIR and system paths (some
//! pointing at real folders with all, some or none of the files). It answers or errs, never
//! panics, and an answer is a folder that holds the files asked for, or the cache to fill.
#![no_main]
use libfuzzer_sys::fuzz_target;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use train::data::{cache_dir, files_of, search, Location, Split, FILES};

/// Folders made once: all four files, the test files only, none.
fn folders() -> &'static [PathBuf; 3] {
    static DIRS: OnceLock<[PathBuf; 3]> = OnceLock::new();
    DIRS.get_or_init(|| {
        let base = std::env::temp_dir().join(format!("convnet-fuzz-locate-{}", std::process::id()));
        let make = |name: &str, files: &[&str]| {
            let d = base.join(name);
            std::fs::create_dir_all(&d).unwrap();
            for f in files {
                std::fs::write(d.join(f), b"").unwrap();
            }
            d
        };
        [make("all", &FILES), make("test", &files_of(&[Split::Test])), make("none", &[])]
    })
}

/// A path from the fuzzer: one of the folders (or a path under one) when the first byte says so.
fn path(bytes: &[u8]) -> PathBuf {
    match bytes.split_first() {
        Some((&b, _)) if b < 3 => folders()[b as usize].clone(),
        Some((&b, rest)) if b < 6 => folders()[(b - 3) as usize].join(OsStr::from_bytes(rest)),
        _ => PathBuf::from(OsStr::from_bytes(bytes)),
    }
}

fuzz_target!(|data: &[u8]| {
    let mut parts = data.split(|&b| b == 0xff);
    let mut next = || parts.next().unwrap_or(&[]);
    let (xdg, home) = (next(), next());
    let cache = cache_dir(Some(OsStr::from_bytes(xdg)), Some(OsStr::from_bytes(home)));
    if let Some(c) = &cache {
        assert!(c.ends_with("convnet/fashion-mnist"), "{c:?}");
    }
    let (cli, env, system) = (next(), next(), next());
    let cli = (!cli.is_empty()).then(|| path(cli));
    let env = (!env.is_empty()).then(|| path(env));
    let files =
        if data.first().is_some_and(|b| b & 1 == 1) { files_of(&[Split::Test]) } else { FILES.to_vec() };
    match search(cli.as_deref(), env.as_deref(), &path(system), cache.as_deref(), &files) {
        Ok(Location::Present(dir)) => {
            for f in &files {
                let raw = f.trim_end_matches(".gz");
                assert!(dir.join(f).is_file() || dir.join(raw).is_file(), "{dir:?} lacks {f}");
            }
        }
        Ok(Location::Download(dir)) => assert_eq!(Some(dir.as_path()), cache.as_deref().map(Path::new)),
        Err(e) => assert!(!e.to_string().is_empty()),
    }
});
