//! `train predict`: the classes a model sees in image files (PNG or JPEG, any size, grey or
//! colour) or in test-set images, with their probabilities.
//!
//! An image is prepared as the training images were: made grey, padded to a square with its
//! border's colour (so it is not stretched), scaled to Fashion-MNIST's 28x28, and then resized to
//! the model's input exactly as the training loader does. Fashion-MNIST's garments are light on a
//! black background; a picture whose border is light (a photo of a garment on a table, a drawing
//! on white) is inverted first, unless `--invert no` says otherwise.
use crate::cli::{Invert, PredictArgs};
use crate::data::{self, Resizer, Split};
use crate::{state, weights};
use anyhow::{bail, Context, Result};
use autograd::{NoGradGuard, Var};
use layers::{Mode, Module, WeightInit};
use std::ops::Range;
use std::path::Path;
use tensor::{Backend, Tensor};

/// Fashion-MNIST's class names, by label.
pub const CLASSES: [&str; 10] = [
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
];

const SIDE: u32 = 28;

/// One input's prediction.
#[derive(Clone, Debug, PartialEq)]
pub struct Prediction {
    /// The file, or `test[i]`.
    pub input: String,
    /// The true class, for test-set images.
    pub label: Option<usize>,
    /// Every class's probability, by label.
    pub probabilities: Vec<f32>,
}

impl Prediction {
    /// The `k` likeliest classes, likeliest first.
    pub fn top(&self, k: usize) -> Vec<(usize, f32)> {
        let mut order: Vec<(usize, f32)> = self.probabilities.iter().copied().enumerate().collect();
        order.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        order.truncate(k);
        order
    }
}

/// "N..M" (M excluded) or "N".
pub fn parse_range(s: &str) -> Result<Range<usize>, String> {
    let bad = || format!("{s:?} is not an index or a range N..M");
    match s.split_once("..") {
        Some((a, b)) => {
            let (a, b): (usize, usize) =
                (a.trim().parse().map_err(|_| bad())?, b.trim().parse().map_err(|_| bad())?);
            if a >= b {
                return Err(format!("the range {s} is empty"));
            }
            Ok(a..b)
        }
        None => s.trim().parse::<usize>().map(|n| n..n + 1).map_err(|_| bad()),
    }
}

/// A picture as a 28x28 Fashion-MNIST-like image (see the module docs).
pub fn prepare(path: &Path, invert: Invert) -> Result<Vec<u8>> {
    let img = image::ImageReader::open(path)
        .with_context(|| format!("cannot open {}", path.display()))?
        .with_guessed_format()
        .with_context(|| format!("cannot read {}", path.display()))?
        .decode()
        .with_context(|| format!("{} is not a PNG or JPEG image this program can decode", path.display()))?;
    let grey = img.to_luma8();
    let (w, h) = grey.dimensions();
    if w == 0 || h == 0 {
        bail!("{} is an empty image", path.display());
    }
    // The border's mean: the background, for the padding and for deciding to invert.
    let mut border = Vec::new();
    for x in 0..w {
        border.push(grey.get_pixel(x, 0)[0]);
        border.push(grey.get_pixel(x, h - 1)[0]);
    }
    for y in 0..h {
        border.push(grey.get_pixel(0, y)[0]);
        border.push(grey.get_pixel(w - 1, y)[0]);
    }
    let background = (border.iter().map(|&v| v as u32).sum::<u32>() / border.len() as u32) as u8;
    let side = w.max(h);
    let mut square = image::GrayImage::from_pixel(side, side, image::Luma([background]));
    image::imageops::overlay(&mut square, &grey, ((side - w) / 2) as i64, ((side - h) / 2) as i64);
    let small = if side == SIDE {
        square
    } else {
        image::imageops::resize(&square, SIDE, SIDE, image::imageops::FilterType::Triangle)
    };
    let flip = match invert {
        Invert::Yes => true,
        Invert::No => false,
        Invert::Auto => background > 127,
    };
    Ok(small.into_raw().into_iter().map(|v| if flip { 255 - v } else { v }).collect())
}

/// Softmax of one row of logits, in f64.
fn softmax(logits: &[f32]) -> Vec<f32> {
    let max = logits.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v)) as f64;
    let e: Vec<f64> = logits.iter().map(|&v| (v as f64 - max).exp()).collect();
    let sum: f64 = e.iter().sum();
    e.iter().map(|v| (v / sum) as f32).collect()
}

/// Predictions for `args`' inputs on `backend`.
pub fn predict<B: Backend>(backend: &B, args: &PredictArgs) -> Result<Vec<Prediction>> {
    if args.images.is_empty() && args.test_index.is_none() {
        bail!("nothing to predict: give image files, or --test-index N..M for test-set images");
    }
    let path = &args.checkpoint;
    let w = weights::load(path, args.model)?;
    let resize =
        args.resize.or(w.meta.as_ref().map(|m| m.settings.resize)).unwrap_or(w.model.default_resize());
    w.model.check_resize(resize)?;
    let model = models::build(w.model, backend, WeightInit::XavierUniform, 0)?;
    state::load_weights(&w.checkpoint, &model.parameters(), backend, path)?;

    // 28x28 images, their names and labels.
    let mut inputs: Vec<(String, Option<usize>, Vec<u8>)> = Vec::new();
    for file in &args.images {
        inputs.push((file.display().to_string(), None, prepare(file, args.invert)?));
    }
    if let Some(range) = &args.test_index {
        let dir = data::locate(args.data.data.as_deref(), &[Split::Test])?;
        let test = data::load_split(&dir, Split::Test)?;
        if range.end > test.len() {
            bail!(
                "--test-index {}..{}: the test set has {} images (0..{})",
                range.start,
                range.end,
                test.len(),
                test.len()
            );
        }
        if (test.rows, test.cols) != (SIDE as usize, SIDE as usize) {
            bail!("the test images are {}x{}, not 28x28", test.rows, test.cols);
        }
        for i in range.clone() {
            inputs.push((format!("test[{i}]"), Some(test.labels[i] as usize), test.image(i).to_vec()));
        }
    }

    let resizer = Resizer::new(SIDE as usize, SIDE as usize, resize, resize);
    let _no_grad = NoGradGuard::new();
    let mut out = Vec::with_capacity(inputs.len());
    for chunk in inputs.chunks(64) {
        let mut x = vec![0.0f32; chunk.len() * resize * resize];
        for ((_, _, img), dst) in chunk.iter().zip(x.chunks_exact_mut(resize * resize)) {
            resizer.resize_u8_to_f32(img, dst);
        }
        let x = Var::constant(Tensor::from_slice(backend, [chunk.len(), 1, resize, resize], &x)?);
        let logits = model.forward(&x, &mut Mode::eval())?.value().to_vec()?;
        let classes = logits.len() / chunk.len();
        for ((name, label, _), row) in chunk.iter().zip(logits.chunks_exact(classes)) {
            out.push(Prediction { input: name.clone(), label: *label, probabilities: softmax(row) });
        }
    }
    Ok(out)
}

/// The predictions as text, one line an input.
pub fn format_text(predictions: &[Prediction], k: usize) -> String {
    let mut s = String::new();
    for p in predictions {
        let top: Vec<String> =
            p.top(k).iter().map(|&(c, pr)| format!("{} {:.1}%", CLASSES[c], 100.0 * pr)).collect();
        let truth = p.label.map_or(String::new(), |l| format!(" (true: {})", CLASSES[l]));
        s.push_str(&format!("{}: {}{truth}\n", p.input, top.join(", ")));
    }
    s
}

/// The predictions as a JSON array.
pub fn format_json(predictions: &[Prediction], k: usize) -> String {
    let items: Vec<serde_json::Value> = predictions
        .iter()
        .map(|p| {
            let top: Vec<serde_json::Value> = p
                .top(k)
                .iter()
                .map(|&(c, pr)| serde_json::json!({"class": CLASSES[c], "label": c, "probability": pr}))
                .collect();
            let mut v = serde_json::json!({"input": p.input, "top": top});
            if let Some(l) = p.label {
                v["true_class"] = serde_json::json!(CLASSES[l]);
                v["true_label"] = serde_json::json!(l);
            }
            v
        })
        .collect();
    serde_json::to_string_pretty(&items).expect("JSON of strings and numbers") + "\n"
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_and_top_classes() {
        assert_eq!(parse_range("3..7"), Ok(3..7));
        assert_eq!(parse_range("12"), Ok(12..13));
        assert!(parse_range("7..3").unwrap_err().contains("empty"));
        assert!(parse_range("a..3").is_err());
        let p = Prediction { input: "x".into(), label: Some(1), probabilities: vec![0.1, 0.6, 0.05, 0.25] };
        assert_eq!(p.top(2), vec![(1, 0.6), (3, 0.25)]);
        let s = softmax(&[1.0, 2.0, 3.0]);
        assert!((s.iter().sum::<f32>() - 1.0).abs() < 1e-6 && s[2] > s[1] && s[1] > s[0]);
        let text = format_text(std::slice::from_ref(&p), 2);
        assert_eq!(text, "x: Trouser 60.0%, Dress 25.0% (true: Trouser)\n");
        let json: serde_json::Value = serde_json::from_str(&format_json(&[p], 1)).unwrap();
        assert_eq!(json[0]["top"][0]["class"], "Trouser");
        assert_eq!(json[0]["true_label"], 1);
    }
}
