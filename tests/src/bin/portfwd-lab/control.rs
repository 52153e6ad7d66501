//! `cargo xtask bench control`: the control plane, portfwd and miniupnpd side by side, in the
//! lab, in one run.
//!
//! **Peers.** The real portfwd binary (secure mode, quotas raised to 20,000, its state on the
//! real disk under `target/bench-control/`, generic XDP) and Debian's `miniupnpd-nftables`
//! 2.3.1 (secure mode; see [`miniupnpd`] for what it needs), each started on the lab's router
//! in turn, never both at once, on the same lab in the same run.
//!
//! **Client.** [`soap`]: what miniupnpc does, in Rust: a new TCP connection per call, an
//! HTTP/1.1 `POST` to the control URL the daemon's `rootDesc.xml` names, the whole answer read,
//! anything but `200 OK` counted as an error and reported by kind. It runs in the LAN host's
//! namespace (10.77.0.10) and talks to 10.77.0.1:5000 over the lab's veth, like a real client.
//!
//! **Measurement.** [`load`]: 1 and then 4 worker threads, each cycling `AddPortMapping`
//! (TCP, external port = internal port, its own port, internal client 10.77.0.10, lease
//! 3600 s) and `DeletePortMapping` of that port for a fixed time ([`Plan::duration`]):
//! successful calls per second, and the 50th and 99th percentile latency of one call
//! (connect, request, whole answer) over the successful calls. Before the measurements, one
//! worker warms the daemon up for half a second.
//!
//! **Table sizes.** Each daemon is measured with an empty table, then after filling the table
//! to each of [`Plan::fills`] mappings (other ports than the cycles', `AddPortMapping` from the
//! LAN host by [`FILL_WORKERS`] workers; the fill rate is reported). A fill that does not finish
//! within [`Plan::fill_limit`] ends there: that size and the larger ones are not measured, and
//! the report says how far it got. Then a fresh instance (empty table) is measured with
//! [`Plan::connections`] established TCP connections open on the box ([`conns`]), closed
//! afterwards; a fresh one so that the RSS growth per mapping does not include what reading
//! that many sockets left in the allocator. The daemon's RSS (`VmRSS`) is read after each
//! table state's measurement; growth per mapping is against the empty table's.
//!
//! **Ceiling.** [`stub`]: the same client against a stub IGD that answers every request with a
//! fixed `200 OK` ([`STUB_THREADS`] threads, in the router's namespace): the client's and the
//! lab's own ceiling, measured in the same run.
//!
//! The machine's CPUs are shared by the client, the daemon and the lab's network, so rates
//! are the whole system's, comparable between the peers of one run.

mod conns;
mod load;
mod miniupnpd;
mod peer;
mod report;
mod soap;
mod stub;

use std::{
    fmt::Write as _,
    net::{SocketAddr, SocketAddrV4},
    path::PathBuf,
    time::Duration,
};

use portfwd_tests::{Lab, ROUTER_LAN, sh};

use self::{
    conns::Connections,
    load::FILL_PORT,
    peer::Peer,
    report::{PeerReport, Row, thousands},
};

/// Worker counts of each measurement.
pub const WORKERS: [usize; 2] = [1, 4];
/// Workers that fill the table.
const FILL_WORKERS: usize = 4;
/// Threads of the stub IGD.
const STUB_THREADS: usize = 4;
/// The stub's port on the router's LAN address (the daemons use 5000).
const STUB_PORT: u16 = 5001;
/// How long opening the connections may take.
const CONNECT_LIMIT: Duration = Duration::from_mins(2);
/// The lab's prefix.
const PREFIX: &str = "pfctl";

/// What a run measures.
struct Plan {
    /// How long each measurement runs (per worker count and table state).
    duration: Duration,
    /// The table sizes measured after the empty table, in filling order.
    fills: [usize; 2],
    /// Established TCP connections for the "busy box" measurement.
    connections: usize,
    /// How long each fill may take.
    fill_limit: Duration,
}

/// The real run: under 10 minutes, most of it filling.
const FULL: Plan = Plan {
    duration: Duration::from_secs(5),
    fills: [1_000, 10_000],
    connections: 50_000,
    fill_limit: Duration::from_mins(2),
};

/// `--quick`: every part, small, for development (about a minute). The second fill's limit is
/// meant to cut it short, so that the "not measured" path runs too.
const QUICK: Plan = Plan {
    duration: Duration::from_secs(1),
    fills: [100, 2_000],
    connections: 5_000,
    fill_limit: Duration::from_secs(5),
};

pub struct Options {
    pub record: bool,
    pub quick: bool,
}

pub fn run(options: &Options) {
    let plan = if options.quick { &QUICK } else { &FULL };
    let dir = target_dir().join("bench-control");
    std::fs::create_dir_all(&dir).expect("target/bench-control");
    println!(
        "portfwd control-plane bench{}: {} s per measurement, fills to {} and {} mappings (at most {} s each), {} connections; the tables come at the end",
        if options.quick { " (--quick)" } else { "" },
        plan.duration.as_secs(),
        thousands(plan.fills[0]),
        thousands(plan.fills[1]),
        plan.fill_limit.as_secs(),
        thousands(plan.connections)
    );
    if peer::on_tmpfs(&dir) {
        println!(
            "note: {} is on a tmpfs, where portfwd's fsyncs cost nothing",
            dir.display()
        );
    }
    crate::lab_down(PREFIX);
    let lab = Lab::up(PREFIX);

    let ceiling = ceiling(&lab, plan);

    let mut peers = Vec::new();
    if !crate::interrupted() {
        let about = format!(
            "the real daemon, `{}`",
            sh(&[
                portfwd_tests::portfwd_bin().to_str().expect("path"),
                "--version"
            ])
            .trim()
        );
        peers.push(measure(&lab, &|| peer::portfwd(&lab, &dir), about, plan));
    }
    if !crate::interrupted() {
        let about = format!(
            "Debian's miniupnpd-nftables {}",
            sh(&["dpkg-query", "-W", "-f=${Version}", "miniupnpd-nftables"]).trim()
        );
        peers.push(measure(&lab, &|| miniupnpd::start(&lab), about, plan));
    }
    drop(lab);
    if crate::interrupted() {
        println!("interrupted: nothing recorded");
        return;
    }

    let body = render(plan, &ceiling, &peers);
    println!("\n{body}");
    if options.record {
        let quick = if options.quick { " --quick" } else { "" };
        report::record(&format!("cargo xtask bench control{quick} --record"), &body);
    }
}

/// The client's own ceiling: the stub IGD's rates with each worker count.
fn ceiling(lab: &Lab, plan: &Plan) -> Vec<load::Rate> {
    println!("\nstub IGD on {ROUTER_LAN}:{STUB_PORT}, {STUB_THREADS} threads");
    let stub = stub::Stub::start(
        &lab.router,
        SocketAddr::V4(SocketAddrV4::new(ROUTER_LAN, STUB_PORT)),
        STUB_THREADS,
    );
    WORKERS
        .iter()
        .map(|&w| {
            let rate = load::cycles(&lab.lan, &stub.igd, w, plan.duration);
            println!(
                "  {}: {:.0} calls/s, errors {}",
                report::workers(w),
                rate.per_second(),
                rate.errors
            );
            rate
        })
        .collect()
}

/// The method and every table, in Markdown.
fn render(plan: &Plan, ceiling: &[load::Rate], peers: &[PeerReport]) -> String {
    let mut body = format!("{}\n\n{}\n", method(plan), report::stub_table(ceiling));
    for peer in peers {
        let _ = writeln!(body, "{}", report::peer_table(peer));
    }
    if let [portfwd, miniupnpd] = peers {
        body += &report::ratio_table(portfwd, miniupnpd, &[0, plan.fills[0]]);
    }
    body
}

/// `portfwd-lab hold-connections COUNT SECONDS`: the helper that holds connections open for
/// [`conns::Connections`].
pub fn hold_connections(count: usize, limit: Duration) {
    conns::hold(count, limit);
}

/// The method paragraph, with this plan's numbers.
fn method(plan: &Plan) -> String {
    format!(
        "A client in the lab's LAN host (10.77.0.10) cycles AddPortMapping + DeletePortMapping \
         (TCP, external = internal port, one port per worker, lease 3600 s) against the daemon \
         on the router (10.77.0.1:5000), a new TCP connection per call as miniupnpc makes \
         (closed with a reset, so no TIME_WAIT sockets pile up), {} s per measurement with 1 \
         and with 4 worker threads: successful calls/s, and p50/p99 latency of one call \
         (connect, request, whole answer). Table states: empty; filled to {} and to {} \
         mappings by AddPortMapping from the LAN host ({FILL_WORKERS} workers; a fill that \
         takes over {} s stops, and larger sizes are not measured); then a fresh instance, \
         empty, with {} established TCP connections open in the router's namespace. RSS is \
         VmRSS after each state's measurement. Both daemons in secure mode, one after the \
         other on the same lab: portfwd (generic XDP, state on disk under target/), \
         miniupnpd-nftables at its service log level. The stub IGD answers every call with a \
         fixed 200: the client's own ceiling. Details: tests/src/bin/portfwd-lab/control.rs.",
        plan.duration.as_secs(),
        thousands(plan.fills[0]),
        thousands(plan.fills[1]),
        plan.fill_limit.as_secs(),
        thousands(plan.connections)
    )
}

/// `target/`: the driver runs from `target/<profile>/portfwd-lab`.
fn target_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    exe.parent()
        .and_then(|profile| profile.parent())
        .map(PathBuf::from)
        .expect("target dir")
}

/// Every table state of one daemon: the empty table and the fills on one instance, then the
/// connections on a fresh one (so that the RSS growth per mapping does not include what
/// reading thousands of sockets left in the daemon's allocator). `start` starts an instance.
fn measure(lab: &Lab, start: &dyn Fn() -> Peer, about: String, plan: &Plan) -> PeerReport {
    let peer = started(lab, start);
    let name = peer.name;
    let mut rows = vec![measure_state(lab, &peer, plan, 0, 0, None)];
    fill_and_measure(lab, &peer, plan, &mut rows);
    // Stops the daemon.
    drop(peer);

    if !crate::interrupted() {
        let peer = started(lab, start);
        let connections = Connections::open(&lab.router, plan.connections, CONNECT_LIMIT);
        if let Some(why) = &connections.shortfall {
            println!(
                "  opened {} of {} connections: {why}",
                thousands(connections.len()),
                thousands(plan.connections)
            );
        }
        let row = measure_state(lab, &peer, plan, 0, connections.len(), None);
        rows.insert(1, row);
        drop(connections);
        println!(
            "  closed them: {} TCP sockets (not counting listeners) left in the router's namespace",
            tcp_sockets(lab)
        );
    }
    PeerReport { name, about, rows }
}

/// Starts an instance and warms it up with half a second of cycles.
fn started(lab: &Lab, start: &dyn Fn() -> Peer) -> Peer {
    let peer = start();
    println!(
        "\n{} (pid {}): {} at http://{}{}",
        peer.name, peer.pid, peer.igd.service, peer.igd.addr, peer.igd.control_path
    );
    let _ = load::cycles(&lab.lan, &peer.igd, 1, Duration::from_millis(500));
    peer
}

/// The router's IPv4 TCP sockets other than listeners (state `0A` in `/proc/net/tcp`).
fn tcp_sockets(lab: &Lab) -> usize {
    lab.router
        .exec(&["cat", "/proc/net/tcp"])
        .lines()
        .skip(1)
        .filter(|line| line.split_whitespace().nth(3) != Some("0A"))
        .count()
}

/// Fills the table to each size of the plan, measuring each, until a fill falls short.
fn fill_and_measure(lab: &Lab, peer: &Peer, plan: &Plan, rows: &mut Vec<Row>) {
    let mut size = 0;
    let mut stopped: Option<String> = None;
    for target in plan.fills {
        if crate::interrupted() {
            break;
        }
        if let Some(why) = &stopped {
            rows.push(not_measured(target, None, why.clone()));
            continue;
        }
        let ports = FILL_PORT + port(size)..FILL_PORT + port(target);
        let fill = load::fill(&lab.lan, &peer.igd, ports, FILL_WORKERS, plan.fill_limit);
        size += fill.added;
        println!(
            "  filled to {}: {:.0} adds/s, errors {}",
            thousands(size),
            fill.per_second(),
            fill.errors
        );
        if fill.complete() {
            rows.push(measure_state(lab, peer, plan, size, 0, Some(fill)));
        } else {
            let why = if fill.elapsed >= plan.fill_limit {
                format!(
                    "not measured: filling {} took longer than {} s (it reached {})",
                    thousands(target),
                    plan.fill_limit.as_secs(),
                    thousands(size)
                )
            } else {
                format!(
                    "not measured: {} adds failed while filling {} (it reached {})",
                    fill.errors.total(),
                    thousands(target),
                    thousands(size)
                )
            };
            println!("  {why}");
            rows.push(not_measured(target, Some(fill), why.clone()));
            stopped = Some(why);
        }
    }
}

fn port(offset: usize) -> u16 {
    u16::try_from(offset).expect("fills fit below 65536 - FILL_PORT")
}

fn not_measured(mappings: usize, fill: Option<load::Fill>, why: String) -> Row {
    Row {
        mappings,
        connections: 0,
        rss_kib: None,
        fill,
        rates: Err(why),
    }
}

/// Measures every worker count in one table state, then reads the RSS.
fn measure_state(
    lab: &Lab,
    peer: &Peer,
    plan: &Plan,
    mappings: usize,
    connections: usize,
    fill: Option<load::Fill>,
) -> Row {
    let rates: Vec<load::Rate> = WORKERS
        .iter()
        .map(|&w| load::cycles(&lab.lan, &peer.igd, w, plan.duration))
        .collect();
    let rss_kib = peer.rss_kib();
    let summary: Vec<String> = rates
        .iter()
        .zip(WORKERS)
        .map(|(r, w)| {
            format!(
                "{w}w {:.0} calls/s p50 {:.2} ms p99 {:.2} ms errors {}",
                r.per_second(),
                r.p50.as_secs_f64() * 1e3,
                r.p99.as_secs_f64() * 1e3,
                r.errors
            )
        })
        .collect();
    println!(
        "  {} mappings, {} conns: RSS {} KiB; {}",
        thousands(mappings),
        thousands(connections),
        rss_kib.map_or_else(|| "?".to_owned(), |k| k.to_string()),
        summary.join("; ")
    );
    Row {
        mappings,
        connections,
        rss_kib,
        fill,
        rates: Ok(rates),
    }
}
