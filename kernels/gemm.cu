// Row-major batched SGEMM: C_i = alpha * op(A_i) op(B_i) + beta * C_i, op(A) m x k, op(B) k x n.
//
// Each block of 256 threads computes one 64 x 64 tile of C; each thread owns a 4 x 4 patch of it
// in registers. The k dimension is walked in slices of 16: both operand slices are staged in
// shared memory (double-buffered, so one __syncthreads per slice), and the next slice is fetched
// from global memory into registers while the current one is being multiplied.
//
// Batching: blockIdx.z picks the item (grid-stride over z, so any batch works). With sum_batch,
// a block instead walks every item, accumulating all products into the same registers, and
// writes C = alpha * acc + beta * C once (weight gradients summed over the images of a batch).
//
// Split-k: a product with too few tiles to fill the GPU (a small C from a long sum, summed over
// the batch or not) is cut into `splits` contiguous parts of its sequence of (item, k slice)
// steps; block z writes its part's raw sums to W[z] (an m x n matrix each), and
// sgemm_split_reduce adds the parts (eight threads an output, in a fixed order) and applies
// alpha and beta. The order is fixed, so the result is the same on every run.
//
// Epilogue: the *_epilogue kernels (NN: a convolution's forward; TN: a 1x1 convolution's input
// gradient) also add a bias per row,
// apply ReLU and can store C's columns in blocks (NCHW from a chunk's product), so the output
// is written once, finished (see Epilogue below). With split-k the reduction applies it.
//
// Shared memory holds both operands k-major (S[kk][row or column]) so the inner product reads
// one float4 of A and one float4 of B per k. How a slice gets there depends on which dimension
// is contiguous in global memory (see fetch_tile / store_tile). Rows kk >= 8 of a slice store
// their columns XOR 8 (swizzle): the transposing store's rows kk and kk + 8 would otherwise
// fall on the same banks (68 floats a row: 4 banks apart per row, so 8 rows apart is 32).

// Enumerators, not constexpr variables: under -default-device those would become __device__
// globals in the PTX.
enum : int {
    BM = 64,        // rows of C per block
    BN = 64,        // columns of C per block
    BK = 16,        // k per shared-memory slice
    TM = 4,         // rows of C per thread
    TN = 4,         // columns of C per thread
    THREADS = 256,  // (BM / TM) * (BN / TN)
    LDS = 64 + 4,   // shared row length: +4 breaks the bank conflicts of the transposing store
};

static_assert((BM / TM) * (BN / TN) == THREADS, "one 4x4 patch per thread");
static_assert(BM * BK == 4 * THREADS && BN * BK == 4 * THREADS, "each thread stages 4 values of each operand");

__device__ __forceinline__ bool aligned16(const float* p)
{
    return (reinterpret_cast<unsigned long long>(p) & 15ULL) == 0;
}

// Reads this thread's 4 values of the slice rows [o0, o0 + 64) x k [k0, k0 + BK) of an operand
// whose "outer" dimension (m for A, n for B) has `outer` entries. Out-of-range values read as 0.
//   K_CONTIG: element (o, kk) is at X[o * ld + kk] (A not transposed, or B transposed). Four
//             threads share a row o and read 4 consecutive k each.
//   else:     element (o, kk) is at X[kk * ld + o] (A transposed, or B not transposed). Sixteen
//             threads share a k row and read 4 consecutive o each (256 contiguous bytes).
// `vec` (block-uniform) says ld % 4 == 0 and X is 16-byte aligned, so each group of 4 is either
// wholly inside or wholly outside the matrix and one float4 load is legal.
template <bool K_CONTIG>
__device__ __forceinline__ float4 fetch_tile(const float* X, long long ld, int outer, int k, int o0, int k0, bool vec)
{
    const int t = threadIdx.x;
    float4 r = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
    if (K_CONTIG) {
        const int o = o0 + t / 4;
        const int kk = k0 + (t % 4) * 4;
        if (o >= outer) {
            return r;
        }
        const float* p = X + (long long)o * ld + kk;
        if (vec) {
            if (kk < k) {
                r = *reinterpret_cast<const float4*>(p);
            }
        } else {
            if (kk + 0 < k) r.x = p[0];
            if (kk + 1 < k) r.y = p[1];
            if (kk + 2 < k) r.z = p[2];
            if (kk + 3 < k) r.w = p[3];
        }
    } else {
        const int kk = k0 + t / 16;
        const int o = o0 + (t % 16) * 4;
        if (kk >= k) {
            return r;
        }
        const float* p = X + (long long)kk * ld + o;
        if (vec) {
            if (o < outer) {
                r = *reinterpret_cast<const float4*>(p);
            }
        } else {
            if (o + 0 < outer) r.x = p[0];
            if (o + 1 < outer) r.y = p[1];
            if (o + 2 < outer) r.z = p[2];
            if (o + 3 < outer) r.w = p[3];
        }
    }
    return r;
}

// The column of S where element (kk, o) of a slice lives: o, XOR 8 in rows 8..15 (see the top).
// XOR 8 keeps aligned groups of 4 together, so float4 accesses stay whole.
__device__ __forceinline__ int swizzle(int kk, int o)
{
    return o ^ (kk & 8);
}

// Writes the values fetched by fetch_tile<K_CONTIG> into the k-major shared slice S[BK][LDS].
template <bool K_CONTIG>
__device__ __forceinline__ void store_tile(float (*S)[LDS], float4 r)
{
    const int t = threadIdx.x;
    if (K_CONTIG) {
        // Transposing store: 4 consecutive k of one row o go down a column of S.
        const int o = t / 4;
        const int kk = (t % 4) * 4;
        S[kk + 0][swizzle(kk + 0, o)] = r.x;
        S[kk + 1][swizzle(kk + 1, o)] = r.y;
        S[kk + 2][swizzle(kk + 2, o)] = r.z;
        S[kk + 3][swizzle(kk + 3, o)] = r.w;
    } else {
        const int kk = t / 16;
        const int o = (t % 16) * 4;
        *reinterpret_cast<float4*>(&S[kk][swizzle(kk, o)]) = r;
    }
}

// The operands of one batch item, with their float4 eligibility (uniform across the block).
struct Operands {
    const float* a;
    const float* b;
    bool a_vec;
    bool b_vec;
};

template <bool TA, bool TB>
__device__ __forceinline__ Operands operands(int item, int m, int n, int k, const float* A, long long a_off, long long a_stride,
                                             const float* B, long long b_off, long long b_stride)
{
    Operands op;
    op.a = A + a_off + (long long)item * a_stride;
    op.b = B + b_off + (long long)item * b_stride;
    const int lda = TA ? m : k;  // storage row length of A: k x m when transposed, else m x k
    const int ldb = TB ? k : n;  // storage row length of B: n x k when transposed, else k x n
    op.a_vec = (lda % 4 == 0) && aligned16(op.a);
    op.b_vec = (ldb % 4 == 0) && aligned16(op.b);
    return op;
}

// A convolution's output stage, fused into the product's store (Backend::gemm_epilogue,
// gemm_rows_epilogue): C's rows are cut into `parts` outputs (1 to EPI_PARTS), part p holding
// rows first[p] .. first[p + 1] - 1 (first[0] = 0, first[parts] = m). After alpha * acc + beta * C,
// row i of part p (an output channel) adds bias[p][i - first[p]] (bias[p] may be null) and, with
// relu[p], takes max(v, 0); the element (i, j) is stored, with r = i - first[p] and the part's
// rows = first[p + 1] - first[p], at r * n + j, or with block > 0 at
// (j / block) * rows * block + r * block + j % block: a chunk's [O][count * P] product written
// straight to each output's NCHW slice, no transpose pass. Part 0 is stored through the kernel's
// C (its offset and, per item, its stride), parts 1.. at c[p] (a single product). With
// `masked` (one part), a value is then zeroed where the mask, a tensor laid out as C, is not
// positive at the value's own place: the mask's element lies `mask_delta` bytes from C's
// (a ReLU's backward applied as its input gradient is stored). The plain kernels pass
// parts = 0: C row-major, nothing else read.
enum : int { EPI_PARTS = 4 };
struct Epilogue {
    int parts;
    int block;
    int first[EPI_PARTS + 1];
    float* c[EPI_PARTS];
    const float* bias[EPI_PARTS];
    int relu[EPI_PARTS];
    long long mask_delta;
    int masked;
};

// The part that row `row` of C belongs to, as (its first row, its row count, its C, its bias,
// its ReLU). Selected by unrolled comparisons, not by an index into `e`, so the parameters stay
// in constant memory rather than being copied to the stack.
struct Part {
    int first;
    int rows;
    float* c;
    const float* bias;
    int relu;
};
__device__ __forceinline__ Part part_of(const Epilogue& e, float* c, int row)
{
    Part p = {0, e.first[1], c, e.bias[0], e.relu[0]};
#pragma unroll
    for (int i = 1; i < EPI_PARTS; ++i) {
        if (i < e.parts && row >= e.first[i]) {
            p = {e.first[i], e.first[i + 1] - e.first[i], e.c[i], e.bias[i], e.relu[i]};
        }
    }
    return p;
}

// Where element (row, col) of an m x n C lives (see Epilogue), `c` being the kernel's C for this
// item. Without EPI (the plain kernels) C is row-major and the epilogue's arguments are not
// read: its addressing and registers stay out of the kernels that do not need them.
template <bool EPI>
__device__ __forceinline__ float* out_at(float* c, const Epilogue& e, int row, int col, int n)
{
    if (!EPI) {
        return c + (long long)row * n + col;
    }
    const Part p = part_of(e, c, row);
    const int r = row - p.first;
    if (e.block == 0) {
        return p.c + (long long)r * n + col;
    }
    const int q = col / e.block;
    return p.c + ((long long)q * p.rows + r) * e.block + (col - q * e.block);
}

// The bias and ReLU of row `row` applied to v, then the mask at the value's place `at` in C
// (nothing without EPI).
template <bool EPI>
__device__ __forceinline__ float finish(float v, int row, const Epilogue& e, const float* at)
{
    if (!EPI) {
        return v;
    }
    const Part p = part_of(e, nullptr, row);
    if (p.bias != nullptr) {
        v += p.bias[row - p.first];
    }
    v = p.relu ? fmaxf(v, 0.0f) : v;
    if (e.masked && !(*reinterpret_cast<const float*>(reinterpret_cast<const char*>(at) + e.mask_delta) > 0.0f)) {
        v = 0.0f;
    }
    return v;
}

// One 64 x 64 tile of C: the steps s_begin..s_end-1 of the sequence of (item, k slice) pairs
// (item = s / k_tiles, slice s % k_tiles), all accumulated, then written to `c` (m x n) as
// alpha * acc + beta * c through the epilogue `e`.
template <bool TA, bool TB, bool EPI>
__device__ __forceinline__ void sgemm_tile(int m, int n, int k, float alpha, const float* A, long long a_off, long long a_stride,
                                           const float* B, long long b_off, long long b_stride, float beta, float* c,
                                           long long s_begin, long long s_end, const Epilogue& e)
{
    // A is K_CONTIG when not transposed; B is K_CONTIG when transposed.
    constexpr bool A_KC = !TA;
    constexpr bool B_KC = TB;
    __shared__ __align__(16) float As[2][BK][LDS];
    __shared__ __align__(16) float Bs[2][BK][LDS];

    const int m0 = blockIdx.y * BM;
    const int n0 = blockIdx.x * BN;
    const int tx = threadIdx.x % (BN / TN);  // column patch
    const int ty = threadIdx.x / (BN / TN);  // row patch
    const long long lda = TA ? m : k;
    const long long ldb = TB ? k : n;

    float acc[TM][TN];
#pragma unroll
    for (int i = 0; i < TM; ++i) {
#pragma unroll
        for (int j = 0; j < TN; ++j) {
            acc[i][j] = 0.0f;
        }
    }

    // The k slices of all items form one sequence, so prefetching runs across item boundaries.
    const int k_tiles = (k + BK - 1) / BK;
    const long long total = s_end > s_begin ? s_end - s_begin : 0;
    int item = k_tiles > 0 ? (int)(s_begin / k_tiles) : 0;
    int k0 = k_tiles > 0 ? (int)(s_begin % k_tiles) * BK : 0;
    Operands op = operands<TA, TB>(item, m, n, k, A, a_off, a_stride, B, b_off, b_stride);
    if (total > 0) {
        store_tile<A_KC>(As[0], fetch_tile<A_KC>(op.a, lda, m, k, m0, k0, op.a_vec));
        store_tile<B_KC>(Bs[0], fetch_tile<B_KC>(op.b, ldb, n, k, n0, k0, op.b_vec));
    }
    __syncthreads();

    for (long long s = 0; s < total; ++s) {
        const int buf = (int)(s & 1);
        const bool more = s + 1 < total;
        float4 next_a, next_b;
        if (more) {
            k0 += BK;
            if (k0 >= k) {
                k0 = 0;
                ++item;
                op = operands<TA, TB>(item, m, n, k, A, a_off, a_stride, B, b_off, b_stride);
            }
            next_a = fetch_tile<A_KC>(op.a, lda, m, k, m0, k0, op.a_vec);
            next_b = fetch_tile<B_KC>(op.b, ldb, n, k, n0, k0, op.b_vec);
        }

#pragma unroll
        for (int kk = 0; kk < BK; ++kk) {
            const float4 a = *reinterpret_cast<const float4*>(&As[buf][kk][swizzle(kk, ty * TM)]);
            const float4 b = *reinterpret_cast<const float4*>(&Bs[buf][kk][swizzle(kk, tx * TN)]);
            const float av[TM] = {a.x, a.y, a.z, a.w};
            const float bv[TN] = {b.x, b.y, b.z, b.w};
#pragma unroll
            for (int i = 0; i < TM; ++i) {
#pragma unroll
                for (int j = 0; j < TN; ++j) {
                    acc[i][j] += av[i] * bv[j];
                }
            }
        }

        // The other buffer was last read in the previous step, before the barrier that ended it.
        if (more) {
            store_tile<A_KC>(As[buf ^ 1], next_a);
            store_tile<B_KC>(Bs[buf ^ 1], next_b);
        }
        __syncthreads();
    }

    // Epilogue. beta == 0 must not read C (it may hold NaN); k == 0 leaves acc at 0: C = beta * C.
    // A thread's 4 columns start at a multiple of 4; with 4 | block (or 4 | n unblocked) they
    // lie in one block of one output, contiguous, so one float4 store holds where the address is
    // 16-byte aligned.
    const int col = n0 + tx * TN;
    const bool row_vec = EPI ? (e.block == 0 ? n % 4 == 0 : e.block % 4 == 0) : n % 4 == 0;
#pragma unroll
    for (int i = 0; i < TM; ++i) {
        const int row = m0 + ty * TM + i;
        if (row >= m) {
            continue;
        }
        float* const first = out_at<EPI>(c, e, row, col, n);
        if (row_vec && col + TN <= n && aligned16(first)) {
            float4* p = reinterpret_cast<float4*>(first);
            float4 v = make_float4(alpha * acc[i][0], alpha * acc[i][1], alpha * acc[i][2], alpha * acc[i][3]);
            if (beta != 0.0f) {
                const float4 old = *p;
                v.x += beta * old.x;
                v.y += beta * old.y;
                v.z += beta * old.z;
                v.w += beta * old.w;
            }
            *p = make_float4(finish<EPI>(v.x, row, e, first), finish<EPI>(v.y, row, e, first + 1),
                             finish<EPI>(v.z, row, e, first + 2), finish<EPI>(v.w, row, e, first + 3));
        } else {
#pragma unroll
            for (int j = 0; j < TN; ++j) {
                if (col + j < n) {
                    float* p = out_at<EPI>(c, e, row, col + j, n);
                    float v = alpha * acc[i][j];
                    if (beta != 0.0f) {
                        v += beta * *p;
                    }
                    *p = finish<EPI>(v, row, e, p);
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// TF32 tensor cores (tgemm_*): the same products, batching and split-k as sgemm_*, computed by
// mma.sync m16n8k8 with TF32 operands and FP32 accumulation.
//
// A block of 256 threads (8 warps, 2 x 4) computes a 128 x 128 tile of C; each warp a 64 x 32
// part of it as 4 x 4 m16n8 accumulator fragments (64 floats a thread). k is walked in slices
// of 32, staged by cp.async into a 3-stage ring of shared-memory tiles (dynamic shared memory:
// 3 x 36 KiB, past the 48 KiB default, so the backend opts in), two slices in flight while a
// third is multiplied. Each operand tile is stored the way its global rows run, so every copy
// is whole 16-byte chunks (or single floats where rows are not 16-byte aligned):
// K-contiguous tiles as [128][32 + 4] (fragment element (row g, k t) of a warp falls in bank
// 4g + t), M/N-contiguous ones as [32][128 + 8] (bank 8t + g): the fragment loads of a warp hit
// 32 distinct banks either way. A K-contiguous tile's fragments are loaded by ldmatrix (four
// 8 x 4 blocks of floats a warp instruction; its eight 16-byte rows a phase fall in distinct
// bank quads, 4r mod 32), an M/N-contiguous tile's by single-float loads (ldmatrix cannot
// transpose 32-bit elements). Operands are rounded to TF32 (cvt.rna) as fragments are loaded.
// tgemm64_* are the same code on 64 x 128 tiles (4 warps, 1 x 4; A's tiles [64][36] or
// [32][72], 81 KiB a block) and tgemm96_* on 96 x 128 tiles (8 warps, 2 x 4, each 48 x 32: 3 x 4
// fragments; 94.5 KiB a block), for products whose rows a 128-row tile would leave half to seven
// eighths (16- to 64-channel convolutions) or a quarter (96 channels) empty; the backend picks
// the height by the cost model's time (plan::tile_rows).
// ---------------------------------------------------------------------------------------------

#ifndef CONVNET_EMU
// The PTX instructions the kernel uses, as device functions (kernels/emu/cuda_shim.h defines
// the same functions lane by lane, from the PTX ISA's definitions, for the CPU emulation).

// The shared-state-space address of a shared-memory pointer (cp.async takes one).
__device__ __forceinline__ unsigned smem_address(const void* p)
{
    unsigned long long a;
    asm("cvta.to.shared.u64 %0, %1;" : "=l"(a) : "l"(p));
    return (unsigned)a;
}

// x rounded to TF32, to nearest with ties away from zero, as a .b32 mma operand.
__device__ __forceinline__ unsigned to_tf32(float x)
{
    unsigned r;
    asm("cvt.rna.tf32.f32 %0, %1;" : "=r"(r) : "f"(x));
    return r;
}

// d += A B for one warp: A 16 x 8 (row-major fragments a), B 8 x 8 (column-major fragments b),
// d the 16 x 8 accumulator fragments, in the layouts of the PTX ISA's "Matrix Fragments for
// mma.m16n8k8" (.tf32 A and B, .f32 C and D).
__device__ __forceinline__ void mma_m16n8k8_tf32(float (&d)[4], const unsigned (&a)[4], const unsigned (&b)[2])
{
    asm volatile("mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
                 "{%0, %1, %2, %3};"
                 : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
}

// The raw bits of a float as an mma operand, rounded to TF32 as to_tf32 rounds a float (the
// fragments ldmatrix loads arrive as .b32 registers).
__device__ __forceinline__ unsigned round_tf32(unsigned bits)
{
    return to_tf32(__uint_as_float(bits));
}

// Four 8 x 8 matrices of 16-bit elements from shared memory, across the warp: lanes 8q..8q+7
// give the addresses of matrix q's eight 16-byte rows, and each lane receives in r[q] the 32
// bits at byte 4 (lane % 4) of row lane / 4 of matrix q. Read as 32-bit elements, that is an
// 8 x 4 block of floats in the layout of an mma.m16n8k8 .tf32 fragment (row groupID, column
// threadID_in_group), so one ldmatrix loads what four ld.shared would.
__device__ __forceinline__ void ldmatrix_x4(unsigned (&r)[4], const float* row)
{
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(smem_address(row)));
}

// Copies 16 bytes (the first `src_bytes` of them; zeros for the rest) from global to shared
// memory, asynchronously: part of the thread's current cp.async group. dst and src 16-aligned.
__device__ __forceinline__ void cp_async_16(float* dst, const float* src, int src_bytes)
{
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;" ::"r"(smem_address(dst)), "l"(src), "r"(src_bytes));
}

// The same for one float (`src_bytes` 4, or 0 for a zero).
__device__ __forceinline__ void cp_async_4(float* dst, const float* src, int src_bytes)
{
    asm volatile("cp.async.ca.shared.global [%0], [%1], 4, %2;" ::"r"(smem_address(dst)), "l"(src), "r"(src_bytes));
}

// Closes the thread's current group of cp.async copies.
__device__ __forceinline__ void cp_async_commit()
{
    asm volatile("cp.async.commit_group;");
}

// Waits until at most N of the thread's committed groups are still in flight.
template <int N>
__device__ __forceinline__ void cp_async_wait()
{
    asm volatile("cp.async.wait_group %0;" ::"n"(N));
}

#define DYNAMIC_SHARED(NAME) extern __shared__ __align__(16) float NAME[]
#endif

enum : int {
    TBN = 128,       // columns of C per block
    TBK = 32,        // k per stage
    TSTAGES = 3,     // stages in the cp.async ring
    KC_LD = TBK + 4, // row length of a K-contiguous tile: 144 bytes, 16-aligned; banks 4g + t
    OUT_LD = TBN + 8, // row length of the epilogue's C tile (8-byte stores; 16-aligned rows)
    B_TILE_FLOATS = TBN * KC_LD,     // B's tile in either layout (4608 >= 32 * 136)
};

// The geometry of a TF32 block computing ROWS rows of C: 128, or for products of few rows 64
// (a 16- to 64-channel convolution's would fill at most half of a 128-row tile) or 96 (NiN's
// and GoogLeNet's 96-, 160- and 192-channel layers would leave a quarter to a third of 128-row
// tiles empty). WARPS_M warps along m (ROWS / WARPS_M rows each, MI fragments of 16) x 4 along n
// (32 columns each): 64 x 32 warp tiles for 64 and 128 rows, 48 x 32 for 96 (8 warps, as
// 128's). An M/N-contiguous tile's rows are ROWS + 8 floats long (banks 8t + g).
template <int ROWS>
struct TShape {
    enum : int {
        WARPS_M = ROWS == 64 ? 1 : 2,
        MI = ROWS / (16 * WARPS_M),  // m16 fragments a warp computes along m
        THREADS = 128 * WARPS_M,
        A_FLOATS = ROWS * KC_LD,  // A's tile in either layout (ROWS * 36 >= 32 * (ROWS + 8))
        STAGE_FLOATS = A_FLOATS + B_TILE_FLOATS,  // A's tile, then B's
        SHARED_BYTES = TSTAGES * STAGE_FLOATS * 4,
    };
    static_assert(ROWS == 64 || ROWS == 96 || ROWS == 128, "64, 96 or 128 rows");
    static_assert(TBK * (ROWS + 8) <= A_FLOATS && TBK * (TBN + 8) <= B_TILE_FLOATS, "both layouts fit a tile slot");
    static_assert(ROWS * OUT_LD <= TSTAGES * STAGE_FLOATS, "the epilogue's C tile fits the ring");
};
// crates/cuda/src/plan.rs launches with this much dynamic shared memory (plan::tgemm_shared_bytes).
static_assert(TShape<128>::SHARED_BYTES == 110592 && TShape<96>::SHARED_BYTES == 96768 &&
                  TShape<64>::SHARED_BYTES == 82944,
              "plan::tgemm_shared_bytes");

// Starts the copy of the OUTER x 32 slice (outer o0.., k k0..) of an operand into its stage
// tile S, by NT threads. "Outer" is m for A and n for B; K_CONTIG as in fetch_tile. Elements past
// the matrix are zero-filled (a copy of 0 source bytes, from a valid address). `vec`
// (block-uniform): rows are 16-byte aligned, so whole 4-float chunks are copied.
template <bool K_CONTIG, int OUTER, int NT>
__device__ __forceinline__ void stage_tile(float* S, const float* X, long long ld, int outer, int k, int o0, int k0, bool vec)
{
    constexpr int MN_LD = OUTER + 8;
    const int t = threadIdx.x;
    if (vec) {
#pragma unroll
        for (int i = 0; i < (OUTER * TBK / 4) / NT; ++i) {
            const int c = t + i * NT;
            // K_CONTIG: 8 chunks along k per row o; else OUTER / 4 chunks along o per k row.
            const int o = K_CONTIG ? c / (TBK / 4) : (c % (OUTER / 4)) * 4;
            const int kk = K_CONTIG ? (c % (TBK / 4)) * 4 : c / (OUTER / 4);
            const int left = K_CONTIG ? k - (k0 + kk) : outer - (o0 + o);
            const bool in = (K_CONTIG ? o0 + o < outer : k0 + kk < k) && left > 0;
            const float* src =
                in ? X + (long long)(K_CONTIG ? o0 + o : k0 + kk) * ld + (K_CONTIG ? k0 + kk : o0 + o) : X;
            cp_async_16(K_CONTIG ? S + o * KC_LD + kk : S + kk * MN_LD + o, src, in ? 4 * min(left, 4) : 0);
        }
    } else {
#pragma unroll 1
        for (int i = 0; i < OUTER * TBK / NT; ++i) {
            const int e = t + i * NT;
            // Consecutive threads take consecutive elements of a global row.
            const int o = K_CONTIG ? e / TBK : e % OUTER;
            const int kk = K_CONTIG ? e % TBK : e / OUTER;
            const bool in = o0 + o < outer && k0 + kk < k;
            const float* src =
                in ? X + (K_CONTIG ? (long long)(o0 + o) * ld + k0 + kk : (long long)(k0 + kk) * ld + o0 + o) : X;
            cp_async_4(K_CONTIG ? S + o * KC_LD + kk : S + kk * MN_LD + o, src, in ? 4 : 0);
        }
    }
}

// Element (outer o, k kk) of a stage tile of OUTER rows, rounded to TF32.
template <bool K_CONTIG, int OUTER>
__device__ __forceinline__ unsigned tile_tf32(const float* S, int o, int kk)
{
    return to_tf32(K_CONTIG ? S[o * KC_LD + kk] : S[kk * (OUTER + 8) + o]);
}

// Implicit convolution products: B read from an image tensor as the product needs it, with no
// column matrix in memory (no im2col before the product, no col2im after it). Three products,
// each one GEMM whose B is gathered (`Gather` describes the tensor and the convolution):
//
// GATHER_FWD, the forward (NN): y (O x count*OH*OW) = w (O x C*kh*kw) * B, B's element
//   (k = (c, r, s), column (image, oy, ox)) = x[image][c][oy*sh - ph + r][ox*sw - pw + s];
// GATHER_WGRAD, the weight gradient (NT): dw (O x C*kh*kw) = dy (O x count*OH*OW) * B^T, B^T's
//   element (column n = (c, r, s), k = (image, oy, ox)) the same value of x;
// GATHER_DGRAD, a stride-1 input gradient (NN): dx (C x count*H*W) = Wt (C x kh*kw*O) * B, Wt
//   the weights transposed (Wt[c][(r*kw + s)*O + o] = w[o][c][r][s]) and B's element
//   (k = (r, s, o), column (image, y, x)) = dy[o][image][y + ph - r][x + pw - s]: the adjoint of
//   the stride-1 forward, dy in the products' rows layout [O][count][OH][OW].
//
// Cells outside the gathered plane read as zero (padding). Each thread keeps one column (or
// one k) of the slice and steps through the other index, carrying from the kernel column into
// the kernel row and channel, so no element costs a division; copies are 4 bytes (a gathered
// row is neither aligned nor contiguous across the kernel's window).
enum : int { GATHER_NONE = 0, GATHER_FWD = 1, GATHER_WGRAD = 2, GATHER_DGRAD = 3 };
struct Gather {
    int channels;          // the gathered tensor's channels (C of x; O of dy)
    int h, w;              // its plane
    int out_w, out_plane;  // the plane of the product's pixels: its width and size
    int kh, kw;            // the kernel
    int stride_h, stride_w;
    int pad_h, pad_w;
    int chan_stride;  // the gathered tensor's channel stride (NCHW: h*w; rows: count*h*w)
    int img_stride;   // and image stride (NCHW: channels*h*w; rows: h*w)
};
// Offsets into the gathered tensor are 32-bit (the backend checks that it holds fewer than 2^31
// values): 64-bit ones would push the 128-row weight gradient past its 128 registers.

// Pixel `p` of the product's plane as the gathered tensor's cell for kernel position (0, 0):
// its offset (image and cell; the cell may lie in the padding) and row and column.
struct Cell {
    int base;
    int top, left;
};
template <int MODE>
__device__ __forceinline__ Cell cell_of(const Gather& g, int p)
{
    const int image = p / g.out_plane;
    const int y = (p - image * g.out_plane) / g.out_w;
    const int x = p - image * g.out_plane - y * g.out_w;
    // The forward reads from (y * stride - pad) on; the input gradient from (y + pad) back.
    const int top = MODE == GATHER_DGRAD ? y + g.pad_h : y * g.stride_h - g.pad_h;
    const int left = MODE == GATHER_DGRAD ? x + g.pad_w : x * g.stride_w - g.pad_w;
    return {image * g.img_stride + top * g.w + left, top, left};
}

// An index along the kernel's (c, r, s) (GATHER_FWD, GATHER_WGRAD: s fastest, then r, then the
// channel) or (r, s, o) (GATHER_DGRAD: the channel fastest, then s, then r), advanced by steps
// with carries instead of divisions.
template <int MODE>
struct KernelIndex {
    int ch, r, s;
    __device__ __forceinline__ KernelIndex(const Gather& g, int idx)
    {
        if (MODE == GATHER_DGRAD) {
            const int pos = idx / g.channels;
            ch = idx - pos * g.channels;
            r = pos / g.kw;
            s = pos - r * g.kw;
        } else {
            const int window = g.kh * g.kw;
            ch = idx / window;
            r = (idx - ch * window) / g.kw;
            s = idx - ch * window - r * g.kw;
        }
    }
    __device__ __forceinline__ void advance(const Gather& g, int step)
    {
        if (MODE == GATHER_DGRAD) {
            ch += step;
            while (ch >= g.channels) {
                ch -= g.channels;
                if (++s == g.kw) {
                    s = 0;
                    ++r;
                }
            }
        } else {
            s += step;
            while (s >= g.kw) {
                s -= g.kw;
                if (++r == g.kh) {
                    r = 0;
                    ++ch;
                }
            }
        }
    }
    // The gathered value's offset from the pixel's cell, and whether it lies in the plane
    // (the sign of the kernel offset is the mode's).
    __device__ __forceinline__ bool inside(const Gather& g, const Cell& c) const
    {
        const int iy = MODE == GATHER_DGRAD ? c.top - r : c.top + r;
        const int ix = MODE == GATHER_DGRAD ? c.left - s : c.left + s;
        return (unsigned)iy < (unsigned)g.h && (unsigned)ix < (unsigned)g.w;
    }
    __device__ __forceinline__ int offset(const Gather& g, const Cell& c) const
    {
        const int rs = r * g.w + s;
        return c.base + ch * g.chan_stride + (MODE == GATHER_DGRAD ? -rs : rs);
    }
};

// Starts the copies of B's 32 x 128 slice (k k0.., columns n0..) for GATHER_FWD or
// GATHER_DGRAD into the stage tile S (M/N-contiguous, rows of TBN + 8), by NT threads: each
// thread one column (a pixel), every (NT / TBN)-th k of the slice.
template <int MODE, int NT>
__device__ __forceinline__ void gather_columns(float* S, const float* src, const Gather& g, int n, int k, int n0, int k0)
{
    constexpr int MN_LD = TBN + 8;
    constexpr int STEP = NT / TBN;
    static_assert(NT % TBN == 0, "whole columns per thread");
    const int o = threadIdx.x % TBN;
    const int kk0 = threadIdx.x / TBN;
    const int j = n0 + o;
    const Cell cell = cell_of<MODE>(g, j);
    KernelIndex<MODE> at(g, k0 + kk0);
#pragma unroll 4
    for (int kk = kk0; kk < TBK; kk += STEP) {
        const bool in = j < n && k0 + kk < k && at.inside(g, cell);
        cp_async_4(S + kk * MN_LD + o, in ? src + at.offset(g, cell) : src, in ? 4 : 0);
        at.advance(g, STEP);
    }
}

// The same for GATHER_WGRAD's B^T slice (columns n0.. of the kernel's (c, r, s), k k0.. of the
// pixels) into a K-contiguous stage tile (rows of KC_LD): each thread one k (a pixel), every
// (NT / TBK)-th column; consecutive threads copy consecutive pixels.
template <int NT>
__device__ __forceinline__ void gather_rows(float* S, const float* src, const Gather& g, int n, int k, int n0, int k0)
{
    constexpr int STEP = NT / TBK;
    static_assert(NT % TBK == 0, "whole k per thread");
    const int kk = threadIdx.x % TBK;
    const int o0 = threadIdx.x / TBK;
    const int p = k0 + kk;
    const Cell cell = cell_of<GATHER_WGRAD>(g, p);
    KernelIndex<GATHER_WGRAD> at(g, n0 + o0);
#pragma unroll 4
    for (int o = o0; o < TBN; o += STEP) {
        const bool in = p < k && n0 + o < n && at.inside(g, cell);
        cp_async_4(S + o * KC_LD + kk, in ? src + at.offset(g, cell) : src, in ? 4 : 0);
        at.advance(g, STEP);
    }
}

// One ROWS x 128 tile of C from the steps s_begin..s_end-1 of the (item, k slice) sequence, as
// sgemm_tile, through the cp.async ring in `smem`.
// With GATHER, B is gathered through `gb` from B + b_off (see Gather).
template <bool TA, bool TB, bool EPI, int ROWS, int GATHER = GATHER_NONE>
__device__ __forceinline__ void tgemm_tile(int m, int n, int k, float alpha, const float* A, long long a_off, long long a_stride,
                                           const float* B, long long b_off, long long b_stride, float beta, float* c,
                                           long long s_begin, long long s_end, float* smem, const Epilogue& e,
                                           const Gather& gb)
{
    static_assert(GATHER == GATHER_NONE || (!TA && TB == (GATHER == GATHER_WGRAD)), "the gathered products' layouts");
    constexpr bool A_KC = !TA;
    constexpr bool B_KC = TB;
    using Shape = TShape<ROWS>;
    const int lane = threadIdx.x % 32;
    const int warp = threadIdx.x / 32;
    const int g = lane / 4;  // groupID
    const int t = lane % 4;  // threadID_in_group
    constexpr int MI = Shape::MI;
    const int wm = (warp / 4) * (16 * MI);
    const int wn = (warp % 4) * 32;
    const int m_block = blockIdx.y * ROWS;
    const int n_block = blockIdx.x * TBN;
    const long long lda = TA ? m : k;
    const long long ldb = TB ? k : n;
    const int k_tiles = (k + TBK - 1) / TBK;
    const long long total = s_end > s_begin ? s_end - s_begin : 0;

    float acc[MI][4][4];
#pragma unroll
    for (int i = 0; i < MI; ++i) {
#pragma unroll
        for (int j = 0; j < 4; ++j) {
#pragma unroll
            for (int r = 0; r < 4; ++r) {
                acc[i][j][r] = 0.0f;
            }
        }
    }

    // Starts the copies of step s's slices into stage `stage`.
    auto load = [&](long long s, int stage) {
        const int item = (int)(s / k_tiles);
        const int k0 = (int)(s % k_tiles) * TBK;
        const Operands op = operands<TA, TB>(item, m, n, k, A, a_off, a_stride, B, b_off, b_stride);
        float* S = smem + stage * Shape::STAGE_FLOATS;
        stage_tile<A_KC, ROWS, Shape::THREADS>(S, op.a, lda, m, k, m_block, k0, op.a_vec);
        if constexpr (GATHER == GATHER_WGRAD) {
            gather_rows<Shape::THREADS>(S + Shape::A_FLOATS, op.b, gb, n, k, n_block, k0);
        } else if constexpr (GATHER != GATHER_NONE) {
            gather_columns<GATHER, Shape::THREADS>(S + Shape::A_FLOATS, op.b, gb, n, k, n_block, k0);
        } else {
            stage_tile<B_KC, TBN, Shape::THREADS>(S + Shape::A_FLOATS, op.b, ldb, n, k, n_block, k0, op.b_vec);
        }
    };

    // Every iteration commits one group (empty past the end), so "all but the newest
    // TSTAGES - 2 groups complete" always means "step s's slices have landed".
#pragma unroll
    for (int p = 0; p < TSTAGES - 1; ++p) {
        if (p < total) {
            load(s_begin + p, p);
        }
        cp_async_commit();
    }
    for (long long s = 0; s < total; ++s) {
        cp_async_wait<TSTAGES - 2>();
        // Every thread's copies of step s are visible, and every warp is done with step s - 1,
        // whose stage the next prefetch reuses.
        __syncthreads();
        const long long next = s + TSTAGES - 1;
        if (next < total) {
            load(s_begin + next, (int)(next % TSTAGES));
        }
        cp_async_commit();
        const float* As = smem + (int)(s % TSTAGES) * Shape::STAGE_FLOATS;
        const float* Bs = As + Shape::A_FLOATS;
        // Not unrolled: the fragments of one k step at a time stay within two blocks' registers.
#pragma unroll 1
        for (int kk = 0; kk < TBK; kk += 8) {
            // B's four fragments stay while A's are loaded and used one at a time (4 registers,
            // not 4 * MI: the accumulators take up to 64 of the 128 two blocks an SM allow).
            unsigned bf[4][2];
            // ldmatrix's matrix q = lane / 8 (lane % 8 its row) is the fragment register q.
            const int q = lane / 8;
            if constexpr (B_KC) {
                // Two fragments an ldmatrix: b0, b1 of column block j (q < 2), then of j + 1;
                // k +0 / +4 (q odd).
#pragma unroll
                for (int j = 0; j < 4; j += 2) {
                    unsigned r[4];
                    ldmatrix_x4(r, Bs + (wn + (j + (q >> 1)) * 8 + lane % 8) * KC_LD + kk + 4 * (q & 1));
                    bf[j][0] = round_tf32(r[0]);
                    bf[j][1] = round_tf32(r[1]);
                    bf[j + 1][0] = round_tf32(r[2]);
                    bf[j + 1][1] = round_tf32(r[3]);
                }
            } else {
#pragma unroll
                for (int j = 0; j < 4; ++j) {
                    const int col = wn + j * 8 + g;
                    bf[j][0] = tile_tf32<B_KC, TBN>(Bs, col, kk + t);
                    bf[j][1] = tile_tf32<B_KC, TBN>(Bs, col, kk + t + 4);
                }
            }
#pragma unroll
            for (int i = 0; i < MI; ++i) {
                unsigned af[4];
                if constexpr (A_KC) {
                    // a0..a3: rows +0 / +8 (q odd), k +0 / +4 (q >= 2).
                    ldmatrix_x4(af, As + (wm + i * 16 + lane % 8 + 8 * (q & 1)) * KC_LD + kk + 4 * (q >> 1));
#pragma unroll
                    for (int r = 0; r < 4; ++r) {
                        af[r] = round_tf32(af[r]);
                    }
                } else {
                    const int r = wm + i * 16 + g;
                    af[0] = tile_tf32<A_KC, ROWS>(As, r, kk + t);
                    af[1] = tile_tf32<A_KC, ROWS>(As, r + 8, kk + t);
                    af[2] = tile_tf32<A_KC, ROWS>(As, r, kk + t + 4);
                    af[3] = tile_tf32<A_KC, ROWS>(As, r + 8, kk + t + 4);
                }
#pragma unroll
                for (int j = 0; j < 4; ++j) {
                    mma_m16n8k8_tf32(acc[i][j], af, bf[j]);
                }
            }
        }
    }
    cp_async_wait<0>();
    // Every warp is done with the ring: the epilogue reuses it.
    __syncthreads();

    if (!EPI) {
        // Accumulator r of fragment (i, j) is C[row g (+8 for r >= 2)][column 2t (+1 for odd r)]
        // of its m16n8 tile. beta == 0 does not read C.
#pragma unroll
        for (int i = 0; i < MI; ++i) {
#pragma unroll
            for (int j = 0; j < 4; ++j) {
#pragma unroll
                for (int r = 0; r < 4; ++r) {
                    const int row = m_block + wm + i * 16 + g + (r >= 2 ? 8 : 0);
                    const int col = n_block + wn + j * 8 + 2 * t + (r & 1);
                    if (row < m && col < n) {
                        float* p = c + (long long)row * n + col;
                        float v = alpha * acc[i][j][r];
                        if (beta != 0.0f) {
                            v += beta * *p;
                        }
                        *p = v;
                    }
                }
            }
        }
    } else {
        // The epilogue's addressing would not fit beside the fragments (128 registers are the
        // limit for two blocks an SM), so the warps first put their accumulators in a
        // ROWS x OUT_LD tile of the idle ring (r and r + 1 of fragment (i, j) are row g, +8 for
        // r = 2, columns 2t and 2t + 1), then each thread stores one column of C's tile, every
        // other row, through `e`: consecutive threads write consecutive columns.
        float* T = smem;
#pragma unroll
        for (int i = 0; i < MI; ++i) {
#pragma unroll
            for (int j = 0; j < 4; ++j) {
#pragma unroll
                for (int h = 0; h < 2; ++h) {
                    const int r = wm + i * 16 + g + 8 * h;
                    *reinterpret_cast<float2*>(T + r * OUT_LD + wn + j * 8 + 2 * t) =
                        make_float2(acc[i][j][2 * h], acc[i][j][2 * h + 1]);
                }
            }
        }
        __syncthreads();
        const int tc = threadIdx.x % TBN;
        const int col = n_block + tc;
        if (col < n) {
#pragma unroll 1
            for (int tr = threadIdx.x / TBN; tr < ROWS; tr += Shape::THREADS / TBN) {
                const int row = m_block + tr;
                if (row < m) {
                    float* p = out_at<true>(c, e, row, col, n);
                    float v = alpha * T[tr * OUT_LD + tc];
                    if (beta != 0.0f) {
                        v += beta * *p;
                    }
                    *p = finish<true>(v, row, e, p);
                }
            }
        }
    }
    // The next tile of this block (another batch item) refills the ring.
    __syncthreads();
}

// The batching and split-k of both kernel families: per item, summed, or cut into parts (see
// the top of the file). TENSOR picks the tile: sgemm_tile's 64 x 64 FP32 or tgemm_tile's
// ROWS x 128 TF32 (which uses `smem`; ROWS is ignored for FP32). The epilogue `e` applies to C
// (with split-k, in sgemm_split_reduce: the parts are raw sums).
template <bool TA, bool TB, bool TENSOR, bool EPI, int ROWS = 128, int GATHER = GATHER_NONE>
__device__ __forceinline__ void gemm(int m, int n, int k, float alpha, const float* A, long long a_off, long long a_stride,
                                     const float* B, long long b_off, long long b_stride, float beta, float* C, long long c_off,
                                     long long c_stride, int batch, int sum_batch, int splits, float* W, const Epilogue& e,
                                     float* smem, const Gather& gb = Gather{})
{
    static_assert(GATHER == GATHER_NONE || TENSOR, "only the TF32 tile gathers");
    const int slice = TENSOR ? (int)TBK : (int)BK;
    const long long k_tiles = (k + slice - 1) / slice;
    auto tile = [&](float a, float b, float* c, long long s0, long long s1, const Epilogue& out) {
        if constexpr (TENSOR) {
            tgemm_tile<TA, TB, EPI, ROWS, GATHER>(m, n, k, a, A, a_off, a_stride, B, b_off, b_stride, b, c, s0, s1, smem, out,
                                                  gb);
        } else {
            sgemm_tile<TA, TB, EPI>(m, n, k, a, A, a_off, a_stride, B, b_off, b_stride, b, c, s0, s1, out);
        }
    };
    if (splits > 1) {
        // Part z of the (summed, or single) product's steps into W[z]: raw sums, alpha 1, beta 0.
        const long long total = (sum_batch ? (long long)batch : 1LL) * k_tiles;
        const long long per = (total + splits - 1) / splits;
        const Epilogue raw = {};
        for (int z = blockIdx.z; z < splits; z += gridDim.z) {
            const long long s0 = min((long long)z * per, total);
            tile(1.0f, 0.0f, W + (long long)z * m * n, s0, min(s0 + per, total), raw);
        }
        return;
    }
    if (sum_batch) {
        // blockIdx.z is 0 here; one pass over all items into the single C.
        if (blockIdx.z == 0 && batch > 0) {
            tile(alpha, beta, C + c_off, 0, (long long)batch * k_tiles, e);
        }
        return;
    }
    for (int z = blockIdx.z; z < batch; z += gridDim.z) {
        tile(alpha, beta, C + c_off + (long long)z * c_stride, z * k_tiles, (z + 1) * k_tiles, e);
    }
}

// Thin entry points, one per transpose combination: first letter A, second B ('t' = transposed).
// W is only read with splits > 1 (then it holds splits * m * n values). The *_epilogue entries
// (NN and TN: a convolution's forward products, a 1x1 convolution's input gradient) take the
// Epilogue as well (by value:
// it lives in the launch's parameter space); the plain ones store C row-major.
#define SGEMM_ENTRY(NAME, TA, TB)                                                                                          \
    extern "C" __global__ void __launch_bounds__(THREADS)                                                                  \
        NAME(int m, int n, int k, float alpha, const float* A, long long a_off, long long a_stride, const float* B,       \
             long long b_off, long long b_stride, float beta, float* C, long long c_off, long long c_stride, int batch,    \
             int sum_batch, int splits, float* W)                                                                          \
    {                                                                                                                      \
        const Epilogue e = {};                                                                                             \
        gemm<TA, TB, false, false>(m, n, k, alpha, A, a_off, a_stride, B, b_off, b_stride, beta, C, c_off, c_stride,       \
                                   batch, sum_batch, splits, W, e, nullptr);                                               \
    }

SGEMM_ENTRY(sgemm_nn, false, false)
SGEMM_ENTRY(sgemm_nt, false, true)
SGEMM_ENTRY(sgemm_tn, true, false)
SGEMM_ENTRY(sgemm_tt, true, true)

#define SGEMM_EPILOGUE_ENTRY(NAME, TA)                                                                                     \
    extern "C" __global__ void __launch_bounds__(THREADS)                                                                  \
        NAME(int m, int n, int k, float alpha, const float* A, long long a_off, long long a_stride, const float* B,       \
             long long b_off, long long b_stride, float beta, float* C, long long c_off, long long c_stride, int batch,    \
             int sum_batch, int splits, float* W, const Epilogue e)                                                        \
    {                                                                                                                      \
        gemm<TA, false, false, true>(m, n, k, alpha, A, a_off, a_stride, B, b_off, b_stride, beta, C, c_off, c_stride,     \
                                     batch, sum_batch, splits, W, e, nullptr);                                             \
    }

// A convolution's forward (NN) and a 1x1 convolution's input gradient (TN: W^T dy, stored as
// NCHW in blocks).
SGEMM_EPILOGUE_ENTRY(sgemm_nn_epilogue, false)
SGEMM_EPILOGUE_ENTRY(sgemm_tn_epilogue, true)

// The TF32 entry points, same arguments; launched with TShape<ROWS>::SHARED_BYTES of dynamic
// shared memory and TShape<ROWS>::THREADS threads. Two blocks fit an SM's shared memory, so
// registers are budgeted for two. tgemm64_* compute 64-row tiles (4 warps) and tgemm96_* 96-row
// ones (8 warps) for products of few or ragged rows; the others 128-row tiles (8 warps).
#define TGEMM_ENTRY(NAME, TA, TB, ROWS)                                                                                    \
    extern "C" __global__ void __launch_bounds__(TShape<ROWS>::THREADS, 2)                                                 \
        NAME(int m, int n, int k, float alpha, const float* A, long long a_off, long long a_stride, const float* B,       \
             long long b_off, long long b_stride, float beta, float* C, long long c_off, long long c_stride, int batch,    \
             int sum_batch, int splits, float* W)                                                                          \
    {                                                                                                                      \
        DYNAMIC_SHARED(smem);                                                                                              \
        const Epilogue e = {};                                                                                             \
        gemm<TA, TB, true, false, ROWS>(m, n, k, alpha, A, a_off, a_stride, B, b_off, b_stride, beta, C, c_off, c_stride,  \
                                        batch, sum_batch, splits, W, e, smem);                                             \
    }

TGEMM_ENTRY(tgemm_nn, false, false, 128)
TGEMM_ENTRY(tgemm_nt, false, true, 128)
TGEMM_ENTRY(tgemm_tn, true, false, 128)
TGEMM_ENTRY(tgemm_tt, true, true, 128)
TGEMM_ENTRY(tgemm64_nn, false, false, 64)
TGEMM_ENTRY(tgemm64_nt, false, true, 64)
TGEMM_ENTRY(tgemm64_tn, true, false, 64)
TGEMM_ENTRY(tgemm64_tt, true, true, 64)
TGEMM_ENTRY(tgemm96_nn, false, false, 96)
TGEMM_ENTRY(tgemm96_nt, false, true, 96)
TGEMM_ENTRY(tgemm96_tn, true, false, 96)
TGEMM_ENTRY(tgemm96_tt, true, true, 96)

#define TGEMM_EPILOGUE_ENTRY(NAME, TA, ROWS)                                                                               \
    extern "C" __global__ void __launch_bounds__(TShape<ROWS>::THREADS, 2)                                                 \
        NAME(int m, int n, int k, float alpha, const float* A, long long a_off, long long a_stride, const float* B,       \
             long long b_off, long long b_stride, float beta, float* C, long long c_off, long long c_stride, int batch,    \
             int sum_batch, int splits, float* W, const Epilogue e)                                                        \
    {                                                                                                                      \
        DYNAMIC_SHARED(smem);                                                                                              \
        gemm<TA, false, true, true, ROWS>(m, n, k, alpha, A, a_off, a_stride, B, b_off, b_stride, beta, C, c_off,          \
                                          c_stride, batch, sum_batch, splits, W, e, smem);                                 \
    }

TGEMM_EPILOGUE_ENTRY(tgemm_nn_epilogue, false, 128)
TGEMM_EPILOGUE_ENTRY(tgemm_tn_epilogue, true, 128)
TGEMM_EPILOGUE_ENTRY(tgemm64_nn_epilogue, false, 64)
TGEMM_EPILOGUE_ENTRY(tgemm64_tn_epilogue, true, 64)
TGEMM_EPILOGUE_ENTRY(tgemm96_nn_epilogue, false, 96)
TGEMM_EPILOGUE_ENTRY(tgemm96_tn_epilogue, true, 96)

// The implicit convolution products (see Gather), single products (batch 1) with split-k:
// tgemm_conv_fwd computes y through the convolution's epilogue `e` (bias, ReLU, NCHW blocks of
// OH*OW at C + c_off); tgemm64_conv_wgrad dw = alpha * dy x^T + beta * dw (row-major; 64-row
// tiles only: the 128-row tile's K-contiguous fragments and the gathering of B^T together need
// more than its 128 registers and spill); tgemm_dgrad dx through `e` (NCHW blocks of H*W). With
// splits > 1 the parts' raw sums go to W for sgemm_split_reduce.
#define TGEMM_GATHER_ENTRY(NAME, TB, EPI, GATHER, ROWS)                                                                     \
    extern "C" __global__ void __launch_bounds__(TShape<ROWS>::THREADS, 2)                                                 \
        NAME(int m, int n, int k, float alpha, const float* A, const float* B, float beta, float* C, long long c_off,      \
             int splits, float* W, const Epilogue e, const Gather g)                                                       \
    {                                                                                                                      \
        DYNAMIC_SHARED(smem);                                                                                              \
        gemm<false, TB, true, EPI, ROWS, GATHER>(m, n, k, alpha, A, 0, 0, B, 0, 0, beta, C, c_off, 0, 1, 0, splits, W, e,   \
                                                 smem, g);                                                                 \
    }

TGEMM_GATHER_ENTRY(tgemm_conv_fwd, false, true, GATHER_FWD, 128)
TGEMM_GATHER_ENTRY(tgemm64_conv_fwd, false, true, GATHER_FWD, 64)
TGEMM_GATHER_ENTRY(tgemm64_conv_wgrad, true, false, GATHER_WGRAD, 64)
TGEMM_GATHER_ENTRY(tgemm_dgrad, false, true, GATHER_DGRAD, 128)
TGEMM_GATHER_ENTRY(tgemm64_dgrad, false, true, GATHER_DGRAD, 64)
TGEMM_GATHER_ENTRY(tgemm96_conv_fwd, false, true, GATHER_FWD, 96)
TGEMM_GATHER_ENTRY(tgemm96_conv_wgrad, true, false, GATHER_WGRAD, 96)
TGEMM_GATHER_ENTRY(tgemm96_dgrad, false, true, GATHER_DGRAD, 96)

// C = alpha * (W[0] + W[1] + ... + W[splits - 1]) + beta * C over the m x n outputs of a split
// product, through the epilogue; beta == 0 does not read C. A block of 256 threads takes 32
// consecutive outputs at a time: thread (x, y) of its 32 x 8 sums the parts y, y + 8, y + 16, ...
// of output x (a warp reads 32 consecutive floats of one part), then the 8 sums are added in
// the order y = 0, 1, ..., 7. The order is fixed, so the result is the same on every run, and a
// product split into hundreds of parts (a 96 x 96 weight gradient summed over a batch) is added
// by 8 threads an output, not one. Grid-stride over the groups of 32; 32-bit indices when they
// fit.
enum : int {
    REDUCE_OUTPUTS = 32,  // outputs a block takes at a time (a warp's width)
    REDUCE_GROUPS = 8,    // threads adding the parts of one output
};
template <typename I>
__device__ __forceinline__ void split_reduce(const float* W, int splits, int m, int n, float alpha, float beta, float* C,
                                             const Epilogue& e)
{
    __shared__ float sums[REDUCE_GROUPS][REDUCE_OUTPUTS];
    const int x = threadIdx.x % REDUCE_OUTPUTS;
    const int y = threadIdx.x / REDUCE_OUTPUTS;
    const I mn = (I)m * n;
    const I groups = (mn + REDUCE_OUTPUTS - 1) / REDUCE_OUTPUTS;
    for (I group = blockIdx.x; group < groups; group += gridDim.x) {
        const I i = group * REDUCE_OUTPUTS + x;
        float s = 0.0f;
        if (i < mn && y < splits) {
            s = W[(long long)y * mn + i];
            for (int z = y + REDUCE_GROUPS; z < splits; z += REDUCE_GROUPS) {
                s += W[(long long)z * mn + i];
            }
        }
        sums[y][x] = s;
        __syncthreads();
        if (y == 0 && i < mn) {
            float t = sums[0][x];
            for (int g = 1; g < REDUCE_GROUPS && g < splits; ++g) {
                t += sums[g][x];
            }
            const int row = (int)(i / n);
            float* p = out_at<true>(C, e, row, (int)(i - (I)row * n), n);
            float v = alpha * t;
            if (beta != 0.0f) {
                v += beta * *p;
            }
            *p = finish<true>(v, row, e, p);
        }
        // The sums are read before the next group overwrites them.
        __syncthreads();
    }
}

// With a plain product's epilogue (parts = 0: the part selection falls to part 0, C itself, no
// bias, no ReLU, unblocked) or a convolution's. 256 threads a block.
extern "C" __global__ void __launch_bounds__(REDUCE_OUTPUTS * REDUCE_GROUPS) sgemm_split_reduce(const float* W, int splits, int m, int n, float alpha, float beta, float* C,
                                              long long c_off, const Epilogue e)
{
    if ((long long)m * n <= 0x7fffffffLL) {
        split_reduce<int>(W, splits, m, n, alpha, beta, C + c_off, e);
    } else {
        split_reduce<long long>(W, splits, m, n, alpha, beta, C + c_off, e);
    }
}
