//! The typed values of the configuration: each is parsed once, when the file and the
//! environment are read, with an error that says the expected shape; code that uses them
//! never parses again and never falls back. They are written back (`attune config check`)
//! as the user would write them, except secrets, which never print.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A value written as text in the file: parsed with `FromStr` when read, written back
/// with `Display`.
macro_rules! text_value {
    ($t:ty) => {
        impl<'de> Deserialize<'de> for $t {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let raw = String::deserialize(d)?;
                raw.parse().map_err(serde::de::Error::custom)
            }
        }

        impl Serialize for $t {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_str(self)
            }
        }
    };
}

/// An enum written as one of a few words: `$what` and `$hint` make the error.
macro_rules! text_enum {
    ($t:ident, $what:literal, $hint:literal, { $($v:ident => $word:literal),+ $(,)? }) => {
        impl FromStr for $t {
            type Err = String;
            fn from_str(raw: &str) -> Result<Self, String> {
                match raw.trim() {
                    $($word => Ok(Self::$v),)+
                    _ => Err(format!("{raw:?} is not {}; use {}", $what, $hint)),
                }
            }
        }

        impl fmt::Display for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(match self {
                    $(Self::$v => $word,)+
                })
            }
        }

        text_value!($t);
    };
}

/// A cron expression with seconds (`sec min hour day-of-month month day-of-week`, UTC),
/// kept beside the schedule it parses to.
#[derive(Clone)]
pub struct Cron {
    expr: String,
    schedule: cron::Schedule,
}

impl Cron {
    pub fn schedule(&self) -> &cron::Schedule {
        &self.schedule
    }

    /// The expression as written.
    pub fn as_str(&self) -> &str {
        &self.expr
    }
}

impl FromStr for Cron {
    type Err = String;
    fn from_str(expr: &str) -> Result<Self, String> {
        let schedule = cron::Schedule::from_str(expr).map_err(|e| {
            format!(
                "{expr:?} is not a cron expression ({e}); write six fields `sec min hour day-of-month month day-of-week`, e.g. \"0 */5 * * * *\" for every five minutes"
            )
        })?;
        Ok(Self {
            expr: expr.to_owned(),
            schedule,
        })
    }
}

impl PartialEq for Cron {
    fn eq(&self, other: &Self) -> bool {
        self.expr == other.expr
    }
}

impl PartialEq<&str> for Cron {
    fn eq(&self, other: &&str) -> bool {
        self.expr == *other
    }
}

impl fmt::Debug for Cron {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.expr, f)
    }
}

impl fmt::Display for Cron {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.expr)
    }
}

text_value!(Cron);

/// A time of day, written `HH:MM`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeOfDay(pub chrono::NaiveTime);

impl FromStr for TimeOfDay {
    type Err = String;
    fn from_str(raw: &str) -> Result<Self, String> {
        chrono::NaiveTime::parse_from_str(raw.trim(), "%H:%M")
            .map(TimeOfDay)
            .map_err(|_| format!("{raw:?} is not a time of day; write HH:MM, e.g. \"21:00\""))
    }
}

impl fmt::Display for TimeOfDay {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0.format("%H:%M"))
    }
}

text_value!(TimeOfDay);

/// An IANA time zone such as `Europe/London`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeZone(pub chrono_tz::Tz);

impl FromStr for TimeZone {
    type Err = String;
    fn from_str(raw: &str) -> Result<Self, String> {
        raw.trim()
            .parse::<chrono_tz::Tz>()
            .map(TimeZone)
            .map_err(|_| {
                format!(
                    "{raw:?} is not an IANA time zone name; write e.g. \"Europe/London\" or \"UTC\""
                )
            })
    }
}

impl fmt::Display for TimeZone {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0.name())
    }
}

text_value!(TimeZone);

/// A web address customers can open: `http://` or `https://`, a host, no spaces, and not
/// a documentation placeholder such as `example.com`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HelpUrl(String);

impl HelpUrl {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for HelpUrl {
    type Err = String;
    fn from_str(raw: &str) -> Result<Self, String> {
        let url = raw.trim();
        let host = url
            .strip_prefix("https://")
            .or_else(|| url.strip_prefix("http://"))
            .map(|rest| rest.split(['/', '?', '#']).next().unwrap_or(""))
            .unwrap_or("");
        if host.is_empty() || url.contains(char::is_whitespace) {
            return Err(format!(
                "{raw:?} is not a web address; write it in full, e.g. \"https://help.yourcompany.com\""
            ));
        }
        let bare = host.split(':').next().unwrap_or(host).to_ascii_lowercase();
        if ["example", "example.com", "example.org", "example.net"]
            .iter()
            .any(|e| bare == *e || bare.ends_with(&format!(".{e}")))
            || bare.ends_with(".example")
        {
            return Err(format!(
                "{raw:?} is a placeholder address customers cannot use; give your help page"
            ));
        }
        Ok(Self(url.to_owned()))
    }
}

impl fmt::Display for HelpUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

text_value!(HelpUrl);

/// How logs are written on stderr.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    /// Lines for people.
    #[default]
    Human,
    /// One JSON object a line, for a log collector.
    Json,
}

text_enum!(LogFormat, "a log format", "\"human\" or \"json\"", {
    Human => "human",
    Json => "json",
});

/// Where a source's events come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceKind {
    /// A query against another database, after a cursor.
    Sql,
    /// Files dropped into a directory.
    Files,
    /// Clients posting events to the desk's API.
    Http,
}

text_enum!(SourceKind, "a source type", "sql, files or http", {
    Sql => "sql",
    Files => "files",
    Http => "http",
});

/// A repeating series of observation days.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DayEvery {
    /// The first of each month (`"month_starts"`).
    MonthStart,
    /// Mondays (`"week_starts"`).
    WeekStart,
}

text_enum!(
    DayEvery,
    "a series of days",
    "\"month_starts\", \"week_starts\" or a list of dates such as [\"2026-01-01\", \"2026-02-15\"]",
    {
        MonthStart => "month_starts",
        WeekStart => "week_starts",
    }
);

/// The class weighting of `[training] class_weight`.
pub mod class_weight {
    use super::*;
    use crate::model::optim::ClassWeight;

    pub fn parse(raw: &str) -> Result<ClassWeight, String> {
        match raw.trim() {
            "none" => Ok(ClassWeight::None),
            "balanced" => Ok(ClassWeight::Balanced),
            _ => Err(format!(
                "{raw:?} is not a class weighting; use \"none\" or \"balanced\""
            )),
        }
    }

    pub fn name(w: ClassWeight) -> &'static str {
        match w {
            ClassWeight::None => "none",
            ClassWeight::Balanced => "balanced",
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<ClassWeight, D::Error> {
        parse(&String::deserialize(d)?).map_err(serde::de::Error::custom)
    }

    pub fn serialize<S: Serializer>(w: &ClassWeight, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(name(*w))
    }
}

/// The database: parsed when read; written back with any password hidden.
pub mod database_url {
    use super::*;
    use crate::store::DatabaseUrl;

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<DatabaseUrl, D::Error> {
        DatabaseUrl::parse(&String::deserialize(d)?).map_err(serde::de::Error::custom)
    }

    pub fn serialize<S: Serializer>(url: &DatabaseUrl, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&url.redacted())
    }
}

/// The address the desk listens on, `HOST:PORT`.
pub mod listen {
    use super::*;
    use std::net::SocketAddr;

    pub fn parse(raw: &str) -> Result<SocketAddr, String> {
        raw.trim().parse().map_err(|_| {
            format!(
                "{raw:?} is not an address to listen on; write HOST:PORT with an IP address, e.g. \"127.0.0.1:8080\" (port 0 picks a free port)"
            )
        })
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<SocketAddr, D::Error> {
        parse(&String::deserialize(d)?).map_err(serde::de::Error::custom)
    }

    pub fn serialize<S: Serializer>(a: &SocketAddr, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(a)
    }
}

/// The currency amounts are shown in: `[money] currency` and `symbol`, read as one.
pub mod money {
    use super::*;
    use crate::domain::Currency;

    #[derive(Serialize, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Keys {
        /// An ISO 4217 code: `USD`, `EUR`, `GBP`.
        #[serde(default = "usd")]
        currency: String,
        /// The symbol written before amounts; unset: the currency's own (`$`, `€`, `£`).
        #[serde(default)]
        symbol: Option<String>,
    }

    fn usd() -> String {
        "USD".into()
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Currency, D::Error> {
        let k = Keys::deserialize(d)?;
        Currency::parse(&k.currency, k.symbol.as_deref()).map_err(serde::de::Error::custom)
    }

    pub fn serialize<S: Serializer>(c: &Currency, s: S) -> Result<S::Ok, S::Error> {
        Keys {
            currency: c.code().to_owned(),
            symbol: Some(c.symbol().to_owned()),
        }
        .serialize(s)
    }
}

/// Durations written as whole numbers of a unit named by the key (`lease_secs = 15`).
macro_rules! duration_in {
    ($name:ident, $secs_per_unit:expr) => {
        pub mod $name {
            use super::*;

            pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
                let n = u64::deserialize(d)?;
                n.checked_mul($secs_per_unit)
                    .map(Duration::from_secs)
                    .ok_or_else(|| serde::de::Error::custom(format!("{n} is too long")))
            }

            pub fn serialize<S: Serializer>(v: &Duration, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_u64(v.as_secs() / $secs_per_unit)
            }
        }
    };
}

duration_in!(secs, 1);
duration_in!(minutes, 60);
duration_in!(hours, 3600);

/// Milliseconds (`poll_interval_ms = 1000`).
pub mod millis {
    use super::*;

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        Ok(Duration::from_millis(u64::deserialize(d)?))
    }

    pub fn serialize<S: Serializer>(v: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(u64::try_from(v.as_millis()).unwrap_or(u64::MAX))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_values_read_back_as_written() {
        for (raw, back) in [("21:00", "21:00"), (" 8:05", "08:05")] {
            assert_eq!(raw.parse::<TimeOfDay>().unwrap().to_string(), back);
        }
        assert_eq!(
            "Europe/London".parse::<TimeZone>().unwrap().to_string(),
            "Europe/London"
        );
        assert_eq!(
            "0 0 2 * * *".parse::<Cron>().unwrap().as_str(),
            "0 0 2 * * *"
        );
        for k in ["sql", "files", "http"] {
            assert_eq!(k.parse::<SourceKind>().unwrap().to_string(), k);
        }
        for k in ["month_starts", "week_starts"] {
            assert_eq!(k.parse::<DayEvery>().unwrap().to_string(), k);
        }
        for k in ["human", "json"] {
            assert_eq!(k.parse::<LogFormat>().unwrap().to_string(), k);
        }
        assert!("9pm".parse::<TimeOfDay>().unwrap_err().contains("HH:MM"));
        assert!(
            "Mars/Base"
                .parse::<TimeZone>()
                .unwrap_err()
                .contains("IANA")
        );
        assert!(
            "ftp"
                .parse::<SourceKind>()
                .unwrap_err()
                .contains("sql, files or http")
        );
        assert!("daily".parse::<Cron>().unwrap_err().contains("six fields"));
        assert!("xml".parse::<LogFormat>().unwrap_err().contains("human"));
        assert!("https://help.example.com".parse::<HelpUrl>().is_err());
    }
}
