//! `portfwd run`: loads and attaches the data plane, keeps it in step with the share table and
//! the kernel, and detaches on SIGINT or SIGTERM.
//!
//! Signals: SIGINT/SIGTERM stop the daemon (the programs are detached: their links are owned by
//! this process and go with it, even on `kill -9`); SIGHUP re-reads the config file's shares.

use std::io::Write as _;

use portfwd_common::{PROG_LAN, PROG_WAN};
use tokio::signal::unix::{SignalKind, signal};

use crate::{
    config::Config,
    dataplane::{AttachedMode, Dataplane, DataplaneError},
    netinfo::{self, NetInfoError},
    netlink::Monitor,
    share::ShareSpec,
    table::{self, Table, TableError, TableHandle},
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
}

/// Runs the daemon until SIGINT or SIGTERM. `flag_shares` are the `--share` flags, kept across
/// SIGHUP reloads of the file.
pub async fn run(config: Config, flag_shares: Vec<ShareSpec>) -> Result<(), DaemonError> {
    let wan_index = netinfo::ifindex(&config.wan)?;
    let lan_index = netinfo::ifindex(&config.lan)?;
    let lan_subnets = netinfo::ipv4_subnets(&config.lan)?;

    // Validate every share before touching the kernel, so bad input costs nothing.
    table::check_static(lan_subnets.clone(), config.shares.clone())?;

    warn_if_not_forwarding(&config.wan);
    warn_if_not_forwarding(&config.lan);
    let mut monitor = Monitor::open().map_err(DaemonError::Netlink)?;
    let mut dataplane = Dataplane::load()?;
    let wan_mode = dataplane.attach(PROG_WAN, &config.wan, wan_index, config.xdp_mode)?;
    let lan_mode = dataplane.attach(PROG_LAN, &config.lan, lan_index, config.xdp_mode)?;

    let (handle, task) = table::spawn(Table::new(lan_subnets, dataplane, wan_index, lan_index));
    handle.forwarding_changed().await?;
    let external = netinfo::external_addr(&config.wan)?;
    handle.set_external(external).await?;
    handle.replace_static(config.shares.clone()).await?;

    let shares = handle.list().await?;
    announce_ready(&config, wan_mode, lan_mode, external, shares.len());

    let result = serve(&config, &flag_shares, &handle, &mut monitor).await;
    drop(handle);
    // The table hands back the data plane; dropping it detaches both programs.
    if let Ok(table) = task.await {
        drop(table);
        tracing::info!("detached from {} and {}", config.wan, config.lan);
    }
    result
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
    external: Option<std::net::Ipv4Addr>,
    shares: usize,
) {
    let external = external.map_or_else(|| "none yet".to_owned(), |a| a.to_string());
    let mut out = std::io::stdout().lock();
    // The line scripts and tests wait for; stdout may be a closed pipe, which is no reason to
    // stop forwarding.
    let _ = writeln!(
        out,
        "portfwd ready: wan {} ({}), lan {} ({}), external address {external}, {shares} share(s)",
        config.wan,
        wan_mode.name(),
        config.lan,
        lan_mode.name(),
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
