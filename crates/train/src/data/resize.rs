//! Bilinear resize matching PyTorch's
//! `F.interpolate(x, size=(oh, ow), mode="bilinear", align_corners=False, antialias=False)`,
//! which is what torchvision's `Resize` does to a tensor when upsampling, so our inputs match
//! what a PyTorch reference model would see.

/// The two source taps and weights for one output coordinate along one axis.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Tap {
    i0: usize,
    i1: usize,
    w0: f32,
    w1: f32,
}

/// Per-axis taps, computed once so resizing an image is just multiply-adds.
fn taps(input: usize, output: usize) -> Vec<Tap> {
    if input == output {
        // PyTorch special-cases equal sizes as a copy; weight 1 and 0 make it exact.
        return (0..output).map(|i| Tap { i0: i, i1: i, w0: 1.0, w1: 0.0 }).collect();
    }
    // PyTorch computes the scale and source coordinate in f32 for f32 tensors; so do we.
    let scale = input as f32 / output as f32;
    (0..output)
        .map(|dst| {
            // Pixel centres line up: src = (dst + 0.5) * scale - 0.5, clamped below at 0.
            let src = ((dst as f32 + 0.5) * scale - 0.5).max(0.0);
            let i0 = (src.floor() as usize).min(input - 1);
            let i1 = (i0 + 1).min(input - 1);
            let w1 = (src - i0 as f32).clamp(0.0, 1.0);
            Tap { i0, i1, w0: 1.0 - w1, w1 }
        })
        .collect()
}

/// Resizes `in_h x in_w` u8 images to `out_h x out_w` f32 images in [0, 1].
#[derive(Debug, Clone)]
pub struct Resizer {
    in_h: usize,
    in_w: usize,
    out_h: usize,
    out_w: usize,
    rows: Vec<Tap>,
    cols: Vec<Tap>,
    /// u8 -> f32 in [0, 1]: dividing before interpolating, as ToTensor-then-Resize does.
    lut: [f32; 256],
}

impl Resizer {
    /// A resizer from `in_h x in_w` to `out_h x out_w` images (rows x columns), its
    /// interpolation weights computed here once for every image it resizes.
    /// Panics if any size is 0 (a caller bug, not a data error).
    pub fn new(in_h: usize, in_w: usize, out_h: usize, out_w: usize) -> Self {
        assert!(in_h > 0 && in_w > 0 && out_h > 0 && out_w > 0, "Resizer sizes must be > 0");
        let mut lut = [0.0; 256];
        for (v, slot) in lut.iter_mut().enumerate() {
            *slot = v as f32 / 255.0;
        }
        Self { in_h, in_w, out_h, out_w, rows: taps(in_h, out_h), cols: taps(in_w, out_w), lut }
    }

    /// Values in one output image (`out_h * out_w`): the length of `dst` in
    /// [`Resizer::resize_u8_to_f32`].
    pub fn output_len(&self) -> usize {
        self.out_h * self.out_w
    }

    /// Resizes one image. Panics if the slice lengths do not match the sizes given to `new`.
    pub fn resize_u8_to_f32(&self, src: &[u8], dst: &mut [f32]) {
        assert_eq!(src.len(), self.in_h * self.in_w, "source image size");
        assert_eq!(dst.len(), self.out_h * self.out_w, "destination image size");
        // Horizontal pass over every input row, then a vertical blend of two such rows per output
        // row: the same order of operations as PyTorch's kernel (interpolate along W, then H).
        let mut tmp = vec![0.0f32; self.in_h * self.out_w];
        for (src_row, tmp_row) in src.chunks_exact(self.in_w).zip(tmp.chunks_exact_mut(self.out_w)) {
            for (t, c) in tmp_row.iter_mut().zip(&self.cols) {
                *t = c.w0 * self.lut[src_row[c.i0] as usize] + c.w1 * self.lut[src_row[c.i1] as usize];
            }
        }
        for (dst_row, r) in dst.chunks_exact_mut(self.out_w).zip(&self.rows) {
            let row0 = &tmp[r.i0 * self.out_w..][..self.out_w];
            let row1 = &tmp[r.i1 * self.out_w..][..self.out_w];
            for ((d, &a), &b) in dst_row.iter_mut().zip(row0).zip(row1) {
                *d = r.w0 * a + r.w1 * b;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resize(src: &[u8], in_h: usize, in_w: usize, out_h: usize, out_w: usize) -> Vec<f32> {
        let mut dst = vec![0.0; out_h * out_w];
        Resizer::new(in_h, in_w, out_h, out_w).resize_u8_to_f32(src, &mut dst);
        dst
    }

    fn assert_close(got: &[f32], want_times_255: &[f32]) {
        assert_eq!(got.len(), want_times_255.len());
        for (i, (g, w)) in got.iter().zip(want_times_255).enumerate() {
            assert!((g - w / 255.0).abs() < 1e-6, "pixel {i}: got {}, want {}", g * 255.0, w);
        }
    }

    #[test]
    fn identity_is_exact() {
        let src: Vec<u8> = (0..28 * 28).map(|i| (i * 7 % 256) as u8).collect();
        let got = resize(&src, 28, 28, 28, 28);
        let want: Vec<f32> = src.iter().map(|&v| v as f32 / 255.0).collect();
        assert_eq!(got, want);
    }

    #[test]
    fn upsample_2x2_to_4x4() {
        // scale = 2/4 = 0.5; src = (dst + 0.5) * 0.5 - 0.5 for dst = 0..4:
        //   dst 0: -0.25 -> clamped 0    i0 0, i1 1, lambda 0     -> a
        //   dst 1:  0.25                 i0 0, i1 1, lambda 0.25  -> 0.75a + 0.25b
        //   dst 2:  0.75                 i0 0, i1 1, lambda 0.75  -> 0.25a + 0.75b
        //   dst 3:  1.25                 i0 1, i1 1 (clamped)     -> b
        // Input (x255) [[0, 100], [200, 40]]. Rows after the horizontal pass:
        //   row 0: [0, 25, 75, 100]      row 1: [200, 160, 80, 40]
        // Output rows use the same weights vertically:
        //   out 1 = 0.75 row0 + 0.25 row1 = [50, 58.75, 76.25, 85]
        //   out 2 = 0.25 row0 + 0.75 row1 = [150, 126.25, 78.75, 55]
        let got = resize(&[0, 100, 200, 40], 2, 2, 4, 4);
        #[rustfmt::skip]
        let want = [
            0.0, 25.0, 75.0, 100.0,
            50.0, 58.75, 76.25, 85.0,
            150.0, 126.25, 78.75, 55.0,
            200.0, 160.0, 80.0, 40.0,
        ];
        assert_close(&got, &want);
    }

    #[test]
    fn downsample_3x3_to_2x2() {
        // scale = 3/2 = 1.5; src = (dst + 0.5) * 1.5 - 0.5:
        //   dst 0: 0.25 -> i0 0, i1 1, lambda 0.25;  dst 1: 1.75 -> i0 1, i1 2, lambda 0.75
        // Input v(y, x) = 30 * (3y + x) is linear, so bilinear interpolation returns it exactly
        // at the source coordinates; different x and y slopes catch swapped axes:
        //   (0.25, 0.25) -> 30 * 1.0 = 30     (0.25, 1.75) -> 30 * 2.5 = 75
        //   (1.75, 0.25) -> 30 * 5.5 = 165    (1.75, 1.75) -> 30 * 7.0 = 210
        let src: Vec<u8> = (0..9).map(|i| 30 * i as u8).collect();
        assert_close(&resize(&src, 3, 3, 2, 2), &[30.0, 75.0, 165.0, 210.0]);
    }

    #[test]
    fn non_square_scales_each_axis() {
        // 1x2 -> 2x4: rows are an identity-like copy (one input row, both taps clamp to row 0);
        // columns use the 2 -> 4 weights derived above: [a, 0.75a + 0.25b, 0.25a + 0.75b, b].
        let got = resize(&[0, 200], 1, 2, 2, 4);
        assert_close(&got, &[0.0, 50.0, 150.0, 200.0, 0.0, 50.0, 150.0, 200.0]);
    }

    #[test]
    fn constant_image_stays_constant_at_224() {
        let got = resize(&[255; 28 * 28], 28, 28, 224, 224);
        assert!(got.iter().all(|&v| (v - 1.0).abs() < 1e-6));
    }
}
