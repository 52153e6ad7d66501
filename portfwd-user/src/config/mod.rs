//! The daemon's configuration: a TOML file and command-line flags, merged and validated before
//! anything is loaded or bound.
//!
//! ```toml
//! wan = "eth0"          # interface facing the internet
//! lan = "eth1"          # interface facing the LAN hosts
//! xdp_mode = "auto"     # auto | native | skb
//! log_level = "info"    # off | error | warn | info | debug | trace, or TARGET=LEVEL,...
//! # exposed_host = "10.0.0.20"     # what no share claims goes to this LAN host (none by default)
//! # exposed_host6 = "2001:db8::20" # every port of this LAN host open
//!
//! [[share]]
//! name = "web"
//! proto = "tcp"
//! external_port = 8080
//! internal = "10.0.0.10:80"
//! # remote = "198.51.100.7"  # only this remote host may use the share
//! # enabled = false          # keep the share, but do not forward it
//!
//! [upnp]                # see crate::policy for every setting and its default
//! igd_version = 2
//!
//! [pcp]                 # NAT-PMP and PCP on UDP 5351 of the LAN address
//! enabled = true
//! third_party = false   # true: PCP THIRD_PARTY may map for other hosts (not in secure mode)
//! min_lifetime = 120    # seconds; lifetimes asked for are clamped to this range
//! max_lifetime = 86400
//!
//! [hairpin]
//! enabled = true        # LAN hosts reach shares through the external address
//!
//! [ipv6]
//! inbound = "deny"      # deny | pass: new TCP connections to LAN hosts without a pinhole
//!
//! [api]
//! listen = "127.0.0.1:9780"  # REST API and /metrics (--api)
//! metrics_auth = false       # true: /metrics needs the bearer token too
//! # webhook = "http://10.0.0.2:8000/portfwd"  # POSTed an event when a share is switched on
//! # page_names = ["router.example"]  # names the page answers to besides addresses
//!
//! [wan_link]
//! flap_window = 300     # seconds: a shorter outage is logged as one event
//! ```
//!
//! Flags win over the file; `--share` flags add to the file's shares. On SIGHUP the daemon
//! reads the file again and reconciles its shares (the interfaces stay as they are).
//!
//! Every error in the file names its line: the parser's own (syntax, unknown keys, values of
//! the wrong type) and those found after it (a value out of range, a share given twice), whose
//! line [`lines`] looks up by the setting's key.

pub mod lines;
mod summary;

pub use summary::summary;

use std::{
    collections::BTreeSet,
    fs,
    net::{Ipv4Addr, SocketAddr, SocketAddrV4},
    path::{Path, PathBuf},
    time::Duration,
};

use serde::Deserialize;

use self::lines::Step;
use crate::{
    policy::{PcpSettings, Settings, UpnpConfig},
    share::{Proto, ShareId, ShareSpec},
};

pub use crate::dataplane::XdpMode;

/// The config file as written.
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct FileConfig {
    wan: Option<String>,
    lan: Option<String>,
    xdp_mode: Option<XdpMode>,
    state_dir: Option<PathBuf>,
    instance: Option<String>,
    bpffs: Option<PathBuf>,
    log_level: Option<String>,
    /// The IPv4 exposed host (a LAN host that gets what no share claims).
    exposed_host: Option<Ipv4Addr>,
    /// The IPv6 exposed host (every port of it open).
    exposed_host6: Option<std::net::Ipv6Addr>,
    share: Vec<FileShare>,
    upnp: UpnpConfig,
    pcp: PcpSettings,
    ipv6: FileIpv6,
    hairpin: FileHairpin,
    api: FileApi,
    #[serde(rename = "wan_link")]
    link: FileLink,
    ddns: Option<crate::ddns::FileDdns>,
}

/// The `[api]` section.
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct FileApi {
    listen: Option<SocketAddr>,
    metrics_auth: bool,
    webhook: Option<String>,
    page_names: Vec<String>,
}

/// The `[hairpin]` section.
#[derive(Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct FileHairpin {
    enabled: bool,
}

impl Default for FileHairpin {
    fn default() -> Self {
        Self { enabled: true }
    }
}

/// The `[ipv6]` section.
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct FileIpv6 {
    inbound: Inbound6,
}

/// What becomes of inbound IPv6 to LAN hosts without a pinhole.
///
/// `Deny` is the default, as on a FRITZ!Box and as RFC 6092 recommends for simple CPE: the
/// LAN is closed until the owner or an application (UPnP AddPinhole, PCP) opens it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Inbound6 {
    /// Handed to the kernel (its firewall decides). UPnP then reports the firewall off and
    /// refuses pinholes (702): they would open nothing.
    Pass,
    /// TCP connection attempts (SYN without ACK) are dropped in XDP; the rest goes to the
    /// kernel, whose connection tracking tells UDP replies from new flows.
    #[default]
    Deny,
}

/// The `[wan_link]` section.
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct FileLink {
    flap_window: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileShare {
    name: Option<String>,
    proto: Proto,
    external_port: FilePorts,
    internal: SocketAddrV4,
    remote: Option<Ipv4Addr>,
    #[serde(default = "enabled_by_default")]
    enabled: bool,
    /// `false`: LAN hosts do not reach it through the external address.
    #[serde(default = "enabled_by_default")]
    hairpin: bool,
}

/// `external_port = 8080` or `external_port = "27015-27030"` (a range; a single port is fine
/// as a string too).
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum FilePorts {
    Number(u16),
    Text(String),
}

const fn enabled_by_default() -> bool {
    true
}

/// Command-line values the config merges with the file.
#[derive(Clone, Debug, Default)]
pub struct Overrides {
    pub wan: Option<String>,
    pub lan: Option<String>,
    pub xdp_mode: Option<XdpMode>,
    pub shares: Vec<ShareSpec>,
    pub file: Option<PathBuf>,
    pub state_dir: Option<PathBuf>,
    pub upnp_port: Option<u16>,
    pub api: Option<SocketAddr>,
    pub instance: Option<String>,
    pub bpffs: Option<PathBuf>,
}

/// Where the daemon keeps its state without `--state-dir` or `state_dir` in the file.
pub const DEFAULT_STATE_DIR: &str = "/var/lib/portfwd";

/// Where the REST API and `/metrics` listen without `--api` or `[api] listen`: loopback only,
/// so nothing off the box reaches the owner's controls unless the owner says so.
pub const DEFAULT_API: SocketAddr = SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 9780));

/// The REST API's settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiSettings {
    pub listen: SocketAddr,
    /// Whether `/metrics` needs the bearer token (off: Prometheus scrapes it as is).
    pub metrics_auth: bool,
    /// Called (HTTP POST, JSON) when a share is switched on.
    pub webhook: Option<crate::webhook::Url>,
    /// Names the owner's page answers to besides IP addresses and `localhost` (a reverse
    /// proxy's name); any other `Host` is refused, against DNS rebinding.
    pub page_names: Vec<String>,
}

/// The validated configuration the daemon runs with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    pub wan: String,
    pub lan: String,
    pub xdp_mode: XdpMode,
    /// Static shares, in the order given (file first, then flags).
    pub shares: Vec<ShareSpec>,
    pub file: Option<PathBuf>,
    pub state_dir: PathBuf,
    /// `log_level` from the file (checked); `$RUST_LOG` wins over it.
    pub log_level: Option<String>,
    /// The owner's settings from the file: `[upnp]` and `[pcp]`.
    pub upnp: Settings,
    pub ipv6_inbound: Inbound6,
    /// Whether LAN hosts reach shares through the external address (each share may still
    /// turn it off for itself).
    pub hairpin: bool,
    pub api: ApiSettings,
    /// A WAN outage shorter than this is logged as one event.
    pub flap_window: Duration,
    /// Dynamic DNS (`[ddns]`), if configured.
    pub ddns: Option<crate::ddns::Ddns>,
    /// The name the pinned objects go under (`/sys/fs/bpf/portfwd/NAME`); `None`: the WAN
    /// interface and the network namespace's inode.
    pub instance: Option<String>,
    /// The bpffs mount the objects are pinned in (`/sys/fs/bpf` unless told otherwise).
    pub bpffs: PathBuf,
}

/// A configuration that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("config file {}, {error}", path.display())]
    Parse { path: PathBuf, error: ParseError },
    /// An error in the config file, with its line where the setting is in the file.
    #[error("config file {}{}: {error}", path.display(), line.map_or_else(String::new, |l| format!(", line {l}")))]
    At {
        path: PathBuf,
        line: Option<usize>,
        error: Box<ConfigError>,
    },
    #[error("no {0} interface: pass --{0} or set `{0}` in the config file")]
    MissingInterface(&'static str),
    #[error("--wan and --lan are both {0}: they must be different interfaces")]
    SameInterface(String),
    #[error("share {0}: port 0 is not a valid port")]
    PortZero(String),
    #[error("share {0} is given twice")]
    Duplicate(ShareId),
    #[error("share {0} overlaps share {1}: a port is shared once per remote host")]
    Overlap(ShareId, ShareId),
    #[error("{0}")]
    Ports(crate::share::SpecError),
    #[error("{0}")]
    Upnp(crate::policy::Invalid),
    #[error("{0}")]
    Pcp(String),
    #[error("log_level: {0}")]
    LogLevel(String),
    #[error("api.webhook: {0}")]
    Webhook(String),
    #[error("wan_link.flap_window is {0}: expected 1 to 86400 seconds")]
    FlapWindow(u64),
    #[error("instance `{0}`: expected 1 to 64 letters, digits, `.`, `_` or `-`")]
    Instance(String),
    #[error("ddns.{key}: {message}")]
    Ddns { key: &'static str, message: String },
}

impl Config {
    /// Reads the file (if any) and merges `overrides` over it. An error in the file names the
    /// file and the line.
    pub fn load(overrides: Overrides) -> Result<Self, ConfigError> {
        let Some(path) = overrides.file.clone() else {
            return Self::merge(FileConfig::default(), overrides).map_err(|(error, _)| error);
        };
        let text = read_text(&path)?;
        let file = parse(&text).map_err(|error| ConfigError::Parse {
            path: path.clone(),
            error,
        })?;
        let in_file = file.share.len();
        let from_flags = overrides.wan.is_some() && overrides.lan.is_some();
        Self::merge(file, overrides).map_err(|(error, key)| {
            let key = match (&error, key) {
                // A share given twice is the file's fault only if both are in it.
                (ConfigError::Duplicate(_), Some(Key::Share(i, _))) if i >= in_file => None,
                (ConfigError::SameInterface(_), _) if from_flags => None,
                (_, key) => key,
            };
            let line = key.and_then(|key| lines::line_of(&text, &key.steps()));
            match (&error, line) {
                // Not in the file at all: the message says where to set it.
                (ConfigError::MissingInterface(_), _) => error,
                _ => ConfigError::At {
                    path,
                    line,
                    error: Box::new(error),
                },
            }
        })
    }

    /// The file's settings with `overrides` over them, checked; an error comes with the key of
    /// the setting at fault.
    fn merge(file: FileConfig, overrides: Overrides) -> Result<Self, (ConfigError, Option<Key>)> {
        let mut shares = file_shares(file.share)?;
        shares.extend(overrides.shares);
        let wan = overrides
            .wan
            .or(file.wan)
            .ok_or((ConfigError::MissingInterface("wan"), None))?;
        let lan = overrides
            .lan
            .or(file.lan)
            .ok_or((ConfigError::MissingInterface("lan"), None))?;
        if wan == lan {
            return Err((ConfigError::SameInterface(wan), Some(Key::Path(&["lan"]))));
        }
        check_unique(&shares)?;
        let log_level = file
            .log_level
            .map(|level| {
                crate::logging::check_level(&level)
                    .map(|()| level)
                    .map_err(|e| (ConfigError::LogLevel(e), Some(Key::Path(&["log_level"]))))
            })
            .transpose()?;
        let mut upnp = file.upnp;
        if let Some(port) = overrides.upnp_port {
            upnp.port = port;
        }
        let mut upnp = upnp.compile().map_err(|invalid| {
            let key = Key::Upnp(invalid.key, invalid.index);
            (ConfigError::Upnp(invalid), Some(key))
        })?;
        file.pcp.check().map_err(|e| {
            (
                ConfigError::Pcp(e),
                Some(Key::Path(&["pcp", "min_lifetime"])),
            )
        })?;
        // The owner's settings in force hold NAT-PMP and PCP's too: admission reads them there.
        upnp.pcp = file.pcp;
        upnp.exposed = crate::policy::ExposedHosts {
            v4: file.exposed_host,
            v6: file.exposed_host6,
        };
        let webhook = file
            .api
            .webhook
            .map(|url| {
                crate::webhook::parse_url(&url).map_err(|e| {
                    (
                        ConfigError::Webhook(e),
                        Some(Key::Path(&["api", "webhook"])),
                    )
                })
            })
            .transpose()?;
        let ddns = ddns_section(file.ddns)?;
        let flap_window = file.link.flap_window.unwrap_or(300);
        if !(1..=86_400).contains(&flap_window) {
            return Err((
                ConfigError::FlapWindow(flap_window),
                Some(Key::Path(&["wan_link", "flap_window"])),
            ));
        }
        Ok(Self {
            wan,
            lan,
            xdp_mode: overrides.xdp_mode.or(file.xdp_mode).unwrap_or_default(),
            shares,
            file: overrides.file,
            state_dir: overrides
                .state_dir
                .or(file.state_dir)
                .unwrap_or_else(|| PathBuf::from(DEFAULT_STATE_DIR)),
            log_level,
            upnp,
            ipv6_inbound: file.ipv6.inbound,
            hairpin: file.hairpin.enabled,
            api: ApiSettings {
                listen: overrides.api.or(file.api.listen).unwrap_or(DEFAULT_API),
                metrics_auth: file.api.metrics_auth,
                page_names: file
                    .api
                    .page_names
                    .iter()
                    .map(|n| n.to_ascii_lowercase())
                    .collect(),
                webhook,
            },
            flap_window: Duration::from_secs(flap_window),
            ddns,
            bpffs: overrides
                .bpffs
                .or(file.bpffs)
                .unwrap_or_else(|| PathBuf::from(crate::dataplane::pins::BPFFS)),
            instance: match overrides.instance.or(file.instance) {
                Some(name) if !valid_instance(&name) => {
                    return Err((ConfigError::Instance(name), Some(Key::Path(&["instance"]))));
                }
                name => name,
            },
        })
    }

    /// The shares as they are now in the config file, plus the `--share` flags: what SIGHUP
    /// reconciles to.
    pub fn reload_shares(&self, flag_shares: &[ShareSpec]) -> Result<Vec<ShareSpec>, ConfigError> {
        let Some(path) = &self.file else {
            let shares = flag_shares.to_vec();
            check_unique(&shares).map_err(|(error, _)| error)?;
            return Ok(shares);
        };
        let text = read_text(path)?;
        let file = parse(&text).map_err(|error| ConfigError::Parse {
            path: path.clone(),
            error,
        })?;
        let in_file = file.share.len();
        let checked = file_shares(file.share).and_then(|mut shares| {
            shares.extend_from_slice(flag_shares);
            check_unique(&shares).map(|()| shares)
        });
        checked.map_err(|(error, key)| {
            let key = key.filter(|k| !matches!(k, Key::Share(i, _) if *i >= in_file));
            ConfigError::At {
                path: path.clone(),
                line: key.and_then(|key| lines::line_of(&text, &key.steps())),
                error: Box::new(error),
            }
        })
    }
}

/// Where in the file a setting is: its key path.
#[derive(Clone, Copy, Debug)]
enum Key {
    Path(&'static [&'static str]),
    /// `share[i]`, or one of its keys.
    Share(usize, Option<&'static str>),
    /// A key of `[upnp]`, and the index in it for a list (`devices`).
    Upnp(&'static str, Option<usize>),
    /// A key of `[ddns]`.
    Ddns(&'static str),
}

impl Key {
    fn steps(self) -> Vec<Step<'static>> {
        match self {
            Self::Path(path) => path.iter().map(|k| Step::Key(k)).collect(),
            Self::Share(i, key) => [Step::Key("share"), Step::Index(i)]
                .into_iter()
                .chain(key.map(Step::Key))
                .collect(),
            Self::Upnp(key, index) => [Step::Key("upnp"), Step::Key(key)]
                .into_iter()
                .chain(index.map(Step::Index))
                .collect(),
            Self::Ddns(key) => vec![Step::Key("ddns"), Step::Key(key)],
        }
    }
}

fn read_text(path: &Path) -> Result<String, ConfigError> {
    fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_owned(),
        source,
    })
}

/// What the TOML parser found wrong (syntax, an unknown key, a value of the wrong type), and
/// where.
#[derive(Debug, thiserror::Error)]
#[error("{}{message}", line.map_or_else(String::new, |l| format!("line {l}: ")))]
pub struct ParseError {
    pub line: Option<usize>,
    pub message: String,
}

fn parse(text: &str) -> Result<FileConfig, ParseError> {
    toml::from_str(text).map_err(|e| ParseError {
        line: e.span().map(|span| lines::line_at(text, span.start)),
        message: e.message().trim_end().to_owned(),
    })
}

fn file_shares(shares: Vec<FileShare>) -> Result<Vec<ShareSpec>, (ConfigError, Option<Key>)> {
    shares
        .into_iter()
        .enumerate()
        .map(|(i, s)| {
            let at = |key| Some(Key::Share(i, Some(key)));
            let (first, last) = match s.external_port {
                FilePorts::Number(port) => (port, port),
                FilePorts::Text(text) => crate::share::parse_ports(&text)
                    .map_err(|e| (ConfigError::Ports(e), at("external_port")))?,
            };
            let spec = ShareSpec {
                id: ShareId {
                    proto: s.proto,
                    ext_port: first,
                    remote: s.remote,
                    ext_last: last,
                },
                internal: s.internal,
                name: s.name,
                enabled: s.enabled,
                hairpin: s.hairpin,
            };
            spec.check_internal_range()
                .map_err(|e| (ConfigError::Ports(e), at("internal")))?;
            if spec.id.ext_port == 0 || spec.internal.port() == 0 {
                let key = if spec.id.ext_port == 0 {
                    "external_port"
                } else {
                    "internal"
                };
                return Err((
                    ConfigError::PortZero(spec.to_string()),
                    Some(Key::Share(i, Some(key))),
                ));
            }
            Ok(spec)
        })
        .collect()
}

/// The `[ddns]` section, checked, with the line of a wrong key.
fn ddns_section(
    section: Option<crate::ddns::FileDdns>,
) -> Result<Option<crate::ddns::Ddns>, (ConfigError, Option<Key>)> {
    section
        .map(crate::ddns::FileDdns::compile)
        .transpose()
        .map_err(|(message, key)| (ConfigError::Ddns { key, message }, Some(Key::Ddns(key))))
}

/// Whether `name` can name a directory of pins: no `/`, nothing hidden or odd.
fn valid_instance(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

fn check_unique(shares: &[ShareSpec]) -> Result<(), (ConfigError, Option<Key>)> {
    let mut seen = BTreeSet::new();
    for (i, share) in shares.iter().enumerate() {
        if !seen.insert(share.id) {
            return Err((ConfigError::Duplicate(share.id), Some(Key::Share(i, None))));
        }
    }
    // Sorted by protocol and first port, an overlap shows between a range and the shares
    // starting inside it.
    let ids: Vec<ShareId> = seen.into_iter().collect();
    for (n, id) in ids.iter().enumerate() {
        if let Some(other) = ids[n + 1..]
            .iter()
            .take_while(|o| o.proto == id.proto && o.ext_port <= id.ext_last)
            .find(|o| o.overlaps(*id))
        {
            // Named at the one that comes later in the file.
            let at = |id: &ShareId| shares.iter().position(|s| s.id == *id);
            let (later, earlier) = if at(other) > at(id) {
                (*other, *id)
            } else {
                (*id, *other)
            };
            return Err((
                ConfigError::Overlap(later, earlier),
                at(&later).map(|i| Key::Share(i, None)),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
