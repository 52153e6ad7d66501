//! The daemon's configuration: a TOML file and command-line flags, merged and validated before
//! anything is loaded or bound.
//!
//! ```toml
//! wan = "eth0"          # interface facing the internet
//! lan = "eth1"          # interface facing the LAN hosts
//! xdp_mode = "auto"     # auto | native | skb
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
//! [ipv6]
//! inbound = "pass"      # pass | deny: new TCP connections to LAN hosts without a pinhole
//!
//! [api]
//! listen = "127.0.0.1:9780"  # REST API and /metrics (--api)
//! metrics_auth = false       # true: /metrics needs the bearer token too
//! # webhook = "http://10.0.0.2:8000/portfwd"  # POSTed an event when a share is switched on
//!
//! [wan_link]
//! flap_window = 300     # seconds: a shorter outage is logged as one event
//! ```
//!
//! Flags win over the file; `--share` flags add to the file's shares. On SIGHUP the daemon
//! reads the file again and reconciles its shares (the interfaces stay as they are).

use std::{
    collections::BTreeSet,
    fs,
    net::{Ipv4Addr, SocketAddr, SocketAddrV4},
    path::{Path, PathBuf},
    time::Duration,
};

use serde::Deserialize;

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
    share: Vec<FileShare>,
    upnp: UpnpConfig,
    pcp: PcpSettings,
    ipv6: FileIpv6,
    api: FileApi,
    #[serde(rename = "wan_link")]
    link: FileLink,
}

/// The `[api]` section.
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct FileApi {
    listen: Option<SocketAddr>,
    metrics_auth: bool,
    webhook: Option<String>,
}

/// The `[ipv6]` section.
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct FileIpv6 {
    inbound: Inbound6,
}

/// What becomes of inbound IPv6 to LAN hosts without a pinhole.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Inbound6 {
    /// Handed to the kernel (its firewall decides).
    #[default]
    Pass,
    /// TCP connection attempts (SYN without ACK) are dropped in XDP; the rest goes to the
    /// kernel, whose connection tracking tells UDP replies from new flows.
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
    external_port: u16,
    internal: SocketAddrV4,
    remote: Option<Ipv4Addr>,
    #[serde(default = "enabled_by_default")]
    enabled: bool,
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
    /// The owner's settings from the file: `[upnp]` and `[pcp]`.
    pub upnp: Settings,
    pub ipv6_inbound: Inbound6,
    pub api: ApiSettings,
    /// A WAN outage shorter than this is logged as one event.
    pub flap_window: Duration,
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
    #[error("config file {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("no {0} interface: pass --{0} or set `{0}` in the config file")]
    MissingInterface(&'static str),
    #[error("--wan and --lan are both {0}: they must be different interfaces")]
    SameInterface(String),
    #[error("share {0}: port 0 is not a valid port")]
    PortZero(String),
    #[error("share {0} is given twice")]
    Duplicate(ShareId),
    #[error("{0}")]
    Upnp(String),
    #[error("{0}")]
    Pcp(String),
    #[error("api.webhook: {0}")]
    Webhook(String),
    #[error("wan_link.flap_window is {0}: expected 1 to 86400 seconds")]
    FlapWindow(u64),
}

impl Config {
    /// Reads the file (if any) and merges `overrides` over it.
    pub fn load(overrides: Overrides) -> Result<Self, ConfigError> {
        let file = match &overrides.file {
            Some(path) => read_file(path)?,
            None => FileConfig::default(),
        };
        let mut shares = file_shares(file.share)?;
        shares.extend(overrides.shares);
        let wan = overrides
            .wan
            .or(file.wan)
            .ok_or(ConfigError::MissingInterface("wan"))?;
        let lan = overrides
            .lan
            .or(file.lan)
            .ok_or(ConfigError::MissingInterface("lan"))?;
        if wan == lan {
            return Err(ConfigError::SameInterface(wan));
        }
        check_unique(&shares)?;
        let mut upnp = file.upnp;
        if let Some(port) = overrides.upnp_port {
            upnp.port = port;
        }
        let mut upnp = upnp.compile().map_err(ConfigError::Upnp)?;
        file.pcp.check().map_err(ConfigError::Pcp)?;
        // The owner's settings in force hold NAT-PMP and PCP's too: admission reads them there.
        upnp.pcp = file.pcp;
        let webhook = file
            .api
            .webhook
            .map(|url| url.parse().map_err(ConfigError::Webhook))
            .transpose()?;
        let flap_window = file.link.flap_window.unwrap_or(300);
        if !(1..=86_400).contains(&flap_window) {
            return Err(ConfigError::FlapWindow(flap_window));
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
            upnp,
            ipv6_inbound: file.ipv6.inbound,
            api: ApiSettings {
                listen: overrides.api.or(file.api.listen).unwrap_or(DEFAULT_API),
                metrics_auth: file.api.metrics_auth,
                webhook,
            },
            flap_window: Duration::from_secs(flap_window),
        })
    }

    /// The shares as they are now in the config file, plus the `--share` flags: what SIGHUP
    /// reconciles to.
    pub fn reload_shares(&self, flag_shares: &[ShareSpec]) -> Result<Vec<ShareSpec>, ConfigError> {
        let mut shares = match &self.file {
            Some(path) => file_shares(read_file(path)?.share)?,
            None => Vec::new(),
        };
        shares.extend_from_slice(flag_shares);
        check_unique(&shares)?;
        Ok(shares)
    }
}

fn read_file(path: &Path) -> Result<FileConfig, ConfigError> {
    let text = fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_owned(),
        source,
    })?;
    parse(&text).map_err(|message| ConfigError::Parse {
        path: path.to_owned(),
        message,
    })
}

fn parse(text: &str) -> Result<FileConfig, String> {
    toml::from_str(text).map_err(|e| e.message().to_owned() + &location(text, e.span()))
}

fn location(text: &str, span: Option<std::ops::Range<usize>>) -> String {
    span.map_or_else(String::new, |span| {
        let line = text[..span.start.min(text.len())].matches('\n').count() + 1;
        format!(" (line {line})")
    })
}

fn file_shares(shares: Vec<FileShare>) -> Result<Vec<ShareSpec>, ConfigError> {
    shares
        .into_iter()
        .map(|s| {
            let spec = ShareSpec {
                id: ShareId {
                    proto: s.proto,
                    ext_port: s.external_port,
                    remote: s.remote,
                },
                internal: s.internal,
                name: s.name,
                enabled: s.enabled,
            };
            if spec.id.ext_port == 0 || spec.internal.port() == 0 {
                return Err(ConfigError::PortZero(spec.to_string()));
            }
            Ok(spec)
        })
        .collect()
}

fn check_unique(shares: &[ShareSpec]) -> Result<(), ConfigError> {
    let mut seen = BTreeSet::new();
    for share in shares {
        if !seen.insert(share.id) {
            return Err(ConfigError::Duplicate(share.id));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_full_file() {
        let file = parse(
            r#"
            wan = "eth0"
            lan = "eth1"
            xdp_mode = "skb"

            [[share]]
            name = "web"
            proto = "tcp"
            external_port = 8080
            internal = "10.0.0.10:80"

            [[share]]
            proto = "udp"
            external_port = 27015
            internal = "10.0.0.11:27015"
            remote = "198.51.100.7"
            enabled = false
            "#,
        )
        .expect("valid");
        assert_eq!(file.wan.as_deref(), Some("eth0"));
        assert_eq!(file.xdp_mode, Some(XdpMode::Skb));
        let shares = file_shares(file.share).expect("shares");
        assert_eq!(shares.len(), 2);
        assert_eq!(shares[0].name.as_deref(), Some("web"));
        assert!(shares[0].enabled);
        assert!(!shares[1].enabled);
        assert_eq!(shares[1].id.remote, Some(Ipv4Addr::new(198, 51, 100, 7)));
    }

    #[test]
    fn unknown_keys_and_bad_values_are_named() {
        let err = parse("wan = \"eth0\"\nlna = \"eth1\"\n").expect_err("typo");
        assert!(err.contains("lna") && err.contains("line 2"), "{err}");
        let err =
            parse("[[share]]\nproto = \"icmp\"\nexternal_port = 1\ninternal = \"10.0.0.1:1\"\n")
                .expect_err("proto");
        assert!(err.contains("icmp"), "{err}");
        let err =
            parse("[[share]]\nproto = \"tcp\"\nexternal_port = 70000\ninternal = \"10.0.0.1:1\"\n")
                .expect_err("port");
        assert!(err.contains("line 3"), "{err}");
    }

    #[test]
    fn port_zero_in_the_file_is_refused() {
        let file =
            parse("[[share]]\nproto = \"tcp\"\nexternal_port = 0\ninternal = \"10.0.0.1:1\"\n")
                .expect("parses");
        assert!(matches!(
            file_shares(file.share),
            Err(ConfigError::PortZero(_))
        ));
    }

    #[test]
    fn flags_override_the_file_and_duplicates_are_refused() {
        let dir = std::env::temp_dir().join(format!("portfwd-config-{}", std::process::id()));
        fs::create_dir_all(&dir).expect("dir");
        let path = dir.join("portfwd.toml");
        fs::write(
            &path,
            "wan = \"a\"\nlan = \"b\"\n[[share]]\nproto = \"tcp\"\nexternal_port = 80\ninternal = \"10.0.0.2:80\"\n",
        )
        .expect("write");
        let config = Config::load(Overrides {
            wan: Some("wan0".into()),
            file: Some(path.clone()),
            shares: vec!["udp:80=10.0.0.2:80".parse().expect("spec")],
            ..Overrides::default()
        })
        .expect("config");
        assert_eq!((config.wan.as_str(), config.lan.as_str()), ("wan0", "b"));
        assert_eq!(config.shares.len(), 2);
        let dup = Config::load(Overrides {
            file: Some(path),
            shares: vec!["tcp:80=10.0.0.3:80".parse().expect("spec")],
            ..Overrides::default()
        });
        assert!(matches!(dup, Err(ConfigError::Duplicate(_))), "{dup:?}");
        fs::remove_dir_all(dir).expect("cleanup");
    }

    #[test]
    fn api_and_link_sections() {
        let file = parse(
            "[api]\nlisten = \"0.0.0.0:9000\"\nmetrics_auth = true\nwebhook = \"http://10.0.0.2:8000/hook\"\n[wan_link]\nflap_window = 10\n",
        )
        .expect("valid");
        assert_eq!(file.api.listen, Some("0.0.0.0:9000".parse().expect("addr")));
        assert!(file.api.metrics_auth);
        assert_eq!(file.link.flap_window, Some(10));
        let err = parse("[api]\nlisten = \"localhost\"\n").expect_err("not an address");
        assert!(err.contains("line 2"), "{err}");
        let config = Config::load(Overrides {
            wan: Some("a".into()),
            lan: Some("b".into()),
            ..Overrides::default()
        })
        .expect("defaults");
        assert_eq!(config.api.listen, DEFAULT_API);
        assert!(!config.api.metrics_auth);
        assert_eq!(config.flap_window, Duration::from_mins(5));
    }

    #[test]
    fn interfaces_are_required_and_distinct() {
        let missing = Config::load(Overrides {
            lan: Some("b".into()),
            ..Overrides::default()
        });
        assert!(matches!(missing, Err(ConfigError::MissingInterface("wan"))));
        let same = Config::load(Overrides {
            wan: Some("a".into()),
            lan: Some("a".into()),
            ..Overrides::default()
        });
        assert!(matches!(same, Err(ConfigError::SameInterface(_))));
    }
}
