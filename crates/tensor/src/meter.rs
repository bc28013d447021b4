//! A backend that computes nothing and counts memory: every buffer is a length, every kernel a
//! no-op. Running a training step on it gives the bytes the step's buffers hold at their peak,
//! at any batch size and in microseconds, with the algorithm choices (`conv_plan`) of the
//! backend it stands in for, so that a run can be refused before it allocates what the machine
//! does not have.
use crate::arena::{Arena, Place};
use crate::cpu::POOL_LINE as LINE;
use crate::{AdamStep, Backend, ConvGeometry, ConvPlan, Error, Gemm, PoolGeometry, Result, SgdStep};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

#[derive(Default)]
struct Counter {
    live: AtomicUsize,
    peak: AtomicUsize,
    /// A caching allocator's free lists, when the metered backend has one.
    pool: Option<Mutex<PoolModel>>,
}

/// The CPU buffer pool's books (`tensor::cpu::CpuBuffer`): the same arena, making the same
/// decisions on the same lengths, without the memory.
struct PoolModel {
    arena: Arena,
    /// Bytes of the live buffers that came from the pool (counted by the segments instead).
    pooled_live: usize,
}

impl Counter {
    /// Bytes the process holds: live buffers and the pool's.
    fn held(&self, live: usize) -> usize {
        match &self.pool {
            Some(p) => {
                let p = p.lock().expect("meter lock");
                live - p.pooled_live + 4 * LINE * p.arena.touched_units()
            }
            None => live,
        }
    }
}

/// Counts the buffers of the backend `B` it plans like.
#[derive(Clone)]
pub struct Meter<B: Backend> {
    plans: B,
    counter: Arc<Counter>,
}

/// A buffer of the meter: its length, counted while it lives.
pub struct Metered {
    len: usize,
    place: Option<Place>,
    counter: Arc<Counter>,
}

impl Drop for Metered {
    fn drop(&mut self) {
        let bytes = 4 * self.len;
        self.counter.live.fetch_sub(bytes, Ordering::Relaxed);
        if let (Some(pool), Some(place)) = (&self.counter.pool, self.place) {
            let mut p = pool.lock().expect("meter lock");
            p.arena.give_back(place);
            p.pooled_live -= bytes;
        }
    }
}

impl<B: Backend> Meter<B> {
    /// A meter that plans convolutions as `backend` does and counts only live buffers (a
    /// backend whose cache gives memory back under pressure, as the CUDA allocator does).
    pub fn new(backend: &B) -> Meter<B> {
        Meter { plans: backend.clone(), counter: Arc::new(Counter::default()) }
    }
    /// A meter that counts what the CPU backend's buffer pool holds (`cpu::buffer`) instead of
    /// the live buffers of 4096 values or more: the written part of its segments, free blocks
    /// included.
    pub fn with_cpu_pool(backend: &B) -> Meter<B> {
        let pool = PoolModel { arena: Arena::new(), pooled_live: 0 };
        Meter {
            plans: backend.clone(),
            counter: Arc::new(Counter { pool: Some(Mutex::new(pool)), ..Counter::default() }),
        }
    }
    /// Bytes of the buffers alive now.
    pub fn live_bytes(&self) -> usize {
        self.counter.live.load(Ordering::Relaxed)
    }
    /// The most bytes held at once (live buffers, and the pool's with [`Meter::with_cpu_pool`])
    /// since the meter was made or [`Meter::reset_peak`].
    pub fn peak_bytes(&self) -> usize {
        self.counter.peak.load(Ordering::Relaxed)
    }
    /// Starts a new peak from the bytes held now.
    pub fn reset_peak(&self) {
        self.counter.peak.store(self.counter.held(self.live_bytes()), Ordering::Relaxed);
    }
    fn take(&self, len: usize) -> Result<Metered> {
        let bytes = len
            .checked_mul(4)
            .ok_or_else(|| Error::InvalidArgument(format!("a buffer of {len} values overflows")))?;
        let mut place = None;
        if let Some(pool) = &self.counter.pool {
            if len >= crate::cpu::POOL_MIN_LEN {
                let mut p = pool.lock().expect("meter lock");
                let units = crate::cpu::pool_units(len);
                p.pooled_live += bytes;
                // As `CpuBuffer::take`, with every segment granted at its full size.
                place = Some(match p.arena.take(units) {
                    Some(place) => place,
                    None => p.arena.add_segment(crate::cpu::pool_segment_units(units), units),
                });
            }
        }
        let live = self.counter.live.fetch_add(bytes, Ordering::Relaxed) + bytes;
        self.counter.peak.fetch_max(self.counter.held(live), Ordering::Relaxed);
        Ok(Metered { len, place, counter: self.counter.clone() })
    }
}

type S = Metered;

impl<B: Backend> Backend for Meter<B> {
    type Storage = Metered;
    type Reading = usize;

    fn name(&self) -> String {
        format!("meter of {}", self.plans.name())
    }
    fn zeros(&self, len: usize) -> Result<S> {
        self.take(len)
    }
    fn from_slice(&self, data: &[f32]) -> Result<S> {
        self.take(data.len())
    }
    /// Zeros: nothing was computed.
    fn to_vec(&self, src: &S) -> Result<Vec<f32>> {
        Ok(vec![0.0; src.len])
    }
    fn start_read(&self, src: &S) -> Result<usize> {
        Ok(src.len)
    }
    fn finish_read(&self, len: usize) -> Result<Vec<f32>> {
        Ok(vec![0.0; len])
    }
    fn storage_len(&self, s: &S) -> usize {
        s.len
    }
    fn copy(&self, src: &S) -> Result<S> {
        self.take(src.len)
    }
    fn memory_available(&self) -> Option<usize> {
        self.plans.memory_available()
    }
    fn release_cached(&self) -> usize {
        let Some(pool) = &self.counter.pool else { return 0 };
        let mut p = pool.lock().expect("meter lock");
        let before = p.arena.touched_units();
        p.arena.release_free_segments();
        4 * LINE * (before - p.arena.touched_units())
    }
    fn fill(&self, _: &mut S, _: f32) -> Result<()> {
        Ok(())
    }
    fn gemm(&self, _: &Gemm, _: &S, _: &S, _: &mut S) -> Result<()> {
        Ok(())
    }
    fn conv_plan(&self, geo: &ConvGeometry) -> ConvPlan {
        self.plans.conv_plan(geo)
    }
    fn im2col(&self, _: &S, _: &ConvGeometry, _: usize, _: usize, _: &mut S) -> Result<()> {
        Ok(())
    }
    fn col2im(&self, _: &S, _: &ConvGeometry, _: usize, _: usize, _: &mut S) -> Result<()> {
        Ok(())
    }
    // The convolution products as the CUDA backend's implicit ones, which only a plan asks for
    // (`ConvPlan::implicit`): no column matrices; the input gradient transposes the weights
    // into a scratch buffer.
    fn conv_forward(
        &self,
        _: &S,
        _: &S,
        _: &ConvGeometry,
        _: usize,
        _: usize,
        _: &mut S,
        _: &crate::Epilogue<'_, S>,
    ) -> Result<()> {
        Ok(())
    }
    fn conv_weight_grad(
        &self,
        _: &S,
        _: &S,
        _: &ConvGeometry,
        _: usize,
        _: usize,
        _: f32,
        _: &mut S,
    ) -> Result<()> {
        Ok(())
    }
    fn conv_input_grad(&self, w: &S, _: &S, _: &ConvGeometry, _: usize, _: usize, _: &mut S) -> Result<()> {
        self.take(w.len).map(drop)
    }
    fn transpose_blocks(
        &self,
        _: &S,
        _: usize,
        _: usize,
        _: usize,
        _: usize,
        _: &mut S,
        _: usize,
    ) -> Result<()> {
        Ok(())
    }
    fn winograd_tiles(
        &self,
        _: &S,
        _: &ConvGeometry,
        _: usize,
        _: usize,
        _: &[f32],
        _: &mut S,
    ) -> Result<()> {
        Ok(())
    }
    fn winograd_tiles_backward(
        &self,
        _: &S,
        _: &ConvGeometry,
        _: usize,
        _: usize,
        _: &[f32],
        _: &mut S,
    ) -> Result<()> {
        Ok(())
    }
    fn winograd_untile(
        &self,
        _: &S,
        _: &ConvGeometry,
        _: usize,
        _: usize,
        _: &[f32],
        _: &mut S,
    ) -> Result<()> {
        Ok(())
    }
    fn winograd_untile_backward(
        &self,
        _: &S,
        _: &ConvGeometry,
        _: usize,
        _: usize,
        _: &[f32],
        _: &mut S,
    ) -> Result<()> {
        Ok(())
    }
    fn add_bias(&self, _: &mut S, _: &S, _: usize, _: usize, _: usize) -> Result<()> {
        Ok(())
    }
    fn bias_grad(&self, _: &S, _: usize, _: usize, _: usize, _: &mut S) -> Result<()> {
        Ok(())
    }
    /// In place, as both real backends' fused kernels (no copy of `y`).
    fn bias_relu(&self, _: &mut S, _: Option<&S>, _: usize, _: usize, _: usize) -> Result<()> {
        Ok(())
    }
    fn bias_relu_backward(
        &self,
        _: &S,
        _: &S,
        _: &mut S,
        _: Option<&mut S>,
        _: usize,
        _: usize,
        _: usize,
    ) -> Result<()> {
        Ok(())
    }
    fn max_pool2d_forward(&self, _: &S, _: &PoolGeometry, _: &mut S, _: &mut S) -> Result<()> {
        Ok(())
    }
    fn max_pool2d_backward(&self, _: &S, _: &S, _: &PoolGeometry, _: &mut S) -> Result<()> {
        Ok(())
    }
    fn avg_pool2d_forward(&self, _: &S, _: &PoolGeometry, _: &mut S) -> Result<()> {
        Ok(())
    }
    fn avg_pool2d_backward(&self, _: &S, _: &PoolGeometry, _: &mut S) -> Result<()> {
        Ok(())
    }
    fn global_avg_pool_forward(&self, _: &S, _: usize, _: usize, _: &mut S) -> Result<()> {
        Ok(())
    }
    fn global_avg_pool_backward(&self, _: &S, _: usize, _: usize, _: &mut S) -> Result<()> {
        Ok(())
    }
    fn relu_forward(&self, _: &S, _: &mut S) -> Result<()> {
        Ok(())
    }
    fn relu_backward(&self, _: &S, _: &S, _: &mut S) -> Result<()> {
        Ok(())
    }
    fn dropout_forward(&self, _: &S, _: f32, _: u64, _: &mut S, _: &mut S) -> Result<()> {
        Ok(())
    }
    fn softmax_cross_entropy_forward(
        &self,
        _: &S,
        _: &[usize],
        _: usize,
        _: usize,
        _: &mut S,
        _: &mut S,
    ) -> Result<()> {
        Ok(())
    }
    fn softmax_cross_entropy_backward(
        &self,
        _: &S,
        _: &[usize],
        _: usize,
        _: usize,
        _: &S,
        _: &mut S,
    ) -> Result<()> {
        Ok(())
    }
    fn copy_channels(
        &self,
        _: &S,
        _: usize,
        _: usize,
        _: &mut S,
        _: usize,
        _: usize,
        _: usize,
        _: usize,
        _: usize,
    ) -> Result<()> {
        Ok(())
    }
    fn axpy(&self, _: f32, _: &S, _: &mut S) -> Result<()> {
        Ok(())
    }
    fn mul(&self, _: &S, _: &S, _: &mut S) -> Result<()> {
        Ok(())
    }
    fn scale(&self, _: &mut S, _: f32) -> Result<()> {
        Ok(())
    }
    fn sum(&self, _: &S, _: &mut S) -> Result<()> {
        Ok(())
    }
    fn sgd_step(&self, _: &mut S, _: &S, _: Option<&mut S>, _: &SgdStep) -> Result<()> {
        Ok(())
    }
    fn adam_step(&self, _: &mut S, _: &S, _: &mut S, _: &mut S, _: &AdamStep) -> Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Cpu, Tensor};

    #[test]
    fn counts_live_and_peak_bytes() {
        let m = Meter::new(&Cpu);
        let a = Tensor::zeros(&m, [10, 10]).unwrap();
        {
            let _b = Tensor::zeros(&m, [50]).unwrap();
            assert_eq!(m.live_bytes(), 600);
        }
        assert_eq!((m.live_bytes(), m.peak_bytes()), (400, 600));
        m.reset_peak();
        assert_eq!(m.peak_bytes(), 400);
        let c = a.clone(); // shares the storage
        drop(a);
        assert_eq!(m.live_bytes(), 400);
        drop(c);
        assert_eq!(m.live_bytes(), 0);
        assert!(Tensor::zeros(&m, [usize::MAX / 2]).is_err());
    }

    /// With the CPU's pool, what counts is how far blocks have reached into the pool's segments:
    /// a freed block serves a later request of another length that fits it.
    #[test]
    fn counts_what_the_cpu_pool_holds() {
        let m = Meter::with_cpu_pool(&Cpu);
        let big = crate::cpu::POOL_MIN_LEN; // one grain: 16 KiB
        let grain = 4 * big;
        drop(Tensor::zeros(&m, [3 * big]).unwrap());
        assert_eq!((m.live_bytes(), m.peak_bytes()), (0, 3 * grain));
        // A shorter length reuses the freed block, and so does its neighbour's leftover.
        let a = Tensor::zeros(&m, [big + 1]).unwrap(); // rounds up to two grains
        let b = Tensor::zeros(&m, [big]).unwrap();
        assert_eq!(m.peak_bytes(), 3 * grain);
        // A longer one reaches further into the segment.
        let c = Tensor::zeros(&m, [2 * big]).unwrap();
        assert_eq!(m.peak_bytes(), 5 * grain);
        drop((a, b, c));
        // Freed neighbours merge: five grains in one piece.
        let d = Tensor::zeros(&m, [5 * big]).unwrap();
        assert_eq!(m.peak_bytes(), 5 * grain);
        drop(d);
        // Small buffers bypass the pool.
        m.reset_peak();
        drop(Tensor::zeros(&m, [10]).unwrap());
        drop(Tensor::zeros(&m, [11]).unwrap());
        assert_eq!(m.peak_bytes(), 5 * grain + 44);
        // The whole segment is free: released, nothing is held.
        assert_eq!(m.release_cached(), 5 * grain);
        m.reset_peak();
        assert_eq!(m.peak_bytes(), 0);
    }
}
