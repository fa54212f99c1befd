//! A reproducible train/holdout split that keeps the churn rate of both parts close to
//! the whole.

use rand::SeedableRng;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;

use super::ModelError;

/// Splits row indices into `(train, test)`, stratified by label: the indices of each
/// class (stayers first, then churners) are shuffled with one `StdRng::seed_from_u64(seed)`
/// and `round(holdout * class size)` of them go to the test part. Both parts are sorted.
/// The same labels, holdout and seed always give the same split (with rand 0.8).
/// `holdout` must lie strictly between 0 and 1.
pub fn stratified_split(
    labels: &[bool],
    holdout: f64,
    seed: u64,
) -> Result<(Vec<usize>, Vec<usize>), ModelError> {
    if !(holdout.is_finite() && holdout > 0.0 && holdout < 1.0) {
        return Err(ModelError::InvalidOption(format!(
            "holdout {holdout} must be a fraction strictly between 0 and 1 (e.g. 0.2)"
        )));
    }
    let mut rng = StdRng::seed_from_u64(seed);
    let mut train = Vec::new();
    let mut test = Vec::new();
    for class in [false, true] {
        let mut idx: Vec<usize> = labels
            .iter()
            .enumerate()
            .filter(|(_, y)| **y == class)
            .map(|(i, _)| i)
            .collect();
        idx.shuffle(&mut rng);
        let n_test = ((holdout * idx.len() as f64).round() as usize).min(idx.len());
        test.extend_from_slice(&idx[..n_test]);
        train.extend_from_slice(&idx[n_test..]);
    }
    train.sort_unstable();
    test.sort_unstable();
    Ok((train, test))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_is_stratified_deterministic_and_sorted() {
        let labels: Vec<bool> = (0..100).map(|i| i % 4 == 0).collect(); // 25 churners
        let (train, test) = stratified_split(&labels, 0.2, 7).unwrap();
        assert_eq!(test.len(), 20);
        assert_eq!(test.iter().filter(|&&i| labels[i]).count(), 5);
        assert_eq!(train.len(), 80);
        assert!(test.windows(2).all(|w| w[0] < w[1]));
        assert!(train.windows(2).all(|w| w[0] < w[1]));
        let mut all: Vec<usize> = train.iter().chain(&test).copied().collect();
        all.sort_unstable();
        assert_eq!(all, (0..100).collect::<Vec<_>>());
        assert_eq!(
            stratified_split(&labels, 0.2, 7).unwrap(),
            (train.clone(), test.clone())
        );
        assert_ne!(stratified_split(&labels, 0.2, 8).unwrap().1, test);
    }

    #[test]
    fn split_rounds_per_class() {
        // 3 churners * 0.5 = 1.5 -> 2; 5 stayers * 0.5 = 2.5 -> 3 (round half away from 0).
        let labels = [true, true, true, false, false, false, false, false];
        let (_, test) = stratified_split(&labels, 0.5, 1).unwrap();
        assert_eq!(test.iter().filter(|&&i| labels[i]).count(), 2);
        assert_eq!(test.len(), 5);
    }

    #[test]
    fn split_rejects_bad_fractions() {
        for h in [0.0, 1.0, -0.1, 1.5, f64::NAN] {
            assert!(
                matches!(
                    stratified_split(&[true, false], h, 0),
                    Err(ModelError::InvalidOption(_))
                ),
                "{h}"
            );
        }
    }
}
