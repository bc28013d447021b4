// Host emulation of the CUDA subset kernels/*.cu use, so their logic can be tested without a GPU:
// one std::thread per CUDA thread, blocks run one after another (so `static` stands in for
// __shared__), __syncthreads is a barrier. It checks semantics, not speed or GPU rounding.
#pragma once
#include <algorithm>
#include <cmath>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <thread>
#include <vector>
struct dim3 { unsigned x = 1, y = 1, z = 1; };
inline thread_local dim3 threadIdx, blockIdx;
inline dim3 blockDim, gridDim;
struct alignas(16) float4 { float x, y, z, w; };
inline float4 make_float4(float a, float b, float c, float d) { return float4{a, b, c, d}; }
#define __global__
#define __device__
#define __forceinline__ inline
#define __launch_bounds__(...)
#define __shared__ static
#define __align__(n) __attribute__((aligned(n)))
inline float __fmul_rn(float a, float b) { return a * b; }
using std::max;
using std::min;
struct Barrier {
    std::mutex m; std::condition_variable cv; unsigned count = 0, total = 0, gen = 0;
    void wait() {
        std::unique_lock<std::mutex> l(m);
        unsigned g = gen;
        if (++count == total) { count = 0; ++gen; cv.notify_all(); }
        else cv.wait(l, [&] { return gen != g; });
    }
};
inline Barrier g_barrier;
inline void __syncthreads() { g_barrier.wait(); }
template <typename... P, typename... A>
void launch(dim3 grid, dim3 block, void (*k)(P...), A... args) {
    gridDim = grid; blockDim = block;
    for (unsigned bz = 0; bz < grid.z; ++bz) for (unsigned by = 0; by < grid.y; ++by) for (unsigned bx = 0; bx < grid.x; ++bx) {
        g_barrier.total = block.x * block.y * block.z; g_barrier.count = 0;
        std::vector<std::thread> ts;
        for (unsigned t = 0; t < block.x; ++t)
            ts.emplace_back([=] { blockIdx = dim3{bx, by, bz}; threadIdx = dim3{t, 0, 0}; k(args...); });
        for (auto& t : ts) t.join();
    }
}
