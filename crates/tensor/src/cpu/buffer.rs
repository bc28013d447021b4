//! CPU storage that recycles its memory. Large `Vec`s come from `mmap` and go back to the
//! kernel on drop, so without reuse every training step would pay fresh page faults for every
//! activation; freed buffers wait here, by length, for the next step's identical requests.
//! Buffers are made of 64-byte lines, so every one starts on a cache line.
use std::collections::HashMap;
use std::ops::{Deref, DerefMut};
use std::sync::Mutex;

use crate::{Error, Result};

/// Buffers below this many values come from the allocator directly (its own caches are fast).
pub const MIN_POOLED: usize = 1 << 12;
/// Upper bound on the memory the pool keeps, in values (4 GiB of f32).
pub const MAX_CACHED: usize = 1 << 30;

/// One cache line of f32s: the unit of a buffer's memory, so that every buffer starts on a line.
/// From `malloc`, large buffers sit 16 bytes past one, and every 64-byte vector load or store
/// of the AVX-512 kernels would touch two lines (measured: 2% of a GoogLeNet step).
#[derive(Clone, Copy)]
#[repr(C, align(64))]
struct Line([f32; LINE]);
const LINE: usize = 16;

struct Pool {
    free: HashMap<usize, Vec<Vec<Line>>>,
    cached: usize,
}

static POOL: Mutex<Option<Pool>> = Mutex::new(None);

/// An f32 buffer on the CPU, 64-byte aligned; dereferences to a slice.
#[derive(Default)]
pub struct CpuBuffer {
    lines: Vec<Line>,
    len: usize,
}

impl CpuBuffer {
    /// `len` zeros, reusing a freed buffer of that length when there is one.
    pub fn zeros(len: usize) -> Result<CpuBuffer> {
        let mut b = Self::take(len)?;
        b.fill(0.0);
        Ok(b)
    }
    /// A copy of `data`.
    pub fn from_slice(data: &[f32]) -> Result<CpuBuffer> {
        let mut b = Self::take(data.len())?;
        b.copy_from_slice(data);
        Ok(b)
    }
    /// For outputs that are overwritten entirely: recycled contents when large. Small buffers
    /// (what the tests use) are filled with NaN, so a kernel that leaves any value unwritten
    /// fails its tests instead of passing on lucky zeros.
    pub fn uninit(len: usize) -> Result<CpuBuffer> {
        let mut b = Self::take(len)?;
        if len < MIN_POOLED {
            b.fill(f32::NAN);
        }
        Ok(b)
    }
    /// A buffer of `len` values with unspecified contents (recycled or zeroed). An allocation the
    /// system refuses is an error, not an abort.
    fn take(len: usize) -> Result<CpuBuffer> {
        if len >= MIN_POOLED {
            let mut guard = POOL.lock().expect("pool lock");
            if let Some(pool) = guard.as_mut() {
                if let Some(lines) = pool.free.get_mut(&len).and_then(Vec::pop) {
                    pool.cached -= len;
                    return Ok(CpuBuffer { lines, len });
                }
            }
        }
        let n = len.div_ceil(LINE);
        let mut lines = Vec::new();
        lines
            .try_reserve_exact(n)
            .map_err(|_| Error::OutOfMemory { bytes: n.saturating_mul(64), device: "cpu".into() })?;
        lines.resize(n, Line([0.0; LINE]));
        Ok(CpuBuffer { lines, len })
    }
}

/// Empties the pool, returning its memory to the system; the bytes released.
pub(crate) fn release_pooled() -> usize {
    // Taken out under the lock, dropped after it: freeing gigabytes can take a while.
    let released = POOL.lock().ok().and_then(|mut p| p.take());
    released.map_or(0, |p| 4 * p.cached)
}

/// Bytes the pool keeps for reuse.
pub(crate) fn pooled_bytes() -> usize {
    POOL.lock().ok().and_then(|p| p.as_ref().map(|p| 4 * p.cached)).unwrap_or(0)
}

impl Deref for CpuBuffer {
    type Target = [f32];
    fn deref(&self) -> &[f32] {
        // SAFETY: the lines hold `len.div_ceil(LINE) * LINE >= len` initialised f32s, contiguous
        // (`repr(C)` arrays of f32, so f32-aligned), owned by self for the borrow's lifetime.
        unsafe { std::slice::from_raw_parts(self.lines.as_ptr() as *const f32, self.len) }
    }
}

impl DerefMut for CpuBuffer {
    fn deref_mut(&mut self) -> &mut [f32] {
        // SAFETY: as in `deref`, and the exclusive borrow of self makes the slice unique.
        unsafe { std::slice::from_raw_parts_mut(self.lines.as_mut_ptr() as *mut f32, self.len) }
    }
}

impl PartialEq for CpuBuffer {
    fn eq(&self, other: &Self) -> bool {
        **self == **other
    }
}

impl std::fmt::Debug for CpuBuffer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("CpuBuffer").field(&&**self).finish()
    }
}

impl Drop for CpuBuffer {
    fn drop(&mut self) {
        let len = self.len;
        if len < MIN_POOLED {
            return;
        }
        let Ok(mut guard) = POOL.lock() else { return };
        let pool = guard.get_or_insert_with(|| Pool { free: HashMap::new(), cached: 0 });
        if pool.cached + len <= MAX_CACHED {
            pool.cached += len;
            pool.free.entry(len).or_default().push(std::mem::take(&mut self.lines));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn release_empties_the_pool() {
        // A length no other test uses, so nothing else takes this buffer from the pool meanwhile.
        let len = (1 << 20) + 7;
        drop(CpuBuffer::zeros(len).unwrap());
        assert!(pooled_bytes() >= 4 * len);
        assert!(release_pooled() >= 4 * len);
        let again = CpuBuffer::zeros(len).unwrap();
        assert!(again.iter().all(|&v| v == 0.0));
    }
}
