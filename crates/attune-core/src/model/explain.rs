//! A score's drivers kept as codes and values, put into words when read.
//!
//! A scoring run writes one [`DriverKey`] (the model's columns with their coefficients,
//! encodings and the feature spec's words for each) and, per customer, a few bytes: for
//! each driver the column's index and the row's value ([`encode`]). Reading
//! ([`decode`]) recomputes each contribution with the same arithmetic scoring
//! used and describes the value in the key's words, so the drivers read back are the ones
//! [`ModelArtifact::drivers_with`] would have made, field for field (tested below), while
//! a run of a million customers stores no sentence and no model version per customer.
//!
//! The bytes, format 1: a leading `1`, then per driver the column's index (a LEB128
//! varint) and the value's tag (a varint): `0` the column's own level (a one-hot column
//! whose value is that category), `1` an `f64` in 8 little-endian bytes follows, `n >= 2`
//! the whole number `n - 2` zigzag-decoded. Scores written before format 1 hold their
//! drivers as JSON text (`[{"feature": ...}]`); those are read as they are.

use serde::{Deserialize, Serialize};

use super::artifact::{Driver, ModelArtifact};
use super::encoder::Encoding;
use crate::domain::Currency;
use crate::features::{FeatureValue, Words};

/// The first byte of format 1.
const FORMAT_1: u8 = 1;
/// Whole numbers within this magnitude are kept as varints: every one is an exact `f64`.
const EXACT_INTEGERS: f64 = 9_007_199_254_740_992.0; // 2^53

/// What turns a run's stored drivers back into [`Driver`]s: the scoring model's columns
/// and the words of the spec it scored with. Kept once per scoring run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DriverKey {
    /// The currency `{money}` is written in (ISO 4217 code) and its symbol.
    pub currency: String,
    pub symbol: String,
    pub columns: Vec<KeyColumn>,
}

/// One column of the model, as the key has it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KeyColumn {
    pub name: String,
    pub source: String,
    pub coefficient: f64,
    pub encoding: Encoding,
    #[serde(default)]
    pub words: Words,
}

/// Why stored drivers could not be read.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("stored drivers are unreadable: {0}")]
pub struct DecodeError(String);

impl DriverKey {
    /// The key of `model` scoring with `words` for each feature (a spec's
    /// [`crate::features::FeatureSpec::words`]) and amounts in `currency`.
    pub fn new(model: &ModelArtifact, words: &dyn Fn(&str) -> Words, currency: &Currency) -> Self {
        Self {
            currency: currency.code().to_owned(),
            symbol: currency.symbol().to_owned(),
            columns: model
                .features
                .iter()
                .map(|f| KeyColumn {
                    name: f.name.clone(),
                    source: f.source.clone(),
                    coefficient: f.coefficient,
                    encoding: f.encoding.clone(),
                    words: words(&f.source),
                })
                .collect(),
        }
    }

    /// A reader for this key (its currency resolved once).
    pub fn reader(self) -> Result<KeyReader, DecodeError> {
        let currency = Currency::parse(&self.currency, Some(&self.symbol))
            .map_err(|e| DecodeError(format!("the key's currency: {e}")))?;
        Ok(KeyReader {
            key: self,
            currency,
        })
    }
}

/// A [`DriverKey`] ready to read many customers' drivers.
#[derive(Debug, Clone)]
pub struct KeyReader {
    key: DriverKey,
    currency: Currency,
}

/// The drivers stored as `bytes` with a score of a run whose key is `key` ([`encode`]'s
/// format 1 needs the key; JSON text written before format 1, by a run without a key, is
/// read as it is).
pub fn decode(key: Option<&KeyReader>, bytes: &[u8]) -> Result<Vec<Driver>, DecodeError> {
    let Some((&first, mut rest)) = bytes.split_first() else {
        return Ok(Vec::new());
    };
    if first != FORMAT_1 {
        return serde_json::from_slice(bytes)
            .map_err(|e| DecodeError(format!("drivers as JSON: {e}")));
    }
    let Some(key) = key else {
        return Err(DecodeError(
            "drivers in format 1 but the scoring run has no key".into(),
        ));
    };
    let mut out = Vec::with_capacity(3);
    while !rest.is_empty() {
        let index = varint(&mut rest)?;
        let column = usize::try_from(index)
            .ok()
            .and_then(|i| key.key.columns.get(i))
            .ok_or_else(|| {
                DecodeError(format!(
                    "column {index} is not among the key's {}",
                    key.key.columns.len()
                ))
            })?;
        let value = match varint(&mut rest)? {
            0 => match &column.encoding {
                Encoding::OneHot { level } => FeatureValue::Cat(level.clone()),
                Encoding::Numeric { .. } => {
                    return Err(DecodeError(format!(
                        "column {:?} is numeric but its value is stored as a level",
                        column.name
                    )));
                }
            },
            1 => {
                let (b, tail) = rest
                    .split_first_chunk::<8>()
                    .ok_or_else(|| DecodeError("a number is cut short".into()))?;
                rest = tail;
                FeatureValue::Num(f64::from_le_bytes(*b))
            }
            n => {
                let z = n - 2;
                FeatureValue::Num((((z >> 1) as i64) ^ -((z & 1) as i64)) as f64)
            }
        };
        out.push(Driver {
            feature: column.name.clone(),
            source: column.source.clone(),
            contribution: column.coefficient * column.encoding.apply(Some(&value)),
            description: column.words.describe(&column.source, &value, &key.currency),
        });
    }
    Ok(out)
}

fn varint(rest: &mut &[u8]) -> Result<u64, DecodeError> {
    let mut v: u64 = 0;
    for shift in (0..64).step_by(7) {
        let (&b, tail) = rest
            .split_first()
            .ok_or_else(|| DecodeError("a number is cut short".into()))?;
        *rest = tail;
        v |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Ok(v);
        }
    }
    Err(DecodeError("a number runs past 64 bits".into()))
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// Appends the top `k` drivers of `row` ([`ModelArtifact::top_drivers`]) in format 1.
pub fn encode(
    model: &ModelArtifact,
    row: &crate::features::FeatureRow,
    k: usize,
    out: &mut Vec<u8>,
) {
    encode_by(model, |i| row.get(&model.features[i].source), k, out)
}

/// [`encode`] of a row given by position, as in [`ModelArtifact::predict_by`].
pub fn encode_by<'r>(
    model: &ModelArtifact,
    value: impl Fn(usize) -> Option<&'r FeatureValue>,
    k: usize,
    out: &mut Vec<u8>,
) {
    out.push(FORMAT_1);
    for (i, _, value) in model.top_drivers_by(value, k) {
        put_varint(out, i as u64);
        match (value, &model.features[i].encoding) {
            (FeatureValue::Cat(c), Encoding::OneHot { level }) if c == level => put_varint(out, 0),
            (FeatureValue::Num(x), _) => {
                let whole = x.fract() == 0.0
                    && x.abs() < EXACT_INTEGERS
                    && !(*x == 0.0 && x.is_sign_negative());
                if whole {
                    let i = *x as i64;
                    put_varint(out, (((i << 1) ^ (i >> 63)) as u64) + 2);
                } else {
                    put_varint(out, 1);
                    out.extend_from_slice(&x.to_le_bytes());
                }
            }
            // A column adds to the risk only for a value it encodes as non-zero: a number,
            // or its own level (tested: every driver read back equals the one computed).
            (FeatureValue::Cat(_) | FeatureValue::Missing, _) => {
                unreachable!("a driver's value is a number or its column's level")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::features::{FeatureRow, FeatureSpec};
    use proptest::prelude::*;

    fn model() -> ModelArtifact {
        serde_json::from_str(crate::model::DEFAULT_MODEL).unwrap()
    }

    /// What scoring stored before format 1: the drivers in the spec's words.
    fn computed(model: &ModelArtifact, spec: &FeatureSpec, row: &FeatureRow) -> Vec<Driver> {
        model.drivers_with(row, 3, &|n, v| spec.describe(n, v))
    }

    fn read_back(model: &ModelArtifact, spec: &FeatureSpec, row: &FeatureRow) -> Vec<Driver> {
        let key = DriverKey::new(model, &|n| spec.words(n), &spec.currency);
        // Through JSON, as the key is stored.
        let key: DriverKey = serde_json::from_str(&serde_json::to_string(&key).unwrap()).unwrap();
        let mut bytes = Vec::new();
        encode(model, row, 3, &mut bytes);
        decode(Some(&key.reader().unwrap()), &bytes).unwrap()
    }

    #[test]
    fn drivers_read_back_are_the_drivers_scoring_computed_on_a_simulated_population() {
        use crate::features::{Activity, compute};
        use crate::synth::{SynthOptions, generate};
        let model = model();
        let mut spec = FeatureSpec::default_spec();
        spec.currency = Currency::parse("EUR", Some("€")).unwrap();
        let today = chrono::NaiveDate::from_ymd_opt(2026, 11, 24).unwrap();
        let population = generate(&SynthOptions::new(3_000, 7, today));
        let mut by_customer: std::collections::HashMap<_, Vec<_>> = Default::default();
        for e in &population.events {
            by_customer.entry(e.customer.clone()).or_default().push(e);
        }
        let rows: Vec<FeatureRow> = population
            .customers
            .iter()
            .map(|c| {
                let events = by_customer.remove(&c.external_id).unwrap_or_default();
                compute(&spec, c, &Activity::from_events(events), today)
            })
            .collect();
        let mut with_drivers = 0;
        for row in &rows {
            let want = computed(&model, &spec, row);
            with_drivers += usize::from(!want.is_empty());
            assert_eq!(read_back(&model, &spec, row), want, "{row:?}");
        }
        assert!(
            with_drivers > rows.len() / 2,
            "{with_drivers} of {}",
            rows.len()
        );
    }

    fn value() -> impl Strategy<Value = FeatureValue> {
        prop_oneof![
            (-1e6f64..1e6).prop_map(FeatureValue::Num),
            (-100i64..100_000).prop_map(|i| FeatureValue::Num(i as f64)),
            Just(FeatureValue::Num(-0.0)),
            Just(FeatureValue::Num(9_007_199_254_740_993.0)),
            Just(FeatureValue::Num(-1e300)),
            any::<f64>().prop_map(FeatureValue::Num),
            Just(FeatureValue::Missing),
            "[a-z_]{1,12}".prop_map(FeatureValue::Cat),
        ]
    }

    proptest! {
        #[test]
        fn any_row_reads_back_as_computed(values in proptest::collection::vec(value(), 64)) {
            let model = model();
            let spec = FeatureSpec::default_spec();
            // Each of the model's sources gets a value; categorical sources often their
            // own levels (and numbers spelling a level: a mixed column).
            let mut row = FeatureRow::new();
            for (f, v) in model.features.iter().zip(values.iter().cycle()) {
                let v = match (&f.encoding, v) {
                    (Encoding::OneHot { level }, FeatureValue::Cat(c)) if c.len() % 2 == 0 => {
                        FeatureValue::Cat(level.clone())
                    }
                    _ => v.clone(),
                };
                row.entry(f.source.clone()).or_insert(v);
            }
            prop_assert_eq!(read_back(&model, &spec, &row), computed(&model, &spec, &row));
        }
    }

    #[test]
    fn drivers_stored_as_json_before_format_1_are_read_as_they_are() {
        let json = br#"[{"feature":"complaints_90d","source":"complaints_90d","contribution":0.5,"description":"5 complaints in 90 days"}]"#;
        let d = decode(None, json).unwrap();
        assert_eq!(d[0].description, "5 complaints in 90 days");
        assert_eq!(decode(None, b"").unwrap(), Vec::<Driver>::new());
        // Format 1 without its run's key cannot be read.
        assert!(decode(None, &[FORMAT_1, 0, 2]).is_err());
    }

    #[test]
    fn damaged_bytes_are_an_error_not_a_panic() {
        let model = model();
        let spec = FeatureSpec::default_spec();
        let key = DriverKey::new(&model, &|n| spec.words(n), &spec.currency);
        let n = key.columns.len() as u8;
        let reader = key.reader().unwrap();
        for bad in [
            vec![FORMAT_1, n, 2],       // no such column
            vec![FORMAT_1, 0],          // a column without its value
            vec![FORMAT_1, 0, 1, 0, 0], // a number cut short
            vec![FORMAT_1, 0x80],       // a varint cut short
            vec![b'[', b'{'],           // bad JSON
        ] {
            assert!(decode(Some(&reader), &bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn a_driver_takes_a_few_bytes() {
        let model = model();
        let spec = FeatureSpec::default_spec();
        let mut row = FeatureRow::new();
        for f in &model.features {
            let v = match &f.encoding {
                Encoding::Numeric { mean, std } => FeatureValue::Num((mean + 3.0 * std).round()),
                Encoding::OneHot { level } => FeatureValue::Cat(level.clone()),
            };
            row.entry(f.source.clone()).or_insert(v);
        }
        let mut bytes = Vec::new();
        encode(&model, &row, 3, &mut bytes);
        assert_eq!(read_back(&model, &spec, &row).len(), 3);
        assert!(bytes.len() <= 1 + 3 * 5, "{} bytes: {bytes:?}", bytes.len());
    }
}
