//! The CPU backend: the reference implementation of every kernel, parallel with rayon.
//!
//! Each `Backend` method checks its arguments with `crate::checks` (a short buffer or an
//! impossible size is an `Err`, never an out-of-bounds access or a panic) and hands plain slices
//! to the kernel in the file named after its family. The kernels are private to the crate: the
//! ones that write through raw pointers are `unsafe fn`s whose contract is those checks.
//!
//! The unchecked kernels are not reachable from outside (they were once public and safe):
//!
//! ```compile_fail
//! use convnet_tensor::cpu::gemm::gemm;
//! ```
//! ```compile_fail
//! use convnet_tensor::cpu::winograd::tiles_backward;
//! ```
//! ```compile_fail
//! use convnet_tensor::cpu::pool::max_pool2d_forward;
//! ```
mod activation;
mod bias;
mod buffer;
mod elementwise;
mod gemm;
#[cfg(target_arch = "x86_64")]
mod gemm_avx2;
#[cfg(target_arch = "x86_64")]
mod gemm_avx512;
mod im2col;
mod isa;
mod loss;
mod memory;
mod optim;
mod pool;
#[cfg(target_arch = "x86_64")]
mod pool_avx2;
#[cfg(target_arch = "x86_64")]
mod pool_avx512;
#[cfg(target_arch = "x86_64")]
mod pool_simd;
mod winograd;

use crate::{
    checks, AdamStep, Backend, ConvAlgorithm, ConvGeometry, ConvPlan, Gemm, PoolGeometry, Result, SgdStep,
};
pub use buffer::{pool_segment_units, pool_units, CpuBuffer, LINE as POOL_LINE, MIN_POOLED as POOL_MIN_LEN};
pub use isa::{isa, Isa};

/// The largest buffer of a convolution chunk, in values (32 MiB of f32: a chunk stays near the
/// L3 cache, so the product reads columns the unfold just wrote from cache).
const CHUNK_VALUES: usize = 8 << 20;
/// 1x1 convolutions on planes at least this large take the direct per-image products; smaller
/// planes make per-image products too thin, and the chunked path wins.
const DIRECT_MIN_PLANE: usize = 256;
/// Winograd only with at least this many input and output channels: below that its transforms
/// cost more than the multiplies it saves.
const WINOGRAD_MIN_CHANNELS: usize = 8;

/// `CONVNET_WINOGRAD=0` keeps the CPU on im2col, to compare a run with the reference path.
fn winograd_off() -> bool {
    static OFF: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *OFF.get_or_init(|| std::env::var("CONVNET_WINOGRAD").is_ok_and(|v| v == "0"))
}

/// The CPU backend: storages are [`CpuBuffer`]s, kernels run on rayon's thread pool (with our
/// AVX-512 or AVX2 kernels where the processor has them, see [`isa`]), and every call checks
/// its arguments before touching memory. A unit struct: all its state (the buffer pool) is
/// process-wide.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Cpu;

impl Backend for Cpu {
    type Storage = CpuBuffer;
    type Reading = Vec<f32>;

    fn name(&self) -> String {
        "cpu".into()
    }

    fn zeros(&self, len: usize) -> Result<CpuBuffer> {
        CpuBuffer::zeros(len)
    }
    fn uninit(&self, len: usize) -> Result<CpuBuffer> {
        CpuBuffer::uninit(len)
    }
    fn from_slice(&self, data: &[f32]) -> Result<CpuBuffer> {
        CpuBuffer::from_slice(data)
    }
    fn to_vec(&self, src: &CpuBuffer) -> Result<Vec<f32>> {
        Ok(src.to_vec())
    }
    fn start_read(&self, src: &CpuBuffer) -> Result<Vec<f32>> {
        Ok(src.to_vec())
    }
    fn finish_read(&self, reading: Vec<f32>) -> Result<Vec<f32>> {
        Ok(reading)
    }
    fn storage_len(&self, s: &CpuBuffer) -> usize {
        s.len()
    }
    fn copy(&self, src: &CpuBuffer) -> Result<CpuBuffer> {
        CpuBuffer::from_slice(src)
    }
    fn memory_available(&self) -> Option<usize> {
        memory::available_bytes()
    }
    fn release_cached(&self) -> usize {
        buffer::release_pooled()
    }
    fn fill(&self, dst: &mut CpuBuffer, value: f32) -> Result<()> {
        dst.fill(value);
        Ok(())
    }

    /// Direct products for 1x1 kernels on planes of 256 values or more; Winograd for stride-1
    /// square kernels whose output its tiles divide, with 8 or more channels in and out (unless
    /// `CONVNET_WINOGRAD=0`); im2col otherwise; chunks sized to stay near the L3 cache.
    fn conv_plan(&self, geo: &ConvGeometry) -> ConvPlan {
        let wide = geo.c_in >= WINOGRAD_MIN_CHANNELS && geo.c_out >= WINOGRAD_MIN_CHANNELS;
        let algorithm = if geo.is_pointwise() && geo.col_cols() >= DIRECT_MIN_PLANE {
            ConvAlgorithm::Direct
        } else {
            match crate::winograd::output_tile(geo) {
                Some(tile) if wide && !winograd_off() => ConvAlgorithm::Winograd { tile },
                _ => ConvAlgorithm::Im2col,
            }
        };
        // Unfolding a chunk again costs less than holding every chunk's columns in memory; the
        // stacked outputs' moves and bias passes run from the cache.
        ConvPlan {
            algorithm,
            chunk_values: CHUNK_VALUES,
            keep_columns: false,
            epilogue_stores: false,
            implicit: false,
            implicit_input_grad: false,
            input_grad_masks: false,
        }
    }

    fn gemm(&self, g: &Gemm, a: &CpuBuffer, b: &CpuBuffer, c: &mut CpuBuffer) -> Result<()> {
        checks::gemm(g, a.len(), b.len(), c.len())?;
        // SAFETY: checks::gemm accepted `g` for these lengths, and the outputs do not overlap.
        unsafe { gemm::gemm(g, a, b, c) };
        Ok(())
    }

    fn im2col(
        &self,
        x: &CpuBuffer,
        geo: &ConvGeometry,
        first: usize,
        count: usize,
        cols: &mut CpuBuffer,
    ) -> Result<()> {
        checks::unfold("im2col", geo, first, count, x.len(), cols.len())?;
        im2col::im2col(x, geo, first, count, cols);
        Ok(())
    }
    fn col2im(
        &self,
        cols: &CpuBuffer,
        geo: &ConvGeometry,
        first: usize,
        count: usize,
        dx: &mut CpuBuffer,
    ) -> Result<()> {
        checks::unfold("col2im", geo, first, count, dx.len(), cols.len())?;
        im2col::col2im(cols, geo, first, count, dx);
        Ok(())
    }
    fn winograd_tiles(
        &self,
        x: &CpuBuffer,
        geo: &ConvGeometry,
        first: usize,
        count: usize,
        bt: &[f32],
        v: &mut CpuBuffer,
    ) -> Result<()> {
        let a = crate::winograd::check_tiles("winograd_tiles", geo, first, count, bt, x.len(), v.len())?;
        tile_sides_fit("winograd_tiles", a, a)?;
        // SAFETY: the buffers hold what the checks above require, for a valid geometry.
        unsafe { winograd::tiles(x, geo, first, count, bt, v) };
        Ok(())
    }
    fn winograd_tiles_backward(
        &self,
        dv: &CpuBuffer,
        geo: &ConvGeometry,
        first: usize,
        count: usize,
        bt: &[f32],
        dx: &mut CpuBuffer,
    ) -> Result<()> {
        let a = crate::winograd::check_tiles(
            "winograd_tiles_backward",
            geo,
            first,
            count,
            bt,
            dx.len(),
            dv.len(),
        )?;
        tile_sides_fit("winograd_tiles_backward", a, a)?;
        // SAFETY: the buffers hold what the checks above require, for a valid geometry.
        unsafe { winograd::tiles_backward(dv, geo, first, count, bt, dx) };
        Ok(())
    }
    fn winograd_untile(
        &self,
        points: &CpuBuffer,
        geo: &ConvGeometry,
        first: usize,
        count: usize,
        at: &[f32],
        y: &mut CpuBuffer,
    ) -> Result<()> {
        let (m, a) =
            crate::winograd::check_untile("winograd_untile", geo, first, count, at, y.len(), points.len())?;
        tile_sides_fit("winograd_untile", m, a)?;
        // SAFETY: the buffers hold what the checks above require, for a valid geometry.
        unsafe { winograd::untile(points, geo, first, count, at, y) };
        Ok(())
    }
    fn winograd_untile_backward(
        &self,
        dy: &CpuBuffer,
        geo: &ConvGeometry,
        first: usize,
        count: usize,
        at: &[f32],
        dm: &mut CpuBuffer,
    ) -> Result<()> {
        let (m, a) = crate::winograd::check_untile(
            "winograd_untile_backward",
            geo,
            first,
            count,
            at,
            dy.len(),
            dm.len(),
        )?;
        tile_sides_fit("winograd_untile_backward", m, a)?;
        // SAFETY: the buffers hold what the checks above require, for a valid geometry.
        unsafe { winograd::untile_backward(dy, geo, first, count, at, dm) };
        Ok(())
    }
    fn transpose_blocks(
        &self,
        src: &CpuBuffer,
        src_offset: usize,
        rows: usize,
        cols: usize,
        block: usize,
        dst: &mut CpuBuffer,
        dst_offset: usize,
    ) -> Result<()> {
        checks::transpose_blocks(src.len(), src_offset, rows, cols, block, dst.len(), dst_offset)?;
        elementwise::transpose_blocks(&src[src_offset..], rows, cols, block, &mut dst[dst_offset..]);
        Ok(())
    }
    fn add_bias(
        &self,
        y: &mut CpuBuffer,
        bias: &CpuBuffer,
        outer: usize,
        channels: usize,
        inner: usize,
    ) -> Result<()> {
        checks::bias("add_bias", y.len(), bias.len(), outer, channels, inner)?;
        bias::add_bias(&mut y[..outer * channels * inner], bias, channels, inner);
        Ok(())
    }
    fn bias_grad(
        &self,
        dy: &CpuBuffer,
        outer: usize,
        channels: usize,
        inner: usize,
        dbias: &mut CpuBuffer,
    ) -> Result<()> {
        checks::bias("bias_grad", dy.len(), dbias.len(), outer, channels, inner)?;
        bias::bias_grad(dy, outer, channels, inner, dbias);
        Ok(())
    }
    fn bias_relu(
        &self,
        y: &mut CpuBuffer,
        bias: Option<&CpuBuffer>,
        outer: usize,
        channels: usize,
        inner: usize,
    ) -> Result<()> {
        checks::bias("bias_relu", y.len(), bias.map_or(channels, |b| b.len()), outer, channels, inner)?;
        bias::bias_relu(&mut y[..outer * channels * inner], bias.map(|b| &b[..channels]), channels, inner);
        Ok(())
    }
    #[allow(clippy::too_many_arguments)]
    fn bias_relu_backward(
        &self,
        y: &CpuBuffer,
        dy: &CpuBuffer,
        dz: &mut CpuBuffer,
        dbias: Option<&mut CpuBuffer>,
        outer: usize,
        channels: usize,
        inner: usize,
    ) -> Result<()> {
        let len = checks::extent("bias_relu_backward", "the tensor", &[&[outer, channels, inner]])?;
        checks::same_len("bias_relu_backward", len, &[y.len(), dy.len(), dz.len()])?;
        let dbias = match dbias {
            Some(db) => {
                checks::bias("bias_relu_backward", len, db.len(), outer, channels, inner)?;
                Some(&mut db[..channels])
            }
            None => None,
        };
        bias::bias_relu_backward(&y[..len], &dy[..len], &mut dz[..len], dbias, outer, channels, inner);
        Ok(())
    }

    fn max_pool2d_forward(
        &self,
        x: &CpuBuffer,
        geo: &PoolGeometry,
        y: &mut CpuBuffer,
        argmax: &mut CpuBuffer,
    ) -> Result<()> {
        checks::pool("max_pool2d_forward", geo, &[x.len()], &[y.len(), argmax.len()])?;
        // SAFETY: checks::pool accepted the geometry (recomputed, planes within MAX_POOL_PLANE)
        // and the buffers' lengths.
        unsafe { pool::max_pool2d_forward(x, geo, y, argmax) };
        Ok(())
    }
    fn max_pool2d_backward(
        &self,
        argmax: &CpuBuffer,
        dy: &CpuBuffer,
        geo: &PoolGeometry,
        dx: &mut CpuBuffer,
    ) -> Result<()> {
        checks::pool("max_pool2d_backward", geo, &[dx.len()], &[argmax.len(), dy.len()])?;
        pool::max_pool2d_backward(argmax, dy, geo, dx);
        Ok(())
    }
    fn avg_pool2d_forward(&self, x: &CpuBuffer, geo: &PoolGeometry, y: &mut CpuBuffer) -> Result<()> {
        checks::pool("avg_pool2d_forward", geo, &[x.len()], &[y.len()])?;
        pool::avg_pool2d_forward(x, geo, y);
        Ok(())
    }
    fn avg_pool2d_backward(&self, dy: &CpuBuffer, geo: &PoolGeometry, dx: &mut CpuBuffer) -> Result<()> {
        checks::pool("avg_pool2d_backward", geo, &[dx.len()], &[dy.len()])?;
        pool::avg_pool2d_backward(dy, geo, dx);
        Ok(())
    }
    fn global_avg_pool_forward(
        &self,
        x: &CpuBuffer,
        planes: usize,
        plane_len: usize,
        y: &mut CpuBuffer,
    ) -> Result<()> {
        checks::global_pool("global_avg_pool_forward", planes, plane_len, x.len(), y.len())?;
        pool::global_avg_pool_forward(x, planes, plane_len, y);
        Ok(())
    }
    fn global_avg_pool_backward(
        &self,
        dy: &CpuBuffer,
        planes: usize,
        plane_len: usize,
        dx: &mut CpuBuffer,
    ) -> Result<()> {
        checks::global_pool("global_avg_pool_backward", planes, plane_len, dx.len(), dy.len())?;
        pool::global_avg_pool_backward(dy, planes, plane_len, dx);
        Ok(())
    }

    fn relu_forward(&self, x: &CpuBuffer, y: &mut CpuBuffer) -> Result<()> {
        checks::same_len("relu_forward", x.len(), &[y.len()])?;
        activation::relu_forward(x, y);
        Ok(())
    }
    fn relu_backward(&self, y: &CpuBuffer, dy: &CpuBuffer, dx: &mut CpuBuffer) -> Result<()> {
        checks::same_len("relu_backward", y.len(), &[dy.len(), dx.len()])?;
        activation::relu_backward(y, dy, dx);
        Ok(())
    }
    fn dropout_forward(
        &self,
        x: &CpuBuffer,
        p: f32,
        seed: u64,
        y: &mut CpuBuffer,
        mask: &mut CpuBuffer,
    ) -> Result<()> {
        checks::dropout_probability(p)?;
        checks::same_len("dropout_forward", x.len(), &[y.len(), mask.len()])?;
        activation::dropout_forward(x, p, seed, y, mask);
        Ok(())
    }

    fn softmax_cross_entropy_forward(
        &self,
        logits: &CpuBuffer,
        labels: &[usize],
        n: usize,
        classes: usize,
        loss: &mut CpuBuffer,
        correct: &mut CpuBuffer,
    ) -> Result<()> {
        checks::softmax_cross_entropy(
            "softmax_cross_entropy_forward",
            n,
            classes,
            &[logits.len()],
            labels,
            &[loss.len(), correct.len()],
        )?;
        let (l, c) = loss::softmax_cross_entropy_forward(logits, labels, n, classes);
        loss[0] = l;
        correct[0] = c;
        Ok(())
    }
    fn softmax_cross_entropy_backward(
        &self,
        logits: &CpuBuffer,
        labels: &[usize],
        n: usize,
        classes: usize,
        dloss: &CpuBuffer,
        dlogits: &mut CpuBuffer,
    ) -> Result<()> {
        checks::softmax_cross_entropy(
            "softmax_cross_entropy_backward",
            n,
            classes,
            &[logits.len(), dlogits.len()],
            labels,
            &[dloss.len()],
        )?;
        loss::softmax_cross_entropy_backward(logits, labels, n, classes, dloss[0], dlogits);
        Ok(())
    }

    fn copy_channels(
        &self,
        src: &CpuBuffer,
        src_channels: usize,
        src_first: usize,
        dst: &mut CpuBuffer,
        dst_channels: usize,
        dst_first: usize,
        count: usize,
        n: usize,
        plane_len: usize,
    ) -> Result<()> {
        checks::copy_channels(
            src.len(),
            src_channels,
            src_first,
            dst.len(),
            dst_channels,
            dst_first,
            count,
            n,
            plane_len,
        )?;
        elementwise::copy_channels(
            src,
            src_channels,
            src_first,
            dst,
            dst_channels,
            dst_first,
            count,
            n,
            plane_len,
        );
        Ok(())
    }

    fn axpy(&self, alpha: f32, x: &CpuBuffer, y: &mut CpuBuffer) -> Result<()> {
        checks::same_len("axpy", x.len(), &[y.len()])?;
        elementwise::axpy(alpha, x, y);
        Ok(())
    }
    fn mul(&self, a: &CpuBuffer, b: &CpuBuffer, out: &mut CpuBuffer) -> Result<()> {
        checks::same_len("mul", a.len(), &[b.len(), out.len()])?;
        elementwise::mul(a, b, out);
        Ok(())
    }
    fn scale(&self, x: &mut CpuBuffer, alpha: f32) -> Result<()> {
        elementwise::scale(x, alpha);
        Ok(())
    }
    fn sum(&self, x: &CpuBuffer, out: &mut CpuBuffer) -> Result<()> {
        checks::same_len("sum", 1, &[out.len()])?;
        out[0] = elementwise::sum(x);
        Ok(())
    }

    fn sgd_step(
        &self,
        param: &mut CpuBuffer,
        grad: &CpuBuffer,
        velocity: Option<&mut CpuBuffer>,
        hp: &SgdStep,
    ) -> Result<()> {
        checks::sgd(param.len(), grad.len(), hp.momentum, velocity.as_ref().map(|v| v.len()))?;
        optim::sgd_step(param, grad, velocity.map(|v| &mut v[..]), hp);
        Ok(())
    }
    fn adam_step(
        &self,
        param: &mut CpuBuffer,
        grad: &CpuBuffer,
        m: &mut CpuBuffer,
        v: &mut CpuBuffer,
        hp: &AdamStep,
    ) -> Result<()> {
        checks::adam(param.len(), grad.len(), m.len(), v.len(), hp.step)?;
        optim::adam_step(param, grad, m, v, hp);
        Ok(())
    }
}

/// The fused Winograd kernels hold tiles of up to `winograd::MAX_TILE` a side.
fn tile_sides_fit(op: &str, m: usize, a: usize) -> Result<()> {
    if m.max(a) > winograd::MAX_TILE {
        crate::bail!(
            InvalidArgument,
            "{op}: tiles of {m}x{m} and {a}x{a} exceed the CPU kernels' {0}x{0}",
            winograd::MAX_TILE
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Epilogue, RowsOut, Window};

    /// `gemm_epilogue` (the composed default) against loops: a chunk's product stored as NCHW
    /// at an offset with bias and ReLU, per-item products with a bias alone, and the argument
    /// limits every backend shares.
    #[test]
    fn gemm_epilogue_composes_bias_relu_and_layout() {
        let (m, k, count, p) = (3, 5, 2, 4);
        let n = count * p;
        let a: Vec<f32> = (0..m * k).map(|i| (i % 7) as f32 - 3.0).collect();
        let b: Vec<f32> = (0..k * n).map(|i| (i % 5) as f32 * 0.5 - 1.0).collect();
        let bias = vec![0.5, -2.0, 1.0];
        let product = |i: usize, j: usize| (0..k).map(|t| a[i * k + t] * b[t * n + j]).sum::<f32>();
        // Blocked: image q's output (i, pos) at offset + (q * m + i) * p + pos.
        let offset = 7;
        let mut c = vec![9.0; offset + m * n + 3];
        let g = Gemm { c_offset: offset, ..Gemm::new(false, false, m, n, k) };
        let (a_buf, b_buf, bias_buf) =
            (Cpu.from_slice(&a).unwrap(), Cpu.from_slice(&b).unwrap(), Cpu.from_slice(&bias).unwrap());
        let mut c_buf = Cpu.from_slice(&c).unwrap();
        let epi_buf = Epilogue { bias: Some(&bias_buf), relu: true, block: p, mask: None };
        Cpu.gemm_epilogue(&g, &a_buf, &b_buf, &mut c_buf, &epi_buf).unwrap();
        for i in 0..m {
            for j in 0..n {
                c[offset + (j / p * m + i) * p + j % p] = (product(i, j) + bias[i]).max(0.0);
            }
        }
        assert_eq!(c_buf.to_vec(), c);
        assert!(c.contains(&0.0), "the ReLU should cut something");
        // Two items, bias only, C the whole output.
        let g = Gemm { batch: 2, b_stride: 0, c_stride: m * n, ..Gemm::new(false, false, m, n, k) };
        let mut c_buf = Cpu.uninit(2 * m * n).unwrap();
        let epi_buf = Epilogue { bias: Some(&bias_buf), relu: false, block: 0, mask: None };
        Cpu.gemm_epilogue(&g, &a_buf, &b_buf, &mut c_buf, &epi_buf).unwrap();
        let want: Vec<f32> = (0..2 * m * n).map(|x| product(x / n % m, x % n) + bias[x / n % m]).collect();
        assert_eq!(c_buf.to_vec(), want);
        // The limits.
        let err = |g: Gemm, block: usize, c_len: usize| {
            let mut c = Cpu.uninit(c_len).unwrap();
            let epi = Epilogue { bias: Some(&bias_buf), relu: true, block, mask: None };
            Cpu.gemm_epilogue(&g, &a_buf, &b_buf, &mut c, &epi).unwrap_err().to_string()
        };
        let single = Gemm::new(false, false, m, n, k);
        assert!(err(Gemm { beta: 1.0, ..single }, 0, m * n).contains("beta"));
        assert!(err(single, 3, m * n).contains("blocks of 3"));
        assert!(err(Gemm { batch: 2, c_stride: m * n, ..single }, p, 2 * m * n).contains("single product"));
        assert!(err(Gemm { c_offset: 1, ..single }, 0, m * n + 1).contains("offset 1"));
        assert!(err(single, 0, m * n + 1).contains("C holds 25"));
        let short = Cpu.from_slice(&bias[..2]).unwrap();
        let mut c = Cpu.uninit(m * n).unwrap();
        let epi = Epilogue { bias: Some(&short), relu: false, block: 0, mask: None };
        assert!(Cpu
            .gemm_epilogue(&single, &a_buf, &b_buf, &mut c, &epi)
            .unwrap_err()
            .to_string()
            .contains("2 values for 3 rows"));
        // A mask laid out as C zeroes the values where it is not positive; it must be as long
        // as C and C stored as the product stores it.
        let mask: Vec<f32> =
            (0..m * n).map(|i| if i % 3 == 0 { 0.0 } else { 1.0 - (i % 2) as f32 * 2.0 }).collect();
        let mask_buf = Cpu.from_slice(&mask).unwrap();
        let epi = Epilogue { bias: None, relu: false, block: 0, mask: Some(&mask_buf) };
        let mut c = Cpu.uninit(m * n).unwrap();
        Cpu.gemm_epilogue(&single, &a_buf, &b_buf, &mut c, &epi).unwrap();
        let want: Vec<f32> =
            (0..m * n).map(|x| if mask[x] > 0.0 { product(x / n, x % n) } else { 0.0 }).collect();
        assert_eq!(c.to_vec(), want);
        let blocked = Epilogue { block: p, ..epi };
        let e = Cpu.gemm_epilogue(&single, &a_buf, &b_buf, &mut c, &blocked).unwrap_err().to_string();
        assert!(e.contains("a mask needs"), "{e}");
        let short_mask = Cpu.from_slice(&mask[1..]).unwrap();
        let e = Cpu
            .gemm_epilogue(&single, &a_buf, &b_buf, &mut c, &Epilogue { mask: Some(&short_mask), ..epi })
            .unwrap_err()
            .to_string();
        assert!(e.contains("23 for 24"), "{e}");
    }

    /// `gemm_rows_epilogue` (the composed default): each output's rows of one product stored at
    /// its own offset in its own layout, with its own bias and ReLU, as `gemm_epilogue` of
    /// those rows alone; and the outputs must share out exactly the product's rows.
    #[test]
    fn gemm_rows_epilogue_stores_each_output() {
        let (m, k, n, p) = (5, 3, 8, 4);
        let a: Vec<f32> = (0..m * k).map(|i| (i % 7) as f32 - 3.0).collect();
        let b: Vec<f32> = (0..k * n).map(|i| (i % 5) as f32 * 0.5 - 1.0).collect();
        let bias = [0.5, -2.0];
        let product = |i: usize, j: usize| (0..k).map(|t| a[i * k + t] * b[t * n + j]).sum::<f32>();
        let (a_buf, b_buf, bias_buf) =
            (Cpu.from_slice(&a).unwrap(), Cpu.from_slice(&b).unwrap(), Cpu.from_slice(&bias).unwrap());
        // Rows 0..2 blocked at offset 3 with bias and ReLU; rows 2..5 row-major, plain.
        let (mut first, mut second) =
            (Cpu.from_slice(&[7.0; 3 + 2 * 8]).unwrap(), Cpu.uninit(3 * 8).unwrap());
        let g = Gemm::new(false, false, m, n, k);
        let mut outs = [
            RowsOut {
                rows: 2,
                c: &mut first,
                c_offset: 3,
                epilogue: Epilogue { bias: Some(&bias_buf), relu: true, block: p, mask: None },
            },
            RowsOut {
                rows: 3,
                c: &mut second,
                c_offset: 0,
                epilogue: Epilogue { bias: None, relu: false, block: 0, mask: None },
            },
        ];
        Cpu.gemm_rows_epilogue(&g, &a_buf, &b_buf, &mut outs).unwrap();
        let mut want = vec![7.0; 3 + 2 * 8];
        for i in 0..2 {
            for j in 0..n {
                want[3 + (j / p * 2 + i) * p + j % p] = (product(i, j) + bias[i]).max(0.0);
            }
        }
        assert_eq!(first.to_vec(), want);
        let rest: Vec<f32> = (0..3 * n).map(|x| product(2 + x / n, x % n)).collect();
        assert_eq!(second.to_vec(), rest);
        // Rows that do not add up to m, and a batch, are errors naming the counts.
        let mut c = Cpu.uninit(2 * 8).unwrap();
        let mut short = [RowsOut {
            rows: 2,
            c: &mut c,
            c_offset: 0,
            epilogue: Epilogue { bias: None, relu: false, block: 0, mask: None },
        }];
        let msg = Cpu.gemm_rows_epilogue(&g, &a_buf, &b_buf, &mut short).unwrap_err().to_string();
        assert!(msg.contains("whose 5 rows") && msg.contains("2 rows"), "{msg}");
        let batched = Gemm { batch: 2, b_stride: 0, c_stride: 0, ..g };
        let msg = Cpu.gemm_rows_epilogue(&batched, &a_buf, &b_buf, &mut short).unwrap_err().to_string();
        assert!(msg.contains("batch 2"), "{msg}");
    }

    /// `bias_relu_backward_rows` (the composed default): the masked gradient written channel by
    /// channel from a row of a larger matrix, the rest of it untouched, the bias gradient as
    /// `bias_relu_backward`'s; a matrix too short for the rows is an error.
    #[test]
    fn bias_relu_backward_rows_writes_channel_rows() {
        let (outer, channels, inner, row) = (2, 3, 4, 1);
        let len = outer * channels * inner;
        let y: Vec<f32> = (0..len).map(|i| if i % 3 == 0 { 0.0 } else { i as f32 }).collect();
        let dy: Vec<f32> = (0..len).map(|i| i as f32 * 0.5 - 3.0).collect();
        let (yb, dyb) = (Cpu.from_slice(&y).unwrap(), Cpu.from_slice(&dy).unwrap());
        let mut dz = Cpu.from_slice(&vec![9.0; (row + channels + 1) * outer * inner]).unwrap();
        let mut db = Cpu.uninit(channels).unwrap();
        Cpu.bias_relu_backward_rows(&yb, &dyb, &mut dz, row, Some(&mut db), outer, channels, inner).unwrap();
        let mut want = vec![9.0; (row + channels + 1) * outer * inner];
        let mut want_db = vec![0.0; channels];
        for o in 0..outer {
            for c in 0..channels {
                for i in 0..inner {
                    let at = (o * channels + c) * inner + i;
                    let v = if y[at] > 0.0 { dy[at] } else { 0.0 };
                    want[((row + c) * outer + o) * inner + i] = v;
                    want_db[c] += v;
                }
            }
        }
        assert_eq!(dz.to_vec(), want);
        assert_eq!(db.to_vec(), want_db);
        let mut short = Cpu.uninit((row + channels) * outer * inner - 1).unwrap();
        assert!(Cpu
            .bias_relu_backward_rows(&yb, &dyb, &mut short, row, None, outer, channels, inner)
            .is_err());
    }

    /// What the CPU plans for NiN's and GoogLeNet's layers.
    #[test]
    fn conv_plans() {
        let plan = |c, hw, o, k, s, p| {
            Cpu.conv_plan(&ConvGeometry::new(32, c, hw, hw, o, Window::square(k, s, p)).unwrap()).algorithm
        };
        assert_eq!(plan(96, 54, 96, 1, 1, 0), ConvAlgorithm::Direct, "NiN's 1x1 at 54x54");
        assert_eq!(plan(832, 3, 384, 1, 1, 0), ConvAlgorithm::Im2col, "GoogLeNet 5b's 1x1 at 3x3");
        assert_eq!(plan(256, 12, 384, 3, 1, 1), ConvAlgorithm::Winograd { tile: 4 }, "NiN conv3");
        assert_eq!(plan(96, 26, 256, 5, 1, 2), ConvAlgorithm::Winograd { tile: 2 }, "NiN conv2");
        assert_eq!(plan(1, 96, 64, 7, 2, 3), ConvAlgorithm::Im2col, "GoogLeNet's stem: stride 2");
        assert_eq!(plan(384, 5, 10, 3, 1, 1), ConvAlgorithm::Im2col, "NiN conv4: 10 channels, 5x5");
        assert_eq!(plan(4, 12, 16, 3, 1, 1), ConvAlgorithm::Im2col, "few input channels");
    }
}
