//! Port shares and the share table: the desired state the daemon reconciles into the kernel.
//!
//! Rules (the ones a home router's port sharing applies):
//! * a share is identified by (protocol, external port, remote host); the same external port
//!   may be shared once for "any remote host" and once per specific remote host;
//! * an internal endpoint (address, port, protocol) is shared under one external port only
//!   ("a port can be released for sharing only once per device"), which is what makes the
//!   reverse rewrite of replies unambiguous;
//! * port 0 is never valid; the internal address must be a host of a LAN subnet, and not the
//!   box's own LAN address (use the service directly instead).

use std::{
    collections::{BTreeMap, BTreeSet},
    fmt,
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddrV4},
    str::FromStr,
};

use portfwd_common::{
    IPPROTO_TCP, IPPROTO_UDP, MAX_SHARES, NO_SLOT, PinholeKey, PinholeTarget,
    REVERSE_F_REMOTE_SPECIFIC, ReverseKey, ReverseTarget, ShareKey, ShareTarget,
};
use serde::{Deserialize, Serialize};

/// Transport protocol of a share.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Proto {
    Tcp,
    Udp,
}

impl Proto {
    /// The IP protocol number.
    #[must_use]
    pub const fn number(self) -> u8 {
        match self {
            Self::Tcp => IPPROTO_TCP,
            Self::Udp => IPPROTO_UDP,
        }
    }
}

impl fmt::Display for Proto {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Tcp => "tcp",
            Self::Udp => "udp",
        })
    }
}

impl FromStr for Proto {
    type Err = SpecError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "tcp" => Ok(Self::Tcp),
            "udp" => Ok(Self::Udp),
            _ => Err(SpecError::Proto(s.to_owned())),
        }
    }
}

/// What identifies a share: protocol, external port and the remote host it is limited to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ShareId {
    pub proto: Proto,
    pub ext_port: u16,
    /// `None`: any remote host.
    pub remote: Option<Ipv4Addr>,
}

impl fmt::Display for ShareId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.proto, self.ext_port)?;
        if let Some(remote) = self.remote {
            write!(f, "@{remote}")?;
        }
        Ok(())
    }
}

impl FromStr for ShareId {
    type Err = SpecError;

    /// `PROTO:EXTPORT[@REMOTE]`, as shares are named in the API and the CLI.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (proto, external) = s
            .split_once(':')
            .ok_or_else(|| SpecError::Id(s.to_owned()))?;
        let (ext_port, remote) = match external.split_once('@') {
            Some((port, remote)) => (
                port,
                Some(
                    remote
                        .parse::<Ipv4Addr>()
                        .map_err(|_| SpecError::Addr(remote.to_owned()))?,
                ),
            ),
            None => (external, None),
        };
        Ok(Self {
            proto: proto.parse()?,
            ext_port: parse_port(ext_port)?,
            remote,
        })
    }
}

impl Serialize for ShareId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for ShareId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

/// A share as configured: `PROTO:EXTPORT[@REMOTE]=IP:PORT`, plus an optional name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ShareSpec {
    pub id: ShareId,
    pub internal: SocketAddrV4,
    pub name: Option<String>,
    pub enabled: bool,
}

/// A malformed share specification.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SpecError {
    #[error(
        "share `{0}` is not of the form PROTO:EXTPORT[@REMOTE]=IP:PORT (e.g. tcp:8080=10.0.0.10:80)"
    )]
    Form(String),
    #[error("share `{0}` is not of the form PROTO:EXTPORT[@REMOTE] (e.g. tcp:8080)")]
    Id(String),
    #[error("unknown protocol `{0}`: expected tcp or udp")]
    Proto(String),
    #[error("`{0}` is not a port number (1-65535)")]
    Port(String),
    #[error("`{0}` is not an IPv4 address")]
    Addr(String),
    #[error("`{0}` is not an IPv6 address")]
    Addr6(String),
    #[error("pinhole `{0}` is not of the form PROTO:[IPV6]:PORT (e.g. tcp:[2001:db8::10]:443)")]
    Pinhole(String),
}

fn parse_port(s: &str) -> Result<u16, SpecError> {
    match s.parse::<u16>() {
        Ok(0) | Err(_) => Err(SpecError::Port(s.to_owned())),
        Ok(port) => Ok(port),
    }
}

impl FromStr for ShareSpec {
    type Err = SpecError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let form = || SpecError::Form(s.to_owned());
        let (external, internal) = s.split_once('=').ok_or_else(form)?;
        if !external.contains(':') {
            return Err(form());
        }
        let id = external.parse::<ShareId>().map_err(|err| match err {
            SpecError::Id(_) => form(),
            err => err,
        })?;
        let (addr, port) = internal.rsplit_once(':').ok_or_else(form)?;
        let addr = addr
            .parse::<Ipv4Addr>()
            .map_err(|_| SpecError::Addr(addr.to_owned()))?;
        Ok(Self {
            id,
            internal: SocketAddrV4::new(addr, parse_port(port)?),
            name: None,
            enabled: true,
        })
    }
}

impl fmt::Display for ShareSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}={}", self.id, self.internal)
    }
}

/// An IPv4 subnet the box has on its LAN interface.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LanSubnet {
    /// The box's own address in the subnet.
    pub addr: Ipv4Addr,
    pub prefix_len: u8,
}

impl LanSubnet {
    fn mask(self) -> u32 {
        u32::MAX
            .checked_shl(32 - u32::from(self.prefix_len))
            .unwrap_or(0)
    }

    /// Whether `addr` is in this subnet (the box's own address included).
    #[must_use]
    pub fn contains(self, addr: Ipv4Addr) -> bool {
        u32::from(addr) & self.mask() == u32::from(self.addr) & self.mask()
    }

    /// Whether `host` is a usable host address of this subnet other than the box's own.
    #[must_use]
    pub fn has_host(self, host: Ipv4Addr) -> bool {
        let mask = self.mask();
        let (net, h) = (u32::from(self.addr) & mask, u32::from(host));
        if h & mask != net || host == self.addr {
            return false;
        }
        // /31 and /32 have no network or broadcast address (RFC 3021).
        self.prefix_len >= 31 || (h != net && h != net | !mask)
    }
}

impl fmt::Display for LanSubnet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let net = Ipv4Addr::from(u32::from(self.addr) & self.mask());
        write!(f, "{net}/{}", self.prefix_len)
    }
}

/// Why a share cannot be added.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ShareError {
    #[error("{0} is already shared")]
    Duplicate(ShareId),
    #[error(
        "{internal} ({proto}) is already shared as {existing}; an internal port is shared once"
    )]
    InternalInUse {
        proto: Proto,
        internal: SocketAddrV4,
        existing: ShareId,
    },
    #[error("internal address {addr} is not a host on the LAN side ({subnets})")]
    NotOnLan { addr: Ipv4Addr, subnets: String },
    #[error("the share table is full ({max} shares)")]
    Full { max: u32 },
}

/// Who made a share, and so who may change it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Origin {
    /// The config file or the command line: changed only by them (the API may switch it off
    /// and on).
    Static,
    /// Made by the owner through the API; kept in the state directory.
    Api,
    /// Requested over UPnP by this LAN client, which owns it.
    Upnp { client: Ipv4Addr },
    /// Requested over NAT-PMP (RFC 6886) by this LAN client, which owns it.
    Natpmp { client: Ipv4Addr },
    /// Requested over PCP (RFC 6887) by this LAN client, which owns it; only requests carrying
    /// the same nonce may renew or delete it.
    Pcp { client: Ipv4Addr, nonce: Nonce },
    /// Requested over PCP from this LAN host's IPv6 address (pinholes only: nothing is
    /// translated for it); the nonce as for [`Self::Pcp`].
    Pcp6 { client: Ipv6Addr, nonce: Nonce },
}

/// A PCP mapping nonce (RFC 6887 section 11.1).
pub type Nonce = [u8; 12];

impl Origin {
    /// How the origin reads in a sentence: "a static", "10.0.0.10's".
    #[must_use]
    pub fn describe(self) -> String {
        match self {
            Self::Static => "the static".to_owned(),
            Self::Api => "the owner's".to_owned(),
            Self::Upnp { client } | Self::Natpmp { client } | Self::Pcp { client, .. } => {
                format!("{client}'s")
            }
            Self::Pcp6 { client, .. } => format!("{client}'s"),
        }
    }

    /// The source the API reports: `static` (the owner's, from the config or the API) or the
    /// protocol a LAN client used.
    #[must_use]
    pub const fn source(self) -> &'static str {
        match self {
            Self::Static | Self::Api => "static",
            Self::Upnp { .. } => "upnp",
            Self::Natpmp { .. } => "natpmp",
            Self::Pcp { .. } | Self::Pcp6 { .. } => "pcp",
        }
    }

    /// The LAN client that made the share, for what clients make over IPv4.
    #[must_use]
    pub const fn client(self) -> Option<Ipv4Addr> {
        match self {
            Self::Static | Self::Api | Self::Pcp6 { .. } => None,
            Self::Upnp { client } | Self::Natpmp { client } | Self::Pcp { client, .. } => {
                Some(client)
            }
        }
    }

    /// The LAN client that made it, by either address family: `None` for the owner's.
    #[must_use]
    pub const fn owner(self) -> Option<IpAddr> {
        match self {
            Self::Pcp6 { client, .. } => Some(IpAddr::V6(client)),
            _ => match self.client() {
                Some(client) => Some(IpAddr::V4(client)),
                None => None,
            },
        }
    }

    /// The event source of a change on behalf of this origin: `upnp 10.0.0.10`.
    #[must_use]
    pub fn actor(self) -> String {
        match self.owner() {
            Some(client) => format!("{} {client}", self.source()),
            None => "api".to_owned(),
        }
    }
}

/// A share in the table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Share {
    pub spec: ShareSpec,
    pub origin: Origin,
    /// Counter slot in the kernel's per-share statistics.
    pub slot: u32,
}

/// The kernel map contents the table implies.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Desired {
    pub shares: BTreeMap<ShareKey, ShareTarget>,
    pub reverse: BTreeMap<ReverseKey, ReverseTarget>,
    pub pinholes: BTreeMap<PinholeKey, PinholeTarget>,
}

/// All shares, keyed by identity. Owned by the daemon's table task.
#[derive(Clone, Debug)]
pub struct ShareTable {
    shares: BTreeMap<ShareId, Share>,
    /// Per internal endpoint: its external port and how many shares use it (several only when
    /// they differ by remote host), so the once-per-endpoint rule is checked without a scan.
    endpoints: BTreeMap<(Proto, SocketAddrV4), (u16, usize)>,
    free_slots: BTreeSet<u32>,
    next_slot: u32,
    lan: Vec<LanSubnet>,
}

impl ShareTable {
    /// An empty table for a box with these LAN subnets.
    #[must_use]
    pub fn new(lan: Vec<LanSubnet>) -> Self {
        Self {
            shares: BTreeMap::new(),
            endpoints: BTreeMap::new(),
            free_slots: BTreeSet::new(),
            next_slot: 0,
            lan,
        }
    }

    /// The shares, ordered by protocol, external port and remote host.
    pub fn iter(&self) -> impl Iterator<Item = &Share> {
        self.shares.values()
    }

    #[must_use]
    pub fn len(&self) -> usize {
        self.shares.len()
    }

    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.shares.is_empty()
    }

    /// Checks `spec` against the table's rules without adding it.
    pub fn check(&self, spec: &ShareSpec) -> Result<(), ShareError> {
        if self.shares.contains_key(&spec.id) {
            return Err(ShareError::Duplicate(spec.id));
        }
        if !self.lan.iter().any(|s| s.has_host(*spec.internal.ip())) {
            return Err(ShareError::NotOnLan {
                addr: *spec.internal.ip(),
                subnets: if self.lan.is_empty() {
                    "the LAN interface has no IPv4 subnet".to_owned()
                } else {
                    self.lan
                        .iter()
                        .map(ToString::to_string)
                        .collect::<Vec<_>>()
                        .join(", ")
                },
            });
        }
        if let Some(&(ext_port, _)) = self.endpoints.get(&(spec.id.proto, spec.internal))
            && ext_port != spec.id.ext_port
        {
            let existing = self
                .shares
                .values()
                .find(|s| s.spec.id.proto == spec.id.proto && s.spec.internal == spec.internal)
                .map_or(spec.id, |s| s.spec.id);
            return Err(ShareError::InternalInUse {
                proto: spec.id.proto,
                internal: spec.internal,
                existing,
            });
        }
        if self.free_slots.is_empty() && self.next_slot >= MAX_SHARES {
            return Err(ShareError::Full { max: MAX_SHARES });
        }
        Ok(())
    }

    /// Adds a static share; returns its counter slot (whose counters the caller resets).
    pub fn add(&mut self, spec: ShareSpec) -> Result<u32, ShareError> {
        self.add_from(spec, Origin::Static)
    }

    /// The share with identity `id`.
    #[must_use]
    pub fn get(&self, id: &ShareId) -> Option<&Share> {
        self.shares.get(id)
    }

    /// The shares of external port `port` of `proto`, for any remote host.
    pub fn on_port(&self, proto: Proto, port: u16) -> impl Iterator<Item = &Share> {
        let first = ShareId {
            proto,
            ext_port: port,
            remote: None,
        };
        let last = ShareId {
            remote: Some(Ipv4Addr::BROADCAST),
            ..first
        };
        self.shares.range(first..=last).map(|(_, share)| share)
    }

    /// Adds a share made by `origin`; returns its counter slot.
    pub fn add_from(&mut self, spec: ShareSpec, origin: Origin) -> Result<u32, ShareError> {
        self.check(&spec)?;
        let slot = if let Some(slot) = self.free_slots.pop_first() {
            slot
        } else {
            self.next_slot += 1;
            self.next_slot - 1
        };
        self.endpoints
            .entry((spec.id.proto, spec.internal))
            .or_insert((spec.id.ext_port, 0))
            .1 += 1;
        self.shares.insert(spec.id, Share { spec, origin, slot });
        Ok(slot)
    }

    /// Takes the name and enabled flag of `spec` for the share with the same identity and
    /// internal endpoint, keeping its counter slot; `false` if there is no such share.
    pub fn update_in_place(&mut self, spec: &ShareSpec) -> bool {
        match self.shares.get_mut(&spec.id) {
            Some(share) if share.spec.internal == spec.internal => {
                share.spec.name.clone_from(&spec.name);
                share.spec.enabled = spec.enabled;
                true
            }
            _ => false,
        }
    }

    /// Removes a share; `None` if there was none.
    pub fn remove(&mut self, id: &ShareId) -> Option<Share> {
        let share = self.shares.remove(id)?;
        self.free_slots.insert(share.slot);
        let endpoint = (share.spec.id.proto, share.spec.internal);
        if let Some((_, users)) = self.endpoints.get_mut(&endpoint) {
            *users -= 1;
            if *users == 0 {
                self.endpoints.remove(&endpoint);
            }
        }
        Some(share)
    }

    /// The kernel map contents for the enabled shares.
    #[must_use]
    pub fn desired(&self) -> Desired {
        let mut desired = Desired::default();
        for share in self.shares.values().filter(|s| s.spec.enabled) {
            let ShareSpec { id, internal, .. } = &share.spec;
            let proto = id.proto.number();
            desired.shares.insert(
                ShareKey {
                    remote_addr: id.remote.map_or(0, |r| u32::from(r).to_be()),
                    ext_port: id.ext_port.to_be(),
                    proto,
                    _pad: 0,
                },
                ShareTarget {
                    int_addr: u32::from(*internal.ip()).to_be(),
                    int_port: internal.port().to_be(),
                    _pad: 0,
                    slot: share.slot,
                },
            );
            let reverse = desired
                .reverse
                .entry(ReverseKey {
                    int_addr: u32::from(*internal.ip()).to_be(),
                    int_port: internal.port().to_be(),
                    proto,
                    _pad: 0,
                })
                .or_insert(ReverseTarget {
                    ext_port: id.ext_port.to_be(),
                    _pad: 0,
                    wildcard_slot: NO_SLOT,
                    flags: 0,
                });
            match id.remote {
                None => reverse.wildcard_slot = share.slot,
                Some(_) => reverse.flags |= REVERSE_F_REMOTE_SPECIFIC,
            }
        }
        desired
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lan() -> Vec<LanSubnet> {
        vec![LanSubnet {
            addr: Ipv4Addr::new(10, 0, 0, 1),
            prefix_len: 24,
        }]
    }

    fn spec(s: &str) -> ShareSpec {
        s.parse().expect("valid spec")
    }

    #[test]
    fn parses_share_specs() {
        let s = spec("tcp:8080=10.0.0.10:80");
        assert_eq!(s.id.proto, Proto::Tcp);
        assert_eq!(s.id.ext_port, 8080);
        assert_eq!(s.id.remote, None);
        assert_eq!(s.internal, "10.0.0.10:80".parse().expect("addr"));
        let s = spec("UDP:53@198.51.100.7=10.0.0.2:5353");
        assert_eq!(s.id.proto, Proto::Udp);
        assert_eq!(s.id.remote, Some(Ipv4Addr::new(198, 51, 100, 7)));
        assert_eq!(s.to_string(), "udp:53@198.51.100.7=10.0.0.2:5353");
    }

    #[test]
    fn rejects_malformed_specs_with_the_reason() {
        let err = |s: &str| s.parse::<ShareSpec>().expect_err(s);
        assert_eq!(err("tcp:0=10.0.0.10:80"), SpecError::Port("0".into()));
        assert_eq!(err("tcp:80=10.0.0.10:0"), SpecError::Port("0".into()));
        assert_eq!(
            err("tcp:70000=10.0.0.10:80"),
            SpecError::Port("70000".into())
        );
        assert_eq!(err("sctp:80=10.0.0.10:80"), SpecError::Proto("sctp".into()));
        assert_eq!(err("tcp:80=10.0.0:80"), SpecError::Addr("10.0.0".into()));
        assert_eq!(err("tcp:80@x=10.0.0.1:80"), SpecError::Addr("x".into()));
        assert!(matches!(err("tcp8080=10.0.0.10:80"), SpecError::Form(_)));
        assert!(matches!(err("tcp:8080"), SpecError::Form(_)));
        assert!(matches!(err(""), SpecError::Form(_)));
    }

    #[test]
    fn share_ids_parse_and_print_alike() {
        for text in ["tcp:8080", "udp:53@198.51.100.7"] {
            let id: ShareId = text.parse().expect(text);
            assert_eq!(id.to_string(), text);
        }
        assert_eq!("tcp".parse::<ShareId>(), Err(SpecError::Id("tcp".into())));
        assert_eq!("tcp:0".parse::<ShareId>(), Err(SpecError::Port("0".into())));
        assert_eq!(
            "icmp:1".parse::<ShareId>(),
            Err(SpecError::Proto("icmp".into()))
        );
    }

    #[test]
    fn table_enforces_the_sharing_rules() {
        let mut t = ShareTable::new(lan());
        t.add(spec("tcp:8080=10.0.0.10:80")).expect("first");
        assert_eq!(
            t.add(spec("tcp:8080=10.0.0.11:80")),
            Err(ShareError::Duplicate(spec("tcp:8080=10.0.0.11:80").id))
        );
        // Same port, other protocol: fine.
        t.add(spec("udp:8080=10.0.0.10:80")).expect("udp");
        // The internal endpoint is already shared under another external port.
        assert!(matches!(
            t.add(spec("tcp:9090=10.0.0.10:80")),
            Err(ShareError::InternalInUse { .. })
        ));
        // Same external port for one remote host, same endpoint: fine.
        t.add(spec("tcp:8080@198.51.100.9=10.0.0.10:80"))
            .expect("remote");
        for bad in [
            "tcp:1=192.168.1.5:80",
            "tcp:2=10.0.0.1:80",
            "tcp:3=10.0.0.0:80",
            "tcp:4=10.0.0.255:80",
        ] {
            assert!(
                matches!(t.add(spec(bad)), Err(ShareError::NotOnLan { .. })),
                "{bad}"
            );
        }
        assert_eq!(t.len(), 3);
    }

    #[test]
    fn an_endpoint_is_free_again_once_all_its_shares_are_gone() {
        let mut t = ShareTable::new(lan());
        t.add(spec("tcp:8080=10.0.0.10:80")).expect("wild");
        t.add(spec("tcp:8080@198.51.100.9=10.0.0.10:80"))
            .expect("remote");
        t.remove(&spec("tcp:8080=10.0.0.10:80").id);
        assert!(
            t.add(spec("tcp:9090=10.0.0.10:80")).is_err(),
            "still used by one share"
        );
        t.remove(&spec("tcp:8080@198.51.100.9=10.0.0.10:80").id);
        t.add(spec("tcp:9090=10.0.0.10:80")).expect("free now");
    }

    #[test]
    fn a_full_table_is_refused_and_checks_stay_fast() {
        let mut t = ShareTable::new(lan());
        for port in 1..=u16::MAX {
            t.add(spec(&format!("tcp:{port}=10.0.0.10:{port}")))
                .expect("fits");
        }
        t.add(spec("udp:1=10.0.0.10:1")).expect("the 65536th");
        assert_eq!(
            t.add(spec("udp:2=10.0.0.10:2")),
            Err(ShareError::Full { max: MAX_SHARES })
        );
    }

    #[test]
    fn slots_are_reused_after_removal() {
        let mut t = ShareTable::new(lan());
        let a = t.add(spec("tcp:1=10.0.0.10:1")).expect("a");
        let b = t.add(spec("tcp:2=10.0.0.10:2")).expect("b");
        assert_ne!(a, b);
        t.remove(&spec("tcp:1=10.0.0.10:1").id).expect("removed");
        assert_eq!(t.add(spec("tcp:3=10.0.0.10:3")), Ok(a));
    }

    #[test]
    fn desired_state_has_network_order_keys_and_reverse_entries() {
        let mut t = ShareTable::new(lan());
        let wild = t.add(spec("tcp:8080=10.0.0.10:80")).expect("wild");
        t.add(spec("tcp:8080@198.51.100.9=10.0.0.10:80"))
            .expect("remote");
        let mut off = spec("udp:53=10.0.0.12:53");
        off.enabled = false;
        t.add(off).expect("disabled");
        let d = t.desired();
        assert_eq!(d.shares.len(), 2, "disabled shares stay out of the kernel");
        let key = ShareKey {
            remote_addr: 0,
            ext_port: 8080u16.to_be(),
            proto: IPPROTO_TCP,
            _pad: 0,
        };
        assert_eq!(
            d.shares[&key],
            ShareTarget {
                int_addr: u32::from_be_bytes([10, 0, 0, 10]).to_be(),
                int_port: 80u16.to_be(),
                _pad: 0,
                slot: wild,
            }
        );
        let rev = d.reverse.values().next().expect("one endpoint");
        assert_eq!(d.reverse.len(), 1);
        assert_eq!(rev.ext_port, 8080u16.to_be());
        assert_eq!(rev.wildcard_slot, wild);
        assert_eq!(rev.flags, REVERSE_F_REMOTE_SPECIFIC);
    }

    #[test]
    fn lan_subnet_hosts() {
        let s = LanSubnet {
            addr: Ipv4Addr::new(192, 168, 1, 1),
            prefix_len: 24,
        };
        assert!(s.has_host(Ipv4Addr::new(192, 168, 1, 2)));
        assert!(!s.has_host(Ipv4Addr::new(192, 168, 1, 1)), "the box itself");
        assert!(!s.has_host(Ipv4Addr::new(192, 168, 2, 2)));
        let p2p = LanSubnet {
            addr: Ipv4Addr::new(10, 9, 0, 0),
            prefix_len: 31,
        };
        assert!(p2p.has_host(Ipv4Addr::new(10, 9, 0, 1)));
        assert_eq!(s.to_string(), "192.168.1.0/24");
    }
}
