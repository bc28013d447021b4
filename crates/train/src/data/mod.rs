//! Fashion-MNIST: locating or downloading the files, reading them, and batching them.

mod error;
mod fetch;
mod idx;
mod loader;
mod resize;

pub use error::{DataError, HOW_TO_GET_DATA};
pub use fetch::{
    cache_dir, fetch_into, files_of, locate, search, Location, BASE_URL, DEBIAN_DIR, ENV_VAR, MD5_SUMS,
};
pub use idx::{
    images_from_bytes, labels_from_bytes, load_split, read_images, read_labels, Dataset, Split, FILES,
    IMAGES_MAGIC, LABELS_MAGIC, MAX_DECOMPRESSED, NUM_CLASSES,
};
pub use loader::{
    augment_image, batches, batches_from, epoch_seed, Augment, Batch, BatchIter, DEFAULT_CROP_PADDING,
};
pub use resize::Resizer;
