//! A self-contained SVG training chart in the style of d2l's `Animator`:
//! train loss, train accuracy and test (or validation) accuracy against the epoch.
//!
//! Hand-written SVG keeps the crate free of plotting dependencies; the file
//! opens in any browser.

use std::fmt::Write as _;
use std::io;
use std::path::Path;

use crate::checkpoint::write_bytes_atomic;
use crate::metrics::EpochMetrics;

// Canvas and plot-area geometry, in SVG user units (pixels).
const WIDTH: f64 = 720.0;
const HEIGHT: f64 = 420.0;
const LEFT: f64 = 70.0;
const RIGHT: f64 = 560.0; // the legend sits to the right of this, off the lines
const TOP: f64 = 62.0;
const BOTTOM: f64 = 360.0;

const FONT: &str = "font-family=\"DejaVu Sans, Helvetica, Arial, sans-serif\"";

/// How one series is drawn.
struct Series {
    label: &'static str,
    colour: &'static str,
    dash: Option<&'static str>,
    marker: Marker,
    value: fn(&EpochMetrics) -> f64,
}

#[derive(Clone, Copy)]
enum Marker {
    Circle,
    Square,
    Triangle,
}

// Colours and line styles follow d2l's defaults ('-', 'm--', 'g-.').
const SERIES: [Series; 4] = [
    Series {
        label: "train loss",
        colour: "#1f77b4",
        dash: None,
        marker: Marker::Circle,
        value: |m| m.train_loss,
    },
    Series {
        label: "train acc",
        colour: "#bf00bf",
        dash: Some("7 4"),
        marker: Marker::Square,
        value: |m| m.train_acc,
    },
    Series {
        label: "test acc",
        colour: "#2ca02c",
        dash: Some("9 3 2 3"),
        marker: Marker::Triangle,
        value: |m| m.test_acc,
    },
    Series {
        label: "val acc",
        colour: "#ff7f0e",
        dash: Some("2 3"),
        marker: Marker::Circle,
        value: |m| m.val_acc,
    },
];

/// Renders the chart and writes it to `path` atomically (temp file + rename).
pub fn write_svg(path: &Path, rows: &[EpochMetrics], title: &str) -> io::Result<()> {
    write_bytes_atomic(path, render_svg(rows, title).as_bytes())
}

/// The chart as an SVG document. Non-finite values (a diverged loss) are left
/// out, breaking the line there, rather than wrecking the scale.
pub fn render_svg(rows: &[EpochMetrics], title: &str) -> String {
    // X: the epochs seen; a lone epoch gets half an epoch either side so its
    // point sits in the middle rather than on the axis.
    let (mut x_lo, mut x_hi) = rows.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), r| {
        (lo.min(r.epoch as f64), hi.max(r.epoch as f64))
    });
    if rows.is_empty() {
        (x_lo, x_hi) = (1.0, 1.0);
    }
    if x_hi - x_lo < 1.0 {
        x_lo -= 0.5;
        x_hi += 0.5;
    }

    // Y: from 0 (or below, should anything be negative) to at least 1, so
    // accuracies always have their full range, widened to a whole tick.
    let finite =
        || rows.iter().flat_map(|r| SERIES.iter().map(move |s| (s.value)(r))).filter(|v| v.is_finite());
    let y_max_data = finite().fold(1.0f64, f64::max);
    let y_min_data = finite().fold(0.0f64, f64::min);
    let y_step = nice_step((y_max_data - y_min_data) / 5.0);
    let y_hi = ((y_max_data / y_step) - 1e-9).ceil() * y_step;
    let y_lo = ((y_min_data / y_step) + 1e-9).floor() * y_step;

    let px = |x: f64| LEFT + (x - x_lo) / (x_hi - x_lo) * (RIGHT - LEFT);
    let py = |y: f64| BOTTOM - (y - y_lo) / (y_hi - y_lo) * (BOTTOM - TOP);

    let mut s = String::with_capacity(8192 + rows.len() * 200);
    let _ = writeln!(
        s,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{WIDTH}\" height=\"{HEIGHT}\" \
         viewBox=\"0 0 {WIDTH} {HEIGHT}\" {FONT} font-size=\"12\">"
    );
    let title_xml = xml_escape(title);
    let _ = writeln!(s, "<title>{title_xml}</title>");
    let _ = writeln!(s, "<rect width=\"100%\" height=\"100%\" fill=\"white\"/>");
    let mid = (LEFT + RIGHT) / 2.0;
    let _ = writeln!(
        s,
        "<text x=\"{mid}\" y=\"24\" text-anchor=\"middle\" font-size=\"16\" \
         font-weight=\"bold\">{title_xml}</text>"
    );
    if let Some(last) = rows.last() {
        let (held_out, acc) =
            if last.test_acc.is_nan() { ("val", last.val_acc) } else { ("test", last.test_acc) };
        let _ = writeln!(
            s,
            "<text x=\"{mid}\" y=\"44\" text-anchor=\"middle\" fill=\"#555\">epoch {}: \
             train loss {:.4}, train acc {:.3}, {held_out} acc {acc:.3}</text>",
            last.epoch, last.train_loss, last.train_acc
        );
    }

    // Grid and tick labels.
    let _ = writeln!(s, "<g stroke=\"#dddddd\" stroke-width=\"1\">");
    let y_ticks = ticks(y_lo, y_hi, y_step);
    for &y in &y_ticks {
        let _ = writeln!(s, "<line x1=\"{LEFT}\" y1=\"{0:.2}\" x2=\"{RIGHT}\" y2=\"{0:.2}\"/>", py(y));
    }
    let x_step = nice_step_int((x_hi - x_lo) / 10.0);
    let x_ticks: Vec<f64> = ticks(x_lo.ceil(), x_hi.floor(), x_step);
    for &x in &x_ticks {
        let _ = writeln!(s, "<line x1=\"{0:.2}\" y1=\"{TOP}\" x2=\"{0:.2}\" y2=\"{BOTTOM}\"/>", px(x));
    }
    let _ = writeln!(s, "</g>");
    let _ = writeln!(s, "<g text-anchor=\"end\" fill=\"#333\">");
    for &y in &y_ticks {
        let _ = writeln!(s, "<text x=\"{}\" y=\"{:.2}\">{}</text>", LEFT - 6.0, py(y) + 4.0, fmt_tick(y));
    }
    let _ = writeln!(s, "</g>");
    let _ = writeln!(s, "<g text-anchor=\"middle\" fill=\"#333\">");
    for &x in &x_ticks {
        let _ = writeln!(s, "<text x=\"{:.2}\" y=\"{}\">{}</text>", px(x), BOTTOM + 18.0, fmt_tick(x));
    }
    let _ = writeln!(s, "</g>");

    // Axes box and labels.
    let _ = writeln!(
        s,
        "<rect x=\"{LEFT}\" y=\"{TOP}\" width=\"{}\" height=\"{}\" fill=\"none\" stroke=\"#333\"/>",
        RIGHT - LEFT,
        BOTTOM - TOP
    );
    let _ = writeln!(s, "<text x=\"{mid}\" y=\"{}\" text-anchor=\"middle\">epoch</text>", BOTTOM + 40.0);
    let ymid = (TOP + BOTTOM) / 2.0;
    let _ = writeln!(
        s,
        "<text x=\"22\" y=\"{ymid}\" text-anchor=\"middle\" \
         transform=\"rotate(-90 22 {ymid})\">loss / accuracy</text>"
    );

    // Markers only while they do not merge into a smear.
    let spacing = if rows.len() > 1 { (RIGHT - LEFT) / (x_hi - x_lo) } else { f64::INFINITY };
    let draw_markers = spacing >= 8.0;
    // Series with no value at all (the test accuracy of a run with a validation split) are left
    // out, legend included.
    let shown: Vec<&Series> =
        SERIES.iter().filter(|se| rows.iter().any(|r| (se.value)(r).is_finite())).collect();
    for series in &shown {
        let dash = series.dash.map(|d| format!(" stroke-dasharray=\"{d}\"")).unwrap_or_default();
        let _ = writeln!(s, "<g class=\"series\" data-label=\"{}\">", series.label);
        // One polyline per run of finite values.
        let mut runs: Vec<Vec<(f64, f64)>> = vec![Vec::new()];
        for r in rows {
            let v = (series.value)(r);
            if v.is_finite() {
                runs.last_mut().unwrap().push((px(r.epoch as f64), py(v)));
            } else if !runs.last().unwrap().is_empty() {
                runs.push(Vec::new());
            }
        }
        for run in runs.iter().filter(|r| !r.is_empty()) {
            let pts: Vec<String> = run.iter().map(|(x, y)| format!("{x:.2},{y:.2}")).collect();
            let _ = writeln!(
                s,
                "<polyline points=\"{}\" fill=\"none\" stroke=\"{}\" stroke-width=\"2\" \
                 stroke-linejoin=\"round\"{dash}/>",
                pts.join(" "),
                series.colour
            );
        }
        // A single epoch has no line to see, so it always gets its marker.
        if draw_markers || rows.len() == 1 {
            for &(x, y) in runs.iter().flatten() {
                s.push_str(&marker(series.marker, x, y, series.colour));
                s.push('\n');
            }
        }
        let _ = writeln!(s, "</g>");
    }

    // Legend, outside the plot area so it never hides data.
    let lx = RIGHT + 16.0;
    let ly = TOP + 8.0;
    let _ = writeln!(
        s,
        "<rect x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\" fill=\"white\" stroke=\"#bbb\" rx=\"3\"/>",
        lx - 8.0,
        ly - 8.0,
        WIDTH - lx,
        shown.len() as f64 * 22.0 + 6.0
    );
    for (i, series) in shown.iter().enumerate() {
        let y = ly + 8.0 + i as f64 * 22.0;
        let dash = series.dash.map(|d| format!(" stroke-dasharray=\"{d}\"")).unwrap_or_default();
        let _ = writeln!(
            s,
            "<line x1=\"{lx}\" y1=\"{y}\" x2=\"{}\" y2=\"{y}\" stroke=\"{}\" stroke-width=\"2\"{dash}/>",
            lx + 30.0,
            series.colour
        );
        s.push_str(&marker(series.marker, lx + 15.0, y, series.colour));
        let _ = writeln!(s, "\n<text x=\"{}\" y=\"{}\">{}</text>", lx + 38.0, y + 4.0, series.label);
    }
    if rows.is_empty() {
        let _ = writeln!(
            s,
            "<text x=\"{mid}\" y=\"{ymid}\" text-anchor=\"middle\" fill=\"#888\">no epochs yet</text>"
        );
    }
    s.push_str("</svg>\n");
    s
}

fn marker(kind: Marker, x: f64, y: f64, colour: &str) -> String {
    match kind {
        Marker::Circle => {
            format!("<circle cx=\"{x:.2}\" cy=\"{y:.2}\" r=\"3.5\" fill=\"{colour}\"/>")
        }
        Marker::Square => format!(
            "<rect x=\"{:.2}\" y=\"{:.2}\" width=\"6.5\" height=\"6.5\" fill=\"{colour}\"/>",
            x - 3.25,
            y - 3.25
        ),
        Marker::Triangle => format!(
            "<polygon points=\"{:.2},{:.2} {:.2},{:.2} {:.2},{:.2}\" fill=\"{colour}\"/>",
            x,
            y - 4.5,
            x - 4.0,
            y + 3.0,
            x + 4.0,
            y + 3.0
        ),
    }
}

/// Smallest of 1, 2, 2.5, 5 times a power of ten that is >= `raw`.
fn nice_step(raw: f64) -> f64 {
    if !(raw.is_finite() && raw > 0.0) {
        return 1.0;
    }
    let p = 10f64.powf(raw.log10().floor());
    [1.0, 2.0, 2.5, 5.0, 10.0].iter().map(|m| m * p).find(|&v| v >= raw * (1.0 - 1e-9)).unwrap_or(10.0 * p)
}

/// Like [`nice_step`] but a whole number of epochs (never 2.5).
fn nice_step_int(raw: f64) -> f64 {
    if raw <= 1.0 {
        return 1.0;
    }
    let p = 10f64.powf(raw.log10().floor());
    [1.0, 2.0, 5.0, 10.0].iter().map(|m| m * p).find(|&v| v >= raw).unwrap_or(10.0 * p)
}

/// Multiples of `step` from `lo` to `hi`, computed by index to avoid drift.
fn ticks(lo: f64, hi: f64, step: f64) -> Vec<f64> {
    let first = (lo / step - 1e-9).ceil() as i64;
    let last = (hi / step + 1e-9).floor() as i64;
    (first..=last).map(|k| k as f64 * step).collect()
}

/// Tick label without float noise or trailing zeros: 0.6, 2.5, 10.
fn fmt_tick(v: f64) -> String {
    let s = format!("{v:.6}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    if s == "-0" {
        "0".into()
    } else {
        s.into()
    }
}

fn xml_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            // Control characters other than tab/newline are not allowed in XML 1.0.
            c if (c as u32) < 0x20 && c != '\t' && c != '\n' => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows(n: usize) -> Vec<EpochMetrics> {
        (1..=n)
            .map(|e| {
                let t = e as f64 / n as f64;
                EpochMetrics {
                    epoch: e,
                    train_loss: 2.3 * (-3.0 * t).exp(),
                    train_acc: 0.1 + 0.85 * t,
                    test_acc: 0.1 + 0.8 * t,
                    seconds: 10.0,
                    images_per_sec: 6000.0,
                    val_acc: f64::NAN,
                    lr: 0.1,
                }
            })
            .collect()
    }

    /// Every opened element is closed, in order (a tiny well-formedness check;
    /// the renderer emits no comments, CDATA or `>` inside attributes).
    fn assert_balanced(svg: &str) {
        let mut stack: Vec<String> = Vec::new();
        let mut rest = svg;
        while let Some(i) = rest.find('<') {
            let j = rest[i..].find('>').expect("unterminated tag") + i;
            let tag = &rest[i + 1..j];
            if let Some(name) = tag.strip_prefix('/') {
                assert_eq!(stack.pop().as_deref(), Some(name), "mismatched </{name}>");
            } else if !tag.ends_with('/') {
                stack.push(tag.split_whitespace().next().unwrap().to_string());
            }
            rest = &rest[j + 1..];
        }
        assert!(stack.is_empty(), "unclosed: {stack:?}");
    }

    #[test]
    fn chart_has_three_lines_and_legend() {
        let svg = render_svg(&rows(10), "AlexNet on Fashion-MNIST");
        assert!(svg.starts_with("<svg"));
        assert!(svg.trim_end().ends_with("</svg>"));
        assert_balanced(&svg);
        assert_eq!(svg.matches("<polyline").count(), 3);
        for label in ["train loss", "train acc", "test acc", "epoch", "AlexNet on Fashion-MNIST"] {
            assert!(svg.contains(&format!(">{label}<")), "missing {label}");
        }
        // Ten epochs get a tick each, and markers.
        for e in 1..=10 {
            assert!(svg.contains(&format!(">{e}</text>")), "no tick {e}");
        }
        assert_eq!(svg.matches("<circle").count(), 10 + 1); // + legend marker
        assert!(!svg.contains(">val acc<"), "a series without values is left out");
    }

    /// A run with a validation split draws the validation accuracy instead of the test's.
    #[test]
    fn validation_runs_draw_val_acc() {
        let rows: Vec<EpochMetrics> = rows(4)
            .into_iter()
            .map(|r| EpochMetrics { val_acc: r.test_acc, test_acc: f64::NAN, ..r })
            .collect();
        let svg = render_svg(&rows, "t");
        assert_balanced(&svg);
        assert_eq!(svg.matches("<polyline").count(), 3);
        assert!(svg.contains(">val acc<") && !svg.contains(">test acc<"));
        assert!(svg.contains("val acc 0.900"), "{svg}");
    }

    #[test]
    fn single_epoch_draws_points() {
        let svg = render_svg(&rows(1), "one");
        assert_balanced(&svg);
        assert_eq!(svg.matches("<polyline").count(), 3);
        assert_eq!(svg.matches("<circle").count(), 2);
        assert!(!svg.contains("NaN") && !svg.contains("inf"), "{svg}");
        assert!(svg.contains(">1</text>"));
    }

    #[test]
    fn many_epochs_and_big_loss_scale_sensibly() {
        let mut r = rows(300);
        r[0].train_loss = 7.3;
        let svg = render_svg(&r, "long");
        assert_balanced(&svg);
        assert!(svg.contains(">8</text>"), "y axis should reach 8");
        assert_eq!(svg.matches("<circle").count(), 1, "markers dropped when dense");
        assert!(svg.matches("<line").count() < 40, "too many grid lines");
    }

    #[test]
    fn non_finite_values_break_the_line() {
        let mut r = rows(6);
        r[3].train_loss = f64::NAN;
        r[4].train_loss = f64::INFINITY;
        let svg = render_svg(&r, "diverged");
        assert_balanced(&svg);
        assert_eq!(svg.matches("<polyline").count(), 4);
        assert!(!svg.contains("NaN") && !svg.contains("inf"));
    }

    #[test]
    fn empty_and_hostile_title() {
        let svg = render_svg(&[], "a<b & \"c\" 'd'>");
        assert_balanced(&svg);
        assert!(svg.contains("a&lt;b &amp; &quot;c&quot; &apos;d&apos;&gt;"));
        assert_eq!(svg.matches("<polyline").count(), 0);
    }

    #[test]
    fn write_svg_writes_file() {
        let d = std::env::temp_dir().join(format!("plot-test-{}", std::process::id()));
        let p = d.join("plot.svg");
        write_svg(&p, &rows(3), "t").unwrap();
        assert!(std::fs::read_to_string(&p).unwrap().starts_with("<svg"));
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn tick_helpers() {
        assert_eq!(nice_step(0.2), 0.2);
        assert_eq!(nice_step(0.46), 0.5);
        assert_eq!(nice_step(0.21), 0.25);
        assert_eq!(nice_step_int(29.9), 50.0);
        assert_eq!(fmt_tick(0.6000000001), "0.6");
        assert_eq!(fmt_tick(10.0), "10");
        assert_eq!(ticks(0.0, 1.0, 0.2).len(), 6);
    }
}
