//! The frames the packet tests craft and the parser that checks what the programs return
//! (checksums recomputed from scratch).

use std::net::{Ipv4Addr, Ipv6Addr};

use portfwd_tests::checksum;

pub const XDP_PASS: u32 = 2;
pub const XDP_REDIRECT: u32 = 4;
pub const TCP: u8 = 6;
pub const UDP: u8 = 17;
pub const ICMP: u8 = 1;

/// A crafted Ethernet/IPv4 frame.
#[derive(Clone)]
pub struct Packet {
    pub dmac: [u8; 6],
    pub smac: [u8; 6],
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
    pub proto: u8,
    pub sport: u16,
    pub dport: u16,
    pub ttl: u8,
    /// IPv4 options (a multiple of 4 bytes).
    pub options: Vec<u8>,
    /// Flags and fragment offset field.
    pub frags: u16,
    pub payload: Vec<u8>,
    /// UDP only: send without a checksum (0).
    pub udp_no_checksum: bool,
    /// TCP only: the flags byte (SYN by default).
    pub tcp_flags: u8,
}

impl Packet {
    pub fn new(proto: u8, src: Ipv4Addr, sport: u16, dst: Ipv4Addr, dport: u16) -> Self {
        Self {
            dmac: [2, 0, 0, 0, 0, 1],
            smac: [2, 0, 0, 0, 0, 2],
            src,
            dst,
            proto,
            sport,
            dport,
            ttl: 64,
            options: Vec::new(),
            frags: 0x4000,
            payload: b"portfwd packet test".to_vec(),
            udp_no_checksum: false,
            tcp_flags: 0x02,
        }
    }

    pub fn l4(&self) -> Vec<u8> {
        let mut l4 = Vec::new();
        l4.extend_from_slice(&self.sport.to_be_bytes());
        l4.extend_from_slice(&self.dport.to_be_bytes());
        match self.proto {
            TCP => {
                l4.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 0, 0x50, self.tcp_flags, 0xff, 0xff]);
                l4.extend_from_slice(&[0, 0, 0, 0]); // checksum, urgent pointer
            }
            UDP => {
                let len = u16::try_from(8 + self.payload.len()).expect("small");
                l4.extend_from_slice(&len.to_be_bytes());
                l4.extend_from_slice(&[0, 0]);
            }
            _ => l4.extend_from_slice(&[8, 0, 0, 0]), // an ICMP echo header, sort of
        }
        l4.extend_from_slice(&self.payload);
        let check_at = match self.proto {
            TCP => 16,
            UDP => 6,
            _ => return l4,
        };
        if !(self.proto == UDP && self.udp_no_checksum) {
            let c = l4_checksum(self.src, self.dst, self.proto, &l4);
            let c = if self.proto == UDP && c == 0 {
                0xffff
            } else {
                c
            };
            l4[check_at..check_at + 2].copy_from_slice(&c.to_be_bytes());
        }
        l4
    }

    pub fn bytes(&self) -> Vec<u8> {
        let l4 = self.l4();
        let ihl = 20 + self.options.len();
        let mut ip = vec![0u8; ihl];
        ip[0] = 0x40 | u8::try_from(ihl / 4).expect("ihl");
        let tot = u16::try_from(ihl + l4.len()).expect("small");
        ip[2..4].copy_from_slice(&tot.to_be_bytes());
        ip[4..6].copy_from_slice(&0x1234u16.to_be_bytes());
        ip[6..8].copy_from_slice(&self.frags.to_be_bytes());
        ip[8] = self.ttl;
        ip[9] = self.proto;
        ip[12..16].copy_from_slice(&self.src.octets());
        ip[16..20].copy_from_slice(&self.dst.octets());
        ip[20..].copy_from_slice(&self.options);
        let c = checksum(&ip);
        ip[10..12].copy_from_slice(&c.to_be_bytes());
        let mut frame = Vec::new();
        frame.extend_from_slice(&self.dmac);
        frame.extend_from_slice(&self.smac);
        frame.extend_from_slice(&0x0800u16.to_be_bytes());
        frame.extend_from_slice(&ip);
        frame.extend_from_slice(&l4);
        frame
    }
}

/// The TCP/UDP checksum over the pseudo-header and `segment` (whose checksum field is taken as
/// zero).
pub fn l4_checksum(src: Ipv4Addr, dst: Ipv4Addr, proto: u8, segment: &[u8]) -> u16 {
    let mut data = Vec::new();
    data.extend_from_slice(&src.octets());
    data.extend_from_slice(&dst.octets());
    data.push(0);
    data.push(proto);
    data.extend_from_slice(&u16::try_from(segment.len()).expect("small").to_be_bytes());
    let mut seg = segment.to_vec();
    let at = if proto == TCP { 16 } else { 6 };
    seg[at] = 0;
    seg[at + 1] = 0;
    data.extend_from_slice(&seg);
    checksum(&data)
}

/// What a frame says, with its checksums verified from scratch.
#[derive(Debug, PartialEq, Eq)]
pub struct Parsed {
    pub dmac: [u8; 6],
    pub smac: [u8; 6],
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
    pub sport: u16,
    pub dport: u16,
    pub ttl: u8,
    pub l4_check: u16,
}

pub fn parse_verified(frame: &[u8]) -> Parsed {
    let ip = &frame[14..];
    let ihl = usize::from(ip[0] & 0x0f) * 4;
    let tot = usize::from(u16::from_be_bytes([ip[2], ip[3]]));
    assert_eq!(checksum(&ip[..ihl]), 0, "IPv4 header checksum is wrong");
    let (src, dst) = (
        Ipv4Addr::new(ip[12], ip[13], ip[14], ip[15]),
        Ipv4Addr::new(ip[16], ip[17], ip[18], ip[19]),
    );
    let l4 = &ip[ihl..tot];
    let proto = ip[9];
    let at = if proto == TCP { 16 } else { 6 };
    let l4_check = u16::from_be_bytes([l4[at], l4[at + 1]]);
    if !(proto == UDP && l4_check == 0) {
        let expected = l4_checksum(src, dst, proto, l4);
        let expected = if proto == UDP && expected == 0 {
            0xffff
        } else {
            expected
        };
        assert_eq!(l4_check, expected, "L4 checksum is wrong");
    }
    let mut dmac = [0; 6];
    let mut smac = [0; 6];
    dmac.copy_from_slice(&frame[..6]);
    smac.copy_from_slice(&frame[6..12]);
    Parsed {
        dmac,
        smac,
        src,
        dst,
        sport: u16::from_be_bytes([l4[0], l4[1]]),
        dport: u16::from_be_bytes([l4[2], l4[3]]),
        ttl: ip[8],
        l4_check,
    }
}

/// A crafted Ethernet/IPv6 frame: `next` is the next header (TCP, UDP, an extension header
/// or ICMPv6), then a TCP or UDP header with a correct checksum.
pub struct Packet6 {
    pub src: Ipv6Addr,
    pub dst: Ipv6Addr,
    pub next: u8,
    pub proto: u8,
    pub sport: u16,
    pub dport: u16,
    pub hop_limit: u8,
    /// TCP flags byte.
    pub flags: u8,
}

pub const SYN: u8 = 0x02;
pub const ACK: u8 = 0x10;

impl Packet6 {
    pub fn new(proto: u8, src: Ipv6Addr, sport: u16, dst: Ipv6Addr, dport: u16) -> Self {
        Self {
            src,
            dst,
            next: proto,
            proto,
            sport,
            dport,
            hop_limit: 64,
            flags: SYN,
        }
    }

    pub fn bytes(&self) -> Vec<u8> {
        let payload = b"portfwd ipv6 test";
        let mut l4 = Vec::new();
        l4.extend_from_slice(&self.sport.to_be_bytes());
        l4.extend_from_slice(&self.dport.to_be_bytes());
        if self.proto == TCP {
            l4.extend_from_slice(&[
                0, 0, 0, 1, 0, 0, 0, 0, 0x50, self.flags, 0xff, 0xff, 0, 0, 0, 0,
            ]);
        } else {
            let len = u16::try_from(8 + payload.len()).expect("small");
            l4.extend_from_slice(&len.to_be_bytes());
            l4.extend_from_slice(&[0, 0]);
        }
        l4.extend_from_slice(payload);
        let mut pseudo = Vec::new();
        pseudo.extend_from_slice(&self.src.octets());
        pseudo.extend_from_slice(&self.dst.octets());
        pseudo.extend_from_slice(&u32::try_from(l4.len()).expect("small").to_be_bytes());
        pseudo.extend_from_slice(&[0, 0, 0, self.proto]);
        pseudo.extend_from_slice(&l4);
        let at = if self.proto == TCP { 16 } else { 6 };
        l4[at..at + 2].copy_from_slice(&checksum(&pseudo).to_be_bytes());
        let mut body = Vec::new();
        if self.next != self.proto {
            // One 8-byte extension header (or what an ICMPv6 parser would read) in front.
            body.extend_from_slice(&[self.proto, 0, 0, 0, 0, 0, 0, 0]);
        }
        body.extend_from_slice(&l4);
        let mut frame = vec![2, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 2, 0x86, 0xdd];
        frame.extend_from_slice(&[0x60, 0, 0, 0]);
        frame.extend_from_slice(&u16::try_from(body.len()).expect("small").to_be_bytes());
        frame.extend_from_slice(&[self.next, self.hop_limit]);
        frame.extend_from_slice(&self.src.octets());
        frame.extend_from_slice(&self.dst.octets());
        frame.extend_from_slice(&body);
        frame
    }
}
