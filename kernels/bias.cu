// Per-channel bias over an outer x channels x inner layout (NCHW: N, C, H*W; linear: N, C, 1):
// adding it, its gradient, and both fused with ReLU (a convolution's output, and its backward,
// in one pass each). Index arithmetic is 32-bit where the tensor allows (I = int), 64-bit past
// 2^31 values.

#include "arrival.cuh"

// y[(o * channels + c) * inner + i] += bias[c]; with `relu`, then y = max(y, 0); bias may be null
// (ReLU alone). Grid-stride, one thread per element of y.
template <typename I>
__device__ __forceinline__ void bias_map(float* y, const float* bias, I total, int channels, int inner, bool relu)
{
    for (I idx = (I)blockIdx.x * blockDim.x + threadIdx.x; idx < total; idx += (I)gridDim.x * blockDim.x) {
        float v = y[idx];
        if (bias != nullptr) {
            v += bias[(int)((idx / inner) % channels)];
        }
        y[idx] = relu ? fmaxf(v, 0.0f) : v;
    }
}

extern "C" __global__ void add_bias(float* y, const float* bias, int outer, int channels, int inner)
{
    const long long total = (long long)outer * channels * inner;
    if (total <= 0x7fffffffLL) {
        bias_map<int>(y, bias, (int)total, channels, inner, false);
    } else {
        bias_map<long long>(y, bias, total, channels, inner, false);
    }
}

// y = max(y + bias[c], 0) in place (bias null: max(y, 0)), as the CPU's bias_relu computes it.
extern "C" __global__ void bias_relu(float* y, const float* bias, int outer, int channels, int inner)
{
    const long long total = (long long)outer * channels * inner;
    if (total <= 0x7fffffffLL) {
        bias_map<int>(y, bias, (int)total, channels, inner, true);
    } else {
        bias_map<long long>(y, bias, total, channels, inner, true);
    }
}

// An enumerator, not a constexpr variable, which -default-device would emit as a global.
enum : int { BIAS_THREADS = 256 };

// Whether p is 16-byte aligned (null counts as aligned: nothing is read through it).
__device__ __forceinline__ bool aligned16(const void* p)
{
    return ((unsigned long long)p & 15) == 0;
}

// V consecutive values of a plane at `at`: one float4 load when V is 4.
template <int V>
struct Pack {
    float v[V];
};

template <int V>
__device__ __forceinline__ Pack<V> load_pack(const float* p)
{
    Pack<V> r;
    if constexpr (V == 4) {
        const float4 q = *reinterpret_cast<const float4*>(p);
        r.v[0] = q.x;
        r.v[1] = q.y;
        r.v[2] = q.z;
        r.v[3] = q.w;
    } else {
        r.v[0] = *p;
    }
    return r;
}

template <int V>
__device__ __forceinline__ void store_pack(float* p, const Pack<V>& r)
{
    if constexpr (V == 4) {
        *reinterpret_cast<float4*>(p) = make_float4(r.v[0], r.v[1], r.v[2], r.v[3]);
    } else {
        *p = r.v[0];
    }
}

// Channel c's sum over the items [o_begin, o_end) of a part, V values (one load) at a time: the
// block's threads walk the part's (o, i) positions t, t + 256, ... in units of V (consecutive
// threads read consecutive values of a plane), accumulating in double in the values' order;
// then a shared-memory tree adds the 256 partials in a fixed order. With `dz`, each value is
// first masked by y (dz = y > 0 ? dy : 0) and written to dz: at the value's own place, or with
// `dz_rows` channel by channel (value (o, c, i) at dz[(c * outer + o) * inner + i]: the
// [channels][outer * inner] matrix a convolution's backward products read).
template <int V>
__device__ __forceinline__ double channel_sum(const float* y, const float* dy, float* dz, int dz_rows, int c, int channels,
                                              int outer, int inner, int o_begin, int o_end, double* sums)
{
    const int t = threadIdx.x;
    const int units = inner / V;  // V divides inner here
    // (o, i) advances incrementally: no division per element. An empty plane sums to 0.
    const int safe_units = units > 0 ? units : 1;
    const int step_o = BIAS_THREADS / safe_units;
    const int step_i = BIAS_THREADS % safe_units;
    double s = 0.0;
    int o = units > 0 ? o_begin + t / units : o_end;
    int i = t % safe_units;
    while (o < o_end) {
        const long long at = ((long long)o * channels + c) * inner + (long long)i * V;
        Pack<V> g = load_pack<V>(dy + at);
        if (dz != nullptr) {
            const Pack<V> f = load_pack<V>(y + at);
#pragma unroll
            for (int j = 0; j < V; ++j) {
                g.v[j] = f.v[j] > 0.0f ? g.v[j] : 0.0f;
            }
            store_pack<V>(dz + (dz_rows ? ((long long)c * outer + o) * inner + (long long)i * V : at), g);
        }
#pragma unroll
        for (int j = 0; j < V; ++j) {
            s += (double)g.v[j];
        }
        o += step_o;
        i += step_i;
        if (i >= units) {
            i -= units;
            ++o;
        }
    }
    sums[t] = s;
    __syncthreads();
    for (int half = BIAS_THREADS / 2; half > 0; half /= 2) {
        if (t < half) {
            sums[t] += sums[t + half];
        }
        __syncthreads();
    }
    const double total = sums[0];
    // Before the next channel overwrites sums[].
    __syncthreads();
    return total;
}

// dbias[c] = the sum of channel c of dy, in `parts` pieces per channel so that small channel
// counts still fill the GPU: block (c, part) sums channel c over the items o of its part (a
// contiguous range of `outer`) and all of `inner`. With one part that sum is dbias[c]; with more
// it goes to partial[c * parts + part], and the block that finishes channel c's last part
// (arrival.cuh: counters[c], zeroed) adds partial[c * parts + 0..parts) in that order, in double,
// into dbias[c]. With `dz` non-null it is the backward of bias + ReLU: each value is first masked
// by the forward output y (dz = y > 0 ? dy : 0), written to dz, and the masked value summed: one
// pass over y and dy; with `dz_rows`, dz is written channel by channel (see channel_sum). Planes
// whose length 4 divides, in 16-byte aligned buffers, are read and written a float4 at a time
// (NiN's and most of GoogLeNet's); the rest a float at a time. Blocks stride over channels if
// the grid is smaller.
extern "C" __global__ void __launch_bounds__(BIAS_THREADS)
    channel_sums(const float* y, const float* dy, float* dz, int dz_rows, float* partial, int* counters, float* dbias,
                 int outer, int channels, int inner, int parts)
{
    __shared__ double sums[BIAS_THREADS];
    const int part = blockIdx.y;
    const int per = (outer + parts - 1) / parts;
    const int o_begin = min(part * per, outer);
    const int o_end = min(o_begin + per, outer);
    const bool wide = inner % 4 == 0 && aligned16(y) && aligned16(dy) && aligned16(dz);
    for (int c = blockIdx.x; c < channels; c += gridDim.x) {
        const double s = wide ? channel_sum<4>(y, dy, dz, dz_rows, c, channels, outer, inner, o_begin, o_end, sums)
                              : channel_sum<1>(y, dy, dz, dz_rows, c, channels, outer, inner, o_begin, o_end, sums);
        if (parts == 1) {
            if (threadIdx.x == 0) {
                dbias[c] = (float)s;
            }
            continue;
        }
        if (threadIdx.x == 0) {
            partial[(long long)c * parts + part] = (float)s;
        }
        if (last_to_arrive(counters + c, parts) && threadIdx.x == 0) {
            double total = 0.0;
            for (int p = 0; p < parts; ++p) {
                total += (double)__ldcg(partial + (long long)c * parts + p);
            }
            dbias[c] = (float)total;
        }
    }
}
