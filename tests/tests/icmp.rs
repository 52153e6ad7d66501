//! ICMP for shared flows end to end (RFC 5508), with the router's kernel forwarding blocked so
//! that only XDP carries anything: the LAN host's "port unreachable" reaches the remote host's
//! connected UDP socket as ECONNREFUSED, and a datagram too big for the LAN link with DF set
//! teaches the remote host the LAN link's MTU. Needs root.

use std::{
    io::ErrorKind,
    net::{Ipv4Addr, UdpSocket},
    os::fd::AsRawFd as _,
    time::{Duration, Instant},
};

use portfwd_tests::{Daemon, Lab, WAIT, external, serve_udp_echo, udp_reaches_lan};

fn lab(tag: &str) -> Lab {
    let lab = Lab::fresh(tag);
    lab.learn_lan_neighbour();
    lab.learn_remote_neighbour();
    lab.block_kernel_forwarding();
    lab
}

#[test]
fn udp_to_a_share_without_a_listener_is_refused_at_the_remote() {
    let lab = lab("ic");
    // udp:5400 goes to a LAN port nothing listens on; udp:5300 to an echo server.
    serve_udp_echo(&lab.lan, 5353);
    let _daemon = Daemon::in_lab(
        &lab,
        "skb",
        &[
            "--share",
            "udp:5400=10.77.0.10:5400",
            "--share",
            "udp:5300=10.77.0.10:5353",
        ],
    );
    assert!(
        udp_reaches_lan(&lab, 5300),
        "the share with a listener works"
    );
    let refused = lab.remote.run(|| {
        let socket = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0)).expect("bind");
        socket.connect(external(5400)).expect("connect");
        socket.set_read_timeout(Some(WAIT)).expect("timeout");
        socket.send(b"anyone?").expect("send");
        let mut buf = [0u8; 64];
        socket.recv(&mut buf).map(|_| ()).map_err(|e| e.kind())
    });
    assert_eq!(
        refused,
        Err(ErrorKind::ConnectionRefused),
        "the LAN host's port unreachable, translated, reaches the remote's socket"
    );
}

/// `getsockopt(IP_MTU)` of a connected socket: the path MTU the kernel knows.
fn path_mtu(socket: &UdpSocket) -> i32 {
    let mut mtu: libc::c_int = 0;
    let mut len = libc::socklen_t::try_from(size_of::<libc::c_int>()).expect("small");
    // SAFETY: an int option into an int.
    let ret = unsafe {
        libc::getsockopt(
            socket.as_raw_fd(),
            libc::IPPROTO_IP,
            libc::IP_MTU,
            (&raw mut mtu).cast(),
            &raw mut len,
        )
    };
    assert_eq!(ret, 0, "IP_MTU: {}", std::io::Error::last_os_error());
    mtu
}

#[test]
fn a_df_datagram_too_big_for_the_lan_link_teaches_the_remote_its_mtu() {
    let lab = lab("pm");
    serve_udp_echo(&lab.lan, 5353);
    lab.router.ip(&["link", "set", "lan", "mtu", "1400"]);
    lab.lan.ip(&["link", "set", "eth0", "mtu", "1400"]);
    let _daemon = Daemon::in_lab(&lab, "skb", &["--share", "udp:5300=10.77.0.10:5353"]);
    assert!(udp_reaches_lan(&lab, 5300));
    let (before, after, again) = lab.remote.run(|| {
        let socket = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0)).expect("bind");
        // DF on every datagram, and the kernel's path MTU honoured.
        let value: libc::c_int = libc::IP_PMTUDISC_DO;
        // SAFETY: an int option.
        let ret = unsafe {
            libc::setsockopt(
                socket.as_raw_fd(),
                libc::IPPROTO_IP,
                libc::IP_MTU_DISCOVER,
                (&raw const value).cast(),
                libc::socklen_t::try_from(size_of::<libc::c_int>()).expect("small"),
            )
        };
        assert_eq!(ret, 0);
        socket.connect(external(5300)).expect("connect");
        let before = path_mtu(&socket);
        socket
            .send(&[0x5a; 1472])
            .expect("1472 bytes fit the remote's own link");
        let deadline = Instant::now() + WAIT;
        let mut after = path_mtu(&socket);
        while after == before && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
            after = path_mtu(&socket);
        }
        let again = socket.send(&[0x5a; 1472]).map_err(|e| e.raw_os_error());
        (before, after, again)
    });
    assert_eq!(before, 1500);
    assert_eq!(after, 1400, "fragmentation needed, with the LAN link's MTU");
    assert_eq!(again, Err(Some(libc::EMSGSIZE)), "the next one is too big");
}
