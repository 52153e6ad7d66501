//! `portfwd run`: loads and attaches the data plane, keeps it in step with the share table and
//! the kernel, and detaches on SIGINT or SIGTERM.
//!
//! On the LAN side it serves UPnP ([`crate::upnp`]); on `--api` (loopback by default) the
//! owner's REST API and `/metrics` ([`crate::api`]). What changes at run time is kept in the
//! state directory ([`crate::state`]) and restored when it starts again, leases with their time
//! left. The WAN link is followed over rtnetlink: while it is down the shares are out of the
//! data plane.
//!
//! Signals: SIGINT/SIGTERM stop the daemon (the programs are detached: their links are owned by
//! this process and go with it, even on `kill -9`); SIGHUP re-reads the config file's shares.

use std::{
    io::{Read as _, Write as _},
    net::{Ipv4Addr, SocketAddr, SocketAddrV4},
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
    api::{self, Api, Facts},
    config::Config,
    dataplane::{
        AttachedMode, Dataplane, DataplaneError,
        pins::{self, Pins},
    },
    events::{self, EventLog},
    host::{Host, SystemHost},
    metrics::Metrics,
    netinfo::{self, NetInfoError},
    netlink::Monitor,
    pcp,
    share::ShareSpec,
    state::{StateDir, StateError},
    store::Writer,
    table::{self, Loaded, Table, TableError, TableHandle},
    upnp::{Identity, Service, control::Control, description, http, ssdp},
    webhook,
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
    #[error("listening on {what}")]
    Listen {
        what: String,
        #[source]
        source: std::io::Error,
    },
}

/// Runs the daemon until SIGINT or SIGTERM. `flag_shares` are the `--share` flags, kept across
/// SIGHUP reloads of the file.
#[expect(
    clippy::too_many_lines,
    reason = "the start-up sequence reads best in one place, in order"
)]
pub async fn run(config: Config, flag_shares: Vec<ShareSpec>) -> Result<(), DaemonError> {
    let wan_index = netinfo::ifindex(&config.wan)?;
    let lan_index = netinfo::ifindex(&config.lan)?;
    let lan_subnets = netinfo::ipv4_subnets(&config.lan)?;

    // Validate every share before touching the kernel, so bad input costs nothing.
    table::check_static(lan_subnets.clone(), config.shares.clone())?;

    // Loading needs the privileges everything else needs too: the clearest first error.
    let pins = pins_for(&config);
    let dataplane = Dataplane::load(pins.clone())?;
    let state = StateDir::open(&config.state_dir)?;
    let lan_addr = lan_subnets
        .first()
        .map(|s| s.addr)
        .ok_or_else(|| DaemonError::NoLanAddress(config.lan.clone()))?;
    let identity = identity(&state, &config, lan_addr)?;
    let token = state.read_or_create("api-token", 0o600, || {
        let hex = crate::state::hex(&random_bytes::<32>());
        format!("{hex}\n")
    })?;
    let token = token.trim().to_owned();
    let (http_listener, ssdp_socket) = bind_upnp(&config, lan_index, lan_addr)?;
    let pcp_socket = pcp::bind(&config.lan, lan_addr).map_err(|source| DaemonError::Listen {
        what: format!("NAT-PMP/PCP on {lan_addr}:{}", pcp::wire::SERVER_PORT),
        source,
    })?;
    let api_listener = bind_api(&config)?;
    let (journal, loaded) = load_store(&state)?;
    let mut events = EventLog::open(&state, events::DEFAULT_CAPACITY).unwrap_or_else(|err| {
        tracing::error!(
            "event log kept in memory only: {}",
            crate::error_chain(&err)
        );
        EventLog::memory(events::DEFAULT_CAPACITY)
    });
    // Signals are taken from here on: a SIGTERM right after the ready line must stop the
    // daemon cleanly, not kill it with the default action.
    let signals = Signals::install()?;

    warn_if_not_forwarding(&config.wan);
    warn_if_not_forwarding(&config.lan);
    let mut monitor = Monitor::open(wan_index).map_err(DaemonError::Netlink)?;

    let host: Arc<dyn Host> = Arc::new(SystemHost::new(config.wan.clone(), wan_index, lan_index));
    let deny6 = config.ipv6_inbound == crate::config::Inbound6::Deny;
    let lan6 = netinfo::ipv6_prefixes(&config.lan);
    let mut table = Table::builder(
        lan_subnets.clone(),
        Box::new(dataplane),
        Arc::clone(&host),
        wan_index,
        lan_index,
    )
    .lan6(lan6.clone())
    .settings(config.upnp.clone())
    .flap_window(config.flap_window)
    .ipv6_deny(deny6)
    .hairpin(config.hairpin)
    .build(table::now())?;
    let external = netinfo::external_addr(&config.wan)?;
    table.set_external(external)?;
    table.forwarding_changed()?;
    table.set_link(netinfo::link_up(&config.wan))?;
    table.replace_static(config.shares.clone())?;
    let restored = table.restore(loaded.saved);
    // Only now, with the table complete, is what pinned maps hold beyond it removed; and only
    // now do the programs run on the interfaces (a pinned link takes the new program in one
    // update, so the maps it reads are filled before it does).
    table.reconcile_all()?;
    let attached = attach(&mut table, &config, wan_index, lan_index)?;
    let (wan_mode, lan_mode, wan_program, lan_program) = attached;
    let metrics = Arc::new(Metrics::default());
    events.observe(Box::new({
        let metrics = Arc::clone(&metrics);
        move |event| metrics.event(event.kind)
    }));
    if let Some(url) = config.api.webhook.clone() {
        let (queue, notices) = tokio::sync::mpsc::channel(webhook::QUEUE);
        events.set_webhook(queue);
        tokio::spawn(webhook::run(url, notices));
    }
    let events_path = events.path().map(std::path::Path::to_owned);
    table.arm(events);
    let writer = Writer::spawn(journal, events_path).map_err(|source| {
        DaemonError::State(StateError::Store {
            path: state.path().join(table::STORE),
            source,
        })
    })?;
    let (handle, task) = table::spawn(table, Some(writer));

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
            metrics: Arc::clone(&metrics),
            host: Arc::clone(&host),
            started: std::time::Instant::now(),
            firewall6: deny6,
        },
        identity.clone(),
        lan_subnets.clone(),
    ));
    let http_task = tokio::spawn(http::serve(http_listener, server, stopped()));
    let ssdp_task = tokio::spawn(ssdp::run(
        ssdp_socket,
        identity.clone(),
        lan_subnets.clone(),
        config.upnp.notify_interval,
        stopped(),
    ));
    let responder = Arc::new(pcp::Responder {
        table: handle.clone(),
        metrics: Arc::clone(&metrics),
        lan: lan_subnets.clone(),
        lan6,
        started: std::time::Instant::now(),
    });
    // PCP over IPv6 is an addition: a kernel without IPv6 still gets IPv4 NAT-PMP and PCP.
    let pcp_ipv6 = match pcp::six::bind6(&config.lan, lan_index) {
        Ok(socket) => Some(tokio::spawn(pcp::six::serve6(
            socket,
            lan_index,
            Arc::clone(&responder),
            stopped(),
        ))),
        Err(err) => {
            tracing::warn!(
                "PCP over IPv6 not served ([::]:5351 on {}): {err}",
                config.lan
            );
            None
        }
    };
    let pcp_task = tokio::spawn(pcp::serve(pcp_socket, responder, stopped()));
    let api_addr = api_listener
        .local_addr()
        .map_or_else(|_| config.api.listen.to_string(), |a| a.to_string());
    // Dynamic DNS, when configured: its own task, its last result for the API.
    let ddns = config.ddns.clone().map(|ddns| {
        let (status, watch) = watch::channel(crate::ddns::DdnsStatus {
            name: ddns.name.clone(),
            server: ddns.server(),
            ..crate::ddns::DdnsStatus::default()
        });
        tokio::spawn(crate::ddns::run(ddns, handle.clone(), status));
        watch
    });
    let api_task = tokio::spawn(api::serve(
        api_listener,
        Arc::new(Api {
            table: handle.clone(),
            token,
            metrics,
            metrics_auth: config.api.metrics_auth,
            facts: Facts {
                wan: config.wan.clone(),
                lan: config.lan.clone(),
                lan_address: lan_addr,
                wan_mode: wan_mode.name(),
                lan_mode: lan_mode.name(),
                wan_program,
                lan_program,
                upnp_url: identity.location(),
                started: std::time::Instant::now(),
            },
            lan: lan_subnets,
            host,
            ddns,
            page: crate::page::Page {
                names: config.api.page_names.clone(),
                ..crate::page::Page::default()
            },
        }),
        stopped(),
    ));

    let shares = handle.snapshot().shares.len();
    announce_ready(
        &config, wan_mode, lan_mode, external, shares, &identity, &api_addr,
    );
    // systemd (Type=notify): READY=1 at the same point, then STATUS= and the watchdog.
    let service = crate::notify::Service::ready(&handle, &config.wan);
    if loaded.migrated {
        tracing::info!(
            "state.json of an earlier portfwd brought over into {}; the old file is kept",
            state.path().join(table::STORE).display()
        );
    }
    if restored > 0 {
        tracing::info!("restored {restored} share(s) and pinhole(s) from the state directory");
    }

    let result = serve(
        &config,
        &flag_shares,
        &handle,
        &mut monitor,
        signals,
        (wan_index, lan_index),
    )
    .await;
    drop(service);
    // Servers first (SSDP says goodbye), then the table, whose end detaches the programs.
    let _ = stop_servers.send(());
    let _ = tokio::time::timeout(Duration::from_secs(2), async {
        let _ = ssdp_task.await;
        let _ = http_task.await;
        let _ = pcp_task.await;
        if let Some(task) = pcp_ipv6 {
            let _ = task.await;
        }
        let _ = api_task.await;
    })
    .await;
    drop(handle);
    // The table hands back the data plane. Pinned, its programs, maps and links stay and go
    // on forwarding (`portfwd down` takes them away); unpinned, dropping it detaches them.
    if let Ok(table) = task.await {
        drop(table);
        if let Some(pins) = &pins {
            tracing::info!(
                "stopped; forwarding goes on from the objects pinned in {} (`portfwd down` detaches)",
                pins.dir().display()
            );
        } else {
            tracing::info!("detached from {} and {}", config.wan, config.lan);
        }
    }
    result
}

/// Where this instance's objects are pinned, or `None` (with a warning) where bpffs is not
/// mounted: then forwarding stops with the daemon, as it did before pinning.
fn pins_for(config: &Config) -> Option<Pins> {
    let root = config.bpffs.as_path();
    if !pins::is_bpffs(root) {
        tracing::warn!(
            "{} is not a mounted bpffs: nothing is pinned, and forwarding stops when portfwd stops (mount it: mount -t bpf bpf {})",
            root.display(),
            root.display()
        );
        return None;
    }
    let name = config
        .instance
        .clone()
        .unwrap_or_else(|| pins::instance_name(&config.wan));
    Some(Pins::new(root, &name))
}

/// Attaches both programs to their interfaces (taking over pinned links), then removes the
/// maps of an older layout: their attach modes and program ids.
fn attach(
    table: &mut Table,
    config: &Config,
    wan_index: u32,
    lan_index: u32,
) -> Result<(AttachedMode, AttachedMode, Option<u32>, Option<u32>), DaemonError> {
    let Some(dataplane) = table.maps_mut().as_any_mut().downcast_mut::<Dataplane>() else {
        return Err(DaemonError::Dataplane(DataplaneError::NoObject));
    };
    let wan_mode = dataplane.attach(PROG_WAN, &config.wan, wan_index, config.xdp_mode)?;
    let lan_mode = dataplane.attach(PROG_LAN, &config.lan, lan_index, config.xdp_mode)?;
    dataplane.commit_upgrade();
    let program_id = |name| {
        dataplane
            .program(name)
            .ok()
            .and_then(|p| p.info().ok())
            .map(|info| info.id())
    };
    Ok((
        wan_mode,
        lan_mode,
        program_id(PROG_WAN),
        program_id(PROG_LAN),
    ))
}

/// `portfwd down`: detaches the instance's programs and removes its pins. Returns the
/// directory and whether anything was there.
pub fn down(
    root: &std::path::Path,
    wan: &str,
    instance: Option<&str>,
) -> Result<(std::path::PathBuf, bool), DataplaneError> {
    let name = instance.map_or_else(|| pins::instance_name(wan), str::to_owned);
    let pins = Pins::new(root, &name);
    let found = pins.remove_all().map_err(|source| DataplaneError::Pin {
        path: pins.dir().to_owned(),
        source,
    })?;
    Ok((
        pins.dir().to_owned(),
        !found.links.is_empty() || !found.versions.is_empty(),
    ))
}

/// What the state directory holds, and the journal to go on with. A store or `state.json` that
/// cannot be read is set aside and the daemon starts without it.
fn load_store(state: &StateDir) -> Result<(crate::store::Journal, Loaded), DaemonError> {
    match table::load(state, true) {
        Ok(loaded) => {
            if loaded.1.dropped_bytes > 0 {
                tracing::warn!(
                    "the journal ended in a torn record ({} bytes), dropped: a change that was never acknowledged",
                    loaded.1.dropped_bytes
                );
            }
            Ok(loaded)
        }
        Err(err) => {
            let kept = state.set_aside().map_or_else(String::new, |aside| {
                format!("; the old state is kept as {}", aside.display())
            });
            tracing::error!(
                "saved shares and settings not restored: {}{kept}",
                crate::error_chain(&err)
            );
            // Not from `state.json` again: the store had replaced it.
            Ok(table::load(state, false)?)
        }
    }
}

/// The signals the daemon answers, installed before it says it is ready.
struct Signals {
    int: tokio::signal::unix::Signal,
    term: tokio::signal::unix::Signal,
    hup: tokio::signal::unix::Signal,
}

impl Signals {
    fn install() -> Result<Self, DaemonError> {
        let signal = |kind| signal(kind).map_err(DaemonError::Signals);
        Ok(Self {
            int: signal(SignalKind::interrupt())?,
            term: signal(SignalKind::terminate())?,
            hup: signal(SignalKind::hangup())?,
        })
    }
}

/// Binds the API listener. Anything but loopback is the owner's explicit choice, and then it
/// is bound to the LAN interface (`SO_BINDTODEVICE`): a connection from the WAN never
/// completes its handshake, so a scan of the WAN address does not even see the port open.
fn bind_api(config: &Config) -> Result<TcpListener, DaemonError> {
    let addr = config.api.listen;
    let device = if addr.ip().is_loopback() {
        None
    } else {
        tracing::warn!(
            "the API listens on {addr} on the LAN interface {}: every route but /metrics needs the token",
            config.lan
        );
        Some(config.lan.as_str())
    };
    tcp_listener(addr, device).map_err(|source| DaemonError::Listen {
        what: format!("the API on {addr}"),
        source,
    })
}

/// A TCP listener on `addr` (`SO_REUSEADDR`, so a restart need not wait out `TIME_WAIT`),
/// bound to interface `device` if given.
fn tcp_listener(addr: SocketAddr, device: Option<&str>) -> std::io::Result<TcpListener> {
    let socket = socket2::Socket::new(
        socket2::Domain::for_address(addr),
        socket2::Type::STREAM,
        Some(socket2::Protocol::TCP),
    )?;
    socket.set_reuse_address(true)?;
    if let Some(device) = device {
        socket.bind_device(Some(device.as_bytes()))?;
    }
    socket.bind(&addr.into())?;
    socket.listen(64)?;
    socket.set_nonblocking(true)?;
    TcpListener::from_std(socket.into())
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
    let boot_secs = crate::clock::unix_now();
    Ok(Identity {
        uuid,
        version,
        lan_addr,
        http_port: config.upnp.port,
        boot_id: u32::try_from(boot_secs & 0x7fff_ffff).unwrap_or(0),
        config_id: hash & 0x00ff_ffff,
    })
}

/// Random bytes from the kernel, or `None` when `/dev/urandom` cannot be read (what must be
/// secret, a session, is then refused).
pub(crate) fn kernel_random<const N: usize>() -> Option<[u8; N]> {
    let mut bytes = [0u8; N];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .ok()?;
    Some(bytes)
}

/// Random bytes from the kernel. Without `/dev/urandom` (a broken chroot), the time and process
/// id: still unique on the LAN, but not secret, which the log says.
pub(crate) fn random_bytes<const N: usize>() -> [u8; N] {
    if let Some(bytes) = kernel_random() {
        return bytes;
    }
    tracing::warn!("/dev/urandom unreadable: identifiers made from the time, not secret");
    let seed = crate::clock::unix_now() ^ u64::from(std::process::id());
    let mut bytes = [0u8; N];
    for (i, byte) in bytes.iter_mut().enumerate() {
        *byte = seed
            .rotate_left(u32::try_from(i % 8).unwrap_or(0) * 8)
            .to_le_bytes()[0];
    }
    bytes
}

/// A random (version 4) UUID.
fn random_uuid() -> String {
    let mut bytes = random_bytes::<16>();
    bytes[6] = (bytes[6] & 0x0f) | 0x40;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    let hex = crate::state::hex(&bytes);
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
    let http_listener =
        tcp_listener(addr.into(), Some(&config.lan)).map_err(|source| DaemonError::Listen {
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
    api: &str,
) {
    let external = external.map_or_else(|| "none yet".to_owned(), |a| a.to_string());
    let mut out = std::io::stdout().lock();
    // The line scripts and tests wait for; stdout may be a closed pipe, which is no reason to
    // stop forwarding.
    let _ = writeln!(
        out,
        "portfwd ready: wan {} ({}), lan {} ({}), external address {external}, {shares} share(s), UPnP IGD:{} at {}, NAT-PMP/PCP on {}:{}, API on {api}",
        config.wan,
        wan_mode.name(),
        config.lan,
        lan_mode.name(),
        identity.version.number(),
        identity.location(),
        identity.lan_addr,
        pcp::wire::SERVER_PORT,
    );
    let _ = out.flush();
}

async fn serve(
    config: &Config,
    flag_shares: &[ShareSpec],
    handle: &TableHandle,
    monitor: &mut Monitor,
    mut signals: Signals,
    mut ifindexes: (u32, u32),
) -> Result<(), DaemonError> {
    loop {
        tokio::select! {
            _ = signals.int.recv() => break,
            _ = signals.term.recv() => break,
            _ = signals.hup.recv() => reload(config, flag_shares, handle).await,
            changes = monitor.next() => {
                // One bad notification (or a burst the socket lost) is no reason to stop a
                // router's daemon: say so and carry on with the next.
                let changes = match changes {
                    Ok(changes) => changes,
                    Err(err) => {
                        tracing::error!("rtnetlink: {err}; carrying on");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                };
                if let Err(err) = follow(config, handle, monitor, &mut ifindexes, changes).await {
                    tracing::error!("following a network change: {}", crate::error_chain(&err));
                }
            }
        }
    }
    tracing::info!("stopping");
    Ok(())
}

/// Brings the table along with what rtnetlink reported: next hops, the external address, the
/// WAN link, and interfaces deleted and made again (a `PPPoE` reconnect gives the WAN a new
/// index): the programs are attached to the new interface at once.
async fn follow(
    config: &Config,
    handle: &TableHandle,
    monitor: &mut Monitor,
    ifindexes: &mut (u32, u32),
    changes: crate::netlink::Changes,
) -> Result<(), DaemonError> {
    handle.change(Table::forwarding_changed).await?;
    let now = (
        netinfo::ifindex(&config.wan).ok(),
        netinfo::ifindex(&config.lan).ok(),
    );
    if let (Some(wan), Some(lan)) = now
        && (wan, lan) != *ifindexes
    {
        let old = std::mem::replace(ifindexes, (wan, lan));
        monitor.watch(wan);
        let config = config.clone();
        handle
            .change(move |t| reattach(t, &config, old, (wan, lan)))
            .await?;
    }
    if changes.addresses || changes.link.is_some() {
        let external = netinfo::external_addr(&config.wan).unwrap_or(None);
        handle.change(move |t| t.set_external(external)).await?;
    }
    // After lost notifications, or an interface made again, the kernel's word is re-read;
    // otherwise the notification says it.
    let link = changes
        .link
        .filter(|_| now.0.is_some())
        .or_else(|| changes.lost.then(|| netinfo::link_up(&config.wan)));
    let link = if now.0.is_none() { Some(false) } else { link };
    if let Some(up) = link {
        handle.change(move |t| t.set_link(up)).await?;
    }
    Ok(())
}

/// Attaches both programs to the interfaces now called `config.wan` and `config.lan` (new
/// indexes), and points the data plane at them.
fn reattach(
    table: &mut Table,
    config: &Config,
    old: (u32, u32),
    (wan, lan): (u32, u32),
) -> Result<(), TableError> {
    let Some(dataplane) = table.maps_mut().as_any_mut().downcast_mut::<Dataplane>() else {
        return Ok(());
    };
    if wan != old.0 {
        dataplane.attach(PROG_WAN, &config.wan, wan, config.xdp_mode)?;
    }
    if lan != old.1 {
        dataplane.attach(PROG_LAN, &config.lan, lan, config.xdp_mode)?;
    }
    table.set_ifindexes(wan, lan, &config.wan, &config.lan)?;
    table.set_link(netinfo::link_up(&config.wan))
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
    match handle.change(move |t| t.replace_static(shares)).await {
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
