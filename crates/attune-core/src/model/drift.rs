//! Drift: how far the customers being scored have moved from the ones a model was trained on.
//!
//! At training time [`profile`] records, for every source feature, how the training rows
//! spread over a few buckets: deciles of the values for a number, the most common levels
//! for a category, and always a bucket for missing values. At scoring time [`observe`]
//! puts the new rows into the *same* buckets and [`psi`] compares the two spreads with the
//! population stability index. [`drift`] does this for every profiled feature.
//!
//! Rules of thumb for PSI: below 0.1 no real change, 0.1–0.25 a moderate shift worth a
//! look, above 0.25 a shift large enough that the model's scores deserve suspicion.
//!
//! Pure: no I/O, no clock. Values are read as the encoder reads them: a key absent from a
//! row is missing; a number in a categorical feature is the level spelled by its decimal
//! form; a category (or a non-finite number) in a numeric feature is missing.

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};

use crate::features::{FeatureRow, FeatureValue};

use super::encoder::{Seen, seen};
use super::frame::{Frame, MISSING, Values};

/// Categorical levels kept by name; the rest share the `other` bucket.
pub const MAX_LEVELS: usize = 20;
/// Shares are floored at this before [`psi`] takes logarithms, so an empty bucket on one
/// side gives a large but finite contribution.
pub const SHARE_FLOOR: f64 = 1e-4;
/// Equal-width bins of the score distribution ([`score_profile`]).
pub const SCORE_BINS: usize = 10;

/// How one source feature was spread over its buckets in the training rows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FeatureProfile {
    /// The `FeatureRow` key.
    pub source: String,
    pub kind: ProfileKind,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum ProfileKind {
    /// Bin `i` holds values in `(edges[i-1], edges[i]]`; the first bin everything up to
    /// `edges[0]`, the last everything above the last edge.
    Numeric {
        /// Interior bin edges: the deciles of the known training values, strictly
        /// increasing (repeated deciles are kept once).
        edges: Vec<f64>,
        /// Share of all training rows in each bin; `edges.len() + 1` entries.
        shares: Vec<f64>,
        /// Share of training rows without a number.
        missing_share: f64,
    },
    Categorical {
        /// The most common levels (at most [`MAX_LEVELS`]), most common first.
        levels: Vec<String>,
        /// Share of all training rows at each level, in `levels` order.
        shares: Vec<f64>,
        /// Share of training rows at a level beyond the kept ones; new rows at a level
        /// never seen in training land here too.
        other_share: f64,
        /// Share of training rows without a value.
        missing_share: f64,
    },
}

impl FeatureProfile {
    /// The training shares of every bucket, in the order [`observe`] reports them: the
    /// bins (numbers) or levels then `other` (categories), then `missing`.
    pub fn expected(&self) -> Vec<f64> {
        match &self.kind {
            ProfileKind::Numeric {
                shares,
                missing_share,
                ..
            } => shares.iter().copied().chain([*missing_share]).collect(),
            ProfileKind::Categorical {
                shares,
                other_share,
                missing_share,
                ..
            } => shares
                .iter()
                .copied()
                .chain([*other_share, *missing_share])
                .collect(),
        }
    }

    /// A label for each bucket, in [`FeatureProfile::expected`] order: `<= 3`, `(3, 7]`,
    /// `> 12`, a level, `other`, `missing`.
    pub fn buckets(&self) -> Vec<String> {
        match &self.kind {
            ProfileKind::Numeric { edges, .. } => {
                let mut out = Vec::with_capacity(edges.len() + 2);
                match edges.as_slice() {
                    [] => out.push("any".to_owned()),
                    [first, ..] => {
                        out.push(format!("<= {first}"));
                        for w in edges.windows(2) {
                            out.push(format!("({}, {}]", w[0], w[1]));
                        }
                        out.push(format!("> {}", edges[edges.len() - 1]));
                    }
                }
                out.push("missing".to_owned());
                out
            }
            ProfileKind::Categorical { levels, .. } => levels
                .iter()
                .cloned()
                .chain(["other".to_owned(), "missing".to_owned()])
                .collect(),
        }
    }
}

/// A feature's drift between the training rows and a set of new rows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DriftRow {
    pub feature: String,
    pub psi: f64,
    /// Shares of the new rows per bucket ([`observe`]).
    pub actual: Vec<f64>,
    /// Shares of the training rows per bucket ([`FeatureProfile::expected`]).
    pub expected: Vec<f64>,
}

fn number(v: &FeatureValue) -> Option<f64> {
    match v {
        FeatureValue::Num(x) if x.is_finite() => Some(*x),
        _ => None,
    }
}

fn level(v: &FeatureValue) -> Option<String> {
    match v {
        FeatureValue::Cat(c) => Some(c.clone()),
        FeatureValue::Num(x) => Some(format!("{x}")),
        FeatureValue::Missing => None,
    }
}

/// The deciles of `values` by nearest rank: the `k`-th is the smallest value with at least
/// `k / 10` of the values at or below it, so every edge is a value seen in training and
/// the first bin (closed on the right) holds at least a tenth of the known values.
fn deciles(values: &mut [f64]) -> Vec<f64> {
    if values.is_empty() {
        return Vec::new();
    }
    let n = values.len();
    // Each rank selected in the part above the one before (no full sort): the values are
    // those a sort would put there, as `total_cmp` is a total order.
    let mut edges: Vec<f64> = Vec::with_capacity(9);
    let mut rest: &mut [f64] = values;
    let (mut offset, mut last) = (0, None);
    for k in 1..10 {
        let rank = (k * n).div_ceil(10) - 1;
        if last == Some(rank) {
            // Fewer than ten values: ranks repeat.
            edges.push(*edges.last().expect("an edge before"));
            continue;
        }
        let (_, edge, above) = rest.select_nth_unstable_by(rank - offset, f64::total_cmp);
        edges.push(*edge);
        (offset, last, rest) = (rank + 1, Some(rank), above);
    }
    edges.dedup();
    edges
}

fn bin(edges: &[f64], x: f64) -> usize {
    edges.partition_point(|&e| e < x)
}

fn shares_of(counts: &[usize], n: usize) -> Vec<f64> {
    if n == 0 {
        return vec![0.0; counts.len()];
    }
    counts.iter().map(|&c| c as f64 / n as f64).collect()
}

/// Profiles every source feature found in the training rows, sorted by name. A feature is
/// categorical if any training row holds a category for it (as in the encoder), else
/// numeric. A feature never known gets one empty bin and a missing share of 1.
pub fn profile<R: std::borrow::Borrow<FeatureRow>>(rows: &[R]) -> Vec<FeatureProfile> {
    let frame = Frame::from_rows(rows);
    let all: Vec<usize> = (0..frame.rows()).collect();
    profile_frame(&frame, &all)
}

/// [`profile`] of the rows `rows` of `frame`, the columns shared between the cores.
pub fn profile_frame(frame: &Frame, rows: &[usize]) -> Vec<FeatureProfile> {
    let columns = frame.columns();
    let threads = super::frame::threads().min(columns.len().max(1));
    // Columns dealt round-robin, so each thread gets a share of the wide ones too.
    let mut parts: Vec<Vec<(usize, FeatureProfile)>> =
        super::frame::in_chunks(threads, threads, |ts| {
            ts.flat_map(|t| {
                (t..columns.len())
                    .step_by(threads)
                    .map(|j| (j, column_profile(&columns[j], rows)))
                    .collect::<Vec<_>>()
            })
            .collect()
        });
    let mut out: Vec<(usize, FeatureProfile)> = parts.drain(..).flatten().collect();
    out.sort_by_key(|(j, _)| *j);
    out.into_iter().map(|(_, p)| p).collect()
}

fn column_profile(column: &super::frame::Column, rows: &[usize]) -> FeatureProfile {
    let n = rows.len();
    let kind = match seen(column, rows) {
        Seen::Numbers(mut values) => numeric_profile(&mut values, n),
        Seen::Levels(_) => {
            let Values::Cat { codes, levels } = &column.values else {
                unreachable!("levels come from a categorical column")
            };
            let mut by_code = vec![0usize; levels.len()];
            let mut missing = 0;
            for &i in rows {
                match codes[i] {
                    MISSING => missing += 1,
                    c => by_code[c as usize] += 1,
                }
            }
            // A number and a text spelled alike are one level.
            let mut counts: BTreeMap<String, usize> = BTreeMap::new();
            for (l, c) in levels.iter().zip(by_code) {
                if c > 0 {
                    *counts.entry(l.spelled()).or_default() += c;
                }
            }
            categorical_profile(counts, missing, n)
        }
    };
    FeatureProfile {
        source: column.name.clone(),
        kind,
    }
}

/// The decile bins of a numeric feature's finite `values` among `n` rows (the rest missing).
fn numeric_profile(values: &mut [f64], n: usize) -> ProfileKind {
    let missing = n - values.len();
    let edges = deciles(values);
    let mut counts = vec![0usize; edges.len() + 1];
    for &x in values.iter() {
        counts[bin(&edges, x)] += 1;
    }
    ProfileKind::Numeric {
        shares: shares_of(&counts, n),
        edges,
        missing_share: shares_of(&[missing], n)[0],
    }
}

/// The levels of a categorical feature, most common first, from the count of each level
/// among `n` rows (`missing` of them without one).
fn categorical_profile(counts: BTreeMap<String, usize>, missing: usize, n: usize) -> ProfileKind {
    let mut by_count: Vec<(String, usize)> = counts.into_iter().collect();
    // Most common first; ties by name (the map gave name order, the sort is stable).
    by_count.sort_by_key(|(_, count)| std::cmp::Reverse(*count));
    let other: usize = by_count.iter().skip(MAX_LEVELS).map(|(_, c)| c).sum();
    by_count.truncate(MAX_LEVELS);
    let counts: Vec<usize> = by_count.iter().map(|(_, c)| *c).collect();
    ProfileKind::Categorical {
        levels: by_count.into_iter().map(|(l, _)| l).collect(),
        shares: shares_of(&counts, n),
        other_share: shares_of(&[other], n)[0],
        missing_share: shares_of(&[missing], n)[0],
    }
}

/// The shares of `rows` in the profile's buckets, in [`FeatureProfile::expected`] order
/// (so the same length). All zeros when there are no rows.
pub fn observe(profile: &FeatureProfile, rows: &[FeatureRow]) -> Vec<f64> {
    let counts = count_all(std::slice::from_ref(profile), rows);
    shares_of(&counts[0], rows.len())
}

/// How many of `rows` fall in each bucket of each profile ([`observe`] before dividing by
/// the number of rows), in one pass: a row's values are sorted by name, so they are merged
/// with the profiles sorted by source instead of looked up one by one (scoring calls this
/// for every customer).
pub fn count_all(profiles: &[FeatureProfile], rows: &[FeatureRow]) -> Vec<Vec<usize>> {
    let mut order: Vec<usize> = (0..profiles.len()).collect();
    order.sort_by(|&a, &b| profiles[a].source.cmp(&profiles[b].source));
    let mut counter = Counter::new(profiles);
    for r in rows {
        let mut entries = r.iter().peekable();
        for &i in &order {
            let source = profiles[i].source.as_str();
            let mut v = &FeatureValue::Missing;
            while let Some((k, value)) = entries.peek() {
                match k.as_str().cmp(source) {
                    std::cmp::Ordering::Less => {
                        entries.next();
                    }
                    std::cmp::Ordering::Equal => {
                        v = value;
                        break;
                    }
                    std::cmp::Ordering::Greater => break,
                }
            }
            counter.count(i, v);
        }
    }
    counter.counts
}

/// [`count_all`] a row at a time, for rows given by position (scoring's, through a
/// [`crate::features::Locator`] over the profiles' sources).
pub struct Counter<'p> {
    profiles: &'p [FeatureProfile],
    levels: Vec<HashMap<&'p str, usize>>,
    /// Per profile, the rows in each bucket so far.
    pub counts: Vec<Vec<usize>>,
}

impl<'p> Counter<'p> {
    pub fn new(profiles: &'p [FeatureProfile]) -> Self {
        let levels = profiles
            .iter()
            .map(|p| match &p.kind {
                ProfileKind::Categorical { levels, .. } => levels
                    .iter()
                    .enumerate()
                    .map(|(i, l)| (l.as_str(), i))
                    .collect(),
                ProfileKind::Numeric { .. } => HashMap::new(),
            })
            .collect();
        let counts = profiles
            .iter()
            .map(|p| vec![0usize; p.expected().len()])
            .collect();
        Self {
            profiles,
            levels,
            counts,
        }
    }

    /// Counts one row whose value for the `i`th profile's source is `value(i)` (none:
    /// missing).
    pub fn add<'r>(&mut self, value: impl Fn(usize) -> Option<&'r FeatureValue>) {
        for i in 0..self.profiles.len() {
            self.count(i, value(i).unwrap_or(&FeatureValue::Missing));
        }
    }

    fn count(&mut self, i: usize, v: &FeatureValue) {
        self.counts[i][bucket(&self.profiles[i].kind, &self.levels[i], v)] += 1;
    }
}

/// The bucket of a value, in [`FeatureProfile::expected`] order.
fn bucket(kind: &ProfileKind, levels: &HashMap<&str, usize>, v: &FeatureValue) -> usize {
    match kind {
        // Bins, then missing.
        ProfileKind::Numeric { edges, .. } => match number(v) {
            Some(x) => bin(edges, x),
            None => edges.len() + 1,
        },
        // Levels, then other, then missing.
        ProfileKind::Categorical { levels: all, .. } => {
            let known = |l: &str| levels.get(l).copied().unwrap_or(all.len());
            match v {
                FeatureValue::Cat(c) => known(c),
                FeatureValue::Num(_) => known(&level(v).unwrap_or_default()),
                FeatureValue::Missing => all.len() + 1,
            }
        }
    }
}

/// Population stability index: the sum over buckets of `(a - e) * ln(a / e)`, with each
/// share floored at [`SHARE_FLOOR`]. Never negative; 0 for identical spreads. A bucket
/// present on one side only counts as a share of 0 on the other.
pub fn psi(expected: &[f64], actual: &[f64]) -> f64 {
    let at = |s: &[f64], i: usize| s.get(i).copied().unwrap_or(0.0).max(SHARE_FLOOR);
    (0..expected.len().max(actual.len()))
        .map(|i| {
            let (e, a) = (at(expected, i), at(actual, i));
            (a - e) * (a / e).ln()
        })
        .sum()
}

/// The drift of every profiled feature in `rows`, largest PSI first (ties by name).
/// Features of `rows` that were not profiled are ignored; no rows give no drift.
pub fn drift(profiles: &[FeatureProfile], rows: &[FeatureRow]) -> Vec<DriftRow> {
    if rows.is_empty() {
        return Vec::new();
    }
    let mut out: Vec<DriftRow> = profiles
        .iter()
        .map(|p| {
            let expected = p.expected();
            let actual = observe(p, rows);
            DriftRow {
                feature: p.source.clone(),
                psi: psi(&expected, &actual),
                actual,
                expected,
            }
        })
        .collect();
    out.sort_by(|a, b| {
        b.psi
            .total_cmp(&a.psi)
            .then_with(|| a.feature.cmp(&b.feature))
    });
    out
}

/// Shares of the scores in [`SCORE_BINS`] equal-width bins over `[0, 1]` (a score of
/// exactly 1 falls in the last bin); compare two with [`psi`]. Scores outside `[0, 1]` are
/// clamped, NaNs ignored; all zeros when there are no scores.
pub fn score_profile(probs: &[f64]) -> Vec<f64> {
    let mut counts = vec![0usize; SCORE_BINS];
    let mut n = 0;
    for p in probs.iter().filter(|p| !p.is_nan()) {
        let i = (p.clamp(0.0, 1.0) * SCORE_BINS as f64).floor() as usize;
        counts[i.min(SCORE_BINS - 1)] += 1;
        n += 1;
    }
    shares_of(&counts, n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    fn value<'a>(row: &'a FeatureRow, source: &str) -> &'a FeatureValue {
        row.get(source).unwrap_or(&FeatureValue::Missing)
    }

    /// The profile as it was computed from rows before training sets became columns
    /// ([`Frame`]): one map lookup per row and feature. [`profile`] must agree with it.
    fn profile_reference(rows: &[&FeatureRow]) -> Vec<FeatureProfile> {
        let names: BTreeSet<&str> = rows
            .iter()
            .flat_map(|r| r.keys())
            .map(String::as_str)
            .collect();
        let n = rows.len();
        names
            .into_iter()
            .map(|source| {
                let categorical = rows
                    .iter()
                    .any(|r| matches!(r.get(source), Some(FeatureValue::Cat(_))));
                let kind = if categorical {
                    // A level per value; a non-finite number is missing (training refuses
                    // them before profiling).
                    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
                    let mut missing = 0;
                    for r in rows {
                        match value(r, source) {
                            FeatureValue::Num(x) if !x.is_finite() => missing += 1,
                            v => match level(v) {
                                Some(l) => *counts.entry(l).or_default() += 1,
                                None => missing += 1,
                            },
                        }
                    }
                    categorical_profile(counts, missing, n)
                } else {
                    let mut values: Vec<f64> = rows
                        .iter()
                        .filter_map(|r| number(value(r, source)))
                        .collect();
                    numeric_profile(&mut values, n)
                };
                FeatureProfile {
                    source: source.to_owned(),
                    kind,
                }
            })
            .collect()
    }

    fn walk_value() -> impl proptest::strategy::Strategy<Value = FeatureValue> {
        use proptest::prelude::*;
        prop_oneof![
            Just(FeatureValue::Missing),
            (-5i32..5).prop_map(|x| FeatureValue::Num(x as f64 / 2.0)),
            Just(FeatureValue::Num(f64::NAN)),
            (0u8..4).prop_map(|c| FeatureValue::Cat(format!("c{c}"))),
        ]
    }

    proptest::proptest! {
        /// Deciles by selection are the deciles of the sorted values.
        #[test]
        fn deciles_by_selection_are_those_of_a_sort(
            mut xs in proptest::collection::vec((-20i32..20).prop_map(|x| x as f64 / 4.0), 0..60)
        ) {
            let mut sorted = xs.clone();
            sorted.sort_by(f64::total_cmp);
            let n = sorted.len();
            let mut want: Vec<f64> = if n == 0 {
                vec![]
            } else {
                (1..10).map(|k| sorted[(k * n).div_ceil(10) - 1]).collect()
            };
            want.dedup();
            proptest::prop_assert_eq!(deciles(&mut xs), want);
        }

        /// Rows with any subset of twenty names (more than one chunk), numbers, categories,
        /// missing and non-finite values: the walk in key order gives the reference profile.
        #[test]
        fn the_profile_walk_agrees_with_lookups(
            rows in proptest::collection::vec(
                proptest::collection::btree_map(
                    (0u8..20).prop_map(|i| format!("f{i:02}")),
                    walk_value(),
                    0..20,
                ),
                0..40,
            ),
        ) {
            use proptest::prelude::*;
            let refs: Vec<&FeatureRow> = rows.iter().collect();
            let got = profile(&rows);
            let want = profile_reference(&refs);
            prop_assert_eq!(format!("{got:?}"), format!("{want:?}"));
        }
    }
    use crate::features::FeatureValue::{Cat, Missing, Num};
    use proptest::prelude::*;

    fn row(items: &[(&str, FeatureValue)]) -> FeatureRow {
        items
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect()
    }

    fn numbers(name: &str, xs: impl IntoIterator<Item = f64>) -> Vec<FeatureRow> {
        xs.into_iter().map(|x| row(&[(name, Num(x))])).collect()
    }

    fn sum(xs: &[f64]) -> f64 {
        xs.iter().sum()
    }

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-9
    }

    #[test]
    fn identical_data_has_no_drift() {
        let rows: Vec<FeatureRow> = (0..200)
            .map(|i| {
                row(&[
                    ("charge", Num(20.0 + (i % 37) as f64)),
                    ("plan", Cat(["basic", "plus", "max"][i % 3].into())),
                    (
                        "complaints",
                        if i % 5 == 0 {
                            Missing
                        } else {
                            Num((i % 4) as f64)
                        },
                    ),
                ])
            })
            .collect();
        let profiles = profile(&rows);
        assert_eq!(profiles.len(), 3);
        for d in drift(&profiles, &rows) {
            assert!(d.psi.abs() < 1e-12, "{d:?}");
            assert_eq!(d.actual, d.expected);
            assert!(close(sum(&d.expected), 1.0));
        }
    }

    #[test]
    fn numeric_profile_uses_deduplicated_deciles() {
        let p = &profile(&numbers("x", (1..=11).map(f64::from)))[0];
        let ProfileKind::Numeric {
            edges,
            shares,
            missing_share,
        } = &p.kind
        else {
            panic!("{p:?}")
        };
        assert_eq!(edges, &[2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0]);
        assert_eq!(shares.len(), 10);
        assert!(close(shares[0], 2.0 / 11.0)); // 1 and 2: bins are closed on the right
        assert_eq!(*missing_share, 0.0);

        // A count that is mostly zero keeps one edge per distinct decile.
        let xs = (0..100).map(|i| {
            if i < 80 {
                0.0
            } else if i < 95 {
                1.0
            } else {
                4.0
            }
        });
        let p = &profile(&numbers("c", xs))[0];
        let ProfileKind::Numeric { edges, shares, .. } = &p.kind else {
            panic!()
        };
        assert_eq!(edges, &[0.0, 1.0]);
        assert!(close(shares[0], 0.8) && close(shares[1], 0.15) && close(shares[2], 0.05));
        assert_eq!(p.buckets(), ["<= 0", "(0, 1]", "> 1", "missing"]);
    }

    #[test]
    fn shifted_numeric_feature_drifts() {
        let train = numbers("charge", (0..500).map(|i| 20.0 + (i % 50) as f64));
        let now = numbers("charge", (0..500).map(|i| 45.0 + (i % 50) as f64));
        let d = drift(&profile(&train), &now);
        assert_eq!(d.len(), 1);
        assert!(d[0].psi > 0.25, "{:?}", d[0]);
        // A small wobble stays small.
        let wobble = numbers("charge", (0..500).map(|i| 20.5 + (i % 50) as f64));
        assert!(drift(&profile(&train), &wobble)[0].psi < 0.1);
    }

    #[test]
    fn unseen_category_goes_to_other() {
        let train: Vec<FeatureRow> = (0..10)
            .map(|i| row(&[("plan", Cat(if i < 6 { "basic" } else { "plus" }.into()))]))
            .collect();
        let p = &profile(&train)[0];
        assert_eq!(
            p.kind,
            ProfileKind::Categorical {
                levels: vec!["basic".into(), "plus".into()],
                shares: vec![0.6, 0.4],
                other_share: 0.0,
                missing_share: 0.0,
            }
        );
        let now = vec![
            row(&[("plan", Cat("basic".into()))]),
            row(&[("plan", Cat("platinum".into()))]),
            row(&[("plan", Num(7.0))]),
            row(&[]),
        ];
        assert_eq!(observe(p, &now), vec![0.25, 0.0, 0.5, 0.25]);
        assert_eq!(p.buckets(), ["basic", "plus", "other", "missing"]);
    }

    #[test]
    fn levels_beyond_the_top_twenty_are_other() {
        // Level k appears k + 1 times: the 20 most common are 24 down to 5.
        let train: Vec<FeatureRow> = (0..25)
            .flat_map(|k| (0..=k).map(move |_| row(&[("city", Cat(format!("c{k:02}")))])))
            .collect();
        let p = &profile(&train)[0];
        let ProfileKind::Categorical {
            levels,
            other_share,
            ..
        } = &p.kind
        else {
            panic!()
        };
        assert_eq!(levels.len(), MAX_LEVELS);
        assert_eq!(levels[0], "c24");
        assert_eq!(levels[19], "c05");
        let n = train.len() as f64;
        assert!(close(*other_share, (1 + 2 + 3 + 4 + 5) as f64 / n));
        assert!(close(sum(&p.expected()), 1.0));
    }

    #[test]
    fn missing_values_are_counted() {
        // Absent keys, Missing and a category in a numeric feature all count as missing.
        let train = vec![
            row(&[("x", Num(1.0)), ("y", Num(1.0))]),
            row(&[("x", Num(2.0)), ("y", Missing)]),
            row(&[("x", Num(3.0))]),
            row(&[("x", Num(4.0)), ("y", Num(2.0))]),
        ];
        let profiles = profile(&train);
        let y = profiles.iter().find(|p| p.source == "y").unwrap();
        let ProfileKind::Numeric { missing_share, .. } = &y.kind else {
            panic!()
        };
        assert_eq!(*missing_share, 0.5);
        let now = vec![
            row(&[("x", Num(1.0))]),
            row(&[("x", Cat("n/a".into())), ("y", Num(f64::NAN))]),
        ];
        let x = profiles.iter().find(|p| p.source == "x").unwrap();
        let actual = observe(x, &now);
        assert_eq!(actual.len(), x.expected().len());
        assert_eq!(actual.last(), Some(&0.5));
        assert_eq!(observe(y, &now).last(), Some(&1.0));

        // A feature never known is all missing, and stays comparable.
        let never = profile(&[row(&[("z", Missing)])]);
        assert_eq!(
            never[0].kind,
            ProfileKind::Numeric {
                edges: vec![],
                shares: vec![0.0],
                missing_share: 1.0
            }
        );
    }

    #[test]
    fn psi_matches_a_hand_computation() {
        // (0.25 - 0.5) ln(0.25 / 0.5) + (0.75 - 0.5) ln(0.75 / 0.5)
        let want = 0.25 * 2f64.ln() + 0.25 * 1.5f64.ln();
        assert!(close(psi(&[0.5, 0.5], &[0.25, 0.75]), want));
        assert!(close(want, 0.274_653_072_167_027_1));
        // An empty expected bucket is floored at 1e-4.
        let want = (0.9 - 1.0) * 0.9f64.ln() + (0.1 - 1e-4) * (0.1f64 / 1e-4).ln();
        assert!(close(psi(&[1.0, 0.0], &[0.9, 0.1]), want));
        assert_eq!(psi(&[0.2, 0.8], &[0.2, 0.8]), 0.0);
    }

    #[test]
    fn drift_is_sorted_by_psi() {
        let train: Vec<FeatureRow> = (0..100)
            .map(|i| row(&[("a", Num(i as f64)), ("b", Num(i as f64))]))
            .collect();
        let now: Vec<FeatureRow> = (0..100)
            .map(|i| row(&[("a", Num(i as f64)), ("b", Num(i as f64 + 60.0))]))
            .collect();
        let d = drift(&profile(&train), &now);
        let names: Vec<&str> = d.iter().map(|d| d.feature.as_str()).collect();
        assert_eq!(names, ["b", "a"]);
        assert!(d[0].psi > d[1].psi);
        assert!(drift(&profile(&train), &[]).is_empty());
    }

    #[test]
    fn score_profile_has_ten_equal_bins() {
        let s = score_profile(&[0.0, 0.05, 0.1, 0.55, 0.99, 1.0, f64::NAN, 1.5, -0.2]);
        assert_eq!(s.len(), SCORE_BINS);
        let n = 8.0;
        assert_eq!(s[0], 3.0 / n); // 0.0, 0.05, -0.2 clamped
        assert_eq!(s[1], 1.0 / n);
        assert_eq!(s[5], 1.0 / n);
        assert_eq!(s[9], 3.0 / n); // 0.99, 1.0, 1.5 clamped
        assert_eq!(score_profile(&[]), vec![0.0; SCORE_BINS]);
    }

    #[test]
    fn profiles_round_trip_as_json() {
        let rows = vec![
            row(&[("x", Num(1.0)), ("plan", Cat("basic".into()))]),
            row(&[("x", Num(2.0)), ("plan", Missing)]),
        ];
        let profiles = profile(&rows);
        let json = serde_json::to_value(&profiles).unwrap();
        assert_eq!(json[1]["kind"]["type"], "Numeric");
        let back: Vec<FeatureProfile> = serde_json::from_value(json).unwrap();
        assert_eq!(back, profiles);
    }

    fn any_value() -> impl Strategy<Value = FeatureValue> {
        prop_oneof![
            (-1e6f64..1e6).prop_map(Num),
            (0u8..4).prop_map(|x| Num(x as f64)),
            "[a-c]{1,2}".prop_map(Cat),
            Just(Missing),
        ]
    }

    fn any_rows() -> impl Strategy<Value = Vec<FeatureRow>> {
        prop::collection::vec(
            prop::collection::btree_map("[a-d]", any_value(), 0..4),
            1..60,
        )
    }

    fn any_shares() -> impl Strategy<Value = Vec<f64>> {
        prop::collection::vec(0f64..1.0, 1..12).prop_map(|xs| {
            let total: f64 = xs.iter().sum();
            if total > 0.0 {
                xs.iter().map(|x| x / total).collect()
            } else {
                xs
            }
        })
    }

    proptest! {
        #[test]
        fn psi_is_never_negative(e in any_shares(), a in any_shares()) {
            let v = psi(&e, &a);
            prop_assert!(v.is_finite() && v >= 0.0, "{v}");
            prop_assert!(psi(&e, &e).abs() < 1e-12);
        }

        #[test]
        fn shares_sum_to_one(train in any_rows(), now in any_rows()) {
            let profiles = profile(&train);
            for p in &profiles {
                let expected = p.expected();
                prop_assert!((sum(&expected) - 1.0).abs() < 1e-9, "{p:?}");
                let actual = observe(p, &now);
                prop_assert_eq!(actual.len(), expected.len());
                prop_assert!((sum(&actual) - 1.0).abs() < 1e-9, "{actual:?}");
                if let ProfileKind::Numeric { edges, .. } = &p.kind {
                    prop_assert!(edges.windows(2).all(|w| w[0] < w[1]), "{edges:?}");
                }
            }
            for d in drift(&profiles, &now) {
                prop_assert!(d.psi >= 0.0);
            }
        }

        #[test]
        fn merged_counts_match_a_lookup_per_row(train in any_rows(), now in any_rows(), cut in 0usize..5) {
            // Profiles in any order, one of them twice: the merge must not depend on order.
            let mut profiles = profile(&train);
            let turn = cut.min(profiles.len());
            profiles.rotate_left(turn);
            if let Some(p) = profiles.first().cloned() {
                profiles.push(p);
            }
            let merged = count_all(&profiles, &now);
            for (p, counts) in profiles.iter().zip(&merged) {
                let levels: HashMap<&str, usize> = match &p.kind {
                    ProfileKind::Categorical { levels, .. } => {
                        levels.iter().enumerate().map(|(i, l)| (l.as_str(), i)).collect()
                    }
                    ProfileKind::Numeric { .. } => HashMap::new(),
                };
                let mut looked_up = vec![0usize; p.expected().len()];
                for r in &now {
                    looked_up[bucket(&p.kind, &levels, value(r, &p.source))] += 1;
                }
                prop_assert_eq!(counts, &looked_up, "{:?}", p);
            }
        }

        #[test]
        fn score_shares_sum_to_one(probs in prop::collection::vec(0f64..=1.0, 1..100)) {
            prop_assert!((sum(&score_profile(&probs)) - 1.0).abs() < 1e-9);
        }
    }
}
