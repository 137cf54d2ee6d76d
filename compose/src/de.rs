//! Serde over the located tree: the typed model ([`crate::model`]) derives `Deserialize`,
//! and every error it raises comes back with the line and column of the value (or key)
//! it was about. Scalars are read as compose reads them after interpolation: "3" is a
//! number where a number is wanted, 3 is "3" where a string is.

use std::fmt;

use serde::de::{
    self, DeserializeSeed, Deserializer, EnumAccess, IntoDeserializer, MapAccess, SeqAccess,
    VariantAccess, Visitor,
};

use crate::yaml::{Node, Pos, Value};

/// A value the model could not take, where it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeError {
    /// Where the innermost value that failed is (None only while it climbs out).
    pub pos: Option<Pos>,
    /// The keys (and list indexes) from the document's root to the value: ["services",
    /// "web", "ports", "[0]"].
    pub path: Vec<String>,
    pub message: String,
}

impl DeError {
    fn new(pos: Pos, message: String) -> Self {
        DeError {
            pos: Some(pos),
            path: Vec::new(),
            message,
        }
    }

    /// The path as compose writes it: "services.web.ports[0]".
    pub fn path_text(&self) -> String {
        let mut out = String::new();
        for part in &self.path {
            if !out.is_empty() && !part.starts_with('[') {
                out.push('.');
            }
            out.push_str(part);
        }
        out
    }

    fn within(mut self, part: String) -> Self {
        self.path.insert(0, part);
        self
    }

    /// This error, placed at `pos` unless a deeper value placed it already.
    fn at(mut self, pos: Pos) -> Self {
        self.pos.get_or_insert(pos);
        self
    }
}

impl fmt::Display for DeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for DeError {}

impl de::Error for DeError {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        DeError {
            pos: None,
            path: Vec::new(),
            message: helpful(&msg.to_string()),
        }
    }
}

/// Serde's "unknown field `x`, expected one of ..." with the nearest name as a hint.
fn helpful(message: &str) -> String {
    let parse = |rest: &str| -> Option<(String, Vec<String>)> {
        let (name, rest) = rest.strip_prefix('`')?.split_once('`')?;
        let names = rest
            .split('`')
            .skip(1)
            .step_by(2)
            .map(str::to_string)
            .collect();
        Some((name.to_string(), names))
    };
    for (prefix, what) in [("unknown field ", "key"), ("unknown variant ", "value")] {
        if let Some((name, known)) = message.strip_prefix(prefix).and_then(parse) {
            let nearest = known
                .iter()
                .map(|k| (crate::keys::distance(&name, k), k))
                .filter(|(d, _)| *d <= 2)
                .min();
            let list = known.join(", ");
            return match nearest {
                Some((_, k)) => format!("unknown {what} {name}: did you mean {k}? (one of {list})"),
                None if known.is_empty() => format!("unknown {what} {name}"),
                None => format!("unknown {what} {name}: expected one of {list}"),
            };
        }
    }
    message.to_string()
}

/// Read `node` as a `T`.
pub fn from_node<T: de::DeserializeOwned>(node: &Node) -> Result<T, DeError> {
    T::deserialize(NodeDe(node)).map_err(|e: DeError| e.at(node.pos))
}

/// A node as a serde deserializer.
#[derive(Clone, Copy)]
pub struct NodeDe<'a>(pub &'a Node);

impl NodeDe<'_> {
    fn scalar_text(&self) -> Option<String> {
        match &self.0.value {
            Value::Str(s) => Some(s.clone()),
            Value::Int(i) => Some(i.to_string()),
            Value::Float(f) => Some(f.to_string()),
            Value::Bool(b) => Some(b.to_string()),
            _ => None,
        }
    }

    fn wrong(&self, expected: &str) -> DeError {
        DeError::new(
            self.0.pos,
            format!("expected {expected}, found {}", self.0.value.kind()),
        )
    }

    fn integer(&self, expected: &str) -> Result<i128, DeError> {
        match &self.0.value {
            Value::Int(i) => Ok(i128::from(*i)),
            Value::Str(s) => s
                .trim()
                .parse::<i128>()
                .map_err(|_| DeError::new(self.0.pos, format!("expected {expected}, found {s:?}"))),
            _ => Err(self.wrong(expected)),
        }
    }
}

macro_rules! integer {
    ($method:ident, $visit:ident, $ty:ty, $what:literal) => {
        fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
            let n = self.integer($what)?;
            let n = <$ty>::try_from(n).map_err(|_| {
                DeError::new(
                    self.0.pos,
                    format!("{n} is out of range: expected {}", $what),
                )
            })?;
            visitor.$visit(n).map_err(|e: DeError| e.at(self.0.pos))
        }
    };
}

impl<'de> Deserializer<'de> for NodeDe<'_> {
    type Error = DeError;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        let result = match &self.0.value {
            Value::Null => visitor.visit_unit(),
            Value::Bool(b) => visitor.visit_bool(*b),
            Value::Int(i) => visitor.visit_i64(*i),
            Value::Float(f) => visitor.visit_f64(*f),
            Value::Str(s) => visitor.visit_str(s),
            Value::Seq(items) => visitor.visit_seq(Seq {
                items: items.iter().enumerate(),
            }),
            Value::Map(entries) => visitor.visit_map(Map {
                entries: entries.iter(),
                value: None,
            }),
        };
        result.map_err(|e: DeError| e.at(self.0.pos))
    }

    fn deserialize_bool<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        let b = match &self.0.value {
            Value::Bool(b) => *b,
            Value::Str(s) => match s.trim().to_ascii_lowercase().as_str() {
                "true" | "yes" | "on" => true,
                "false" | "no" | "off" => false,
                _ => {
                    return Err(DeError::new(
                        self.0.pos,
                        format!("expected true or false, found {s:?}"),
                    ))
                }
            },
            _ => return Err(self.wrong("true or false")),
        };
        visitor.visit_bool(b).map_err(|e: DeError| e.at(self.0.pos))
    }

    integer!(deserialize_i8, visit_i8, i8, "an integer");
    integer!(deserialize_i16, visit_i16, i16, "an integer");
    integer!(deserialize_i32, visit_i32, i32, "an integer");
    integer!(deserialize_i64, visit_i64, i64, "an integer");
    integer!(deserialize_u8, visit_u8, u8, "a whole number (0 or more)");
    integer!(
        deserialize_u16,
        visit_u16,
        u16,
        "a whole number (0 or more)"
    );
    integer!(
        deserialize_u32,
        visit_u32,
        u32,
        "a whole number (0 or more)"
    );
    integer!(
        deserialize_u64,
        visit_u64,
        u64,
        "a whole number (0 or more)"
    );

    fn deserialize_f32<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_f64(visitor)
    }

    fn deserialize_f64<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        let f = match &self.0.value {
            Value::Float(f) => *f,
            #[allow(clippy::cast_precision_loss)]
            Value::Int(i) => *i as f64,
            Value::Str(s) => s
                .trim()
                .parse::<f64>()
                .map_err(|_| DeError::new(self.0.pos, format!("expected a number, found {s:?}")))?,
            _ => return Err(self.wrong("a number")),
        };
        visitor.visit_f64(f).map_err(|e: DeError| e.at(self.0.pos))
    }

    fn deserialize_str<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        match self.scalar_text() {
            Some(s) => visitor
                .visit_string(s)
                .map_err(|e: DeError| e.at(self.0.pos)),
            None => Err(self.wrong("a string")),
        }
    }

    fn deserialize_string<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_str(visitor)
    }

    fn deserialize_char<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_str(visitor)
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        match self.0.value {
            Value::Null => visitor.visit_none(),
            _ => visitor.visit_some(self),
        }
        .map_err(|e: DeError| e.at(self.0.pos))
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, DeError> {
        visitor
            .visit_newtype_struct(self)
            .map_err(|e: DeError| e.at(self.0.pos))
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, DeError> {
        let result = match &self.0.value {
            Value::Str(s) => visitor.visit_enum(s.as_str().into_deserializer()),
            Value::Map(entries) if entries.len() == 1 => visitor.visit_enum(Variant(&entries[0])),
            _ => return Err(self.wrong("one of the names listed")),
        };
        result.map_err(|e: DeError| e.at(self.0.pos))
    }

    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        match &self.0.value {
            Value::Seq(_) => self.deserialize_any(visitor),
            _ => Err(self.wrong("a list")),
        }
    }

    fn deserialize_map<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        match &self.0.value {
            Value::Map(_) => self.deserialize_any(visitor),
            _ => Err(self.wrong("a mapping")),
        }
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, DeError> {
        self.deserialize_map(visitor)
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        visitor.visit_unit()
    }

    serde::forward_to_deserialize_any! {
        i128 u128 bytes byte_buf unit unit_struct tuple tuple_struct identifier
    }
}

struct Seq<'a> {
    items: std::iter::Enumerate<std::slice::Iter<'a, Node>>,
}

impl<'de> SeqAccess<'de> for Seq<'_> {
    type Error = DeError;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, DeError> {
        match self.items.next() {
            Some((i, node)) => seed
                .deserialize(NodeDe(node))
                .map(Some)
                .map_err(|e: DeError| e.at(node.pos).within(format!("[{i}]"))),
            None => Ok(None),
        }
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.items.len())
    }
}

struct Map<'a> {
    entries: std::slice::Iter<'a, (crate::yaml::Key, Node)>,
    value: Option<&'a (crate::yaml::Key, Node)>,
}

impl<'de> MapAccess<'de> for Map<'_> {
    type Error = DeError;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, DeError> {
        match self.entries.next() {
            Some(entry) => {
                let key = &entry.0;
                self.value = Some(entry);
                seed.deserialize(key.name.as_str().into_deserializer())
                    .map(Some)
                    .map_err(|e: DeError| e.at(key.pos))
            }
            None => Ok(None),
        }
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, DeError> {
        let (key, node) = self
            .value
            .take()
            .ok_or_else(|| de::Error::custom("a value was read before its key"))?;
        seed.deserialize(NodeDe(node))
            .map_err(|e: DeError| e.at(node.pos).within(key.name.clone()))
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.entries.len())
    }
}

/// `{variant: value}`: an externally tagged enum.
struct Variant<'a>(&'a (crate::yaml::Key, Node));

impl<'de> EnumAccess<'de> for Variant<'_> {
    type Error = DeError;
    type Variant = Self;

    fn variant_seed<S: DeserializeSeed<'de>>(self, seed: S) -> Result<(S::Value, Self), DeError> {
        let key = &self.0 .0;
        let v = seed
            .deserialize(key.name.as_str().into_deserializer())
            .map_err(|e: DeError| e.at(key.pos))?;
        Ok((v, self))
    }
}

impl<'de> VariantAccess<'de> for Variant<'_> {
    type Error = DeError;

    fn unit_variant(self) -> Result<(), DeError> {
        match self.0 .1.value {
            Value::Null => Ok(()),
            _ => Err(NodeDe(&self.0 .1).wrong("no value")),
        }
    }

    fn newtype_variant_seed<S: DeserializeSeed<'de>>(self, seed: S) -> Result<S::Value, DeError> {
        seed.deserialize(NodeDe(&self.0 .1))
    }

    fn tuple_variant<V: Visitor<'de>>(self, _len: usize, visitor: V) -> Result<V::Value, DeError> {
        NodeDe(&self.0 .1).deserialize_seq(visitor)
    }

    fn struct_variant<V: Visitor<'de>>(
        self,
        _fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, DeError> {
        NodeDe(&self.0 .1).deserialize_map(visitor)
    }
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;

    use super::*;
    use crate::yaml::parse;

    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct Deploy {
        replicas: Option<u64>,
        #[serde(default)]
        labels: Vec<String>,
    }

    #[test]
    fn errors_point_at_the_value_or_key_that_failed() {
        let node = parse("replicas: 3\nlabels: [a, b]\n").expect("yaml");
        let d: Deploy = from_node(&node).expect("reads");
        assert_eq!(d.replicas, Some(3));

        let node = parse("replicas: \"4\"\n").expect("yaml");
        let d: Deploy = from_node(&node).expect("a string of digits is a number");
        assert_eq!(d.replicas, Some(4));

        let node = parse("labels: [a]\nreplicas: lots\n").expect("yaml");
        let e = from_node::<Deploy>(&node).expect_err("not a number");
        assert_eq!(
            e.pos,
            Some(Pos {
                line: 2,
                column: 11,
                file: 0
            })
        );
        assert!(e.message.contains("\"lots\""), "{e}");
        assert_eq!(e.path_text(), "replicas");

        let node = parse("labels:\n  - a\n  - [b]\n").expect("yaml");
        let e = from_node::<Deploy>(&node).expect_err("a list in a list");
        assert_eq!(e.pos.map(|p| p.line), Some(3));
        assert_eq!(e.path_text(), "labels[1]");

        let node = parse("replicas: 1\nreplica: 2\n").expect("yaml");
        let e = from_node::<Deploy>(&node).expect_err("unknown key");
        assert_eq!(
            e.pos,
            Some(Pos {
                line: 2,
                column: 1,
                file: 0
            })
        );
        assert!(
            e.message
                .starts_with("unknown key replica: did you mean replicas?"),
            "{e}"
        );

        let node = parse("replicas: -1\n").expect("yaml");
        let e = from_node::<Deploy>(&node).expect_err("negative");
        assert!(e.message.contains("out of range"), "{e}");
    }
}
