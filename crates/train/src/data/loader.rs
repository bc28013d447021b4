//! Mini-batches prepared on a background thread, so the training step never waits for
//! resizing: the thread stays a few batches ahead through a bounded channel.

use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::Arc;
use std::thread::{self, JoinHandle};

use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::SeedableRng;

use super::{Dataset, Resizer};

/// Batches buffered ahead of the consumer: enough to hide jitter, few enough to bound memory
/// (a batch of 256 images at 224x224 is ~51 MB).
const PREFETCH: usize = 3;

/// One mini-batch: `len` images of 1 x size x size (NCHW, values in [0, 1]) and their classes.
#[derive(Debug, Clone, PartialEq)]
pub struct Batch {
    /// `len * size * size` values: the images one after another, each row-major.
    pub images: Vec<f32>,
    /// The class of each image, in the same order.
    pub labels: Vec<usize>,
    /// Images in the batch (the batch size, or fewer in an epoch's last batch).
    pub len: usize,
}

/// Iterator over one epoch's batches; dropping it early stops the producer thread.
pub struct BatchIter {
    rx: Option<Receiver<Batch>>,
    handle: Option<JoinHandle<()>>,
    remaining: usize,
}

/// Starts producing one epoch of batches of the first `min(len, limit)` samples, each image
/// resized to `resize x resize`, in a seeded random order if `shuffle` is given. The last
/// batch may be smaller (PyTorch's `drop_last=False`). Panics if `batch_size` or `resize` is 0.
pub fn batches(
    dataset: Arc<Dataset>,
    batch_size: usize,
    resize: usize,
    shuffle: Option<u64>,
    limit: Option<usize>,
) -> BatchIter {
    batches_from(dataset, batch_size, resize, shuffle, limit, 0, None)
}

/// Random crops and flips of the training images: the draws' seed and the crops' padding.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Augment {
    /// Seed of the draws (one per epoch).
    pub seed: u64,
    /// Pixels an image may move each way (the zero padding of the random crop).
    pub padding: usize,
}

/// [`batches`] from batch `first` on: the same batches as the whole epoch's from there (a resumed
/// run continues its epoch). Past the last batch, none. With `augment`, each image is shifted
/// and flipped at random first ([`augment_image`]), by draws that depend only on the seed and
/// the image's place in the epoch.
pub fn batches_from(
    dataset: Arc<Dataset>,
    batch_size: usize,
    resize: usize,
    shuffle: Option<u64>,
    limit: Option<usize>,
    first: usize,
    augment: Option<Augment>,
) -> BatchIter {
    assert!(batch_size > 0, "batch_size must be > 0");
    assert!(resize > 0, "resize must be > 0");
    let n = limit.map_or(dataset.len(), |l| l.min(dataset.len()));
    let remaining = n.div_ceil(batch_size).saturating_sub(first);
    let (tx, rx) = sync_channel(PREFETCH);
    let handle = thread::Builder::new()
        .name("batch-loader".into())
        .spawn(move || produce(&dataset, n, batch_size, resize, shuffle, first, augment, &tx))
        .expect("cannot spawn the batch loader thread");
    BatchIter { rx: Some(rx), handle: Some(handle), remaining }
}

/// A per-epoch shuffle seed: SplitMix64's finalizer over base and epoch, so nearby bases and
/// epochs give unrelated seeds.
pub fn epoch_seed(base_seed: u64, epoch: usize) -> u64 {
    let mut z = base_seed ^ (epoch as u64).wrapping_add(1).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[allow(clippy::too_many_arguments)] // the epoch's plan, all from `batches_from`
fn produce(
    ds: &Dataset,
    n: usize,
    batch_size: usize,
    size: usize,
    shuffle: Option<u64>,
    first: usize,
    augment: Option<Augment>,
    tx: &SyncSender<Batch>,
) {
    let mut order: Vec<usize> = (0..n).collect();
    if let Some(seed) = shuffle {
        order.shuffle(&mut StdRng::seed_from_u64(seed));
    }
    let resizer = Resizer::new(ds.rows, ds.cols, size, size);
    let pixels = resizer.output_len();
    let mut shifted = vec![0u8; ds.rows * ds.cols];
    for (b, chunk) in order.chunks(batch_size).enumerate().skip(first) {
        let mut images = vec![0.0f32; chunk.len() * pixels];
        for (j, (dst, &i)) in images.chunks_exact_mut(pixels).zip(chunk).enumerate() {
            match augment {
                Some(aug) => {
                    augment_image(
                        ds.image(i),
                        ds.rows,
                        ds.cols,
                        aug,
                        (b * batch_size + j) as u64,
                        &mut shifted,
                    );
                    resizer.resize_u8_to_f32(&shifted, dst);
                }
                None => resizer.resize_u8_to_f32(ds.image(i), dst),
            }
        }
        let labels = chunk.iter().map(|&i| usize::from(ds.labels[i])).collect();
        // A failed send means the iterator was dropped: stop quietly.
        if tx.send(Batch { images, labels, len: chunk.len() }).is_err() {
            return;
        }
    }
}

/// The crops' padding unless `--crop-padding` says otherwise: torchvision's CIFAR habit, and
/// what runs saved before the padding was stored used.
pub const DEFAULT_CROP_PADDING: usize = 4;

/// Random crop with zero padding and horizontal flip, as torchvision's
/// `RandomCrop(size, padding=p)` + `RandomHorizontalFlip()`: `src` (rows x cols) shifted by up to
/// `aug.padding` pixels each way, flipped left-right half the time, into `dst`. The draws come
/// from `aug.seed` and `position` alone.
pub fn augment_image(src: &[u8], rows: usize, cols: usize, aug: Augment, position: u64, dst: &mut [u8]) {
    let mut z = aug.seed ^ position.wrapping_add(1).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    let mut next = || {
        // SplitMix64.
        z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut x = z;
        x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        x ^ (x >> 31)
    };
    let pad = aug.padding as isize;
    let span = 2 * aug.padding as u64 + 1;
    let dy = (next() % span) as isize - pad;
    let dx = (next() % span) as isize - pad;
    let flip = next() & 1 == 1;
    for r in 0..rows {
        for c in 0..cols {
            let (sr, sc) = (r as isize + dy, c as isize + dx);
            let inside = (0..rows as isize).contains(&sr) && (0..cols as isize).contains(&sc);
            let out_c = if flip { cols - 1 - c } else { c };
            dst[r * cols + out_c] = if inside { src[sr as usize * cols + sc as usize] } else { 0 };
        }
    }
}

impl Iterator for BatchIter {
    type Item = Batch;

    fn next(&mut self) -> Option<Batch> {
        if let Ok(batch) = self.rx.as_ref()?.recv() {
            self.remaining -= 1;
            return Some(batch);
        }
        // The producer hung up. If that was a panic, re-raise it here rather than silently
        // ending the epoch short.
        self.rx = None;
        if let Some(Err(panic)) = self.handle.take().map(JoinHandle::join) {
            std::panic::resume_unwind(panic);
        }
        None
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.remaining, Some(self.remaining))
    }
}

impl ExactSizeIterator for BatchIter {}

impl Drop for BatchIter {
    fn drop(&mut self) {
        // Closing the receiver first makes a blocked send fail, so the join cannot hang.
        self.rx = None;
        if let Some(handle) = self.handle.take() {
            let _ = handle.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Starting at batch k gives the whole epoch's batches from k on, in the same order.
    #[test]
    fn batches_from_continue_the_epoch() {
        let n = 23;
        let ds = Arc::new(Dataset {
            images: (0..n * 4).map(|v| v as u8).collect(),
            labels: (0..n).map(|v| (v % 10) as u8).collect(),
            rows: 2,
            cols: 2,
        });
        let all: Vec<Batch> = batches(ds.clone(), 5, 2, Some(9), None).collect();
        assert_eq!(all.len(), 5);
        for first in 0..=6 {
            let rest: Vec<Batch> = batches_from(ds.clone(), 5, 2, Some(9), None, first, None).collect();
            assert_eq!(rest, all[first.min(5)..], "from batch {first}");
            assert_eq!(
                batches_from(ds.clone(), 5, 2, Some(9), None, first, None).len(),
                5usize.saturating_sub(first)
            );
            // Augmented batches too are the same from any start.
            let aug: Vec<Batch> =
                batches_from(ds.clone(), 5, 2, Some(9), None, 0, Some(Augment { seed: 3, padding: 2 }))
                    .collect();
            let rest: Vec<Batch> =
                batches_from(ds.clone(), 5, 2, Some(9), None, first, Some(Augment { seed: 3, padding: 2 }))
                    .collect();
            assert_eq!(rest, aug[first.min(5)..]);
        }
    }

    /// The move and flip `augment_image` gave `src` (12 x 12, distinct values), checking that
    /// every pixel is the shifted source or padding and that the move is within `padding`.
    fn move_of(src: &[u8], a: &[u8], padding: usize) -> (isize, isize, bool) {
        let (rows, cols) = (12, 12);
        let value = |r: usize, c: usize| src[r * cols + c];
        // Source (sr, sc) lands at (sr - dy, c') with c' = sc - dx, mirrored when flipped; pixels
        // (6, 6) and (6, 7) stay inside for every move of up to 4.
        let at = a.iter().position(|&v| v == value(6, 6)).unwrap();
        let right = a.iter().position(|&v| v == value(6, 7)).unwrap();
        let flipped = right % cols + 1 == at % cols;
        let (r, c) = (at / cols, at % cols);
        let c = if flipped { cols - 1 - c } else { c };
        let (dy, dx) = (6 - r as isize, 6 - c as isize);
        assert!(dy.unsigned_abs() <= padding && dx.unsigned_abs() <= padding, "({dy}, {dx}) past {padding}");
        for rr in 0..rows {
            for cc in 0..cols {
                let oc = if flipped { cols - 1 - cc } else { cc };
                let (sr, sc) = (rr as isize + dy, cc as isize + dx);
                let want = if (0..12).contains(&sr) && (0..12).contains(&sc) {
                    value(sr as usize, sc as usize)
                } else {
                    0
                };
                assert_eq!(a[rr * cols + oc], want);
            }
        }
        (dy, dx, flipped)
    }

    /// Each image moves by (dy, dx) in [-p, p]^2 with zero fill and is mirrored half the time;
    /// the draws depend on the seed and position only, and every move and both flips occur.
    #[test]
    fn augmentation_shifts_and_flips() {
        let src: Vec<u8> = (1..=144).collect();
        for padding in [0, 1, 2, 3, DEFAULT_CROP_PADDING] {
            let aug = Augment { seed: 11, padding };
            let mut seen = std::collections::HashSet::new();
            for position in 0..3000 {
                let mut a = vec![0; 144];
                augment_image(&src, 12, 12, aug, position, &mut a);
                let mut again = vec![0; 144];
                augment_image(&src, 12, 12, aug, position, &mut again);
                assert_eq!(a, again);
                seen.insert(move_of(&src, &a, padding));
            }
            let side = 2 * padding + 1;
            assert_eq!(seen.len(), side * side * 2, "every move, flipped and not, at padding {padding}");
        }
        let differs = (0..50).any(|p| {
            let (mut x, mut y) = (vec![0; 144], vec![0; 144]);
            augment_image(&src, 12, 12, Augment { seed: 11, padding: 4 }, p, &mut x);
            augment_image(&src, 12, 12, Augment { seed: 12, padding: 4 }, p, &mut y);
            x != y
        });
        assert!(differs, "the seed matters");
    }

    /// The draws at the default padding are those of the runs saved before the padding could
    /// change (whose resumes must continue bit for bit): a few fixed positions' moves.
    #[test]
    fn default_padding_keeps_its_draws() {
        let src: Vec<u8> = (1..=144).collect();
        let aug = Augment { seed: 11, padding: DEFAULT_CROP_PADDING };
        let moves: Vec<(isize, isize, bool)> = (0..6)
            .map(|p| {
                let mut a = vec![0; 144];
                augment_image(&src, 12, 12, aug, p, &mut a);
                move_of(&src, &a, 4)
            })
            .collect();
        // From the draws' definition (SplitMix64 from seed ^ (position + 1) * 0x9e37..., moves
        // `% 9 - 4`, flip the low bit), computed apart from this code.
        let golden =
            [(0, 2, false), (3, -4, true), (-2, 1, true), (1, 0, false), (-1, 2, true), (-4, -4, true)];
        assert_eq!(moves, golden);
    }

    #[test]
    fn epoch_seeds_differ() {
        let seeds: Vec<u64> = (0..100).map(|e| epoch_seed(42, e)).collect();
        let mut unique = seeds.clone();
        unique.sort_unstable();
        unique.dedup();
        assert_eq!(unique.len(), seeds.len());
        assert_ne!(epoch_seed(1, 0), epoch_seed(2, 0));
        assert_eq!(epoch_seed(7, 3), epoch_seed(7, 3));
    }
}
