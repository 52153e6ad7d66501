//! The exposed host (a "DMZ"): one LAN host per address family gets what the internet sends
//! to the box that no share claims.
//!
//! IPv4 (the WAN program, on a share miss): a new TCP connection (SYN without ACK), a UDP
//! datagram or an ICMP echo request to the external address goes to the exposed host, its
//! destination address rewritten (ports stay), unless the box itself has a socket for it
//! (`bpf_sk_lookup_*`: its own services stay its own). The flow is remembered in
//! [`MAP_EXPOSED_FLOWS`], so its later packets and the exposed host's replies (rewritten back
//! by the LAN program) follow it.
//!
//! Replies to the connections LAN hosts open to the internet must never be taken for new
//! flows: the kernel masquerades those, and only its connection tracking knows them. The
//! `bpf_xdp_ct_lookup` kfunc would ask it, but the loader portfwd uses (aya 0.14) cannot
//! relocate kfunc calls. So the packet path keeps to what it can tell for sure: a TCP packet
//! other than a bare SYN is never a new inbound connection, so it goes to the kernel unless
//! it belongs to a known exposed flow; for UDP, the LAN program notes every outbound UDP flow
//! of the LAN hosts while an exposed host is set ([`MAP_OUTBOUND`]), and a datagram coming
//! back on one of those goes to the kernel. (A masquerade that had to change a LAN host's
//! source port is not recognised; the datagram then reaches the exposed host.)
//!
//! IPv6 (nothing to translate): every port of the exposed host's address is open, as a
//! wildcard pinhole.

/// One-element array holding [`Exposed`].
pub const MAP_EXPOSED: &str = "EXPOSED";
/// LRU hash of exposed-host flows: [`FlowKey`] → the exposed host's IPv4 address then (`u32`).
pub const MAP_EXPOSED_FLOWS: &str = "EXPOSED_FLOWS";
/// LRU hash of the LAN hosts' outbound UDP flows while an exposed host is set: [`FlowKey`] →
/// `u32` (unused).
pub const MAP_OUTBOUND: &str = "OUTBOUND";
/// Per-CPU counters of the exposed hosts (`ShareStats`): [`EXPOSED_SLOT_V4`], [`EXPOSED_SLOT_V6`].
pub const MAP_EXPOSED_STATS: &str = "EXPOSED_STATS";
/// [`MAP_EXPOSED_STATS`] slot of the IPv4 exposed host.
pub const EXPOSED_SLOT_V4: u32 = 0;
/// [`MAP_EXPOSED_STATS`] slot of the IPv6 exposed host.
pub const EXPOSED_SLOT_V6: u32 = 1;
/// Entries of each flow map.
pub const MAX_FLOWS: u32 = 65_536;

/// The exposed hosts; zero: none.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Exposed {
    /// IPv4 address, network byte order.
    pub addr: u32,
    pub _pad: u32,
    /// IPv6 address.
    pub addr6: [u8; 16],
}
const _: () = assert!(size_of::<Exposed>() == 24);

/// A flow between a remote host and the external address, as seen from the WAN: the remote's
/// address and port (an ICMP echo's identifier), the port on the box's side (0 for ICMP) and
/// the protocol. Network byte order.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct FlowKey {
    pub remote: u32,
    pub remote_port: u16,
    pub port: u16,
    pub proto: u8,
    pub _pad: [u8; 3],
}
const _: () = assert!(size_of::<FlowKey>() == 12);
