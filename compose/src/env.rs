//! `.env` files (beside the first compose file, or `--env-file`) and `env_file:` entries,
//! read as docker compose reads them:
//!
//! - `KEY=VALUE`, optionally after `export `; blank lines and `#` comments are skipped;
//! - an unquoted value ends at ` #` (an inline comment) and is trimmed;
//! - `'single quotes'` keep their text as it is;
//! - `"double quotes"` may span lines and understand `\n`, `\t`, `\"` and `\\`;
//! - unquoted and double-quoted values interpolate `${VAR}` from the variables above them
//!   in the file, then from `lookup` (the process environment);
//! - `KEY` alone takes its value from `lookup`, and is left out when that has none.
//!
//! A line that is none of these is an error naming its line number.

use crate::interpolate::{interpolate, InterpolateError};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EnvError {
    #[error("line {line}: {reason}")]
    Line { line: usize, reason: String },
    #[error("line {line}: {error}")]
    Interpolate {
        line: usize,
        error: InterpolateError,
    },
}

/// The variables of an env file's `text`, in order.
pub fn parse_env_file(
    text: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<Vec<(String, String)>, EnvError> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let lines: Vec<&str> = text.lines().collect();
    let mut vars: Vec<(String, String)> = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let number = i + 1;
        let line = lines[i].trim_end_matches('\r').trim();
        i += 1;
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let line = line.strip_prefix("export ").map_or(line, str::trim_start);
        let Some((key, raw)) = line.split_once('=') else {
            let key = line;
            if !is_key(key) {
                return Err(EnvError::Line {
                    line: number,
                    reason: format!("expected KEY=VALUE, found {line:?}"),
                });
            }
            if let Some(value) = lookup(key) {
                vars.push((key.to_string(), value));
            }
            continue;
        };
        let key = key.trim();
        if !is_key(key) {
            return Err(EnvError::Line {
                line: number,
                reason: format!(
                    "{key:?} is not a variable name (letters, digits, _, . and -, not starting with a digit)"
                ),
            });
        }
        let raw = raw.trim_start();
        let value = if let Some(body) = raw.strip_prefix('\'') {
            let Some(end) = body.find('\'') else {
                return Err(EnvError::Line {
                    line: number,
                    reason: format!("the value of {key} opens a ' it never closes"),
                });
            };
            body[..end].to_string()
        } else if let Some(body) = raw.strip_prefix('"') {
            // May go on over the next lines until the closing quote.
            let mut text = body.to_string();
            let end = loop {
                if let Some(end) = closing_quote(&text) {
                    break end;
                }
                let Some(next) = lines.get(i) else {
                    return Err(EnvError::Line {
                        line: number,
                        reason: format!("the value of {key} opens a \" it never closes"),
                    });
                };
                text.push('\n');
                text.push_str(next.trim_end_matches('\r'));
                i += 1;
            };
            let unescaped = unescape(&text[..end]);
            expand(&unescaped, &vars, lookup, number)?
        } else {
            let value = match raw.find(" #") {
                Some(comment) => &raw[..comment],
                None => raw,
            };
            expand(value.trim_end(), &vars, lookup, number)?
        };
        vars.retain(|(k, _)| k != key);
        vars.push((key.to_string(), value));
    }
    Ok(vars)
}

fn is_key(key: &str) -> bool {
    let mut chars = key.chars();
    chars
        .next()
        .is_some_and(|c| c == '_' || c.is_ascii_alphabetic())
        && chars.all(|c| c == '_' || c == '.' || c == '-' || c.is_ascii_alphanumeric())
}

/// The offset of the first `"` not escaped by a backslash.
fn closing_quote(s: &str) -> Option<usize> {
    let mut escaped = false;
    for (i, c) in s.char_indices() {
        match c {
            '\\' if !escaped => escaped = true,
            '"' if !escaped => return Some(i),
            _ => escaped = false,
        }
    }
    None
}

fn unescape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('n') => out.push('\n'),
            Some('t') => out.push('\t'),
            Some('r') => out.push('\r'),
            Some(other) => out.push(other),
            None => out.push('\\'),
        }
    }
    out
}

/// Interpolate `value` from the file's variables so far, then `lookup`.
fn expand(
    value: &str,
    vars: &[(String, String)],
    lookup: &dyn Fn(&str) -> Option<String>,
    line: usize,
) -> Result<String, EnvError> {
    let find = |name: &str| {
        vars.iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
            .or_else(|| lookup(name))
    };
    interpolate(value, &find)
        .map(|i| i.value)
        .map_err(|error| EnvError::Interpolate { line, error })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Vec<(String, String)>, EnvError> {
        parse_env_file(text, &|name| (name == "HOME").then(|| "/root".to_string()))
    }

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn the_forms_compose_reads() {
        let text = "\u{feff}# settings\r\n\
                    TAG=1.2\r\n\
                    export IMAGE = web:${TAG}   # the image\n\
                    \n\
                    QUOTED='keep ${TAG} as is'\n\
                    MULTI=\"line one\\nline \\\"two\\\"\"\n\
                    SPAN=\"a\n\
                    b\"\n\
                    HOME\n\
                    NOPE\n\
                    DATA=${HOME}/data\n\
                    TAG=1.3\n";
        assert_eq!(
            parse(text).expect("parses"),
            pairs(&[
                ("IMAGE", "web:1.2"),
                ("QUOTED", "keep ${TAG} as is"),
                ("MULTI", "line one\nline \"two\""),
                ("SPAN", "a\nb"),
                ("HOME", "/root"),
                ("DATA", "/root/data"),
                ("TAG", "1.3"),
            ])
        );
    }

    #[test]
    fn a_bad_line_is_named() {
        assert_eq!(
            parse("A=1\nthis is not a variable\n"),
            Err(EnvError::Line {
                line: 2,
                reason: "expected KEY=VALUE, found \"this is not a variable\"".into()
            })
        );
        assert!(parse("1A=x")
            .expect_err("bad key")
            .to_string()
            .starts_with("line 1:"));
        assert!(parse("A='open")
            .expect_err("open quote")
            .to_string()
            .contains("never closes"));
        assert!(parse("A=\"open\nB=2")
            .expect_err("open quote")
            .to_string()
            .contains("never closes"));
        let err = parse("\nA=${B:?B is required}").expect_err("required");
        assert_eq!(
            err.to_string(),
            "line 2: required variable B is missing a value: B is required"
        );
    }
}
