//! attune's one chart module, hand-drawn SVG: a small frame with axes, ticks and labels, the
//! four plots of the model report, and the review desk's charts (bars, a histogram of
//! scores, a customer's probability over time). Every string that reaches the markup goes
//! through [`escape`]; callers say how numbers and days read.

use std::fmt::Write as _;

use super::{COEF_DP, LIFT_DP, METRIC_DP, escape, fixed};
use crate::model::evaluation::{CalibrationBin, DecileRow};

const AXIS: &str = "#374151";
const GRID: &str = "#e5e7eb";
const MUTED: &str = "#6b7280";
const BLUE: &str = "#2563eb";
const RED: &str = "#dc2626";
const FONT: &str =
    "system-ui, -apple-system, 'Segoe UI', Roboto, 'Helvetica Neue', Arial, sans-serif";

/// A plot area inside an SVG canvas, mapping data coordinates to pixels.
#[derive(Debug, Clone)]
pub struct Frame {
    pub width: f64,
    pub height: f64,
    pub left: f64,
    pub right: f64,
    pub top: f64,
    pub bottom: f64,
    /// Data range shown on each axis.
    pub x: (f64, f64),
    pub y: (f64, f64),
}

/// A tick: where (in data units) and what it says.
pub type Tick = (f64, String);

impl Frame {
    pub fn plot_width(&self) -> f64 {
        self.width - self.left - self.right
    }

    pub fn plot_height(&self) -> f64 {
        self.height - self.top - self.bottom
    }

    pub fn sx(&self, v: f64) -> f64 {
        let span = self.x.1 - self.x.0;
        let t = if span > 0.0 {
            (v - self.x.0) / span
        } else {
            0.5
        };
        self.left + t * self.plot_width()
    }

    pub fn sy(&self, v: f64) -> f64 {
        let span = self.y.1 - self.y.0;
        let t = if span > 0.0 {
            (v - self.y.0) / span
        } else {
            0.5
        };
        self.top + (1.0 - t) * self.plot_height()
    }

    /// The opening `<svg>` tag with an accessible title; close with `</svg>`.
    pub fn open(&self, title: &str) -> String {
        let t = escape(title);
        format!(
            "<svg viewBox=\"0 0 {w} {h}\" width=\"{w}\" height=\"{h}\" role=\"img\" \
             aria-label=\"{t}\" font-family=\"{FONT}\" font-size=\"12\" fill=\"{AXIS}\">\
             <title>{t}</title>",
            w = self.width,
            h = self.height,
        )
    }

    /// Grid lines, the two axes, tick marks with labels and the axis titles.
    pub fn axes(
        &self,
        xticks: &[Tick],
        yticks: &[Tick],
        xlabel: &str,
        ylabel: &str,
        xgrid: bool,
    ) -> String {
        let mut s = String::new();
        let (px0, px1) = (self.left, self.left + self.plot_width());
        let (py0, py1) = (self.top, self.top + self.plot_height());
        for (v, label) in yticks {
            let y = self.sy(*v);
            let _ = write!(
                s,
                "<line x1=\"{px0:.1}\" y1=\"{y:.1}\" x2=\"{px1:.1}\" y2=\"{y:.1}\" stroke=\"{GRID}\"/>\
                 <line x1=\"{:.1}\" y1=\"{y:.1}\" x2=\"{px0:.1}\" y2=\"{y:.1}\" stroke=\"{AXIS}\"/>\
                 <text x=\"{:.1}\" y=\"{y:.1}\" dy=\"0.32em\" text-anchor=\"end\">{}</text>",
                px0 - 5.0,
                px0 - 8.0,
                escape(label)
            );
        }
        for (v, label) in xticks {
            let x = self.sx(*v);
            if xgrid {
                let _ = write!(
                    s,
                    "<line x1=\"{x:.1}\" y1=\"{py0:.1}\" x2=\"{x:.1}\" y2=\"{py1:.1}\" stroke=\"{GRID}\"/>"
                );
            }
            let _ = write!(
                s,
                "<line x1=\"{x:.1}\" y1=\"{py1:.1}\" x2=\"{x:.1}\" y2=\"{:.1}\" stroke=\"{AXIS}\"/>\
                 <text x=\"{x:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{}</text>",
                py1 + 5.0,
                py1 + 19.0,
                escape(label)
            );
        }
        let _ = write!(
            s,
            "<path d=\"M{px0:.1},{py0:.1}V{py1:.1}H{px1:.1}\" fill=\"none\" stroke=\"{AXIS}\"/>\
             <text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\" font-size=\"13\" \
             font-weight=\"600\">{}</text>\
             <text transform=\"translate({:.1},{:.1}) rotate(-90)\" text-anchor=\"middle\" \
             font-size=\"13\" font-weight=\"600\">{}</text>",
            (px0 + px1) / 2.0,
            self.height - 10.0,
            escape(xlabel),
            18.0,
            (py0 + py1) / 2.0,
            escape(ylabel)
        );
        s
    }

    /// A grey note in the middle of the plot area (for charts without data).
    pub fn note(&self, text: &str) -> String {
        format!(
            "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\" fill=\"{MUTED}\" \
             font-size=\"14\">{}</text>",
            self.left + self.plot_width() / 2.0,
            self.top + self.plot_height() / 2.0,
            escape(text)
        )
    }
}

/// About `target` round tick values (steps of 1, 2 or 5 times a power of ten) covering
/// `[lo, hi]`.
pub fn nice_ticks(lo: f64, hi: f64, target: usize) -> Vec<f64> {
    if !(lo.is_finite() && hi.is_finite()) || hi <= lo || target == 0 {
        return vec![lo];
    }
    let step = nice_step((hi - lo) / target as f64);
    let start = (lo / step).ceil() as i64;
    let end = (hi / step + 1e-9).floor() as i64;
    (start..=end)
        .map(|i| {
            let v = i as f64 * step;
            if v == 0.0 { 0.0 } else { v }
        })
        .collect()
}

fn nice_step(raw: f64) -> f64 {
    let mag = 10f64.powf(raw.log10().floor());
    let norm = raw / mag;
    let m = if norm <= 1.0 {
        1.0
    } else if norm <= 2.0 {
        2.0
    } else if norm <= 5.0 {
        5.0
    } else {
        10.0
    };
    m * mag
}

/// Ticks with labels showing just enough decimals for their step.
pub fn labelled(ticks: &[f64]) -> Vec<Tick> {
    let step = if ticks.len() >= 2 {
        (ticks[1] - ticks[0]).abs()
    } else {
        1.0
    };
    let dp = if step > 0.0 {
        (-(step.log10().floor())).max(0.0) as usize
    } else {
        0
    };
    ticks.iter().map(|&v| (v, fixed(v, dp))).collect()
}

fn unit_ticks() -> Vec<Tick> {
    labelled(&nice_ticks(0.0, 1.0, 5))
}

fn diagonal(f: &Frame) -> String {
    format!(
        "<line x1=\"{:.1}\" y1=\"{:.1}\" x2=\"{:.1}\" y2=\"{:.1}\" stroke=\"{MUTED}\" \
         stroke-dasharray=\"5 4\"/>",
        f.sx(0.0),
        f.sy(0.0),
        f.sx(1.0),
        f.sy(1.0)
    )
}

fn legend(x: f64, y: f64, items: &[(&str, &str, bool)]) -> String {
    let mut s = String::new();
    for (i, (colour, label, dashed)) in items.iter().enumerate() {
        let yy = y + i as f64 * 18.0;
        let dash = if *dashed {
            " stroke-dasharray=\"5 4\""
        } else {
            ""
        };
        let _ = write!(
            s,
            "<line x1=\"{x:.1}\" y1=\"{yy:.1}\" x2=\"{:.1}\" y2=\"{yy:.1}\" stroke=\"{colour}\" \
             stroke-width=\"2.5\"{dash}/>\
             <text x=\"{:.1}\" y=\"{yy:.1}\" dy=\"0.32em\">{}</text>",
            x + 22.0,
            x + 28.0,
            escape(label)
        );
    }
    s
}

fn square_frame() -> Frame {
    Frame {
        width: 540.0,
        height: 460.0,
        left: 64.0,
        right: 36.0,
        top: 20.0,
        bottom: 56.0,
        x: (0.0, 1.0),
        y: (0.0, 1.0),
    }
}

/// ROC curve with the chance diagonal and the AUC.
pub fn roc_chart(points: &[(f64, f64)], auc: Option<f64>) -> String {
    let f = square_frame();
    let mut s = f.open("ROC curve");
    s += &f.axes(
        &unit_ticks(),
        &unit_ticks(),
        "False positive rate",
        "True positive rate",
        true,
    );
    s += &diagonal(&f);
    if points.is_empty() {
        s += &f.note("Not available: the evaluation rows hold one class only");
    } else {
        let path: Vec<String> = points
            .iter()
            .map(|&(x, y)| format!("{:.1},{:.1}", f.sx(x), f.sy(y)))
            .collect();
        let _ = write!(
            s,
            "<polygon points=\"{:.1},{:.1} {} {:.1},{:.1}\" fill=\"{BLUE}\" fill-opacity=\"0.08\"/>\
             <polyline points=\"{}\" fill=\"none\" stroke=\"{BLUE}\" stroke-width=\"2.5\" \
             stroke-linejoin=\"round\"/>",
            f.sx(0.0),
            f.sy(0.0),
            path.join(" "),
            f.sx(1.0),
            f.sy(0.0),
            path.join(" ")
        );
    }
    let x = f.sx(0.52);
    let y = f.sy(0.2);
    s += &legend(x, y, &[(BLUE, "model", false), (MUTED, "chance", true)]);
    if let Some(auc) = auc {
        let _ = write!(
            s,
            "<text x=\"{x:.1}\" y=\"{:.1}\" font-size=\"15\" font-weight=\"700\">AUC {}</text>",
            y - 22.0,
            fixed(auc, METRIC_DP)
        );
    }
    s += "</svg>";
    s
}

/// Observed churn rate against mean predicted probability per bin, point area by row
/// count, with a histogram of counts along the bottom.
pub fn calibration_chart(bins: &[CalibrationBin]) -> String {
    let f = square_frame();
    let mut s = f.open("Calibration curve");
    s += &f.axes(
        &unit_ticks(),
        &unit_ticks(),
        "Mean predicted probability",
        "Observed churn rate",
        true,
    );
    let max_count = bins.iter().map(|b| b.count).max().unwrap_or(0);
    // Row counts as a faint histogram in the bottom sixth of the plot.
    if max_count > 0 {
        let strip = f.plot_height() / 6.0;
        for b in bins.iter().filter(|b| b.count > 0) {
            let h = strip * b.count as f64 / max_count as f64;
            let (x0, x1) = (f.sx(b.lower) + 2.0, f.sx(b.upper) - 2.0);
            let y = f.sy(0.0) - h;
            let _ = write!(
                s,
                "<rect x=\"{x0:.1}\" y=\"{y:.1}\" width=\"{:.1}\" height=\"{h:.1}\" \
                 fill=\"{MUTED}\" fill-opacity=\"0.18\"/>\
                 <text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\" font-size=\"10\" \
                 fill=\"{MUTED}\">{}</text>",
                x1 - x0,
                (x0 + x1) / 2.0,
                y - 3.0,
                b.count
            );
        }
    }
    s += &diagonal(&f);
    let points: Vec<(f64, f64, usize)> = bins
        .iter()
        .filter_map(|b| Some((b.mean_predicted?, b.observed_rate?, b.count)))
        .collect();
    if points.is_empty() {
        s += &f.note("No rows to evaluate");
    } else {
        let path: Vec<String> = points
            .iter()
            .map(|&(x, y, _)| format!("{:.1},{:.1}", f.sx(x), f.sy(y)))
            .collect();
        let _ = write!(
            s,
            "<polyline points=\"{}\" fill=\"none\" stroke=\"{BLUE}\" stroke-width=\"2\"/>",
            path.join(" ")
        );
        for &(x, y, n) in &points {
            let r = 3.0 + 7.0 * (n as f64 / max_count.max(1) as f64).sqrt();
            let _ = write!(
                s,
                "<circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"{r:.1}\" fill=\"{BLUE}\" fill-opacity=\"0.75\" \
                 stroke=\"#fff\" stroke-width=\"1.5\"><title>{} rows: predicted {}, observed {}</title></circle>",
                f.sx(x),
                f.sy(y),
                n,
                fixed(x, 3),
                fixed(y, 3)
            );
        }
    }
    s += &legend(
        f.sx(0.04),
        f.sy(0.95),
        &[
            (BLUE, "model (point area ∝ rows)", false),
            (MUTED, "perfectly calibrated", true),
        ],
    );
    let _ = write!(
        s,
        "<text x=\"{:.1}\" y=\"{:.1}\" font-size=\"11\" fill=\"{MUTED}\">grey bars: rows per bin</text>",
        f.sx(0.04) + 28.0,
        f.sy(0.95) + 36.0
    );
    s += "</svg>";
    s
}

/// Lift of each decile as bars with value labels, and the baseline at 1.
pub fn lift_chart(deciles: &[DecileRow]) -> String {
    let max_lift = deciles.iter().filter_map(|d| d.lift).fold(1.0f64, f64::max);
    let yticks = nice_ticks(0.0, max_lift * 1.12, 5);
    let top = yticks.last().copied().unwrap_or(1.0).max(max_lift * 1.12);
    let f = Frame {
        width: 540.0,
        height: 400.0,
        left: 64.0,
        right: 20.0,
        top: 20.0,
        bottom: 56.0,
        x: (0.5, deciles.len().max(1) as f64 + 0.5),
        y: (0.0, top),
    };
    let mut s = f.open("Lift by decile");
    let xticks: Vec<Tick> = deciles
        .iter()
        .map(|d| (d.decile as f64, d.decile.to_string()))
        .collect();
    s += &f.axes(
        &xticks,
        &labelled(&yticks),
        "Decile (1 = riskiest)",
        "Lift (churn rate ÷ overall rate)",
        false,
    );
    let band = f.plot_width() / deciles.len().max(1) as f64;
    for d in deciles {
        let cx = f.sx(d.decile as f64);
        let (label, y) = match d.lift {
            Some(l) => {
                let y = f.sy(l);
                let colour = if l >= 1.0 { RED } else { BLUE };
                let _ = write!(
                    s,
                    "<rect x=\"{:.1}\" y=\"{y:.1}\" width=\"{:.1}\" height=\"{:.1}\" \
                     fill=\"{colour}\" fill-opacity=\"0.8\" rx=\"2\"/>",
                    cx - band * 0.34,
                    band * 0.68,
                    f.sy(0.0) - y
                );
                (fixed(l, LIFT_DP), y)
            }
            None => ("—".to_owned(), f.sy(0.0)),
        };
        let _ = write!(
            s,
            "<text x=\"{cx:.1}\" y=\"{:.1}\" text-anchor=\"middle\" font-weight=\"600\">{}</text>",
            y - 5.0,
            escape(&label)
        );
    }
    let base = f.sy(1.0);
    let _ = write!(
        s,
        "<line x1=\"{:.1}\" y1=\"{base:.1}\" x2=\"{:.1}\" y2=\"{base:.1}\" stroke=\"{AXIS}\" \
         stroke-dasharray=\"5 4\"/>\
         <text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\" font-size=\"11\" fill=\"{MUTED}\">\
         overall rate (lift 1)</text>",
        f.left,
        f.left + f.plot_width(),
        f.left + f.plot_width() - 4.0,
        base - 5.0
    );
    s += "</svg>";
    s
}

/// Longest feature name shown in full in the coefficient chart.
const MAX_NAME_CHARS: usize = 44;

/// Horizontal bars of coefficients, largest first, red where they raise churn risk.
pub fn coefficient_chart(coefficients: &[(String, f64)]) -> String {
    const ROW: f64 = 20.0;
    let longest = coefficients
        .iter()
        .map(|(n, _)| n.chars().count().min(MAX_NAME_CHARS + 1))
        .max()
        .unwrap_or(0);
    let left = (longest as f64 * 6.6 + 24.0).clamp(90.0, 330.0);
    let lo = coefficients.iter().map(|c| c.1).fold(0.0f64, f64::min);
    let hi = coefficients.iter().map(|c| c.1).fold(0.0f64, f64::max);
    let (lo, hi) = if hi - lo > 0.0 { (lo, hi) } else { (-1.0, 1.0) };
    // Room for the value labels beyond the bars' ends.
    let pad = (hi - lo) * 0.12;
    let ticks = nice_ticks(lo - pad, hi + pad, 8);
    let (x0, x1) = (
        ticks.first().copied().unwrap_or(lo).min(lo - pad),
        ticks.last().copied().unwrap_or(hi).max(hi + pad),
    );
    let f = Frame {
        width: 1100.0,
        height: 20.0 + 60.0 + ROW * coefficients.len().max(1) as f64,
        left,
        right: 24.0,
        top: 20.0,
        bottom: 60.0,
        x: (x0, x1),
        y: (0.0, coefficients.len().max(1) as f64),
    };
    let mut s = f.open("Model coefficients");
    // Zebra stripes first, so grid lines and axes stay visible on top.
    for i in (0..coefficients.len()).step_by(2) {
        let _ = write!(
            s,
            "<rect x=\"4\" y=\"{:.1}\" width=\"{:.1}\" height=\"{ROW}\" fill=\"#f3f4f6\"/>",
            f.top + i as f64 * ROW,
            f.left + f.plot_width() - 4.0
        );
    }
    s += &f.axes(
        &labelled(&ticks),
        &[],
        "Coefficient (change in log-odds of churn per standard deviation, or for being in the level)",
        "",
        true,
    );
    if coefficients.is_empty() {
        s += &f.note("The model has no features");
    }
    let zero = f.sx(0.0);
    for (i, (name, c)) in coefficients.iter().enumerate() {
        let yc = f.top + (i as f64 + 0.5) * ROW;
        let shown: String = if name.chars().count() > MAX_NAME_CHARS {
            name.chars().take(MAX_NAME_CHARS - 1).collect::<String>() + "…"
        } else {
            name.clone()
        };
        let (colour, anchor, lx) = if *c >= 0.0 {
            (RED, "start", f.sx(*c) + 5.0)
        } else {
            (BLUE, "end", f.sx(*c) - 5.0)
        };
        let xa = f.sx(*c).min(zero);
        let w = (f.sx(*c) - zero).abs();
        let _ = write!(
            s,
            "<g><title>{name_full}: {value}</title>\
             <text x=\"{:.1}\" y=\"{yc:.1}\" dy=\"0.32em\" text-anchor=\"end\">{}</text>\
             <rect x=\"{xa:.1}\" y=\"{:.1}\" width=\"{w:.1}\" height=\"{:.1}\" fill=\"{colour}\" \
             fill-opacity=\"0.8\" rx=\"2\"/>\
             <text x=\"{lx:.1}\" y=\"{yc:.1}\" dy=\"0.32em\" text-anchor=\"{anchor}\" \
             font-size=\"11\" fill=\"{MUTED}\">{value}</text></g>",
            f.left - 8.0,
            escape(&shown),
            yc - ROW * 0.32,
            ROW * 0.64,
            name_full = escape(name),
            value = fixed(*c, COEF_DP),
        );
    }
    let _ = write!(
        s,
        "<line x1=\"{zero:.1}\" y1=\"{:.1}\" x2=\"{zero:.1}\" y2=\"{:.1}\" stroke=\"{AXIS}\"/>",
        f.top,
        f.top + f.plot_height()
    );
    s += "</svg>";
    s
}

// ---------------------------------------------------------------- the desk's charts

/// The width of the desk's charts (they scale to their box).
const W: f64 = 560.0;

fn open_svg(h: f64, title: &str) -> String {
    format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 {W} {h}\" width=\"100%\" role=\"img\" aria-label=\"{t}\"><title>{t}</title>",
        t = escape(title)
    )
}

/// Horizontal bars, one per (label, value), with the value written beside each bar.
pub fn bar_chart(title: &str, items: &[(String, f64)], show: impl Fn(f64) -> String) -> String {
    if items.is_empty() {
        return "<p class=\"muted\">Nothing to show yet.</p>".into();
    }
    let row = 24.0;
    let label_w = 170.0;
    let value_w = 90.0;
    let h = row * items.len() as f64 + 8.0;
    let max = items.iter().map(|(_, v)| *v).fold(0.0_f64, f64::max);
    let mut s = open_svg(h, title);
    for (i, (label, v)) in items.iter().enumerate() {
        let y = 4.0 + row * i as f64;
        let w = if max > 0.0 {
            (W - label_w - value_w) * v / max
        } else {
            0.0
        };
        let _ = write!(
            s,
            "<text x=\"{lx}\" y=\"{ty}\" text-anchor=\"end\" class=\"lbl\">{label}</text>\
             <rect x=\"{label_w}\" y=\"{y}\" width=\"{w:.1}\" height=\"{bh}\" class=\"bar\"/>\
             <text x=\"{vx:.1}\" y=\"{ty}\" class=\"val\">{value}</text>",
            lx = label_w - 6.0,
            ty = y + 15.0,
            bh = row - 6.0,
            vx = label_w + w + 6.0,
            label = escape(label),
            value = escape(&show(*v)),
        );
    }
    s.push_str("</svg>");
    s
}

/// Ten vertical bars: the shares of scores in each tenth of the probability range, each
/// share in words by `percent`.
pub fn histogram(title: &str, shares: &[f64], percent: impl Fn(f64) -> String) -> String {
    if shares.is_empty() {
        return "<p class=\"muted\">No scoring run yet.</p>".into();
    }
    let h = 190.0;
    let (left, bottom, top) = (40.0, 30.0, 10.0);
    let plot_h = h - bottom - top;
    let bw = (W - left - 10.0) / shares.len() as f64;
    let max = shares.iter().copied().fold(0.0_f64, f64::max).max(1e-9);
    let mut s = open_svg(h, title);
    let _ = write!(
        s,
        "<line x1=\"{left}\" y1=\"{y}\" x2=\"{x2}\" y2=\"{y}\" class=\"axis\"/>",
        y = h - bottom,
        x2 = W - 10.0
    );
    for (i, share) in shares.iter().enumerate() {
        let bh = plot_h * share / max;
        let x = left + bw * i as f64;
        let _ = write!(
            s,
            "<rect x=\"{x:.1}\" y=\"{y:.1}\" width=\"{w:.1}\" height=\"{bh:.1}\" class=\"{cls}\"><title>{lo:.1}–{hi:.1}: {p}</title></rect>\
             <text x=\"{tx:.1}\" y=\"{ly}\" text-anchor=\"middle\" class=\"lbl\">{lo:.1}</text>",
            y = h - bottom - bh,
            w = bw - 4.0,
            cls = if i >= 5 { "bar risk" } else { "bar" },
            lo = i as f64 / shares.len() as f64,
            hi = (i + 1) as f64 / shares.len() as f64,
            p = percent(*share),
            tx = x + 2.0,
            ly = h - bottom + 16.0,
        );
    }
    s.push_str("</svg>");
    s
}

/// A line of churn probability over time (oldest to newest), from 0 to 1: times in words by
/// `day`, probabilities by `percent`.
pub fn sparkline(
    title: &str,
    points: &[(i64, f64)],
    day: impl Fn(i64) -> String,
    percent: impl Fn(f64) -> String,
) -> String {
    if points.is_empty() {
        return "<p class=\"muted\">Not scored yet.</p>".into();
    }
    let h = 120.0;
    let (left, right, top, bottom) = (40.0, 10.0, 10.0, 24.0);
    let (t0, t1) = (
        points.first().map(|p| p.0).unwrap_or(0),
        points.last().map(|p| p.0).unwrap_or(0),
    );
    let span = (t1 - t0).max(1) as f64;
    let x = |t: i64| {
        if points.len() == 1 {
            left + (W - left - right) / 2.0
        } else {
            left + (W - left - right) * (t - t0) as f64 / span
        }
    };
    let y = |p: f64| top + (h - top - bottom) * (1.0 - p.clamp(0.0, 1.0));
    let mut s = open_svg(h, title);
    for tick in [0.0, 0.5, 1.0] {
        let _ = write!(
            s,
            "<line x1=\"{left}\" y1=\"{yy:.1}\" x2=\"{x2}\" y2=\"{yy:.1}\" class=\"grid\"/><text x=\"{tx}\" y=\"{ty:.1}\" text-anchor=\"end\" class=\"lbl\">{tick:.1}</text>",
            yy = y(tick),
            x2 = W - right,
            tx = left - 6.0,
            ty = y(tick) + 4.0
        );
    }
    let path: Vec<String> = points
        .iter()
        .map(|(t, p)| format!("{:.1},{:.1}", x(*t), y(*p)))
        .collect();
    let _ = write!(
        s,
        "<polyline points=\"{}\" class=\"line\"/>",
        path.join(" ")
    );
    for (t, p) in points {
        let _ = write!(
            s,
            "<circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"3\" class=\"dot\"><title>{}: {}</title></circle>",
            x(*t),
            y(*p),
            day(*t),
            percent(*p)
        );
    }
    let _ = write!(
        s,
        "<text x=\"{left}\" y=\"{ty}\" class=\"lbl\">{}</text><text x=\"{x2}\" y=\"{ty}\" text-anchor=\"end\" class=\"lbl\">{}</text>",
        day(t0),
        day(t1),
        ty = h - 6.0,
        x2 = W - right
    );
    s.push_str("</svg>");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nice_ticks_are_round_and_cover_the_range() {
        assert_eq!(
            nice_ticks(0.0, 1.0, 5),
            [0.0, 0.2, 0.4, 0.6000000000000001, 0.8, 1.0]
        );
        assert_eq!(nice_ticks(0.0, 3.7, 5), [0.0, 1.0, 2.0, 3.0]);
        assert_eq!(
            nice_ticks(-1.3, 2.2, 8),
            [-1.0, -0.5, 0.0, 0.5, 1.0, 1.5, 2.0]
        );
        assert_eq!(nice_ticks(1.0, 1.0, 5), [1.0]);
        let labels: Vec<String> = labelled(&nice_ticks(0.0, 1.0, 5))
            .into_iter()
            .map(|t| t.1)
            .collect();
        assert_eq!(labels, ["0.0", "0.2", "0.4", "0.6", "0.8", "1.0"]);
    }

    #[test]
    fn frame_maps_data_to_pixels() {
        let f = square_frame();
        assert_eq!(f.sx(0.0), f.left);
        assert_eq!(f.sx(1.0), f.width - f.right);
        assert_eq!(f.sy(0.0), f.height - f.bottom);
        assert_eq!(f.sy(1.0), f.top);
    }
}
