//! Event kinds: what a business records, and what each kind means to attune's rules.
//!
//! attune ships a vocabulary of fourteen kinds a telecoms or utility business records
//! (`usage`, `login`, `complaint_opened`, ...). Each built-in kind *is* a [`Meaning`]: the
//! thing attune's playbook and default features understand. A business brings its own kinds
//! (`message`, `purchase`, `thumbs_down`) by declaring them in the config, and may say what
//! each means (`purchase` means `payment`); a declared kind that means nothing is stored,
//! rolled up and used by features like any other, but no rule that needs a meaning (a
//! complaint, a bill, a payment) ever sees it.
//!
//! Every kind has a stable code, the `event_kinds` row the rollups are keyed by: the
//! built-in kinds have codes 1 to 14 everywhere; declared kinds get theirs from the
//! database the first time they are declared ([`FIRST_DECLARED_CODE`] and up) and keep
//! them, so kinds can be added later without touching history. [`EventKinds`] is the
//! catalog a process works with: the database's codes and the config's meanings. Pure.

use std::collections::HashMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use super::{InvalidValue, Meaning, invalid};

/// A kind's code in `event_kinds`, the key rollups and SQLite's events store it under.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct KindCode(pub u16);

impl fmt::Display for KindCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// The first code a declared kind gets; codes below it are kept for attune's own kinds.
pub const FIRST_DECLARED_CODE: u16 = 101;

/// The most kinds a business may declare.
pub const MAX_DECLARED: usize = 2000;

/// One kind the catalog knows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KindDef {
    pub code: KindCode,
    /// Lowercase, `a-z`, `0-9` and `_`.
    pub name: String,
    /// What the kind means to attune's rules; `None` for a declared kind that means nothing.
    pub meaning: Option<Meaning>,
    /// Whether events of this kind are accepted now: a built-in kind, or one the config
    /// declares. A kind declared once and no longer is still named (its events stay), but
    /// new events of it go to quarantine.
    pub accepted: bool,
    pub built_in: bool,
}

/// A kind the config declares, with what it means.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeclaredKind {
    pub name: String,
    pub meaning: Option<Meaning>,
}

impl DeclaredKind {
    /// Checks a declaration from the config: `name = "meaning"` (or `"none"`).
    pub fn parse(name: &str, meaning: &str) -> Result<Self, InvalidValue> {
        let name = normalize(name);
        check_name(&name)?;
        if let Ok(m) = name.parse::<Meaning>() {
            return Err(invalid(format!(
                "{name:?} is one of attune's own kinds (it means {m}); declare only your own kinds, and map a source's name onto a built-in kind in its [sources.kinds]"
            )));
        }
        let meaning = match meaning.trim() {
            "" | "none" => None,
            raw => Some(raw.parse::<Meaning>().map_err(|_| {
                invalid(format!(
                    "kind {name:?}: {raw:?} is not a meaning attune's rules understand; use \"none\" or one of: {}",
                    MEANING_NAMES.join(", ")
                ))
            })?),
        };
        Ok(Self { name, meaning })
    }
}

/// The names a declared kind may be given as its meaning (with the built-in kind each is).
pub const MEANING_NAMES: &[&str] = &[
    "contact",
    "login",
    "complaint_opened",
    "complaint_reopened",
    "complaint_resolved",
    "invoice",
    "payment",
    "payment_failed",
    "usage",
    "plan_change",
    "renewal",
    "meter_reading",
    "cancellation_requested",
    "churned",
];

/// A kind's name as events spell it, compared: trimmed, lowercase, `-` and spaces as `_`.
pub fn normalize(raw: &str) -> String {
    raw.trim().to_ascii_lowercase().replace(['-', ' '], "_")
}

/// A declared kind's name: `a-z`, `0-9` and `_`, starting with a letter, at most 48 (it
/// becomes part of feature names such as `days_since_message_sent`).
pub fn check_name(name: &str) -> Result<(), InvalidValue> {
    let ok_start = name.chars().next().is_some_and(|c| c.is_ascii_lowercase());
    let ok_rest = name
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if ok_start && ok_rest && name.len() <= 48 {
        Ok(())
    } else {
        Err(invalid(format!(
            "{name:?} is not a kind name; use lowercase letters, digits and _ (starting with a letter, at most 48 characters), e.g. \"message_sent\""
        )))
    }
}

/// A set of kinds, by code: what a feature, a churn definition or a rule reads.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct KindSet {
    bits: Vec<u64>,
}

impl KindSet {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn insert(&mut self, code: KindCode) {
        let (w, b) = (code.0 as usize / 64, code.0 % 64);
        if self.bits.len() <= w {
            self.bits.resize(w + 1, 0);
        }
        self.bits[w] |= 1 << b;
    }

    #[inline]
    pub fn contains(&self, code: KindCode) -> bool {
        self.bits
            .get(code.0 as usize / 64)
            .is_some_and(|w| w >> (code.0 % 64) & 1 == 1)
    }

    pub fn is_empty(&self) -> bool {
        self.bits.iter().all(|w| *w == 0)
    }

    pub fn extend(&mut self, other: &KindSet) {
        if self.bits.len() < other.bits.len() {
            self.bits.resize(other.bits.len(), 0);
        }
        for (a, b) in self.bits.iter_mut().zip(&other.bits) {
            *a |= b;
        }
    }

    /// The codes, in order.
    pub fn iter(&self) -> impl Iterator<Item = KindCode> + '_ {
        self.bits.iter().enumerate().flat_map(|(w, bits)| {
            (0..64u16)
                .filter(move |b| bits >> b & 1 == 1)
                .map(move |b| KindCode(w as u16 * 64 + b))
        })
    }
}

impl FromIterator<KindCode> for KindSet {
    fn from_iter<T: IntoIterator<Item = KindCode>>(iter: T) -> Self {
        let mut s = KindSet::new();
        for c in iter {
            s.insert(c);
        }
        s
    }
}

/// The kinds a process knows: codes from the database, meanings from the config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventKinds {
    /// By code.
    defs: Vec<KindDef>,
    /// Code -> index in `defs` + 1 (0: no such kind).
    index: Vec<u32>,
    by_name: HashMap<String, usize>,
}

impl Default for EventKinds {
    fn default() -> Self {
        Self::builtin()
    }
}

impl EventKinds {
    /// attune's own fourteen kinds and nothing else.
    pub fn builtin() -> Self {
        Self::assemble(Meaning::ALL.iter().map(|m| builtin_def(*m)).collect())
    }

    /// The catalog of a database: `stored` are the rows of `event_kinds` (code, name),
    /// `declared` what the config declares. Every declared kind must be stored already
    /// ([`missing`](Self::missing) says which are not, for the store to add).
    pub fn new(stored: &[(u16, String)], declared: &[DeclaredKind]) -> Result<Self, InvalidValue> {
        let mut defs: Vec<KindDef> = Meaning::ALL.iter().map(|m| builtin_def(*m)).collect();
        for (code, name) in stored {
            if let Some(b) = defs.iter().find(|d| d.code.0 == *code) {
                if b.name != *name {
                    return Err(invalid(format!(
                        "event_kinds row {code} is named {name:?}, but attune's kind {code} is {:?}: the database is not attune's or is damaged",
                        b.name
                    )));
                }
                continue;
            }
            defs.push(KindDef {
                code: KindCode(*code),
                name: name.clone(),
                meaning: None,
                accepted: false,
                built_in: false,
            });
        }
        for d in declared {
            let Some(def) = defs.iter_mut().find(|k| k.name == d.name) else {
                return Err(invalid(format!(
                    "kind {:?} is declared but has no code in event_kinds yet",
                    d.name
                )));
            };
            def.meaning = d.meaning;
            def.accepted = true;
        }
        defs.sort_by_key(|d| d.code);
        Ok(Self::assemble(defs))
    }

    /// The catalog as a fresh database would have it: declared kinds coded in the order
    /// given, after attune's own. For checking files without a database; never for data.
    pub fn provisional(declared: &[DeclaredKind]) -> Self {
        let stored: Vec<(u16, String)> = declared
            .iter()
            .enumerate()
            .map(|(i, d)| (FIRST_DECLARED_CODE + i as u16, d.name.clone()))
            .collect();
        Self::new(&stored, declared).expect("provisional codes are consistent")
    }

    /// Declared kinds that `stored` has no code for yet.
    pub fn missing<'a>(stored: &[(u16, String)], declared: &'a [DeclaredKind]) -> Vec<&'a str> {
        declared
            .iter()
            .filter(|d| !stored.iter().any(|(_, n)| *n == d.name))
            .map(|d| d.name.as_str())
            .collect()
    }

    fn assemble(defs: Vec<KindDef>) -> Self {
        let max = defs.iter().map(|d| d.code.0 as usize).max().unwrap_or(0);
        let mut index = vec![0u32; max + 1];
        let mut by_name = HashMap::with_capacity(defs.len() + 16);
        for (i, d) in defs.iter().enumerate() {
            index[d.code.0 as usize] = i as u32 + 1;
            by_name.insert(d.name.clone(), i);
        }
        // The built-in kinds' aliases (`visit`, `invoice`, `payment`, ...) name them too.
        for (i, d) in defs.iter().enumerate() {
            if d.built_in {
                for alias in d.meaning.map(Meaning::aliases).unwrap_or_default() {
                    by_name.entry((*alias).to_owned()).or_insert(i);
                }
            }
        }
        Self {
            defs,
            index,
            by_name,
        }
    }

    pub fn get(&self, code: KindCode) -> Option<&KindDef> {
        match self.index.get(code.0 as usize) {
            Some(&i) if i > 0 => Some(&self.defs[i as usize - 1]),
            _ => None,
        }
    }

    /// The kind's name, or `kind N` for a code the catalog does not know.
    pub fn name(&self, code: KindCode) -> std::borrow::Cow<'_, str> {
        match self.get(code) {
            Some(d) => d.name.as_str().into(),
            None => format!("kind {code}").into(),
        }
    }

    pub fn meaning(&self, code: KindCode) -> Option<Meaning> {
        self.get(code).and_then(|d| d.meaning)
    }

    /// Every kind, by code.
    pub fn iter(&self) -> impl Iterator<Item = &KindDef> {
        self.defs.iter()
    }

    /// The largest code known.
    pub fn max_code(&self) -> u16 {
        self.defs.last().map_or(0, |d| d.code.0)
    }

    /// A kind by name (any spelling events use, built-in aliases included), accepted or not.
    pub fn lookup(&self, raw: &str) -> Option<&KindDef> {
        self.by_name.get(&normalize(raw)).map(|&i| &self.defs[i])
    }

    /// The kind an event of kind `raw` is stored as: an accepted kind, or an error that says
    /// how to declare it.
    pub fn accept(&self, raw: &str) -> Result<&KindDef, InvalidValue> {
        match self.lookup(raw) {
            Some(d) if d.accepted => Ok(d),
            found => {
                let name = normalize(raw);
                let how = if check_name(&name).is_ok() {
                    format!(
                        "declare it in the config ([kinds] {name} = \"none\", or the meaning it has for attune's rules, e.g. \"contact\"), or map it onto a known kind in the source's [sources.kinds]; then `attune quarantine retry` stores it"
                    )
                } else {
                    "map it onto a known kind in the source's [sources.kinds]; then `attune quarantine retry` stores it".to_owned()
                };
                let was = if found.is_some() {
                    " (it was declared once; declare it again to accept new events)"
                } else {
                    ""
                };
                Err(invalid(format!(
                    "unknown event kind {:?}{was}; {how}. Known kinds: {}",
                    raw.trim(),
                    self.accepted_names().join(", ")
                )))
            }
        }
    }

    /// Names of the kinds events are accepted as.
    pub fn accepted_names(&self) -> Vec<&str> {
        self.defs
            .iter()
            .filter(|d| d.accepted)
            .map(|d| d.name.as_str())
            .collect()
    }

    /// Kinds that mean `m`: the built-in kind itself and every declared kind mapped to it.
    pub fn with_meaning(&self, m: Meaning) -> impl Iterator<Item = &KindDef> {
        self.defs.iter().filter(move |d| d.meaning == Some(m))
    }

    /// The kinds a name in a feature spec, a churn definition or a rule stands for: a
    /// meaning (`complaint_opened`, `contact`) stands for every kind that means it; any
    /// other name for the kind of that name.
    pub fn select(&self, raw: &str) -> Result<KindSet, InvalidValue> {
        if let Ok(m) = raw.parse::<Meaning>() {
            return Ok(self.with_meaning(m).map(|d| d.code).collect());
        }
        match self.lookup(raw) {
            Some(d) => Ok(std::iter::once(d.code).collect()),
            None => Err(invalid(format!(
                "unknown event kind {raw:?}; expected one of: {}",
                self.accepted_names().join(", ")
            ))),
        }
    }
}

fn builtin_def(m: Meaning) -> KindDef {
    KindDef {
        code: m.code(),
        name: m.as_str().to_owned(),
        meaning: Some(m),
        accepted: true,
        built_in: true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn declared(pairs: &[(&str, &str)]) -> Vec<DeclaredKind> {
        pairs
            .iter()
            .map(|(n, m)| DeclaredKind::parse(n, m).unwrap())
            .collect()
    }

    #[test]
    fn built_in_kinds_are_their_meanings_with_aliases() {
        let k = EventKinds::builtin();
        assert_eq!(k.accept("Visit").unwrap().name, "login");
        assert_eq!(
            k.accept(" invoice ").unwrap().code,
            Meaning::InvoiceIssued.code()
        );
        assert_eq!(k.meaning(KindCode(6)), Some(Meaning::ComplaintOpened));
        let e = k.accept("message").unwrap_err().to_string();
        assert!(e.contains("unknown event kind \"message\""), "{e}");
        assert!(e.contains("[kinds] message = \"none\""), "{e}");
        assert!(e.contains("attune quarantine retry"), "{e}");
    }

    #[test]
    fn declared_kinds_take_their_stored_codes_and_meanings() {
        let d = declared(&[("message", "none"), ("Ticket-Opened", "complaint")]);
        assert_eq!(d[1].name, "ticket_opened");
        let stored = vec![
            (101, "ticket_opened".to_owned()),
            (102, "message".to_owned()),
        ];
        assert_eq!(EventKinds::missing(&stored[..1], &d), vec!["message"]);
        let k = EventKinds::new(&stored, &d).unwrap();
        assert_eq!(k.accept("message").unwrap().code, KindCode(102));
        assert_eq!(k.meaning(KindCode(101)), Some(Meaning::ComplaintOpened));
        assert_eq!(k.meaning(KindCode(102)), None);
        // A meaning stands for every kind that means it.
        let complaints = k.select("complaint_opened").unwrap();
        assert!(complaints.contains(KindCode(6)) && complaints.contains(KindCode(101)));
        assert!(!complaints.contains(KindCode(102)));
        assert_eq!(
            k.select("message").unwrap().iter().collect::<Vec<_>>(),
            [KindCode(102)]
        );
        assert!(k.select("mesage").is_err());
    }

    #[test]
    fn a_kind_no_longer_declared_keeps_its_name_but_is_not_accepted() {
        let stored = vec![(101, "like".to_owned())];
        let k = EventKinds::new(&stored, &[]).unwrap();
        assert_eq!(k.name(KindCode(101)), "like");
        let e = k.accept("like").unwrap_err().to_string();
        assert!(e.contains("declared once"), "{e}");
        assert_eq!(k.name(KindCode(999)), "kind 999");
    }

    #[test]
    fn declarations_are_checked() {
        assert!(
            DeclaredKind::parse("login", "none")
                .unwrap_err()
                .to_string()
                .contains("attune's own")
        );
        assert!(
            DeclaredKind::parse("visit", "none").is_err(),
            "an alias is built in too"
        );
        assert!(DeclaredKind::parse("9lives", "none").is_err());
        let e = DeclaredKind::parse("dislike", "complain")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("complaint_opened") && e.contains("\"none\""),
            "{e}"
        );
        assert_eq!(
            DeclaredKind::parse("purchase", "payment").unwrap().meaning,
            Some(Meaning::PaymentMade)
        );
        let e = EventKinds::new(&[(3, "bill".to_owned())], &[]).unwrap_err();
        assert!(e.to_string().contains("invoice_issued"), "{e}");
    }

    #[test]
    fn kind_sets_hold_any_code() {
        let s: KindSet = [KindCode(1), KindCode(64), KindCode(2000)]
            .into_iter()
            .collect();
        assert!(s.contains(KindCode(64)) && s.contains(KindCode(2000)) && !s.contains(KindCode(2)));
        assert_eq!(s.iter().count(), 3);
        assert!(KindSet::new().is_empty());
    }
}
