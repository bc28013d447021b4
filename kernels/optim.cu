// Optimizer updates with PyTorch's formulas, element-wise over one parameter: grid-stride loops,
// one thread per element. They follow crates/tensor/src/cpu/optim.rs operation by operation;
// every product that feeds an addition is rounded on its own (__fmul_rn) so it is never fused
// into an FMA, which would round differently from the CPU and break bit-exact parity.

// SGD without momentum: p -= lr * (g + weight_decay * p).
extern "C" __global__ void sgd_step(float* p, const float* g, int n, float lr, float weight_decay)
{
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (long long)gridDim.x * blockDim.x) {
        const float pi = p[i];
        const float gi = g[i] + __fmul_rn(weight_decay, pi);
        p[i] = pi - __fmul_rn(lr, gi);
    }
}

// SGD with momentum: v = momentum * v + (g + weight_decay * p); p -= lr * v.
extern "C" __global__ void sgd_momentum_step(float* p, const float* g, float* v, int n, float lr, float momentum, float weight_decay)
{
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (long long)gridDim.x * blockDim.x) {
        const float pi = p[i];
        const float gi = g[i] + __fmul_rn(weight_decay, pi);
        const float vi = __fmul_rn(momentum, v[i]) + gi;
        v[i] = vi;
        p[i] = pi - __fmul_rn(lr, vi);
    }
}

// Adam with L2 weight decay: g' = g + wd * p; m = b1 m + (1 - b1) g'; v = b2 v + (1 - b2) g'^2;
// p -= step_size * m / (sqrt(v) * inv_sqrt_bc2 + eps). The host computes
// step_size = lr / (1 - b1^t) and inv_sqrt_bc2 = 1 / sqrt(1 - b2^t) in f64, then rounds to f32.
// sqrtf and the division are IEEE-rounded (no fast-math), as on the CPU.
extern "C" __global__ void adam_step(float* p, const float* g, float* m, float* v, int n, float beta1, float beta2, float eps,
                                     float weight_decay, float step_size, float inv_sqrt_bc2)
{
    const float one_minus_b1 = 1.0f - beta1;
    const float one_minus_b2 = 1.0f - beta2;
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (long long)gridDim.x * blockDim.x) {
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
}
