//! Who may open which ports: the owner's settings, compiled from the `[upnp]` and `[pcp]`
//! sections of the config file, with the owner's run-time changes laid over them.
//!
//! The order of the checks is the order a request meets them: the global switch ("allow
//! changes over UPnP"), the device list ("allow independent port sharing for this device", by
//! address, subnet or MAC), secure mode (a client maps only to itself and deletes only its
//! own shares), then the port rules, first match wins. What is left (static shares, other
//! clients' shares, ports the box itself listens on, quotas) the share table judges with these
//! settings in its own task ([`crate::table`]'s admission), so a change of them applies to the
//! very next request.

use std::{
    collections::BTreeMap, fmt, net::Ipv4Addr, ops::RangeInclusive, str::FromStr, time::Duration,
};

use serde::{Deserialize, Serialize};

/// Caps on the shares and pinholes LAN clients hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Leased shares and pinholes one client may hold.
    pub per_client: usize,
    /// Leased shares and pinholes all clients together may hold.
    pub total: usize,
}

impl Limits {
    /// No caps beyond the table's size.
    pub const NONE: Self = Self {
        per_client: usize::MAX,
        total: usize::MAX,
    };
}

/// The `[pcp]` section: NAT-PMP and PCP.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PcpSettings {
    /// Off: every mapping request is answered `NOT_AUTHORIZED`.
    pub enabled: bool,
    /// Whether a client may map ports for another host (PCP `THIRD_PARTY`); secure mode still
    /// applies.
    pub third_party: bool,
    /// Seconds: shorter lifetimes asked for are raised to this.
    pub min_lifetime: u32,
    /// Seconds: longer lifetimes asked for are cut to this.
    pub max_lifetime: u32,
}

impl Default for PcpSettings {
    fn default() -> Self {
        Self {
            enabled: true,
            third_party: false,
            min_lifetime: 120,
            max_lifetime: 86_400,
        }
    }
}

impl PcpSettings {
    /// Checks the section.
    pub fn check(&self) -> Result<(), String> {
        if self.min_lifetime == 0 || self.min_lifetime > self.max_lifetime {
            return Err(format!(
                "pcp.min_lifetime ({}) must be at least 1 and at most pcp.max_lifetime ({})",
                self.min_lifetime, self.max_lifetime
            ));
        }
        Ok(())
    }
}

/// The `[upnp]` section as written.
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct UpnpConfig {
    pub enabled: bool,
    pub igd_version: u8,
    pub secure_mode: bool,
    pub max_lease: Option<u64>,
    pub quota_per_client: usize,
    pub quota_total: usize,
    pub devices: Option<Vec<String>>,
    pub notify_interval: u64,
    pub port: u16,
    pub rule: Vec<RuleConfig>,
}

impl Default for UpnpConfig {
    fn default() -> Self {
        Self {
            // UPnP is what games, consoles and P2P clients expect of a home router; the
            // device list, secure mode and the rules bound what it may do.
            enabled: true,
            // IGD:2 has leases and AddAnyPortMapping; set 1 for Windows and Xbox, which give
            // up on IGD:2 descriptions. The control URL takes v1 and v2 actions either way.
            igd_version: 2,
            secure_mode: true,
            // IGD:1 clients asking for lease 0 get a share until they delete it, as the spec
            // says; set a cap (seconds) to make every UPnP share temporary, as Kerio does.
            max_lease: None,
            quota_per_client: 32,
            quota_total: 256,
            // Every host of the LAN subnets.
            devices: None,
            // UDA 1.1 asks for a max-age of at least 1800 s; adverts go out twice per max-age.
            notify_interval: 900,
            port: 5000,
            // No rules: the default rules (see `default_rules`).
            rule: Vec::new(),
        }
    }
}

/// One `[[upnp.rule]]`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleConfig {
    pub action: RuleAction,
    #[serde(default = "all_ports")]
    pub external_ports: PortRange,
    #[serde(default = "all_clients")]
    pub clients: Cidr,
    #[serde(default = "all_ports")]
    pub internal_ports: PortRange,
}

fn all_ports() -> PortRange {
    PortRange(1..=u16::MAX)
}

fn all_clients() -> Cidr {
    Cidr {
        addr: Ipv4Addr::UNSPECIFIED,
        prefix_len: 0,
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RuleAction {
    Allow,
    Deny,
}

/// A port range, `"1024-65535"` or `"80"`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PortRange(pub RangeInclusive<u16>);

impl FromStr for PortRange {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let port = |p: &str| match p.trim().parse::<u16>() {
            Ok(0) | Err(_) => Err(format!("`{s}` is not a port or port range (1-65535)")),
            Ok(p) => Ok(p),
        };
        let range = match s.split_once('-') {
            Some((a, b)) => port(a)?..=port(b)?,
            None => port(s)?..=port(s)?,
        };
        if range.is_empty() {
            return Err(format!("port range `{s}` is empty"));
        }
        Ok(Self(range))
    }
}

/// An IPv4 address or subnet, `"10.0.0.0/24"` or `"10.0.0.7"`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cidr {
    pub addr: Ipv4Addr,
    pub prefix_len: u8,
}

impl Cidr {
    #[must_use]
    pub fn contains(self, host: Ipv4Addr) -> bool {
        let mask = u32::MAX
            .checked_shl(32 - u32::from(self.prefix_len))
            .unwrap_or(0);
        u32::from(host) & mask == u32::from(self.addr) & mask
    }
}

impl FromStr for Cidr {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("`{s}` is not an IPv4 address or subnet (a.b.c.d[/len])");
        let (addr, len) = s.split_once('/').unwrap_or((s, "32"));
        let addr = addr.trim().parse().map_err(|_| bad())?;
        let prefix_len = len.trim().parse().map_err(|_| bad())?;
        if prefix_len > 32 {
            return Err(bad());
        }
        Ok(Self { addr, prefix_len })
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix_len)
    }
}

macro_rules! deserialize_from_str {
    ($($t:ty),*) => {$(
        impl<'de> Deserialize<'de> for $t {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                s.parse().map_err(serde::de::Error::custom)
            }
        }
    )*};
}
deserialize_from_str!(PortRange, Cidr, Device);

/// A device allowed to share ports independently.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Device {
    Addr(Cidr),
    /// A MAC address, matched through the neighbour table.
    Mac([u8; 6]),
}

impl FromStr for Device {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        if let Some(mac) = parse_mac(s) {
            return Ok(Self::Mac(mac));
        }
        s.parse().map(Self::Addr).map_err(|_| {
            format!(
                "device `{s}` is not an IPv4 address, subnet or MAC address (aa:bb:cc:dd:ee:ff)"
            )
        })
    }
}

/// Parses `aa:bb:cc:dd:ee:ff` (or with `-`).
#[must_use]
pub fn parse_mac(s: &str) -> Option<[u8; 6]> {
    let mut mac = [0; 6];
    let mut parts = s.split([':', '-']);
    for byte in &mut mac {
        let part = parts.next()?;
        if part.len() != 2 {
            return None;
        }
        *byte = u8::from_str_radix(part, 16).ok()?;
    }
    parts.next().is_none().then_some(mac)
}

/// Which IGD version the description advertises.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IgdVersion {
    V1,
    V2,
}

impl IgdVersion {
    #[must_use]
    pub fn number(self) -> u8 {
        match self {
            Self::V1 => 1,
            Self::V2 => 2,
        }
    }
}

/// A port rule, compiled.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rule {
    pub allow: bool,
    pub external_ports: RangeInclusive<u16>,
    pub clients: Cidr,
    pub internal_ports: RangeInclusive<u16>,
}

/// The rules without any configured: LAN clients may map external ports 1024-65535 to any
/// internal port; the well-known ports below 1024 stay the owner's to share (miniupnpd's
/// example configuration draws the same line).
#[must_use]
pub fn default_rules() -> Vec<Rule> {
    vec![Rule {
        allow: true,
        external_ports: 1024..=u16::MAX,
        clients: all_clients(),
        internal_ports: 1..=u16::MAX,
    }]
}

/// The UPnP settings the daemon runs with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Settings {
    pub enabled: bool,
    pub igd_version: IgdVersion,
    pub secure_mode: bool,
    pub max_lease: Option<Duration>,
    pub limits: Limits,
    /// `None`: every LAN host.
    pub devices: Option<Vec<Device>>,
    /// The owner's per-device permissions (API), ahead of `new_devices` and `devices`.
    pub permissions: BTreeMap<Ipv4Addr, bool>,
    /// The owner's answer for devices without a permission of their own (API); `None`: the
    /// config's `devices` list decides.
    pub new_devices: Option<bool>,
    pub rules: Vec<Rule>,
    pub notify_interval: Duration,
    pub port: u16,
    /// NAT-PMP and PCP (`[pcp]`).
    pub pcp: PcpSettings,
    /// The exposed hosts (`exposed_host`, `exposed_host6`).
    pub exposed: ExposedHosts,
}

/// The exposed hosts ("DMZ"): one LAN host per address family gets what no share claims.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ExposedHosts {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub v4: Option<Ipv4Addr>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub v6: Option<std::net::Ipv6Addr>,
}

/// A setting of `[upnp]` that cannot be used: its key (and index, in a list), for the line of
/// the config file it is on, and what is wrong.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct Invalid {
    pub key: &'static str,
    pub index: Option<usize>,
    pub message: String,
}

impl Invalid {
    fn new(key: &'static str, message: String) -> Self {
        Self {
            key,
            index: None,
            message,
        }
    }
}

/// The longest lease IGD:2 grants, and what it makes of a lease of 0.
pub const IGD2_MAX_LEASE: Duration = Duration::from_hours(7 * 24);

impl UpnpConfig {
    /// Checks and compiles the section.
    pub fn compile(self) -> Result<Settings, Invalid> {
        let igd_version = match self.igd_version {
            1 => IgdVersion::V1,
            2 => IgdVersion::V2,
            n => {
                return Err(Invalid::new(
                    "igd_version",
                    format!("upnp.igd_version is {n}: expected 1 or 2"),
                ));
            }
        };
        if self.max_lease == Some(0) {
            return Err(Invalid::new(
                "max_lease",
                "upnp.max_lease is 0: leave it out for no cap".to_owned(),
            ));
        }
        if !(60..=86_400).contains(&self.notify_interval) {
            return Err(Invalid::new(
                "notify_interval",
                format!(
                    "upnp.notify_interval is {}: expected 60 to 86400 seconds",
                    self.notify_interval
                ),
            ));
        }
        if self.port == 0 {
            return Err(Invalid::new("port", "upnp.port is 0".to_owned()));
        }
        let devices = self
            .devices
            .map(|list| {
                list.iter()
                    .enumerate()
                    .map(|(i, d)| {
                        d.parse().map_err(|message| Invalid {
                            key: "devices",
                            index: Some(i),
                            message: format!("upnp.devices: {message}"),
                        })
                    })
                    .collect::<Result<Vec<_>, _>>()
            })
            .transpose()?;
        let rules = if self.rule.is_empty() {
            default_rules()
        } else {
            self.rule
                .into_iter()
                .map(|r| Rule {
                    allow: r.action == RuleAction::Allow,
                    external_ports: r.external_ports.0,
                    clients: r.clients,
                    internal_ports: r.internal_ports.0,
                })
                .collect()
        };
        Ok(Settings {
            enabled: self.enabled,
            igd_version,
            secure_mode: self.secure_mode,
            max_lease: self.max_lease.map(Duration::from_secs),
            limits: Limits {
                per_client: self.quota_per_client,
                total: self.quota_total,
            },
            devices,
            permissions: BTreeMap::new(),
            new_devices: None,
            rules,
            notify_interval: Duration::from_secs(self.notify_interval),
            port: self.port,
            pcp: PcpSettings::default(),
            exposed: ExposedHosts::default(),
        })
    }
}

impl Default for Settings {
    fn default() -> Self {
        UpnpConfig::default()
            .compile()
            .unwrap_or_else(|err| unreachable!("the default UPnP settings are valid: {err}"))
    }
}

/// Settings the owner changed through the API, laid over the config file's (and kept in the
/// state directory). `None` leaves the config's value.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Overlay {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub upnp_enabled: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secure_mode: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub quota_per_client: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub quota_total: Option<usize>,
    /// Whether devices without a permission of their own may share ports independently.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub new_devices: Option<bool>,
    /// Per-device permission to share ports independently.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub devices: BTreeMap<Ipv4Addr, bool>,
    /// The exposed hosts the owner chose (both families: one owner's choice replaces the
    /// config file's two).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exposed: Option<ExposedHosts>,
}

/// Why a device may or may not share ports independently.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PermissionFrom {
    /// The owner set it for this device.
    Device,
    /// The owner's answer for devices without their own permission.
    Default,
    /// The config file's `devices` list (or its absence: every LAN host).
    Config,
}

impl Settings {
    /// These settings with the owner's changes laid over them.
    #[must_use]
    pub fn overlaid(&self, overlay: &Overlay) -> Self {
        let mut settings = self.clone();
        settings.enabled = overlay.upnp_enabled.unwrap_or(self.enabled);
        settings.secure_mode = overlay.secure_mode.unwrap_or(self.secure_mode);
        settings.limits.per_client = overlay.quota_per_client.unwrap_or(self.limits.per_client);
        settings.limits.total = overlay.quota_total.unwrap_or(self.limits.total);
        settings.new_devices = overlay.new_devices.or(self.new_devices);
        settings.permissions.extend(&overlay.devices);
        settings.exposed = overlay.exposed.unwrap_or(self.exposed);
        settings
    }

    /// Whether `client` (with `mac`, if the neighbour table knows it) may share ports
    /// independently, and which setting says so. The global switch is not part of it.
    #[must_use]
    pub fn permission(&self, client: Ipv4Addr, mac: Option<[u8; 6]>) -> (bool, PermissionFrom) {
        if let Some(&allowed) = self.permissions.get(&client) {
            return (allowed, PermissionFrom::Device);
        }
        if let Some(allowed) = self.new_devices {
            return (allowed, PermissionFrom::Default);
        }
        let listed = self.devices.as_ref().is_none_or(|devices| {
            devices.iter().any(|d| match d {
                Device::Addr(cidr) => cidr.contains(client),
                Device::Mac(m) => mac == Some(*m),
            })
        });
        (listed, PermissionFrom::Config)
    }
}

/// Why a request is refused before it reaches the share table.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Refusal {
    #[error("port changes over UPnP are turned off")]
    Disabled,
    #[error("NAT-PMP and PCP are turned off (pcp.enabled)")]
    PcpDisabled,
    #[error("{0} may not share ports independently")]
    Device(Ipv4Addr),
    #[error("secure mode: {client} may only share its own ports, not {internal}'s")]
    NotSelf {
        client: Ipv4Addr,
        internal: Ipv4Addr,
    },
    #[error(
        "secure mode: {client} may only open pinholes to addresses of its own device, not {internal}"
    )]
    NotSelf6 {
        client: std::net::IpAddr,
        internal: std::net::Ipv6Addr,
    },
    #[error("no rule allows external port {external} to {internal}:{internal_port}")]
    Rule {
        external: u16,
        internal: Ipv4Addr,
        internal_port: u16,
    },
}

impl Settings {
    /// May `client` (whose MAC the neighbour table gives as `mac`) change shares at all?
    pub fn check_client(&self, client: Ipv4Addr, mac: Option<[u8; 6]>) -> Result<(), Refusal> {
        if !self.enabled {
            return Err(Refusal::Disabled);
        }
        self.check_device(client, mac)
    }

    /// May `client` share ports independently? The device permission alone, without UPnP's
    /// own switch: NAT-PMP and PCP have theirs (`[pcp] enabled`).
    pub fn check_device(&self, client: Ipv4Addr, mac: Option<[u8; 6]>) -> Result<(), Refusal> {
        if self.permission(client, mac).0 {
            Ok(())
        } else {
            Err(Refusal::Device(client))
        }
    }

    /// May `client` map external port `external` to `internal:internal_port`?
    pub fn check_mapping(
        &self,
        client: Ipv4Addr,
        external: u16,
        internal: Ipv4Addr,
        internal_port: u16,
    ) -> Result<(), Refusal> {
        if self.secure_mode && internal != client {
            return Err(Refusal::NotSelf { client, internal });
        }
        let allowed = self
            .rules
            .iter()
            .find(|r| {
                r.external_ports.contains(&external)
                    && r.clients.contains(internal)
                    && r.internal_ports.contains(&internal_port)
            })
            .is_some_and(|r| r.allow);
        if allowed {
            Ok(())
        } else {
            Err(Refusal::Rule {
                external,
                internal,
                internal_port,
            })
        }
    }

    /// The lease a request for `requested` seconds gets. IGD:2 (`v2`): 0 or more than a week
    /// is a week. IGD:1: 0 is until deleted. Either way the owner's cap applies last.
    #[must_use]
    pub fn lease(&self, requested: u32, v2: bool) -> Option<Duration> {
        let requested = Duration::from_secs(u64::from(requested));
        let lease = if v2 {
            Some(if requested.is_zero() || requested > IGD2_MAX_LEASE {
                IGD2_MAX_LEASE
            } else {
                requested
            })
        } else {
            (!requested.is_zero()).then_some(requested)
        };
        match (lease, self.max_lease) {
            (None, cap) => cap,
            (Some(lease), Some(cap)) => Some(lease.min(cap)),
            (Some(lease), None) => Some(lease),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ME: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 10);

    fn settings(toml_text: &str) -> Settings {
        toml::from_str::<UpnpConfig>(toml_text)
            .expect("toml")
            .compile()
            .expect("valid")
    }

    #[test]
    fn defaults_allow_lan_clients_to_map_high_ports_to_themselves() {
        let s = Settings::default();
        assert_eq!(s.check_client(ME, None), Ok(()));
        assert_eq!(s.check_mapping(ME, 8080, ME, 80), Ok(()));
        assert!(matches!(
            s.check_mapping(ME, 80, ME, 80),
            Err(Refusal::Rule { .. })
        ));
        assert!(matches!(
            s.check_mapping(ME, 8080, Ipv4Addr::new(10, 0, 0, 11), 80),
            Err(Refusal::NotSelf { .. })
        ));
    }

    #[test]
    fn the_first_matching_rule_wins_and_no_match_is_a_refusal() {
        let s = settings(
            r#"
            secure_mode = false
            [[rule]]
            action = "deny"
            external_ports = "6000-6999"
            clients = "10.0.0.10"
            [[rule]]
            action = "allow"
            external_ports = "5000-7000"
            clients = "10.0.0.0/24"
            internal_ports = "1024-65535"
            "#,
        );
        let other = Ipv4Addr::new(10, 0, 0, 11);
        assert!(s.check_mapping(ME, 6500, ME, 6500).is_err(), "denied first");
        assert_eq!(s.check_mapping(ME, 6500, other, 6500), Ok(()));
        assert_eq!(s.check_mapping(ME, 5000, ME, 5000), Ok(()));
        assert!(s.check_mapping(ME, 5000, ME, 80).is_err(), "internal range");
        assert!(s.check_mapping(ME, 7001, ME, 7001).is_err(), "no rule");
    }

    #[test]
    fn devices_match_by_address_subnet_or_mac() {
        let s = settings(r#"devices = ["10.0.0.10", "10.0.0.32/28", "02:00:00:00:00:01"]"#);
        assert_eq!(s.check_client(ME, None), Ok(()));
        assert_eq!(s.check_client(Ipv4Addr::new(10, 0, 0, 40), None), Ok(()));
        let stranger = Ipv4Addr::new(10, 0, 0, 99);
        assert_eq!(
            s.check_client(stranger, None),
            Err(Refusal::Device(stranger))
        );
        assert_eq!(s.check_client(stranger, Some([2, 0, 0, 0, 0, 1])), Ok(()));
        let off = settings("enabled = false");
        assert_eq!(off.check_client(ME, None), Err(Refusal::Disabled));
    }

    #[test]
    fn the_owners_overlay_comes_before_the_config() {
        let base = settings(r#"devices = ["10.0.0.10"]"#);
        let stranger = Ipv4Addr::new(10, 0, 0, 99);
        let s = base.overlaid(&Overlay {
            secure_mode: Some(false),
            quota_total: Some(3),
            devices: [(stranger, true), (ME, false)].into(),
            ..Overlay::default()
        });
        assert!(!s.secure_mode);
        assert_eq!(s.limits.total, 3);
        assert_eq!(s.limits.per_client, base.limits.per_client);
        assert_eq!(s.permission(stranger, None), (true, PermissionFrom::Device));
        assert_eq!(s.check_client(ME, None), Err(Refusal::Device(ME)));
        // "Revoke for every device without a permission of its own".
        let other = Ipv4Addr::new(10, 0, 0, 7);
        let closed = s.overlaid(&Overlay {
            new_devices: Some(false),
            ..Overlay::default()
        });
        assert_eq!(
            closed.permission(other, None),
            (false, PermissionFrom::Default)
        );
        assert_eq!(closed.check_client(stranger, None), Ok(()));
        let off = base.overlaid(&Overlay {
            upnp_enabled: Some(false),
            ..Overlay::default()
        });
        assert_eq!(off.check_client(ME, None), Err(Refusal::Disabled));
    }

    #[test]
    fn leases_follow_igd2_and_the_owners_cap() {
        let s = Settings::default();
        let week = Some(IGD2_MAX_LEASE);
        assert_eq!(s.lease(0, true), week);
        assert_eq!(s.lease(700_000, true), week);
        assert_eq!(s.lease(3600, true), Some(Duration::from_hours(1)));
        assert_eq!(s.lease(0, false), None, "IGD:1 permanent");
        let capped = settings("max_lease = 600");
        assert_eq!(capped.lease(0, false), Some(Duration::from_mins(10)));
        assert_eq!(capped.lease(0, true), Some(Duration::from_mins(10)));
        assert_eq!(capped.lease(60, true), Some(Duration::from_mins(1)));
    }

    #[test]
    fn bad_settings_are_named() {
        let err = |t: &str| {
            toml::from_str::<UpnpConfig>(t)
                .map_err(|e| e.to_string())
                .and_then(|c| c.compile().map_err(|e| e.to_string()))
                .expect_err(t)
        };
        assert!(err("igd_version = 3").contains("igd_version"));
        assert!(err("devices = [\"10.0.0.300\"]").contains("10.0.0.300"));
        assert!(err("[[rule]]\naction = \"allow\"\nexternal_ports = \"9-3\"").contains("empty"));
        assert!(err("[[rule]]\naction = \"maybe\"").contains("maybe"));
        assert!(err("max_lease = 0").contains("max_lease"));
        assert!(err("bogus = 1").contains("bogus"));
        assert_eq!(parse_mac("02:00:00:00:00:01:02"), None);
        assert_eq!(parse_mac("0g:00:00:00:00:01"), None);
    }
}
