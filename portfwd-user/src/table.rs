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
    time::Duration,
};

use portfwd_common::{CONFIG_F_REMOTE_SPECIFIC, ShareStats};
use tokio::{
    sync::{mpsc, oneshot},
    time::Instant,
};

use crate::{
    dataplane::{Applied, DataplaneError, KernelMaps, Reconciler},
    share::{LanSubnet, Origin, Share, ShareError, ShareId, ShareSpec, ShareTable},
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
    #[error("{0} is not a share of {1}")]
    NotOwner(ShareId, Ipv4Addr),
    #[error("no share {0}")]
    NoSuchShare(ShareId),
    #[error("the share table task has stopped")]
    Stopped,
}

/// A share as reported to operators.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ShareView {
    pub spec: ShareSpec,
    pub origin: Origin,
    /// Time left on the lease; `None` for shares without one.
    pub expires_in: Option<Duration>,
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

    /// Adds or renews a share for LAN client `client` with a lease of `lease` (`None`: until
    /// removed). A share with the same identity is renewed in place only if the client made it
    /// and its internal endpoint is the same; otherwise the request is refused.
    pub fn lease(
        &mut self,
        spec: ShareSpec,
        client: Ipv4Addr,
        lease: Option<Duration>,
        now: Instant,
    ) -> Result<Applied, TableError> {
        let id = spec.id;
        let origin = Origin::Upnp { client };
        match self.shares.get(&id) {
            Some(existing)
                if existing.origin == origin && existing.spec.internal == spec.internal =>
            {
                self.shares.update_in_place(&spec);
            }
            Some(_) => {
                return Err(TableError::Share {
                    spec: spec.to_string(),
                    source: ShareError::Duplicate(id),
                });
            }
            None => {
                let text = spec.to_string();
                let slot = self
                    .shares
                    .add_from(spec, origin)
                    .map_err(|source| TableError::Share { spec: text, source })?;
                if let Err(err) = self.reconciler.maps_mut().reset_stats(slot) {
                    self.shares.remove(&id);
                    return Err(err.into());
                }
            }
        }
        self.clear_lease(id);
        if let Some(lease) = lease {
            let deadline = now + lease;
            self.deadlines.insert((deadline, id));
            self.leases.insert(id, deadline);
        }
        self.sync()
    }

    /// Removes share `id`. With `client`, only a share that client made.
    pub fn remove(&mut self, id: ShareId, client: Option<Ipv4Addr>) -> Result<Share, TableError> {
        let share = self.shares.get(&id).ok_or(TableError::NoSuchShare(id))?;
        if let Some(client) = client
            && share.origin != (Origin::Upnp { client })
        {
            return Err(TableError::NotOwner(id, client));
        }
        let share = self.shares.remove(&id).ok_or(TableError::NoSuchShare(id))?;
        self.clear_lease(id);
        self.sync()?;
        Ok(share)
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

    /// All shares with their counters, as of `now`.
    pub fn list(&self, now: Instant) -> Result<Vec<ShareView>, TableError> {
        self.shares
            .iter()
            .map(|s| {
                Ok(ShareView {
                    spec: s.spec.clone(),
                    origin: s.origin,
                    expires_in: self
                        .leases
                        .get(&s.spec.id)
                        .map(|deadline| deadline.saturating_duration_since(now)),
                    stats: self.maps().stats(s.slot)?,
                })
            })
            .collect()
    }
}

/// A lease request: the share, its client and the lease length.
pub struct LeaseRequest {
    pub spec: ShareSpec,
    pub client: Ipv4Addr,
    pub lease: Option<Duration>,
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
    Remove(
        ShareId,
        Option<Ipv4Addr>,
        oneshot::Sender<Result<Share, TableError>>,
    ),
    SetExternal(Option<Ipv4Addr>, oneshot::Sender<Result<(), TableError>>),
    ForwardingChanged(oneshot::Sender<Result<(), TableError>>),
    List(oneshot::Sender<Result<Vec<ShareView>, TableError>>),
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

    pub async fn remove(&self, id: ShareId, client: Option<Ipv4Addr>) -> Result<Share, TableError> {
        self.call(|r| Command::Remove(id, client, r)).await
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
                    let LeaseRequest {
                        spec,
                        client,
                        lease,
                    } = request;
                    let _ = reply.send(table.lease(spec, client, lease, Instant::now()));
                }
                Command::Remove(id, client, reply) => {
                    let _ = reply.send(table.remove(id, client));
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
        assert_eq!(list[0].spec.to_string(), "tcp:8080=10.0.0.10:80");
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

    #[tokio::test(start_paused = true)]
    async fn a_lease_expires_at_its_deadline_and_leaves_the_kernel() {
        let (handle, task) = spawn(new_table());
        let lease = |secs| LeaseRequest {
            spec: spec("udp:5000=10.0.0.10:5000"),
            client: CLIENT,
            lease: Some(Duration::from_secs(secs)),
        };
        handle.lease(lease(10)).await.expect("lease");
        tokio::time::advance(Duration::from_secs(6)).await;
        let listed = handle.list().await.expect("list");
        assert_eq!(listed[0].expires_in, Some(Duration::from_secs(4)));
        assert_eq!(listed[0].origin, Origin::Upnp { client: CLIENT });

        // Renewal by its client moves the deadline.
        handle.lease(lease(10)).await.expect("renew");
        tokio::time::advance(Duration::from_secs(9)).await;
        assert_eq!(
            handle.list().await.expect("list").len(),
            1,
            "renewed, not expired"
        );
        tokio::time::advance(Duration::from_millis(1001)).await;
        tokio::task::yield_now().await;
        assert!(handle.list().await.expect("list").is_empty(), "expired");
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
        t.lease(spec("tcp:6000=10.0.0.10:6000"), CLIENT, None, now)
            .expect("lease");
        let err = t
            .lease(spec("tcp:6000=10.0.0.11:6000"), other, None, now)
            .expect_err("taken");
        assert!(matches!(
            err,
            TableError::Share {
                source: ShareError::Duplicate(_),
                ..
            }
        ));
        let id = spec("tcp:6000=10.0.0.10:6000").id;
        assert!(matches!(
            t.remove(id, Some(other)),
            Err(TableError::NotOwner(..))
        ));
        // Static shares are not the clients' either.
        t.replace_static(specs(&["tcp:1=10.0.0.10:1"]))
            .expect("static");
        assert!(matches!(
            t.remove(spec("tcp:1=10.0.0.10:1").id, Some(CLIENT)),
            Err(TableError::NotOwner(..))
        ));
        assert!(t.remove(id, Some(CLIENT)).is_ok());
        assert!(matches!(
            t.remove(id, None),
            Err(TableError::NoSuchShare(_))
        ));
    }

    #[test]
    fn a_static_reload_keeps_leased_shares() {
        let mut t = new_table();
        t.lease(
            spec("udp:7000=10.0.0.10:7000"),
            CLIENT,
            None,
            Instant::now(),
        )
        .expect("lease");
        t.replace_static(specs(&["tcp:1=10.0.0.10:1"]))
            .expect("reload");
        t.replace_static(specs(&[])).expect("reload to nothing");
        let list = t.list(Instant::now()).expect("list");
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
        assert_eq!(t.list(Instant::now()).expect("list").len(), 2);
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
        assert_eq!(list[0].spec.name.as_deref(), Some("ssh"));
        assert_eq!(list[0].stats.packets_in, 5);
        assert_eq!(
            list[1].stats,
            ShareStats::default(),
            "new share, fresh counters"
        );
    }
}
