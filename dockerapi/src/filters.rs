//! Docker's `filters` query parameter: JSON mapping a key to its values, either
//! `{"name": {"web": true}}` (what clients send since API 1.22) or `{"name": ["web"]}`.
//! Values of one key match when any matches; keys all must match. A key a route does not
//! know is refused with 400, as dockerd refuses it ("invalid filter 'x'").

use std::collections::BTreeMap;

use crate::error::{ApiError, ApiResult};

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Filters(BTreeMap<String, Vec<String>>);

impl Filters {
    /// `raw` (the parameter's value, decoded), allowing only `known` keys.
    pub fn parse(raw: Option<&str>, known: &[&str]) -> ApiResult<Filters> {
        let Some(raw) = raw.filter(|r| !r.trim().is_empty()) else {
            return Ok(Filters::default());
        };
        let value: serde_json::Value = serde_json::from_str(raw).map_err(|e| {
            ApiError::bad_request(format!("invalid filters {raw:?}: {e}: send a JSON object"))
        })?;
        let serde_json::Value::Object(map) = value else {
            return Err(ApiError::bad_request(format!(
                "invalid filters {raw:?}: send a JSON object such as {{\"name\":{{\"web\":true}}}}"
            )));
        };
        let mut filters = BTreeMap::new();
        for (key, values) in map {
            if !known.contains(&key.as_str()) {
                return Err(ApiError::bad_request(format!(
                    "invalid filter '{key}': this route takes {}",
                    known.join(", ")
                )));
            }
            let values: Vec<String> = match values {
                serde_json::Value::Object(set) => set
                    .into_iter()
                    .filter(|(_, on)| on.as_bool().unwrap_or(false))
                    .map(|(v, _)| v)
                    .collect(),
                serde_json::Value::Array(list) => list
                    .into_iter()
                    .map(|v| match v {
                        serde_json::Value::String(s) => s,
                        other => other.to_string(),
                    })
                    .collect(),
                other => {
                    return Err(ApiError::bad_request(format!(
                        "invalid filter '{key}': {other} is neither a list nor a set of values"
                    )))
                }
            };
            filters.insert(key, values);
        }
        Ok(Filters(filters))
    }

    pub fn values(&self, key: &str) -> &[String] {
        self.0.get(key).map_or(&[], Vec::as_slice)
    }

    pub fn has(&self, key: &str) -> bool {
        self.0.contains_key(key)
    }

    /// True when `key` is not given, or `test` holds for one of its values.
    pub fn any(&self, key: &str, test: impl Fn(&str) -> bool) -> bool {
        match self.0.get(key) {
            None => true,
            Some(values) => values.iter().any(|v| test(v)),
        }
    }

    /// The `label` filter (`key` or `key=value`, every one must hold) against `labels`.
    pub fn labels_match<'a>(
        &self,
        key: &str,
        mut labels: impl FnMut(&str) -> Option<&'a str>,
    ) -> bool {
        self.values(key)
            .iter()
            .all(|wanted| match wanted.split_once('=') {
                Some((k, v)) => labels(k) == Some(v),
                None => labels(wanted).is_some(),
            })
    }
}

/// A boolean filter value as Docker reads one ("true", "1", "false", "0").
pub fn truth(value: &str) -> Option<bool> {
    match value {
        "true" | "1" => Some(true),
        "false" | "0" => Some(false),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_forms_are_read_and_unknown_keys_refused() {
        let f = Filters::parse(
            Some(r#"{"name":{"web":true},"label":["a=b","c"]}"#),
            &["name", "label"],
        )
        .expect("parse");
        assert_eq!(f.values("name"), ["web"]);
        assert!(f.labels_match("label", |k| match k {
            "a" => Some("b"),
            "c" => Some(""),
            _ => None,
        }));
        assert!(!f.labels_match("label", |k| (k == "a").then_some("x")));
        assert!(f.any("id", |_| false), "a filter not given matches");
        let err = Filters::parse(Some(r#"{"colour":["red"]}"#), &["name"]).expect_err("refused");
        assert_eq!(err.status, hyper::StatusCode::BAD_REQUEST);
        assert!(
            err.message.contains("invalid filter 'colour'"),
            "{}",
            err.message
        );
        assert!(Filters::parse(Some("not json"), &["name"]).is_err());
    }
}
