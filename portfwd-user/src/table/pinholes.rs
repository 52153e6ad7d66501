//! IPv6 pinholes in the table: the owner's, and those LAN clients open over UPnP
//! (WANIPv6FirewallControl) and PCP, each with its lease and UPnP `UniqueID`.

use std::{fmt::Write as _, time::Duration};

use super::{By, Table, TableError, view::PinholeView};
use crate::{
    events::{EventKind, NewEvent},
    pinhole::{Pinhole, PinholeError, PinholeId, PinholeSpec},
    share::Origin,
};

/// What events add after a pinhole's id: its remote restriction, name and client.
pub(super) fn suffix(pinhole: &Pinhole) -> String {
    let mut text = suffix_spec(&pinhole.spec);
    if let Some(owner) = pinhole.origin.owner() {
        let _ = write!(text, " for {owner}");
    }
    text
}

/// What events add after a pinhole's id: its remote restriction and name.
fn suffix_spec(spec: &PinholeSpec) -> String {
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

impl Table {
    /// Opens pinhole `spec` for the owner (no lease); one already open is an error.
    pub fn open_pinhole(&mut self, spec: PinholeSpec) -> Result<PinholeView, TableError> {
        self.transact(|t| t.open_pinhole_in(spec, Origin::Api, None, None, false))
    }

    /// Opens or renews `spec` for `origin` with `lease`: one the same origin opened with the
    /// same remote restriction gets the new lease (UPnP `AddPinhole`/`UpdatePinhole`, a PCP
    /// renewal); one anybody else opened is [`TableError::PinholeNotOwner`]. With `quota`, a
    /// new client pinhole counts against the quotas in force. `uid`: the UPnP id to keep (a
    /// restored pinhole).
    pub(super) fn open_pinhole_in(
        &mut self,
        spec: PinholeSpec,
        origin: Origin,
        lease: Option<Duration>,
        uid: Option<u16>,
        quota: bool,
    ) -> Result<PinholeView, TableError> {
        let id = spec.id;
        let expires = lease.map(|lease| self.now + lease);
        match (self.pinholes.get(&id).cloned(), origin.owner()) {
            (Some(open), Some(_)) if open.origin == origin && open.spec.remote == spec.remote => {
                self.set_pinhole(id, Some(Pinhole { expires, ..open }));
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
                if let Some(owner) = owner
                    && quota
                {
                    self.check_quota(owner)?;
                }
                let mut detail = format!("IPv6 pinhole {id}{}", suffix_spec(&spec));
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
                if let Some(open) = self.pinholes.get(&id).cloned() {
                    self.pinholes.insert(Pinhole { expires, ..open });
                }
                self.touched_pinhole(id, None);
                self.kernel.maps_mut().reset_pinhole_stats(slot)?;
                self.log(
                    NewEvent::new(EventKind::ShareCreated, origin.actor(), detail)
                        .notify_if(enabled),
                );
            }
        }
        self.pinhole_view(id)
    }

    /// Closes pinhole `id` on behalf of `by`.
    pub fn close_pinhole(&mut self, id: PinholeId, by: By) -> Result<Pinhole, TableError> {
        self.transact(|t| {
            let pinhole = t.pinholes.get(&id).ok_or(TableError::NoSuchPinhole(id))?;
            if !by.may_remove(pinhole.origin) {
                return Err(TableError::PinholeNotOwner(id, by));
            }
            let pinhole = t
                .set_pinhole(id, None)
                .ok_or(TableError::NoSuchPinhole(id))?;
            t.log(NewEvent::new(
                EventKind::ShareDeleted,
                by.source(),
                format!("IPv6 pinhole {id}{}", suffix(&pinhole)),
            ));
            Ok(pinhole)
        })
    }

    /// Closes what a PCP client over IPv6 asks to close: its pinholes (`origin`'s client) to
    /// `internal` of `proto` (`None`: any) and `port` (0: all). One made with another nonce
    /// is refused when named and skipped when all go; closing what is not there succeeds.
    pub fn release_pinholes(
        &mut self,
        origin: Origin,
        internal: std::net::Ipv6Addr,
        proto: Option<crate::share::Proto>,
        port: u16,
    ) -> Result<usize, TableError> {
        self.transact(|t| {
            let mine: Vec<Pinhole> = t
                .pinholes
                .iter()
                .filter(|p| {
                    p.origin.owner() == origin.owner()
                        && p.spec.id.addr == internal
                        && proto.is_none_or(|proto| proto == p.spec.id.proto)
                        && (port == 0 || p.spec.id.port == port)
                })
                .cloned()
                .collect();
            let mut closed = 0;
            for pinhole in mine {
                let id = pinhole.spec.id;
                if pinhole.origin != origin {
                    if port == 0 {
                        continue;
                    }
                    return Err(TableError::PinholeNotOwner(id, By::Client(origin)));
                }
                if let Some(gone) = t.set_pinhole(id, None) {
                    closed += 1;
                    t.log(NewEvent::new(
                        EventKind::ShareDeleted,
                        origin.actor(),
                        format!("IPv6 pinhole {id}{}", suffix(&gone)),
                    ));
                }
            }
            Ok(closed)
        })
    }

    /// Switches pinhole `id` on or off (the owner's).
    pub fn switch_pinhole(
        &mut self,
        id: PinholeId,
        enabled: bool,
    ) -> Result<PinholeView, TableError> {
        self.transact(|t| {
            let open = t
                .pinholes
                .get(&id)
                .cloned()
                .ok_or(TableError::NoSuchPinhole(id))?;
            if open.spec.enabled != enabled {
                let kind = if enabled {
                    EventKind::ShareEnabled
                } else {
                    EventKind::ShareDisabled
                };
                let mut pinhole = open;
                pinhole.spec.enabled = enabled;
                t.set_pinhole(id, Some(pinhole));
                t.log(NewEvent::new(kind, "api", format!("IPv6 pinhole {id}")).notify_if(enabled));
            }
            t.pinhole_view(id)
        })
    }

    /// The pinholes with their counters and leases.
    pub fn pinholes(&self) -> Result<Vec<PinholeView>, TableError> {
        self.snapshot()
            .pinhole_views(self.kernel.maps().reader().as_ref(), self.now)
    }

    /// Whether inbound IPv6 TCP connection attempts to LAN hosts without a pinhole are
    /// dropped in XDP (`true`) or handed to the kernel.
    pub fn set_ipv6_deny(&mut self, deny: bool) -> Result<(), TableError> {
        let mut config = self.kernel.config;
        if deny {
            config.flags |= portfwd_common::CONFIG_F_IPV6_DENY;
        } else {
            config.flags &= !portfwd_common::CONFIG_F_IPV6_DENY;
        }
        Ok(self.kernel.set_config(config)?)
    }

    pub(super) fn pinhole_view(&self, id: PinholeId) -> Result<PinholeView, TableError> {
        let pinhole = self
            .pinholes
            .get(&id)
            .ok_or(TableError::NoSuchPinhole(id))?;
        Ok(PinholeView {
            pinhole: pinhole.clone(),
            active: self.link.up && pinhole.spec.enabled,
            stats: self.kernel.maps().pinhole_stats(pinhole.slot)?,
            expires_in: pinhole
                .expires
                .map(|deadline| deadline.saturating_duration_since(self.now)),
        })
    }
}
