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

use std::{
    collections::{BTreeMap, BTreeSet},
    net::Ipv4Addr,
    ops::RangeInclusive,
    time::Duration,
};

use portfwd_common::{CONFIG_F_REMOTE_SPECIFIC, ShareStats};
use tokio::{
    sync::{mpsc, oneshot},
    time::Instant,
};

use crate::{
    dataplane::{Applied, DataplaneError, KernelMaps, Reconciler},
    share::{LanSubnet, Origin, Proto, Share, ShareError, ShareId, ShareSpec, ShareTable},
    state::{self, SavedLease, StateDir, StateError},
};

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
    #[error("{} {limit} leased shares", match client {
        Some(client) => format!("{client} already holds its"),
        None => "the box already holds its".to_owned(),
    })]
    Quota {
        /// `Some`: the client's own cap; `None`: the cap on all clients together.
        client: Option<Ipv4Addr>,
        limit: usize,
    },
    #[error("saving the leased shares")]
    State(#[from] StateError),
    #[error("the share table task has stopped")]
    Stopped,
}

/// On whose behalf a share is removed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum By {
    /// The box's owner: any share.
    Operator,
    /// A LAN client: only the shares it made.
    Client(Ipv4Addr),
    /// A LAN client where secure mode is off: any share made by a client, none of the owner's.
    AnyClient,
}

impl By {
    fn may_remove(self, origin: Origin) -> bool {
        match (self, origin) {
            (Self::Operator, _) | (Self::AnyClient, Origin::Upnp { .. }) => true,
            (Self::Client(me), Origin::Upnp { client }) => me == client,
            (Self::Client(_) | Self::AnyClient, Origin::Static) => false,
        }
    }
}

impl std::fmt::Display for By {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Operator => f.write_str("the owner"),
            Self::Client(client) => write!(f, "{client}"),
            Self::AnyClient => f.write_str("a LAN client"),
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
}

/// The share table and the kernel maps it is reconciled into.
pub struct Table<M> {
    shares: ShareTable,
    reconciler: Reconciler<M>,
    kernel_config: portfwd_common::Config,
    /// Lease deadlines, earliest first, and each leased share's deadline.
    deadlines: BTreeSet<(Instant, ShareId)>,
    leases: BTreeMap<ShareId, Instant>,
    state: Option<StateDir>,
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
        }
    }

    pub fn maps(&self) -> &M {
        self.reconciler.maps()
    }

    /// Makes the static shares exactly `specs`, leaving leased ones alone: all are validated
    /// together first (nothing changes if one is refused); shares whose target is unchanged
    /// keep their counters.
    pub fn replace_static(&mut self, specs: Vec<ShareSpec>) -> Result<Applied, TableError> {
        let mut next = self.shares.clone();
        let fresh_slots = apply_static(&mut next, specs)?;
        for slot in fresh_slots {
            self.reconciler.maps_mut().reset_stats(slot)?;
        }
        self.shares = next;
        self.sync()
    }

    /// Adds or renews the share of `request` for its LAN client. A share with the same
    /// identity is renewed in place only if the client made it and its internal endpoint is
    /// the same; a static share or another client's share on the same external port (for any
    /// remote host) is a [`TableError::Conflict`]. The client's leased shares and all leased
    /// shares together are capped by `request.limits`.
    pub fn lease(&mut self, request: LeaseRequest, now: Instant) -> Result<Applied, TableError> {
        self.transact(|t| t.lease_in(request, now))
    }

    fn lease_in(&mut self, request: LeaseRequest, now: Instant) -> Result<Applied, TableError> {
        let LeaseRequest {
            spec,
            client,
            lease,
            limits,
        } = request;
        let id = spec.id;
        let origin = Origin::Upnp { client };
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
            let (mine, all) = self
                .shares
                .iter()
                .fold((0, 0), |(mine, all), s| match s.origin {
                    Origin::Upnp { client: c } => (mine + usize::from(c == client), all + 1),
                    Origin::Static => (mine, all),
                });
            if mine >= limits.per_client {
                return Err(TableError::Quota {
                    client: Some(client),
                    limit: limits.per_client,
                });
            }
            if all >= limits.total {
                return Err(TableError::Quota {
                    client: None,
                    limit: limits.total,
                });
            }
            let text = spec.to_string();
            let slot = self
                .shares
                .add_from(spec, origin)
                .map_err(|source| TableError::Share { spec: text, source })?;
            self.reconciler.maps_mut().reset_stats(slot)?;
        }
        if let Some(lease) = lease {
            let deadline = now + lease;
            self.deadlines.insert((deadline, id));
            self.leases.insert(id, deadline);
        }
        self.sync()
    }

    /// Removes share `id` on behalf of `by`.
    pub fn remove(&mut self, id: ShareId, by: By) -> Result<Share, TableError> {
        self.transact(|t| {
            let share = t.shares.get(&id).ok_or(TableError::NoSuchShare(id))?;
            if !by.may_remove(share.origin) {
                return Err(TableError::NotOwner(id, by));
            }
            let share = t.shares.remove(&id).ok_or(TableError::NoSuchShare(id))?;
            t.clear_lease(id);
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
                removed.extend(t.shares.remove(&id));
                t.clear_lease(id);
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
        );
        let result = change(self).and_then(|value| {
            self.save()?;
            Ok(value)
        });
        if result.is_err() {
            (self.shares, self.deadlines, self.leases) = before;
            if let Err(err) = self.sync() {
                tracing::error!(
                    "restoring the kernel maps after a refused change: {}",
                    crate::error_chain(&err)
                );
            }
        }
        result
    }

    /// Keeps leased shares in `state` from now on, written after every change.
    pub fn set_state(&mut self, state: StateDir) {
        self.state = Some(state);
    }

    /// Writes the leased shares to the state directory, if there is one.
    fn save(&self) -> Result<(), TableError> {
        let Some(state) = &self.state else {
            return Ok(());
        };
        let now = Instant::now();
        let leases = self
            .shares
            .iter()
            .filter_map(|s| match s.origin {
                Origin::Upnp { client } => Some(SavedLease {
                    proto: s.spec.id.proto,
                    external_port: s.spec.id.ext_port,
                    remote: s.spec.id.remote,
                    internal: s.spec.internal,
                    client,
                    name: s.spec.name.clone(),
                    enabled: s.spec.enabled,
                    expires_at: self.leases.get(&s.spec.id).map(|deadline| {
                        state::wall_deadline(deadline.saturating_duration_since(now))
                    }),
                }),
                Origin::Static => None,
            })
            .collect();
        Ok(state.save_leases(leases)?)
    }

    /// Puts saved leases back with the time they have left (ended ones are dropped). One that
    /// no longer fits (say, a static share now has its port) is skipped with a warning.
    pub fn restore(&mut self, saved: Vec<SavedLease>, now: Instant) -> usize {
        let mut restored = 0;
        for lease in saved {
            let remaining = lease.expires_at.map(state::wall_remaining);
            if remaining == Some(Duration::ZERO) {
                continue;
            }
            let spec = ShareSpec {
                id: ShareId {
                    proto: lease.proto,
                    ext_port: lease.external_port,
                    remote: lease.remote,
                },
                internal: lease.internal,
                name: lease.name,
                enabled: lease.enabled,
            };
            let text = spec.to_string();
            let request = LeaseRequest {
                spec,
                client: lease.client,
                lease: remaining,
                limits: Limits::NONE,
            };
            match self.lease(request, now) {
                Ok(_) => restored += 1,
                Err(err) => tracing::warn!(
                    "saved share {text} of {} not restored: {}",
                    lease.client,
                    crate::error_chain(&err)
                ),
            }
        }
        restored
    }

    fn clear_lease(&mut self, id: ShareId) {
        if let Some(deadline) = self.leases.remove(&id) {
            self.deadlines.remove(&(deadline, id));
        }
    }

    /// The earliest lease deadline.
    #[must_use]
    pub fn next_deadline(&self) -> Option<Instant> {
        self.deadlines.first().map(|(deadline, _)| *deadline)
    }

    /// Removes every share whose lease ended by `now`; returns them.
    pub fn expire(&mut self, now: Instant) -> Result<Vec<Share>, TableError> {
        let mut expired = Vec::new();
        while let Some(&(deadline, id)) = self.deadlines.first() {
            if deadline > now {
                break;
            }
            self.deadlines.pop_first();
            self.leases.remove(&id);
            expired.extend(self.shares.remove(&id));
        }
        if !expired.is_empty() {
            self.sync()?;
            self.save()?;
        }
        Ok(expired)
    }

    /// Reconciles the kernel with the table. The WAN program only looks up remote-specific
    /// shares while the config flag says there are some: the flag goes on before such a share
    /// is inserted and off after the last one is gone.
    fn sync(&mut self) -> Result<Applied, TableError> {
        let desired = self.shares.desired();
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
        self.kernel_config.ext_addr = addr.map_or(0, |a| u32::from(a).to_be());
        self.reconciler.maps_mut().set_config(self.kernel_config)?;
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
        self.shares
            .iter()
            .map(|s| {
                Ok(ShareView {
                    entry: self.entry(s, now),
                    stats: self.maps().stats(s.slot)?,
                })
            })
            .collect()
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
    pub client: Ipv4Addr,
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
    Entries(oneshot::Sender<Result<Vec<ShareEntry>, TableError>>),
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

    pub async fn entries(&self) -> Result<Vec<ShareEntry>, TableError> {
        self.call(Command::Entries).await
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
                        Ok(expired) => {
                            for share in expired {
                                tracing::info!("share {} expired", share.spec);
                            }
                        }
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
                Command::Entries(reply) => {
                    let _ = reply.send(Ok(table.entries(Instant::now())));
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
            client,
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
            t.remove(id, By::Client(other)),
            Err(TableError::NotOwner(..))
        ));
        // Static shares are not the clients' either.
        t.replace_static(specs(&["tcp:1=10.0.0.10:1"]))
            .expect("static");
        assert!(matches!(
            t.remove(spec("tcp:1=10.0.0.10:1").id, By::Client(CLIENT)),
            Err(TableError::NotOwner(..))
        ));
        assert!(matches!(
            t.remove(spec("tcp:1=10.0.0.10:1").id, By::AnyClient),
            Err(TableError::NotOwner(..))
        ));
        assert!(t.remove(id, By::Client(CLIENT)).is_ok());
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
            .remove_range(Proto::Tcp, 2000..=2999, By::Client(CLIENT))
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
        t.remove(spec("tcp:4001=10.0.0.10:4001").id, By::Client(CLIENT))
            .expect("removed before the restart");
        drop(t);

        let mut t = new_table();
        t.set_state(state.clone());
        // A static share that took a leased port meanwhile wins; the lease is dropped.
        t.replace_static(specs(&["tcp:4000=10.0.0.20:4000"]))
            .expect("static");
        let restored = t.restore(state.load_leases().expect("load"), now);
        assert_eq!(restored, 1);
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
        assert_eq!(t.maps().shares.len(), 2);
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
}
