//! Customer rows: the standard columns and the IBM Telco preset.

use std::collections::BTreeMap;
use std::io::Read;

use chrono::{Months, NaiveDate};

use super::record::{
    Problem, Record, parse_date, parse_non_negative, parse_number, parse_optional_date, parse_with,
};
use super::{FileError, Format, Parsed};
use crate::domain::{Channel, Consent, ContractType, Customer, CustomerId};

const REQUIRED: &[&str] = &["customer_id", "signup_date", "plan", "monthly_charge"];
const KNOWN: &[&str] = &[
    "customer_id",
    "signup_date",
    "plan",
    "monthly_charge",
    "contract_type",
    "contract_end",
    "first_invoice_due",
    "churned_on",
    "preferred_channel",
    "consent",
];

pub(super) fn parse_standard<R: Read>(
    file: &str,
    reader: R,
    format: Format,
    today: NaiveDate,
) -> Result<Parsed<Customer>, FileError> {
    parse_with(file, reader, format, REQUIRED, |r| standard(r, today))
}

fn customer_id(column: &str, raw: &str) -> Result<CustomerId, Problem> {
    CustomerId::parse(raw).map_err(|e| Problem::at(column, e.to_string()))
}

fn standard(r: &Record, today: NaiveDate) -> Result<Customer, Problem> {
    let external_id = customer_id("customer_id", r.required("customer_id", "a customer id")?)?;
    let raw_signup = r.required("signup_date", "a date YYYY-MM-DD")?;
    let signup_date = parse_date("signup_date", raw_signup)?;
    if signup_date > today {
        return Err(Problem::at(
            "signup_date",
            format!(
                "{raw_signup:?} is after today ({today}); expected a signup date on or before today"
            ),
        ));
    }
    let plan = r.required("plan", "the plan name as text")?.to_owned();
    let monthly_charge = parse_non_negative(
        "monthly_charge",
        r.required("monthly_charge", "a number >= 0 such as 29.85")?,
    )?;
    let contract_type = match r.text("contract_type")? {
        None => ContractType::MonthToMonth,
        Some(raw) => raw.parse().map_err(|e: crate::domain::InvalidValue| {
            Problem::at("contract_type", e.to_string())
        })?,
    };
    let contract_end = parse_optional_date(r, "contract_end")?;
    let first_invoice_due = parse_optional_date(r, "first_invoice_due")?;
    let churned_on = parse_optional_date(r, "churned_on")?;
    if let Some(c) = churned_on
        && c < signup_date
    {
        return Err(Problem::at(
            "churned_on",
            format!("{c} is before signup_date {signup_date}; expected a date on or after it"),
        ));
    }
    let preferred_channel = match r.text("preferred_channel")? {
        None => Channel::Email,
        Some(raw) => raw.parse().map_err(|e: crate::domain::InvalidValue| {
            Problem::at("preferred_channel", e.to_string())
        })?,
    };
    // No consent column, or a blank one, means no consent: such a customer is sent nothing.
    let consent = match r.text("consent")? {
        None => Consent::default(),
        Some(raw) => Consent::parse_list(raw).map_err(|e| {
            Problem::at(
                "consent",
                format!("{e} (a list such as email;sms, or all, or none)"),
            )
        })?,
    };
    Ok(Customer {
        external_id,
        signup_date,
        plan,
        monthly_charge,
        contract_type,
        contract_end,
        first_invoice_due,
        preferred_channel,
        consent,
        churned_on,
        attributes: r.others(KNOWN).into_iter().collect(),
    })
}

// ---- the IBM Telco preset ------------------------------------------------------------

/// Every column of the IBM Telco churn CSV and what the preset does with it.
pub(super) const TELCO_COLUMNS: &[(&str, &str)] = &[
    ("customerID", "The customer id."),
    ("gender", "Kept as an attribute."),
    ("SeniorCitizen", "Kept as an attribute."),
    ("Partner", "Kept as an attribute."),
    ("Dependents", "Kept as an attribute."),
    (
        "tenure",
        "Whole months as a customer (>= 0); signup_date is today minus that many months.",
    ),
    ("PhoneService", "Kept as an attribute."),
    ("MultipleLines", "Kept as an attribute."),
    ("InternetService", "The plan (DSL, Fiber optic, No)."),
    ("OnlineSecurity", "Kept as an attribute."),
    ("OnlineBackup", "Kept as an attribute."),
    ("DeviceProtection", "Kept as an attribute."),
    ("TechSupport", "Kept as an attribute."),
    ("StreamingTV", "Kept as an attribute."),
    ("StreamingMovies", "Kept as an attribute."),
    (
        "Contract",
        "Month-to-month, One year or Two year. For yearly contracts contract_end is the next \
         12- or 24-month anniversary of signup after today.",
    ),
    (
        "PaperlessBilling",
        "Yes: preferred channel email, otherwise post. The data has no consent column, so \
         consent is the preferred channel only. Also kept as an attribute.",
    ),
    ("PaymentMethod", "Kept as an attribute."),
    ("MonthlyCharges", "The monthly charge (a number >= 0)."),
    (
        "TotalCharges",
        "Kept as an attribute; blank (new customers) becomes 0, otherwise it must be a number.",
    ),
    ("Churn", "Yes: churned_on is today. No: still a customer."),
];

/// Columns mapped onto customer fields and therefore not kept as attributes.
const TELCO_MAPPED: &[&str] = &[
    "customerID",
    "tenure",
    "InternetService",
    "Contract",
    "MonthlyCharges",
    "Churn",
];

pub(super) fn parse_telco<R: Read>(
    file: &str,
    reader: R,
    today: NaiveDate,
) -> Result<Parsed<Customer>, FileError> {
    let required: Vec<&str> = TELCO_COLUMNS.iter().map(|(c, _)| *c).collect();
    parse_with(file, reader, Format::Csv, &required, |r| telco(r, today))
}

fn telco(r: &Record, today: NaiveDate) -> Result<Customer, Problem> {
    let external_id = customer_id("customerID", r.required("customerID", "a customer id")?)?;

    let raw_tenure = r.required("tenure", "whole months as a customer (0 or more)")?;
    let tenure: u32 = raw_tenure.parse().map_err(|_| {
        Problem::at(
            "tenure",
            format!("{raw_tenure:?} is not a whole number of months; expected an integer >= 0"),
        )
    })?;
    let signup_date = today
        .checked_sub_months(Months::new(tenure))
        .ok_or_else(|| {
            Problem::at(
                "tenure",
                format!("{tenure} months before {today} is not a representable date"),
            )
        })?;

    let plan = r
        .required(
            "InternetService",
            "the internet service (DSL, Fiber optic, No)",
        )?
        .to_owned();
    let monthly_charge = parse_non_negative(
        "MonthlyCharges",
        r.required("MonthlyCharges", "a number >= 0 such as 29.85")?,
    )?;

    let raw_contract = r.required("Contract", "Month-to-month, One year or Two year")?;
    let contract_type: ContractType = raw_contract.parse().map_err(|_| {
        Problem::at(
            "Contract",
            format!(
                "unknown contract {raw_contract:?}; expected Month-to-month, One year or Two year"
            ),
        )
    })?;
    let contract_end = match contract_type {
        ContractType::MonthToMonth => None,
        ContractType::OneYear => Some(next_anniversary(signup_date, tenure, 12)?),
        ContractType::TwoYear => Some(next_anniversary(signup_date, tenure, 24)?),
    };

    let raw_churn = r.required("Churn", "Yes or No")?;
    let churned_on = if raw_churn.eq_ignore_ascii_case("yes") {
        Some(today)
    } else if raw_churn.eq_ignore_ascii_case("no") {
        None
    } else {
        return Err(Problem::at(
            "Churn",
            format!("{raw_churn:?} is not a churn flag; expected Yes or No"),
        ));
    };

    let paperless = r
        .text("PaperlessBilling")?
        .is_some_and(|v| v.eq_ignore_ascii_case("yes"));
    let preferred_channel = if paperless {
        Channel::Email
    } else {
        Channel::Post
    };
    // The Telco data has no consent column: consent is the preferred channel only.
    let consent = Consent {
        email: preferred_channel == Channel::Email,
        post: preferred_channel == Channel::Post,
        ..Consent::default()
    };

    let total = match r.text("TotalCharges")? {
        // New customers (tenure 0) have a blank total; scikit-learn's reference fills 0.
        None => "0".to_owned(),
        Some(raw) => {
            parse_number("TotalCharges", raw)?;
            raw.to_owned()
        }
    };

    let mut known: Vec<&str> = TELCO_MAPPED.to_vec();
    known.push("TotalCharges");
    let mut attributes: BTreeMap<String, String> = r.others(&known).into_iter().collect();
    attributes.insert("TotalCharges".to_owned(), total);

    Ok(Customer {
        external_id,
        signup_date,
        plan,
        monthly_charge,
        contract_type,
        contract_end,
        first_invoice_due: None,
        preferred_channel,
        consent,
        churned_on,
        attributes,
    })
}

/// The first `term`-month anniversary of `signup` strictly after today, where signup is
/// `tenure` months before today: the `k`-th term with `k * term > tenure`.
fn next_anniversary(signup: NaiveDate, tenure: u32, term: u32) -> Result<NaiveDate, Problem> {
    (tenure / term + 1)
        .checked_mul(term)
        .and_then(|months| signup.checked_add_months(Months::new(months)))
        .ok_or_else(|| Problem::at("Contract", "the contract end is not a representable date"))
}

#[cfg(test)]
mod tests {
    use super::super::*;
    use crate::domain::{Channel, Consent, ContractType};
    use chrono::{Months, NaiveDate};
    use std::collections::HashMap;

    fn d(s: &str) -> NaiveDate {
        s.parse().unwrap()
    }

    fn telco_fixture() -> String {
        std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../tests/fixtures/telco.csv"
        ))
        .unwrap()
    }

    #[test]
    fn standard_csv_keeps_good_rows_and_reports_each_bad_one() {
        let csv = "\
customer_id,signup_date,plan,monthly_charge,contract_type,contract_end,preferred_channel,consent,churned_on,region
c1,2025-01-15,basic,29.85,one_year,2026-01-15,sms,email;sms,,north
c2,2025-13-01,basic,10,,,,,,south
c3,2025-02-01,basic,-5,,,,,,
c4,2025-02-01,basic,5,,,fax,,,
,2025-02-01,basic,5,,,,,,
c6,2025-03-01,premium,12.5,,,,,,
c7,2025-03-01,premium,12.5,,,,,2025-02-01,
c8,2025-03-01,premium,12.5,,,,email;fax,,
c9,2030-01-01,premium,12.5,,,,,,
c10,2025-03-01,premium,12.5
";
        let today = d("2025-06-30");
        let parsed = parse_customers(
            "customers.csv",
            csv.as_bytes(),
            Format::Csv,
            CustomerPreset::Standard,
            today,
        )
        .unwrap();
        let lines: Vec<u64> = parsed.rows.iter().map(|(l, _)| *l).collect();
        assert_eq!(lines, vec![2, 7]);

        let c1 = &parsed.rows[0].1;
        assert_eq!(c1.external_id.as_str(), "c1");
        assert_eq!(c1.signup_date, d("2025-01-15"));
        assert_eq!(c1.plan, "basic");
        assert_eq!(c1.monthly_charge, 29.85);
        assert_eq!(c1.contract_type, ContractType::OneYear);
        assert_eq!(c1.contract_end, Some(d("2026-01-15")));
        assert_eq!(c1.first_invoice_due, None);
        assert_eq!(c1.preferred_channel, Channel::Sms);
        assert_eq!(
            c1.consent,
            Consent {
                email: true,
                sms: true,
                ..Consent::default()
            }
        );
        assert_eq!(c1.churned_on, None);
        assert_eq!(
            c1.attributes.get("region").map(String::as_str),
            Some("north")
        );
        assert_eq!(c1.attributes.len(), 1);

        let c6 = &parsed.rows[1].1;
        assert_eq!(c6.contract_type, ContractType::MonthToMonth);
        assert_eq!(c6.preferred_channel, Channel::Email);
        assert_eq!(
            c6.consent,
            Consent::default(),
            "no consent given means none"
        );
        assert!(
            c6.attributes.is_empty(),
            "blank attribute values are not stored"
        );

        let err = |line: u64, column: Option<&str>, problem: &str| RowError {
            file: "customers.csv".into(),
            line,
            column: column.map(str::to_owned),
            problem: problem.into(),
        };
        assert_eq!(
            parsed.rejected,
            vec![
                err(
                    3,
                    Some("signup_date"),
                    "\"2025-13-01\" is not a date; expected YYYY-MM-DD"
                ),
                err(
                    4,
                    Some("monthly_charge"),
                    "-5 is negative; expected a number >= 0"
                ),
                err(
                    5,
                    Some("preferred_channel"),
                    "unknown channel \"fax\"; expected one of: email, sms, phone, post"
                ),
                err(
                    6,
                    Some("customer_id"),
                    "value is missing; expected a customer id"
                ),
                err(
                    8,
                    Some("churned_on"),
                    "2025-02-01 is before signup_date 2025-03-01; expected a date on or after it"
                ),
                err(
                    9,
                    Some("consent"),
                    "unknown channel \"fax\"; expected one of: email, sms, phone, post \
                     (a list such as email;sms, or all, or none)"
                ),
                err(
                    10,
                    Some("signup_date"),
                    "\"2030-01-01\" is after today (2025-06-30); expected a signup date on or before today"
                ),
                err(
                    11,
                    None,
                    "row has 4 fields but the header has 10; expected one value per column \
                     (quote values that contain commas)"
                ),
            ]
        );
        assert_eq!(
            parsed.rejected[0].to_string(),
            "customers.csv:3: column signup_date: \"2025-13-01\" is not a date; expected YYYY-MM-DD"
        );
        assert_eq!(
            parsed.rejected[7].to_string(),
            "customers.csv:11: row has 4 fields but the header has 10; expected one value per column \
             (quote values that contain commas)"
        );
    }

    #[test]
    fn missing_required_column_is_a_file_error_naming_it() {
        let csv = "customer_id,plan,monthly_charge\nc1,basic,10\n";
        let err = parse_customers(
            "c.csv",
            csv.as_bytes(),
            Format::Csv,
            CustomerPreset::Standard,
            d("2025-06-30"),
        )
        .unwrap_err();
        assert_eq!(
            err,
            FileError::MissingColumns {
                file: "c.csv".into(),
                missing: vec!["signup_date".into()],
                found: vec!["customer_id".into(), "plan".into(), "monthly_charge".into()],
            }
        );
        assert_eq!(
            err.to_string(),
            "c.csv: missing required column \"signup_date\"; the file's columns are: customer_id, plan, monthly_charge"
        );
        let empty = parse_customers(
            "e.csv",
            &b""[..],
            Format::Csv,
            CustomerPreset::Standard,
            d("2025-06-30"),
        )
        .unwrap_err();
        assert!(empty.to_string().contains("(none)"), "{empty}");
    }

    #[test]
    fn ndjson_customers_accept_numbers_and_strings_and_report_missing_keys() {
        let nd = r#"{"customer_id": 1001, "signup_date": "2025-01-01", "plan": "basic", "monthly_charge": "12.5", "tier": 3, "attributes": {"region": "north", "vip": true}}

{"customer_id": "c2", "signup_date": "2025-01-01", "plan": "basic"}
[1, 2]
{"customer_id": "c3", "signup_date": "2025-01-01", "plan": {"name": "x"}, "monthly_charge": 1}
not json
{"customer_id": "c4", "signup_date": "2025-01-01", "plan": "gold", "monthly_charge": 0, "consent": "all", "attributes": null}
"#;
        let parsed = parse_customers(
            "c.ndjson",
            nd.as_bytes(),
            Format::Ndjson,
            CustomerPreset::Standard,
            d("2025-06-30"),
        )
        .unwrap();
        let lines: Vec<u64> = parsed.rows.iter().map(|(l, _)| *l).collect();
        assert_eq!(lines, vec![1, 7]);
        let c = &parsed.rows[0].1;
        assert_eq!(c.external_id.as_str(), "1001");
        assert_eq!(c.monthly_charge, 12.5);
        let attrs: Vec<(&str, &str)> = c
            .attributes
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        assert_eq!(
            attrs,
            vec![("region", "north"), ("tier", "3"), ("vip", "true")]
        );
        assert_eq!(parsed.rows[1].1.consent, Consent::ALL);

        let got: Vec<(u64, Option<&str>)> = parsed
            .rejected
            .iter()
            .map(|e| (e.line, e.column.as_deref()))
            .collect();
        assert_eq!(
            got,
            vec![
                (3, Some("monthly_charge")),
                (4, None),
                (5, Some("plan")),
                (6, None)
            ]
        );
        assert_eq!(
            parsed.rejected[0].problem,
            "value is missing; expected a number >= 0 such as 29.85"
        );
        assert_eq!(
            parsed.rejected[1].problem,
            "line is a JSON array, not an object; expected one JSON object per line"
        );
        assert_eq!(
            parsed.rejected[2].problem,
            "found a JSON object; expected text or a number"
        );
    }

    #[test]
    fn telco_preset_needs_csv() {
        let err = parse_customers(
            "t.ndjson",
            &b"{}"[..],
            Format::Ndjson,
            CustomerPreset::Telco,
            d("2025-06-30"),
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "t.ndjson: the telco preset reads CSV only; this file is NDJSON"
        );
    }

    #[test]
    fn telco_fixture_parses_every_row() {
        let data = telco_fixture();
        let today = d("2025-06-30");
        let parsed = parse_customers(
            "telco.csv",
            data.as_bytes(),
            Format::Csv,
            CustomerPreset::Telco,
            today,
        )
        .unwrap();
        assert_eq!(parsed.rejected, vec![]);
        assert_eq!(parsed.rows.len(), 7043);
        assert_eq!(
            parsed
                .rows
                .iter()
                .filter(|(_, c)| c.churned_on.is_some())
                .count(),
            1869
        );
        assert!(
            parsed
                .rows
                .iter()
                .all(|(_, c)| c.churned_on.is_none_or(|x| x == today))
        );

        let (line, first) = &parsed.rows[0];
        assert_eq!(*line, 2);
        assert_eq!(first.external_id.as_str(), "7590-VHVEG");
        assert_eq!(first.signup_date, d("2025-05-30"));
        assert_eq!(first.plan, "DSL");
        assert_eq!(first.monthly_charge, 29.85);
        assert_eq!(first.contract_type, ContractType::MonthToMonth);
        assert_eq!(first.contract_end, None);
        assert_eq!(first.preferred_channel, Channel::Email);
        assert_eq!(
            first.consent,
            Consent {
                email: true,
                ..Consent::default()
            }
        );
        let keys: Vec<&str> = first.attributes.keys().map(String::as_str).collect();
        assert_eq!(
            keys,
            vec![
                "Dependents",
                "DeviceProtection",
                "MultipleLines",
                "OnlineBackup",
                "OnlineSecurity",
                "PaperlessBilling",
                "Partner",
                "PaymentMethod",
                "PhoneService",
                "SeniorCitizen",
                "StreamingMovies",
                "StreamingTV",
                "TechSupport",
                "TotalCharges",
                "gender",
            ]
        );
        assert_eq!(first.attributes["MultipleLines"], "No phone service");
        assert_eq!(first.attributes["TotalCharges"], "29.85");

        // Second row: One year, tenure 34, paper billing.
        let second = &parsed.rows[1].1;
        assert_eq!(second.contract_type, ContractType::OneYear);
        assert_eq!(second.signup_date, d("2022-08-30"));
        assert_eq!(second.contract_end, Some(d("2025-08-30")));
        assert_eq!(second.preferred_channel, Channel::Post);
        assert_eq!(
            second.consent,
            Consent {
                post: true,
                ..Consent::default()
            }
        );

        // Blank TotalCharges become "0".
        let blanks = parsed
            .rows
            .iter()
            .filter(|(_, c)| c.signup_date == today && c.attributes["TotalCharges"] == "0")
            .count();
        assert_eq!(blanks, 11);
        for (_, c) in &parsed.rows {
            if let Some(end) = c.contract_end {
                let term = if c.contract_type == ContractType::OneYear {
                    12
                } else {
                    24
                };
                assert!(end > today, "{c:?}");
                assert!(
                    end.checked_sub_months(Months::new(term)).unwrap() <= today,
                    "{c:?}"
                );
            }
        }
    }

    #[test]
    fn telco_import_round_trips_tenure_for_every_row() {
        let data = telco_fixture();
        let mut rdr = csv::Reader::from_reader(data.as_bytes());
        let tenures: HashMap<String, i64> = rdr
            .records()
            .map(|r| {
                let r = r.unwrap();
                (r[0].to_owned(), r[5].parse().unwrap())
            })
            .collect();
        assert_eq!(tenures.len(), 7043);
        for today in ["2026-03-31", "2025-06-30", "2024-02-29", "2025-01-31"] {
            let today = d(today);
            let parsed = parse_customers(
                "telco.csv",
                data.as_bytes(),
                Format::Csv,
                CustomerPreset::Telco,
                today,
            )
            .unwrap();
            assert_eq!(parsed.rows.len(), 7043);
            for (_, c) in &parsed.rows {
                assert_eq!(
                    crate::features::months_between(c.signup_date, today),
                    tenures[c.external_id.as_str()],
                    "{} as of {today}",
                    c.external_id
                );
            }
        }
    }

    #[test]
    fn telco_bad_values_are_row_errors() {
        let data = telco_fixture();
        let mut lines = data.lines();
        let header = lines.next().unwrap();
        let good = lines.next().unwrap();
        let bad_churn = format!("{}Maybe", good.strip_suffix("No").unwrap());
        let bad_total = good.replace(",29.85,29.85,", ",29.85,abc,");
        let bad_tenure = good.replace(",No,1,No,", ",No,-1,No,");
        let csv = format!("{header}\n{good}\n{bad_churn}\n{bad_total}\n{bad_tenure}\n");
        let parsed = parse_customers(
            "t.csv",
            csv.as_bytes(),
            Format::Csv,
            CustomerPreset::Telco,
            d("2025-06-30"),
        )
        .unwrap();
        assert_eq!(parsed.rows.len(), 1);
        let got: Vec<(u64, Option<&str>, &str)> = parsed
            .rejected
            .iter()
            .map(|e| (e.line, e.column.as_deref(), e.problem.as_str()))
            .collect();
        assert_eq!(
            got,
            vec![
                (
                    3,
                    Some("Churn"),
                    "\"Maybe\" is not a churn flag; expected Yes or No"
                ),
                (
                    4,
                    Some("TotalCharges"),
                    "\"abc\" is not a number; expected a decimal number such as 12.50"
                ),
                (
                    5,
                    Some("tenure"),
                    "\"-1\" is not a whole number of months; expected an integer >= 0"
                ),
            ]
        );
    }
}
