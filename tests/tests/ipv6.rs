//! IPv6 port sharing end to end: the real `portfwd` in the netns lab opens pinholes the owner
//! asks for through the CLI, and IPv6 from the remote host reaches the LAN host's own address
//! through XDP alone (the router's kernel forwarding is blocked), until the pinhole is switched
//! off or closed. With `[ipv6] inbound = "deny"` (the default), connection attempts without a
//! pinhole are dropped even where the kernel would forward them. Needs root.

use std::{
    fs,
    net::{Ipv6Addr, SocketAddr, SocketAddrV6},
};

use portfwd_tests::{
    Daemon, LAN_HOST6, Lab, REMOTE6, WAIT, cli_ok, http_get, serve_http_on, temp_dir, upnpc,
};
use serde_json::Value;

fn lan_host(port: u16) -> SocketAddr {
    SocketAddr::V6(SocketAddrV6::new(LAN_HOST6, port, 0, 0))
}

fn start(lab: &Lab, extra: &[&str]) -> Daemon {
    lab.learn_lan_neighbour();
    lab.learn_remote_neighbour();
    serve_http_on(
        &lab.lan,
        SocketAddr::from((Ipv6Addr::UNSPECIFIED, 80)),
        "hello from the LAN host",
    );
    Daemon::in_lab(lab, "skb", extra)
}

fn reaches(lab: &Lab) -> bool {
    reaches_port(lab, 80)
}

fn reaches_port(lab: &Lab, port: u16) -> bool {
    http_get(&lab.remote, lan_host(port), WAIT)
        .is_ok_and(|body| body.starts_with("hello from the LAN host (you are [2001:db8:ff::2]"))
}

/// A config file with `[ipv6] inbound = "pass"`.
fn pass_config(tag: &str) -> std::path::PathBuf {
    let config = temp_dir(tag).join("portfwd.toml");
    fs::write(&config, "[ipv6]\ninbound = \"pass\"\n").expect("config");
    config
}

#[test]
fn an_ipv6_share_opens_a_pinhole_that_carries_traffic_through_xdp() {
    let lab = Lab::fresh("v6");
    lab.block_kernel_forwarding();
    let daemon = start(&lab, &[]);
    let state = daemon.state_dir().expect("state dir").to_owned();
    assert!(
        !reaches(&lab),
        "no pinhole: the blocked kernel does not forward"
    );

    let out = cli_ok(
        &lab,
        &state,
        &[
            "share",
            "add",
            "tcp:80=[2001:db8:77::10]:80",
            "--name",
            "web6",
        ],
    );
    assert!(
        out.contains("added tcp:[2001:db8:77::10]:80 (IPv6)"),
        "{out}"
    );
    assert!(reaches(&lab), "IPv6 through the pinhole");
    assert!(reaches(&lab));
    let list: Value =
        serde_json::from_str(&cli_ok(&lab, &state, &["share", "list", "--json"])).expect("json");
    let pinhole = &list["pinholes"][0];
    assert_eq!(pinhole["id"], "tcp:[2001:db8:77::10]:80");
    assert_eq!(pinhole["name"], "web6");
    assert_eq!(pinhole["active"], true);
    assert!(
        pinhole["counters"]["packets_in"].as_u64() >= Some(6),
        "two connections' worth in: {pinhole}"
    );
    assert!(
        pinhole["counters"]["packets_out"].as_u64() >= Some(4),
        "{pinhole}"
    );
    let table = cli_ok(&lab, &state, &["share", "list"]);
    assert!(table.contains("tcp:[2001:db8:77::10]:80"), "{table}");

    cli_ok(
        &lab,
        &state,
        &["share", "disable", "tcp:[2001:db8:77::10]:80"],
    );
    assert!(!reaches(&lab), "switched off");
    cli_ok(
        &lab,
        &state,
        &["share", "enable", "tcp:[2001:db8:77::10]:80"],
    );
    assert!(reaches(&lab), "switched on again");

    // The pinhole is kept across a restart.
    daemon.kill();
    let daemon = Daemon::in_lab(&lab, "skb", &["--state-dir", state.to_str().expect("path")]);
    assert!(reaches(&lab), "restored from the state directory");
    cli_ok(&lab, &state, &["share", "rm", "tcp:[2001:db8:77::10]:80"]);
    assert!(!reaches(&lab), "closed");
    let events = cli_ok(&lab, &state, &["events"]);
    assert!(
        events.contains("IPv6 pinhole tcp:[2001:db8:77::10]:80"),
        "{events}"
    );
    drop(daemon);
}

#[test]
fn by_default_connections_without_a_pinhole_are_dropped_where_the_kernel_would_forward_and_pass_lets_the_kernel_decide()
 {
    let lab = Lab::fresh("v6deny");
    // The kernel forwards IPv6 here: only portfwd, with no config, stands in the way.
    let daemon = start(&lab, &[]);
    let state = daemon.state_dir().expect("state dir").to_owned();
    assert!(!reaches(&lab), "denied: no pinhole");
    cli_ok(
        &lab,
        &state,
        &["share", "add", "tcp:80=[2001:db8:77::10]:80"],
    );
    assert!(reaches(&lab), "the pinhole lets it in");
    // The LAN host's own connections out still get their replies (SYN-ACK is no attempt).
    serve_http_on(
        &lab.remote,
        SocketAddr::from((Ipv6Addr::UNSPECIFIED, 8080)),
        "hello from the remote host",
    );
    let remote = SocketAddr::V6(SocketAddrV6::new(REMOTE6, 8080, 0, 0));
    let body = http_get(&lab.lan, remote, WAIT).expect("out from the LAN");
    assert!(body.starts_with("hello from the remote host"), "{body}");

    // `pass` leaves the decision to the kernel, which forwards here: no pinhole needed.
    drop(daemon);
    let config = pass_config("v6pass");
    let _daemon = Daemon::in_lab(&lab, "skb", &["--config", config.to_str().expect("path")]);
    assert!(reaches(&lab), "pass: the kernel forwards without a pinhole");
}

/// The number after `label` in upnpc's output.
fn number_after(out: &str, label: &str) -> u64 {
    let at = out
        .find(label)
        .unwrap_or_else(|| panic!("no `{label}` in: {out}"))
        + label.len();
    out[at..]
        .trim_start()
        .split(|c: char| !c.is_ascii_digit())
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no number after `{label}` in: {out}"))
}

#[test]
fn upnpc_opens_updates_and_deletes_pinholes_that_carry_traffic() {
    let lab = Lab::fresh("v6upnp");
    // Only XDP forwards, and only through pinholes: whatever reaches the LAN host went
    // through the pinhole upnpc made. No config: the firewall is on by default, so UPnP may
    // open it.
    lab.block_kernel_forwarding();
    let mut daemon = start(&lab, &[]);
    let state = daemon.state_dir().expect("state dir").to_owned();
    serve_http_on(
        &lab.lan,
        SocketAddr::from((Ipv6Addr::UNSPECIFIED, 8080)),
        "hello from the LAN host",
    );
    assert!(!reaches_port(&lab, 8080), "no pinhole yet");

    let status = upnpc(&lab, &["-S"]);
    assert!(status.contains("Firewall Enabled: Yes"), "{status}");
    assert!(status.contains("Inbound Pinhole Allowed: Yes"), "{status}");

    // The box has not heard from the host over IPv6: secure mode (the default) solicits it
    // before it decides, and the first request succeeds.
    lab.router.ip(&["-6", "neigh", "flush", "dev", "lan"]);
    let known = lab
        .router
        .ip(&["-6", "neigh", "show", "2001:db8:77::10", "dev", "lan"]);
    assert!(!known.contains("lladdr"), "forgotten: {known}");
    let out = upnpc(
        &lab,
        &["-A", "empty", "0", "2001:db8:77::10", "8080", "TCP", "600"],
    );
    let id = number_after(&out, "Pinhole ID =");
    assert!(
        reaches_port(&lab, 8080),
        "IPv6 through the pinhole upnpc made"
    );
    let again = upnpc(
        &lab,
        &["-A", "empty", "0", "2001:db8:77::10", "8080", "TCP", "600"],
    );
    assert_eq!(
        number_after(&again, "Pinhole ID ="),
        id,
        "the same pinhole: {again}"
    );

    let packets = upnpc(&lab, &["-K", &id.to_string()]);
    assert!(number_after(&packets, "PinholePackets =") >= 3, "{packets}");
    let working = upnpc(&lab, &["-C", &id.to_string()]);
    assert!(working.contains("IsWorking = Yes"), "{working}");

    let list: Value =
        serde_json::from_str(&cli_ok(&lab, &state, &["share", "list", "--json"])).expect("json");
    let pinhole = &list["pinholes"][0];
    assert_eq!(pinhole["id"], "tcp:[2001:db8:77::10]:8080");
    assert_eq!(pinhole["source"], "upnp");
    assert_eq!(pinhole["client"], "10.77.0.10");
    assert_eq!(pinhole["unique_id"].as_u64(), Some(id));
    assert!(pinhole["expires_in"].as_u64() <= Some(600), "{pinhole}");

    let out = upnpc(&lab, &["-U", &id.to_string(), "3000"]);
    assert!(!out.contains("failed"), "{out}");
    let list: Value =
        serde_json::from_str(&cli_ok(&lab, &state, &["share", "list", "--json"])).expect("json");
    assert!(
        list["pinholes"][0]["expires_in"].as_u64() > Some(600),
        "{list}"
    );

    // Not an address of the asking device (secure mode): refused, nothing opened.
    let out = upnpc(
        &lab,
        &["-A", "empty", "0", "2001:db8:77::99", "8081", "TCP", "600"],
    );
    assert!(out.contains("606"), "{out}");

    let out = upnpc(&lab, &["-D", &id.to_string()]);
    assert!(!out.contains("failed"), "{out}");
    assert!(!reaches_port(&lab, 8080), "deleted");
    let out = upnpc(&lab, &["-D", &id.to_string()]);
    assert!(out.contains("704"), "{out}");

    // A short lease ends on its own, and the traffic with it.
    let out = upnpc(
        &lab,
        &["-A", "empty", "0", "2001:db8:77::10", "8080", "TCP", "3"],
    );
    number_after(&out, "Pinhole ID =");
    assert!(reaches_port(&lab, 8080), "the short pinhole works");
    std::thread::sleep(std::time::Duration::from_secs(4));
    assert!(!reaches_port(&lab, 8080), "expired");
    let events = cli_ok(&lab, &state, &["events"]);
    assert!(events.contains("share_expired"), "{events}");
    assert!(daemon.is_running());
}
