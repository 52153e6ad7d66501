//! ICMP for shared flows (RFC 5508): errors translated both ways, and "fragmentation needed"
//! built in XDP for a packet too big for the LAN link. Every checksum of the output is
//! recomputed from scratch: the outer IP header's, the ICMP message's and the quoted IP
//! header's (and the quoted UDP checksum, where the whole datagram is quoted).

use portfwd_tests::checksum;

use super::*;

const XDP_TX: u32 = 3;

/// An ICMP error frame from `src` to `dst` of `kind`/`code` quoting `quote` (an IP packet,
/// whole or cut).
fn icmp_error(src: Ipv4Addr, dst: Ipv4Addr, kind: u8, code: u8, quote: &[u8]) -> Vec<u8> {
    let mut icmp = vec![kind, code, 0, 0, 0, 0, 0, 0];
    icmp.extend_from_slice(quote);
    let c = checksum(&icmp);
    icmp[2..4].copy_from_slice(&c.to_be_bytes());
    let mut packet = Packet::new(ICMP, src, 0, dst, 0);
    packet.payload = Vec::new();
    let mut frame = packet.bytes();
    // Packet builds an echo-like ICMP header; replace the IP payload with the error.
    frame.truncate(14 + 20);
    let tot = u16::try_from(20 + icmp.len()).expect("small");
    frame[14 + 2..14 + 4].copy_from_slice(&tot.to_be_bytes());
    frame[14 + 10..14 + 12].copy_from_slice(&[0, 0]);
    let c = checksum(&frame[14..34]);
    frame[14 + 10..14 + 12].copy_from_slice(&c.to_be_bytes());
    frame.extend_from_slice(&icmp);
    frame
}

/// The IP packet inside frame bytes.
fn ip_of(frame: &[u8]) -> Vec<u8> {
    frame[14..].to_vec()
}

/// What an ICMP error frame says, its checksums verified from scratch.
#[derive(Debug)]
struct Error {
    src: Ipv4Addr,
    dst: Ipv4Addr,
    kind: u8,
    code: u8,
    rest: [u8; 4],
    /// The quoted IP packet as it now reads.
    quote: Vec<u8>,
}

impl Error {
    fn quoted_src(&self) -> (Ipv4Addr, u16) {
        let q = &self.quote;
        (
            Ipv4Addr::new(q[12], q[13], q[14], q[15]),
            u16::from_be_bytes([q[20], q[21]]),
        )
    }
    fn quoted_dst(&self) -> (Ipv4Addr, u16) {
        let q = &self.quote;
        (
            Ipv4Addr::new(q[16], q[17], q[18], q[19]),
            u16::from_be_bytes([q[22], q[23]]),
        )
    }
}

fn parse_error(frame: &[u8]) -> Error {
    let ip = &frame[14..];
    assert_eq!(ip[9], ICMP);
    assert_eq!(checksum(&ip[..20]), 0, "outer IP checksum");
    let tot = usize::from(u16::from_be_bytes([ip[2], ip[3]]));
    let icmp = &ip[20..tot];
    assert_eq!(checksum(icmp), 0, "ICMP checksum");
    let quote = icmp[8..].to_vec();
    assert_eq!(checksum(&quote[..20]), 0, "quoted IP header checksum");
    Error {
        src: Ipv4Addr::new(ip[12], ip[13], ip[14], ip[15]),
        dst: Ipv4Addr::new(ip[16], ip[17], ip[18], ip[19]),
        kind: icmp[0],
        code: icmp[1],
        rest: [icmp[4], icmp[5], icmp[6], icmp[7]],
        quote,
    }
}

#[test]
fn a_lan_host_error_about_a_shared_flow_reaches_the_remote_translated() {
    with_shares(&SHARES, |f| {
        // Port unreachable about a UDP datagram that came in through udp:5300, quoting all of
        // it: the quoted UDP checksum is checked too.
        let arrived = Packet::new(UDP, REMOTE, 40_000, LAN_HOST, 5353);
        let frame = icmp_error(LAN_HOST, REMOTE, 3, 3, &ip_of(&arrived.bytes()));
        let (action, out) = f.lan(&frame);
        assert_eq!(action, XDP_REDIRECT);
        let e = parse_error(&out);
        assert_eq!((e.src, e.dst, e.kind, e.code), (EXTERNAL, REMOTE, 3, 3));
        assert_eq!(e.quoted_dst(), (EXTERNAL, 5300), "what the remote sent to");
        assert_eq!(e.quoted_src(), (REMOTE, 40_000));
        let udp = &e.quote[20..];
        assert_eq!(
            u16::from_be_bytes([udp[6], udp[7]]),
            l4_checksum(REMOTE, EXTERNAL, UDP, udp),
            "quoted UDP checksum"
        );
        assert_eq!(out[..6], f.facts.remote_mac, "to the remote's next hop");

        // Time exceeded about a TCP segment, quoting the header and eight bytes only.
        let arrived = Packet::new(TCP, REMOTE, 40_001, LAN_HOST, 80);
        let quote = &ip_of(&arrived.bytes())[..28];
        let (action, out) = f.lan(&icmp_error(LAN_HOST, REMOTE, 11, 0, quote));
        assert_eq!(action, XDP_REDIRECT);
        let e = parse_error(&out);
        assert_eq!((e.src, e.kind), (EXTERNAL, 11));
        assert_eq!(e.quoted_dst(), (EXTERNAL, 8080));
    });
}

#[test]
fn an_internet_error_about_a_reply_reaches_the_lan_host_translated() {
    with_shares(&SHARES, |f| {
        // A router on the way says the share's reply could not be delivered.
        let sent = Packet::new(TCP, EXTERNAL, 8080, REMOTE, 40_002);
        let quote = &ip_of(&sent.bytes())[..28];
        let (action, out) = f.wan(&icmp_error(REMOTE, EXTERNAL, 3, 1, quote));
        assert_eq!(action, XDP_REDIRECT);
        let e = parse_error(&out);
        assert_eq!((e.src, e.dst, e.kind, e.code), (REMOTE, LAN_HOST, 3, 1));
        assert_eq!(
            e.quoted_src(),
            (LAN_HOST, 80),
            "what the LAN host sent from"
        );
        assert_eq!(e.quoted_dst(), (REMOTE, 40_002));

        // UDP, the whole datagram quoted.
        let sent = Packet::new(UDP, EXTERNAL, 5300, REMOTE, 40_003);
        let (action, out) = f.wan(&icmp_error(REMOTE, EXTERNAL, 11, 0, &ip_of(&sent.bytes())));
        assert_eq!(action, XDP_REDIRECT);
        let e = parse_error(&out);
        assert_eq!(e.quoted_src(), (LAN_HOST, 5353));
        let udp = &e.quote[20..];
        assert_eq!(
            u16::from_be_bytes([udp[6], udp[7]]),
            l4_checksum(LAN_HOST, REMOTE, UDP, udp)
        );
    });
}

#[test]
fn errors_about_unshared_flows_and_fragments_pass_untouched() {
    with_shares(&SHARES, |f| {
        // About a port nothing shares.
        let sent = Packet::new(TCP, EXTERNAL, 9999, REMOTE, 40_004);
        let frame = icmp_error(REMOTE, EXTERNAL, 3, 3, &ip_of(&sent.bytes())[..28]);
        assert_eq!(f.wan(&frame), (XDP_PASS, frame.clone()));
        let arrived = Packet::new(UDP, REMOTE, 40_005, LAN_HOST, 9999);
        let frame = icmp_error(LAN_HOST, REMOTE, 3, 3, &ip_of(&arrived.bytes())[..28]);
        assert_eq!(f.lan(&frame), (XDP_PASS, frame.clone()));
        // A fragmented error.
        let arrived = Packet::new(UDP, REMOTE, 40_006, LAN_HOST, 5353);
        let mut frame = icmp_error(LAN_HOST, REMOTE, 3, 3, &ip_of(&arrived.bytes()));
        frame[14 + 6] = 0x20; // more fragments
        let c = {
            frame[14 + 10..14 + 12].copy_from_slice(&[0, 0]);
            checksum(&frame[14..34])
        };
        frame[14 + 10..14 + 12].copy_from_slice(&c.to_be_bytes());
        assert_eq!(f.lan(&frame), (XDP_PASS, frame.clone()));
        // An echo request is not an error.
        let echo = Packet::new(ICMP, REMOTE, 0, EXTERNAL, 0).bytes();
        assert_eq!(f.wan(&echo), (XDP_PASS, echo.clone()));
    });
}

#[test]
fn too_big_for_the_lan_link_with_df_is_answered_with_frag_needed_and_its_mtu() {
    with_shares(&SHARES, |f| {
        let set_mtu = |mtu: &str| {
            let status = std::process::Command::new("ip")
                .args(["link", "set", "lan", "mtu", mtu])
                .status()
                .expect("ip");
            assert!(status.success());
        };
        set_mtu("1400");
        f.table.forwarding_changed().expect("generation");
        let mut big = Packet::new(UDP, REMOTE, 40_007, EXTERNAL, 5300);
        big.payload = vec![0x5a; 1472];
        let input = big.bytes();
        assert_eq!(input.len(), 14 + 1500);
        let (action, out) = f.wan(&input);
        assert_eq!(action, XDP_TX, "answered from XDP");
        assert_eq!(out.len(), 14 + 20 + 8 + 28, "headers and the quote only");
        assert_eq!(&out[..6], &input[6..12], "back to the sender's MAC");
        assert_eq!(&out[6..12], &input[..6]);
        let e = parse_error(&out);
        assert_eq!((e.src, e.dst, e.kind, e.code), (EXTERNAL, REMOTE, 3, 4));
        assert_eq!(
            u16::from_be_bytes([e.rest[2], e.rest[3]]),
            1400,
            "the LAN link's MTU"
        );
        assert_eq!(
            e.quote,
            input[14..14 + 28],
            "the header as the remote sent it"
        );
        assert_eq!(f.verdict(DIR_WAN, Verdict::Answered), 1);

        // Without DF the kernel fragments: handed over rewritten.
        big.frags = 0;
        let (action, out) = f.wan(&big.bytes());
        assert_eq!(action, XDP_PASS);
        assert_eq!(parse_verified(&out).dst, LAN_HOST);
        // A packet that fits goes through.
        let small = Packet::new(UDP, REMOTE, 40_008, EXTERNAL, 5300);
        assert_eq!(f.wan(&small.bytes()).0, XDP_REDIRECT);
        set_mtu("1500");
    });
}
