//! Interpolation over a whole located tree: every string value (not keys, as compose) gets
//! its variables, and an error or a blank unset variable is reported with the file and
//! line it came from.

use std::fmt;

use crate::interpolate::{interpolate, InterpolateError, Lookup};
use crate::yaml::{Node, Pos, Value};

/// Where in which file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Place {
    pub file: String,
    pub pos: Pos,
}

impl fmt::Display for Place {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.file, self.pos.line)?;
        if self.pos.column > 0 {
            write!(f, ":{}", self.pos.column)?;
        }
        Ok(())
    }
}

/// A variable used somewhere that is not set: compose warns and uses a blank string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unset {
    pub name: String,
    pub place: Place,
}

impl fmt::Display for Unset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: the {} variable is not set; using a blank string",
            self.place, self.name
        )
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{place}: {error}")]
pub struct ResolveError {
    pub place: Place,
    pub error: InterpolateError,
}

/// `node` (of `file`) with every string value interpolated, and the unset variables met.
pub fn interpolate_tree(
    node: &Node,
    file: &str,
    lookup: &Lookup<'_>,
) -> Result<(Node, Vec<Unset>), ResolveError> {
    let mut unset = Vec::new();
    let node = walk(node, file, lookup, &mut unset)?;
    Ok((node, unset))
}

fn walk(
    node: &Node,
    file: &str,
    lookup: &Lookup<'_>,
    unset: &mut Vec<Unset>,
) -> Result<Node, ResolveError> {
    let place = || Place {
        file: file.to_string(),
        pos: node.pos,
    };
    let value = match &node.value {
        Value::Str(s) => {
            let done = interpolate(s, lookup).map_err(|error| ResolveError {
                place: place(),
                error,
            })?;
            unset.extend(done.unset.into_iter().map(|name| Unset {
                name,
                place: place(),
            }));
            Value::Str(done.value)
        }
        Value::Seq(items) => Value::Seq(
            items
                .iter()
                .map(|n| walk(n, file, lookup, unset))
                .collect::<Result<_, _>>()?,
        ),
        Value::Map(entries) => Value::Map(
            entries
                .iter()
                .map(|(k, n)| Ok((k.clone(), walk(n, file, lookup, unset)?)))
                .collect::<Result<_, _>>()?,
        ),
        other => other.clone(),
    };
    Ok(Node {
        pos: node.pos,
        value,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::yaml::parse;

    #[test]
    fn values_are_interpolated_and_problems_say_file_and_line() {
        let doc =
            parse("services:\n  web:\n    image: web:${TAG}\n    user: ${WHO}\n").expect("parses");
        let (done, unset) = interpolate_tree(&doc, "stack.yml", &|name| {
            (name == "TAG").then(|| "1.2".to_string())
        })
        .expect("resolves");
        let text = format!("{done:?}");
        assert!(text.contains("web:1.2"), "{text}");
        assert_eq!(unset.len(), 1);
        assert_eq!(
            unset[0].to_string(),
            "stack.yml:4:11: the WHO variable is not set; using a blank string"
        );
        let doc = parse("services:\n  db:\n    environment:\n      - PW=${PW:?set PW}\n")
            .expect("parses");
        let err = interpolate_tree(&doc, "stack.yml", &|_| None).expect_err("required");
        assert_eq!(
            err.to_string(),
            "stack.yml:4:9: required variable PW is missing a value: set PW"
        );
    }
}
