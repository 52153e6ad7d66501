//! WANIPConnection and WANCommonInterfaceConfig actions.
//!
//! Each action reads its arguments and asks the share table's owner, which decides with its own
//! current settings ([`crate::table`]'s admission); every refusal becomes one [`Fault`]
//! through [`table_fault`], so the same collision reads 729 to an IGD:2 client and 718 to an
//! IGD:1 client.
//!
//! What UPnP clients see of the table: the shares clients made (their own and, read-only,
//! others'). The owner's static shares are not listed; a request on their ports is a conflict.

use std::{fmt::Write as _, net::Ipv4Addr, sync::Arc, time::Instant};

use super::{Fault, Service, soap::Request};
use crate::{
    host::Host,
    policy::Settings,
    share::{Origin, Proto, ShareError, ShareId, ShareSpec},
    table::{Ask, Hunt, Mechanism, ShareEntry, TableError, TableHandle},
};

/// The control point: answers actions for LAN clients.
pub struct Control {
    pub table: TableHandle,
    pub metrics: Arc<crate::metrics::Metrics>,
    pub host: Arc<dyn Host>,
    pub started: Instant,
    /// Whether inbound IPv6 is default-deny (`[ipv6] inbound = "deny"`): the firewall
    /// WANIPv6FirewallControl opens pinholes in. Without it every inbound packet is let in
    /// already, and AddPinhole says so (702).
    pub firewall6: bool,
}

/// Output arguments of an action.
pub type Outputs = Vec<(&'static str, String)>;

/// The code for a collision with something other than a client's mapping (a static share, a
/// port the box listens on): IGD:2 has 729 (`ConflictWithOtherMechanisms`), IGD:1 only 718
/// (`ConflictInMappingEntry`).
fn other_mechanism(version: u8) -> u16 {
    if version >= 2 {
        Fault::CONFLICT_WITH_OTHER_MECHANISMS
    } else {
        Fault::CONFLICT_IN_MAPPING
    }
}

/// The fault a refused table change is for a client speaking IGD `version`: the one
/// translation of [`TableError`] for WANIPConnection.
#[must_use]
pub fn table_fault(err: &TableError, version: u8) -> Fault {
    let code = match err {
        TableError::Refused(_)
        | TableError::NotOwner(..)
        | TableError::PinholeNotOwner(..)
        | TableError::Static(_) => Fault::NOT_AUTHORIZED,
        TableError::BoxListens { .. }
        | TableError::Conflict {
            origin: Origin::Static | Origin::Api,
            ..
        } => other_mechanism(version),
        TableError::Conflict { .. } | TableError::Pinhole { .. } => Fault::CONFLICT_IN_MAPPING,
        TableError::Share { source, .. } => match source {
            ShareError::Duplicate(_)
            | ShareError::InternalInUse { .. }
            | ShareError::Overlap { .. } => Fault::CONFLICT_IN_MAPPING,
            ShareError::NotOnLan { .. } | ShareError::Spec(_) => Fault::INVALID_ARGS,
            ShareError::Full { .. } => Fault::NO_PORT_MAPS_AVAILABLE,
        },
        TableError::Quota { .. } | TableError::NoFreePort { .. } => Fault::NO_PORT_MAPS_AVAILABLE,
        TableError::NoSuchShare(_) | TableError::NoSuchPinhole(_) => Fault::NO_SUCH_ENTRY,
        // The owner's exposed host is no UPnP action's.
        TableError::NotExposable(_)
        | TableError::NoSuchExposedHost(_)
        | TableError::Dataplane(_)
        | TableError::Store(_)
        | TableError::Stopped => Fault::ACTION_FAILED,
    };
    Fault::new(code, crate::error_chain(err))
}

pub(super) fn invalid(detail: impl Into<String>) -> Fault {
    Fault::new(Fault::INVALID_ARGS, detail)
}

/// The arguments of a request, read with the types UPnP gives them.
pub(super) struct Args<'a>(pub(super) &'a Request);

impl Args<'_> {
    pub(super) fn text(&self, name: &str) -> Result<&str, Fault> {
        self.0
            .arg(name)
            .map(str::trim)
            .ok_or_else(|| invalid(format!("missing argument {name}")))
    }

    pub(super) fn number<T: std::str::FromStr>(&self, name: &str) -> Result<T, Fault> {
        let text = self.text(name)?;
        text.parse()
            .map_err(|_| invalid(format!("{name} `{text}` is not a number in range")))
    }

    fn port(&self, name: &str) -> Result<u16, Fault> {
        self.number(name)
    }

    /// `NewStartPort`..=`NewEndPort`; a start above the end is 733.
    fn port_range(&self) -> Result<std::ops::RangeInclusive<u16>, Fault> {
        let (start, end) = (self.port("NewStartPort")?, self.port("NewEndPort")?);
        if start > end {
            return Err(Fault::new(
                Fault::INCONSISTENT_PARAMETERS,
                format!("start port {start} is above end port {end}"),
            ));
        }
        Ok(start..=end)
    }

    fn proto(&self) -> Result<Proto, Fault> {
        let text = self.text("NewProtocol")?;
        text.parse()
            .map_err(|_| invalid(format!("NewProtocol `{text}` is not TCP or UDP")))
    }

    fn boolean(&self, name: &str) -> Result<bool, Fault> {
        match self.text(name)? {
            "1" | "true" | "yes" => Ok(true),
            "0" | "false" | "no" => Ok(false),
            other => Err(invalid(format!("{name} `{other}` is not a boolean"))),
        }
    }

    /// `NewRemoteHost`: empty (or absent from a sloppy client) is any remote host.
    fn remote(&self) -> Result<Option<Ipv4Addr>, Fault> {
        match self.0.arg("NewRemoteHost").map(str::trim) {
            None | Some("" | "*" | "0.0.0.0") => Ok(None),
            Some(text) => text
                .parse()
                .map(Some)
                .map_err(|_| invalid(format!("NewRemoteHost `{text}` is not an IPv4 address"))),
        }
    }

    fn internal_client(&self) -> Result<Ipv4Addr, Fault> {
        let text = self.text("NewInternalClient")?;
        text.parse()
            .map_err(|_| invalid(format!("NewInternalClient `{text}` is not an IPv4 address")))
    }
}

/// Descriptions are kept to this many characters.
const MAX_DESCRIPTION: usize = 256;

impl Control {
    /// The settings in force now.
    pub(super) fn settings(&self) -> Arc<Settings> {
        Arc::clone(&self.table.snapshot().settings)
    }

    /// Runs `request` for `client` on the service behind the control URL it was posted to.
    pub async fn handle(
        &self,
        endpoint: Service,
        client: Ipv4Addr,
        request: &Request,
    ) -> Result<Outputs, Fault> {
        let (service, version) = Service::parse(&request.service).ok_or_else(|| {
            Fault::new(
                Fault::INVALID_ACTION,
                format!("unknown service {}", request.service),
            )
        })?;
        if service != endpoint {
            return Err(Fault::new(
                Fault::INVALID_ACTION,
                format!("{} is not served at this control URL", request.service),
            ));
        }
        let args = Args(request);
        match (service, request.action.as_str()) {
            (Service::IpConnection, action) => {
                self.ip_connection(action, client, version, &args).await
            }
            (Service::CommonInterface, action) => self.common_interface(action),
            (Service::Firewall6, action) => self.firewall6(action, client, &args).await,
        }
    }

    async fn ip_connection(
        &self,
        action: &str,
        client: Ipv4Addr,
        version: u8,
        args: &Args<'_>,
    ) -> Result<Outputs, Fault> {
        let external = self.table.snapshot().external;
        match action {
            "GetExternalIPAddress" => Ok(vec![(
                "NewExternalIPAddress",
                external.map(|a| a.to_string()).unwrap_or_default(),
            )]),
            "GetStatusInfo" => {
                let connected = self.host.wan_up() && external.is_some();
                Ok(vec![
                    (
                        "NewConnectionStatus",
                        if connected {
                            "Connected"
                        } else {
                            "Disconnected"
                        }
                        .into(),
                    ),
                    ("NewLastConnectionError", "ERROR_NONE".into()),
                    ("NewUptime", self.started.elapsed().as_secs().to_string()),
                ])
            }
            "GetConnectionTypeInfo" => Ok(vec![
                ("NewConnectionType", "IP_Routed".into()),
                ("NewPossibleConnectionTypes", "IP_Routed".into()),
            ]),
            "GetNATRSIPStatus" => Ok(vec![
                ("NewRSIPAvailable", "0".into()),
                ("NewNATEnabled", "1".into()),
            ]),
            "SetConnectionType" => {
                args.text("NewConnectionType")?;
                Err(Fault::new(
                    Fault::READ_ONLY,
                    "the connection type is the box's configuration",
                ))
            }
            "RequestConnection" => {
                if self.host.wan_up() && external.is_some() {
                    Ok(Vec::new())
                } else {
                    Err(Fault::new(
                        Fault::ACTION_FAILED,
                        "the WAN link is down; the box manages it",
                    ))
                }
            }
            "ForceTermination" => Err(Fault::new(
                Fault::NOT_AUTHORIZED,
                "LAN clients may not take the internet connection down",
            )),
            "AddPortMapping" => self.add(client, version, args, Hunt::Exact).await,
            "AddAnyPortMapping" => self.add(client, version, args, Hunt::Near).await,
            "DeletePortMapping" => self.delete(client, args).await,
            "DeletePortMappingRange" => self.delete_range(client, args).await,
            "GetSpecificPortMappingEntry" => self.specific(args),
            "GetGenericPortMappingEntry" => self.generic(args),
            "GetListOfPortMappings" => self.list(client, args),
            other => Err(Fault::new(
                Fault::INVALID_ACTION,
                format!("no action {other}"),
            )),
        }
    }

    fn common_interface(&self, action: &str) -> Result<Outputs, Fault> {
        let stats = self.host.wan_stats();
        // The ui4 counters wrap, as the spec's 32-bit variables do on any busy link.
        let ui4 = |v: u64| (v & u64::from(u32::MAX)).to_string();
        // A rate does not wrap: a 10 Gbit/s link reads as the most a ui4 holds.
        let rate = stats.bit_rate.min(u64::from(u32::MAX)).to_string();
        match action {
            "GetCommonLinkProperties" => Ok(vec![
                ("NewWANAccessType", "Ethernet".into()),
                ("NewLayer1UpstreamMaxBitRate", rate.clone()),
                ("NewLayer1DownstreamMaxBitRate", rate),
                (
                    "NewPhysicalLinkStatus",
                    if self.host.wan_up() { "Up" } else { "Down" }.into(),
                ),
            ]),
            "GetTotalBytesSent" => Ok(vec![("NewTotalBytesSent", ui4(stats.tx_bytes))]),
            "GetTotalBytesReceived" => Ok(vec![("NewTotalBytesReceived", ui4(stats.rx_bytes))]),
            "GetTotalPacketsSent" => Ok(vec![("NewTotalPacketsSent", ui4(stats.tx_packets))]),
            "GetTotalPacketsReceived" => {
                Ok(vec![("NewTotalPacketsReceived", ui4(stats.rx_packets))])
            }
            other => Err(Fault::new(
                Fault::INVALID_ACTION,
                format!("no action {other}"),
            )),
        }
    }

    /// The shares UPnP clients see: those clients made over UPnP.
    pub(super) fn shares(&self) -> Vec<ShareEntry> {
        let now = crate::table::now();
        self.table
            .snapshot()
            .entries(now)
            .filter(|s| matches!(s.origin, Origin::Upnp { .. }))
            .collect()
    }

    /// The mapping AddPortMapping or AddAnyPortMapping asks for.
    fn ask(client: Ipv4Addr, version: u8, args: &Args<'_>, hunt: Hunt) -> Result<Ask, Fault> {
        let remote = args.remote()?;
        let ext_port = args.port("NewExternalPort")?;
        if ext_port == 0 && hunt == Hunt::Exact {
            return Err(Fault::new(
                Fault::WILDCARD_EXTERNAL_PORT,
                "external port 0 (any): use AddAnyPortMapping",
            ));
        }
        let proto = args.proto()?;
        let internal_port = args.port("NewInternalPort")?;
        if internal_port == 0 {
            return Err(invalid("NewInternalPort 0 is not a port"));
        }
        let internal = std::net::SocketAddrV4::new(args.internal_client()?, internal_port);
        let enabled = args.boolean("NewEnabled")?;
        let description: String = args
            .text("NewPortMappingDescription")
            .unwrap_or_default()
            .chars()
            .filter(|c| !c.is_control())
            .take(MAX_DESCRIPTION)
            .collect();
        let lease = args.number("NewLeaseDuration")?;
        Ok(Ask {
            origin: Origin::Upnp { client },
            mechanism: Mechanism::Upnp { v2: version >= 2 },
            spec: ShareSpec {
                id: ShareId::single(proto, ext_port, remote),
                internal,
                name: (!description.is_empty()).then_some(description),
                enabled,
                hairpin: true,
            },
            hunt,
            lease,
        })
    }

    /// AddPortMapping ([`Hunt::Exact`]) and AddAnyPortMapping ([`Hunt::Near`]: the requested
    /// port if it is free, else the nearest free port the rules allow; a client that already
    /// has this internal endpoint shared keeps its port, renewed). The table's owner decides.
    async fn add(
        &self,
        client: Ipv4Addr,
        version: u8,
        args: &Args<'_>,
        hunt: Hunt,
    ) -> Result<Outputs, Fault> {
        // A client that may not change anything hears that before anything about its
        // arguments.
        let ask = Self::ask(client, version, args, hunt);
        let mechanism = Mechanism::Upnp { v2: version >= 2 };
        let granted = self
            .table
            .change(move |t| {
                t.may_change(mechanism, client)?;
                match ask {
                    Ok(ask) => t.admit(ask).map(Ok),
                    Err(fault) => Ok(Err(fault)),
                }
            })
            .await
            .map_err(|e| match (hunt, table_fault(&e, version)) {
                (Hunt::Near, f)
                    if [
                        Fault::CONFLICT_IN_MAPPING,
                        Fault::CONFLICT_WITH_OTHER_MECHANISMS,
                    ]
                    .contains(&f.code) =>
                {
                    Fault::new(Fault::NO_PORT_MAPS_AVAILABLE, f.detail)
                }
                (_, f) => f,
            })??;
        Ok(match hunt {
            Hunt::Exact => Vec::new(),
            Hunt::Near => vec![("NewReservedPort", granted.port.to_string())],
        })
    }

    async fn delete(&self, client: Ipv4Addr, args: &Args<'_>) -> Result<Outputs, Fault> {
        let id = (|| {
            Ok::<_, Fault>(ShareId::single(
                args.proto()?,
                args.port("NewExternalPort")?,
                args.remote()?,
            ))
        })();
        self.table
            .change(move |t| {
                t.may_change(Mechanism::Upnp { v2: true }, client)?;
                match id {
                    Ok(id) => t
                        .remove(id, t.client_by(Origin::Upnp { client }, true))
                        .map(|_| Ok(())),
                    Err(fault) => Ok(Err(fault)),
                }
            })
            .await
            .map_err(|e| table_fault(&e, 2))??;
        Ok(Vec::new())
    }

    async fn delete_range(&self, client: Ipv4Addr, args: &Args<'_>) -> Result<Outputs, Fault> {
        let parsed = (|| {
            Ok::<_, Fault>((
                args.port_range()?,
                args.proto()?,
                args.boolean("NewManage")?,
            ))
        })();
        let (ports, proto) = match &parsed {
            Ok((ports, proto, _)) => (ports.clone(), *proto),
            Err(_) => (1..=1, Proto::Tcp),
        };
        let removed = self
            .table
            .change(move |t| {
                t.may_change(Mechanism::Upnp { v2: true }, client)?;
                match parsed {
                    Ok((ports, proto, manage)) => {
                        let by = t.client_by(Origin::Upnp { client }, manage);
                        t.remove_range(proto, ports, by).map(|gone| Ok(gone.len()))
                    }
                    Err(fault) => Ok(Err(fault)),
                }
            })
            .await
            .map_err(|e| table_fault(&e, 2))??;
        if removed == 0 {
            return Err(Fault::new(
                Fault::PORT_MAPPING_NOT_FOUND,
                format!(
                    "no {proto} share of {client}'s in {}-{}",
                    ports.start(),
                    ports.end()
                ),
            ));
        }
        Ok(Vec::new())
    }

    fn specific(&self, args: &Args<'_>) -> Result<Outputs, Fault> {
        let id = ShareId::single(args.proto()?, args.port("NewExternalPort")?, args.remote()?);
        let snapshot = self.table.snapshot();
        let share = snapshot
            .shares
            .get(&id)
            .filter(|s| matches!(s.origin, Origin::Upnp { .. }))
            .ok_or_else(|| Fault::new(Fault::NO_SUCH_ENTRY, format!("no share {id}")))?;
        let mut out = entry(&ShareEntry::of(share, crate::table::now()));
        out.drain(..3);
        Ok(out)
    }

    fn generic(&self, args: &Args<'_>) -> Result<Outputs, Fault> {
        let index: usize = args.number("NewPortMappingIndex")?;
        let snapshot = self.table.snapshot();
        let mut upnp = snapshot
            .shares
            .values()
            .filter(|s| matches!(s.origin, Origin::Upnp { .. }));
        let share = upnp.nth(index).ok_or_else(|| {
            Fault::new(
                Fault::ARRAY_INDEX_INVALID,
                format!("no share at index {index}"),
            )
        })?;
        Ok(entry(&ShareEntry::of(share, crate::table::now())))
    }

    fn list(&self, client: Ipv4Addr, args: &Args<'_>) -> Result<Outputs, Fault> {
        let ports = args.port_range()?;
        let proto = args.proto()?;
        let manage = args.boolean("NewManage")?;
        let count: usize = args.number("NewNumberOfPorts")?;
        let shares: Vec<ShareEntry> = self
            .shares()
            .into_iter()
            .filter(|s| s.spec.id.proto == proto && ports.contains(&s.spec.id.ext_port))
            .filter(|s| manage || s.origin == Origin::Upnp { client })
            .take(if count == 0 { usize::MAX } else { count })
            .collect();
        if shares.is_empty() {
            return Err(Fault::new(
                Fault::PORT_MAPPING_NOT_FOUND,
                format!("no {proto} share in {}-{}", ports.start(), ports.end()),
            ));
        }
        let mut listing = String::from(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<p:PortMappingList \
             xmlns:p=\"urn:schemas-upnp-org:gw:WANIPConnection\" \
             xmlns:xsi=\"http://www.w3.org/2001/XMLSchema-instance\" \
             xsi:schemaLocation=\"urn:schemas-upnp-org:gw:WANIPConnection \
             http://www.upnp.org/schemas/gw/WANIPConnection-v2.xsd\">\n",
        );
        for share in &shares {
            listing.push_str("<p:PortMappingEntry>");
            for (name, value) in entry(share) {
                // Named as in the IGD:2 listing schema.
                let name = match name {
                    "NewPortMappingDescription" => "NewDescription",
                    "NewLeaseDuration" => "NewLeaseTime",
                    name => name,
                };
                let _ = write!(
                    listing,
                    "<p:{name}>{}</p:{name}>",
                    quick_xml::escape::escape(value.as_str())
                );
            }
            listing.push_str("</p:PortMappingEntry>\n");
        }
        listing.push_str("</p:PortMappingList>");
        Ok(vec![("NewPortListing", listing)])
    }
}

/// A share as GetGenericPortMappingEntry gives it.
fn entry(share: &ShareEntry) -> Outputs {
    let lease = share
        .expires_in
        .map_or(0, |left| left.as_secs().max(1).min(u64::from(u32::MAX)));
    vec![
        (
            "NewRemoteHost",
            share
                .spec
                .id
                .remote
                .map(|r| r.to_string())
                .unwrap_or_default(),
        ),
        ("NewExternalPort", share.spec.id.ext_port.to_string()),
        (
            "NewProtocol",
            share.spec.id.proto.to_string().to_uppercase(),
        ),
        ("NewInternalPort", share.spec.internal.port().to_string()),
        ("NewInternalClient", share.spec.internal.ip().to_string()),
        ("NewEnabled", u8::from(share.spec.enabled).to_string()),
        (
            "NewPortMappingDescription",
            share.spec.name.clone().unwrap_or_default(),
        ),
        ("NewLeaseDuration", lease.to_string()),
    ]
}

#[cfg(test)]
mod tests {
    use std::net::Ipv6Addr;

    use super::*;
    use crate::{host::WanStats, policy::UpnpConfig};

    const ME: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 10);
    const V2: &str = "urn:schemas-upnp-org:service:WANIPConnection:2";

    struct FakeHost {
        listening: Vec<(Option<Ipv4Addr>, u16)>,
        macs: Vec<(Ipv4Addr, [u8; 6])>,
    }

    impl Host for FakeHost {
        fn neighbours(&self) -> Vec<(Ipv4Addr, [u8; 6])> {
            self.macs.clone()
        }
        fn neighbours6(&self) -> Vec<(Ipv6Addr, [u8; 6])> {
            Vec::new()
        }
        fn listening(&self, _: Proto) -> Vec<(Option<Ipv4Addr>, u16)> {
            self.listening.clone()
        }
        fn wan_up(&self) -> bool {
            true
        }
        fn wan_stats(&self) -> WanStats {
            WanStats {
                rx_packets: u64::from(u32::MAX) + 5,
                bit_rate: 10_000_000_000,
                ..WanStats::default()
            }
        }
    }

    /// A control point over a table task (so: inside a runtime).
    fn control(config: &str, listening: Vec<(Option<Ipv4Addr>, u16)>) -> Control {
        let host = Arc::new(FakeHost {
            listening,
            macs: vec![(Ipv4Addr::new(10, 0, 0, 77), [2, 0, 0, 0, 0, 7])],
        });
        let settings = toml::from_str::<UpnpConfig>(config)
            .expect("toml")
            .compile()
            .expect("settings");
        Control {
            table: crate::table::testing(settings, Arc::clone(&host) as Arc<dyn Host>, &[]),
            metrics: Arc::default(),
            host,
            started: Instant::now(),
            firewall6: false,
        }
    }

    fn request(action: &str, args: &[(&str, &str)]) -> Request {
        Request {
            service: V2.into(),
            action: action.into(),
            args: args
                .iter()
                .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
                .collect(),
        }
    }

    fn add(ext: &str, client: &str, int: &str) -> Request {
        request(
            "AddAnyPortMapping",
            &[
                ("NewRemoteHost", ""),
                ("NewExternalPort", ext),
                ("NewProtocol", "UDP"),
                ("NewInternalPort", int),
                ("NewInternalClient", client),
                ("NewEnabled", "1"),
                ("NewPortMappingDescription", "x"),
                ("NewLeaseDuration", "0"),
            ],
        )
    }

    async fn reserved(c: &Control, client: Ipv4Addr, r: &Request) -> Result<u16, Fault> {
        let out = c.handle(Service::IpConnection, client, r).await?;
        Ok(out[0].1.parse().expect("port"))
    }

    #[tokio::test]
    async fn add_any_skips_what_is_taken_listened_on_or_not_allowed() {
        let config = r#"
            [[rule]]
            action = "deny"
            external_ports = "4001"
            [[rule]]
            action = "allow"
            external_ports = "1024-65535"
        "#;
        let c = control(
            config,
            vec![(None, 4002), (Some(Ipv4Addr::LOCALHOST), 3999)],
        );
        assert_eq!(
            reserved(&c, ME, &add("4000", "10.0.0.10", "1")).await,
            Ok(4000)
        );
        // 4000 taken, 4001 denied, 4002 the box's own, 3999 only on loopback: 3999.
        assert_eq!(
            reserved(&c, ME, &add("4000", "10.0.0.10", "2")).await,
            Ok(3999)
        );
        // The same internal endpoint again: its port, renewed, not a second share.
        assert_eq!(
            reserved(&c, ME, &add("5000", "10.0.0.10", "2")).await,
            Ok(3999)
        );
        assert_eq!(c.shares().len(), 2);
        // Nothing above 65535 or below 1024 is allowed: the search goes the other way.
        assert_eq!(
            reserved(&c, ME, &add("65535", "10.0.0.10", "3")).await,
            Ok(65535)
        );
        assert_eq!(
            reserved(&c, ME, &add("65535", "10.0.0.10", "4")).await,
            Ok(65534)
        );
        // Port 0 means "any": the internal port is the first choice.
        assert_eq!(
            reserved(&c, ME, &add("0", "10.0.0.10", "6000")).await,
            Ok(6000)
        );
        // Secure mode is not a port question: no search.
        let err = reserved(&c, ME, &add("7000", "10.0.0.11", "7000")).await;
        assert_eq!(err.map_err(|f| f.code), Err(Fault::NOT_AUTHORIZED));
    }

    #[tokio::test]
    async fn devices_are_matched_by_mac_through_the_neighbour_table() {
        let c = control(
            "secure_mode = false\ndevices = [\"02:00:00:00:00:07\"]",
            Vec::new(),
        );
        let by_mac = Ipv4Addr::new(10, 0, 0, 77);
        assert_eq!(
            reserved(&c, by_mac, &add("4000", "10.0.0.77", "1")).await,
            Ok(4000)
        );
        let err = reserved(&c, ME, &add("4001", "10.0.0.10", "1")).await;
        assert_eq!(err.map_err(|f| f.code), Err(Fault::NOT_AUTHORIZED));
    }

    #[tokio::test]
    async fn with_upnp_off_reads_work_and_changes_do_not() {
        let c = control("enabled = false", Vec::new());
        let err = reserved(&c, ME, &add("4000", "10.0.0.10", "1")).await;
        assert_eq!(err.map_err(|f| f.code), Err(Fault::NOT_AUTHORIZED));
        let out = c
            .handle(
                Service::IpConnection,
                ME,
                &request("GetExternalIPAddress", &[]),
            )
            .await
            .expect("read");
        assert_eq!(
            out,
            vec![("NewExternalIPAddress", "198.51.100.1".to_owned())]
        );
    }

    #[tokio::test]
    async fn counters_wrap_like_ui4_and_rates_saturate() {
        let c = control("", Vec::new());
        let common = |action: &str| Request {
            service: "urn:schemas-upnp-org:service:WANCommonInterfaceConfig:1".into(),
            ..request(action, &[])
        };
        let out = c
            .handle(
                Service::CommonInterface,
                ME,
                &common("GetTotalPacketsReceived"),
            )
            .await
            .expect("packets");
        assert_eq!(out[0].1, "4");
        let out = c
            .handle(
                Service::CommonInterface,
                ME,
                &common("GetCommonLinkProperties"),
            )
            .await
            .expect("link");
        assert_eq!(out[1].1, u32::MAX.to_string());
        // A WANIPConnection action posted to the other service's control URL.
        let err = c
            .handle(
                Service::CommonInterface,
                ME,
                &request("GetExternalIPAddress", &[]),
            )
            .await;
        assert_eq!(err.map_err(|f| f.code), Err(Fault::INVALID_ACTION));
    }
}
