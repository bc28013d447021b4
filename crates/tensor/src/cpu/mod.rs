//! The CPU backend: the reference implementation of every kernel, parallel with rayon.
//!
//! Each `Backend` method checks that the storages are long enough (a short buffer is an `Err`,
//! never an out-of-bounds panic) and hands plain slices to the kernel in the file named after
//! its family.
mod buffer;
pub mod conv;
pub mod elementwise;
pub mod gemm;
#[cfg(target_arch = "x86_64")]
pub mod gemm_avx512;
pub mod loss;
pub mod optim;
pub mod pool;

pub use buffer::CpuBuffer;
use crate::{checks, AdamStep, Backend, ConvGeometry, Gemm, PoolGeometry, Result, SgdStep};

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Cpu;

/// `Err` unless `buf` holds at least `need` values.
fn need(op: &str, what: &str, buf: &[f32], need: usize) -> Result<()> {
    checks::need(op, what, buf.len(), need)
}

impl Backend for Cpu {
    type Storage = CpuBuffer;

    fn name(&self) -> String {
        "cpu".into()
    }

    fn zeros(&self, len: usize) -> Result<CpuBuffer> {
        Ok(CpuBuffer::zeros(len))
    }
    fn uninit(&self, len: usize) -> Result<CpuBuffer> {
        Ok(CpuBuffer::uninit(len))
    }
    fn from_slice(&self, data: &[f32]) -> Result<CpuBuffer> {
        Ok(CpuBuffer::from_slice(data))
    }
    fn to_vec(&self, src: &CpuBuffer) -> Result<Vec<f32>> {
        Ok(src.to_vec())
    }
    fn storage_len(&self, s: &CpuBuffer) -> usize {
        s.len()
    }
    fn copy(&self, src: &CpuBuffer) -> Result<CpuBuffer> {
        Ok(CpuBuffer::from_slice(src))
    }
    fn fill(&self, dst: &mut CpuBuffer, value: f32) -> Result<()> {
        dst.fill(value);
        Ok(())
    }

    fn gemm(&self, g: &Gemm, a: &CpuBuffer, b: &CpuBuffer, c: &mut CpuBuffer) -> Result<()> {
        let (la, lb, lc) = g.required_lengths();
        need("gemm", "A", a, la)?;
        need("gemm", "B", b, lb)?;
        need("gemm", "C", c, lc)?;
        gemm::gemm(g, a, b, c);
        Ok(())
    }

    fn im2col(&self, x: &CpuBuffer, geo: &ConvGeometry, first: usize, count: usize, cols: &mut CpuBuffer) -> Result<()> {
        need("im2col", "x", x, (first + count) * geo.c_in * geo.h * geo.w)?;
        need("im2col", "cols", cols, count * geo.col_rows() * geo.col_cols())?;
        conv::im2col(x, geo, first, count, cols);
        Ok(())
    }
    fn col2im(&self, cols: &CpuBuffer, geo: &ConvGeometry, first: usize, count: usize, dx: &mut CpuBuffer) -> Result<()> {
        need("col2im", "cols", cols, count * geo.col_rows() * geo.col_cols())?;
        need("col2im", "dx", dx, (first + count) * geo.c_in * geo.h * geo.w)?;
        conv::col2im(cols, geo, first, count, dx);
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
        let len = rows * cols * block;
        need("transpose_blocks", "src", src, src_offset + len)?;
        need("transpose_blocks", "dst", dst, dst_offset + len)?;
        conv::transpose_blocks(&src[src_offset..], rows, cols, block, &mut dst[dst_offset..]);
        Ok(())
    }
    fn add_bias(&self, y: &mut CpuBuffer, bias: &CpuBuffer, outer: usize, channels: usize, inner: usize) -> Result<()> {
        need("add_bias", "y", y, outer * channels * inner)?;
        need("add_bias", "bias", bias, channels)?;
        conv::add_bias(&mut y[..outer * channels * inner], bias, channels, inner);
        Ok(())
    }
    fn bias_grad(&self, dy: &CpuBuffer, outer: usize, channels: usize, inner: usize, dbias: &mut CpuBuffer) -> Result<()> {
        need("bias_grad", "dy", dy, outer * channels * inner)?;
        need("bias_grad", "dbias", dbias, channels)?;
        conv::bias_grad(dy, outer, channels, inner, dbias);
        Ok(())
    }

    fn max_pool2d_forward(&self, x: &CpuBuffer, geo: &PoolGeometry, y: &mut CpuBuffer) -> Result<()> {
        need("max_pool2d_forward", "x", x, geo.planes() * geo.h * geo.w)?;
        need("max_pool2d_forward", "y", y, geo.planes() * geo.out_h * geo.out_w)?;
        pool::max_pool2d_forward(x, geo, y);
        Ok(())
    }
    fn max_pool2d_backward(&self, x: &CpuBuffer, dy: &CpuBuffer, geo: &PoolGeometry, dx: &mut CpuBuffer) -> Result<()> {
        need("max_pool2d_backward", "x", x, geo.planes() * geo.h * geo.w)?;
        need("max_pool2d_backward", "dy", dy, geo.planes() * geo.out_h * geo.out_w)?;
        need("max_pool2d_backward", "dx", dx, geo.planes() * geo.h * geo.w)?;
        pool::max_pool2d_backward(x, dy, geo, dx);
        Ok(())
    }
    fn avg_pool2d_forward(&self, x: &CpuBuffer, geo: &PoolGeometry, y: &mut CpuBuffer) -> Result<()> {
        need("avg_pool2d_forward", "x", x, geo.planes() * geo.h * geo.w)?;
        need("avg_pool2d_forward", "y", y, geo.planes() * geo.out_h * geo.out_w)?;
        pool::avg_pool2d_forward(x, geo, y);
        Ok(())
    }
    fn avg_pool2d_backward(&self, dy: &CpuBuffer, geo: &PoolGeometry, dx: &mut CpuBuffer) -> Result<()> {
        need("avg_pool2d_backward", "dy", dy, geo.planes() * geo.out_h * geo.out_w)?;
        need("avg_pool2d_backward", "dx", dx, geo.planes() * geo.h * geo.w)?;
        pool::avg_pool2d_backward(dy, geo, dx);
        Ok(())
    }
    fn global_avg_pool_forward(&self, x: &CpuBuffer, planes: usize, plane_len: usize, y: &mut CpuBuffer) -> Result<()> {
        need("global_avg_pool_forward", "x", x, planes * plane_len)?;
        need("global_avg_pool_forward", "y", y, planes)?;
        pool::global_avg_pool_forward(x, planes, plane_len, y);
        Ok(())
    }
    fn global_avg_pool_backward(&self, dy: &CpuBuffer, planes: usize, plane_len: usize, dx: &mut CpuBuffer) -> Result<()> {
        need("global_avg_pool_backward", "dy", dy, planes)?;
        need("global_avg_pool_backward", "dx", dx, planes * plane_len)?;
        pool::global_avg_pool_backward(dy, planes, plane_len, dx);
        Ok(())
    }

    fn relu_forward(&self, x: &CpuBuffer, y: &mut CpuBuffer) -> Result<()> {
        need("relu_forward", "y", y, x.len())?;
        elementwise::relu_forward(x, y);
        Ok(())
    }
    fn relu_backward(&self, y: &CpuBuffer, dy: &CpuBuffer, dx: &mut CpuBuffer) -> Result<()> {
        need("relu_backward", "dy", dy, y.len())?;
        need("relu_backward", "dx", dx, y.len())?;
        elementwise::relu_backward(y, dy, dx);
        Ok(())
    }
    fn dropout_forward(&self, x: &CpuBuffer, p: f32, seed: u64, y: &mut CpuBuffer, mask: &mut CpuBuffer) -> Result<()> {
        checks::dropout_probability(p)?;
        need("dropout_forward", "y", y, x.len())?;
        need("dropout_forward", "mask", mask, x.len())?;
        elementwise::dropout_forward(x, p, seed, y, mask);
        Ok(())
    }

    fn softmax_cross_entropy_forward(
        &self,
        logits: &CpuBuffer,
        labels: &CpuBuffer,
        n: usize,
        classes: usize,
        loss: &mut CpuBuffer,
        correct: &mut CpuBuffer,
    ) -> Result<()> {
        need("softmax_cross_entropy_forward", "logits", logits, n * classes)?;
        need("softmax_cross_entropy_forward", "labels", labels, n)?;
        need("softmax_cross_entropy_forward", "loss", loss, 1)?;
        need("softmax_cross_entropy_forward", "correct", correct, 1)?;
        let (l, c) = loss::softmax_cross_entropy_forward(logits, labels, n, classes);
        loss[0] = l;
        correct[0] = c;
        Ok(())
    }
    fn softmax_cross_entropy_backward(
        &self,
        logits: &CpuBuffer,
        labels: &CpuBuffer,
        n: usize,
        classes: usize,
        dloss: &CpuBuffer,
        dlogits: &mut CpuBuffer,
    ) -> Result<()> {
        need("softmax_cross_entropy_backward", "logits", logits, n * classes)?;
        need("softmax_cross_entropy_backward", "labels", labels, n)?;
        need("softmax_cross_entropy_backward", "dloss", dloss, 1)?;
        need("softmax_cross_entropy_backward", "dlogits", dlogits, n * classes)?;
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
        checks::channel_ranges(src_channels, src_first, dst_channels, dst_first, count)?;
        need("copy_channels", "src", src, n * src_channels * plane_len)?;
        need("copy_channels", "dst", dst, n * dst_channels * plane_len)?;
        elementwise::copy_channels(src, src_channels, src_first, dst, dst_channels, dst_first, count, n, plane_len);
        Ok(())
    }

    fn axpy(&self, alpha: f32, x: &CpuBuffer, y: &mut CpuBuffer) -> Result<()> {
        need("axpy", "y", y, x.len())?;
        elementwise::axpy(alpha, x, y);
        Ok(())
    }
    fn mul(&self, a: &CpuBuffer, b: &CpuBuffer, out: &mut CpuBuffer) -> Result<()> {
        need("mul", "b", b, a.len())?;
        need("mul", "out", out, a.len())?;
        elementwise::mul(a, b, out);
        Ok(())
    }
    fn scale(&self, x: &mut CpuBuffer, alpha: f32) -> Result<()> {
        elementwise::scale(x, alpha);
        Ok(())
    }
    fn sum(&self, x: &CpuBuffer, out: &mut CpuBuffer) -> Result<()> {
        need("sum", "out", out, 1)?;
        out[0] = elementwise::sum(x);
        Ok(())
    }

    fn sgd_step(&self, param: &mut CpuBuffer, grad: &CpuBuffer, velocity: Option<&mut CpuBuffer>, hp: &SgdStep) -> Result<()> {
        need("sgd_step", "grad", grad, param.len())?;
        checks::sgd_velocity(hp.momentum, velocity.as_ref().map(|v| v.len()), param.len())?;
        optim::sgd_step(param, grad, velocity.map(|v| &mut v[..]), hp);
        Ok(())
    }
    fn adam_step(&self, param: &mut CpuBuffer, grad: &CpuBuffer, m: &mut CpuBuffer, v: &mut CpuBuffer, hp: &AdamStep) -> Result<()> {
        need("adam_step", "grad", grad, param.len())?;
        need("adam_step", "m", m, param.len())?;
        need("adam_step", "v", v, param.len())?;
        checks::adam_step(hp.step)?;
        optim::adam_step(param, grad, m, v, hp);
        Ok(())
    }
}
