use super::*;
use crate::{
    host::{Host, WanStats},
    policy::{PcpSettings, UpnpConfig},
};

const ME: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 10);
const OTHER: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 11);
const EXTERNAL: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 1);

struct Quiet;

impl Host for Quiet {
    fn neighbours(&self) -> Vec<(Ipv4Addr, [u8; 6])> {
        Vec::new()
    }
    fn neighbours6(&self) -> Vec<(Ipv6Addr, [u8; 6])> {
        Vec::new()
    }
    fn listening(&self, _: Proto) -> Vec<(Option<Ipv4Addr>, u16)> {
        vec![(None, 6500)]
    }
    fn wan_up(&self) -> bool {
        true
    }
    fn wan_stats(&self) -> WanStats {
        WanStats::default()
    }
}

fn responder(upnp: &str, pcp: PcpSettings) -> Responder {
    responder_with(upnp, pcp, &["tcp:8080=10.0.0.20:80"])
}

fn responder_with(upnp: &str, pcp: PcpSettings, statics: &[&str]) -> Responder {
    let lan = vec![LanSubnet {
        addr: Ipv4Addr::new(10, 0, 0, 1),
        prefix_len: 24,
    }];
    let mut settings = toml::from_str::<UpnpConfig>(upnp)
        .expect("toml")
        .compile()
        .expect("settings");
    settings.pcp = pcp;
    Responder {
        table: crate::table::testing(settings, Arc::new(Quiet), statics),
        metrics: Arc::default(),
        lan,
        lan6: lan6(),
        started: Instant::now(),
    }
}

fn lan6() -> Vec<crate::pinhole::Prefix6> {
    vec![crate::pinhole::Prefix6 {
        addr: "2001:db8:77::1".parse().expect("addr"),
        prefix_len: 64,
    }]
}

const ME6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0x77, 0, 0, 0, 0, 0x10);

/// A PCP MAP from `client` over IPv6 for its own `port`, suggesting `external`.
fn map6(client: Ipv6Addr, nonce: u8, port: u16, external: u16, lifetime: u32) -> Vec<u8> {
    let mut d = vec![2, code::OP_MAP, 0, 0];
    d.extend_from_slice(&lifetime.to_be_bytes());
    d.extend_from_slice(&client.octets());
    d.extend_from_slice(&[nonce; 12]);
    d.extend_from_slice(&[6, 0, 0, 0]);
    d.extend_from_slice(&port.to_be_bytes());
    d.extend_from_slice(&external.to_be_bytes());
    d.extend_from_slice(&[0; 16]);
    d
}

#[tokio::test]
async fn pcp_over_ipv6_opens_renews_and_closes_pinholes_with_its_nonce() {
    let r = responder("", PcpSettings::default());
    let answer = r
        .answer6(ME6, &map6(ME6, 1, 8443, 9000, 600))
        .await
        .expect("answer");
    assert_eq!(answer[3], code::SUCCESS, "{answer:?}");
    assert_eq!(
        u32::from_be_bytes([answer[4], answer[5], answer[6], answer[7]]),
        600
    );
    // A firewall: the external port and address are the internal ones.
    assert_eq!(u16::from_be_bytes([answer[42], answer[43]]), 8443);
    assert_eq!(&answer[44..60], &ME6.octets());
    let pinholes = r.table.pinholes().expect("list");
    assert_eq!(pinholes.len(), 1);
    assert_eq!(
        pinholes[0].pinhole.spec.id.to_string(),
        "tcp:[2001:db8:77::10]:8443"
    );
    assert_eq!(
        pinholes[0].pinhole.origin,
        Origin::Pcp6 {
            client: ME6,
            nonce: [1; 12]
        }
    );

    // Another nonce can neither take it over nor delete it; the right one renews it.
    let other = r
        .answer6(ME6, &map6(ME6, 2, 8443, 0, 600))
        .await
        .expect("answer");
    assert_eq!(other[3], code::NOT_AUTHORIZED);
    let other = r
        .answer6(ME6, &map6(ME6, 2, 8443, 0, 0))
        .await
        .expect("answer");
    assert_eq!(other[3], code::NOT_AUTHORIZED);
    let renewed = r
        .answer6(ME6, &map6(ME6, 1, 8443, 0, 10))
        .await
        .expect("answer");
    assert_eq!(renewed[3], code::SUCCESS);
    assert_eq!(
        u32::from_be_bytes([renewed[4], renewed[5], renewed[6], renewed[7]]),
        120,
        "raised to the minimum lifetime"
    );

    // The header must name the sender; PREFER_FAILURE with another port cannot be had.
    let lying = r
        .answer6(
            ME6,
            &map6("2001:db8:77::11".parse().expect("addr"), 1, 8443, 0, 60),
        )
        .await
        .expect("answer");
    assert_eq!(lying[3], code::ADDRESS_MISMATCH);
    let mut prefer = map6(ME6, 1, 5000, 6000, 60);
    prefer.extend_from_slice(&[2, 0, 0, 0]);
    let refused = r.answer6(ME6, &prefer).await.expect("answer");
    assert_eq!(refused[3], code::CANNOT_PROVIDE_EXTERNAL);

    // Not a host of the LAN prefix, or NAT-PMP over IPv6: no answer at all.
    let outside: Ipv6Addr = "2001:db8:99::10".parse().expect("addr");
    assert!(
        r.answer6(outside, &map6(outside, 1, 8443, 0, 60))
            .await
            .is_none()
    );
    assert!(r.answer6(ME6, &[0, 0]).await.is_none());

    let closed = r
        .answer6(ME6, &map6(ME6, 1, 8443, 0, 0))
        .await
        .expect("answer");
    assert_eq!(closed[3], code::SUCCESS);
    assert!(r.table.pinholes().expect("list").is_empty());
    let again = r
        .answer6(ME6, &map6(ME6, 1, 8443, 0, 0))
        .await
        .expect("answer");
    assert_eq!(
        again[3],
        code::SUCCESS,
        "closing what is not there succeeds"
    );
}

fn pmp_map(proto: u8, internal: u16, external: u16, lifetime: u32) -> Vec<u8> {
    let mut d = vec![0, proto, 0, 0];
    d.extend_from_slice(&internal.to_be_bytes());
    d.extend_from_slice(&external.to_be_bytes());
    d.extend_from_slice(&lifetime.to_be_bytes());
    d
}

/// (result, external port, lifetime) of a NAT-PMP mapping answer.
fn pmp_answer(a: &[u8]) -> (u16, u16, u32) {
    assert_eq!(a.len(), 16, "{a:?}");
    (
        u16::from_be_bytes([a[2], a[3]]),
        u16::from_be_bytes([a[10], a[11]]),
        u32::from_be_bytes([a[12], a[13], a[14], a[15]]),
    )
}

struct PcpMap {
    op: u8,
    client: Ipv4Addr,
    nonce: u8,
    protocol: u8,
    internal: u16,
    external: u16,
    lifetime: u32,
    options: Vec<u8>,
}

impl PcpMap {
    fn new(internal: u16, external: u16) -> Self {
        Self {
            op: code::OP_MAP,
            client: ME,
            nonce: 1,
            protocol: 17,
            internal,
            external,
            lifetime: 3600,
            options: Vec::new(),
        }
    }

    fn bytes(&self) -> Vec<u8> {
        let mut d = vec![2, self.op, 0, 0];
        d.extend_from_slice(&self.lifetime.to_be_bytes());
        d.extend_from_slice(&self.client.to_ipv6_mapped().octets());
        d.extend_from_slice(&[self.nonce; 12]);
        d.extend_from_slice(&[self.protocol, 0, 0, 0]);
        d.extend_from_slice(&self.internal.to_be_bytes());
        d.extend_from_slice(&self.external.to_be_bytes());
        d.extend_from_slice(&[0; 16]);
        if self.op == code::OP_PEER {
            d.extend_from_slice(&[0x1f, 0x90, 0, 0]);
            d.extend_from_slice(&Ipv4Addr::new(192, 0, 2, 7).to_ipv6_mapped().octets());
        }
        d.extend_from_slice(&self.options);
        d
    }
}

/// (result, lifetime, external port, external address) of a PCP MAP answer.
fn pcp_answer(a: &[u8]) -> (u8, u32, u16, Option<Ipv4Addr>) {
    assert_eq!((a[0], a[1] & 0x80), (2, 0x80), "{a:?}");
    let lifetime = u32::from_be_bytes([a[4], a[5], a[6], a[7]]);
    if a.len() < 60 {
        return (a[3], lifetime, 0, None);
    }
    let mut addr = [0u8; 16];
    addr.copy_from_slice(&a[44..60]);
    (
        a[3],
        lifetime,
        u16::from_be_bytes([a[42], a[43]]),
        Ipv6Addr::from(addr).to_ipv4_mapped(),
    )
}

async fn ask(r: &Responder, from: Ipv4Addr, d: &[u8]) -> Vec<u8> {
    r.answer(from, d).await.expect("an answer")
}

#[tokio::test]
async fn nat_pmp_maps_renews_moves_and_deletes() {
    let r = responder("", PcpSettings::default());
    let external = ask(&r, ME, &[0, 0]).await;
    assert_eq!(&external[..4], &[0, 128, 0, 0]);
    assert_eq!(&external[8..], &EXTERNAL.octets());

    let (result, port, lifetime) = pmp_answer(&ask(&r, ME, &pmp_map(1, 5000, 6000, 7200)).await);
    assert_eq!((result, port, lifetime), (0, 6000, 7200));
    // Asking again for the same internal port renews it, whatever port is suggested.
    let again = pmp_answer(&ask(&r, ME, &pmp_map(1, 5000, 7000, 10)).await);
    assert_eq!(
        again,
        (0, 6000, 120),
        "renewed in place, lifetime raised to the minimum"
    );
    // Another client asking for the taken port gets the nearest free one.
    let (_, moved, _) = pmp_answer(&ask(&r, OTHER, &pmp_map(1, 5000, 6000, 60)).await);
    assert_eq!(moved, 6001);
    // The static share's port, and a port the box listens on, are skipped too.
    let (_, port, _) = pmp_answer(&ask(&r, ME, &pmp_map(2, 80, 8080, 60)).await);
    assert_eq!(port, 8081);
    let (_, port, _) = pmp_answer(&ask(&r, ME, &pmp_map(2, 2222, 6500, 60)).await);
    assert_eq!(port, 6501);
    let shares = r.table.entries();
    let mine: Vec<_> = shares
        .iter()
        .filter(|s| s.origin == Origin::Natpmp { client: ME })
        .map(|s| s.spec.to_string())
        .collect();
    assert_eq!(
        mine,
        [
            "tcp:6501=10.0.0.10:2222",
            "tcp:8081=10.0.0.10:80",
            "udp:6000=10.0.0.10:5000"
        ]
    );

    // Lifetime 0 deletes one; internal port 0 with lifetime 0 deletes all of that protocol.
    let gone = pmp_answer(&ask(&r, ME, &pmp_map(1, 5000, 0, 0)).await);
    assert_eq!(gone, (0, 0, 0));
    let all = pmp_answer(&ask(&r, ME, &pmp_map(2, 0, 0, 0)).await);
    assert_eq!(all.0, 0);
    let left = r.table.entries();
    assert!(
        left.iter().all(|s| s.origin.client() != Some(ME)),
        "{left:?}"
    );
    assert!(
        left.iter()
            .any(|s| s.origin == Origin::Natpmp { client: OTHER }),
        "another client's share stays"
    );
}

#[tokio::test]
async fn nat_pmp_refusals_carry_result_codes() {
    let r = responder("devices = [\"10.0.0.10\"]", PcpSettings::default());
    let denied = pmp_answer(&ask(&r, OTHER, &pmp_map(1, 5000, 5000, 60)).await);
    assert_eq!(denied.0, pmp::NOT_AUTHORIZED);
    assert_eq!(ask(&r, ME, &[0, 7]).await, [0, 135, 0, 5, 0, 0, 0, 0]);
    assert!(r.answer(ME, &[0]).await.is_none(), "too short: dropped");
    assert!(r.answer(ME, &pmp_map(1, 1, 1, 1)[..9]).await.is_none());
    assert!(
        r.answer(Ipv4Addr::new(192, 0, 2, 1), &[0, 0])
            .await
            .is_none(),
        "not a LAN host"
    );
    let off = responder(
        "",
        PcpSettings {
            enabled: false,
            ..PcpSettings::default()
        },
    );
    let refused = pmp_answer(&ask(&off, ME, &pmp_map(1, 5000, 5000, 60)).await);
    assert_eq!(refused.0, pmp::NOT_AUTHORIZED);
    let quota = responder("quota_per_client = 1", PcpSettings::default());
    ask(&quota, ME, &pmp_map(1, 5000, 5000, 60)).await;
    let over = pmp_answer(&ask(&quota, ME, &pmp_map(1, 5001, 5001, 60)).await);
    assert_eq!(over.0, pmp::NO_RESOURCES);
}

#[tokio::test]
async fn pcp_map_checks_nonce_address_and_options() {
    let r = responder("max_lease = 600", PcpSettings::default());
    let first = pcp_answer(&ask(&r, ME, &PcpMap::new(5000, 6000).bytes()).await);
    assert_eq!(
        first,
        (0, 600, 6000, Some(EXTERNAL)),
        "lifetime cut to max_lease"
    );
    let answer = ask(&r, ME, &PcpMap::new(5000, 6000).bytes()).await;
    assert_eq!(&answer[24..36], &[1; 12], "the nonce comes back");

    let other_nonce = PcpMap {
        nonce: 2,
        ..PcpMap::new(5000, 6000)
    };
    let refused = pcp_answer(&ask(&r, ME, &other_nonce.bytes()).await);
    assert_eq!((refused.0, refused.1), (code::NOT_AUTHORIZED, 1800));
    let delete_other = PcpMap {
        lifetime: 0,
        ..other_nonce
    };
    assert_eq!(
        pcp_answer(&ask(&r, ME, &delete_other.bytes()).await).0,
        code::NOT_AUTHORIZED
    );

    let spoofed = PcpMap {
        client: OTHER,
        ..PcpMap::new(5001, 5001)
    };
    assert_eq!(
        pcp_answer(&ask(&r, ME, &spoofed.bytes()).await).0,
        code::ADDRESS_MISMATCH
    );
    let prefer = PcpMap {
        options: vec![code::OPT_PREFER_FAILURE, 0, 0, 0],
        ..PcpMap::new(5002, 6000)
    };
    let taken = pcp_answer(&ask(&r, ME, &prefer.bytes()).await);
    assert_eq!((taken.0, taken.1), (code::CANNOT_PROVIDE_EXTERNAL, 30));
    let static_port = PcpMap {
        protocol: 6,
        options: vec![code::OPT_PREFER_FAILURE, 0, 0, 0],
        ..PcpMap::new(5003, 8080)
    };
    assert_eq!(
        pcp_answer(&ask(&r, ME, &static_port.bytes()).await).0,
        code::CANNOT_PROVIDE_EXTERNAL
    );
    let mut third = vec![code::OPT_THIRD_PARTY, 0, 0, 16];
    third.extend_from_slice(&OTHER.to_ipv6_mapped().octets());
    let third_party = PcpMap {
        options: third,
        ..PcpMap::new(5004, 5004)
    };
    assert_eq!(
        pcp_answer(&ask(&r, ME, &third_party.bytes()).await).0,
        code::UNSUPP_OPTION
    );
    let sctp = PcpMap {
        protocol: 132,
        ..PcpMap::new(5005, 5005)
    };
    assert_eq!(
        pcp_answer(&ask(&r, ME, &sctp.bytes()).await).0,
        code::UNSUPP_PROTOCOL
    );
    let mut two_filters = Vec::new();
    for host in [1, 2] {
        two_filters.extend_from_slice(&[code::OPT_FILTER, 0, 0, 20, 0, 128, 0, 0]);
        two_filters.extend_from_slice(&Ipv4Addr::new(192, 0, 2, host).to_ipv6_mapped().octets());
    }
    let filtered = PcpMap {
        options: two_filters.clone(),
        ..PcpMap::new(5006, 5006)
    };
    assert_eq!(
        pcp_answer(&ask(&r, ME, &filtered.bytes()).await).0,
        code::EXCESSIVE_REMOTE_PEERS
    );
    let one_filter = PcpMap {
        options: two_filters[..24].to_vec(),
        ..PcpMap::new(5006, 5006)
    };
    let answer = ask(&r, ME, &one_filter.bytes()).await;
    assert_eq!(pcp_answer(&answer).0, code::SUCCESS);
    assert_eq!(&answer[60..], &two_filters[..24], "the FILTER comes back");
    let shares = r.table.entries();
    let filtered = shares
        .iter()
        .find(|s| s.spec.internal.port() == 5006)
        .expect("filtered share");
    assert_eq!(filtered.spec.id.remote, Some(Ipv4Addr::new(192, 0, 2, 1)));

    // Deleting with the right nonce.
    let delete = PcpMap {
        lifetime: 0,
        ..PcpMap::new(5000, 0)
    };
    assert_eq!(
        pcp_answer(&ask(&r, ME, &delete.bytes()).await).0,
        code::SUCCESS
    );
    let left = r.table.entries();
    assert!(left.iter().all(|s| s.spec.internal.port() != 5000));
}

#[tokio::test]
async fn pcp_peer_and_announce() {
    let r = responder("", PcpSettings::default());
    let peer = PcpMap {
        op: code::OP_PEER,
        ..PcpMap::new(7000, 7000)
    };
    let answer = ask(&r, ME, &peer.bytes()).await;
    assert_eq!(answer.len(), 80);
    assert_eq!(pcp_answer(&answer).0, code::SUCCESS);
    let shares = r.table.entries();
    let share = shares
        .iter()
        .find(|s| s.spec.internal.port() == 7000)
        .expect("peer share");
    assert_eq!(share.spec.id.remote, Some(Ipv4Addr::new(192, 0, 2, 7)));
    assert_eq!(share.origin.source(), "pcp");

    let mut announce = vec![2, 0, 0, 0, 0, 0, 0, 0];
    announce.extend_from_slice(&ME.to_ipv6_mapped().octets());
    let answer = ask(&r, ME, &announce).await;
    assert_eq!(
        (answer.len(), answer[1], answer[3]),
        (24, 0x80, code::SUCCESS)
    );
    // Version 1 is answered UNSUPP_VERSION, as version 2.
    let mut v1 = announce.clone();
    v1[0] = 1;
    let answer = ask(&r, ME, &v1).await;
    assert_eq!((answer[0], answer[3]), (2, code::UNSUPP_VERSION));
}

#[tokio::test]
async fn clients_map_around_a_range_the_owner_holds() {
    let r = responder_with(
        "",
        PcpSettings::default(),
        &["udp:27015-27030=10.0.0.20:27015"],
    );
    let inside = 27_015..=27_030;
    // NAT-PMP suggesting a port inside the range gets the nearest free one outside it.
    let (result, port, _) = pmp_answer(&ask(&r, ME, &pmp_map(1, 5000, 27_020, 60)).await);
    assert_eq!(result, 0);
    assert!(!inside.contains(&port), "{port} is the owner's");
    // So does a PCP MAP; with PREFER_FAILURE it cannot be had.
    let (result, _, port, _) = pcp_answer(&ask(&r, ME, &PcpMap::new(5001, 27_022).bytes()).await);
    assert_eq!(result, code::SUCCESS);
    assert!(!inside.contains(&port), "{port} is the owner's");
    let prefer = PcpMap {
        options: vec![code::OPT_PREFER_FAILURE, 0, 0, 0],
        ..PcpMap::new(5002, 27_030)
    };
    assert_eq!(
        pcp_answer(&ask(&r, ME, &prefer.bytes()).await).0,
        code::CANNOT_PROVIDE_EXTERNAL
    );
}
