// Host-emulated checks of kernels/gemm.cu against a double-precision reference: all four
// transpose variants, ragged m/n/k (incl. k = 0), unaligned offsets and strides (scalar path) and
// aligned ones (float4 path), batched and summed (sum_batch) products, split-k (parts written to
// a workspace, then sgemm_split_reduce, 8 threads an output), beta = 0 over NaN garbage, nothing written outside
// the C matrices, and the convolution epilogue (bias per row, ReLU, C's columns stored in
// blocks: NCHW from a chunk's product) on every path that stores C.
#include "cuda_shim.h"
#include "../gemm.cu"
#include <cstdint>
static uint64_t rs = 12345;
static float rnd() { rs = rs * 6364136223846793005ULL + 1442695040888963407ULL; return ((rs >> 40) / 16777216.0f) * 2 - 1; }
int fails = 0, runs = 0;
// The value an operand has on a tensor core: rounded to TF32 (cvt.rna).
static double as_tf32(float x) { unsigned u = to_tf32(x); float v; std::memcpy(&v, &u, 4); return v; }
// A test's kernel family: 0 FP32 (64 x 64 tiles); TF32 on 128-row tiles (1), 64-row ones (2, 4
// warps) or 96-row ones (3, 8 warps of 48 x 32).
static unsigned tile_rows(int tensor) { return tensor == 1 ? 128 : tensor == 3 ? 96 : 64; }
static unsigned tile_threads(int tensor) { return tensor == 2 ? 128 : 256; }
// With `tensor` 1, the TF32 kernels (tgemm_*, 128 x 128 tiles), with 2 and 3 their 64- and
// 96-row variants (tgemm64_*, tgemm96_*), checked against the product of the TF32-rounded
// operands with the same bound: a fragment or copy in the wrong place, or an operand not
// rounded, is far outside it.
// The epilogue of a test: a random bias per row or none, ReLU, the block length of C's columns,
// and a mask laid out as C (about half of it not positive) that zeroes the values where it is
// not positive.
struct Epi {
    bool bias;
    int relu;
    int block;
    bool mask = false;
};
void test(bool ta, bool tb, int m, int n, int k, int batch, int sum, float alpha, float beta, long long ao, long long bo, long long co, int astr_extra, int bstr_extra, int cstr_extra, int zcap = 65535, int splits = 1, int tensor = 0, Epi epi = {false, 0, 0}) {
    long long as = batch > 1 ? (long long)m * k + astr_extra : 0, bs = batch > 1 ? (long long)k * n + bstr_extra : 0;
    long long cs = (batch > 1 && !sum) ? (long long)m * n + cstr_extra : 0;
    std::vector<float> A(ao + (batch - 1) * as + m * k + 1), B(bo + (batch - 1) * bs + k * n + 1), C(co + (batch - 1) * cs + m * n + 1);
    for (auto& v : A) v = rnd();
    for (auto& v : B) v = rnd();
    for (auto& v : C) v = beta == 0 ? NAN : rnd();
    std::vector<float> C0 = C;
    std::vector<float> bias(m);
    for (auto& v : bias) v = rnd();
    const float* bp = epi.bias ? bias.data() : nullptr;
    const unsigned tile = tensor ? 128 : 64, rows = tile_rows(tensor), threads = tile_threads(tensor);
    unsigned z = splits > 1 ? (unsigned)std::min(splits, zcap) : (unsigned)(sum ? 1 : std::min(batch, zcap));
    dim3 grid{(unsigned)((n + tile - 1) / tile), (unsigned)((m + rows - 1) / rows), z};
    auto plain = tensor == 2 ? (ta ? (tb ? tgemm64_tt : tgemm64_tn) : (tb ? tgemm64_nt : tgemm64_nn))
                 : tensor == 3 ? (ta ? (tb ? tgemm96_tt : tgemm96_tn) : (tb ? tgemm96_nt : tgemm96_nn))
                 : tensor    ? (ta ? (tb ? tgemm_tt : tgemm_tn) : (tb ? tgemm_nt : tgemm_nn))
                             : (ta ? (tb ? sgemm_tt : sgemm_tn) : (tb ? sgemm_nt : sgemm_nn));
    // A test with an epilogue runs the NN or TN *_epilogue kernel (the layouts that have one).
    const bool with_epi = epi.bias || epi.relu || epi.block || epi.mask;
    std::vector<float> M(C.size());
    for (auto& v : M) v = rnd();
    if (with_epi && tb) { ++fails; printf("FAIL: the epilogue kernels are NN and TN only\n"); return; }
    auto epi_kern = tensor == 2 ? (ta ? tgemm64_tn_epilogue : tgemm64_nn_epilogue)
                    : tensor == 3 ? (ta ? tgemm96_tn_epilogue : tgemm96_nn_epilogue)
                    : tensor    ? (ta ? tgemm_tn_epilogue : tgemm_nn_epilogue)
                                : (ta ? sgemm_tn_epilogue : sgemm_nn_epilogue);
    // One output: part 0, through the kernel's C.
    Epilogue e = {};
    if (with_epi) {
        e.parts = 1;
        e.block = epi.block;
        e.first[1] = m;
        e.bias[0] = bp;
        e.relu[0] = epi.relu;
        e.masked = epi.mask;
    }
    // The mask's distance from the C a run stores into (as the backend computes it).
    auto aim = [&](float* c) { e.mask_delta = (long long)((char*)M.data() - (char*)c); };
    auto kern = [&](float* c, float* w) {
        aim(c);
        if (with_epi) {
            launch(grid, dim3{threads, 1, 1}, epi_kern, m, n, k, alpha, (const float*)A.data(), ao, as, (const float*)B.data(), bo, bs, beta, c, co, cs, batch, sum, splits, w, e);
        } else {
            launch(grid, dim3{threads, 1, 1}, plain, m, n, k, alpha, (const float*)A.data(), ao, as, (const float*)B.data(), bo, bs, beta, c, co, cs, batch, sum, splits, w);
        }
    };
    std::vector<float> W(splits > 1 ? (size_t)splits * m * n : 1, NAN);
    kern(C.data(), W.data());
    if (splits > 1) {
        aim(C.data());
        launch(dim3{3, 1, 1}, dim3{256, 1, 1}, sgemm_split_reduce, (const float*)W.data(), splits, m, n, alpha, beta, C.data(), co, e);
        // The same split product again, its blocks in another order: bit for bit the same
        // result (a fixed order of parts).
        std::vector<float> again = C0;
        std::vector<float> W2(W.size(), NAN);
        const unsigned order = g_block_order;
        g_block_order = order + 1;
        kern(again.data(), W2.data());
        g_block_order = order;
        aim(again.data());
        launch(dim3{2, 1, 1}, dim3{256, 1, 1}, sgemm_split_reduce, (const float*)W2.data(), splits, m, n, alpha, beta, again.data(), co, e);
        if (std::memcmp(again.data(), C.data(), C.size() * 4) != 0) { ++fails; printf("FAIL split product not deterministic\n"); }
    }
    ++runs;
    double maxerr = 0;
    int items = sum ? 1 : batch;
    for (int z = 0; z < items; ++z)
        for (int i = 0; i < m; ++i)
            for (int j = 0; j < n; ++j) {
                double acc = 0, mag = 0;
                for (int it = (sum ? 0 : z); it < (sum ? batch : z + 1); ++it)
                    for (int p = 0; p < k; ++p) {
                        double a = ta ? A[ao + it * as + (long long)p * m + i] : A[ao + it * as + (long long)i * k + p];
                        double b = tb ? B[bo + it * bs + (long long)j * k + p] : B[bo + it * bs + (long long)p * n + j];
                        if (tensor) {
                            a = as_tf32((float)a);
                            b = as_tf32((float)b);
                        }
                        acc += a * b;
                        mag += std::fabs(a * b);
                    }
                long long at = epi.block == 0 ? (long long)i * n + j : ((long long)(j / epi.block) * m + i) * epi.block + j % epi.block;
                long long ci = co + z * cs + at;
                double ref = alpha * acc + (beta == 0 ? 0.0 : beta * C0[ci]) + (epi.bias ? bias[i] : 0.0);
                if (epi.relu) ref = std::max(ref, 0.0);
                if (epi.mask && !(M[ci] > 0)) ref = 0.0;
                // f32 rounding: a few units of 2^-24 of the sum of |terms| (tests/parity_large.rs
                // uses the same bound against the CPU); a wrong or missing term is far outside.
                double bound = 32.0 / 16777216.0 * (std::fabs(alpha) * mag + (beta == 0 ? 0.0 : std::fabs(beta * C0[ci])) + (epi.bias ? std::fabs(bias[i]) : 0.0));
                double err = std::fabs(C[ci] - ref) / (bound + 1e-30);
                if (!(err <= 1)) maxerr = std::isnan(err) ? 1e9 : std::max(maxerr, err);
            }
    // Everything outside the written C ranges untouched.
    int outside = 0;
    for (size_t x = 0; x < C.size(); ++x) {
        bool inside = false;
        for (int z = 0; z < items; ++z) { long long s = co + z * cs; if ((long long)x >= s && (long long)x < s + (long long)m * n) inside = true; }
        if (!inside && !(std::memcmp(&C[x], &C0[x], 4) == 0)) ++outside;
    }
    if (maxerr > 1 || outside) {
        ++fails;
        printf("FAIL ta=%d tb=%d m=%d n=%d k=%d batch=%d sum=%d alpha=%g beta=%g ao=%lld bo=%lld co=%lld bias=%d relu=%d block=%d mask=%d: error %g x the bound, %d written outside\n", ta, tb, m, n, k, batch, sum, alpha, beta, ao, bo, co, epi.bias, epi.relu, epi.block, epi.mask, maxerr, outside);
    }
}
// A product whose rows go to `parts` outputs (gemm_rows_epilogue): part p's rows [first[p],
// first[p + 1]) stored in its own buffer (part 0 through C at an offset, the others at c[p]),
// each with its own bias and ReLU, in the block layout or row-major; through split-k too.
void test_parts(int m, int n, int k, int parts, int block, int tensor, int splits) {
    std::vector<float> A((size_t)m * k), B((size_t)k * n), bias(m);
    for (auto& v : A) v = rnd();
    for (auto& v : B) v = rnd();
    for (auto& v : bias) v = rnd();
    Epilogue e = {};
    e.parts = parts;
    e.block = block;
    // Uneven parts: the first takes a third, the others share the rest.
    for (int p = 1; p < parts; ++p) e.first[p] = p == 1 ? m / 3 : e.first[p - 1] + (m - m / 3) / (parts - 1);
    e.first[parts] = m;
    const long long co = 5;
    std::vector<std::vector<float>> outs(parts);
    for (int p = 0; p < parts; ++p) {
        const int rows = e.first[p + 1] - e.first[p];
        outs[p].assign((p == 0 ? co : 0) + (size_t)rows * n + 3, NAN);
        e.c[p] = outs[p].data();
        // Every other part without bias; ReLU on parts 0 and 2.
        e.bias[p] = p % 2 == 0 ? bias.data() + e.first[p] : nullptr;
        e.relu[p] = p % 2 == 0;
    }
    std::vector<std::vector<float>> before = outs;
    const unsigned tile = tensor ? 128 : 64, rows = tile_rows(tensor), threads = tile_threads(tensor);
    dim3 grid{(unsigned)((n + tile - 1) / tile), (unsigned)((m + rows - 1) / rows), (unsigned)splits};
    std::vector<float> W(splits > 1 ? (size_t)splits * m * n : 1, NAN);
    auto kern = tensor == 2 ? tgemm64_nn_epilogue : tensor == 3 ? tgemm96_nn_epilogue : tensor ? tgemm_nn_epilogue : sgemm_nn_epilogue;
    launch(grid, dim3{threads, 1, 1}, kern, m, n, k, 1.0f, (const float*)A.data(), 0LL, 0LL, (const float*)B.data(), 0LL, 0LL, 0.0f, outs[0].data(), co, 0LL, 1, 0, splits, W.data(), e);
    if (splits > 1) launch(dim3{3, 1, 1}, dim3{256, 1, 1}, sgemm_split_reduce, (const float*)W.data(), splits, m, n, 1.0f, 0.0f, outs[0].data(), co, e);
    ++runs;
    double maxerr = 0;
    int outside = 0;
    std::vector<std::vector<char>> written(parts);
    for (int p = 0; p < parts; ++p) written[p].assign(outs[p].size(), 0);
    for (int i = 0; i < m; ++i) {
        int p = 0;
        while (p + 1 < parts && i >= e.first[p + 1]) ++p;
        const int r = i - e.first[p], rows = e.first[p + 1] - e.first[p];
        for (int j = 0; j < n; ++j) {
            double acc = 0, mag = 0;
            for (int q = 0; q < k; ++q) {
                double a = A[(size_t)i * k + q], b = B[(size_t)q * n + j];
                if (tensor) { a = as_tf32((float)a); b = as_tf32((float)b); }
                acc += a * b;
                mag += std::fabs(a * b);
            }
            const long long at = (p == 0 ? co : 0) + (block == 0 ? (long long)r * n + j : ((long long)(j / block) * rows + r) * block + j % block);
            double ref = acc + (e.bias[p] ? bias[i] : 0.0);
            if (e.relu[p]) ref = std::max(ref, 0.0);
            const double bound = 32.0 / 16777216.0 * (mag + std::fabs(bias[i]));
            const double err = std::fabs(outs[p][at] - ref) / (bound + 1e-30);
            if (!(err <= 1)) maxerr = std::isnan(err) ? 1e9 : std::max(maxerr, err);
            written[p][at] = 1;
        }
    }
    for (int p = 0; p < parts; ++p)
        for (size_t x = 0; x < outs[p].size(); ++x)
            if (!written[p][x] && std::memcmp(&outs[p][x], &before[p][x], 4) != 0) ++outside;
    if (maxerr > 1 || outside) {
        ++fails;
        printf("FAIL parts=%d m=%d n=%d k=%d block=%d tensor=%d splits=%d: error %g x the bound, %d written outside\n", parts, m, n, k, block, tensor, splits, maxerr, outside);
    }
}
// The implicit convolution products (kernels/gemm.cu's Gather) on a random convolution of
// `count` images, x [count][c][h][w] and w [o][c][r][s], stride (sh, sw), padding (ph, pw), each
// against the direct sums of the TF32-rounded operands with test()'s bound:
// - tgemm_conv_fwd: y = w * x gathered, through the epilogue (a bias, ReLU, NCHW at an offset);
// - tgemm_conv_wgrad: dw = alpha * dy x^T + beta * dw, dy in rows [o][count][oh][ow];
// - tgemm_dgrad (stride 1): dx from Wt = the weights transposed [c][r][s][o] and dy gathered.
// `tensor` 1, 2 or 3 picks the 128-, 64- or 96-row tile (the weight gradient has no 128-row one); `splits` > 1 adds sgemm_split_reduce. Nothing
// outside the output may change.
void test_conv(int mode, int c, int o, int h, int w, int r, int s, int sh, int sw, int ph, int pw, int count, int tensor, int splits) {
    const int oh = (h + 2 * ph - r) / sh + 1, ow = (w + 2 * pw - s) / sw + 1;
    std::vector<float> X((size_t)count * c * h * w), Wt((size_t)o * c * r * s), dy((size_t)o * count * oh * ow), bias(o);
    for (auto& v : X) v = rnd();
    for (auto& v : Wt) v = rnd();
    for (auto& v : dy) v = rnd();
    for (auto& v : bias) v = rnd();
    auto xv = [&](int img, int ci, int iy, int ix) -> double {
        if (iy < 0 || iy >= h || ix < 0 || ix >= w) return 0.0;
        return as_tf32(X[(((size_t)img * c + ci) * h + iy) * w + ix]);
    };
    auto wv = [&](int co, int ci, int rr, int ss) { return as_tf32(Wt[(((size_t)co * c + ci) * r + rr) * s + ss]); };
    auto dyv = [&](int co, int img, int y, int x) -> double {
        if (y < 0 || y >= oh || x < 0 || x >= ow) return 0.0;
        return as_tf32(dy[(((size_t)co * count + img) * oh + y) * ow + x]);
    };
    if (mode == GATHER_WGRAD && tensor == 1) tensor = 2;
    const unsigned rows = tile_rows(tensor), threads = tile_threads(tensor);
    Gather g = {};
    g.kh = r;
    g.kw = s;
    g.stride_h = sh;
    g.stride_w = sw;
    g.pad_h = ph;
    g.pad_w = pw;
    int m, n, k;
    const float* A;
    const float* B;
    std::vector<float> Wtr, out;
    long long off = 0;
    float alpha = 1.0f, beta = 0.0f;
    Epilogue e = {};
    e.parts = 1;
    if (mode == GATHER_DGRAD) {
        m = c, n = count * h * w, k = r * s * o;
        Wtr.resize((size_t)c * k);
        for (int co = 0; co < o; ++co)
            for (int ci = 0; ci < c; ++ci)
                for (int q = 0; q < r * s; ++q) Wtr[((size_t)ci * r * s + q) * o + co] = Wt[((size_t)co * c + ci) * r * s + q];
        A = Wtr.data(), B = dy.data();
        g.channels = o, g.h = oh, g.w = ow, g.out_w = w, g.out_plane = h * w;
        g.chan_stride = count * oh * ow, g.img_stride = oh * ow;
        off = (long long)c * h * w;
        e.block = h * w;
        e.first[1] = m;
        out.assign(off + (size_t)m * n + 5, NAN);
    } else {
        g.channels = c, g.h = h, g.w = w, g.out_w = ow, g.out_plane = oh * ow;
        g.chan_stride = h * w, g.img_stride = c * h * w;
        B = X.data();
        if (mode == GATHER_FWD) {
            m = o, n = count * oh * ow, k = c * r * s;
            A = Wt.data();
            off = 3;
            e.block = oh * ow;
            e.first[1] = m;
            e.bias[0] = bias.data();
            e.relu[0] = 1;
            out.assign(off + (size_t)m * n + 5, NAN);
        } else {
            m = o, n = c * r * s, k = count * oh * ow;
            A = dy.data();
            alpha = 0.5f, beta = 1.0f;
            e = {};
            out.resize((size_t)m * n);
            for (auto& v : out) v = rnd();
        }
    }
    const std::vector<float> before = out;
    dim3 grid{(unsigned)((n + 127) / 128), (unsigned)((m + rows - 1) / rows), (unsigned)splits};
    std::vector<float> Wk(splits > 1 ? (size_t)splits * m * n : 1, NAN);
    auto kern = mode == GATHER_FWD ? (tensor == 2 ? tgemm64_conv_fwd : tensor == 3 ? tgemm96_conv_fwd : tgemm_conv_fwd)
                : mode == GATHER_WGRAD ? (tensor == 3 ? tgemm96_conv_wgrad : tgemm64_conv_wgrad)
                                       : (tensor == 2 ? tgemm64_dgrad : tensor == 3 ? tgemm96_dgrad : tgemm_dgrad);
    launch(grid, dim3{threads, 1, 1}, kern, m, n, k, alpha, A, B, beta, out.data(), off, splits, Wk.data(), e, g);
    if (splits > 1) launch(dim3{3, 1, 1}, dim3{256, 1, 1}, sgemm_split_reduce, (const float*)Wk.data(), splits, m, n, alpha, beta, out.data(), off, e);
    ++runs;
    double maxerr = 0;
    std::vector<char> written(out.size(), 0);
    auto check = [&](size_t at, double acc, double mag, double extra) {
        const double err = std::fabs(out[at] - acc) / (32.0 / 16777216.0 * (mag + extra) + 1e-30);
        if (!(err <= 1)) maxerr = std::isnan(err) ? 1e9 : std::max(maxerr, err);
        written[at] = 1;
    };
    if (mode == GATHER_FWD) {
        for (int img = 0; img < count; ++img)
            for (int co = 0; co < o; ++co)
                for (int y = 0; y < oh; ++y)
                    for (int x = 0; x < ow; ++x) {
                        double acc = 0, mag = 0;
                        for (int ci = 0; ci < c; ++ci)
                            for (int rr = 0; rr < r; ++rr)
                                for (int ss = 0; ss < s; ++ss) {
                                    const double t = wv(co, ci, rr, ss) * xv(img, ci, y * sh - ph + rr, x * sw - pw + ss);
                                    acc += t, mag += std::fabs(t);
                                }
                        check(off + (((size_t)img * o + co) * oh + y) * ow + x, std::max(acc + bias[co], 0.0), mag, std::fabs(bias[co]));
                    }
    } else if (mode == GATHER_WGRAD) {
        for (int co = 0; co < o; ++co)
            for (int ci = 0; ci < c; ++ci)
                for (int rr = 0; rr < r; ++rr)
                    for (int ss = 0; ss < s; ++ss) {
                        double acc = 0, mag = 0;
                        for (int img = 0; img < count; ++img)
                            for (int y = 0; y < oh; ++y)
                                for (int x = 0; x < ow; ++x) {
                                    const double t = dyv(co, img, y, x) * xv(img, ci, y * sh - ph + rr, x * sw - pw + ss);
                                    acc += t, mag += std::fabs(t);
                                }
                        const size_t at = (((size_t)co * c + ci) * r + rr) * s + ss;
                        check(at, alpha * acc + beta * before[at], alpha * mag, std::fabs(before[at]));
                    }
    } else {
        for (int img = 0; img < count; ++img)
            for (int ci = 0; ci < c; ++ci)
                for (int y = 0; y < h; ++y)
                    for (int x = 0; x < w; ++x) {
                        double acc = 0, mag = 0;
                        for (int co = 0; co < o; ++co)
                            for (int rr = 0; rr < r; ++rr)
                                for (int ss = 0; ss < s; ++ss) {
                                    const double t = wv(co, ci, rr, ss) * dyv(co, img, y + ph - rr, x + pw - ss);
                                    acc += t, mag += std::fabs(t);
                                }
                        check(off + (((size_t)img * c + ci) * h + y) * w + x, acc, mag, 0.0);
                    }
    }
    int outside = 0;
    for (size_t x = 0; x < out.size(); ++x)
        if (!written[x] && std::memcmp(&out[x], &before[x], 4) != 0) ++outside;
    if (maxerr > 1 || outside) {
        ++fails;
        printf("FAIL conv mode=%d c=%d o=%d %dx%d kernel %dx%d stride %d,%d pad %d,%d count=%d tensor=%d splits=%d: error %g x the bound, %d written outside\n", mode, c, o, h, w, r, s, sh, sw, ph, pw, count, tensor, splits, maxerr, outside);
    }
}
int main() {
    int shapes[][3] = {{1, 1, 1}, {64, 64, 16}, {65, 63, 17}, {128, 68, 32}, {3, 130, 5}, {70, 36, 0}, {4, 8, 12}, {67, 129, 33}, {16, 20, 48}};
    for (int t = 0; t < 4; ++t)
        for (auto& s : shapes) {
            bool ta = t & 2, tb = t & 1;
            test(ta, tb, s[0], s[1], s[2], 1, 0, 1.0f, 0.0f, 0, 0, 0, 0, 0, 0);
            test(ta, tb, s[0], s[1], s[2], 3, 0, 1.5f, 0.5f, 4, 8, 4, 4, 0, 8);
            test(ta, tb, s[0], s[1], s[2], 2, 0, 1.0f, 0.0f, 3, 1, 2, 1, 3, 5);
            test(ta, tb, s[0], s[1], s[2], 3, 1, 1.0f, 1.0f, 0, 4, 1, 0, 4, 0);
            test(ta, tb, s[0], s[1], s[2], 4, 1, 0.5f, 0.0f, 1, 0, 0, 3, 1, 0);
        }
    // A real layer's shapes at 16-byte-aligned offsets and strides (the float4 paths every real
    // layer takes): GoogLeNet 4a 3x3's three products, the weight gradient summed. (Larger k costs
    // the emulation's barriers too much time; tests/parity_large.rs runs every layer on a GPU.)
    test(false, false, 208, 36, 864, 2, 0, 1.0f, 0.0f, 4, 8, 12, 0, 4, 4);
    test(true, false, 864, 36, 208, 2, 0, 1.0f, 0.0f, 0, 4, 8, 4, 4, 0);
    test(false, true, 208, 864, 36, 3, 1, 1.0f, 0.0f, 8, 4, 0, 4, 8, 0);
    // Split-k: a single product and summed ones, parts longer and shorter than an item, more parts
    // than grid z-blocks, k not a multiple of the slice, alpha and beta.
    test(false, false, 20, 30, 300, 1, 0, 1.0f, 0.0f, 0, 0, 0, 0, 0, 0, 65535, 5);
    test(true, false, 33, 17, 100, 1, 0, 0.5f, 1.0f, 3, 1, 2, 0, 0, 0, 65535, 7);
    test(false, true, 64, 49, 37, 6, 1, 1.0f, 0.0f, 4, 4, 0, 4, 4, 0, 65535, 4);
    test(true, true, 9, 70, 20, 5, 1, 0.75f, 0.5f, 1, 2, 3, 1, 1, 0, 3, 11);
    // Many parts (more than the reduction's 8 threads an output, not a multiple of them), the
    // outputs not a multiple of its 32.
    test(false, true, 20, 23, 400, 3, 1, 1.0f, 0.0f, 0, 4, 0, 0, 4, 0, 65535, 37);
    test(false, false, 5, 5, 3, 9, 1, 1.0f, 0.0f, 0, 0, 0, 0, 0, 0, 65535, 9);
    // Fewer grid z-blocks than items (the backend clamps z to 65,535): each block strides over the
    // batch.
    test(false, false, 5, 7, 3, 9, 0, 1.0f, 0.0f, 1, 2, 3, 1, 1, 1, 2);
    test(true, true, 65, 9, 17, 5, 0, 0.5f, 1.0f, 4, 4, 4, 4, 4, 4, 3);
    // TF32 tensor cores, all three tile heights: every layout with ragged m, n (tiles past the edges)
    // and k (a slice part full), aligned operands (16-byte cp.async) and unaligned ones (4-byte),
    // per item, summed, split into parts, k = 0, and beta = 0 over NaN.
    for (int tensor = 1; tensor <= 3; ++tensor) {
        for (int t = 0; t < 4; ++t) {
            bool ta = t & 2, tb = t & 1;
            test(ta, tb, 130, 70, 100, 1, 0, 1.0f, 0.0f, 0, 0, 0, 0, 0, 0, 65535, 1, tensor);
            test(ta, tb, 64, 136, 64, 2, 0, 1.5f, 0.5f, 4, 8, 4, 4, 8, 4, 65535, 1, tensor);
            test(ta, tb, 33, 17, 45, 2, 0, 1.0f, 0.0f, 3, 1, 2, 1, 3, 5, 65535, 1, tensor);
            test(ta, tb, 20, 40, 40, 3, 1, 0.75f, 1.0f, 0, 4, 1, 0, 4, 0, 65535, 1, tensor);
            test(ta, tb, 16, 24, 200, 1, 0, 1.0f, 0.0f, 4, 4, 0, 0, 0, 0, 65535, 3, tensor);
        }
        test(false, false, 8, 8, 0, 1, 0, 1.0f, 0.5f, 0, 0, 0, 0, 0, 0, 65535, 1, tensor);
        test(false, true, 12, 20, 36, 5, 1, 1.0f, 0.0f, 1, 2, 3, 1, 1, 0, 2, 4, tensor);
    }
    // The 96-row tile's second warp row (rows 48..95) and second tile, both layouts of A.
    for (int t = 0; t < 4; ++t) {
        bool ta = t & 2, tb = t & 1;
        test(ta, tb, 96, 40, 40, 1, 0, 1.0f, 0.0f, 0, 0, 0, 0, 0, 0, 65535, 1, 3);
        test(ta, tb, 190, 20, 33, 2, 0, 1.0f, 0.5f, 1, 3, 2, 1, 3, 1, 65535, 1, 3);
    }
    // The TN epilogue (a 1x1 convolution's input gradient W^T dy stored as NCHW): blocks of
    // P = 36 (float4 stores) and 9 (scalar), through split-k, with a bias and ReLU too.
    for (int tensor = 0; tensor < 4; ++tensor) {
        test(true, false, 40, 3 * 36, 24, 1, 0, 1.0f, 0.0f, 0, 0, 4 * 36, 0, 0, 0, 65535, 1, tensor, {false, 0, 36});
        test(true, false, 70, 2 * 9, 33, 1, 0, 1.0f, 0.0f, 3, 1, 9, 0, 0, 0, 65535, 1, tensor, {true, 1, 9});
        test(true, false, 20, 4 * 9, 300, 1, 0, 1.0f, 0.0f, 0, 0, 0, 0, 0, 0, 65535, 4, tensor, {false, 0, 9});
    }
    // A ReLU's mask applied as the product stores (a 1x1 convolution's input gradient through
    // the ReLU before it, Backend::gemm_epilogue's mask): per-image TN products (float4 and
    // scalar stores), a single NN one, and through split-k, on every family.
    for (int tensor = 0; tensor < 4; ++tensor) {
        test(true, false, 70, 36, 24, 3, 0, 1.0f, 0.0f, 0, 0, 0, 0, 0, 0, 65535, 1, tensor, {false, 0, 0, true});
        test(true, false, 20, 9, 33, 2, 0, 1.0f, 0.0f, 0, 0, 0, 0, 0, 0, 65535, 1, tensor, {false, 0, 0, true});
        test(false, false, 100, 45, 17, 1, 0, 1.0f, 0.0f, 0, 0, 0, 0, 0, 0, 65535, 1, tensor, {true, 1, 0, true});
        test(true, false, 20, 12, 300, 1, 0, 1.0f, 0.0f, 0, 0, 0, 0, 0, 0, 65535, 4, tensor, {false, 0, 0, true});
    }
    // Several outputs from one product: 2 to 4 parts, block layouts with float4 stores (P = 12)
    // and scalar ones (P = 9), row-major, parts that share a tile, through split-k.
    for (int tensor = 0; tensor < 4; ++tensor) {
        test_parts(40, 36, 24, 3, 12, tensor, 1);
        test_parts(70, 45, 17, 4, 9, tensor, 1);
        test_parts(9, 130, 20, 2, 0, tensor, 1);
        test_parts(30, 24, 200, 3, 12, tensor, 4);
        test_parts(140, 18, 12, 4, 9, tensor, 1);
    }
    // The convolution epilogue on both families: a chunk's product stored as NCHW (blocks of P =
    // 12, float4 stores; P = 9 and 5, scalar; a tile spanning several blocks) with bias and ReLU,
    // per-image products (the direct path) with bias only or ReLU only, and through split-k.
    for (int tensor = 0; tensor < 4; ++tensor) {
        test(false, false, 20, 36, 40, 1, 0, 1.0f, 0.0f, 0, 0, 8, 0, 0, 0, 65535, 1, tensor, {true, 1, 12});
        test(false, false, 67, 45, 33, 1, 0, 1.0f, 0.0f, 1, 3, 5, 0, 0, 0, 65535, 1, tensor, {true, 1, 9});
        test(false, false, 5, 130, 17, 1, 0, 1.0f, 0.0f, 0, 0, 0, 0, 0, 0, 65535, 1, tensor, {false, 1, 5});
        test(false, false, 9, 64, 24, 3, 0, 1.0f, 0.0f, 4, 4, 0, 4, 4, 0, 65535, 1, tensor, {true, 0, 0});
        test(false, false, 11, 50, 30, 2, 0, 1.0f, 0.0f, 0, 0, 0, 0, 0, 0, 65535, 1, tensor, {false, 1, 0});
        test(false, false, 130, 140, 20, 1, 0, 0.5f, 1.0f, 0, 0, 0, 0, 0, 0, 65535, 1, tensor, {true, 1, 0});
        test(false, false, 10, 36, 300, 1, 0, 1.0f, 0.0f, 0, 0, 4, 0, 0, 0, 65535, 5, tensor, {true, 1, 12});
        test(false, false, 7, 27, 200, 1, 0, 1.0f, 0.0f, 0, 0, 0, 0, 0, 0, 65535, 3, tensor, {true, 0, 9});
    }
    // The implicit convolution products (Gather) on both tile heights: 3x3 "same" over ragged
    // planes, 5x5 with channels not a multiple of the slice (a slice spans several kernel
    // positions), one input or output channel (carries every step), a non-square kernel with
    // uneven padding, no padding, a 1x1 kernel, strides of 2, 3 (unequal) and 4 (forward and
    // weight gradient; the input gradient is stride 1), and split-k.
    for (int tensor = 1; tensor <= 3; ++tensor)
        for (int mode = GATHER_FWD; mode <= GATHER_DGRAD; ++mode) {
            if (mode == GATHER_WGRAD && tensor == 1) continue;  // 64-row tiles only
            const int st = mode == GATHER_DGRAD ? 1 : 2;
            test_conv(mode, 20, 24, 6, 7, 3, 3, 1, 1, 1, 1, 3, tensor, 1);
            test_conv(mode, 70, 40, 5, 5, 5, 5, 1, 1, 2, 2, 2, tensor, 1);
            test_conv(mode, 9, 1, 7, 9, 3, 3, 1, 1, 1, 1, 2, tensor, 1);
            test_conv(mode, 1, 9, 9, 7, 3, 3, 1, 1, 1, 1, 2, tensor, 1);
            test_conv(mode, 33, 5, 8, 6, 2, 3, 1, 1, 0, 2, 3, tensor, 1);
            test_conv(mode, 16, 12, 6, 6, 3, 3, 1, 1, 0, 0, 2, tensor, 1);
            test_conv(mode, 5, 37, 4, 4, 1, 1, 1, 1, 0, 0, 9, tensor, 1);
            test_conv(mode, 3, 10, 11, 13, 3, 5, st, mode == GATHER_DGRAD ? 1 : 3, 1, 2, 2, tensor, 1);
            test_conv(mode, 2, 6, 23, 23, 11, 11, 2 * st - 1 + (st > 1), 2 * st - 1 + (st > 1), 0, 0, 2, tensor, 1);
            test_conv(mode, 12, 64, 3, 3, 3, 3, 1, 1, 1, 1, 4, tensor, 5);
        }
    // 96-row tiles past one warp row and one tile: 100 output channels (forward, weight
    // gradient), 97 input channels (input gradient).
    for (int mode = GATHER_FWD; mode <= GATHER_DGRAD; ++mode) {
        test_conv(mode, 6, 100, 5, 4, 3, 3, 1, 1, 1, 1, 2, 3, 1);
        test_conv(mode, 97, 5, 4, 5, 3, 3, 1, 1, 1, 1, 2, 3, 1);
    }
    printf("gemm: %d runs, %d failures\n", runs, fails);
    return fails != 0;
}
