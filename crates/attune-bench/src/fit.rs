//! `attune-bench fit`: attune's trainer (or linfa-logistic) on synthetic rows, printed as
//! JSON beside the anchor it is compared with (`../shared/bench/sklearn_baseline.py`).

use std::io::Write as _;
use std::path::Path;
use std::time::Instant;

use anyhow::Context as _;
use linfa::DatasetBase;
use linfa::traits::{Fit, Predict};
use ndarray::{Array1, Array2};

use attune::model::optim::FastLogistic;
use attune::model::synthetic::synthetic;
use attune::model::{metrics, relative_gradient};

/// Alpha 1 (scikit-learn's C = 1) and 1000 iterations, as `model::fit` uses them.
const ALPHA: f64 = 1.0;
const MAX_ITERATIONS: u64 = 1000;

/// Generates the data, times only the fit, predicts on the same rows and scores them.
pub fn bench_fit(
    rows: usize,
    features: usize,
    seed: u64,
    solver: &str,
    save_npy: Option<&Path>,
    tolerance: f64,
) -> anyhow::Result<serde_json::Value> {
    anyhow::ensure!(
        rows >= 2 && features >= 1,
        "--rows must be at least 2 and --features at least 1"
    );
    let t = Instant::now();
    let (x, y) = synthetic(rows, features, seed);
    let generate_seconds = t.elapsed().as_secs_f64();
    if let Some(dir) = save_npy {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        write_npy_f64(&dir.join("x.npy"), &x)?;
        write_npy_bool(&dir.join("y.npy"), &y)?;
    }
    // Views: neither solver gets a copy of the 8 * rows * features bytes of X.
    let data = DatasetBase::new(x.view(), y.view());

    let (fit_seconds, fitted) = match solver {
        "fast" => {
            let t = Instant::now();
            let fit = FastLogistic::default()
                .alpha(ALPHA)
                .max_iterations(MAX_ITERATIONS)
                .tolerance(tolerance)
                .fit(&data)
                .context("fitting with attune's L-BFGS")?;
            (t.elapsed().as_secs_f64(), Fitted::Fast(fit))
        }
        "linfa" => {
            // As `model::fit` used it: linfa's tolerance is on the L2 norm of the summed
            // gradient, so the per-row tolerance is scaled by the number of rows.
            let t = Instant::now();
            let fit = linfa_logistic::LogisticRegression::default()
                .alpha(ALPHA)
                .max_iterations(MAX_ITERATIONS)
                .gradient_tolerance(tolerance * rows as f64)
                .fit(&data)
                .context("fitting with linfa-logistic")?;
            (t.elapsed().as_secs_f64(), Fitted::Linfa(fit))
        }
        other => anyhow::bail!("unknown --solver {other:?}; use fast or linfa"),
    };

    let t = Instant::now();
    let p = fitted.predict(&x);
    let predict_seconds = t.elapsed().as_secs_f64();
    let labels = y.as_slice().expect("contiguous labels");
    let probs = p.as_slice().expect("contiguous probabilities");
    let auc = metrics::roc_auc(labels, probs);
    let log_loss = metrics::log_loss(labels, probs);

    let mut out = serde_json::json!({
        "solver": solver,
        "rows": rows,
        "features": features,
        "seed": seed,
        "generate_seconds": round(generate_seconds, 4),
        "fit_seconds": round(fit_seconds, 4),
        "predict_seconds": round(predict_seconds, 4),
        "auc": auc.map(|a| round(a, 5)),
        "log_loss": round(log_loss, 5),
    });
    let extra = match &fitted {
        Fitted::Fast(f) => serde_json::json!({
            "library": format!("attune L-BFGS (fused, {} threads)", f.threads),
            "iterations": f.iterations,
            "evaluations": f.evaluations,
            "converged": f.converged,
            "gradient_norm": f.gradient_norm,
        }),
        Fitted::Linfa(f) => {
            // linfa reports neither iterations nor convergence: check the gradient here.
            let w = f.params();
            let b = f.intercept();
            let sign = if f.labels().pos.class { 1.0 } else { -1.0 };
            let g = relative_gradient(&x, &y, ALPHA, &(w * sign), b * sign);
            serde_json::json!({
                "library": "linfa-logistic 0.8.1",
                "iterations": null,
                "converged": g <= tolerance,
                "gradient_norm": g,
            })
        }
    };
    let obj = out.as_object_mut().expect("object");
    for (k, v) in extra.as_object().expect("object") {
        obj.insert(k.clone(), v.clone());
    }
    Ok(out)
}

enum Fitted {
    Fast(attune::model::optim::FastLogisticFit),
    Linfa(linfa_logistic::FittedLogisticRegression<f64, bool>),
}

impl Fitted {
    /// P(y = true) per row.
    fn predict(&self, x: &Array2<f64>) -> Array1<f64> {
        match self {
            Fitted::Fast(f) => f.predict(x),
            Fitted::Linfa(f) => f.predict_probabilities(x).mapv(|p| {
                // linfa gives the probability of its positive class.
                if f.labels().pos.class { p } else { 1.0 - p }
            }),
        }
    }
}

/// NumPy's `.npy` format, version 1.0: magic, header length, a Python dict literal padded
/// with spaces to a multiple of 64 bytes, then the raw little-endian data.
fn npy_header(descr: &str, shape: &str) -> Vec<u8> {
    let mut dict = format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape}, }}");
    while (10 + dict.len() + 1) % 64 != 0 {
        dict.push(' ');
    }
    dict.push('\n');
    let mut out = b"\x93NUMPY\x01\x00".to_vec();
    out.extend_from_slice(&(dict.len() as u16).to_le_bytes());
    out.extend_from_slice(dict.as_bytes());
    out
}

fn write_npy(
    path: &Path,
    header: &[u8],
    body: impl FnOnce(&mut dyn std::io::Write) -> std::io::Result<()>,
) -> anyhow::Result<()> {
    let file =
        std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?;
    let mut w = std::io::BufWriter::new(file);
    w.write_all(header)
        .and_then(|_| body(&mut w))
        .and_then(|_| w.flush())
        .with_context(|| format!("writing {}", path.display()))
}

fn write_npy_f64(path: &Path, x: &Array2<f64>) -> anyhow::Result<()> {
    let (n, d) = x.dim();
    let header = npy_header("<f8", &format!("({n}, {d})"));
    let x = x.as_standard_layout();
    let values = x.as_slice().expect("standard layout");
    write_npy(path, &header, |w| {
        for v in values {
            w.write_all(&v.to_le_bytes())?;
        }
        Ok(())
    })
}

fn write_npy_bool(path: &Path, y: &Array1<bool>) -> anyhow::Result<()> {
    let header = npy_header("|b1", &format!("({},)", y.len()));
    write_npy(path, &header, |w| {
        for &b in y {
            w.write_all(&[b as u8])?;
        }
        Ok(())
    })
}

fn round(v: f64, digits: i32) -> f64 {
    let s = 10f64.powi(digits);
    (v * s).round() / s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bench_fit_reports_both_solvers() {
        let dir = tempfile::tempdir().unwrap();
        let fast = bench_fit(3000, 5, 1, "fast", Some(dir.path()), 1e-4).unwrap();
        let linfa = bench_fit(3000, 5, 1, "linfa", None, 1e-4).unwrap();
        let x = std::fs::read(dir.path().join("x.npy")).unwrap();
        let y = std::fs::read(dir.path().join("y.npy")).unwrap();
        assert!(x.starts_with(b"\x93NUMPY\x01\x00") && y.starts_with(b"\x93NUMPY"));
        let header = |f: &[u8]| 10 + u16::from_le_bytes([f[8], f[9]]) as usize;
        assert_eq!((header(&x) % 64, header(&y) % 64), (0, 0));
        assert_eq!(
            (x.len() - header(&x), y.len() - header(&y)),
            (3000 * 5 * 8, 3000)
        );
        for out in [&fast, &linfa] {
            assert_eq!(out["rows"], 3000);
            assert_eq!(out["converged"], true, "{out}");
            assert!(out["fit_seconds"].as_f64().unwrap() >= 0.0);
        }
        let auc = |o: &serde_json::Value| o["auc"].as_f64().unwrap();
        assert!(auc(&fast) > 0.6);
        assert!((auc(&fast) - auc(&linfa)).abs() <= 2e-4, "{fast} {linfa}");
        assert!(bench_fit(3000, 5, 1, "sgd", None, 1e-4).is_err());
    }
}
