//! Variable interpolation in compose values, as docker compose does it:
//!
//! | form | gives |
//! | --- | --- |
//! | `$VAR`, `${VAR}` | its value; unset: empty (and reported in [`Interpolated::unset`]) |
//! | `${VAR:-default}` | `default` when VAR is unset or empty |
//! | `${VAR-default}` | `default` when VAR is unset |
//! | `${VAR:?message}` | an error naming VAR when it is unset or empty |
//! | `${VAR?message}` | an error naming VAR when it is unset |
//! | `${VAR:+other}` | `other` when VAR is set and not empty, else empty |
//! | `${VAR+other}` | `other` when VAR is set, else empty |
//! | `$$` | a literal `$` |
//!
//! Defaults, messages and replacements are interpolated themselves (`${A:-${B}}`). The
//! caller says where the string came from; errors carry the byte offset in it.

/// Where a variable's value comes from: the process environment, then the `.env` file.
pub type Lookup<'a> = dyn Fn(&str) -> Option<String> + 'a;

/// An interpolated string, and the variables it used that were not set (compose warns
/// about each: "The X variable is not set. Defaulting to a blank string.").
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Interpolated {
    pub value: String,
    pub unset: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InterpolateError {
    /// `${VAR?message}` or `${VAR:?message}` with VAR missing.
    #[error("required variable {name} is missing a value: {message}")]
    Required { name: String, message: String },
    #[error("invalid interpolation format at character {at}: {reason} (write $$ for a literal $)")]
    Syntax { at: usize, reason: String },
}

/// Interpolate every variable of `input`, looking values up with `lookup`.
pub fn interpolate(input: &str, lookup: &Lookup<'_>) -> Result<Interpolated, InterpolateError> {
    let mut out = Interpolated {
        value: String::with_capacity(input.len()),
        unset: Vec::new(),
    };
    expand(input, 0, lookup, &mut out)?;
    Ok(out)
}

fn is_name_start(c: char) -> bool {
    c == '_' || c.is_ascii_alphabetic()
}

fn is_name_char(c: char) -> bool {
    c == '_' || c.is_ascii_alphanumeric()
}

/// The length of the run of name characters `s` starts with.
fn name_len(s: &str) -> usize {
    s.char_indices()
        .find(|(_, c)| !is_name_char(*c))
        .map_or(s.len(), |(i, _)| i)
}

/// Expand `input` (which starts at offset `base` of the whole string) into `out`.
fn expand(
    input: &str,
    base: usize,
    lookup: &Lookup<'_>,
    out: &mut Interpolated,
) -> Result<(), InterpolateError> {
    let mut rest = input;
    let mut at = base;
    while let Some(dollar) = rest.find('$') {
        out.value.push_str(&rest[..dollar]);
        at += dollar;
        let after = &rest[dollar + 1..];
        let mut chars = after.chars();
        match chars.next() {
            Some('$') => {
                out.value.push('$');
                rest = &after[1..];
                at += 2;
            }
            Some('{') => {
                let close =
                    matching_brace(&after[1..]).ok_or_else(|| InterpolateError::Syntax {
                        at,
                        reason: "a ${ without its closing }".into(),
                    })?;
                let inner = &after[1..1 + close];
                braced(inner, at + 2, lookup, out)?;
                rest = &after[close + 2..];
                at += close + 3;
            }
            Some(c) if is_name_start(c) => {
                let len = name_len(after);
                let name = &after[..len];
                substitute(name, lookup, out);
                rest = &after[len..];
                at += len + 1;
            }
            // A lone `$` (at the end, or before something that is no name): kept, as
            // compose keeps it.
            _ => {
                out.value.push('$');
                rest = after;
                at += 1;
            }
        }
    }
    out.value.push_str(rest);
    Ok(())
}

/// The offset of the `}` closing an opened `${` in `s` (which starts after the `{`).
fn matching_brace(s: &str) -> Option<usize> {
    let mut depth = 0usize;
    let bytes = s.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'$' if bytes.get(i + 1) == Some(&b'$') => i += 1,
            b'$' if bytes.get(i + 1) == Some(&b'{') => {
                depth += 1;
                i += 1;
            }
            b'}' if depth == 0 => return Some(i),
            b'}' => depth -= 1,
            _ => {}
        }
        i += 1;
    }
    None
}

fn substitute(name: &str, lookup: &Lookup<'_>, out: &mut Interpolated) {
    match lookup(name) {
        Some(v) => out.value.push_str(&v),
        None => {
            if !out.unset.iter().any(|u| u == name) {
                out.unset.push(name.to_string());
            }
        }
    }
}

/// The inside of `${...}` (at offset `at`).
fn braced(
    inner: &str,
    at: usize,
    lookup: &Lookup<'_>,
    out: &mut Interpolated,
) -> Result<(), InterpolateError> {
    let len = name_len(inner);
    let name = &inner[..len];
    if name.is_empty() || !name.starts_with(is_name_start) {
        return Err(InterpolateError::Syntax {
            at,
            reason: format!("${{{inner}}} does not start with a variable name"),
        });
    }
    let op = &inner[len..];
    if op.is_empty() {
        substitute(name, lookup, out);
        return Ok(());
    }
    let (colon, op) = match op.strip_prefix(':') {
        Some(rest) => (true, rest),
        None => (false, op),
    };
    let mut kind = op.chars();
    let Some(symbol @ ('-' | '?' | '+')) = kind.next() else {
        return Err(InterpolateError::Syntax {
            at,
            reason: format!("${{{inner}}}: after the name comes }}, :-, -, :?, ?, :+ or +"),
        });
    };
    let arg = kind.as_str();
    let arg_at = at + len + usize::from(colon) + 1;
    let value = lookup(name);
    // Compose's "missing": unset, or also empty with the colon forms.
    let missing = match &value {
        None => true,
        Some(v) => colon && v.is_empty(),
    };
    match symbol {
        '-' if missing => expand(arg, arg_at, lookup, out)?,
        '-' => out.value.push_str(&value.unwrap_or_default()),
        '?' if missing => {
            let mut message = Interpolated {
                value: String::new(),
                unset: Vec::new(),
            };
            expand(arg, arg_at, lookup, &mut message)?;
            return Err(InterpolateError::Required {
                name: name.to_string(),
                message: if message.value.is_empty() {
                    format!("set {name} in the environment or the .env file")
                } else {
                    message.value
                },
            });
        }
        '?' => out.value.push_str(&value.unwrap_or_default()),
        _ if missing => {}
        _ => expand(arg, arg_at, lookup, out)?,
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use proptest::prelude::*;

    use super::*;

    fn env() -> HashMap<&'static str, &'static str> {
        HashMap::from([
            ("TAG", "1.2"),
            ("EMPTY", ""),
            ("HOST", "db"),
            ("PORT", "5432"),
        ])
    }

    fn run(input: &str) -> Result<Interpolated, InterpolateError> {
        let env = env();
        interpolate(input, &|name| env.get(name).map(|v| v.to_string()))
    }

    fn value(input: &str) -> String {
        run(input).expect("interpolates").value
    }

    #[test]
    fn every_form_compose_accepts() {
        assert_eq!(value("web:$TAG"), "web:1.2");
        assert_eq!(value("web:${TAG}-slim"), "web:1.2-slim");
        assert_eq!(value("${MISSING:-3.0}"), "3.0");
        assert_eq!(value("${EMPTY:-3.0}"), "3.0", "empty counts with the colon");
        assert_eq!(value("${EMPTY-3.0}"), "", "but not without it");
        assert_eq!(value("${MISSING-3.0}"), "3.0");
        assert_eq!(value("${TAG:+pinned}"), "pinned");
        assert_eq!(value("${EMPTY:+pinned}"), "");
        assert_eq!(value("${EMPTY+pinned}"), "pinned");
        assert_eq!(value("${MISSING+pinned}"), "");
        assert_eq!(value("${TAG:?needed}"), "1.2");
        assert_eq!(value("cost: $$5 and $${TAG}"), "cost: $5 and ${TAG}");
        assert_eq!(
            value("${MISSING:-${HOST}:${PORT}}"),
            "db:5432",
            "nested defaults"
        );
        assert_eq!(value("trailing $"), "trailing $");
        assert_eq!(value("$1 stays"), "$1 stays");
    }

    #[test]
    fn unset_variables_are_blank_and_reported_once() {
        let got = run("${A}/${B}/$A").expect("interpolates");
        assert_eq!(got.value, "//");
        assert_eq!(got.unset, ["A", "B"]);
    }

    #[test]
    fn a_required_variable_names_itself() {
        assert_eq!(
            run("${DB_PASSWORD:?set the database password}"),
            Err(InterpolateError::Required {
                name: "DB_PASSWORD".into(),
                message: "set the database password".into()
            })
        );
        assert_eq!(
            run("${EMPTY?}").map(|i| i.value),
            Ok(String::new()),
            "set but empty passes without the colon"
        );
        let err = run("x ${EMPTY:?}").expect_err("empty with colon");
        assert!(err.to_string().contains("EMPTY"), "{err}");
    }

    #[test]
    fn bad_syntax_says_where() {
        let err = run("image: ${TAG").expect_err("unclosed");
        assert_eq!(
            err,
            InterpolateError::Syntax {
                at: 7,
                reason: "a ${ without its closing }".into()
            }
        );
        assert!(matches!(run("${}"), Err(InterpolateError::Syntax { .. })));
        assert!(matches!(run("${9X}"), Err(InterpolateError::Syntax { .. })));
        assert!(matches!(
            run("${TAG%x}"),
            Err(InterpolateError::Syntax { .. })
        ));
    }

    proptest! {
        /// Whatever the input, interpolation returns (never panics), and text without a
        /// `$` comes back unchanged.
        #[test]
        fn any_input_returns(input in "\\PC{0,40}") {
            let _ = run(&input);
            if !input.contains('$') {
                prop_assert_eq!(value(&input), input);
            }
        }

        #[test]
        fn dollar_heavy_input_returns(input in "[$\\{\\}:?+\\-A-Z_a]{0,30}") {
            let _ = run(&input);
        }
    }
}
