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
    time::Instant,
};

use portfwd_common::{
    IPPROTO_TCP, IPPROTO_UDP, MAX_SHARES, NO_DEADLINE, NO_SLOT, PinholeKey, PinholeTarget,
    REVERSE_F_REMOTE_SPECIFIC, ReverseKey, ReverseTarget, ShareKey, ShareTarget,
};
use serde::{Deserialize, Serialize};

use crate::clock::BootClock;

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

    /// The protocol of IP protocol number `n`, if it is one the data plane rewrites.
    #[must_use]
    pub const fn of_number(n: u8) -> Option<Self> {
        match n {
            IPPROTO_TCP => Some(Self::Tcp),
            IPPROTO_UDP => Some(Self::Udp),
            _ => None,
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
    /// When its lease ends; `None`: until removed.
    pub expires: Option<Instant>,
}

/// The kernel map contents the table implies.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Desired {
    pub shares: BTreeMap<ShareKey, ShareTarget>,
    pub reverse: BTreeMap<ReverseKey, ReverseTarget>,
    pub pinholes: BTreeMap<PinholeKey, PinholeTarget>,
}

impl ShareId {
    /// The WAN program's key for this share.
    #[must_use]
    pub fn key(self) -> ShareKey {
        ShareKey {
            remote_addr: self.remote.map_or(0, |r| u32::from(r).to_be()),
            ext_port: self.ext_port.to_be(),
            proto: self.proto.number(),
            _pad: 0,
        }
    }

    /// The share a WAN program key stands for (`None` for a protocol the table never writes).
    #[must_use]
    pub fn of_key(key: &ShareKey) -> Option<Self> {
        Some(Self {
            proto: Proto::of_number(key.proto)?,
            ext_port: u16::from_be(key.ext_port),
            remote: (key.remote_addr != 0).then(|| Ipv4Addr::from(u32::from_be(key.remote_addr))),
        })
    }
}

/// The LAN program's key for replies from `internal` of `proto`.
#[must_use]
pub fn reverse_key(proto: Proto, internal: SocketAddrV4) -> ReverseKey {
    ReverseKey {
        int_addr: u32::from(*internal.ip()).to_be(),
        int_port: internal.port().to_be(),
        proto: proto.number(),
        _pad: 0,
    }
}

/// All shares, keyed by identity. Owned by the daemon's table task; the map is persistent
/// (structurally shared), so a snapshot for readers is a clone in O(1).
#[derive(Clone, Debug)]
pub struct ShareTable {
    shares: imbl::OrdMap<ShareId, Share>,
    /// Per internal endpoint: the shares using it (several only when they differ by remote
    /// host, all on one external port), so the once-per-endpoint rule and the reply mapping
    /// are found without a scan.
    endpoints: BTreeMap<(Proto, SocketAddrV4), BTreeSet<ShareId>>,
    free_slots: BTreeSet<u32>,
    next_slot: u32,
    lan: Vec<LanSubnet>,
}

impl ShareTable {
    /// An empty table for a box with these LAN subnets.
    #[must_use]
    pub fn new(lan: Vec<LanSubnet>) -> Self {
        Self {
            shares: imbl::OrdMap::new(),
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

    /// The shares as they are now, for readers (O(1)).
    #[must_use]
    pub fn snapshot(&self) -> imbl::OrdMap<ShareId, Share> {
        self.shares.clone()
    }

    #[must_use]
    pub fn len(&self) -> usize {
        self.shares.len()
    }

    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.shares.is_empty()
    }

    /// The LAN subnets shares may point into.
    #[must_use]
    pub fn lan(&self) -> &[LanSubnet] {
        &self.lan
    }

    /// Checks `spec` against the table's rules without adding it. `replacing` is a share the
    /// new one takes the place of (an edit), whose identity and endpoint do not count.
    pub fn check(&self, spec: &ShareSpec, replacing: Option<&ShareId>) -> Result<(), ShareError> {
        if self.shares.contains_key(&spec.id) && replacing != Some(&spec.id) {
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
        if let Some(users) = self.endpoints.get(&(spec.id.proto, spec.internal))
            && let Some(other) = users
                .iter()
                .find(|id| Some(*id) != replacing && id.ext_port != spec.id.ext_port)
        {
            return Err(ShareError::InternalInUse {
                proto: spec.id.proto,
                internal: spec.internal,
                existing: *other,
            });
        }
        if replacing.is_none() && self.free_slots.is_empty() && self.next_slot >= MAX_SHARES {
            return Err(ShareError::Full { max: MAX_SHARES });
        }
        Ok(())
    }

    /// The counter slot the next new share gets, if the table has room.
    #[must_use]
    pub fn free_slot(&self) -> Option<u32> {
        self.free_slots
            .first()
            .copied()
            .or((self.next_slot < MAX_SHARES).then_some(self.next_slot))
    }

    /// Whether counter slot `slot` is free for a new share.
    #[must_use]
    pub fn slot_free(&self, slot: u32) -> bool {
        slot < MAX_SHARES && (slot >= self.next_slot || self.free_slots.contains(&slot))
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

    /// The shares of `proto` whose external ports are in `ports`, for any remote host.
    pub fn in_ports(
        &self,
        proto: Proto,
        ports: std::ops::RangeInclusive<u16>,
    ) -> impl Iterator<Item = &Share> {
        let first = ShareId {
            proto,
            ext_port: *ports.start(),
            remote: None,
        };
        let last = ShareId {
            proto,
            ext_port: *ports.end(),
            remote: Some(Ipv4Addr::BROADCAST),
        };
        self.shares.range(first..=last).map(|(_, share)| share)
    }

    /// The shares of internal endpoint `internal` of `proto`.
    pub fn of_endpoint(
        &self,
        proto: Proto,
        internal: SocketAddrV4,
    ) -> impl Iterator<Item = &Share> {
        self.endpoints
            .get(&(proto, internal))
            .into_iter()
            .flatten()
            .filter_map(|id| self.shares.get(id))
    }

    /// Adds a share made by `origin`; returns its counter slot.
    pub fn add_from(&mut self, spec: ShareSpec, origin: Origin) -> Result<u32, ShareError> {
        self.check(&spec, None)?;
        let slot = self
            .free_slot()
            .ok_or(ShareError::Full { max: MAX_SHARES })?;
        self.insert(Share {
            spec,
            origin,
            slot,
            expires: None,
        });
        Ok(slot)
    }

    /// Puts `share` in, with its own counter slot (taken from the free ones), replacing a
    /// share with the same identity; returns that one. Callers check first ([`Self::check`]).
    pub fn insert(&mut self, share: Share) -> Option<Share> {
        let old = self.remove(&share.spec.id);
        let slot = share.slot;
        if !self.free_slots.remove(&slot) {
            // A slot beyond the ones handed out so far: the ones between become free.
            self.free_slots.extend(self.next_slot..slot);
            self.next_slot = self.next_slot.max(slot + 1);
        }
        self.endpoints
            .entry((share.spec.id.proto, share.spec.internal))
            .or_default()
            .insert(share.spec.id);
        self.shares.insert(share.spec.id, share);
        old
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
        if let Some(users) = self.endpoints.get_mut(&endpoint) {
            users.remove(id);
            if users.is_empty() {
                self.endpoints.remove(&endpoint);
            }
        }
        Some(share)
    }

    /// What the WAN program's map should hold for share `id`: its target while it is enabled,
    /// with its lease end on `clock`'s boot-time scale.
    #[must_use]
    pub fn share_target(&self, id: &ShareId, clock: BootClock) -> Option<ShareTarget> {
        let share = self.shares.get(id).filter(|s| s.spec.enabled)?;
        Some(ShareTarget {
            int_addr: u32::from(*share.spec.internal.ip()).to_be(),
            int_port: share.spec.internal.port().to_be(),
            slot: share.slot,
            deadline: share.expires.map_or(NO_DEADLINE, |at| clock.boot(at)),
            ..ShareTarget::default()
        })
    }

    /// What the LAN program's map should hold for replies from `internal` of `proto`: the
    /// external port of its enabled shares, the any-remote share's counter slot, and whether
    /// remote-specific shares use it too.
    #[must_use]
    pub fn reverse_target(
        &self,
        proto: Proto,
        internal: SocketAddrV4,
        clock: BootClock,
    ) -> Option<ReverseTarget> {
        let mut target: Option<(ReverseTarget, bool)> = None;
        for share in self.of_endpoint(proto, internal).filter(|s| s.spec.enabled) {
            let (t, forever) = target.get_or_insert((
                ReverseTarget {
                    ext_port: share.spec.id.ext_port.to_be(),
                    wildcard_slot: NO_SLOT,
                    ..ReverseTarget::default()
                },
                false,
            ));
            match share.spec.id.remote {
                None => t.wildcard_slot = share.slot,
                Some(_) => t.flags |= REVERSE_F_REMOTE_SPECIFIC,
            }
            // Replies are rewritten while any of the endpoint's shares holds.
            match share.expires {
                None => *forever = true,
                Some(at) => t.deadline = t.deadline.max(clock.boot(at)),
            }
        }
        target.map(|(mut t, forever)| {
            if forever {
                t.deadline = NO_DEADLINE;
            }
            t
        })
    }

    /// The kernel map contents for the enabled shares, deadlines on `clock`'s scale.
    #[must_use]
    pub fn desired(&self, clock: BootClock) -> Desired {
        let mut desired = Desired::default();
        for share in self.shares.values().filter(|s| s.spec.enabled) {
            let id = share.spec.id;
            if let Some(target) = self.share_target(&id, clock) {
                desired.shares.insert(id.key(), target);
            }
            if let Some(target) = self.reverse_target(id.proto, share.spec.internal, clock) {
                desired
                    .reverse
                    .insert(reverse_key(id.proto, share.spec.internal), target);
            }
        }
        desired
    }
}

#[cfg(test)]
mod tests;
