//! The engine's one error type, shared by every library crate so that an error raised deep in a
//! kernel reaches the binary unchanged. Messages carry the values involved.
use std::fmt;

/// Every failure the engine reports: its kind, and a message that names the values involved.
/// `Display` prefixes the kind ("shape error: ...").
#[derive(Debug, Clone, PartialEq)]
pub enum Error {
    /// Shapes that do not fit together (the message names both).
    Shape(String),
    /// An argument out of its domain: a label >= classes, a probability outside [0, 1)...
    InvalidArgument(String),
    /// The device failed or is missing.
    Device(String),
    /// A device allocation failed.
    OutOfMemory {
        /// The size of the refused allocation, in bytes.
        bytes: usize,
        /// The device that refused it: "cpu", or a GPU's ordinal and name.
        device: String,
    },
    /// Misuse of the autograd graph (backward twice, backward from a non-scalar...).
    Graph(String),
}

/// `std::result::Result` with the engine's [`Error`].
pub type Result<T> = std::result::Result<T, Error>;

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Shape(m) => write!(f, "shape error: {m}"),
            Error::InvalidArgument(m) => write!(f, "invalid argument: {m}"),
            Error::Device(m) => write!(f, "device error: {m}"),
            Error::OutOfMemory { bytes, device } => write!(
                f,
                "out of memory on {device}: could not allocate {bytes} bytes ({:.1} MiB); try a smaller --batch-size",
                *bytes as f64 / (1024.0 * 1024.0)
            ),
            Error::Graph(m) => write!(f, "autograd error: {m}"),
        }
    }
}

impl std::error::Error for Error {}

/// `bail!(Shape, "...")` returns early with that error variant.
#[macro_export]
macro_rules! bail {
    ($kind:ident, $($arg:tt)*) => {
        return Err($crate::Error::$kind(format!($($arg)*)))
    };
}
