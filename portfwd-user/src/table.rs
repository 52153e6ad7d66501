//! The share table's owner.
//!
//! One task owns the [`ShareTable`] and the kernel maps ([`Table`]); signal handling, the
//! rtnetlink monitor, and later the UPnP, NAT-PMP/PCP and REST servers talk to it through a
//! cloneable [`TableHandle`] (an `mpsc` channel of commands, each with a `oneshot` reply).
//! Every change is validated against the whole table first and then reconciled into the kernel
//! before the reply is sent, so a caller that got `Ok` knows the data plane already follows.

use std::net::Ipv4Addr;

use portfwd_common::{CONFIG_F_REMOTE_SPECIFIC, ShareStats};
use tokio::sync::{mpsc, oneshot};

use crate::{
    dataplane::{Applied, DataplaneError, KernelMaps, Reconciler},
    share::{LanSubnet, ShareError, ShareId, ShareSpec, ShareTable},
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
    #[error("the share table task has stopped")]
    Stopped,
}

/// A share as reported to operators.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ShareView {
    pub spec: ShareSpec,
    pub stats: ShareStats,
}

/// The share table and the kernel maps it is reconciled into.
pub struct Table<M> {
    shares: ShareTable,
    reconciler: Reconciler<M>,
    kernel_config: portfwd_common::Config,
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
        }
    }

    pub fn maps(&self) -> &M {
        self.reconciler.maps()
    }

    /// Makes the static shares exactly `specs`: all are validated together first (nothing
    /// changes if one is refused); shares whose target is unchanged keep their counters.
    pub fn replace_static(&mut self, specs: Vec<ShareSpec>) -> Result<Applied, TableError> {
        let mut next = self.shares.clone();
        let keep = |old: &ShareSpec| {
            specs
                .iter()
                .any(|s| s.id == old.id && s.internal == old.internal)
        };
        let gone: Vec<ShareId> = next
            .iter()
            .filter(|s| !keep(&s.spec))
            .map(|s| s.spec.id)
            .collect();
        for id in &gone {
            next.remove(id);
        }
        let mut fresh_slots = Vec::new();
        for spec in specs {
            if next.update_in_place(&spec) {
                continue;
            }
            let text = spec.to_string();
            let slot = next
                .add(spec)
                .map_err(|source| TableError::Share { spec: text, source })?;
            fresh_slots.push(slot);
        }
        for slot in fresh_slots {
            self.reconciler.maps_mut().reset_stats(slot)?;
        }
        self.shares = next;
        self.sync()
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

    /// All shares with their counters.
    pub fn list(&self) -> Result<Vec<ShareView>, TableError> {
        self.shares
            .iter()
            .map(|s| {
                Ok(ShareView {
                    spec: s.spec.clone(),
                    stats: self.maps().stats(s.slot)?,
                })
            })
            .collect()
    }
}

enum Command {
    ReplaceStatic(Vec<ShareSpec>, oneshot::Sender<Result<Applied, TableError>>),
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

/// Runs `table` on its own task; returns the handle and the task (which hands the table
/// back, with its maps, when the last handle is dropped).
pub fn spawn<M: KernelMaps + Send + 'static>(
    mut table: Table<M>,
) -> (TableHandle, tokio::task::JoinHandle<Table<M>>) {
    let (tx, mut rx) = mpsc::channel(64);
    let task = tokio::spawn(async move {
        while let Some(command) = rx.recv().await {
            // A caller that went away does not care about its reply.
            match command {
                Command::ReplaceStatic(specs, reply) => {
                    let _ = reply.send(table.replace_static(specs));
                }
                Command::SetExternal(addr, reply) => {
                    let _ = reply.send(table.set_external(addr));
                }
                Command::ForwardingChanged(reply) => {
                    let _ = reply.send(table.forwarding_changed());
                }
                Command::List(reply) => {
                    let _ = reply.send(table.list());
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
        assert_eq!(t.list().expect("list").len(), 2);
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
        let list = t.list().expect("list");
        assert_eq!(list[0].spec.name.as_deref(), Some("ssh"));
        assert_eq!(list[0].stats.packets_in, 5);
        assert_eq!(
            list[1].stats,
            ShareStats::default(),
            "new share, fresh counters"
        );
    }
}
