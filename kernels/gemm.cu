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
// sgemm_split_reduce adds the parts in order 0, 1, ... and applies alpha and beta. The order is
// fixed, so the result is the same on every run.
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

// One 64 x 64 tile of C: the steps s_begin..s_end-1 of the sequence of (item, k slice) pairs
// (item = s / k_tiles, slice s % k_tiles), all accumulated, then written to `c` (m x n, row
// stride n) as alpha * acc + beta * c.
template <bool TA, bool TB>
__device__ __forceinline__ void sgemm_tile(int m, int n, int k, float alpha, const float* A, long long a_off, long long a_stride,
                                           const float* B, long long b_off, long long b_stride, float beta, float* c,
                                           long long s_begin, long long s_end)
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
    const int col = n0 + tx * TN;
    const bool c_vec = (n % 4 == 0) && aligned16(c) && col + TN <= n;
#pragma unroll
    for (int i = 0; i < TM; ++i) {
        const int row = m0 + ty * TM + i;
        if (row >= m) {
            continue;
        }
        float* crow = c + (long long)row * n;
        if (c_vec) {
            float4* p = reinterpret_cast<float4*>(crow + col);
            float4 v = make_float4(alpha * acc[i][0], alpha * acc[i][1], alpha * acc[i][2], alpha * acc[i][3]);
            if (beta != 0.0f) {
                const float4 old = *p;
                v.x += beta * old.x;
                v.y += beta * old.y;
                v.z += beta * old.z;
                v.w += beta * old.w;
            }
            *p = v;
        } else {
#pragma unroll
            for (int j = 0; j < TN; ++j) {
                if (col + j < n) {
                    float v = alpha * acc[i][j];
                    if (beta != 0.0f) {
                        v += beta * crow[col + j];
                    }
                    crow[col + j] = v;
                }
            }
        }
    }
}

template <bool TA, bool TB>
__device__ __forceinline__ void sgemm(int m, int n, int k, float alpha, const float* A, long long a_off, long long a_stride,
                                      const float* B, long long b_off, long long b_stride, float beta, float* C, long long c_off,
                                      long long c_stride, int batch, int sum_batch, int splits, float* W)
{
    const long long k_tiles = (k + BK - 1) / BK;
    if (splits > 1) {
        // Part z of the (summed, or single) product's steps into W[z]: raw sums, alpha 1, beta 0.
        const long long total = (sum_batch ? (long long)batch : 1LL) * k_tiles;
        const long long per = (total + splits - 1) / splits;
        for (int z = blockIdx.z; z < splits; z += gridDim.z) {
            const long long s0 = min((long long)z * per, total);
            const long long s1 = min(s0 + per, total);
            float* w = W + (long long)z * m * n;
            sgemm_tile<TA, TB>(m, n, k, 1.0f, A, a_off, a_stride, B, b_off, b_stride, 0.0f, w, s0, s1);
        }
        return;
    }
    if (sum_batch) {
        // blockIdx.z is 0 here; one pass over all items into the single C.
        if (blockIdx.z == 0 && batch > 0) {
            sgemm_tile<TA, TB>(m, n, k, alpha, A, a_off, a_stride, B, b_off, b_stride, beta, C + c_off, 0,
                               (long long)batch * k_tiles);
        }
        return;
    }
    for (int z = blockIdx.z; z < batch; z += gridDim.z) {
        float* c = C + c_off + (long long)z * c_stride;
        sgemm_tile<TA, TB>(m, n, k, alpha, A, a_off, a_stride, B, b_off, b_stride, beta, c, z * k_tiles, (z + 1) * k_tiles);
    }
}

// Thin entry points, one per transpose combination: first letter A, second B ('t' = transposed).
// W is only read with splits > 1 (then it holds splits * m * n values).
#define SGEMM_ENTRY(NAME, TA, TB)                                                                                          \
    extern "C" __global__ void __launch_bounds__(THREADS)                                                                  \
        NAME(int m, int n, int k, float alpha, const float* A, long long a_off, long long a_stride, const float* B,       \
             long long b_off, long long b_stride, float beta, float* C, long long c_off, long long c_stride, int batch,    \
             int sum_batch, int splits, float* W)                                                                          \
    {                                                                                                                      \
        sgemm<TA, TB>(m, n, k, alpha, A, a_off, a_stride, B, b_off, b_stride, beta, C, c_off, c_stride, batch, sum_batch,  \
                      splits, W);                                                                                          \
    }

SGEMM_ENTRY(sgemm_nn, false, false)
SGEMM_ENTRY(sgemm_nt, false, true)
SGEMM_ENTRY(sgemm_tn, true, false)
SGEMM_ENTRY(sgemm_tt, true, true)

// C = alpha * (W[0] + W[1] + ... + W[splits - 1]) + beta * C over the m * n outputs of a split
// product, the parts added in that order (deterministic). beta == 0 does not read C. One thread
// per output, grid-stride; 32-bit indices when they fit.
template <typename I>
__device__ __forceinline__ void split_reduce(const float* W, int splits, I mn, float alpha, float beta, float* C)
{
    for (I i = (I)blockIdx.x * blockDim.x + threadIdx.x; i < mn; i += (I)gridDim.x * blockDim.x) {
        float s = W[i];
        for (int z = 1; z < splits; ++z) {
            s += W[(long long)z * mn + i];
        }
        float v = alpha * s;
        if (beta != 0.0f) {
            v += beta * C[i];
        }
        C[i] = v;
    }
}

extern "C" __global__ void sgemm_split_reduce(const float* W, int splits, long long mn, float alpha, float beta, float* C,
                                              long long c_off)
{
    if (mn <= 0x7fffffffLL) {
        split_reduce<int>(W, splits, (int)mn, alpha, beta, C + c_off);
    } else {
        split_reduce<long long>(W, splits, mn, alpha, beta, C + c_off);
    }
}
