//! `portfwd run`: loads and attaches the data plane, keeps it in step with the share table and
//! the kernel, and detaches on SIGINT or SIGTERM.
//!
//! On the LAN side it serves UPnP ([`crate::upnp`]); leased shares are kept in the state
//! directory ([`crate::state`]) and restored with their time left when it starts again.
//!
//! Signals: SIGINT/SIGTERM stop the daemon (the programs are detached: their links are owned by
//! this process and go with it, even on `kill -9`); SIGHUP re-reads the config file's shares.

use std::{
    fmt::Write as _,
    io::{Read as _, Write as _},
    net::{Ipv4Addr, SocketAddrV4},
    sync::Arc,
    time::Duration,
};

use portfwd_common::{PROG_LAN, PROG_WAN};
use tokio::{
    net::{TcpListener, UdpSocket},
    signal::unix::{SignalKind, signal},
    sync::watch,
};

use crate::{
    config::Config,
    dataplane::{AttachedMode, Dataplane, DataplaneError},
    netinfo::{self, NetInfoError},
    netlink::Monitor,
    share::ShareSpec,
    state::{StateDir, StateError},
    table::{self, Table, TableError, TableHandle},
    upnp::{
        Identity, Service,
        control::{Control, SystemHost},
        description, http, ssdp,
    },
};

/// Why the daemon could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error(transparent)]
    Interface(#[from] NetInfoError),
    #[error(transparent)]
    Dataplane(#[from] DataplaneError),
    #[error(transparent)]
    Table(#[from] TableError),
    #[error("subscribing to rtnetlink notifications")]
    Netlink(#[source] std::io::Error),
    #[error("installing signal handlers")]
    Signals(#[source] std::io::Error),
    #[error(transparent)]
    State(#[from] StateError),
    #[error("the LAN interface {0} has no IPv4 address for UPnP to listen on")]
    NoLanAddress(String),
    #[error("listening for UPnP on {what}")]
    Listen {
        what: String,
        #[source]
        source: std::io::Error,
    },
}

/// Runs the daemon until SIGINT or SIGTERM. `flag_shares` are the `--share` flags, kept across
/// SIGHUP reloads of the file.
pub async fn run(config: Config, flag_shares: Vec<ShareSpec>) -> Result<(), DaemonError> {
    let wan_index = netinfo::ifindex(&config.wan)?;
    let lan_index = netinfo::ifindex(&config.lan)?;
    let lan_subnets = netinfo::ipv4_subnets(&config.lan)?;

    // Validate every share before touching the kernel, so bad input costs nothing.
    table::check_static(lan_subnets.clone(), config.shares.clone())?;

    // Loading needs the privileges everything else needs too: the clearest first error.
    let mut dataplane = Dataplane::load()?;
    let state = StateDir::open(&config.state_dir)?;
    let saved_leases = load_leases(&state);
    let lan_addr = lan_subnets
        .first()
        .map(|s| s.addr)
        .ok_or_else(|| DaemonError::NoLanAddress(config.lan.clone()))?;
    let identity = identity(&state, &config, lan_addr)?;
    let (http_listener, ssdp_socket) = bind_upnp(&config, lan_index, lan_addr)?;

    warn_if_not_forwarding(&config.wan);
    warn_if_not_forwarding(&config.lan);
    let mut monitor = Monitor::open().map_err(DaemonError::Netlink)?;
    let wan_mode = dataplane.attach(PROG_WAN, &config.wan, wan_index, config.xdp_mode)?;
    let lan_mode = dataplane.attach(PROG_LAN, &config.lan, lan_index, config.xdp_mode)?;

    let mut table = Table::new(lan_subnets.clone(), dataplane, wan_index, lan_index);
    let external = netinfo::external_addr(&config.wan)?;
    table.set_external(external)?;
    table.forwarding_changed()?;
    table.replace_static(config.shares.clone())?;
    // Only now: restoring saves, and the file must not lose leases that fail to restore
    // because the kernel was not ready.
    table.set_state(state);
    let restored = table.restore(saved_leases, tokio::time::Instant::now());
    let (handle, task) = table::spawn(table);

    let (stop_servers, servers_stopped) = watch::channel(());
    let stopped = move || {
        let mut rx = servers_stopped.clone();
        async move {
            let _ = rx.changed().await;
        }
    };
    let server = Arc::new(http::Server::new(
        Control {
            table: handle.clone(),
            settings: Arc::new(config.upnp.clone()),
            host: Arc::new(SystemHost {
                wan: config.wan.clone(),
            }),
            started: std::time::Instant::now(),
        },
        identity.clone(),
        lan_subnets.clone(),
    ));
    let http_task = tokio::spawn(http::serve(http_listener, server, stopped()));
    let ssdp_task = tokio::spawn(ssdp::run(
        ssdp_socket,
        identity.clone(),
        lan_subnets,
        config.upnp.notify_interval,
        stopped(),
    ));

    let shares = handle.entries().await?;
    announce_ready(
        &config,
        wan_mode,
        lan_mode,
        external,
        shares.len(),
        &identity,
    );
    if restored > 0 {
        tracing::info!("restored {restored} leased share(s) from the state directory");
    }

    let result = serve(&config, &flag_shares, &handle, &mut monitor).await;
    // Servers first (SSDP says goodbye), then the table, whose end detaches the programs.
    let _ = stop_servers.send(());
    let _ = tokio::time::timeout(Duration::from_secs(2), async {
        let _ = ssdp_task.await;
        let _ = http_task.await;
    })
    .await;
    drop(handle);
    // The table hands back the data plane; dropping it detaches both programs.
    if let Ok(table) = task.await {
        drop(table);
        tracing::info!("detached from {} and {}", config.wan, config.lan);
    }
    result
}

/// The saved leases. A file that cannot be read is set aside and the daemon starts without
/// leases.
fn load_leases(state: &StateDir) -> Vec<crate::state::SavedLease> {
    state.load_leases().unwrap_or_else(|err| {
        let kept = state.set_leases_aside().map_or_else(String::new, |aside| {
            format!("; the file is kept as {}", aside.display())
        });
        tracing::error!(
            "leased shares not restored: {}{kept}",
            crate::error_chain(&err)
        );
        Vec::new()
    })
}

/// The UPnP identity: the UUID made on first start, a boot id that grows with every start and
/// a configuration id that follows the descriptions.
fn identity(
    state: &StateDir,
    config: &Config,
    lan_addr: Ipv4Addr,
) -> Result<Identity, DaemonError> {
    let uuid = state.read_or_create("uuid", 0o644, random_uuid)?;
    let uuid = uuid.trim().to_owned();
    let version = config.upnp.igd_version;
    // FNV-1a over what the descriptions depend on.
    let mut hash: u32 = 0x811c_9dc5;
    for byte in description::scpd(Service::IpConnection, version)
        .bytes()
        .chain(description::scpd(Service::CommonInterface, version).bytes())
        .chain(uuid.bytes())
    {
        hash = (hash ^ u32::from(byte)).wrapping_mul(0x0100_0193);
    }
    let boot_secs = crate::state::unix_now();
    Ok(Identity {
        uuid,
        version,
        lan_addr,
        http_port: config.upnp.port,
        boot_id: u32::try_from(boot_secs & 0x7fff_ffff).unwrap_or(0),
        config_id: hash & 0x00ff_ffff,
    })
}

/// A random (version 4) UUID.
fn random_uuid() -> String {
    let mut bytes = [0u8; 16];
    if std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .is_err()
    {
        // No urandom: the time and process id still make a UUID no neighbour has.
        let seed = crate::state::unix_now() ^ u64::from(std::process::id());
        bytes[..8].copy_from_slice(&seed.to_le_bytes());
    }
    bytes[6] = (bytes[6] & 0x0f) | 0x40;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    let hex = bytes.iter().fold(String::new(), |mut hex, b| {
        let _ = write!(hex, "{b:02x}");
        hex
    });
    format!(
        "{}-{}-{}-{}-{}\n",
        &hex[..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..]
    )
}

/// Binds the UPnP HTTP listener to the LAN address and the SSDP socket to the LAN interface,
/// both with `SO_BINDTODEVICE`, so nothing arriving on the WAN reaches them.
fn bind_upnp(
    config: &Config,
    lan_index: u32,
    lan_addr: Ipv4Addr,
) -> Result<(TcpListener, UdpSocket), DaemonError> {
    let addr = SocketAddrV4::new(lan_addr, config.upnp.port);
    let listen = || -> std::io::Result<TcpListener> {
        let socket = socket2::Socket::new(
            socket2::Domain::IPV4,
            socket2::Type::STREAM,
            Some(socket2::Protocol::TCP),
        )?;
        socket.set_reuse_address(true)?;
        socket.bind_device(Some(config.lan.as_bytes()))?;
        socket.bind(&addr.into())?;
        socket.listen(64)?;
        socket.set_nonblocking(true)?;
        TcpListener::from_std(socket.into())
    };
    let http_listener = listen().map_err(|source| DaemonError::Listen {
        what: format!("http://{addr}"),
        source,
    })?;
    let ssdp_socket =
        ssdp::bind(&config.lan, lan_index, lan_addr).map_err(|source| DaemonError::Listen {
            what: format!(
                "SSDP {}:{} on {}",
                ssdp::SSDP_GROUP,
                ssdp::SSDP_PORT,
                config.lan
            ),
            source,
        })?;
    Ok((http_listener, ssdp_socket))
}

/// `bpf_fib_lookup` refuses to route for an interface with IPv4 forwarding off, and the packets
/// portfwd hands to the kernel need the kernel to forward them: say so rather than forward
/// nothing in silence. (portfwd does not change the setting itself: that is the router's
/// configuration.)
fn warn_if_not_forwarding(interface: &str) {
    let path = format!("/proc/sys/net/ipv4/conf/{interface}/forwarding");
    if std::fs::read_to_string(&path).is_ok_and(|v| v.trim() == "0") {
        tracing::warn!(
            "IPv4 forwarding is off on {interface} ({path} is 0): nothing will be forwarded; enable it with sysctl net.ipv4.ip_forward=1"
        );
    }
}

fn announce_ready(
    config: &Config,
    wan_mode: AttachedMode,
    lan_mode: AttachedMode,
    external: Option<Ipv4Addr>,
    shares: usize,
    identity: &Identity,
) {
    let external = external.map_or_else(|| "none yet".to_owned(), |a| a.to_string());
    let mut out = std::io::stdout().lock();
    // The line scripts and tests wait for; stdout may be a closed pipe, which is no reason to
    // stop forwarding.
    let _ = writeln!(
        out,
        "portfwd ready: wan {} ({}), lan {} ({}), external address {external}, {shares} share(s), UPnP IGD:{} at {}",
        config.wan,
        wan_mode.name(),
        config.lan,
        lan_mode.name(),
        identity.version.number(),
        identity.location(),
    );
    let _ = out.flush();
}

async fn serve(
    config: &Config,
    flag_shares: &[ShareSpec],
    handle: &TableHandle,
    monitor: &mut Monitor,
) -> Result<(), DaemonError> {
    let signal = |kind| signal(kind).map_err(DaemonError::Signals);
    let (mut int, mut term, mut hup) = (
        signal(SignalKind::interrupt())?,
        signal(SignalKind::terminate())?,
        signal(SignalKind::hangup())?,
    );
    loop {
        tokio::select! {
            _ = int.recv() => break,
            _ = term.recv() => break,
            _ = hup.recv() => reload(config, flag_shares, handle).await,
            changes = monitor.next() => {
                let changes = changes.map_err(DaemonError::Netlink)?;
                handle.forwarding_changed().await?;
                if changes.addresses {
                    let external = netinfo::external_addr(&config.wan)?;
                    handle.set_external(external).await?;
                }
            }
        }
    }
    tracing::info!("stopping");
    Ok(())
}

async fn reload(config: &Config, flag_shares: &[ShareSpec], handle: &TableHandle) {
    let shares = match config.reload_shares(flag_shares) {
        Ok(shares) => shares,
        Err(err) => {
            tracing::error!(
                "reload refused, shares unchanged: {}",
                crate::error_chain(&err)
            );
            return;
        }
    };
    match handle.replace_static(shares).await {
        Ok(applied) => tracing::info!(
            "reloaded shares: {} written, {} removed",
            applied.upserts,
            applied.deletes
        ),
        Err(err) => tracing::error!(
            "reload refused, shares unchanged: {}",
            crate::error_chain(&err)
        ),
    }
}
