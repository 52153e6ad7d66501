//! The UPnP Internet Gateway Device: how LAN applications open ports themselves.
//!
//! Endpoints, all on the LAN side only (the HTTP listener and the SSDP socket are bound to the
//! LAN interface, and requests from outside the LAN subnets are dropped):
//!
//! | where | what |
//! |---|---|
//! | UDP 239.255.255.250:1900 | SSDP: M-SEARCH answers, `ssdp:alive` / `ssdp:byebye` adverts ([`ssdp`]) |
//! | `GET /rootDesc.xml` | device description: InternetGatewayDevice > WANDevice > WANConnectionDevice |
//! | `GET /WANIPCn.xml`, `GET /WANCfg.xml` | service descriptions of WANIPConnection and WANCommonInterfaceConfig |
//! | `POST /ctl/IPConn` | WANIPConnection actions, `:1` and `:2` whichever version is advertised ([`control`]) |
//! | `POST /ctl/CmnIfCfg` | WANCommonInterfaceConfig actions |
//! | `GET /WANIPv6FC.xml`, `POST /ctl/IP6FCtl` | WANIPv6FirewallControl:1 (IGD:2 only): IPv6 pinholes |
//! | `SUBSCRIBE /evt/...` | refused (501): no eventing, so no callbacks to anyone (CallStranger) |
//!
//! [`crate::policy`] says who may open what, and the share table's owner decides with it.

pub mod control;
pub mod description;
pub mod firewall;
pub mod http;
pub mod soap;
pub mod ssdp;

use std::{fmt, net::Ipv4Addr};

pub use crate::policy::{IgdVersion, Settings};

/// The identity the box advertises: device UUIDs, where its description is, and the UDA 1.1
/// boot and configuration ids.
#[derive(Clone, Debug)]
pub struct Identity {
    /// UUID of the root device; the embedded devices' UUIDs differ in the last digit.
    pub uuid: String,
    pub version: IgdVersion,
    pub lan_addr: Ipv4Addr,
    pub http_port: u16,
    /// BOOTID.UPNP.ORG: goes up each time the daemon starts (seconds since the epoch, which
    /// does not repeat across restarts).
    pub boot_id: u32,
    /// CONFIGID.UPNP.ORG: changes when the descriptions do (a hash of them, 0 to 2^24-1).
    pub config_id: u32,
}

/// The identity the unit tests describe and advertise.
#[cfg(test)]
pub(crate) fn test_identity(version: IgdVersion) -> Identity {
    Identity {
        uuid: "5c6b9a2e-0000-4000-8000-0000000000a0".into(),
        version,
        lan_addr: Ipv4Addr::new(10, 0, 0, 1),
        http_port: 5000,
        boot_id: 17,
        config_id: 42,
    }
}

/// The three devices of the IGD tree.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeviceKind {
    Gateway,
    Wan,
    Connection,
}

impl Identity {
    #[must_use]
    pub fn location(&self) -> String {
        format!("http://{}:{}/rootDesc.xml", self.lan_addr, self.http_port)
    }

    /// `uuid:...` of one of the devices.
    #[must_use]
    pub fn udn(&self, device: DeviceKind) -> String {
        let last = match device {
            DeviceKind::Gateway => '0',
            DeviceKind::Wan => '1',
            DeviceKind::Connection => '2',
        };
        let mut uuid = self.uuid.clone();
        uuid.pop();
        uuid.push(last);
        format!("uuid:{uuid}")
    }

    /// The `SERVER` header of SSDP and HTTP answers.
    #[must_use]
    pub fn server(&self) -> String {
        format!(
            "Linux UPnP/{} portfwd/{}",
            if self.version == IgdVersion::V2 {
                "2.0"
            } else {
                "1.1"
            },
            env!("CARGO_PKG_VERSION")
        )
    }

    /// Every (notification type, USN) the box advertises and answers searches for.
    #[must_use]
    pub fn targets(&self) -> Vec<(String, String)> {
        let v = self.version.number();
        let root = self.udn(DeviceKind::Gateway);
        let mut out = vec![(
            "upnp:rootdevice".to_owned(),
            format!("{root}::upnp:rootdevice"),
        )];
        for (kind, device_type) in [
            (
                DeviceKind::Gateway,
                format!("urn:schemas-upnp-org:device:InternetGatewayDevice:{v}"),
            ),
            (
                DeviceKind::Wan,
                format!("urn:schemas-upnp-org:device:WANDevice:{v}"),
            ),
            (
                DeviceKind::Connection,
                format!("urn:schemas-upnp-org:device:WANConnectionDevice:{v}"),
            ),
        ] {
            let udn = self.udn(kind);
            out.push((udn.clone(), udn.clone()));
            out.push((device_type.clone(), format!("{udn}::{device_type}")));
        }
        let mut services = vec![
            (DeviceKind::Wan, Service::CommonInterface.urn(1)),
            (DeviceKind::Connection, Service::IpConnection.urn(v)),
        ];
        if self.version == IgdVersion::V2 {
            services.push((DeviceKind::Connection, Service::Firewall6.urn(1)));
        }
        for (kind, service) in services {
            out.push((service.clone(), format!("{}::{service}", self.udn(kind))));
        }
        out
    }
}

/// A service the box offers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Service {
    IpConnection,
    CommonInterface,
    /// WANIPv6FirewallControl: IPv6 pinholes (IGD:2 describes it; IGD:1 has none).
    Firewall6,
}

impl Service {
    #[must_use]
    pub fn urn(self, version: u8) -> String {
        match self {
            Self::IpConnection => format!("urn:schemas-upnp-org:service:WANIPConnection:{version}"),
            Self::CommonInterface => {
                format!("urn:schemas-upnp-org:service:WANCommonInterfaceConfig:{version}")
            }
            Self::Firewall6 => {
                format!("urn:schemas-upnp-org:service:WANIPv6FirewallControl:{version}")
            }
        }
    }

    /// The service and version a request's namespace names.
    #[must_use]
    pub fn parse(urn: &str) -> Option<(Self, u8)> {
        let (service, version) = urn
            .strip_prefix("urn:schemas-upnp-org:service:")?
            .rsplit_once(':')?;
        let version: u8 = version.parse().ok()?;
        let service = match service {
            "WANIPConnection" if (1..=2).contains(&version) => Self::IpConnection,
            "WANCommonInterfaceConfig" if version == 1 => Self::CommonInterface,
            "WANIPv6FirewallControl" if version == 1 => Self::Firewall6,
            _ => return None,
        };
        Some((service, version))
    }
}

/// A UPnP error, sent as a SOAP fault with HTTP 500.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fault {
    pub code: u16,
    /// Why, for the daemon's log (clients get the spec's short description).
    pub detail: String,
}

impl Fault {
    pub const INVALID_ACTION: u16 = 401;
    pub const INVALID_ARGS: u16 = 402;
    pub const ACTION_FAILED: u16 = 501;
    pub const NOT_AUTHORIZED: u16 = 606;
    pub const PINHOLE_SPACE_EXHAUSTED: u16 = 701;
    pub const FIREWALL_DISABLED: u16 = 702;
    pub const INBOUND_PINHOLE_NOT_ALLOWED: u16 = 703;
    /// WANIPv6FirewallControl's NoSuchEntry (WANIPConnection's is 714).
    pub const NO_SUCH_PINHOLE: u16 = 704;
    pub const PROTOCOL_NOT_SUPPORTED: u16 = 705;
    pub const INTERNAL_PORT_WILDCARD: u16 = 706;
    pub const PROTOCOL_WILDCARD: u16 = 707;
    pub const WILDCARD_SOURCE: u16 = 708;
    pub const NO_PACKET_SENT: u16 = 709;
    pub const ARRAY_INDEX_INVALID: u16 = 713;
    pub const NO_SUCH_ENTRY: u16 = 714;
    pub const WILDCARD_EXTERNAL_PORT: u16 = 716;
    pub const CONFLICT_IN_MAPPING: u16 = 718;
    pub const NO_PORT_MAPS_AVAILABLE: u16 = 728;
    pub const CONFLICT_WITH_OTHER_MECHANISMS: u16 = 729;
    pub const PORT_MAPPING_NOT_FOUND: u16 = 730;
    pub const READ_ONLY: u16 = 731;
    pub const INCONSISTENT_PARAMETERS: u16 = 733;

    pub fn new(code: u16, detail: impl Into<String>) -> Self {
        Self {
            code,
            detail: detail.into(),
        }
    }

    /// The errorDescription the specs give the code.
    #[must_use]
    pub fn description(&self) -> &'static str {
        match self.code {
            Self::INVALID_ACTION => "Invalid Action",
            Self::INVALID_ARGS => "Invalid Args",
            Self::NOT_AUTHORIZED => "Action not authorized",
            Self::PINHOLE_SPACE_EXHAUSTED => "PinholeSpaceExhausted",
            Self::FIREWALL_DISABLED => "FirewallDisabled",
            Self::INBOUND_PINHOLE_NOT_ALLOWED => "InboundPinholeNotAllowed",
            Self::NO_SUCH_PINHOLE => "NoSuchEntry",
            Self::PROTOCOL_NOT_SUPPORTED => "ProtocolNotSupported",
            Self::INTERNAL_PORT_WILDCARD => "InternalPortWildcardingNotAllowed",
            Self::PROTOCOL_WILDCARD => "ProtocolWildcardingNotAllowed",
            Self::WILDCARD_SOURCE => "WildCardNotPermittedInSrcIP",
            Self::NO_PACKET_SENT => "NoPacketSent",
            Self::ARRAY_INDEX_INVALID => "SpecifiedArrayIndexInvalid",
            Self::NO_SUCH_ENTRY => "NoSuchEntryInArray",
            Self::WILDCARD_EXTERNAL_PORT => "WildCardNotPermittedInExtPort",
            Self::CONFLICT_IN_MAPPING => "ConflictInMappingEntry",
            Self::NO_PORT_MAPS_AVAILABLE => "NoPortMapsAvailable",
            Self::CONFLICT_WITH_OTHER_MECHANISMS => "ConflictWithOtherMechanisms",
            Self::PORT_MAPPING_NOT_FOUND => "PortMappingNotFound",
            Self::READ_ONLY => "ReadOnly",
            Self::INCONSISTENT_PARAMETERS => "InconsistentParameters",
            _ => "Action Failed",
        }
    }
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}: {}", self.code, self.description(), self.detail)
    }
}
