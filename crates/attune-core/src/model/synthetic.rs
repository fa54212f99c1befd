//! Seeded synthetic logistic data for benchmarks and solver tests.
//!
//! The distribution is that of `../shared/bench/sklearn_baseline.py synthetic`: every
//! feature standard normal, true weights `w` standard normal, and
//! `y = Bernoulli(sigmoid(0.3 x.w))`, with no intercept. The random streams differ from
//! NumPy's (so the rows are not the same rows), but fits on the same size of data are
//! comparable: the AUC of the optimum is a property of the distribution.
//!
//! Rows are generated in fixed blocks, each from its own `StdRng` seeded from `seed` and
//! the block's index, so the output depends only on `(rows, features, seed)` and not on
//! how many threads produced it. Pure: no clock, no I/O.

use ndarray::{Array1, Array2};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// Rows per independently seeded block.
const BLOCK_ROWS: usize = 16_384;

/// A block's index and its rows and labels to fill.
type Block<'a> = (usize, &'a mut [f64], &'a mut [bool]);

/// `rows x features` standard-normal rows and labels `y ~ Bernoulli(sigmoid(0.3 x.w))`
/// with `w` standard normal. Deterministic in `(rows, features, seed)`.
pub fn synthetic(rows: usize, features: usize, seed: u64) -> (Array2<f64>, Array1<bool>) {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut w = vec![0.0; features];
    fill_normal(&mut rng, &mut w);

    let mut x = vec![0.0; rows * features];
    let mut y = vec![false; rows];
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .clamp(1, 8);
    let block_len = BLOCK_ROWS * features.max(1);
    // Hand out whole blocks round-robin so every thread gets a similar share.
    let mut work: Vec<Vec<Block<'_>>> = (0..threads).map(|_| Vec::new()).collect();
    for (b, (xs, ys)) in x
        .chunks_mut(block_len)
        .zip(y.chunks_mut(BLOCK_ROWS))
        .enumerate()
    {
        work[b % threads].push((b, xs, ys));
    }
    let w = &w;
    std::thread::scope(|s| {
        for blocks in work {
            s.spawn(move || {
                for (b, xs, ys) in blocks {
                    fill_block(seed, b as u64, w, xs, ys);
                }
            });
        }
    });
    let x = Array2::from_shape_vec((rows, features), x).expect("rows * features values");
    (x, Array1::from(y))
}

fn fill_block(seed: u64, block: u64, w: &[f64], xs: &mut [f64], ys: &mut [bool]) {
    let mut rng = StdRng::seed_from_u64(splitmix(seed ^ splitmix(block.wrapping_add(1))));
    fill_normal(&mut rng, xs);
    let d = w.len();
    for (i, yi) in ys.iter_mut().enumerate() {
        let z: f64 = if d == 0 {
            0.0
        } else {
            xs[i * d..(i + 1) * d]
                .iter()
                .zip(w)
                .map(|(a, b)| a * b)
                .sum()
        };
        let p = 1.0 / (1.0 + (-0.3 * z).exp());
        *yi = p > rng.r#gen::<f64>();
    }
}

/// Fills `out` with standard normal values (Box-Muller, both values of each pair used).
fn fill_normal(rng: &mut StdRng, out: &mut [f64]) {
    let mut pairs = out.chunks_exact_mut(2);
    for pair in &mut pairs {
        let (a, b) = box_muller(rng);
        pair[0] = a;
        pair[1] = b;
    }
    if let [last] = pairs.into_remainder() {
        *last = box_muller(rng).0;
    }
}

fn box_muller(rng: &mut StdRng) -> (f64, f64) {
    // u1 in (0, 1] so that ln(u1) is finite.
    let u1 = 1.0 - rng.r#gen::<f64>();
    let u2: f64 = rng.r#gen();
    let r = (-2.0 * u1.ln()).sqrt();
    let (s, c) = (std::f64::consts::TAU * u2).sin_cos();
    (r * c, r * s)
}

/// SplitMix64's finaliser: decorrelates nearby seeds.
fn splitmix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn synthetic_is_deterministic_and_standard_normal() {
        let (x, y) = synthetic(40_000, 5, 3);
        let (x2, y2) = synthetic(40_000, 5, 3);
        assert_eq!((&x, &y), (&x2, &y2));
        assert_ne!(synthetic(40_000, 5, 4).0, x);
        assert_eq!(x.dim(), (40_000, 5));
        let n = x.len() as f64;
        let mean = x.sum() / n;
        let var = x.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / n;
        assert!(mean.abs() < 0.02, "mean {mean}");
        assert!((var - 1.0).abs() < 0.02, "variance {var}");
        let rate = y.iter().filter(|&&b| b).count() as f64 / y.len() as f64;
        assert!((rate - 0.5).abs() < 0.05, "rate {rate}");
        // Odd sizes and the remainder block.
        let (x, y) = synthetic(BLOCK_ROWS + 3, 3, 1);
        assert_eq!((x.nrows(), y.len()), (BLOCK_ROWS + 3, BLOCK_ROWS + 3));
        assert!(x.iter().all(|v| v.is_finite()));
    }
}
