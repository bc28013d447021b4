// im2col / col2im: the unfold that turns a convolution into matrix products, and its adjoint.
//
// The column matrix of a chunk of `count` images (first..first+count-1 of the NCHW batch) is one
// matrix of (c_in * kh * kw) rows by (count * oh * ow) columns: row (c * kh + ki) * kw + kj,
// column i * oh * ow + oy * ow + ox, so a single matrix product covers the chunk.
// Both kernels use a grid-stride loop with one thread per element they write.

// cols[(c, ki, kj)][i][(oy, ox)] = x[first + i][c][oy * sh + ki - ph][ox * sw + kj - pw], or 0 in
// the padding. One thread per element of cols; consecutive threads write consecutive columns.
extern "C" __global__ void im2col(const float* x, float* cols, int first, int count, int c_in, int h, int w, int kh, int kw, int sh,
                                  int sw, int ph, int pw, int oh, int ow)
{
    const long long out_plane = (long long)oh * ow;
    const long long rows = (long long)c_in * kh * kw;
    const long long total = (long long)count * rows * out_plane;
    for (long long idx = (long long)blockIdx.x * blockDim.x + threadIdx.x; idx < total; idx += (long long)gridDim.x * blockDim.x) {
        const int p = (int)(idx % out_plane);
        const long long ri = idx / out_plane;  // r * count + i
        const long long i = ri % count;
        const long long r = ri / count;  // (c, ki, kj)
        const int ox = p % ow;
        const int oy = p / ow;
        const int kj = (int)(r % kw);
        const int ki = (int)((r / kw) % kh);
        const long long img_c = i * c_in + r / ((long long)kh * kw);  // i * c_in + c
        const int iy = oy * sh + ki - ph;
        const int ix = ox * sw + kj - pw;
        float v = 0.0f;
        if (iy >= 0 && iy < h && ix >= 0 && ix < w) {
            v = x[((long long)first * c_in + img_c) * h * w + (long long)iy * w + ix];
        }
        cols[idx] = v;
    }
}

// dx[first + i][c][iy][ix] = sum over (ki, kj) of cols[(c, ki, kj)][i][(oy, ox)] for the output
// position (oy, ox) that reads (iy, ix) through kernel offset (ki, kj), if any. One thread per dx
// element gathers its terms in (ki, kj) order, as the CPU adds them: no atomics, deterministic,
// and it overwrites the images (positions no window reaches get 0).
extern "C" __global__ void col2im(const float* cols, float* dx, int first, int count, int c_in, int h, int w, int kh, int kw, int sh,
                                  int sw, int ph, int pw, int oh, int ow)
{
    const long long plane = (long long)h * w;
    const long long out_plane = (long long)oh * ow;
    const long long total = (long long)count * c_in * plane;
    for (long long idx = (long long)blockIdx.x * blockDim.x + threadIdx.x; idx < total; idx += (long long)gridDim.x * blockDim.x) {
        const int q = (int)(idx % plane);
        const long long img_c = idx / plane;  // i * c_in + c
        const int ix = q % w;
        const int iy = q / w;
        // This channel's kh * kw rows, at this image's columns.
        const long long i = img_c / c_in;
        const long long c = img_c % c_in;
        const long long width = (long long)count * out_plane;
        const float* src = cols + c * kh * kw * width + i * out_plane;
        float s = 0.0f;
        for (int ki = 0; ki < kh; ++ki) {
            const int ty = iy + ph - ki;  // = oy * sh
            if (ty < 0 || ty % sh != 0 || ty / sh >= oh) {
                continue;
            }
            const int oy = ty / sh;
            for (int kj = 0; kj < kw; ++kj) {
                const int tx = ix + pw - kj;  // = ox * sw
                if (tx < 0 || tx % sw != 0 || tx / sw >= ow) {
                    continue;
                }
                const int ox = tx / sw;
                s += src[((long long)ki * kw + kj) * width + (long long)oy * ow + ox];
            }
        }
        dx[(long long)first * c_in * plane + idx] = s;
    }
}
