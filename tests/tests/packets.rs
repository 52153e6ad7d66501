//! The XDP programs on crafted frames through `BPF_PROG_TEST_RUN`: frames in, frames and
//! verdicts out. Runs inside the lab's router namespace so that `bpf_fib_lookup` sees real
//! interfaces, routes and neighbours. Checksums of the output are recomputed from scratch here,
//! never with the program's incremental arithmetic. Needs root.

use std::net::{Ipv4Addr, Ipv6Addr};

use aya::programs::{TestRun as _, TestRunOptions, Xdp};
use portfwd::{
    dataplane::Dataplane,
    pinhole::{PinholeSpec, Prefix6},
    share::{LanSubnet, Origin, ShareSpec},
    table::{Ask, By, Hunt, Mechanism, Table},
};
use portfwd_common::{DIR_LAN, DIR_WAN, PROG_LAN, PROG_WAN, Verdict};
use portfwd_tests::{EXTERNAL, LAN_HOST, LAN_HOST6, Lab, REMOTE, REMOTE6, ROUTER_LAN, ROUTER_LAN6};

#[path = "packets/exposed.rs"]
mod exposed;
#[path = "packets/frames.rs"]
mod frames;
#[path = "packets/hairpin.rs"]
mod hairpin;
#[path = "packets/icmp.rs"]
mod icmp;

use frames::*;

/// The lab's facts a test needs inside the router namespace.
#[derive(Clone, Copy)]
struct Facts {
    wan: u32,
    lan: u32,
    wan_mac: [u8; 6],
    lan_mac: [u8; 6],
    lan_host_mac: [u8; 6],
    remote_mac: [u8; 6],
}

/// The real data plane and share table, loaded in the router namespace.
struct Fixture {
    table: Table,
    facts: Facts,
}

impl Fixture {
    fn program(&self, name: &'static str) -> &Xdp {
        self.table
            .maps()
            .as_any()
            .downcast_ref::<Dataplane>()
            .expect("the kernel's maps")
            .program(name)
            .expect("program")
    }

    /// Runs `frame` through `name` as if it arrived on `ingress`.
    fn run(&self, name: &'static str, ingress: u32, frame: &[u8]) -> (u32, Vec<u8>) {
        let mut md = [0u8; 24];
        md[4..8].copy_from_slice(&u32::try_from(frame.len()).expect("small").to_ne_bytes());
        md[12..16].copy_from_slice(&ingress.to_ne_bytes());
        let mut out = vec![0u8; frame.len() + 256];
        let result = self
            .program(name)
            .test_run(TestRunOptions {
                data_in: Some(frame),
                data_out: Some(&mut out),
                ctx_in: Some(&md),
                ..TestRunOptions::new()
            })
            .expect("test_run");
        out.truncate(result.data_size_out as usize);
        (result.return_value, out)
    }

    fn wan(&self, frame: &[u8]) -> (u32, Vec<u8>) {
        self.run(PROG_WAN, self.facts.wan, frame)
    }

    fn lan(&self, frame: &[u8]) -> (u32, Vec<u8>) {
        self.run(PROG_LAN, self.facts.lan, frame)
    }

    fn verdict(&self, dir: u32, verdict: Verdict) -> u64 {
        self.table.maps().verdicts(dir).expect("verdicts")[verdict as usize]
    }

    /// Counters of the share with external port `port`.
    fn stats(&self, port: u16) -> portfwd_common::ShareStats {
        self.table
            .snapshot()
            .share_views(self.table.reader().as_ref(), std::time::Instant::now())
            .expect("list")
            .into_iter()
            .find(|s| s.entry.spec.id.ext_port == port && s.entry.spec.id.remote.is_none())
            .expect("share")
            .stats
    }
}

/// Brings up a lab, then runs `test` in its router namespace with the data plane loaded and
/// `shares` installed.
fn with_shares(shares: &[&str], test: impl FnOnce(&mut Fixture) + Send + 'static) {
    let lab = Lab::fresh("p");
    lab.learn_lan_neighbour();
    lab.learn_remote_neighbour();
    // A second LAN host, known by its MAC only (the hairpin tests' second client).
    lab.router.ip(&[
        "neigh",
        "replace",
        &SECOND_LAN_HOST.to_string(),
        "lladdr",
        "02:00:00:00:00:11",
        "dev",
        "lan",
        "nud",
        "permanent",
    ]);
    let facts = Facts {
        wan: lab.router.ifindex("wan"),
        lan: lab.router.ifindex("lan"),
        wan_mac: lab.router.mac("wan"),
        lan_mac: lab.router.mac("lan"),
        lan_host_mac: lab.lan.mac("eth0"),
        remote_mac: lab.remote.mac("eth0"),
    };
    let specs: Vec<ShareSpec> = shares.iter().map(|s| s.parse().expect("spec")).collect();
    lab.router.run(move || {
        // Kept for the IPv6 tests; no pinhole is open until one asks.
        let lan6 = vec![Prefix6 {
            addr: ROUTER_LAN6,
            prefix_len: 64,
        }];
        let subnets = vec![LanSubnet {
            addr: ROUTER_LAN,
            prefix_len: 24,
        }];
        let host = std::sync::Arc::new(portfwd::host::SystemHost::new(
            "wan".into(),
            facts.wan,
            facts.lan,
        ));
        let mut table = Table::builder(
            subnets,
            Box::new(Dataplane::load(None).expect("load")),
            host,
            facts.wan,
            facts.lan,
        )
        .lan6(lan6)
        .build(std::time::Instant::now())
        .expect("table");
        table.forwarding_changed().expect("generation");
        table.set_external(Some(EXTERNAL)).expect("external");
        table.replace_static(specs).expect("shares");
        test(&mut Fixture { table, facts });
    });
}

/// A second LAN host of the crafted frames, with MAC [`SECOND_LAN_MAC`].
const SECOND_LAN_HOST: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 11);
const SECOND_LAN_MAC: [u8; 6] = [2, 0, 0, 0, 0, 0x11];

const SHARES: [&str; 2] = ["tcp:8080=10.77.0.10:80", "udp:5300=10.77.0.10:5353"];

#[test]
fn tcp_is_rewritten_to_the_lan_host_and_redirected() {
    with_shares(&SHARES, |f| {
        let input = Packet::new(TCP, REMOTE, 40_000, EXTERNAL, 8080);
        let (action, out) = f.wan(&input.bytes());
        assert_eq!(action, XDP_REDIRECT);
        let p = parse_verified(&out);
        assert_eq!((p.dst, p.dport), (LAN_HOST, 80));
        assert_eq!((p.src, p.sport), (REMOTE, 40_000), "source untouched");
        assert_eq!(p.ttl, 63);
        assert_eq!(p.dmac, f.facts.lan_host_mac);
        assert_eq!(p.smac, f.facts.lan_mac);
        assert_eq!(out.len(), input.bytes().len());
        assert_eq!(
            &out[14 + 20 + 20..],
            input.payload.as_slice(),
            "payload intact"
        );
        let stats = f.stats(8080);
        assert_eq!(stats.packets_in, 1);
        assert_eq!(stats.bytes_in, u64::try_from(out.len() - 14).expect("len"));
        assert_eq!(f.verdict(DIR_WAN, Verdict::Forwarded), 1);
    });
}

#[test]
fn a_lease_holds_until_its_deadline_in_the_data_plane_alone() {
    with_shares(&SHARES, |f| {
        // A client's 1 s lease: the entry carries its deadline, and no daemon removes it here.
        f.table.set_now(std::time::Instant::now());
        f.table
            .admit(Ask {
                origin: Origin::Upnp { client: LAN_HOST },
                mechanism: Mechanism::Upnp { v2: true },
                spec: "udp:6000=10.77.0.10:6000".parse().expect("spec"),
                hunt: Hunt::Exact,
                lease: 1,
            })
            .expect("lease");
        let input = Packet::new(UDP, REMOTE, 40_010, EXTERNAL, 6000);
        let (action, out) = f.wan(&input.bytes());
        assert_eq!(action, XDP_REDIRECT, "before the deadline");
        assert_eq!(parse_verified(&out).dst, LAN_HOST);
        // The reply is rewritten back too.
        let reply = Packet::new(UDP, LAN_HOST, 6000, REMOTE, 40_010);
        assert_eq!(
            f.lan(&reply.bytes()).0,
            XDP_REDIRECT,
            "reply before the deadline"
        );
        std::thread::sleep(std::time::Duration::from_millis(1100));
        let (action, out) = f.wan(&input.bytes());
        assert_eq!(
            action, XDP_PASS,
            "after the deadline: as if there were no share"
        );
        assert_eq!(out, input.bytes(), "untouched");
        let (action, out) = f.lan(&reply.bytes());
        assert_eq!(action, XDP_PASS, "replies are not rewritten either");
        assert_eq!(out, reply.bytes());
        // The owner's shares carry no deadline and go on.
        let (action, _) = f.wan(&Packet::new(UDP, REMOTE, 40_011, EXTERNAL, 5300).bytes());
        assert_eq!(action, XDP_REDIRECT);
    });
}

#[test]
fn udp_checksums_are_updated_or_left_absent() {
    with_shares(&SHARES, |f| {
        let with = Packet::new(UDP, REMOTE, 40_001, EXTERNAL, 5300);
        let (action, out) = f.wan(&with.bytes());
        assert_eq!(action, XDP_REDIRECT);
        let p = parse_verified(&out);
        assert_eq!((p.dst, p.dport), (LAN_HOST, 5353));
        assert_ne!(p.l4_check, 0);

        let mut without = with.clone();
        without.udp_no_checksum = true;
        let (action, out) = f.wan(&without.bytes());
        assert_eq!(action, XDP_REDIRECT);
        let p = parse_verified(&out);
        assert_eq!(
            p.l4_check, 0,
            "a UDP datagram without a checksum keeps none"
        );
        assert_eq!((p.dst, p.dport, p.ttl), (LAN_HOST, 5353, 63));
    });
}

#[test]
fn a_udp_checksum_that_computes_to_zero_is_sent_as_all_ones() {
    with_shares(&SHARES, |f| {
        // Choose the payload so that the rewritten datagram's checksum computes to 0: with a
        // zero word the checksum is c; a word equal to c brings the sum to 0xFFFF.
        let mut rewritten = Packet::new(UDP, REMOTE, 40_002, LAN_HOST, 5353);
        rewritten.payload = vec![0, 0];
        rewritten.udp_no_checksum = true;
        let c = l4_checksum(REMOTE, LAN_HOST, UDP, &rewritten.l4());
        let mut input = Packet::new(UDP, REMOTE, 40_002, EXTERNAL, 5300);
        input.payload = c.to_be_bytes().to_vec();
        let (action, out) = f.wan(&input.bytes());
        assert_eq!(action, XDP_REDIRECT);
        let p = parse_verified(&out);
        assert_eq!(p.l4_check, 0xffff);
    });
}

#[test]
fn a_packet_whose_ttl_runs_out_goes_to_the_kernel_rewritten() {
    with_shares(&SHARES, |f| {
        let mut input = Packet::new(TCP, REMOTE, 40_003, EXTERNAL, 8080);
        input.ttl = 1;
        let (action, out) = f.wan(&input.bytes());
        assert_eq!(action, XDP_PASS);
        let p = parse_verified(&out);
        assert_eq!(
            (p.dst, p.dport),
            (LAN_HOST, 80),
            "rewritten for the kernel to forward"
        );
        assert_eq!(
            p.ttl, 1,
            "the kernel decrements it (and answers time exceeded)"
        );
        assert_eq!(f.verdict(DIR_WAN, Verdict::PassedToKernel), 1);
    });
}

#[test]
fn a_share_for_one_remote_host_wins_over_the_wildcard() {
    with_shares(
        &[
            "tcp:8080=10.77.0.10:80",
            "tcp:8080@198.51.100.2=10.77.0.11:80",
        ],
        |f| {
            let (_, out) = f.wan(&Packet::new(TCP, REMOTE, 40_004, EXTERNAL, 8080).bytes());
            assert_eq!(parse_verified(&out).dst, Ipv4Addr::new(10, 77, 0, 11));
            let other = Ipv4Addr::new(198, 51, 100, 3);
            let (_, out) = f.wan(&Packet::new(TCP, other, 40_004, EXTERNAL, 8080).bytes());
            assert_eq!(parse_verified(&out).dst, LAN_HOST);
        },
    );
}

#[test]
fn packets_without_a_share_or_not_for_us_pass_untouched() {
    with_shares(&SHARES, |f| {
        let cases = [
            (
                "no share on the port",
                Packet::new(TCP, REMOTE, 1, EXTERNAL, 9999),
            ),
            (
                "UDP port shared for TCP only",
                Packet::new(UDP, REMOTE, 1, EXTERNAL, 8080),
            ),
            (
                "another destination",
                Packet::new(TCP, REMOTE, 1, Ipv4Addr::new(198, 51, 100, 9), 8080),
            ),
            ("ICMP", Packet::new(ICMP, REMOTE, 0, EXTERNAL, 0)),
        ];
        for (name, packet) in &cases {
            let frame = packet.bytes();
            let (action, out) = f.wan(&frame);
            assert_eq!((action, &out), (XDP_PASS, &frame), "{name}");
        }
        let mut arp = Packet::new(TCP, REMOTE, 1, EXTERNAL, 8080).bytes();
        arp[12..14].copy_from_slice(&0x0806u16.to_be_bytes());
        assert_eq!(f.wan(&arp), (XDP_PASS, arp.clone()), "ARP");
        assert_eq!(f.verdict(DIR_WAN, Verdict::NotMatched), 5);
        assert_eq!(f.stats(8080).packets_in, 0);
    });
}

#[test]
fn fragments_pass_untouched() {
    with_shares(&SHARES, |f| {
        for frags in [0x2000u16 /* MF */, 0x0010 /* offset */, 0x2010] {
            let mut p = Packet::new(UDP, REMOTE, 40_005, EXTERNAL, 5300);
            p.frags = frags;
            let frame = p.bytes();
            assert_eq!(f.wan(&frame), (XDP_PASS, frame.clone()), "frags {frags:#x}");
        }
    });
}

#[test]
fn truncated_and_malformed_packets_are_never_rewritten() {
    with_shares(&SHARES, |f| {
        for proto in [TCP, UDP] {
            let port = if proto == TCP { 8080 } else { 5300 };
            let full = Packet::new(proto, REMOTE, 40_006, EXTERNAL, port).bytes();
            // Cut anywhere from the bare Ethernet header to one byte short (the kernel refuses
            // test input shorter than an Ethernet header; XDP never sees such a frame).
            for len in 14..full.len() {
                let frame = &full[..len];
                let (action, out) = f.wan(frame);
                assert_eq!((action, out.as_slice()), (XDP_PASS, frame), "cut at {len}");
            }
        }
        let good = Packet::new(TCP, REMOTE, 40_007, EXTERNAL, 8080).bytes();
        let mutate = |name: &str, change: &dyn Fn(&mut Vec<u8>)| {
            let mut frame = good.clone();
            change(&mut frame);
            assert_eq!(f.wan(&frame), (XDP_PASS, frame.clone()), "{name}");
        };
        mutate("IHL 4", &|b| b[14] = 0x44);
        mutate("version 6 in an IPv4 frame", &|b| b[14] = 0x65);
        mutate("total length beyond the frame", &|b| {
            b[16..18].copy_from_slice(&200u16.to_be_bytes());
        });
        mutate("total length shorter than the headers", &|b| {
            b[16..18].copy_from_slice(&30u16.to_be_bytes());
        });
        mutate("TCP data offset 4", &|b| b[14 + 20 + 12] = 0x40);
        let udp = Packet::new(UDP, REMOTE, 40_008, EXTERNAL, 5300).bytes();
        for (name, len) in [("UDP length 4", 4u16), ("UDP length past the packet", 500)] {
            let mut frame = udp.clone();
            frame[14 + 20 + 4..14 + 20 + 6].copy_from_slice(&len.to_be_bytes());
            assert_eq!(f.wan(&frame), (XDP_PASS, frame.clone()), "{name}");
        }
        assert_eq!(f.stats(8080).packets_in, 0);
        assert_eq!(f.verdict(DIR_WAN, Verdict::Forwarded), 0);
    });
}

#[test]
fn ip_options_are_skipped_and_kept() {
    with_shares(&SHARES, |f| {
        for proto in [TCP, UDP] {
            let port = if proto == TCP { 8080 } else { 5300 };
            let mut input = Packet::new(proto, REMOTE, 40_009, EXTERNAL, port);
            // Eight bytes of options: NOPs and a timestamp-less end of list.
            input.options = vec![1, 1, 1, 1, 1, 1, 1, 0];
            let (action, out) = f.wan(&input.bytes());
            assert_eq!(action, XDP_REDIRECT);
            let p = parse_verified(&out);
            assert_eq!((p.dst, p.sport), (LAN_HOST, 40_009));
            assert_eq!(p.dport, if proto == TCP { 80 } else { 5353 });
            assert_eq!(&out[34..42], input.options.as_slice(), "options kept");
        }
    });
}

#[test]
fn replies_are_rewritten_back_to_the_external_address() {
    with_shares(&SHARES, |f| {
        let reply = Packet::new(TCP, LAN_HOST, 80, REMOTE, 40_000);
        let (action, out) = f.lan(&reply.bytes());
        assert_eq!(action, XDP_REDIRECT);
        let p = parse_verified(&out);
        assert_eq!((p.src, p.sport), (EXTERNAL, 8080));
        assert_eq!((p.dst, p.dport), (REMOTE, 40_000), "destination untouched");
        assert_eq!(p.ttl, 63);
        assert_eq!((p.dmac, p.smac), (f.facts.remote_mac, f.facts.wan_mac));
        let stats = f.stats(8080);
        assert_eq!((stats.packets_out, stats.packets_in), (1, 0));

        let udp = Packet::new(UDP, LAN_HOST, 5353, REMOTE, 40_001);
        let (action, out) = f.lan(&udp.bytes());
        assert_eq!(action, XDP_REDIRECT);
        let p = parse_verified(&out);
        assert_eq!((p.src, p.sport), (EXTERNAL, 5300));
        assert_eq!(f.verdict(DIR_LAN, Verdict::Forwarded), 2);
    });
}

#[test]
fn lan_traffic_that_is_no_reply_to_a_share_passes_untouched() {
    with_shares(&SHARES, |f| {
        let cases = [
            // From the shared endpoint, but to the router itself: not leaving through the WAN.
            (
                "to the router",
                Packet::new(UDP, LAN_HOST, 5353, ROUTER_LAN, 53),
            ),
            (
                "from an unshared port",
                Packet::new(TCP, LAN_HOST, 22, REMOTE, 40_000),
            ),
            (
                "from another host",
                Packet::new(TCP, Ipv4Addr::new(10, 77, 0, 12), 80, REMOTE, 1),
            ),
            (
                "shared port, other protocol",
                Packet::new(UDP, LAN_HOST, 80, REMOTE, 1),
            ),
        ];
        for (name, packet) in &cases {
            let frame = packet.bytes();
            assert_eq!(f.lan(&frame), (XDP_PASS, frame.clone()), "{name}");
        }
        assert_eq!(f.verdict(DIR_LAN, Verdict::NotMatched), 4);
    });
}

#[test]
fn a_removed_share_stops_matching_at_once() {
    with_shares(&SHARES, |f| {
        let tcp = Packet::new(TCP, REMOTE, 40_010, EXTERNAL, 8080).bytes();
        assert_eq!(f.wan(&tcp).0, XDP_REDIRECT);
        f.table
            .replace_static(vec!["udp:5300=10.77.0.10:5353".parse().expect("spec")])
            .expect("replace");
        assert_eq!(f.wan(&tcp), (XDP_PASS, tcp.clone()), "tcp:8080 is gone");
        let udp = Packet::new(UDP, REMOTE, 40_011, EXTERNAL, 5300).bytes();
        assert_eq!(f.wan(&udp).0, XDP_REDIRECT, "udp:5300 stays");
    });
}

fn open(f: &mut Fixture, id: &str, remote: Option<Ipv6Addr>) {
    f.table
        .open_pinhole(PinholeSpec {
            id: id.parse().expect("pinhole id"),
            remote,
            remote_port: None,
            name: None,
            enabled: true,
        })
        .expect("open pinhole");
}

#[test]
fn ipv6_to_a_pinhole_is_forwarded_unchanged_but_for_the_hop_limit() {
    with_shares(&[], |f| {
        let input = Packet6::new(TCP, REMOTE6, 40_000, LAN_HOST6, 443).bytes();
        assert_eq!(f.wan(&input), (XDP_PASS, input.clone()), "no pinhole yet");
        open(f, "tcp:[2001:db8:77::10]:443", None);
        let (action, out) = f.wan(&input);
        assert_eq!(action, XDP_REDIRECT);
        assert_eq!(&out[..6], &f.facts.lan_host_mac);
        assert_eq!(&out[6..12], &f.facts.lan_mac);
        assert_eq!(out[21], 63, "hop limit decremented");
        let mut expected = input.clone();
        expected[..12].copy_from_slice(&out[..12]);
        expected[21] = 63;
        assert_eq!(
            out, expected,
            "nothing else changed (the checksum covers no hop limit)"
        );
        let views = f.table.pinholes().expect("pinholes");
        assert_eq!(views[0].stats.packets_in, 1);
        assert_eq!(
            views[0].stats.bytes_in,
            u64::try_from(input.len() - 14).expect("len")
        );

        // The LAN host's packets back go out of the WAN the same way, counted.
        let reply = Packet6 {
            flags: SYN | ACK,
            ..Packet6::new(TCP, LAN_HOST6, 443, REMOTE6, 40_000)
        }
        .bytes();
        let (action, out) = f.lan(&reply);
        assert_eq!(action, XDP_REDIRECT);
        assert_eq!(&out[..6], &f.facts.remote_mac);
        assert_eq!(&out[6..12], &f.facts.wan_mac);
        assert_eq!(out[21], 63);
        assert_eq!(
            f.table.pinholes().expect("pinholes")[0].stats.packets_out,
            1
        );

        // UDP to the same port is another pinhole.
        let udp = Packet6::new(UDP, REMOTE6, 40_000, LAN_HOST6, 443).bytes();
        assert_eq!(f.wan(&udp), (XDP_PASS, udp.clone()));

        // Closed: the next packet goes to the kernel untouched.
        f.table
            .close_pinhole(
                "tcp:[2001:db8:77::10]:443".parse().expect("id"),
                By::Operator,
            )
            .expect("close");
        assert_eq!(f.wan(&input), (XDP_PASS, input.clone()));
    });
}

#[test]
fn ipv6_extension_headers_icmp_short_and_expiring_packets_go_to_the_kernel() {
    with_shares(&[], |f| {
        open(f, "udp:[2001:db8:77::10]:5353", None);
        f.table.set_ipv6_deny(true).expect("deny");
        let packet = || Packet6::new(UDP, REMOTE6, 40_000, LAN_HOST6, 5353);
        let cases = [
            (
                "hop-by-hop options",
                Packet6 {
                    next: 0,
                    ..packet()
                }
                .bytes(),
            ),
            (
                "fragment header",
                Packet6 {
                    next: 44,
                    ..packet()
                }
                .bytes(),
            ),
            (
                "ICMPv6",
                Packet6 {
                    next: 58,
                    ..packet()
                }
                .bytes(),
            ),
            (
                "hop limit 1",
                Packet6 {
                    hop_limit: 1,
                    ..packet()
                }
                .bytes(),
            ),
        ];
        for (name, frame) in &cases {
            assert_eq!(f.wan(frame), (XDP_PASS, frame.clone()), "{name}");
        }
        let mut truncated = packet().bytes();
        truncated.truncate(truncated.len() - 4);
        assert_eq!(
            f.wan(&truncated),
            (XDP_PASS, truncated.clone()),
            "truncated"
        );
        assert_eq!(
            f.wan(&packet().bytes()).0,
            XDP_REDIRECT,
            "the pinhole itself works"
        );
    });
}

#[test]
fn ipv6_default_deny_drops_connection_attempts_without_a_pinhole() {
    with_shares(&[], |f| {
        let syn = Packet6::new(TCP, REMOTE6, 40_000, LAN_HOST6, 22).bytes();
        let ack = Packet6 {
            flags: ACK,
            ..Packet6::new(TCP, REMOTE6, 40_000, LAN_HOST6, 22)
        }
        .bytes();
        let udp = Packet6::new(UDP, REMOTE6, 40_000, LAN_HOST6, 22).bytes();
        let to_router = Packet6::new(TCP, REMOTE6, 40_000, ROUTER_LAN6, 22).bytes();
        assert_eq!(f.wan(&syn), (XDP_PASS, syn.clone()), "pass by default");
        f.table.set_ipv6_deny(true).expect("deny");
        assert_eq!(f.wan(&syn).0, 1, "XDP_DROP: a new connection to the LAN");
        assert_eq!(
            f.wan(&ack),
            (XDP_PASS, ack.clone()),
            "replies are the kernel's"
        );
        assert_eq!(f.wan(&udp), (XDP_PASS, udp.clone()), "UDP is the kernel's");
        assert_eq!(
            f.wan(&to_router),
            (XDP_PASS, to_router.clone()),
            "the box's own"
        );
        assert_eq!(f.verdict(DIR_WAN, Verdict::Dropped), 1);

        // A pinhole for one remote address: others are still refused.
        open(f, "tcp:[2001:db8:77::10]:22", Some(REMOTE6));
        assert_eq!(f.wan(&syn).0, XDP_REDIRECT, "from the remote allowed");
        let stranger = Packet6::new(
            TCP,
            "2001:db8:ff::9".parse().expect("addr"),
            1,
            LAN_HOST6,
            22,
        )
        .bytes();
        assert_eq!(f.wan(&stranger).0, 1, "from another remote: dropped");
    });
}

#[test]
fn a_port_range_forwards_each_port_to_its_own_and_nothing_beside_it() {
    with_shares(&["udp:27015-27030=10.77.0.10:37015"], |f| {
        for (ext, int) in [(27015, 37015), (27022, 37022), (27030, 37030)] {
            let input = Packet::new(UDP, REMOTE, 40_020, EXTERNAL, ext);
            let (action, out) = f.wan(&input.bytes());
            assert_eq!(action, XDP_REDIRECT, "port {ext}");
            let p = parse_verified(&out);
            assert_eq!((p.dst, p.dport), (LAN_HOST, int), "port {ext}");
            // The reply from that internal port leaves from the external port it came to.
            let reply = Packet::new(UDP, LAN_HOST, int, REMOTE, 40_020);
            let (action, out) = f.lan(&reply.bytes());
            assert_eq!(action, XDP_REDIRECT, "reply from {int}");
            let p = parse_verified(&out);
            assert_eq!((p.src, p.sport), (EXTERNAL, ext), "reply from {int}");
        }
        for beside in [27014, 27031] {
            let input = Packet::new(UDP, REMOTE, 40_021, EXTERNAL, beside);
            let (action, out) = f.wan(&input.bytes());
            assert_eq!(action, XDP_PASS, "port {beside} is not shared");
            assert_eq!(out, input.bytes(), "untouched");
        }
        // TCP to the same ports is another protocol's.
        let (action, _) = f.wan(&Packet::new(TCP, REMOTE, 40_022, EXTERNAL, 27020).bytes());
        assert_eq!(action, XDP_PASS);
        // One share, counted for the whole range.
        let stats = f.stats(27015);
        assert_eq!((stats.packets_in, stats.packets_out), (3, 3));
    });
}

/// Deletes element `index` of the programs' device map (`EGRESS`): a redirect through it can
/// then not be set up.
fn forget_egress(f: &Fixture, index: u32) {
    let ids = f
        .program(PROG_LAN)
        .info()
        .expect("program info")
        .map_ids()
        .expect("map ids")
        .expect("the kernel names them");
    let egress = ids
        .into_iter()
        .map(|id| aya::maps::MapData::from_id(id).expect("map"))
        .find(|map| map.info().expect("map info").name_as_str() == Some("EGRESS"))
        .expect("the EGRESS map");
    let fd = std::os::fd::AsRawFd::as_raw_fd(&std::os::fd::AsFd::as_fd(egress.fd()));
    // union bpf_attr for BPF_MAP_DELETE_ELEM (3): map_fd, then the key's address at 8.
    let mut attr = [0u64; 4];
    attr[0] = u64::from(u32::try_from(fd).expect("fd"));
    attr[1] = std::ptr::from_ref(&index) as u64;
    // SAFETY: a delete with a key of the map's key size, alive for the call.
    let ret = unsafe { libc::syscall(libc::SYS_bpf, 3, attr.as_mut_ptr(), 32) };
    assert_eq!(ret, 0, "delete: {}", std::io::Error::last_os_error());
}

#[test]
fn a_pinhole_reply_whose_redirect_fails_is_aborted_not_passed_half_rewritten() {
    with_shares(&[], |f| {
        open(f, "tcp:[2001:db8:77::10]:443", None);
        forget_egress(f, portfwd_common::EGRESS_WAN);
        let reply = Packet6 {
            flags: SYN | ACK,
            ..Packet6::new(TCP, LAN_HOST6, 443, REMOTE6, 40_000)
        }
        .bytes();
        let (action, _) = f.lan(&reply);
        assert_eq!(
            action, 0,
            "XDP_ABORTED: the MACs and hop limit were already rewritten"
        );
        assert_eq!(f.verdict(DIR_LAN, Verdict::Aborted), 1);
        assert_eq!(f.verdict(DIR_LAN, Verdict::NotMatched), 0);
    });
}
