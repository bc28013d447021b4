// Host emulation of the CUDA subset kernels/*.cu use, so their logic can be tested without a GPU:
// one std::thread per CUDA thread, blocks run one after another (so `static` stands in for
// __shared__), __syncthreads is a barrier. It checks semantics, not speed or GPU rounding.
// Blocks run in an order that `g_block_order` picks (a seeded shuffle unless 0), since a GPU
// gives no order: a kernel whose result depends on which block runs last fails under a second
// order.
#pragma once
#include <algorithm>
#include <atomic>
#include <cmath>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <random>
#include <thread>
#include <vector>
struct dim3 { unsigned x = 1, y = 1, z = 1; };
inline thread_local dim3 threadIdx, blockIdx;
inline dim3 blockDim, gridDim;
struct alignas(16) float4 { float x, y, z, w; };
inline float4 make_float4(float a, float b, float c, float d) { return float4{a, b, c, d}; }
struct alignas(8) float2 { float x, y; };
inline float2 make_float2(float a, float b) { return float2{a, b}; }
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
// A block's threads run at once and blocks one after another, so a sequentially consistent
// fence and atomic are the strongest reading of __threadfence and atomicAdd; __ldcg is a load.
inline void __threadfence() { std::atomic_thread_fence(std::memory_order_seq_cst); }
inline int atomicAdd(int* p, int v) { return __atomic_fetch_add(p, v, __ATOMIC_SEQ_CST); }
inline float __ldcg(const float* p) { float v; __atomic_load(p, &v, __ATOMIC_SEQ_CST); return v; }
// Defined below, with the tensor-core emulation.
inline void reset_block_state(unsigned threads);
// 0: blocks in index order (x fastest); otherwise the seed of a shuffle of them.
inline unsigned g_block_order = 1;
template <typename... P, typename... A>
void launch(dim3 grid, dim3 block, void (*k)(P...), A... args) {
    gridDim = grid; blockDim = block;
    std::vector<dim3> order;
    for (unsigned bz = 0; bz < grid.z; ++bz) for (unsigned by = 0; by < grid.y; ++by) for (unsigned bx = 0; bx < grid.x; ++bx)
        order.push_back(dim3{bx, by, bz});
    if (g_block_order != 0) {
        std::mt19937 rng(g_block_order);
        std::shuffle(order.begin(), order.end(), rng);
    }
    for (const dim3 b : order) {
        const unsigned bx = b.x, by = b.y, bz = b.z;
        g_barrier.total = block.x * block.y * block.z; g_barrier.count = 0;
        reset_block_state(block.x);
        std::vector<std::thread> ts;
        for (unsigned t = 0; t < block.x; ++t)
            ts.emplace_back([=] { blockIdx = dim3{bx, by, bz}; threadIdx = dim3{t, 0, 0}; k(args...); });
        for (auto& t : ts) t.join();
    }
}

// ---- Tensor-core and asynchronous-copy instructions, emulated lane by lane -------------------
// kernels/gemm.cu calls these through device functions of the same names (inline PTX on the
// GPU). Each follows the PTX ISA section named beside it.
#define CONVNET_EMU 1
#include <cstdint>

// Dynamic shared memory: one buffer, as blocks run one after another. Filled with NaN at every
// block's start, so a tile element that no copy wrote poisons the result.
inline float g_dynamic_smem[64 * 1024] __attribute__((aligned(16)));
#define DYNAMIC_SHARED(NAME) float* NAME = g_dynamic_smem

// PTX ISA "cvt" (.rna, .tf32.f32): round to the nearest TF32 (10 mantissa bits), ties away from
// zero; the low 13 bits of the result are zero. NaN and infinity pass through.
inline unsigned to_tf32(float x)
{
    unsigned u;
    std::memcpy(&u, &x, 4);
    if ((u & 0x7f800000u) == 0x7f800000u) {
        return u;
    }
    return (u + 0x1000u) & 0xffffe000u;
}

inline float __uint_as_float(unsigned u) { float v; std::memcpy(&v, &u, 4); return v; }
// The raw bits of a float rounded as to_tf32 rounds it (kernels/gemm.cu's round_tf32).
inline unsigned round_tf32(unsigned bits) { return to_tf32(__uint_as_float(bits)); }

// The lanes of each warp meet here: an mma.sync or ldmatrix needs all 32 lanes' operands at once.
inline Barrier g_warp_barrier[32];
struct WarpFragments {
    unsigned a[32][4];
    unsigned b[32][2];
    float c[32][4];
};
inline WarpFragments g_warp_fragments[32];

// PTX ISA "mma" with the fragment layouts of "Matrix Fragments for mma.m16n8k8": .tf32 A (16 x 8,
// row = groupID (+8 for a1, a3), col = threadID_in_group (+4 for a2, a3)), .tf32 B (8 x 8, row =
// threadID_in_group (+4 for b1), col = groupID), .f32 C and D (16 x 8, row = groupID (+8 for
// c2, c3), col = 2 threadID_in_group (+1 for c1, c3)); groupID = laneid >> 2, threadID_in_group
// = laneid % 4. The operands are read as TF32 (the low 13 bits of each .b32 ignored); each
// output is its eight products and C summed exactly, rounded once to FP32 (the hardware's
// order of accumulation is unspecified; this is its exact value).
inline void mma_m16n8k8_tf32(float (&d)[4], const unsigned (&a)[4], const unsigned (&b)[2])
{
    const unsigned lane = threadIdx.x % 32, warp = threadIdx.x / 32;
    WarpFragments& f = g_warp_fragments[warp];
    for (int i = 0; i < 4; ++i) f.a[lane][i] = a[i];
    for (int i = 0; i < 2; ++i) f.b[lane][i] = b[i];
    for (int i = 0; i < 4; ++i) f.c[lane][i] = d[i];
    g_warp_barrier[warp].wait();
    auto tf32 = [](unsigned u) { u &= 0xffffe000u; float v; std::memcpy(&v, &u, 4); return (double)v; };
    double A[16][8], B[8][8], C[16][8];
    for (unsigned l = 0; l < 32; ++l) {
        const unsigned g = l >> 2, t = l % 4;
        A[g][t] = tf32(f.a[l][0]);
        A[g + 8][t] = tf32(f.a[l][1]);
        A[g][t + 4] = tf32(f.a[l][2]);
        A[g + 8][t + 4] = tf32(f.a[l][3]);
        B[t][g] = tf32(f.b[l][0]);
        B[t + 4][g] = tf32(f.b[l][1]);
        C[g][2 * t] = f.c[l][0];
        C[g][2 * t + 1] = f.c[l][1];
        C[g + 8][2 * t] = f.c[l][2];
        C[g + 8][2 * t + 1] = f.c[l][3];
    }
    const unsigned g = lane >> 2, t = lane % 4;
    const unsigned rows[4] = {g, g, g + 8, g + 8}, cols[4] = {2 * t, 2 * t + 1, 2 * t, 2 * t + 1};
    for (int i = 0; i < 4; ++i) {
        double s = C[rows[i]][cols[i]];
        for (int k = 0; k < 8; ++k) s += A[rows[i]][k] * B[k][cols[i]];
        d[i] = (float)s;
    }
    // Nobody overwrites the fragments before every lane has read them.
    g_warp_barrier[warp].wait();
}

// PTX ISA "ldmatrix" (.sync.aligned.m8n8.x4.shared.b16), "Matrix fragment for ldmatrix": lanes
// 8q..8q+7 hold the addresses of the eight rows of matrix q, each row eight 16-bit elements (16
// bytes, 16-byte aligned, in shared memory); lane l receives in its register q the elements
// 2 (l % 4) and 2 (l % 4) + 1 of row l / 4 of matrix q, the lower-numbered one in the low half.
inline const unsigned char* g_warp_rows[32][32];
inline void ldmatrix_x4(unsigned (&r)[4], const float* row)
{
    const unsigned lane = threadIdx.x % 32, warp = threadIdx.x / 32;
    const auto* p = reinterpret_cast<const unsigned char*>(row);
    const auto* smem = reinterpret_cast<const unsigned char*>(g_dynamic_smem);
    if (reinterpret_cast<std::uintptr_t>(p) % 16 != 0 || p < smem || p + 16 > smem + sizeof(g_dynamic_smem)) {
        std::printf("FAIL ldmatrix: lane %u's row address is not a 16-byte aligned row of shared memory\n", lane);
        std::abort();
    }
    g_warp_rows[warp][lane] = p;
    g_warp_barrier[warp].wait();
    for (unsigned q = 0; q < 4; ++q) {
        std::memcpy(&r[q], g_warp_rows[warp][8 * q + lane / 4] + 4 * (lane % 4), 4);
    }
    // Nobody overwrites the addresses before every lane has read them.
    g_warp_barrier[warp].wait();
}

// PTX ISA "cp.async", "cp.async.commit_group", "cp.async.wait_group": a copy joins the thread's
// current group and takes effect no sooner than the wait that retires its group (so a kernel
// that reads shared memory before waiting reads stale data, as it may on a GPU). src_bytes < cp
// size: the rest of the destination is zero-filled.
struct AsyncCopy {
    float* dst;
    const float* src;
    int cp_bytes;
    int src_bytes;
};
inline thread_local std::vector<std::vector<AsyncCopy>> t_copy_groups;  // committed, oldest first
inline thread_local std::vector<AsyncCopy> t_copy_open;                  // the current group
inline void cp_async(float* dst, const float* src, int cp_bytes, int src_bytes)
{
    if (reinterpret_cast<std::uintptr_t>(dst) % cp_bytes != 0 || reinterpret_cast<std::uintptr_t>(src) % cp_bytes != 0) {
        std::printf("FAIL cp.async of %d bytes: unaligned address\n", cp_bytes);
        std::abort();
    }
    t_copy_open.push_back(AsyncCopy{dst, src, cp_bytes, src_bytes});
}
inline void cp_async_16(float* dst, const float* src, int src_bytes) { cp_async(dst, src, 16, src_bytes); }
inline void cp_async_4(float* dst, const float* src, int src_bytes) { cp_async(dst, src, 4, src_bytes); }
inline void cp_async_commit()
{
    t_copy_groups.push_back(std::move(t_copy_open));
    t_copy_open.clear();
}
template <int N>
inline void cp_async_wait()
{
    while (t_copy_groups.size() > (size_t)N) {
        for (const AsyncCopy& c : t_copy_groups.front()) {
            std::memset(c.dst, 0, c.cp_bytes);
            std::memcpy(c.dst, c.src, c.src_bytes);
        }
        t_copy_groups.erase(t_copy_groups.begin());
    }
}

// Every block starts with poisoned dynamic shared memory and its warps' meeting points set.
inline void reset_block_state(unsigned threads)
{
    std::fill(std::begin(g_dynamic_smem), std::end(g_dynamic_smem), NAN);
    for (unsigned w = 0; w < (threads + 31) / 32; ++w) {
        g_warp_barrier[w].total = std::min(32u, threads - 32 * w);
        g_warp_barrier[w].count = 0;
    }
}
