//! `${VAR}` and `${VAR:-default}` in the config text, before TOML parsing, so a variable
//! can stand for any value (a port list as well as a string). `$$` is a literal `$`.
//! Comment lines are left alone. Positions in errors refer to the original text: the
//! returned [`OffsetMap`] translates them back.

/// Translates byte offsets in the expanded text back to the original text.
#[derive(Debug, Default, Clone)]
pub struct OffsetMap {
    /// (start in expanded, start in original, length in expanded, length in original)
    spans: Vec<(usize, usize, usize, usize)>,
}

impl OffsetMap {
    pub fn to_original(&self, off: usize) -> usize {
        let mut delta: isize = 0;
        for &(exp, orig, exp_len, orig_len) in &self.spans {
            if off < exp {
                break;
            }
            if off < exp + exp_len {
                return orig;
            }
            delta = orig as isize + orig_len as isize - (exp + exp_len) as isize;
        }
        (off as isize + delta).max(0) as usize
    }
}

/// An unset variable or a malformed reference, at a byte offset of the original text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InterpolationError {
    pub offset: usize,
    pub message: String,
}

pub fn interpolate(
    text: &str,
    lookup: impl Fn(&str) -> Option<String>,
) -> (String, OffsetMap, Vec<InterpolationError>) {
    let mut out = String::with_capacity(text.len());
    let mut map = OffsetMap::default();
    let mut errors = Vec::new();
    let mut line_start = true;
    let mut in_comment = false;
    let bytes = text.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes[i];
        if c == b'\n' {
            line_start = true;
            in_comment = false;
        } else if line_start && !c.is_ascii_whitespace() {
            line_start = false;
            in_comment = c == b'#';
        }
        if c == b'$' && !in_comment {
            if bytes.get(i + 1) == Some(&b'$') {
                map.spans.push((out.len(), i, 1, 2));
                out.push('$');
                i += 2;
                continue;
            }
            if bytes.get(i + 1) == Some(&b'{') {
                let Some(close) = text[i..].find('}') else {
                    errors.push(InterpolationError {
                        offset: i,
                        message: "unterminated `${`: expected `}`".into(),
                    });
                    out.push_str(&text[i..]);
                    break;
                };
                let inner = &text[i + 2..i + close];
                let (name, default) = match inner.split_once(":-") {
                    Some((n, d)) => (n, Some(d)),
                    None => (inner, None),
                };
                let valid = !name.is_empty()
                    && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
                    && !name.as_bytes()[0].is_ascii_digit();
                let value = if !valid {
                    errors.push(InterpolationError {
                        offset: i,
                        message: format!("invalid environment variable name `{name}` in `${{{inner}}}`"),
                    });
                    String::new()
                } else {
                    match (lookup(name), default) {
                        (Some(v), _) => v,
                        (None, Some(d)) => d.to_string(),
                        (None, None) => {
                            errors.push(InterpolationError {
                                offset: i,
                                message: format!(
                                    "environment variable `{name}` is not set (use `${{{name}:-default}}` for a default)"
                                ),
                            });
                            String::new()
                        }
                    }
                };
                map.spans.push((out.len(), i, value.len(), close + 1));
                out.push_str(&value);
                i += close + 1;
                continue;
            }
        }
        // Copy one UTF-8 character.
        let len = utf8_len(c);
        out.push_str(&text[i..(i + len).min(text.len())]);
        i += len;
    }
    (out, map, errors)
}

fn utf8_len(first: u8) -> usize {
    match first {
        0x00..=0x7f => 1,
        0xc0..=0xdf => 2,
        0xe0..=0xef => 3,
        _ => 4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "PORT" => Some("8080".into()),
            "LONG" => Some("a-much-longer-value".into()),
            _ => None,
        }
    }

    #[test]
    fn expands_and_defaults() {
        let (s, _, e) = interpolate("a = ${PORT}\nb = \"${NOPE:-x y}\"\nc = \"$$HOME\"", env);
        assert!(e.is_empty());
        assert_eq!(s, "a = 8080\nb = \"x y\"\nc = \"$HOME\"");
    }

    #[test]
    fn unset_is_an_error_at_its_position() {
        let (_, _, e) = interpolate("a = 1\nb = \"${MISSING}\"", env);
        assert_eq!(e.len(), 1);
        assert_eq!(e[0].offset, 11);
        assert!(e[0].message.contains("MISSING"));
    }

    #[test]
    fn comments_are_not_interpolated() {
        let (s, _, e) = interpolate("# uses ${MISSING}\na = 1", env);
        assert!(e.is_empty());
        assert_eq!(s, "# uses ${MISSING}\na = 1");
    }

    #[test]
    fn offsets_map_back() {
        let text = "x = \"${LONG}\"\ny = oops";
        let (s, map, _) = interpolate(text, env);
        let bad = s.find("oops").unwrap();
        assert_eq!(map.to_original(bad), text.find("oops").unwrap());
        let inside = s.find("much").unwrap();
        assert_eq!(map.to_original(inside), text.find("${LONG}").unwrap());
    }
}
