//! CPU storage that recycles its memory. Large `Vec`s come from `mmap` and go back to the
//! kernel on drop, so without reuse every training step would pay fresh page faults for every
//! activation; freed buffers wait here, by length, for the next step's identical requests.
use std::collections::HashMap;
use std::ops::{Deref, DerefMut};
use std::sync::Mutex;

/// Buffers below this many values come from the allocator directly (its own caches are fast).
const MIN_POOLED: usize = 1 << 12;
/// Upper bound on the memory the pool keeps, in values (4 GiB of f32).
const MAX_CACHED: usize = 1 << 30;

struct Pool {
    free: HashMap<usize, Vec<Vec<f32>>>,
    cached: usize,
}

static POOL: Mutex<Option<Pool>> = Mutex::new(None);

/// An f32 buffer on the CPU; dereferences to a slice.
#[derive(Debug, Default, PartialEq)]
pub struct CpuBuffer(Vec<f32>);

impl CpuBuffer {
    /// `len` zeros, reusing a freed buffer of that length when there is one.
    pub fn zeros(len: usize) -> CpuBuffer {
        let mut b = Self::take(len);
        b.0.fill(0.0);
        b
    }
    /// A copy of `data`.
    pub fn from_slice(data: &[f32]) -> CpuBuffer {
        let mut b = Self::take(data.len());
        b.0.copy_from_slice(data);
        b
    }
    /// For outputs that are overwritten entirely: recycled contents when large. Small buffers
    /// (what the tests use) are filled with NaN, so a kernel that leaves any value unwritten
    /// fails its tests instead of passing on lucky zeros.
    pub fn uninit(len: usize) -> CpuBuffer {
        let mut b = Self::take(len);
        if len < MIN_POOLED {
            b.0.fill(f32::NAN);
        }
        b
    }
    /// A buffer of `len` values with unspecified contents (recycled or zeroed).
    fn take(len: usize) -> CpuBuffer {
        if len >= MIN_POOLED {
            let mut guard = POOL.lock().expect("pool lock");
            if let Some(pool) = guard.as_mut() {
                if let Some(v) = pool.free.get_mut(&len).and_then(Vec::pop) {
                    pool.cached -= len;
                    return CpuBuffer(v);
                }
            }
        }
        CpuBuffer(vec![0.0; len])
    }
    pub fn into_vec(mut self) -> Vec<f32> {
        std::mem::take(&mut self.0)
    }
}

impl From<Vec<f32>> for CpuBuffer {
    fn from(v: Vec<f32>) -> Self {
        CpuBuffer(v)
    }
}

impl Deref for CpuBuffer {
    type Target = [f32];
    fn deref(&self) -> &[f32] {
        &self.0
    }
}

impl DerefMut for CpuBuffer {
    fn deref_mut(&mut self) -> &mut [f32] {
        &mut self.0
    }
}

impl Drop for CpuBuffer {
    fn drop(&mut self) {
        let len = self.0.len();
        if len < MIN_POOLED {
            return;
        }
        let Ok(mut guard) = POOL.lock() else { return };
        let pool = guard.get_or_insert_with(|| Pool { free: HashMap::new(), cached: 0 });
        if pool.cached + len <= MAX_CACHED {
            pool.cached += len;
            pool.free.entry(len).or_default().push(std::mem::take(&mut self.0));
        }
    }
}
