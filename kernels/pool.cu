// Max, average and global-average pooling over NCHW planes (planes = N * C, each h x w, output
// oh x ow). Floor-mode windows; the window of output (oy, ox) is clipped to the image, so padded
// cells never take part. Backward kernels gather (one thread per dx element, summing the terms in
// the CPU's order): no atomics, deterministic, and they overwrite dx.

// Input rows (or columns) [*lo, *hi) covered by output position o, clipped to [0, len).
__device__ __forceinline__ void pool_window(int o, int stride, int pad, int k, int len, int* lo, int* hi)
{
    const int start = o * stride - pad;
    *lo = max(start, 0);
    *hi = min(max(start + k, 0), len);
}

// Outputs [*lo, *hi] (inclusive) whose unclipped window contains input position i; empty if lo > hi.
__device__ __forceinline__ void covering_outputs(int i, int stride, int pad, int k, int out_len, int* lo, int* hi)
{
    // o * stride - pad <= i  and  i <= o * stride - pad + k - 1
    const int first = i + pad - k + 1;
    *lo = first > 0 ? (first + stride - 1) / stride : 0;
    *hi = min((i + pad) / stride, out_len - 1);
}

// Index within the plane of the first maximum (strict >, rows then columns from the clipped
// window's top-left) of window (oy, ox): the CPU's tie rule.
__device__ __forceinline__ int window_argmax(const float* src, int h, int w, int kh, int kw, int sh, int sw, int ph, int pw, int oy, int ox)
{
    int y0, y1, x0, x1;
    pool_window(oy, sh, ph, kh, h, &y0, &y1);
    pool_window(ox, sw, pw, kw, w, &x0, &x1);
    int best = y0 * w + x0;
    float best_v = src[best];
    for (int iy = y0; iy < y1; ++iy) {
        for (int ix = x0; ix < x1; ++ix) {
            const float v = src[iy * w + ix];
            if (v > best_v) {
                best_v = v;
                best = iy * w + ix;
            }
        }
    }
    return best;
}

// y = max over each clipped window, and argmax = its index within the input plane (as a float:
// exact, planes are checked to hold at most 2^24 values) for the backward. One thread per output
// element (grid-stride).
extern "C" __global__ void max_pool2d_forward(const float* x, float* y, float* argmax, int planes, int h, int w, int kh, int kw, int sh,
                                              int sw, int ph, int pw, int oh, int ow)
{
    const long long out_plane = (long long)oh * ow;
    const long long total = (long long)planes * out_plane;
    for (long long idx = (long long)blockIdx.x * blockDim.x + threadIdx.x; idx < total; idx += (long long)gridDim.x * blockDim.x) {
        const long long plane = idx / out_plane;
        const int q = (int)(idx % out_plane);
        const float* src = x + plane * h * w;
        const int best = window_argmax(src, h, w, kh, kw, sh, sw, ph, pw, q / ow, q % ow);
        y[idx] = src[best];
        argmax[idx] = (float)best;
    }
}

// dx[e] = sum of dy over the outputs whose window contains e and whose stored arg-max is e, in
// (oy, ox) order, as the CPU's scatter adds them. One thread per dx element (grid-stride).
extern "C" __global__ void max_pool2d_backward(const float* argmax, const float* dy, float* dx, int planes, int h, int w, int kh, int kw,
                                               int sh, int sw, int ph, int pw, int oh, int ow)
{
    const long long in_plane = (long long)h * w;
    const long long total = (long long)planes * in_plane;
    for (long long idx = (long long)blockIdx.x * blockDim.x + threadIdx.x; idx < total; idx += (long long)gridDim.x * blockDim.x) {
        const long long plane = idx / in_plane;
        const int e = (int)(idx % in_plane);
        const int iy = e / w;
        const int ix = e % w;
        const float* arg = argmax + plane * oh * ow;
        const float* grad = dy + plane * oh * ow;
        int oy0, oy1, ox0, ox1;
        covering_outputs(iy, sh, ph, kh, oh, &oy0, &oy1);
        covering_outputs(ix, sw, pw, kw, ow, &ox0, &ox1);
        float s = 0.0f;
        for (int oy = oy0; oy <= oy1; ++oy) {
            for (int ox = ox0; ox <= ox1; ++ox) {
                if ((int)arg[oy * ow + ox] == e) {
                    s += grad[oy * ow + ox];
                }
            }
        }
        dx[idx] = s;
    }
}

// y = (sum of the clipped window) * (1 / (kh * kw)): padded cells count in the divisor
// (PyTorch's default). Summed row by row, each row's sum added to the total, as the CPU does,
// so the result is bit-identical. One thread per output element (grid-stride).
extern "C" __global__ void avg_pool2d_forward(const float* x, float* y, int planes, int h, int w, int kh, int kw, int sh, int sw, int ph,
                                              int pw, int oh, int ow)
{
    const float inv = 1.0f / (float)(kh * kw);
    const long long out_plane = (long long)oh * ow;
    const long long total = (long long)planes * out_plane;
    for (long long idx = (long long)blockIdx.x * blockDim.x + threadIdx.x; idx < total; idx += (long long)gridDim.x * blockDim.x) {
        const long long plane = idx / out_plane;
        const int q = (int)(idx % out_plane);
        const float* src = x + plane * h * w;
        int y0, y1, x0, x1;
        pool_window(q / ow, sh, ph, kh, h, &y0, &y1);
        pool_window(q % ow, sw, pw, kw, w, &x0, &x1);
        float s = 0.0f;
        for (int iy = y0; iy < y1; ++iy) {
            float row = 0.0f;
            for (int ix = x0; ix < x1; ++ix) {
                row += src[iy * w + ix];
            }
            s += row;
        }
        y[idx] = s * inv;
    }
}

// dx[e] = sum over the outputs whose window contains e of dy * (1 / (kh * kw)), in (oy, ox)
// order. The product is rounded on its own (__fmul_rn) so it is never fused into the sum: the
// CPU adds the rounded share. One thread per dx element (grid-stride).
extern "C" __global__ void avg_pool2d_backward(const float* dy, float* dx, int planes, int h, int w, int kh, int kw, int sh, int sw, int ph,
                                               int pw, int oh, int ow)
{
    const float inv = 1.0f / (float)(kh * kw);
    const long long in_plane = (long long)h * w;
    const long long total = (long long)planes * in_plane;
    for (long long idx = (long long)blockIdx.x * blockDim.x + threadIdx.x; idx < total; idx += (long long)gridDim.x * blockDim.x) {
        const long long plane = idx / in_plane;
        const int e = (int)(idx % in_plane);
        const float* grad = dy + plane * oh * ow;
        int oy0, oy1, ox0, ox1;
        covering_outputs(e / w, sh, ph, kh, oh, &oy0, &oy1);
        covering_outputs(e % w, sw, pw, kw, ow, &ox0, &ox1);
        float s = 0.0f;
        for (int oy = oy0; oy <= oy1; ++oy) {
            for (int ox = ox0; ox <= ox1; ++ox) {
                s += __fmul_rn(grad[oy * ow + ox], inv);
            }
        }
        dx[idx] = s;
    }
}

// An enumerator, not a constexpr variable, which -default-device would emit as a global.
enum : int { GAP_THREADS = 256 };

// y[p] = mean of plane p. One block per plane (blocks stride over planes): each thread sums a
// fixed strided subset in double, then a shared-memory tree combines the partials in a fixed
// order; the mean is sum * (1 / plane_len) in double, as on the CPU.
extern "C" __global__ void __launch_bounds__(GAP_THREADS) global_avg_pool_forward(const float* x, float* y, int planes, int plane_len)
{
    __shared__ double partial[GAP_THREADS];
    const int t = threadIdx.x;
    const double inv = 1.0 / (double)plane_len;
    for (int p = blockIdx.x; p < planes; p += gridDim.x) {
        const float* src = x + (long long)p * plane_len;
        double s = 0.0;
        for (int i = t; i < plane_len; i += GAP_THREADS) {
            s += (double)src[i];
        }
        partial[t] = s;
        __syncthreads();
        for (int half = GAP_THREADS / 2; half > 0; half /= 2) {
            if (t < half) {
                partial[t] += partial[t + half];
            }
            __syncthreads();
        }
        if (t == 0) {
            y[p] = (float)(partial[0] * inv);
        }
        // Before the next plane overwrites partial[].
        __syncthreads();
    }
}

// dx[p][i] = dy[p] * (1 / plane_len) (the reciprocal rounded to f32 first, as on the CPU).
// One thread per dx element (grid-stride).
extern "C" __global__ void global_avg_pool_backward(const float* dy, float* dx, int planes, int plane_len)
{
    const float inv = 1.0f / (float)plane_len;
    const long long total = (long long)planes * plane_len;
    for (long long idx = (long long)blockIdx.x * blockDim.x + threadIdx.x; idx < total; idx += (long long)gridDim.x * blockDim.x) {
        dx[idx] = dy[idx / plane_len] * inv;
    }
}
