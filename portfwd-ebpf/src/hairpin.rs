//! Hairpin (NAT loopback) on the LAN program: a LAN host's packet to the external address and
//! a shared port goes to the share's internal endpoint from the box's LAN address and a port
//! allocated per flow, and the internal host's replies go back to it from the external
//! address and port. See `portfwd_common::hairpin` for the flow entries.

use aya_ebpf::{helpers::bpf_get_prandom_u32, macros::map, maps::LruHashMap, programs::XdpContext};
use portfwd_common::{
    CONFIG_F_HAIRPIN, Config, SHARE_F_NO_HAIRPIN, ShareTarget, Verdict,
    hairpin::{
        HAIRPIN_BACK, HAIRPIN_OUT, HAIRPIN_PORT_FIRST, HAIRPIN_PORTS, HairpinEntry, HairpinKey,
        MAX_HAIRPIN,
    },
    port_index,
};

use crate::{End, HopKind, PORTS, Packet, SHARE_STATS, count, forward, live, next_hop, rewrite};

#[map]
static HAIRPIN: LruHashMap<HairpinKey, HairpinEntry> = LruHashMap::with_max_entries(MAX_HAIRPIN, 0);

/// `BPF_NOEXIST`: insert only where there is no entry yet.
const BPF_NOEXIST: u64 = 1;
/// How many allocated ports a new flow tries before it gives up.
const TRIES: u32 = 8;

/// The share of (`proto`, `ext_port`) if hairpin reaches it: open to any remote host (a
/// remote-specific share is not, since no LAN host is that remote), live, and not switched
/// out of hairpin.
#[inline(always)]
fn hairpin_share(proto: u8, ext_port: u16) -> Option<ShareTarget> {
    let share = PORTS.get(port_index(proto, ext_port)?)?;
    (share.int_addr != 0 && share.flags & SHARE_F_NO_HAIRPIN == 0 && live(share.deadline))
        .then_some(*share)
}

/// Whether hairpin is on and can work: switched on, with the box's LAN address known.
#[inline(always)]
pub(crate) fn enabled(config: &Config) -> bool {
    config.flags & CONFIG_F_HAIRPIN != 0 && config.lan_addr != 0
}

/// The port of the client's flow to `share`: its own if it has one whose reply entry still
/// points back at it, else a newly claimed one.
#[inline(always)]
fn flow_port(pkt: &Packet, share: &ShareTarget, out: &HairpinKey) -> Option<u16> {
    let back_key = |port: u16| HairpinKey {
        addr: share.int_addr,
        port: share.int_port,
        port2: port,
        proto: pkt.proto,
        dir: HAIRPIN_BACK,
        _pad: 0,
    };
    let back = HairpinEntry {
        addr: out.addr,
        port: out.port,
        port2: out.port2,
    };
    if let Some(known) = unsafe { HAIRPIN.get(out) } {
        let port = known.port;
        match unsafe { HAIRPIN.get(back_key(port)) } {
            Some(entry) if *entry == back => return Some(port),
            // Forgotten by the LRU (or the share now points elsewhere): claim it again.
            None if HAIRPIN.insert(back_key(port), back, BPF_NOEXIST).is_ok() => {
                return Some(port);
            }
            _ => {}
        }
    }
    // SAFETY: a helper without arguments.
    let start = unsafe { bpf_get_prandom_u32() };
    for i in 0..TRIES {
        let offset = (start.wrapping_add(i) % HAIRPIN_PORTS) as u16;
        let port = (HAIRPIN_PORT_FIRST + offset).to_be();
        if HAIRPIN.insert(back_key(port), back, BPF_NOEXIST).is_ok() {
            let entry = HairpinEntry {
                addr: 0,
                port,
                port2: 0,
            };
            // The reply entry is claimed: this one can only be refused if the map is gone.
            let _ = HAIRPIN.insert(out, entry, 0);
            return Some(port);
        }
    }
    None
}

/// A LAN host's packet to the external address: to the share's internal host, from the box's
/// LAN address. `None`: not a hairpin flow (no share, hairpin off for it, no port free, or the
/// internal host not reachable from XDP), for the kernel to handle as it would.
#[inline(always)]
pub(crate) fn towards_share(
    ctx: &XdpContext,
    pkt: &Packet,
    config: &Config,
) -> Option<(Verdict, u32)> {
    let ext_port = u16::from_ne_bytes(pkt.dst_port());
    let share = hairpin_share(pkt.proto, ext_port)?;
    let lan_addr = config.lan_addr.to_ne_bytes();
    let int_addr = share.int_addr.to_ne_bytes();
    if pkt.ttl() <= 1 {
        return None;
    }
    let hop = next_hop(ctx, pkt.l3(), lan_addr, int_addr);
    if hop.kind != HopKind::Ready
        || hop.next.ifindex != config.lan_ifindex
        || pkt.tot_len > hop.next.mtu
    {
        return None;
    }
    let out = HairpinKey {
        addr: u32::from_ne_bytes(pkt.src_addr()),
        port: u16::from_ne_bytes(pkt.src_port()),
        port2: ext_port,
        proto: pkt.proto,
        dir: HAIRPIN_OUT,
        _pad: 0,
    };
    let port = flow_port(pkt, &share, &out)?;
    rewrite(pkt, End::Dst, int_addr, share.int_port.to_ne_bytes());
    rewrite(pkt, End::Src, lan_addr, port.to_ne_bytes());
    count(&SHARE_STATS, share.slot, true, pkt.tot_len);
    Some(forward(pkt.l3(), &hop.next, config))
}

/// The internal host's reply to the box's LAN address: back to the client, from the external
/// address and port. `None`: not a hairpin flow's (or its share is gone).
#[inline(always)]
pub(crate) fn back_to_client(
    ctx: &XdpContext,
    pkt: &Packet,
    config: &Config,
) -> Option<(Verdict, u32)> {
    let key = HairpinKey {
        addr: u32::from_ne_bytes(pkt.src_addr()),
        port: u16::from_ne_bytes(pkt.src_port()),
        port2: u16::from_ne_bytes(pkt.dst_port()),
        proto: pkt.proto,
        dir: HAIRPIN_BACK,
        _pad: 0,
    };
    let flow = *unsafe { HAIRPIN.get(key) }?;
    // The share must still hold and still point here.
    let share = hairpin_share(pkt.proto, flow.port2)?;
    if share.int_addr != key.addr || share.int_port != key.port || pkt.ttl() <= 1 {
        return None;
    }
    let ext_addr = config.ext_addr.to_ne_bytes();
    let client = flow.addr.to_ne_bytes();
    let hop = next_hop(ctx, pkt.l3(), ext_addr, client);
    if hop.kind != HopKind::Ready
        || hop.next.ifindex != config.lan_ifindex
        || pkt.tot_len > hop.next.mtu
    {
        return None;
    }
    rewrite(pkt, End::Src, ext_addr, flow.port2.to_ne_bytes());
    rewrite(pkt, End::Dst, client, flow.port.to_ne_bytes());
    count(&SHARE_STATS, share.slot, false, pkt.tot_len);
    Some(forward(pkt.l3(), &hop.next, config))
}
