//! Features that need no spec. With `[settings] auto = true` (or no spec file at all for a
//! business that declares its own kinds), attune derives, for every event kind: counts over
//! 7, 30 and 90 days, the sum of values over 90 days (kinds that carry values), days since
//! the last one, the trend of the last 30 days on the 90 before, and the days with one in
//! the last 90; plus tenure in days, distinct active days over 30 and 90 days, the record's
//! plan, charge and contract, and the customer's attributes.
//!
//! Attributes pass a guard first ([`guard_attributes`]): a categorical attribute with more
//! levels than `max_levels` (an email address, a free-text note) and a numeric identifier
//! (`crm_number`) would let the model memorise customers; they are left out, and the
//! training summary says which and why. Pure.

use std::collections::{BTreeMap, BTreeSet, HashSet};

use serde::{Deserialize, Serialize};

use super::spec::{CustomerField, IfNone, Kinds, NoActivity, Stat, TenureUnit, Window};
use super::{Attributes, FeatureDef, FeatureKind, FeatureSpec};
use crate::domain::{Customer, EventKinds, KindCode, KindSet};

/// An attribute the guard left out, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeftOut {
    pub attribute: String,
    pub why: String,
}

fn def(name: String, kind: FeatureKind, describe: Option<String>) -> FeatureDef {
    FeatureDef {
        name,
        kind,
        describe,
        describe_at_cap: None,
        no_activity: NoActivity::Zero,
    }
}

fn one(catalog: &EventKinds, code: KindCode) -> Kinds {
    Kinds {
        names: vec![catalog.name(code).into_owned()],
        set: std::iter::once(code).collect(),
    }
}

/// The spec with its auto features derived for `kinds` (by code; `valued` those whose
/// events carry values) and placed before the spec's own features, which win a name they
/// share. A spec without `auto` comes back as it is.
pub fn derive(
    spec: &FeatureSpec,
    catalog: &EventKinds,
    kinds: &[KindCode],
    valued: &KindSet,
) -> FeatureSpec {
    if !spec.auto {
        return spec.clone();
    }
    let mut out: Vec<FeatureDef> = vec![
        def(
            "tenure_days".into(),
            FeatureKind::Tenure(TenureUnit::Days),
            Some("{value:.0} days a customer".into()),
        ),
        def(
            "monthly_charge".into(),
            FeatureKind::Field(CustomerField::MonthlyCharge),
            Some("pays {money} a month".into()),
        ),
        def("plan".into(), FeatureKind::Field(CustomerField::Plan), None),
        def(
            "contract".into(),
            FeatureKind::Field(CustomerField::Contract),
            None,
        ),
    ];
    for days in [30, 90] {
        out.push(def(
            format!("active_days_{days}d"),
            FeatureKind::ActiveDays {
                kinds: None,
                window: Window::Days(days),
            },
            Some(format!("active on {{value:.0}} of the last {days} days")),
        ));
    }
    let mut codes = kinds.to_vec();
    codes.sort_unstable();
    codes.dedup();
    for code in codes {
        let Some(k) = catalog.get(code) else { continue };
        let name = &k.name;
        let words = name.replace('_', " ");
        let kinds = one(catalog, code);
        for days in [7, 30, 90] {
            out.push(def(
                format!("{name}_{days}d"),
                FeatureKind::Window {
                    stat: Stat::Count,
                    kinds: kinds.clone(),
                    window: Window::Days(days),
                },
                Some(format!("{words}: {{value:.0}} in {days} days")),
            ));
        }
        if valued.contains(code) {
            out.push(def(
                format!("{name}_value_90d"),
                FeatureKind::Window {
                    stat: Stat::Sum,
                    kinds: kinds.clone(),
                    window: Window::Days(90),
                },
                Some(format!("{words} value {{value:.2}} in 90 days")),
            ));
        }
        let mut since = def(
            format!("days_since_{name}"),
            FeatureKind::DaysSince {
                kinds: kinds.clone(),
                cap_days: Some(365),
                if_none: IfNone::Cap,
            },
            Some(format!("last {words} {{value:.0}} days ago")),
        );
        since.describe_at_cap = Some(format!("no {words} in a year"));
        out.push(since);
        out.push(def(
            format!("{name}_trend"),
            FeatureKind::Change {
                stat: Stat::Count,
                kinds: kinds.clone(),
                recent_days: 30,
                prior_days: 90,
                clamp: (-1.0, 3.0),
            },
            Some(format!(
                "{words} {{up_down}} {{abs_pct:.0}}% on the prior 90 days"
            )),
        ));
        out.push(def(
            format!("{name}_active_days_90d"),
            FeatureKind::ActiveDays {
                kinds: Some(kinds),
                window: Window::Days(90),
            },
            Some(format!("{words} on {{value:.0}} of the last 90 days")),
        ));
    }
    let own: HashSet<&str> = spec.features.iter().map(|f| f.name.as_str()).collect();
    out.retain(|f| !own.contains(f.name.as_str()));
    out.extend(spec.features.iter().cloned());
    FeatureSpec {
        features: out,
        auto: false,
        ..spec.clone()
    }
}

/// Which of the customers' attributes `attributes = "all"` may take: every attribute but
/// a categorical one with more than `max_levels` levels, and a number that identifies the
/// customer (an integer in nearly every customer's own value, or one named like an id).
pub fn guard_attributes<'a>(
    customers: impl IntoIterator<Item = &'a Customer>,
    max_levels: usize,
) -> (BTreeSet<String>, Vec<LeftOut>) {
    let mut guard = AttributeGuard::default();
    for c in customers {
        guard.add(c);
    }
    guard.finish(max_levels)
}

/// [`guard_attributes`] a customer at a time, so the customers need not be held together
/// (training from history reads them a page at a time).
#[derive(Debug, Default)]
pub struct AttributeGuard {
    cols: BTreeMap<String, GuardColumn>,
    customers_seen: usize,
}

#[derive(Debug, Default)]
struct GuardColumn {
    values: HashSet<String>,
    present: usize,
    numeric: bool,
    integers: bool,
    seen: bool,
}

impl AttributeGuard {
    pub fn add(&mut self, c: &Customer) {
        self.customers_seen += 1;
        for (k, v) in &c.attributes {
            let v = v.trim();
            if v.is_empty() {
                continue;
            }
            let col = self.cols.entry(k.clone()).or_default();
            if !col.seen {
                col.seen = true;
                col.numeric = true;
                col.integers = true;
            }
            col.present += 1;
            match v.parse::<f64>() {
                Ok(x) if x.is_finite() => col.integers &= x.fract() == 0.0,
                _ => {
                    col.numeric = false;
                    col.integers = false;
                }
            }
            // Enough to tell; a column with millions of distinct values stops growing here.
            if col.values.len() <= self.customers_seen.min(1_000_000) {
                col.values.insert(v.to_owned());
            }
        }
    }

    /// The attributes kept, and those left out with the reason.
    pub fn finish(self, max_levels: usize) -> (BTreeSet<String>, Vec<LeftOut>) {
        let mut kept = BTreeSet::new();
        let mut left = Vec::new();
        for (name, col) in self.cols {
            let distinct = col.values.len();
            let nearly_unique = col.present >= 20 && distinct as f64 >= 0.9 * col.present as f64;
            if col.numeric {
                if col.integers
                    && (nearly_unique || (looks_like_id(&name) && distinct > max_levels))
                {
                    left.push(LeftOut {
                        attribute: name,
                        why: format!(
                            "a numeric identifier ({distinct} distinct whole numbers in {} customers)",
                            col.present
                        ),
                    });
                    continue;
                }
            } else if nearly_unique {
                left.push(LeftOut {
                    attribute: name,
                    why: format!(
                        "an identifier ({distinct} distinct values in {} customers)",
                        col.present
                    ),
                });
                continue;
            } else if distinct > max_levels {
                left.push(LeftOut {
                    attribute: name,
                    why: format!(
                        "{distinct} distinct values (more than max_levels = {max_levels}); one-hot levels this many would memorise customers"
                    ),
                });
                continue;
            }
            kept.insert(name);
        }
        (kept, left)
    }
}

fn looks_like_id(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    n == "id"
        || n.ends_with("_id")
        || n.ends_with("id") && name.ends_with("ID")
        || name.ends_with("Id")
        || n.ends_with("_number")
        || n.ends_with("_no")
        || n.ends_with("uuid")
        || n.ends_with("_key")
}

/// Whether training on `spec` passes the customers' attributes through the guard
/// (`attributes = "all"`): the customers need reading only then.
pub fn guards_attributes(spec: &FeatureSpec) -> bool {
    spec.attributes == Attributes::All
}

/// The spec a model is trained on: auto features derived for the kinds the data holds, and
/// `attributes = "all"` narrowed by `guard`, which has seen every customer (when
/// [`guards_attributes`]). Returns what the guard left out.
pub fn for_training(
    spec: &FeatureSpec,
    catalog: &EventKinds,
    kinds: &[KindCode],
    valued: &KindSet,
    guard: AttributeGuard,
) -> (FeatureSpec, Vec<LeftOut>) {
    let mut out = derive(spec, catalog, kinds, valued);
    let mut left = Vec::new();
    if out.attributes == Attributes::All {
        let (kept, l) = guard.finish(spec.max_levels);
        out.attributes = Attributes::Only(kept);
        left = l;
    }
    (out, left)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{Channel, Consent, ContractType, CustomerId, DeclaredKind};

    fn customer(i: usize) -> Customer {
        Customer {
            external_id: CustomerId::parse(&format!("c{i}")).unwrap(),
            signup_date: "2025-01-01".parse().unwrap(),
            plan: "p".into(),
            monthly_charge: 0.0,
            contract_type: ContractType::MonthToMonth,
            contract_end: None,
            first_invoice_due: None,
            preferred_channel: Channel::Email,
            consent: Consent::ALL,
            churned_on: None,
            attributes: [
                ("email", format!("u{i}@example.com")),
                ("crm_number", format!("{}", 100_000 + i * 7)),
                ("country", ["uk", "de", "fr"][i % 3].to_owned()),
                ("age", format!("{}", 20 + i % 50)),
                ("spend", format!("{:.2}", i as f64 * 1.37)),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v))
            .collect(),
        }
    }

    #[test]
    fn the_guard_leaves_out_identifiers_and_free_text_and_says_why() {
        let people: Vec<Customer> = (0..200).map(customer).collect();
        let (kept, left) = guard_attributes(&people, 50);
        assert_eq!(
            kept.into_iter().collect::<Vec<_>>(),
            ["age", "country", "spend"]
        );
        let names: Vec<&str> = left.iter().map(|l| l.attribute.as_str()).collect();
        assert_eq!(names, ["crm_number", "email"]);
        assert!(left[0].why.contains("numeric identifier"), "{:?}", left[0]);
        assert!(
            left[1].why.contains("identifier (200 distinct"),
            "{:?}",
            left[1]
        );
        // Many levels but far from one per customer: too many to one-hot.
        let mut many: Vec<Customer> = (0..400).map(customer).collect();
        for (i, c) in many.iter_mut().enumerate() {
            c.attributes
                .insert("city".into(), format!("city{}", i % 80));
        }
        let (kept, left) = guard_attributes(&many, 50);
        assert!(!kept.contains("city"));
        let city = left.iter().find(|l| l.attribute == "city").unwrap();
        assert!(
            city.why
                .contains("80 distinct values (more than max_levels = 50)"),
            "{city:?}"
        );
    }

    #[test]
    fn auto_features_per_kind_with_the_specs_own_winning_a_name() {
        let declared = vec![
            DeclaredKind::parse("message_sent", "none").unwrap(),
            DeclaredKind::parse("purchase", "payment").unwrap(),
        ];
        let catalog = EventKinds::provisional(&declared);
        let spec = FeatureSpec::parse_with(
            "[settings]\nauto = true\n[[feature]]\nname = \"purchase_30d\"\ntype = \"sum\"\nkinds = [\"purchase\"]\nwindow_days = 30\n",
            "s",
            &catalog,
        )
        .unwrap();
        let m = catalog.lookup("message_sent").unwrap().code;
        let p = catalog.lookup("purchase").unwrap().code;
        let valued: KindSet = std::iter::once(p).collect();
        let d = derive(&spec, &catalog, &[p, m], &valued);
        assert!(!d.auto);
        let names: Vec<&str> = d.features.iter().map(|f| f.name.as_str()).collect();
        for n in [
            "tenure_days",
            "active_days_30d",
            "message_sent_7d",
            "message_sent_90d",
            "days_since_message_sent",
            "message_sent_trend",
            "message_sent_active_days_90d",
            "purchase_value_90d",
            "purchase_30d",
        ] {
            assert!(names.contains(&n), "{n} in {names:?}");
        }
        assert!(!names.contains(&"message_sent_value_90d"));
        assert_eq!(names.iter().filter(|n| **n == "purchase_30d").count(), 1);
        // The spec's own definition (a sum) won.
        assert!(matches!(
            d.get("purchase_30d").unwrap().kind,
            FeatureKind::Window {
                stat: Stat::Sum,
                ..
            }
        ));
        // Written out and read back, it is the same spec.
        let again = FeatureSpec::parse_with(&d.to_toml(), "m", &catalog).unwrap();
        assert_eq!(again.features, d.features);
    }
}
