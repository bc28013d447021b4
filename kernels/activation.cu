// ReLU and inverted dropout. Element-wise: grid-stride loops, one thread per element.

// y = max(x, 0).
extern "C" __global__ void relu_forward(const float* x, float* y, int n)
{
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (long long)gridDim.x * blockDim.x) {
        y[i] = fmaxf(x[i], 0.0f);
    }
}

// dx = dy where the forward output y > 0, else 0.
extern "C" __global__ void relu_backward(const float* y, const float* dy, float* dx, int n)
{
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (long long)gridDim.x * blockDim.x) {
        dx[i] = y[i] > 0.0f ? dy[i] : 0.0f;
    }
}

// The CPU's counter-based uniform in [0, 1) for element `index` under `seed` (SplitMix64
// finaliser, crates/tensor/src/cpu/activation.rs): the same 64-bit wrapping arithmetic, so every
// element draws bit-for-bit what the CPU draws, whatever thread computes it.
__device__ __forceinline__ float uniform(unsigned long long seed, unsigned long long index)
{
    unsigned long long z = seed + (index + 1ULL) * 0x9E3779B97F4A7C15ULL;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    z ^= z >> 31;
    // The top 24 bits are exact in f32; the scale is a power of two, so the product is exact.
    return (float)(z >> 40) * (1.0f / 16777216.0f);
}

// Inverted dropout: keep element i when uniform(seed, i) >= p; mask = keep ? 1 / (1 - p) : 0
// (rounded in f32 as on the CPU), y = x * mask. Backward is dx = dy * mask (the `mul` kernel).
extern "C" __global__ void dropout_forward(const float* x, float* y, float* mask, int n, float p, unsigned long long seed)
{
    const float keep_scale = 1.0f / (1.0f - p);
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (long long)gridDim.x * blockDim.x) {
        const bool keep = uniform(seed, (unsigned long long)i) >= p;
        const float m = keep ? keep_scale : 0.0f;
        mask[i] = m;
        y[i] = x[i] * m;
    }
}
