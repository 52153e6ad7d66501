//! The `portfwd` command line: what `main` parses, and what the man pages and shell
//! completions are made from (`portfwd-docs`, run when the Debian package is built).

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::{
    cli::{Connection, DeviceCommand, EventsArgs, ExposedCommand, SettingsCommand, ShareCommand},
    config::XdpMode,
    share::ShareSpec,
};

/// Where the packaged service's config file is, and what `check-config` reads by default.
pub const DEFAULT_CONFIG: &str = "/etc/portfwd/portfwd.toml";

/// Port sharing for Linux edge boxes, forwarded in XDP.
#[derive(Debug, Parser)]
#[command(
    name = "portfwd",
    version,
    about = "Port sharing for Linux edge boxes, forwarded in XDP",
    long_about = "Port sharing for Linux edge boxes, forwarded in XDP: `portfwd run` is the daemon; the other commands talk to it through its REST API, except `check-config`, which reads a config file alone."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Attach to the WAN and LAN interfaces and forward the shared ports.
    Run(RunArgs),
    /// Add, list, change and delete port shares (through the running daemon's API).
    Share {
        #[command(subcommand)]
        command: ShareCommand,
        #[command(flatten)]
        connection: Connection,
    },
    /// LAN devices and their permission to share ports independently.
    Device {
        #[command(subcommand)]
        command: DeviceCommand,
        #[command(flatten)]
        connection: Connection,
    },
    /// The event log: share changes, device permissions, WAN link and address.
    Events {
        #[command(flatten)]
        args: EventsArgs,
        #[command(flatten)]
        connection: Connection,
    },
    /// The daemon's status: WAN link and address, XDP modes, shares.
    Status {
        #[command(flatten)]
        connection: Connection,
    },
    /// UPnP settings: on or off, secure mode, quotas.
    Settings {
        #[command(subcommand)]
        command: SettingsCommand,
        #[command(flatten)]
        connection: Connection,
    },
    /// The exposed host: what no share claims goes to one LAN host per address family. Without
    /// a subcommand, shows them and their counters.
    ExposedHost {
        #[command(subcommand)]
        command: Option<ExposedCommand>,
        #[command(flatten)]
        connection: Connection,
    },
    /// Check a config file without root and without touching the network: print the shares
    /// and settings it would apply, or its errors with their lines.
    CheckConfig {
        /// The config file.
        #[arg(value_name = "FILE", default_value = DEFAULT_CONFIG)]
        file: PathBuf,
    },
    /// Detach the programs and remove the pinned maps and links of a stopped daemon: a clean
    /// stop (SIGTERM leaves forwarding in place) and what uninstalling does.
    Down(DownArgs),
}

#[derive(Debug, clap::Args)]
pub struct DownArgs {
    /// The config file the daemon ran with (for its interfaces and instance).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// The WAN interface the daemon ran on.
    #[arg(long, value_name = "IF")]
    pub wan: Option<String>,
    /// The LAN interface the daemon ran on.
    #[arg(long, value_name = "IF")]
    pub lan: Option<String>,
    /// The instance name it ran under (`--instance`), if it was given one.
    #[arg(long, value_name = "NAME")]
    pub instance: Option<String>,
    /// The bpffs mount it pinned in (`--bpffs`), if not /sys/fs/bpf.
    #[arg(long, value_name = "DIR")]
    pub bpffs: Option<PathBuf>,
}

#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// Interface facing the internet.
    #[arg(long, value_name = "IF")]
    pub wan: Option<String>,
    /// Interface facing the LAN hosts.
    #[arg(long, value_name = "IF")]
    pub lan: Option<String>,
    /// A port share, PROTO:EXTPORT[-LAST][@REMOTE]=IP:PORT (e.g. tcp:8080=10.0.0.10:80, or a range tcp:27015-27030=10.0.0.20:27015); repeatable.
    #[arg(long = "share", value_name = "SHARE")]
    pub shares: Vec<ShareSpec>,
    /// TOML config file (interfaces, XDP mode, shares); re-read on SIGHUP.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// How to attach the XDP programs.
    #[arg(long, value_enum, value_name = "MODE")]
    pub xdp_mode: Option<XdpMode>,
    /// Where leased shares and the UPnP identity are kept [default: /var/lib/portfwd].
    #[arg(long, value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
    /// TCP port of the UPnP HTTP server on the LAN address [default: 5000].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..))]
    pub upnp_port: Option<u16>,
    /// Where the REST API and /metrics listen [default: 127.0.0.1:9780].
    #[arg(long, value_name = "ADDR")]
    pub api: Option<std::net::SocketAddr>,
    /// Name of the pinned objects (/sys/fs/bpf/portfwd/NAME) [default: WAN-NETNS, the WAN
    /// interface and the network namespace's inode].
    #[arg(long, value_name = "NAME")]
    pub instance: Option<String>,
    /// The bpffs mount to pin in [default: /sys/fs/bpf]. `ip netns exec` hides the host's
    /// /sys/fs/bpf; a bpffs mounted elsewhere stays visible.
    #[arg(long, value_name = "DIR")]
    pub bpffs: Option<PathBuf>,
}
