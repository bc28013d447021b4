// Per-channel bias over an outer x channels x inner layout (NCHW: N, C, H*W; linear: N, C, 1).

// y[(o * channels + c) * inner + i] += bias[c]. Grid-stride, one thread per element of y.
extern "C" __global__ void add_bias(float* y, const float* bias, int outer, int channels, int inner)
{
    const long long total = (long long)outer * channels * inner;
    for (long long idx = (long long)blockIdx.x * blockDim.x + threadIdx.x; idx < total; idx += (long long)gridDim.x * blockDim.x) {
        const int c = (int)((idx / inner) % channels);
        y[idx] += bias[c];
    }
}

// An enumerator, not a constexpr variable, which -default-device would emit as a global.
enum : int { BIAS_THREADS = 256 };

// dbias[c] = sum over o, i of dy[(o * channels + c) * inner + i]. One block per channel (blocks
// stride over channels if the grid is smaller). Each thread walks a fixed subset of the channel's
// outer * inner values, accumulating in double, then a shared-memory tree combines the 256
// partials in a fixed order, so the result does not depend on scheduling.
extern "C" __global__ void __launch_bounds__(BIAS_THREADS) bias_grad(const float* dy, float* dbias, int outer, int channels, int inner)
{
    __shared__ double partial[BIAS_THREADS];
    const int t = threadIdx.x;
    // Thread t visits flat positions j = t, t + 256, ... of the channel's (o, i) grid; (o, i) is
    // advanced incrementally to avoid a division per element (inner may be 1 or large).
    // An empty plane (inner == 0) sums to 0: no division by it.
    const int safe_inner = inner > 0 ? inner : 1;
    const int step_o = BIAS_THREADS / safe_inner;
    const int step_i = BIAS_THREADS % safe_inner;
    for (int c = blockIdx.x; c < channels; c += gridDim.x) {
        double s = 0.0;
        int o = inner > 0 ? t / inner : outer;
        int i = t % safe_inner;
        while (o < outer) {
            s += (double)dy[((long long)o * channels + c) * inner + i];
            o += step_o;
            i += step_i;
            if (i >= inner) {
                i -= inner;
                ++o;
            }
        }
        partial[t] = s;
        __syncthreads();
        for (int half = BIAS_THREADS / 2; half > 0; half /= 2) {
            if (t < half) {
                partial[t] += partial[t + half];
            }
            __syncthreads();
        }
        if (t == 0) {
            dbias[c] = (float)partial[0];
        }
        // Before the next channel overwrites partial[].
        __syncthreads();
    }
}
