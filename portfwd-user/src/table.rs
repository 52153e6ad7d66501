//! The share table's owner.
//!
//! One task owns the [`ShareTable`] and the kernel maps ([`Table`]); signal handling, the
//! rtnetlink monitor, and later the UPnP, NAT-PMP/PCP and REST servers talk to it through a
//! cloneable [`TableHandle`] (an `mpsc` channel of commands, each with a `oneshot` reply).
//! Every change is validated against the whole table first and then reconciled into the kernel
//! before the reply is sent, so a caller that got `Ok` knows the data plane already follows.
//!
//! Shares requested by LAN clients are leased: each has a deadline in a set ordered by time,
//! and the task sleeps until the earliest one (or the next command), so an expired share leaves
//! the kernel map at its deadline. A client renewing its own share (same identity, same
//! internal endpoint) moves the deadline; anything else on that identity is refused.
//!
//! The task also owns what the owner changes at run time beside the shares (the UPnP settings
//! and per-device permissions laid over the config file's, published to the UPnP server
//! through a `watch` channel) and the event log ([`crate::events`]). Every change runs as a
//! transaction: it is saved to the state directory before it is acknowledged, its events are
//! recorded only once it commits, and a change that cannot be saved is rolled back.
//!
//! The WAN link: while it is down, the kernel maps are emptied (the table keeps every share,
//! which the API reports as enabled but not active) and refilled when it comes back. A
//! down/up pair within the flap window (five minutes) is one `wan_flap` event; a longer
//! outage logs `wan_down` once the window has passed and `wan_up` at its end.

use std::{
    collections::{BTreeMap, BTreeSet},
    fmt::Write as _,
    net::{IpAddr, Ipv4Addr, SocketAddrV4},
    ops::RangeInclusive,
    sync::Arc,
    time::Duration,
};

use portfwd_common::{CONFIG_F_IPV6_DENY, CONFIG_F_REMOTE_SPECIFIC, ShareStats, VERDICT_COUNT};
use tokio::{
    sync::{mpsc, oneshot, watch},
    time::Instant,
};

use crate::{
    dataplane::{Applied, DataplaneError, KernelMaps, Reconciler},
    events::{Event, EventKind, EventLog, NewEvent},
    pinhole::{Pinhole, PinholeError, PinholeId, PinholeSpec, Pinholes, Prefix6},
    share::{LanSubnet, Origin, Proto, Share, ShareError, ShareId, ShareSpec, ShareTable},
    state::{self, Civil, Saved, SavedPinhole, SavedShare, SavedSource, StateDir, StateError},
    upnp::{Settings, policy::Overlay},
};

/// How long a WAN outage may last and still be logged as one flap.
pub const FLAP_WINDOW: Duration = Duration::from_mins(5);

/// Why a table command failed.
#[derive(Debug, thiserror::Error)]
pub enum TableError {
    #[error("share {spec}")]
    Share {
        spec: String,
        #[source]
        source: ShareError,
    },
    #[error(transparent)]
    Dataplane(#[from] DataplaneError),
    #[error("{0} is not a share {1} may remove")]
    NotOwner(ShareId, By),
    #[error("no share {0}")]
    NoSuchShare(ShareId),
    #[error("{id} collides with {} share {existing}", origin.describe())]
    Conflict {
        id: ShareId,
        existing: ShareId,
        origin: Origin,
    },
    #[error("{} {limit} leased shares and pinholes", match client {
        Some(client) => format!("{client} already holds its"),
        None => "the box already holds its".to_owned(),
    })]
    Quota {
        /// `Some`: the client's own cap; `None`: the cap on all clients together.
        client: Option<IpAddr>,
        limit: usize,
    },
    #[error(
        "{0} is defined in the config file or on the command line: change it there (the API only switches it off and on)"
    )]
    Static(ShareId),
    #[error("no free external port for {0}")]
    NoFreePort(ShareId),
    #[error("pinhole {id}")]
    Pinhole {
        id: String,
        #[source]
        source: PinholeError,
    },
    #[error("no pinhole {0}")]
    NoSuchPinhole(PinholeId),
    #[error("pinhole {0} is not one {1} may change")]
    PinholeNotOwner(PinholeId, By),
    #[error("saving the change")]
    State(#[from] StateError),
    #[error("the share table task has stopped")]
    Stopped,
}

/// On whose behalf a share is removed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum By {
    /// The box's owner: any share.
    Operator,
    /// A LAN client (the origin it would give a share it made): only the shares it made, by
    /// whichever protocol.
    Client(Origin),
    /// A LAN client where secure mode is off: any share made by a client, none of the owner's.
    AnyClient(Origin),
}

impl By {
    /// Static shares are nobody's to remove: they go with the config.
    fn may_remove(self, origin: Origin) -> bool {
        match self {
            Self::Operator => origin != Origin::Static,
            Self::AnyClient(_) => origin.owner().is_some(),
            Self::Client(me) => me.owner().is_some() && origin.owner() == me.owner(),
        }
    }

    /// The event source.
    fn source(self) -> String {
        match self {
            Self::Operator => "api".to_owned(),
            Self::Client(me) | Self::AnyClient(me) => me.actor(),
        }
    }
}

impl std::fmt::Display for By {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Operator => f.write_str("the owner"),
            Self::Client(me) => match me.owner() {
                Some(client) => write!(f, "{client}"),
                None => f.write_str("the owner"),
            },
            Self::AnyClient(_) => f.write_str("a LAN client"),
        }
    }
}

/// A share with its lease: what UPnP clients are told. No counters: reading them costs a
/// per-CPU map lookup for every share.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ShareEntry {
    pub spec: ShareSpec,
    pub origin: Origin,
    /// Time left on the lease; `None` for shares without one.
    pub expires_in: Option<Duration>,
}

/// A share with its counters, as reported to operators.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ShareView {
    pub entry: ShareEntry,
    pub stats: ShareStats,
    /// In the data plane now: enabled, and the WAN link is up.
    pub active: bool,
}

/// A change to a share. `None` leaves a field as it is.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SharePatch {
    /// `Some(None)` removes the name.
    pub name: Option<Option<String>>,
    pub internal: Option<SocketAddrV4>,
    pub external_port: Option<u16>,
    pub enabled: Option<bool>,
}

/// A change to the UPnP settings. `None` leaves a setting as it is.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SettingsPatch {
    pub upnp_enabled: Option<bool>,
    pub secure_mode: Option<bool>,
    pub quota_per_client: Option<usize>,
    pub quota_total: Option<usize>,
}

/// Counts the metrics export.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    pub lease_expirations: u64,
    pub external_changes: u64,
    pub wan_link_changes: u64,
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

/// Per-direction verdict counters of the programs ([`portfwd_common::DIR_WAN`] first).
pub type Verdicts = [[u64; VERDICT_COUNT as usize]; 2];

/// The settings in force and the owner's changes among them.
#[derive(Clone, Debug)]
pub struct SettingsView {
    pub effective: Arc<Settings>,
    pub overlay: Overlay,
}

/// The WAN link as the table follows it.
struct Link {
    up: bool,
    /// When it went down (monotonic and wall clock), while it is down.
    down_since: Option<(Instant, u64)>,
    /// Whether the outage has outlasted the flap window and been logged.
    down_logged: bool,
    flap_window: Duration,
}

/// The share table and the kernel maps it is reconciled into.
pub struct Table<M> {
    shares: ShareTable,
    reconciler: Reconciler<M>,
    kernel_config: portfwd_common::Config,
    /// Lease deadlines of shares and pinholes, earliest first, and each leased share's
    /// deadline (a pinhole's is in the pinhole).
    deadlines: BTreeSet<(Instant, Leased)>,
    leases: BTreeMap<ShareId, Instant>,
    state: Option<StateDir>,
    /// The owner's switch on static shares, by share.
    static_enabled: BTreeMap<ShareId, bool>,
    base: Settings,
    overlay: Overlay,
    settings: watch::Sender<Arc<Settings>>,
    events: EventLog,
    /// Events of the change in progress, recorded when it commits.
    pending: Vec<NewEvent>,
    /// Whether changes are logged and counted (not while the daemon sets up).
    armed: bool,
    link: Link,
    counters: Counters,
    pinholes: Pinholes,
}

impl<M: KernelMaps> Table<M> {
    /// A table for a box whose LAN interface has `lan` subnets, with interface indexes
    /// `wan_ifindex` and `lan_ifindex`, writing to freshly created (empty) maps.
    pub fn new(lan: Vec<LanSubnet>, maps: M, wan_ifindex: u32, lan_ifindex: u32) -> Self {
        Self {
            shares: ShareTable::new(lan),
            reconciler: Reconciler::new(maps),
            kernel_config: portfwd_common::Config {
                ext_addr: 0,
                wan_ifindex,
                lan_ifindex,
                flags: 0,
            },
            deadlines: BTreeSet::new(),
            leases: BTreeMap::new(),
            state: None,
            static_enabled: BTreeMap::new(),
            base: Settings::default(),
            overlay: Overlay::default(),
            settings: watch::Sender::new(Arc::new(Settings::default())),
            events: EventLog::memory(crate::events::DEFAULT_CAPACITY),
            pending: Vec::new(),
            armed: false,
            link: Link {
                up: true,
                down_since: None,
                down_logged: false,
                flap_window: FLAP_WINDOW,
            },
            counters: Counters::default(),
            pinholes: Pinholes::default(),
        }
    }

    /// Takes the LAN interface's global IPv6 prefixes: where pinholes may open.
    pub fn set_lan6(&mut self, prefixes: Vec<Prefix6>) {
        self.pinholes = Pinholes::new(prefixes);
    }

    /// Whether inbound IPv6 TCP connection attempts to LAN hosts without a pinhole are dropped
    /// in XDP (`true`) or handed to the kernel.
    pub fn set_ipv6_deny(&mut self, deny: bool) -> Result<(), TableError> {
        let flags = if deny {
            self.kernel_config.flags | CONFIG_F_IPV6_DENY
        } else {
            self.kernel_config.flags & !CONFIG_F_IPV6_DENY
        };
        self.set_flags(flags)
    }

    /// Opens pinhole `spec` for the owner (no lease); one already open is an error.
    pub fn open_pinhole(&mut self, spec: PinholeSpec) -> Result<PinholeView, TableError> {
        let request = PinholeRequest {
            spec,
            origin: Origin::Api,
            lease: None,
            limits: Limits::NONE,
        };
        self.transact(|t| t.open_pinhole_in(request, None, Instant::now()))
    }

    /// Opens or renews the pinhole of `request` for its LAN client: one the same origin opened
    /// with the same remote restriction gets the new lease (UPnP `AddPinhole` and `UpdatePinhole`,
    /// a PCP MAP renewal); one anybody else opened is [`TableError::PinholeNotOwner`]. The
    /// client's shares and pinholes together count against `request.limits`.
    pub fn lease_pinhole(
        &mut self,
        request: PinholeRequest,
        now: Instant,
    ) -> Result<PinholeView, TableError> {
        self.transact(|t| t.open_pinhole_in(request, None, now))
    }

    fn open_pinhole_in(
        &mut self,
        request: PinholeRequest,
        uid: Option<u16>,
        now: Instant,
    ) -> Result<PinholeView, TableError> {
        let PinholeRequest {
            spec,
            origin,
            lease,
            limits,
        } = request;
        let id = spec.id;
        match (self.pinholes.get(&id), origin.owner()) {
            (Some(open), Some(_)) if open.origin == origin && open.spec.remote == spec.remote => {
                self.clear_pinhole_lease(id);
            }
            (Some(open), Some(_)) if open.origin != origin => {
                return Err(TableError::PinholeNotOwner(id, By::Client(origin)));
            }
            (Some(_), _) => {
                return Err(TableError::Pinhole {
                    id: id.to_string(),
                    source: PinholeError::Duplicate(id),
                });
            }
            (None, owner) => {
                if let Some(owner) = owner {
                    self.check_quota(owner, limits)?;
                }
                let mut detail = format!("IPv6 pinhole {id}{}", pinhole_suffix_spec(&spec));
                if let Some(lease) = lease {
                    let _ = write!(detail, ", lease {} s", lease.as_secs());
                }
                let enabled = spec.enabled;
                let slot =
                    self.pinholes
                        .add(spec, origin, uid)
                        .map_err(|source| TableError::Pinhole {
                            id: id.to_string(),
                            source,
                        })?;
                self.reconciler.maps_mut().reset_pinhole_stats(slot)?;
                self.log(
                    NewEvent::new(EventKind::ShareCreated, origin.actor(), detail)
                        .notify_if(enabled),
                );
            }
        }
        if let Some(lease) = lease {
            let deadline = now + lease;
            self.pinholes.set_expires(&id, Some(deadline));
            self.deadlines.insert((deadline, Leased::Pinhole(id)));
        }
        self.sync()?;
        self.pinhole_view(id, now)
    }

    /// Refuses a new share or pinhole for `owner` beyond `limits`: the client's own and all
    /// clients' shares and pinholes together.
    fn check_quota(&self, owner: IpAddr, limits: Limits) -> Result<(), TableError> {
        let owners = self
            .shares
            .iter()
            .filter_map(|s| s.origin.owner())
            .chain(self.pinholes.iter().filter_map(|p| p.origin.owner()));
        let (mine, all) = owners.fold((0, 0), |(mine, all), o| {
            (mine + usize::from(o == owner), all + 1)
        });
        if mine >= limits.per_client {
            return Err(TableError::Quota {
                client: Some(owner),
                limit: limits.per_client,
            });
        }
        if all >= limits.total {
            return Err(TableError::Quota {
                client: None,
                limit: limits.total,
            });
        }
        Ok(())
    }

    fn clear_pinhole_lease(&mut self, id: PinholeId) {
        if let Some(deadline) = self.pinholes.set_expires(&id, None) {
            self.deadlines.remove(&(deadline, Leased::Pinhole(id)));
        }
    }

    /// Closes pinhole `id` on behalf of `by`.
    pub fn close_pinhole(&mut self, id: PinholeId, by: By) -> Result<Pinhole, TableError> {
        self.transact(|t| {
            let pinhole = t.pinholes.get(&id).ok_or(TableError::NoSuchPinhole(id))?;
            if !by.may_remove(pinhole.origin) {
                return Err(TableError::PinholeNotOwner(id, by));
            }
            t.clear_pinhole_lease(id);
            let pinhole = t
                .pinholes
                .remove(&id)
                .ok_or(TableError::NoSuchPinhole(id))?;
            t.log(NewEvent::new(
                EventKind::ShareDeleted,
                by.source(),
                format!("IPv6 pinhole {id}{}", pinhole_suffix(&pinhole)),
            ));
            t.sync()?;
            Ok(pinhole)
        })
    }

    /// Switches pinhole `id` on or off (the owner's).
    pub fn switch_pinhole(
        &mut self,
        id: PinholeId,
        enabled: bool,
    ) -> Result<PinholeView, TableError> {
        self.transact(|t| {
            let before = t
                .pinholes
                .get(&id)
                .ok_or(TableError::NoSuchPinhole(id))?
                .spec
                .enabled;
            t.pinholes.set_enabled(&id, enabled);
            if before != enabled {
                let kind = if enabled {
                    EventKind::ShareEnabled
                } else {
                    EventKind::ShareDisabled
                };
                t.log(NewEvent::new(kind, "api", format!("IPv6 pinhole {id}")).notify_if(enabled));
            }
            t.sync()?;
            t.pinhole_view(id, Instant::now())
        })
    }

    fn pinhole_view(&self, id: PinholeId, now: Instant) -> Result<PinholeView, TableError> {
        let pinhole = self
            .pinholes
            .get(&id)
            .ok_or(TableError::NoSuchPinhole(id))?;
        Ok(PinholeView {
            pinhole: pinhole.clone(),
            active: self.link.up && pinhole.spec.enabled,
            stats: self.reconciler.maps().pinhole_stats(pinhole.slot)?,
            expires_in: pinhole
                .expires
                .map(|deadline| deadline.saturating_duration_since(now)),
        })
    }

    /// The pinholes with their counters and leases.
    pub fn pinholes(&self) -> Result<Vec<PinholeView>, TableError> {
        let now = Instant::now();
        self.pinholes
            .iter()
            .map(|p| self.pinhole_view(p.spec.id, now))
            .collect()
    }

    /// Takes `base` as the config's UPnP settings; the owner's changes are laid over them.
    pub fn set_settings(&mut self, base: Settings) {
        self.base = base;
        self.publish();
    }

    /// The settings in force, as they change.
    #[must_use]
    pub fn settings(&self) -> watch::Receiver<Arc<Settings>> {
        self.settings.subscribe()
    }

    fn publish(&mut self) {
        self.settings
            .send_replace(Arc::new(self.base.overlaid(&self.overlay)));
    }

    /// Records changes in `events` from now on, and counts them for the metrics.
    pub fn set_events(&mut self, events: EventLog) {
        self.events = events;
        self.armed = true;
    }

    /// How long a WAN outage may last and still be one flap event.
    pub fn set_flap_window(&mut self, window: Duration) {
        self.link.flap_window = window;
    }

    fn log(&mut self, event: NewEvent) {
        self.pending.push(event);
    }

    /// Records the events of a committed change.
    fn flush(&mut self) {
        for event in std::mem::take(&mut self.pending) {
            if self.armed {
                self.events.record(event);
            }
        }
    }

    pub fn maps(&self) -> &M {
        self.reconciler.maps()
    }

    /// Makes the static shares exactly `specs`, leaving leased ones alone: all are validated
    /// together first (nothing changes if one is refused); shares whose target is unchanged
    /// keep their counters.
    ///
    /// The owner's switch (API) wins over a share's `enabled` in the config; switches on
    /// shares the config no longer has are forgotten.
    pub fn replace_static(&mut self, mut specs: Vec<ShareSpec>) -> Result<Applied, TableError> {
        self.transact(|t| {
            t.static_enabled
                .retain(|id, _| specs.iter().any(|s| s.id == *id));
            for spec in &mut specs {
                if let Some(&enabled) = t.static_enabled.get(&spec.id) {
                    spec.enabled = enabled;
                }
            }
            let mut next = t.shares.clone();
            let fresh_slots = apply_static(&mut next, specs)?;
            for slot in fresh_slots {
                t.reconciler.maps_mut().reset_stats(slot)?;
            }
            for event in static_changes(&t.shares, &next) {
                t.log(event);
            }
            t.shares = next;
            t.sync()
        })
    }

    /// Adds a share for the owner (API); kept in the state directory, no lease.
    pub fn create(&mut self, spec: ShareSpec) -> Result<ShareEntry, TableError> {
        self.transact(|t| t.create_in(spec, Instant::now()))
    }

    fn create_in(&mut self, spec: ShareSpec, now: Instant) -> Result<ShareEntry, TableError> {
        let text = spec.to_string();
        let id = spec.id;
        let enabled = spec.enabled;
        let slot = self
            .shares
            .add_from(spec, Origin::Api)
            .map_err(|source| TableError::Share {
                spec: text.clone(),
                source,
            })?;
        self.reconciler.maps_mut().reset_stats(slot)?;
        self.log(
            NewEvent::new(EventKind::ShareCreated, "api", described(&self.shares, id))
                .share(id)
                .notify_if(enabled),
        );
        self.sync()?;
        self.entry_of(id, now)
    }

    /// Changes share `id` for the owner. Static shares take only `enabled` (kept as the owner's
    /// switch over the config); anything else on them is [`TableError::Static`]. A new external
    /// port or internal endpoint is checked like a new share; the lease, if any, carries over.
    pub fn edit(&mut self, id: ShareId, patch: SharePatch) -> Result<ShareEntry, TableError> {
        self.transact(|t| t.edit_in(id, patch, Instant::now()))
    }

    fn edit_in(
        &mut self,
        id: ShareId,
        patch: SharePatch,
        now: Instant,
    ) -> Result<ShareEntry, TableError> {
        let share = self
            .shares
            .get(&id)
            .cloned()
            .ok_or(TableError::NoSuchShare(id))?;
        let before = share.spec.clone();
        let mut spec = before.clone();
        if let Some(name) = patch.name {
            spec.name = name;
        }
        if let Some(internal) = patch.internal {
            spec.internal = internal;
        }
        if let Some(port) = patch.external_port {
            spec.id.ext_port = port;
        }
        if let Some(enabled) = patch.enabled {
            spec.enabled = enabled;
        }
        if share.origin == Origin::Static {
            if spec.name != before.name || spec.internal != before.internal || spec.id != id {
                return Err(TableError::Static(id));
            }
            if let Some(enabled) = patch.enabled {
                self.static_enabled.insert(id, enabled);
            }
        }
        if spec == before {
            return self.entry_of(id, now);
        }
        if spec.id == id && spec.internal == before.internal {
            self.shares.update_in_place(&spec);
        } else {
            if let Some(other) = self
                .shares
                .on_port(spec.id.proto, spec.id.ext_port)
                .find(|s| s.spec.id != id && s.origin != share.origin)
            {
                return Err(TableError::Conflict {
                    id: spec.id,
                    existing: other.spec.id,
                    origin: other.origin,
                });
            }
            let deadline = self.leases.get(&id).copied();
            self.shares.remove(&id);
            self.clear_lease(id);
            let text = spec.to_string();
            let slot = self
                .shares
                .add_from(spec.clone(), share.origin)
                .map_err(|source| TableError::Share { spec: text, source })?;
            self.reconciler.maps_mut().reset_stats(slot)?;
            if let Some(deadline) = deadline {
                self.deadlines.insert((deadline, Leased::Share(spec.id)));
                self.leases.insert(spec.id, deadline);
            }
        }
        if spec.id != before.id || spec.internal != before.internal || spec.name != before.name {
            self.log(edited(&before, &spec, "api"));
        }
        if spec.enabled != before.enabled {
            self.log(switched(&spec, "api"));
        }
        self.sync()?;
        self.entry_of(spec.id, now)
    }

    fn entry_of(&self, id: ShareId, now: Instant) -> Result<ShareEntry, TableError> {
        let share = self.shares.get(&id).ok_or(TableError::NoSuchShare(id))?;
        Ok(self.entry(share, now))
    }

    /// Adds or renews the share of `request` for its LAN client. A share with the same
    /// identity is renewed in place only if the client made it and its internal endpoint is
    /// the same; a static share or another client's share on the same external port (for any
    /// remote host) is a [`TableError::Conflict`]. The client's leased shares and all leased
    /// shares together are capped by `request.limits`.
    pub fn lease(&mut self, request: LeaseRequest, now: Instant) -> Result<Applied, TableError> {
        self.transact(|t| t.lease_in(request, now))
    }

    /// Leases `request` on the first of `ports` that is free for it, in order: what NAT-PMP,
    /// PCP and AddAnyPortMapping do when the port asked for is taken. Returns that port; if
    /// every one collides, the last collision (or [`TableError::NoFreePort`] for no ports).
    pub fn lease_any(
        &mut self,
        request: &LeaseRequest,
        ports: &[u16],
        now: Instant,
    ) -> Result<u16, TableError> {
        let mut last = TableError::NoFreePort(request.spec.id);
        for &port in ports {
            let mut request = request.clone();
            request.spec.id.ext_port = port;
            match self.lease(request, now) {
                Ok(_) => return Ok(port),
                Err(
                    err @ (TableError::Conflict { .. }
                    | TableError::Share {
                        source: ShareError::Duplicate(_),
                        ..
                    }),
                ) => last = err,
                Err(err) => return Err(err),
            }
        }
        Err(last)
    }

    fn lease_in(&mut self, request: LeaseRequest, now: Instant) -> Result<Applied, TableError> {
        let LeaseRequest {
            spec,
            origin,
            lease,
            limits,
        } = request;
        let id = spec.id;
        let Some(client) = origin.client() else {
            return Err(TableError::NotOwner(id, By::Client(origin)));
        };
        if let Some(other) = self
            .shares
            .on_port(id.proto, id.ext_port)
            .find(|s| s.origin != origin || (s.spec.id == id && s.spec.internal != spec.internal))
        {
            return Err(TableError::Conflict {
                id,
                existing: other.spec.id,
                origin: other.origin,
            });
        }
        if self.shares.update_in_place(&spec) {
            self.clear_lease(id);
        } else {
            self.check_quota(IpAddr::V4(client), limits)?;
            let text = spec.to_string();
            let enabled = spec.enabled;
            let slot = self
                .shares
                .add_from(spec, origin)
                .map_err(|source| TableError::Share { spec: text, source })?;
            self.reconciler.maps_mut().reset_stats(slot)?;
            let mut detail = described(&self.shares, id);
            if let Some(lease) = lease {
                let _ = write!(detail, ", lease {} s", lease.as_secs());
            }
            self.log(
                NewEvent::new(EventKind::ShareCreated, origin.actor(), detail)
                    .share(id)
                    .notify_if(enabled),
            );
        }
        if let Some(lease) = lease {
            let deadline = now + lease;
            self.deadlines.insert((deadline, Leased::Share(id)));
            self.leases.insert(id, deadline);
        }
        self.sync()
    }

    /// Removes share `id` on behalf of `by`.
    pub fn remove(&mut self, id: ShareId, by: By) -> Result<Share, TableError> {
        self.transact(|t| {
            let share = t.shares.get(&id).ok_or(TableError::NoSuchShare(id))?;
            if share.origin == Origin::Static && by == By::Operator {
                return Err(TableError::Static(id));
            }
            if !by.may_remove(share.origin) {
                return Err(TableError::NotOwner(id, by));
            }
            let share = t
                .take(id, EventKind::ShareDeleted, &by.source(), None)
                .ok_or(TableError::NoSuchShare(id))?;
            t.sync()?;
            Ok(share)
        })
    }

    /// Removes the leased shares of `proto` whose external ports are in `ports` that `by` may
    /// remove. Static shares are never touched. Returns what it removed.
    pub fn remove_range(
        &mut self,
        proto: Proto,
        ports: RangeInclusive<u16>,
        by: By,
    ) -> Result<Vec<Share>, TableError> {
        self.transact(|t| {
            let ids: Vec<ShareId> = t
                .shares
                .iter()
                .filter(|s| s.spec.id.proto == proto && ports.contains(&s.spec.id.ext_port))
                .filter(|s| s.origin != Origin::Static && by.may_remove(s.origin))
                .map(|s| s.spec.id)
                .collect();
            let mut removed = Vec::new();
            for id in ids {
                removed.extend(t.take(id, EventKind::ShareDeleted, &by.source(), None));
            }
            if !removed.is_empty() {
                t.sync()?;
            }
            Ok(removed)
        })
    }

    /// Runs `change`, then saves the leases; if either fails, the table and the kernel maps
    /// are put back as they were, so a refused or unsaved change is no change at all.
    fn transact<T>(
        &mut self,
        change: impl FnOnce(&mut Self) -> Result<T, TableError>,
    ) -> Result<T, TableError> {
        let before = (
            self.shares.clone(),
            self.deadlines.clone(),
            self.leases.clone(),
            self.static_enabled.clone(),
            self.overlay.clone(),
            self.pinholes.clone(),
        );
        self.pending.clear();
        let result = change(self).and_then(|value| {
            self.save()?;
            Ok(value)
        });
        if result.is_err() {
            self.pending.clear();
            (
                self.shares,
                self.deadlines,
                self.leases,
                self.static_enabled,
                self.overlay,
                self.pinholes,
            ) = before;
            if let Err(err) = self.sync() {
                tracing::error!(
                    "restoring the kernel maps after a refused change: {}",
                    crate::error_chain(&err)
                );
            }
        } else {
            if self.overlay != before.4 {
                self.publish();
            }
            self.flush();
        }
        result
    }

    /// Keeps leased shares in `state` from now on, written after every change.
    pub fn set_state(&mut self, state: StateDir) {
        self.state = Some(state);
    }

    /// Writes what changes at run time to the state directory, if there is one.
    fn save(&self) -> Result<(), TableError> {
        let Some(state) = &self.state else {
            return Ok(());
        };
        let now = Instant::now();
        let shares = self
            .shares
            .iter()
            .filter_map(|s| {
                // Static shares come from the config; Pcp6 makes pinholes only.
                if matches!(s.origin, Origin::Static | Origin::Pcp6 { .. }) {
                    return None;
                }
                let (source, nonce) = SavedSource::of(s.origin);
                Some(SavedShare {
                    proto: s.spec.id.proto,
                    external_port: s.spec.id.ext_port,
                    remote: s.spec.id.remote,
                    internal: s.spec.internal,
                    source,
                    client: s.origin.client(),
                    nonce,
                    name: s.spec.name.clone(),
                    enabled: s.spec.enabled,
                    expires_at: self.leases.get(&s.spec.id).map(|deadline| {
                        state::wall_deadline(deadline.saturating_duration_since(now))
                    }),
                })
            })
            .collect();
        let pinholes = self
            .pinholes
            .iter()
            .map(|p| {
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
                    expires_at: p.expires.map(|deadline| {
                        state::wall_deadline(deadline.saturating_duration_since(now))
                    }),
                }
            })
            .collect();
        Ok(state.save(&Saved {
            shares,
            static_enabled: self.static_enabled.clone(),
            settings: self.overlay.clone(),
            pinholes,
        })?)
    }

    /// Puts back what was saved: the owner's settings and switches, then the shares, leased
    /// ones with the time they have left (ended ones are dropped). A share that no longer fits
    /// (say, a static share now has its port) is skipped with a warning. Returns how many
    /// shares came back.
    pub fn restore(&mut self, saved: Saved, now: Instant) -> usize {
        self.overlay = saved.settings;
        self.publish();
        self.static_enabled = saved.static_enabled;
        let switched: Vec<ShareSpec> = self
            .shares
            .iter()
            .filter(|s| s.origin == Origin::Static)
            .filter_map(|s| {
                let enabled = *self.static_enabled.get(&s.spec.id)?;
                (enabled != s.spec.enabled).then(|| ShareSpec {
                    enabled,
                    ..s.spec.clone()
                })
            })
            .collect();
        for spec in &switched {
            self.shares.update_in_place(spec);
        }
        if let Err(err) = self.sync() {
            tracing::error!(
                "switching static shares as saved: {}",
                crate::error_chain(&err)
            );
        }
        let mut restored = self.restore_pinholes(saved.pinholes, now);
        for share in saved.shares {
            let remaining = share.expires_at.map(state::wall_remaining);
            if remaining == Some(Duration::ZERO) {
                continue;
            }
            let spec = ShareSpec {
                id: ShareId {
                    proto: share.proto,
                    ext_port: share.external_port,
                    remote: share.remote,
                },
                internal: share.internal,
                name: share.name,
                enabled: share.enabled,
            };
            let text = spec.to_string();
            let origin = match share.source {
                SavedSource::Api => None,
                source => {
                    let Some(origin) =
                        source.origin(share.client.map(IpAddr::V4), share.nonce.as_deref())
                    else {
                        tracing::warn!("saved share {text} has no client or nonce: not restored");
                        continue;
                    };
                    Some(origin)
                }
            };
            let result = match origin {
                None => self.transact(|t| t.create_in(spec, now)).map(drop),
                Some(origin) => self
                    .lease(
                        LeaseRequest {
                            spec,
                            origin,
                            lease: remaining,
                            limits: Limits::NONE,
                        },
                        now,
                    )
                    .map(drop),
            };
            match result {
                Ok(()) => restored += 1,
                Err(err) => tracing::warn!(
                    "saved share {text} not restored: {}",
                    crate::error_chain(&err)
                ),
            }
        }
        restored
    }

    /// Puts back saved pinholes, leased ones with the time they have left and their UPnP
    /// ids; returns how many came back.
    fn restore_pinholes(&mut self, pinholes: Vec<SavedPinhole>, now: Instant) -> usize {
        let mut restored = 0;
        for saved in pinholes {
            let id = saved.id;
            let lease = saved.expires_at.map(state::wall_remaining);
            if lease == Some(Duration::ZERO) {
                continue;
            }
            let Some(origin) = saved.origin() else {
                tracing::warn!("saved pinhole {id} has no client or nonce: not restored");
                continue;
            };
            let request = PinholeRequest {
                spec: PinholeSpec {
                    id,
                    remote: saved.remote,
                    remote_port: saved.remote_port,
                    name: saved.name,
                    enabled: saved.enabled,
                },
                origin,
                lease,
                limits: Limits::NONE,
            };
            match self.transact(|t| t.open_pinhole_in(request, saved.uid, now)) {
                Ok(_) => restored += 1,
                Err(err) => tracing::warn!(
                    "saved pinhole {id} not restored: {}",
                    crate::error_chain(&err)
                ),
            }
        }
        restored
    }

    /// Changes the UPnP settings.
    pub fn set_settings_patch(
        &mut self,
        patch: &SettingsPatch,
    ) -> Result<SettingsView, TableError> {
        self.transact(|t| {
            let before = t.base.overlaid(&t.overlay);
            let o = &mut t.overlay;
            o.upnp_enabled = patch.upnp_enabled.or(o.upnp_enabled);
            o.secure_mode = patch.secure_mode.or(o.secure_mode);
            o.quota_per_client = patch.quota_per_client.or(o.quota_per_client);
            o.quota_total = patch.quota_total.or(o.quota_total);
            let after = t.base.overlaid(&t.overlay);
            let mut changes = Vec::new();
            let mut note = |name: &str, was: String, now: String| {
                if was != now {
                    changes.push(format!("{name} {was} -> {now}"));
                }
            };
            note(
                "upnp_enabled",
                before.enabled.to_string(),
                after.enabled.to_string(),
            );
            note(
                "secure_mode",
                before.secure_mode.to_string(),
                after.secure_mode.to_string(),
            );
            note(
                "quota_per_client",
                before.limits.per_client.to_string(),
                after.limits.per_client.to_string(),
            );
            note(
                "quota_total",
                before.limits.total.to_string(),
                after.limits.total.to_string(),
            );
            if !changes.is_empty() {
                t.log(NewEvent::new(
                    EventKind::SettingsChanged,
                    "api",
                    changes.join(", "),
                ));
            }
            Ok(())
        })?;
        Ok(self.settings_view())
    }

    /// The settings in force and the owner's changes.
    #[must_use]
    pub fn settings_view(&self) -> SettingsView {
        SettingsView {
            effective: self.settings.borrow().clone(),
            overlay: self.overlay.clone(),
        }
    }

    /// Sets (`Some`) or clears (`None`: back to the default) whether `device` may share ports
    /// independently. Revoking it removes the shares the device made.
    pub fn set_device(
        &mut self,
        device: Ipv4Addr,
        allowed: Option<bool>,
    ) -> Result<Vec<Share>, TableError> {
        self.transact(|t| {
            match allowed {
                Some(allowed) => t.overlay.devices.insert(device, allowed),
                None => t.overlay.devices.remove(&device),
            };
            let (now_allowed, _) = t.base.overlaid(&t.overlay).permission(device, None);
            let detail = match allowed {
                Some(true) => format!("{device} may share ports independently"),
                Some(false) => format!("{device} may no longer share ports independently"),
                None => format!(
                    "{device} follows the default: {}",
                    if now_allowed {
                        "allowed"
                    } else {
                        "not allowed"
                    }
                ),
            };
            t.log(NewEvent::new(EventKind::DevicePermission, "api", detail));
            let mut removed = Vec::new();
            if allowed == Some(false) {
                let ids: Vec<ShareId> = t
                    .shares
                    .iter()
                    .filter(|s| s.origin.client() == Some(device))
                    .map(|s| s.spec.id)
                    .collect();
                for id in ids {
                    removed.extend(t.take(
                        id,
                        EventKind::ShareDeleted,
                        "api",
                        Some("the device's permission was revoked"),
                    ));
                }
                t.sync()?;
            }
            Ok(removed)
        })
    }

    /// Revokes independent port sharing for every device that has not requested a share: the
    /// devices holding shares made by themselves keep theirs (as their own permission), every
    /// other device, now or later, is refused until the owner allows it. Returns the devices
    /// that keep it.
    pub fn revoke_unused(&mut self) -> Result<Vec<Ipv4Addr>, TableError> {
        self.transact(|t| {
            let settings = t.base.overlaid(&t.overlay);
            let holders: BTreeSet<Ipv4Addr> =
                t.shares.iter().filter_map(|s| s.origin.client()).collect();
            let mut kept = Vec::new();
            for client in holders {
                if settings.permission(client, None).0 {
                    t.overlay.devices.entry(client).or_insert(true);
                    kept.push(client);
                }
            }
            t.overlay.new_devices = Some(false);
            let kept_text = if kept.is_empty() {
                "none keep it".to_owned()
            } else {
                format!(
                    "kept by {}",
                    kept.iter()
                        .map(ToString::to_string)
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            };
            t.log(NewEvent::new(
                EventKind::DevicePermission,
                "api",
                format!("independent port sharing revoked for devices without shares; {kept_text}"),
            ));
            Ok(kept)
        })
    }

    /// The WAN link went up or down: shares leave or return to the data plane.
    pub fn set_link(&mut self, up: bool, now: Instant) -> Result<(), TableError> {
        if up == self.link.up {
            return Ok(());
        }
        self.link.up = up;
        if self.armed {
            self.counters.wan_link_changes += 1;
        }
        let shares = self.shares.iter().filter(|s| s.spec.enabled).count();
        if up {
            tracing::info!("WAN link up: {shares} share(s) back in the data plane");
            match self.link.down_since.take() {
                Some((at, wall)) if self.link.down_logged => {
                    let secs = now.saturating_duration_since(at).as_secs();
                    self.log(NewEvent::new(
                        EventKind::WanUp,
                        "wan",
                        format!(
                            "link up after {secs} s down (since {}); {shares} share(s) restored",
                            Civil::from_unix(wall).rfc3339()
                        ),
                    ));
                }
                Some((at, wall)) => {
                    let secs = now.saturating_duration_since(at).as_secs();
                    self.log(NewEvent::new(
                        EventKind::WanFlap,
                        "wan",
                        format!(
                            "link down at {} for {secs} s; {shares} share(s) restored",
                            Civil::from_unix(wall).rfc3339()
                        ),
                    ));
                }
                None => {}
            }
        } else {
            tracing::warn!("WAN link down: {shares} share(s) out of the data plane");
            self.link.down_since = Some((now, state::unix_now()));
            self.link.down_logged = false;
        }
        let result = self.sync().map(drop);
        self.flush();
        result
    }

    /// Takes share `id` out of the table with its lease and logs it as `kind` by `source`
    /// (and `why`); the caller reconciles.
    fn take(
        &mut self,
        id: ShareId,
        kind: EventKind,
        source: &str,
        why: Option<&str>,
    ) -> Option<Share> {
        let share = self.shares.remove(&id)?;
        self.clear_lease(id);
        let mut detail = describe_spec(&share.spec);
        if let Some(why) = why {
            let _ = write!(detail, ": {why}");
        }
        self.log(NewEvent::new(kind, source, detail).share(id));
        Some(share)
    }

    fn clear_lease(&mut self, id: ShareId) {
        if let Some(deadline) = self.leases.remove(&id) {
            self.deadlines.remove(&(deadline, Leased::Share(id)));
        }
    }

    /// The earliest lease deadline.
    #[must_use]
    pub fn next_deadline(&self) -> Option<Instant> {
        let lease = self.deadlines.first().map(|(deadline, _)| *deadline);
        let outage = match self.link.down_since {
            Some((at, _)) if !self.link.down_logged => Some(at + self.link.flap_window),
            _ => None,
        };
        lease.into_iter().chain(outage).min()
    }

    /// Removes every share whose lease ended by `now`, and logs a WAN outage that has
    /// outlasted the flap window; returns the expired shares.
    pub fn expire(&mut self, now: Instant) -> Result<Vec<Share>, TableError> {
        if let Some((at, wall)) = self.link.down_since
            && !self.link.down_logged
            && at + self.link.flap_window <= now
        {
            self.link.down_logged = true;
            let shares = self.shares.iter().filter(|s| s.spec.enabled).count();
            self.log(NewEvent::new(
                EventKind::WanDown,
                "wan",
                format!(
                    "link down since {}; {shares} share(s) out of the data plane",
                    Civil::from_unix(wall).rfc3339()
                ),
            ));
        }
        let mut expired = Vec::new();
        let mut pinholes = 0;
        while let Some(&(deadline, leased)) = self.deadlines.first() {
            if deadline > now {
                break;
            }
            self.deadlines.pop_first();
            match leased {
                Leased::Share(id) => {
                    self.leases.remove(&id);
                    expired.extend(self.take(id, EventKind::ShareExpired, "lease", None));
                }
                Leased::Pinhole(id) => {
                    if let Some(pinhole) = self.pinholes.remove(&id) {
                        pinholes += 1;
                        self.log(NewEvent::new(
                            EventKind::ShareExpired,
                            "lease",
                            format!("IPv6 pinhole {id}{}", pinhole_suffix(&pinhole)),
                        ));
                    }
                }
            }
        }
        if self.armed {
            self.counters.lease_expirations += expired.len() as u64 + pinholes;
        }
        let result = if expired.is_empty() && pinholes == 0 {
            Ok(())
        } else {
            self.sync().map(drop).and_then(|()| self.save())
        };
        // Expired is expired: the events stand even if the file could not be written.
        self.flush();
        result.map(|()| expired)
    }

    /// Reconciles the kernel with the table. The WAN program only looks up remote-specific
    /// shares while the config flag says there are some: the flag goes on before such a share
    /// is inserted and off after the last one is gone.
    fn sync(&mut self) -> Result<Applied, TableError> {
        let desired = if self.link.up {
            let mut desired = self.shares.desired();
            desired.pinholes = self.pinholes.desired();
            desired
        } else {
            crate::share::Desired::default()
        };
        let remote_specific = desired.shares.keys().any(|k| k.remote_addr != 0);
        if remote_specific {
            self.set_flags(self.kernel_config.flags | CONFIG_F_REMOTE_SPECIFIC)?;
        }
        let applied = self.reconciler.apply(&desired)?;
        if !remote_specific {
            self.set_flags(self.kernel_config.flags & !CONFIG_F_REMOTE_SPECIFIC)?;
        }
        Ok(applied)
    }

    fn set_flags(&mut self, flags: u32) -> Result<(), TableError> {
        if flags != self.kernel_config.flags {
            self.kernel_config.flags = flags;
            self.reconciler.maps_mut().set_config(self.kernel_config)?;
        }
        Ok(())
    }

    /// Sets the external address the WAN program matches (`None`: the WAN has none, nothing
    /// is forwarded).
    pub fn set_external(&mut self, addr: Option<Ipv4Addr>) -> Result<(), TableError> {
        let before = self.external();
        self.kernel_config.ext_addr = addr.map_or(0, |a| u32::from(a).to_be());
        self.reconciler.maps_mut().set_config(self.kernel_config)?;
        if before != addr && self.armed {
            self.counters.external_changes += 1;
            let show = |a: Option<Ipv4Addr>| a.map_or_else(|| "none".to_owned(), |a| a.to_string());
            self.log(NewEvent::new(
                EventKind::ExternalAddress,
                "wan",
                format!("external address {} -> {}", show(before), show(addr)),
            ));
            self.flush();
        }
        Ok(())
    }

    /// The external address currently programmed.
    #[must_use]
    pub fn external(&self) -> Option<Ipv4Addr> {
        match self.kernel_config.ext_addr {
            0 => None,
            a => Some(Ipv4Addr::from(u32::from_be(a))),
        }
    }

    /// Routes, neighbours or links changed: cached next hops are no longer trusted.
    pub fn forwarding_changed(&mut self) -> Result<(), TableError> {
        Ok(self.reconciler.maps_mut().bump_fib_generation()?)
    }

    /// All shares with their leases as of `now`, without counters.
    #[must_use]
    pub fn entries(&self, now: Instant) -> Vec<ShareEntry> {
        self.shares.iter().map(|s| self.entry(s, now)).collect()
    }

    /// All shares with their leases as of `now` and their counters.
    pub fn list(&self, now: Instant) -> Result<Vec<ShareView>, TableError> {
        self.shares.iter().map(|s| self.view_of(s, now)).collect()
    }

    /// Share `id` with its lease and counters (one share's counters read, not every share's).
    pub fn view(&self, id: ShareId, now: Instant) -> Result<ShareView, TableError> {
        let share = self.shares.get(&id).ok_or(TableError::NoSuchShare(id))?;
        self.view_of(share, now)
    }

    fn view_of(&self, share: &Share, now: Instant) -> Result<ShareView, TableError> {
        Ok(ShareView {
            entry: self.entry(share, now),
            stats: self.maps().stats(share.slot)?,
            active: share.spec.enabled && self.link.up,
        })
    }

    /// The status the API and the metrics report.
    #[must_use]
    pub fn status(&self) -> TableStatus {
        let mut by_source = BTreeMap::new();
        for share in self.shares.iter() {
            *by_source.entry(share.origin.source()).or_insert(0) += 1;
        }
        TableStatus {
            external: self.external(),
            wan_up: self.link.up,
            wan_down_since: self.link.down_since.map(|(_, wall)| wall),
            counters: self.counters,
            by_source,
            active: if self.link.up {
                self.shares.iter().filter(|s| s.spec.enabled).count()
            } else {
                0
            },
            last_event: self.events.last_id(),
        }
    }

    /// The programs' verdict counters.
    pub fn verdicts(&self) -> Result<Verdicts, TableError> {
        Ok([
            self.maps().verdicts(portfwd_common::DIR_WAN)?,
            self.maps().verdicts(portfwd_common::DIR_LAN)?,
        ])
    }

    /// Events of the log: see [`EventLog::page`].
    #[must_use]
    pub fn events(&self, after: Option<u64>, limit: usize) -> Vec<Event> {
        self.events.page(after, limit)
    }

    fn entry(&self, share: &Share, now: Instant) -> ShareEntry {
        ShareEntry {
            spec: share.spec.clone(),
            origin: share.origin,
            expires_in: self
                .leases
                .get(&share.spec.id)
                .map(|deadline| deadline.saturating_duration_since(now)),
        }
    }
}

/// A lease request: the share, its client, the lease length and the caps it is held to.
#[derive(Clone, Debug)]
pub struct LeaseRequest {
    pub spec: ShareSpec,
    /// Who asks: a LAN client's origin ([`Origin::client`] is `Some`).
    pub origin: Origin,
    /// `None`: until removed.
    pub lease: Option<Duration>,
    pub limits: Limits,
}

/// Caps on leased shares.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Leased shares one client may hold.
    pub per_client: usize,
    /// Leased shares all clients together may hold.
    pub total: usize,
}

impl Limits {
    /// No caps beyond the table's size.
    pub const NONE: Self = Self {
        per_client: usize::MAX,
        total: usize::MAX,
    };
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

/// A pinhole lease request: the pinhole, its client, the lease length and the caps.
#[derive(Clone, Debug)]
pub struct PinholeRequest {
    pub spec: PinholeSpec,
    /// Who asks: a LAN client's origin ([`Origin::owner`] is `Some`), or the owner's.
    pub origin: Origin,
    /// `None`: until closed.
    pub lease: Option<Duration>,
    pub limits: Limits,
}

/// What has a lease deadline.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Leased {
    Share(ShareId),
    Pinhole(PinholeId),
}

/// What events add after a pinhole's id: its remote restriction, name and client.
fn pinhole_suffix(pinhole: &Pinhole) -> String {
    let mut text = pinhole_suffix_spec(&pinhole.spec);
    if let Some(owner) = pinhole.origin.owner() {
        let _ = write!(text, " for {owner}");
    }
    text
}

/// What events add after a pinhole's id: its remote restriction and name.
fn pinhole_suffix_spec(spec: &PinholeSpec) -> String {
    let mut text = String::new();
    match (spec.remote, spec.remote_port) {
        (Some(remote), Some(port)) => {
            let _ = write!(text, " from [{remote}]:{port}");
        }
        (Some(remote), None) => {
            let _ = write!(text, " from {remote}");
        }
        (None, Some(port)) => {
            let _ = write!(text, " from port {port}");
        }
        (None, None) => {}
    }
    if let Some(name) = &spec.name {
        let _ = write!(text, " \"{name}\"");
    }
    text
}

/// A share as events describe it: `tcp:8080 -> 10.0.0.10:80 "web"`.
fn describe_spec(spec: &ShareSpec) -> String {
    let mut text = format!("{} -> {}", spec.id, spec.internal);
    if let Some(name) = &spec.name {
        let _ = write!(text, " \"{name}\"");
    }
    if !spec.enabled {
        text.push_str(" (disabled)");
    }
    text
}

fn described(shares: &ShareTable, id: ShareId) -> String {
    shares
        .get(&id)
        .map_or_else(|| id.to_string(), |s| describe_spec(&s.spec))
}

/// The event of a share's target or name changing from `before` to `after`.
fn edited(before: &ShareSpec, after: &ShareSpec, source: &str) -> NewEvent {
    NewEvent::new(
        EventKind::ShareEdited,
        source,
        format!(
            "was {}, now {}",
            describe_spec(before),
            describe_spec(after)
        ),
    )
    .share(after.id)
}

/// The event of `spec` being switched to its `enabled`; the webhook hears of switching on.
fn switched(spec: &ShareSpec, source: &str) -> NewEvent {
    let kind = if spec.enabled {
        EventKind::ShareEnabled
    } else {
        EventKind::ShareDisabled
    };
    NewEvent::new(kind, source, describe_spec(spec))
        .share(spec.id)
        .notify_if(spec.enabled)
}

/// The events of a config reload: static shares created, deleted, edited, switched.
fn static_changes(old: &ShareTable, new: &ShareTable) -> Vec<NewEvent> {
    let statics = |t: &ShareTable| -> BTreeMap<ShareId, ShareSpec> {
        t.iter()
            .filter(|s| s.origin == Origin::Static)
            .map(|s| (s.spec.id, s.spec.clone()))
            .collect()
    };
    let (old, new) = (statics(old), statics(new));
    let mut events = Vec::new();
    for (id, spec) in &old {
        match new.get(id) {
            None => events.push(
                NewEvent::new(EventKind::ShareDeleted, "config", describe_spec(spec)).share(*id),
            ),
            Some(now) if now.internal != spec.internal || now.name != spec.name => {
                events.push(edited(spec, now, "config"));
            }
            Some(now) if now.enabled != spec.enabled => events.push(switched(now, "config")),
            Some(_) => {}
        }
    }
    for (id, spec) in new.iter().filter(|(id, _)| !old.contains_key(id)) {
        events.push(
            NewEvent::new(EventKind::ShareCreated, "config", describe_spec(spec))
                .share(*id)
                .notify_if(spec.enabled),
        );
    }
    events
}

/// Checks static shares against the table's rules for a box whose LAN has `lan` subnets,
/// without any kernel: what the daemon does before it loads anything.
pub fn check_static(lan: Vec<LanSubnet>, specs: Vec<ShareSpec>) -> Result<(), TableError> {
    apply_static(&mut ShareTable::new(lan), specs).map(drop)
}

/// Makes the static shares of `shares` exactly `specs`, leaving leased ones alone; returns the
/// counter slots of the shares it added (whose counters the caller resets). Stops at the first
/// share refused, so callers work on a copy.
fn apply_static(shares: &mut ShareTable, specs: Vec<ShareSpec>) -> Result<Vec<u32>, TableError> {
    let keep = |old: &Share| {
        old.origin != Origin::Static
            || specs
                .iter()
                .any(|s| s.id == old.spec.id && s.internal == old.spec.internal)
    };
    let gone: Vec<ShareId> = shares
        .iter()
        .filter(|s| !keep(s))
        .map(|s| s.spec.id)
        .collect();
    for id in &gone {
        shares.remove(id);
    }
    let mut fresh_slots = Vec::new();
    for spec in specs {
        if shares.update_in_place(&spec) {
            continue;
        }
        let text = spec.to_string();
        let slot = shares
            .add(spec)
            .map_err(|source| TableError::Share { spec: text, source })?;
        fresh_slots.push(slot);
    }
    Ok(fresh_slots)
}

enum Command {
    ReplaceStatic(Vec<ShareSpec>, oneshot::Sender<Result<Applied, TableError>>),
    Lease(LeaseRequest, oneshot::Sender<Result<Applied, TableError>>),
    LeaseAny(
        LeaseRequest,
        Vec<u16>,
        oneshot::Sender<Result<u16, TableError>>,
    ),
    Remove(ShareId, By, oneshot::Sender<Result<Share, TableError>>),
    RemoveRange(
        Proto,
        RangeInclusive<u16>,
        By,
        oneshot::Sender<Result<Vec<Share>, TableError>>,
    ),
    External(oneshot::Sender<Result<Option<Ipv4Addr>, TableError>>),
    SetExternal(Option<Ipv4Addr>, oneshot::Sender<Result<(), TableError>>),
    ForwardingChanged(oneshot::Sender<Result<(), TableError>>),
    List(oneshot::Sender<Result<Vec<ShareView>, TableError>>),
    View(ShareId, oneshot::Sender<Result<ShareView, TableError>>),
    Entries(oneshot::Sender<Result<Vec<ShareEntry>, TableError>>),
    Create(ShareSpec, oneshot::Sender<Result<ShareEntry, TableError>>),
    Edit(
        ShareId,
        SharePatch,
        oneshot::Sender<Result<ShareEntry, TableError>>,
    ),
    Settings(oneshot::Sender<Result<SettingsView, TableError>>),
    SetSettings(
        SettingsPatch,
        oneshot::Sender<Result<SettingsView, TableError>>,
    ),
    SetDevice(
        Ipv4Addr,
        Option<bool>,
        oneshot::Sender<Result<Vec<Share>, TableError>>,
    ),
    RevokeUnused(oneshot::Sender<Result<Vec<Ipv4Addr>, TableError>>),
    SetLink(bool, oneshot::Sender<Result<(), TableError>>),
    Status(oneshot::Sender<Result<TableStatus, TableError>>),
    Verdicts(oneshot::Sender<Result<Verdicts, TableError>>),
    Events(
        Option<u64>,
        usize,
        oneshot::Sender<Result<Vec<Event>, TableError>>,
    ),
    Subscribe(oneshot::Sender<Result<watch::Receiver<u64>, TableError>>),
    OpenPinhole(
        PinholeSpec,
        oneshot::Sender<Result<PinholeView, TableError>>,
    ),
    LeasePinhole(
        PinholeRequest,
        oneshot::Sender<Result<PinholeView, TableError>>,
    ),
    ClosePinhole(PinholeId, By, oneshot::Sender<Result<Pinhole, TableError>>),
    SwitchPinhole(
        PinholeId,
        bool,
        oneshot::Sender<Result<PinholeView, TableError>>,
    ),
    Pinholes(oneshot::Sender<Result<Vec<PinholeView>, TableError>>),
}

/// A handle on the table task. Cloneable; the task ends when every handle is dropped.
#[derive(Clone)]
pub struct TableHandle {
    tx: mpsc::Sender<Command>,
}

impl TableHandle {
    async fn call<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<Result<T, TableError>>) -> Command,
    ) -> Result<T, TableError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(make(reply))
            .await
            .map_err(|_| TableError::Stopped)?;
        rx.await.map_err(|_| TableError::Stopped)?
    }

    pub async fn replace_static(&self, specs: Vec<ShareSpec>) -> Result<Applied, TableError> {
        self.call(|r| Command::ReplaceStatic(specs, r)).await
    }

    pub async fn lease(&self, request: LeaseRequest) -> Result<Applied, TableError> {
        self.call(|r| Command::Lease(request, r)).await
    }

    pub async fn open_pinhole(&self, spec: PinholeSpec) -> Result<PinholeView, TableError> {
        self.call(|r| Command::OpenPinhole(spec, r)).await
    }

    pub async fn lease_pinhole(&self, request: PinholeRequest) -> Result<PinholeView, TableError> {
        self.call(|r| Command::LeasePinhole(request, r)).await
    }

    pub async fn close_pinhole(&self, id: PinholeId, by: By) -> Result<Pinhole, TableError> {
        self.call(|r| Command::ClosePinhole(id, by, r)).await
    }

    pub async fn switch_pinhole(
        &self,
        id: PinholeId,
        enabled: bool,
    ) -> Result<PinholeView, TableError> {
        self.call(|r| Command::SwitchPinhole(id, enabled, r)).await
    }

    pub async fn pinholes(&self) -> Result<Vec<PinholeView>, TableError> {
        self.call(Command::Pinholes).await
    }

    pub async fn lease_any(
        &self,
        request: LeaseRequest,
        ports: Vec<u16>,
    ) -> Result<u16, TableError> {
        self.call(|r| Command::LeaseAny(request, ports, r)).await
    }

    pub async fn remove(&self, id: ShareId, by: By) -> Result<Share, TableError> {
        self.call(|r| Command::Remove(id, by, r)).await
    }

    pub async fn remove_range(
        &self,
        proto: Proto,
        ports: RangeInclusive<u16>,
        by: By,
    ) -> Result<Vec<Share>, TableError> {
        self.call(|r| Command::RemoveRange(proto, ports, by, r))
            .await
    }

    /// The external address the data plane uses now.
    pub async fn external(&self) -> Result<Option<Ipv4Addr>, TableError> {
        self.call(Command::External).await
    }

    pub async fn set_external(&self, addr: Option<Ipv4Addr>) -> Result<(), TableError> {
        self.call(|r| Command::SetExternal(addr, r)).await
    }

    pub async fn forwarding_changed(&self) -> Result<(), TableError> {
        self.call(Command::ForwardingChanged).await
    }

    pub async fn list(&self) -> Result<Vec<ShareView>, TableError> {
        self.call(Command::List).await
    }

    pub async fn view(&self, id: ShareId) -> Result<ShareView, TableError> {
        self.call(|r| Command::View(id, r)).await
    }

    pub async fn entries(&self) -> Result<Vec<ShareEntry>, TableError> {
        self.call(Command::Entries).await
    }

    pub async fn create(&self, spec: ShareSpec) -> Result<ShareEntry, TableError> {
        self.call(|r| Command::Create(spec, r)).await
    }

    pub async fn edit(&self, id: ShareId, patch: SharePatch) -> Result<ShareEntry, TableError> {
        self.call(|r| Command::Edit(id, patch, r)).await
    }

    pub async fn settings(&self) -> Result<SettingsView, TableError> {
        self.call(Command::Settings).await
    }

    pub async fn set_settings(&self, patch: SettingsPatch) -> Result<SettingsView, TableError> {
        self.call(|r| Command::SetSettings(patch, r)).await
    }

    pub async fn set_device(
        &self,
        device: Ipv4Addr,
        allowed: Option<bool>,
    ) -> Result<Vec<Share>, TableError> {
        self.call(|r| Command::SetDevice(device, allowed, r)).await
    }

    pub async fn revoke_unused(&self) -> Result<Vec<Ipv4Addr>, TableError> {
        self.call(Command::RevokeUnused).await
    }

    pub async fn set_link(&self, up: bool) -> Result<(), TableError> {
        self.call(|r| Command::SetLink(up, r)).await
    }

    pub async fn status(&self) -> Result<TableStatus, TableError> {
        self.call(Command::Status).await
    }

    pub async fn verdicts(&self) -> Result<Verdicts, TableError> {
        self.call(Command::Verdicts).await
    }

    pub async fn events(&self, after: Option<u64>, limit: usize) -> Result<Vec<Event>, TableError> {
        self.call(|r| Command::Events(after, limit, r)).await
    }

    /// The id of the newest event, as it changes.
    pub async fn subscribe(&self) -> Result<watch::Receiver<u64>, TableError> {
        self.call(Command::Subscribe).await
    }
}

/// Sleeps until `deadline`, or forever without one.
async fn sleep_until_some(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

/// Runs `table` on its own task; returns the handle and the task (which hands the table
/// back, with its maps, when the last handle is dropped).
#[expect(
    clippy::too_many_lines,
    reason = "one arm per command, in the order of the Command enum"
)]
pub fn spawn<M: KernelMaps + Send + 'static>(
    mut table: Table<M>,
) -> (TableHandle, tokio::task::JoinHandle<Table<M>>) {
    let (tx, mut rx) = mpsc::channel(64);
    let task = tokio::spawn(async move {
        loop {
            let deadline = table.next_deadline();
            // Expiry first: a stream of commands must not postpone a due deadline.
            let command = tokio::select! {
                biased;
                () = sleep_until_some(deadline) => {
                    match table.expire(Instant::now()) {
                        Ok(_) => {}
                        Err(err) => tracing::error!(
                            "expiring shares: {}",
                            crate::error_chain(&err)
                        ),
                    }
                    continue;
                }
                command = rx.recv() => command,
            };
            let Some(command) = command else { break };
            // A caller that went away does not care about its reply.
            match command {
                Command::ReplaceStatic(specs, reply) => {
                    let _ = reply.send(table.replace_static(specs));
                }
                Command::Lease(request, reply) => {
                    let _ = reply.send(table.lease(request, Instant::now()));
                }
                Command::OpenPinhole(spec, reply) => {
                    let _ = reply.send(table.open_pinhole(spec));
                }
                Command::LeasePinhole(request, reply) => {
                    let _ = reply.send(table.lease_pinhole(request, Instant::now()));
                }
                Command::ClosePinhole(id, by, reply) => {
                    let _ = reply.send(table.close_pinhole(id, by));
                }
                Command::SwitchPinhole(id, enabled, reply) => {
                    let _ = reply.send(table.switch_pinhole(id, enabled));
                }
                Command::Pinholes(reply) => {
                    let _ = reply.send(table.pinholes());
                }
                Command::LeaseAny(request, ports, reply) => {
                    let _ = reply.send(table.lease_any(&request, &ports, Instant::now()));
                }
                Command::Remove(id, by, reply) => {
                    let _ = reply.send(table.remove(id, by));
                }
                Command::RemoveRange(proto, ports, by, reply) => {
                    let _ = reply.send(table.remove_range(proto, ports, by));
                }
                Command::External(reply) => {
                    let _ = reply.send(Ok(table.external()));
                }
                Command::SetExternal(addr, reply) => {
                    let _ = reply.send(table.set_external(addr));
                }
                Command::ForwardingChanged(reply) => {
                    let _ = reply.send(table.forwarding_changed());
                }
                Command::List(reply) => {
                    let _ = reply.send(table.list(Instant::now()));
                }
                Command::View(id, reply) => {
                    let _ = reply.send(table.view(id, Instant::now()));
                }
                Command::Entries(reply) => {
                    let _ = reply.send(Ok(table.entries(Instant::now())));
                }
                Command::Create(spec, reply) => {
                    let _ = reply.send(table.create(spec));
                }
                Command::Edit(id, patch, reply) => {
                    let _ = reply.send(table.edit(id, patch));
                }
                Command::Settings(reply) => {
                    let _ = reply.send(Ok(table.settings_view()));
                }
                Command::SetSettings(patch, reply) => {
                    let _ = reply.send(table.set_settings_patch(&patch));
                }
                Command::SetDevice(device, allowed, reply) => {
                    let _ = reply.send(table.set_device(device, allowed));
                }
                Command::RevokeUnused(reply) => {
                    let _ = reply.send(table.revoke_unused());
                }
                Command::SetLink(up, reply) => {
                    let _ = reply.send(table.set_link(up, Instant::now()));
                }
                Command::Status(reply) => {
                    let _ = reply.send(Ok(table.status()));
                }
                Command::Verdicts(reply) => {
                    let _ = reply.send(table.verdicts());
                }
                Command::Events(after, limit, reply) => {
                    let _ = reply.send(Ok(table.events(after, limit)));
                }
                Command::Subscribe(reply) => {
                    let _ = reply.send(Ok(table.events.subscribe()));
                }
            }
        }
        table
    });
    (TableHandle { tx }, task)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dataplane::MemoryMaps;

    fn specs(list: &[&str]) -> Vec<ShareSpec> {
        list.iter().map(|s| s.parse().expect("spec")).collect()
    }

    fn new_table() -> Table<MemoryMaps> {
        Table::new(
            vec![LanSubnet {
                addr: Ipv4Addr::new(10, 0, 0, 1),
                prefix_len: 24,
            }],
            MemoryMaps::default(),
            7,
            8,
        )
    }

    #[tokio::test]
    async fn handle_round_trip_reconciles_before_replying() {
        let (handle, task) = spawn(new_table());
        handle
            .replace_static(specs(&["tcp:8080=10.0.0.10:80"]))
            .await
            .expect("replace");
        handle
            .set_external(Some(Ipv4Addr::new(198, 51, 100, 1)))
            .await
            .expect("external");
        handle.forwarding_changed().await.expect("bump");
        let list = handle.list().await.expect("list");
        assert_eq!(list.len(), 1);
        assert_eq!(list[0].entry.spec.to_string(), "tcp:8080=10.0.0.10:80");
        drop(handle);
        let table = task.await.expect("task");
        assert_eq!(table.maps().shares.len(), 1);
        assert_eq!(table.maps().fib_generation, 1);
        assert_eq!(table.maps().config.wan_ifindex, 7);
        assert_eq!(
            table.maps().config.ext_addr,
            u32::from_be_bytes([198, 51, 100, 1]).to_be()
        );
        assert_eq!(table.external(), Some(Ipv4Addr::new(198, 51, 100, 1)));
    }

    const CLIENT: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 10);

    fn spec(s: &str) -> ShareSpec {
        s.parse().expect("spec")
    }

    fn request(s: &str, client: Ipv4Addr, secs: Option<u64>) -> LeaseRequest {
        LeaseRequest {
            spec: spec(s),
            origin: Origin::Upnp { client },
            lease: secs.map(Duration::from_secs),
            limits: Limits::NONE,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_lease_expires_at_its_deadline_and_leaves_the_kernel() {
        let (handle, task) = spawn(new_table());
        let lease = |secs| request("udp:5000=10.0.0.10:5000", CLIENT, Some(secs));
        handle.lease(lease(10)).await.expect("lease");
        tokio::time::advance(Duration::from_secs(6)).await;
        let listed = handle.entries().await.expect("entries");
        assert_eq!(listed[0].expires_in, Some(Duration::from_secs(4)));
        assert_eq!(listed[0].origin, Origin::Upnp { client: CLIENT });

        // Renewal by its client moves the deadline.
        handle.lease(lease(10)).await.expect("renew");
        tokio::time::advance(Duration::from_secs(9)).await;
        assert_eq!(
            handle.entries().await.expect("entries").len(),
            1,
            "renewed, not expired"
        );
        tokio::time::advance(Duration::from_millis(1001)).await;
        tokio::task::yield_now().await;
        assert!(
            handle.entries().await.expect("entries").is_empty(),
            "expired"
        );
        drop(handle);
        let table = task.await.expect("task");
        assert!(
            table.maps().shares.is_empty(),
            "gone from the kernel map too"
        );
        assert!(table.maps().reverse.is_empty());
    }

    #[test]
    fn only_the_owner_renews_or_removes_a_leased_share() {
        let mut t = new_table();
        let now = Instant::now();
        let other = Ipv4Addr::new(10, 0, 0, 11);
        t.lease(request("tcp:6000=10.0.0.10:6000", CLIENT, None), now)
            .expect("lease");
        let err = t
            .lease(request("tcp:6000=10.0.0.11:6000", other, None), now)
            .expect_err("taken");
        assert!(
            matches!(err, TableError::Conflict { origin: Origin::Upnp { client }, .. } if client == CLIENT),
            "{err:?}"
        );
        // The same client pointing the share elsewhere is a conflict too, not a silent move.
        assert!(matches!(
            t.lease(request("tcp:6000=10.0.0.10:6001", CLIENT, None), now),
            Err(TableError::Conflict { .. })
        ));
        let id = spec("tcp:6000=10.0.0.10:6000").id;
        assert!(matches!(
            t.remove(id, By::Client(Origin::Upnp { client: other })),
            Err(TableError::NotOwner(..))
        ));
        // Static shares are not the clients' either.
        t.replace_static(specs(&["tcp:1=10.0.0.10:1"]))
            .expect("static");
        assert!(matches!(
            t.remove(
                spec("tcp:1=10.0.0.10:1").id,
                By::Client(Origin::Upnp { client: CLIENT })
            ),
            Err(TableError::NotOwner(..))
        ));
        assert!(matches!(
            t.remove(
                spec("tcp:1=10.0.0.10:1").id,
                By::AnyClient(Origin::Upnp {
                    client: Ipv4Addr::new(10, 0, 0, 99)
                })
            ),
            Err(TableError::NotOwner(..))
        ));
        assert!(
            t.remove(id, By::Client(Origin::Upnp { client: CLIENT }))
                .is_ok()
        );
        assert!(matches!(
            t.remove(id, By::Operator),
            Err(TableError::NoSuchShare(_))
        ));
    }

    #[test]
    fn a_static_reload_keeps_leased_shares() {
        let mut t = new_table();
        t.lease(
            request("udp:7000=10.0.0.10:7000", CLIENT, None),
            Instant::now(),
        )
        .expect("lease");
        t.replace_static(specs(&["tcp:1=10.0.0.10:1"]))
            .expect("reload");
        t.replace_static(specs(&[])).expect("reload to nothing");
        let list = t.entries(Instant::now());
        assert_eq!(list.len(), 1);
        assert_eq!(list[0].spec.id, spec("udp:7000=10.0.0.10:7000").id);
    }

    #[test]
    fn the_remote_specific_flag_follows_the_shares() {
        let mut t = new_table();
        t.replace_static(specs(&["tcp:1=10.0.0.10:1"]))
            .expect("wildcard");
        assert_eq!(t.maps().config.flags, 0);
        t.replace_static(specs(&[
            "tcp:1=10.0.0.10:1",
            "tcp:1@198.51.100.7=10.0.0.10:1",
        ]))
        .expect("remote");
        assert_eq!(t.maps().config.flags, CONFIG_F_REMOTE_SPECIFIC);
        t.replace_static(specs(&["tcp:1=10.0.0.10:1"]))
            .expect("back");
        assert_eq!(t.maps().config.flags, 0);
    }

    #[test]
    fn a_refused_reload_changes_nothing() {
        let mut t = new_table();
        t.replace_static(specs(&["tcp:1=10.0.0.10:1", "tcp:2=10.0.0.11:2"]))
            .expect("first");
        let before = t.maps().shares.clone();
        let err = t
            .replace_static(specs(&["tcp:1=10.0.0.10:1", "tcp:3=192.168.9.9:3"]))
            .expect_err("not on the LAN");
        assert!(err.to_string().contains("tcp:3"), "{err}");
        assert_eq!(t.maps().shares, before);
        assert_eq!(t.entries(Instant::now()).len(), 2);
    }

    #[test]
    fn reload_keeps_unchanged_shares_and_their_counters() {
        let mut t = new_table();
        t.replace_static(specs(&["tcp:1=10.0.0.10:1", "tcp:2=10.0.0.11:2"]))
            .expect("first");
        let slot_of = |t: &Table<MemoryMaps>, port: u16| {
            t.maps()
                .shares
                .iter()
                .find(|(k, _)| k.ext_port == port.to_be())
                .map(|(_, v)| v.slot)
                .expect("share")
        };
        let slot1 = slot_of(&t, 1);
        t.reconciler.maps_mut().stats.insert(
            slot1,
            ShareStats {
                packets_in: 5,
                ..ShareStats::default()
            },
        );
        let mut renamed = specs(&["tcp:1=10.0.0.10:1", "tcp:4=10.0.0.11:2"]);
        renamed[0].name = Some("ssh".into());
        let applied = t.replace_static(renamed).expect("second");
        assert_eq!(slot_of(&t, 1), slot1);
        assert_eq!(applied.deletes, 1, "tcp:2 went away");
        let list = t.list(Instant::now()).expect("list");
        assert_eq!(list[0].entry.spec.name.as_deref(), Some("ssh"));
        assert_eq!(list[0].stats.packets_in, 5);
        assert_eq!(
            list[1].stats,
            ShareStats::default(),
            "new share, fresh counters"
        );
    }

    #[test]
    fn a_lease_on_a_static_port_is_a_conflict_for_any_remote_host() {
        let mut t = new_table();
        t.replace_static(specs(&["tcp:8080@198.51.100.7=10.0.0.20:80"]))
            .expect("static");
        let err = t
            .lease(
                request("tcp:8080=10.0.0.10:80", CLIENT, Some(60)),
                Instant::now(),
            )
            .expect_err("static port");
        assert!(
            matches!(
                err,
                TableError::Conflict {
                    origin: Origin::Static,
                    ..
                }
            ),
            "{err:?}"
        );
        assert_eq!(t.maps().shares.len(), 1, "kernel untouched");
        // The other protocol on that port is free.
        t.lease(
            request("udp:8080=10.0.0.10:80", CLIENT, Some(60)),
            Instant::now(),
        )
        .expect("udp is another share");
    }

    #[test]
    fn quotas_count_new_shares_not_renewals() {
        let mut t = new_table();
        let now = Instant::now();
        let limited = |s: &str, client, per_client, total| LeaseRequest {
            limits: Limits { per_client, total },
            ..request(s, client, Some(60))
        };
        t.lease(limited("tcp:1000=10.0.0.10:1000", CLIENT, 2, 3), now)
            .expect("first");
        t.lease(limited("tcp:1001=10.0.0.10:1001", CLIENT, 2, 3), now)
            .expect("second");
        t.lease(limited("tcp:1001=10.0.0.10:1001", CLIENT, 2, 3), now)
            .expect("a renewal is no new share");
        let err = t
            .lease(limited("tcp:1002=10.0.0.10:1002", CLIENT, 2, 3), now)
            .expect_err("per client");
        assert!(
            matches!(
                err,
                TableError::Quota {
                    client: Some(_),
                    limit: 2
                }
            ),
            "{err:?}"
        );
        let other = Ipv4Addr::new(10, 0, 0, 11);
        t.lease(limited("tcp:1003=10.0.0.11:1003", other, 2, 3), now)
            .expect("other client");
        let err = t
            .lease(limited("tcp:1004=10.0.0.11:1004", other, 2, 3), now)
            .expect_err("total");
        assert!(
            matches!(
                err,
                TableError::Quota {
                    client: None,
                    limit: 3
                }
            ),
            "{err:?}"
        );
    }

    #[test]
    fn range_removal_takes_only_the_clients_leased_shares() {
        let mut t = new_table();
        let now = Instant::now();
        let other = Ipv4Addr::new(10, 0, 0, 11);
        t.replace_static(specs(&["tcp:2001=10.0.0.12:1"]))
            .expect("static");
        for (s, c) in [
            ("tcp:2000=10.0.0.10:2000", CLIENT),
            ("tcp:2002=10.0.0.10:2002", CLIENT),
            ("udp:2002=10.0.0.10:2002", CLIENT),
            ("tcp:2003=10.0.0.11:2003", other),
            ("tcp:3000=10.0.0.10:3000", CLIENT),
        ] {
            t.lease(request(s, c, None), now).expect("lease");
        }
        let removed = t
            .remove_range(
                Proto::Tcp,
                2000..=2999,
                By::Client(Origin::Upnp { client: CLIENT }),
            )
            .expect("range");
        let ports: Vec<u16> = removed.iter().map(|s| s.spec.id.ext_port).collect();
        assert_eq!(ports, [2000, 2002]);
        let left: Vec<String> = t
            .entries(now)
            .iter()
            .map(|v| v.spec.id.to_string())
            .collect();
        assert_eq!(left, ["tcp:2001", "tcp:2003", "tcp:3000", "udp:2002"]);
        assert_eq!(t.maps().shares.len(), 4);
    }

    #[test]
    fn leases_survive_a_restart_with_the_time_they_had_left() {
        let dir = std::env::temp_dir().join(format!("portfwd-table-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let state = StateDir::open(&dir).expect("state dir");
        let now = Instant::now();
        let mut t = new_table();
        t.set_state(state.clone());
        t.lease(request("udp:3074=10.0.0.10:3074", CLIENT, Some(3600)), now)
            .expect("lease");
        t.lease(request("tcp:4000=10.0.0.10:4000", CLIENT, None), now)
            .expect("permanent");
        t.lease(request("tcp:4001=10.0.0.10:4001", CLIENT, Some(60)), now)
            .expect("short");
        t.remove(
            spec("tcp:4001=10.0.0.10:4001").id,
            By::Client(Origin::Upnp { client: CLIENT }),
        )
        .expect("removed before the restart");
        t.create(spec("tcp:6000=10.0.0.30:80"))
            .expect("the owner's");
        t.replace_static(specs(&["tcp:7000=10.0.0.40:80"]))
            .expect("static");
        t.edit(
            spec("tcp:7000=10.0.0.40:80").id,
            SharePatch {
                enabled: Some(false),
                ..SharePatch::default()
            },
        )
        .expect("switched off");
        t.set_settings_patch(&SettingsPatch {
            secure_mode: Some(false),
            ..SettingsPatch::default()
        })
        .expect("settings");
        drop(t);

        // As the daemon starts: read, static shares, then the state directory and restore.
        let saved = state.load().expect("load");
        let mut t = new_table();
        // A static share that took a leased port meanwhile wins; the lease is dropped.
        t.replace_static(specs(&["tcp:4000=10.0.0.20:4000", "tcp:7000=10.0.0.40:80"]))
            .expect("static");
        t.set_state(state.clone());
        let restored = t.restore(saved, now);
        assert_eq!(
            restored, 2,
            "the lease of udp:3074 and the owner's tcp:6000"
        );
        let switched = t
            .entries(now)
            .into_iter()
            .find(|e| e.spec.id.ext_port == 7000)
            .expect("static share");
        assert!(
            !switched.spec.enabled,
            "the owner's switch outlives a restart"
        );
        assert!(!t.settings().borrow().secure_mode, "so do settings");
        assert!(
            t.entries(now)
                .iter()
                .any(|e| e.spec.id.ext_port == 6000 && e.origin == Origin::Api)
        );
        let list = t.entries(now);
        let leased: Vec<_> = list
            .iter()
            .filter(|v| v.origin == Origin::Upnp { client: CLIENT })
            .collect();
        assert_eq!(leased.len(), 1);
        assert_eq!(leased[0].spec.id.ext_port, 3074);
        let left = leased[0].expires_in.expect("leased");
        assert!(
            left > Duration::from_secs(3590) && left <= Duration::from_hours(1),
            "{left:?}"
        );
        assert_eq!(t.maps().shares.len(), 3, "tcp:7000 is off");
        std::fs::remove_dir_all(&dir).expect("cleanup");
    }

    #[test]
    fn an_unsaved_change_is_rolled_back() {
        let dir = std::env::temp_dir().join(format!("portfwd-rollback-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let state = StateDir::open(&dir).expect("state dir");
        let mut t = new_table();
        t.set_state(state);
        // The directory disappears: the lease cannot be saved, so it must not be granted.
        std::fs::remove_dir_all(&dir).expect("remove");
        let err = t
            .lease(
                request("tcp:5000=10.0.0.10:5000", CLIENT, Some(60)),
                Instant::now(),
            )
            .expect_err("unsaved");
        assert!(matches!(err, TableError::State(_)), "{err:?}");
        assert!(t.entries(Instant::now()).is_empty());
        assert!(t.maps().shares.is_empty(), "not in the kernel either");
        assert_eq!(t.next_deadline(), None);
    }

    fn kinds(t: &Table<MemoryMaps>) -> Vec<&'static str> {
        t.events(None, 100).iter().map(|e| e.kind.name()).collect()
    }

    fn armed() -> Table<MemoryMaps> {
        let mut t = new_table();
        t.set_events(EventLog::memory(100));
        t
    }

    #[test]
    fn the_owner_creates_edits_switches_and_deletes_with_events() {
        let mut t = armed();
        let id = spec("tcp:8080=10.0.0.10:80").id;
        t.create(spec("tcp:8080=10.0.0.10:80")).expect("create");
        assert!(matches!(
            t.create(spec("tcp:8080=10.0.0.11:80")),
            Err(TableError::Share {
                source: ShareError::Duplicate(_),
                ..
            })
        ));
        let moved = t
            .edit(
                id,
                SharePatch {
                    external_port: Some(8081),
                    name: Some(Some("web".into())),
                    ..SharePatch::default()
                },
            )
            .expect("edit");
        assert_eq!(moved.spec.to_string(), "tcp:8081=10.0.0.10:80");
        assert_eq!(t.maps().shares.len(), 1);
        assert_eq!(
            t.maps()
                .shares
                .keys()
                .next()
                .map(|k| u16::from_be(k.ext_port)),
            Some(8081)
        );
        let id = moved.spec.id;
        let off = SharePatch {
            enabled: Some(false),
            ..SharePatch::default()
        };
        t.edit(id, off.clone()).expect("off");
        assert!(
            t.maps().shares.is_empty(),
            "a disabled share leaves the kernel"
        );
        t.edit(id, off).expect("off again: no change, no event");
        t.edit(
            id,
            SharePatch {
                enabled: Some(true),
                ..SharePatch::default()
            },
        )
        .expect("on");
        t.remove(id, By::Operator).expect("delete");
        assert!(t.maps().shares.is_empty());
        assert_eq!(
            kinds(&t),
            [
                "share_created",
                "share_edited",
                "share_disabled",
                "share_enabled",
                "share_deleted"
            ]
        );
        let events = t.events(None, 100);
        assert_eq!(events[1].share, Some(id));
        assert!(
            events[1].detail.contains("was tcp:8080"),
            "{}",
            events[1].detail
        );
        assert!(events.iter().all(|e| e.source == "api"));
    }

    #[test]
    fn static_shares_are_switched_not_edited_or_deleted_by_the_owner() {
        let mut t = armed();
        t.replace_static(specs(&["tcp:80=10.0.0.10:80"]))
            .expect("static");
        let id = spec("tcp:80=10.0.0.10:80").id;
        let err = t
            .edit(
                id,
                SharePatch {
                    internal: Some("10.0.0.11:80".parse().expect("addr")),
                    ..SharePatch::default()
                },
            )
            .expect_err("config's");
        assert!(matches!(err, TableError::Static(_)), "{err:?}");
        assert!(matches!(
            t.remove(id, By::Operator),
            Err(TableError::Static(_))
        ));
        t.edit(
            id,
            SharePatch {
                enabled: Some(false),
                ..SharePatch::default()
            },
        )
        .expect("switch");
        // A reload keeps the owner's switch; a reload without the share forgets it.
        t.replace_static(specs(&["tcp:80=10.0.0.10:80"]))
            .expect("reload");
        assert!(t.maps().shares.is_empty());
        t.replace_static(Vec::new()).expect("gone");
        t.replace_static(specs(&["tcp:80=10.0.0.10:80"]))
            .expect("back");
        assert_eq!(t.maps().shares.len(), 1, "back as the config says");
        assert_eq!(
            kinds(&t),
            [
                "share_created",
                "share_disabled",
                "share_deleted",
                "share_created"
            ]
        );
        assert!(t.events(None, 100)[2].source == "config");
    }

    #[tokio::test(start_paused = true)]
    async fn a_short_wan_outage_is_one_event_a_long_one_two() {
        let mut t = armed();
        t.set_flap_window(Duration::from_secs(10));
        t.replace_static(specs(&["tcp:80=10.0.0.10:80"]))
            .expect("static");
        let start = Instant::now();
        t.set_link(false, start).expect("down");
        assert!(t.maps().shares.is_empty(), "out of the data plane");
        assert!(!t.list(start).expect("list")[0].active);
        assert!(t.list(start).expect("list")[0].entry.spec.enabled);
        t.set_link(true, start + Duration::from_secs(3))
            .expect("up");
        assert_eq!(t.maps().shares.len(), 1, "back");
        assert_eq!(kinds(&t), ["share_created", "wan_flap"]);

        t.set_link(false, start + Duration::from_secs(20))
            .expect("down");
        assert_eq!(
            t.next_deadline(),
            Some(start + Duration::from_secs(30)),
            "the flap window ends"
        );
        t.expire(start + Duration::from_secs(30)).expect("window");
        assert_eq!(t.next_deadline(), None);
        t.set_link(true, start + Duration::from_secs(40))
            .expect("up");
        assert_eq!(
            kinds(&t),
            ["share_created", "wan_flap", "wan_down", "wan_up"]
        );
        assert_eq!(t.status().counters.wan_link_changes, 4);
    }

    #[test]
    fn revoking_a_device_removes_its_shares_and_revoke_unused_keeps_holders() {
        let mut t = armed();
        let other = Ipv4Addr::new(10, 0, 0, 20);
        let now = Instant::now();
        t.lease(request("tcp:5000=10.0.0.10:5000", CLIENT, None), now)
            .expect("lease");
        t.lease(request("tcp:5001=10.0.0.20:5001", other, None), now)
            .expect("lease");
        let kept = t.revoke_unused().expect("revoke");
        assert_eq!(kept, [CLIENT, other]);
        let settings = t.settings().borrow().clone();
        assert_eq!(settings.check_client(CLIENT, None), Ok(()));
        let newcomer = Ipv4Addr::new(10, 0, 0, 30);
        assert!(settings.check_client(newcomer, None).is_err());
        let removed = t.set_device(other, Some(false)).expect("deny");
        assert_eq!(removed.len(), 1);
        assert_eq!(t.maps().shares.len(), 1);
        assert!(t.settings().borrow().check_client(other, None).is_err());
        assert_eq!(
            kinds(&t),
            [
                "share_created",
                "share_created",
                "device_permission",
                "device_permission",
                "share_deleted"
            ]
        );
    }

    #[test]
    fn lease_expiry_is_an_event_and_a_count() {
        let mut t = armed();
        let now = Instant::now();
        t.lease(request("udp:3074=10.0.0.10:3074", CLIENT, Some(5)), now)
            .expect("lease");
        t.expire(now + Duration::from_secs(5)).expect("expire");
        assert_eq!(kinds(&t), ["share_created", "share_expired"]);
        assert_eq!(t.status().counters.lease_expirations, 1);
        assert_eq!(t.events(None, 10)[1].source, "lease");
    }

    fn pinhole_request(id: &str, origin: Origin, secs: Option<u64>) -> PinholeRequest {
        PinholeRequest {
            spec: PinholeSpec {
                id: id.parse().expect("id"),
                remote: None,
                remote_port: None,
                name: None,
                enabled: true,
            },
            origin,
            lease: secs.map(Duration::from_secs),
            limits: Limits {
                per_client: 2,
                total: 10,
            },
        }
    }

    fn lan6_table() -> Table<MemoryMaps> {
        let mut t = armed();
        t.set_lan6(vec![Prefix6 {
            addr: "2001:db8:77::1".parse().expect("addr"),
            prefix_len: 64,
        }]);
        t
    }

    #[test]
    fn client_pinholes_renew_expire_count_against_the_quota_and_belong_to_their_client() {
        let mut t = lan6_table();
        let now = Instant::now();
        let upnp = Origin::Upnp { client: CLIENT };
        let other = Origin::Upnp {
            client: Ipv4Addr::new(10, 0, 0, 11),
        };
        let web = "tcp:[2001:db8:77::10]:8443";
        let opened = t
            .lease_pinhole(pinhole_request(web, upnp, Some(60)), now)
            .expect("open");
        assert_eq!(opened.expires_in, Some(Duration::from_mins(1)));
        assert_eq!(t.maps().pinholes.len(), 1);
        let uid = opened.pinhole.uid;

        // Another client can neither take it over nor close it; the owner can't open it again.
        assert!(matches!(
            t.lease_pinhole(pinhole_request(web, other, Some(60)), now),
            Err(TableError::PinholeNotOwner(..))
        ));
        assert!(matches!(
            t.close_pinhole(web.parse().expect("id"), By::Client(other)),
            Err(TableError::PinholeNotOwner(..))
        ));
        let mut owners = pinhole_request(web, Origin::Api, None).spec;
        owners.name = Some("again".into());
        assert!(matches!(
            t.open_pinhole(owners),
            Err(TableError::Pinhole {
                source: PinholeError::Duplicate(_),
                ..
            })
        ));

        // Its client renews it in place: same id, new deadline.
        let later = now + Duration::from_secs(50);
        let renewed = t
            .lease_pinhole(pinhole_request(web, upnp, Some(60)), later)
            .expect("renew");
        assert_eq!(renewed.pinhole.uid, uid);
        t.expire(now + Duration::from_secs(61)).expect("expire");
        assert_eq!(t.maps().pinholes.len(), 1, "renewed, not expired");

        // Shares and pinholes share the client's quota (2 here).
        t.lease(request("udp:3074=10.0.0.10:3074", CLIENT, Some(60)), now)
            .expect("share");
        assert!(matches!(
            t.lease_pinhole(
                pinhole_request("udp:[2001:db8:77::10]:3478", upnp, Some(60)),
                now
            ),
            Err(TableError::Quota {
                client: Some(IpAddr::V4(CLIENT)),
                limit: 2
            })
        ));

        t.expire(later + Duration::from_mins(1)).expect("expire");
        assert!(t.maps().pinholes.is_empty(), "the lease ended");
        assert!(t.pinholes().expect("list").is_empty());
        assert_eq!(t.status().counters.lease_expirations, 2);
        assert_eq!(
            kinds(&t),
            [
                "share_created",
                "share_created",
                "share_expired",
                "share_expired"
            ]
        );
        let expired = t.events(None, 10)[3].clone();
        assert!(
            expired.detail.contains(web) && expired.detail.contains("for 10.0.0.10"),
            "{}",
            expired.detail
        );
    }

    #[test]
    fn client_pinholes_survive_a_restart_with_their_owner_lease_and_unique_id() {
        let dir = std::env::temp_dir().join(format!("portfwd-pinholes-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let state = StateDir::open(&dir).expect("state dir");
        let now = Instant::now();
        let pcp = Origin::Pcp6 {
            client: "2001:db8:77::11".parse().expect("addr"),
            nonce: [5; 12],
        };
        let upnp = Origin::Upnp { client: CLIENT };
        let mut t = lan6_table();
        t.set_state(state.clone());
        let first = t
            .lease_pinhole(
                pinhole_request("udp:[2001:db8:77::11]:3478", pcp, Some(600)),
                now,
            )
            .expect("pcp");
        let second = t
            .lease_pinhole(
                pinhole_request("tcp:[2001:db8:77::10]:8443", upnp, None),
                now,
            )
            .expect("upnp");
        drop(t);

        let mut t = lan6_table();
        t.set_state(state.clone());
        assert_eq!(t.restore(state.load().expect("load"), now), 2);
        let list = t.pinholes().expect("list");
        let find = |uid: u16| {
            list.iter()
                .find(|v| v.pinhole.uid == uid)
                .expect("same UniqueID")
        };
        assert_eq!(find(first.pinhole.uid).pinhole.origin, pcp);
        assert!(
            find(first.pinhole.uid)
                .expires_in
                .is_some_and(|left| left <= Duration::from_mins(10))
        );
        assert_eq!(find(second.pinhole.uid).pinhole.origin, upnp);
        assert_eq!(find(second.pinhole.uid).expires_in, None);
        assert_eq!(t.maps().pinholes.len(), 2);
        // The client, not another, closes it after the restart.
        t.close_pinhole(
            "udp:[2001:db8:77::11]:3478".parse().expect("id"),
            By::Client(pcp),
        )
        .expect("its own");
        std::fs::remove_dir_all(&dir).expect("cleanup");
    }
}
