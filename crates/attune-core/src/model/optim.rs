//! A fast L2-regularised logistic regression behind linfa's `Fit` / `Predict` traits.
//!
//! # Why this exists: where linfa-logistic's time goes
//!
//! Measured on the development machine (2 cores, AMD EPYC, release build, no BLAS)
//! on 200,000 x 45 standardised rows (`attune-bench fit --solver linfa`, and
//! `cargo test --release --lib profile_linfa_ops -- --ignored --nocapture` for the
//! parts), linfa-logistic 0.8.1 as `model::fit` used it (alpha 1, tolerance 1e-4 per row)
//! takes 1.3-1.6 s for 6 L-BFGS iterations, against 0.11 s here. Counting calls with
//! uprobes (`perf probe` on its `cost` and `gradient`), those 6 iterations cost 14 loss
//! and 20 gradient evaluations (1,000,000 rows: 15 and 21, 11-13 s):
//!
//! - Loss and gradient are separate passes, and argmin's L-BFGS computes the gradient
//!   once more at the point its Moré-Thuente line search has just accepted (where the line
//!   search already evaluated it). The first line search needs several trials because
//!   the objective is a sum, so its gradient is O(n) and a first step of 1 is far too long.
//! - Each gradient reads X twice: `x . w` (12 ms: the weights reshaped to a 45 x 1
//!   matrix go through matrixmultiply's GEMM, which repacks X into panels on every call,
//!   22 % of the profile) and `x^T . r` (33-39 ms: without BLAS, ndarray computes a
//!   matrix-vector product on the transposed view as 45 strided dot products down the
//!   columns, each touching every row's cache line; 46 % of the profile at 200,000 rows,
//!   63 % at 1,000,000 where X no longer fits any cache and this product alone takes
//!   316 ms). A loss evaluation is 15-17 ms (GEMM plus two n-sized temporaries and the
//!   element-wise log-logistic); a gradient about 55 ms.
//! - Every evaluation allocates two or three n-sized arrays (margins, products with the
//!   labels, residuals), and everything runs on one core.
//!
//! In total about 55 sweeps over X per fit (14 + 2 x 20, plus the strided ones), against
//! 9 fused sweeps here. One fused pass over 200,000 x 45 takes 11.8 ms on one thread and
//! 6.2 ms on two (reading X once, a plain sum, takes 5.2 ms); at 1,000,000 rows 60 ms and
//! 31.5 ms. The iteration counts are the same as scikit-learn's (6-7): the time was never
//! in the number of iterations but in the cost of each.
//!
//! # What this does instead
//!
//! [`FastLogistic`] minimises the same objective, `sum_i s_i logloss_i + alpha/2 |w|^2`
//! (intercept unpenalised, `s_i` = 1 or scikit-learn's balanced class weight), with a
//! hand-written L-BFGS (memory 10, two-loop recursion, strong-Wolfe line search with
//! cubic interpolation). Every evaluation is ONE fused pass over the rows: per row the
//! margin, the stable log-loss, the residual and its contribution to the gradient are
//! computed while the row is in cache, over fixed blocks of rows split between threads
//! (`std::thread::scope`). Nothing n-sized is allocated per evaluation; partial sums are
//! kept per block and added in block order, so the result does not depend on the number
//! of threads. Internally the objective is divided by the number of rows, which makes the
//! convergence test the same as `model::fit`'s and scikit-learn's (`max |gradient| / n
//! <= tolerance`) and the first step scale-free.
//!
//! It never pretends: a fit that stops before the tolerance is met (iteration budget, or
//! a line search that can make no more progress) is returned with `converged = false`
//! and the gradient it stopped at.

use std::borrow::Cow;
use std::collections::VecDeque;

use linfa::DatasetBase;
use linfa::traits::{Fit, PredictInplace};
use ndarray::{Array1, ArrayBase, Data, Ix1, Ix2, Zip};

use super::ModelError;

/// Pairs kept by L-BFGS.
const MEMORY: usize = 10;
/// Rows per block of the fused pass; partial sums are per block.
const BLOCK_ROWS: usize = 4096;
/// Function evaluations allowed in one line search.
const MAX_LINE_SEARCH: usize = 30;
/// Sufficient decrease (Armijo) and curvature constants of the strong Wolfe conditions.
const C1: f64 = 1e-4;
const C2: f64 = 0.9;
/// Relative change of the objective that rounding can hide (its sum over many rows is
/// only that accurate). Within it, a step meeting the curvature condition is accepted
/// without the sufficient-decrease test: Hager and Zhang's "approximate Wolfe"
/// conditions, which keep the line search working near the optimum, where differences of
/// objective values are lost in rounding but gradients are still accurate.
const F_NOISE: f64 = 1e-10;

/// Per-class sample weights.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ClassWeight {
    /// Every row weighs 1.
    #[default]
    None,
    /// scikit-learn's `class_weight="balanced"`: a row of class `c` weighs
    /// `n_rows / (2 * n_rows_of_class_c)`.
    Balanced,
}

/// Hyperparameters of the fast logistic regression (builder style).
#[derive(Debug, Clone, PartialEq)]
pub struct FastLogistic {
    alpha: f64,
    max_iterations: u64,
    tolerance: f64,
    class_weight: ClassWeight,
    threads: usize,
    initial_params: Option<Array1<f64>>,
}

impl Default for FastLogistic {
    /// alpha 1.0 (scikit-learn's `C = 1`), 1000 iterations, tolerance 1e-4, no class
    /// weights, one thread per available core.
    fn default() -> Self {
        Self {
            alpha: 1.0,
            max_iterations: 1000,
            tolerance: 1e-4,
            class_weight: ClassWeight::None,
            threads: std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1),
            initial_params: None,
        }
    }
}

impl FastLogistic {
    pub fn new() -> Self {
        Self::default()
    }

    /// L2 penalty on the summed log-loss (the intercept is not penalised).
    pub fn alpha(mut self, alpha: f64) -> Self {
        self.alpha = alpha;
        self
    }

    /// Most L-BFGS iterations (accepted steps) to take.
    pub fn max_iterations(mut self, max_iterations: u64) -> Self {
        self.max_iterations = max_iterations;
        self
    }

    /// Converged when the largest absolute gradient component divided by the number of
    /// rows is at most this.
    pub fn tolerance(mut self, tolerance: f64) -> Self {
        self.tolerance = tolerance;
        self
    }

    pub fn class_weight(mut self, class_weight: ClassWeight) -> Self {
        self.class_weight = class_weight;
        self
    }

    /// Threads of the fused pass (at least 1; small data uses fewer).
    pub fn threads(mut self, threads: usize) -> Self {
        self.threads = threads.max(1);
        self
    }

    /// Start from these parameters (coefficients, then the intercept) instead of zero.
    pub fn initial_params(mut self, params: Array1<f64>) -> Self {
        self.initial_params = Some(params);
        self
    }

    pub fn get_alpha(&self) -> f64 {
        self.alpha
    }

    pub fn get_max_iterations(&self) -> u64 {
        self.max_iterations
    }

    pub fn get_tolerance(&self) -> f64 {
        self.tolerance
    }

    pub fn get_class_weight(&self) -> ClassWeight {
        self.class_weight
    }

    pub fn get_threads(&self) -> usize {
        self.threads
    }

    fn check(&self) -> Result<(), ModelError> {
        if !(self.alpha.is_finite() && self.alpha >= 0.0) {
            return Err(ModelError::InvalidOption(format!(
                "alpha {} must be a finite number >= 0 (1.0 is scikit-learn's default)",
                self.alpha
            )));
        }
        if !(self.tolerance.is_finite() && self.tolerance > 0.0) {
            return Err(ModelError::InvalidOption(format!(
                "tolerance {} must be a positive number (e.g. 1e-4)",
                self.tolerance
            )));
        }
        Ok(())
    }
}

/// A fitted model: `P(y = true) = sigmoid(intercept + x . coefficients)`.
#[derive(Debug, Clone, PartialEq)]
pub struct FastLogisticFit {
    pub coefficients: Array1<f64>,
    pub intercept: f64,
    /// L-BFGS iterations (accepted steps) taken.
    pub iterations: u64,
    /// Fused loss-and-gradient passes over the data, line searches included.
    pub evaluations: u64,
    /// Largest absolute component of the objective's gradient at the returned
    /// parameters, divided by the number of rows.
    pub gradient_norm: f64,
    /// Whether `gradient_norm` is within the tolerance asked for.
    pub converged: bool,
    /// Threads the fused pass actually used (small data uses fewer than asked for).
    pub threads: usize,
}

impl FastLogisticFit {
    /// Coefficients then intercept, the form [`FastLogistic::initial_params`] takes.
    pub fn params(&self) -> Array1<f64> {
        self.coefficients
            .iter()
            .copied()
            .chain([self.intercept])
            .collect()
    }
}

impl From<linfa::Error> for ModelError {
    fn from(e: linfa::Error) -> Self {
        ModelError::Solver(e.to_string())
    }
}

impl<D, DT> Fit<ArrayBase<D, Ix2>, ArrayBase<DT, Ix1>, ModelError> for FastLogistic
where
    D: Data<Elem = f64>,
    DT: Data<Elem = bool>,
{
    type Object = FastLogisticFit;

    fn fit(
        &self,
        dataset: &DatasetBase<ArrayBase<D, Ix2>, ArrayBase<DT, Ix1>>,
    ) -> Result<FastLogisticFit, ModelError> {
        self.check()?;
        let (x, y) = (dataset.records(), dataset.targets());
        let (n, d) = x.dim();
        if y.len() != n {
            return Err(ModelError::LengthMismatch {
                rows: n,
                labels: y.len(),
            });
        }
        if n == 0 {
            return Err(ModelError::Empty);
        }
        // Borrowed when already row-major and contiguous (the usual case): no copy of X.
        let xc = x.as_standard_layout();
        let xs = xc.as_slice().expect("standard layout is contiguous");
        let ys: Cow<'_, [bool]> = match y.as_slice() {
            Some(s) => Cow::Borrowed(s),
            None => Cow::Owned(y.to_vec()),
        };
        let positives = ys.iter().filter(|&&b| b).count();
        let (w_neg, w_pos) = match self.class_weight {
            ClassWeight::None => (1.0, 1.0),
            ClassWeight::Balanced => {
                if positives == 0 || positives == n {
                    return Err(ModelError::OneClass {
                        class: positives > 0,
                        rows: n,
                    });
                }
                (
                    n as f64 / (2.0 * (n - positives) as f64),
                    n as f64 / (2.0 * positives as f64),
                )
            }
        };
        let mut theta = match &self.initial_params {
            Some(p) if p.len() == d + 1 && p.iter().all(|v| v.is_finite()) => p.to_vec(),
            Some(p) => {
                return Err(ModelError::InvalidOption(format!(
                    "initial parameters must be {} finite numbers (coefficients then the \
                     intercept), got {}",
                    d + 1,
                    p.len()
                )));
            }
            None => vec![0.0; d + 1],
        };
        let mut objective = Objective::new(xs, &ys, d, self.alpha, w_neg, w_pos, self.threads);
        let mut g = vec![0.0; d + 1];
        let f = objective.eval(&theta, &mut g);
        // A NaN or infinite value in X always makes the gradient non-finite (its term
        // r * x is infinite or NaN, r included), so the first pass doubles as the check
        // and the data is only scanned again to name the culprit.
        if !(f.is_finite() && g.iter().all(|v| v.is_finite()))
            && let Some(i) = xs.iter().position(|v| !v.is_finite())
        {
            return Err(ModelError::NonFinite {
                feature: format!("column {}", i % d.max(1)),
                row: i / d.max(1),
            });
        }
        let outcome = lbfgs(
            &mut objective,
            &mut theta,
            (f, g),
            self.max_iterations,
            self.tolerance,
        );
        let intercept = theta[d];
        theta.truncate(d);
        Ok(FastLogisticFit {
            coefficients: Array1::from(theta),
            intercept,
            iterations: outcome.iterations,
            evaluations: objective.evaluations,
            gradient_norm: outcome.gradient_norm,
            converged: outcome.converged,
            threads: objective.threads,
        })
    }
}

impl<D: Data<Elem = f64>> PredictInplace<ArrayBase<D, Ix2>, Array1<f64>> for FastLogisticFit {
    /// P(y = true) of each row.
    fn predict_inplace(&self, x: &ArrayBase<D, Ix2>, y: &mut Array1<f64>) {
        assert_eq!(
            x.ncols(),
            self.coefficients.len(),
            "rows have {} columns, the model {}",
            x.ncols(),
            self.coefficients.len()
        );
        assert_eq!(x.nrows(), y.len(), "one prediction per row");
        let w = self.coefficients.as_slice().expect("owned 1-d array");
        Zip::from(y).and(x.rows()).for_each(|p, row| {
            let z = self.intercept
                + match row.as_slice() {
                    Some(r) => dot(r, w),
                    None => row.dot(&self.coefficients),
                };
            *p = sigmoid(z);
        });
    }

    fn default_target(&self, x: &ArrayBase<D, Ix2>) -> Array1<f64> {
        Array1::zeros(x.nrows())
    }
}

/// Numerically stable logistic function.
pub fn sigmoid(z: f64) -> f64 {
    let e = (-z.abs()).exp();
    if z >= 0.0 {
        1.0 / (1.0 + e)
    } else {
        e / (1.0 + e)
    }
}

/// Dot product with four independent accumulators (lets the compiler vectorise and
/// overlap the additions instead of one long dependency chain).
#[inline(always)]
fn dot(a: &[f64], b: &[f64]) -> f64 {
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    let mut acc = [0.0f64; 4];
    let mut ca = a.chunks_exact(4);
    let mut cb = b.chunks_exact(4);
    for (x, y) in (&mut ca).zip(&mut cb) {
        acc[0] += x[0] * y[0];
        acc[1] += x[1] * y[1];
        acc[2] += x[2] * y[2];
        acc[3] += x[3] * y[3];
    }
    let mut tail = 0.0;
    for (x, y) in ca.remainder().iter().zip(cb.remainder()) {
        tail += x * y;
    }
    (acc[0] + acc[2]) + (acc[1] + acc[3]) + tail
}

/// `mean_i s_i logloss_i + alpha / (2 n) |w|^2` and its gradient, one pass per call.
struct Objective<'a> {
    x: &'a [f64],
    y: &'a [bool],
    n: usize,
    d: usize,
    alpha: f64,
    w_neg: f64,
    w_pos: f64,
    threads: usize,
    /// Per block: summed loss, then the d + 1 gradient sums.
    partials: Vec<f64>,
    evaluations: u64,
}

impl<'a> Objective<'a> {
    fn new(
        x: &'a [f64],
        y: &'a [bool],
        d: usize,
        alpha: f64,
        w_neg: f64,
        w_pos: f64,
        threads: usize,
    ) -> Self {
        let n = y.len();
        let blocks = n.div_ceil(BLOCK_ROWS).max(1);
        Self {
            x,
            y,
            n,
            d,
            alpha,
            w_neg,
            w_pos,
            threads: threads.clamp(1, blocks),
            partials: vec![0.0; blocks * (d + 2)],
            evaluations: 0,
        }
    }

    /// The mean objective at `theta` (coefficients then intercept); writes its gradient.
    fn eval(&mut self, theta: &[f64], grad: &mut [f64]) -> f64 {
        self.evaluations += 1;
        let d = self.d;
        let stride = d + 2;
        let (w, b) = (&theta[..d], theta[d]);
        let (w_neg, w_pos) = (self.w_neg, self.w_pos);
        let blocks = self.partials.len() / stride;
        // Contiguous runs of whole blocks per thread.
        let per_thread = blocks.div_ceil(self.threads);
        let rows_per_thread = per_thread * BLOCK_ROWS;
        let row_len = d.max(1);
        let x = self.x;
        let y = self.y;
        let run = |partials: &mut [f64], first_row: usize| {
            for (k, part) in partials.chunks_exact_mut(stride).enumerate() {
                let lo = first_row + k * BLOCK_ROWS;
                let hi = (lo + BLOCK_ROWS).min(y.len());
                let xs = if d == 0 { &[][..] } else { &x[lo * d..hi * d] };
                block_pass(xs, &y[lo..hi], row_len, d, w, b, w_neg, w_pos, part);
            }
        };
        let mut parts = self.partials.chunks_mut(per_thread * stride);
        let first = parts.next().expect("at least one block");
        std::thread::scope(|s| {
            for (t, part) in parts.enumerate() {
                let run = &run;
                s.spawn(move || run(part, (t + 1) * rows_per_thread));
            }
            run(first, 0);
        });
        // Add the blocks in order: the same sums whatever the number of threads.
        let mut loss = 0.0;
        grad.iter_mut().for_each(|g| *g = 0.0);
        for part in self.partials.chunks_exact(stride) {
            loss += part[0];
            for (g, p) in grad.iter_mut().zip(&part[1..]) {
                *g += p;
            }
        }
        let n = self.n as f64;
        let mut penalty = 0.0;
        for (g, &wj) in grad[..d].iter_mut().zip(w) {
            *g += self.alpha * wj;
            penalty += wj * wj;
        }
        for g in grad.iter_mut() {
            *g /= n;
        }
        (loss + 0.5 * self.alpha * penalty) / n
    }
}

/// Loss and gradient sums of one block of rows into `part` = [loss, g_0..g_{d-1}, g_b].
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn block_pass(
    xs: &[f64],
    ys: &[bool],
    row_len: usize,
    d: usize,
    w: &[f64],
    b: f64,
    w_neg: f64,
    w_pos: f64,
    part: &mut [f64],
) {
    let (loss_slot, g) = part.split_first_mut().expect("d + 2 slots");
    let (gw, gb) = g.split_at_mut(d);
    gw.iter_mut().for_each(|v| *v = 0.0);
    let mut loss = 0.0;
    let mut bias = 0.0;
    let mut step = |row: &[f64], yi: bool| {
        let z = b + dot(row, w);
        // log(1 + e^z) - y z, and sigmoid(z) - y, sharing one exp. `ln(1 + e)` rather
        // than `ln_1p(e)`: e is in (0, 1], so the difference is below 1.2e-16 per row,
        // and glibc's log is markedly cheaper than its log1p.
        let e = (-z.abs()).exp();
        let l = (1.0 + e).ln() + z.max(0.0) - if yi { z } else { 0.0 };
        let p = if z >= 0.0 {
            1.0 / (1.0 + e)
        } else {
            e / (1.0 + e)
        };
        let (s, target) = if yi { (w_pos, 1.0) } else { (w_neg, 0.0) };
        loss += s * l;
        let r = s * (p - target);
        bias += r;
        for (gj, xj) in gw.iter_mut().zip(row) {
            *gj += r * xj;
        }
    };
    if d == 0 {
        for &yi in ys {
            step(&[], yi);
        }
    } else {
        for (row, &yi) in xs.chunks_exact(row_len).zip(ys) {
            step(row, yi);
        }
    }
    *loss_slot = loss;
    gb[0] = bias;
}

struct Outcome {
    iterations: u64,
    gradient_norm: f64,
    converged: bool,
}

fn max_abs(v: &[f64]) -> f64 {
    v.iter().fold(0.0f64, |m, x| m.max(x.abs()))
}

fn vdot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// One curvature pair of L-BFGS's memory.
struct Pair {
    s: Vec<f64>,
    y: Vec<f64>,
    rho: f64,
    /// Scratch of the two-loop recursion.
    a: f64,
}

/// L-BFGS from `theta`, leaving the last accepted point in `theta`.
/// `(f, g)` are the objective and its gradient at the starting point.
fn lbfgs(
    obj: &mut Objective<'_>,
    theta: &mut Vec<f64>,
    (mut f, mut g): (f64, Vec<f64>),
    max_iter: u64,
    tol: f64,
) -> Outcome {
    let p = theta.len();
    let mut memory: VecDeque<Pair> = VecDeque::with_capacity(MEMORY);
    let mut dir = vec![0.0; p];
    let mut theta_new = vec![0.0; p];
    let mut g_new = vec![0.0; p];
    let mut s_new = vec![0.0; p];
    let mut y_new = vec![0.0; p];
    let mut iterations = 0u64;
    loop {
        let gnorm = max_abs(&g);
        if gnorm <= tol || !f.is_finite() || iterations >= max_iter {
            return Outcome {
                iterations,
                gradient_norm: gnorm,
                converged: gnorm <= tol && f.is_finite(),
            };
        }
        // Two-loop recursion: dir = -H g.
        dir.copy_from_slice(&g);
        for pair in memory.iter_mut().rev() {
            pair.a = pair.rho * vdot(&pair.s, &dir);
            for (q, yv) in dir.iter_mut().zip(&pair.y) {
                *q -= pair.a * yv;
            }
        }
        if let Some(newest) = memory.back() {
            let gamma = vdot(&newest.s, &newest.y) / vdot(&newest.y, &newest.y);
            dir.iter_mut().for_each(|q| *q *= gamma);
        }
        for pair in memory.iter() {
            let c = pair.a - pair.rho * vdot(&pair.y, &dir);
            for (q, sv) in dir.iter_mut().zip(&pair.s) {
                *q += c * sv;
            }
        }
        dir.iter_mut().for_each(|q| *q = -*q);
        let mut slope = vdot(&dir, &g);
        if !(slope < 0.0 && slope.is_finite()) {
            // Not a descent direction (cannot happen with positive-curvature pairs, but
            // rounding is rounding): steepest descent with fresh memory.
            memory.clear();
            for (q, gv) in dir.iter_mut().zip(&g) {
                *q = -gv;
            }
            slope = vdot(&dir, &g);
        }
        // Without curvature information the first step has unit length, as in L-BFGS-B.
        let t0 = if memory.is_empty() {
            (1.0 / vdot(&dir, &dir).sqrt()).min(1.0)
        } else {
            1.0
        };
        let accepted = line_search(obj, theta, f, &dir, slope, t0, &mut theta_new, &mut g_new);
        let Some(f_new) = accepted else {
            if memory.is_empty() {
                // Even steepest descent cannot decrease f: as close as the arithmetic
                // allows, or an unbounded problem. Reported as not converged.
                return Outcome {
                    iterations,
                    gradient_norm: gnorm,
                    converged: false,
                };
            }
            memory.clear();
            continue;
        };
        for i in 0..p {
            s_new[i] = theta_new[i] - theta[i];
            y_new[i] = g_new[i] - g[i];
        }
        let sy = vdot(&s_new, &y_new);
        if sy.is_finite() && sy > 1e-12 * vdot(&y_new, &y_new) {
            // Reuse the oldest pair's buffers once the memory is full.
            let mut pair = if memory.len() == MEMORY {
                memory.pop_front().expect("full memory")
            } else {
                Pair {
                    s: vec![0.0; p],
                    y: vec![0.0; p],
                    rho: 0.0,
                    a: 0.0,
                }
            };
            std::mem::swap(&mut pair.s, &mut s_new);
            std::mem::swap(&mut pair.y, &mut y_new);
            pair.rho = 1.0 / sy;
            memory.push_back(pair);
        }
        std::mem::swap(theta, &mut theta_new);
        std::mem::swap(&mut g, &mut g_new);
        f = f_new;
        iterations += 1;
    }
}

/// Strong-Wolfe line search (Nocedal & Wright, algorithms 3.5 and 3.6, with cubic
/// interpolation). On success `x_out` / `g_out` hold the accepted point and its gradient
/// and the objective there is returned; `None` when no step decreases the objective.
#[allow(clippy::too_many_arguments)]
fn line_search(
    obj: &mut Objective<'_>,
    x0: &[f64],
    f0: f64,
    dir: &[f64],
    slope0: f64,
    t_init: f64,
    x_out: &mut [f64],
    g_out: &mut [f64],
) -> Option<f64> {
    let mut eval = |t: f64, x_out: &mut [f64], g_out: &mut [f64]| -> (f64, f64) {
        for ((xo, &x), &dv) in x_out.iter_mut().zip(x0).zip(dir) {
            *xo = x + t * dv;
        }
        let f = obj.eval(x_out, g_out);
        (f, vdot(g_out, dir))
    };
    let armijo = |t: f64, f: f64| f.is_finite() && f <= f0 + C1 * t * slope0;
    let curvature = |slope: f64| slope.abs() <= -C2 * slope0;
    let approximate_wolfe =
        |f: f64, slope: f64| f.is_finite() && f <= f0 + F_NOISE * f0.abs() && curvature(slope);

    // Bracketing phase.
    let (mut t_prev, mut f_prev, mut s_prev) = (0.0, f0, slope0);
    let mut t = t_init;
    let mut evals = 0;
    let (lo, hi) = loop {
        let (f, s) = eval(t, x_out, g_out);
        evals += 1;
        if approximate_wolfe(f, s) {
            return Some(f);
        }
        if !armijo(t, f) || (evals > 1 && f >= f_prev) {
            break ((t_prev, f_prev, s_prev), (t, f, s));
        }
        if curvature(s) {
            return Some(f);
        }
        if s >= 0.0 {
            break ((t, f, s), (t_prev, f_prev, s_prev));
        }
        if evals >= MAX_LINE_SEARCH {
            // Still descending at the last point, which satisfies Armijo: take it.
            return Some(f);
        }
        (t_prev, f_prev, s_prev) = (t, f, s);
        t *= 4.0;
    };

    // Zoom phase: `lo` satisfies Armijo and has the lowest f seen so far.
    let (mut lo, mut hi) = (lo, hi);
    while evals < MAX_LINE_SEARCH {
        let (a, b) = (lo.0.min(hi.0), lo.0.max(hi.0));
        let width = b - a;
        if width <= 1e-16 * b.max(1.0) {
            break;
        }
        let guess = cubic_min(lo, hi).unwrap_or(0.5 * (lo.0 + hi.0));
        let t = guess.clamp(a + 0.1 * width, b - 0.1 * width);
        let (f, s) = eval(t, x_out, g_out);
        evals += 1;
        if approximate_wolfe(f, s) {
            return Some(f);
        }
        if !armijo(t, f) || f >= lo.1 {
            hi = (t, f, s);
        } else {
            if curvature(s) {
                return Some(f);
            }
            if s * (hi.0 - lo.0) >= 0.0 {
                hi = lo;
            }
            lo = (t, f, s);
        }
    }
    // No point meets the curvature condition, but `lo` (if it moved) still decreases f.
    if lo.0 > 0.0 && lo.1 < f0 {
        let (f, _) = eval(lo.0, x_out, g_out);
        if f.is_finite() && f < f0 {
            return Some(f);
        }
    }
    None
}

/// Minimiser of the cubic interpolating `f` and its slope at two points.
fn cubic_min(p: (f64, f64, f64), q: (f64, f64, f64)) -> Option<f64> {
    let (a, fa, ga) = p;
    let (b, fb, gb) = q;
    if !(fa.is_finite() && fb.is_finite() && ga.is_finite() && gb.is_finite()) || a == b {
        return None;
    }
    let d1 = ga + gb - 3.0 * (fa - fb) / (a - b);
    let disc = d1 * d1 - ga * gb;
    if disc < 0.0 {
        return None;
    }
    let d2 = (b - a).signum() * disc.sqrt();
    let denom = gb - ga + 2.0 * d2;
    if denom == 0.0 {
        return None;
    }
    let t = b - (b - a) * (gb + d2 - d1) / denom;
    t.is_finite().then_some(t)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::synthetic::synthetic;
    use linfa::Dataset;
    use linfa::traits::Predict;
    use ndarray::{Array2, array};

    /// Max |gradient| / n of the objective, computed the slow, obvious way.
    fn naive_gradient(
        x: &Array2<f64>,
        y: &Array1<bool>,
        alpha: f64,
        weights: (f64, f64),
        w: &Array1<f64>,
        b: f64,
    ) -> f64 {
        let mut g = w * alpha;
        let mut gb = 0.0;
        for (row, &yi) in x.rows().into_iter().zip(y) {
            let p = 1.0 / (1.0 + (-(row.dot(w) + b)).exp());
            let s = if yi { weights.1 } else { weights.0 };
            let r = s * (p - if yi { 1.0 } else { 0.0 });
            g.scaled_add(r, &row);
            gb += r;
        }
        g.iter().fold(gb.abs(), |m, v| m.max(v.abs())) / x.nrows() as f64
    }

    #[test]
    fn fused_pass_matches_naive_loss_and_gradient() {
        let (x, y) = synthetic(10_000, 7, 11);
        let d = 7;
        let theta: Vec<f64> = (0..=d).map(|j| 0.1 * j as f64 - 0.3).collect();
        let xs = x.as_slice().unwrap();
        let ys = y.as_slice().unwrap();
        for threads in [1, 2, 3] {
            let mut obj = Objective::new(xs, ys, d, 2.0, 0.7, 1.6, threads);
            let mut g = vec![0.0; d + 1];
            let f = obj.eval(&theta, &mut g);
            let mut f_naive = 0.0;
            let mut g_naive = vec![0.0; d + 1];
            for (row, &yi) in x.rows().into_iter().zip(&y) {
                let z = theta[d] + row.iter().zip(&theta).map(|(a, b)| a * b).sum::<f64>();
                let p = 1.0 / (1.0 + (-z).exp());
                let s = if yi { 1.6 } else { 0.7 };
                f_naive += -s * if yi { p.ln() } else { (1.0 - p).ln() };
                let r = s * (p - if yi { 1.0 } else { 0.0 });
                for j in 0..d {
                    g_naive[j] += r * row[j];
                }
                g_naive[d] += r;
            }
            let pen: f64 = theta[..d].iter().map(|v| v * v).sum();
            f_naive = (f_naive + pen) / 10_000.0;
            for j in 0..d {
                g_naive[j] = (g_naive[j] + 2.0 * theta[j]) / 10_000.0;
            }
            g_naive[d] /= 10_000.0;
            assert!((f - f_naive).abs() < 1e-12, "{f} vs {f_naive}");
            for (a, b) in g.iter().zip(&g_naive) {
                assert!((a - b).abs() < 1e-12, "{g:?} vs {g_naive:?}");
            }
        }
    }

    #[test]
    fn result_does_not_depend_on_threads() {
        let (x, y) = synthetic(30_000, 9, 5);
        let data = Dataset::new(x, y);
        let one = FastLogistic::default().threads(1).fit(&data).unwrap();
        assert_eq!(one.threads, 1);
        for t in [2, 3, 8] {
            let many = FastLogistic::default().threads(t).fit(&data).unwrap();
            assert_eq!(many.threads, t.min(30_000usize.div_ceil(BLOCK_ROWS)));
            assert_eq!(FastLogisticFit { threads: 1, ..many }, one);
        }
    }

    #[test]
    fn converges_to_a_zero_gradient_and_predicts_probabilities() {
        let (x, y) = synthetic(20_000, 12, 1);
        let data = Dataset::new(x.clone(), y.clone());
        for cw in [ClassWeight::None, ClassWeight::Balanced] {
            let fit = FastLogistic::default()
                .class_weight(cw)
                .tolerance(1e-8)
                .fit(&data)
                .unwrap();
            assert!(fit.converged && fit.gradient_norm <= 1e-8, "{fit:?}");
            let pos = y.iter().filter(|&&b| b).count() as f64;
            let n = y.len() as f64;
            let weights = match cw {
                ClassWeight::None => (1.0, 1.0),
                ClassWeight::Balanced => (n / (2.0 * (n - pos)), n / (2.0 * pos)),
            };
            let g = naive_gradient(&x, &y, 1.0, weights, &fit.coefficients, fit.intercept);
            assert!(
                g <= 1e-8 + 1e-12,
                "reported {}, naive {g}",
                fit.gradient_norm
            );
            let p: Array1<f64> = fit.predict(&x);
            assert!(p.iter().all(|v| (0.0..=1.0).contains(v)));
            if cw == ClassWeight::None {
                // Unpenalised intercept: mean probability = base rate at the optimum.
                assert!((p.mean().unwrap() - pos / n).abs() < 1e-6);
            }
        }
    }

    #[test]
    fn non_convergence_is_reported() {
        // Perfectly separable, no penalty: the optimum is at infinity.
        let x = array![[-2.0], [-1.0], [1.0], [2.0]];
        let y = array![false, false, true, true];
        let fit = FastLogistic::default()
            .alpha(0.0)
            .max_iterations(15)
            .tolerance(1e-12)
            .fit(&Dataset::new(x, y))
            .unwrap();
        assert!(!fit.converged, "{fit:?}");
        assert!(fit.gradient_norm > 1e-12);
        assert!(fit.iterations <= 15);
    }

    #[test]
    fn input_errors() {
        let x = array![[1.0, f64::NAN], [0.0, 1.0]];
        let y = array![true, false];
        assert_eq!(
            FastLogistic::default().fit(&Dataset::new(x, y.clone())),
            Err(ModelError::NonFinite {
                feature: "column 1".into(),
                row: 0
            })
        );
        let x = array![[1.0], [0.0]];
        assert!(matches!(
            FastLogistic::default()
                .alpha(-1.0)
                .fit(&Dataset::new(x.clone(), y.clone())),
            Err(ModelError::InvalidOption(_))
        ));
        assert!(matches!(
            FastLogistic::default()
                .class_weight(ClassWeight::Balanced)
                .fit(&Dataset::new(x.clone(), array![true, true])),
            Err(ModelError::OneClass {
                class: true,
                rows: 2
            })
        ));
        assert!(matches!(
            FastLogistic::default()
                .initial_params(array![1.0])
                .fit(&Dataset::new(x, y)),
            Err(ModelError::InvalidOption(_))
        ));
    }

    #[test]
    fn views_and_column_major_data_fit_the_same() {
        let (x, y) = synthetic(5_000, 4, 2);
        let a = FastLogistic::default()
            .fit(&Dataset::new(x.clone(), y.clone()))
            .unwrap();
        let view = DatasetBase::new(x.view(), y.view());
        assert_eq!(FastLogistic::default().fit(&view).unwrap(), a);
        let fortran = x.t().as_standard_layout().into_owned().reversed_axes();
        assert!(fortran.as_slice().is_none());
        let b = FastLogistic::default()
            .fit(&DatasetBase::new(fortran, y))
            .unwrap();
        assert_eq!(b, a);
    }
}

#[cfg(test)]
mod profile_linfa_ops {
    use crate::model::synthetic::synthetic;
    use ndarray::{Array1, Axis};
    use std::time::Instant;

    #[test]
    #[ignore]
    fn profile_linfa_ops() {
        let rows: usize = std::env::var("PROFILE_ROWS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(200_000);
        let (x, y) = synthetic(rows, 45, 0);
        let w = Array1::from_elem(45, 0.01);
        let yf = y.mapv(|b| if b { 1.0 } else { -1.0 });
        let time = |name: &str, f: &mut dyn FnMut() -> f64| {
            let mut best = f64::INFINITY;
            let mut sink = 0.0;
            for _ in 0..7 {
                let t = Instant::now();
                sink += f();
                best = best.min(t.elapsed().as_secs_f64());
            }
            eprintln!("{name}: {:.2} ms ({sink:.3e})", best * 1e3);
        };
        let wc = w.clone().into_shape_with_order((45, 1)).unwrap();
        time("x.dot(w as 45x1 matrix) [gemm, linfa]", &mut || {
            x.dot(&wc).sum()
        });
        time("x.dot(w) [1-d]", &mut || x.dot(&w).sum());
        time("x.t().dot(r) [linfa's gradient]", &mut || {
            x.t().dot(&yf).sum()
        });
        time("logistic_loss elementwise (alloc + mapv)", &mut || {
            let z = x.dot(&wc) + 0.1;
            let z = z.into_shape_with_order(rows).unwrap() * &yf;
            z.mapv(|v: f64| {
                if v > 0.0 {
                    -(1.0 + (-v).exp()).ln()
                } else {
                    v - (1.0 + v.exp()).ln()
                }
            })
            .sum()
        });
        time("fused pass (attune, 1 thread)", &mut || {
            let mut obj = super::Objective::new(
                x.as_slice().unwrap(),
                y.as_slice().unwrap(),
                45,
                1.0,
                1.0,
                1.0,
                1,
            );
            let mut g = vec![0.0; 46];
            let mut th = w.to_vec();
            th.push(0.1);
            obj.eval(&th, &mut g)
        });
        time("fused pass (attune, 2 threads)", &mut || {
            let mut obj = super::Objective::new(
                x.as_slice().unwrap(),
                y.as_slice().unwrap(),
                45,
                1.0,
                1.0,
                1.0,
                2,
            );
            let mut g = vec![0.0; 46];
            let mut th = w.to_vec();
            th.push(0.1);
            obj.eval(&th, &mut g)
        });
        time("read X once (sum)", &mut || x.sum_axis(Axis(1)).sum());
    }
}
