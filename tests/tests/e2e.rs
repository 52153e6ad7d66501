//! End to end: real XDP on veth pairs in network namespaces, real TCP and UDP sockets, the real
//! `portfwd` binary. Needs root (`cargo xtask test` runs it as such).

use std::{
    fs,
    io::Write as _,
    net::{Ipv4Addr, SocketAddr, TcpListener, UdpSocket},
    thread,
    time::Duration,
};

use portfwd_tests::{
    Daemon, Lab, REMOTE, ROUTER_LAN, WAIT, external, http_get, serve_http, serve_udp_echo,
    udp_exchange,
};

const SHARES: [&str; 4] = [
    "--share",
    "tcp:8080=10.77.0.10:80",
    "--share",
    "udp:5300=10.77.0.10:5353",
];

fn start(lab: &Lab, mode: &str, extra: &[&str]) -> Daemon {
    let daemon = Daemon::in_lab(lab, mode, extra);
    assert!(
        daemon.ready_line.contains(&format!("wan wan ({mode})"))
            && daemon.ready_line.contains("external address 198.51.100.1"),
        "{}",
        daemon.ready_line
    );
    daemon
}

/// An HTTP GET and a UDP exchange from the remote host through both shares.
fn assert_both_shares_carry_traffic(lab: &Lab) {
    let body = http_get(&lab.remote, external(8080), WAIT).expect("HTTP through the TCP share");
    // Only the destination is translated inbound: the LAN host sees the real remote address.
    assert!(
        body.starts_with(&format!("hello from the LAN host (you are {REMOTE}:")),
        "{body}"
    );
    let (reply, from) =
        udp_exchange(&lab.remote, external(5300), b"ping", WAIT).expect("UDP through the share");
    assert_eq!(reply, b"echo: ping");
    // The reply comes back from the external address and port, not the internal ones.
    assert_eq!(from, external(5300));
}

/// TCP and UDP through shares with the router's firewall dropping everything the kernel would
/// forward: only the XDP path can carry it.
fn forwards_through_xdp(mode: &str) {
    let mut lab = Lab::fresh(&mode[..1]);
    if mode == "native" {
        lab.attach_host_pass_programs();
    }
    serve_http(&lab.lan, 80, "hello from the LAN host");
    serve_udp_echo(&lab.lan, 5353);
    lab.learn_lan_neighbour();
    lab.learn_remote_neighbour();
    lab.block_kernel_forwarding();
    let daemon = start(&lab, mode, &SHARES);
    assert_both_shares_carry_traffic(&lab);
    // Several connections in a row, not just a lucky first one.
    for _ in 0..5 {
        http_get(&lab.remote, external(8080), WAIT).expect("repeat");
    }
    let (status, log) = daemon.stop();
    assert!(status.success(), "exit {status}: {log}");
    // SIGTERM leaves forwarding in place (the objects are pinned); `portfwd down` ends it.
    http_get(&lab.remote, external(8080), WAIT).expect("still forwarded after SIGTERM");
    let (ok, out) = portfwd_tests::portfwd_down(&lab);
    assert!(ok, "{out}");
    assert!(
        http_get(&lab.remote, external(8080), Duration::from_secs(1)).is_err(),
        "still forwarded after portfwd down"
    );
    let xdp = lab.router.ip(&["link", "show", "wan"]);
    assert!(!xdp.contains("prog/xdp"), "XDP still attached: {xdp}");
}

#[test]
fn native_mode_forwards_tcp_and_udp_in_xdp() {
    forwards_through_xdp("native");
}

#[test]
fn generic_mode_forwards_tcp_and_udp_in_xdp() {
    forwards_through_xdp("skb");
}

/// The router has never seen the LAN host's MAC address: the first packets are handed to the
/// kernel, which resolves the neighbour and forwards them; after that XDP carries the flow.
fn first_packets_go_through_the_kernel(mode: &str) {
    let mut lab = Lab::fresh(&mode[..1]);
    if mode == "native" {
        lab.attach_host_pass_programs();
    }
    serve_http(&lab.lan, 80, "hello from the LAN host");
    serve_udp_echo(&lab.lan, 5353);
    lab.forget_lan_neighbour();
    let _daemon = start(&lab, mode, &SHARES);
    let (reply, _) = udp_exchange(&lab.remote, external(5300), b"first", WAIT)
        .expect("the very first datagram is answered");
    assert_eq!(reply, b"echo: first");
    let neigh = lab.router.ip(&["neigh", "show", "dev", "lan"]);
    assert!(neigh.contains("10.77.0.10"), "kernel resolved it: {neigh}");
    lab.block_kernel_forwarding();
    assert_both_shares_carry_traffic(&lab);
}

#[test]
fn native_mode_hands_unresolved_neighbours_to_the_kernel() {
    first_packets_go_through_the_kernel("native");
}

#[test]
fn generic_mode_hands_unresolved_neighbours_to_the_kernel() {
    first_packets_go_through_the_kernel("skb");
}

#[test]
fn a_share_removed_by_reload_stops_forwarding() {
    let lab = Lab::fresh("r");
    serve_http(&lab.lan, 80, "hello from the LAN host");
    serve_udp_echo(&lab.lan, 5353);
    lab.learn_lan_neighbour();
    lab.learn_remote_neighbour();
    lab.block_kernel_forwarding();
    let dir = std::env::temp_dir().join(format!("{}-conf", lab.router.name));
    fs::create_dir_all(&dir).expect("dir");
    let path = dir.join("portfwd.toml");
    let both = "[[share]]\nproto = \"tcp\"\nexternal_port = 8080\ninternal = \"10.77.0.10:80\"\n\
                [[share]]\nproto = \"udp\"\nexternal_port = 5300\ninternal = \"10.77.0.10:5353\"\n";
    fs::write(&path, both).expect("write config");
    let daemon = start(&lab, "skb", &["--config", path.to_str().expect("utf-8")]);
    assert!(
        daemon.ready_line.contains("2 share(s)"),
        "{}",
        daemon.ready_line
    );
    assert_both_shares_carry_traffic(&lab);

    // Drop the TCP share from the file and reload.
    fs::write(
        &path,
        "[[share]]\nproto = \"udp\"\nexternal_port = 5300\ninternal = \"10.77.0.10:5353\"\n",
    )
    .expect("rewrite config");
    daemon.signal(libc::SIGHUP);
    let mut gone = false;
    for _ in 0..50 {
        thread::sleep(Duration::from_millis(100));
        // Unshared, the port is the router's own, where nothing listens: refused at once.
        if let Err(err) = http_get(&lab.remote, external(8080), Duration::from_millis(500)) {
            gone = err.contains("refused");
            if gone {
                break;
            }
        }
    }
    assert!(
        gone,
        "tcp:8080 still forwarded after reload: {}",
        daemon.stderr()
    );
    let (reply, _) =
        udp_exchange(&lab.remote, external(5300), b"still", WAIT).expect("UDP share kept");
    assert_eq!(reply, b"echo: still");

    // A broken file is refused and changes nothing.
    fs::write(&path, "[[share]]\nproto = \"tcp\"\n").expect("break config");
    daemon.signal(libc::SIGHUP);
    thread::sleep(Duration::from_millis(300));
    let (reply, _) =
        udp_exchange(&lab.remote, external(5300), b"kept", WAIT).expect("UDP share kept");
    assert_eq!(reply, b"echo: kept");
    let (_, log) = daemon.stop();
    assert!(log.contains("reload refused"), "{log}");
    fs::remove_dir_all(dir).expect("cleanup");
}

/// A one-shot TCP server in `ns` on `addr` that answers `reply` and reports the peer.
fn serve_once(lab_ns: &portfwd_tests::Netns, addr: SocketAddr, reply: &'static str) {
    let (tx, rx) = std::sync::mpsc::channel();
    lab_ns.spawn(move || {
        let listener = TcpListener::bind(addr).expect("bind");
        tx.send(()).expect("ready");
        if let Ok((mut stream, _)) = listener.accept() {
            portfwd_tests::read_request(&mut stream);
            let _ = stream.write_all(format!("HTTP/1.0 200 OK\r\n\r\n{reply}").as_bytes());
        }
    });
    rx.recv_timeout(WAIT).expect("server up");
}

#[test]
fn the_box_own_services_and_lan_outbound_traffic_are_untouched() {
    let mut lab = Lab::fresh("u");
    lab.attach_host_pass_programs();
    serve_http(&lab.lan, 80, "hello from the LAN host");
    lab.masquerade();
    let _daemon = start(&lab, "native", &SHARES);

    // A service of the router itself on the external address, on a port that is not shared.
    serve_once(&lab.router, external(2222), "the router itself");
    let body = http_get(&lab.remote, external(2222), WAIT).expect("router service");
    assert_eq!(body, "the router itself");

    // The LAN host reaches a server on the internet through the kernel and its masquerading.
    serve_once(
        &lab.remote,
        SocketAddr::from((REMOTE, 9000)),
        "remote server",
    );
    let body = http_get(&lab.lan, SocketAddr::from((REMOTE, 9000)), WAIT).expect("outbound");
    assert_eq!(body, "remote server");

    // Traffic from a shared internal port to the router's LAN address is not a reply to the
    // share: it arrives with its own source, untouched.
    let (tx, rx) = std::sync::mpsc::channel();
    lab.router.spawn(move || {
        let socket = UdpSocket::bind((ROUTER_LAN, 53)).expect("bind");
        tx.send(()).expect("ready");
        let mut buf = [0u8; 64];
        let (_, from) = socket.recv_from(&mut buf).expect("recv");
        let _ = socket.send_to(from.to_string().as_bytes(), from);
    });
    rx.recv_timeout(WAIT).expect("server up");
    let seen = lab.lan.run(|| {
        let socket = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 5353)).expect("bind 5353");
        socket.set_read_timeout(Some(WAIT)).expect("timeout");
        socket.send_to(b"query", (ROUTER_LAN, 53)).expect("send");
        let mut buf = [0u8; 64];
        let (n, _) = socket.recv_from(&mut buf).expect("reply");
        String::from_utf8_lossy(&buf[..n]).into_owned()
    });
    assert_eq!(seen, "10.77.0.10:5353");
}

/// Runs `portfwd run ARGS` in the router namespace and expects a one-line error.
fn refused(lab: &Lab, args: &[&str], expected: &str) {
    let Err(output) = Daemon::try_start(&lab.router, args) else {
        panic!("{args:?} was accepted");
    };
    // Exit 1 from portfwd's own checks, 2 from clap's parsing of a flag's value.
    assert!(
        output.contains("exited with exit status: 1")
            || output.contains("exited with exit status: 2"),
        "{args:?}: {output}"
    );
    assert!(output.contains(expected), "{args:?}: {output}");
    let messages = output.matches("portfwd: ").count() + output.matches("error: ").count();
    assert_eq!(messages, 1, "one error line: {args:?}: {output}");
}

#[test]
fn bad_input_gets_a_clear_error() {
    let lab = Lab::fresh("e");
    let base = ["--wan", "wan", "--lan", "lan"];
    let with = |extra: &[&'static str]| {
        let mut args = base.to_vec();
        args.extend_from_slice(extra);
        args
    };
    refused(
        &lab,
        &["--wan", "nope0", "--lan", "lan"],
        "no such interface: nope0",
    );
    refused(&lab, &with(&["--share", "tcp:8080"]), "PROTO:EXTPORT");
    refused(
        &lab,
        &with(&["--share", "tcp:0=10.77.0.10:80"]),
        "`0` is not a port",
    );
    refused(
        &lab,
        &with(&[
            "--share",
            "tcp:1=10.77.0.10:1",
            "--share",
            "tcp:1=10.77.0.11:1",
        ]),
        "tcp:1 is given twice",
    );
    refused(
        &lab,
        &with(&["--share", "tcp:1=192.0.2.5:1"]),
        "192.0.2.5 is not a host on the LAN side (10.77.0.0/24)",
    );
    refused(
        &lab,
        &with(&[
            "--share",
            "tcp:1=10.77.0.10:1",
            "--share",
            "tcp:2=10.77.0.10:1",
        ]),
        "already shared as tcp:1",
    );
    refused(
        &lab,
        &with(&["--config", "/nonexistent.toml"]),
        "cannot read config file",
    );
    // Not root: loading BPF needs privileges.
    let bin = portfwd_tests::portfwd_bin();
    let out = std::process::Command::new("ip")
        .args([
            "netns",
            "exec",
            &lab.router.name,
            "setpriv",
            "--reuid=65534",
            "--regid=65534",
        ])
        .args(["--clear-groups", "--"])
        .arg(&bin)
        .args(["run", "--wan", "wan", "--lan", "lan"])
        .output()
        .expect("setpriv");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("permission denied loading BPF programs"),
        "{stderr}"
    );
}

/// Retries `attempt` for up to three seconds; the last error if it never succeeds.
fn eventually<T>(mut attempt: impl FnMut() -> Result<T, String>) -> Result<T, String> {
    let mut last = String::new();
    for _ in 0..30 {
        match attempt() {
            Ok(value) => return Ok(value),
            Err(err) => last = err,
        }
        thread::sleep(Duration::from_millis(100));
    }
    Err(last)
}

#[test]
fn the_external_address_is_followed_over_rtnetlink() {
    let lab = Lab::fresh("a");
    serve_http(&lab.lan, 80, "hello from the LAN host");
    lab.learn_lan_neighbour();
    lab.block_kernel_forwarding();
    lab.router.ip(&["addr", "flush", "dev", "wan"]);
    let daemon = Daemon::in_lab(&lab, "skb", &["--share", "tcp:8080=10.77.0.10:80"]);
    assert!(
        daemon.ready_line.contains("external address none yet"),
        "{}",
        daemon.ready_line
    );

    lab.router
        .ip(&["addr", "add", "198.51.100.1/24", "dev", "wan"]);
    let body = eventually(|| http_get(&lab.remote, external(8080), Duration::from_millis(500)))
        .expect("forwarded once the WAN has an address");
    assert!(body.starts_with("hello from the LAN host"), "{body}");

    // The provider hands out another address: shares follow it.
    lab.router.ip(&["addr", "flush", "dev", "wan"]);
    lab.router
        .ip(&["addr", "add", "198.51.100.7/24", "dev", "wan"]);
    let moved = SocketAddr::from((Ipv4Addr::new(198, 51, 100, 7), 8080));
    eventually(|| http_get(&lab.remote, moved, Duration::from_millis(500)))
        .expect("forwarded on the new address");
    assert!(
        http_get(&lab.remote, external(8080), Duration::from_millis(500)).is_err(),
        "the old address no longer answers"
    );
}

#[test]
fn a_changed_neighbour_invalidates_cached_next_hops() {
    let mut lab = Lab::fresh("n");
    lab.attach_host_pass_programs();
    serve_http(&lab.lan, 80, "hello from the LAN host");
    lab.learn_lan_neighbour();
    lab.learn_remote_neighbour();
    lab.block_kernel_forwarding();
    let _daemon = start(&lab, "native", &SHARES);
    http_get(&lab.remote, external(8080), WAIT).expect("forwarded");

    // The LAN host gets a new MAC address; the router learns it. Frames still addressed to the
    // old one would be dropped by the host as not its own.
    lab.lan
        .ip(&["link", "set", "eth0", "address", "02:00:00:00:77:10"]);
    lab.learn_lan_neighbour();
    let body = eventually(|| http_get(&lab.remote, external(8080), Duration::from_millis(500)))
        .expect("forwarded to the new MAC address");
    assert!(body.starts_with("hello from the LAN host"), "{body}");
}

#[test]
fn auto_mode_falls_back_to_generic_where_native_is_refused() {
    let lab = Lab::fresh("f");
    // A bridge has no native XDP support: the driver refuses, generic mode works.
    lab.router.ip(&["link", "add", "br0", "type", "bridge"]);
    lab.router
        .ip(&["addr", "add", "10.78.0.1/24", "dev", "br0"]);
    lab.router.ip(&["link", "set", "br0", "up"]);
    let daemon = Daemon::start(&lab.router, &["--wan", "wan", "--lan", "br0"]);
    assert!(
        daemon
            .ready_line
            .contains("wan wan (native), lan br0 (skb)"),
        "{}",
        daemon.ready_line
    );
    let (status, log) = daemon.stop();
    assert!(status.success(), "{log}");
    assert!(log.contains("native XDP refused on br0"), "{log}");
    assert!(log.contains("falling back to generic (skb) mode"), "{log}");

    refused(
        &lab,
        &["--wan", "wan", "--lan", "br0", "--xdp-mode", "native"],
        "attaching XDP to br0 in native mode",
    );
}

/// A port range added with the CLI: a port in the middle carries traffic through XDP alone,
/// the ports on either side do not, and the range goes whole.
#[test]
fn a_port_range_carries_its_ports_and_not_the_ones_beside_it() {
    let lab = Lab::fresh("rg");
    for port in [27014, 27022, 27031] {
        serve_udp_echo(&lab.lan, port);
    }
    lab.learn_lan_neighbour();
    lab.learn_remote_neighbour();
    lab.block_kernel_forwarding();
    let daemon = start(&lab, "skb", &[]);
    let state = daemon.state_dir().expect("state dir").to_owned();
    let out = portfwd_tests::cli_ok(
        &lab,
        &state,
        &["share", "add", "udp:27015-27030=10.77.0.10:27015"],
    );
    assert!(out.contains("udp:27015-27030"), "{out}");
    let (reply, from) = udp_exchange(&lab.remote, external(27022), b"mid", WAIT)
        .expect("a port in the middle of the range");
    assert_eq!(reply, b"echo: mid");
    assert_eq!(from, external(27022));
    for beside in [27014, 27031] {
        assert!(
            udp_exchange(&lab.remote, external(beside), b"x", Duration::from_secs(1)).is_err(),
            "port {beside} is outside the range"
        );
    }
    let list: serde_json::Value = serde_json::from_str(&portfwd_tests::cli_ok(
        &lab,
        &state,
        &["share", "list", "--json"],
    ))
    .expect("json");
    let share = &list["shares"][0];
    assert_eq!(share["id"], "udp:27015-27030", "{list}");
    assert_eq!(share["external_last"], 27030);
    assert_eq!(
        share["from_internet"], "198.51.100.1:27015-27030",
        "{share}"
    );
    assert!(
        share["counters"]["packets_in"].as_u64() >= Some(1),
        "{share}"
    );
    portfwd_tests::cli_ok(&lab, &state, &["share", "rm", "udp:27015-27030"]);
    assert!(
        udp_exchange(&lab.remote, external(27022), b"x", Duration::from_secs(1)).is_err(),
        "removed"
    );
}

/// Hairpin: a second LAN host reaches the shares through the external address, through XDP
/// alone, and the share's host sees the box as its peer; the share's own host reaches itself.
#[test]
fn lan_hosts_reach_shares_through_the_external_address() {
    let lab = Lab::fresh("hp");
    let second = lab.second_lan_host();
    serve_http(&lab.lan, 80, "hello from the LAN host");
    serve_udp_echo(&lab.lan, 5353);
    lab.learn_lan_neighbour();
    lab.learn_remote_neighbour();
    lab.block_kernel_forwarding();
    let _daemon = start(&lab, "skb", &SHARES);
    for host in [&second, &lab.lan] {
        let body = http_get(host, external(8080), WAIT).expect("HTTP through the external address");
        assert!(
            body.starts_with(&format!("hello from the LAN host (you are {ROUTER_LAN}:")),
            "{body}"
        );
    }
    let (reply, from) = udp_exchange(&second, external(5300), b"loop", WAIT)
        .expect("UDP through the external address");
    assert_eq!(reply, b"echo: loop");
    assert_eq!(
        from,
        external(5300),
        "the reply comes from the address it went to"
    );
    // From the internet, as before.
    assert_both_shares_carry_traffic(&lab);
}
