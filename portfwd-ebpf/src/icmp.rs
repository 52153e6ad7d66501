//! ICMP for shared flows (RFC 5508): errors about a shared flow are translated on their way
//! through, and a packet too big for the LAN link gets its "fragmentation needed" from here.
//!
//! * LAN program: an ICMP error (destination unreachable, time exceeded) from a LAN host about
//!   a packet that came in through a share leaves from the external address, and the header it
//!   quotes says the external address and port the remote host used.
//! * WAN program: an ICMP error from the internet about a share's reply goes to the LAN host,
//!   the quoted header translated back.
//! * WAN program: a packet through a share too big for the LAN link, with DF set, is answered
//!   with "fragmentation needed" and the link's MTU, quoting the header as the remote host sent
//!   it (the kernel's own error would quote the private address and port: a path-MTU black
//!   hole). Without DF, fragmenting stays the kernel's job.
//!
//! Fragmented errors, errors quoting IP options or a fragment other than the first, and errors
//! about flows no share has go to the kernel untouched. The checksums are updated
//! incrementally: the quoted header's, the quoted TCP/UDP checksum where the error carries it,
//! the ICMP checksum over all of it, and the outer header's.

use aya_ebpf::{
    bindings::xdp_action,
    helpers::{bpf_xdp_adjust_head, bpf_xdp_adjust_tail},
    programs::XdpContext,
};
use network_types::{eth::EthHdr, ip::Ipv4Hdr};
use portfwd_common::{Config, IPPROTO_ICMP, IPPROTO_TCP, IPPROTO_UDP, ReverseKey, Verdict, csum};
use portfwd_ebpf::ptr_at;

use crate::{
    ETH_P_IP, HopKind, Ip, NO_SLOT, Packet, REVERSE, SHARE_STATS, count, forward, ipv4, live,
    next_hop, share_for, share_slot_for_reply,
};

const ICMP_DEST_UNREACH: u8 = 3;
const ICMP_FRAG_NEEDED: u8 = 4;
const ICMP_TIME_EXCEEDED: u8 = 11;
/// The ICMP header: type, code, checksum, and four bytes of the rest (for "fragmentation
/// needed", unused and the next-hop MTU).
const ICMP_LEN: usize = 8;
/// What an error quotes of the packet it is about: its IP header and eight bytes after it.
const QUOTE_LEN: usize = Ipv4Hdr::LEN + 8;
/// The new IP and ICMP headers a "fragmentation needed" puts in front of the quote.
const GROW: i32 = 28;
const _: () = assert!(Ipv4Hdr::LEN + ICMP_LEN == 28);

/// An ICMP error about an IPv4 TCP or UDP packet, every field bounds-checked.
struct IcmpError {
    outer: Ip,
    /// The ICMP header.
    icmp: *mut [u8; ICMP_LEN],
    /// The quoted IP header (no options).
    inner: *mut Ipv4Hdr,
    /// The quoted source and destination ports.
    inner_ports: *mut [[u8; 2]; 2],
    /// The quoted TCP or UDP checksum, when the error carries that far.
    inner_check: Option<*mut [u8; 2]>,
    inner_proto: u8,
    /// Outer IP total length.
    tot_len: u16,
}

/// Parses an ICMP error this module translates; `None` for anything else.
#[inline(always)]
fn parse(ctx: &XdpContext) -> Option<IcmpError> {
    let (outer, at) = ipv4(ctx)?;
    if outer.proto != IPPROTO_ICMP {
        return None;
    }
    let ihl = at - EthHdr::LEN;
    let icmp: *mut [u8; ICMP_LEN] = ptr_at(ctx, at)?;
    let kind = unsafe { (*icmp)[0] };
    if kind != ICMP_DEST_UNREACH && kind != ICMP_TIME_EXCEEDED {
        return None;
    }
    let inner: *mut Ipv4Hdr = ptr_at(ctx, at + ICMP_LEN)?;
    let inner_proto = unsafe { (*inner).proto };
    if unsafe { (*inner).vihl } != 0x45
        || (inner_proto != IPPROTO_TCP && inner_proto != IPPROTO_UDP)
        // A later fragment quotes no ports.
        || u16::from_be_bytes(unsafe { (*inner).frags }) & 0x1fff != 0
    {
        return None;
    }
    let l4 = at + ICMP_LEN + Ipv4Hdr::LEN;
    let inner_ports: *mut [[u8; 2]; 2] = ptr_at(ctx, l4)?;
    let check_at = if inner_proto == IPPROTO_TCP { 16 } else { 6 };
    let inner_check = ptr_at::<[u8; 2]>(ctx, l4 + check_at);
    let tot_len = u16::from_be_bytes(unsafe { (*outer.ip).tot_len });
    if ctx.data() + EthHdr::LEN + usize::from(tot_len) > ctx.data_end()
        || usize::from(tot_len) < ihl + ICMP_LEN + QUOTE_LEN
    {
        return None;
    }
    Some(IcmpError {
        outer,
        icmp,
        inner,
        inner_ports,
        inner_check,
        inner_proto,
        tot_len,
    })
}

/// Which end of the quoted packet changes.
#[derive(Clone, Copy)]
enum Quoted {
    Src,
    Dst,
}

/// Rewrites one end of the quoted packet (address and port) and the outer header's address on
/// `outer` side, keeping every checksum right: the quoted IP and TCP/UDP checksums, the ICMP
/// checksum over the quote (ICMP has no pseudo-header) and the outer IP checksum.
#[inline(always)]
fn translate(err: &IcmpError, quoted: Quoted, addr: [u8; 4], port: [u8; 2]) {
    unsafe {
        let (addr_field, port_field, outer_field) = match quoted {
            // The quoted packet went the other way: its source is the outer destination.
            Quoted::Src => (
                &raw mut (*err.inner).src_addr,
                &raw mut (*err.inner_ports)[0],
                &raw mut (*err.outer.ip).dst_addr,
            ),
            Quoted::Dst => (
                &raw mut (*err.inner).dst_addr,
                &raw mut (*err.inner_ports)[1],
                &raw mut (*err.outer.ip).src_addr,
            ),
        };
        let (old_addr, old_port) = (*addr_field, *port_field);
        let mut icmp_check = u16::from_be_bytes([(*err.icmp)[2], (*err.icmp)[3]]);

        // The quoted TCP/UDP checksum (pseudo-header address and port), where it is quoted.
        if let Some(check) = err.inner_check {
            let old = u16::from_be_bytes(*check);
            let new = csum::l4_update(
                old,
                err.inner_proto == IPPROTO_UDP,
                (old_addr, addr),
                (u16::from_be_bytes(old_port), u16::from_be_bytes(port)),
            );
            icmp_check = csum::replace16(icmp_check, old, new);
            *check = new.to_be_bytes();
        }
        // The quoted IP header's checksum.
        let old_inner = u16::from_be_bytes((*err.inner).check);
        let new_inner = csum::replace32(old_inner, old_addr, addr);
        (*err.inner).check = new_inner.to_be_bytes();
        icmp_check = csum::replace16(icmp_check, old_inner, new_inner);
        // The quoted address and port themselves.
        icmp_check = csum::replace32(icmp_check, old_addr, addr);
        icmp_check = csum::replace16(
            icmp_check,
            u16::from_be_bytes(old_port),
            u16::from_be_bytes(port),
        );
        *addr_field = addr;
        *port_field = port;
        [(*err.icmp)[2], (*err.icmp)[3]] = icmp_check.to_be_bytes();

        // The outer header: the LAN host's address becomes the external one or back.
        let old_outer = *outer_field;
        *outer_field = addr;
        let check = u16::from_be_bytes((*err.outer.ip).check);
        (*err.outer.ip).check = csum::replace32(check, old_outer, addr).to_be_bytes();
    }
}

/// LAN program: an ICMP error from a LAN host about a packet that came in through a share, to
/// the remote host, translated. `None`: not one.
#[inline(always)]
pub(crate) fn from_lan(ctx: &XdpContext, config: &Config) -> Option<(Verdict, u32)> {
    let err = parse(ctx)?;
    let (int_addr, int_port) = unsafe { ((*err.inner).dst_addr, (*err.inner_ports)[1]) };
    // The LAN host quotes the packet as it got it: to its own address and port.
    if int_addr != err.outer.src_addr() {
        return None;
    }
    let rkey = ReverseKey {
        int_addr: u32::from_ne_bytes(int_addr),
        int_port: u16::from_ne_bytes(int_port),
        proto: err.inner_proto,
        _pad: 0,
    };
    let reverse = unsafe { REVERSE.get(rkey) }?;
    let remote = unsafe { (*err.inner).src_addr };
    let slot = share_slot_for_reply(remote, reverse, &rkey);
    if !live(reverse.deadline) || slot == NO_SLOT || err.outer.ttl() <= 1 {
        return None;
    }
    let ext_addr = config.ext_addr.to_ne_bytes();
    let hop = next_hop(ctx, err.outer, ext_addr, err.outer.dst_addr());
    if hop.kind != HopKind::Ready
        || hop.next.ifindex != config.wan_ifindex
        || err.tot_len > hop.next.mtu
    {
        return None;
    }
    translate(&err, Quoted::Dst, ext_addr, reverse.ext_port.to_ne_bytes());
    count(&SHARE_STATS, slot, false, err.tot_len);
    Some(forward(err.outer, &hop.next, config))
}

/// WAN program: an ICMP error from the internet about a share's reply, to the LAN host,
/// translated back. `None`: not one.
#[inline(always)]
pub(crate) fn from_wan(ctx: &XdpContext, config: &Config) -> Option<(Verdict, u32)> {
    let err = parse(ctx)?;
    let (src, ext_port, remote) = unsafe {
        (
            (*err.inner).src_addr,
            (*err.inner_ports)[0],
            (*err.inner).dst_addr,
        )
    };
    if u32::from_ne_bytes(src) != config.ext_addr
        || u32::from_ne_bytes(err.outer.dst_addr()) != config.ext_addr
    {
        return None;
    }
    let share = share_for(err.inner_proto, ext_port, remote, config)?;
    if !live(share.deadline) || err.outer.ttl() <= 1 {
        return None;
    }
    let int_addr = share.int_addr.to_ne_bytes();
    let hop = next_hop(ctx, err.outer, err.outer.src_addr(), int_addr);
    if hop.kind != HopKind::Ready
        || hop.next.ifindex != config.lan_ifindex
        || err.tot_len > hop.next.mtu
    {
        return None;
    }
    translate(&err, Quoted::Src, int_addr, share.int_port.to_ne_bytes());
    count(&SHARE_STATS, share.slot, true, err.tot_len);
    Some(forward(err.outer, &hop.next, config))
}

/// The Internet checksum of `N` bytes at `at` in the packet, from scratch.
#[inline(always)]
fn checksum<const N: usize>(ctx: &XdpContext, at: usize) -> Option<u16> {
    let words: *const [[u8; 2]; N] = ptr_at(ctx, at)?;
    let mut sum = 0u32;
    let mut i = 0;
    while i < N {
        sum += u32::from(u16::from_be_bytes(unsafe { (*words)[i] }));
        i += 1;
    }
    Some(!csum::fold(sum))
}

/// WAN program: `pkt`, through a share, is too big for the LAN link's `mtu` and may not be
/// fragmented. Turns the frame into an ICMP "fragmentation needed" (type 3 code 4) to its
/// sender from the external address, quoting its header and first eight bytes as sent, and
/// sends it back out of the WAN (`XDP_TX`). `None` (the frame left as it was, `pkt` still
/// good) for a header with options; otherwise always `Some`, since no packet pointer survives
/// the reshaping.
#[inline(always)]
pub(crate) fn frag_needed(
    ctx: &XdpContext,
    pkt: &Packet,
    mtu: u16,
    config: &Config,
) -> Option<(Verdict, u32)> {
    if unsafe { (*pkt.ip).vihl } != 0x45 {
        return None;
    }
    let sent = unsafe {
        Sent {
            dmac: (*pkt.eth).src_addr,
            smac: (*pkt.eth).dst_addr,
            remote: (*pkt.ip).src_addr,
            tos: (*pkt.ip).tos,
        }
    };
    // Room in front for the new IP and ICMP headers: the old Ethernet header is overwritten,
    // and the sent IP header lands right after the new ICMP header. Whatever the helper
    // answers, the verifier holds every packet pointer stale after it: the frame is answered
    // or dropped from here on (XDP leaves 256 bytes of headroom, so growing does not fail).
    let grown = unsafe { bpf_xdp_adjust_head(ctx.ctx, -GROW) } == 0;
    Some(
        match grown.then(|| build_frag_needed(ctx, &sent, mtu, config)) {
            Some(Some(())) => (Verdict::Answered, xdp_action::XDP_TX),
            _ => (Verdict::Dropped, xdp_action::XDP_DROP),
        },
    )
}

/// What the answer takes of the frame it replaces.
struct Sent {
    dmac: [u8; 6],
    smac: [u8; 6],
    remote: [u8; 4],
    tos: u8,
}

/// Cuts the grown frame to the answer's length and writes its headers.
#[inline(always)]
fn build_frag_needed(ctx: &XdpContext, sent: &Sent, mtu: u16, config: &Config) -> Option<()> {
    let total = EthHdr::LEN + Ipv4Hdr::LEN + ICMP_LEN + QUOTE_LEN;
    #[expect(
        clippy::cast_possible_wrap,
        clippy::cast_possible_truncation,
        reason = "a frame's length"
    )]
    let shrink = total as i32 - (ctx.data_end() - ctx.data()) as i32;
    if unsafe { bpf_xdp_adjust_tail(ctx.ctx, shrink) } != 0 {
        return None;
    }
    let eth: *mut EthHdr = ptr_at(ctx, 0)?;
    let ip: *mut Ipv4Hdr = ptr_at(ctx, EthHdr::LEN)?;
    let icmp: *mut [u8; ICMP_LEN] = ptr_at(ctx, EthHdr::LEN + Ipv4Hdr::LEN)?;
    #[expect(clippy::cast_possible_truncation, reason = "56 bytes")]
    let ip_len = (Ipv4Hdr::LEN + ICMP_LEN + QUOTE_LEN) as u16;
    unsafe {
        (*eth).dst_addr = sent.dmac;
        (*eth).src_addr = sent.smac;
        (*eth).ether_type = ETH_P_IP.to_be();
        (*ip).vihl = 0x45;
        (*ip).tos = sent.tos & 0xfc;
        (*ip).tot_len = ip_len.to_be_bytes();
        (*ip).id = [0, 0];
        (*ip).frags = [0, 0];
        (*ip).ttl = 64;
        (*ip).proto = IPPROTO_ICMP;
        (*ip).check = [0, 0];
        (*ip).src_addr = config.ext_addr.to_ne_bytes();
        (*ip).dst_addr = sent.remote;
        let [hi, lo] = mtu.to_be_bytes();
        *icmp = [ICMP_DEST_UNREACH, ICMP_FRAG_NEEDED, 0, 0, 0, 0, hi, lo];
    }
    let ip_check = checksum::<{ Ipv4Hdr::LEN / size_of::<u16>() }>(ctx, EthHdr::LEN)?;
    let icmp_check =
        checksum::<{ (ICMP_LEN + QUOTE_LEN) / size_of::<u16>() }>(ctx, EthHdr::LEN + Ipv4Hdr::LEN)?;
    let ip: *mut Ipv4Hdr = ptr_at(ctx, EthHdr::LEN)?;
    let icmp: *mut [u8; ICMP_LEN] = ptr_at(ctx, EthHdr::LEN + Ipv4Hdr::LEN)?;
    unsafe {
        (*ip).check = ip_check.to_be_bytes();
        [(*icmp)[2], (*icmp)[3]] = icmp_check.to_be_bytes();
    }
    Some(())
}
