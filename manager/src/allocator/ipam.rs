//! Address arithmetic for overlay networks (IPv4): subnets carved from the cluster's
//! address pools, VXLAN network identifiers, and host addresses within a subnet.
//!
//! Pure and deterministic: nothing here reads the store. [`crate::allocator`] builds the
//! taken sets from the store on every pass, so a new leader starts from exactly what is
//! committed.

use std::collections::BTreeSet;
use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;

/// The first VNI handed out (Swarm's overlay VNIs start here too); the top is 2^24 - 1.
pub const FIRST_VNI: u32 = 4096;
pub const LAST_VNI: u32 = (1 << 24) - 1;
/// Swarm's default pool and subnet size.
pub const DEFAULT_POOL: &str = "10.0.0.0/8";
pub const DEFAULT_SUBNET_SIZE: u8 = 24;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IpamError {
    #[error("invalid subnet {0:?}: give an IPv4 CIDR such as 10.10.0.0/24")]
    InvalidSubnet(String),
    #[error("invalid address {0:?}: give an IPv4 address such as 10.10.0.1")]
    InvalidAddress(String),
    #[error("subnet {0} has host bits set: did you mean {1}?")]
    HostBits(String, Subnet),
    #[error("subnet mask length {0} is out of range: give one from 8 to 29")]
    InvalidSize(u32),
    #[error("address {addr} is not a host address of subnet {subnet}")]
    Outside { addr: Ipv4Addr, subnet: Subnet },
    #[error("subnet {0} is too small for a network: use a prefix of /30 or shorter")]
    TooSmall(Subnet),
    #[error("gateway {gateway} is not a host address of subnet {subnet}")]
    GatewayOutside { gateway: Ipv4Addr, subnet: Subnet },
    #[error("subnet {subnet} overlaps subnet {other} of network {network}")]
    Overlap {
        subnet: Subnet,
        other: Subnet,
        network: String,
    },
    #[error("the address pool ({pools}) has no free /{size} subnet left: remove unused networks, or give --subnet")]
    PoolExhausted { pools: String, size: u8 },
    #[error("address pool {0} is smaller than the /{1} subnets it should hold: give a longer mask length")]
    PoolTooSmall(Subnet, u8),
    #[error("no VXLAN network identifier is left")]
    NoVni,
    #[error("network {0} has no free address left: remove unused tasks or services, or use a larger subnet")]
    Full(String),
    #[error("address {0} is already in use on network {1}")]
    InUse(Ipv4Addr, String),
}

/// An IPv4 network: base address and prefix length, with no host bits set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Subnet {
    base: u32,
    prefix: u8,
}

impl Subnet {
    pub fn new(base: Ipv4Addr, prefix: u8) -> Result<Self, IpamError> {
        if prefix > 32 {
            return Err(IpamError::InvalidSubnet(format!("{base}/{prefix}")));
        }
        let subnet = Subnet {
            base: u32::from(base) & mask(prefix),
            prefix,
        };
        if subnet.base != u32::from(base) {
            return Err(IpamError::HostBits(format!("{base}/{prefix}"), subnet));
        }
        Ok(subnet)
    }

    pub fn prefix(&self) -> u8 {
        self.prefix
    }

    pub fn base(&self) -> Ipv4Addr {
        Ipv4Addr::from(self.base)
    }

    /// How many addresses it spans (2^(32 - prefix)).
    pub fn size(&self) -> u64 {
        1u64 << (32 - self.prefix)
    }

    fn last(&self) -> u32 {
        self.base | !mask(self.prefix)
    }

    pub fn contains(&self, addr: Ipv4Addr) -> bool {
        u32::from(addr) & mask(self.prefix) == self.base
    }

    pub fn overlaps(&self, other: &Subnet) -> bool {
        self.base <= other.last() && other.base <= self.last()
    }

    /// Whether `addr` is a usable host address: inside, and neither the network's own
    /// address nor its broadcast address.
    pub fn is_host(&self, addr: Ipv4Addr) -> bool {
        let a = u32::from(addr);
        self.contains(addr) && a != self.base && a != self.last()
    }

    /// The `n`th address of the subnet (0: the network address).
    fn nth(&self, n: u64) -> Ipv4Addr {
        Ipv4Addr::from(self.base.wrapping_add(n as u32))
    }

    /// `addr` with this subnet's prefix: "10.0.1.2/24".
    pub fn with_prefix(&self, addr: Ipv4Addr) -> String {
        format!("{addr}/{}", self.prefix)
    }
}

impl fmt::Display for Subnet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.base(), self.prefix)
    }
}

impl FromStr for Subnet {
    type Err = IpamError;

    fn from_str(s: &str) -> Result<Self, IpamError> {
        let invalid = || IpamError::InvalidSubnet(s.to_string());
        let (addr, prefix) = s.trim().split_once('/').ok_or_else(invalid)?;
        let addr: Ipv4Addr = addr.parse().map_err(|_| invalid())?;
        let prefix: u8 = prefix.parse().map_err(|_| invalid())?;
        if prefix > 32 {
            return Err(invalid());
        }
        Subnet::new(addr, prefix)
    }
}

fn mask(prefix: u8) -> u32 {
    if prefix == 0 {
        0
    } else {
        u32::MAX << (32 - prefix)
    }
}

/// An address "A.B.C.D" or "A.B.C.D/N" (the prefix is dropped).
pub fn parse_addr(s: &str) -> Result<Ipv4Addr, IpamError> {
    let host = s.split('/').next().unwrap_or(s);
    host.trim()
        .parse()
        .map_err(|_| IpamError::InvalidAddress(s.to_string()))
}

/// Where networks' subnets come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pools {
    pools: Vec<Subnet>,
    size: u8,
}

impl Default for Pools {
    fn default() -> Self {
        Pools {
            pools: vec![DEFAULT_POOL.parse().expect("a valid constant")],
            size: DEFAULT_SUBNET_SIZE,
        }
    }
}

impl Pools {
    /// `cidrs` (empty: 10.0.0.0/8) split into subnets of prefix `size` (0: /24).
    pub fn new(cidrs: &[String], size: u32) -> Result<Self, IpamError> {
        let mut pools = Vec::new();
        for cidr in cidrs {
            pools.push(cidr.parse::<Subnet>()?);
        }
        if pools.is_empty() {
            pools = Pools::default().pools;
        }
        let size = if size == 0 {
            u32::from(DEFAULT_SUBNET_SIZE)
        } else {
            size
        };
        if !(8..=29).contains(&size) {
            return Err(IpamError::InvalidSize(size));
        }
        let size = size as u8;
        if let Some(small) = pools.iter().find(|p| p.prefix > size) {
            return Err(IpamError::PoolTooSmall(*small, size));
        }
        Ok(Pools { pools, size })
    }

    /// The first subnet of the pools that overlaps none of `taken`.
    pub fn next_free(&self, taken: &[Subnet]) -> Result<Subnet, IpamError> {
        let step = 1u64 << (32 - self.size);
        for pool in &self.pools {
            let mut offset = 0u64;
            while offset < pool.size() {
                let candidate = Subnet {
                    base: pool.base + offset as u32,
                    prefix: self.size,
                };
                match taken
                    .iter()
                    .filter(|t| t.overlaps(&candidate))
                    .map(Subnet::last)
                    .max()
                {
                    None => return Ok(candidate),
                    // Skip past the overlapping subnet, aligned to our size.
                    Some(last) => {
                        let next = (u64::from(last) + 1).div_ceil(step) * step;
                        offset = next.saturating_sub(u64::from(pool.base)).max(offset + step);
                    }
                }
            }
        }
        Err(IpamError::PoolExhausted {
            pools: self
                .pools
                .iter()
                .map(Subnet::to_string)
                .collect::<Vec<_>>()
                .join(", "),
            size: self.size,
        })
    }
}

/// The lowest VNI not in `taken`.
pub fn next_vni(taken: &BTreeSet<u32>) -> Result<u32, IpamError> {
    let mut candidate = FIRST_VNI;
    for &vni in taken.range(FIRST_VNI..) {
        if vni != candidate {
            break;
        }
        candidate += 1;
    }
    if candidate > LAST_VNI {
        return Err(IpamError::NoVni);
    }
    Ok(candidate)
}

/// The host addresses of one network's subnet, and which of them are taken.
#[derive(Debug, Clone)]
pub struct AddressSpace {
    name: String,
    subnet: Subnet,
    /// One bit per address of the subnet; the network and broadcast addresses are set.
    used: Vec<u64>,
    free: u64,
}

impl AddressSpace {
    /// A space with the network and broadcast addresses and `gateway` taken. `name` is what
    /// errors call the network.
    pub fn new(name: &str, subnet: Subnet, gateway: Ipv4Addr) -> Result<Self, IpamError> {
        if subnet.prefix > 30 {
            return Err(IpamError::TooSmall(subnet));
        }
        let words = subnet.size().div_ceil(64) as usize;
        let mut space = AddressSpace {
            name: name.to_string(),
            subnet,
            used: vec![0; words],
            free: subnet.size(),
        };
        space.set(0);
        space.set(subnet.size() - 1);
        space.reserve(gateway).map_err(|e| match e {
            IpamError::InUse(..) | IpamError::Outside { .. } => {
                IpamError::GatewayOutside { gateway, subnet }
            }
            other => other,
        })?;
        Ok(space)
    }

    pub fn subnet(&self) -> Subnet {
        self.subnet
    }

    fn index(&self, addr: Ipv4Addr) -> Option<u64> {
        self.subnet
            .is_host(addr)
            .then(|| u64::from(u32::from(addr) - self.subnet.base))
    }

    fn is_set(&self, i: u64) -> bool {
        self.used[(i / 64) as usize] & (1 << (i % 64)) != 0
    }

    fn set(&mut self, i: u64) {
        if !self.is_set(i) {
            self.used[(i / 64) as usize] |= 1 << (i % 64);
            self.free -= 1;
        }
    }

    /// Mark `addr` taken: it must be a free host address of the subnet.
    pub fn reserve(&mut self, addr: Ipv4Addr) -> Result<(), IpamError> {
        let Some(i) = self.index(addr) else {
            return Err(IpamError::Outside {
                addr,
                subnet: self.subnet,
            });
        };
        if self.is_set(i) {
            return Err(IpamError::InUse(addr, self.name.clone()));
        }
        self.set(i);
        Ok(())
    }

    /// Take the lowest free host address.
    pub fn allocate(&mut self) -> Result<Ipv4Addr, IpamError> {
        if self.free == 0 {
            return Err(IpamError::Full(self.name.clone()));
        }
        for (w, word) in self.used.iter().enumerate() {
            if *word != u64::MAX {
                let i = w as u64 * 64 + u64::from(word.trailing_ones());
                if i >= self.subnet.size() {
                    break;
                }
                self.set(i);
                return Ok(self.subnet.nth(i));
            }
        }
        Err(IpamError::Full(self.name.clone()))
    }

    /// Give `addr` back (a no-op for addresses it does not hold).
    pub fn release(&mut self, addr: Ipv4Addr) {
        if let Some(i) = self.index(addr) {
            if self.is_set(i) {
                self.used[(i / 64) as usize] &= !(1 << (i % 64));
                self.free += 1;
            }
        }
    }

    pub fn is_used(&self, addr: Ipv4Addr) -> bool {
        self.index(addr).is_some_and(|i| self.is_set(i))
    }

    /// Host addresses still free.
    pub fn free(&self) -> u64 {
        self.free
    }
}

/// The gateway of `subnet`: `requested`, or its first host address.
pub fn gateway(subnet: Subnet, requested: &str) -> Result<Ipv4Addr, IpamError> {
    if requested.is_empty() {
        return Ok(subnet.nth(1));
    }
    let gateway = parse_addr(requested)?;
    if !subnet.is_host(gateway) {
        return Err(IpamError::GatewayOutside { gateway, subnet });
    }
    Ok(gateway)
}

#[cfg(test)]
mod tests;
