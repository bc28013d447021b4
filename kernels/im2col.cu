// im2col / col2im: the unfold that turns a convolution into matrix products, and its adjoint.
//
// The column matrix of a chunk of `count` images (first..first+count-1 of the NCHW batch) is one
// matrix of (c_in * kh * kw) rows by (count * oh * ow) columns: row (c * kh + ki) * kw + kj,
// column i * oh * ow + oy * ow + ox, so a single matrix product covers the chunk.
// Both kernels use a grid-stride loop with one thread per element they write.

// cols[(c, ki, kj)][i][(oy, ox)] = x[first + i][c][oy * sh + ki - ph][ox * sw + kj - pw], or 0 in
// the padding. One thread per element of cols; consecutive threads write consecutive columns.
// The index arithmetic (a division chain per element) runs in I: 32-bit when the chunk's column
// matrix has fewer than 2^31 values, which is every real layer's.
template <typename I>
__device__ __forceinline__ void im2col_body(const float* x, float* cols, int first, int count, int c_in, int h, int w, int kh, int kw,
                                            int sh, int sw, int ph, int pw, int oh, int ow)
{
    const I out_plane = (I)oh * ow;
    const I total = (I)count * c_in * kh * kw * out_plane;
    for (I idx = (I)blockIdx.x * blockDim.x + threadIdx.x; idx < total; idx += (I)gridDim.x * blockDim.x) {
        const int p = (int)(idx % out_plane);
        const I ri = idx / out_plane;  // r * count + i
        const int i = (int)(ri % count);
        const I r = ri / count;  // (c, ki, kj)
        const int ox = p % ow;
        const int oy = p / ow;
        const int kj = (int)(r % kw);
        const int ki = (int)((r / kw) % kh);
        const int c = (int)(r / ((I)kh * kw));
        const int iy = oy * sh + ki - ph;
        const int ix = ox * sw + kj - pw;
        float v = 0.0f;
        if (iy >= 0 && iy < h && ix >= 0 && ix < w) {
            v = x[(((long long)first + i) * c_in + c) * h * w + (long long)iy * w + ix];
        }
        cols[idx] = v;
    }
}

extern "C" __global__ void im2col(const float* x, float* cols, int first, int count, int c_in, int h, int w, int kh, int kw, int sh,
                                  int sw, int ph, int pw, int oh, int ow)
{
    const long long total = (long long)count * c_in * kh * kw * oh * ow;
    if (total <= 0x7fffffffLL) {
        im2col_body<int>(x, cols, first, count, c_in, h, w, kh, kw, sh, sw, ph, pw, oh, ow);
    } else {
        im2col_body<long long>(x, cols, first, count, c_in, h, w, kh, kw, sh, sw, ph, pw, oh, ow);
    }
}

// dx[first + i][c][iy][ix] = sum over (ki, kj) of cols[(c, ki, kj)][i][(oy, ox)] for the output
// position (oy, ox) that reads (iy, ix) through kernel offset (ki, kj), if any. One thread per dx
// element gathers its terms in (ki, kj) order, as the CPU adds them: no atomics, deterministic,
// and it overwrites the images (positions no window reaches get 0). 32-bit index arithmetic
// when the chunk's images and columns both have fewer than 2^31 values.
template <typename I>
__device__ __forceinline__ void col2im_body(const float* cols, float* dx, int first, int count, int c_in, int h, int w, int kh, int kw,
                                            int sh, int sw, int ph, int pw, int oh, int ow)
{
    const I plane = (I)h * w;
    const I out_plane = (I)oh * ow;
    const I total = (I)count * c_in * plane;
    const I width = (I)count * out_plane;
    for (I idx = (I)blockIdx.x * blockDim.x + threadIdx.x; idx < total; idx += (I)gridDim.x * blockDim.x) {
        const int q = (int)(idx % plane);
        const I img_c = idx / plane;  // i * c_in + c
        const int ix = q % w;
        const int iy = q / w;
        // This channel's kh * kw rows, at this image's columns.
        const I i = img_c / c_in;
        const I c = img_c % c_in;
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
                s += src[((I)ki * kw + kj) * width + (I)oy * ow + ox];
            }
        }
        dx[(long long)first * c_in * plane + idx] = s;
    }
}

extern "C" __global__ void col2im(const float* cols, float* dx, int first, int count, int c_in, int h, int w, int kh, int kw, int sh,
                                  int sw, int ph, int pw, int oh, int ow)
{
    const long long images = (long long)count * c_in * h * w;
    const long long columns = (long long)c_in * kh * kw * count * oh * ow;
    if (images <= 0x7fffffffLL && columns <= 0x7fffffffLL) {
        col2im_body<int>(cols, dx, first, count, c_in, h, w, kh, kw, sh, sw, ph, pw, oh, ow);
    } else {
        col2im_body<long long>(cols, dx, first, count, c_in, h, w, kh, kw, sh, sw, ph, pw, oh, ow);
    }
}
