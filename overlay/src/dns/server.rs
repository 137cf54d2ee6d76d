//! The resolver each network's namespace holds on its gateway address, port 53: task
//! containers name it as their DNS server, and the engine's own resolver (127.0.0.11 in
//! every container) forwards to it the names it does not know. Swarm names are answered
//! from the table ([`super::names`]); everything else is relayed to the node's resolvers
//! through a socket of the node's own namespace.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use tokio::net::UdpSocket;
use tokio_util::sync::CancellationToken;

use super::names::{resolve, Names, Resolution};
use super::wire::{self, RCODE_NOERROR, RCODE_SERVFAIL, TYPE_A};

/// How long a relayed query may wait for the node's resolvers.
const UPSTREAM_TIMEOUT: Duration = Duration::from_secs(3);
/// Answers from the table are never cached: changes show at once.
const TTL: u32 = 0;

/// The table every network's resolver reads; the agent replaces it on each change.
pub type SharedNames = Arc<RwLock<Names>>;

/// The node's own resolvers, from `/etc/resolv.conf` (port 53).
pub fn upstream_resolvers(resolv_conf: &str) -> Vec<SocketAddr> {
    resolv_conf
        .lines()
        .filter_map(|l| l.trim().strip_prefix("nameserver"))
        .filter_map(|a| a.trim().parse::<std::net::IpAddr>().ok())
        .map(|ip| SocketAddr::new(ip, 53))
        .collect()
}

/// Answer queries on `socket` (network `network_id`'s resolver) until `cancel`.
pub async fn serve(
    socket: UdpSocket,
    network_id: String,
    names: SharedNames,
    upstream: Arc<Vec<SocketAddr>>,
    cancel: CancellationToken,
) {
    let socket = Arc::new(socket);
    let mut buf = vec![0u8; 4096];
    loop {
        let (len, from) = tokio::select! {
            _ = cancel.cancelled() => return,
            r = socket.recv_from(&mut buf) => match r {
                Ok(r) => r,
                Err(e) => {
                    tracing::debug!(network = %network_id, "dns: receiving: {e}");
                    continue;
                }
            },
        };
        let message = buf[..len].to_vec();
        let socket = socket.clone();
        let names = names.clone();
        let upstream = upstream.clone();
        let network_id = network_id.clone();
        tokio::spawn(async move {
            if let Some(reply) = handle(&message, from, &network_id, &names, &upstream).await {
                let _ = socket.send_to(&reply, from).await;
            }
        });
    }
}

async fn handle(
    message: &[u8],
    from: SocketAddr,
    network_id: &str,
    names: &SharedNames,
    upstream: &[SocketAddr],
) -> Option<Vec<u8>> {
    let query = match wire::parse_query(message) {
        Ok(q) => q,
        Err(_) => return wire::format_error(message),
    };
    let source = match from.ip() {
        std::net::IpAddr::V4(v4) => v4,
        std::net::IpAddr::V6(_) => Ipv4Addr::UNSPECIFIED,
    };
    let resolution = {
        let names = names.read().unwrap_or_else(|p| p.into_inner());
        resolve(&names, network_id, source, &query.name)
    };
    match resolution {
        Resolution::Known(addrs) => {
            let addrs = if query.qtype == TYPE_A {
                addrs
            } else {
                Vec::new()
            };
            Some(wire::answer(message, &query, RCODE_NOERROR, &addrs, TTL))
        }
        Resolution::Unknown => match relay(message, upstream).await {
            Some(reply) => Some(reply),
            None => Some(wire::answer(message, &query, RCODE_SERVFAIL, &[], TTL)),
        },
    }
}

/// The first answer of the node's resolvers to `message`, as they sent it.
async fn relay(message: &[u8], upstream: &[SocketAddr]) -> Option<Vec<u8>> {
    for server in upstream {
        let bind: SocketAddr = if server.is_ipv4() {
            "0.0.0.0:0".parse().ok()?
        } else {
            "[::]:0".parse().ok()?
        };
        let Ok(socket) = UdpSocket::bind(bind).await else {
            continue;
        };
        if socket.send_to(message, server).await.is_err() {
            continue;
        }
        let mut buf = vec![0u8; 4096];
        match tokio::time::timeout(UPSTREAM_TIMEOUT, socket.recv_from(&mut buf)).await {
            Ok(Ok((len, from))) if from == *server => return Some(buf[..len].to_vec()),
            _ => continue,
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;
    use crate::dns::names::{NetworkNames, ServiceNames};
    use crate::dns::wire::{query, read_answer, RCODE_NXDOMAIN};

    #[tokio::test]
    async fn names_are_answered_and_the_rest_relayed() {
        // A stand-in for the node's resolver: NXDOMAIN for everything.
        let upstream = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
        let upstream_addr = upstream.local_addr().expect("addr");
        tokio::spawn(async move {
            let mut buf = vec![0u8; 512];
            while let Ok((len, from)) = upstream.recv_from(&mut buf).await {
                if let Ok(q) = wire::parse_query(&buf[..len]) {
                    let reply = wire::answer(&buf[..len], &q, RCODE_NXDOMAIN, &[], 0);
                    let _ = upstream.send_to(&reply, from).await;
                }
            }
        });
        let names: SharedNames = Arc::new(RwLock::new(HashMap::from([(
            "front".to_string(),
            NetworkNames {
                services: vec![ServiceNames {
                    name: "web".into(),
                    aliases: vec![],
                    vip: Some(Ipv4Addr::new(10, 0, 1, 2)),
                    tasks: vec![Ipv4Addr::new(10, 0, 1, 5)],
                }],
                tasks: HashMap::new(),
            },
        )])));
        let socket = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
        let server = socket.local_addr().expect("addr");
        let cancel = CancellationToken::new();
        tokio::spawn(serve(
            socket,
            "front".into(),
            names.clone(),
            Arc::new(vec![upstream_addr]),
            cancel.clone(),
        ));
        let client = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
        let ask = |name: &'static str| {
            let client = &client;
            async move {
                client
                    .send_to(&query(9, name, TYPE_A), server)
                    .await
                    .expect("send");
                let mut buf = vec![0u8; 512];
                let (len, _) =
                    tokio::time::timeout(Duration::from_secs(5), client.recv_from(&mut buf))
                        .await
                        .expect("an answer in time")
                        .expect("recv");
                read_answer(&buf[..len]).expect("readable")
            }
        };
        assert_eq!(
            ask("web").await,
            (RCODE_NOERROR, vec![Ipv4Addr::new(10, 0, 1, 2)])
        );
        assert_eq!(
            ask("tasks.web").await,
            (RCODE_NOERROR, vec![Ipv4Addr::new(10, 0, 1, 5)])
        );
        assert_eq!(ask("example.org").await, (RCODE_NXDOMAIN, vec![]));
        // A change to the table shows in the next answer.
        names.write().expect("lock").clear();
        assert_eq!(ask("web").await, (RCODE_NXDOMAIN, vec![]));
        cancel.cancel();
    }

    #[test]
    fn resolvers_come_from_resolv_conf() {
        let conf = "# comment\nnameserver 10.0.0.2\nsearch x\nnameserver  ::1\nnameserver bogus\n";
        assert_eq!(
            upstream_resolvers(conf),
            vec![
                "10.0.0.2:53".parse::<SocketAddr>().expect("addr"),
                "[::1]:53".parse().expect("addr")
            ]
        );
    }
}
