//! The share table: every share by identity, the indexes the rules need, and the kernel map
//! entries it implies.

use std::{
    collections::{BTreeMap, BTreeSet},
    net::{Ipv4Addr, SocketAddrV4},
};

use portfwd_common::{
    MAX_SHARES, NO_DEADLINE, NO_SLOT, PinholeKey, PinholeTarget, REVERSE_F_REMOTE_SPECIFIC,
    ReverseKey, ReverseTarget, SHARE_F_NO_HAIRPIN, ShareKey, ShareTarget,
};

use super::{LanSubnet, Origin, Proto, Share, ShareError, ShareId, ShareSpec, reverse_key};
use crate::clock::BootClock;

/// The kernel map contents the table implies.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Desired {
    pub shares: BTreeMap<ShareKey, ShareTarget>,
    pub reverse: BTreeMap<ReverseKey, ReverseTarget>,
    pub pinholes: BTreeMap<PinholeKey, PinholeTarget>,
}

/// All shares, keyed by identity. Owned by the daemon's table task; the map is persistent
/// (structurally shared), so a snapshot for readers is a clone in O(1).
#[derive(Clone, Debug)]
pub struct ShareTable {
    shares: imbl::OrdMap<ShareId, Share>,
    /// Per internal endpoint: the shares using it (several only when they differ by remote
    /// host, all on one external port), so the once-per-endpoint rule and the reply mapping
    /// are found without a scan. A range has an entry per internal port.
    endpoints: BTreeMap<(Proto, SocketAddrV4), BTreeSet<ShareId>>,
    /// The shares that cover more than one port: a port is found in a range by a scan of
    /// these alone (ranges are the owner's and few).
    ranges: BTreeSet<ShareId>,
    /// Ports of all shares together (a range counts each), bounded by [`MAX_SHARES`]: each
    /// is an element of the kernel's maps.
    ports: u32,
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
            ranges: BTreeSet::new(),
            ports: 0,
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

    /// A share other than `except` that claims one of `id`'s ports for the same remote.
    #[must_use]
    pub fn overlapping(&self, id: ShareId, except: Option<&ShareId>) -> Option<ShareId> {
        let starting_within = self
            .in_ports(id.proto, id.ports())
            .map(|s| s.spec.id)
            .find(|other| Some(other) != except && other.overlaps(id));
        starting_within.or_else(|| {
            self.ranges
                .iter()
                .copied()
                .find(|other| Some(other) != except && other.overlaps(id))
        })
    }

    /// Checks `spec` against the table's rules without adding it. `replacing` is a share the
    /// new one takes the place of (an edit), whose identity and endpoints do not count.
    pub fn check(&self, spec: &ShareSpec, replacing: Option<&ShareId>) -> Result<(), ShareError> {
        if spec.id.ext_last < spec.id.ext_port || spec.id.port_count() > super::MAX_RANGE {
            return Err(ShareError::Spec(super::SpecError::Range(format!(
                "{}-{}",
                spec.id.ext_port, spec.id.ext_last
            ))));
        }
        spec.check_internal_range().map_err(ShareError::Spec)?;
        if self.shares.contains_key(&spec.id) && replacing != Some(&spec.id) {
            return Err(ShareError::Duplicate(spec.id));
        }
        if let Some(existing) = self.overlapping(spec.id, replacing) {
            return Err(ShareError::Overlap {
                id: spec.id,
                existing,
            });
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
        for internal in spec.endpoints() {
            let Some(users) = self.endpoints.get(&(spec.id.proto, internal)) else {
                continue;
            };
            let external = spec.external_for(internal.port());
            if let Some(other) = users.iter().find(|id| {
                Some(*id) != replacing
                    && self
                        .shares
                        .get(*id)
                        .is_some_and(|s| s.spec.external_for(internal.port()) != external)
            }) {
                return Err(ShareError::InternalInUse {
                    proto: spec.id.proto,
                    internal,
                    existing: *other,
                });
            }
        }
        let freed = replacing
            .and_then(|id| self.shares.get(id))
            .map_or(0, |s| s.spec.id.port_count());
        if self.ports - freed + spec.id.port_count() > MAX_SHARES
            || (replacing.is_none() && self.free_slot().is_none())
        {
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

    /// The shares that claim external port `port` of `proto`, for any remote host: those that
    /// start there and the ranges around it.
    pub fn on_port(&self, proto: Proto, port: u16) -> impl Iterator<Item = &Share> {
        let first = ShareId::single(proto, port, None);
        let last = ShareId {
            remote: Some(Ipv4Addr::BROADCAST),
            ext_last: u16::MAX,
            ..first
        };
        let starting = self.shares.range(first..=last).map(|(_, share)| share);
        let around = self
            .ranges
            .iter()
            .filter(move |id| id.proto == proto && id.ext_port != port && id.covers(port))
            .filter_map(|id| self.shares.get(id));
        starting.chain(around)
    }

    /// The shares of `proto` whose (first) external ports are in `ports`, for any remote host.
    pub fn in_ports(
        &self,
        proto: Proto,
        ports: std::ops::RangeInclusive<u16>,
    ) -> impl Iterator<Item = &Share> {
        let first = ShareId::single(proto, *ports.start(), None);
        let last = ShareId {
            remote: Some(Ipv4Addr::BROADCAST),
            ext_last: u16::MAX,
            ..ShareId::single(proto, *ports.end(), None)
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
        let id = share.spec.id;
        for internal in share.spec.endpoints() {
            self.endpoints
                .entry((id.proto, internal))
                .or_default()
                .insert(id);
        }
        if id.is_range() {
            self.ranges.insert(id);
        }
        self.ports += id.port_count();
        self.shares.insert(id, share);
        old
    }

    /// Removes a share; `None` if there was none.
    pub fn remove(&mut self, id: &ShareId) -> Option<Share> {
        let share = self.shares.remove(id)?;
        self.free_slots.insert(share.slot);
        for internal in share.spec.endpoints() {
            let endpoint = (id.proto, internal);
            if let Some(users) = self.endpoints.get_mut(&endpoint) {
                users.remove(id);
                if users.is_empty() {
                    self.endpoints.remove(&endpoint);
                }
            }
        }
        self.ranges.remove(id);
        self.ports -= id.port_count();
        Some(share)
    }

    /// What the WAN program's maps should hold for share `id`, one entry per external port:
    /// its target while it is enabled, with its lease end on `clock`'s boot-time scale.
    pub fn share_targets(
        &self,
        id: &ShareId,
        clock: BootClock,
    ) -> impl Iterator<Item = (ShareKey, ShareTarget)> {
        let share = self.shares.get(id).filter(|s| s.spec.enabled);
        share.into_iter().flat_map(move |share| {
            let deadline = share.expires.map_or(NO_DEADLINE, |at| clock.boot(at));
            let flags = if share.spec.hairpin {
                0
            } else {
                SHARE_F_NO_HAIRPIN
            };
            share.spec.id.ports().map(move |port| {
                let internal = share.spec.internal_for(port);
                (
                    share.spec.id.key_at(port),
                    ShareTarget {
                        int_addr: u32::from(*internal.ip()).to_be(),
                        int_port: internal.port().to_be(),
                        slot: share.slot,
                        flags,
                        deadline,
                        ..ShareTarget::default()
                    },
                )
            })
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
                    ext_port: share.spec.external_for(internal.port()).to_be(),
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
            desired.shares.extend(self.share_targets(&id, clock));
            for internal in share.spec.endpoints() {
                if let Some(target) = self.reverse_target(id.proto, internal, clock) {
                    desired
                        .reverse
                        .insert(reverse_key(id.proto, internal), target);
                }
            }
        }
        desired
    }
}
