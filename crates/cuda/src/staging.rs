//! Host memory the GPU copies from and to without stopping anything: uploads through page-locked
//! buffers on a copy stream of their own, so a batch travels while the previous step computes;
//! reads into page-locked buffers that the host collects later.
//!
//! From ordinary (pageable) memory the driver must stage a copy through its own page-locked
//! buffers, and for a batch larger than those it waits for the stream to reach the copy: the host
//! stops queueing work and the GPU then idles while the next step is queued. A read into pageable
//! memory waits for the whole queue.
//!
//! Ordering. Kernels run on the backend's one stream (`compute`). An upload of `n` values:
//! 1. the host waits for its slot's previous copy out of the slot's page-locked buffer
//!    (`copied`), then writes the values there;
//! 2. the copy stream waits for `compute` to have taken the slot's previous values out of the
//!    slot's device buffer (`drained`), then copies host to device (DMA, beside the kernels);
//! 3. `compute` waits for that copy (`copied`), copies the slot's device buffer into a buffer of
//!    the allocator (device to device, microseconds) and records `drained`.
//!
//! The allocator's buffers are thus only ever touched on `compute`, in stream order, as
//! everywhere else in the backend; the copy stream touches only the slots. Two slots let one
//! upload be in flight while the next is written.
use crate::allocator::{Allocator, Buffer};
use cudarc::driver::sys::{CUevent_flags, CU_MEMHOSTALLOC_WRITECOMBINED};
use cudarc::driver::{CudaContext, CudaEvent, CudaSlice, CudaStream, DriverError, PinnedHostSlice};
use std::sync::{Arc, Mutex};
use tensor::{Error, Result};

/// Uploads of fewer values go straight from the caller's memory: the driver stages small copies
/// without waiting for the stream, and the two extra copies would cost more than they save.
pub const STAGED_UPLOAD_MIN: usize = 1 << 16;

/// Page-locked buffers kept for reads, so that a training step does not allocate any.
const READ_BUFFERS_KEPT: usize = 8;

fn device_error(what: &str, e: DriverError) -> Error {
    Error::Device(format!("{what}: {e} (an earlier kernel may have faulted; CONVNET_SYNC=1 names it)"))
}

fn event(ctx: &Arc<CudaContext>) -> Result<CudaEvent> {
    ctx.new_event(Some(CUevent_flags::CU_EVENT_DISABLE_TIMING)).map_err(|e| device_error("cuEventCreate", e))
}

struct Slot {
    /// Write-combined: the host only writes it, the DMA engine only reads it.
    host: Option<PinnedHostSlice<f32>>,
    device: Option<CudaSlice<f32>>,
    /// Recorded on the copy stream after the copy out of `host` into `device`.
    copied: CudaEvent,
    /// Recorded on `compute` after the copy out of `device`.
    drained: CudaEvent,
}

struct UploadState {
    slots: [Slot; 2],
    next: usize,
}

pub(crate) struct Staging {
    ctx: Arc<CudaContext>,
    compute: Arc<CudaStream>,
    copies: Arc<CudaStream>,
    uploads: Mutex<UploadState>,
    reads: Arc<Mutex<Vec<PinnedHostSlice<f32>>>>,
}

impl Staging {
    pub(crate) fn new(ctx: &Arc<CudaContext>, compute: &Arc<CudaStream>) -> Result<Staging> {
        // A non-blocking stream: the legacy default stream, which `compute` is, does not
        // serialise with it, so its copies run beside the kernels.
        let copies = ctx.new_stream().map_err(|e| device_error("creating the copy stream", e))?;
        let slot = || -> Result<Slot> {
            Ok(Slot { host: None, device: None, copied: event(ctx)?, drained: event(ctx)? })
        };
        Ok(Staging {
            ctx: ctx.clone(),
            compute: compute.clone(),
            copies,
            uploads: Mutex::new(UploadState { slots: [slot()?, slot()?], next: 0 }),
            reads: Arc::new(Mutex::new(Vec::new())),
        })
    }

    /// `data` in a fresh buffer of `allocator`, ready for every kernel queued after this call.
    pub(crate) fn upload(&self, allocator: &Arc<Allocator>, data: &[f32]) -> Result<Buffer> {
        let n = data.len();
        let fail = |what: &'static str| {
            move |e: DriverError| device_error(&format!("staged upload of {n} values: {what}"), e)
        };
        let mut state = self.uploads.lock().expect("upload lock");
        let index = state.next;
        state.next = 1 - index;
        let slot = &mut state.slots[index];

        // 1. The page-locked buffer is free once this slot's previous copy has run (an event
        //    never recorded counts as complete).
        slot.copied.synchronize().map_err(fail("waiting for the previous copy"))?;
        if slot.host.as_ref().is_none_or(|h| h.len() < n) {
            slot.host = None; // free the old one first: page-locked memory is scarce
                              // SAFETY: the buffer's contents are undefined until the copy below writes all `n`
                              // values that are ever read from it.
            let host = unsafe { self.ctx.alloc_pinned_with_flags::<f32>(n, CU_MEMHOSTALLOC_WRITECOMBINED) };
            slot.host = Some(host.map_err(fail("cuMemHostAlloc"))?);
        }
        let host = slot.host.as_mut().expect("allocated above");
        // No copy into this buffer is in flight (waited for above), so the host may write it.
        host.as_mut_slice().map_err(fail("host buffer"))?[..n].copy_from_slice(data);

        // 2. Host to device on the copy stream, once `compute` has drained the device buffer.
        self.copies.wait(&slot.drained).map_err(fail("cuStreamWaitEvent"))?;
        if slot.device.as_ref().is_none_or(|d| d.len() < n) {
            // The old buffer is freed on the copy stream, after the wait above: `compute` is done
            // with it by then.
            slot.device = None;
            // SAFETY: contents undefined until the copy below writes the `n` values read.
            let device = unsafe { self.copies.alloc::<f32>(n) };
            slot.device = Some(device.map_err(fail("cuMemAlloc"))?);
        }
        let device = slot.device.as_mut().expect("allocated above");
        let source = &host.as_slice().map_err(fail("host buffer"))?[..n];
        self.copies.memcpy_htod(source, &mut device.slice_mut(..n)).map_err(fail("cuMemcpyHtoDAsync"))?;
        slot.copied.record(&self.copies).map_err(fail("cuEventRecord"))?;

        // 3. Into an allocator buffer on `compute`, after the copy.
        self.compute.wait(&slot.copied).map_err(fail("cuStreamWaitEvent"))?;
        let mut out = allocator.take(n)?;
        self.compute.memcpy_dtod(&device.slice(..n), out.slice_mut()).map_err(fail("cuMemcpyDtoDAsync"))?;
        slot.drained.record(&self.compute).map_err(fail("cuEventRecord"))?;
        Ok(out)
    }

    /// Starts copying `src` into page-locked memory behind the kernels queued so far.
    pub(crate) fn start_read(&self, src: &Buffer) -> Result<PendingRead> {
        let n = src.len();
        let fail = |what: &'static str| {
            move |e: DriverError| device_error(&format!("read of {n} values: {what}"), e)
        };
        let kept = {
            let mut reads = self.reads.lock().expect("read buffers lock");
            let fitting = reads.iter().enumerate().filter(|(_, b)| b.len() >= n);
            fitting.min_by_key(|(_, b)| b.len()).map(|(i, _)| i).map(|i| reads.swap_remove(i))
        };
        let mut host = match kept {
            Some(b) => b,
            // Cached (not write-combined): the host reads it.
            // SAFETY: contents undefined until the copy below writes the `n` values read.
            None => unsafe { self.ctx.alloc_pinned_with_flags::<f32>(n.max(256), 0) }
                .map_err(fail("cuMemHostAlloc"))?,
        };
        let done = event(&self.ctx)?;
        if n > 0 {
            // A kept buffer's last copy was waited for before it was returned (`PendingRead`).
            let dst = &mut host.as_mut_slice().map_err(fail("host buffer"))?[..n];
            self.compute.memcpy_dtoh(src.slice(), dst).map_err(fail("cuMemcpyDtoHAsync"))?;
            done.record(&self.compute).map_err(fail("cuEventRecord"))?;
        }
        Ok(PendingRead { host: Some(host), len: n, done, kept: self.reads.clone() })
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        // The slots' page-locked buffers are freed next: no copy may still be reading them.
        if let Ok(state) = self.uploads.lock() {
            for slot in &state.slots {
                let _ = slot.copied.synchronize();
            }
        }
    }
}

/// A read in flight (`Backend::Reading` of the CUDA backend).
pub struct PendingRead {
    host: Option<PinnedHostSlice<f32>>,
    len: usize,
    done: CudaEvent,
    kept: Arc<Mutex<Vec<PinnedHostSlice<f32>>>>,
}

impl PendingRead {
    /// Waits for the copy and returns the values.
    pub(crate) fn finish(self) -> Result<Vec<f32>> {
        let n = self.len;
        self.done.synchronize().map_err(|e| device_error(&format!("read of {n} values"), e))?;
        let host = self.host.as_ref().expect("present until dropped");
        Ok(host.as_slice().map_err(|e| device_error("host buffer", e))?[..n].to_vec())
    }
}

impl Drop for PendingRead {
    fn drop(&mut self) {
        // The DMA engine may still be writing the buffer: wait before it is reused or freed. If
        // the wait fails (a faulted context), leak the buffer rather than free memory in use.
        let Some(host) = self.host.take() else { return };
        if self.done.synchronize().is_err() {
            std::mem::forget(host);
            return;
        }
        if let Ok(mut kept) = self.kept.lock() {
            if kept.len() < READ_BUFFERS_KEPT {
                kept.push(host);
            }
        }
    }
}
