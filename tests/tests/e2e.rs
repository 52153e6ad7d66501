//! End to end: real XDP on veth pairs in network namespaces, real TCP and UDP sockets, the real
//! `portfwd` binary. Needs root (`cargo xtask test` runs it as such).

use std::{
    net::{SocketAddr, SocketAddrV4},
    sync::atomic::{AtomicU32, Ordering},
    time::Duration,
};

use portfwd_tests::{
    Daemon, EXTERNAL, LAN_HOST, Lab, REMOTE, http_get, serve_http, serve_udp_echo, udp_exchange,
};

const WAIT: Duration = Duration::from_secs(3);

fn lab(name: &str) -> Lab {
    static N: AtomicU32 = AtomicU32::new(0);
    assert!(portfwd_tests::is_root(), "the end-to-end tests need root");
    let prefix = format!("pf{}{}{}", std::process::id() % 10_000, N.fetch_add(1, Ordering::Relaxed), name);
    Lab::up(&prefix)
}

fn external(port: u16) -> SocketAddr {
    SocketAddr::V4(SocketAddrV4::new(EXTERNAL, port))
}

/// TCP and UDP through shares, with only XDP able to forward (the router kernel's forwarding
/// is off), the LAN neighbour known in advance.
fn forwards_tcp_and_udp(mode: &str) {
    let mut lab = lab(&mode[..1]);
    if mode == "native" {
        lab.attach_host_pass_programs();
    }
    serve_http(&lab.lan, 80, "hello from the LAN host");
    serve_udp_echo(&lab.lan, 5353);
    lab.learn_lan_neighbour();
    lab.set_kernel_forwarding(false);
    let daemon = Daemon::start(
        &lab.router,
        &[
            "--wan", "wan", "--lan", "lan", "--xdp-mode", mode,
            "--share", "tcp:8080=10.77.0.10:80",
            "--share", "udp:5300=10.77.0.10:5353",
        ],
    );
    assert!(daemon.ready_line.contains(&format!("wan wan ({mode})")), "{}", daemon.ready_line);

    let body = http_get(&lab.remote, external(8080), WAIT).expect("HTTP through the share");
    // The LAN host sees the real remote address: DNAT only, no source rewrite inbound.
    assert_eq!(body, format!("hello from the LAN host (you are {REMOTE}:"), "{body}");
}

#[test]
fn native_mode_forwards_tcp_and_udp() {
    forwards_tcp_and_udp("native");
}

#[test]
#[ignore = "debugging aid"]
fn debug_lab() {
    let mut lab = lab("d");
    lab.attach_host_pass_programs();
    serve_http(&lab.lan, 80, "hello from the LAN host");
    lab.learn_lan_neighbour();
    let daemon = Daemon::start(
        &lab.router,
        &["--wan", "wan", "--lan", "lan", "--xdp-mode", "native", "--share", "tcp:8080=10.77.0.10:80"],
    );
    let r = http_get(&lab.remote, external(8080), WAIT);
    eprintln!("result: {r:?}");
    eprintln!("{}", portfwd_tests::sh(&["bpftool", "map", "dump", "name", "VERDICTS"]));
    eprintln!("{}", portfwd_tests::sh(&["bpftool", "map", "dump", "name", "NEXT_HOPS"]));
    eprintln!("{}", portfwd_tests::sh(&["bpftool", "map", "dump", "name", "CONFIG"]));
    eprintln!("{}", lab.router.ip(&["-s", "link"]));
    eprintln!("{}", lab.lan.ip(&["-s", "link"]));
    drop(daemon);
}
