//! Object keys matched as Go's `encoding/json` matches them: a key that differs from a
//! field's name only in case still sets the field. Clients written against dockerd send
//! `"name"` or `"NAME"` and it works there, so it must work here.
//!
//! [`canonical`] rewrites every key of a request body that names one of [`crate::model`]'s
//! fields, in any case, to the field's own spelling. The keys of free-form maps (labels,
//! driver options, sysctls) are the user's data and are left as they are.

use std::collections::HashMap;
use std::sync::LazyLock;

use serde_json::Value;

/// Maps whose keys are data, not field names.
const FREE_MAPS: &[&str] = &["Labels", "Options", "Sysctls", "DriverOpts"];

/// Lowercased field name -> the field's name, from every `rename = "..."` in the model.
static FIELDS: LazyLock<HashMap<String, &'static str>> = LazyLock::new(|| {
    let source = include_str!("model.rs");
    let mut fields = HashMap::new();
    for piece in source.split("rename = \"").skip(1) {
        if let Some(name) = piece.split('"').next() {
            // "ID" wins over "Id" (networks write `Id`, but no request reads it).
            let entry = fields.entry(name.to_ascii_lowercase()).or_insert(name);
            if name == "ID" {
                *entry = name;
            }
        }
    }
    fields
});

/// `value` with every field key in Go's spelling.
pub fn canonical(value: Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.into_iter()
                .map(|(key, inner)| {
                    let key = match FIELDS.get(&key.to_ascii_lowercase()) {
                        Some(name) => (*name).to_string(),
                        None => key,
                    };
                    let inner = if FREE_MAPS.contains(&key.as_str()) {
                        inner
                    } else {
                        canonical(inner)
                    };
                    (key, inner)
                })
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.into_iter().map(canonical).collect()),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn keys_in_any_case_become_the_field_names_and_labels_keep_theirs() {
        let body = json!({
            "name": "web",
            "LABELS": {"name": "x", "Mode": "y"},
            "taskTemplate": {"containerspec": {"IMAGE": "busybox", "env": ["A=1"]}},
            "mode": {"replicated": {"replicas": 2}},
            "unknownField": 1,
        });
        assert_eq!(
            canonical(body),
            json!({
                "Name": "web",
                "Labels": {"name": "x", "Mode": "y"},
                "TaskTemplate": {"ContainerSpec": {"Image": "busybox", "Env": ["A=1"]}},
                "Mode": {"Replicated": {"Replicas": 2}},
                "unknownField": 1,
            })
        );
    }

    #[test]
    fn the_field_list_is_read_from_the_model() {
        assert_eq!(FIELDS.get("nanocpus"), Some(&"NanoCPUs"));
        assert_eq!(FIELDS.get("id"), Some(&"ID"));
        assert_eq!(FIELDS.get("secretid"), Some(&"SecretID"));
        assert!(FIELDS.len() > 100, "{}", FIELDS.len());
    }
}
