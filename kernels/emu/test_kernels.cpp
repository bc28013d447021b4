// Host-emulated checks of every other kernel family against transliterations of
// crates/tensor/src/cpu: bit-exact where the CPU's order of operations is reproduced (im2col,
// col2im, pooling incl. ties and padding, ReLU, dropout, element-wise maps, channel copies,
// the loss gradient, optimizers), to 1e-6 where the GPU reduces in a different order (channel sums,
// global average pool, sum, the mean loss). Small grids exercise the grid-stride loops.
#include "cuda_shim.h"
#include "../im2col.cu"
#include "../bias.cu"
#include "../pool.cu"
#include "../activation.cu"
#include "../elementwise.cu"
#include "../loss.cu"
#include "../optim.cu"
#include <cstdint>
static uint64_t rs = 777;
static float rnd() { rs = rs * 6364136223846793005ULL + 1442695040888963407ULL; return ((rs >> 40) / 16777216.0f) * 2 - 1; }
static std::vector<float> rv(size_t n) { std::vector<float> v(n); for (auto& x : v) x = rnd(); return v; }
// Few distinct values, so max-pool ties happen.
static std::vector<float> rties(size_t n) { std::vector<float> v(n); for (auto& x : v) x = (float)((int)(rnd() * 3)); return v; }
int fails = 0;
static bool same(const char* what, const std::vector<float>& a, const std::vector<float>& b, double tol = 0) {
    for (size_t i = 0; i < a.size(); ++i) {
        bool ok = tol == 0 ? std::memcmp(&a[i], &b[i], 4) == 0 : std::fabs(a[i] - b[i]) <= tol * (1 + std::fabs(b[i]));
        if (!ok) { printf("FAIL %s at %zu: %.9g vs %.9g\n", what, i, a[i], b[i]); ++fails; return false; }
    }
    return true;
}
static dim3 egrid(long long n, int cap = 65535) { return dim3{(unsigned)std::max(1LL, std::min<long long>((n + 255) / 256, cap)), 1, 1}; }
static const dim3 B256{256, 1, 1};

// ---- references transliterated from crates/tensor/src/cpu ----
static void pool_win(int o, int s, int p, int k, int len, int& lo, int& hi) { int st = o * s - p; lo = std::max(st, 0); hi = std::min(std::max(st + k, 0), len); }
struct PG { int planes, h, w, kh, kw, sh, sw, ph, pw, oh, ow; };
static int ref_argmax(const float* src, const PG& g, int oy, int ox) {
    int y0, y1, x0, x1; pool_win(oy, g.sh, g.ph, g.kh, g.h, y0, y1); pool_win(ox, g.sw, g.pw, g.kw, g.w, x0, x1);
    int best = y0 * g.w + x0;
    for (int iy = y0; iy < y1; ++iy) for (int ix = x0; ix < x1; ++ix) { int i = iy * g.w + ix; if (src[i] > src[best]) best = i; }
    return best;
}
static void test_pool(PG g, bool ties) {
    int plane = g.h * g.w, op = g.oh * g.ow;
    auto x = ties ? rties(g.planes * plane) : rv(g.planes * plane);
    auto dy = rv(g.planes * op);
    std::vector<float> y(g.planes * op), yr(g.planes * op), dx(g.planes * plane, NAN), dxr(g.planes * plane, 0.0f);
    #define PARGS g.planes, g.h, g.w, g.kh, g.kw, g.sh, g.sw, g.ph, g.pw, g.oh, g.ow
    std::vector<float> arg(g.planes * op, NAN), argr(g.planes * op);
    launch(egrid(y.size(), 3), B256, max_pool2d_forward, (const float*)x.data(), y.data(), arg.data(), PARGS);
    for (int p = 0; p < g.planes; ++p) for (int oy = 0; oy < g.oh; ++oy) for (int ox = 0; ox < g.ow; ++ox) {
        int best = ref_argmax(&x[p * plane], g, oy, ox);
        yr[p * op + oy * g.ow + ox] = x[p * plane + best];
        argr[p * op + oy * g.ow + ox] = (float)best;
    }
    same("max_pool fwd", y, yr);
    same("max_pool fwd argmax", arg, argr);
    launch(egrid(dx.size(), 3), B256, max_pool2d_backward, (const float*)arg.data(), (const float*)dy.data(), dx.data(), PARGS);
    for (int p = 0; p < g.planes; ++p) for (int oy = 0; oy < g.oh; ++oy) for (int ox = 0; ox < g.ow; ++ox)
        dxr[p * plane + ref_argmax(&x[p * plane], g, oy, ox)] += dy[p * op + oy * g.ow + ox];
    same("max_pool bwd", dx, dxr);
    float inv = 1.0f / (float)(g.kh * g.kw);
    launch(egrid(y.size(), 3), B256, avg_pool2d_forward, (const float*)x.data(), y.data(), PARGS);
    for (int p = 0; p < g.planes; ++p) for (int oy = 0; oy < g.oh; ++oy) for (int ox = 0; ox < g.ow; ++ox) {
        int y0, y1, x0, x1; pool_win(oy, g.sh, g.ph, g.kh, g.h, y0, y1); pool_win(ox, g.sw, g.pw, g.kw, g.w, x0, x1);
        float s = 0; for (int iy = y0; iy < y1; ++iy) { float r = -0.0f; for (int ix = x0; ix < x1; ++ix) r += x[p * plane + iy * g.w + ix]; s += r; }
        yr[p * op + oy * g.ow + ox] = s * inv;
    }
    same("avg_pool fwd", y, yr);
    std::fill(dx.begin(), dx.end(), NAN); std::fill(dxr.begin(), dxr.end(), 0.0f);
    launch(egrid(dx.size(), 3), B256, avg_pool2d_backward, (const float*)dy.data(), dx.data(), PARGS);
    for (int p = 0; p < g.planes; ++p) for (int oy = 0; oy < g.oh; ++oy) for (int ox = 0; ox < g.ow; ++ox) {
        int y0, y1, x0, x1; pool_win(oy, g.sh, g.ph, g.kh, g.h, y0, y1); pool_win(ox, g.sw, g.pw, g.kw, g.w, x0, x1);
        float share = dy[p * op + oy * g.ow + ox] * inv;
        for (int iy = y0; iy < y1; ++iy) for (int ix = x0; ix < x1; ++ix) dxr[p * plane + iy * g.w + ix] += share;
    }
    same("avg_pool bwd", dx, dxr);
}
static PG mkpg(int planes, int h, int w, int kh, int kw, int sh, int sw, int ph, int pw) {
    return PG{planes, h, w, kh, kw, sh, sw, ph, pw, (h + 2 * ph - kh) / sh + 1, (w + 2 * pw - kw) / sw + 1};
}
static void test_conv(int n, int c, int h, int w, int kh, int kw, int sh, int sw, int ph, int pw, int first, int count) {
    int oh = (h + 2 * ph - kh) / sh + 1, ow = (w + 2 * pw - kw) / sw + 1, P = oh * ow, R = c * kh * kw;
    auto x = rv((size_t)n * c * h * w);
    std::vector<float> cols((size_t)count * R * P, NAN), colsr((size_t)count * R * P);
    launch(egrid(cols.size(), 5), B256, im2col, (const float*)x.data(), cols.data(), first, count, c, h, w, kh, kw, sh, sw, ph, pw, oh, ow);
    for (int i = 0; i < count; ++i) for (int ch = 0; ch < c; ++ch) for (int ki = 0; ki < kh; ++ki) for (int kj = 0; kj < kw; ++kj)
        for (int oy = 0; oy < oh; ++oy) for (int ox = 0; ox < ow; ++ox) {
            int iy = oy * sh + ki - ph, ix = ox * sw + kj - pw;
            colsr[((size_t)((ch * kh + ki) * kw + kj) * count + i) * P + oy * ow + ox] =
                (iy >= 0 && iy < h && ix >= 0 && ix < w) ? x[(((size_t)(first + i) * c + ch) * h + iy) * w + ix] : 0.0f;
        }
    same("im2col", cols, colsr);
    auto cin = rv(cols.size());
    std::vector<float> dx((size_t)n * c * h * w, 7.0f), dxr = dx;
    launch(egrid((long long)count * c * h * w, 5), B256, col2im, (const float*)cin.data(), dx.data(), first, count, c, h, w, kh, kw, sh, sw, ph, pw, oh, ow);
    for (int i = 0; i < count; ++i) for (int ch = 0; ch < c; ++ch) {
        float* d = &dxr[((size_t)(first + i) * c + ch) * h * w];
        std::fill(d, d + h * w, 0.0f);
        for (int ki = 0; ki < kh; ++ki) for (int kj = 0; kj < kw; ++kj) for (int oy = 0; oy < oh; ++oy) for (int ox = 0; ox < ow; ++ox) {
            int iy = oy * sh + ki - ph, ix = ox * sw + kj - pw;
            if (iy >= 0 && iy < h && ix >= 0 && ix < w) d[iy * w + ix] += cin[((size_t)((ch * kh + ki) * kw + kj) * count + i) * P + oy * ow + ox];
        }
    }
    same("col2im", dx, dxr);
}
static float ref_uniform(uint64_t seed, uint64_t index) {
    uint64_t z = seed + (index + 1) * 0x9E3779B97F4A7C15ULL;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL; z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL; z ^= z >> 31;
    return (float)(z >> 40) * (1.0f / (float)(1ULL << 24));
}
static double ref_row(const float* row, int classes, int& arg) {
    arg = 0; for (int j = 0; j < classes; ++j) if (row[j] > row[arg]) arg = j;
    double mx = row[arg], s = 0; for (int j = 0; j < classes; ++j) s += std::exp((double)row[j] - mx);
    return mx + std::log(s);
}
int main() {
    // pooling, incl. ties, padding, stride > kernel, 1x1 windows
    test_pool(mkpg(3, 7, 9, 3, 3, 2, 2, 1, 1), true);
    test_pool(mkpg(2, 8, 8, 2, 2, 2, 2, 0, 0), true);
    test_pool(mkpg(2, 13, 11, 3, 2, 1, 2, 1, 1), false);
    test_pool(mkpg(4, 6, 6, 3, 3, 1, 1, 1, 1), true);
    test_pool(mkpg(2, 9, 9, 2, 2, 3, 3, 1, 0), false);
    test_pool(mkpg(1, 5, 5, 5, 5, 1, 1, 2, 2), true);
    test_pool(mkpg(2, 1, 1, 1, 1, 1, 1, 0, 0), false);
    // im2col / col2im
    test_conv(3, 2, 7, 6, 3, 3, 1, 1, 1, 1, 1, 2);
    test_conv(2, 3, 9, 8, 5, 3, 2, 3, 2, 1, 0, 2);
    test_conv(2, 1, 6, 6, 1, 1, 1, 1, 0, 0, 1, 1);
    test_conv(1, 2, 11, 11, 11, 11, 4, 4, 0, 0, 0, 1);
    test_conv(2, 2, 5, 5, 2, 2, 3, 3, 2, 2, 0, 2);
    // bias
    // Planes of 7 and 1 (a float at a time), 1000, 36 and 4 (float4 loads and stores), 0.
    for (auto [o, c, in] : std::vector<std::tuple<int, int, int>>{{3, 5, 7}, {300, 10, 1}, {2, 3, 1000}, {5, 4, 36}, {70, 3, 4}, {1, 1, 0}, {0, 2, 3}}) {
        auto y = rv((size_t)o * c * in), b = rv(c), yr = y;
        auto y0 = y;
        launch(egrid(y.size(), 2), B256, add_bias, y.data(), (const float*)b.data(), o, c, in);
        for (int i = 0; i < o; ++i) for (int ch = 0; ch < c; ++ch) for (int j = 0; j < in; ++j) yr[((size_t)i * c + ch) * in + j] += b[ch];
        same("add_bias", y, yr);
        // bias + ReLU in place, with and without a bias: bit for bit the CPU's max(y + b, 0).
        auto z = y0, zr = y0;
        launch(egrid(z.size(), 2), B256, bias_relu, z.data(), (const float*)b.data(), o, c, in);
        for (size_t i = 0; i < zr.size(); ++i) zr[i] = std::max(yr[i], 0.0f);
        same("bias_relu", z, zr);
        auto u = y0, ur = y0;
        launch(egrid(u.size(), 2), B256, bias_relu, u.data(), (const float*)nullptr, o, c, in);
        for (auto& v : ur) v = std::max(v, 0.0f);
        same("bias_relu without bias", u, ur);
        // Channel sums (bias_grad), in 1 to 3 parts per channel, with fewer blocks than channels.
        std::vector<float> dbr(c), dy = rv(y.size());
        for (int ch = 0; ch < c; ++ch) { double s = 0; for (int i = 0; i < o; ++i) for (int j = 0; j < in; ++j) s += dy[((size_t)i * c + ch) * in + j]; dbr[ch] = (float)s; }
        // One launch: with parts > 1 the last part of each channel adds the parts (zeroed
        // counters, left zeroed), the same bits whichever block comes last.
        auto channel_sums_of = [&](const float* mask, const float* g, float* dz, int parts, unsigned blocks, int rows = 0) {
            std::vector<float> partial((size_t)c * parts + 1, NAN), db(c, NAN);
            std::vector<int> counters(c + 1, 0);
            launch(dim3{blocks, (unsigned)parts, 1}, B256, channel_sums, mask, g, dz, rows, partial.data(), counters.data(), db.data(), o, c, in, parts);
            for (int v : counters) if (v != 0) { ++fails; printf("FAIL channel_sums left a counter at %d\n", v); break; }
            const unsigned order = g_block_order;
            g_block_order = order + 7;
            std::vector<float> again(c, NAN);
            launch(dim3{blocks, (unsigned)parts, 1}, B256, channel_sums, mask, g, dz, rows, partial.data(), counters.data(), again.data(), o, c, in, parts);
            g_block_order = order;
            if (std::memcmp(again.data(), db.data(), db.size() * 4) != 0) { ++fails; printf("FAIL channel_sums not deterministic\n"); }
            return db;
        };
        for (int parts : {1, 2, 3}) for (unsigned blocks : {(unsigned)std::max(c, 1), 2u}) {
            same("bias_grad (channel_sums)", channel_sums_of(nullptr, dy.data(), nullptr, parts, blocks), dbr, 1e-6);
        }
        // dy 4 bytes past 16-byte alignment: the float-at-a-time path, whatever the plane.
        {
            std::vector<float> shifted(dy.size() + 1);
            std::copy(dy.begin(), dy.end(), shifted.begin() + 1);
            same("bias_grad (channel_sums, unaligned)", channel_sums_of(nullptr, shifted.data() + 1, nullptr, 2, (unsigned)std::max(c, 1)), dbr, 1e-6);
        }
        // The backward of bias + ReLU: the mask and the masked sums in one pass.
        std::vector<float> dz(y.size(), NAN), dzr(y.size()), dbm(c);
        for (size_t i = 0; i < dz.size(); ++i) dzr[i] = z[i] > 0.0f ? dy[i] : 0.0f;
        for (int ch = 0; ch < c; ++ch) { double s = 0; for (int i = 0; i < o; ++i) for (int j = 0; j < in; ++j) s += dzr[((size_t)i * c + ch) * in + j]; dbm[ch] = (float)s; }
        const std::vector<float> db = channel_sums_of(z.data(), dy.data(), dz.data(), 2, (unsigned)std::max(c, 1));
        same("bias_relu_backward mask", dz, dzr);
        // The same with dz written channel by channel ([c][o][in]), in 3 parts and 1.
        for (int parts : {3, 1}) {
            std::vector<float> dzt(dz.size(), NAN), dztr(dz.size());
            for (int i = 0; i < o; ++i) for (int ch = 0; ch < c; ++ch) for (int j = 0; j < in; ++j)
                dztr[((size_t)ch * o + i) * in + j] = dzr[((size_t)i * c + ch) * in + j];
            same("bias_relu_backward_rows bias", channel_sums_of(z.data(), dy.data(), dzt.data(), parts, (unsigned)std::max(c, 1), 1), dbm, 1e-6);
            same("bias_relu_backward_rows mask", dzt, dztr);
        }
        same("bias_relu_backward bias", db, dbm, 1e-6);
    }
    // global average pool
    for (auto [planes, len] : std::vector<std::pair<int, int>>{{6, 49}, {3, 1000}, {4, 1}}) {
        auto x = rv((size_t)planes * len);
        std::vector<float> y(planes, NAN), yr(planes);
        launch(dim3{(unsigned)planes, 1, 1}, B256, global_avg_pool_forward, (const float*)x.data(), y.data(), planes, len);
        for (int p = 0; p < planes; ++p) { double s = 0; for (int i = 0; i < len; ++i) s += x[(size_t)p * len + i]; yr[p] = (float)(s * (1.0 / len)); }
        same("gap fwd", y, yr, 1e-6);
        auto dy = rv(planes);
        std::vector<float> dx(x.size()), dxr(x.size());
        launch(egrid(dx.size(), 2), B256, global_avg_pool_backward, (const float*)dy.data(), dx.data(), planes, len);
        float inv = 1.0f / (float)len;
        for (size_t i = 0; i < dx.size(); ++i) dxr[i] = dy[i / len] * inv;
        same("gap bwd", dx, dxr);
    }
    // activations and dropout
    {
        int n = 5000;
        auto x = rv(n), dy = rv(n);
        std::vector<float> y(n), yr(n), dx(n), dxr(n), mask(n), maskr(n);
        launch(egrid(n, 3), B256, relu_forward, (const float*)x.data(), y.data(), n);
        for (int i = 0; i < n; ++i) yr[i] = std::max(x[i], 0.0f);
        same("relu fwd", y, yr);
        launch(egrid(n, 3), B256, relu_backward, (const float*)y.data(), (const float*)dy.data(), dx.data(), n);
        for (int i = 0; i < n; ++i) dxr[i] = yr[i] > 0 ? dy[i] : 0.0f;
        same("relu bwd", dx, dxr);
        for (float p : {0.5f, 0.1f, 0.0f, 0.9f}) for (uint64_t seed : {0ULL, 42ULL, 0xFFFFFFFFFFFFFFFFULL}) {
            launch(egrid(n, 3), B256, dropout_forward, (const float*)x.data(), y.data(), mask.data(), n, p, (unsigned long long)seed);
            float ks = 1.0f / (1.0f - p);
            for (int i = 0; i < n; ++i) { bool keep = ref_uniform(seed, i) >= p; maskr[i] = keep ? ks : 0.0f; yr[i] = x[i] * maskr[i]; }
            same("dropout mask", mask, maskr); same("dropout y", y, yr);
        }
        // Draws against constants computed independently (Python integers masked to 64 bits).
        const float expect[3] = {0.7415648698806763f, 0.1599103808403015f, 0.27860110998153687f};
        for (int i = 0; i < 3; ++i) {
            if (uniform(42, i) != expect[i]) { printf("FAIL uniform(42, %d) = %.9g, expected %.9g\n", i, uniform(42, i), expect[i]); ++fails; }
        }
    }
    // elementwise
    {
        int n = 3001;
        auto a = rv(n), b = rv(n);
        std::vector<float> o(n), r(n);
        launch(egrid(n, 2), B256, fill, o.data(), n, 2.5f); std::fill(r.begin(), r.end(), 2.5f); same("fill", o, r);
        o = b; r = b; launch(egrid(n, 2), B256, axpy, 0.3f, (const float*)a.data(), o.data(), n);
        for (int i = 0; i < n; ++i) r[i] = r[i] + 0.3f * a[i];
        same("axpy", o, r);
        launch(egrid(n, 2), B256, mul, (const float*)a.data(), (const float*)b.data(), o.data(), n);
        for (int i = 0; i < n; ++i) r[i] = a[i] * b[i];
        same("mul", o, r);
        o = a; launch(egrid(n, 2), B256, scale, o.data(), n, -1.7f); for (int i = 0; i < n; ++i) r[i] = a[i] * -1.7f;
        same("scale", o, r);
        for (int m : {0, 1, 1023, 1025, 3001}) {
            std::vector<float> out(1, NAN), outr(1);
            launch(dim3{1, 1, 1}, dim3{1024, 1, 1}, sum, (const float*)a.data(), out.data(), m);
            double s = 0; for (int i = 0; i < m; ++i) s += a[i]; outr[0] = (float)s;
            same("sum", out, outr, 1e-6);
        }
        int imgs = 3, sc = 5, dc = 7, cnt = 3, pl = 11;
        auto src = rv(imgs * sc * pl);
        std::vector<float> dst(imgs * dc * pl, 9.0f), dstr = dst;
        launch(egrid(imgs * cnt * pl, 1), B256, copy_channels, (const float*)src.data(), sc, 1, dst.data(), dc, 4, cnt, imgs, pl);
        for (int i = 0; i < imgs; ++i) for (int j = 0; j < cnt * pl; ++j) dstr[(i * dc + 4) * pl + j] = src[(i * sc + 1) * pl + j];
        same("copy_channels", dst, dstr);
        // concat_channels / split_channels: four slots, one empty, placed among untouched
        // channels 0, 4 and 12 of the whole; small grids, so threads cross parts and images.
        for (int blocks : {1, 3}) {
            const int cs[4] = {3, 0, 5, 2}, fs[4] = {1, 4, 5, 10}, wc = 13;
            std::vector<std::vector<float>> part(4);
            for (int k = 0; k < 4; ++k) part[k] = rv(std::max(1, imgs * cs[k] * pl));
            std::vector<float> whole(imgs * wc * pl, 9.0f), wholer = whole;
            for (int k = 0; k < 4; ++k)
                for (int i = 0; i < imgs; ++i) for (int j = 0; j < cs[k] * pl; ++j) wholer[(i * wc + fs[k]) * pl + j] = part[k][i * cs[k] * pl + j];
            launch(dim3{(unsigned)blocks, 1, 1}, B256, concat_channels, whole.data(), wc, imgs, pl, (const float*)part[0].data(),
                   (const float*)part[1].data(), (const float*)part[2].data(), (const float*)part[3].data(), cs[0], cs[1], cs[2],
                   cs[3], fs[0], fs[1], fs[2], fs[3]);
            same("concat_channels", whole, wholer);
            auto src = rv(imgs * wc * pl);
            std::vector<std::vector<float>> out(4), outr(4);
            for (int k = 0; k < 4; ++k) {
                out[k].assign(std::max(1, imgs * cs[k] * pl), 9.0f);
                outr[k] = out[k];
                for (int i = 0; i < imgs; ++i) for (int j = 0; j < cs[k] * pl; ++j) outr[k][i * cs[k] * pl + j] = src[(i * wc + fs[k]) * pl + j];
            }
            launch(dim3{(unsigned)blocks, 1, 1}, B256, split_channels, (const float*)src.data(), wc, imgs, pl, out[0].data(),
                   out[1].data(), out[2].data(), out[3].data(), cs[0], cs[1], cs[2], cs[3], fs[0], fs[1], fs[2], fs[3]);
            for (int k = 0; k < 4; ++k) same("split_channels", out[k], outr[k]);
        }
        // transpose_blocks: [rows][cols][block] from offset 5 -> [cols][rows][block] at offset 2
        for (auto [rows, cols, block] : std::vector<std::tuple<int, int, int>>{{4, 3, 7}, {1, 5, 2}, {6, 1, 1}, {3, 300, 9}}) {
            auto tsrc = rv(5 + rows * cols * block);
            std::vector<float> tdst(2 + rows * cols * block, 9.0f), tdstr = tdst;
            launch(egrid((long long)rows * cols * block, 1), B256, transpose_blocks, (const float*)tsrc.data(), 5LL, rows, cols, block, tdst.data(), 2LL);
            for (int r = 0; r < rows; ++r) for (int c = 0; c < cols; ++c) for (int k = 0; k < block; ++k)
                tdstr[2 + ((size_t)c * rows + r) * block + k] = tsrc[5 + ((size_t)r * cols + c) * block + k];
            same("transpose_blocks", tdst, tdstr);
        }
    }
    // Past one grid: a grid capped at 4 blocks over 2^24 + 4099 values makes every thread's
    // grid-stride loop wrap thousands of times, as 65,535 blocks do on a GPU past 2^24 values.
    {
        long long n = (1LL << 24) + 4099;
        std::vector<float> x(n), y(n, 1.0f);
        for (long long i = 0; i < n; ++i) x[i] = (float)((i * 2654435761LL) % 1000) / 500.0f - 1.0f;
        launch(egrid(n, 4), B256, relu_forward, (const float*)x.data(), y.data(), (int)n);
        long long wrong = 0;
        for (long long i = 0; i < n; ++i) wrong += y[i] != std::max(x[i], 0.0f);
        if (wrong) { printf("FAIL relu past one grid: %lld wrong\n", wrong); ++fails; }
    }
    // loss
    for (auto [n, classes] : std::vector<std::pair<int, int>>{{7, 10}, {300, 10}, {5, 1}, {600, 3}}) {
        auto logits = rties((size_t)n * classes);
        for (auto& v : logits) v *= 1.3f;
        std::vector<float> labels(n);
        for (int i = 0; i < n; ++i) labels[i] = (float)(int)((rnd() + 1) * 0.5f * classes * 0.999f);
        std::vector<float> loss(1, NAN), correct(1, NAN), lr(1), cr(1);
        launch(dim3{1, 1, 1}, B256, softmax_cross_entropy_forward, (const float*)logits.data(), (const float*)labels.data(), n, classes, loss.data(), correct.data());
        double tot = 0; int hits = 0;
        for (int r = 0; r < n; ++r) { int arg; double lse = ref_row(&logits[(size_t)r * classes], classes, arg); int lab = (int)labels[r]; tot += lse - logits[(size_t)r * classes + lab]; hits += arg == lab; }
        lr[0] = (float)(tot / n); cr[0] = (float)hits;
        same("ce loss", loss, lr, 1e-6); same("ce correct", correct, cr);
        std::vector<float> dl(1, 0.7f), d((size_t)n * classes, NAN), dr(d.size());
        launch(egrid(n, 1), B256, softmax_cross_entropy_backward, (const float*)logits.data(), (const float*)labels.data(), n, classes, (const float*)dl.data(), d.data());
        double sc = (double)dl[0] / (double)n;
        for (int r = 0; r < n; ++r) { int arg; double lse = ref_row(&logits[(size_t)r * classes], classes, arg);
            for (int j = 0; j < classes; ++j) { double p = std::exp((double)logits[(size_t)r * classes + j] - lse); dr[(size_t)r * classes + j] = (float)((p - (j == (int)labels[r] ? 1.0 : 0.0)) * sc); } }
        same("ce backward", d, dr);
    }
    // optimizers: several steps, bit-exact against the CPU formulas
    {
        int n = 2000;
        auto p0 = rv(n), g = rv(n);
        std::vector<float> p = p0, pr = p0, v(n, 0.0f), vr(n, 0.0f), m(n, 0.0f), mr(n, 0.0f);
        for (int step = 0; step < 3; ++step) {
            launch(egrid(n, 2), B256, sgd_step, p.data(), (const float*)g.data(), n, 0.1f, 5e-4f);
            for (int i = 0; i < n; ++i) pr[i] -= 0.1f * (g[i] + 5e-4f * pr[i]);
        }
        same("sgd", p, pr);
        for (int step = 0; step < 3; ++step) {
            launch(egrid(n, 2), B256, sgd_momentum_step, p.data(), (const float*)g.data(), v.data(), n, 0.05f, 0.9f, 1e-4f);
            for (int i = 0; i < n; ++i) { vr[i] = 0.9f * vr[i] + (g[i] + 1e-4f * pr[i]); pr[i] -= 0.05f * vr[i]; }
        }
        same("momentum p", p, pr); same("momentum v", v, vr);
        std::fill(v.begin(), v.end(), 0.0f); std::fill(vr.begin(), vr.end(), 0.0f);
        float b1 = 0.9f, b2 = 0.999f, eps = 1e-8f, wd = 1e-3f, lr = 0.002f;
        for (int t = 1; t <= 4; ++t) {
            double bc1 = 1.0 - std::pow((double)b1, t), bc2 = 1.0 - std::pow((double)b2, t);
            float ss = (float)(lr / bc1), ib = (float)(1.0 / std::sqrt(bc2));
            launch(egrid(n, 2), B256, adam_step, p.data(), (const float*)g.data(), m.data(), v.data(), n, b1, b2, eps, wd, ss, ib);
            for (int i = 0; i < n; ++i) {
                float gi = g[i] + wd * pr[i];
                mr[i] = b1 * mr[i] + (1.0f - b1) * gi;
                vr[i] = b2 * vr[i] + (1.0f - b2) * gi * gi;
                pr[i] -= ss * mr[i] / (std::sqrt(vr[i]) * ib + eps);
            }
        }
        same("adam p", p, pr); same("adam m", m, mr); same("adam v", v, vr);
    }
    // the multi-tensor steps: three parameters (one of several chunks and a tail, one of a
    // single value) in one launch, against the one-parameter kernels checked above
    {
        const int lens[3] = {2 * 4096 + 37, 1, 300};
        std::vector<std::vector<float>> p(3), g(3), s1(3), s2(3);
        for (int k = 0; k < 3; ++k) { p[k] = rv(lens[k]); g[k] = rv(lens[k]); s1[k] = rv(lens[k]); s2[k] = rv(lens[k]);
            for (auto& x : s2[k]) x = std::fabs(x); }
        auto pr = p, s1r = s1, s2r = s2;
        auto table = [&](bool states) {
            std::vector<unsigned long long> t;
            for (int k = 0; k < 3; ++k) {
                t.push_back((unsigned long long)p[k].data()); t.push_back((unsigned long long)g[k].data());
                t.push_back(states ? (unsigned long long)s1[k].data() : 0); t.push_back(states ? (unsigned long long)s2[k].data() : 0);
                t.push_back((unsigned long long)lens[k]);
            }
            for (int k = 0; k < 3; ++k) for (int at = 0; at < lens[k]; at += OPTIM_CHUNK) { t.push_back(k); t.push_back(at); }
            return t;
        };
        auto blocks = [&](const std::vector<unsigned long long>& t) { return dim3{(unsigned)((t.size() - 15) / 2), 1, 1}; };
        auto t = table(false);
        launch(blocks(t), B256, sgd_steps, (const unsigned long long*)t.data(), 3, 0.1f, 5e-4f);
        for (int k = 0; k < 3; ++k) launch(egrid(lens[k], 2), B256, sgd_step, pr[k].data(), (const float*)g[k].data(), lens[k], 0.1f, 5e-4f);
        for (int k = 0; k < 3; ++k) same("sgd_steps", p[k], pr[k]);
        t = table(true);
        launch(blocks(t), B256, sgd_momentum_steps, (const unsigned long long*)t.data(), 3, 0.05f, 0.9f, 1e-4f);
        for (int k = 0; k < 3; ++k) launch(egrid(lens[k], 2), B256, sgd_momentum_step, pr[k].data(), (const float*)g[k].data(), s1r[k].data(), lens[k], 0.05f, 0.9f, 1e-4f);
        for (int k = 0; k < 3; ++k) { same("sgd_momentum_steps p", p[k], pr[k]); same("sgd_momentum_steps v", s1[k], s1r[k]); }
        launch(blocks(t), B256, adam_steps, (const unsigned long long*)t.data(), 3, 0.9f, 0.999f, 1e-8f, 1e-3f, 0.02f, 1.3f);
        for (int k = 0; k < 3; ++k) launch(egrid(lens[k], 2), B256, adam_step, pr[k].data(), (const float*)g[k].data(), s1r[k].data(), s2r[k].data(), lens[k], 0.9f, 0.999f, 1e-8f, 1e-3f, 0.02f, 1.3f);
        for (int k = 0; k < 3; ++k) { same("adam_steps p", p[k], pr[k]); same("adam_steps m", s1[k], s1r[k]); same("adam_steps v", s2[k], s2r[k]); }
    }
    printf("kernels: %d failures\n", fails);
    return fails != 0;
}
