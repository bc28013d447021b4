// Fused softmax cross-entropy over n rows of `classes` logits; labels are class indices stored
// as f32. Row statistics are computed in double, exactly as crates/tensor/src/cpu/loss.rs does.

// Per row: the index of the first maximum (strict >) and log-sum-exp, max + log(sum exp(v - max)).
__device__ __forceinline__ double row_stats(const float* row, int classes, int* arg)
{
    int best = 0;
    for (int j = 1; j < classes; ++j) {
        if (row[j] > row[best]) {
            best = j;
        }
    }
    const double max = (double)row[best];
    double s = 0.0;
    for (int j = 0; j < classes; ++j) {
        s += exp((double)row[j] - max);
    }
    *arg = best;
    return max + log(s);
}

// An enumerator, not a constexpr variable, which -default-device would emit as a global.
enum : int { LOSS_THREADS = 256 };

// loss[0] = mean over rows of (lse - logit[label]); correct[0] = rows whose arg-max is the label.
// A single block of 256 threads: thread t takes rows t, t + 256, ..., accumulating in double;
// a shared-memory tree then combines the partials in a fixed order (deterministic).
extern "C" __global__ void __launch_bounds__(LOSS_THREADS, 1)
    softmax_cross_entropy_forward(const float* logits, const float* labels, int n, int classes, float* loss, float* correct)
{
    __shared__ double loss_part[LOSS_THREADS];
    __shared__ int correct_part[LOSS_THREADS];
    const int t = threadIdx.x;
    double s = 0.0;
    int hits = 0;
    for (int r = t; r < n; r += LOSS_THREADS) {
        const float* row = logits + (long long)r * classes;
        const int label = (int)labels[r];
        int arg;
        const double lse = row_stats(row, classes, &arg);
        s += lse - (double)row[label];
        hits += arg == label;
    }
    loss_part[t] = s;
    correct_part[t] = hits;
    __syncthreads();
    for (int half = LOSS_THREADS / 2; half > 0; half /= 2) {
        if (t < half) {
            loss_part[t] += loss_part[t + half];
            correct_part[t] += correct_part[t + half];
        }
        __syncthreads();
    }
    if (t == 0 && blockIdx.x == 0) {
        loss[0] = (float)(loss_part[0] / (double)n);
        correct[0] = (float)correct_part[0];
    }
}

// dlogits[r][j] = dloss[0] * (softmax(row r)[j] - onehot(label r)[j]) / n, in double and rounded
// once to f32 as on the CPU. One thread per row (grid-stride over rows).
extern "C" __global__ void softmax_cross_entropy_backward(const float* logits, const float* labels, int n, int classes, const float* dloss,
                                                          float* dlogits)
{
    const double scale = (double)dloss[0] / (double)n;
    for (long long r = (long long)blockIdx.x * blockDim.x + threadIdx.x; r < n; r += (long long)gridDim.x * blockDim.x) {
        const float* row = logits + r * classes;
        float* d = dlogits + r * classes;
        const int label = (int)labels[r];
        int arg;
        const double lse = row_stats(row, classes, &arg);
        for (int j = 0; j < classes; ++j) {
            const double p = exp((double)row[j] - lse);
            const double onehot = j == label ? 1.0 : 0.0;
            d[j] = (float)((p - onehot) * scale);
        }
    }
}
