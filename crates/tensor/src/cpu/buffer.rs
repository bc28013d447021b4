//! CPU storage that recycles its memory. Large `Vec`s come from `mmap` and go back to the
//! kernel on drop, so without reuse every training step would pay fresh page faults for every
//! activation. Buffers of [`MIN_POOLED`] values or more are blocks of a few large segments
//! instead, handed out by best fit and coalesced when freed ([`crate::arena`]): the next step's
//! requests reuse the memory whatever their sizes, so the process holds about what its buffers
//! need at their peak, not the sum of every size it ever asked for.
//!
//! Segments are [`SEGMENT_LINES`] of zeroed memory (halved until the system gives it), which the
//! system commits page by page as blocks first write them: what the process holds is how far
//! blocks have reached into each segment, [`Arena::touched_units`]. A segment goes back to the
//! system when it is entirely free and the backend is asked to release its cache.
//! Buffers are made of 64-byte lines, so every one starts on a cache line.
use std::alloc::Layout;
use std::collections::HashMap;
use std::ops::{Deref, DerefMut};
use std::ptr::NonNull;
use std::sync::Mutex;

use crate::arena::{Arena, Place};
use crate::{Error, Result};

/// Buffers below this many values come from the allocator directly (its own caches are fast).
pub const MIN_POOLED: usize = 1 << 12;
/// f32s in a line, the unit of a buffer's memory.
pub const LINE: usize = 16;
/// Blocks are whole multiples of this many lines (16 KiB), so that freed neighbours merge into
/// useful sizes instead of slivers.
pub const GRAIN_LINES: usize = 256;
/// A new segment's size in lines (4 GiB of address space, committed only where written), or the
/// request's when larger.
pub const SEGMENT_LINES: usize = 1 << 26;

/// One cache line of f32s: the unit of a buffer's memory, so that every buffer starts on a line.
/// From `malloc`, large buffers sit 16 bytes past one, and every 64-byte vector load or store
/// of the AVX-512 kernels would touch two lines (measured: 2% of a GoogLeNet step).
#[derive(Clone, Copy)]
#[repr(C, align(64))]
struct Line([f32; LINE]);

/// The arena units (lines, rounded up to the grain) a pooled buffer of `len` values takes.
pub fn pool_units(len: usize) -> usize {
    len.div_ceil(LINE).div_ceil(GRAIN_LINES) * GRAIN_LINES
}

/// The size, in lines, of the segment to ask for when no free block holds `units`.
pub fn pool_segment_units(units: usize) -> usize {
    units.max(SEGMENT_LINES)
}

/// Zeroed memory from the system, owned by the pool.
struct Segment {
    /// The first whole line of the allocation.
    ptr: NonNull<Line>,
    /// What the allocation was made with and where it starts, to free it.
    base: NonNull<u8>,
    layout: Layout,
}

// SAFETY: a segment is plain memory owned by the pool; the blocks handed out of it are accessed
// only through the `CpuBuffer` that owns each (see `CpuBuffer`'s `Send`).
unsafe impl Send for Segment {}

impl Segment {
    /// `lines` zeroed lines, or `None` when the system refuses. The allocation asks for 8-byte
    /// alignment and one line more than it needs, and starts at its first whole line: the
    /// system allocator turns a zeroed request of that alignment into `calloc`, which leaves a
    /// large allocation's pages to be committed as they are first written, where a 64-byte
    /// aligned one would be written with zeros in full (4 GiB resident at once).
    fn new(lines: usize) -> Option<Segment> {
        let bytes = lines.checked_add(1)?.checked_mul(64)?;
        let layout = Layout::from_size_align(bytes, 8).ok()?;
        // SAFETY: the layout has a non-zero size (at least one line).
        let base = NonNull::new(unsafe { std::alloc::alloc_zeroed(layout) })?;
        let skip = base.as_ptr().align_offset(64);
        // SAFETY: `skip < 64`, so the aligned start and `lines` lines after it lie within the
        // `lines + 1` lines allocated.
        let ptr = unsafe { NonNull::new_unchecked(base.as_ptr().add(skip) as *mut Line) };
        Some(Segment { ptr, base, layout })
    }
}

impl Drop for Segment {
    fn drop(&mut self) {
        // SAFETY: `base` came from `alloc_zeroed` with this layout and is freed once, here; the
        // pool drops a segment only when the arena says no block of it is handed out.
        unsafe { std::alloc::dealloc(self.base.as_ptr(), self.layout) }
    }
}

#[derive(Default)]
struct Pool {
    arena: Arena,
    segments: HashMap<usize, Segment>,
}

static POOL: Mutex<Option<Pool>> = Mutex::new(None);

impl Pool {
    /// A block of `units` lines: a free one, or the start of a new segment.
    fn take(&mut self, units: usize) -> Result<(NonNull<Line>, Place)> {
        let place = match self.arena.take(units) {
            Some(place) => place,
            None => {
                // Half the size until the system agrees (a 32-bit target, a tight `ulimit -v`).
                let mut lines = pool_segment_units(units);
                let segment = loop {
                    if let Some(s) = Segment::new(lines) {
                        break s;
                    }
                    if lines == units {
                        return Err(Error::OutOfMemory {
                            bytes: units.saturating_mul(64),
                            device: "cpu".into(),
                        });
                    }
                    lines = (lines / 2).max(units);
                };
                let place = self.arena.add_segment(lines, units);
                self.segments.insert(place.segment, segment);
                place
            }
        };
        let segment = &self.segments[&place.segment];
        // SAFETY: the arena hands out blocks inside the segment's size, the `lines` it was
        // registered with (`add_segment` above), so `place.offset + units <= lines` and the
        // pointer stays inside the segment's allocation.
        let ptr = unsafe { NonNull::new_unchecked(segment.ptr.as_ptr().add(place.offset)) };
        Ok((ptr, place))
    }

    /// Forgets the segments no block uses, returning them (to be dropped outside the lock) and
    /// the bytes of them that were written.
    fn release(&mut self) -> (Vec<Segment>, usize) {
        let before = self.arena.touched_units();
        let ids = self.arena.release_free_segments();
        let released = ids.iter().filter_map(|id| self.segments.remove(id)).collect();
        (released, 64 * (before - self.arena.touched_units()))
    }

    /// Written bytes of the segments that no block uses.
    fn idle_bytes(&self) -> usize {
        let handed_out = self.arena.segment_units() - self.arena.free_units();
        64 * self.arena.touched_units().saturating_sub(handed_out)
    }
}

/// An f32 buffer on the CPU, 64-byte aligned; dereferences to a slice.
#[derive(Default)]
pub struct CpuBuffer {
    memory: Memory,
    len: usize,
}

enum Memory {
    /// A small buffer's own allocation.
    Own(Vec<Line>),
    /// A block of the pool, at `ptr`, at least `len` values long.
    Pooled { ptr: NonNull<Line>, place: Place },
}

impl Default for Memory {
    fn default() -> Memory {
        Memory::Own(Vec::new())
    }
}

// SAFETY: a pooled block belongs to exactly one buffer until the buffer's drop gives it back (the
// arena never hands out a block twice), so the buffer owns its values as a `Vec` does: sending
// it moves that ownership, and shared references only read.
unsafe impl Send for CpuBuffer {}
// SAFETY: as for `Send`; `&CpuBuffer` gives only `&[f32]`.
unsafe impl Sync for CpuBuffer {}

impl CpuBuffer {
    /// `len` zeros, reusing freed memory when there is some.
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
            let mut guard = POOL
                .lock()
                .map_err(|_| Error::InvalidArgument("the CPU buffer pool's lock is poisoned".into()))?;
            let (ptr, place) = guard.get_or_insert_with(Pool::default).take(pool_units(len))?;
            return Ok(CpuBuffer { memory: Memory::Pooled { ptr, place }, len });
        }
        let n = len.div_ceil(LINE);
        let mut lines = Vec::new();
        lines
            .try_reserve_exact(n)
            .map_err(|_| Error::OutOfMemory { bytes: n.saturating_mul(64), device: "cpu".into() })?;
        lines.resize(n, Line([0.0; LINE]));
        Ok(CpuBuffer { memory: Memory::Own(lines), len })
    }
    fn lines_ptr(&self) -> *const Line {
        match &self.memory {
            Memory::Own(lines) => lines.as_ptr(),
            Memory::Pooled { ptr, .. } => ptr.as_ptr(),
        }
    }
    fn lines_mut_ptr(&mut self) -> *mut Line {
        match &mut self.memory {
            Memory::Own(lines) => lines.as_mut_ptr(),
            Memory::Pooled { ptr, .. } => ptr.as_ptr(),
        }
    }
}

/// Gives the system back every segment no buffer uses; the bytes the process held in them.
pub(crate) fn release_pooled() -> usize {
    // Taken out under the lock, dropped after it: freeing gigabytes can take a while.
    let (released, bytes) = match POOL.lock() {
        Ok(mut guard) => guard.as_mut().map(Pool::release).unwrap_or_default(),
        Err(_) => return 0,
    };
    drop(released);
    bytes
}

/// Bytes the pool holds that no buffer uses: written memory of its segments, free for reuse.
pub(crate) fn pooled_bytes() -> usize {
    POOL.lock().ok().and_then(|p| p.as_ref().map(Pool::idle_bytes)).unwrap_or(0)
}

impl Deref for CpuBuffer {
    type Target = [f32];
    fn deref(&self) -> &[f32] {
        // SAFETY: the lines (a small buffer's own `len.div_ceil(LINE)`, or a pooled block of
        // `pool_units(len)`, zeroed when its segment was allocated) hold at least `len`
        // initialised f32s, contiguous (`repr(C)` arrays of f32, so f32-aligned), owned by self
        // alone for the borrow's lifetime.
        unsafe { std::slice::from_raw_parts(self.lines_ptr() as *const f32, self.len) }
    }
}

impl DerefMut for CpuBuffer {
    fn deref_mut(&mut self) -> &mut [f32] {
        // SAFETY: as in `deref`, and the exclusive borrow of self makes the slice unique.
        unsafe { std::slice::from_raw_parts_mut(self.lines_mut_ptr() as *mut f32, self.len) }
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
        if let Memory::Pooled { place, .. } = self.memory {
            // A poisoned lock (a panic elsewhere) leaks the block rather than panicking in drop.
            if let Ok(mut guard) = POOL.lock() {
                if let Some(pool) = guard.as_mut() {
                    pool.arena.give_back(place);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A pool of its own (the process-wide one is shared with every other test): freed memory
    /// serves a request of another size, and a segment no block uses goes back to the system.
    #[test]
    fn reuses_across_sizes_and_releases() {
        let mut pool = Pool::default();
        let (a, pa) = pool.take(pool_units(3 * MIN_POOLED)).unwrap();
        // SAFETY: the block holds pool_units(3 * MIN_POOLED) * LINE >= 3 * MIN_POOLED values.
        let values = unsafe { std::slice::from_raw_parts_mut(a.as_ptr() as *mut f32, 3 * MIN_POOLED) };
        assert!(values.iter().all(|&v| v == 0.0), "a new segment is zeroed");
        values.fill(1.5);
        pool.arena.give_back(pa);
        assert_eq!(pool.idle_bytes(), 12 * MIN_POOLED);
        // Shorter, of another length: the same memory.
        let (b, pb) = pool.take(pool_units(2 * MIN_POOLED + 5)).unwrap();
        assert_eq!(b, a);
        assert_eq!(pool.segments.len(), 1);
        assert_eq!(pool.release().1, 0, "a block is in use");
        pool.arena.give_back(pb);
        let (released, bytes) = pool.release();
        assert_eq!((released.len(), bytes), (1, 12 * MIN_POOLED));
        assert!(pool.segments.is_empty());
        assert_eq!(pool.idle_bytes(), 0);
    }

    /// Resident memory of this process, in bytes (Linux).
    fn resident() -> Option<usize> {
        let status = std::fs::read_to_string("/proc/self/status").ok()?;
        let kib = status.lines().find_map(|l| l.strip_prefix("VmRSS:"))?.trim().strip_suffix("kB")?;
        kib.trim().parse::<usize>().ok().map(|k| k * 1024)
    }

    /// A segment's 4 GiB are address space: only what blocks write becomes resident.
    #[test]
    fn segments_are_committed_as_written() {
        let before = resident();
        let mut pool = Pool::default();
        let (_, place) = pool.take(pool_units(MIN_POOLED)).unwrap();
        if let (Some(before), Some(after)) = (before, resident()) {
            // Other tests run beside this one; a segment written in full would add gigabytes.
            assert!(after < before + (512 << 20), "resident {before} -> {after} bytes");
        }
        pool.arena.give_back(place);
    }

    #[test]
    fn buffers_are_aligned_and_sized() {
        for len in [1, 17, MIN_POOLED - 1, MIN_POOLED, 3 * MIN_POOLED + 7] {
            let mut b = CpuBuffer::zeros(len).unwrap();
            assert_eq!(b.len(), len);
            assert_eq!(b.as_ptr() as usize % 64, 0, "len {len}");
            assert!(b.iter().all(|&v| v == 0.0));
            b[len - 1] = 2.0;
            let c = CpuBuffer::from_slice(&b).unwrap();
            assert_eq!(c, b);
        }
    }
}
