//! Message templates: text with `{placeholder}`s (`{{` and `}}` for literal braces).
//! Which placeholders a rule may use is checked when the playbook is read, so rendering
//! never meets an unknown one.

use std::collections::BTreeMap;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TemplateError(pub String);

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Template {
    parts: Vec<Part>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Text(String),
    Placeholder(String),
}

impl Template {
    pub fn parse(text: &str) -> Result<Template, TemplateError> {
        let mut parts = Vec::new();
        let mut lit = String::new();
        let mut chars = text.chars().peekable();
        while let Some(ch) = chars.next() {
            match ch {
                '{' if chars.peek() == Some(&'{') => {
                    chars.next();
                    lit.push('{');
                }
                '}' if chars.peek() == Some(&'}') => {
                    chars.next();
                    lit.push('}');
                }
                '{' => {
                    let mut name = String::new();
                    loop {
                        match chars.next() {
                            Some('}') => break,
                            Some(c) if c.is_ascii_alphanumeric() || c == '_' => name.push(c),
                            Some(c) => {
                                return Err(TemplateError(format!(
                                    "placeholder {{{name}{c}... may contain only letters, digits and _ (write {{{{ for a literal brace)"
                                )));
                            }
                            None => {
                                return Err(TemplateError(format!(
                                    "placeholder {{{name} is not closed with }}"
                                )));
                            }
                        }
                    }
                    if name.is_empty() {
                        return Err(TemplateError("empty placeholder {}".into()));
                    }
                    if !lit.is_empty() {
                        parts.push(Part::Text(std::mem::take(&mut lit)));
                    }
                    parts.push(Part::Placeholder(name));
                }
                '}' => {
                    return Err(TemplateError(
                        "a lone } (write }} for a literal brace)".into(),
                    ));
                }
                c => lit.push(c),
            }
        }
        if !lit.is_empty() {
            parts.push(Part::Text(lit));
        }
        Ok(Template { parts })
    }

    pub fn placeholders(&self) -> impl Iterator<Item = &str> {
        self.parts.iter().filter_map(|p| match p {
            Part::Placeholder(n) => Some(n.as_str()),
            Part::Text(_) => None,
        })
    }

    /// Fills the placeholders; one without a value is left as written, `{name}`, so a
    /// reviewer sees it rather than a silent gap.
    pub fn render(&self, values: &BTreeMap<&str, String>) -> String {
        let mut out = String::new();
        for p in &self.parts {
            match p {
                Part::Text(t) => out.push_str(t),
                Part::Placeholder(n) => match values.get(n.as_str()) {
                    Some(v) => out.push_str(v),
                    None => {
                        out.push('{');
                        out.push_str(n);
                        out.push('}');
                    }
                },
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_renders_and_escapes() {
        let t = Template::parse("Hi {first_name}, {{not}} due {due_date}.").unwrap();
        assert_eq!(
            t.placeholders().collect::<Vec<_>>(),
            ["first_name", "due_date"]
        );
        let values = BTreeMap::from([("first_name", "Ana".to_owned())]);
        assert_eq!(t.render(&values), "Hi Ana, {not} due {due_date}.");
        for bad in ["{", "{a b}", "}", "{}"] {
            assert!(Template::parse(bad).is_err(), "{bad}");
        }
    }
}
