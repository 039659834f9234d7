//! `{{ field.path }}` templates over the record JSON (Kafka topics, Elasticsearch index
//! names) and a small strftime for date-suffixed indices.

use serde_json::Value;

#[derive(Debug, Clone, PartialEq)]
enum Part {
    Literal(String),
    /// A dotted path into the record JSON, e.g. `server.namespace`.
    Field(Vec<String>),
}

/// A parsed template. A field that is absent (or null, an object, an array) renders as
/// the template's fallback, and `render` reports it so the sink can count it.
#[derive(Debug, Clone, PartialEq)]
pub struct Template {
    parts: Vec<Part>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    #[error("unclosed `{{{{` at byte {0}")]
    Unclosed(usize),
    #[error("empty field name in `{{{{ }}}}` at byte {0}")]
    EmptyField(usize),
}

impl Template {
    pub fn parse(s: &str) -> Result<Template, TemplateError> {
        let mut parts = Vec::new();
        let mut rest = s;
        let mut offset = 0;
        while let Some(open) = rest.find("{{") {
            if open > 0 {
                parts.push(Part::Literal(rest[..open].to_string()));
            }
            let after = &rest[open + 2..];
            let close = after.find("}}").ok_or(TemplateError::Unclosed(offset + open))?;
            let name = after[..close].trim();
            if name.is_empty() || name.split('.').any(str::is_empty) {
                return Err(TemplateError::EmptyField(offset + open));
            }
            parts.push(Part::Field(name.split('.').map(str::to_string).collect()));
            let consumed = open + 2 + close + 2;
            offset += consumed;
            rest = &rest[consumed..];
        }
        if !rest.is_empty() {
            parts.push(Part::Literal(rest.to_string()));
        }
        Ok(Template { parts })
    }

    /// True when the template has no fields (no need to build the record JSON).
    pub fn is_static(&self) -> bool {
        self.parts.iter().all(|p| matches!(p, Part::Literal(_)))
    }

    /// Render with `doc`; field values go through `sanitize` (names have character rules),
    /// absent fields become `fallback`. Returns the text and whether a field was absent.
    pub fn render(&self, doc: Option<&Value>, fallback: &str, sanitize: fn(&str) -> String) -> (String, bool) {
        let mut out = String::new();
        let mut missing = false;
        for p in &self.parts {
            match p {
                Part::Literal(s) => out.push_str(s),
                Part::Field(path) => match doc.and_then(|d| lookup(d, path)).and_then(scalar_text) {
                    Some(v) => out.push_str(&sanitize(&v)),
                    None => {
                        missing = true;
                        out.push_str(fallback);
                    }
                },
            }
        }
        (out, missing)
    }
}

/// Follow a dotted path (already split) through objects.
pub fn lookup<'a, S: AsRef<str>>(doc: &'a Value, path: &[S]) -> Option<&'a Value> {
    path.iter().try_fold(doc, |v, k| v.as_object()?.get(k.as_ref()))
}

/// Strings as they are, numbers and booleans as JSON text; other values have no text.
pub fn scalar_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// Kafka topic names allow `[A-Za-z0-9._-]`; anything else becomes `_`.
pub fn kafka_topic_safe(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// Elasticsearch index names are lowercase without `\ / * ? " < > | , #` or spaces.
pub fn index_safe(s: &str) -> String {
    s.chars()
        .map(|c| match c {
            '\\' | '/' | '*' | '?' | '"' | '<' | '>' | '|' | ',' | '#' | ' ' | ':' => '_',
            c => c.to_ascii_lowercase(),
        })
        .collect()
}

/// A UTC calendar time, enough for index names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Civil {
    pub year: i64,
    pub month: u32,
    pub day: u32,
    pub hour: u32,
}

impl Civil {
    pub fn from_unix_ns(ns: u64) -> Civil {
        let secs = (ns / 1_000_000_000) as i64;
        let days = secs.div_euclid(86_400);
        let hour = (secs.rem_euclid(86_400) / 3600) as u32;
        // Howard Hinnant's civil_from_days.
        let z = days + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z.rem_euclid(146_097);
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
        let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
        let year = yoe + era * 400 + i64::from(month <= 2);
        Civil { year, month, day, hour }
    }

    /// Parse the start of an RFC 3339 timestamp ("2023-04-11T03:43:29Z"); UTC assumed.
    pub fn from_rfc3339_prefix(s: &str) -> Option<Civil> {
        let b = s.as_bytes();
        if b.len() < 13 || b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't' | b' ') {
            return None;
        }
        let num = |r: std::ops::Range<usize>| s.get(r)?.parse::<u32>().ok();
        let c = Civil {
            year: i64::from(num(0..4)?),
            month: num(5..7)?,
            day: num(8..10)?,
            hour: num(11..13)?,
        };
        ((1..=12).contains(&c.month) && (1..=31).contains(&c.day) && c.hour < 24).then_some(c)
    }
}

/// Directives `strftime_utc` understands.
pub const DATE_DIRECTIVES: &str = "%Y %m %d %H %%";

/// Check a date pattern; the error names the first unsupported directive.
pub fn check_date_pattern(pattern: &str) -> Result<(), String> {
    let mut chars = pattern.chars();
    while let Some(c) = chars.next() {
        if c == '%' {
            match chars.next() {
                Some('Y' | 'm' | 'd' | 'H' | '%') => {}
                Some(o) => {
                    return Err(format!(
                        "unsupported date directive `%{o}` (supported: {DATE_DIRECTIVES})"
                    ));
                }
                None => return Err("a lone `%` at the end (write `%%` for a percent sign)".into()),
            }
        }
    }
    Ok(())
}

/// Expand `%Y %m %d %H %%` in `pattern`; a checked pattern has nothing else.
pub fn strftime_utc(pattern: &str, t: Civil) -> String {
    let mut out = String::with_capacity(pattern.len() + 8);
    let mut chars = pattern.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('Y') => out.push_str(&format!("{:04}", t.year)),
            Some('m') => out.push_str(&format!("{:02}", t.month)),
            Some('d') => out.push_str(&format!("{:02}", t.day)),
            Some('H') => out.push_str(&format!("{:02}", t.hour)),
            Some('%') => out.push('%'),
            Some(o) => {
                out.push('%');
                out.push(o);
            }
            None => out.push('%'),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn renders_fields_and_fallback() {
        let t = Template::parse("perisco-{{ server.namespace }}-{{l7.response.http.code}}").unwrap();
        assert!(!t.is_static());
        let doc = json!({"server": {"namespace": "Shop Front"}, "l7": {"response": {"http": {"code": 503}}}});
        assert_eq!(
            t.render(Some(&doc), "unknown", kafka_topic_safe),
            ("perisco-Shop_Front-503".into(), false)
        );
        let doc = json!({"l7": {}});
        assert_eq!(
            t.render(Some(&doc), "unknown", kafka_topic_safe),
            ("perisco-unknown-unknown".into(), true)
        );
        assert!(Template::parse("static").unwrap().is_static());
    }

    #[test]
    fn rejects_bad_templates() {
        assert_eq!(Template::parse("a-{{ x"), Err(TemplateError::Unclosed(2)));
        assert_eq!(Template::parse("a-{{ }}"), Err(TemplateError::EmptyField(2)));
        assert_eq!(Template::parse("{{a..b}}"), Err(TemplateError::EmptyField(0)));
    }

    #[test]
    fn civil_dates() {
        // 2023-04-11T03:43:29.619285359Z
        let c = Civil::from_unix_ns(1_681_184_609_619_285_359);
        assert_eq!(
            c,
            Civil {
                year: 2023,
                month: 4,
                day: 11,
                hour: 3
            }
        );
        assert_eq!(
            Civil::from_unix_ns(0),
            Civil {
                year: 1970,
                month: 1,
                day: 1,
                hour: 0
            }
        );
        // leap day
        assert_eq!(
            Civil::from_unix_ns(951_782_400 * 1_000_000_000),
            Civil {
                year: 2000,
                month: 2,
                day: 29,
                hour: 0
            }
        );
        assert_eq!(Civil::from_rfc3339_prefix("2023-04-11T03:43:29.6Z"), Some(c));
        assert_eq!(Civil::from_rfc3339_prefix("2023-13-11T03"), None);
        assert_eq!(strftime_utc("perisco-%Y.%m.%d-%H%%", c), "perisco-2023.04.11-03%");
        assert!(check_date_pattern("perisco-%Y.%m.%d").is_ok());
        assert!(check_date_pattern("x-%j").unwrap_err().contains("%j"));
        assert!(check_date_pattern("x-%").is_err());
    }
}
