//! Spread preferences (`Placement.spread`): `node.labels.zone`, then `node.labels.rack`, ...
//!
//! Hierarchical, as Swarm's: the nodes that passed the filters are grouped by the value of
//! the first descriptor and the task goes to the group running the fewest tasks of its
//! service; within that group the next descriptor splits again; the last group is left to
//! the plain spread ([`filter::spread`]). Nodes lacking the label form a group of their own.

use std::collections::BTreeMap;

use shoal_proto::Node;

use super::filter::{self, NodeLoad};

/// Why a spread descriptor cannot be used.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SpreadError {
    #[error("invalid spread preference {0:?}: use node.labels.NAME or engine.labels.NAME, e.g. node.labels.zone")]
    Descriptor(String),
}

/// One parsed spread descriptor.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SpreadKey {
    NodeLabel(String),
    EngineLabel(String),
}

impl SpreadKey {
    pub fn parse(descriptor: &str) -> Result<Self, SpreadError> {
        let d = descriptor.trim();
        let label = |prefix: &str| {
            d.strip_prefix(prefix)
                .filter(|l| !l.is_empty() && !l.chars().any(char::is_whitespace))
                .map(str::to_string)
        };
        if let Some(l) = label("node.labels.") {
            Ok(SpreadKey::NodeLabel(l))
        } else if let Some(l) = label("engine.labels.") {
            Ok(SpreadKey::EngineLabel(l))
        } else {
            Err(SpreadError::Descriptor(descriptor.to_string()))
        }
    }

    /// The node's value for this descriptor; `None` when the node lacks the label.
    pub fn value<'a>(&self, node: &'a Node) -> Option<&'a str> {
        match self {
            SpreadKey::NodeLabel(l) => node.spec.as_ref().and_then(|s| s.labels.get(l)),
            SpreadKey::EngineLabel(l) => node
                .description
                .as_ref()
                .and_then(|d| d.engine_labels.get(l)),
        }
        .map(String::as_str)
    }
}

/// Parse every descriptor of a spec; the first bad one is the error.
pub fn parse_all(descriptors: &[String]) -> Result<Vec<SpreadKey>, SpreadError> {
    descriptors.iter().map(|d| SpreadKey::parse(d)).collect()
}

/// Among the nodes that passed the filters, the one a task of `service_id` should go to.
/// Ties between groups go to labelled values in order, the unlabelled group last.
pub fn choose<'a>(
    service_id: &str,
    prefs: &[SpreadKey],
    fits: Vec<(&'a Node, &'a NodeLoad)>,
) -> Option<&'a Node> {
    let mut candidates = fits;
    for pref in prefs {
        // (lacks the label, value) -> (tasks of the service in the group, its nodes)
        type Group<'n> = (usize, Vec<(&'n Node, &'n NodeLoad)>);
        let mut groups: BTreeMap<(bool, &str), Group<'a>> = BTreeMap::new();
        for (node, load) in candidates {
            let value = pref.value(node);
            let group = groups
                .entry((value.is_none(), value.unwrap_or("")))
                .or_default();
            group.0 += load.by_service.get(service_id).copied().unwrap_or(0);
            group.1.push((node, load));
        }
        // min_by_key keeps the first of equals: the map's order breaks ties.
        candidates = groups
            .into_values()
            .min_by_key(|(count, _)| *count)
            .map(|(_, nodes)| nodes)?;
    }
    filter::spread(service_id, candidates.into_iter())
}

#[cfg(test)]
mod tests {
    use super::*;
    use shoal_proto::{NodeDescription, NodeSpec};

    fn node(id: &str, labels: &[(&str, &str)]) -> Node {
        Node {
            id: id.into(),
            spec: Some(NodeSpec {
                labels: labels
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
                ..Default::default()
            }),
            description: Some(NodeDescription {
                engine_labels: [("disk".to_string(), format!("{id}-disk"))].into(),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn load(of_service: usize, total: usize) -> NodeLoad {
        NodeLoad {
            tasks: total,
            by_service: [("svc".to_string(), of_service)].into(),
            ..Default::default()
        }
    }

    #[test]
    fn descriptors() {
        let cases: &[(&str, Option<SpreadKey>)] = &[
            (
                "node.labels.zone",
                Some(SpreadKey::NodeLabel("zone".into())),
            ),
            (
                " node.labels.zone ",
                Some(SpreadKey::NodeLabel("zone".into())),
            ),
            (
                "engine.labels.disk",
                Some(SpreadKey::EngineLabel("disk".into())),
            ),
            ("node.labels.", None),
            ("node.hostname", None),
            ("spread=node.labels.zone", None),
            ("zone", None),
            ("", None),
        ];
        for (input, want) in cases {
            assert_eq!(SpreadKey::parse(input).ok(), *want, "{input:?}");
        }
        assert_eq!(
            SpreadKey::parse("zone")
                .err()
                .map(|e| e.to_string())
                .as_deref(),
            Some(
                r#"invalid spread preference "zone": use node.labels.NAME or engine.labels.NAME, e.g. node.labels.zone"#
            )
        );
    }

    #[test]
    fn choices() {
        let zone = [SpreadKey::NodeLabel("zone".into())];
        let zone_rack = [
            SpreadKey::NodeLabel("zone".into()),
            SpreadKey::NodeLabel("rack".into()),
        ];
        let a1 = node("a1", &[("zone", "a"), ("rack", "1")]);
        let a2 = node("a2", &[("zone", "a"), ("rack", "2")]);
        let a3 = node("a3", &[("zone", "a"), ("rack", "2")]);
        let b1 = node("b1", &[("zone", "b"), ("rack", "1")]);
        let none = node("none", &[]);
        let disk = [SpreadKey::EngineLabel("disk".into())];
        // (case, preferences, nodes with (tasks of the service, all tasks), chosen)
        type Case<'a> = (
            &'a str,
            &'a [SpreadKey],
            Vec<(&'a Node, NodeLoad)>,
            Option<&'a str>,
        );
        let cases: Vec<Case> = vec![
            ("no nodes", &zone, vec![], None),
            (
                "no preference: fewest tasks of the service",
                &[],
                vec![(&a1, load(1, 1)), (&b1, load(0, 9))],
                Some("b1"),
            ),
            (
                "the zone with fewer tasks wins over a node with fewer tasks",
                &zone,
                vec![(&a1, load(0, 0)), (&a2, load(2, 2)), (&b1, load(1, 1))],
                Some("b1"),
            ),
            (
                "within the zone, the plain spread",
                &zone,
                vec![(&a1, load(1, 5)), (&a2, load(0, 3)), (&b1, load(2, 2))],
                Some("a2"),
            ),
            (
                "equal zones: the first value",
                &zone,
                vec![(&b1, load(0, 0)), (&a1, load(0, 4))],
                Some("a1"),
            ),
            (
                "nodes lacking the label are a group of their own",
                &zone,
                vec![(&a1, load(1, 1)), (&b1, load(1, 1)), (&none, load(0, 0))],
                Some("none"),
            ),
            (
                "the unlabelled group loses ties",
                &zone,
                vec![(&none, load(0, 0)), (&b1, load(0, 0))],
                Some("b1"),
            ),
            (
                "hierarchical: zone, then rack within it",
                &zone_rack,
                vec![
                    (&a1, load(1, 1)),
                    (&a2, load(0, 0)),
                    (&a3, load(1, 1)),
                    (&b1, load(3, 3)),
                ],
                // zone a has 2 < 3; in a, rack 1 has 1 and rack 2 has 1: rack 1 -> a1
                Some("a1"),
            ),
            (
                "hierarchical: the emptier rack of the zone",
                &zone_rack,
                vec![
                    (&a1, load(2, 2)),
                    (&a2, load(0, 0)),
                    (&a3, load(1, 1)),
                    (&b1, load(4, 4)),
                ],
                Some("a2"),
            ),
            (
                "engine labels",
                &disk,
                vec![(&a1, load(1, 1)), (&a2, load(0, 5))],
                Some("a2"),
            ),
        ];
        for (name, prefs, nodes, want) in cases {
            let fits: Vec<(&Node, &NodeLoad)> = nodes.iter().map(|(n, l)| (*n, l)).collect();
            assert_eq!(
                choose("svc", prefs, fits).map(|n| n.id.as_str()),
                want,
                "{name}"
            );
        }
    }
}
