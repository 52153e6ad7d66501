//! Types shared by the XDP programs (`portfwd-ebpf`) and the daemon (`portfwd-user`).
//!
//! Every map key and value is `#[repr(C)]`, `Copy`, free of implicit padding (explicit `_pad`
//! fields, `u32` flags instead of `bool`), and its size is asserted at compile time so that the
//! kernel and userspace can never disagree on a layout. Addresses and ports are kept in network
//! byte order exactly as they sit in the packet, which is what the packet path compares against.
#![no_std]
#![expect(
    clippy::pub_underscore_fields,
    reason = "explicit padding is public so that both sides can build the structs"
)]

pub mod csum;
pub mod exposed;
pub mod hairpin;

#[cfg(test)]
mod tests {
    use super::{
        IPPROTO_TCP, IPPROTO_UDP, NEXT_HOP_SLOTS, NextHopKey, PORT_SLOTS, next_hop_slot, port_index,
    };

    #[test]
    fn port_indexes_cover_both_protocols_apart_and_nothing_else() {
        assert_eq!(port_index(IPPROTO_TCP, 0), Some(0));
        assert_eq!(port_index(IPPROTO_TCP, 80u16.to_be()), Some(80));
        assert_eq!(port_index(IPPROTO_UDP, 80u16.to_be()), Some(65_536 + 80));
        assert_eq!(port_index(IPPROTO_UDP, u16::MAX), Some(PORT_SLOTS - 1));
        assert_eq!(port_index(1, 80u16.to_be()), None);
    }

    #[test]
    fn next_hop_slots_are_in_range_and_spread() {
        let mut used = [false; NEXT_HOP_SLOTS as usize];
        for host in 0..1024u32 {
            let [_, _, hi, lo] = host.to_be_bytes();
            let key = NextHopKey {
                dst_addr: u32::from_be_bytes([10, 0, hi, lo]).to_be(),
                ingress_ifindex: 3,
            };
            used[next_hop_slot(&key) as usize] = true;
        }
        // 1024 consecutive hosts should land in well over half as many distinct slots.
        assert!(used.iter().filter(|u| **u).count() > 800);
    }
}

/// Map of the shares tied to one remote host: [`ShareKey`] → [`ShareTarget`].
pub const MAP_SHARES: &str = "SHARES";
/// Array of the shares open to any remote host, indexed by [`port_index`]: a [`ShareTarget`]
/// whose `int_addr` is `0` is no share. A direct index instead of a hash lookup keeps the hit
/// path's cost flat, and a port range is one element per port.
pub const MAP_PORTS: &str = "PORTS";
/// Elements of [`MAP_PORTS`]: every TCP port, then every UDP port.
pub const PORT_SLOTS: u32 = 2 * 65_536;

/// The [`MAP_PORTS`] index of (`proto`, `ext_port`), with `ext_port` in network byte order as
/// in a [`ShareKey`]; `None` for a protocol other than TCP and UDP.
#[must_use]
pub const fn port_index(proto: u8, ext_port: u16) -> Option<u32> {
    let port = u16::from_be(ext_port) as u32;
    match proto {
        IPPROTO_TCP => Some(port),
        IPPROTO_UDP => Some(65_536 + port),
        _ => None,
    }
}
/// Reverse index for replies: [`ReverseKey`] → [`ReverseTarget`].
pub const MAP_REVERSE: &str = "REVERSE";
/// One-element array holding [`Config`].
pub const MAP_CONFIG: &str = "CONFIG";
/// One-element array holding the next-hop cache generation (`u32`).
pub const MAP_FIB_GEN: &str = "FIB_GEN";
/// Per-CPU direct-mapped cache of next hops: [`next_hop_slot`] → [`NextHopEntry`].
pub const MAP_NEXT_HOPS: &str = "NEXT_HOPS";
/// Device map the programs redirect through: [`EGRESS_LAN`] and [`EGRESS_WAN`].
pub const MAP_EGRESS: &str = "EGRESS";
/// [`MAP_EGRESS`] index of the LAN interface.
pub const EGRESS_LAN: u32 = 0;
/// [`MAP_EGRESS`] index of the WAN interface.
pub const EGRESS_WAN: u32 = 1;
/// Per-CPU array of [`ShareStats`], indexed by [`ShareTarget::slot`].
pub const MAP_SHARE_STATS: &str = "SHARE_STATS";
/// Per-CPU array of `u64` verdict counters, indexed by [`verdict_index`].
pub const MAP_VERDICTS: &str = "VERDICTS";

/// XDP program attached to the WAN interface (inbound DNAT).
pub const PROG_WAN: &str = "portfwd_wan";
/// XDP program attached to the LAN interface (rewrites replies back).
pub const PROG_LAN: &str = "portfwd_lan";

/// Capacity of the share maps, and the number of per-share counter slots.
pub const MAX_SHARES: u32 = 65_536;
/// Slots of the next-hop cache (a power of two).
pub const NEXT_HOP_SLOTS: u32 = 4096;

/// IP protocol numbers the data plane rewrites.
pub const IPPROTO_TCP: u8 = 6;
/// See [`IPPROTO_TCP`].
pub const IPPROTO_UDP: u8 = 17;
/// See [`IPPROTO_TCP`]: ICMP errors about shared flows are translated (RFC 5508).
pub const IPPROTO_ICMP: u8 = 1;

/// Which share a packet belongs to.
///
/// A share may be tied to one remote host (UPnP's `NewRemoteHost`); the packet path looks up the
/// exact remote address first and then the wildcard (`remote_addr == 0`). The daemon keeps
/// wildcard keys in [`MAP_PORTS`] at their [`port_index`], the others in [`MAP_SHARES`].
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ShareKey {
    /// Remote host the share is limited to, network byte order; `0` means any host.
    pub remote_addr: u32,
    /// External port, network byte order.
    pub ext_port: u16,
    /// [`IPPROTO_TCP`] or [`IPPROTO_UDP`].
    pub proto: u8,
    pub _pad: u8,
}
const _: () = assert!(size_of::<ShareKey>() == 8);

/// Where a shared port goes.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ShareTarget {
    /// Internal (LAN) address, network byte order.
    pub int_addr: u32,
    /// Internal port, network byte order.
    pub int_port: u16,
    pub _pad: u16,
    /// Index of this share's counters in [`MAP_SHARE_STATS`].
    pub slot: u32,
    /// `SHARE_F_*` bits.
    pub flags: u32,
    /// When the share's lease ends, in `CLOCK_BOOTTIME` nanoseconds (`bpf_ktime_get_boot_ns`);
    /// [`NO_DEADLINE`] for shares without one. From then on the programs treat the entry as
    /// absent, so a lease ends on time even while no daemon runs to remove it.
    pub deadline: u64,
    #[cfg(feature = "layout-test")]
    /// A field only the layout-change test build has.
    pub test_field: u64,
}
#[cfg(not(feature = "layout-test"))]
const _: () = assert!(size_of::<ShareTarget>() == 24);

/// [`ShareTarget::deadline`] (and the others') of an entry without a lease.
pub const NO_DEADLINE: u64 = 0;

/// The version of the maps' layout: the names, types, key and value types and sizes of every
/// map. The daemon writes it into [`MAP_LAYOUT`] and checks it before it reuses pinned maps:
/// the same version is reused as it is, an older one is migrated into new maps, a newer one
/// refused. Bumped with every change of a map's type, key or value.
#[cfg(not(feature = "layout-test"))]
pub const LAYOUT_VERSION: u32 = 4;
/// See the default build's value; the layout-change test build is one version on.
#[cfg(feature = "layout-test")]
pub const LAYOUT_VERSION: u32 = 5;
/// One-element array holding the [`LAYOUT_VERSION`] the maps were made with (`u32`).
pub const MAP_LAYOUT: &str = "LAYOUT";

/// The internal endpoint a reply comes from.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ReverseKey {
    /// Internal address, network byte order.
    pub int_addr: u32,
    /// Internal port, network byte order.
    pub int_port: u16,
    /// [`IPPROTO_TCP`] or [`IPPROTO_UDP`].
    pub proto: u8,
    pub _pad: u8,
}
const _: () = assert!(size_of::<ReverseKey>() == 8);

/// Set in [`ReverseTarget::flags`] when at least one share of this internal endpoint is tied to
/// a remote host: the reply path must then look up the share of the reply's destination.
pub const REVERSE_F_REMOTE_SPECIFIC: u32 = 1;
/// [`ReverseTarget::wildcard_slot`] when no share of the endpoint accepts any remote host.
pub const NO_SLOT: u32 = u32::MAX;

/// How a reply is rewritten back to the external side.
///
/// The daemon allows an internal endpoint (address, port, protocol) to be shared once, so all
/// shares of one endpoint have the same external port and the reverse mapping is unambiguous.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReverseTarget {
    /// External port, network byte order.
    pub ext_port: u16,
    pub _pad: u16,
    /// Counter slot of the wildcard share of this endpoint, or [`NO_SLOT`].
    pub wildcard_slot: u32,
    /// `REVERSE_F_*` bits.
    pub flags: u32,
    pub _pad2: u32,
    /// The latest lease end of the endpoint's shares ([`ShareTarget::deadline`]);
    /// [`NO_DEADLINE`] if one of them has no lease.
    pub deadline: u64,
}
const _: () = assert!(size_of::<ReverseTarget>() == 24);

/// Set in [`Config::flags`] while at least one share is tied to a remote host: only then does
/// the WAN program look up the exact remote in [`MAP_SHARES`] before the port in
/// [`MAP_PORTS`] (one hash lookup saved per packet otherwise).
pub const CONFIG_F_REMOTE_SPECIFIC: u32 = 1;

/// Data-plane settings, element 0 of [`MAP_CONFIG`].
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Config {
    /// The box's external IPv4 address, network byte order; `0` while the WAN has none, which
    /// makes the WAN program match nothing.
    pub ext_addr: u32,
    /// Interface index of the WAN interface; replies are only rewritten when they leave there.
    pub wan_ifindex: u32,
    /// Interface index of the LAN interface.
    pub lan_ifindex: u32,
    /// `CONFIG_F_*` bits.
    pub flags: u32,
    /// The box's own address on the LAN, network byte order: the source of hairpinned packets.
    pub lan_addr: u32,
}
const _: () = assert!(size_of::<Config>() == 20);

/// [`ShareTarget::flags`]: the share is not reached from the LAN through the external
/// address (its `hairpin = false`).
pub const SHARE_F_NO_HAIRPIN: u32 = 1;

/// Key of the next-hop cache: where a packet arrived and where it is going.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct NextHopKey {
    /// Destination address, network byte order.
    pub dst_addr: u32,
    /// Ingress interface index.
    pub ingress_ifindex: u32,
}
const _: () = assert!(size_of::<NextHopKey>() == 8);

/// A cached `bpf_fib_lookup` result.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NextHop {
    /// Egress interface index.
    pub ifindex: u32,
    /// [`MAP_FIB_GEN`] value the entry was resolved under (see [`NextHopEntry`]).
    pub generation: u32,
    /// Route MTU towards the destination (bytes of IP packet).
    pub mtu: u16,
    /// Destination MAC (the neighbour's).
    pub dmac: [u8; 6],
    /// Source MAC (the egress interface's).
    pub smac: [u8; 6],
    pub _pad: [u8; 2],
}
const _: () = assert!(size_of::<NextHop>() == 24);

/// One slot of the next-hop cache.
///
/// The cache is a per-CPU array indexed by a hash of the key (direct-mapped): the kernel
/// inlines array lookups, where a hash-map lookup is a function call and a hash, and each CPU
/// writes only its own slots, so no reader ever sees a slot half written. A slot holds one
/// destination; a colliding one replaces it. An entry is valid only while its generation
/// equals the value in [`MAP_FIB_GEN`]: the daemon bumps that on every route, neighbour,
/// address or link change it hears over rtnetlink, so a stale next hop is never used after the
/// kernel's view changed.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NextHopEntry {
    pub key: NextHopKey,
    pub hop: NextHop,
}
const _: () = assert!(size_of::<NextHopEntry>() == 32);

/// The cache slot of a key (Fibonacci hashing of both fields).
#[must_use]
pub const fn next_hop_slot(key: &NextHopKey) -> u32 {
    let mixed = key.dst_addr ^ key.ingress_ifindex.wrapping_mul(0x9e37_79b9);
    mixed.wrapping_mul(0x9e37_79b1) >> (32 - NEXT_HOP_SLOTS.trailing_zeros())
}

/// Per-share counters; the map is per-CPU, userspace sums the CPUs.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ShareStats {
    /// Packets rewritten from the WAN towards the LAN host.
    pub packets_in: u64,
    /// IP bytes (header and payload) of those packets.
    pub bytes_in: u64,
    /// Reply packets rewritten from the LAN host towards the WAN.
    pub packets_out: u64,
    /// IP bytes of those packets.
    pub bytes_out: u64,
}
const _: () = assert!(size_of::<ShareStats>() == 32);

/// Map of IPv6 pinholes: [`PinholeKey`] → [`PinholeTarget`].
pub const MAP_PINHOLES: &str = "PINHOLES";
/// Per-CPU counters of pinholes, by [`PinholeTarget::slot`] ([`ShareStats`]).
pub const MAP_PINHOLE_STATS: &str = "PINHOLE_STATS";
/// Most pinholes the kernel map holds.
pub const MAX_PINHOLES: u32 = 16_384;

/// [`Config::flags`]: inbound IPv6 TCP connection attempts to LAN hosts without a pinhole
/// are dropped (otherwise they go to the kernel).
pub const CONFIG_F_IPV6_DENY: u32 = 2;
/// [`Config::flags`]: LAN hosts reach shares through the external address (hairpin, NAT
/// loopback); see [`hairpin`].
pub const CONFIG_F_HAIRPIN: u32 = 4;

/// An IPv6 pinhole: a LAN host's own address, port and protocol, reachable from the WAN as it
/// is (nothing translated).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PinholeKey {
    /// The LAN host's IPv6 address, as in the packet.
    pub addr: [u8; 16],
    /// Its port, network byte order.
    pub port: u16,
    pub proto: u8,
    pub _pad: u8,
}
const _: () = assert!(size_of::<PinholeKey>() == 20);

/// Who may use a pinhole, and where it is counted.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PinholeTarget {
    /// The one remote address allowed in; all zeros: any.
    pub remote: [u8; 16],
    /// The one remote port allowed in, network byte order; 0: any.
    pub remote_port: u16,
    pub _pad: u16,
    /// Index of this pinhole's counters in [`MAP_PINHOLE_STATS`].
    pub slot: u32,
    /// When the pinhole's lease ends ([`ShareTarget::deadline`]).
    pub deadline: u64,
}
const _: () = assert!(size_of::<PinholeTarget>() == 32);

/// Direction index for [`verdict_index`]: the WAN program.
pub const DIR_WAN: u32 = 0;
/// Direction index for [`verdict_index`]: the LAN program.
pub const DIR_LAN: u32 = 1;

/// What the packet path did with a packet. Counted per direction in [`MAP_VERDICTS`].
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Rewritten and redirected to the other interface (`XDP_REDIRECT`).
    Forwarded = 0,
    /// Rewritten and handed to the kernel to forward, because the neighbour was not resolved,
    /// the TTL ran out, the packet was too big for the egress MTU or the route said so.
    PassedToKernel = 1,
    /// Dropped (`XDP_DROP`).
    Dropped = 2,
    /// Internal error (`XDP_ABORTED`).
    Aborted = 3,
    /// No share matched; passed to the kernel untouched.
    NotMatched = 4,
    /// Answered from XDP (`XDP_TX`): an ICMP "fragmentation needed" built for a packet too big
    /// for the LAN link, sent back to the remote host.
    Answered = 5,
}

impl Verdict {
    /// All verdicts, in index order.
    pub const ALL: [Self; 6] = [
        Self::Forwarded,
        Self::PassedToKernel,
        Self::Dropped,
        Self::Aborted,
        Self::NotMatched,
        Self::Answered,
    ];

    /// The label the daemon exports for this verdict.
    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            Self::Forwarded => "forwarded",
            Self::PassedToKernel => "passed_to_kernel",
            Self::Dropped => "dropped",
            Self::Aborted => "aborted",
            Self::NotMatched => "not_matched",
            Self::Answered => "answered",
        }
    }
}

/// Number of [`Verdict`]s.
#[expect(clippy::cast_possible_truncation, reason = "six verdicts")]
pub const VERDICT_COUNT: u32 = Verdict::ALL.len() as u32;
/// Length of [`MAP_VERDICTS`].
pub const VERDICT_SLOTS: u32 = 2 * VERDICT_COUNT;

/// Index of a (direction, verdict) counter in [`MAP_VERDICTS`].
#[must_use]
pub const fn verdict_index(dir: u32, verdict: Verdict) -> u32 {
    dir * VERDICT_COUNT + verdict as u32
}

#[cfg(feature = "user")]
mod pod {
    use super::{
        Config, NextHop, NextHopEntry, NextHopKey, PinholeKey, PinholeTarget, ReverseKey,
        ReverseTarget, ShareKey, ShareStats, ShareTarget,
    };

    // SAFETY: all of these are #[repr(C)], Copy, made only of integers and byte arrays, and
    // have no implicit padding (asserted by the size checks above), so every bit pattern is a
    // valid value and none of them carries uninitialised bytes.
    unsafe impl aya::Pod for ShareKey {}
    unsafe impl aya::Pod for ShareTarget {}
    unsafe impl aya::Pod for ReverseKey {}
    unsafe impl aya::Pod for ReverseTarget {}
    unsafe impl aya::Pod for Config {}
    unsafe impl aya::Pod for NextHopKey {}
    unsafe impl aya::Pod for NextHop {}
    unsafe impl aya::Pod for NextHopEntry {}
    unsafe impl aya::Pod for ShareStats {}
    unsafe impl aya::Pod for PinholeKey {}
    unsafe impl aya::Pod for PinholeTarget {}
    unsafe impl aya::Pod for super::hairpin::HairpinKey {}
    unsafe impl aya::Pod for super::exposed::Exposed {}
    unsafe impl aya::Pod for super::exposed::FlowKey {}
    unsafe impl aya::Pod for super::hairpin::HairpinEntry {}
}
