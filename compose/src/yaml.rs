//! A compose file as a located tree: every mapping key and every value keeps the line and
//! column it came from, so interpolation, merging several files and the typed model can
//! all report `file:line`. YAML itself is serde-saphyr's (anchors, aliases and `<<` merge
//! keys resolved; a duplicate key is a located error; no panic on any input).

use std::fmt;

use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use serde_saphyr::Spanned;

/// Where something is in its file (1-based; 0 when unknown).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct Pos {
    pub line: u64,
    pub column: u64,
    /// Which of the loaded files it is in (an index the loader keeps; 0: the first).
    pub file: u16,
}

/// A value, where it is.
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    pub pos: Pos,
    pub value: Value,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Seq(Vec<Node>),
    /// Keys in file order, each where it is.
    Map(Vec<(Key, Node)>),
}

impl Node {
    /// The value under `key`, when this is a mapping holding it.
    pub fn get(&self, key: &str) -> Option<&Node> {
        match &self.value {
            Value::Map(entries) => entries.iter().find(|(k, _)| k.name == key).map(|(_, n)| n),
            _ => None,
        }
    }

    /// The value at `path` (mapping keys), as deep as it goes: where to point an error
    /// about that path, even when its last keys are absent.
    pub fn nearest(&self, path: &[&str]) -> &Node {
        let mut node = self;
        for key in path {
            match node.get(key) {
                Some(next) => node = next,
                None => break,
            }
        }
        node
    }
}

/// A mapping key, where it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Key {
    pub pos: Pos,
    pub name: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct YamlError {
    pub pos: Pos,
    pub message: String,
}

/// Parse one YAML document (a leading BOM and CRLF line ends are fine).
pub fn parse(text: &str) -> Result<Node, YamlError> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    // Booleans as compose (YAML 1.2) has them: `y`, `yes`, `on` are words, not true.
    let mut options = serde_saphyr::Options::default();
    options.strict_booleans = true;
    match serde_saphyr::from_str_with_options::<Spanned<Value>>(text, options) {
        Ok(s) => Ok(Node {
            pos: pos_of(&s),
            value: s.value,
        }),
        Err(e) => {
            let pos = e
                .location()
                .map(|l| Pos {
                    line: l.line(),
                    column: l.column(),
                    file: 0,
                })
                .unwrap_or_default();
            Err(YamlError {
                pos,
                message: readable(&e.without_snippet().to_string()),
            })
        }
    }
}

/// The parser's message in the user's terms (no parser options, no repeated location).
fn readable(message: &str) -> String {
    let message = message.split(" at line ").next().unwrap_or(message);
    if let Some(rest) = message.strip_prefix("duplicate mapping key: ") {
        let key = rest.split(',').next().unwrap_or(rest).trim();
        return format!("key {key} is set twice in the same mapping: keep one");
    }
    message.to_string()
}

fn pos_of<T>(s: &Spanned<T>) -> Pos {
    Pos {
        line: s.referenced.line(),
        column: s.referenced.column(),
        file: 0,
    }
}

/// Mark every position in `node` (keys too) as being in loaded file `file`.
pub fn stamp_file(node: &mut Node, file: u16) {
    node.pos.file = file;
    match &mut node.value {
        Value::Seq(items) => items.iter_mut().for_each(|n| stamp_file(n, file)),
        Value::Map(entries) => {
            for (key, value) in entries {
                key.pos.file = file;
                stamp_file(value, file);
            }
        }
        _ => {}
    }
}

impl Value {
    /// The kind, as an error names it.
    pub fn kind(&self) -> &'static str {
        match self {
            Value::Null => "null",
            Value::Bool(_) => "a boolean",
            Value::Int(_) => "an integer",
            Value::Float(_) => "a number",
            Value::Str(_) => "a string",
            Value::Seq(_) => "a list",
            Value::Map(_) => "a mapping",
        }
    }
}

impl<'de> Deserialize<'de> for Value {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(ValueVisitor)
    }
}

struct ValueVisitor;

impl<'de> Visitor<'de> for ValueVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any YAML value")
    }

    fn visit_unit<E: de::Error>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_none<E: de::Error>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        Value::deserialize(d)
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Int(v))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Value, E> {
        Ok(i64::try_from(v).map_or(Value::Float(v as f64), Value::Int))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Value, E> {
        Ok(Value::Float(v))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Value, E> {
        Ok(Value::Str(v.to_string()))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<Value, E> {
        Ok(Value::Str(v))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element::<Spanned<Value>>()? {
            items.push(Node {
                pos: pos_of(&item),
                value: item.value,
            });
        }
        Ok(Value::Seq(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut entries = Vec::new();
        while let Some(key) = map.next_key::<Spanned<KeyText>>()? {
            let value = map.next_value::<Spanned<Value>>()?;
            entries.push((
                Key {
                    pos: pos_of(&key),
                    name: key.value.0,
                },
                Node {
                    pos: pos_of(&value),
                    value: value.value,
                },
            ));
        }
        Ok(Value::Map(entries))
    }
}

/// A mapping key as text, whatever scalar it is (`80: 8080` has an integer key).
struct KeyText(String);

impl<'de> Deserialize<'de> for KeyText {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        match Value::deserialize(deserializer)? {
            Value::Str(s) => Ok(KeyText(s)),
            Value::Int(i) => Ok(KeyText(i.to_string())),
            Value::Bool(b) => Ok(KeyText(b.to_string())),
            Value::Float(f) => Ok(KeyText(f.to_string())),
            Value::Null => Ok(KeyText(String::new())),
            other => Err(de::Error::custom(format!(
                "a mapping key must be a plain value, not {}",
                other.kind()
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(node: &Node) -> &[(Key, Node)] {
        match &node.value {
            Value::Map(m) => m,
            other => panic!("not a mapping: {other:?}"),
        }
    }

    fn get<'a>(node: &'a Node, key: &str) -> &'a Node {
        &map(node)
            .iter()
            .find(|(k, _)| k.name == key)
            .unwrap_or_else(|| panic!("no {key}"))
            .1
    }

    #[test]
    fn keys_and_values_keep_their_lines_through_anchors_and_merges() {
        let text = "\u{feff}x-defaults: &defaults\r\n  restart: always\r\n  replicas: 2\r\n\
                    services:\r\n  web:\r\n    <<: *defaults\r\n    image: nginx:${TAG}\r\n    \
                    ports:\r\n      - \"80:80\"\r\n    8080: yes\r\n";
        let doc = parse(text).expect("parses");
        let services = get(&doc, "services");
        let web = get(services, "web");
        assert_eq!(get(web, "image").value, Value::Str("nginx:${TAG}".into()));
        assert_eq!(get(web, "image").pos.line, 7);
        assert_eq!(get(web, "replicas").value, Value::Int(2), "merged in");
        let image_key = map(web)
            .iter()
            .find(|(k, _)| k.name == "image")
            .expect("key");
        assert_eq!(image_key.0.pos.line, 7);
        assert!(
            map(web).iter().any(|(k, _)| k.name == "8080"),
            "an integer key is text"
        );
        match &get(web, "ports").value {
            Value::Seq(items) => assert_eq!(items[0].pos.line, 9),
            other => panic!("ports: {other:?}"),
        }
        assert_eq!(
            get(web, "8080").value,
            Value::Str("yes".into()),
            "yes is a word"
        );
        let doc = parse("labels:\n  y: '2'\n  on: true\n").expect("parses");
        let labels = map(get(&doc, "labels"));
        assert_eq!(labels[0].0.name, "y", "a key y stays y");
        assert_eq!(labels[1].0.name, "on");
        assert_eq!(labels[1].1.value, Value::Bool(true));
    }

    #[test]
    fn broken_yaml_is_a_located_error() {
        let err = parse("services:\n  web:\n    image: a\n    image: b\n").expect_err("duplicate");
        assert_eq!(err.pos.line, 4, "{err:?}");
        assert_eq!(
            err.message,
            "key image is set twice in the same mapping: keep one"
        );
        let err = parse("services:\n  web: [unclosed\n").expect_err("unclosed");
        assert!(err.pos.line >= 2, "{err:?}");
    }
}
