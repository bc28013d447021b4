// Optimizer updates with PyTorch's formulas, element-wise: over one parameter (grid-stride
// loops, one thread per element), or over many in one launch (the *_steps kernels, PyTorch's
// multi-tensor "foreach" step: a table of the parameters' pointers, one block per chunk of one
// parameter). Each element's update is one device function, shared by both, following
// crates/tensor/src/cpu/optim.rs operation by operation; every product that feeds an addition
// is rounded on its own (__fmul_rn) so it is never fused into an FMA, which would round
// differently from the CPU and break bit-exact parity.

// SGD without momentum: p -= lr * (g + weight_decay * p).
__device__ void sgd_update(float* p, const float* g, long long i, float lr, float weight_decay)
{
    const float pi = p[i];
    const float gi = g[i] + __fmul_rn(weight_decay, pi);
    p[i] = pi - __fmul_rn(lr, gi);
}

// SGD with momentum: v = momentum * v + (g + weight_decay * p); p -= lr * v.
__device__ void sgd_momentum_update(float* p, const float* g, float* v, long long i, float lr, float momentum,
                                    float weight_decay)
{
    const float pi = p[i];
    const float gi = g[i] + __fmul_rn(weight_decay, pi);
    const float vi = __fmul_rn(momentum, v[i]) + gi;
    v[i] = vi;
    p[i] = pi - __fmul_rn(lr, vi);
}

extern "C" __global__ void sgd_step(float* p, const float* g, int n, float lr, float weight_decay)
{
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (long long)gridDim.x * blockDim.x) {
        sgd_update(p, g, i, lr, weight_decay);
    }
}

extern "C" __global__ void sgd_momentum_step(float* p, const float* g, float* v, int n, float lr, float momentum, float weight_decay)
{
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (long long)gridDim.x * blockDim.x) {
        sgd_momentum_update(p, g, v, i, lr, momentum, weight_decay);
    }
}

// Adam with L2 weight decay: g' = g + wd * p; m = b1 m + (1 - b1) g'; v = b2 v + (1 - b2) g'^2;
// p -= step_size * m / (sqrt(v) * inv_sqrt_bc2 + eps). The host computes
// step_size = lr / (1 - b1^t) and inv_sqrt_bc2 = 1 / sqrt(1 - b2^t) in f64, then rounds to f32.
// sqrtf and the division are IEEE-rounded (no fast-math), as on the CPU.
__device__ void adam_update(float* p, const float* g, float* m, float* v, long long i, float beta1, float beta2, float eps,
                            float weight_decay, float step_size, float inv_sqrt_bc2)
{
    const float one_minus_b1 = 1.0f - beta1;
    const float one_minus_b2 = 1.0f - beta2;
    const float pi = p[i];
    const float gi = g[i] + __fmul_rn(weight_decay, pi);
    const float mi = __fmul_rn(beta1, m[i]) + __fmul_rn(one_minus_b1, gi);
    // (1 - b2) * g * g associates left, as in Rust.
    const float vi = __fmul_rn(beta2, v[i]) + __fmul_rn(__fmul_rn(one_minus_b2, gi), gi);
    m[i] = mi;
    v[i] = vi;
    const float denom = __fmul_rn(sqrtf(vi), inv_sqrt_bc2) + eps;
    p[i] = pi - __fmul_rn(step_size, mi) / denom;
}

extern "C" __global__ void adam_step(float* p, const float* g, float* m, float* v, int n, float beta1, float beta2, float eps,
                                     float weight_decay, float step_size, float inv_sqrt_bc2)
{
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (long long)gridDim.x * blockDim.x) {
        adam_update(p, g, m, v, i, beta1, beta2, eps, weight_decay, step_size, inv_sqrt_bc2);
    }
}

// The multi-tensor table, 64-bit words: first OPTIM_WORDS per parameter (its value's pointer,
// its gradient's, its two state buffers' or 0, its length), then two per block (which
// parameter, and the first element of its chunk of OPTIM_CHUNK). The host builds it for
// every launch: gradients are new buffers each step.
enum : int { OPTIM_WORDS = 5, OPTIM_CHUNK = 4096 };

struct OptimChunk {
    float* p;
    const float* g;
    float* s1;
    float* s2;
    long long start, end;
};

__device__ OptimChunk optim_chunk(const unsigned long long* table, int tensors)
{
    const unsigned long long* chunk = table + (long long)OPTIM_WORDS * tensors + 2LL * blockIdx.x;
    const unsigned long long* t = table + OPTIM_WORDS * chunk[0];
    OptimChunk c;
    c.p = (float*)t[0];
    c.g = (const float*)t[1];
    c.s1 = (float*)t[2];
    c.s2 = (float*)t[3];
    c.start = (long long)chunk[1];
    const long long n = (long long)t[4];
    c.end = c.start + OPTIM_CHUNK < n ? c.start + OPTIM_CHUNK : n;
    return c;
}

extern "C" __global__ void sgd_steps(const unsigned long long* table, int tensors, float lr, float weight_decay)
{
    const OptimChunk c = optim_chunk(table, tensors);
    for (long long i = c.start + threadIdx.x; i < c.end; i += blockDim.x) {
        sgd_update(c.p, c.g, i, lr, weight_decay);
    }
}

extern "C" __global__ void sgd_momentum_steps(const unsigned long long* table, int tensors, float lr, float momentum,
                                              float weight_decay)
{
    const OptimChunk c = optim_chunk(table, tensors);
    for (long long i = c.start + threadIdx.x; i < c.end; i += blockDim.x) {
        sgd_momentum_update(c.p, c.g, c.s1, i, lr, momentum, weight_decay);
    }
}

extern "C" __global__ void adam_steps(const unsigned long long* table, int tensors, float beta1, float beta2, float eps,
                                      float weight_decay, float step_size, float inv_sqrt_bc2)
{
    const OptimChunk c = optim_chunk(table, tensors);
    for (long long i = c.start + threadIdx.x; i < c.end; i += blockDim.x) {
        adam_update(c.p, c.g, c.s1, c.s2, i, beta1, beta2, eps, weight_decay, step_size, inv_sqrt_bc2);
    }
}
