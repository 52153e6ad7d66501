use portfwd_common::{MAX_SHARES, NO_DEADLINE, REVERSE_F_REMOTE_SPECIFIC, ShareTarget};

use super::*;
use crate::clock::BootClock;

fn lan() -> Vec<LanSubnet> {
    vec![LanSubnet {
        addr: Ipv4Addr::new(10, 0, 0, 1),
        prefix_len: 24,
    }]
}

fn spec(s: &str) -> ShareSpec {
    s.parse().expect("valid spec")
}

#[test]
fn parses_share_specs() {
    let s = spec("tcp:8080=10.0.0.10:80");
    assert_eq!(s.id.proto, Proto::Tcp);
    assert_eq!(s.id.ext_port, 8080);
    assert_eq!(s.id.remote, None);
    assert_eq!(s.internal, "10.0.0.10:80".parse().expect("addr"));
    let s = spec("UDP:53@198.51.100.7=10.0.0.2:5353");
    assert_eq!(s.id.proto, Proto::Udp);
    assert_eq!(s.id.remote, Some(Ipv4Addr::new(198, 51, 100, 7)));
    assert_eq!(s.to_string(), "udp:53@198.51.100.7=10.0.0.2:5353");
}

#[test]
fn rejects_malformed_specs_with_the_reason() {
    let err = |s: &str| s.parse::<ShareSpec>().expect_err(s);
    assert_eq!(err("tcp:0=10.0.0.10:80"), SpecError::Port("0".into()));
    assert_eq!(err("tcp:80=10.0.0.10:0"), SpecError::Port("0".into()));
    assert_eq!(
        err("tcp:70000=10.0.0.10:80"),
        SpecError::Port("70000".into())
    );
    assert_eq!(err("sctp:80=10.0.0.10:80"), SpecError::Proto("sctp".into()));
    assert_eq!(err("tcp:80=10.0.0:80"), SpecError::Addr("10.0.0".into()));
    assert_eq!(err("tcp:80@x=10.0.0.1:80"), SpecError::Addr("x".into()));
    assert!(matches!(err("tcp8080=10.0.0.10:80"), SpecError::Form(_)));
    assert!(matches!(err("tcp:8080"), SpecError::Form(_)));
    assert!(matches!(err(""), SpecError::Form(_)));
}

#[test]
fn share_ids_parse_and_print_alike() {
    for text in ["tcp:8080", "udp:53@198.51.100.7"] {
        let id: ShareId = text.parse().expect(text);
        assert_eq!(id.to_string(), text);
    }
    assert_eq!("tcp".parse::<ShareId>(), Err(SpecError::Id("tcp".into())));
    assert_eq!("tcp:0".parse::<ShareId>(), Err(SpecError::Port("0".into())));
    assert_eq!(
        "icmp:1".parse::<ShareId>(),
        Err(SpecError::Proto("icmp".into()))
    );
}

#[test]
fn table_enforces_the_sharing_rules() {
    let mut t = ShareTable::new(lan());
    t.add(spec("tcp:8080=10.0.0.10:80")).expect("first");
    assert_eq!(
        t.add(spec("tcp:8080=10.0.0.11:80")),
        Err(ShareError::Duplicate(spec("tcp:8080=10.0.0.11:80").id))
    );
    // Same port, other protocol: fine.
    t.add(spec("udp:8080=10.0.0.10:80")).expect("udp");
    // The internal endpoint is already shared under another external port.
    assert!(matches!(
        t.add(spec("tcp:9090=10.0.0.10:80")),
        Err(ShareError::InternalInUse { .. })
    ));
    // Same external port for one remote host, same endpoint: fine.
    t.add(spec("tcp:8080@198.51.100.9=10.0.0.10:80"))
        .expect("remote");
    for bad in [
        "tcp:1=192.168.1.5:80",
        "tcp:2=10.0.0.1:80",
        "tcp:3=10.0.0.0:80",
        "tcp:4=10.0.0.255:80",
    ] {
        assert!(
            matches!(t.add(spec(bad)), Err(ShareError::NotOnLan { .. })),
            "{bad}"
        );
    }
    assert_eq!(t.len(), 3);
}

#[test]
fn an_endpoint_is_free_again_once_all_its_shares_are_gone() {
    let mut t = ShareTable::new(lan());
    t.add(spec("tcp:8080=10.0.0.10:80")).expect("wild");
    t.add(spec("tcp:8080@198.51.100.9=10.0.0.10:80"))
        .expect("remote");
    t.remove(&spec("tcp:8080=10.0.0.10:80").id);
    assert!(
        t.add(spec("tcp:9090=10.0.0.10:80")).is_err(),
        "still used by one share"
    );
    t.remove(&spec("tcp:8080@198.51.100.9=10.0.0.10:80").id);
    t.add(spec("tcp:9090=10.0.0.10:80")).expect("free now");
}

#[test]
fn a_full_table_is_refused_and_checks_stay_fast() {
    let mut t = ShareTable::new(lan());
    for port in 1..=u16::MAX {
        t.add(spec(&format!("tcp:{port}=10.0.0.10:{port}")))
            .expect("fits");
    }
    t.add(spec("udp:1=10.0.0.10:1")).expect("the 65536th");
    assert_eq!(
        t.add(spec("udp:2=10.0.0.10:2")),
        Err(ShareError::Full { max: MAX_SHARES })
    );
}

#[test]
fn slots_are_reused_after_removal() {
    let mut t = ShareTable::new(lan());
    let a = t.add(spec("tcp:1=10.0.0.10:1")).expect("a");
    let b = t.add(spec("tcp:2=10.0.0.10:2")).expect("b");
    assert_ne!(a, b);
    t.remove(&spec("tcp:1=10.0.0.10:1").id).expect("removed");
    assert_eq!(t.add(spec("tcp:3=10.0.0.10:3")), Ok(a));
}

#[test]
fn desired_state_has_network_order_keys_and_reverse_entries() {
    let mut t = ShareTable::new(lan());
    let wild = t.add(spec("tcp:8080=10.0.0.10:80")).expect("wild");
    t.add(spec("tcp:8080@198.51.100.9=10.0.0.10:80"))
        .expect("remote");
    let mut off = spec("udp:53=10.0.0.12:53");
    off.enabled = false;
    t.add(off).expect("disabled");
    let d = t.desired(BootClock::read(Instant::now()));
    assert_eq!(d.shares.len(), 2, "disabled shares stay out of the kernel");
    let key = ShareKey {
        remote_addr: 0,
        ext_port: 8080u16.to_be(),
        proto: IPPROTO_TCP,
        _pad: 0,
    };
    assert_eq!(
        d.shares[&key],
        ShareTarget {
            int_addr: u32::from_be_bytes([10, 0, 0, 10]).to_be(),
            int_port: 80u16.to_be(),
            slot: wild,
            deadline: NO_DEADLINE,
            ..ShareTarget::default()
        }
    );
    let rev = d.reverse.values().next().expect("one endpoint");
    assert_eq!(d.reverse.len(), 1);
    assert_eq!(rev.ext_port, 8080u16.to_be());
    assert_eq!(rev.wildcard_slot, wild);
    assert_eq!(rev.flags, REVERSE_F_REMOTE_SPECIFIC);
}

#[test]
fn lan_subnet_hosts() {
    let s = LanSubnet {
        addr: Ipv4Addr::new(192, 168, 1, 1),
        prefix_len: 24,
    };
    assert!(s.has_host(Ipv4Addr::new(192, 168, 1, 2)));
    assert!(!s.has_host(Ipv4Addr::new(192, 168, 1, 1)), "the box itself");
    assert!(!s.has_host(Ipv4Addr::new(192, 168, 2, 2)));
    let p2p = LanSubnet {
        addr: Ipv4Addr::new(10, 9, 0, 0),
        prefix_len: 31,
    };
    assert!(p2p.has_host(Ipv4Addr::new(10, 9, 0, 1)));
    assert_eq!(s.to_string(), "192.168.1.0/24");
}

#[test]
fn port_ranges_parse_print_and_refuse_what_cannot_be() {
    let s = spec("tcp:27015-27030=10.0.0.20:27015");
    assert_eq!((s.id.ext_port, s.id.ext_last), (27015, 27030));
    assert_eq!(s.id.port_count(), 16);
    assert_eq!(s.id.to_string(), "tcp:27015-27030");
    assert_eq!(s.to_string(), "tcp:27015-27030=10.0.0.20:27015");
    let id: ShareId = "udp:5000-5009@198.51.100.7".parse().expect("range id");
    assert_eq!(id.to_string(), "udp:5000-5009@198.51.100.7");
    // A one-port range is a single port.
    let one: ShareId = "tcp:80-80".parse().expect("one port");
    assert_eq!(one, ShareId::single(Proto::Tcp, 80, None));
    assert_eq!(one.to_string(), "tcp:80");

    let err = |s: &str| s.parse::<ShareSpec>().expect_err(s);
    assert_eq!(
        err("tcp:30-20=10.0.0.20:20"),
        SpecError::Range("30-20".into())
    );
    assert_eq!(
        err("tcp:1-20000=10.0.0.20:1"),
        SpecError::Range("1-20000".into()),
        "more than MAX_RANGE ports"
    );
    assert_eq!(err("tcp:10-x=10.0.0.20:1"), SpecError::Port("x".into()));
    assert!(matches!(
        err("tcp:100-200=10.0.0.20:65500"),
        SpecError::InternalRange(_)
    ));
}

#[test]
fn a_range_maps_each_external_port_to_its_internal_port() {
    let s = spec("tcp:27015-27030=10.0.0.20:37015");
    assert_eq!(
        s.internal_for(27020),
        "10.0.0.20:37020".parse().expect("addr")
    );
    assert_eq!(s.external_for(37030), 27030);
    assert_eq!(s.endpoints().count(), 16);
    let mut t = ShareTable::new(lan());
    let slot = t.add(s).expect("range");
    let d = t.desired(BootClock::read(Instant::now()));
    assert_eq!(d.shares.len(), 16, "one kernel entry per port");
    assert_eq!(d.reverse.len(), 16, "one reply entry per internal port");
    let key = ShareKey {
        remote_addr: 0,
        ext_port: 27020u16.to_be(),
        proto: IPPROTO_TCP,
        _pad: 0,
    };
    assert_eq!(d.shares[&key].int_port, 37020u16.to_be());
    assert_eq!(d.shares[&key].slot, slot, "one counter slot for the range");
    let rev = d.reverse[&reverse_key(Proto::Tcp, "10.0.0.20:37030".parse().expect("addr"))];
    assert_eq!(rev.ext_port, 27030u16.to_be());
    assert_eq!(rev.wildcard_slot, slot);
    // Found from any of its ports; not from the ports beside it.
    assert_eq!(t.on_port(Proto::Tcp, 27022).count(), 1);
    assert_eq!(t.on_port(Proto::Tcp, 27015).count(), 1);
    assert_eq!(t.on_port(Proto::Tcp, 27014).count(), 0);
    assert_eq!(t.on_port(Proto::Tcp, 27031).count(), 0);
    assert_eq!(t.on_port(Proto::Udp, 27022).count(), 0);
}

#[test]
fn ranges_are_checked_port_by_port() {
    let mut t = ShareTable::new(lan());
    t.add(spec("tcp:27015-27030=10.0.0.20:27015"))
        .expect("range");
    let overlap = |t: &ShareTable, s: &str| match t.check(&spec(s), None) {
        Err(ShareError::Overlap { existing, .. }) => Some(existing.to_string()),
        other => panic!("{s}: {other:?}"),
    };
    for inside in [
        "tcp:27030=10.0.0.21:80",
        "tcp:27015=10.0.0.21:80",
        "tcp:27000-27015=10.0.0.21:1000",
        "tcp:27020-27040=10.0.0.21:1000",
        "tcp:27010-27050=10.0.0.21:1000",
    ] {
        assert_eq!(overlap(&t, inside).as_deref(), Some("tcp:27015-27030"));
    }
    // Beside it, another protocol, or for one remote host only: fine.
    for fine in [
        "tcp:27031=10.0.0.21:80",
        "tcp:27000-27014=10.0.0.21:1000",
        "udp:27020=10.0.0.21:80",
        "tcp:27020@198.51.100.7=10.0.0.21:80",
    ] {
        assert_eq!(t.check(&spec(fine), None), Ok(()), "{fine}");
    }
    // A single port inside a range added first is found the other way round too.
    let mut t = ShareTable::new(lan());
    t.add(spec("tcp:27020=10.0.0.21:80")).expect("single");
    assert_eq!(
        overlap(&t, "tcp:27015-27030=10.0.0.20:27015").as_deref(),
        Some("tcp:27020")
    );
    // An internal port already shared under another external port, inside the range.
    let mut t = ShareTable::new(lan());
    t.add(spec("tcp:9000=10.0.0.20:27020")).expect("single");
    assert!(matches!(
        t.check(&spec("tcp:27015-27030=10.0.0.20:27015"), None),
        Err(ShareError::InternalInUse { existing, .. }) if existing.to_string() == "tcp:9000"
    ));
    // The same range for one remote host and for all share internal ports one to one.
    t.add(spec("tcp:27015-27030=10.0.0.22:27015"))
        .expect("range");
    t.add(spec("tcp:27015-27030@198.51.100.7=10.0.0.22:27015"))
        .expect("the same range for one remote");
}

#[test]
fn the_table_counts_ports_not_shares() {
    let mut t = ShareTable::new(lan());
    // Four ranges of 16,384 ports fill the kernel's 65,536 elements.
    for proto in ["udp", "tcp"] {
        for (first, last) in [(1, 16_384), (16_385, 32_768)] {
            t.add(spec(&format!("{proto}:{first}-{last}=10.0.0.30:{first}")))
                .expect("range");
        }
    }
    assert_eq!(
        t.check(&spec("tcp:40000=10.0.0.31:80"), None),
        Err(ShareError::Full { max: MAX_SHARES })
    );
    t.remove(&"udp:1-16384".parse().expect("id"))
        .expect("removed");
    assert_eq!(t.check(&spec("tcp:40000=10.0.0.31:80"), None), Ok(()));
}
