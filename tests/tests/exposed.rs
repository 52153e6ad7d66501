//! The exposed host end to end: with one set through the CLI, what no share claims reaches
//! it through XDP, shares keep their own hosts, the box's own services stay the box's, the LAN
//! hosts' own connections out keep working, pings are answered by it, and IPv6 to it is open
//! on every port. Needs root.

use std::{
    net::{Ipv6Addr, SocketAddr, SocketAddrV6},
    time::Duration,
};

use portfwd_tests::{
    Daemon, LAN_HOST6, Lab, REMOTE, WAIT, cli_ok, external, http_get, serve_http, serve_http_on,
    serve_udp_echo, udp_exchange,
};
use serde_json::Value;

const SECOND: &str = "10.77.0.11";

fn exposed_json(lab: &Lab, state: &std::path::Path) -> Value {
    serde_json::from_str(&cli_ok(lab, state, &["exposed-host", "--json"])).expect("json")
}

#[test]
fn what_no_share_claims_reaches_the_exposed_host_and_nothing_else_changes() {
    let lab = Lab::fresh("ex");
    let second = lab.second_lan_host();
    // The share's host, the exposed host, the box and the remote each answer in their words.
    serve_http(&lab.lan, 80, "hello from the LAN host");
    for port in [8080, 9000, 7000] {
        serve_http(&second, port, "hello from the exposed host");
    }
    serve_http(&lab.router, 7000, "hello from the box");
    serve_http(&lab.remote, 8081, "hello from the remote host");
    serve_udp_echo(&lab.remote, 5000);
    lab.learn_lan_neighbour();
    lab.learn_remote_neighbour();
    lab.masquerade();
    let daemon = Daemon::in_lab(&lab, "skb", &["--share", "tcp:8080=10.77.0.10:80"]);
    let state = daemon.state_dir().expect("state dir").to_owned();
    assert!(
        http_get(&lab.remote, external(9000), Duration::from_secs(1)).is_err(),
        "no exposed host yet: the box has nothing on 9000"
    );

    let out = cli_ok(&lab, &state, &["exposed-host", "set", SECOND]);
    assert!(out.contains(&format!("ipv4 {SECOND}")), "{out}");
    // An unshared port: the exposed host, which sees the remote as it is.
    let body = http_get(&lab.remote, external(9000), WAIT).expect("to the exposed host");
    assert!(
        body.starts_with(&format!("hello from the exposed host (you are {REMOTE}:")),
        "{body}"
    );
    // A shared port: still its share's host.
    let body = http_get(&lab.remote, external(8080), WAIT).expect("the share");
    assert!(body.starts_with("hello from the LAN host"), "{body}");
    // The box's own service: the box's.
    let body = http_get(&lab.remote, external(7000), WAIT).expect("the box");
    assert!(body.starts_with("hello from the box"), "{body}");
    // The LAN hosts' own connections out, TCP and UDP, the exposed host's among them.
    let remote = SocketAddr::from((REMOTE, 8081));
    for host in [&lab.lan, &second] {
        let body = http_get(host, remote, WAIT).expect("out through the masquerade");
        assert!(body.starts_with("hello from the remote host"), "{body}");
        let (reply, _) = udp_exchange(host, SocketAddr::from((REMOTE, 5000)), b"out", WAIT)
            .expect("a UDP reply through the masquerade");
        assert_eq!(reply, b"echo: out");
    }
    // A ping to the external address is the exposed host's to answer.
    let before = exposed_json(&lab, &state)["counters"]["ipv4"]["packets_in"]
        .as_u64()
        .expect("counter");
    let ping = lab
        .remote
        .exec(&["ping", "-c", "1", "-W", "2", "198.51.100.1"]);
    assert!(ping.contains("1 received"), "{ping}");
    let after = exposed_json(&lab, &state);
    assert!(
        after["counters"]["ipv4"]["packets_in"].as_u64() > Some(before),
        "{after}"
    );
    assert!(
        after["counters"]["ipv4"]["packets_out"].as_u64() > Some(0),
        "{after}"
    );
    let status = cli_ok(&lab, &state, &["status"]);
    assert!(
        status.contains(&format!("exposed host ipv4 {SECOND}")),
        "{status}"
    );
    let events = cli_ok(&lab, &state, &["events"]);
    assert!(events.contains("exposed_host_set"), "{events}");

    // Cleared: the unshared port is nobody's again.
    cli_ok(&lab, &state, &["exposed-host", "clear", SECOND]);
    assert!(
        http_get(&lab.remote, external(9000), Duration::from_secs(1)).is_err(),
        "cleared"
    );
    let events = cli_ok(&lab, &state, &["events"]);
    assert!(events.contains("exposed_host_cleared"), "{events}");
}

#[test]
fn an_exposed_ipv6_host_is_open_on_every_port() {
    let lab = Lab::fresh("ex6");
    lab.learn_lan_neighbour();
    lab.learn_remote_neighbour();
    // Only XDP forwards, and the default config denies connections without a pinhole.
    lab.block_kernel_forwarding();
    for port in [2222, 45_000] {
        serve_http_on(
            &lab.lan,
            SocketAddr::from((Ipv6Addr::UNSPECIFIED, port)),
            "hello from the LAN host",
        );
    }
    let daemon = Daemon::in_lab(&lab, "skb", &[]);
    let state = daemon.state_dir().expect("state dir").to_owned();
    let to = |port| SocketAddr::V6(SocketAddrV6::new(LAN_HOST6, port, 0, 0));
    assert!(http_get(&lab.remote, to(2222), Duration::from_secs(1)).is_err());
    cli_ok(&lab, &state, &["exposed-host", "set", "2001:db8:77::10"]);
    for port in [2222, 45_000] {
        let body = http_get(&lab.remote, to(port), WAIT).expect("open");
        assert!(body.starts_with("hello from the LAN host"), "{body}");
    }
    let json = exposed_json(&lab, &state);
    assert_eq!(json["ipv6"], "2001:db8:77::10", "{json}");
    assert!(
        json["counters"]["ipv6"]["packets_in"].as_u64() >= Some(6),
        "{json}"
    );
    // Not a host of the LAN: refused, with the reason.
    let (ok, _, err) = portfwd_tests::cli(&lab, &state, &["exposed-host", "set", "2001:db8:ff::2"]);
    assert!(!ok && err.contains("not a host of the LAN"), "{err}");
}
