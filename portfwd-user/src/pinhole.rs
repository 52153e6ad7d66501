//! IPv6 port sharing: pinholes. Over IPv6 nothing is translated: a LAN host's own global
//! address and port are opened to the internet (the FRITZ!Box's "port assigned externally,
//! IPv6"), optionally for one remote address only. The data plane forwards inbound packets to
//! an open pinhole in XDP and leaves everything else to the kernel (see `portfwd-ebpf`).
//!
//! Rules: the address is a host of an IPv6 prefix on the LAN interface (global scope), not the
//! box's own; a pinhole is (protocol, address, port), so one endpoint has one pinhole (with at
//! most one remote restriction); port 0 is never valid.

use std::{
    collections::{BTreeMap, BTreeSet},
    fmt,
    net::Ipv6Addr,
    str::FromStr,
    time::Instant,
};

use portfwd_common::{MAX_PINHOLES, PinholeKey, PinholeTarget};
use serde::{Deserialize, Serialize};

use crate::share::{Origin, Proto, SpecError};

/// A pinhole's identity: `tcp:[2001:db8::10]:443`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PinholeId {
    pub proto: Proto,
    pub addr: Ipv6Addr,
    pub port: u16,
}

impl PinholeId {
    /// The data plane's key for this pinhole.
    #[must_use]
    pub fn key(self) -> PinholeKey {
        PinholeKey {
            addr: self.addr.octets(),
            port: self.port.to_be(),
            proto: self.proto.number(),
            _pad: 0,
        }
    }

    /// The pinhole a data plane key stands for.
    #[must_use]
    pub fn of_key(key: &PinholeKey) -> Option<Self> {
        Some(Self {
            proto: Proto::of_number(key.proto)?,
            addr: Ipv6Addr::from(key.addr),
            port: u16::from_be(key.port),
        })
    }
}

impl fmt::Display for PinholeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:[{}]:{}", self.proto, self.addr, self.port)
    }
}

impl FromStr for PinholeId {
    type Err = SpecError;

    /// `PROTO:[ADDR]:PORT`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || SpecError::Pinhole(s.to_owned());
        let (proto, rest) = s.split_once(':').ok_or_else(bad)?;
        let rest = rest.strip_prefix('[').ok_or_else(bad)?;
        let (addr, port) = rest.split_once("]:").ok_or_else(bad)?;
        let addr = addr
            .parse::<Ipv6Addr>()
            .map_err(|_| SpecError::Addr6(addr.to_owned()))?;
        let port = match port.parse::<u16>() {
            Ok(0) | Err(_) => return Err(SpecError::Port(port.to_owned())),
            Ok(port) => port,
        };
        Ok(Self {
            proto: proto.parse()?,
            addr,
            port,
        })
    }
}

impl Serialize for PinholeId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for PinholeId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

/// A pinhole as asked for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PinholeSpec {
    pub id: PinholeId,
    /// `None`: any remote address.
    pub remote: Option<Ipv6Addr>,
    /// `None`: any remote port (UPnP `RemotePort`; the owner's pinholes have none).
    pub remote_port: Option<u16>,
    pub name: Option<String>,
    pub enabled: bool,
}

/// An IPv6 prefix on the LAN interface.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Prefix6 {
    /// The box's own address in the prefix.
    pub addr: Ipv6Addr,
    pub prefix_len: u8,
}

impl Prefix6 {
    /// Whether `host` is in the prefix and not the box's own address.
    #[must_use]
    pub fn has_host(self, host: Ipv6Addr) -> bool {
        let mask = u128::MAX
            .checked_shl(128 - u32::from(self.prefix_len))
            .unwrap_or(0);
        u128::from(host) & mask == u128::from(self.addr) & mask && host != self.addr
    }
}

impl fmt::Display for Prefix6 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mask = u128::MAX
            .checked_shl(128 - u32::from(self.prefix_len))
            .unwrap_or(0);
        let net = Ipv6Addr::from(u128::from(self.addr) & mask);
        write!(f, "{net}/{}", self.prefix_len)
    }
}

/// Why a pinhole cannot be opened.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PinholeError {
    #[error("{0} is already open")]
    Duplicate(PinholeId),
    #[error("{addr} is not a host of an IPv6 prefix on the LAN interface ({prefixes})")]
    NotOnLan { addr: Ipv6Addr, prefixes: String },
    #[error("the pinhole table is full ({max} pinholes)")]
    Full { max: u32 },
}

/// An open pinhole.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pinhole {
    pub spec: PinholeSpec,
    pub origin: Origin,
    /// Counter slot in the kernel's pinhole statistics.
    pub slot: u32,
    /// The UPnP `UniqueID` (WANIPv6FirewallControl): unique among open pinholes, not reused
    /// until the other 65534 have been handed out, kept across restarts.
    pub uid: u16,
    /// When the lease ends; `None`: until closed (the owner's).
    pub expires: Option<Instant>,
}

/// All pinholes. Owned by the table task, beside the shares; the map is persistent, so a
/// snapshot for readers is a clone in O(1).
#[derive(Clone, Debug, Default)]
pub struct Pinholes {
    open: imbl::OrdMap<PinholeId, Pinhole>,
    free_slots: BTreeSet<u32>,
    next_slot: u32,
    uids: BTreeMap<u16, PinholeId>,
    /// Where the search for a free `UniqueID` starts.
    next_uid: u16,
    lan: Vec<Prefix6>,
}

impl Pinholes {
    #[must_use]
    pub fn new(lan: Vec<Prefix6>) -> Self {
        Self {
            lan,
            ..Self::default()
        }
    }

    pub fn iter(&self) -> impl Iterator<Item = &Pinhole> {
        self.open.values()
    }

    #[must_use]
    pub fn len(&self) -> usize {
        self.open.len()
    }

    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.open.is_empty()
    }

    /// The pinholes as they are now, for readers (O(1)).
    #[must_use]
    pub fn snapshot(&self) -> imbl::OrdMap<PinholeId, Pinhole> {
        self.open.clone()
    }

    /// Whether `addr` is a host of one of the LAN's global prefixes.
    #[must_use]
    pub fn on_lan(&self, addr: Ipv6Addr) -> bool {
        self.lan.iter().any(|p| p.has_host(addr))
    }

    /// Puts `pinhole` in as it is (slot and `UniqueID` included), replacing one with the same
    /// identity; returns that one. What undoing a change and restoring saved state use.
    pub fn insert(&mut self, pinhole: Pinhole) -> Option<Pinhole> {
        let old = self.remove(&pinhole.spec.id);
        if !self.free_slots.remove(&pinhole.slot) {
            self.free_slots.extend(self.next_slot..pinhole.slot);
            self.next_slot = self.next_slot.max(pinhole.slot + 1);
        }
        self.uids.insert(pinhole.uid, pinhole.spec.id);
        self.open.insert(pinhole.spec.id, pinhole);
        old
    }

    /// What the kernel map should hold for `id`: its target while it is enabled, its lease
    /// end on `clock`'s boot-time scale.
    #[must_use]
    pub fn target(&self, id: &PinholeId, clock: crate::clock::BootClock) -> Option<PinholeTarget> {
        let p = self.open.get(id).filter(|p| p.spec.enabled)?;
        Some(PinholeTarget {
            remote: p.spec.remote.map_or([0; 16], |r| r.octets()),
            remote_port: p.spec.remote_port.map_or(0, u16::to_be),
            _pad: 0,
            slot: p.slot,
            deadline: p
                .expires
                .map_or(portfwd_common::NO_DEADLINE, |at| clock.boot(at)),
        })
    }

    #[must_use]
    pub fn get(&self, id: &PinholeId) -> Option<&Pinhole> {
        self.open.get(id)
    }

    /// The open pinhole with UPnP `UniqueID` `uid`.
    #[must_use]
    pub fn by_uid(&self, uid: u16) -> Option<&Pinhole> {
        self.open.get(self.uids.get(&uid)?)
    }

    /// Opens `spec` for `origin`, with UPnP id `uid` if that is free (a restored pinhole keeps
    /// its id) or the next free one; returns its counter slot (whose counters the caller
    /// resets). No lease: see [`Self::set_expires`].
    pub fn add(
        &mut self,
        spec: PinholeSpec,
        origin: Origin,
        uid: Option<u16>,
    ) -> Result<u32, PinholeError> {
        if self.open.contains_key(&spec.id) {
            return Err(PinholeError::Duplicate(spec.id));
        }
        if !self.lan.iter().any(|p| p.has_host(spec.id.addr)) {
            return Err(PinholeError::NotOnLan {
                addr: spec.id.addr,
                prefixes: if self.lan.is_empty() {
                    "the LAN interface has no global IPv6 prefix".to_owned()
                } else {
                    self.lan
                        .iter()
                        .map(ToString::to_string)
                        .collect::<Vec<_>>()
                        .join(", ")
                },
            });
        }
        let slot = match self.free_slots.pop_first() {
            Some(slot) => slot,
            None if self.next_slot < MAX_PINHOLES => {
                self.next_slot += 1;
                self.next_slot - 1
            }
            None => return Err(PinholeError::Full { max: MAX_PINHOLES }),
        };
        // At most MAX_PINHOLES (< 65535) ids are in use, so a free one is always found.
        let uid = match uid {
            Some(uid) if uid != 0 && !self.uids.contains_key(&uid) => uid,
            _ => {
                let mut uid = self.next_uid;
                while uid == 0 || self.uids.contains_key(&uid) {
                    uid = uid.wrapping_add(1);
                }
                self.next_uid = uid.wrapping_add(1);
                uid
            }
        };
        self.uids.insert(uid, spec.id);
        self.open.insert(
            spec.id,
            Pinhole {
                spec,
                origin,
                slot,
                uid,
                expires: None,
            },
        );
        Ok(slot)
    }

    /// Closes pinhole `id`.
    pub fn remove(&mut self, id: &PinholeId) -> Option<Pinhole> {
        let pinhole = self.open.remove(id)?;
        self.free_slots.insert(pinhole.slot);
        self.uids.remove(&pinhole.uid);
        Some(pinhole)
    }

    /// Sets when pinhole `id`'s lease ends; returns the end it had.
    pub fn set_expires(&mut self, id: &PinholeId, expires: Option<Instant>) -> Option<Instant> {
        self.open
            .get_mut(id)
            .and_then(|p| std::mem::replace(&mut p.expires, expires))
    }

    /// Switches pinhole `id` on or off; whether it exists.
    pub fn set_enabled(&mut self, id: &PinholeId, enabled: bool) -> bool {
        self.open
            .get_mut(id)
            .map(|p| p.spec.enabled = enabled)
            .is_some()
    }

    /// The kernel map contents: the enabled pinholes.
    #[must_use]
    pub fn desired(&self, clock: crate::clock::BootClock) -> BTreeMap<PinholeKey, PinholeTarget> {
        self.open
            .keys()
            .filter_map(|id| Some((id.key(), self.target(id, clock)?)))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lan() -> Vec<Prefix6> {
        vec![Prefix6 {
            addr: "2001:db8:77::1".parse().expect("addr"),
            prefix_len: 64,
        }]
    }

    fn spec(s: &str) -> PinholeSpec {
        PinholeSpec {
            id: s.parse().expect("id"),
            remote: None,
            remote_port: None,
            name: None,
            enabled: true,
        }
    }

    #[test]
    fn ids_read_and_print_the_same() {
        let id: PinholeId = "tcp:[2001:db8:77::10]:443".parse().expect("id");
        assert_eq!(id.to_string(), "tcp:[2001:db8:77::10]:443");
        for bad in [
            "tcp:2001:db8::1:443",
            "tcp:[2001:db8::1]",
            "tcp:[10.0.0.1]:80",
            "tcp:[2001:db8::1]:0",
            "sctp:[2001:db8::1]:80",
        ] {
            assert!(bad.parse::<PinholeId>().is_err(), "{bad}");
        }
    }

    #[test]
    fn pinholes_open_on_lan_hosts_only_and_reach_the_kernel_map_enabled() {
        let mut p = Pinholes::new(lan());
        let slot = p
            .add(spec("tcp:[2001:db8:77::10]:443"), Origin::Api, None)
            .expect("open");
        assert_eq!(
            p.add(spec("tcp:[2001:db8:77::10]:443"), Origin::Api, None),
            Err(PinholeError::Duplicate(
                "tcp:[2001:db8:77::10]:443".parse().expect("id")
            ))
        );
        for outside in ["tcp:[2001:db8:99::10]:443", "tcp:[2001:db8:77::1]:443"] {
            assert!(matches!(
                p.add(spec(outside), Origin::Api, None),
                Err(PinholeError::NotOnLan { .. })
            ));
        }
        let mut off = spec("udp:[2001:db8:77::11]:53");
        off.enabled = false;
        p.add(off, Origin::Api, None).expect("open");
        let desired = p.desired(crate::clock::BootClock::read(Instant::now()));
        assert_eq!(desired.len(), 1, "disabled pinholes stay out of the kernel");
        let (key, target) = desired.iter().next().expect("one");
        assert_eq!(key.port, 443u16.to_be());
        assert_eq!(key.proto, 6);
        assert_eq!((target.remote, target.slot), ([0; 16], slot));
        let id = "tcp:[2001:db8:77::10]:443".parse().expect("id");
        let first_uid = p.get(&id).expect("open").uid;
        assert_eq!(p.by_uid(first_uid).map(|p| p.spec.id), Some(id));
        assert!(p.remove(&id).is_some());
        assert!(p.by_uid(first_uid).is_none());
        let again = p
            .add(spec("tcp:[2001:db8:77::12]:80"), Origin::Api, None)
            .expect("open");
        assert_eq!(again, slot, "slots are reused");
        let third: PinholeId = "tcp:[2001:db8:77::12]:80".parse().expect("id");
        assert_ne!(
            p.get(&third).expect("open").uid,
            first_uid,
            "UniqueIDs are not handed out again at once"
        );
    }

    #[test]
    fn unique_ids_are_kept_when_free_and_never_zero() {
        let mut p = Pinholes::new(lan());
        p.add(spec("tcp:[2001:db8:77::10]:1"), Origin::Api, Some(7))
            .expect("open");
        p.add(spec("tcp:[2001:db8:77::10]:2"), Origin::Api, Some(7))
            .expect("open");
        p.add(spec("tcp:[2001:db8:77::10]:3"), Origin::Api, Some(0))
            .expect("open");
        let uids: Vec<u16> = p.iter().map(|p| p.uid).collect();
        assert_eq!(uids[0], 7);
        assert!(!uids.contains(&0));
        let mut sorted = uids.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(sorted.len(), 3, "{uids:?}");
    }
}
