// Element-wise maps, the full sum, and the channel copies behind concatenation and split.
// Maps use grid-stride loops, one thread per element. Products that feed an addition are
// rounded on their own (__fmul_rn) so the compiler cannot fuse them into an FMA: the CPU rounds
// both steps, and the results must match it bit for bit.

// x[i] = value.
extern "C" __global__ void fill(float* x, int n, float value)
{
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (long long)gridDim.x * blockDim.x) {
        x[i] = value;
    }
}

// y[i] += alpha * x[i].
extern "C" __global__ void axpy(float alpha, const float* x, float* y, int n)
{
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (long long)gridDim.x * blockDim.x) {
        y[i] = y[i] + __fmul_rn(alpha, x[i]);
    }
}

// out[i] = a[i] * b[i].
extern "C" __global__ void mul(const float* a, const float* b, float* out, int n)
{
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (long long)gridDim.x * blockDim.x) {
        out[i] = a[i] * b[i];
    }
}

// x[i] *= alpha.
extern "C" __global__ void scale(float* x, int n, float alpha)
{
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (long long)gridDim.x * blockDim.x) {
        x[i] *= alpha;
    }
}

// An enumerator, not a constexpr variable, which -default-device would emit as a global.
enum : int { SUM_THREADS = 1024 };

// out[0] = sum of x[0..n), launched as a single block of 1024 threads. Thread t sums x[t],
// x[t + 1024], ... in double; a shared-memory tree then combines the partials in a fixed order,
// so the result is the same on every run.
extern "C" __global__ void __launch_bounds__(SUM_THREADS) sum(const float* x, float* out, int n)
{
    __shared__ double partial[SUM_THREADS];
    const int t = threadIdx.x;
    double s = 0.0;
    for (long long i = t; i < n; i += SUM_THREADS) {
        s += (double)x[i];
    }
    partial[t] = s;
    __syncthreads();
    for (int half = SUM_THREADS / 2; half > 0; half /= 2) {
        if (t < half) {
            partial[t] += partial[t + half];
        }
        __syncthreads();
    }
    if (t == 0 && blockIdx.x == 0) {
        out[0] = (float)partial[0];
    }
}

// For each of n images, copies channels src_first..src_first+count-1 of src (src_channels per
// image) to channels dst_first.. of dst (dst_channels per image), plane_len values per channel.
// One thread per copied element (grid-stride); each image's block of count * plane_len values is
// contiguous on both sides.
extern "C" __global__ void copy_channels(const float* src, int src_channels, int src_first, float* dst, int dst_channels, int dst_first,
                                         int count, int n, int plane_len)
{
    const long long block = (long long)count * plane_len;
    const long long total = (long long)n * block;
    for (long long idx = (long long)blockIdx.x * blockDim.x + threadIdx.x; idx < total; idx += (long long)gridDim.x * blockDim.x) {
        const long long img = idx / block;
        const long long r = idx % block;
        dst[(img * dst_channels + dst_first) * plane_len + r] = src[(img * src_channels + src_first) * plane_len + r];
    }
}

// Concatenation and split along channels, up to four parts a launch (Inception joins four
// branches; one launch instead of four saves three launches' fixed cost, which is most of what
// these small copies take). Part k has channels[k] channels and sits at channel first[k] of
// `whole` (whole_channels per image); n images, plane_len values per channel. One thread per
// value of the parts (grid-stride), ordered image, part, channel, position, so that consecutive
// threads read and write consecutive values on both sides.
struct ChannelPart {
    int part;     // which of the four
    long long at;  // the value's index in that part
    long long whole_at;  // and in the whole
};

__device__ ChannelPart locate_part(long long idx, int parts_channels, int whole_channels, int plane_len, int c0, int c1,
                                   int c2, int f0, int f1, int f2, int f3)
{
    const long long per_image = (long long)parts_channels * plane_len;
    const long long img = idx / per_image;
    const long long r = idx % per_image;
    int ch = (int)(r / plane_len);
    const long long pos = r % plane_len;
    int part = 0, channels = c0, first = f0;
    if (ch >= c0) {
        ch -= c0; part = 1; channels = c1; first = f1;
        if (ch >= c1) {
            ch -= c1; part = 2; channels = c2; first = f2;
            if (ch >= c2) {
                ch -= c2; part = 3; first = f3;
                channels = parts_channels - c0 - c1 - c2;
            }
        }
    }
    ChannelPart p;
    p.part = part;
    p.at = (img * channels + ch) * plane_len + pos;
    p.whole_at = (img * whole_channels + first + ch) * plane_len + pos;
    return p;
}

// whole[..., first[k] + j, ...] = part_k[..., j, ...] for the parts given (c_k = 0 for unused
// slots, whose pointers are never read).
extern "C" __global__ void concat_channels(float* whole, int whole_channels, int n, int plane_len, const float* p0,
                                           const float* p1, const float* p2, const float* p3, int c0, int c1, int c2,
                                           int c3, int f0, int f1, int f2, int f3)
{
    const int parts_channels = c0 + c1 + c2 + c3;
    const long long total = (long long)n * parts_channels * plane_len;
    for (long long idx = (long long)blockIdx.x * blockDim.x + threadIdx.x; idx < total; idx += (long long)gridDim.x * blockDim.x) {
        const ChannelPart p = locate_part(idx, parts_channels, whole_channels, plane_len, c0, c1, c2, f0, f1, f2, f3);
        const float* src = p.part == 0 ? p0 : p.part == 1 ? p1 : p.part == 2 ? p2 : p3;
        whole[p.whole_at] = src[p.at];
    }
}

// The reverse: part_k[..., j, ...] = whole[..., first[k] + j, ...].
extern "C" __global__ void split_channels(const float* whole, int whole_channels, int n, int plane_len, float* p0,
                                          float* p1, float* p2, float* p3, int c0, int c1, int c2, int c3, int f0,
                                          int f1, int f2, int f3)
{
    const int parts_channels = c0 + c1 + c2 + c3;
    const long long total = (long long)n * parts_channels * plane_len;
    for (long long idx = (long long)blockIdx.x * blockDim.x + threadIdx.x; idx < total; idx += (long long)gridDim.x * blockDim.x) {
        const ChannelPart p = locate_part(idx, parts_channels, whole_channels, plane_len, c0, c1, c2, f0, f1, f2, f3);
        float* dst = p.part == 0 ? p0 : p.part == 1 ? p1 : p.part == 2 ? p2 : p3;
        dst[p.at] = whole[p.whole_at];
    }
}

// Reads src (from src_offset) as a rows x cols matrix of block-long blocks and writes its
// transpose to dst (from dst_offset): [O][N][P] <-> [N][O][P] between a chunk's matrix-product
// layout and NCHW. One thread per element (grid-stride); consecutive threads move consecutive
// values of a block, so both sides are read and written in runs of `block`.
extern "C" __global__ void transpose_blocks(const float* src, long long src_offset, int rows, int cols, int block, float* dst,
                                            long long dst_offset)
{
    const long long total = (long long)rows * cols * block;
    for (long long idx = (long long)blockIdx.x * blockDim.x + threadIdx.x; idx < total; idx += (long long)gridDim.x * blockDim.x) {
        const long long k = idx % block;
        const long long rc = idx / block;  // output block index: c * rows + r
        const long long r = rc % rows;
        const long long c = rc / rows;
        dst[dst_offset + idx] = src[src_offset + (r * cols + c) * block + k];
    }
}
