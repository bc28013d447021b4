//! The one error type of the data layer: every variant names the file (or URL) and the values
//! that were wrong, so a user can act on the message without a debugger.

use std::fmt;
use std::io;
use std::path::PathBuf;

/// How to get the data without the built-in download; appended to errors a user must act on.
pub const HOW_TO_GET_DATA: &str = "to use a copy you already have, pass --data DIR or set \
FASHION_MNIST_DIR=DIR (a directory holding the four Fashion-MNIST .gz files), \
or install Debian's copy with `apt-get install dataset-fashion-mnist`";

/// Why the data could not be found, downloaded or read: the error of every function in
/// [`crate::data`] that can fail. Its message (`Display`) names the file or URL at fault; those a
/// user must act on also say how to get the data another way ([`HOW_TO_GET_DATA`]).
#[derive(Debug)]
pub enum DataError {
    /// An I/O operation (`action`, e.g. "reading") on `path` failed.
    Io {
        /// The file operated on.
        path: PathBuf,
        /// What was being done: "reading", "gzip decompression", "writing the download"...
        action: &'static str,
        /// The underlying error.
        source: io::Error,
    },
    /// The file starts with the wrong IDX magic number.
    Magic {
        /// The file read.
        path: PathBuf,
        /// The magic number the file starts with.
        found: u32,
        /// The magic number of the file expected ([`IMAGES_MAGIC`](super::IMAGES_MAGIC) or
        /// [`LABELS_MAGIC`](super::LABELS_MAGIC)).
        expected: u32,
        /// The kind of file expected: "images" or "labels".
        kind: &'static str,
    },
    /// The header is too short or holds an unusable dimension.
    Header {
        /// The file read.
        path: PathBuf,
        /// What is wrong with the header.
        detail: String,
    },
    /// The payload length disagrees with the header (truncated or trailing bytes).
    Payload {
        /// The file read.
        path: PathBuf,
        /// Payload bytes in the file (after the header, once decompressed).
        actual: usize,
        /// Payload bytes the header's dimensions call for.
        expected: usize,
        /// The header's dimensions in words, e.g. "60000 images of 28x28".
        layout: String,
    },
    /// A label outside 0..=9.
    Label {
        /// The labels file.
        path: PathBuf,
        /// The label's position in the file, from 0.
        index: usize,
        /// The label found there.
        value: u8,
    },
    /// The images and labels files of one split hold different counts.
    CountMismatch {
        /// The images file.
        images: PathBuf,
        /// The labels file.
        labels: PathBuf,
        /// Images its header announces.
        n_images: usize,
        /// Labels its header announces.
        n_labels: usize,
    },
    /// A directory the user pointed at (`origin`) lacks one of the four files.
    Missing {
        /// Who named the directory: "--data", "FASHION_MNIST_DIR", or "data" when
        /// [`load_split`](super::load_split) reads it.
        origin: &'static str,
        /// The directory.
        dir: PathBuf,
        /// The file it lacks, under its `.gz` name (the uncompressed one is looked for too).
        file: &'static str,
    },
    /// Neither XDG_CACHE_HOME nor HOME says where to download to.
    NoCacheDir,
    /// The download directory could not be created.
    CreateDir {
        /// The directory.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// The HTTP request failed (offline, refused, non-200 status, read error).
    Http {
        /// The URL requested.
        url: String,
        /// What went wrong, in words.
        reason: String,
    },
    /// The body ended before Content-Length bytes (`expected` is None when the length is unknown).
    Truncated {
        /// The URL requested.
        url: String,
        /// The file being downloaded.
        file: String,
        /// The Content-Length the server announced, in bytes, if it did.
        expected: Option<u64>,
        /// Bytes received.
        actual: u64,
    },
    /// The downloaded bytes do not have the published MD5 sum.
    Checksum {
        /// The URL requested.
        url: String,
        /// The file downloaded.
        file: String,
        /// The published MD5 sum, in hex.
        expected: String,
        /// The MD5 sum of the bytes received, in hex.
        actual: String,
    },
}

impl fmt::Display for DataError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Io { path, action, source } => {
                write!(f, "{}: {action} failed: {source}", path.display())
            }
            Self::Magic { path, found, expected, kind } => write!(
                f,
                "{}: magic number 0x{found:08x}, expected 0x{expected:08x} ({kind})",
                path.display()
            ),
            Self::Header { path, detail } => write!(f, "{}: {detail}", path.display()),
            Self::Payload { path, actual, expected, layout } => write!(
                f,
                "{}: file holds {actual} payload bytes, header says {layout} = {expected}",
                path.display()
            ),
            Self::Label { path, index, value } => {
                write!(f, "{}: label {value} at index {index}, expected 0..=9", path.display())
            }
            Self::CountMismatch { images, labels, n_images, n_labels } => write!(
                f,
                "images file {} says {n_images} images, labels file {} says {n_labels} labels",
                images.display(),
                labels.display()
            ),
            Self::Missing { origin, dir, file } => write!(
                f,
                "{origin} directory {} has no {file} (nor {}); it must hold the \
                 Fashion-MNIST files (all four for training, the two t10k files for eval)",
                dir.display(),
                file.trim_end_matches(".gz")
            ),
            Self::NoCacheDir => write!(
                f,
                "cannot choose a download directory: neither XDG_CACHE_HOME nor HOME is set; \
                 {HOW_TO_GET_DATA}"
            ),
            Self::CreateDir { path, source } => {
                write!(f, "cannot create download directory {}: {source}; {HOW_TO_GET_DATA}", path.display())
            }
            Self::Http { url, reason } => {
                write!(f, "could not download {url}: {reason}; {HOW_TO_GET_DATA}")
            }
            Self::Truncated { url, file, expected: Some(expected), actual } => write!(
                f,
                "download of {file} from {url} was cut short: got {actual} of {expected} bytes \
                 (nothing was saved; try again, or {HOW_TO_GET_DATA})"
            ),
            Self::Truncated { url, file, expected: None, actual } => write!(
                f,
                "download of {file} from {url} was cut short after {actual} bytes \
                 (nothing was saved; try again, or {HOW_TO_GET_DATA})"
            ),
            Self::Checksum { url, file, expected, actual } => write!(
                f,
                "{file} downloaded from {url} has MD5 {actual}, expected {expected} \
                 (nothing was saved; try again, or {HOW_TO_GET_DATA})"
            ),
        }
    }
}

impl std::error::Error for DataError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Io { source, .. } | Self::CreateDir { source, .. } => Some(source),
            _ => None,
        }
    }
}
