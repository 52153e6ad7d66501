//! WANIPv6FirewallControl:1: LAN clients open IPv6 pinholes themselves.
//!
//! Over IPv6 nothing is translated: a pinhole lets the internet reach a LAN host's own address
//! and port (see [`crate::pinhole`]). The control point answers over IPv4 like the rest of the
//! IGD, so the client asking and the `InternalClient` it names are tied together by device:
//!
//! - The firewall is the data plane's IPv6 default-deny (`[ipv6] inbound = "deny"`). Without
//!   it every inbound packet reaches the LAN already: `GetFirewallStatus` says
//!   `FirewallEnabled = 0` and the pinhole actions answer 702 (`FirewallDisabled`), as the
//!   spec asks.
//! - UPnP's own switch off: 703 (`InboundPinholeNotAllowed`); a device without the owner's
//!   permission to share ports: 606.
//! - Secure mode: `InternalClient` must be an address of the asking device, i.e. the IPv6
//!   neighbour table gives it the MAC the IPv4 one gives the client (606 otherwise, also when
//!   the box has not seen that address yet). The port rules apply to the pinhole's port as
//!   to a mapping's external and internal port, so the default rules keep clients above
//!   port 1024 (the spec's recommendation for unauthenticated control points).
//! - Leases are 1 to 86400 s (402 outside), capped by `[upnp] max_lease`; adding a pinhole
//!   the client already has (same remote, port, client, protocol) renews it and returns its
//!   `UniqueID`. A client's pinholes count against its quota with its shares (701 beyond).
//! - Hostnames for `RemoteHost` are not resolved (402): the box does no DNS for clients.
//! - `GetOutboundPinholeTimeout`: the data plane keeps no state for outbound IPv6 (TCP
//!   replies carry ACK and are let in; UDP is not filtered), so outbound "pinholes" do not
//!   time out: it answers the largest ui4.
//! - `CheckPinholeWorking` is 709 (`NoPacketSent`) until a packet has come in through it.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::{
    Fault,
    control::{Args, Control, Outputs, invalid},
};
use crate::{
    pinhole::{PinholeError, PinholeId, PinholeSpec},
    policy::Refusal,
    share::{Origin, Proto},
    table::{Mechanism, PinholeAsk, PinholeView, TableError},
};

/// The longest pinhole lease the spec allows (and the box grants), in seconds.
const MAX_LEASE: u32 = 86_400;

/// The `Protocol` value for "any protocol".
const ANY_PROTOCOL: u16 = 65_535;

/// The fault a refused pinhole change is: the one translation of [`TableError`] for
/// WANIPv6FirewallControl.
fn pinhole_fault(err: &TableError) -> Fault {
    let code = match err {
        TableError::Refused(Refusal::Disabled) => Fault::INBOUND_PINHOLE_NOT_ALLOWED,
        TableError::Refused(
            Refusal::PcpDisabled
            | Refusal::Device(_)
            | Refusal::NotSelf { .. }
            | Refusal::NotSelf6 { .. }
            | Refusal::Rule { .. },
        )
        | TableError::PinholeNotOwner(..)
        | TableError::NotOwner(..)
        | TableError::Static(_) => Fault::NOT_AUTHORIZED,
        TableError::Pinhole { source, .. } => match source {
            PinholeError::Full { .. } => Fault::PINHOLE_SPACE_EXHAUSTED,
            PinholeError::NotOnLan { .. } => Fault::INVALID_ARGS,
            PinholeError::Duplicate(_) => Fault::NOT_AUTHORIZED,
        },
        TableError::Quota { .. } => Fault::PINHOLE_SPACE_EXHAUSTED,
        TableError::NoSuchPinhole(_) | TableError::NoSuchShare(_) => Fault::NO_SUCH_PINHOLE,
        // IPv4 share errors and the owner's exposed host cannot come of a pinhole action.
        TableError::BoxListens { .. }
        | TableError::NotExposable(_)
        | TableError::NoSuchExposedHost(_)
        | TableError::Share { .. }
        | TableError::Conflict { .. }
        | TableError::NoFreePort { .. }
        | TableError::Dataplane(_)
        | TableError::Store(_)
        | TableError::Stopped => Fault::ACTION_FAILED,
    };
    Fault::new(code, crate::error_chain(err))
}

fn boolean(value: bool) -> String {
    u8::from(value).to_string()
}

impl Args<'_> {
    /// An IPv6 address argument; empty, `*` (or absent, for `RemoteHost`) is a wildcard.
    fn ipv6(&self, name: &str) -> Result<Option<Ipv6Addr>, Fault> {
        match self.0.arg(name).map(str::trim) {
            None | Some("" | "*") => Ok(None),
            Some(text) => match text.parse::<Ipv6Addr>() {
                Ok(addr) if addr.is_unspecified() => Ok(None),
                Ok(addr) => Ok(Some(addr)),
                Err(_) => Err(invalid(format!(
                    "{name} `{text}` is not an IPv6 address (host names are not resolved)"
                ))),
            },
        }
    }

    /// `Protocol`: the IANA number; 65535 (any) is 707, anything but TCP and UDP 705.
    fn protocol(&self) -> Result<Proto, Fault> {
        match self.number::<u16>("Protocol")? {
            6 => Ok(Proto::Tcp),
            17 => Ok(Proto::Udp),
            ANY_PROTOCOL => Err(Fault::new(
                Fault::PROTOCOL_WILDCARD,
                "pinholes are for TCP or UDP, not every protocol",
            )),
            other => Err(Fault::new(
                Fault::PROTOCOL_NOT_SUPPORTED,
                format!("protocol {other} is not TCP (6) or UDP (17)"),
            )),
        }
    }

    /// A lease time argument: 1 to 86400 s.
    fn lease_time(&self, name: &str) -> Result<u32, Fault> {
        let lease: u32 = self.number(name)?;
        if (1..=MAX_LEASE).contains(&lease) {
            Ok(lease)
        } else {
            Err(invalid(format!(
                "{name} {lease} is outside 1 to {MAX_LEASE} s"
            )))
        }
    }

    fn unique_id(&self) -> Result<u16, Fault> {
        self.number("UniqueID")
    }
}

impl Control {
    pub(super) async fn firewall6(
        &self,
        action: &str,
        client: Ipv4Addr,
        args: &Args<'_>,
    ) -> Result<Outputs, Fault> {
        match action {
            "GetFirewallStatus" => Ok(vec![
                ("FirewallEnabled", boolean(self.firewall6)),
                (
                    "InboundPinholeAllowed",
                    boolean(self.firewall6 && self.may_open(client).is_ok()),
                ),
            ]),
            "GetOutboundPinholeTimeout" => {
                self.firewall_on()?;
                args.ipv6("RemoteHost")?;
                args.number::<u16>("RemotePort")?;
                args.ipv6("InternalClient")?;
                args.number::<u16>("InternalPort")?;
                args.protocol()?;
                Ok(vec![("OutboundPinholeTimeout", u32::MAX.to_string())])
            }
            "AddPinhole" => self.add_pinhole(client, args).await,
            "UpdatePinhole" => {
                self.firewall_on()?;
                self.may_open(client)?;
                let uid = args.unique_id()?;
                let lease = args.lease_time("NewLeaseTime")?;
                let view = self.mine(client, uid)?;
                if view.pinhole.origin != (Origin::Upnp { client }) {
                    return Err(Fault::new(
                        Fault::NOT_AUTHORIZED,
                        format!("pinhole {uid} was not opened by {client} over UPnP"),
                    ));
                }
                self.lease_pinhole(client, view.pinhole.spec, lease).await?;
                Ok(Vec::new())
            }
            "DeletePinhole" => {
                self.firewall_on()?;
                self.may_open(client)?;
                let view = self.mine(client, args.unique_id()?)?;
                let id = view.pinhole.spec.id;
                self.table
                    .change(move |t| {
                        t.may_change(Mechanism::Upnp { v2: true }, client)?;
                        t.close_pinhole(id, t.client_by(Origin::Upnp { client }, true))
                    })
                    .await
                    .map_err(|e| pinhole_fault(&e))?;
                Ok(Vec::new())
            }
            "GetPinholePackets" => {
                self.firewall_on()?;
                let view = self.mine(client, args.unique_id()?)?;
                // A ui4: it wraps, as the spec's 32-bit counter does.
                let packets = view.stats.packets_in & u64::from(u32::MAX);
                Ok(vec![("PinholePackets", packets.to_string())])
            }
            "CheckPinholeWorking" => {
                self.firewall_on()?;
                let uid = args.unique_id()?;
                let view = self.mine(client, uid)?;
                if view.stats.packets_in == 0 {
                    return Err(Fault::new(
                        Fault::NO_PACKET_SENT,
                        format!("nothing has come in through pinhole {uid} yet"),
                    ));
                }
                Ok(vec![("IsWorking", boolean(view.active))])
            }
            other => Err(Fault::new(
                Fault::INVALID_ACTION,
                format!("no action {other}"),
            )),
        }
    }

    fn firewall_on(&self) -> Result<(), Fault> {
        if self.firewall6 {
            Ok(())
        } else {
            Err(Fault::new(
                Fault::FIREWALL_DISABLED,
                "inbound IPv6 is not filtered ([ipv6] inbound = \"pass\"): no pinhole is needed",
            ))
        }
    }

    /// May `client` open pinholes at all, as the settings are now: UPnP on (703), the device
    /// allowed (606). The owner checks again when it changes anything.
    fn may_open(&self, client: Ipv4Addr) -> Result<(), Fault> {
        self.settings()
            .check_client(client, self.host.mac_of(client))
            .map_err(|refusal| pinhole_fault(&TableError::Refused(refusal)))
    }

    /// The pinhole with `UniqueID` `uid`, if `client` may look at and change it: one it
    /// opened, or (secure mode off) any client's; never the owner's.
    fn mine(&self, client: Ipv4Addr, uid: u16) -> Result<PinholeView, Fault> {
        let snapshot = self.table.snapshot();
        let view = snapshot
            .pinhole_by_uid(uid, self.table.reader(), crate::table::now())
            .map_err(|e| pinhole_fault(&e))?
            .ok_or_else(|| Fault::new(Fault::NO_SUCH_PINHOLE, format!("no pinhole {uid}")))?;
        let owner = view.pinhole.origin.owner();
        let allowed = if snapshot.settings.secure_mode {
            owner == Some(IpAddr::V4(client))
        } else {
            owner.is_some()
        };
        if allowed {
            Ok(view)
        } else {
            Err(Fault::new(
                Fault::NOT_AUTHORIZED,
                format!("pinhole {uid} is not {client}'s"),
            ))
        }
    }

    async fn add_pinhole(&self, client: Ipv4Addr, args: &Args<'_>) -> Result<Outputs, Fault> {
        self.firewall_on()?;
        self.may_open(client)?;
        let remote = args.ipv6("RemoteHost")?;
        let remote_port: u16 = args.number("RemotePort")?;
        let Some(internal) = args.ipv6("InternalClient")? else {
            return Err(Fault::new(
                Fault::WILDCARD_SOURCE,
                "InternalClient must name one LAN host",
            ));
        };
        let port: u16 = args.number("InternalPort")?;
        if port == 0 {
            return Err(Fault::new(
                Fault::INTERNAL_PORT_WILDCARD,
                "InternalPort must name one port",
            ));
        }
        let proto = args.protocol()?;
        let lease = args.lease_time("LeaseTime")?;
        self.learn6(internal).await;
        let spec = PinholeSpec {
            id: PinholeId {
                proto,
                addr: internal,
                port,
            },
            remote,
            remote_port: (remote_port != 0).then_some(remote_port),
            name: None,
            enabled: true,
        };
        let view = self.lease_pinhole(client, spec, lease).await?;
        Ok(vec![("UniqueID", view.pinhole.uid.to_string())])
    }

    /// In secure mode the owner ties a pinhole's address to the asking device by MAC. A device
    /// the box has not heard from over IPv6 yet has no neighbour entry: the box solicits one
    /// and waits for the answer, up to a second, so a device's first request succeeds.
    async fn learn6(&self, internal: Ipv6Addr) {
        if !self.settings().secure_mode || self.host.mac_of6(internal).is_some() {
            return;
        }
        self.host.probe6(internal);
        for _ in 0..10 {
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            if self.host.mac_of6(internal).is_some() {
                return;
            }
        }
    }

    /// Opens or renews `spec` for `client`: the owner admits it (switch, device, secure mode,
    /// rules, quota) with its own settings.
    async fn lease_pinhole(
        &self,
        client: Ipv4Addr,
        spec: PinholeSpec,
        lease: u32,
    ) -> Result<PinholeView, Fault> {
        self.table
            .change(move |t| {
                t.admit_pinhole(PinholeAsk {
                    spec,
                    origin: Origin::Upnp { client },
                    mechanism: Mechanism::Upnp { v2: true },
                    lease,
                })
            })
            .await
            .map_err(|e| pinhole_fault(&e))
    }
}

#[cfg(test)]
mod tests {
    use std::{sync::Arc, time::Instant};

    use super::*;
    use crate::{
        host::{Host, WanStats},
        policy::UpnpConfig,
        upnp::{Service, soap::Request},
    };

    const ME: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 10);
    const OTHER: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 11);
    const MY_MAC: [u8; 6] = [2, 0, 0, 0, 0, 0x10];
    const MY6: &str = "2001:db8:77::10";
    const OTHER6: &str = "2001:db8:77::11";

    struct Lan;

    impl Host for Lan {
        fn neighbours(&self) -> Vec<(Ipv4Addr, [u8; 6])> {
            vec![(ME, MY_MAC), (OTHER, [2, 0, 0, 0, 0, 0x11])]
        }
        fn neighbours6(&self) -> Vec<(Ipv6Addr, [u8; 6])> {
            vec![
                (MY6.parse().expect("addr"), MY_MAC),
                (OTHER6.parse().expect("addr"), [2, 0, 0, 0, 0, 0x11]),
            ]
        }
        fn listening(&self, _: Proto) -> Vec<(Option<Ipv4Addr>, u16)> {
            Vec::new()
        }
        fn wan_up(&self) -> bool {
            true
        }
        fn wan_stats(&self) -> WanStats {
            WanStats::default()
        }
    }

    fn control(config: &str, firewall6: bool) -> Control {
        let settings = toml::from_str::<UpnpConfig>(config)
            .expect("toml")
            .compile()
            .expect("settings");
        Control {
            table: crate::table::testing(settings, Arc::new(Lan), &[]),
            metrics: Arc::default(),
            host: Arc::new(Lan),
            started: Instant::now(),
            firewall6,
        }
    }

    async fn call(
        c: &Control,
        client: Ipv4Addr,
        action: &str,
        args: &[(&str, &str)],
    ) -> Result<Outputs, u16> {
        let request = Request {
            service: Service::Firewall6.urn(1),
            action: action.into(),
            args: args
                .iter()
                .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
                .collect(),
        };
        c.handle(Service::Firewall6, client, &request)
            .await
            .map_err(|f| f.code)
    }

    async fn add(
        c: &Control,
        client: Ipv4Addr,
        internal: &str,
        port: &str,
        proto: &str,
        lease: &str,
    ) -> Result<Outputs, u16> {
        call(
            c,
            client,
            "AddPinhole",
            &[
                ("RemoteHost", ""),
                ("RemotePort", "0"),
                ("InternalClient", internal),
                ("InternalPort", port),
                ("Protocol", proto),
                ("LeaseTime", lease),
            ],
        )
        .await
    }

    fn uid(out: &Outputs) -> String {
        out.iter()
            .find(|(n, _)| *n == "UniqueID")
            .expect("UniqueID")
            .1
            .clone()
    }

    #[tokio::test]
    async fn without_the_ipv6_firewall_there_is_nothing_to_open() {
        let c = control("", false);
        let status = call(&c, ME, "GetFirewallStatus", &[])
            .await
            .expect("status");
        assert_eq!(
            status,
            [
                ("FirewallEnabled", "0".to_owned()),
                ("InboundPinholeAllowed", "0".to_owned())
            ]
        );
        assert_eq!(add(&c, ME, MY6, "8443", "6", "60").await, Err(702));
    }

    #[tokio::test]
    async fn a_client_opens_renews_reads_and_closes_its_own_pinhole() {
        let c = control("", true);
        let status = call(&c, ME, "GetFirewallStatus", &[])
            .await
            .expect("status");
        assert_eq!(status[1], ("InboundPinholeAllowed", "1".to_owned()));
        let first = add(&c, ME, MY6, "8443", "6", "3600").await.expect("add");
        let id = uid(&first);
        let again = add(&c, ME, MY6, "8443", "6", "60").await.expect("renew");
        assert_eq!(uid(&again), id, "the same pinhole, renewed");
        let listed = c.table.pinholes().expect("list");
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].pinhole.origin, Origin::Upnp { client: ME });
        assert!(
            listed[0]
                .expires_in
                .is_some_and(|left| left.as_secs() <= 60)
        );

        let by_id = [("UniqueID", id.as_str())];
        let packets = call(&c, ME, "GetPinholePackets", &by_id).await;
        assert_eq!(packets, Ok(vec![("PinholePackets", "0".to_owned())]));
        assert_eq!(call(&c, ME, "CheckPinholeWorking", &by_id).await, Err(709));

        // Another device can neither read, renew nor delete it.
        let update = [("UniqueID", id.as_str()), ("NewLeaseTime", "600")];
        assert_eq!(call(&c, OTHER, "GetPinholePackets", &by_id).await, Err(606));
        assert_eq!(call(&c, OTHER, "UpdatePinhole", &update).await, Err(606));
        assert_eq!(call(&c, OTHER, "DeletePinhole", &by_id).await, Err(606));

        call(&c, ME, "UpdatePinhole", &update)
            .await
            .expect("update");
        let left = c.table.pinholes().expect("list")[0].expires_in;
        assert!(left.is_some_and(|left| left.as_secs() > 60), "{left:?}");
        call(&c, ME, "DeletePinhole", &by_id).await.expect("delete");
        assert!(c.table.pinholes().expect("list").is_empty());
        assert_eq!(call(&c, ME, "DeletePinhole", &by_id).await, Err(704));
        assert_eq!(call(&c, ME, "UpdatePinhole", &update).await, Err(704));
    }

    #[tokio::test]
    async fn bad_requests_get_the_specs_error_codes() {
        let c = control("", true);
        assert_eq!(add(&c, ME, "", "8443", "6", "60").await, Err(708));
        assert_eq!(add(&c, ME, "*", "8443", "6", "60").await, Err(708));
        assert_eq!(add(&c, ME, MY6, "0", "6", "60").await, Err(706));
        assert_eq!(add(&c, ME, MY6, "8443", "65535", "60").await, Err(707));
        assert_eq!(add(&c, ME, MY6, "8443", "1", "60").await, Err(705));
        assert_eq!(add(&c, ME, MY6, "8443", "TCP", "60").await, Err(402));
        assert_eq!(add(&c, ME, MY6, "8443", "6", "0").await, Err(402));
        assert_eq!(add(&c, ME, MY6, "8443", "6", "86401").await, Err(402));
        assert_eq!(add(&c, ME, "10.0.0.10", "8443", "6", "60").await, Err(402));
        // Not a host of the LAN's prefix: secure mode finds no such device (606); without it
        // the table refuses it (402).
        assert_eq!(
            add(&c, ME, "2001:db8:99::10", "8443", "6", "60").await,
            Err(606)
        );
        let open = control("secure_mode = false", true);
        assert_eq!(
            add(&open, ME, "2001:db8:99::10", "8443", "6", "60").await,
            Err(402)
        );
        let remote = call(
            &c,
            ME,
            "AddPinhole",
            &[
                ("RemoteHost", "peer.example"),
                ("RemotePort", "0"),
                ("InternalClient", MY6),
                ("InternalPort", "8443"),
                ("Protocol", "6"),
                ("LeaseTime", "60"),
            ],
        )
        .await;
        assert_eq!(remote, Err(402));
        assert_eq!(
            call(
                &c,
                ME,
                "UpdatePinhole",
                &[("UniqueID", "70000"), ("NewLeaseTime", "5")]
            )
            .await,
            Err(402)
        );
        assert!(c.table.pinholes().expect("list").is_empty());
    }

    #[tokio::test]
    async fn policy_secure_mode_rules_and_quota_hold_for_pinholes() {
        let c = control("quota_per_client = 1", true);
        // Another device's address, and a port below 1024 (the default rules).
        assert_eq!(add(&c, ME, OTHER6, "8443", "6", "60").await, Err(606));
        assert_eq!(add(&c, ME, MY6, "80", "6", "60").await, Err(606));
        add(&c, ME, MY6, "8443", "6", "60").await.expect("first");
        assert_eq!(add(&c, ME, MY6, "3478", "17", "60").await, Err(701));
        // Another client cannot take over the same endpoint either.
        let open = control("secure_mode = false", true);
        add(&open, ME, MY6, "8443", "6", "60").await.expect("mine");
        assert_eq!(add(&open, OTHER, MY6, "8443", "6", "60").await, Err(606));
        // UPnP switched off: 703; a device the owner has not allowed: 606.
        let off = control("enabled = false", true);
        assert_eq!(add(&off, ME, MY6, "8443", "6", "60").await, Err(703));
        let listed = control("devices = [\"10.0.0.11\"]", true);
        assert_eq!(add(&listed, ME, MY6, "8443", "6", "60").await, Err(606));
    }
}
