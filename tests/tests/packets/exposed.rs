//! The exposed host on crafted frames: what no share claims goes to it, its replies go out
//! from the external address, and what belongs to the box or to the LAN hosts' own
//! connections stays the kernel's.

use std::net::{IpAddr, TcpListener};

use portfwd_tests::checksum;

use super::*;

const ACK: u8 = 0x10;

/// An ICMP echo request (8) or reply (0) frame.
fn echo(kind: u8, src: Ipv4Addr, dst: Ipv4Addr, id: u16) -> Vec<u8> {
    let mut icmp = vec![kind, 0, 0, 0];
    icmp.extend_from_slice(&id.to_be_bytes());
    icmp.extend_from_slice(&[0, 1]);
    icmp.extend_from_slice(b"ping payload");
    let c = checksum(&icmp);
    icmp[2..4].copy_from_slice(&c.to_be_bytes());
    let mut frame = Packet::new(ICMP, src, 0, dst, 0).bytes();
    frame.truncate(14 + 20);
    let tot = u16::try_from(20 + icmp.len()).expect("small");
    frame[16..18].copy_from_slice(&tot.to_be_bytes());
    frame[24..26].copy_from_slice(&[0, 0]);
    let c = checksum(&frame[14..34]);
    frame[24..26].copy_from_slice(&c.to_be_bytes());
    frame.extend_from_slice(&icmp);
    frame
}

#[test]
fn what_no_share_claims_goes_to_the_exposed_host_and_back() {
    with_shares(&SHARES, |f| {
        let unshared = Packet::new(TCP, REMOTE, 40_200, EXTERNAL, 2000);
        assert_eq!(f.wan(&unshared.bytes()).0, XDP_PASS, "no exposed host yet");
        f.table
            .set_exposed_host(IpAddr::V4(SECOND_LAN_HOST))
            .expect("exposed");

        // A new connection to an unshared port: to the exposed host, the port kept.
        let (action, out) = f.wan(&unshared.bytes());
        assert_eq!(action, XDP_REDIRECT);
        let p = parse_verified(&out);
        assert_eq!((p.dst, p.dport), (SECOND_LAN_HOST, 2000));
        assert_eq!((p.src, p.sport), (REMOTE, 40_200));
        assert_eq!(p.dmac, SECOND_LAN_MAC);
        // Its later packets follow it.
        let mut later = unshared.clone();
        later.tcp_flags = ACK;
        assert_eq!(f.wan(&later.bytes()).0, XDP_REDIRECT);
        // The exposed host's reply goes out from the external address.
        let mut reply = Packet::new(TCP, SECOND_LAN_HOST, 2000, REMOTE, 40_200);
        reply.tcp_flags = 0x12;
        let (action, out) = f.lan(&reply.bytes());
        assert_eq!(action, XDP_REDIRECT);
        let p = parse_verified(&out);
        assert_eq!((p.src, p.sport), (EXTERNAL, 2000));
        assert_eq!(p.dmac, f.facts.remote_mac);

        // A share on the port takes precedence.
        let (action, out) = f.wan(&Packet::new(TCP, REMOTE, 40_201, EXTERNAL, 8080).bytes());
        assert_eq!(action, XDP_REDIRECT);
        assert_eq!(parse_verified(&out).dst, LAN_HOST, "the share's own host");

        // A ping is answered by the exposed host.
        let (action, out) = f.wan(&echo(8, REMOTE, EXTERNAL, 77));
        assert_eq!(action, XDP_REDIRECT);
        assert_eq!(&out[14 + 16..14 + 20], &SECOND_LAN_HOST.octets());
        assert_eq!(checksum(&out[14..34]), 0);
        let (action, out) = f.lan(&echo(0, SECOND_LAN_HOST, REMOTE, 77));
        assert_eq!(action, XDP_REDIRECT);
        assert_eq!(&out[14 + 12..14 + 16], &EXTERNAL.octets());
        assert_eq!(checksum(&out[14..34]), 0);

        let [v4, _] = f.table.reader().exposed_stats().expect("counters");
        assert_eq!((v4.packets_in, v4.packets_out), (3, 2));

        // Cleared: the kernel's again.
        f.table.clear_exposed_host(None).expect("cleared");
        let fresh = Packet::new(TCP, REMOTE, 40_202, EXTERNAL, 2001);
        assert_eq!(f.wan(&fresh.bytes()), (XDP_PASS, fresh.bytes()));
    });
}

#[test]
fn the_box_and_the_lan_hosts_own_connections_keep_theirs() {
    with_shares(&SHARES, |f| {
        f.table
            .set_exposed_host(IpAddr::V4(SECOND_LAN_HOST))
            .expect("exposed");
        // A reply to a masqueraded TCP connection is no bare SYN: the kernel's.
        let mut reply = Packet::new(TCP, REMOTE, 443, EXTERNAL, 40_300);
        reply.tcp_flags = 0x12;
        assert_eq!(f.wan(&reply.bytes()), (XDP_PASS, reply.bytes()));
        // A LAN host's own UDP flow out, and the datagram back on it: the kernel's.
        let out = Packet::new(UDP, LAN_HOST, 40_301, REMOTE, 53);
        assert_eq!(f.lan(&out.bytes()).0, XDP_PASS, "masqueraded by the kernel");
        let back = Packet::new(UDP, REMOTE, 53, EXTERNAL, 40_301);
        assert_eq!(f.wan(&back.bytes()), (XDP_PASS, back.bytes()));
        // The same remote on another port: a new flow, the exposed host's.
        let new = Packet::new(UDP, REMOTE, 53, EXTERNAL, 40_302);
        assert_eq!(f.wan(&new.bytes()).0, XDP_REDIRECT);
        // The box's own listener stays the box's.
        let listener = TcpListener::bind((Ipv4Addr::UNSPECIFIED, 2222)).expect("listen");
        let to_box = Packet::new(TCP, REMOTE, 40_303, EXTERNAL, 2222);
        assert_eq!(f.wan(&to_box.bytes()), (XDP_PASS, to_box.bytes()));
        drop(listener);
        assert_eq!(
            f.wan(&to_box.bytes()).0,
            XDP_REDIRECT,
            "with the box's listener gone, the exposed host's"
        );
        // Only LAN hosts can be exposed.
        f.table
            .set_exposed_host(IpAddr::V4(REMOTE))
            .expect_err("not a LAN host");
    });
}
