//! Hairpin (NAT loopback) on the LAN program: LAN hosts reaching a share through the external
//! address, and the replies back.

use portfwd::table::{By, SharePatch};

use super::*;

/// The frame a LAN host sends to the external address's `port` from `client:sport`.
fn to_external(proto: u8, client: Ipv4Addr, sport: u16, port: u16) -> Packet {
    Packet::new(proto, client, sport, EXTERNAL, port)
}

const HAIRPIN_PORTS: std::ops::RangeInclusive<u16> = 61_000..=65_535;

#[test]
fn two_lan_hosts_on_the_same_source_port_reach_a_share_and_get_their_replies() {
    with_shares(&SHARES, |f| {
        // The share's own host and a second one, both from port 40000.
        let mut ports = Vec::new();
        for client in [LAN_HOST, SECOND_LAN_HOST] {
            let (action, out) = f.lan(&to_external(TCP, client, 40_000, 8080).bytes());
            assert_eq!(action, XDP_REDIRECT, "from {client}");
            let p = parse_verified(&out);
            assert_eq!((p.dst, p.dport), (LAN_HOST, 80), "to the share's host");
            assert_eq!(p.src, ROUTER_LAN, "from the box's LAN address");
            assert!(HAIRPIN_PORTS.contains(&p.sport), "{}", p.sport);
            assert_eq!(p.dmac, f.facts.lan_host_mac);
            assert_eq!(p.smac, f.facts.lan_mac);
            assert_eq!(p.ttl, 63);
            ports.push(p.sport);
        }
        assert_ne!(ports[0], ports[1], "two flows, two ports");
        // The same flow keeps its port.
        let (_, again) = f.lan(&to_external(TCP, SECOND_LAN_HOST, 40_000, 8080).bytes());
        assert_eq!(parse_verified(&again).sport, ports[1]);

        // Replies: each to its own client, from the external address and port.
        for (port, client, mac) in [
            (ports[0], LAN_HOST, f.facts.lan_host_mac),
            (ports[1], SECOND_LAN_HOST, SECOND_LAN_MAC),
        ] {
            let reply = Packet::new(TCP, LAN_HOST, 80, ROUTER_LAN, port);
            let (action, out) = f.lan(&reply.bytes());
            assert_eq!(action, XDP_REDIRECT, "reply to {client}");
            let p = parse_verified(&out);
            assert_eq!((p.src, p.sport), (EXTERNAL, 8080), "reply to {client}");
            assert_eq!((p.dst, p.dport), (client, 40_000));
            assert_eq!(p.dmac, mac);
        }
        // UDP too.
        let (action, out) = f.lan(&to_external(UDP, SECOND_LAN_HOST, 40_001, 5300).bytes());
        assert_eq!(action, XDP_REDIRECT);
        let p = parse_verified(&out);
        assert_eq!((p.dst, p.dport, p.src), (LAN_HOST, 5353, ROUTER_LAN));
        let (action, out) = f.lan(&Packet::new(UDP, LAN_HOST, 5353, ROUTER_LAN, p.sport).bytes());
        assert_eq!(action, XDP_REDIRECT);
        let p = parse_verified(&out);
        assert_eq!(
            (p.src, p.sport, p.dst, p.dport),
            (EXTERNAL, 5300, SECOND_LAN_HOST, 40_001)
        );

        // Counted with the share: three packets in, two replies out.
        let stats = f.stats(8080);
        assert_eq!((stats.packets_in, stats.packets_out), (3, 2));

        // A deleted share's flows stop, both ways.
        let id = "tcp:8080".parse().expect("id");
        f.table
            .remove(id, By::Operator)
            .expect_err("static shares are the file's");
        f.table
            .replace_static(vec![SHARES[1].parse().expect("spec")])
            .expect("shares");
        let input = to_external(TCP, SECOND_LAN_HOST, 40_000, 8080);
        let (action, out) = f.lan(&input.bytes());
        assert_eq!((action, out), (XDP_PASS, input.bytes()), "share gone");
        let reply = Packet::new(TCP, LAN_HOST, 80, ROUTER_LAN, ports[1]);
        let (action, out) = f.lan(&reply.bytes());
        assert_eq!((action, out), (XDP_PASS, reply.bytes()), "its replies too");
    });
}

#[test]
fn shares_out_of_hairpin_stay_out() {
    with_shares(
        &[
            "tcp:8080=10.77.0.10:80",
            "tcp:8081@198.51.100.2=10.77.0.10:81",
        ],
        |f| {
            // Tied to one remote host: no LAN host is that remote.
            let input = to_external(TCP, SECOND_LAN_HOST, 40_000, 8081);
            assert_eq!(f.lan(&input.bytes()).0, XDP_PASS);
            // An unshared port of the external address is the box's own.
            let input = to_external(TCP, SECOND_LAN_HOST, 40_000, 22);
            let (action, out) = f.lan(&input.bytes());
            assert_eq!((action, out), (XDP_PASS, input.bytes()));
            // `hairpin = false` on the share: the box's, untouched.
            let owner = f
                .table
                .create("tcp:9090=10.77.0.10:90".parse().expect("spec"))
                .expect("owner's share");
            let patch = SharePatch {
                hairpin: Some(false),
                ..SharePatch::default()
            };
            f.table.edit(owner.spec.id, patch).expect("hairpin off");
            let input = to_external(TCP, SECOND_LAN_HOST, 40_000, 9090);
            let (action, out) = f.lan(&input.bytes());
            assert_eq!((action, out), (XDP_PASS, input.bytes()));
            // From the internet it still works.
            let (action, _) = f.wan(&Packet::new(TCP, REMOTE, 40_000, EXTERNAL, 9090).bytes());
            assert_eq!(action, XDP_REDIRECT);
        },
    );
}
