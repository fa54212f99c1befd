//! Activity event rows.

use std::io::Read;

use chrono::{DateTime, Utc};

use super::mapping::{EventMapping, map_event};
use super::record::{Problem, parse_with};
use super::{FileError, Format, Parsed};
use crate::domain::ActivityEvent;

const REQUIRED: &[&str] = &["customer_id", "kind", "occurred_at"];

/// Parses a whole file with attune's own columns. Timestamps are not checked against a
/// clock here (the pull pipeline does that, with [`map_event`] and the time of the pull).
pub(super) fn parse<R: Read>(
    file: &str,
    reader: R,
    format: Format,
    default_source: &str,
) -> Result<Parsed<ActivityEvent>, FileError> {
    let mapping = EventMapping::standard(default_source);
    parse_with(file, reader, format, REQUIRED, |r| {
        map_event(r, &mapping, DateTime::<Utc>::MAX_UTC).map_err(|rej| Problem {
            column: rej.column,
            problem: rej.problem,
            raw: None,
        })
    })
}

#[cfg(test)]
mod tests {
    use super::super::*;
    use crate::domain::Meaning;
    use chrono::{DateTime, Utc};

    fn t(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    #[test]
    fn events_csv_keeps_good_rows_and_reports_each_bad_one() {
        let csv = "\
customer_id,kind,occurred_at,value,source,source_event_id,agent
c1,login,2025-03-01T09:30:00Z,,web,ev-1,
c1,teleport,2025-03-01T09:30:00Z,,,,
c1,payment_made,yesterday,10,,,
c2,complaint_resolved,2025-03-02 10:00:00,4,,,alice

,usage,2025-03-03,1,,,
c3,complaint_resolved,2025-03-03,6,,,
c3,usage,2025-03-03,lots,,,
c3,invoice,2025-03-04,12.5,,,
";
        let parsed = parse_events("events.csv", csv.as_bytes(), Format::Csv, "billing").unwrap();
        let lines: Vec<u64> = parsed.rows.iter().map(|(l, _)| *l).collect();
        assert_eq!(lines, vec![2, 5, 10]);

        let e1 = &parsed.rows[0].1;
        assert_eq!(e1.customer.as_str(), "c1");
        assert_eq!(e1.kind, Meaning::Login.code());
        assert_eq!(e1.occurred_at, t("2025-03-01T09:30:00Z"));
        assert_eq!(e1.value, None);
        assert_eq!(e1.source, "web");
        assert_eq!(e1.source_event_id, "ev-1");
        assert!(e1.attributes.is_empty());

        let e2 = &parsed.rows[1].1;
        assert_eq!(e2.kind, Meaning::ComplaintResolved.code());
        assert_eq!(e2.occurred_at, t("2025-03-02T10:00:00Z"));
        assert_eq!(e2.value, Some(4.0));
        assert_eq!(e2.source, "billing");
        assert!(e2.source_event_id.starts_with("h:") && e2.source_event_id.len() == 18);
        assert_eq!(
            e2.attributes.get("agent").map(String::as_str),
            Some("alice")
        );

        let e3 = &parsed.rows[2].1;
        assert_eq!(e3.kind, Meaning::InvoiceIssued.code());
        assert_eq!(e3.occurred_at, t("2025-03-04T00:00:00Z"));

        let err = |line: u64, column: &str, problem: &str| RowError {
            file: "events.csv".into(),
            line,
            column: Some(column.into()),
            problem: problem.into(),
        };
        assert_eq!(
            parsed.rejected,
            vec![
                err(
                    3,
                    "kind",
                    "unknown event kind \"teleport\"; declare it in the config ([kinds] \
                     teleport = \"none\", or the meaning it has for attune's rules, e.g. \
                     \"contact\"), or map it onto a known kind in the source's \
                     [sources.kinds]; then `attune quarantine retry` stores it. Known kinds: \
                     usage, login, invoice_issued, payment_made, payment_failed, \
                     complaint_opened, complaint_resolved, complaint_reopened, support_contact, \
                     meter_reading, plan_change, contract_renewed, cancellation_requested, churned"
                ),
                err(
                    4,
                    "occurred_at",
                    "\"yesterday\" is not a timestamp; expected RFC 3339 (2025-03-01T09:30:00Z), \
                     YYYY-MM-DD HH:MM:SS (UTC), YYYY-MM-DD (midnight UTC) or unix seconds"
                ),
                err(7, "customer_id", "value is missing; expected a customer id"),
                err(
                    8,
                    "value",
                    "6 is not a satisfaction score; expected 1 to 5 for complaint_resolved"
                ),
                err(
                    9,
                    "value",
                    "\"lots\" is not a number; expected a decimal number such as 12.50"
                ),
            ]
        );
    }

    #[test]
    fn derived_event_ids_are_stable_across_spellings_and_formats() {
        let csv = "customer_id,kind,occurred_at,value\nc1,usage,2025-03-01,12.50\nc1,usage,2025-03-01,13\n";
        let nd = "{\"customer_id\":\"c1\",\"kind\":\"usage\",\"occurred_at\":\"2025-03-01 00:00:00\",\"value\":12.5}\n";
        let a = parse_events("a.csv", csv.as_bytes(), Format::Csv, "s").unwrap();
        let b = parse_events("b.ndjson", nd.as_bytes(), Format::Ndjson, "s").unwrap();
        let again = parse_events("a.csv", csv.as_bytes(), Format::Csv, "s").unwrap();
        assert_eq!(a.rows[0].1.source_event_id, b.rows[0].1.source_event_id);
        assert_eq!(a, again);
        assert_ne!(a.rows[0].1.source_event_id, a.rows[1].1.source_event_id);
    }

    #[test]
    fn ndjson_events_with_attributes_object() {
        let nd = "\
{\"customer_id\":\"c1\",\"kind\":\"payment\",\"occurred_at\":\"2025-03-01T09:30:00+01:00\",\"value\":\"20\",\"channel\":\"card\",\"attributes\":{\"currency\":\"EUR\",\"n\":2}}
{\"customer_id\":\"c1\",\"kind\":\"payment\",\"occurred_at\":\"2025-03-01\",\"attributes\":[1]}
";
        let parsed = parse_events("e.ndjson", nd.as_bytes(), Format::Ndjson, "pos").unwrap();
        assert_eq!(parsed.rows.len(), 1);
        let e = &parsed.rows[0].1;
        assert_eq!(e.kind, Meaning::PaymentMade.code());
        assert_eq!(e.occurred_at, t("2025-03-01T08:30:00Z"));
        assert_eq!(e.value, Some(20.0));
        assert_eq!(e.source, "pos");
        let attrs: Vec<(&str, &str)> = e
            .attributes
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        assert_eq!(
            attrs,
            vec![("channel", "card"), ("currency", "EUR"), ("n", "2")]
        );
        assert_eq!(parsed.rejected.len(), 1);
        assert_eq!(parsed.rejected[0].line, 2);
        assert_eq!(parsed.rejected[0].column.as_deref(), Some("attributes"));
    }

    #[test]
    fn missing_event_column_is_a_file_error() {
        let err = parse_events(
            "e.csv",
            &b"customer_id,occurred_at\nc1,2025-01-01\n"[..],
            Format::Csv,
            "s",
        )
        .unwrap_err();
        assert!(matches!(&err, FileError::MissingColumns { missing, .. } if missing == &["kind"]));
        assert!(
            err.to_string()
                .starts_with("e.csv: missing required column \"kind\""),
            "{err}"
        );
    }
}
