//! What readers see: a [`Snapshot`] the owner publishes after every change, read without
//! waiting on the owner (listings, GetGenericPortMappingEntry, `/metrics`, the API's GETs).
//! The share and pinhole maps are persistent, so a snapshot costs O(1) to take however large
//! the table is. Counters come from the kernel, read in one batch per listing.

use std::{
    collections::BTreeMap,
    net::Ipv4Addr,
    sync::Arc,
    time::{Duration, Instant},
};

use portfwd_common::ShareStats;

use super::{Table, TableError};
use crate::{
    dataplane::MapReader,
    metrics::Counters,
    pinhole::{Pinhole, PinholeId},
    policy::{Overlay, Settings},
    share::{Origin, Share, ShareId, ShareSpec},
};

/// A share with its lease: what UPnP clients are told. No counters.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ShareEntry {
    pub spec: ShareSpec,
    pub origin: Origin,
    /// Time left on the lease; `None` for shares without one.
    pub expires_in: Option<Duration>,
}

impl ShareEntry {
    /// `share` as of `now`.
    #[must_use]
    pub fn of(share: &Share, now: Instant) -> Self {
        Self {
            spec: share.spec.clone(),
            origin: share.origin,
            expires_in: share
                .expires
                .map(|deadline| deadline.saturating_duration_since(now)),
        }
    }
}

/// A share with its counters, as reported to operators.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ShareView {
    pub entry: ShareEntry,
    pub stats: ShareStats,
    /// In the data plane now: enabled, and the WAN link is up.
    pub active: bool,
}

/// A pinhole as it is viewed: with its counters and whether it is in the kernel.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PinholeView {
    pub pinhole: Pinhole,
    pub active: bool,
    pub stats: ShareStats,
    /// Time left on the lease; `None`: the owner's, until closed.
    pub expires_in: Option<Duration>,
}

/// The settings in force and the owner's changes among them.
#[derive(Clone, Debug)]
pub struct SettingsView {
    pub effective: Arc<Settings>,
    pub overlay: Overlay,
}

/// What the status and the metrics read from the table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TableStatus {
    pub external: Option<Ipv4Addr>,
    pub wan_up: bool,
    /// Seconds since the Unix epoch when the WAN link went down, while it is down.
    pub wan_down_since: Option<u64>,
    pub counters: Counters,
    /// Shares by [`Origin::source`].
    pub by_source: BTreeMap<&'static str, usize>,
    pub active: usize,
    pub last_event: u64,
}

/// The table as of one change.
#[derive(Clone, Debug)]
pub struct Snapshot {
    /// Goes up with every change.
    pub version: u64,
    pub shares: imbl::OrdMap<ShareId, Share>,
    pub pinholes: imbl::OrdMap<PinholeId, Pinhole>,
    pub settings: Arc<Settings>,
    pub overlay: Overlay,
    pub external: Option<Ipv4Addr>,
    pub wan_up: bool,
    pub wan_down_since: Option<u64>,
    pub counters: Counters,
    pub last_event: u64,
}

impl Table {
    /// The table as it is now, for readers (O(1)).
    #[must_use]
    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            version: self.version,
            shares: self.shares.snapshot(),
            pinholes: self.pinholes.snapshot(),
            settings: Arc::clone(&self.effective),
            overlay: self.overlay.clone(),
            external: self.external(),
            wan_up: self.link.up,
            wan_down_since: self.link.down_since.map(|(_, wall)| wall),
            counters: self.counters,
            last_event: self.events.last_id(),
        }
    }

    /// Goes up with every change readers can see.
    #[must_use]
    pub fn version(&self) -> u64 {
        self.version.wrapping_add(self.events.last_id())
    }
}

impl Snapshot {
    /// All shares with their leases as of `now`, without counters.
    pub fn entries(&self, now: Instant) -> impl Iterator<Item = ShareEntry> + '_ {
        self.shares.values().map(move |s| ShareEntry::of(s, now))
    }

    /// Whether `share` is in the data plane now.
    fn active(&self, share: &Share) -> bool {
        share.spec.enabled && self.wan_up
    }

    /// Every share with its counters (one batch read of the kernel's counters).
    pub fn share_views(
        &self,
        reader: &dyn MapReader,
        now: Instant,
    ) -> Result<Vec<ShareView>, TableError> {
        let slots: Vec<u32> = self.shares.values().map(|s| s.slot).collect();
        let stats = reader.share_stats(&slots)?;
        Ok(self
            .shares
            .values()
            .zip(stats)
            .map(|(share, stats)| ShareView {
                entry: ShareEntry::of(share, now),
                stats,
                active: self.active(share),
            })
            .collect())
    }

    /// Share `id` with its counters.
    pub fn share_view(
        &self,
        id: ShareId,
        reader: &dyn MapReader,
        now: Instant,
    ) -> Result<ShareView, TableError> {
        let share = self.shares.get(&id).ok_or(TableError::NoSuchShare(id))?;
        let stats = reader.share_stats(&[share.slot])?.pop().unwrap_or_default();
        Ok(ShareView {
            entry: ShareEntry::of(share, now),
            stats,
            active: self.active(share),
        })
    }

    /// Every pinhole with its counters and lease.
    pub fn pinhole_views(
        &self,
        reader: &dyn MapReader,
        now: Instant,
    ) -> Result<Vec<PinholeView>, TableError> {
        let slots: Vec<u32> = self.pinholes.values().map(|p| p.slot).collect();
        let stats = reader.pinhole_stats(&slots)?;
        Ok(self
            .pinholes
            .values()
            .zip(stats)
            .map(|(pinhole, stats)| PinholeView {
                pinhole: pinhole.clone(),
                active: self.wan_up && pinhole.spec.enabled,
                stats,
                expires_in: pinhole
                    .expires
                    .map(|deadline| deadline.saturating_duration_since(now)),
            })
            .collect())
    }

    /// The pinhole with UPnP `UniqueID` `uid`, with its counters.
    pub fn pinhole_by_uid(
        &self,
        uid: u16,
        reader: &dyn MapReader,
        now: Instant,
    ) -> Result<Option<PinholeView>, TableError> {
        let Some(pinhole) = self.pinholes.values().find(|p| p.uid == uid) else {
            return Ok(None);
        };
        let stats = reader
            .pinhole_stats(&[pinhole.slot])?
            .pop()
            .unwrap_or_default();
        Ok(Some(PinholeView {
            pinhole: pinhole.clone(),
            active: self.wan_up && pinhole.spec.enabled,
            stats,
            expires_in: pinhole
                .expires
                .map(|deadline| deadline.saturating_duration_since(now)),
        }))
    }

    /// The status the API and the metrics report.
    #[must_use]
    pub fn status(&self) -> TableStatus {
        let mut by_source = BTreeMap::new();
        let mut active = 0;
        for share in self.shares.values() {
            *by_source.entry(share.origin.source()).or_insert(0) += 1;
            active += usize::from(self.active(share));
        }
        TableStatus {
            external: self.external,
            wan_up: self.wan_up,
            wan_down_since: self.wan_down_since,
            counters: self.counters,
            by_source,
            active,
            last_event: self.last_event,
        }
    }

    /// The settings in force and the owner's changes.
    #[must_use]
    pub fn settings_view(&self) -> SettingsView {
        SettingsView {
            effective: Arc::clone(&self.settings),
            overlay: self.overlay.clone(),
        }
    }
}
