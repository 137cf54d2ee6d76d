//! Encrypted overlay networks, in user space (this kernel has no ESP, WireGuard or MACsec).
//!
//! An encrypted network keeps the kernel's VXLAN device, bridge and static entries like any
//! other, but its forwarding entries point at [`RELAY_ADDR`], which no host holds: the
//! node routes it into a TUN device of its own ([`crate::tun`]), so every VXLAN packet of
//! the network comes up to user space instead of leaving. (The kernel will not encapsulate
//! to one of its own addresses: it short-circuits VXLAN to a local destination.) The relay
//! finds the node behind the inner frame's destination MAC ([`Routes`]) and sends the
//! VXLAN packet as a QUIC datagram (quinn) to that node's tunnel endpoint
//! ([`TUNNEL_PORT`]); the peer's relay checks it and hands it to its VXLAN socket on
//! loopback. QUIC gives each pair of nodes TLS 1.3 keys from a handshake where both present
//! their node certificate (the peer's node id is read from it and must be the node the
//! routes name), replay protection, and key updates without a new connection
//! ([`TunnelConfig::key_update`]).
//!
//! Plain VXLAN never carries an encrypted network's frames off the node, nor into it:
//! [`guard_ruleset`] drops such packets leaving by anything but the TUN device and
//! loopback, and arriving by anything but loopback.

use std::collections::{BTreeSet, HashMap};
use std::fmt::Write;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::net::UdpSocket;
use tokio_util::sync::CancellationToken;

use crate::model::VXLAN_PORT;
use crate::nft;
use crate::tun::Tun;

/// The UDP port of the tunnels between nodes (QUIC).
pub const TUNNEL_PORT: u16 = 4790;
/// Where encrypted networks' forwarding entries point: held by no host, routed into the
/// node's TUN device (link-local, so it never leaves a node by its routes either).
pub const RELAY_ADDR: Ipv4Addr = Ipv4Addr::new(169, 254, 79, 1);
/// What an encrypted network loses to encapsulation: VXLAN's 50 bytes, then QUIC's outer
/// IPv4 and UDP headers (28), short header (at most 13 with quinn's 8-byte ids), DATAGRAM
/// frame header (3) and AEAD tag (16), rounded up.
pub const ENCRYPTED_OVERHEAD: u32 = 120;
/// How long a dial to another node's tunnel may take before the next packet tries again.
const DIAL_TIMEOUT: Duration = Duration::from_secs(3);
/// How long a new connection keeps its first traffic keys: several round trips, so both
/// ends have confirmed the handshake before either updates them.
const KEY_UPDATE_SETTLE: Duration = Duration::from_secs(2);
/// The VXLAN header and the inner Ethernet header: the least a relayed packet holds.
const HEADERS: usize = 8 + 14;

#[derive(Debug, thiserror::Error)]
pub enum TunnelError {
    #[error("TLS configuration for the tunnel: {0}")]
    Tls(String),
    #[error("binding {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("{0}")]
    Tun(std::io::Error),
    #[error("routing {RELAY_ADDR} into the TUN device: {0}")]
    Route(String),
}

/// The TUN device of the node whose namespaces start with `namespace_prefix`.
pub fn tun_device(namespace_prefix: &str) -> String {
    format!("sht{}", crate::model::node_tag(namespace_prefix))
}

/// Reads the node id a peer's certificate (DER) names.
pub type Identify = Arc<dyn Fn(&[u8]) -> Option<String> + Send + Sync>;

/// What a node's tunnel endpoint needs.
pub struct TunnelConfig {
    /// TLS 1.3, presenting the node's certificate and requiring the peer's.
    pub server: Arc<rustls::ServerConfig>,
    pub client: Arc<rustls::ClientConfig>,
    /// The name every node certificate carries, verified by the dialling side.
    pub server_name: String,
    pub identify: Identify,
    /// Where the endpoint listens (the node's underlay address) and its MTU.
    pub underlay: Ipv4Addr,
    pub underlay_mtu: u32,
    pub port: u16,
    /// The TUN device's name (one per node namespace).
    pub device: String,
    /// Where the kernel's VXLAN devices listen, on loopback ([`VXLAN_PORT`]).
    pub vxlan_port: u16,
    /// How often each connection's traffic keys are replaced.
    pub key_update: Duration,
}

/// A remote node of an encrypted network.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Peer {
    pub node_id: String,
    pub addr: Ipv4Addr,
}

/// Where encrypted networks' frames go: the node behind each remote task MAC, and which
/// VNIs are encrypted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Routes {
    pub by_mac: HashMap<[u8; 6], Peer>,
    pub vnis: BTreeSet<u32>,
}

impl Routes {
    /// The remote task address `addr` lives on `peer`.
    pub fn add(&mut self, addr: Ipv4Addr, peer: Peer) {
        let o = addr.octets();
        self.by_mac
            .insert([0x02, 0x42, o[0], o[1], o[2], o[3]], peer);
    }

    fn knows(&self, node_id: &str) -> bool {
        self.by_mac.values().any(|p| p.node_id == node_id)
    }
}

/// The VXLAN packet inside an IPv4/UDP packet from the TUN device (to [`VXLAN_PORT`]).
fn vxlan_payload(ip: &[u8]) -> Option<&[u8]> {
    let first = *ip.first()?;
    let header = usize::from(first & 0x0f) * 4;
    if first >> 4 != 4 || header < 20 || ip.get(9) != Some(&17) {
        return None;
    }
    let udp = ip.get(header..header + 8)?;
    if u16::from_be_bytes([udp[2], udp[3]]) != VXLAN_PORT {
        return None;
    }
    ip.get(header + 8..)
}

/// A relayed VXLAN packet's VNI, inner destination and source MACs.
fn parse(packet: &[u8]) -> Option<(u32, [u8; 6], [u8; 6])> {
    if packet.len() < HEADERS {
        return None;
    }
    let vni = u32::from_be_bytes([0, packet[4], packet[5], packet[6]]);
    let dst = packet[8..14].try_into().ok()?;
    let src = packet[14..20].try_into().ok()?;
    Some((vni, dst, src))
}

/// The node namespace's guard table: VXLAN packets of encrypted VNIs (`vnis`) leave only
/// into the TUN device `device` (or loopback: the relay's hand-over) and enter only by
/// loopback. Empty `vnis`: the table is removed.
pub fn guard_ruleset(table: &str, device: &str, vnis: &BTreeSet<u32>) -> String {
    let mut out = String::new();
    nft::replace_table(&mut out, table);
    if vnis.is_empty() {
        return out;
    }
    let list: Vec<String> = vnis.iter().map(u32::to_string).collect();
    let _ = writeln!(out, "table ip {table} {{");
    let allowed_out = format!("{{ \"lo\", \"{device}\" }}");
    for (chain, hook, side, allowed) in [
        ("inbound", "input", "iifname", "\"lo\""),
        ("outbound", "output", "oifname", allowed_out.as_str()),
    ] {
        nft::open_chain(&mut out, chain, "filter", hook, -10);
        let _ = writeln!(
            out,
            "    {side} != {allowed} udp dport {VXLAN_PORT} @th,96,24 {{ {} }} drop",
            list.join(", ")
        );
        nft::close_chain(&mut out);
    }
    let _ = writeln!(out, "}}");
    out
}

/// QUIC's transport settings for tunnels over an underlay of MTU `underlay_mtu`: datagrams
/// as large as the underlay carries (no discovery: the MTU is known), kept alive.
fn transport(underlay_mtu: u32) -> Arc<quinn::TransportConfig> {
    let mut transport = quinn::TransportConfig::default();
    let mtu = u16::try_from(underlay_mtu.saturating_sub(28)).unwrap_or(1472);
    transport
        .initial_mtu(mtu.max(1200))
        .mtu_discovery_config(None)
        .keep_alive_interval(Some(Duration::from_secs(5)))
        .datagram_receive_buffer_size(Some(8 << 20))
        .datagram_send_buffer_size(8 << 20);
    Arc::new(transport)
}

/// quinn's server and client configurations from rustls's.
fn quic_configs(
    server: Arc<rustls::ServerConfig>,
    client: Arc<rustls::ClientConfig>,
    transport: &Arc<quinn::TransportConfig>,
) -> Result<(quinn::ServerConfig, quinn::ClientConfig), TunnelError> {
    let server = quinn::crypto::rustls::QuicServerConfig::try_from(server)
        .map_err(|e| TunnelError::Tls(e.to_string()))?;
    let mut server = quinn::ServerConfig::with_crypto(Arc::new(server));
    server.transport_config(transport.clone());
    let client = quinn::crypto::rustls::QuicClientConfig::try_from(client)
        .map_err(|e| TunnelError::Tls(e.to_string()))?;
    let mut client = quinn::ClientConfig::new(Arc::new(client));
    client.transport_config(transport.clone());
    Ok((server, client))
}

/// A node's tunnel endpoint and relay; cheap to clone.
#[derive(Clone)]
pub struct Tunnel {
    inner: Arc<Inner>,
}

struct Inner {
    endpoint: quinn::Endpoint,
    client: RwLock<quinn::ClientConfig>,
    transport: Arc<quinn::TransportConfig>,
    server_name: String,
    identify: Identify,
    port: u16,
    vxlan: SocketAddr,
    tun: Tun,
    /// Hands relayed packets to the kernel's VXLAN socket.
    relay: UdpSocket,
    routes: RwLock<Routes>,
    /// Node id -> the connection frames to it leave on, and when it opened.
    conns: Mutex<HashMap<String, (quinn::Connection, Instant)>>,
    /// Node ids being dialled now.
    dialing: Mutex<BTreeSet<String>>,
    cancel: CancellationToken,
}

impl Tunnel {
    /// Listen on the underlay and the relay port, until `cancel`.
    pub async fn start(
        config: TunnelConfig,
        cancel: CancellationToken,
    ) -> Result<Self, TunnelError> {
        let transport = transport(config.underlay_mtu);
        let (server, client) = quic_configs(config.server, config.client, &transport)?;
        let addr = SocketAddr::from((config.underlay, config.port));
        let endpoint = quinn::Endpoint::server(server, addr)
            .map_err(|source| TunnelError::Bind { addr, source })?;
        let tun = Tun::open(&config.device).map_err(TunnelError::Tun)?;
        crate::ipcmd::route_into(&config.device, RELAY_ADDR)
            .map_err(|e| TunnelError::Route(e.to_string()))?;
        let relay_addr = SocketAddr::from((Ipv4Addr::LOCALHOST, 0));
        let relay = UdpSocket::bind(relay_addr)
            .await
            .map_err(|source| TunnelError::Bind {
                addr: relay_addr,
                source,
            })?;
        let tunnel = Tunnel {
            inner: Arc::new(Inner {
                endpoint,
                client: RwLock::new(client),
                transport,
                server_name: config.server_name,
                identify: config.identify,
                port: config.port,
                vxlan: SocketAddr::from((Ipv4Addr::LOCALHOST, config.vxlan_port)),
                tun,
                relay,
                routes: RwLock::new(Routes::default()),
                conns: Mutex::new(HashMap::new()),
                dialing: Mutex::new(BTreeSet::new()),
                cancel,
            }),
        };
        tokio::spawn(tunnel.clone().relay_out());
        tokio::spawn(tunnel.clone().accept());
        tokio::spawn(tunnel.clone().update_keys(config.key_update));
        tracing::info!(%addr, "encrypted overlay tunnel listening");
        Ok(tunnel)
    }

    /// New certificates: every handshake from now on presents and checks with them (open
    /// tunnels keep their keys, which they update anyway).
    pub fn reload(
        &self,
        server: Arc<rustls::ServerConfig>,
        client: Arc<rustls::ClientConfig>,
    ) -> Result<(), TunnelError> {
        let (server, client) = quic_configs(server, client, &self.inner.transport)?;
        self.inner.endpoint.set_server_config(Some(server));
        *self.inner.client.write().unwrap_or_else(|p| p.into_inner()) = client;
        Ok(())
    }

    /// The routes now (replaces the previous ones).
    pub fn set_routes(&self, routes: Routes) {
        *self.inner.routes.write().unwrap_or_else(|p| p.into_inner()) = routes;
    }

    fn lock_conns(
        &self,
    ) -> std::sync::MutexGuard<'_, HashMap<String, (quinn::Connection, Instant)>> {
        self.inner.conns.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn routes(&self) -> std::sync::RwLockReadGuard<'_, Routes> {
        self.inner.routes.read().unwrap_or_else(|p| p.into_inner())
    }

    /// Packets from the kernel's VXLAN devices to the node behind their destination.
    async fn relay_out(self) {
        let mut buf = vec![0u8; 65_536];
        loop {
            let n = tokio::select! {
                () = self.inner.cancel.cancelled() => return,
                r = self.inner.tun.recv(&mut buf) => match r {
                    Ok(n) => n,
                    Err(e) => {
                        tracing::debug!("relay: {e}");
                        continue;
                    }
                },
            };
            let Some(packet) = vxlan_payload(&buf[..n]) else {
                continue;
            };
            let Some((vni, dst, _)) = parse(packet) else {
                continue;
            };
            let peer = {
                let routes = self.routes();
                if !routes.vnis.contains(&vni) {
                    continue;
                }
                match routes.by_mac.get(&dst) {
                    Some(p) => p.clone(),
                    None => continue,
                }
            };
            let conn = self
                .lock_conns()
                .get(&peer.node_id)
                .map(|(conn, _)| conn.clone());
            match conn {
                // Waits while the connection's send buffer is full: the kernel's TUN queue
                // holds the rest (and drops past it), rather than quinn dropping what it
                // had queued.
                Some(conn) => {
                    let sent = conn
                        .send_datagram_wait(Bytes::copy_from_slice(packet))
                        .await;
                    if let Err(e) = sent {
                        tracing::debug!(node = %peer.node_id, "tunnel send: {e}");
                    }
                }
                // The first frames to a node are lost while it is dialled (TCP resends).
                None => self.dial(peer),
            }
        }
    }

    fn dial(&self, peer: Peer) {
        if !self
            .inner
            .dialing
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(peer.node_id.clone())
        {
            return;
        }
        let this = self.clone();
        tokio::spawn(async move {
            let addr = SocketAddr::from((peer.addr, this.inner.port));
            let client = this
                .inner
                .client
                .read()
                .unwrap_or_else(|p| p.into_inner())
                .clone();
            let result =
                match this
                    .inner
                    .endpoint
                    .connect_with(client, addr, &this.inner.server_name)
                {
                    // A node whose tunnel is not listening yet would hold every retry
                    // back for QUIC's whole idle timeout: give up sooner and let the next
                    // packet dial again.
                    Ok(connecting) => match tokio::time::timeout(DIAL_TIMEOUT, connecting).await {
                        Ok(result) => result.map_err(|e| e.to_string()),
                        Err(_) => Err(format!("no handshake within {DIAL_TIMEOUT:?}")),
                    },
                    Err(e) => Err(e.to_string()),
                };
            this.inner
                .dialing
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&peer.node_id);
            match result {
                Ok(conn) => match this.peer_of(&conn) {
                    Some(id) if id == peer.node_id => this.serve(id, conn),
                    other => {
                        tracing::warn!(%addr, expected = %peer.node_id, found = ?other, "tunnel peer is not the node the routes name: closed");
                        conn.close(1u32.into(), b"not the expected node");
                    }
                },
                Err(e) => tracing::warn!(%addr, node = %peer.node_id, "tunnel not opened: {e}"),
            }
        });
    }

    /// Connections other nodes open: kept when the certificate names a node the routes
    /// know.
    async fn accept(self) {
        loop {
            let incoming = tokio::select! {
                () = self.inner.cancel.cancelled() => break,
                i = self.inner.endpoint.accept() => match i {
                    Some(i) => i,
                    None => break,
                },
            };
            let this = self.clone();
            tokio::spawn(async move {
                let Ok(conn) = incoming.await else {
                    return;
                };
                match this.peer_of(&conn) {
                    Some(id) if this.routes().knows(&id) => this.serve(id, conn),
                    other => {
                        tracing::warn!(remote = %conn.remote_address(), node = ?other, "tunnel from a node this one does not share an encrypted network with: closed");
                        conn.close(1u32.into(), b"no shared encrypted network");
                    }
                }
            });
        }
        self.inner.endpoint.close(0u32.into(), b"leaving");
    }

    /// The node id the peer's certificate names.
    fn peer_of(&self, conn: &quinn::Connection) -> Option<String> {
        let certs = conn
            .peer_identity()?
            .downcast::<Vec<rustls::pki_types::CertificateDer<'static>>>()
            .ok()?;
        (self.inner.identify)(certs.first()?.as_ref())
    }

    /// Use `conn` for frames to node `id`, and relay what it brings.
    fn serve(&self, id: String, conn: quinn::Connection) {
        self.lock_conns()
            .insert(id.clone(), (conn.clone(), Instant::now()));
        tracing::info!(node = %id, remote = %conn.remote_address(), "encrypted tunnel open");
        let this = self.clone();
        tokio::spawn(async move {
            let vxlan = this.inner.vxlan;
            loop {
                let datagram = tokio::select! {
                    () = this.inner.cancel.cancelled() => break,
                    d = conn.read_datagram() => match d {
                        Ok(d) => d,
                        Err(e) => {
                            tracing::debug!(node = %id, "tunnel closed: {e}");
                            break;
                        }
                    },
                };
                if this.admits(&id, &datagram) {
                    let _ = this.inner.relay.send_to(&datagram, vxlan).await;
                }
            }
            let mut conns = this.lock_conns();
            if conns
                .get(&id)
                .is_some_and(|(c, _)| c.stable_id() == conn.stable_id())
            {
                conns.remove(&id);
            }
        });
    }

    /// Whether a packet from node `id` may reach the kernel: an encrypted VNI, and an
    /// inner source that is one of that node's tasks (a node speaks only for its own).
    fn admits(&self, id: &str, packet: &[u8]) -> bool {
        let Some((vni, _, src)) = parse(packet) else {
            return false;
        };
        let routes = self.routes();
        routes.vnis.contains(&vni) && routes.by_mac.get(&src).is_some_and(|p| p.node_id == id)
    }

    /// Replace every connection's traffic keys, every `every`: QUIC key updates, no new
    /// handshake and no connection dropped. A connection younger than [`KEY_UPDATE_SETTLE`]
    /// keeps its first keys: a key update before both ends have confirmed the handshake
    /// (RFC 9001, 6.1) leaves the peer unable to read what follows.
    async fn update_keys(self, every: Duration) {
        let mut tick = tokio::time::interval(every);
        tick.tick().await;
        loop {
            tokio::select! {
                () = self.inner.cancel.cancelled() => return,
                _ = tick.tick() => {}
            }
            let conns: Vec<quinn::Connection> = self
                .lock_conns()
                .values()
                .filter(|(_, opened)| opened.elapsed() >= KEY_UPDATE_SETTLE)
                .map(|(conn, _)| conn.clone())
                .collect();
            for conn in conns {
                conn.force_key_update();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_relayed_packet_names_its_network_and_both_ends() {
        let mut packet = vec![0x08, 0, 0, 0, 0, 0x10, 0x01, 0];
        packet.extend([0x02, 0x42, 10, 0, 9, 5]);
        packet.extend([0x02, 0x42, 10, 0, 9, 3]);
        packet.extend([0x08, 0x00]);
        assert_eq!(
            parse(&packet),
            Some((0x1001, [0x02, 0x42, 10, 0, 9, 5], [0x02, 0x42, 10, 0, 9, 3]))
        );
        assert_eq!(parse(&packet[..20]), None);
        // As the TUN device gives it: IPv4 (20) and UDP to 4789 (8) before it.
        let mut ip = vec![0x45, 0, 0, 0, 0, 0, 0, 0, 64, 17, 0, 0];
        ip.extend([10, 78, 0, 12, 169, 254, 79, 1]);
        ip.extend([0x9c, 0x40, 0x12, 0xb5, 0, 0, 0, 0]);
        ip.extend(&packet);
        assert_eq!(vxlan_payload(&ip), Some(&packet[..]));
        ip[9] = 6;
        assert_eq!(vxlan_payload(&ip), None, "not UDP");
    }

    #[test]
    fn the_guard_drops_encrypted_vnis_off_loopback_both_ways() {
        let rules = guard_ruleset("shoal-x-crypt", "shtx", &[4097, 4099].into());
        assert!(
            rules.contains("    iifname != \"lo\" udp dport 4789 @th,96,24 { 4097, 4099 } drop\n")
        );
        assert!(rules.contains(
            "    oifname != { \"lo\", \"shtx\" } udp dport 4789 @th,96,24 { 4097, 4099 } drop\n"
        ));
        assert_eq!(
            guard_ruleset("shoal-x-crypt", "shtx", &BTreeSet::new()),
            "table ip shoal-x-crypt\ndelete table ip shoal-x-crypt\n"
        );
    }
}
