//! The IPv6 path: pinholes to LAN hosts' own addresses, forwarded unchanged but for the hop
//! limit, and the default-deny of inbound connection attempts (see the crate's documentation).

use aya_ebpf::{
    bindings::{
        BPF_FIB_LKUP_RET_NO_NEIGH, BPF_FIB_LKUP_RET_SUCCESS, bpf_fib_lookup as FibLookup,
        xdp_action,
    },
    programs::XdpContext,
};
use network_types::{eth::EthHdr, ip::Ipv6Hdr, tcp::TcpHdr, udp::UdpHdr};
use portfwd_common::{
    CONFIG_F_IPV6_DENY, Config, IPPROTO_TCP, IPPROTO_UDP, NextHop, PinholeKey, Verdict,
    exposed::EXPOSED_SLOT_V6,
};
use portfwd_ebpf::ptr_at;

use crate::{
    AF_INET6, CONFIG, ETH_P_IPV6, PINHOLE_STATS, PINHOLES, count,
    exposed::{EXPOSED_STATS, is_host6},
    fib_lookup, ingress, live, redirect,
};

#[inline(always)]
pub(crate) fn is_ipv6(ctx: &XdpContext) -> bool {
    let Some(eth) = ptr_at::<EthHdr>(ctx, 0) else {
        return false;
    };
    unsafe { (*eth).ether_type == ETH_P_IPV6.to_be() }
}

/// A parsed IPv6 TCP/UDP packet without extension headers, every field bounds-checked.
struct Packet6 {
    eth: *mut EthHdr,
    ip: *mut Ipv6Hdr,
    /// Source port (bytes 0..2) and destination port (bytes 2..4).
    ports: *const [[u8; 2]; 2],
    proto: u8,
    /// A TCP SYN without ACK: a connection attempt.
    syn_only: bool,
    /// IP bytes: the fixed header and the payload.
    len: u16,
}

impl Packet6 {
    fn src(&self) -> [u8; 16] {
        unsafe { (*self.ip).src_addr }
    }
    fn dst(&self) -> [u8; 16] {
        unsafe { (*self.ip).dst_addr }
    }
    fn hop_limit(&self) -> u8 {
        unsafe { (*self.ip).hop_limit }
    }
}

/// Parses an IPv6 packet whose next header is TCP or UDP. Extension headers (fragments
/// among them), ICMPv6, jumbograms and anything truncated are `None`: the kernel's.
#[inline(always)]
fn parse6(ctx: &XdpContext) -> Option<Packet6> {
    let eth: *mut EthHdr = ptr_at(ctx, 0)?;
    let ip: *mut Ipv6Hdr = ptr_at(ctx, EthHdr::LEN)?;
    if unsafe { (*ip).vcf[0] } >> 4 != 6 {
        return None;
    }
    let l4 = EthHdr::LEN + Ipv6Hdr::LEN;
    let proto = unsafe { (*ip).next_hdr };
    let (ports, syn_only, l4_len) = match proto {
        IPPROTO_TCP => {
            let tcp: *mut TcpHdr = ptr_at(ctx, l4)?;
            if unsafe { (*tcp).doff() } < 5 {
                return None;
            }
            let syn_only = unsafe { (*tcp).syn() != 0 && (*tcp).ack() == 0 };
            (tcp.cast_const().cast(), syn_only, TcpHdr::LEN)
        }
        IPPROTO_UDP => {
            let udp: *mut UdpHdr = ptr_at(ctx, l4)?;
            (udp.cast_const().cast(), false, UdpHdr::LEN)
        }
        _ => return None,
    };
    let payload = usize::from(u16::from_be_bytes(unsafe { (*ip).payload_len }));
    if payload < l4_len
        || payload > usize::from(u16::MAX) - Ipv6Hdr::LEN
        || ctx.data() + l4 + payload > ctx.data_end()
    {
        return None;
    }
    #[expect(clippy::cast_possible_truncation, reason = "checked above")]
    let len = (Ipv6Hdr::LEN + payload) as u16;
    Some(Packet6 {
        eth,
        ip,
        ports,
        proto,
        syn_only,
        len,
    })
}

/// The kernel's route for an IPv6 packet arriving on this interface: the return code and the
/// parameters it filled in. `tot_len` 0 skips the MTU check.
#[inline(always)]
fn fib6(ctx: &XdpContext, pkt: &Packet6, tot_len: u16) -> (u32, FibLookup) {
    let mut params: FibLookup = unsafe { core::mem::zeroed() };
    params.family = AF_INET6;
    params.l4_protocol = pkt.proto;
    let ingress = ingress(ctx);
    params.ifindex = ingress;
    params.__bindgen_anon_1.tot_len = tot_len;
    let words = |a: [u8; 16]| {
        let mut w = [0u32; 4];
        let mut i = 0;
        while i < 4 {
            w[i] = u32::from_ne_bytes([a[4 * i], a[4 * i + 1], a[4 * i + 2], a[4 * i + 3]]);
            i += 1;
        }
        w
    };
    params.__bindgen_anon_3.ipv6_src = words(pkt.src());
    params.__bindgen_anon_4.ipv6_dst = words(pkt.dst());
    (fib_lookup(ctx, &mut params), params)
}

/// Forwards an IPv6 packet out of `egress` if the kernel's route goes there, its neighbour is
/// known and the packet fits: hop limit decremented, nothing else changed. Anything else is
/// the kernel's (it sends time exceeded and packet too big, and resolves neighbours).
#[inline(always)]
fn forward6(ctx: &XdpContext, pkt: &Packet6, egress: u32, config: &Config) -> (Verdict, u32) {
    const KERNEL: (Verdict, u32) = (Verdict::PassedToKernel, xdp_action::XDP_PASS);
    if pkt.hop_limit() <= 1 {
        return KERNEL;
    }
    let (ret, params) = fib6(ctx, pkt, pkt.len);
    if ret != BPF_FIB_LKUP_RET_SUCCESS || params.ifindex != egress {
        return KERNEL;
    }
    unsafe { (*pkt.ip).hop_limit -= 1 };
    let hop = NextHop {
        ifindex: params.ifindex,
        generation: 0,
        mtu: 0,
        dmac: params.dmac,
        smac: params.smac,
        _pad: [0; 2],
    };
    redirect(pkt.eth, &hop, config)
}

/// The pinhole of a LAN endpoint, if `peer` (the remote end, address and port) may use it.
#[inline(always)]
fn pinhole(addr: [u8; 16], port: [u8; 2], proto: u8, peer: ([u8; 16], [u8; 2])) -> Option<u32> {
    let key = PinholeKey {
        addr,
        port: u16::from_ne_bytes(port),
        proto,
        _pad: 0,
    };
    let target = unsafe { PINHOLES.get(key) }?;
    if !live(target.deadline) {
        return None;
    }
    let any = target.remote == [0; 16];
    if (!any && target.remote != peer.0)
        || (target.remote_port != 0 && target.remote_port != u16::from_ne_bytes(peer.1))
    {
        return None;
    }
    Some(target.slot)
}

#[inline(always)]
pub(crate) fn wan6(ctx: &XdpContext) -> (Verdict, u32) {
    const UNTOUCHED: (Verdict, u32) = (Verdict::NotMatched, xdp_action::XDP_PASS);
    let Some(pkt) = parse6(ctx) else {
        return UNTOUCHED;
    };
    let Some(config) = CONFIG.get(0) else {
        return UNTOUCHED;
    };
    let (ports, src) = (unsafe { *pkt.ports }, pkt.src());
    // A pinhole, or every port of the exposed host.
    let found = pinhole(pkt.dst(), ports[1], pkt.proto, (src, ports[0]))
        .map(|slot| (&PINHOLE_STATS, slot))
        .or_else(|| is_host6(pkt.dst()).then_some((&EXPOSED_STATS, EXPOSED_SLOT_V6)));
    let Some((stats, slot)) = found else {
        if config.flags & CONFIG_F_IPV6_DENY != 0 && pkt.syn_only {
            let (ret, params) = fib6(ctx, &pkt, 0);
            let towards_lan = (ret == BPF_FIB_LKUP_RET_SUCCESS || ret == BPF_FIB_LKUP_RET_NO_NEIGH)
                && params.ifindex == config.lan_ifindex;
            if towards_lan {
                return (Verdict::Dropped, xdp_action::XDP_DROP);
            }
        }
        return UNTOUCHED;
    };
    count(stats, slot, true, pkt.len);
    forward6(ctx, &pkt, config.lan_ifindex, config)
}

#[inline(always)]
pub(crate) fn lan6(ctx: &XdpContext) -> (Verdict, u32) {
    const UNTOUCHED: (Verdict, u32) = (Verdict::NotMatched, xdp_action::XDP_PASS);
    let Some(pkt) = parse6(ctx) else {
        return UNTOUCHED;
    };
    let Some(config) = CONFIG.get(0) else {
        return UNTOUCHED;
    };
    let ports = unsafe { *pkt.ports };
    let found = pinhole(pkt.src(), ports[0], pkt.proto, (pkt.dst(), ports[1]))
        .map(|slot| (&PINHOLE_STATS, slot))
        .or_else(|| is_host6(pkt.src()).then_some((&EXPOSED_STATS, EXPOSED_SLOT_V6)));
    let Some((stats, slot)) = found else {
        return UNTOUCHED;
    };
    let (verdict, action) = forward6(ctx, &pkt, config.wan_ifindex, config);
    match verdict {
        Verdict::Forwarded => {
            count(stats, slot, false, pkt.len);
            (verdict, action)
        }
        // The redirect failed with the hop limit and the MACs already rewritten: the frame is
        // aborted, as on the WAN, not handed to the kernel half rewritten.
        Verdict::Aborted => (verdict, action),
        // LAN to LAN, to the box itself, or the kernel's to handle: untouched.
        _ => UNTOUCHED,
    }
}
