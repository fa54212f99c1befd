//! Tests of the module's surface and its properties.

use std::collections::BTreeMap;
use std::path::Path;

use chrono::NaiveDate;
use proptest::prelude::*;

use super::*;
use crate::domain::{Channel, Consent, ContractType, Customer, CustomerId};

fn today() -> NaiveDate {
    NaiveDate::from_ymd_opt(2025, 6, 30).unwrap()
}

#[test]
fn format_from_path() {
    assert_eq!(
        Format::from_path(Path::new("a/b.csv")).unwrap(),
        Format::Csv
    );
    assert_eq!(Format::from_path(Path::new("b.CSV")).unwrap(), Format::Csv);
    for p in ["e.ndjson", "e.jsonl", "e.json"] {
        assert_eq!(Format::from_path(Path::new(p)).unwrap(), Format::Ndjson);
    }
    let err = Format::from_path(Path::new("data/c.xlsx")).unwrap_err();
    assert_eq!(
        err.to_string(),
        "data/c.xlsx: unsupported file extension; expected one of .csv, .ndjson, .jsonl, .json, each optionally .gz"
    );
    assert!(Format::from_path(Path::new("noext")).is_err());
    assert_eq!(
        Format::from_path(Path::new("e.csv.gz")).unwrap(),
        Format::Csv
    );
    assert_eq!(
        Format::from_path(Path::new("e.NDJSON.GZ")).unwrap(),
        Format::Ndjson
    );
    assert!(Format::from_path(Path::new("e.gz")).is_err());
    assert_eq!(
        super::file_stem(Path::new("in/events-2026-01.csv.gz")),
        Some("events-2026-01")
    );
    assert_eq!(super::file_stem(Path::new("events.csv")), Some("events"));
}

#[test]
fn customer_preset_from_str() {
    assert_eq!(
        "standard".parse::<CustomerPreset>().unwrap(),
        CustomerPreset::Standard
    );
    assert_eq!(
        " Telco ".parse::<CustomerPreset>().unwrap(),
        CustomerPreset::Telco
    );
    let err = "ibm".parse::<CustomerPreset>().unwrap_err().to_string();
    assert_eq!(
        err,
        "unknown customer preset \"ibm\"; expected one of: standard, telco"
    );
}

#[test]
fn row_error_display() {
    let e = RowError {
        file: "f.csv".into(),
        line: 7,
        column: None,
        problem: "bad".into(),
    };
    assert_eq!(e.to_string(), "f.csv:7: bad");
}

#[test]
fn non_utf8_row_is_rejected_alone_and_a_non_utf8_header_refuses_the_file() {
    // A bad row costs only itself: the rows around it are kept.
    let csv = b"customer_id,kind,occurred_at\nc1,login,2025-01-01\nc\xff,login,2025-01-01\nc2,login,2025-01-01\n";
    let p = parse_events("e.csv", &csv[..], Format::Csv, "s").unwrap();
    assert_eq!(
        p.rows.iter().map(|(l, _)| *l).collect::<Vec<_>>(),
        vec![2, 4]
    );
    assert_eq!(
        p.rejected.iter().map(|e| e.to_string()).collect::<Vec<_>>(),
        vec!["e.csv:3: not valid UTF-8; save the file as UTF-8"]
    );
    let nd = b"{}\n\n{\"a\":\"\xc3\"}\n{\"customer_id\":\"c1\",\"kind\":\"login\",\"occurred_at\":\"2025-01-01\"}\n";
    let p = parse_events("e.ndjson", &nd[..], Format::Ndjson, "s").unwrap();
    assert_eq!(p.rows.iter().map(|(l, _)| *l).collect::<Vec<_>>(), vec![4]);
    assert_eq!(
        p.rejected.iter().map(|e| e.line).collect::<Vec<_>>(),
        vec![1, 3]
    );
    assert_eq!(
        p.rejected[1].problem,
        "not valid UTF-8; save the file as UTF-8"
    );
    let err = parse_events("h.csv", &b"customer_id,k\xffind\n"[..], Format::Csv, "s").unwrap_err();
    assert_eq!(
        err,
        FileError::NotUtf8 {
            file: "h.csv".into(),
            line: 1
        }
    );
}

/// A reader that hands out a few bytes at a time, so rows straddle every read.
struct Trickle<'a>(&'a [u8], usize);

impl std::io::Read for Trickle<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.1.min(buf.len()).min(self.0.len());
        buf[..n].copy_from_slice(&self.0[..n]);
        self.0 = &self.0[n..];
        Ok(n)
    }
}

#[test]
fn rows_straddling_reads_and_segments_keep_their_line_numbers() {
    let mut csv = String::from("\r\ncustomer_id,kind,occurred_at,note\r\n");
    let mut want = Vec::new();
    let mut line = 3;
    for i in 0..3000 {
        if i % 7 == 0 {
            // A quoted value over two lines, and a blank line.
            csv.push_str(&format!(
                "c{i},login,2025-01-01,\"two\r\nlines, \"\"quoted\"\"\"\r\n\r\n"
            ));
            want.push(line);
            line += 3;
        } else {
            csv.push_str(&format!("c{i},login,2025-01-01,x\r\n"));
            want.push(line);
            line += 1;
        }
    }
    for chunk in [1, 7, 4096] {
        let reader = std::io::BufReader::with_capacity(chunk, Trickle(csv.as_bytes(), chunk));
        let p = parse_events("e.csv", reader, Format::Csv, "s").unwrap();
        assert!(p.rejected.is_empty(), "{:?}", p.rejected.first());
        assert_eq!(p.rows.iter().map(|(l, _)| *l).collect::<Vec<_>>(), want);
        assert_eq!(
            p.rows[0].1.attributes.get("note").map(String::as_str),
            Some("two\r\nlines, \"quoted\"")
        );
    }
}

#[test]
fn unreadable_reader_is_a_file_error() {
    struct Broken;
    impl std::io::Read for Broken {
        fn read(&mut self, _: &mut [u8]) -> std::io::Result<usize> {
            Err(std::io::Error::other("disk on fire"))
        }
    }
    for format in [Format::Csv, Format::Ndjson] {
        let err = parse_events("x", Broken, format, "s").unwrap_err();
        assert!(matches!(err, FileError::Unreadable { .. }), "{err}");
        assert!(
            err.to_string().starts_with("x: cannot read the file"),
            "{err}"
        );
    }
}

#[test]
fn csv_with_bom_crlf_and_duplicate_columns() {
    let csv = "\u{feff}customer_id,signup_date,plan,monthly_charge\r\nc1,2025-01-01,basic,1\r\n";
    let p = parse_customers(
        "c.csv",
        csv.as_bytes(),
        Format::Csv,
        CustomerPreset::Standard,
        today(),
    )
    .unwrap();
    assert_eq!(p.rows.len(), 1);
    let dup = "customer_id,signup_date,plan,monthly_charge,Plan\n";
    let err = parse_customers(
        "c.csv",
        dup.as_bytes(),
        Format::Csv,
        CustomerPreset::Standard,
        today(),
    )
    .unwrap_err();
    assert!(matches!(err, FileError::DuplicateColumn { .. }), "{err}");
}

#[test]
fn fuzz_entry_points_accept_anything() {
    fuzz_customers(b"");
    fuzz_customers(b"\xff\xfe{\n,,,\"");
    fuzz_events(b"customer_id,kind,occurred_at\n\"unterminated");
    fuzz_events(b"{\"customer_id\":[[[[[[[[[[]]]]]]]]]]}\n9e999\n");
}

// ---- properties ----------------------------------------------------------------------

fn arb_date() -> impl Strategy<Value = NaiveDate> {
    // 1990-01-01 .. 2025-06-30
    (0i64..=12_964)
        .prop_map(|n| NaiveDate::from_ymd_opt(1990, 1, 1).unwrap() + chrono::Duration::days(n))
}

fn arb_customer() -> impl Strategy<Value = Customer> {
    (
        "[A-Za-z0-9][A-Za-z0-9_.-]{0,20}",
        arb_date(),
        "[A-Za-z][A-Za-z0-9 ]{0,12}[A-Za-z0-9]",
        (0u64..10_000_000).prop_map(|c| c as f64 / 100.0),
        prop::sample::select(ContractType::ALL),
        prop::option::of(arb_date()),
        prop::option::of(arb_date()),
        prop::sample::select(Channel::ALL),
        (any::<bool>(), any::<bool>(), any::<bool>(), any::<bool>()),
        prop::option::of(0i64..5000),
        prop::collection::btree_map("x_[a-z]{1,6}", "[A-Za-z0-9,;\"' ]{0,10}[A-Za-z0-9]", 0..4),
    )
        .prop_map(
            |(id, signup, plan, charge, ct, end, due, ch, (e, s, p, po), churn, attrs)| Customer {
                external_id: CustomerId::parse(&id).unwrap(),
                signup_date: signup,
                plan,
                monthly_charge: charge,
                contract_type: ct,
                contract_end: end,
                first_invoice_due: due,
                preferred_channel: ch,
                consent: Consent {
                    email: e,
                    sms: s,
                    phone: p,
                    post: po,
                },
                churned_on: churn.map(|days| {
                    (signup + chrono::Duration::days(days))
                        .min(today())
                        .max(signup)
                }),
                attributes: attrs
                    .into_iter()
                    .map(|(k, v)| (k, v.trim().to_owned()))
                    .filter(|(_, v)| !v.is_empty())
                    .collect::<BTreeMap<_, _>>(),
            },
        )
}

fn consent_text(c: &Consent) -> String {
    let mut parts = Vec::new();
    for (on, name) in [
        (c.email, "email"),
        (c.sms, "sms"),
        (c.phone, "phone"),
        (c.post, "post"),
    ] {
        if on {
            parts.push(name);
        }
    }
    if parts.is_empty() {
        "none".to_owned()
    } else {
        parts.join(";")
    }
}

fn opt_date(d: Option<NaiveDate>) -> String {
    d.map(|d| d.to_string()).unwrap_or_default()
}

fn customer_csv(c: &Customer) -> String {
    let mut header: Vec<String> = CUSTOMER_COLUMNS[..10]
        .iter()
        .map(|(n, _)| (*n).to_owned())
        .collect();
    let mut row = vec![
        c.external_id.to_string(),
        c.signup_date.to_string(),
        c.plan.clone(),
        c.monthly_charge.to_string(),
        c.contract_type.to_string(),
        opt_date(c.contract_end),
        opt_date(c.first_invoice_due),
        opt_date(c.churned_on),
        c.preferred_channel.to_string(),
        consent_text(&c.consent),
    ];
    for (k, v) in &c.attributes {
        header.push(k.clone());
        row.push(v.clone());
    }
    let mut w = csv::Writer::from_writer(Vec::new());
    w.write_record(&header).unwrap();
    w.write_record(&row).unwrap();
    String::from_utf8(w.into_inner().unwrap()).unwrap()
}

fn customer_ndjson(c: &Customer) -> String {
    let mut m = serde_json::Map::new();
    m.insert("customer_id".into(), c.external_id.to_string().into());
    m.insert("signup_date".into(), c.signup_date.to_string().into());
    m.insert("plan".into(), c.plan.clone().into());
    m.insert("monthly_charge".into(), c.monthly_charge.into());
    m.insert("contract_type".into(), c.contract_type.as_str().into());
    if let Some(d) = c.contract_end {
        m.insert("contract_end".into(), d.to_string().into());
    }
    m.insert(
        "first_invoice_due".into(),
        c.first_invoice_due.map(|d| d.to_string()).into(),
    );
    if let Some(d) = c.churned_on {
        m.insert("churned_on".into(), d.to_string().into());
    }
    m.insert(
        "preferred_channel".into(),
        c.preferred_channel.as_str().into(),
    );
    m.insert("consent".into(), consent_text(&c.consent).into());
    m.insert(
        "attributes".into(),
        serde_json::to_value(&c.attributes).unwrap(),
    );
    format!("\n{}\n", serde_json::Value::Object(m))
}

/// Generated lines for the row-accounting property: well-formed, malformed and blank.
fn arb_csv_line() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(String::new()),
        Just("   ".to_owned()),
        Just("c1,2025-01-01,basic,10".to_owned()),
        Just("c1,2025-01-01,basic,-10".to_owned()),
        Just(",,,".to_owned()),
        Just("c1,2025-01-01".to_owned()),
        "[a-z0-9 ,.:;-]{0,40}",
    ]
}

fn arb_ndjson_line() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(String::new()),
        Just(" \t ".to_owned()),
        Just(r#"{"customer_id":"c1","kind":"login","occurred_at":"2025-01-01"}"#.to_owned()),
        Just(
            r#"{"customer_id":"c1","signup_date":"2025-01-01","plan":"b","monthly_charge":1}"#
                .to_owned()
        ),
        Just("[]".to_owned()),
        Just("{".to_owned()),
        "[^\n]{0,40}",
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn parsers_never_panic_on_arbitrary_bytes(data in prop::collection::vec(any::<u8>(), 0..400)) {
        fuzz_customers(&data);
        fuzz_events(&data);
    }

    #[test]
    fn parsers_never_panic_on_arbitrary_text(
        body in "[ -~\n\r\"{}\\[\\],:\u{feff}é]{0,300}",
        header in prop::sample::select(vec![
            "customer_id,signup_date,plan,monthly_charge,contract_type,contract_end,churned_on,consent\n",
            "customer_id,kind,occurred_at,value,source,source_event_id\n",
            "customerID,gender,SeniorCitizen,Partner,Dependents,tenure,PhoneService,MultipleLines,InternetService,OnlineSecurity,OnlineBackup,DeviceProtection,TechSupport,StreamingTV,StreamingMovies,Contract,PaperlessBilling,PaymentMethod,MonthlyCharges,TotalCharges,Churn\n",
            "",
        ]),
    ) {
        let data = format!("{header}{body}");
        fuzz_customers(data.as_bytes());
        fuzz_events(data.as_bytes());
    }

    #[test]
    fn valid_customers_round_trip_through_csv_and_ndjson(c in arb_customer()) {
        let csv = customer_csv(&c);
        let p = parse_customers("c.csv", csv.as_bytes(), Format::Csv, CustomerPreset::Standard, today()).unwrap();
        prop_assert_eq!(&p.rejected, &vec![]);
        prop_assert_eq!(&p.rows, &vec![(2, c.clone())]);

        let nd = customer_ndjson(&c);
        let p = parse_customers("c.ndjson", nd.as_bytes(), Format::Ndjson, CustomerPreset::Standard, today()).unwrap();
        prop_assert_eq!(&p.rejected, &vec![]);
        prop_assert_eq!(&p.rows, &vec![(2, c)]);
    }

    #[test]
    fn every_non_blank_csv_line_is_a_row_or_a_rejection(
        lines in prop::collection::vec(arb_csv_line(), 0..30),
        eol in prop::sample::select(vec!["\n", "\r\n"]),
    ) {
        let data = format!("customer_id,signup_date,plan,monthly_charge{eol}{}", lines.join(eol));
        let want: Vec<u64> = lines
            .iter()
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty())
            .map(|(i, _)| i as u64 + 2)
            .collect();
        let p = parse_customers("c.csv", data.as_bytes(), Format::Csv, CustomerPreset::Standard, today()).unwrap();
        prop_assert_eq!(p.rows.len() + p.rejected.len(), want.len());
        let mut seen: Vec<u64> = p.rows.iter().map(|(l, _)| *l).chain(p.rejected.iter().map(|e| e.line)).collect();
        seen.sort_unstable();
        prop_assert_eq!(seen, want.clone());
        let events = data.replace("signup_date,plan,monthly_charge", "kind,occurred_at,value");
        let e = parse_events("e.csv", events.as_bytes(), Format::Csv, "s").unwrap();
        prop_assert_eq!(e.rows.len() + e.rejected.len(), want.len());
    }

    #[test]
    fn every_non_blank_ndjson_line_is_a_row_or_a_rejection(lines in prop::collection::vec(arb_ndjson_line(), 0..30)) {
        let data = lines.join("\n");
        let blank = |i: usize, l: &str| (if i == 0 { l.trim_start_matches('\u{feff}') } else { l }).trim().is_empty();
        let expected = lines.iter().enumerate().filter(|(i, l)| !blank(*i, l)).count();
        let p = parse_customers("c.ndjson", data.as_bytes(), Format::Ndjson, CustomerPreset::Standard, today()).unwrap();
        prop_assert_eq!(p.rows.len() + p.rejected.len(), expected);
        let mut seen: Vec<u64> = p.rows.iter().map(|(l, _)| *l).chain(p.rejected.iter().map(|e| e.line)).collect();
        seen.sort_unstable();
        let want: Vec<u64> = lines.iter().enumerate().filter(|(i, l)| !blank(*i, l)).map(|(i, _)| i as u64 + 1).collect();
        prop_assert_eq!(seen, want);
        let e = parse_events("e.ndjson", data.as_bytes(), Format::Ndjson, "s").unwrap();
        prop_assert_eq!(e.rows.len() + e.rejected.len(), expected);
    }
}
