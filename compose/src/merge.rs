//! Compose's merge rules, on located trees: several `-c` files merged in order, and a
//! service merged over the one it `extends`. Mappings merge key by key (the later value
//! wins a scalar); `command`, `entrypoint` and `healthcheck.test` are replaced whole;
//! `environment`, `labels` and the like merge as mappings whether written as lists or
//! maps; `volumes` merge by target, `secrets` and `configs` by target (or source),
//! `networks` and `depends_on` by name; every other list appends what it lacks. Each value
//! keeps the file and line it came from.

use crate::yaml::{Key, Node, Value};

/// How a list at a path merges.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Rule {
    /// The later list wins whole.
    Replace,
    /// `K=V` lists and maps alike, merged by key.
    AsMap,
    /// Names, as a list or as a map of name to options, merged by name.
    ByName,
    /// Mount-like entries, merged by their target (short `src:target` or `{target}`).
    ByTarget,
    /// The later list's entries appended unless already there.
    Append,
}

fn rule(path: &[&str]) -> Rule {
    match path {
        ["services", _, "command" | "entrypoint"] => Rule::Replace,
        ["services", _, "healthcheck", "test"] => Rule::Replace,
        ["services", _, "environment" | "labels" | "sysctls" | "extra_hosts" | "annotations"]
        | ["services", _, "deploy", "labels"]
        | ["services", _, "build", "args" | "labels"]
        | [_, _, "labels" | "driver_opts"] => Rule::AsMap,
        ["services", _, "networks" | "depends_on"] => Rule::ByName,
        ["services", _, "volumes" | "secrets" | "configs"] => Rule::ByTarget,
        _ => Rule::Append,
    }
}

/// `over` merged onto `base` (whole documents).
pub fn merge_documents(base: Node, over: Node) -> Node {
    merge(&mut Vec::new(), base, over)
}

/// Service `over` merged onto the service it extends (`base`).
pub fn merge_service(name: &str, base: Node, over: Node) -> Node {
    let mut path = vec!["services".to_string(), name.to_string()];
    merge(&mut path, base, over)
}

fn merge(path: &mut Vec<String>, base: Node, over: Node) -> Node {
    let here: Vec<&str> = path.iter().map(String::as_str).collect();
    let rule = rule(&here);
    let pos = over.pos;
    match (base.value, over.value) {
        (Value::Map(b), Value::Map(o)) if !matches!(rule, Rule::AsMap | Rule::ByName) => {
            let mut merged = b;
            for (key, value) in o {
                match merged.iter().position(|(k, _)| k.name == key.name) {
                    Some(i) => {
                        let old = merged[i].1.clone();
                        path.push(key.name.clone());
                        merged[i].1 = merge(path, old, value);
                        path.pop();
                    }
                    None => merged.push((key, value)),
                }
            }
            Node {
                pos,
                value: Value::Map(merged),
            }
        }
        (b, o) => {
            let base = Node {
                pos: base.pos,
                value: b,
            };
            let over = Node { pos, value: o };
            match (rule, &base.value, &over.value) {
                (Rule::AsMap, Value::Seq(_) | Value::Map(_), Value::Seq(_) | Value::Map(_)) => {
                    by_key(as_map(base), as_map(over), pos)
                }
                (Rule::ByName, Value::Seq(_) | Value::Map(_), Value::Seq(_) | Value::Map(_)) => {
                    by_key(names_as_map(base), names_as_map(over), pos)
                }
                (Rule::ByTarget, Value::Seq(b), Value::Seq(o)) => {
                    let mut merged = b.clone();
                    for item in o {
                        let target = target_of(item);
                        match merged
                            .iter()
                            .position(|m| target.is_some() && target_of(m) == target)
                        {
                            Some(i) => merged[i] = item.clone(),
                            None => merged.push(item.clone()),
                        }
                    }
                    Node {
                        pos,
                        value: Value::Seq(merged),
                    }
                }
                (Rule::Append, Value::Seq(b), Value::Seq(o)) => {
                    let mut merged = b.clone();
                    for item in o {
                        if !merged.iter().any(|m| same(m, item)) {
                            merged.push(item.clone());
                        }
                    }
                    Node {
                        pos,
                        value: Value::Seq(merged),
                    }
                }
                // Anything else: the later value wins.
                _ => over,
            }
        }
    }
}

/// Two entries equal in value (positions aside).
fn same(a: &Node, b: &Node) -> bool {
    match (&a.value, &b.value) {
        (Value::Seq(x), Value::Seq(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(a, b)| same(a, b))
        }
        (Value::Map(x), Value::Map(y)) => {
            x.len() == y.len()
                && x.iter()
                    .zip(y)
                    .all(|((ka, va), (kb, vb))| ka.name == kb.name && same(va, vb))
        }
        (x, y) => x == y,
    }
}

/// Map entries of `over` onto `base` by key (later wins), as one mapping.
fn by_key(base: Vec<(Key, Node)>, over: Vec<(Key, Node)>, pos: crate::yaml::Pos) -> Node {
    let mut merged = base;
    for (key, value) in over {
        match merged.iter().position(|(k, _)| k.name == key.name) {
            Some(i) => merged[i] = (key, value),
            None => merged.push((key, value)),
        }
    }
    Node {
        pos,
        value: Value::Map(merged),
    }
}

/// A `K=V` list (or a map) as mapping entries; `K` alone has no value.
fn as_map(node: Node) -> Vec<(Key, Node)> {
    match node.value {
        Value::Map(entries) => entries,
        Value::Seq(items) => items
            .into_iter()
            .filter_map(|item| {
                let Value::Str(text) = &item.value else {
                    return None;
                };
                let (k, v) = match text.split_once('=') {
                    Some((k, v)) => (k.to_string(), Value::Str(v.to_string())),
                    None => (text.clone(), Value::Null),
                };
                Some((
                    Key {
                        pos: item.pos,
                        name: k,
                    },
                    Node {
                        pos: item.pos,
                        value: v,
                    },
                ))
            })
            .collect(),
        _ => Vec::new(),
    }
}

/// A list of names (or a map of name to options) as mapping entries.
fn names_as_map(node: Node) -> Vec<(Key, Node)> {
    match node.value {
        Value::Map(entries) => entries,
        Value::Seq(items) => items
            .into_iter()
            .filter_map(|item| match &item.value {
                Value::Str(name) => Some((
                    Key {
                        pos: item.pos,
                        name: name.clone(),
                    },
                    Node {
                        pos: item.pos,
                        value: Value::Null,
                    },
                )),
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    }
}

/// Where a volume, secret or config entry goes in the container.
fn target_of(item: &Node) -> Option<String> {
    match &item.value {
        Value::Str(s) => {
            let parts: Vec<&str> = s.split(':').collect();
            Some(match parts.as_slice() {
                [one] => (*one).to_string(),
                [_, target, ..] => (*target).to_string(),
                [] => return None,
            })
        }
        Value::Map(_) => {
            let text = |key: &str| match item.get(key).map(|n| &n.value) {
                Some(Value::Str(s)) => Some(s.clone()),
                _ => None,
            };
            text("target").or_else(|| text("source"))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::yaml::parse;

    fn merged(base: &str, over: &str) -> String {
        let doc = merge_documents(parse(base).expect("base"), parse(over).expect("over"));
        crate::load::to_yaml(&doc).expect("yaml")
    }

    #[test]
    fn files_merge_as_compose_merges_them() {
        let base = "services:\n  web:\n    image: web:1\n    command: [a, b]\n    environment:\n      \
                    - A=1\n      - B=2\n    ports: ['80:80']\n    volumes: ['data:/data', '/x:/y']\n    \
                    networks: [front]\n    deploy:\n      replicas: 1\n      labels: [x=1]\n";
        let over = "services:\n  web:\n    image: web:2\n    command: [c]\n    environment:\n      \
                    B: 3\n      C: 4\n    ports: ['80:80', '443:443']\n    volumes: ['other:/data']\n    \
                    networks:\n      back: {aliases: [w]}\n    deploy:\n      labels: {y: '2'}\n  db:\n    image: db\n";
        let text = merged(base, over);
        let doc: serde_json::Value = serde_saphyr::from_str(&text).expect("reads back");
        let web = &doc["services"]["web"];
        assert_eq!(web["image"], "web:2");
        assert_eq!(web["command"], serde_json::json!(["c"]), "replaced whole");
        assert_eq!(web["environment"]["A"], "1");
        assert_eq!(web["environment"]["B"], 3, "the later value wins");
        assert_eq!(web["environment"]["C"], 4);
        assert_eq!(
            web["ports"],
            serde_json::json!(["80:80", "443:443"]),
            "appended, once"
        );
        assert_eq!(
            web["volumes"],
            serde_json::json!(["other:/data", "/x:/y"]),
            "by target"
        );
        assert!(web["networks"]["front"].is_null() && web["networks"]["back"].is_object());
        assert_eq!(web["deploy"]["replicas"], 1);
        assert_eq!(web["deploy"]["labels"]["x"], "1");
        assert_eq!(web["deploy"]["labels"]["y"], "2");
        assert_eq!(doc["services"]["db"]["image"], "db");
    }
}
