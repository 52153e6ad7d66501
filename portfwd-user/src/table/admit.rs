//! Admission: may this LAN client have this port? One protocol-neutral step, decided in the
//! table's owner against its own current settings, so a permission revoked or a quota
//! lowered while a request is in flight applies to that request.
//!
//! The order is the order a request meets a home router's rules: the mechanism's switch
//! (UPnP, or NAT-PMP/PCP), the device's permission to share ports independently (by address,
//! subnet or MAC), a renewal of what the client already holds, secure mode (a client maps
//! only to itself), the port rules (first match wins), the box's own listening ports, the
//! table's own rules (static shares, other clients' shares, endpoints shared once), and the
//! quotas. Where the client leaves the port open (AddAnyPortMapping, NAT-PMP, PCP without
//! `PREFER_FAILURE`), the hunt takes the nearest port that passes all of them.

use std::{
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    time::Duration,
};

use super::{Table, TableError, view::PinholeView};
use crate::{
    host::listens,
    pinhole::PinholeSpec,
    policy::{Refusal, Settings},
    share::{Origin, ShareSpec},
};

/// How a client asked: the switch that governs it and how its lease is reckoned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mechanism {
    /// UPnP IGD; `v2`: the client spoke IGD:2 (leases of 0 are a week, not forever).
    Upnp { v2: bool },
    /// NAT-PMP (RFC 6886).
    Natpmp,
    /// PCP (RFC 6887).
    Pcp,
}

/// Which external port will do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Hunt {
    /// The one asked for (AddPortMapping, PCP with `PREFER_FAILURE`).
    Exact,
    /// The one asked for if it is free, else the nearest one that is (0: the internal port
    /// first).
    Near,
}

/// A client's request for a share.
#[derive(Clone, Debug)]
pub struct Ask {
    /// Whose share it becomes ([`Origin::client`] is the client).
    pub origin: Origin,
    pub mechanism: Mechanism,
    /// The share; its external port is the one wanted (0: any, with [`Hunt::Near`]).
    pub spec: ShareSpec,
    pub hunt: Hunt,
    /// The lease asked for, in seconds (what 0 means depends on the mechanism).
    pub lease: u32,
}

/// A share granted: its external port and its lease.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Granted {
    pub port: u16,
    pub lease: Option<Duration>,
}

/// A client's request for an IPv6 pinhole.
#[derive(Clone, Debug)]
pub struct PinholeAsk {
    pub spec: PinholeSpec,
    /// [`Origin::Upnp`] (the control point's IPv4 address) or [`Origin::Pcp6`] (the host's
    /// own IPv6 address).
    pub origin: Origin,
    pub mechanism: Mechanism,
    /// Seconds asked for.
    pub lease: u32,
}

/// The ports nearest `port`: itself, then one above, one below, two above, and so on.
pub fn nearest(port: u16) -> impl Iterator<Item = u16> {
    let port = i32::from(port);
    (0..=i32::from(u16::MAX))
        .flat_map(move |d| {
            [port + d, port - d]
                .into_iter()
                .take(if d == 0 { 1 } else { 2 })
        })
        .filter_map(|p| u16::try_from(p).ok())
        .filter(|p| *p != 0)
}

impl Mechanism {
    /// The switch of this mechanism, as the settings have it.
    fn check_switch(self, settings: &Settings) -> Result<(), Refusal> {
        match self {
            Self::Upnp { .. } if !settings.enabled => Err(Refusal::Disabled),
            Self::Natpmp | Self::Pcp if !settings.pcp.enabled => Err(Refusal::PcpDisabled),
            _ => Ok(()),
        }
    }

    /// The lease a request for `secs` seconds gets under `settings`.
    fn lease(self, secs: u32, settings: &Settings) -> Option<Duration> {
        match self {
            Self::Upnp { v2 } => settings.lease(secs, v2),
            Self::Natpmp | Self::Pcp => {
                let pcp = &settings.pcp;
                let lease =
                    Duration::from_secs(u64::from(secs.clamp(pcp.min_lifetime, pcp.max_lifetime)));
                Some(settings.max_lease.map_or(lease, |cap| lease.min(cap)))
            }
        }
    }
}

impl Table {
    /// Admits `ask`, or says why not: see the module documentation for the order.
    pub fn admit(&mut self, ask: Ask) -> Result<Granted, TableError> {
        let settings = std::sync::Arc::clone(&self.effective);
        let Ask {
            origin,
            mechanism,
            mut spec,
            hunt,
            lease,
        } = ask;
        mechanism.check_switch(&settings)?;
        let Some(client) = origin.client() else {
            return Err(TableError::NotOwner(spec.id, super::By::Client(origin)));
        };
        settings.check_device(client, self.host.mac_of(client))?;
        let lease = mechanism.lease(lease, &settings);
        let (proto, internal) = (spec.id.proto, spec.internal);
        let same_client = |o: Origin| o.client() == Some(client) && o.source() == origin.source();
        // A share of this endpoint the client made over this protocol under another identity
        // (a PCP mapping's nonce) is not this request's to renew or move.
        if let Some(other) = self
            .shares
            .of_endpoint(proto, internal)
            .find(|s| same_client(s.origin) && s.origin != origin)
        {
            return Err(TableError::NotOwner(
                other.spec.id,
                super::By::Client(origin),
            ));
        }
        let renewable = hunt == Hunt::Near || !matches!(mechanism, Mechanism::Upnp { .. });
        let mine = self
            .shares
            .of_endpoint(proto, internal)
            .find(|s| same_client(s.origin) && s.spec.id.remote == spec.id.remote)
            .map(|mine| mine.spec.id.ext_port);
        if renewable
            && let Some(port) = mine
            && (hunt == Hunt::Near || port == spec.id.ext_port)
        {
            spec.id = spec.id.at(port);
            self.transact(|t| t.lease_in(spec, origin, lease, true))?;
            return Ok(Granted { port, lease });
        }
        if settings.secure_mode && *internal.ip() != client {
            return Err(Refusal::NotSelf {
                client,
                internal: *internal.ip(),
            }
            .into());
        }
        let external = self.external();
        let allowed = |p: u16| settings.check_mapping(client, p, *internal.ip(), internal.port());
        let port = match hunt {
            Hunt::Exact => {
                let port = spec.id.ext_port;
                allowed(port)?;
                if self.host.listens_on(proto, port, external) {
                    return Err(TableError::BoxListens { proto, port });
                }
                port
            }
            Hunt::Near => {
                let listening = self.host.listening(proto);
                let wanted = match spec.id.ext_port {
                    0 => internal.port(),
                    port => port,
                };
                let mut any_allowed = false;
                let free = nearest(wanted).find(|&p| {
                    if allowed(p).is_err() {
                        return false;
                    }
                    any_allowed = true;
                    !listens(&listening, p, external)
                        && self.shares.on_port(proto, p).next().is_none()
                });
                match free {
                    Some(port) => port,
                    None if any_allowed => {
                        return Err(TableError::NoFreePort {
                            port: wanted,
                            client,
                        });
                    }
                    None => {
                        return Err(allowed(wanted).err().map_or(
                            TableError::NoFreePort {
                                port: wanted,
                                client,
                            },
                            TableError::Refused,
                        ));
                    }
                }
            }
        };
        spec.id = spec.id.at(port);
        self.transact(|t| t.lease_in(spec, origin, lease, true))?;
        Ok(Granted { port, lease })
    }

    /// The IPv4 address and MAC of the device IPv6 address `addr` belongs to (the same MAC in
    /// both neighbour tables): per-device permissions are kept by IPv4 address.
    fn device_of6(&self, addr: Ipv6Addr) -> (Ipv4Addr, Option<[u8; 6]>) {
        let Some(mac) = self.host.mac_of6(addr) else {
            return (Ipv4Addr::UNSPECIFIED, None);
        };
        let twin = self
            .host
            .neighbours()
            .into_iter()
            .find_map(|(v4, m)| (m == mac).then_some(v4));
        (twin.unwrap_or(Ipv4Addr::UNSPECIFIED), Some(mac))
    }

    /// Admits a client's pinhole, or says why not: the switch, the device (by MAC for a host
    /// asking over IPv6), secure mode (a control point opens pinholes only to addresses of its
    /// own device; a host over PCP only to itself), the port rules on the pinhole's port, then
    /// the quotas as it opens.
    pub fn admit_pinhole(&mut self, ask: PinholeAsk) -> Result<PinholeView, TableError> {
        let settings = std::sync::Arc::clone(&self.effective);
        let PinholeAsk {
            spec,
            origin,
            mechanism,
            lease,
        } = ask;
        mechanism.check_switch(&settings)?;
        let internal = spec.id.addr;
        let device = match origin {
            Origin::Pcp6 { client, .. } => {
                let (device, mac) = self.device_of6(client);
                settings.check_device(device, mac)?;
                if settings.secure_mode && internal != client {
                    return Err(Refusal::NotSelf6 {
                        client: IpAddr::V6(client),
                        internal,
                    }
                    .into());
                }
                device
            }
            other => {
                let client = other.client().ok_or(TableError::PinholeNotOwner(
                    spec.id,
                    super::By::Client(origin),
                ))?;
                let mac = self.host.mac_of(client);
                settings.check_device(client, mac)?;
                if settings.secure_mode && (mac.is_none() || self.host.mac_of6(internal) != mac) {
                    return Err(Refusal::NotSelf6 {
                        client: IpAddr::V4(client),
                        internal,
                    }
                    .into());
                }
                client
            }
        };
        let port = spec.id.port;
        settings.check_mapping(device, port, device, port)?;
        let lease = mechanism.lease(lease, &settings);
        self.transact(|t| t.open_pinhole_in(spec, origin, lease, None, true))
    }
}

impl Table {
    /// May `client` change anything over `mechanism` at all: its switch, and its device's
    /// permission to share ports independently.
    pub fn may_change(&self, mechanism: Mechanism, client: Ipv4Addr) -> Result<(), TableError> {
        mechanism.check_switch(&self.effective)?;
        Ok(self
            .effective
            .check_device(client, self.host.mac_of(client))?)
    }

    /// On whose behalf `origin`'s client removes shares and pinholes: its own; any client's
    /// where secure mode is off and it asks to manage them.
    #[must_use]
    pub fn client_by(&self, origin: Origin, manage: bool) -> super::By {
        if self.effective.secure_mode || !manage {
            super::By::Client(origin)
        } else {
            super::By::AnyClient(origin)
        }
    }
}
