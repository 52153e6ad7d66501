//! The share table and its owner.
//!
//! One task owns the [`Table`]: the shares (static, the owner's, and those LAN clients lease
//! over UPnP, NAT-PMP and PCP), the IPv6 pinholes, the owner's settings and device
//! permissions, the WAN link, and the kernel maps the table is reconciled into. Everything else
//! talks to it through a [`TableHandle`] ([`actor`]), and reads a published [`Snapshot`]
//! ([`view`]) without waiting on it.
//!
//! The table is the one place that decides: admission ([`admit`]) checks a client's request
//! against the owner's current settings (switches, device permission, secure mode, port rules,
//! the box's own ports, quotas) and hunts a free port, inside the owner, so a permission
//! revoked while a request is in flight wins, and a changed quota applies to the very next
//! request. The front ends (UPnP, NAT-PMP/PCP, the REST API) parse, call and encode.
//!
//! Every change is a transaction ([`tx`]): it records undo entries for what it touches, the
//! kernel follows the identities it touched ([`kernel`]), and its records go to the journal
//! ([`persist`]); the caller's answer waits until they are on disk. A refused change, or one
//! the kernel or the disk refuses, is undone. Nothing in this module but [`actor`] depends on
//! the async runtime: the core is plain data and can be tested with a fake clock.
//!
//! | file | concern |
//! |---|---|
//! | `error.rs` | [`TableError`], [`By`] |
//! | `tx.rs` | transactions, undo records |
//! | `kernel.rs` | the kernel maps, diffed per touched identity |
//! | `shares.rs` | the owner's shares; leases of clients' shares; removal |
//! | `admit.rs` | admission and the port hunt |
//! | `statics.rs` | the config file's shares and their reloads |
//! | `pinholes.rs` | IPv6 pinholes |
//! | `leases.rs` | lease deadlines and expiry |
//! | `settings.rs` | the owner's settings and device permissions |
//! | `link.rs` | the WAN link and the external address |
//! | `persist.rs` | journal records, snapshots, restoring, migration of `state.json` |
//! | `view.rs` | what readers see: [`Snapshot`], share and pinhole views |
//! | `actor.rs` | the owner task and its handle |

mod actor;
mod admit;
mod error;
mod exposed;
mod kernel;
mod leases;
mod link;
mod persist;
mod pinholes;
mod settings;
mod shares;
mod statics;
mod tx;
mod view;

#[cfg(test)]
mod tests;

use std::{
    collections::{BTreeMap, BTreeSet},
    net::IpAddr,
    sync::Arc,
    time::{Duration, Instant},
};

pub use actor::now;
pub use actor::{TableHandle, spawn};
pub use admit::{Ask, Granted, Hunt, Mechanism, PinholeAsk, nearest};
pub use error::{By, TableError};
pub use link::FLAP_WINDOW;
pub use persist::{Ack, Durability, Loaded, Record, STORE, load};
pub use settings::SettingsPatch;
pub use shares::{Release, SharePatch};
pub use statics::check_static;
pub use view::{PinholeView, SettingsView, ShareEntry, ShareView, Snapshot, TableStatus};

use crate::{
    dataplane::{KernelMaps, MapReader},
    events::EventLog,
    host::Host,
    metrics::Counters,
    pinhole::{PinholeId, Pinholes, Prefix6},
    policy::{Overlay, Settings},
    share::{LanSubnet, ShareId, ShareTable},
};

/// What has a lease deadline.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Leased {
    Share(ShareId),
    Pinhole(PinholeId),
}

/// The share table, its settings and the kernel maps it is reconciled into.
pub struct Table {
    shares: ShareTable,
    pinholes: Pinholes,
    /// Lease deadlines of shares and pinholes, earliest first (each also in its share or
    /// pinhole).
    deadlines: BTreeSet<(Instant, Leased)>,
    /// The owner's switch on static shares, by share.
    static_enabled: BTreeMap<ShareId, bool>,
    /// Shares and pinholes each LAN client holds, and all of them: the quotas' counts.
    owned: BTreeMap<IpAddr, usize>,
    owned_total: usize,
    /// The config file's settings.
    base: Settings,
    /// The owner's changes over them.
    overlay: Overlay,
    /// `base` with `overlay` laid over it: what admission checks against.
    effective: Arc<Settings>,
    events: EventLog,
    /// Whether changes are logged and counted (not while the daemon sets up).
    armed: bool,
    link: link::Link,
    counters: Counters,
    kernel: kernel::Kernel,
    host: Arc<dyn Host>,
    tx: tx::Tx,
    durable: persist::Durable,
    /// The time of the operation in progress: the owner task sets it before each one, so the
    /// core never reads a clock of its own.
    now: Instant,
    /// `now` and `CLOCK_BOOTTIME` read together: the data plane's lease deadlines.
    clock: crate::clock::BootClock,
    /// Goes up with every change readers can see.
    version: u64,
    /// Leases found ended at start (saved, and their end passed while no daemon ran): logged
    /// once the table records events.
    ended_while_down: Vec<crate::events::NewEvent>,
}

/// What a table starts with: see [`Table::builder`].
pub struct Builder {
    lan: Vec<LanSubnet>,
    lan6: Vec<Prefix6>,
    maps: Box<dyn KernelMaps + Send>,
    host: Arc<dyn Host>,
    wan_ifindex: u32,
    lan_ifindex: u32,
    settings: Settings,
    flap_window: Duration,
    ipv6_deny: bool,
    hairpin: bool,
}

impl Builder {
    /// The LAN's global IPv6 prefixes: where pinholes may open.
    #[must_use]
    pub fn lan6(mut self, prefixes: Vec<Prefix6>) -> Self {
        self.lan6 = prefixes;
        self
    }

    /// The config file's settings (the owner's changes are laid over them).
    #[must_use]
    pub fn settings(mut self, settings: Settings) -> Self {
        self.settings = settings;
        self
    }

    /// How long a WAN outage may last and still be one flap event.
    #[must_use]
    pub fn flap_window(mut self, window: Duration) -> Self {
        self.flap_window = window;
        self
    }

    /// Whether inbound IPv6 TCP connection attempts to LAN hosts without a pinhole are dropped
    /// in XDP.
    #[must_use]
    pub fn ipv6_deny(mut self, deny: bool) -> Self {
        self.ipv6_deny = deny;
        self
    }

    /// Whether LAN hosts reach shares through the external address (default on).
    #[must_use]
    pub fn hairpin(mut self, on: bool) -> Self {
        self.hairpin = on;
        self
    }

    /// The table, with its kernel config written.
    pub fn build(self, now: Instant) -> Result<Table, TableError> {
        let effective = Arc::new(self.settings.clone());
        let mut kernel = kernel::Kernel::new(self.maps);
        // Pinned maps keep their external address and flags until the table says otherwise:
        // zeroing them here would stop forwarding until the address is set again.
        let mut config = kernel.config;
        config.wan_ifindex = self.wan_ifindex;
        config.lan_ifindex = self.lan_ifindex;
        if self.ipv6_deny {
            config.flags |= portfwd_common::CONFIG_F_IPV6_DENY;
        } else {
            config.flags &= !portfwd_common::CONFIG_F_IPV6_DENY;
        }
        // Hairpinned packets leave from the box's (first) LAN address.
        config.lan_addr = self.lan.first().map_or(0, |s| u32::from(s.addr).to_be());
        if self.hairpin {
            config.flags |= portfwd_common::CONFIG_F_HAIRPIN;
        } else {
            config.flags &= !portfwd_common::CONFIG_F_HAIRPIN;
        }
        kernel.set_config(config)?;
        Ok(Table {
            shares: ShareTable::new(self.lan),
            pinholes: Pinholes::new(self.lan6),
            deadlines: BTreeSet::new(),
            static_enabled: BTreeMap::new(),
            owned: BTreeMap::new(),
            owned_total: 0,
            base: self.settings,
            overlay: Overlay::default(),
            effective,
            events: EventLog::memory(crate::events::DEFAULT_CAPACITY),
            armed: false,
            link: link::Link::new(self.flap_window),
            counters: Counters::default(),
            kernel,
            host: self.host,
            tx: tx::Tx::default(),
            durable: persist::Durable::default(),
            now,
            clock: crate::clock::BootClock::read(now),
            version: 0,
            ended_while_down: Vec::new(),
        })
    }
}

impl Table {
    /// A table for a box whose LAN interface has `lan` subnets and interface indexes
    /// `wan_ifindex` and `lan_ifindex`, writing to freshly created (empty) `maps`, asking
    /// `host` about the box itself.
    pub fn builder(
        lan: Vec<LanSubnet>,
        maps: Box<dyn KernelMaps + Send>,
        host: Arc<dyn Host>,
        wan_ifindex: u32,
        lan_ifindex: u32,
    ) -> Builder {
        Builder {
            lan,
            lan6: Vec::new(),
            maps,
            host,
            wan_ifindex,
            lan_ifindex,
            settings: Settings::default(),
            flap_window: FLAP_WINDOW,
            ipv6_deny: false,
            hairpin: true,
        }
    }

    /// Records changes in `events` from now on, and counts them.
    pub fn arm(&mut self, events: EventLog) {
        self.events = events;
        self.armed = true;
        let ended = std::mem::take(&mut self.ended_while_down);
        if !ended.is_empty() {
            self.counters.lease_expirations += ended.len() as u64;
            let _ = self.transact(|t| {
                for event in ended {
                    t.log(event);
                }
                Ok(())
            });
        }
    }

    /// Sets the time operations run at (the owner task does before each).
    pub fn set_now(&mut self, now: Instant) {
        self.now = now;
        let fresh = crate::clock::BootClock::read(now);
        // After a suspend the clocks disagree: every lease's deadline is written anew.
        if self.clock.drift(fresh) > Duration::from_secs(1) {
            self.clock = fresh;
            self.tx.dirty.all = true;
        }
    }

    /// The kernel maps.
    #[must_use]
    pub fn maps(&self) -> &dyn KernelMaps {
        self.kernel.maps()
    }

    /// The kernel maps, to attach the programs once the table has filled them.
    pub fn maps_mut(&mut self) -> &mut dyn KernelMaps {
        self.kernel.maps_mut()
    }

    /// Brings every kernel entry in line with the table: what a start does once the table is
    /// complete, to remove what pinned maps hold that the table no longer has.
    pub fn reconcile_all(&mut self) -> Result<(), TableError> {
        self.transact(|t| {
            t.tx.dirty.all = true;
            Ok(())
        })
    }

    /// A reader of the kernel's counters for other tasks.
    #[must_use]
    pub fn reader(&self) -> Arc<dyn MapReader> {
        self.kernel.maps().reader()
    }

    /// The settings in force.
    #[must_use]
    pub fn settings(&self) -> &Arc<Settings> {
        &self.effective
    }

    fn refresh_settings(&mut self) {
        self.effective = Arc::new(self.base.overlaid(&self.overlay));
        self.version += 1;
    }

    /// Every kernel map write so far.
    #[must_use]
    pub fn kernel_writes(&self) -> crate::dataplane::Applied {
        self.kernel.total
    }

    /// Records `event`, for what happens beside the table (dynamic DNS).
    pub fn note(&mut self, event: crate::events::NewEvent) -> Result<(), TableError> {
        self.transact(|t| {
            t.log(event);
            Ok(())
        })
    }

    /// The event log.
    #[must_use]
    pub fn events(&self) -> &EventLog {
        &self.events
    }
}

/// A table over in-memory maps for a LAN of `10.0.0.0/24` and `2001:db8:77::/64`, its
/// external address `198.51.100.1`, running on its own task: what the front ends' unit tests talk to.
#[cfg(test)]
pub(crate) fn testing(settings: Settings, host: Arc<dyn Host>, statics: &[&str]) -> TableHandle {
    let mut table = Table::builder(
        vec![LanSubnet {
            addr: std::net::Ipv4Addr::new(10, 0, 0, 1),
            prefix_len: 24,
        }],
        Box::new(crate::dataplane::MemoryMaps::default()),
        host,
        1,
        2,
    )
    .lan6(vec![Prefix6 {
        addr: "2001:db8:77::1".parse().expect("addr"),
        prefix_len: 64,
    }])
    .settings(settings)
    .build(Instant::now())
    .expect("table");
    table
        .set_external(Some(std::net::Ipv4Addr::new(198, 51, 100, 1)))
        .expect("external");
    table
        .replace_static(statics.iter().map(|s| s.parse().expect("spec")).collect())
        .expect("static");
    spawn(table, None).0
}
