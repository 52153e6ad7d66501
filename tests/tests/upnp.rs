//! UPnP IGD end to end: the real `portfwd` in the netns lab, driven by clients no one here
//! wrote (Debian's `upnpc` from miniupnpc, the `igd-next` crate) and by hand-made SOAP for the
//! error paths. Mappings they make must carry TCP and UDP from the remote host to the LAN host
//! with the router's kernel forwarding blocked (so only XDP can carry it). Needs root.

use std::{
    fmt::Write as _,
    io::{Read as _, Write as _},
    net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpStream, UdpSocket},
    process::Output,
    thread,
    time::{Duration, Instant},
};

use portfwd_tests::{
    Daemon, EXTERNAL, LAN_HOST, Lab, ROOT_DESC, ROUTER_LAN, WAIT, serve_http, serve_udp_echo,
    tcp_reaches_lan, temp_dir, udp_reaches_lan, upnpc,
};

const IP_CONN_1: &str = "urn:schemas-upnp-org:service:WANIPConnection:1";
const IP_CONN_2: &str = "urn:schemas-upnp-org:service:WANIPConnection:2";

/// A lab with the LAN host serving HTTP on 80 and UDP echo on 5353, kernel forwarding
/// blocked, and portfwd running with `extra` arguments.
fn lab_with_daemon(tag: &str, extra: &[&str]) -> (Lab, Daemon) {
    let lab = Lab::fresh(tag);
    lab.block_kernel_forwarding();
    serve_http(&lab.lan, 80, "hello from the LAN host");
    serve_udp_echo(&lab.lan, 5353);
    let daemon = Daemon::in_lab(&lab, "skb", extra);
    assert!(
        daemon.ready_line.contains(ROOT_DESC),
        "{}",
        daemon.ready_line
    );
    (lab, daemon)
}

fn run(command: &mut std::process::Command) -> Output {
    command
        .output()
        .expect("run (is miniupnpc installed? cargo xtask test installs it)")
}

/// A SOAP call from `from` (in the LAN host's namespace) to the control URL; the HTTP status
/// and body.
fn soap(lab: &Lab, service: &str, action: &str, args: &[(&str, &str)]) -> (u16, String) {
    let mut body = format!(
        r#"<?xml version="1.0"?><s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/" s:encodingStyle="http://schemas.xmlsoap.org/soap/encoding/"><s:Body><u:{action} xmlns:u="{service}">"#
    );
    for (name, value) in args {
        let _ = write!(body, "<{name}>{value}</{name}>");
    }
    let _ = write!(body, "</u:{action}></s:Body></s:Envelope>");
    post(
        lab,
        "/ctl/IPConn",
        &format!("\"{service}#{action}\""),
        &body,
    )
}

fn post(lab: &Lab, path: &str, soap_action: &str, body: &str) -> (u16, String) {
    let request = format!(
        "POST {path} HTTP/1.1\r\nHost: 10.77.0.1:5000\r\nContent-Type: text/xml; charset=\"utf-8\"\r\nSOAPAction: {soap_action}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    raw_http(lab, request.into_bytes())
}

fn raw_http(lab: &Lab, request: Vec<u8>) -> (u16, String) {
    lab.lan.run(move || {
        let addr = SocketAddr::V4(SocketAddrV4::new(ROUTER_LAN, 5000));
        let mut stream = TcpStream::connect_timeout(&addr, WAIT).expect("connect to UPnP");
        stream.set_read_timeout(Some(WAIT)).expect("timeout");
        // The server may answer (413) and close before the whole body is written.
        let _ = stream.write_all(&request);
        let mut response = String::new();
        let _ = stream.read_to_string(&mut response);
        let status = response
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("not an HTTP response: {response:?}"));
        (status, response)
    })
}

fn lab_with_daemon_ready_line_is_v1(lab: &Lab) -> bool {
    let (status, body) = raw_http(
        lab,
        b"GET /rootDesc.xml HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".to_vec(),
    );
    status == 200
        && body.contains("InternetGatewayDevice:1")
        && body.contains("WANIPConnection:1")
        && !body.contains(":2<")
}

fn error_code(response: &str) -> Option<u16> {
    let start = response.find("<errorCode>")? + "<errorCode>".len();
    let end = response[start..].find('<')? + start;
    response[start..end].parse().ok()
}

fn add_args<'a>(
    ext: &'a str,
    client: &'a str,
    int: &'a str,
    lease: &'a str,
) -> Vec<(&'a str, &'a str)> {
    vec![
        ("NewRemoteHost", ""),
        ("NewExternalPort", ext),
        ("NewProtocol", "TCP"),
        ("NewInternalPort", int),
        ("NewInternalClient", client),
        ("NewEnabled", "1"),
        ("NewPortMappingDescription", "test"),
        ("NewLeaseDuration", lease),
    ]
}

#[test]
fn upnpc_adds_lists_and_deletes_mappings_that_carry_traffic() {
    let (lab, _daemon) = lab_with_daemon("ua", &[]);
    assert!(!tcp_reaches_lan(&lab, 8080), "nothing shared yet");

    let out = upnpc(
        &lab,
        &["-e", "web", "-a", "10.77.0.10", "80", "8080", "TCP", "3600"],
    );
    assert!(
        out.contains("is redirected to internal 10.77.0.10:80"),
        "{out}"
    );
    let out = upnpc(
        &lab,
        &[
            "-e",
            "game",
            "-a",
            "10.77.0.10",
            "5353",
            "5300",
            "UDP",
            "3600",
        ],
    );
    assert!(
        out.contains("is redirected to internal 10.77.0.10:5353"),
        "{out}"
    );
    assert!(
        tcp_reaches_lan(&lab, 8080),
        "TCP through the mapping upnpc made"
    );
    assert!(
        udp_reaches_lan(&lab, 5300),
        "UDP through the mapping upnpc made"
    );

    let list = upnpc(&lab, &["-l"]);
    assert!(list.contains("TCP  8080->10.77.0.10:80"), "{list}");
    assert!(list.contains("UDP  5300->10.77.0.10:5353"), "{list}");
    assert!(list.contains("'web'") && list.contains("'game'"), "{list}");

    let listing = upnpc(&lab, &["-L"]);
    assert!(
        listing.contains("8080") && listing.contains("web"),
        "{listing}"
    );

    let out = upnpc(&lab, &["-d", "8080", "TCP"]);
    assert!(
        out.contains("UPNP_DeletePortMapping() returned : 0"),
        "{out}"
    );
    assert!(!tcp_reaches_lan(&lab, 8080), "deleted: no longer forwarded");
    assert!(udp_reaches_lan(&lab, 5300), "the other mapping stays");
    let list = upnpc(&lab, &["-l"]);
    assert!(!list.contains("8080->"), "{list}");

    // Deleting what is not there is 714.
    let out = upnpc(&lab, &["-d", "8080", "TCP"]);
    assert!(out.contains("714"), "{out}");
}

#[test]
fn upnpc_add_any_takes_the_nearest_free_port() {
    let (lab, _daemon) = lab_with_daemon("uy", &["--share", "tcp:9000=10.77.0.10:22"]);
    // 9000 is the owner's: AddAnyPortMapping gives the nearest free port instead.
    let out = upnpc(&lab, &["-n", "10.77.0.10", "80", "9000", "TCP", "600"]);
    assert!(out.contains("external 198.51.100.1:9001"), "{out}");
    assert!(tcp_reaches_lan(&lab, 9001));
    // AddPortMapping on the static port itself collides: 729 for an IGD:2 client.
    let out = upnpc(&lab, &["-a", "10.77.0.10", "80", "9000", "TCP", "600"]);
    assert!(out.contains("729"), "{out}");
    // Range deletion (IGD:2) removes the client's own mapping, never the static share.
    let out = upnpc(&lab, &["-N", "8000", "9999", "TCP"]);
    assert!(out.contains("returned 0") || !out.contains("fail"), "{out}");
    assert!(!tcp_reaches_lan(&lab, 9001));
    let (status, body) = soap(
        &lab,
        IP_CONN_2,
        "DeletePortMappingRange",
        &[
            ("NewStartPort", "8000"),
            ("NewEndPort", "9999"),
            ("NewProtocol", "TCP"),
            ("NewManage", "1"),
        ],
    );
    assert_eq!(
        (status, error_code(&body)),
        (500, Some(730)),
        "nothing left to delete"
    );
}

#[test]
fn upnpc_finds_the_gateway_over_ssdp_on_the_lan_only() {
    let (lab, _daemon) = lab_with_daemon("us", &[]);
    let discover = |ns: &portfwd_tests::Netns| {
        let out = run(ns.command("upnpc").args(["-m", "eth0", "-s"]));
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let text = discover(&lab.lan);
    assert!(
        text.contains("desc: http://10.77.0.1:5000/rootDesc.xml"),
        "{text}"
    );

    // From the WAN side: no SSDP answer, no HTTP, even with a route to the LAN address.
    lab.remote
        .ip(&["route", "add", "10.77.0.0/24", "via", "198.51.100.1"]);
    lab.remote
        .ip(&["route", "add", "239.255.255.250/32", "dev", "eth0"]);
    let text = discover(&lab.remote);
    assert!(!text.contains("rootDesc.xml"), "{text}");
    for target in [ROUTER_LAN, EXTERNAL] {
        let addr = SocketAddr::V4(SocketAddrV4::new(target, 5000));
        let reached = lab
            .remote
            .run(move || TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_ok());
        assert!(!reached, "UPnP HTTP reachable from the WAN at {addr}");
    }
    let answered = lab.remote.run(|| {
        let socket = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0)).expect("bind");
        socket
            .set_read_timeout(Some(Duration::from_secs(1)))
            .expect("timeout");
        let search = b"M-SEARCH * HTTP/1.1\r\nHOST: 239.255.255.250:1900\r\nMAN: \"ssdp:discover\"\r\nMX: 1\r\nST: ssdp:all\r\n\r\n";
        for to in [EXTERNAL, ROUTER_LAN] {
            socket.send_to(search, (to, 1900)).expect("send");
        }
        let mut buf = [0u8; 1500];
        socket.recv_from(&mut buf).is_ok()
    });
    assert!(!answered, "SSDP answered a search from the WAN");

    // miniupnpc 2.2 calls an IGD whose external address is reserved (the lab's is RFC 5737
    // documentation space) "not connected" and gives up on it. Give the WAN an address of the
    // kind a real uplink has: portfwd follows the change, and upnpc accepts the gateway it
    // found by SSDP.
    lab.router.ip(&["addr", "flush", "dev", "wan"]);
    lab.router
        .ip(&["addr", "add", "11.22.33.1/24", "dev", "wan"]);
    thread::sleep(Duration::from_millis(300));
    let text = discover(&lab.lan);
    assert!(
        text.contains("Found valid IGD : http://10.77.0.1:5000/ctl/IPConn"),
        "{text}"
    );
    assert!(text.contains("ExternalIPAddress = 11.22.33.1"), "{text}");
}

#[test]
fn igd_next_maps_reads_and_unmaps() {
    use igd_next::{PortMappingProtocol, SearchOptions};

    let (lab, _daemon) = lab_with_daemon("ui", &[]);
    let lan_host = SocketAddr::V4(SocketAddrV4::new(LAN_HOST, 80));
    let echo = SocketAddr::V4(SocketAddrV4::new(LAN_HOST, 5353));
    let gateway = lab.lan.run(|| {
        let mut options = SearchOptions::default();
        options.bind_addr = SocketAddr::V4(SocketAddrV4::new(LAN_HOST, 0));
        options.timeout = Some(Duration::from_secs(3));
        igd_next::search_gateway(options).expect("igd-next finds portfwd over SSDP")
    });
    assert_eq!(gateway.root_url, "/rootDesc.xml");
    let g = gateway.clone();
    lab.lan.run(move || {
        assert_eq!(
            g.get_external_ip().expect("external ip"),
            std::net::IpAddr::V4(EXTERNAL)
        );
        g.add_port(
            PortMappingProtocol::TCP,
            8181,
            lan_host,
            120,
            "igd-next tcp",
        )
        .expect("add tcp");
        g.add_port(PortMappingProtocol::UDP, 8181, echo, 120, "igd-next udp")
            .expect("add udp");
    });
    assert!(tcp_reaches_lan(&lab, 8181));
    assert!(udp_reaches_lan(&lab, 8181));
    let g = gateway.clone();
    let any = lab.lan.run(move || {
        // The same internal endpoint is shared once: AddAny hands back the port it has.
        let again = g
            .add_any_port(PortMappingProtocol::TCP, lan_host, 120, "again")
            .expect("add any");
        g.remove_port(PortMappingProtocol::TCP, 8181)
            .expect("remove tcp");
        again
    });
    assert_eq!(any, 8181);
    assert!(!tcp_reaches_lan(&lab, 8181), "removed");
    assert!(udp_reaches_lan(&lab, 8181), "udp stays");
}

#[test]
fn a_lease_ends_on_time() {
    let (lab, daemon) = lab_with_daemon("ul", &[]);
    let out = upnpc(&lab, &["-a", "10.77.0.10", "80", "8080", "TCP", "2"]);
    assert!(out.contains("is redirected"), "{out}");
    let granted = Instant::now();
    assert!(tcp_reaches_lan(&lab, 8080));
    while granted.elapsed() < Duration::from_millis(3200) {
        thread::sleep(Duration::from_millis(100));
    }
    assert!(!tcp_reaches_lan(&lab, 8080), "the lease ended a second ago");
    assert!(!upnpc(&lab, &["-l"]).contains("8080->"));
    let (_, log) = daemon.stop();
    assert!(
        log.contains("share_expired: tcp:8080 -> 10.77.0.10:80"),
        "{log}"
    );
}

#[test]
fn leases_survive_a_restart() {
    let state = temp_dir("ur");
    let state_arg = state.to_str().expect("utf-8").to_owned();
    let (lab, daemon) = lab_with_daemon("ur", &["--state-dir", &state_arg]);
    let out = upnpc(&lab, &["-a", "10.77.0.10", "80", "8080", "TCP", "600"]);
    assert!(out.contains("is redirected"), "{out}");
    let uuid = std::fs::read_to_string(state.join("uuid")).expect("uuid saved");
    let (status, _) = daemon.stop();
    assert!(status.success());
    // Stopped, the pinned data plane goes on forwarding the lease; a restart takes it over.
    assert!(tcp_reaches_lan(&lab, 8080), "stopped: still forwarded");

    let _daemon = Daemon::in_lab(&lab, "skb", &["--state-dir", &state_arg]);
    assert!(
        tcp_reaches_lan(&lab, 8080),
        "restored without the client asking again"
    );
    let (_, body) = soap(
        &lab,
        IP_CONN_2,
        "GetSpecificPortMappingEntry",
        &[
            ("NewRemoteHost", ""),
            ("NewExternalPort", "8080"),
            ("NewProtocol", "TCP"),
        ],
    );
    let lease: u32 = body
        .split("<NewLeaseDuration>")
        .nth(1)
        .and_then(|s| s.split('<').next())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("{body}"));
    assert!(
        (590..=600).contains(&lease),
        "the time it had left: {lease}"
    );
    assert_eq!(
        std::fs::read_to_string(state.join("uuid")).expect("uuid"),
        uuid,
        "same device identity"
    );
    let _ = std::fs::remove_dir_all(&state);
}

#[test]
fn refusals_get_the_spec_error_codes() {
    let config = temp_dir("uc").join("portfwd.toml");
    std::fs::write(
        &config,
        "[upnp]\nquota_per_client = 2\n[[share]]\nproto = \"tcp\"\nexternal_port = 7000\ninternal = \"10.77.0.20:7000\"\n",
    )
    .expect("config");
    let (lab, _daemon) = lab_with_daemon("uc", &["--config", config.to_str().expect("utf-8")]);
    let fault = |service, args: &[(&str, &str)]| {
        let (status, body) = soap(&lab, service, "AddPortMapping", args);
        assert_eq!(status, 500, "{body}");
        error_code(&body).unwrap_or_else(|| panic!("no errorCode: {body}"))
    };
    // Secure mode: a client maps only to itself.
    assert_eq!(
        fault(IP_CONN_2, &add_args("8000", "10.77.0.11", "80", "60")),
        606
    );
    // The rules keep the ports below 1024 the owner's.
    assert_eq!(
        fault(IP_CONN_2, &add_args("80", "10.77.0.10", "80", "60")),
        606
    );
    // The static share's port: 729 for IGD:2, 718 for IGD:1.
    assert_eq!(
        fault(IP_CONN_2, &add_args("7000", "10.77.0.10", "80", "60")),
        729
    );
    assert_eq!(
        fault(IP_CONN_1, &add_args("7000", "10.77.0.10", "80", "60")),
        718
    );
    // External port 0 is a wildcard AddPortMapping does not take.
    assert_eq!(
        fault(IP_CONN_2, &add_args("0", "10.77.0.10", "80", "60")),
        716
    );
    // Not numbers, missing arguments.
    assert_eq!(
        fault(IP_CONN_2, &add_args("http", "10.77.0.10", "80", "60")),
        402
    );
    assert_eq!(
        fault(IP_CONN_2, &add_args("8000", "10.77.0.10", "80", "-1")),
        402
    );
    assert_eq!(
        fault(IP_CONN_2, &add_args("8000", "10.77.0.10", "80", "60")[..3]),
        402
    );
    // A port the box itself listens on, on every address (think of its own sshd).
    let listener = lab.router.spawn(|| {
        let l = std::net::TcpListener::bind((Ipv4Addr::UNSPECIFIED, 2222)).expect("bind");
        thread::sleep(Duration::from_secs(5));
        drop(l);
    });
    thread::sleep(Duration::from_millis(200));
    assert_eq!(
        fault(IP_CONN_2, &add_args("2222", "10.77.0.10", "22", "60")),
        729
    );
    listener.join().expect("listener");

    // The quota: two per client.
    for (ext, int) in [("8001", "81"), ("8002", "82")] {
        let (status, body) = soap(
            &lab,
            IP_CONN_2,
            "AddPortMapping",
            &add_args(ext, "10.77.0.10", int, "60"),
        );
        assert_eq!(status, 200, "{body}");
    }
    assert_eq!(
        fault(IP_CONN_2, &add_args("8003", "10.77.0.10", "83", "60")),
        728
    );
    // Renewal is no new mapping; another internal port on a taken external port is 718.
    let (status, _) = soap(
        &lab,
        IP_CONN_2,
        "AddPortMapping",
        &add_args("8001", "10.77.0.10", "81", "60"),
    );
    assert_eq!(status, 200);
    assert_eq!(
        fault(IP_CONN_2, &add_args("8001", "10.77.0.10", "99", "60")),
        718
    );

    // Reading entries: 713 past the end.
    let (_, body) = soap(
        &lab,
        IP_CONN_2,
        "GetGenericPortMappingEntry",
        &[("NewPortMappingIndex", "2")],
    );
    assert_eq!(error_code(&body), Some(713), "{body}");
    let _ = std::fs::remove_dir_all(config.parent().expect("dir"));
}

#[test]
fn reads_and_other_actions_answer_as_the_spec_says() {
    // Advertised as IGD:1 (for Windows and Xbox), the control URL still takes IGD:2 actions.
    let config = temp_dir("uo").join("portfwd.toml");
    std::fs::write(&config, "[upnp]\nigd_version = 1\n").expect("config");
    let (lab, _daemon) = lab_with_daemon(
        "uo",
        &[
            "--share",
            "tcp:7000=10.77.0.20:7000",
            "--config",
            config.to_str().expect("utf-8"),
        ],
    );
    assert!(
        lab_with_daemon_ready_line_is_v1(&lab),
        "the description is IGD:1"
    );
    let (status, body) = soap(
        &lab,
        IP_CONN_2,
        "AddAnyPortMapping",
        &add_args("8000", "10.77.0.10", "80", "60"),
    );
    assert_eq!(status, 200, "{body}");
    assert!(
        body.contains("<NewReservedPort>8000</NewReservedPort>"),
        "{body}"
    );
    let (_, body) = soap(
        &lab,
        IP_CONN_2,
        "GetSpecificPortMappingEntry",
        &[
            ("NewRemoteHost", ""),
            ("NewExternalPort", "7000"),
            ("NewProtocol", "TCP"),
        ],
    );
    assert_eq!(
        error_code(&body),
        Some(714),
        "static shares are not the clients' to see"
    );
    // Deleting the owner's share: 606.
    let (_, body) = soap(
        &lab,
        IP_CONN_2,
        "DeletePortMapping",
        &[
            ("NewRemoteHost", ""),
            ("NewExternalPort", "7000"),
            ("NewProtocol", "TCP"),
        ],
    );
    assert_eq!(error_code(&body), Some(606), "{body}");
    // Ranges the wrong way round: 733. Connection type: read-only (731). Unknown action: 401.
    let (_, body) = soap(
        &lab,
        IP_CONN_2,
        "GetListOfPortMappings",
        &[
            ("NewStartPort", "9"),
            ("NewEndPort", "1"),
            ("NewProtocol", "TCP"),
            ("NewManage", "0"),
            ("NewNumberOfPorts", "0"),
        ],
    );
    assert_eq!(error_code(&body), Some(733), "{body}");
    let (_, body) = soap(
        &lab,
        IP_CONN_1,
        "SetConnectionType",
        &[("NewConnectionType", "IP_Bridged")],
    );
    assert_eq!(error_code(&body), Some(731), "{body}");
    let (_, body) = soap(&lab, IP_CONN_1, "ForceTermination", &[]);
    assert_eq!(error_code(&body), Some(606), "{body}");
    let (_, body) = soap(&lab, IP_CONN_1, "Reboot", &[]);
    assert_eq!(error_code(&body), Some(401), "{body}");

    // Status reads work for everyone.
    let (status, body) = soap(&lab, IP_CONN_1, "GetStatusInfo", &[]);
    assert_eq!(status, 200, "{body}");
    assert!(
        body.contains("<NewConnectionStatus>Connected</NewConnectionStatus>"),
        "{body}"
    );
    let (status, body) = post(
        &lab,
        "/ctl/CmnIfCfg",
        "\"urn:schemas-upnp-org:service:WANCommonInterfaceConfig:1#GetTotalPacketsReceived\"",
        r#"<?xml version="1.0"?><s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/"><s:Body><u:GetTotalPacketsReceived xmlns:u="urn:schemas-upnp-org:service:WANCommonInterfaceConfig:1"/></s:Body></s:Envelope>"#,
    );
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("<NewTotalPacketsReceived>"), "{body}");
}

#[test]
fn malformed_requests_get_errors_and_the_daemon_keeps_serving() {
    let (lab, daemon) = lab_with_daemon("um", &[]);
    let envelope_ok = |body: &str| {
        post(
            &lab,
            "/ctl/IPConn",
            &format!("\"{IP_CONN_2}#AddPortMapping\""),
            body,
        )
    };
    for (body, code) in [
        ("", 402),
        ("not xml at all", 402),
        (
            "<s:Envelope xmlns:s=\"http://schemas.xmlsoap.org/soap/envelope/\"><s:Body></s:Body></s:Envelope>",
            402,
        ),
        (
            "<?xml version=\"1.0\"?><!DOCTYPE x [<!ENTITY e SYSTEM \"file:///etc/shadow\">]><x>&e;</x>",
            402,
        ),
        (
            "<s:Envelope xmlns:s=\"http://schemas.xmlsoap.org/soap/envelope/\"><s:Body><u:AddPortMapping xmlns:u=\"urn:schemas-upnp-org:service:WANIPConnection:2\"><NewExternalPort>&e;</NewExternalPort></u:AddPortMapping></s:Body></s:Envelope>",
            402,
        ),
    ] {
        let (status, response) = envelope_ok(body);
        assert_eq!(status, 500, "{body}: {response}");
        let got = error_code(&response).unwrap_or_else(|| panic!("{body}: {response}"));
        assert!(got == code || got == 401, "{body}: {got}");
    }
    // Oversized body: refused before it is read.
    let big = "x".repeat(64 * 1024);
    let (status, _) = envelope_ok(&big);
    assert_eq!(status, 413);
    // SOAPAction naming another action than the body.
    let (status, body) = post(
        &lab,
        "/ctl/IPConn",
        &format!("\"{IP_CONN_2}#DeletePortMapping\""),
        &format!(
            r#"<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/"><s:Body><u:GetExternalIPAddress xmlns:u="{IP_CONN_2}"/></s:Body></s:Envelope>"#
        ),
    );
    assert_eq!((status, error_code(&body)), (500, Some(401)), "{body}");
    // Garbage instead of HTTP, and a header that never ends, and GENA subscriptions.
    let (status, _) = raw_http(&lab, b"\x00\x01\x02 garbage\r\n\r\n".to_vec());
    assert_eq!(status, 400);
    let (status, _) = raw_http(
        &lab,
        format!(
            "GET /rootDesc.xml HTTP/1.1\r\nX: {}\r\n\r\n",
            "y".repeat(20_000)
        )
        .into_bytes(),
    );
    assert_eq!(status, 431);
    let (status, _) = raw_http(
        &lab,
        b"SUBSCRIBE /evt/IPConn HTTP/1.1\r\nHost: x\r\nCALLBACK: <http://198.51.100.2:1/>\r\nNT: upnp:event\r\n\r\n".to_vec(),
    );
    assert_eq!(status, 501);
    // Still serving, still the same process.
    let (status, body) = soap(&lab, IP_CONN_1, "GetExternalIPAddress", &[]);
    assert_eq!(status, 200);
    assert!(
        body.contains("<NewExternalIPAddress>198.51.100.1</NewExternalIPAddress>"),
        "{body}"
    );
    let (status, body) = raw_http(
        &lab,
        b"GET /rootDesc.xml HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".to_vec(),
    );
    assert_eq!(status, 200);
    assert!(body.contains("InternetGatewayDevice:2"), "{body}");
    let (status, _) = daemon.stop();
    assert!(status.success(), "exited cleanly after all that");
}

#[test]
fn ssdp_adverts_at_start_and_goodbye_at_stop() {
    let lab = Lab::fresh("un");
    // Listen for the group in the LAN host's namespace before the daemon starts.
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    lab.lan.spawn(move || {
        let socket = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 1900)).expect("bind 1900");
        socket
            .join_multicast_v4(&Ipv4Addr::new(239, 255, 255, 250), &LAN_HOST)
            .expect("join");
        socket
            .set_read_timeout(Some(Duration::from_secs(15)))
            .expect("timeout");
        let mut buf = [0u8; 2048];
        while let Ok((n, _)) = socket.recv_from(&mut buf) {
            if tx
                .send(String::from_utf8_lossy(&buf[..n]).into_owned())
                .is_err()
            {
                break;
            }
        }
    });
    thread::sleep(Duration::from_millis(200));
    let daemon = Daemon::in_lab(&lab, "skb", &[]);
    let wait_for = |nts: &str| -> Vec<String> {
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut seen = Vec::new();
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match rx.recv_timeout(left) {
                Ok(message) if message.contains(&format!("NTS: {nts}")) => seen.push(message),
                Ok(_) => {}
                Err(_) => break,
            }
            if seen.len() == 9 {
                break;
            }
        }
        seen
    };
    let alive = wait_for("ssdp:alive");
    assert_eq!(
        alive.len(),
        9,
        "root, 3 UUIDs, 3 device types, 2 services: {alive:?}"
    );
    for header in [
        "NOTIFY * HTTP/1.1",
        "LOCATION: http://10.77.0.1:5000/rootDesc.xml",
        "CACHE-CONTROL: max-age=1800",
        "BOOTID.UPNP.ORG: ",
        "CONFIGID.UPNP.ORG: ",
    ] {
        assert!(
            alive.iter().all(|m| m.contains(header)),
            "{header}: {alive:?}"
        );
    }
    assert!(alive.iter().any(|m| m.contains("NT: upnp:rootdevice")));
    let (status, _) = daemon.stop();
    assert!(status.success());
    let byebye = wait_for("ssdp:byebye");
    assert_eq!(byebye.len(), 9, "{byebye:?}");
}
