//! Amounts of money as a reviewer and a customer read them: in the business's currency
//! (`[money] currency`, an ISO 4217 code), with its symbol and its number of minor units.
//! One formatter for every place that shows an amount (the desk, messages, drivers).

use super::InvalidValue;

/// The business's currency and how its amounts are written: `$1,234.56`, `€80.00`,
/// `¥1,235`, `CHF 80.00`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Currency {
    code: &'static str,
    symbol: String,
    decimals: usize,
}

impl Default for Currency {
    /// US dollars, the currency of the IBM Telco sample the shipped model was trained on.
    fn default() -> Self {
        Self::parse("USD", None).expect("USD is an ISO 4217 code")
    }
}

impl Currency {
    /// `code` is an ISO 4217 code (`EUR`, case-insensitive); `symbol` replaces the one the
    /// standard's tables give (`$` is also the symbol of CAD and AUD: say `CA$` if your
    /// customers would otherwise be unsure).
    pub fn parse(code: &str, symbol: Option<&str>) -> Result<Self, InvalidValue> {
        let upper = code.trim().to_ascii_uppercase();
        let iso = iso_currency::Currency::from_code(&upper).ok_or_else(|| {
            InvalidValue(format!(
                "{code:?} is not an ISO 4217 currency code; use three letters such as \"USD\", \"EUR\" or \"GBP\""
            ))
        })?;
        let symbol = match symbol {
            Some(s) if s.trim().is_empty() => {
                return Err(InvalidValue(
                    "the symbol is empty; leave it out to use the currency's own".into(),
                ));
            }
            Some(s) if s.chars().count() > 8 => {
                return Err(InvalidValue(format!(
                    "{s:?} is too long for a currency symbol (at most 8 characters)"
                )));
            }
            Some(s) => s.trim().to_owned(),
            None => iso.symbol().symbol,
        };
        Ok(Self {
            code: iso.code(),
            symbol,
            // Funds and special units (XAU) have no minor unit in the tables: 2 reads best.
            decimals: iso.exponent().map_or(2, usize::from),
        })
    }

    /// The ISO 4217 code: `EUR`.
    pub fn code(&self) -> &'static str {
        self.code
    }

    /// The symbol amounts are written with: `€`.
    pub fn symbol(&self) -> &str {
        &self.symbol
    }

    /// `1234.567` -> `$1,234.57`; `-5.5` -> `-$5.50`. A symbol that ends in a letter is set
    /// apart by a space (`CHF 80.00`, `kr 80.00`).
    pub fn format(&self, x: f64) -> String {
        if !x.is_finite() {
            return "—".into();
        }
        let gap = if self.symbol.ends_with(|c: char| c.is_alphabetic()) {
            " "
        } else {
            ""
        };
        let number = grouped(x.abs(), self.decimals);
        let negative = x < 0.0 && number.bytes().any(|b| (b'1'..=b'9').contains(&b));
        format!(
            "{}{}{gap}{number}",
            if negative { "-" } else { "" },
            self.symbol
        )
    }

    /// The amount without the symbol, for a column already headed with the currency:
    /// `1,234.57`.
    pub fn amount(&self, x: f64) -> String {
        if !x.is_finite() {
            return "—".into();
        }
        let number = grouped(x.abs(), self.decimals);
        let negative = x < 0.0 && number.bytes().any(|b| (b'1'..=b'9').contains(&b));
        format!("{}{number}", if negative { "-" } else { "" })
    }
}

/// `1234567.891`, 2 -> `1,234,567.89`.
pub fn grouped(x: f64, decimals: usize) -> String {
    let fixed = format!("{:.decimals$}", x.abs());
    let (whole, frac) = fixed.split_once('.').unwrap_or((&fixed, ""));
    let mut out = String::with_capacity(fixed.len() + whole.len() / 3);
    for (i, c) in whole.chars().enumerate() {
        if i > 0 && (whole.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    if !frac.is_empty() {
        out.push('.');
        out.push_str(frac);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amounts_read_in_the_business_currency() {
        let usd = Currency::default();
        assert_eq!(usd.code(), "USD");
        assert_eq!(usd.format(1234567.891), "$1,234,567.89");
        assert_eq!(usd.format(-5.5), "-$5.50");
        assert_eq!(usd.format(-0.001), "$0.00");
        assert_eq!(usd.format(0.0), "$0.00");
        assert_eq!(usd.format(f64::NAN), "—");
        assert_eq!(usd.amount(999.999), "1,000.00");
        let eur = Currency::parse("eur", None).unwrap();
        assert_eq!(eur.code(), "EUR");
        assert_eq!(eur.format(80.0), "€80.00");
        assert_eq!(Currency::parse("GBP", None).unwrap().format(25.0), "£25.00");
        assert_eq!(
            Currency::parse("JPY", None).unwrap().format(1234.6),
            "¥1,235"
        );
        assert_eq!(Currency::parse("KWD", None).unwrap().amount(1.5), "1.500");
        let chf = Currency::parse("CHF", Some("CHF")).unwrap();
        assert_eq!(chf.format(80.0), "CHF 80.00");
        assert_eq!(chf.format(-80.0), "-CHF 80.00");
    }

    #[test]
    fn a_currency_that_is_not_iso_4217_is_refused_with_examples() {
        for bad in ["EURO", "", "US$", "XYZ"] {
            let e = Currency::parse(bad, None).unwrap_err().to_string();
            assert!(
                e.contains("ISO 4217") && e.contains("\"EUR\""),
                "{bad}: {e}"
            );
        }
        assert!(Currency::parse("USD", Some(" ")).is_err());
        assert!(Currency::parse("USD", Some("dollars and cents")).is_err());
    }
}
