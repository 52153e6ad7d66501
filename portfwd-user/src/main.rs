//! The `portfwd` command.

use std::{path::PathBuf, process::ExitCode};

use clap::{Parser, Subcommand};
use portfwd::{
    cli::{self, Connection, DeviceCommand, EventsArgs, SettingsCommand, ShareCommand},
    config::{Config, Overrides, XdpMode},
    share::ShareSpec,
};

/// Port sharing for Linux edge boxes, forwarded in XDP.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
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
    /// Detach the programs and remove the pinned maps and links of a stopped daemon: a clean
    /// stop (SIGTERM leaves forwarding in place) and what uninstalling does.
    Down(DownArgs),
}

#[derive(Debug, clap::Args)]
struct DownArgs {
    /// The config file the daemon ran with (for its interfaces and instance).
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// The WAN interface the daemon ran on.
    #[arg(long, value_name = "IF")]
    wan: Option<String>,
    /// The LAN interface the daemon ran on.
    #[arg(long, value_name = "IF")]
    lan: Option<String>,
    /// The instance name it ran under (`--instance`), if it was given one.
    #[arg(long, value_name = "NAME")]
    instance: Option<String>,
    /// The bpffs mount it pinned in (`--bpffs`), if not /sys/fs/bpf.
    #[arg(long, value_name = "DIR")]
    bpffs: Option<PathBuf>,
}

#[derive(Debug, clap::Args)]
struct RunArgs {
    /// Interface facing the internet.
    #[arg(long, value_name = "IF")]
    wan: Option<String>,
    /// Interface facing the LAN hosts.
    #[arg(long, value_name = "IF")]
    lan: Option<String>,
    /// A port share, PROTO:EXTPORT[@REMOTE]=IP:PORT (e.g. tcp:8080=10.0.0.10:80); repeatable.
    #[arg(long = "share", value_name = "SHARE")]
    shares: Vec<ShareSpec>,
    /// TOML config file (interfaces, XDP mode, shares); re-read on SIGHUP.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// How to attach the XDP programs.
    #[arg(long, value_enum, value_name = "MODE")]
    xdp_mode: Option<XdpMode>,
    /// Where leased shares and the UPnP identity are kept [default: /var/lib/portfwd].
    #[arg(long, value_name = "DIR")]
    state_dir: Option<PathBuf>,
    /// TCP port of the UPnP HTTP server on the LAN address [default: 5000].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..))]
    upnp_port: Option<u16>,
    /// Where the REST API and /metrics listen [default: 127.0.0.1:9780].
    #[arg(long, value_name = "ADDR")]
    api: Option<std::net::SocketAddr>,
    /// Name of the pinned objects (/sys/fs/bpf/portfwd/NAME) [default: WAN-NETNS, the WAN
    /// interface and the network namespace's inode].
    #[arg(long, value_name = "NAME")]
    instance: Option<String>,
    /// The bpffs mount to pin in [default: /sys/fs/bpf]. `ip netns exec` hides the host's
    /// /sys/fs/bpf; a bpffs mounted elsewhere stays visible.
    #[arg(long, value_name = "DIR")]
    bpffs: Option<PathBuf>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let (command, connection) = match cli.command {
        Command::Run(args) => return run(args),
        Command::Down(args) => return down(args),
        Command::Share {
            command,
            connection,
        } => (cli::Command::Share(command), connection),
        Command::Device {
            command,
            connection,
        } => (cli::Command::Device(command), connection),
        Command::Events { args, connection } => (cli::Command::Events(args), connection),
        Command::Status { connection } => (cli::Command::Status, connection),
        Command::Settings {
            command,
            connection,
        } => (cli::Command::Settings(command), connection),
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => return fail(&err),
    };
    match runtime.block_on(cli::run(command, &connection)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => fail(&err),
    }
}

fn run(args: RunArgs) -> ExitCode {
    let flag_shares = args.shares.clone();
    let config = match Config::load(Overrides {
        wan: args.wan,
        lan: args.lan,
        xdp_mode: args.xdp_mode,
        shares: args.shares,
        file: args.config,
        state_dir: args.state_dir,
        upnp_port: args.upnp_port,
        api: args.api,
        instance: args.instance,
        bpffs: args.bpffs,
    }) {
        Ok(config) => config,
        Err(err) => return fail(&err),
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => return fail(&err),
    };
    match runtime.block_on(portfwd::daemon::run(config, flag_shares)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => fail(&err),
    }
}

fn down(args: DownArgs) -> ExitCode {
    let config = match Config::load(Overrides {
        wan: args.wan,
        lan: args.lan,
        file: args.config,
        instance: args.instance,
        bpffs: args.bpffs,
        ..Overrides::default()
    }) {
        Ok(config) => config,
        Err(err) => return fail(&err),
    };
    match portfwd::daemon::down(&config.bpffs, &config.wan, config.instance.as_deref()) {
        Ok((dir, true)) => {
            println!(
                "detached portfwd from {} and {} and removed {}",
                config.wan,
                config.lan,
                dir.display()
            );
            ExitCode::SUCCESS
        }
        Ok((dir, false)) => {
            println!(
                "nothing pinned at {}: portfwd was not left running",
                dir.display()
            );
            ExitCode::SUCCESS
        }
        Err(err) => fail(&err),
    }
}

fn fail(err: &(dyn std::error::Error + 'static)) -> ExitCode {
    eprintln!("portfwd: {}", portfwd::error_chain(err));
    ExitCode::FAILURE
}
