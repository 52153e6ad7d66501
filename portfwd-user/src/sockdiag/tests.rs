//! Parsers on byte fixtures; `listening` and `neighbour` against the kernel, in a network
//! namespace of their own (the tests run as root).

use std::{
    fs::File,
    net::{SocketAddr, TcpListener, TcpStream, UdpSocket},
    os::fd::AsRawFd as _,
    process::Command,
};

use socket2::{Domain, Socket, Type};

use super::*;

const LO: Ipv4Addr = Ipv4Addr::LOCALHOST;

/// A port sockets receive on, as `listening` reports it.
type Port = (Option<Ipv4Addr>, u16);

fn message(kind: u16, seq: u32, payload: &[u8]) -> Vec<u8> {
    let mut m = vec![0u8; NLMSG_HDRLEN];
    m.extend_from_slice(payload);
    header(&mut m, kind, 0, seq);
    m.resize((m.len() + 3) & !3, 0);
    m
}

fn attribute(kind: u16, data: &[u8]) -> Vec<u8> {
    let mut a = u16::try_from(4 + data.len())
        .expect("small")
        .to_ne_bytes()
        .to_vec();
    a.extend_from_slice(&kind.to_ne_bytes());
    a.extend_from_slice(data);
    a.resize((a.len() + 3) & !3, 0);
    a
}

/// An `inet_diag_msg` as the kernel sends it: shutdown attribute first, then `v6only` if given.
fn socket(seq: u32, family: u8, state: u8, src: IpAddr, port: u16, v6only: Option<u8>) -> Vec<u8> {
    let mut p = vec![0u8; INET_DIAG_MSG];
    p[0] = family;
    p[1] = state;
    p[4..6].copy_from_slice(&port.to_be_bytes());
    match src {
        IpAddr::V4(v4) => p[8..12].copy_from_slice(&v4.octets()),
        IpAddr::V6(v6) => p[8..24].copy_from_slice(&v6.octets()),
    }
    p[24..28].copy_from_slice(&[10, 0, 0, 9]);
    p.extend(attribute(8, &[0]));
    if let Some(flag) = v6only {
        p.extend(attribute(INET_DIAG_SKV6ONLY, &[flag]));
    }
    message(SOCK_DIAG_BY_FAMILY, seq, &p)
}

fn status(kind: u16, seq: u32, code: i32) -> Vec<u8> {
    message(kind, seq, &code.to_ne_bytes())
}

fn listening_in(datagram: &[u8], state: u8) -> io::Result<(Vec<Port>, bool)> {
    let mut found = Vec::new();
    let done = parse_listening(datagram, 7, state, &mut found)?;
    Ok((found, done))
}

#[test]
fn requests_are_what_the_kernel_validates() {
    let r = dump_request(AF_INET6, 6, TCP_LISTEN, 9);
    assert_eq!(r.len(), 72);
    assert_eq!(u32::from_ne_bytes(r[0..4].try_into().expect("4")), 72);
    assert_eq!(u16::from_ne_bytes([r[4], r[5]]), SOCK_DIAG_BY_FAMILY);
    assert_eq!(u16::from_ne_bytes([r[6], r[7]]), 0x301);
    assert_eq!(u32::from_ne_bytes(r[8..12].try_into().expect("4")), 9);
    assert_eq!(r[16..20], [AF_INET6, 6, 0, 0]);
    assert_eq!(
        u32::from_ne_bytes(r[20..24].try_into().expect("4")),
        1 << 10
    );
    assert!(r[24..].iter().all(|&b| b == 0), "no sockid filter");

    let (buf, len) = neighbour_request(IpAddr::V4(Ipv4Addr::new(10, 1, 2, 3)), 5, 3);
    assert_eq!(len, 36);
    assert_eq!(u32::from_ne_bytes(buf[0..4].try_into().expect("4")), 36);
    assert_eq!(u16::from_ne_bytes([buf[4], buf[5]]), libc::RTM_GETNEIGH);
    assert_eq!(u16::from_ne_bytes([buf[6], buf[7]]), NLM_F_REQUEST);
    // ndmsg: family, pads, ifindex 5, state/flags/type zero as neigh_valid_get_req wants.
    assert_eq!(buf[16..28], [AF_INET, 0, 0, 0, 5, 0, 0, 0, 0, 0, 0, 0]);
    assert_eq!(buf[28..36], [8, 0, 1, 0, 10, 1, 2, 3]);
    let v6: Ipv6Addr = "2001:db8::7".parse().expect("addr");
    let (buf, len) = neighbour_request(IpAddr::V6(v6), 5, 3);
    assert_eq!(len, 48);
    assert_eq!(buf[28..32], [20, 0, 1, 0]);
    assert_eq!(buf[32..48], v6.octets());
}

#[test]
fn reads_ipv4_listeners_until_done() {
    let mut datagram = socket(
        7,
        AF_INET,
        TCP_LISTEN,
        IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        8080,
        None,
    );
    datagram.extend(socket(7, AF_INET, TCP_LISTEN, IpAddr::V4(LO), 53, None));
    // Another state, and an answer to another request, are not listeners of this dump.
    datagram.extend(socket(7, AF_INET, 1, IpAddr::V4(LO), 40000, None));
    datagram.extend(socket(8, AF_INET, TCP_LISTEN, IpAddr::V4(LO), 22, None));
    let expected = vec![(None, 8080), (Some(LO), 53)];
    assert_eq!(
        listening_in(&datagram, TCP_LISTEN).expect("parses"),
        (expected.clone(), false)
    );
    datagram.extend(status(NLMSG_DONE, 7, 0));
    assert_eq!(
        listening_in(&datagram, TCP_LISTEN).expect("parses"),
        (expected, true)
    );
    // Kernels before netlink_dump_done sent NLMSG_DONE without a payload.
    assert_eq!(
        listening_in(&message(NLMSG_DONE, 7, &[]), TCP_LISTEN).expect("parses"),
        (vec![], true)
    );
}

#[test]
fn reads_ipv6_wildcards_and_mapped_addresses_but_not_v6_only_sockets() {
    let v6 = |s: &str| IpAddr::V6(s.parse().expect("addr"));
    let mut datagram = socket(7, AF_INET6, TCP_CLOSE, v6("::"), 5353, Some(0));
    datagram.extend(socket(7, AF_INET6, TCP_CLOSE, v6("::"), 5354, Some(1)));
    datagram.extend(socket(
        7,
        AF_INET6,
        TCP_CLOSE,
        v6("::ffff:192.168.1.2"),
        5355,
        Some(0),
    ));
    datagram.extend(socket(
        7,
        AF_INET6,
        TCP_CLOSE,
        v6("2001:db8::1"),
        5356,
        Some(0),
    ));
    datagram.extend(socket(
        7,
        AF_INET6,
        TCP_CLOSE,
        v6("::ffff:0.0.0.0"),
        5357,
        Some(0),
    ));
    // Without the attribute (kernels before it) `::` is taken as dual-stack, as /proc does.
    datagram.extend(socket(7, AF_INET6, TCP_CLOSE, v6("::"), 5358, None));
    assert_eq!(
        listening_in(&datagram, TCP_CLOSE).expect("parses").0,
        vec![
            (None, 5353),
            (Some(Ipv4Addr::new(192, 168, 1, 2)), 5355),
            (None, 5357),
            (None, 5358)
        ]
    );
}

#[test]
fn cut_or_garbled_answers_are_errors_not_panics() {
    let mut datagram = socket(7, AF_INET, TCP_LISTEN, IpAddr::V4(LO), 80, None);
    datagram.extend(socket(
        7,
        AF_INET6,
        TCP_LISTEN,
        IpAddr::V6(Ipv6Addr::UNSPECIFIED),
        443,
        Some(0),
    ));
    datagram.extend(status(NLMSG_DONE, 7, 0));
    for cut in 1..datagram.len() {
        // Every prefix either parses (ending on a message boundary) or is an error.
        let _ = listening_in(&datagram[..cut], TCP_LISTEN);
        let _ = parse_neighbour(&datagram[..cut], 7);
    }
    let err = listening_in(&datagram[..datagram.len() - 4], TCP_LISTEN).expect_err("cut");
    assert_eq!(err.kind(), io::ErrorKind::InvalidData);
    assert!(
        listening_in(&[0xff; 7], TCP_LISTEN).is_err(),
        "a header cut short"
    );
    let mut zero = message(SOCK_DIAG_BY_FAMILY, 7, &[]);
    zero[..4].copy_from_slice(&0u32.to_ne_bytes());
    assert!(listening_in(&zero, TCP_LISTEN).is_err(), "a zero length");
    let short = message(SOCK_DIAG_BY_FAMILY, 7, &[AF_INET, TCP_LISTEN, 0, 0]);
    assert!(
        listening_in(&short, TCP_LISTEN).is_err(),
        "an inet_diag_msg cut short"
    );
    // A cut attribute ends the attributes, not the walk: this `::` counts as dual-stack.
    let mut cut_attr = socket(
        7,
        AF_INET6,
        TCP_LISTEN,
        IpAddr::V6(Ipv6Addr::UNSPECIFIED),
        8443,
        None,
    );
    cut_attr.extend_from_slice(&[200, 0, 11, 0]);
    let len = u32::try_from(cut_attr.len()).expect("small");
    cut_attr[..4].copy_from_slice(&len.to_ne_bytes());
    assert_eq!(
        listening_in(&cut_attr, TCP_LISTEN).expect("parses").0,
        vec![(None, 8443)]
    );
}

#[test]
fn kernel_errors_are_io_errors() {
    let err = listening_in(&status(NLMSG_ERROR, 7, -libc::EACCES), TCP_LISTEN).expect_err("error");
    assert_eq!(err.raw_os_error(), Some(libc::EACCES));
    let err = listening_in(&status(NLMSG_DONE, 7, -libc::EINTR), TCP_LISTEN).expect_err("error");
    assert_eq!(
        err.raw_os_error(),
        Some(libc::EINTR),
        "a dump that failed half-way"
    );
    assert!(listening_in(&message(NLMSG_ERROR, 7, &[1, 2]), TCP_LISTEN).is_err());
    let err = parse_neighbour(&status(NLMSG_ERROR, 7, -libc::ENODEV), 7).expect_err("error");
    assert_eq!(err.raw_os_error(), Some(libc::ENODEV));
}

fn neigh(seq: u32, state: u16, lladdr: Option<&[u8]>) -> Vec<u8> {
    let mut p = vec![0u8; NDMSG];
    p[0] = AF_INET;
    p[4..8].copy_from_slice(&3u32.to_ne_bytes());
    p[8..10].copy_from_slice(&state.to_ne_bytes());
    p.extend(attribute(libc::NDA_DST, &[10, 0, 0, 2]));
    if let Some(mac) = lladdr {
        p.extend(attribute(libc::NDA_LLADDR, mac));
    }
    p.extend(attribute(8, &[0; 4]));
    message(libc::RTM_NEWNEIGH, seq, &p)
}

#[test]
fn reads_one_neighbour() {
    let mac = [2, 0, 0, 0, 0, 0x42];
    for state in [
        libc::NUD_REACHABLE,
        libc::NUD_STALE,
        libc::NUD_PERMANENT,
        libc::NUD_DELAY,
    ] {
        assert_eq!(
            parse_neighbour(&neigh(7, state, Some(&mac)), 7).expect("parses"),
            Reply::Answer(Some(mac))
        );
    }
    for (state, lladdr) in [
        (libc::NUD_INCOMPLETE, None),
        (libc::NUD_FAILED, None),
        (libc::NUD_REACHABLE, None),
        // A state without a valid address, whatever the message carries.
        (libc::NUD_FAILED, Some(&mac[..])),
        (libc::NUD_NONE, Some(&mac[..])),
        (libc::NUD_PERMANENT, Some(&[0; 6][..])),
        // Not Ethernet (an IPIP tunnel's neighbours have 4-byte addresses).
        (libc::NUD_NOARP, Some(&[10, 0, 0, 1][..])),
    ] {
        assert_eq!(
            parse_neighbour(&neigh(7, state, lladdr), 7).expect("parses"),
            Reply::Answer(None),
            "{state:#x}"
        );
    }
    assert_eq!(
        parse_neighbour(&status(NLMSG_ERROR, 7, -libc::ENOENT), 7).expect("parses"),
        Reply::Answer(None)
    );
    assert_eq!(
        parse_neighbour(&neigh(8, libc::NUD_REACHABLE, Some(&mac)), 7).expect("parses"),
        Reply::Pending,
        "another request's"
    );
    assert!(
        parse_neighbour(&message(libc::RTM_NEWNEIGH, 7, &[0; 4]), 7).is_err(),
        "an ndmsg cut short"
    );
}

/// Runs `ip` with `args`, panicking with its output if it fails.
fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().expect("run ip");
    assert!(
        out.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The calling thread in a network namespace of its own (`ip netns add`); dropping it, panic or
/// not, moves the thread back and deletes the namespace. Sockets are created in the namespace of
/// the thread that opens them, so the test sees only its own.
struct NetNs {
    name: String,
    home: Option<File>,
}

impl NetNs {
    fn enter(tag: &str) -> Self {
        let name = format!("pfwdiag-{}-{tag}", std::process::id());
        ip(&["netns", "add", &name]);
        let mut ns = Self { name, home: None };
        let home = File::open("/proc/thread-self/ns/net").expect("this thread's namespace");
        let target = File::open(format!("/var/run/netns/{}", ns.name)).expect("the new namespace");
        // SAFETY: setns(2) on a namespace descriptor; it changes only the calling thread.
        let rc = unsafe { libc::setns(target.as_raw_fd(), libc::CLONE_NEWNET) };
        assert_eq!(rc, 0, "setns: {}", io::Error::last_os_error());
        ns.home = Some(home);
        ns.ip(&["link", "set", "lo", "up"]);
        ns
    }

    fn ip(&self, args: &[&str]) {
        ip(&[&["-n", self.name.as_str()], args].concat());
    }
}

impl Drop for NetNs {
    fn drop(&mut self) {
        let back = self.home.as_ref().map_or(Ok(()), |home| {
            // SAFETY: as in enter; home is this thread's namespace from before.
            match unsafe { libc::setns(home.as_raw_fd(), libc::CLONE_NEWNET) } {
                0 => Ok(()),
                _ => Err(io::Error::last_os_error()),
            }
        });
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
        assert!(
            back.is_ok() || std::thread::panicking(),
            "setns back: {back:?}"
        );
    }
}

fn v6_socket(kind: Type, addr: &str, v6only: bool) -> Socket {
    let socket = Socket::new(Domain::IPV6, kind, None).expect("socket");
    socket.set_only_v6(v6only).expect("IPV6_V6ONLY");
    let addr: SocketAddr = addr.parse().expect("addr");
    socket.bind(&addr.into()).expect("bind");
    if kind == Type::STREAM {
        socket.listen(8).expect("listen");
    }
    socket
}

fn port(socket: &Socket) -> u16 {
    socket
        .local_addr()
        .expect("addr")
        .as_socket()
        .expect("inet")
        .port()
}

fn sorted(mut v: Vec<Port>) -> Vec<Port> {
    v.sort_unstable();
    v
}

#[test]
fn kernel_reports_tcp_listeners_but_not_connections() {
    let _ns = NetNs::enter("tcp");
    let v4 = TcpListener::bind("127.0.0.1:0").expect("bind");
    let dual = v6_socket(Type::STREAM, "[::]:0", false);
    let v6only = v6_socket(Type::STREAM, "[::]:0", true);
    let mapped = v6_socket(Type::STREAM, "[::ffff:127.0.0.1]:0", false);
    // A connected pair whose listener is gone: established sockets are not listeners.
    let server = TcpListener::bind("127.0.0.1:0").expect("bind");
    let client = TcpStream::connect(server.local_addr().expect("addr")).expect("connect");
    let (accepted, _) = server.accept().expect("accept");
    drop(server);

    let found = listening(Proto::Tcp).expect("sock_diag");
    let v4_port = v4.local_addr().expect("addr").port();
    assert_eq!(
        sorted(found),
        sorted(vec![
            (Some(LO), v4_port),
            (None, port(&dual)),
            (Some(LO), port(&mapped))
        ]),
        "v6-only {}, client {}, accepted {}",
        port(&v6only),
        client.local_addr().expect("addr").port(),
        accepted.local_addr().expect("addr").port(),
    );
}

#[test]
fn kernel_reports_unconnected_udp_sockets() {
    let _ns = NetNs::enter("udp");
    let v4 = UdpSocket::bind("127.0.0.1:0").expect("bind");
    let dual = v6_socket(Type::DGRAM, "[::]:0", false);
    let v6only = v6_socket(Type::DGRAM, "[::]:0", true);
    let connected = UdpSocket::bind("127.0.0.1:0").expect("bind");
    connected
        .connect(v4.local_addr().expect("addr"))
        .expect("connect");

    let found = listening(Proto::Udp).expect("sock_diag");
    assert_eq!(
        sorted(found),
        sorted(vec![
            (Some(LO), v4.local_addr().expect("addr").port()),
            (None, port(&dual))
        ]),
        "v6-only {}, connected {}",
        port(&v6only),
        connected.local_addr().expect("addr").port(),
    );
}

#[test]
fn kernel_answers_for_one_neighbour() {
    let ns = NetNs::enter("neigh");
    ns.ip(&[
        "link", "add", "pfw0", "type", "veth", "peer", "name", "pfw1",
    ]);
    ns.ip(&["link", "set", "pfw0", "up"]);
    let dev = ["dev", "pfw0"];
    ns.ip(&[
        &[
            "neigh",
            "add",
            "10.77.0.2",
            "lladdr",
            "02:00:5e:77:00:02",
            "nud",
            "permanent",
        ][..],
        &dev,
    ]
    .concat());
    ns.ip(&[
        &[
            "neigh",
            "add",
            "10.77.0.3",
            "lladdr",
            "02:00:5e:77:00:03",
            "nud",
            "stale",
        ][..],
        &dev,
    ]
    .concat());
    ns.ip(&[
        &["neigh", "add", "10.77.0.4", "nud", "incomplete"][..],
        &dev,
    ]
    .concat());
    ns.ip(&[&["neigh", "add", "10.77.0.5", "nud", "failed"][..], &dev].concat());
    ns.ip(&[
        &[
            "-6",
            "neigh",
            "add",
            "2001:db8:77::2",
            "lladdr",
            "02:00:5e:77:00:62",
            "nud",
            "permanent",
        ][..],
        &dev,
    ]
    .concat());
    let index = crate::netinfo::ifindex("pfw0").expect("the veth in this namespace");
    let ask = |addr: &str| neighbour(addr.parse().expect("addr"), index);

    assert_eq!(
        ask("10.77.0.2").expect("get"),
        Some([2, 0, 0x5e, 0x77, 0, 2])
    );
    assert_eq!(
        ask("10.77.0.3").expect("get"),
        Some([2, 0, 0x5e, 0x77, 0, 3])
    );
    assert_eq!(
        ask("::ffff:10.77.0.2").expect("get"),
        Some([2, 0, 0x5e, 0x77, 0, 2]),
        "v4-mapped"
    );
    assert_eq!(
        ask("2001:db8:77::2").expect("get"),
        Some([2, 0, 0x5e, 0x77, 0, 0x62])
    );
    // The whole IPv4 table, as the device list reads it: entries with an address only.
    let mut table = crate::netlink::neighbours4().expect("dump");
    table.sort_unstable();
    assert_eq!(
        table,
        [
            (Ipv4Addr::new(10, 77, 0, 2), [2, 0, 0x5e, 0x77, 0, 2]),
            (Ipv4Addr::new(10, 77, 0, 3), [2, 0, 0x5e, 0x77, 0, 3]),
        ]
    );
    assert_eq!(ask("10.77.0.4").expect("get"), None, "incomplete");
    assert_eq!(ask("10.77.0.5").expect("get"), None, "failed");
    assert_eq!(ask("10.77.0.99").expect("get"), None, "unknown");
    assert_eq!(ask("2001:db8:77::99").expect("get"), None, "unknown");
    // The entry is on pfw0; on another interface there is none.
    let lo = crate::netinfo::ifindex("lo").expect("lo");
    assert_eq!(
        neighbour("10.77.0.2".parse().expect("addr"), lo).expect("get"),
        None
    );
    let err = neighbour("10.77.0.2".parse().expect("addr"), 0).expect_err("no interface");
    assert_eq!(err.raw_os_error(), Some(libc::EINVAL));
    let err =
        neighbour("10.77.0.2".parse().expect("addr"), 999_999).expect_err("no such interface");
    assert_eq!(err.raw_os_error(), Some(libc::ENODEV));
}

#[test]
fn exact_requests_put_the_socket_s_end_where_each_protocol_looks() {
    let addr = Ipv4Addr::new(192, 0, 2, 7);
    let tcp = exact_request(Proto::Tcp, addr, 8080, 3, 5);
    assert_eq!(
        u16::from_ne_bytes([tcp[6], tcp[7]]),
        NLM_F_REQUEST,
        "no dump"
    );
    assert_eq!(tcp[16..20], [AF_INET, 6, 0, 0]);
    let id = &tcp[24..];
    assert_eq!(id[0..4], [0x1f, 0x90, 0, 0], "sport 8080, dport 0");
    assert_eq!(id[4..8], addr.octets(), "src");
    assert!(id[8..36].iter().all(|&b| b == 0), "no dst");
    assert_eq!(id[36..40], 3u32.to_ne_bytes());
    assert_eq!(id[40..48], [0xff; 8], "INET_DIAG_NOCOOKIE");
    let udp = exact_request(Proto::Udp, addr, 8080, 3, 5);
    let id = &udp[24..];
    assert_eq!(id[0..4], [0, 0, 0x1f, 0x90], "udp_dump_one swaps the ends");
    assert!(id[4..20].iter().all(|&b| b == 0));
    assert_eq!(id[20..24], addr.octets(), "dst");

    let found = message(SOCK_DIAG_BY_FAMILY, 5, &[0; INET_DIAG_MSG]);
    assert_eq!(parse_exact(&found, 5).expect("parse"), Some(true));
    assert_eq!(
        parse_exact(&found, 6).expect("parse"),
        None,
        "another request's"
    );
    let none = status(NLMSG_ERROR, 5, -libc::ENOENT);
    assert_eq!(parse_exact(&none, 5).expect("parse"), Some(false));
    let err = parse_exact(&status(NLMSG_ERROR, 5, -libc::EPERM), 5).expect_err("EPERM");
    assert_eq!(err.raw_os_error(), Some(libc::EPERM));
    let cut = message(SOCK_DIAG_BY_FAMILY, 5, &[0; 10]);
    assert!(parse_exact(&cut, 5).is_err(), "a message cut short");
}

#[test]
fn kernel_finds_the_one_tcp_listener_a_packet_would_reach() {
    let _ns = NetNs::enter("exact-tcp");
    let lo = crate::netinfo::ifindex("lo").expect("lo");
    let v4 = TcpListener::bind("127.0.0.1:0").expect("bind");
    let dual = v6_socket(Type::STREAM, "[::]:0", false);
    let v6only = v6_socket(Type::STREAM, "[::]:0", true);
    let mapped = v6_socket(Type::STREAM, "[::ffff:127.0.0.1]:0", false);
    let on_lo = Socket::new(Domain::IPV4, Type::STREAM, None).expect("socket");
    on_lo.bind_device(Some(b"lo")).expect("SO_BINDTODEVICE");
    on_lo
        .bind(&SocketAddr::from(([0, 0, 0, 0], 0)).into())
        .expect("bind");
    on_lo.listen(8).expect("listen");
    let server = TcpListener::bind("127.0.0.1:0").expect("bind");
    let client = TcpStream::connect(server.local_addr().expect("addr")).expect("connect");
    let (accepted, _) = server.accept().expect("accept");
    let server_port = server.local_addr().expect("addr").port();
    drop(server);
    let any = Ipv4Addr::UNSPECIFIED;
    let other = Ipv4Addr::new(127, 0, 0, 2);
    let ask = |addr, port| receives(Proto::Tcp, addr, port, lo).expect("sock_diag");

    let v4_port = v4.local_addr().expect("addr").port();
    assert!(ask(LO, v4_port), "bound to the address");
    assert!(!ask(other, v4_port), "another address");
    assert!(!ask(any, v4_port), "not a wildcard");
    assert!(
        ask(LO, port(&dual)) && ask(any, port(&dual)),
        "dual-stack ::"
    );
    assert!(!ask(LO, port(&v6only)), "v6-only");
    assert!(ask(LO, port(&mapped)), "v4-mapped");
    assert!(ask(LO, port(&on_lo)), "bound to the arriving interface");
    assert!(
        !receives(Proto::Tcp, LO, port(&on_lo), 999).expect("sock_diag"),
        "bound to another interface"
    );
    assert!(!ask(LO, server_port), "an accepted connection");
    let client_port = client.local_addr().expect("addr").port();
    assert!(!ask(LO, client_port), "a connecting end");
    drop(accepted);
}

#[test]
fn kernel_finds_the_one_udp_socket_a_datagram_would_reach() {
    let _ns = NetNs::enter("exact-udp");
    let lo = crate::netinfo::ifindex("lo").expect("lo");
    let v4 = UdpSocket::bind("127.0.0.1:0").expect("bind");
    let dual = v6_socket(Type::DGRAM, "[::]:0", false);
    let v6only = v6_socket(Type::DGRAM, "[::]:0", true);
    let connected = UdpSocket::bind("127.0.0.1:0").expect("bind");
    connected
        .connect(v4.local_addr().expect("addr"))
        .expect("connect");
    let ask = |addr, port| receives(Proto::Udp, addr, port, lo).expect("sock_diag");

    let v4_port = v4.local_addr().expect("addr").port();
    assert!(ask(LO, v4_port), "bound to the address");
    assert!(!ask(Ipv4Addr::UNSPECIFIED, v4_port), "not a wildcard");
    assert!(ask(LO, port(&dual)), "dual-stack ::");
    assert!(!ask(LO, port(&v6only)), "v6-only");
    let connected_port = connected.local_addr().expect("addr").port();
    assert!(!ask(LO, connected_port), "connected to one peer");
}
