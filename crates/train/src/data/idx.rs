//! Reader for the IDX files Fashion-MNIST ships in (big-endian header, u8 payload),
//! gzip-compressed or raw.

use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};

use byteorder::{BigEndian, ByteOrder};
use flate2::read::MultiGzDecoder;

use super::DataError;

/// IDX magic for a 3-D array of u8 (count x rows x cols): type byte 0x08, 3 dimensions.
pub const IMAGES_MAGIC: u32 = 0x0000_0803;
/// IDX magic for a 1-D array of u8.
pub const LABELS_MAGIC: u32 = 0x0000_0801;
/// Fashion-MNIST has ten classes.
pub const NUM_CLASSES: usize = 10;

/// The canonical (Zalando) file names, in download order.
pub const FILES: [&str; 4] = [
    "train-images-idx3-ubyte.gz",
    "train-labels-idx1-ubyte.gz",
    "t10k-images-idx3-ubyte.gz",
    "t10k-labels-idx1-ubyte.gz",
];

/// One split held in memory: images row-major, `rows * cols` bytes each.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dataset {
    /// Every image's pixels (0 black to 255 white), image after image.
    pub images: Vec<u8>,
    /// Every image's class, 0..[`NUM_CLASSES`] (see [`CLASSES`](crate::predict::CLASSES)).
    pub labels: Vec<u8>,
    /// Height of every image, in pixels.
    pub rows: usize,
    /// Width of every image, in pixels.
    pub cols: usize,
}

impl Dataset {
    /// Number of samples (labelled images).
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// Whether there are no samples.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// The pixels of image `i` (panics if `i >= len()`, like slice indexing).
    pub fn image(&self, i: usize) -> &[u8] {
        let size = self.rows * self.cols;
        &self.images[i * size..(i + 1) * size]
    }

    /// Keeps only the first `n` samples (a no-op if there are fewer).
    pub fn truncate(&mut self, n: usize) {
        self.labels.truncate(n);
        self.images.truncate(self.labels.len() * self.rows * self.cols);
    }

    /// The samples at `indices`, in that order.
    pub fn subset(&self, indices: &[usize]) -> Dataset {
        let mut images = Vec::with_capacity(indices.len() * self.rows * self.cols);
        for &i in indices {
            images.extend_from_slice(self.image(i));
        }
        Dataset {
            images,
            labels: indices.iter().map(|&i| self.labels[i]).collect(),
            rows: self.rows,
            cols: self.cols,
        }
    }

    /// `(rest, held_out)`: `n` samples drawn at random (by `seed`) held out, the rest kept in
    /// their order.
    pub fn split_off_random(&self, n: usize, seed: u64) -> (Dataset, Dataset) {
        use rand::seq::SliceRandom;
        use rand::SeedableRng;
        let mut order: Vec<usize> = (0..self.len()).collect();
        order.shuffle(&mut rand::rngs::StdRng::seed_from_u64(seed));
        let n = n.min(self.len());
        let mut held_out = order[..n].to_vec();
        let mut rest = order[n..].to_vec();
        held_out.sort_unstable();
        rest.sort_unstable();
        (self.subset(&rest), self.subset(&held_out))
    }
}

/// One of Fashion-MNIST's two published parts, each an images file and a labels file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Split {
    /// The 60,000 training images (the `train-*` files).
    Train,
    /// The 10,000 test images (the `t10k-*` files).
    Test,
}

impl Split {
    /// The split's images file, under its `.gz` name (one of [`FILES`]).
    pub fn image_file(self) -> &'static str {
        match self {
            Split::Train => FILES[0],
            Split::Test => FILES[2],
        }
    }

    /// The split's labels file, under its `.gz` name (one of [`FILES`]).
    pub fn label_file(self) -> &'static str {
        match self {
            Split::Train => FILES[1],
            Split::Test => FILES[3],
        }
    }
}

/// Reads an IDX images file: returns (pixels, count, rows, cols).
pub fn read_images(path: &Path) -> Result<(Vec<u8>, usize, usize, usize), DataError> {
    images_from_bytes(read_file(path)?, path)
}

/// Reads an IDX labels file, checking every label is a valid class.
pub fn read_labels(path: &Path) -> Result<Vec<u8>, DataError> {
    labels_from_bytes(read_file(path)?, path)
}

/// [`read_images`] of a file's contents (gzip-compressed or raw); `path` names it in errors.
pub fn images_from_bytes(raw: Vec<u8>, path: &Path) -> Result<(Vec<u8>, usize, usize, usize), DataError> {
    let (dims, pixels) = parse_idx(decompress(raw, path)?, path, IMAGES_MAGIC, "images")?;
    Ok((pixels, dims[0], dims[1], dims[2]))
}

/// [`read_labels`] of a file's contents (gzip-compressed or raw); `path` names it in errors.
pub fn labels_from_bytes(raw: Vec<u8>, path: &Path) -> Result<Vec<u8>, DataError> {
    let (_, labels) = parse_idx(decompress(raw, path)?, path, LABELS_MAGIC, "labels")?;
    if let Some((index, &value)) = labels.iter().enumerate().find(|&(_, &v)| usize::from(v) >= NUM_CLASSES) {
        return Err(DataError::Label { path: path.into(), index, value });
    }
    Ok(labels)
}

/// Loads one split from `dir`, taking `NAME.gz` or, failing that, the uncompressed `NAME`.
pub fn load_split(dir: &Path, split: Split) -> Result<Dataset, DataError> {
    let find =
        |file| find_file(dir, file).ok_or(DataError::Missing { origin: "data", dir: dir.into(), file });
    let (image_path, label_path) = (find(split.image_file())?, find(split.label_file())?);
    let (images, count, rows, cols) = read_images(&image_path)?;
    let labels = read_labels(&label_path)?;
    if count != labels.len() {
        return Err(DataError::CountMismatch {
            images: image_path,
            labels: label_path,
            n_images: count,
            n_labels: labels.len(),
        });
    }
    Ok(Dataset { images, labels, rows, cols })
}

/// `dir/NAME.gz` if it exists, else `dir/NAME` without `.gz` (e.g. a user ran gunzip).
pub(crate) fn find_file(dir: &Path, gz_name: &str) -> Option<PathBuf> {
    [gz_name, gz_name.trim_end_matches(".gz")].iter().map(|name| dir.join(name)).find(|p| p.is_file())
}

/// The largest decompressed file accepted (Fashion-MNIST's largest is 47 MB): a small file that
/// inflates without bound must be an error, not the machine's memory.
pub const MAX_DECOMPRESSED: u64 = 1 << 30;

fn read_file(path: &Path) -> Result<Vec<u8>, DataError> {
    fs::read(path).map_err(|source| DataError::Io { path: path.into(), action: "reading", source })
}

/// The contents, decompressed if they are gzip (by magic bytes: names are unreliable).
fn decompress(raw: Vec<u8>, path: &Path) -> Result<Vec<u8>, DataError> {
    decompress_at_most(raw, path, MAX_DECOMPRESSED)
}

fn decompress_at_most(raw: Vec<u8>, path: &Path, limit: u64) -> Result<Vec<u8>, DataError> {
    if !raw.starts_with(&[0x1f, 0x8b]) {
        return Ok(raw);
    }
    // MultiGzDecoder (not GzDecoder) so bytes after the first gzip member are parsed, not ignored:
    // garbage there becomes an error instead of silently passing.
    let mut out = Vec::new();
    let gzip_error = |source| DataError::Io { path: path.into(), action: "gzip decompression", source };
    MultiGzDecoder::new(raw.as_slice()).take(limit + 1).read_to_end(&mut out).map_err(gzip_error)?;
    if out.len() as u64 > limit {
        return Err(gzip_error(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("decompresses to more than {limit} bytes, more than any IDX file of this data set"),
        )));
    }
    Ok(out)
}

/// Parses an IDX file with the given magic; returns its dimensions and exactly-sized payload.
fn parse_idx(
    mut data: Vec<u8>,
    path: &Path,
    magic: u32,
    kind: &'static str,
) -> Result<(Vec<usize>, Vec<u8>), DataError> {
    let ndims = (magic & 0xff) as usize;
    let header_len = 4 + 4 * ndims;
    let header_error = |detail: String| DataError::Header { path: path.into(), detail };
    if data.len() < 4 {
        return Err(header_error(format!("file is {} bytes long, too short for an IDX header", data.len())));
    }
    let found = BigEndian::read_u32(&data);
    if found != magic {
        return Err(DataError::Magic { path: path.into(), found, expected: magic, kind });
    }
    if data.len() < header_len {
        return Err(header_error(format!(
            "file is {} bytes long, shorter than the {header_len}-byte {kind} header",
            data.len()
        )));
    }
    let dims: Vec<usize> =
        data[4..header_len].chunks_exact(4).map(|c| BigEndian::read_u32(c) as usize).collect();
    // Any image size is accepted (the resizer adapts), but an empty one is useless.
    if let Some((name, _)) = ["rows", "cols"].iter().zip(&dims[1..]).find(|&(_, &d)| d == 0) {
        return Err(header_error(format!("header says 0 {name}, must be > 0")));
    }
    let layout = match dims[..] {
        [count, rows, cols] => format!("{count} {kind} of {rows}x{cols}"),
        _ => format!("{} {kind}", dims[0]),
    };
    // checked: a hostile header must give an error, not an overflow panic.
    let expected = dims
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .ok_or_else(|| header_error(format!("header says {layout}, which overflows")))?;
    let actual = data.len() - header_len;
    if actual != expected {
        return Err(DataError::Payload { path: path.into(), actual, expected, layout });
    }
    data.drain(..header_len);
    Ok((dims, data))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dataset_accessors() {
        let mut ds = Dataset { images: (0..12).collect(), labels: vec![1, 2, 3], rows: 2, cols: 2 };
        assert_eq!(ds.len(), 3);
        assert_eq!(ds.image(1), &[4, 5, 6, 7]);
        ds.truncate(2);
        assert_eq!((ds.len(), ds.images.len()), (2, 8));
        ds.truncate(5);
        assert_eq!(ds.len(), 2);
        ds.truncate(0);
        assert!(ds.is_empty() && ds.images.is_empty());
    }

    /// A small file that inflates past the limit is an error, read no further than the limit.
    #[test]
    fn decompression_is_bounded() {
        use std::io::Write;
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        gz.write_all(&vec![0u8; 1 << 20]).unwrap();
        let bomb = gz.finish().unwrap();
        assert!(bomb.len() < 2 << 10);
        let e = decompress_at_most(bomb.clone(), Path::new("x.gz"), 1 << 16).unwrap_err().to_string();
        assert!(e.contains("x.gz") && e.contains("more than 65536 bytes"), "{e}");
        assert_eq!(decompress_at_most(bomb, Path::new("x.gz"), 1 << 20).unwrap().len(), 1 << 20);
    }

    #[test]
    fn a_random_split_partitions_the_samples() {
        let ds = Dataset { images: (0..40).collect(), labels: (0..10).collect(), rows: 2, cols: 2 };
        let (rest, val) = ds.split_off_random(3, 5);
        assert_eq!((rest.len(), val.len()), (7, 3));
        let mut all: Vec<u8> = rest.labels.iter().chain(&val.labels).copied().collect();
        all.sort_unstable();
        assert_eq!(all, (0..10).collect::<Vec<u8>>());
        for part in [&rest, &val] {
            for (k, &l) in part.labels.iter().enumerate() {
                assert_eq!(part.image(k), ds.image(l as usize), "images travel with their labels");
            }
        }
        assert_eq!(ds.split_off_random(3, 5), (rest, val.clone()));
        assert_ne!(ds.split_off_random(3, 6).1, val, "the seed chooses");
    }

    #[test]
    fn split_names() {
        assert_eq!(Split::Test.image_file(), "t10k-images-idx3-ubyte.gz");
        assert_eq!(Split::Train.label_file(), "train-labels-idx1-ubyte.gz");
    }
}
