//! NAT-PMP and PCP end to end: the real `portfwd` in the netns lab, driven by clients no one
//! here wrote (Debian's `natpmpc` from libnatpmp, the `crab_nat` crate) and by hand-made
//! datagrams for the error paths. Mappings they make must carry traffic from the remote host
//! to the LAN host with the router's kernel forwarding blocked (so only XDP can carry it), and
//! stop carrying it when deleted or expired. Needs root.

use std::{
    fs,
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6, UdpSocket},
    num::NonZeroU16,
    process::Output,
    thread,
    time::{Duration, Instant},
};

use crab_nat::{
    GatewayAddress, InternetProtocol, PortMapping, PortMappingOptions, PortMappingType,
};
use portfwd_tests::{
    Daemon, EXTERNAL, LAN_HOST, LAN_HOST6, Lab, Netns, ROUTER_LAN, ROUTER_LAN6, WAIT, http_get,
    serve_http, serve_http_on, serve_udp_echo, tcp_reaches_lan, temp_dir, udp_reaches_lan,
};

const SERVER: SocketAddrV4 = SocketAddrV4::new(ROUTER_LAN, 5351);

/// A lab with the LAN host serving HTTP on 80 and UDP echo on 5353, kernel forwarding
/// blocked, and portfwd running with `extra` arguments.
fn lab_with_daemon(tag: &str, extra: &[&str]) -> (Lab, Daemon) {
    let lab = Lab::fresh(tag);
    lab.block_kernel_forwarding();
    serve_http(&lab.lan, 80, "hello from the LAN host");
    serve_udp_echo(&lab.lan, 5353);
    let daemon = start(&lab, extra);
    (lab, daemon)
}

fn start(lab: &Lab, extra: &[&str]) -> Daemon {
    let daemon = Daemon::in_lab(lab, "skb", extra);
    assert!(
        daemon.ready_line.contains("NAT-PMP/PCP on 10.77.0.1:5351"),
        "{}",
        daemon.ready_line
    );
    daemon
}

/// `natpmpc -g ROUTER ARGS` in the LAN host's namespace: stdout and stderr.
fn natpmpc(lab: &Lab, args: &[&str]) -> String {
    let out: Output = lab
        .lan
        .command("natpmpc")
        .args(["-g", "10.77.0.1"])
        .args(args)
        .output()
        .expect("run natpmpc (cargo xtask test installs it)");
    String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr)
}

/// Sends `datagram` to the server from the LAN host; the answer, if one comes within a second.
fn exchange(ns: &Netns, to: SocketAddrV4, datagram: Vec<u8>) -> Option<Vec<u8>> {
    ns.run(move || {
        let socket = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0)).expect("bind");
        socket
            .set_read_timeout(Some(Duration::from_secs(1)))
            .expect("timeout");
        socket.send_to(&datagram, to).expect("send");
        let mut buf = [0u8; 1200];
        let (n, _) = socket.recv_from(&mut buf).ok()?;
        Some(buf[..n].to_vec())
    })
}

/// The shares the API lists, as (id, source, client) from `portfwd share list --json`.
fn listed(lab: &Lab, daemon: &Daemon) -> Vec<(String, String, String)> {
    let state_dir = daemon.state_dir().expect("own state dir");
    let out = portfwd_tests::cli_ok(lab, state_dir, &["share", "list", "--json"]);
    let list: serde_json::Value = serde_json::from_str(&out).expect("json");
    list["shares"]
        .as_array()
        .expect("shares")
        .iter()
        .map(|s| {
            let text = |k: &str| s[k].as_str().unwrap_or_default().to_owned();
            (text("id"), text("source"), text("client"))
        })
        .collect()
}

#[test]
fn natpmpc_mappings_carry_traffic_until_deleted_or_expired() {
    let config = temp_dir("pcp-config").join("portfwd.toml");
    fs::write(&config, "[pcp]\nmin_lifetime = 2\n").expect("config");
    let (lab, daemon) = lab_with_daemon("pmp", &["--config", config.to_str().expect("path")]);

    let out = natpmpc(&lab, &[]);
    assert!(out.contains("Public IP address : 198.51.100.1"), "{out}");

    assert!(!tcp_reaches_lan(&lab, 8080), "nothing shared yet");
    let out = natpmpc(&lab, &["-a", "8080", "80", "tcp", "3600"]);
    assert!(
        // (natpmpc spells it "liftime".)
        out.contains("Mapped public port 8080 protocol TCP to local port 80 liftime 3600"),
        "{out}"
    );
    assert!(tcp_reaches_lan(&lab, 8080), "TCP through the NAT-PMP share");
    let out = natpmpc(&lab, &["-a", "5300", "5353", "udp", "3600"]);
    assert!(
        out.contains("Mapped public port 5300 protocol UDP"),
        "{out}"
    );
    assert!(udp_reaches_lan(&lab, 5300), "UDP through the NAT-PMP share");
    let shares = listed(&lab, &daemon);
    assert!(
        shares.contains(&("tcp:8080".into(), "natpmp".into(), LAN_HOST.to_string())),
        "{shares:?}"
    );

    // Lifetime 0 deletes.
    let out = natpmpc(&lab, &["-a", "8080", "80", "tcp", "0"]);
    assert!(out.contains("liftime 0"), "{out}");
    assert!(!tcp_reaches_lan(&lab, 8080), "deleted: no more TCP");
    assert!(udp_reaches_lan(&lab, 5300), "the UDP share is not touched");
    // Internal port 0 with lifetime 0: every UDP share of this client.
    natpmpc(&lab, &["-a", "0", "0", "udp", "0"]);
    assert!(!udp_reaches_lan(&lab, 5300), "deleted with the rest");

    // A lifetime runs out: asked for 3 s, granted 3 s (the minimum here is 2).
    let out = natpmpc(&lab, &["-a", "8081", "80", "tcp", "3"]);
    assert!(out.contains("liftime 3\n"), "{out}");
    assert!(tcp_reaches_lan(&lab, 8081));
    thread::sleep(Duration::from_secs(4));
    assert!(!tcp_reaches_lan(&lab, 8081), "expired");
    assert!(listed(&lab, &daemon).is_empty());
}

/// Runs `f` on a current-thread runtime in the LAN host's namespace.
fn in_lan<T: Send + 'static, F: Future<Output = T>>(
    lab: &Lab,
    f: impl FnOnce() -> F + Send + 'static,
) -> T {
    lab.lan.run(move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime")
            .block_on(f())
    })
}

fn options(external_port: u16, lifetime: u32) -> PortMappingOptions {
    PortMappingOptions {
        external_port: NonZeroU16::new(external_port),
        lifetime_seconds: Some(lifetime),
        timeout_config: None,
    }
}

fn port(n: u16) -> NonZeroU16 {
    NonZeroU16::new(n).expect("port")
}

#[test]
fn crab_nat_pcp_and_nat_pmp_mappings_carry_traffic() {
    let (lab, daemon) = lab_with_daemon("crab", &[]);
    let gateway = GatewayAddress::IpV4(ROUTER_LAN);

    // PCP first, as crab_nat always tries it.
    let tcp = in_lan(&lab, move || {
        PortMapping::new(
            gateway,
            IpAddr::V4(LAN_HOST),
            InternetProtocol::Tcp,
            port(80),
            options(9090, 600),
        )
    })
    .expect("PCP mapping");
    let PortMappingType::Pcp { external_ip, .. } = tcp.mapping_type() else {
        panic!("not PCP: {tcp:?}");
    };
    assert_eq!(external_ip, IpAddr::V4(EXTERNAL));
    assert_eq!((tcp.external_port().get(), tcp.lifetime()), (9090, 600));
    assert!(tcp_reaches_lan(&lab, 9090), "TCP through the PCP share");

    // NAT-PMP directly, for UDP.
    let udp = in_lan(&lab, move || {
        crab_nat::natpmp::port_mapping(
            gateway,
            InternetProtocol::Udp,
            port(5353),
            options(5400, 600),
        )
    })
    .expect("NAT-PMP mapping");
    assert_eq!(udp.external_port().get(), 5400);
    assert!(udp_reaches_lan(&lab, 5400), "UDP through the NAT-PMP share");
    let shares = listed(&lab, &daemon);
    assert!(
        shares.contains(&("tcp:9090".into(), "pcp".into(), LAN_HOST.to_string()))
            && shares.contains(&("udp:5400".into(), "natpmp".into(), LAN_HOST.to_string())),
        "{shares:?}"
    );

    // Renewing keeps the port; another client's request for it gets another one.
    let mut renewed = tcp.clone();
    let renewed = in_lan(&lab, move || async move {
        renewed.renew().await.map(|()| renewed)
    })
    .expect("renew");
    assert_eq!(renewed.external_port().get(), 9090);

    // Deleting stops the traffic.
    in_lan(&lab, move || async move {
        renewed.try_drop().await.map_err(|(e, _)| e)
    })
    .expect("PCP delete");
    assert!(!tcp_reaches_lan(&lab, 9090), "PCP share deleted");
    in_lan(&lab, move || async move {
        udp.try_drop().await.map_err(|(e, _)| e)
    })
    .expect("NAT-PMP delete");
    assert!(!udp_reaches_lan(&lab, 5400), "NAT-PMP share deleted");
    assert!(listed(&lab, &daemon).is_empty());
}

/// HTTP from the remote host to the LAN host's own IPv6 address and `port`.
fn reaches_lan6(lab: &Lab, port: u16) -> bool {
    http_get(
        &lab.remote,
        SocketAddr::V6(SocketAddrV6::new(LAN_HOST6, port, 0, 0)),
        WAIT,
    )
    .is_ok_and(|body| body.starts_with("hello over IPv6"))
}

#[test]
fn crab_nat_pcp_over_ipv6_opens_a_pinhole_that_carries_traffic() {
    let (lab, daemon) = lab_with_daemon("crab6", &[]);
    lab.learn_lan_neighbour();
    lab.learn_remote_neighbour();
    serve_http_on(
        &lab.lan,
        SocketAddr::from((Ipv6Addr::UNSPECIFIED, 8443)),
        "hello over IPv6",
    );
    assert!(
        !reaches_lan6(&lab, 8443),
        "no pinhole: the blocked kernel does not forward"
    );
    let gateway = GatewayAddress::IpV6(ROUTER_LAN6, None);
    let mapping = in_lan(&lab, move || {
        PortMapping::new(
            gateway,
            IpAddr::V6(LAN_HOST6),
            InternetProtocol::Tcp,
            port(8443),
            options(0, 600),
        )
    })
    .expect("PCP mapping over IPv6");
    let PortMappingType::Pcp { external_ip, .. } = mapping.mapping_type() else {
        panic!("not PCP: {mapping:?}");
    };
    // A firewall, not a NAT: the host's own address and port are what the internet sees.
    assert_eq!(external_ip, IpAddr::V6(LAN_HOST6));
    assert_eq!(mapping.external_port().get(), 8443);
    assert!(reaches_lan6(&lab, 8443), "IPv6 through the PCP pinhole");
    let state_dir = daemon.state_dir().expect("own state dir");
    let out = portfwd_tests::cli_ok(&lab, state_dir, &["share", "list", "--json"]);
    let list: serde_json::Value = serde_json::from_str(&out).expect("json");
    let pinhole = &list["pinholes"][0];
    assert_eq!(pinhole["id"], "tcp:[2001:db8:77::10]:8443", "{list}");
    assert_eq!(pinhole["source"], "pcp");
    assert_eq!(pinhole["client"], "2001:db8:77::10");

    in_lan(&lab, move || async move {
        mapping.try_drop().await.map_err(|(e, _)| e)
    })
    .expect("PCP delete over IPv6");
    assert!(!reaches_lan6(&lab, 8443), "the pinhole is closed");
}

fn pcp_map(client: Ipv4Addr, nonce: u8, internal: u16, external: u16, lifetime: u32) -> Vec<u8> {
    let mut d = vec![2, 1, 0, 0];
    d.extend_from_slice(&lifetime.to_be_bytes());
    d.extend_from_slice(&client.to_ipv6_mapped().octets());
    d.extend_from_slice(&[nonce; 12]);
    d.extend_from_slice(&[6, 0, 0, 0]);
    d.extend_from_slice(&internal.to_be_bytes());
    d.extend_from_slice(&external.to_be_bytes());
    d.extend_from_slice(&[0; 16]);
    d
}

/// PCP result code of an answer.
fn result(answer: Option<Vec<u8>>) -> u8 {
    let answer = answer.expect("an answer");
    assert_eq!(answer[0], 2, "{answer:?}");
    assert!(answer[1] & 0x80 != 0, "a response");
    answer[3]
}

#[test]
fn malformed_datagrams_get_result_codes_and_the_daemon_carries_on() {
    let (lab, mut daemon) = lab_with_daemon("pcp-bad", &[]);
    let lan = &lab.lan;

    assert_eq!(exchange(lan, SERVER, vec![0]), None, "one byte: dropped");
    assert_eq!(
        exchange(lan, SERVER, vec![0, 0x80]),
        None,
        "a response: dropped"
    );
    assert_eq!(
        exchange(lan, SERVER, vec![0, 1, 0, 0, 0]),
        None,
        "short NAT-PMP map: dropped"
    );
    let answer = exchange(lan, SERVER, vec![0, 9]).expect("answer");
    assert_eq!(&answer[..4], &[0, 0x89, 0, 5], "NAT-PMP unsupported opcode");
    assert_eq!(
        result(exchange(lan, SERVER, vec![1, 1, 0, 0])),
        1,
        "version 1"
    );
    assert_eq!(result(exchange(lan, SERVER, vec![7; 24])), 1, "version 7");
    assert_eq!(
        result(exchange(lan, SERVER, vec![2, 1, 0, 0, 0, 0])),
        3,
        "short PCP"
    );
    let mut odd = pcp_map(LAN_HOST, 1, 80, 8080, 600);
    odd.push(0);
    assert_eq!(result(exchange(lan, SERVER, odd)), 3, "not a multiple of 4");
    let mut opcode = pcp_map(LAN_HOST, 1, 80, 8080, 600);
    opcode[1] = 5;
    assert_eq!(result(exchange(lan, SERVER, opcode)), 4, "unknown opcode");
    let mut option = pcp_map(LAN_HOST, 1, 80, 8080, 600);
    option.extend_from_slice(&[42, 0, 0, 0]);
    assert_eq!(
        result(exchange(lan, SERVER, option)),
        5,
        "unknown mandatory option"
    );
    let spoofed = pcp_map(Ipv4Addr::new(10, 77, 0, 99), 1, 80, 8080, 600);
    assert_eq!(
        result(exchange(lan, SERVER, spoofed)),
        12,
        "address mismatch"
    );
    let junk: Vec<u8> = (0..=255u8).cycle().step_by(7).take(1100).collect();
    let _ = exchange(lan, SERVER, junk);

    // A good mapping still works, and a request with another nonce may not take it over.
    let answer = exchange(lan, SERVER, pcp_map(LAN_HOST, 1, 80, 8080, 600));
    assert_eq!(result(answer), 0);
    assert!(tcp_reaches_lan(&lab, 8080));
    assert_eq!(
        result(exchange(lan, SERVER, pcp_map(LAN_HOST, 2, 80, 8080, 600))),
        2,
        "another nonce: NOT_AUTHORIZED"
    );
    assert_eq!(
        result(exchange(lan, SERVER, pcp_map(LAN_HOST, 2, 80, 8080, 0))),
        2,
        "nor delete it"
    );
    assert!(tcp_reaches_lan(&lab, 8080));

    // Nothing answers on the WAN side.
    let wan = SocketAddrV4::new(EXTERNAL, 5351);
    assert_eq!(
        exchange(&lab.remote, wan, vec![0, 0]),
        None,
        "no NAT-PMP on the WAN"
    );
    assert!(daemon.is_running(), "{}", daemon.stderr());
}

#[test]
fn the_external_address_is_announced_at_start_and_when_it_changes() {
    let lab = Lab::fresh("pcp-ann");
    // Listening before the daemon starts, as a client on the LAN would be.
    let listener = lab.lan.run(|| {
        let socket = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 5350)).expect("bind 5350");
        socket
            .set_read_timeout(Some(Duration::from_millis(200)))
            .expect("timeout");
        socket
    });
    let receive = |until: Duration| {
        let deadline = Instant::now() + until;
        let mut got = Vec::new();
        let mut buf = [0u8; 256];
        while Instant::now() < deadline {
            if let Ok((n, from)) = listener.recv_from(&mut buf) {
                got.push((buf[..n].to_vec(), from));
            }
        }
        got
    };
    let _daemon = start(&lab, &[]);
    let got = receive(Duration::from_secs(2));
    let router = SocketAddr::V4(SERVER);
    let pmp: Vec<_> = got
        .iter()
        .filter(|(d, from)| d.len() == 12 && d[..4] == [0, 128, 0, 0] && *from == router)
        .collect();
    assert!(pmp.len() >= 2, "NAT-PMP announcements, repeated: {got:?}");
    assert_eq!(&pmp[0].0[8..], &EXTERNAL.octets());
    assert!(
        got.iter()
            .any(|(d, _)| d.len() == 24 && d[..4] == [2, 0x80, 0, 0]),
        "a PCP ANNOUNCE: {got:?}"
    );

    let moved = Ipv4Addr::new(198, 51, 100, 9);
    lab.router.ip(&["addr", "flush", "dev", "wan"]);
    lab.router
        .ip(&["addr", "add", "198.51.100.9/24", "dev", "wan"]);
    let got = receive(Duration::from_secs(2));
    assert!(
        got.iter()
            .any(|(d, _)| d.len() == 12 && d[..4] == [0, 128, 0, 0] && d[8..] == moved.octets()),
        "the new address announced: {got:?}"
    );
}
