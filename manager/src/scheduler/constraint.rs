//! Placement constraints: `node.hostname==n1`, `node.labels.zone!=b`, ...

use shoal_proto::{Node, NodeRole};

/// Why a constraint expression cannot be used.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ConstraintError {
    #[error("invalid constraint {0:?}: use KEY==VALUE or KEY!=VALUE, e.g. node.role==manager")]
    Syntax(String),
    #[error("invalid constraint {expr:?}: unknown key {key:?} (use node.id, node.hostname, node.role, node.platform.os, node.platform.arch, node.labels.NAME or engine.labels.NAME)")]
    UnknownKey { expr: String, key: String },
    #[error("invalid constraint {0:?}: node.role must be manager or worker")]
    Role(String),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Op {
    Eq,
    Ne,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Key {
    Id,
    Hostname,
    Role,
    Os,
    Arch,
    NodeLabel(String),
    EngineLabel(String),
}

/// One parsed constraint.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Constraint {
    key: Key,
    op: Op,
    value: String,
    expr: String,
}

impl Constraint {
    pub fn parse(expr: &str) -> Result<Self, ConstraintError> {
        let (key, op, value) = if let Some((k, v)) = expr.split_once("==") {
            (k, Op::Eq, v)
        } else if let Some((k, v)) = expr.split_once("!=") {
            (k, Op::Ne, v)
        } else {
            return Err(ConstraintError::Syntax(expr.to_string()));
        };
        let (key, value) = (key.trim(), value.trim());
        if key.is_empty() || value.is_empty() || value.contains("==") || value.contains("!=") {
            return Err(ConstraintError::Syntax(expr.to_string()));
        }
        let parsed_key = match key {
            "node.id" => Key::Id,
            "node.hostname" => Key::Hostname,
            "node.role" => Key::Role,
            "node.platform.os" => Key::Os,
            "node.platform.arch" => Key::Arch,
            _ => {
                if let Some(label) = key.strip_prefix("node.labels.").filter(|l| !l.is_empty()) {
                    Key::NodeLabel(label.to_string())
                } else if let Some(label) =
                    key.strip_prefix("engine.labels.").filter(|l| !l.is_empty())
                {
                    Key::EngineLabel(label.to_string())
                } else {
                    return Err(ConstraintError::UnknownKey {
                        expr: expr.to_string(),
                        key: key.to_string(),
                    });
                }
            }
        };
        if parsed_key == Key::Role
            && !matches!(value.to_ascii_lowercase().as_str(), "manager" | "worker")
        {
            return Err(ConstraintError::Role(expr.to_string()));
        }
        Ok(Self {
            key: parsed_key,
            op,
            value: value.to_string(),
            expr: expr.to_string(),
        })
    }

    pub fn expr(&self) -> &str {
        &self.expr
    }

    /// Whether `node` satisfies the constraint. A label the node lacks matches `!=` only.
    pub fn matches(&self, node: &Node) -> bool {
        let description = node.description.as_ref();
        let actual: Option<String> = match &self.key {
            Key::Id => Some(node.id.clone()),
            Key::Hostname => Some(node.hostname().to_string()),
            Key::Role => Some(
                match node.role() {
                    NodeRole::Manager => "manager",
                    NodeRole::Worker => "worker",
                }
                .to_string(),
            ),
            Key::Os => description
                .and_then(|d| d.platform.as_ref())
                .map(|p| p.os.clone()),
            Key::Arch => description
                .and_then(|d| d.platform.as_ref())
                .map(|p| p.architecture.clone()),
            Key::NodeLabel(l) => node.spec.as_ref().and_then(|s| s.labels.get(l)).cloned(),
            Key::EngineLabel(l) => description.and_then(|d| d.engine_labels.get(l)).cloned(),
        };
        let equal = match (&self.key, actual) {
            (Key::Role | Key::Os | Key::Arch, Some(a)) => a.eq_ignore_ascii_case(&self.value),
            (_, Some(a)) => a == self.value,
            (_, None) => false,
        };
        match self.op {
            Op::Eq => equal,
            Op::Ne => !equal,
        }
    }
}

/// A service's placement constraints. They were validated when the spec was written, so
/// one that no longer parses places nothing rather than failing the caller.
pub fn of_service(service: &shoal_proto::Service) -> Vec<Constraint> {
    let exprs = service
        .spec
        .as_ref()
        .and_then(|s| s.task.as_ref())
        .and_then(|t| t.placement.as_ref())
        .map(|p| p.constraints.clone())
        .unwrap_or_default();
    parse_all(&exprs).unwrap_or_default()
}

/// Parse every constraint of a spec; the first bad one is the error.
pub fn parse_all(exprs: &[String]) -> Result<Vec<Constraint>, ConstraintError> {
    exprs.iter().map(|e| Constraint::parse(e)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use shoal_proto::{NodeDescription, NodeSpec, Platform};

    fn node() -> Node {
        Node {
            id: "abc".into(),
            spec: Some(NodeSpec {
                role: NodeRole::Manager as i32,
                labels: [("zone".to_string(), "a".to_string())].into(),
                ..Default::default()
            }),
            description: Some(NodeDescription {
                hostname: "n1".into(),
                platform: Some(Platform {
                    os: "linux".into(),
                    architecture: "x86_64".into(),
                }),
                engine_labels: [("disk".to_string(), "ssd".to_string())].into(),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn matching_table() {
        let cases = [
            ("node.id==abc", true),
            ("node.hostname==n1", true),
            ("node.hostname!=n1", false),
            ("node.role==manager", true),
            ("node.role==MANAGER", true),
            ("node.role!=worker", true),
            ("node.labels.zone==a", true),
            ("node.labels.zone==b", false),
            ("node.labels.rack==1", false),
            ("node.labels.rack!=1", true),
            ("node.platform.os==linux", true),
            ("node.platform.arch==x86_64", true),
            ("engine.labels.disk==ssd", true),
            (" node.hostname == n1 ", true),
        ];
        let n = node();
        for (expr, want) in cases {
            let c = Constraint::parse(expr).expect(expr);
            assert_eq!(c.matches(&n), want, "{expr}");
        }
    }

    #[test]
    fn bad_expressions_say_why() {
        assert!(matches!(
            Constraint::parse("node.hostname=n1"),
            Err(ConstraintError::Syntax(_))
        ));
        assert!(matches!(
            Constraint::parse("==n1"),
            Err(ConstraintError::Syntax(_))
        ));
        assert!(matches!(
            Constraint::parse("node.labels.==x"),
            Err(ConstraintError::UnknownKey { .. })
        ));
        assert!(matches!(
            Constraint::parse("node.colour==red"),
            Err(ConstraintError::UnknownKey { .. })
        ));
        assert!(matches!(
            Constraint::parse("node.role==boss"),
            Err(ConstraintError::Role(_))
        ));
    }
}
