//! The device memory allocator, caching: freed buffers go back to a per-size free list, so a training step that
//! repeats the previous one's allocations reuses them and device memory stays flat.
use cudarc::driver::{CudaSlice, CudaStream, DriverError};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tensor::{Error, Result};

pub(crate) struct Allocator {
    stream: Arc<CudaStream>,
    free: Mutex<HashMap<usize, Vec<CudaSlice<f32>>>>,
    device: String,
}

fn is_out_of_memory(e: &DriverError) -> bool {
    e.0 == cudarc::driver::sys::CUresult::CUDA_ERROR_OUT_OF_MEMORY
}

impl Allocator {
    pub(crate) fn new(stream: Arc<CudaStream>, device: String) -> Arc<Allocator> {
        Arc::new(Allocator { stream, free: Mutex::new(HashMap::new()), device })
    }

    /// A buffer of exactly `len` values (contents undefined).
    pub(crate) fn take(self: &Arc<Self>, len: usize) -> Result<Buffer> {
        let capacity = len.max(1);
        // cudarc multiplies by the element size unchecked: a wrapped byte count would allocate a
        // few bytes for a huge buffer.
        if capacity.checked_mul(4).is_none_or(|b| b > isize::MAX as usize) {
            return Err(Error::OutOfMemory {
                bytes: capacity.saturating_mul(4),
                device: self.device.clone(),
            });
        }
        if let Some(slice) = self.free.lock().expect("allocator lock").get_mut(&capacity).and_then(Vec::pop) {
            return Ok(Buffer { slice: Some(slice), len, allocator: self.clone() });
        }
        // SAFETY: the memory is uninitialised, which its users know: `take` promises no
        // contents (`Backend::uninit`), `zeros` fills it first, and any bits are a valid f32.
        let fresh = |allocator: &Allocator| unsafe { allocator.stream.alloc::<f32>(capacity) };
        let slice = match fresh(self) {
            Ok(s) => s,
            Err(e) if is_out_of_memory(&e) => {
                // Give the cached buffers back to the driver and try once more.
                self.free.lock().expect("allocator lock").clear();
                fresh(self)
                    .map_err(|_| Error::OutOfMemory { bytes: capacity * 4, device: self.device.clone() })?
            }
            Err(e) => return Err(Error::Device(format!("cuMemAlloc of {} bytes failed: {e}", capacity * 4))),
        };
        Ok(Buffer { slice: Some(slice), len, allocator: self.clone() })
    }

    /// Frees every cached buffer; the bytes released.
    pub(crate) fn release(&self) -> usize {
        let freed = std::mem::take(&mut *self.free.lock().expect("allocator lock"));
        freed.iter().map(|(len, v)| len * 4 * v.len()).sum()
    }

    /// Bytes held in free lists (for reports).
    pub(crate) fn cached_bytes(&self) -> usize {
        self.free.lock().expect("allocator lock").iter().map(|(len, v)| len * 4 * v.len()).sum()
    }
}

/// A device buffer that returns to its allocator's free lists when dropped.
pub struct Buffer {
    slice: Option<CudaSlice<f32>>,
    len: usize,
    allocator: Arc<Allocator>,
}

impl Buffer {
    pub fn len(&self) -> usize {
        self.len
    }
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
    /// The device allocation (for benchmarks that call other libraries on it).
    pub fn slice(&self) -> &CudaSlice<f32> {
        self.slice.as_ref().expect("live buffer")
    }
    pub fn slice_mut(&mut self) -> &mut CudaSlice<f32> {
        self.slice.as_mut().expect("live buffer")
    }
}

impl Drop for Buffer {
    fn drop(&mut self) {
        if let Some(slice) = self.slice.take() {
            if let Ok(mut free) = self.allocator.free.lock() {
                free.entry(self.len.max(1)).or_default().push(slice);
            }
        }
    }
}
