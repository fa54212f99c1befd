//! Contacts of business accounts (operations users, decision makers, ...), read from CSV
//! or NDJSON with the same promise as the customer import: every data row is either a
//! contact or a [`RowError`] naming the file, the line and the column. Pure.

use std::collections::BTreeMap;
use std::io::Read;

use crate::domain::{Channel, Consent, CustomerId};
use crate::ingest::{FileError, Format, Parsed, RowError};

/// The contact columns (CSV header names and NDJSON keys), for the README.
pub const CONTACT_COLUMNS: &[(&str, &str)] = &[
    (
        "customer_id",
        "Required. The customer (account) the contact belongs to.",
    ),
    ("name", "Required. The contact's name."),
    (
        "role",
        "Required. One of the playbook's contact_roles, e.g. operations or decision_maker.",
    ),
    ("email", "The contact's email address."),
    ("phone", "The contact's phone number (for sms and phone)."),
    ("address", "The contact's postal address."),
    (
        "consent",
        "Channels the contact agreed to, e.g. email;phone, or all/none (default none); each needs its address.",
    ),
    (
        "preferred_channel",
        "email, sms, phone or post; default the first consented of those.",
    ),
];

const REQUIRED: &[&str] = &["customer_id", "name", "role"];

/// One contact as read from a file.
#[derive(Debug, Clone, PartialEq)]
pub struct ContactRecord {
    pub customer: CustomerId,
    pub name: String,
    pub role: String,
    pub email: Option<String>,
    pub phone: Option<String>,
    pub address: Option<String>,
    pub preferred_channel: Channel,
    pub consent: Consent,
}

struct Problem {
    column: Option<&'static str>,
    message: String,
}

fn at(column: &'static str, message: impl Into<String>) -> Problem {
    Problem {
        column: Some(column),
        message: message.into(),
    }
}

/// Lowercase, with spaces and hyphens as `_`: `Decision maker` is `decision_maker`.
pub fn normalise_role(raw: &str) -> String {
    raw.trim().to_ascii_lowercase().replace([' ', '-'], "_")
}

fn map(fields: &BTreeMap<String, String>, roles: &[String]) -> Result<ContactRecord, Problem> {
    let get = |k: &str| fields.get(k).map(|s| s.trim()).filter(|s| !s.is_empty());
    let customer = CustomerId::parse(get("customer_id").unwrap_or(""))
        .map_err(|e| at("customer_id", e.to_string()))?;
    let name = get("name")
        .ok_or_else(|| at("name", "value is missing; expected the contact's name"))?
        .to_owned();
    if name.chars().count() > 200 || name.chars().any(char::is_control) {
        return Err(at(
            "name",
            "expected a name of at most 200 characters without control characters",
        ));
    }
    let raw_role =
        get("role").ok_or_else(|| at("role", "value is missing; expected a contact role"))?;
    let role = normalise_role(raw_role);
    if !roles.contains(&role) {
        return Err(at(
            "role",
            format!(
                "unknown role {raw_role:?}; the playbook's contact roles are: {}",
                if roles.is_empty() {
                    "(none)".to_owned()
                } else {
                    roles.join(", ")
                }
            ),
        ));
    }
    let email = get("email").map(str::to_owned);
    if let Some(e) = &email {
        let ok = e.split_once('@').is_some_and(|(a, b)| {
            !a.is_empty() && b.contains('.') && !e.contains(char::is_whitespace)
        });
        if !ok {
            return Err(at(
                "email",
                format!("{e:?} is not an email address, e.g. ana@example.com"),
            ));
        }
    }
    let phone = get("phone").map(str::to_owned);
    if let Some(p) = &phone {
        let digits = p.chars().filter(char::is_ascii_digit).count();
        let ok = p
            .chars()
            .all(|c| c.is_ascii_digit() || " +-().".contains(c));
        if !ok || digits < 6 {
            return Err(at(
                "phone",
                format!("{p:?} is not a phone number, e.g. +44 20 7946 0000"),
            ));
        }
    }
    let address = get("address").map(str::to_owned);
    let consent = match get("consent") {
        None => Consent::default(),
        Some(raw) => Consent::parse_list(raw).map_err(|e| {
            at(
                "consent",
                format!("{e} (a list such as email;phone, or all, or none)"),
            )
        })?,
    };
    for (ch, has, what) in [
        (Channel::Email, email.is_some(), "email"),
        (Channel::Sms, phone.is_some(), "phone"),
        (Channel::Phone, phone.is_some(), "phone"),
        (Channel::Post, address.is_some(), "address"),
    ] {
        if consent.allows(ch) && !has {
            return Err(at(
                "consent",
                format!(
                    "consent includes {} but the contact has no {what}; add the {what} or remove {} from consent",
                    ch.as_str(),
                    ch.as_str()
                ),
            ));
        }
    }
    let preferred_channel = match get("preferred_channel") {
        Some(raw) => raw
            .parse::<Channel>()
            .map_err(|e| at("preferred_channel", e.to_string()))?,
        None => Channel::ALL
            .iter()
            .copied()
            .find(|c| consent.allows(*c))
            .unwrap_or(Channel::Email),
    };
    Ok(ContactRecord {
        customer,
        name,
        role,
        email,
        phone,
        address,
        preferred_channel,
        consent,
    })
}

/// Parses a contacts file; `roles` are the playbook's contact roles.
pub fn parse<R: Read>(
    file: &str,
    mut reader: R,
    format: Format,
    roles: &[String],
) -> Result<Parsed<ContactRecord>, FileError> {
    let mut parsed = Parsed {
        rows: Vec::new(),
        rejected: Vec::new(),
    };
    let mut bytes = Vec::new();
    reader
        .read_to_end(&mut bytes)
        .map_err(|e| FileError::Unreadable {
            file: file.to_owned(),
            reason: e.to_string(),
        })?;
    let text = String::from_utf8(bytes).map_err(|e| {
        let line = 1 + e.as_bytes()[..e.utf8_error().valid_up_to()]
            .iter()
            .filter(|b| **b == b'\n')
            .count() as u64;
        FileError::NotUtf8 {
            file: file.to_owned(),
            line,
        }
    })?;
    let mut push = |line: u64, fields: Result<BTreeMap<String, String>, Problem>| match fields
        .and_then(|f| map(&f, roles))
    {
        Ok(c) => parsed.rows.push((line, c)),
        Err(p) => parsed.rejected.push(RowError {
            file: file.to_owned(),
            line,
            column: p.column.map(str::to_owned),
            problem: p.message,
        }),
    };
    match format {
        Format::Csv => {
            let mut r = csv::ReaderBuilder::new()
                .flexible(true)
                .from_reader(text.as_bytes());
            let headers: Vec<String> = r
                .headers()
                .map_err(|e| FileError::Unreadable {
                    file: file.to_owned(),
                    reason: e.to_string(),
                })?
                .iter()
                .map(|h| h.trim().to_ascii_lowercase())
                .collect();
            let missing: Vec<String> = REQUIRED
                .iter()
                .filter(|c| !headers.iter().any(|h| h == *c))
                .map(|c| c.to_string())
                .collect();
            if !missing.is_empty() {
                return Err(FileError::MissingColumns {
                    file: file.to_owned(),
                    missing,
                    found: headers,
                });
            }
            for (i, h) in headers.iter().enumerate() {
                if headers[..i].contains(h) {
                    return Err(FileError::DuplicateColumn {
                        file: file.to_owned(),
                        column: h.clone(),
                    });
                }
            }
            for rec in r.records() {
                match rec {
                    Ok(rec) => {
                        let line = rec.position().map(|p| p.line()).unwrap_or(0);
                        if rec.iter().all(|f| f.trim().is_empty()) {
                            continue;
                        }
                        let fields = if rec.len() != headers.len() {
                            Err(Problem {
                                column: None,
                                message: format!(
                                    "has {} fields where the header has {}",
                                    rec.len(),
                                    headers.len()
                                ),
                            })
                        } else {
                            Ok(headers
                                .iter()
                                .cloned()
                                .zip(rec.iter().map(str::to_owned))
                                .collect())
                        };
                        push(line, fields);
                    }
                    Err(e) => {
                        let line = e.position().map(|p| p.line()).unwrap_or(0);
                        push(
                            line,
                            Err(Problem {
                                column: None,
                                message: format!("cannot be read as CSV: {e}"),
                            }),
                        );
                    }
                }
            }
        }
        Format::Ndjson => {
            for (i, raw) in text.lines().enumerate() {
                if raw.trim().is_empty() {
                    continue;
                }
                let line = i as u64 + 1;
                let fields = match serde_json::from_str::<serde_json::Value>(raw) {
                    Ok(serde_json::Value::Object(map)) => {
                        let mut out = BTreeMap::new();
                        let mut bad = None;
                        for (k, v) in map {
                            let key = k.trim().to_ascii_lowercase();
                            match v {
                                serde_json::Value::Null => {}
                                serde_json::Value::String(s) => {
                                    out.insert(key, s);
                                }
                                serde_json::Value::Number(n) => {
                                    out.insert(key, n.to_string());
                                }
                                serde_json::Value::Bool(b) => {
                                    out.insert(key, b.to_string());
                                }
                                _ => bad = Some(key),
                            }
                        }
                        match bad {
                            Some(k)
                                if REQUIRED.contains(&k.as_str())
                                    || CONTACT_COLUMNS.iter().any(|(c, _)| *c == k) =>
                            {
                                Err(Problem {
                                    column: CONTACT_COLUMNS
                                        .iter()
                                        .find(|(c, _)| *c == k)
                                        .map(|(c, _)| *c),
                                    message: "found a JSON array or object; expected text".into(),
                                })
                            }
                            _ => Ok(out),
                        }
                    }
                    Ok(_) => Err(Problem {
                        column: None,
                        message: "is not a JSON object".into(),
                    }),
                    Err(e) => Err(Problem {
                        column: None,
                        message: format!("is not valid JSON: {e}"),
                    }),
                };
                push(line, fields);
            }
        }
    }
    Ok(parsed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roles() -> Vec<String> {
        vec!["operations".into(), "decision_maker".into()]
    }

    #[test]
    fn csv_rows_and_line_accurate_errors() {
        let text = "customer_id,name,role,email,phone,address,consent\n\
            C1,Ana Silva,Decision maker,ana@example.com,,,email\n\
            C1,Bo,operations,,+44 20 7946 0000,,sms;phone\n\
            C2,Cy,ceo,cy@example.com,,,email\n\
            C2,Di,operations,not-an-email,,,email\n\
            C3,Ed,operations,,,,post\n\
            ,Fay,operations,,,,\n";
        let p = parse("contacts.csv", text.as_bytes(), Format::Csv, &roles()).unwrap();
        assert_eq!(p.rows.len(), 2);
        let (line, ana) = &p.rows[0];
        assert_eq!(
            (*line, ana.role.as_str(), ana.preferred_channel),
            (2, "decision_maker", Channel::Email)
        );
        assert_eq!(p.rows[1].1.preferred_channel, Channel::Sms);
        let errors: Vec<String> = p.rejected.iter().map(ToString::to_string).collect();
        assert_eq!(errors.len(), 4, "{errors:#?}");
        assert!(errors[0].starts_with("contacts.csv:4: column role: unknown role \"ceo\"; the playbook's contact roles are: operations, decision_maker"), "{}", errors[0]);
        assert!(
            errors[1].starts_with("contacts.csv:5: column email:"),
            "{}",
            errors[1]
        );
        assert!(errors[2].starts_with("contacts.csv:6: column consent: consent includes post but the contact has no address"), "{}", errors[2]);
        assert!(
            errors[3].starts_with("contacts.csv:7: column customer_id:"),
            "{}",
            errors[3]
        );
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(256))]

        /// Every data row is a contact or a rejection: none is lost, none panics.
        #[test]
        fn every_row_is_accounted_for(rows in proptest::collection::vec("[a-zA-Z0-9@.; ,\"_-]{0,40}", 0..20)) {
            let mut text = String::from("customer_id,name,role,email,phone,address,consent\n");
            for r in &rows {
                text.push_str(r);
                text.push('\n');
            }
            if let Ok(p) = parse("c.csv", text.as_bytes(), Format::Csv, &roles()) {
                let mut reader = csv::ReaderBuilder::new().flexible(true).from_reader(text.as_bytes());
                let data = reader
                    .records()
                    .filter(|r| r.as_ref().map(|r| !r.iter().all(|f| f.trim().is_empty())).unwrap_or(true))
                    .count();
                proptest::prop_assert_eq!(p.rows.len() + p.rejected.len(), data);
            }
            let _ = parse("c.ndjson", text.as_bytes(), Format::Ndjson, &roles());
        }
    }

    #[test]
    fn ndjson_and_missing_columns() {
        let text = "{\"customer_id\":\"C1\",\"name\":\"Ana\",\"role\":\"operations\",\"phone\":441234567,\"consent\":\"phone\"}\n\n[1]\n{\"customer_id\":\"C1\"\n";
        let p = parse("c.ndjson", text.as_bytes(), Format::Ndjson, &roles()).unwrap();
        assert_eq!(p.rows.len(), 1);
        assert_eq!(p.rows[0].1.preferred_channel, Channel::Phone);
        let errors: Vec<String> = p.rejected.iter().map(ToString::to_string).collect();
        assert!(
            errors[0].starts_with("c.ndjson:3: is not a JSON object"),
            "{errors:?}"
        );
        assert!(
            errors[1].starts_with("c.ndjson:4: is not valid JSON"),
            "{errors:?}"
        );
        let e = parse(
            "c.csv",
            "customer_id,name\nC1,Ana\n".as_bytes(),
            Format::Csv,
            &roles(),
        )
        .unwrap_err();
        assert!(
            e.to_string().contains("missing required column \"role\""),
            "{e}"
        );
    }
}
