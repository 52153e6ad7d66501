//! The exposed hosts ("DMZ"): the owner gives one LAN host per address family what the
//! internet sends that no share claims. Kept with the owner's settings (over the config
//! file's `exposed_host` and `exposed_host6`); the kernel follows in the same transaction,
//! and not while the WAN link is down.

use std::net::IpAddr;

use super::{Table, TableError};
use crate::{
    events::{EventKind, NewEvent},
    policy::ExposedHosts,
};

impl Table {
    /// The exposed hosts in force.
    #[must_use]
    pub fn exposed_hosts(&self) -> ExposedHosts {
        self.effective.exposed
    }

    /// Makes `addr` the exposed host of its address family (replacing the one there was).
    pub fn set_exposed_host(&mut self, addr: IpAddr) -> Result<ExposedHosts, TableError> {
        let on_lan = match addr {
            IpAddr::V4(a) => self.shares.lan().iter().any(|s| s.has_host(a)),
            IpAddr::V6(a) => self.pinholes.on_lan(a),
        };
        if !on_lan {
            return Err(TableError::NotExposable(addr));
        }
        let mut hosts = self.effective.exposed;
        let was = match addr {
            IpAddr::V4(a) => hosts.v4.replace(a).map(IpAddr::V4),
            IpAddr::V6(a) => hosts.v6.replace(a).map(IpAddr::V6),
        };
        self.change_exposed(hosts, |t| {
            let detail = match was {
                Some(was) if was != addr => format!("{addr} (was {was}) gets what no share claims"),
                _ => format!("{addr} gets what no share claims"),
            };
            t.log(NewEvent::new(EventKind::ExposedHostSet, "api", detail));
        })
    }

    /// Clears the exposed host `addr`, or both with `None`.
    pub fn clear_exposed_host(&mut self, addr: Option<IpAddr>) -> Result<ExposedHosts, TableError> {
        let mut hosts = self.effective.exposed;
        let gone: Vec<IpAddr> = match addr {
            None => hosts
                .v4
                .take()
                .map(IpAddr::V4)
                .into_iter()
                .chain(hosts.v6.take().map(IpAddr::V6))
                .collect(),
            Some(IpAddr::V4(a)) if hosts.v4 == Some(a) => {
                hosts.v4 = None;
                vec![IpAddr::V4(a)]
            }
            Some(IpAddr::V6(a)) if hosts.v6 == Some(a) => {
                hosts.v6 = None;
                vec![IpAddr::V6(a)]
            }
            Some(other) => return Err(TableError::NoSuchExposedHost(other)),
        };
        self.change_exposed(hosts, |t| {
            for addr in gone {
                t.log(NewEvent::new(
                    EventKind::ExposedHostCleared,
                    "api",
                    format!("{addr} is no longer the exposed host"),
                ));
            }
        })
    }

    fn change_exposed(
        &mut self,
        hosts: ExposedHosts,
        log: impl FnOnce(&mut Self),
    ) -> Result<ExposedHosts, TableError> {
        self.transact(|t| {
            if t.effective.exposed != hosts {
                let mut overlay = t.overlay.clone();
                overlay.exposed = Some(hosts);
                t.set_overlay(overlay);
                log(t);
            }
            Ok(t.effective.exposed)
        })
    }
}
