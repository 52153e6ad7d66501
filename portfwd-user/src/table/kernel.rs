//! The kernel side of the table: what the XDP maps hold, brought in step with the table one
//! change at a time.
//!
//! A change marks the identities it touched ([`Dirty`]); [`Kernel::apply`] computes the map
//! entries of just those from the table and writes only what differs from what it last wrote,
//! so a change costs what it changes, whatever the table's size. The order keeps every
//! packet's view consistent: reply mappings go in before the inbound share that needs them
//! and come out after it; each hash-map update replaces one element atomically (RCU). The WAN
//! program looks up remote-specific shares only while the config flag says there are some:
//! the flag goes on before the first such share and off after the last.

use std::{
    collections::{BTreeMap, BTreeSet},
    net::SocketAddrV4,
};

use portfwd_common::{
    CONFIG_F_REMOTE_SPECIFIC, Config, PinholeKey, PinholeTarget, ReverseKey, ReverseTarget,
    ShareKey, ShareTarget, exposed::Exposed,
};

use crate::{
    clock::BootClock,
    dataplane::{Applied, DataplaneError, KernelMaps},
    pinhole::{PinholeId, Pinholes},
    policy::ExposedHosts,
    share::{Proto, ShareId, ShareTable, reverse_key},
};

/// What a change touched, whose map entries must be recomputed.
#[derive(Clone, Debug, Default)]
pub struct Dirty {
    pub shares: BTreeSet<ShareId>,
    pub endpoints: BTreeSet<(Proto, SocketAddrV4)>,
    pub pinholes: BTreeSet<PinholeId>,
    /// Everything (the WAN link went down or came back).
    pub all: bool,
}

impl Dirty {
    pub fn merge(&mut self, other: Self) {
        self.shares.extend(other.shares);
        self.endpoints.extend(other.endpoints);
        self.pinholes.extend(other.pinholes);
        self.all |= other.all;
    }
}

/// The maps and what was last written to them.
pub struct Kernel {
    maps: Box<dyn KernelMaps + Send>,
    pub(super) config: Config,
    shares: BTreeMap<ShareKey, ShareTarget>,
    reverse: BTreeMap<ReverseKey, ReverseTarget>,
    pinholes: BTreeMap<PinholeKey, PinholeTarget>,
    /// The exposed hosts as last written.
    exposed: Exposed,
    /// Remote-specific shares in `shares`.
    remote_specific: usize,
    /// What a failed apply left undone: retried with the next one.
    stale: Dirty,
    /// Every write so far.
    pub(super) total: Applied,
}

impl Kernel {
    /// For `maps` as they are: empty, or pinned maps an earlier daemon left, whose entries
    /// are taken as written (and diffed against like any others: nothing that still holds is
    /// rewritten, so forwarding goes on through a restart).
    pub fn new(maps: Box<dyn KernelMaps + Send>) -> Self {
        let adopted = maps.adopted();
        let remote_specific = adopted.shares.keys().filter(|k| k.remote_addr != 0).count();
        Self {
            maps,
            config: adopted.config,
            shares: adopted.shares,
            reverse: adopted.reverse,
            pinholes: adopted.pinholes,
            exposed: adopted.exposed,
            remote_specific,
            stale: Dirty::default(),
            total: Applied::default(),
        }
    }

    /// The counter slot share `key` had in maps found pinned, to keep its counters.
    pub fn share_slot(&self, key: ShareKey) -> Option<u32> {
        self.shares.get(&key).map(|t| t.slot)
    }

    pub fn maps(&self) -> &dyn KernelMaps {
        self.maps.as_ref()
    }

    pub fn maps_mut(&mut self) -> &mut dyn KernelMaps {
        self.maps.as_mut()
    }

    /// Writes the config map if `config` differs from what it holds.
    pub fn set_config(&mut self, config: Config) -> Result<(), DataplaneError> {
        if config != self.config {
            self.maps.set_config(config)?;
            self.config = config;
        }
        Ok(())
    }

    /// Writes the exposed hosts if they differ from what the map holds; none while the WAN
    /// link is down (as shares are off then).
    pub fn set_exposed(&mut self, hosts: ExposedHosts, up: bool) -> Result<(), DataplaneError> {
        let exposed = if up {
            Exposed {
                addr: hosts.v4.map_or(0, |a| u32::from(a).to_be()),
                _pad: 0,
                addr6: hosts.v6.map_or([0; 16], |a| a.octets()),
            }
        } else {
            Exposed::default()
        };
        if exposed != self.exposed {
            self.maps.set_exposed(exposed)?;
            self.exposed = exposed;
        }
        Ok(())
    }

    fn set_flag(&mut self, on: bool) -> Result<(), DataplaneError> {
        let mut config = self.config;
        if on {
            config.flags |= CONFIG_F_REMOTE_SPECIFIC;
        } else {
            config.flags &= !CONFIG_F_REMOTE_SPECIFIC;
        }
        self.set_config(config)
    }

    /// Brings the entries of `dirty` (and of any earlier failed apply) in line with the table,
    /// or with nothing while `up` is false. On error, what is left is retried next time.
    pub fn apply(
        &mut self,
        dirty: Dirty,
        shares: &ShareTable,
        pinholes: &Pinholes,
        up: bool,
        clock: BootClock,
    ) -> Result<Applied, DataplaneError> {
        let mut dirty = dirty;
        dirty.merge(std::mem::take(&mut self.stale));
        let result = self.apply_inner(&dirty, shares, pinholes, up, clock);
        match &result {
            Ok(done) => {
                self.total.upserts += done.upserts;
                self.total.deletes += done.deletes;
            }
            Err(_) => self.stale = dirty,
        }
        result
    }

    fn apply_inner(
        &mut self,
        dirty: &Dirty,
        shares: &ShareTable,
        pinholes: &Pinholes,
        up: bool,
        clock: BootClock,
    ) -> Result<Applied, DataplaneError> {
        let (share_ids, endpoints, pinhole_ids): (Vec<ShareId>, Vec<_>, Vec<PinholeId>) =
            if dirty.all {
                let ids: BTreeSet<ShareId> = shares.iter().map(|s| s.spec.id).collect();
                let mut eps: BTreeSet<(Proto, SocketAddrV4)> = shares
                    .iter()
                    .flat_map(|s| s.spec.endpoints().map(|e| (s.spec.id.proto, e)))
                    .collect();
                eps.extend(self.reverse.keys().filter_map(|k| endpoint_of(*k)));
                let mut holes: BTreeSet<PinholeId> = pinholes.iter().map(|p| p.spec.id).collect();
                holes.extend(self.pinholes.keys().filter_map(PinholeId::of_key));
                (
                    ids.into_iter().collect(),
                    eps.into_iter().collect(),
                    holes.into_iter().collect(),
                )
            } else {
                (
                    dirty.shares.iter().copied().collect(),
                    dirty.endpoints.iter().copied().collect(),
                    dirty.pinholes.iter().copied().collect(),
                )
            };
        let share_ops = self.share_ops(&share_ids, shares, up, dirty.all, clock);
        let reverse_ops: Vec<(ReverseKey, Option<ReverseTarget>)> = endpoints
            .iter()
            .map(|&(proto, ep)| {
                (
                    reverse_key(proto, ep),
                    gate(up, shares.reverse_target(proto, ep, clock)),
                )
            })
            .filter(|(k, v)| self.reverse.get(k) != v.as_ref())
            .collect();
        let pinhole_ops: Vec<(PinholeKey, Option<PinholeTarget>)> = pinhole_ids
            .iter()
            .map(|id| (id.key(), gate(up, pinholes.target(id, clock))))
            .filter(|(k, v)| self.pinholes.get(k) != v.as_ref())
            .collect();
        let mut done = Applied::default();
        let remote_after = share_ops.iter().fold(self.remote_specific, |n, (k, v)| {
            let before = usize::from(k.remote_addr != 0 && self.shares.contains_key(k));
            let after = usize::from(k.remote_addr != 0 && v.is_some());
            n + after - before
        });
        if remote_after > 0 {
            self.set_flag(true)?;
        }
        for (key, target) in &reverse_ops {
            if let Some(target) = target {
                self.maps.put_reverse(*key, *target)?;
                self.reverse.insert(*key, *target);
                done.upserts += 1;
            }
        }
        for (key, target) in &share_ops {
            let remote = key.remote_addr != 0;
            if let Some(target) = target {
                self.maps.put_share(*key, *target)?;
                if self.shares.insert(*key, *target).is_none() && remote {
                    self.remote_specific += 1;
                }
                done.upserts += 1;
            } else {
                self.maps.del_share(key)?;
                if self.shares.remove(key).is_some() && remote {
                    self.remote_specific -= 1;
                }
                done.deletes += 1;
            }
        }
        for (key, target) in &pinhole_ops {
            if let Some(target) = target {
                self.maps.put_pinhole(*key, *target)?;
                self.pinholes.insert(*key, *target);
                done.upserts += 1;
            } else {
                self.maps.del_pinhole(key)?;
                self.pinholes.remove(key);
                done.deletes += 1;
            }
        }
        for (key, target) in &reverse_ops {
            if target.is_none() {
                self.maps.del_reverse(key)?;
                self.reverse.remove(key);
                done.deletes += 1;
            }
        }
        if self.remote_specific == 0 {
            self.set_flag(false)?;
        }
        Ok(done)
    }
}

impl Kernel {
    /// The share entries to write (`Some`) or delete (`None`) for shares `ids`. Per key: what
    /// the shares touched want there. A share gone (or switched off) leaves its keys empty
    /// unless another share touched in the same change claims them; with `all`, every key
    /// written so far that no share claims goes.
    fn share_ops(
        &self,
        ids: &[ShareId],
        shares: &ShareTable,
        up: bool,
        all: bool,
        clock: BootClock,
    ) -> Vec<(ShareKey, Option<ShareTarget>)> {
        let mut wanted: BTreeMap<ShareKey, Option<ShareTarget>> = BTreeMap::new();
        for id in ids {
            for key in id.keys() {
                wanted.entry(key).or_insert(None);
            }
            if up {
                wanted.extend(shares.share_targets(id, clock).map(|(k, t)| (k, Some(t))));
            }
        }
        if all {
            for key in self.shares.keys() {
                wanted.entry(*key).or_insert(None);
            }
        }
        wanted
            .into_iter()
            .filter(|(k, v)| self.shares.get(k) != v.as_ref())
            .collect()
    }
}

/// `target` while the WAN link is up, nothing while it is down.
fn gate<T>(up: bool, target: Option<T>) -> Option<T> {
    if up { target } else { None }
}

/// The internal endpoint a reply key stands for.
fn endpoint_of(key: ReverseKey) -> Option<(Proto, SocketAddrV4)> {
    Some((
        Proto::of_number(key.proto)?,
        SocketAddrV4::new(
            u32::from_be(key.int_addr).into(),
            u16::from_be(key.int_port),
        ),
    ))
}
