//! The device and service descriptions (UPnP Device Architecture 1.1, IGD 1 and 2).
//!
//! The service descriptions are generated from the action tables below, so what the box
//! describes and what [`super::control`] answers are written down once each.

use std::fmt::Write as _;

use super::{DeviceKind, Identity, IgdVersion, Service};

/// Control and description paths.
pub const ROOT_DESC: &str = "/rootDesc.xml";
pub const IP_CONN_DESC: &str = "/WANIPCn.xml";
pub const COMMON_IF_DESC: &str = "/WANCfg.xml";
pub const IP_CONN_CONTROL: &str = "/ctl/IPConn";
pub const COMMON_IF_CONTROL: &str = "/ctl/CmnIfCfg";
pub const IP_CONN_EVENTS: &str = "/evt/IPConn";
pub const COMMON_IF_EVENTS: &str = "/evt/CmnIfCfg";
pub const FIREWALL6_DESC: &str = "/WANIPv6FC.xml";
pub const FIREWALL6_CONTROL: &str = "/ctl/IP6FCtl";
pub const FIREWALL6_EVENTS: &str = "/evt/IP6FCtl";

/// The root device description.
#[must_use]
pub fn root(id: &Identity) -> String {
    let v = id.version.number();
    let (major, minor) = if id.version == IgdVersion::V2 {
        (2, 0)
    } else {
        (1, 1)
    };
    let mut out = String::new();
    let _ = write!(
        out,
        r#"<?xml version="1.0"?>
<root xmlns="urn:schemas-upnp-org:device-1-0" configId="{config}">
<specVersion><major>1</major><minor>1</minor></specVersion>
<device>
<deviceType>urn:schemas-upnp-org:device:InternetGatewayDevice:{v}</deviceType>
<friendlyName>portfwd router</friendlyName>
<manufacturer>portfwd</manufacturer>
<manufacturerURL>https://example.invalid/portfwd</manufacturerURL>
<modelDescription>XDP port sharing, UPnP IGD {major}.{minor}</modelDescription>
<modelName>portfwd</modelName>
<modelNumber>{version}</modelNumber>
<UDN>{gw}</UDN>
<deviceList>
<device>
<deviceType>urn:schemas-upnp-org:device:WANDevice:{v}</deviceType>
<friendlyName>WAN device</friendlyName>
<manufacturer>portfwd</manufacturer>
<modelName>portfwd</modelName>
<UDN>{wan}</UDN>
<serviceList>
<service>
<serviceType>{common}</serviceType>
<serviceId>urn:upnp-org:serviceId:WANCommonIFC1</serviceId>
<SCPDURL>{COMMON_IF_DESC}</SCPDURL>
<controlURL>{COMMON_IF_CONTROL}</controlURL>
<eventSubURL>{COMMON_IF_EVENTS}</eventSubURL>
</service>
</serviceList>
<deviceList>
<device>
<deviceType>urn:schemas-upnp-org:device:WANConnectionDevice:{v}</deviceType>
<friendlyName>WAN connection</friendlyName>
<manufacturer>portfwd</manufacturer>
<modelName>portfwd</modelName>
<UDN>{conn}</UDN>
<serviceList>
<service>
<serviceType>{ip}</serviceType>
<serviceId>urn:upnp-org:serviceId:WANIPConn1</serviceId>
<SCPDURL>{IP_CONN_DESC}</SCPDURL>
<controlURL>{IP_CONN_CONTROL}</controlURL>
<eventSubURL>{IP_CONN_EVENTS}</eventSubURL>
</service>{firewall}
</serviceList>
</device>
</deviceList>
</device>
</deviceList>
<presentationURL>http://{addr}/</presentationURL>
</device>
</root>
"#,
        config = id.config_id,
        version = env!("CARGO_PKG_VERSION"),
        gw = id.udn(DeviceKind::Gateway),
        wan = id.udn(DeviceKind::Wan),
        conn = id.udn(DeviceKind::Connection),
        common = Service::CommonInterface.urn(1),
        ip = Service::IpConnection.urn(v),
        addr = id.lan_addr,
        firewall = if id.version == IgdVersion::V2 {
            format!(
                "\n<service>\n<serviceType>{}</serviceType>\n\
                 <serviceId>urn:upnp-org:serviceId:WANIPv6FC1</serviceId>\n\
                 <SCPDURL>{FIREWALL6_DESC}</SCPDURL>\n\
                 <controlURL>{FIREWALL6_CONTROL}</controlURL>\n\
                 <eventSubURL>{FIREWALL6_EVENTS}</eventSubURL>\n</service>",
                Service::Firewall6.urn(1)
            )
        } else {
            String::new()
        },
    );
    out
}

/// In or out, and the state variable an argument relates to.
type Arg = (&'static str, bool, &'static str);
const IN: bool = true;
const OUT: bool = false;

/// WANIPConnection actions: name, arguments, and whether IGD:2 added it.
const IP_CONN_ACTIONS: &[(&str, &[Arg], bool)] = &[
    (
        "SetConnectionType",
        &[("NewConnectionType", IN, "ConnectionType")],
        false,
    ),
    (
        "GetConnectionTypeInfo",
        &[
            ("NewConnectionType", OUT, "ConnectionType"),
            ("NewPossibleConnectionTypes", OUT, "PossibleConnectionTypes"),
        ],
        false,
    ),
    ("RequestConnection", &[], false),
    ("ForceTermination", &[], false),
    (
        "GetStatusInfo",
        &[
            ("NewConnectionStatus", OUT, "ConnectionStatus"),
            ("NewLastConnectionError", OUT, "LastConnectionError"),
            ("NewUptime", OUT, "Uptime"),
        ],
        false,
    ),
    (
        "GetNATRSIPStatus",
        &[
            ("NewRSIPAvailable", OUT, "RSIPAvailable"),
            ("NewNATEnabled", OUT, "NATEnabled"),
        ],
        false,
    ),
    (
        "GetGenericPortMappingEntry",
        &[
            ("NewPortMappingIndex", IN, "PortMappingNumberOfEntries"),
            ("NewRemoteHost", OUT, "RemoteHost"),
            ("NewExternalPort", OUT, "ExternalPort"),
            ("NewProtocol", OUT, "PortMappingProtocol"),
            ("NewInternalPort", OUT, "InternalPort"),
            ("NewInternalClient", OUT, "InternalClient"),
            ("NewEnabled", OUT, "PortMappingEnabled"),
            ("NewPortMappingDescription", OUT, "PortMappingDescription"),
            ("NewLeaseDuration", OUT, "PortMappingLeaseDuration"),
        ],
        false,
    ),
    (
        "GetSpecificPortMappingEntry",
        &[
            ("NewRemoteHost", IN, "RemoteHost"),
            ("NewExternalPort", IN, "ExternalPort"),
            ("NewProtocol", IN, "PortMappingProtocol"),
            ("NewInternalPort", OUT, "InternalPort"),
            ("NewInternalClient", OUT, "InternalClient"),
            ("NewEnabled", OUT, "PortMappingEnabled"),
            ("NewPortMappingDescription", OUT, "PortMappingDescription"),
            ("NewLeaseDuration", OUT, "PortMappingLeaseDuration"),
        ],
        false,
    ),
    ("AddPortMapping", ADD_ARGS, false),
    (
        "DeletePortMapping",
        &[
            ("NewRemoteHost", IN, "RemoteHost"),
            ("NewExternalPort", IN, "ExternalPort"),
            ("NewProtocol", IN, "PortMappingProtocol"),
        ],
        false,
    ),
    (
        "GetExternalIPAddress",
        &[("NewExternalIPAddress", OUT, "ExternalIPAddress")],
        false,
    ),
    (
        "DeletePortMappingRange",
        &[
            ("NewStartPort", IN, "ExternalPort"),
            ("NewEndPort", IN, "ExternalPort"),
            ("NewProtocol", IN, "PortMappingProtocol"),
            ("NewManage", IN, "A_ARG_TYPE_Manage"),
        ],
        true,
    ),
    (
        "GetListOfPortMappings",
        &[
            ("NewStartPort", IN, "ExternalPort"),
            ("NewEndPort", IN, "ExternalPort"),
            ("NewProtocol", IN, "PortMappingProtocol"),
            ("NewManage", IN, "A_ARG_TYPE_Manage"),
            ("NewNumberOfPorts", IN, "PortMappingNumberOfEntries"),
            ("NewPortListing", OUT, "A_ARG_TYPE_PortListing"),
        ],
        true,
    ),
    ("AddAnyPortMapping", ADD_ANY_ARGS, true),
];

const ADD_ARGS: &[Arg] = &[
    ("NewRemoteHost", IN, "RemoteHost"),
    ("NewExternalPort", IN, "ExternalPort"),
    ("NewProtocol", IN, "PortMappingProtocol"),
    ("NewInternalPort", IN, "InternalPort"),
    ("NewInternalClient", IN, "InternalClient"),
    ("NewEnabled", IN, "PortMappingEnabled"),
    ("NewPortMappingDescription", IN, "PortMappingDescription"),
    ("NewLeaseDuration", IN, "PortMappingLeaseDuration"),
];

const ADD_ANY_ARGS: &[Arg] = &[
    ("NewRemoteHost", IN, "RemoteHost"),
    ("NewExternalPort", IN, "ExternalPort"),
    ("NewProtocol", IN, "PortMappingProtocol"),
    ("NewInternalPort", IN, "InternalPort"),
    ("NewInternalClient", IN, "InternalClient"),
    ("NewEnabled", IN, "PortMappingEnabled"),
    ("NewPortMappingDescription", IN, "PortMappingDescription"),
    ("NewLeaseDuration", IN, "PortMappingLeaseDuration"),
    ("NewReservedPort", OUT, "ExternalPort"),
];

/// State variables: name, type, evented, allowed values, and whether IGD:2 added it.
type Var = (
    &'static str,
    &'static str,
    bool,
    &'static [&'static str],
    bool,
);

const IP_CONN_VARS: &[Var] = &[
    ("ConnectionType", "string", false, &[], false),
    (
        "PossibleConnectionTypes",
        "string",
        true,
        &["Unconfigured", "IP_Routed", "IP_Bridged"],
        false,
    ),
    (
        "ConnectionStatus",
        "string",
        true,
        &[
            "Unconfigured",
            "Connecting",
            "Connected",
            "PendingDisconnect",
            "Disconnecting",
            "Disconnected",
        ],
        false,
    ),
    ("Uptime", "ui4", false, &[], false),
    (
        "LastConnectionError",
        "string",
        false,
        &["ERROR_NONE"],
        false,
    ),
    ("RSIPAvailable", "boolean", false, &[], false),
    ("NATEnabled", "boolean", false, &[], false),
    ("ExternalIPAddress", "string", true, &[], false),
    ("PortMappingNumberOfEntries", "ui2", true, &[], false),
    ("PortMappingEnabled", "boolean", false, &[], false),
    ("PortMappingLeaseDuration", "ui4", false, &[], false),
    ("RemoteHost", "string", false, &[], false),
    ("ExternalPort", "ui2", false, &[], false),
    ("InternalPort", "ui2", false, &[], false),
    (
        "PortMappingProtocol",
        "string",
        false,
        &["TCP", "UDP"],
        false,
    ),
    ("InternalClient", "string", false, &[], false),
    ("PortMappingDescription", "string", false, &[], false),
    ("SystemUpdateID", "ui4", true, &[], true),
    ("A_ARG_TYPE_Manage", "boolean", false, &[], true),
    ("A_ARG_TYPE_PortListing", "string", false, &[], true),
];

const COMMON_IF_ACTIONS: &[(&str, &[Arg], bool)] = &[
    (
        "GetCommonLinkProperties",
        &[
            ("NewWANAccessType", OUT, "WANAccessType"),
            (
                "NewLayer1UpstreamMaxBitRate",
                OUT,
                "Layer1UpstreamMaxBitRate",
            ),
            (
                "NewLayer1DownstreamMaxBitRate",
                OUT,
                "Layer1DownstreamMaxBitRate",
            ),
            ("NewPhysicalLinkStatus", OUT, "PhysicalLinkStatus"),
        ],
        false,
    ),
    (
        "GetTotalBytesSent",
        &[("NewTotalBytesSent", OUT, "TotalBytesSent")],
        false,
    ),
    (
        "GetTotalBytesReceived",
        &[("NewTotalBytesReceived", OUT, "TotalBytesReceived")],
        false,
    ),
    (
        "GetTotalPacketsSent",
        &[("NewTotalPacketsSent", OUT, "TotalPacketsSent")],
        false,
    ),
    (
        "GetTotalPacketsReceived",
        &[("NewTotalPacketsReceived", OUT, "TotalPacketsReceived")],
        false,
    ),
];

const COMMON_IF_VARS: &[Var] = &[
    (
        "WANAccessType",
        "string",
        false,
        &["DSL", "POTS", "Cable", "Ethernet"],
        false,
    ),
    ("Layer1UpstreamMaxBitRate", "ui4", false, &[], false),
    ("Layer1DownstreamMaxBitRate", "ui4", false, &[], false),
    ("PhysicalLinkStatus", "string", true, &["Up", "Down"], false),
    ("TotalBytesSent", "ui4", false, &[], false),
    ("TotalBytesReceived", "ui4", false, &[], false),
    ("TotalPacketsSent", "ui4", false, &[], false),
    ("TotalPacketsReceived", "ui4", false, &[], false),
];

/// WANIPv6FirewallControl:1 actions (the service is IGD:2's; none is marked v2-only).
const FIREWALL6_ACTIONS: &[(&str, &[Arg], bool)] = &[
    (
        "GetFirewallStatus",
        &[
            ("FirewallEnabled", OUT, "FirewallEnabled"),
            ("InboundPinholeAllowed", OUT, "InboundPinholeAllowed"),
        ],
        false,
    ),
    (
        "GetOutboundPinholeTimeout",
        &[
            ("RemoteHost", IN, "A_ARG_TYPE_IPv6Address"),
            ("RemotePort", IN, "A_ARG_TYPE_Port"),
            ("InternalClient", IN, "A_ARG_TYPE_IPv6Address"),
            ("InternalPort", IN, "A_ARG_TYPE_Port"),
            ("Protocol", IN, "A_ARG_TYPE_Protocol"),
            (
                "OutboundPinholeTimeout",
                OUT,
                "A_ARG_TYPE_OutboundPinholeTimeout",
            ),
        ],
        false,
    ),
    (
        "AddPinhole",
        &[
            ("RemoteHost", IN, "A_ARG_TYPE_IPv6Address"),
            ("RemotePort", IN, "A_ARG_TYPE_Port"),
            ("InternalClient", IN, "A_ARG_TYPE_IPv6Address"),
            ("InternalPort", IN, "A_ARG_TYPE_Port"),
            ("Protocol", IN, "A_ARG_TYPE_Protocol"),
            ("LeaseTime", IN, "A_ARG_TYPE_LeaseTime"),
            ("UniqueID", OUT, "A_ARG_TYPE_UniqueID"),
        ],
        false,
    ),
    (
        "UpdatePinhole",
        &[
            ("UniqueID", IN, "A_ARG_TYPE_UniqueID"),
            ("NewLeaseTime", IN, "A_ARG_TYPE_LeaseTime"),
        ],
        false,
    ),
    (
        "DeletePinhole",
        &[("UniqueID", IN, "A_ARG_TYPE_UniqueID")],
        false,
    ),
    (
        "GetPinholePackets",
        &[
            ("UniqueID", IN, "A_ARG_TYPE_UniqueID"),
            ("PinholePackets", OUT, "A_ARG_TYPE_PinholePackets"),
        ],
        false,
    ),
    (
        "CheckPinholeWorking",
        &[
            ("UniqueID", IN, "A_ARG_TYPE_UniqueID"),
            ("IsWorking", OUT, "A_ARG_TYPE_Boolean"),
        ],
        false,
    ),
];

const FIREWALL6_VARS: &[Var] = &[
    ("FirewallEnabled", "boolean", true, &[], false),
    ("InboundPinholeAllowed", "boolean", true, &[], false),
    (
        "A_ARG_TYPE_OutboundPinholeTimeout",
        "ui4",
        false,
        &[],
        false,
    ),
    ("A_ARG_TYPE_IPv6Address", "string", false, &[], false),
    ("A_ARG_TYPE_Port", "ui2", false, &[], false),
    ("A_ARG_TYPE_Protocol", "ui2", false, &[], false),
    ("A_ARG_TYPE_LeaseTime", "ui4", false, &[], false),
    ("A_ARG_TYPE_UniqueID", "ui2", false, &[], false),
    ("A_ARG_TYPE_PinholePackets", "ui4", false, &[], false),
    ("A_ARG_TYPE_Boolean", "boolean", false, &[], false),
];

/// The actions `service` has as advertised at `version`.
#[must_use]
pub fn actions(service: Service, version: IgdVersion) -> Vec<&'static str> {
    let table = match service {
        Service::IpConnection => IP_CONN_ACTIONS,
        Service::CommonInterface => COMMON_IF_ACTIONS,
        Service::Firewall6 => FIREWALL6_ACTIONS,
    };
    table
        .iter()
        .filter(|(_, _, v2)| !v2 || version == IgdVersion::V2)
        .map(|(name, _, _)| *name)
        .collect()
}

/// The service description (SCPD) of `service` as advertised at `version`.
#[must_use]
pub fn scpd(service: Service, version: IgdVersion) -> String {
    let (actions, vars) = match service {
        Service::IpConnection => (IP_CONN_ACTIONS, IP_CONN_VARS),
        Service::CommonInterface => (COMMON_IF_ACTIONS, COMMON_IF_VARS),
        Service::Firewall6 => (FIREWALL6_ACTIONS, FIREWALL6_VARS),
    };
    let v2 = version == IgdVersion::V2;
    let mut out = String::from(
        "<?xml version=\"1.0\"?>\n<scpd xmlns=\"urn:schemas-upnp-org:service-1-0\">\n\
         <specVersion><major>1</major><minor>1</minor></specVersion>\n<actionList>\n",
    );
    for (name, args, only_v2) in actions.iter().filter(|a| !a.2 || v2) {
        let _ = only_v2;
        let _ = write!(out, "<action><name>{name}</name>");
        if !args.is_empty() {
            out.push_str("<argumentList>");
            for (arg, input, var) in *args {
                let dir = if *input { "in" } else { "out" };
                let _ = write!(
                    out,
                    "<argument><name>{arg}</name><direction>{dir}</direction>\
                     <relatedStateVariable>{var}</relatedStateVariable></argument>"
                );
            }
            out.push_str("</argumentList>");
        }
        out.push_str("</action>\n");
    }
    out.push_str("</actionList>\n<serviceStateTable>\n");
    for (name, ty, evented, allowed, _) in vars.iter().filter(|v| !v.4 || v2) {
        let events = if *evented { "yes" } else { "no" };
        let _ = write!(
            out,
            "<stateVariable sendEvents=\"{events}\"><name>{name}</name><dataType>{ty}</dataType>"
        );
        if !allowed.is_empty() {
            out.push_str("<allowedValueList>");
            for value in *allowed {
                let _ = write!(out, "<allowedValue>{value}</allowedValue>");
            }
            out.push_str("</allowedValueList>");
        }
        out.push_str("</stateVariable>\n");
    }
    out.push_str("</serviceStateTable>\n</scpd>\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::upnp::test_identity as identity;

    /// Every description is well-formed XML, and every argument names a state variable the
    /// same description declares.
    #[test]
    fn descriptions_are_well_formed_and_consistent() {
        for version in [IgdVersion::V1, IgdVersion::V2] {
            let root = root(&identity(version));
            assert!(root.contains(&format!("InternetGatewayDevice:{}", version.number())));
            assert!(root.contains(&format!("WANIPConnection:{}", version.number())));
            for doc in [
                root.clone(),
                scpd(Service::IpConnection, version),
                scpd(Service::CommonInterface, version),
                scpd(Service::Firewall6, version),
            ] {
                let mut reader = quick_xml::Reader::from_str(&doc);
                loop {
                    if reader.read_event().expect("well-formed") == quick_xml::events::Event::Eof {
                        break;
                    }
                }
            }
            for (service, actions, vars) in [
                (Service::IpConnection, IP_CONN_ACTIONS, IP_CONN_VARS),
                (Service::CommonInterface, COMMON_IF_ACTIONS, COMMON_IF_VARS),
                (Service::Firewall6, FIREWALL6_ACTIONS, FIREWALL6_VARS),
            ] {
                let doc = scpd(service, version);
                for (name, args, only_v2) in actions {
                    assert_eq!(
                        doc.contains(&format!("<name>{name}</name>")),
                        !only_v2 || version == IgdVersion::V2
                    );
                    for (_, _, var) in *args {
                        let declared = vars.iter().find(|v| v.0 == *var).expect(var);
                        assert!(
                            !declared.4 || version == IgdVersion::V2 || *only_v2,
                            "{var}"
                        );
                    }
                }
            }
        }
        assert!(!scpd(Service::IpConnection, IgdVersion::V1).contains("AddAnyPortMapping"));
        assert!(root(&identity(IgdVersion::V2)).contains("WANIPv6FirewallControl:1"));
        assert!(
            !root(&identity(IgdVersion::V1)).contains("WANIPv6FirewallControl"),
            "IGD:1 has no IPv6 firewall service"
        );
    }
}
