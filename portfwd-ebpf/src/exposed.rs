//! The exposed host: what the internet sends to the box that no share claims goes to one LAN
//! host per address family. See `portfwd_common::exposed` for what is taken and what is left
//! to the kernel, and why.

use aya_ebpf::{
    bindings::bpf_sock_tuple,
    helpers::{bpf_sk_lookup_tcp, bpf_sk_lookup_udp, bpf_sk_release},
    macros::map,
    maps::{Array, LruHashMap, PerCpuArray},
    programs::XdpContext,
};
use network_types::eth::EthHdr;
use portfwd_common::{
    Config, IPPROTO_ICMP, IPPROTO_TCP, IPPROTO_UDP, ShareStats, Verdict, csum,
    exposed::{EXPOSED_SLOT_V4, Exposed, FlowKey, MAX_FLOWS},
};
use portfwd_ebpf::ptr_at;

use crate::{End, HopKind, Ip, Packet, count, forward, forward_or_kernel, ipv4, next_hop, rewrite};

#[map]
static EXPOSED: Array<Exposed> = Array::with_max_entries(1, 0);
#[map]
pub(crate) static EXPOSED_STATS: PerCpuArray<ShareStats> = PerCpuArray::with_max_entries(2, 0);
#[map]
static EXPOSED_FLOWS: LruHashMap<FlowKey, u32> = LruHashMap::with_max_entries(MAX_FLOWS, 0);
#[map]
static OUTBOUND: LruHashMap<FlowKey, u32> = LruHashMap::with_max_entries(MAX_FLOWS, 0);

/// `BPF_F_CURRENT_NETNS`: look sockets up in the namespace of the packet's device.
const CURRENT_NETNS: u64 = u64::MAX;
const TCP_SYN: u8 = 0x02;
const TCP_ACK: u8 = 0x10;
const ICMP_ECHO_REPLY: u8 = 0;
const ICMP_ECHO: u8 = 8;

/// The IPv4 exposed host, if one is set.
#[inline(always)]
fn host4() -> Option<u32> {
    let addr = EXPOSED.get(0)?.addr;
    (addr != 0).then_some(addr)
}

/// Whether `addr` is the IPv6 exposed host.
#[inline(always)]
pub(crate) fn is_host6(addr: [u8; 16]) -> bool {
    EXPOSED
        .get(0)
        .is_some_and(|e| e.addr6 != [0; 16] && e.addr6 == addr)
}

/// The flow of `remote`'s (`remote_port`, or an echo's identifier) with the external address's
/// `port` (network byte order, as in the packet).
#[inline(always)]
fn flow(remote: [u8; 4], remote_port: [u8; 2], port: [u8; 2], proto: u8) -> FlowKey {
    FlowKey {
        remote: u32::from_ne_bytes(remote),
        remote_port: u16::from_ne_bytes(remote_port),
        port: u16::from_ne_bytes(port),
        proto,
        _pad: [0; 3],
    }
}

/// Whether the box itself has a socket for `pkt` (a listener, or a connection of its own).
#[inline(always)]
fn box_socket(ctx: &XdpContext, pkt: &Packet) -> bool {
    let mut tuple: bpf_sock_tuple = unsafe { core::mem::zeroed() };
    tuple.__bindgen_anon_1.ipv4.saddr = u32::from_ne_bytes(pkt.src_addr());
    tuple.__bindgen_anon_1.ipv4.daddr = u32::from_ne_bytes(pkt.dst_addr());
    tuple.__bindgen_anon_1.ipv4.sport = u16::from_ne_bytes(pkt.src_port());
    tuple.__bindgen_anon_1.ipv4.dport = u16::from_ne_bytes(pkt.dst_port());
    #[expect(clippy::cast_possible_truncation, reason = "12 bytes")]
    let size = size_of::<aya_ebpf::bindings::bpf_sock_tuple__bindgen_ty_1__bindgen_ty_1>() as u32;
    let sk = unsafe {
        if pkt.proto == IPPROTO_TCP {
            bpf_sk_lookup_tcp(ctx.ctx.cast(), &raw mut tuple, size, CURRENT_NETNS, 0)
        } else {
            bpf_sk_lookup_udp(ctx.ctx.cast(), &raw mut tuple, size, CURRENT_NETNS, 0)
        }
    };
    if sk.is_null() {
        return false;
    }
    unsafe { bpf_sk_release(sk.cast()) };
    true
}

/// WAN program, a TCP/UDP packet to the external address that no share claims: to the exposed
/// host if it belongs to one of its flows or starts one. `None`: the kernel's.
#[inline(always)]
pub(crate) fn towards(ctx: &XdpContext, pkt: &Packet, config: &Config) -> Option<(Verdict, u32)> {
    let host = host4()?;
    let key = flow(pkt.src_addr(), pkt.src_port(), pkt.dst_port(), pkt.proto);
    let known = unsafe { EXPOSED_FLOWS.get(key) }.is_some_and(|a| *a == host);
    if !known {
        let new = if pkt.proto == IPPROTO_TCP {
            // Only a bare SYN starts a connection: anything else may be the kernel's.
            let flags = unsafe { *pkt.ports.cast::<u8>().add(13) };
            flags & (TCP_SYN | TCP_ACK) == TCP_SYN
        } else {
            // A reply to a LAN host's own UDP flow is the kernel's (it masqueraded it).
            unsafe { OUTBOUND.get(key) }.is_none()
        };
        if !new || box_socket(ctx, pkt) {
            return None;
        }
    }
    let addr = host.to_ne_bytes();
    if pkt.ttl() <= 1 {
        return None;
    }
    let hop = next_hop(ctx, pkt.l3(), pkt.src_addr(), addr);
    if hop.kind == HopKind::NotForwardable || hop.next.ifindex != config.lan_ifindex {
        return None;
    }
    if !known {
        let _ = EXPOSED_FLOWS.insert(key, host, 0);
    }
    rewrite(pkt, End::Dst, addr, pkt.dst_port());
    count(&EXPOSED_STATS, EXPOSED_SLOT_V4, true, pkt.tot_len);
    Some(forward_or_kernel(pkt.l3(), &hop, pkt.tot_len, config))
}

/// LAN program, a TCP/UDP packet that is no share's reply: the exposed host's reply on one of
/// its flows goes out from the external address; a LAN host's own UDP flow is noted (see the
/// module). `None`: the kernel's.
#[inline(always)]
pub(crate) fn back(ctx: &XdpContext, pkt: &Packet, config: &Config) -> Option<(Verdict, u32)> {
    let host = host4()?;
    let key = flow(pkt.dst_addr(), pkt.dst_port(), pkt.src_port(), pkt.proto);
    let src = u32::from_ne_bytes(pkt.src_addr());
    if src != host || unsafe { EXPOSED_FLOWS.get(key) }.is_none_or(|a| *a != host) {
        let dst = u32::from_ne_bytes(pkt.dst_addr());
        // A lookup keeps a known flow fresh in the LRU; only a new one costs an update.
        if pkt.proto == IPPROTO_UDP
            && dst != config.lan_addr
            && dst != config.ext_addr
            && unsafe { OUTBOUND.get(key) }.is_none()
        {
            let _ = OUTBOUND.insert(key, 0, 0);
        }
        return None;
    }
    let ext_addr = config.ext_addr.to_ne_bytes();
    let hop = next_hop(ctx, pkt.l3(), ext_addr, pkt.dst_addr());
    if hop.kind != HopKind::Ready
        || hop.next.ifindex != config.wan_ifindex
        || pkt.ttl() <= 1
        || pkt.tot_len > hop.next.mtu
    {
        return None;
    }
    rewrite(pkt, End::Src, ext_addr, pkt.src_port());
    count(&EXPOSED_STATS, EXPOSED_SLOT_V4, false, pkt.tot_len);
    Some(forward(pkt.l3(), &hop.next, config))
}

/// An ICMP echo request or reply, bounds-checked.
struct Echo {
    outer: Ip,
    kind: u8,
    /// The identifier, as in the packet.
    id: [u8; 2],
    tot_len: u16,
}

#[inline(always)]
fn parse_echo(ctx: &XdpContext) -> Option<Echo> {
    let (outer, at) = ipv4(ctx)?;
    if outer.proto != IPPROTO_ICMP {
        return None;
    }
    let icmp: *const [u8; 8] = ptr_at(ctx, at)?;
    let (kind, code, id) = unsafe { ((*icmp)[0], (*icmp)[1], [(*icmp)[4], (*icmp)[5]]) };
    if code != 0 || (kind != ICMP_ECHO && kind != ICMP_ECHO_REPLY) {
        return None;
    }
    let tot_len = u16::from_be_bytes(unsafe { (*outer.ip).tot_len });
    if ctx.data() + EthHdr::LEN + usize::from(tot_len) > ctx.data_end() {
        return None;
    }
    Some(Echo {
        outer,
        kind,
        id,
        tot_len,
    })
}

/// Rewrites the source or destination address of an ICMP packet (the ICMP checksum has no
/// pseudo-header: only the IP header's changes).
#[inline(always)]
fn readdress(outer: Ip, end: End, addr: [u8; 4]) {
    unsafe {
        let field = match end {
            End::Src => &raw mut (*outer.ip).src_addr,
            End::Dst => &raw mut (*outer.ip).dst_addr,
        };
        let old = *field;
        *field = addr;
        let check = u16::from_be_bytes((*outer.ip).check);
        (*outer.ip).check = csum::replace32(check, old, addr).to_be_bytes();
    }
}

/// WAN program: an ICMP echo request to the external address goes to the exposed host, which
/// answers pings. `None`: not one, or no exposed host.
#[inline(always)]
pub(crate) fn echo_towards(ctx: &XdpContext, config: &Config) -> Option<(Verdict, u32)> {
    let host = host4()?;
    let echo = parse_echo(ctx)?;
    let (src, dst, ttl) = (
        echo.outer.src_addr(),
        echo.outer.dst_addr(),
        echo.outer.ttl(),
    );
    if echo.kind != ICMP_ECHO || u32::from_ne_bytes(dst) != config.ext_addr || ttl <= 1 {
        return None;
    }
    let addr = host.to_ne_bytes();
    let hop = next_hop(ctx, echo.outer, src, addr);
    if hop.kind == HopKind::NotForwardable || hop.next.ifindex != config.lan_ifindex {
        return None;
    }
    let key = flow(src, echo.id, [0; 2], IPPROTO_ICMP);
    let _ = EXPOSED_FLOWS.insert(key, host, 0);
    readdress(echo.outer, End::Dst, addr);
    count(&EXPOSED_STATS, EXPOSED_SLOT_V4, true, echo.tot_len);
    Some(forward_or_kernel(echo.outer, &hop, echo.tot_len, config))
}

/// LAN program: the exposed host's echo reply to a ping it was given goes out from the
/// external address. `None`: not one.
#[inline(always)]
pub(crate) fn echo_back(ctx: &XdpContext, config: &Config) -> Option<(Verdict, u32)> {
    let host = host4()?;
    let echo = parse_echo(ctx)?;
    let (src, dst, ttl) = (
        echo.outer.src_addr(),
        echo.outer.dst_addr(),
        echo.outer.ttl(),
    );
    let key = flow(dst, echo.id, [0; 2], IPPROTO_ICMP);
    if echo.kind != ICMP_ECHO_REPLY
        || u32::from_ne_bytes(src) != host
        || ttl <= 1
        || unsafe { EXPOSED_FLOWS.get(key) }.is_none_or(|a| *a != host)
    {
        return None;
    }
    let ext_addr = config.ext_addr.to_ne_bytes();
    let hop = next_hop(ctx, echo.outer, ext_addr, dst);
    if hop.kind != HopKind::Ready
        || hop.next.ifindex != config.wan_ifindex
        || echo.tot_len > hop.next.mtu
    {
        return None;
    }
    readdress(echo.outer, End::Src, ext_addr);
    count(&EXPOSED_STATS, EXPOSED_SLOT_V4, false, echo.tot_len);
    Some(forward(echo.outer, &hop.next, config))
}
