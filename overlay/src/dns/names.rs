//! The names a task can resolve: on every network it joins, each service's name and
//! aliases (its VIP, or under DNS round robin every serving task's address) and
//! `tasks.<name>` (every serving task's address). Only serving tasks are ever answered.

use std::collections::HashMap;
use std::net::Ipv4Addr;

/// One service's names on one network.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ServiceNames {
    pub name: String,
    pub aliases: Vec<String>,
    /// Its VIP on this network; `None` under DNS round robin.
    pub vip: Option<Ipv4Addr>,
    /// Addresses of its serving tasks on this network.
    pub tasks: Vec<Ipv4Addr>,
}

impl ServiceNames {
    fn is_called(&self, name: &str) -> bool {
        self.name.eq_ignore_ascii_case(name)
            || self.aliases.iter().any(|a| a.eq_ignore_ascii_case(name))
    }
}

/// One network's names, and which task holds which address on it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct NetworkNames {
    pub services: Vec<ServiceNames>,
    /// Every address on the network (serving or not) -> its task.
    pub tasks: HashMap<Ipv4Addr, String>,
}

/// Every network's names on this node, by network id.
pub type Names = HashMap<String, NetworkNames>;

/// What a name resolves to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resolution {
    /// A name of the swarm's: these addresses (none when no task of it serves now).
    Known(Vec<Ipv4Addr>),
    /// Not a name of the swarm's: ask the node's resolvers.
    Unknown,
}

/// Resolve `qname` for the task at `source` on network `network_id` (lookups run over every
/// network that task joins; an unknown source gets this network's names).
pub fn resolve(names: &Names, network_id: &str, source: Ipv4Addr, qname: &str) -> Resolution {
    let qname = qname.trim_end_matches('.');
    let task = names
        .get(network_id)
        .and_then(|n| n.tasks.get(&source))
        .cloned();
    let mut networks: Vec<&NetworkNames> = match &task {
        Some(task) => names
            .values()
            .filter(|n| n.tasks.values().any(|t| t == task))
            .collect(),
        None => Vec::new(),
    };
    if networks.is_empty() {
        networks.extend(names.get(network_id));
    }
    let (wants_tasks, name) = match qname.strip_prefix("tasks.") {
        Some(rest) => (true, rest),
        None => (false, qname),
    };
    let mut found = false;
    let mut addrs: Vec<Ipv4Addr> = Vec::new();
    for network in networks {
        for service in network.services.iter().filter(|s| s.is_called(name)) {
            found = true;
            match (wants_tasks, service.vip) {
                (false, Some(vip)) => addrs.push(vip),
                _ => addrs.extend(service.tasks.iter().copied()),
            }
        }
    }
    if !found {
        return Resolution::Unknown;
    }
    addrs.sort();
    addrs.dedup();
    Resolution::Known(addrs)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(last: u8) -> Ipv4Addr {
        Ipv4Addr::new(10, 0, 1, last)
    }

    fn table() -> Names {
        let front = NetworkNames {
            services: vec![
                ServiceNames {
                    name: "web".into(),
                    aliases: vec!["www".into()],
                    vip: Some(ip(2)),
                    tasks: vec![ip(5), ip(6)],
                },
                ServiceNames {
                    name: "dns".into(),
                    aliases: vec![],
                    vip: None,
                    tasks: vec![ip(8), ip(7)],
                },
                ServiceNames {
                    name: "idle".into(),
                    aliases: vec![],
                    vip: None,
                    tasks: vec![],
                },
            ],
            tasks: HashMap::from([
                (ip(5), "t5".into()),
                (ip(6), "t6".into()),
                (ip(9), "client".into()),
            ]),
        };
        let back = NetworkNames {
            services: vec![ServiceNames {
                name: "db".into(),
                aliases: vec![],
                vip: Some(Ipv4Addr::new(10, 0, 2, 2)),
                tasks: vec![Ipv4Addr::new(10, 0, 2, 5)],
            }],
            tasks: HashMap::from([(Ipv4Addr::new(10, 0, 2, 9), "client".into())]),
        };
        HashMap::from([("front".into(), front), ("back".into(), back)])
    }

    #[test]
    fn names_resolve_to_vips_tasks_and_round_robin() {
        let names = table();
        let ask = |q: &str| resolve(&names, "front", ip(9), q);
        assert_eq!(ask("web"), Resolution::Known(vec![ip(2)]));
        assert_eq!(ask("WWW."), Resolution::Known(vec![ip(2)]));
        assert_eq!(ask("tasks.web"), Resolution::Known(vec![ip(5), ip(6)]));
        assert_eq!(ask("dns"), Resolution::Known(vec![ip(7), ip(8)]));
        assert_eq!(ask("idle"), Resolution::Known(vec![]));
        assert_eq!(ask("example.com"), Resolution::Unknown);
        // The client joins back too: its names resolve from a query on front.
        assert_eq!(
            ask("db"),
            Resolution::Known(vec![Ipv4Addr::new(10, 0, 2, 2)])
        );
        // A task only on front does not see back's names.
        assert_eq!(resolve(&names, "front", ip(5), "db"), Resolution::Unknown);
    }
}
