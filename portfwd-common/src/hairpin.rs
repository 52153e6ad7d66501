//! Hairpin (NAT loopback): a LAN host that connects to the external address and a shared port
//! reaches the share's internal host through the box.
//!
//! The LAN program rewrites such a packet's destination to the share's internal endpoint and
//! its source to the box's LAN address and a port it allocates for the flow, so the internal
//! host's replies come back through the box (as `OpenWrt`'s reflection does; the internal host
//! sees the box as its peer). Each flow has two entries in one LRU map, [`MAP_HAIRPIN`]:
//!
//! * [`HAIRPIN_OUT`]: (client address, client port, external port) → the allocated port;
//! * [`HAIRPIN_BACK`]: (internal address, internal port, allocated port) → the client's address
//!   and port and the external port, for the replies.
//!
//! The allocated port comes from [`HAIRPIN_PORT_FIRST`] on, claimed with `BPF_NOEXIST` on its
//! back entry, so two LAN hosts using the same source port get different ones. Every packet
//! looks the share up again: a share deleted, switched off or with `hairpin = false` stops
//! its flows at once, and the LRU forgets them.

/// LRU hash of hairpin flows: [`HairpinKey`] → [`HairpinEntry`].
pub const MAP_HAIRPIN: &str = "HAIRPIN";
/// Most hairpin flow entries (two per flow).
pub const MAX_HAIRPIN: u32 = 65_536;
/// The first port the box allocates for hairpinned flows, above Linux's default ephemeral
/// range (32768-60999) so that it does not meet the box's own connections.
pub const HAIRPIN_PORT_FIRST: u16 = 61_000;
/// How many ports it allocates from (61000-65535).
pub const HAIRPIN_PORTS: u32 = 4_536;
/// [`HairpinKey::dir`] of a client's flow towards a share.
pub const HAIRPIN_OUT: u8 = 0;
/// [`HairpinKey::dir`] of the internal host's replies.
pub const HAIRPIN_BACK: u8 = 1;

/// One direction of a hairpin flow. Addresses and ports in network byte order.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct HairpinKey {
    /// [`HAIRPIN_OUT`]: the client's address; [`HAIRPIN_BACK`]: the internal address.
    pub addr: u32,
    /// [`HAIRPIN_OUT`]: the client's port; [`HAIRPIN_BACK`]: the internal port.
    pub port: u16,
    /// [`HAIRPIN_OUT`]: the external port; [`HAIRPIN_BACK`]: the allocated port.
    pub port2: u16,
    pub proto: u8,
    pub dir: u8,
    pub _pad: u16,
}
const _: () = assert!(size_of::<HairpinKey>() == 12);

/// What a [`HairpinKey`] maps to. Network byte order.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HairpinEntry {
    /// [`HAIRPIN_BACK`]: the client's address (unused for [`HAIRPIN_OUT`]).
    pub addr: u32,
    /// [`HAIRPIN_OUT`]: the allocated port; [`HAIRPIN_BACK`]: the client's port.
    pub port: u16,
    /// [`HAIRPIN_BACK`]: the external port the client connected to.
    pub port2: u16,
}
const _: () = assert!(size_of::<HairpinEntry>() == 8);
