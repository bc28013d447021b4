//! Finding the Fashion-MNIST files on disk, or downloading them once into a per-user cache.

use std::ffi::OsStr;
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};
use md5::{Digest, Md5};

use super::idx::{find_file, Split, FILES};
use super::DataError;

/// Zalando Research's published location (plain HTTP: an S3 website endpoint has no TLS).
pub const BASE_URL: &str = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/";
/// Where Debian's `dataset-fashion-mnist` package installs the four `.gz` files.
pub const DEBIAN_DIR: &str = "/usr/share/datasets/fashion-mnist";
/// Environment variable naming a directory that holds the four files.
pub const ENV_VAR: &str = "FASHION_MNIST_DIR";
/// Published MD5 sums of Zalando's `.gz` files (Debian recompressed its copies, so they differ
/// there: these are only checked on download, where a mismatch means a corrupt transfer).
pub const MD5_SUMS: [(&str, &str); 4] = [
    (FILES[0], "8d4fb7e6c68d591d4c3dfef9ec88bf0d"),
    (FILES[1], "25c81989df183df01b3e8a0aad5dffbe"),
    (FILES[2], "bef4ecab320f06d8554ea6380940ec79"),
    (FILES[3], "bb300cfdad3c16e7a12a480ee83cd310"),
];

/// Outcome of the search: the files are already in a directory, or must be downloaded into one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    /// This directory holds every file asked for.
    Present(PathBuf),
    /// No directory searched holds them all: the missing ones are to be downloaded into this one
    /// (the per-user cache).
    Download(PathBuf),
}

/// The files of `splits` (images, then labels, of each).
pub fn files_of(splits: &[Split]) -> Vec<&'static str> {
    splits.iter().flat_map(|s| [s.image_file(), s.label_file()]).collect()
}

/// Finds a directory holding the files of `splits`, downloading those missing into the cache if
/// needed (evaluation needs only the test split's two files).
pub fn locate(cli_dir: Option<&Path>, splits: &[Split]) -> Result<PathBuf, DataError> {
    let env_dir = std::env::var_os(ENV_VAR);
    let cache = cache_dir(std::env::var_os("XDG_CACHE_HOME").as_deref(), std::env::var_os("HOME").as_deref());
    let files = files_of(splits);
    match search(cli_dir, env_dir.as_deref().map(Path::new), Path::new(DEBIAN_DIR), cache.as_deref(), &files)?
    {
        Location::Present(dir) => Ok(dir),
        Location::Download(dir) => {
            eprintln!("Fashion-MNIST not found locally; downloading it into {}", dir.display());
            let sums: Vec<(&str, &str)> = MD5_SUMS.into_iter().filter(|(f, _)| files.contains(f)).collect();
            fetch_into(&dir, BASE_URL, &sums, true)?;
            Ok(dir)
        }
    }
}

/// The search order of [`locate`] for `files`, with the environment passed in so tests need not
/// set it. A directory the user named explicitly must hold them all: falling through to another
/// copy would silently train on data the user did not ask for.
pub fn search(
    cli_dir: Option<&Path>,
    env_dir: Option<&Path>,
    system_dir: &Path,
    cache_dir: Option<&Path>,
    files: &[&'static str],
) -> Result<Location, DataError> {
    // An empty FASHION_MNIST_DIR= is treated as unset, as shells make that easy to do by accident.
    let env_dir = env_dir.filter(|d| !d.as_os_str().is_empty());
    for (origin, dir) in [("--data", cli_dir), (ENV_VAR, env_dir)] {
        if let Some(dir) = dir {
            return match missing_file(dir, files) {
                Some(file) => Err(DataError::Missing { origin, dir: dir.into(), file }),
                None => Ok(Location::Present(dir.into())),
            };
        }
    }
    if missing_file(system_dir, files).is_none() {
        return Ok(Location::Present(system_dir.into()));
    }
    let cache = cache_dir.ok_or(DataError::NoCacheDir)?;
    Ok(match missing_file(cache, files) {
        None => Location::Present(cache.into()),
        Some(_) => Location::Download(cache.into()),
    })
}

/// `$XDG_CACHE_HOME/convnet/fashion-mnist`, else `$HOME/.cache/convnet/fashion-mnist`.
pub fn cache_dir(xdg_cache_home: Option<&OsStr>, home: Option<&OsStr>) -> Option<PathBuf> {
    // The XDG spec says to ignore relative paths (and empty is the same as unset).
    let xdg = xdg_cache_home.map(Path::new).filter(|p| p.is_absolute());
    let base = xdg
        .map(Path::to_path_buf)
        .or_else(|| home.filter(|h| !h.is_empty()).map(|h| Path::new(h).join(".cache")))?;
    Some(base.join("convnet").join("fashion-mnist"))
}

/// The first of `files` that `dir` lacks (in either `.gz` or uncompressed form).
fn missing_file(dir: &Path, files: &[&'static str]) -> Option<&'static str> {
    files.iter().copied().find(|f| find_file(dir, f).is_none())
}

/// Downloads each `(file name, md5 hex)` missing from `dir` from `base_url`, verifying its sum.
/// Files already under their final name are kept: only a verified download is ever renamed there.
pub fn fetch_into(
    dir: &Path,
    base_url: &str,
    files: &[(&str, &str)],
    progress: bool,
) -> Result<(), DataError> {
    fs::create_dir_all(dir).map_err(|source| DataError::CreateDir { path: dir.into(), source })?;
    // Timeouts so a dead network fails instead of hanging; per read, not overall, as the
    // 26 MB file may legitimately take a while on a slow link.
    let agent = ureq::AgentBuilder::new()
        .timeout_connect(Duration::from_secs(15))
        .timeout_read(Duration::from_secs(30))
        .build();
    let base = base_url.trim_end_matches('/');
    for &(name, md5) in files {
        if dir.join(name).is_file() {
            continue;
        }
        download(&agent, &format!("{base}/{name}"), dir, name, md5, progress)?;
    }
    Ok(())
}

/// Downloads `url` to `dir/name` atomically: a temporary file in the same directory (so the
/// rename cannot cross filesystems) is written, synced, verified, then renamed, and removed on
/// any failure, so the final name only ever holds a complete, verified file.
fn download(
    agent: &ureq::Agent,
    url: &str,
    dir: &Path,
    name: &str,
    md5: &str,
    progress: bool,
) -> Result<(), DataError> {
    let final_path = dir.join(name);
    let tmp_path = dir.join(format!(".{name}.{}.part", std::process::id()));
    let result = download_to(agent, url, &tmp_path, name, md5, progress).and_then(|()| {
        fs::rename(&tmp_path, &final_path).map_err(|source| DataError::Io {
            path: final_path.clone(),
            action: "renaming the finished download",
            source,
        })
    });
    match result {
        Ok(()) => {
            // Persist the rename itself; failure here only risks a re-download, so it is ignored.
            let _ = File::open(dir).and_then(|d| d.sync_all());
            Ok(())
        }
        Err(e) => {
            let _ = fs::remove_file(&tmp_path);
            Err(e)
        }
    }
}

fn download_to(
    agent: &ureq::Agent,
    url: &str,
    tmp_path: &Path,
    name: &str,
    md5: &str,
    progress: bool,
) -> Result<(), DataError> {
    let http_error = |reason: String| DataError::Http { url: url.into(), reason };
    let response = agent.get(url).call().map_err(|e| match e {
        ureq::Error::Status(code, r) => http_error(format!("HTTP status {code} {}", r.status_text())),
        // ureq's message starts with the URL, which ours already names.
        ureq::Error::Transport(t) => http_error(t.to_string().trim_start_matches(&format!("{url}: ")).into()),
    })?;
    let expected_len = response.header("Content-Length").and_then(|v| v.trim().parse::<u64>().ok());
    let write_error =
        |source| DataError::Io { path: tmp_path.into(), action: "writing the download", source };
    let mut file = File::create(tmp_path).map_err(write_error)?;

    let bar = progress_bar(name, expected_len, progress);
    let mut reader = response.into_reader();
    let mut hasher = Md5::new();
    let mut buf = vec![0u8; 1 << 16];
    let mut got = 0u64;
    let truncated =
        |actual| DataError::Truncated { url: url.into(), file: name.into(), expected: expected_len, actual };
    loop {
        let n = match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            // ureq reports a body shorter than Content-Length (or a cut chunked body) this way.
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Err(truncated(got)),
            Err(e) => return Err(http_error(format!("reading the body failed after {got} bytes: {e}"))),
        };
        hasher.update(&buf[..n]);
        file.write_all(&buf[..n]).map_err(write_error)?;
        got += n as u64;
        bar.inc(n as u64);
    }
    bar.finish_and_clear();
    if expected_len.is_some_and(|len| got != len) {
        return Err(truncated(got));
    }
    file.sync_all().map_err(write_error)?;

    let actual: String = hasher.finalize().iter().map(|b| format!("{b:02x}")).collect();
    if !actual.eq_ignore_ascii_case(md5) {
        return Err(DataError::Checksum { url: url.into(), file: name.into(), expected: md5.into(), actual });
    }
    Ok(())
}

/// A byte-count bar on stderr (indicatif's default target; hidden when stderr is not a terminal).
fn progress_bar(name: &str, len: Option<u64>, show: bool) -> ProgressBar {
    if !show {
        return ProgressBar::hidden();
    }
    let (bar, template) = match len {
        Some(len) => {
            (ProgressBar::new(len), "{msg:28} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}")
        }
        None => (ProgressBar::new_spinner(), "{spinner} {msg:28} {bytes} {bytes_per_sec}"),
    };
    // The templates are constants; the fallback only guards against an indicatif API change.
    let style = ProgressStyle::with_template(template).unwrap_or_else(|_| ProgressStyle::default_bar());
    bar.set_style(style.progress_chars("=> "));
    bar.set_message(name.to_string());
    bar
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_dir_prefers_absolute_xdg() {
        let want = |s: &str| Some(PathBuf::from(s));
        let (xdg, home) = (Some(OsStr::new("/x/cache")), Some(OsStr::new("/home/u")));
        assert_eq!(cache_dir(xdg, home), want("/x/cache/convnet/fashion-mnist"));
        assert_eq!(cache_dir(None, home), want("/home/u/.cache/convnet/fashion-mnist"));
        assert_eq!(cache_dir(Some(OsStr::new("rel")), home), want("/home/u/.cache/convnet/fashion-mnist"));
        assert_eq!(cache_dir(Some(OsStr::new("")), None), None);
        assert_eq!(cache_dir(None, Some(OsStr::new(""))), None);
    }

    #[test]
    fn published_sums_cover_all_files() {
        assert!(MD5_SUMS.iter().map(|(f, _)| *f).eq(FILES));
        assert!(MD5_SUMS.iter().all(|(_, s)| s.len() == 32));
    }
}
