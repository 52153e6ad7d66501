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
    fmt,
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddrV4},
    str::FromStr,
    time::Instant,
};

use portfwd_common::{IPPROTO_TCP, IPPROTO_UDP, ReverseKey, ShareKey};
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

/// What identifies a share: protocol, external port (or port range) and the remote host it is
/// limited to.
///
/// A port range (`tcp:27015-27030`) maps its external ports one to one onto as many internal
/// ports from the spec's internal port on, as a FRITZ!Box "port range" share does. It is one
/// share: one identity, one counter slot, one line in listings and events. Its ports may not
/// overlap another share's for the same remote host (checked per port).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ShareId {
    pub proto: Proto,
    /// The external port, the first of a range.
    pub ext_port: u16,
    /// `None`: any remote host.
    pub remote: Option<Ipv4Addr>,
    /// The last external port of a range; `ext_port` for a single port.
    pub ext_last: u16,
}

/// The most ports one range share covers. The kernel's maps hold one element per port, and
/// all shares' ports together are bounded by [`portfwd_common::MAX_SHARES`].
pub const MAX_RANGE: u32 = 16_384;

impl ShareId {
    /// A share of one port.
    #[must_use]
    pub const fn single(proto: Proto, ext_port: u16, remote: Option<Ipv4Addr>) -> Self {
        Self {
            proto,
            ext_port,
            remote,
            ext_last: ext_port,
        }
    }

    /// Its external ports.
    #[must_use]
    pub const fn ports(self) -> std::ops::RangeInclusive<u16> {
        self.ext_port..=self.ext_last
    }

    /// How many external ports it covers (1 for a single port).
    #[must_use]
    pub const fn port_count(self) -> u32 {
        self.ext_last.saturating_sub(self.ext_port) as u32 + 1
    }

    /// Whether it covers more than one port.
    #[must_use]
    pub const fn is_range(self) -> bool {
        self.ext_last != self.ext_port
    }

    /// Whether external port `port` is one of its ports.
    #[must_use]
    pub const fn covers(self, port: u16) -> bool {
        self.ext_port <= port && port <= self.ext_last
    }

    /// Whether it and `other` claim a common port of the same protocol for the same remote.
    #[must_use]
    pub const fn overlaps(self, other: Self) -> bool {
        self.proto as u8 == other.proto as u8
            && same_remote(self.remote, other.remote)
            && self.ext_port <= other.ext_last
            && other.ext_port <= self.ext_last
    }

    /// The same share moved to start at `port` (its length kept, cut at 65535).
    #[must_use]
    pub fn at(self, port: u16) -> Self {
        let last = u32::from(port) + self.port_count() - 1;
        Self {
            ext_port: port,
            ext_last: u16::try_from(last).unwrap_or(u16::MAX),
            ..self
        }
    }
}

const fn same_remote(a: Option<Ipv4Addr>, b: Option<Ipv4Addr>) -> bool {
    match (a, b) {
        (None, None) => true,
        (Some(a), Some(b)) => a.to_bits() == b.to_bits(),
        _ => false,
    }
}

impl fmt::Display for ShareId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.proto, self.ext_port)?;
        if self.is_range() {
            write!(f, "-{}", self.ext_last)?;
        }
        if let Some(remote) = self.remote {
            write!(f, "@{remote}")?;
        }
        Ok(())
    }
}

impl FromStr for ShareId {
    type Err = SpecError;

    /// `PROTO:EXTPORT[-LAST][@REMOTE]`, as shares are named in the API and the CLI.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (proto, external) = s
            .split_once(':')
            .ok_or_else(|| SpecError::Id(s.to_owned()))?;
        let (ports, remote) = match external.split_once('@') {
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
        let (first, last) = parse_ports(ports)?;
        Ok(Self {
            proto: proto.parse()?,
            ext_port: first,
            remote,
            ext_last: last,
        })
    }
}

/// `PORT` or `FIRST-LAST` (FIRST <= LAST, at most [`MAX_RANGE`] ports).
pub fn parse_ports(s: &str) -> Result<(u16, u16), SpecError> {
    let Some((first, last)) = s.split_once('-') else {
        let port = parse_port(s)?;
        return Ok((port, port));
    };
    let (first, last) = (parse_port(first)?, parse_port(last)?);
    if first > last || u32::from(last) - u32::from(first) + 1 > MAX_RANGE {
        return Err(SpecError::Range(s.to_owned()));
    }
    Ok((first, last))
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

/// A share as configured: `PROTO:EXTPORT[-LAST][@REMOTE]=IP:PORT`, plus an optional name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ShareSpec {
    pub id: ShareId,
    pub internal: SocketAddrV4,
    pub name: Option<String>,
    pub enabled: bool,
    /// Whether LAN hosts reach it through the external address (hairpin, NAT loopback): on
    /// unless the owner turns it off for this share.
    pub hairpin: bool,
}

/// A malformed share specification.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SpecError {
    #[error(
        "share `{0}` is not of the form PROTO:EXTPORT[-LAST][@REMOTE]=IP:PORT (e.g. tcp:8080=10.0.0.10:80)"
    )]
    Form(String),
    #[error("share `{0}` is not of the form PROTO:EXTPORT[-LAST][@REMOTE] (e.g. tcp:8080)")]
    Id(String),
    #[error("unknown protocol `{0}`: expected tcp or udp")]
    Proto(String),
    #[error("`{0}` is not a port number (1-65535)")]
    Port(String),
    #[error("`{0}` is not a port range FIRST-LAST with FIRST <= LAST, of at most 16384 ports")]
    Range(String),
    #[error("the internal ports of `{0}` would run past 65535")]
    InternalRange(String),
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
        let spec = Self {
            id,
            internal: SocketAddrV4::new(addr, parse_port(port)?),
            name: None,
            enabled: true,
            hairpin: true,
        };
        spec.check_internal_range()?;
        Ok(spec)
    }
}

impl ShareSpec {
    /// Refuses a range whose internal ports would run past 65535.
    pub fn check_internal_range(&self) -> Result<(), SpecError> {
        if u32::from(self.internal.port()) + self.id.port_count() - 1 > u32::from(u16::MAX) {
            return Err(SpecError::InternalRange(self.to_string()));
        }
        Ok(())
    }

    /// The internal endpoint external port `port` (one of the share's) goes to.
    #[must_use]
    pub fn internal_for(&self, port: u16) -> SocketAddrV4 {
        let offset = port.wrapping_sub(self.id.ext_port);
        SocketAddrV4::new(
            *self.internal.ip(),
            self.internal.port().wrapping_add(offset),
        )
    }

    /// The external port the internal endpoint with port `internal_port` is shared as.
    #[must_use]
    pub fn external_for(&self, internal_port: u16) -> u16 {
        self.id
            .ext_port
            .wrapping_add(internal_port.wrapping_sub(self.internal.port()))
    }

    /// Its internal endpoints, one per external port.
    pub fn endpoints(&self) -> impl Iterator<Item = SocketAddrV4> + '_ {
        self.id.ports().map(|port| self.internal_for(port))
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
    #[error("the share table is full ({max} ports, a range counting each of its ports)")]
    Full { max: u32 },
    #[error("{id} overlaps {existing}: a port is shared once per remote host")]
    Overlap { id: ShareId, existing: ShareId },
    #[error(transparent)]
    Spec(SpecError),
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

impl ShareId {
    /// The WAN program's key for external port `port` of this share.
    #[must_use]
    pub fn key_at(self, port: u16) -> ShareKey {
        ShareKey {
            remote_addr: self.remote.map_or(0, |r| u32::from(r).to_be()),
            ext_port: port.to_be(),
            proto: self.proto.number(),
            _pad: 0,
        }
    }

    /// The WAN program's key for this share's (first) port.
    #[must_use]
    pub fn key(self) -> ShareKey {
        self.key_at(self.ext_port)
    }

    /// The WAN program's keys, one per port.
    pub fn keys(self) -> impl Iterator<Item = ShareKey> {
        self.ports().map(move |port| self.key_at(port))
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

mod table;

pub use table::{Desired, ShareTable};

#[cfg(test)]
mod tests;
