//! Persistence: what changes at run time survives a restart, and a change costs what it
//! changes.
//!
//! A committed change becomes journal records, one per share, pinhole, switch or settings
//! overlay it touched, each the thing's new state (or its removal), so replaying them is
//! idempotent. They go to the writer thread ([`crate::store`]), which appends them with the
//! change's events and syncs once for every change queued meanwhile (group commit); the
//! caller is answered only after that sync. When the journal has grown past the snapshot,
//! the writer writes a new snapshot from a clone of the table taken in O(1) (the maps are
//! persistent) and starts the journal again.
//!
//! If the disk refuses a change, the writer refuses every later one until a snapshot
//! succeeds; the owner undoes the changes that were not saved, newest first, and asks for
//! that snapshot.
//!
//! The snapshot has the format `state.json` had. A state directory of an earlier portfwd
//! (`state.json` and no `store/`) is read once, restored, and written as the new store's
//! first snapshot; `state.json` stays beside it, untouched.

use std::{
    collections::{BTreeMap, VecDeque},
    net::IpAddr,
    sync::Arc,
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use serde::{Deserialize, Serialize};

use super::{
    Table,
    tx::{Committed, Undo},
};
use crate::{
    events::{EventKind, NewEvent},
    pinhole::{Pinhole, PinholeId, PinholeSpec},
    policy::Overlay,
    share::{Origin, Share, ShareId, ShareSpec},
    state::{Saved, SavedPinhole, SavedShare, SavedSource, StateDir, StateError},
    store::{self, StoreError, Writer},
};

/// One journal record: the new state of one thing a change touched.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Record {
    Share {
        id: ShareId,
        share: Option<SavedShare>,
    },
    Pinhole {
        id: PinholeId,
        pinhole: Option<SavedPinhole>,
    },
    Static {
        id: ShareId,
        enabled: Option<bool>,
    },
    Settings {
        overlay: Overlay,
    },
}

/// The snapshot file's contents: `state.json`'s format.
#[derive(Serialize, Deserialize)]
struct SnapshotFile {
    version: u32,
    #[serde(flatten)]
    saved: Saved,
}

/// The snapshot format's version (`state.json`'s).
const SNAPSHOT_VERSION: u32 = 2;

/// An answer from the writer, for the owner's bookkeeping.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ack {
    /// The change with this sequence number is on disk (or was refused: `false`).
    Commit(u64, bool),
    /// A recovery snapshot was written (or not).
    Recovered(bool),
}

/// Where changes go to become durable.
#[derive(Default)]
pub struct Durable {
    writer: Option<Writer>,
    /// Changes handed to the writer and not yet on disk, oldest first, with their undo
    /// entries.
    inflight: VecDeque<(u64, Vec<Undo>)>,
    next_seq: u64,
    /// How the owner hears of the writer's answers.
    notify: Option<Arc<dyn Fn(Ack) + Send + Sync>>,
    /// The journal size at which a new snapshot is due.
    compact_at: u64,
}

/// What a state directory held at start.
#[derive(Debug, Default)]
pub struct Loaded {
    pub saved: Saved,
    /// Whether it came from an earlier portfwd's `state.json`.
    pub migrated: bool,
    /// Journal bytes of a torn last record, dropped.
    pub dropped_bytes: u64,
}

/// Durability for a running table: its writer and how the owner hears back.
pub struct Durability {
    pub writer: Writer,
    pub notify: Arc<dyn Fn(Ack) + Send + Sync>,
}

/// The store's directory in the state directory.
pub const STORE: &str = "store";
/// The smallest journal worth replacing with a snapshot.
const MIN_COMPACT: u64 = 1 << 20;

/// Opens the store in `state` (migrating `state.json` if there is no store yet and `migrate`
/// says so): what was saved, and the journal to keep writing.
pub fn load(state: &StateDir, migrate: bool) -> Result<(store::Journal, Loaded), StateError> {
    let dir = state.path().join(STORE);
    let (journal, found) = store::open(&dir).map_err(|source| StateError::Store {
        path: dir.clone(),
        source,
    })?;
    let mut loaded = Loaded {
        dropped_bytes: found.dropped_bytes,
        ..Loaded::default()
    };
    loaded.saved = match &found.snapshot {
        Some(bytes) => {
            let file: SnapshotFile =
                serde_json::from_slice(bytes).map_err(|source| StateError::Parse {
                    path: dir.join("snapshot"),
                    source,
                })?;
            if file.version > SNAPSHOT_VERSION {
                return Err(StateError::Version {
                    path: dir.join("snapshot"),
                    found: file.version,
                });
            }
            file.saved
        }
        // A store that has never written a snapshot or a record (a first start, or one that
        // ended before its first snapshot) brings over an earlier portfwd's state.json.
        None if migrate && found.records.is_empty() => {
            let saved = state.load()?;
            loaded.migrated = saved != Saved::default();
            saved
        }
        None => Saved::default(),
    };
    let mut skipped = 0;
    for bytes in &found.records {
        match serde_json::from_slice::<Record>(bytes) {
            Ok(record) => apply(&mut loaded.saved, record),
            Err(_) => skipped += 1,
        }
    }
    if skipped > 0 {
        tracing::warn!(
            "{}: {skipped} journal record(s) not understood, skipped",
            dir.display()
        );
    }
    Ok((journal, loaded))
}

/// Applies one journal record to what was saved before it.
fn apply(saved: &mut Saved, record: Record) {
    match record {
        Record::Share { id, share } => {
            saved.shares.retain(|s| share_id(s) != id);
            saved.shares.extend(share);
        }
        Record::Pinhole { id, pinhole } => {
            saved.pinholes.retain(|p| p.id != id);
            saved.pinholes.extend(pinhole);
        }
        Record::Static { id, enabled } => match enabled {
            Some(enabled) => {
                saved.static_enabled.insert(id, enabled);
            }
            None => {
                saved.static_enabled.remove(&id);
            }
        },
        Record::Settings { overlay } => saved.settings = overlay,
    }
}

fn share_id(saved: &SavedShare) -> ShareId {
    ShareId {
        proto: saved.proto,
        ext_port: saved.external_port,
        remote: saved.remote,
        ext_last: saved
            .external_last
            .filter(|last| *last > saved.external_port)
            .unwrap_or(saved.external_port),
    }
}

/// Seconds since the Unix epoch at monotonic `deadline`, given that `now` is `wall`.
fn wall_of(deadline: Instant, now: Instant, wall: SystemTime) -> u64 {
    (wall + deadline.saturating_duration_since(now))
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// `share` as saved; `None` for what is not saved (static shares come from the config).
fn saved_share(share: &Share, now: Instant, wall: SystemTime) -> Option<SavedShare> {
    if matches!(share.origin, Origin::Static | Origin::Pcp6 { .. }) {
        return None;
    }
    let (source, nonce) = SavedSource::of(share.origin);
    Some(SavedShare {
        proto: share.spec.id.proto,
        external_port: share.spec.id.ext_port,
        external_last: share.spec.id.is_range().then_some(share.spec.id.ext_last),
        hairpin: (!share.spec.hairpin).then_some(false),
        remote: share.spec.id.remote,
        internal: share.spec.internal,
        source,
        client: share.origin.client(),
        nonce,
        name: share.spec.name.clone(),
        enabled: share.spec.enabled,
        expires_at: share.expires.map(|d| wall_of(d, now, wall)),
    })
}

fn saved_pinhole(p: &Pinhole, now: Instant, wall: SystemTime) -> SavedPinhole {
    let (source, nonce) = SavedSource::of(p.origin);
    SavedPinhole {
        id: p.spec.id,
        remote: p.spec.remote,
        remote_port: p.spec.remote_port,
        name: p.spec.name.clone(),
        enabled: p.spec.enabled,
        source,
        client: p.origin.owner(),
        nonce,
        uid: Some(p.uid),
        expires_at: p.expires.map(|d| wall_of(d, now, wall)),
    }
}

/// A clone of what is saved, taken in O(1) and turned into snapshot bytes later, on the
/// writer thread.
struct Frozen {
    shares: imbl::OrdMap<ShareId, Share>,
    pinholes: imbl::OrdMap<PinholeId, Pinhole>,
    static_enabled: BTreeMap<ShareId, bool>,
    overlay: Overlay,
    now: Instant,
    wall: SystemTime,
}

impl Frozen {
    fn bytes(&self) -> Vec<u8> {
        let saved = Saved {
            shares: self
                .shares
                .values()
                .filter_map(|s| saved_share(s, self.now, self.wall))
                .collect(),
            static_enabled: self.static_enabled.clone(),
            settings: self.overlay.clone(),
            pinholes: self
                .pinholes
                .values()
                .map(|p| saved_pinhole(p, self.now, self.wall))
                .collect(),
        };
        // Serialising plain data into a Vec cannot fail.
        let mut bytes = serde_json::to_vec(&SnapshotFile {
            version: SNAPSHOT_VERSION,
            saved,
        })
        .unwrap_or_default();
        bytes.push(b'\n');
        bytes
    }
}

impl Table {
    /// Keeps changes durable from now on: every commit goes to `durability.writer`, and a
    /// snapshot of the table as it is now is written first (after a restore or a migration,
    /// it replaces whatever the journal held).
    pub fn set_durability(&mut self, durability: Durability) {
        self.durable.writer = Some(durability.writer);
        self.durable.notify = Some(durability.notify);
        self.compact();
    }

    fn frozen(&self) -> Frozen {
        Frozen {
            shares: self.shares.snapshot(),
            pinholes: self.pinholes.snapshot(),
            static_enabled: self.static_enabled.clone(),
            overlay: self.overlay.clone(),
            now: self.now,
            wall: SystemTime::now(),
        }
    }

    /// Asks the writer for a snapshot of the table as it is now.
    fn compact(&mut self) {
        let frozen = self.frozen();
        let estimate = 300 * (self.shares.len() + self.pinholes.len()) as u64;
        self.durable.compact_at = MIN_COMPACT.max(2 * estimate);
        let notify = self.durable.notify.clone();
        if let Some(writer) = &self.durable.writer {
            writer.compact(Box::new(move || frozen.bytes()), move |result| {
                if let Err(err) = &result {
                    tracing::error!("writing a snapshot: {}", crate::error_chain(err));
                }
                if let Some(notify) = notify {
                    notify(Ack::Recovered(result.is_ok()));
                }
            });
        }
    }

    /// The journal records of `committed`: the new state of what it touched.
    fn records(&self, committed: &Committed) -> Vec<Vec<u8>> {
        let (now, wall) = (self.now, SystemTime::now());
        let mut records = Vec::new();
        for id in &committed.shares {
            let share = self.shares.get(id);
            if share.is_some_and(|s| s.origin == Origin::Static) {
                continue;
            }
            records.push(Record::Share {
                id: *id,
                share: share.and_then(|s| saved_share(s, now, wall)),
            });
        }
        for id in &committed.pinholes {
            records.push(Record::Pinhole {
                id: *id,
                pinhole: self.pinholes.get(id).map(|p| saved_pinhole(p, now, wall)),
            });
        }
        for id in &committed.statics {
            records.push(Record::Static {
                id: *id,
                enabled: self.static_enabled.get(id).copied(),
            });
        }
        if committed.overlay {
            records.push(Record::Settings {
                overlay: self.overlay.clone(),
            });
        }
        records
            .iter()
            // Serialising plain data cannot fail.
            .map(|r| serde_json::to_vec(r).unwrap_or_default())
            .collect()
    }

    /// Hands a committed change to the writer (nothing to do without one).
    pub(super) fn persist(&mut self, committed: Committed) {
        let (aux, rewrite) = self.events.take_unwritten();
        let Some(writer) = &self.durable.writer else {
            return;
        };
        if committed.is_empty() && aux.is_empty() && rewrite.is_none() {
            return;
        }
        let records = self.records(&committed);
        let seq = self.durable.next_seq;
        self.durable.next_seq += 1;
        self.durable.inflight.push_back((seq, committed.undo));
        let notify = self.durable.notify.clone();
        writer.commit(records, aux, move |result| {
            if let Some(notify) = notify {
                notify(Ack::Commit(seq, result.is_ok()));
            }
        });
        if let Some(bytes) = rewrite {
            writer.rewrite_aux(bytes);
        }
        if writer.stats().journal_bytes > self.durable.compact_at {
            self.compact();
        }
    }

    /// What the writer has done so far, if there is one.
    #[must_use]
    pub fn store_stats(&self) -> Option<store::WriterStats> {
        self.durable.writer.as_ref().map(Writer::stats)
    }

    /// Stops the writer once it has written what it was given.
    pub fn close(&mut self) {
        if let Some(writer) = self.durable.writer.take() {
            writer.shutdown();
        }
    }

    /// Calls `done` once every change so far is on disk (at once without a writer).
    pub fn after_durable(&self, done: impl FnOnce(Result<(), StoreError>) + Send + 'static) {
        match &self.durable.writer {
            Some(writer) => writer.commit(Vec::new(), Vec::new(), done),
            None => done(Ok(())),
        }
    }

    /// What the writer said about a change or a snapshot.
    pub fn acked(&mut self, ack: Ack) {
        match ack {
            Ack::Commit(seq, true) => {
                while self
                    .durable
                    .inflight
                    .front()
                    .is_some_and(|(s, _)| *s <= seq)
                {
                    self.durable.inflight.pop_front();
                }
            }
            Ack::Commit(seq, false) => {
                let Some(at) = self.durable.inflight.iter().position(|(s, _)| *s == seq) else {
                    // Already undone with an earlier failure.
                    return;
                };
                let failed: Vec<(u64, Vec<Undo>)> = self.durable.inflight.drain(at..).collect();
                tracing::error!(
                    "{} change(s) could not be saved: undone; writing a fresh snapshot",
                    failed.len()
                );
                for (_, undo) in failed.into_iter().rev() {
                    self.undo(undo);
                }
                self.compact();
            }
            Ack::Recovered(ok) => {
                if !ok {
                    tracing::error!("the state directory cannot be written: changes are refused");
                }
            }
        }
    }

    /// Puts back what was saved: the owner's settings and switches, then the shares and
    /// pinholes, leased ones with the time they have left (ended ones are dropped). A share
    /// that no longer fits (say, a static share now has its port) is skipped with a warning.
    /// Returns how many shares and pinholes came back.
    #[expect(
        clippy::too_many_lines,
        reason = "settings, pinholes, shares: one pass each, in the order they depend on"
    )]
    pub fn restore(&mut self, saved: Saved) -> usize {
        let now = self.now;
        let Saved {
            shares,
            static_enabled,
            settings,
            pinholes,
        } = saved;
        let _ = self.transact(|t| {
            t.set_overlay(settings);
            for (id, enabled) in static_enabled {
                t.set_static(id, Some(enabled));
                if let Some(share) = t.shares.get(&id).cloned()
                    && share.origin == Origin::Static
                    && share.spec.enabled != enabled
                {
                    let mut share = share;
                    share.spec.enabled = enabled;
                    t.set_share(id, Some(share));
                }
            }
            Ok(())
        });
        let mut restored = 0;
        for saved in pinholes {
            let id = saved.id;
            let lease = saved.expires_at.map(crate::clock::wall_remaining);
            if lease == Some(Duration::ZERO) {
                self.ended_while_down.push(NewEvent::new(
                    EventKind::ShareExpired,
                    "lease",
                    format!("IPv6 pinhole {id}: the lease ended while portfwd was not running"),
                ));
                continue;
            }
            let Some(origin) = saved.origin() else {
                tracing::warn!("saved pinhole {id} has no client or nonce: not restored");
                continue;
            };
            let spec = PinholeSpec {
                id,
                remote: saved.remote,
                remote_port: saved.remote_port,
                name: saved.name,
                enabled: saved.enabled,
            };
            match self.transact(|t| t.open_pinhole_in(spec, origin, lease, saved.uid, false)) {
                Ok(_) => restored += 1,
                Err(err) => {
                    tracing::warn!(
                        "saved pinhole {id} not restored: {}",
                        crate::error_chain(&err)
                    );
                }
            }
        }
        for share in shares {
            let remaining = share.expires_at.map(crate::clock::wall_remaining);
            if remaining == Some(Duration::ZERO) {
                let id = share_id(&share);
                self.ended_while_down.push(
                    NewEvent::new(
                        EventKind::ShareExpired,
                        "lease",
                        format!(
                            "{id} -> {}: the lease ended while portfwd was not running",
                            share.internal
                        ),
                    )
                    .share(id),
                );
                continue;
            }
            let spec = ShareSpec {
                id: share_id(&share),
                internal: share.internal,
                name: share.name,
                enabled: share.enabled,
                hairpin: share.hairpin.unwrap_or(true),
            };
            let text = spec.to_string();
            let origin = match share.source {
                SavedSource::Api => Origin::Api,
                source => {
                    let Some(origin) =
                        source.origin(share.client.map(IpAddr::V4), share.nonce.as_deref())
                    else {
                        tracing::warn!("saved share {text} has no client or nonce: not restored");
                        continue;
                    };
                    origin
                }
            };
            let expires = remaining.map(|left| now + left);
            let result = self.transact(|t| {
                if origin == Origin::Api {
                    t.add_share(spec, origin, expires)
                } else {
                    t.lease_in(spec, origin, remaining, false)
                }
            });
            match result {
                Ok(()) => restored += 1,
                Err(err) => {
                    tracing::warn!(
                        "saved share {text} not restored: {}",
                        crate::error_chain(&err)
                    );
                }
            }
        }
        restored
    }
}
