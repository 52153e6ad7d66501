//! portfwd's packet path.
//!
//! * `portfwd_wan`, on the WAN interface: an IPv4 TCP/UDP packet to the box's external address
//!   whose (protocol, destination port) is shared gets its destination rewritten to the share's
//!   internal address and port (DNAT), its TTL decremented, and is redirected to the LAN host.
//! * `portfwd_lan`, on the LAN interface: a packet from a shared internal endpoint that leaves
//!   through the WAN gets its source rewritten to the external address and port and is
//!   redirected to the WAN next hop.
//!
//! * Hairpin (NAT loopback), on the LAN interface: a LAN host's packet to the external address
//!   and a shared port goes to the share's internal host from the box's LAN address and a port
//!   allocated per flow; the replies go back from the external address (`hairpin.rs`).
//!
//! * ICMP (RFC 5508, `icmp.rs`): errors about shared flows are translated both ways, and a
//!   packet through a share too big for the LAN link with DF set is answered with
//!   "fragmentation needed" from XDP.
//!
//! * The exposed host (`exposed.rs`): what no share claims goes to one LAN host per family,
//!   the box's own sockets and the replies to LAN hosts' own connections excepted.
//!
//! * IPv6 pinholes: an IPv6 TCP/UDP packet from the WAN to a LAN host's own address and port
//!   with a pinhole (`PINHOLES`) is forwarded to it unchanged but for the hop limit; the LAN
//!   host's packets from that address and port back to the WAN are forwarded the same way.
//!   Without a pinhole, inbound IPv6 goes to the kernel, except that with `CONFIG_F_IPV6_DENY`
//!   a TCP connection attempt (SYN without ACK) towards the LAN is dropped. Extension headers,
//!   fragments and ICMPv6 always go to the kernel untouched. IPv6 next hops are looked up per
//!   packet (no cache: the cache is keyed by IPv4 address).
//!
//! Everything else (fragments, other protocols, IP options we cannot see past, the box's own
//! traffic, ordinary LAN outbound traffic) is passed to the kernel untouched. A packet is never
//! half rewritten: all checks come before the first write.
//!
//! Next hops come from a cache (`NEXT_HOPS`) filled from `bpf_fib_lookup` on a miss and
//! invalidated by a generation number that the daemon bumps on every rtnetlink route,
//! neighbour, address or link event (a lookup on every packet costs about a third of the
//! forwarding rate). Where the kernel knows better (neighbour not resolved yet, TTL running out,
//! packet too big for the egress MTU, an unreachable route) the inbound packet is handed to the
//! kernel already rewritten, so the kernel forwards it, resolves the neighbour or answers with
//! the right ICMP error, and the first packets of a flow are not lost.
#![no_std]
#![expect(
    clippy::inline_always,
    reason = "bounds checks and packet pointers must be inlined into each caller for the verifier"
)]
#![expect(
    clippy::needless_pass_by_value,
    reason = "#[xdp] entry points take their context by value"
)]
#![no_main]

use aya_ebpf::{
    EbpfContext as _,
    bindings::{
        BPF_FIB_LKUP_RET_FRAG_NEEDED, BPF_FIB_LKUP_RET_NO_NEIGH, BPF_FIB_LKUP_RET_SUCCESS,
        bpf_fib_lookup as FibLookup, xdp_action,
    },
    helpers::{bpf_fib_lookup, bpf_ktime_get_boot_ns, bpf_redirect},
    macros::{map, xdp},
    maps::{Array, DevMap, HashMap, PerCpuArray},
    programs::XdpContext,
};
use network_types::{eth::EthHdr, ip::Ipv4Hdr, tcp::TcpHdr, udp::UdpHdr};
use portfwd_common::{
    CONFIG_F_REMOTE_SPECIFIC, Config, DIR_LAN, DIR_WAN, EGRESS_LAN, EGRESS_WAN, IPPROTO_TCP,
    IPPROTO_UDP, MAX_PINHOLES, MAX_SHARES, NEXT_HOP_SLOTS, NO_DEADLINE, NO_SLOT, NextHop,
    NextHopEntry, NextHopKey, PORT_SLOTS, PinholeKey, PinholeTarget, REVERSE_F_REMOTE_SPECIFIC,
    ReverseKey, ReverseTarget, ShareKey, ShareStats, ShareTarget, VERDICT_SLOTS, Verdict, csum,
    next_hop_slot, port_index,
};
use portfwd_ebpf::ptr_at;

mod exposed;
mod hairpin;
mod icmp;
mod six;

use six::{is_ipv6, lan6, wan6};

/// Shares tied to one remote host.
#[map]
static SHARES: HashMap<ShareKey, ShareTarget> = HashMap::with_max_entries(MAX_SHARES, 0);
/// Shares open to any remote host, one element per (protocol, port); `int_addr == 0` is none.
#[map]
static PORTS: Array<ShareTarget> = Array::with_max_entries(PORT_SLOTS, 0);
#[map]
static REVERSE: HashMap<ReverseKey, ReverseTarget> = HashMap::with_max_entries(MAX_SHARES, 0);
#[map]
static CONFIG: Array<Config> = Array::with_max_entries(1, 0);
#[map]
static FIB_GEN: Array<u32> = Array::with_max_entries(1, 0);
#[map]
static NEXT_HOPS: PerCpuArray<NextHopEntry> = PerCpuArray::with_max_entries(NEXT_HOP_SLOTS, 0);
/// The two interfaces, for `bpf_redirect_map`: the map holds the devices, where
/// `bpf_redirect(ifindex)` looks the device up by index on every packet.
#[map]
static EGRESS: DevMap = DevMap::with_max_entries(2, 0);
#[map]
static SHARE_STATS: PerCpuArray<ShareStats> = PerCpuArray::with_max_entries(MAX_SHARES, 0);
#[map]
static VERDICTS: PerCpuArray<u64> = PerCpuArray::with_max_entries(VERDICT_SLOTS, 0);
#[map]
static PINHOLES: HashMap<PinholeKey, PinholeTarget> = HashMap::with_max_entries(MAX_PINHOLES, 0);
#[map]
static PINHOLE_STATS: PerCpuArray<ShareStats> = PerCpuArray::with_max_entries(MAX_PINHOLES, 0);
/// The layout version the maps were made with (`portfwd_common::LAYOUT_VERSION`), for the
/// daemon that finds them pinned; the programs do not read it.
#[map]
static LAYOUT: Array<u32> = Array::with_max_entries(1, 0);

/// Whether an entry with lease end `deadline` still holds. The clock is read only for leased
/// entries: the owner's shares cost nothing. `CLOCK_BOOTTIME` keeps counting through a
/// suspend, as the lease does.
#[inline(always)]
fn live(deadline: u64) -> bool {
    // SAFETY: a helper without arguments.
    deadline == NO_DEADLINE || unsafe { bpf_ktime_get_boot_ns() } < deadline
}

const ETH_P_IP: u16 = 0x0800;
const ETH_P_IPV6: u16 = 0x86dd;
const AF_INET: u8 = 2;
const AF_INET6: u8 = 10;
/// IPv4 flags+fragment offset: the MF bit and the 13-bit offset.
const IP_MF_OR_OFFSET: u16 = 0x3fff;
const IP_DF: u16 = 0x4000;

/// A parsed IPv4 TCP/UDP packet, every field already bounds-checked.
struct Packet {
    eth: *mut EthHdr,
    ip: *mut Ipv4Hdr,
    /// Source port (bytes 0..2) and destination port (bytes 2..4) of the TCP/UDP header.
    ports: *mut [[u8; 2]; 2],
    /// The TCP or UDP checksum field.
    check: *mut [u8; 2],
    proto: u8,
    /// IPv4 total length (header and payload).
    tot_len: u16,
}

/// What the FIB lookup and forwarding need of an IPv4 packet of any protocol.
#[derive(Clone, Copy)]
#[expect(clippy::struct_field_names, reason = "the IP header of an `Ip`")]
struct Ip {
    eth: *mut EthHdr,
    ip: *mut Ipv4Hdr,
    proto: u8,
}

impl Ip {
    fn src_addr(self) -> [u8; 4] {
        unsafe { (*self.ip).src_addr }
    }
    fn dst_addr(self) -> [u8; 4] {
        unsafe { (*self.ip).dst_addr }
    }
    fn ttl(self) -> u8 {
        unsafe { (*self.ip).ttl }
    }
}

impl Packet {
    fn l3(&self) -> Ip {
        Ip {
            eth: self.eth,
            ip: self.ip,
            proto: self.proto,
        }
    }
    fn src_addr(&self) -> [u8; 4] {
        self.l3().src_addr()
    }
    fn dst_addr(&self) -> [u8; 4] {
        self.l3().dst_addr()
    }
    fn src_port(&self) -> [u8; 2] {
        unsafe { (*self.ports)[0] }
    }
    fn dst_port(&self) -> [u8; 2] {
        unsafe { (*self.ports)[1] }
    }
    fn ttl(&self) -> u8 {
        self.l3().ttl()
    }
    fn dont_fragment(&self) -> bool {
        u16::from_be_bytes(unsafe { (*self.ip).frags }) & IP_DF != 0
    }
}

/// The Ethernet and IPv4 headers of an unfragmented IPv4 packet, and the offset of what comes
/// after the IP header. `None`: not IPv4, a fragment, or a malformed header.
#[inline(always)]
fn ipv4(ctx: &XdpContext) -> Option<(Ip, usize)> {
    let eth: *mut EthHdr = ptr_at(ctx, 0)?;
    if unsafe { (*eth).ether_type } != ETH_P_IP.to_be() {
        return None;
    }
    let ip: *mut Ipv4Hdr = ptr_at(ctx, EthHdr::LEN)?;
    let vihl = unsafe { (*ip).vihl };
    // IHL counts 32-bit words; options (IHL > 5) move the L4 header, which is read at the
    // offset IHL gives.
    let ihl = usize::from(vihl & 0x0f) * 4;
    if vihl >> 4 != 4 || ihl < Ipv4Hdr::LEN {
        return None;
    }
    if u16::from_be_bytes(unsafe { (*ip).frags }) & IP_MF_OR_OFFSET != 0 {
        return None;
    }
    let proto = unsafe { (*ip).proto };
    Some((Ip { eth, ip, proto }, EthHdr::LEN + ihl))
}

/// Parses the headers portfwd rewrites. `None` means "not ours to touch": not IPv4, a fragment,
/// not TCP/UDP, or truncated or malformed in any way that would make a rewrite unsafe.
#[inline(always)]
fn parse(ctx: &XdpContext) -> Option<Packet> {
    let (Ip { eth, ip, proto }, l4) = ipv4(ctx)?;
    let ihl = l4 - EthHdr::LEN;
    // Bounds checks of the L4 header come first and the length checks after them: a length
    // check before would let LLVM prove a bounds check redundant and drop it, in reasoning the
    // verifier does not follow.
    let (ports, check, l4_len) = match proto {
        IPPROTO_TCP => {
            let tcp: *mut TcpHdr = ptr_at(ctx, l4)?;
            // A data offset below 5 words is malformed.
            if unsafe { (*tcp).doff() } < 5 {
                return None;
            }
            (tcp.cast(), unsafe { &raw mut (*tcp).check }, TcpHdr::LEN)
        }
        IPPROTO_UDP => {
            let udp: *mut UdpHdr = ptr_at(ctx, l4)?;
            let len = usize::from(u16::from_be_bytes(unsafe { (*udp).len }));
            (udp.cast(), unsafe { &raw mut (*udp).check }, len)
        }
        _ => return None,
    };
    let tot_len = u16::from_be_bytes(unsafe { (*ip).tot_len });
    // The whole IP packet must be in the frame (trailing Ethernet padding is fine), and the L4
    // header (for UDP, the whole datagram its length field claims) inside the IP packet.
    if ctx.data() + EthHdr::LEN + usize::from(tot_len) > ctx.data_end()
        || usize::from(tot_len) < ihl + l4_len
        || (proto == IPPROTO_UDP && l4_len < UdpHdr::LEN)
    {
        return None;
    }
    Some(Packet {
        eth,
        ip,
        ports,
        check,
        proto,
        tot_len,
    })
}

/// Which end of the packet a rewrite changes.
#[derive(Clone, Copy)]
enum End {
    Src,
    Dst,
}

/// Rewrites one end's address and port, fixing both checksums incrementally (RFC 1624). The L4
/// checksum covers the address through the pseudo-header. A UDP checksum of 0 (none) stays 0.
#[inline(always)]
fn rewrite(pkt: &Packet, end: End, addr: [u8; 4], port: [u8; 2]) {
    unsafe {
        let (addr_field, port_field) = match end {
            End::Src => (&raw mut (*pkt.ip).src_addr, &raw mut (*pkt.ports)[0]),
            End::Dst => (&raw mut (*pkt.ip).dst_addr, &raw mut (*pkt.ports)[1]),
        };
        let old_addr = *addr_field;
        let old_port = *port_field;
        *addr_field = addr;
        *port_field = port;

        let ip_check = u16::from_be_bytes((*pkt.ip).check);
        (*pkt.ip).check = csum::replace32(ip_check, old_addr, addr).to_be_bytes();

        let l4_check = u16::from_be_bytes(*pkt.check);
        *pkt.check = csum::l4_update(
            l4_check,
            pkt.proto == IPPROTO_UDP,
            (old_addr, addr),
            (u16::from_be_bytes(old_port), u16::from_be_bytes(port)),
        )
        .to_be_bytes();
    }
}

/// Decrements the TTL, sets the link-layer addresses of the next hop and redirects; the
/// verdict is `Forwarded`, or `Aborted` if the redirect could not be set up.
#[inline(always)]
fn forward(pkt: Ip, hop: &NextHop, config: &Config) -> (Verdict, u32) {
    unsafe {
        let ttl = (*pkt.ip).ttl;
        let check = u16::from_be_bytes((*pkt.ip).check);
        (*pkt.ip).check = csum::ttl_decrement(check, ttl, pkt.proto).to_be_bytes();
        (*pkt.ip).ttl = ttl - 1;
    }
    redirect(pkt.eth, hop, config)
}

/// Sets the link-layer addresses of the next hop and redirects the frame there.
#[inline(always)]
fn redirect(eth: *mut EthHdr, hop: &NextHop, config: &Config) -> (Verdict, u32) {
    unsafe {
        (*eth).dst_addr = hop.dmac;
        (*eth).src_addr = hop.smac;
    }
    // A failed device-map lookup returns the flags' low bits: XDP_ABORTED.
    let action = if hop.ifindex == config.lan_ifindex {
        EGRESS.redirect(EGRESS_LAN, 0).unwrap_or_else(|a| a)
    } else if hop.ifindex == config.wan_ifindex {
        EGRESS.redirect(EGRESS_WAN, 0).unwrap_or_else(|a| a)
    } else {
        // A route through a third interface: rare, so the slower helper is fine.
        #[expect(
            clippy::cast_possible_truncation,
            clippy::cast_sign_loss,
            reason = "an xdp_action"
        )]
        let action = unsafe { bpf_redirect(hop.ifindex, 0) } as u32;
        action
    };
    if action == xdp_action::XDP_REDIRECT {
        (Verdict::Forwarded, action)
    } else {
        (Verdict::Aborted, action)
    }
}

/// Where a packet can go, per the cache or the kernel's FIB.
///
/// A struct with every field initialised rather than an enum with payloads: LLVM treats the
/// payload of the variants not taken as undefined, may reuse its stack slot for a pointer and
/// compute on it before testing the variant, which the verifier rejects.
#[derive(Clone, Copy)]
struct Hop {
    kind: HopKind,
    /// For `Ready` the whole next hop; for `NoNeighbour` only `ifindex`.
    next: NextHop,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum HopKind {
    /// Neighbour resolved: redirect with these addresses.
    Ready,
    /// Route found through `next.ifindex`, but the neighbour is not resolved yet.
    NoNeighbour,
    /// Local destination, forwarding disabled, unreachable, blackhole or prohibited.
    NotForwardable,
}

impl Hop {
    const NONE: Self = Self {
        kind: HopKind::NotForwardable,
        next: NextHop {
            ifindex: 0,
            generation: 0,
            mtu: 0,
            dmac: [0; 6],
            smac: [0; 6],
            _pad: [0; 2],
        },
    };

    fn ready(next: NextHop) -> Self {
        Self {
            kind: HopKind::Ready,
            next,
        }
    }

    fn no_neighbour(ifindex: u32) -> Self {
        let mut hop = Self::NONE;
        hop.kind = HopKind::NoNeighbour;
        hop.next.ifindex = ifindex;
        hop
    }
}

#[inline(always)]
fn fib_params(pkt: Ip, ingress: u32, src: [u8; 4], dst: [u8; 4], tot_len: u16) -> FibLookup {
    let mut params: FibLookup = unsafe { core::mem::zeroed() };
    params.family = AF_INET;
    params.l4_protocol = pkt.proto;
    params.ifindex = ingress;
    params.__bindgen_anon_1.tot_len = tot_len;
    params.__bindgen_anon_2.tos = unsafe { (*pkt.ip).tos };
    params.__bindgen_anon_3.ipv4_src = u32::from_ne_bytes(src);
    params.__bindgen_anon_4.ipv4_dst = u32::from_ne_bytes(dst);
    params
}

/// The interface the packet arrived on.
#[inline(always)]
fn ingress(ctx: &XdpContext) -> u32 {
    #[expect(
        clippy::cast_possible_truncation,
        reason = "ifindex is 32-bit in xdp_md"
    )]
    let ifindex = ctx.ingress_ifindex() as u32;
    ifindex
}

/// `bpf_fib_lookup` on `params` for the packet in `ctx`: its `BPF_FIB_LKUP_RET_*` code (an
/// error, negative, reads as none of them).
#[inline(always)]
fn fib_lookup(ctx: &XdpContext, params: &mut FibLookup) -> u32 {
    #[expect(
        clippy::cast_possible_truncation,
        clippy::cast_possible_wrap,
        reason = "a 64-byte struct"
    )]
    let size = size_of::<FibLookup>() as i32;
    let ret = unsafe { bpf_fib_lookup(ctx.as_ptr(), core::ptr::from_mut(params), size, 0) };
    #[expect(
        clippy::cast_sign_loss,
        clippy::cast_possible_truncation,
        reason = "a small enum; errors are negative and match none"
    )]
    let code = ret as u32;
    code
}

/// Resolves the next hop towards `dst` for a packet that arrived on `ingress`.
#[inline(always)]
fn next_hop(ctx: &XdpContext, pkt: Ip, src: [u8; 4], dst: [u8; 4]) -> Hop {
    let ingress = ingress(ctx);
    let generation = FIB_GEN.get(0).copied().unwrap_or(0);
    let key = NextHopKey {
        dst_addr: u32::from_ne_bytes(dst),
        ingress_ifindex: ingress,
    };
    let Some(slot) = NEXT_HOPS.get_ptr_mut(next_hop_slot(&key)) else {
        return Hop::NONE;
    };
    // This CPU's own slot: no other writer.
    let cached = unsafe { &mut *slot };
    if cached.key == key && cached.hop.generation == generation {
        return Hop::ready(cached.hop);
    }

    // tot_len 0 skips the kernel's MTU check: we want the route and the neighbour here, and
    // the route MTU from the second lookup below.
    let mut params = fib_params(pkt, ingress, src, dst, 0);
    match fib_lookup(ctx, &mut params) {
        BPF_FIB_LKUP_RET_SUCCESS => {}
        BPF_FIB_LKUP_RET_NO_NEIGH => return Hop::no_neighbour(params.ifindex),
        _ => return Hop::NONE,
    }

    // Ask for the largest packet: the kernel answers FRAG_NEEDED with the route MTU, which the
    // cache keeps so that later packets are checked without a lookup.
    let mut probe = fib_params(pkt, ingress, src, dst, u16::MAX);
    let mtu = if fib_lookup(ctx, &mut probe) == BPF_FIB_LKUP_RET_FRAG_NEEDED {
        unsafe { probe.__bindgen_anon_1.mtu_result }
    } else {
        u16::MAX
    };

    let hop = NextHop {
        ifindex: params.ifindex,
        generation,
        mtu,
        dmac: params.dmac,
        smac: params.smac,
        _pad: [0; 2],
    };
    *cached = NextHopEntry { key, hop };
    Hop::ready(hop)
}

/// Counts a packet of `bytes` in `slot` of a per-share (`SHARE_STATS`) or per-pinhole
/// (`PINHOLE_STATS`) counter map.
#[inline(always)]
fn count(stats: &PerCpuArray<ShareStats>, slot: u32, inbound: bool, bytes: u16) {
    if let Some(stats) = stats.get_ptr_mut(slot) {
        // Per-CPU slot: no other writer.
        unsafe {
            if inbound {
                (*stats).packets_in += 1;
                (*stats).bytes_in += u64::from(bytes);
            } else {
                (*stats).packets_out += 1;
                (*stats).bytes_out += u64::from(bytes);
            }
        }
    }
}

#[inline(always)]
fn finish(dir: u32, verdict: Verdict, action: u32) -> u32 {
    if let Some(counter) = VERDICTS.get_ptr_mut(portfwd_common::verdict_index(dir, verdict)) {
        unsafe { *counter += 1 };
    }
    // The upgrade test's "new program": other instructions, the same maps and behaviour.
    #[cfg(feature = "program-test")]
    if LAYOUT.get(0).is_some_and(|v| *v == u32::MAX) {
        return xdp_action::XDP_PASS;
    }
    action
}

#[xdp]
pub fn portfwd_wan(ctx: XdpContext) -> u32 {
    let (verdict, action) = if is_ipv6(&ctx) { wan6(&ctx) } else { wan(&ctx) };
    finish(DIR_WAN, verdict, action)
}

#[inline(always)]
fn wan(ctx: &XdpContext) -> (Verdict, u32) {
    const UNTOUCHED: (Verdict, u32) = (Verdict::NotMatched, xdp_action::XDP_PASS);
    let Some(config) = CONFIG.get(0) else {
        return UNTOUCHED;
    };
    let Some(pkt) = parse(ctx) else {
        // Not TCP or UDP: perhaps an ICMP error about a share's reply.
        if config.ext_addr == 0 {
            return UNTOUCHED;
        }
        return icmp::from_wan(ctx, config)
            .or_else(|| exposed::echo_towards(ctx, config))
            .unwrap_or(UNTOUCHED);
    };
    let dst = pkt.dst_addr();
    if config.ext_addr == 0 || u32::from_ne_bytes(dst) != config.ext_addr {
        return UNTOUCHED;
    }
    // A lease that ended while no daemon ran to remove it: as if the share were gone.
    let Some(share) = share_for(pkt.proto, pkt.dst_port(), pkt.src_addr(), config)
        .filter(|share| live(share.deadline))
    else {
        // No share: the exposed host's, if one is set and the flow is for it.
        return exposed::towards(ctx, &pkt, config).unwrap_or(UNTOUCHED);
    };

    let int_addr = share.int_addr.to_ne_bytes();
    let hop = if pkt.ttl() > 1 {
        next_hop(ctx, pkt.l3(), pkt.src_addr(), int_addr)
    } else {
        Hop::NONE
    };
    // Too big for the LAN link and not to be fragmented: answered here, quoting the header as
    // the remote sent it (the kernel's error would quote the private address).
    if hop.kind == HopKind::Ready
        && pkt.tot_len > hop.next.mtu
        && pkt.dont_fragment()
        && let Some(answer) = icmp::frag_needed(ctx, &pkt, hop.next.mtu, config)
    {
        return answer;
    }
    rewrite(&pkt, End::Dst, int_addr, share.int_port.to_ne_bytes());
    count(&SHARE_STATS, share.slot, true, pkt.tot_len);
    forward_or_kernel(pkt.l3(), &hop, pkt.tot_len, config)
}

/// Forwards a packet rewritten towards the LAN, or hands it to the kernel rewritten where the
/// kernel knows better: it resolves the neighbour, sends ICMP time exceeded or fragmentation
/// needed, or applies the route's verdict, so the first packets of a flow are not lost.
#[inline(always)]
fn forward_or_kernel(l3: Ip, hop: &Hop, len: u16, config: &Config) -> (Verdict, u32) {
    if hop.kind == HopKind::Ready && len <= hop.next.mtu {
        forward(l3, &hop.next, config)
    } else {
        (Verdict::PassedToKernel, xdp_action::XDP_PASS)
    }
}

#[xdp]
pub fn portfwd_lan(ctx: XdpContext) -> u32 {
    let (verdict, action) = if is_ipv6(&ctx) { lan6(&ctx) } else { lan(&ctx) };
    finish(DIR_LAN, verdict, action)
}

#[inline(always)]
fn lan(ctx: &XdpContext) -> (Verdict, u32) {
    const UNTOUCHED: (Verdict, u32) = (Verdict::NotMatched, xdp_action::XDP_PASS);
    let Some(config) = CONFIG.get(0) else {
        return UNTOUCHED;
    };
    if config.ext_addr == 0 {
        return UNTOUCHED;
    }
    let Some(pkt) = parse(ctx) else {
        // Not TCP or UDP: perhaps a LAN host's ICMP error about a shared flow.
        return icmp::from_lan(ctx, config)
            .or_else(|| exposed::echo_back(ctx, config))
            .unwrap_or(UNTOUCHED);
    };
    if hairpin::enabled(config) {
        let dst = u32::from_ne_bytes(pkt.dst_addr());
        if dst == config.ext_addr {
            // To a share through the external address, or the box's own: the kernel's.
            return hairpin::towards_share(ctx, &pkt, config).unwrap_or(UNTOUCHED);
        }
        if dst == config.lan_addr
            && let Some(done) = hairpin::back_to_client(ctx, &pkt, config)
        {
            return done;
        }
    }
    let src = pkt.src_addr();
    let rkey = ReverseKey {
        int_addr: u32::from_ne_bytes(src),
        int_port: u16::from_ne_bytes(pkt.src_port()),
        proto: pkt.proto,
        _pad: 0,
    };
    let Some(reverse) = (unsafe { REVERSE.get(rkey) }) else {
        // No share's reply: perhaps the exposed host's.
        return exposed::back(ctx, &pkt, config).unwrap_or(UNTOUCHED);
    };
    if !live(reverse.deadline) {
        return UNTOUCHED;
    }
    let slot = share_slot_for_reply(pkt.dst_addr(), reverse, &rkey);
    if slot == NO_SLOT {
        return UNTOUCHED;
    }

    let ext_addr = config.ext_addr.to_ne_bytes();
    let dst = pkt.dst_addr();
    let hop = next_hop(ctx, pkt.l3(), ext_addr, dst);
    // Not leaving through the WAN (LAN to LAN, to the box itself): not a reply to a share.
    if hop.kind == HopKind::NotForwardable || hop.next.ifindex != config.wan_ifindex {
        return UNTOUCHED;
    }
    if hop.kind == HopKind::NoNeighbour {
        // The kernel cannot take this reply rewritten: a packet arriving with one of the box's
        // own addresses as source is a martian. Untouched it would leave with the private
        // source. The WAN neighbour is nearly always resolved (the inbound packet came through
        // it); when it is not, the reply is dropped and the sender retransmits.
        return (Verdict::Dropped, xdp_action::XDP_DROP);
    }
    if pkt.ttl() <= 1 || pkt.tot_len > hop.next.mtu {
        return too_far_or_too_big(&pkt);
    }
    rewrite(&pkt, End::Src, ext_addr, reverse.ext_port.to_ne_bytes());
    count(&SHARE_STATS, slot, false, pkt.tot_len);
    forward(pkt.l3(), &hop.next, config)
}

/// The share a packet from `remote` to the external address and `ext_port` belongs to: the one
/// tied to that remote, if any share is tied to a remote host, else the one of its port.
#[inline(always)]
fn share_for(
    proto: u8,
    ext_port: [u8; 2],
    remote: [u8; 4],
    config: &Config,
) -> Option<ShareTarget> {
    let ext_port = u16::from_ne_bytes(ext_port);
    if config.flags & CONFIG_F_REMOTE_SPECIFIC != 0 {
        let key = ShareKey {
            remote_addr: u32::from_ne_bytes(remote),
            ext_port,
            proto,
            _pad: 0,
        };
        if let Some(share) = unsafe { SHARES.get(key) } {
            return Some(*share);
        }
    }
    let share = PORTS.get(port_index(proto, ext_port)?)?;
    (share.int_addr != 0).then_some(*share)
}

/// The counter slot of the share a reply belongs to, or [`NO_SLOT`].
#[inline(always)]
fn share_slot_for_reply(remote: [u8; 4], reverse: &ReverseTarget, rkey: &ReverseKey) -> u32 {
    if reverse.flags & REVERSE_F_REMOTE_SPECIFIC != 0 {
        let key = ShareKey {
            remote_addr: u32::from_ne_bytes(remote),
            ext_port: reverse.ext_port,
            proto: rkey.proto,
            _pad: 0,
        };
        if let Some(share) = unsafe { SHARES.get(key) } {
            // The same external port may be shared to another host for another remote.
            if share.int_addr == rkey.int_addr && share.int_port == rkey.int_port {
                return share.slot;
            }
        }
    }
    reverse.wildcard_slot
}

/// A reply whose TTL runs out or that exceeds the WAN MTU: the kernel, given it untouched,
/// sends the LAN host the ICMP error it needs (time exceeded, fragmentation needed). A packet
/// the kernel would fragment instead (DF clear) would leave with the private source, so it is
/// dropped.
#[inline(always)]
fn too_far_or_too_big(pkt: &Packet) -> (Verdict, u32) {
    if pkt.ttl() <= 1 || pkt.dont_fragment() {
        (Verdict::PassedToKernel, xdp_action::XDP_PASS)
    } else {
        (Verdict::Dropped, xdp_action::XDP_DROP)
    }
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
