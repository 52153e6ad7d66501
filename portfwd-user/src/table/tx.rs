//! Transactions: a change runs against the table itself, recording an undo entry for every
//! share, pinhole, switch or setting it touches, and the identities whose kernel entries must
//! follow. Refused, it is undone entry by entry (newest first); accepted, its kernel entries
//! are written, its events recorded, and the touched identities become its journal records.
//! Nothing is cloned but what the change itself touches.

use std::{
    collections::BTreeSet,
    net::{IpAddr, SocketAddrV4},
};

use super::{Leased, Table, TableError, kernel::Dirty};
use crate::{
    events::NewEvent,
    pinhole::{Pinhole, PinholeId},
    policy::Overlay,
    share::{Proto, Share, ShareId},
};

/// How to put back one thing a change touched.
#[derive(Clone, Debug)]
pub enum Undo {
    Share(ShareId, Option<Share>),
    Pinhole(PinholeId, Option<Pinhole>),
    Static(ShareId, Option<bool>),
    Overlay(Overlay),
}

/// The change in progress.
#[derive(Debug, Default)]
pub struct Tx {
    pub undo: Vec<Undo>,
    pub dirty: Dirty,
    pub events: Vec<NewEvent>,
    /// Whether undo entries are kept (not while undoing).
    pub recording: bool,
}

/// What a committed change leaves for the journal and the event log.
#[derive(Debug, Default)]
pub struct Committed {
    pub shares: BTreeSet<ShareId>,
    pub pinholes: BTreeSet<PinholeId>,
    pub statics: BTreeSet<ShareId>,
    pub overlay: bool,
    /// The undo entries, kept until the change is on disk.
    pub undo: Vec<Undo>,
}

impl Committed {
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.shares.is_empty()
            && self.pinholes.is_empty()
            && self.statics.is_empty()
            && !self.overlay
    }
}

impl Table {
    /// Puts `share` in (or takes the share `id` out, for `None`); returns what was there.
    pub(super) fn set_share(&mut self, id: ShareId, share: Option<Share>) -> Option<Share> {
        let old = match share {
            Some(share) => self.shares.insert(share),
            None => self.shares.remove(&id),
        };
        if let Some(at) = old.as_ref().and_then(|s| s.expires) {
            self.deadlines.remove(&(at, Leased::Share(id)));
        }
        let new = self.shares.get(&id);
        let owners = (
            old.as_ref().and_then(|s| s.origin.owner()),
            new.and_then(|s| s.origin.owner()),
        );
        if let Some(at) = new.and_then(|s| s.expires) {
            self.deadlines.insert((at, Leased::Share(id)));
        }
        let endpoints: Vec<(Proto, SocketAddrV4)> = old
            .iter()
            .chain(new)
            .flat_map(|s| s.spec.endpoints().map(|e| (s.spec.id.proto, e)))
            .collect();
        self.count_owner(owners);
        self.tx.dirty.shares.insert(id);
        self.tx.dirty.endpoints.extend(endpoints);
        if self.tx.recording {
            self.tx.undo.push(Undo::Share(id, old.clone()));
        }
        self.version += 1;
        old
    }

    /// Puts `pinhole` in as it is (or takes pinhole `id` out); returns what was there.
    pub(super) fn set_pinhole(
        &mut self,
        id: PinholeId,
        pinhole: Option<Pinhole>,
    ) -> Option<Pinhole> {
        let old = match pinhole {
            Some(pinhole) => self.pinholes.insert(pinhole),
            None => self.pinholes.remove(&id),
        };
        self.touched_pinhole(id, old.clone());
        old
    }

    /// Keeps the count of what each client holds (the quotas) as one thing changes hands
    /// from `.0` to `.1`.
    fn count_owner(&mut self, (old, new): (Option<IpAddr>, Option<IpAddr>)) {
        if let Some(old) = old
            && let Some(n) = self.owned.get_mut(&old)
        {
            *n -= 1;
            self.owned_total -= 1;
            if *n == 0 {
                self.owned.remove(&old);
            }
        }
        if let Some(new) = new {
            *self.owned.entry(new).or_default() += 1;
            self.owned_total += 1;
        }
    }

    /// Bookkeeping after pinhole `id` changed from `old` to what the table holds now.
    pub(super) fn touched_pinhole(&mut self, id: PinholeId, old: Option<Pinhole>) {
        let owners = (
            old.as_ref().and_then(|p| p.origin.owner()),
            self.pinholes.get(&id).and_then(|p| p.origin.owner()),
        );
        self.count_owner(owners);
        if let Some(at) = old.as_ref().and_then(|p| p.expires) {
            self.deadlines.remove(&(at, Leased::Pinhole(id)));
        }
        if let Some(at) = self.pinholes.get(&id).and_then(|p| p.expires) {
            self.deadlines.insert((at, Leased::Pinhole(id)));
        }
        self.tx.dirty.pinholes.insert(id);
        if self.tx.recording {
            self.tx.undo.push(Undo::Pinhole(id, old));
        }
        self.version += 1;
    }

    /// Sets (or forgets) the owner's switch on static share `id`.
    pub(super) fn set_static(&mut self, id: ShareId, enabled: Option<bool>) {
        let old = match enabled {
            Some(enabled) => self.static_enabled.insert(id, enabled),
            None => self.static_enabled.remove(&id),
        };
        if old != enabled && self.tx.recording {
            self.tx.undo.push(Undo::Static(id, old));
        }
    }

    /// Replaces the owner's settings overlay.
    pub(super) fn set_overlay(&mut self, overlay: Overlay) {
        if overlay == self.overlay {
            return;
        }
        let old = std::mem::replace(&mut self.overlay, overlay);
        if self.tx.recording {
            self.tx.undo.push(Undo::Overlay(old));
        }
        self.refresh_settings();
    }

    /// Records `event` for when the change commits.
    pub(super) fn log(&mut self, event: NewEvent) {
        self.tx.events.push(event);
    }

    /// Runs `change` as a transaction: the kernel follows before it returns; refused (or if
    /// the kernel refuses), everything it did is undone and the kernel put back.
    pub(crate) fn transact<T>(
        &mut self,
        change: impl FnOnce(&mut Self) -> Result<T, TableError>,
    ) -> Result<T, TableError> {
        debug_assert!(self.tx.undo.is_empty(), "transactions do not nest");
        self.tx.recording = true;
        let result = change(self).and_then(|value| {
            self.reconcile()?;
            Ok(value)
        });
        self.tx.recording = false;
        match result {
            Ok(value) => {
                self.commit();
                Ok(value)
            }
            Err(err) => {
                let undo = std::mem::take(&mut self.tx.undo);
                self.tx.events.clear();
                self.undo(undo);
                Err(err)
            }
        }
    }

    /// Puts back what `undo` records, newest first, and brings the kernel along.
    pub(super) fn undo(&mut self, undo: Vec<Undo>) {
        let recording = std::mem::replace(&mut self.tx.recording, false);
        for entry in undo.into_iter().rev() {
            match entry {
                Undo::Share(id, old) => {
                    self.set_share(id, old);
                }
                Undo::Pinhole(id, old) => {
                    self.set_pinhole(id, old);
                }
                Undo::Static(id, old) => self.set_static(id, old),
                Undo::Overlay(old) => {
                    self.overlay = old;
                    self.refresh_settings();
                }
            }
        }
        self.tx.recording = recording;
        if let Err(err) = self.reconcile() {
            tracing::error!(
                "restoring the kernel maps after a refused change: {}",
                crate::error_chain(&err)
            );
        }
    }

    /// Writes the kernel entries of what the change touched so far.
    pub(super) fn reconcile(&mut self) -> Result<crate::dataplane::Applied, TableError> {
        let dirty = std::mem::take(&mut self.tx.dirty);
        let applied = self.kernel.apply(
            dirty,
            &self.shares,
            &self.pinholes,
            self.link.up,
            self.clock,
        )?;
        self.kernel
            .set_exposed(self.effective.exposed, self.link.up)?;
        Ok(applied)
    }

    /// Ends a change that holds: its events are recorded, and what it touched is handed to
    /// persistence.
    fn commit(&mut self) {
        let undo = std::mem::take(&mut self.tx.undo);
        let mut committed = Committed::default();
        for entry in &undo {
            match entry {
                Undo::Share(id, _) => {
                    committed.shares.insert(*id);
                }
                Undo::Pinhole(id, _) => {
                    committed.pinholes.insert(*id);
                }
                Undo::Static(id, _) => {
                    committed.statics.insert(*id);
                }
                Undo::Overlay(_) => committed.overlay = true,
            }
        }
        committed.undo = undo;
        for event in std::mem::take(&mut self.tx.events) {
            if self.armed {
                self.events.record(event);
            }
        }
        self.persist(committed);
    }
}
