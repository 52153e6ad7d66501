//! What the control plane needs to know of the box itself: its neighbours (device identity by
//! MAC), the ports it listens on (a share there would hide the box's own service), and its WAN
//! link and counters. [`SystemHost`] asks the kernel; tests bring their own [`Host`].

use std::{
    net::{Ipv4Addr, Ipv6Addr},
    sync::atomic::{AtomicBool, Ordering},
};

use crate::share::Proto;

/// What the control point needs to know of the box beyond the share table. The system one
/// reads `/proc` and `/sys`; tests bring their own.
pub trait Host: Send + Sync {
    /// The MAC address the neighbour table has for `addr`.
    fn mac_of(&self, addr: Ipv4Addr) -> Option<[u8; 6]> {
        self.neighbours()
            .into_iter()
            .find_map(|(a, mac)| (a == addr).then_some(mac))
    }
    /// The IPv4 neighbours with a known MAC address.
    fn neighbours(&self) -> Vec<(Ipv4Addr, [u8; 6])>;
    /// The MAC address the IPv6 neighbour table has for `addr`.
    fn mac_of6(&self, addr: Ipv6Addr) -> Option<[u8; 6]> {
        self.neighbours6()
            .into_iter()
            .find_map(|(a, mac)| (a == addr).then_some(mac))
    }
    /// The IPv6 neighbours with a known MAC address.
    fn neighbours6(&self) -> Vec<(Ipv6Addr, [u8; 6])>;
    /// Makes the kernel solicit the LAN neighbour `addr` (a neighbour solicitation), whose
    /// answer shows in [`Host::mac_of6`] shortly after. Returns at once.
    fn probe6(&self, addr: Ipv6Addr) {
        let _ = addr;
    }
    /// The ports the box itself listens on, each with its local address (`None`: every
    /// address).
    fn listening(&self, proto: Proto) -> Vec<(Option<Ipv4Addr>, u16)>;
    /// Whether the box itself listens on `port` at `external` or every address (see
    /// [`listens`]): the question for one port, which the system host answers without
    /// listing every socket.
    fn listens_on(&self, proto: Proto, port: u16, external: Option<Ipv4Addr>) -> bool {
        listens(&self.listening(proto), port, external)
    }
    /// Whether the WAN link is up.
    fn wan_up(&self) -> bool;
    /// The WAN interface's counters.
    fn wan_stats(&self) -> WanStats;
}

/// Counters of the WAN interface, and its speed in bit/s (0 if unknown).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WanStats {
    pub tx_bytes: u64,
    pub rx_bytes: u64,
    pub tx_packets: u64,
    pub rx_packets: u64,
    pub bit_rate: u64,
}

/// Whether `port` is among `listening` on the external address or every address: a share
/// there would hide the box's own service (UPnP refuses it; so does the API).
#[must_use]
pub fn listens(
    listening: &[(Option<Ipv4Addr>, u16)],
    port: u16,
    external: Option<Ipv4Addr>,
) -> bool {
    listening
        .iter()
        .any(|&(addr, p)| p == port && (addr.is_none() || addr == external))
}

/// The host as the kernel tells it. The questions a request asks are answered at a cost that
/// does not grow with the box's connections: one neighbour by a netlink get (not a table
/// read), listening sockets through `NETLINK_SOCK_DIAG` asking for listeners only (the kernel
/// then never walks the established hash, which `/proc/net/tcp` does). Whole neighbour tables
/// (for the device list) come from rtnetlink dumps; link state and
/// counters from `/sys/class/net/WAN/`.
pub struct SystemHost {
    wan: String,
    /// The WAN interface, where packets for a share arrive.
    wan_ifindex: u32,
    /// The LAN interface, where clients' neighbour entries are.
    lan_ifindex: u32,
    /// Per protocol (TCP, UDP): a `sock_diag` dump has worked, so the kernel has the protocol's
    /// socket monitoring and an exact lookup's `ENOENT` means "no socket".
    diag: [AtomicBool; 2],
}

impl SystemHost {
    #[must_use]
    pub fn new(wan: String, wan_ifindex: u32, lan_ifindex: u32) -> Self {
        Self {
            wan,
            wan_ifindex,
            lan_ifindex,
            diag: [AtomicBool::new(false), AtomicBool::new(false)],
        }
    }

    fn diag(&self, proto: Proto) -> &AtomicBool {
        match proto {
            Proto::Tcp => &self.diag[0],
            Proto::Udp => &self.diag[1],
        }
    }
}

impl Host for SystemHost {
    fn mac_of(&self, addr: Ipv4Addr) -> Option<[u8; 6]> {
        crate::sockdiag::neighbour(addr.into(), self.lan_ifindex).unwrap_or_else(|err| {
            tracing::warn!("looking up the neighbour {addr}: {err}");
            None
        })
    }

    fn mac_of6(&self, addr: Ipv6Addr) -> Option<[u8; 6]> {
        crate::sockdiag::neighbour(addr.into(), self.lan_ifindex).unwrap_or_else(|err| {
            tracing::warn!("looking up the neighbour {addr}: {err}");
            None
        })
    }

    /// One empty UDP datagram to the discard port, sent out of the LAN interface with a hop
    /// limit of 1: to send it the kernel resolves the neighbour, and the datagram itself goes
    /// no further than the LAN.
    fn probe6(&self, addr: Ipv6Addr) {
        if let Err(err) = probe6(addr, self.lan_ifindex) {
            tracing::debug!("soliciting the neighbour {addr}: {err}");
        }
    }

    fn neighbours6(&self) -> Vec<(Ipv6Addr, [u8; 6])> {
        crate::netlink::neighbours6().unwrap_or_else(|err| {
            tracing::warn!("reading the IPv6 neighbour table: {err}");
            Vec::new()
        })
    }

    fn neighbours(&self) -> Vec<(Ipv4Addr, [u8; 6])> {
        crate::netlink::neighbours4().unwrap_or_else(|err| {
            tracing::warn!("reading the IPv4 neighbour table: {err}");
            Vec::new()
        })
    }

    fn listening(&self, proto: Proto) -> Vec<(Option<Ipv4Addr>, u16)> {
        match crate::sockdiag::listening(proto) {
            Ok(found) => {
                self.diag(proto).store(true, Ordering::Relaxed);
                found
            }
            Err(err) => {
                // A kernel without socket monitoring (INET_DIAG, or UDP's): /proc has the same
                // answer, at the cost of walking every socket.
                tracing::debug!("sock_diag: {err}; reading /proc/net instead");
                crate::netinfo::listening_ports(proto)
            }
        }
    }

    /// The kernel's own lookup for a packet arriving on the WAN for `external:port` (see
    /// [`crate::sockdiag::receives`]): one hash lookup, where [`Host::listening`] walks every
    /// bucket of the listening hash (64 Ki of them here, most of a UPnP request's kernel time).
    /// The same answer, except that a socket bound to another interface than the WAN
    /// (`SO_BINDTODEVICE`) does not count: no packet from the WAN reaches it.
    fn listens_on(&self, proto: Proto, port: u16, external: Option<Ipv4Addr>) -> bool {
        if self.diag(proto).load(Ordering::Relaxed) {
            let addr = external.unwrap_or(Ipv4Addr::UNSPECIFIED);
            match crate::sockdiag::receives(proto, addr, port, self.wan_ifindex) {
                Ok(found) => return found,
                Err(err) => tracing::debug!("sock_diag lookup: {err}; listing sockets instead"),
            }
        }
        listens(&self.listening(proto), port, external)
    }

    fn wan_up(&self) -> bool {
        crate::netinfo::link_up(&self.wan)
    }

    fn wan_stats(&self) -> WanStats {
        let read = |name: &str| {
            std::fs::read_to_string(format!("/sys/class/net/{}/{name}", self.wan))
                .ok()
                .and_then(|s| s.trim().parse::<i64>().ok())
                .and_then(|v| u64::try_from(v).ok())
                .unwrap_or(0)
        };
        WanStats {
            tx_bytes: read("statistics/tx_bytes"),
            rx_bytes: read("statistics/rx_bytes"),
            tx_packets: read("statistics/tx_packets"),
            rx_packets: read("statistics/rx_packets"),
            // `speed` is in Mbit/s, -1 where the driver does not know (veth).
            bit_rate: read("speed").saturating_mul(1_000_000),
        }
    }
}

/// See [`SystemHost::probe6`].
fn probe6(addr: Ipv6Addr, lan_ifindex: u32) -> std::io::Result<()> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::IPV6, Type::DGRAM, Some(Protocol::UDP))?;
    socket.set_nonblocking(true)?;
    socket.bind_device_by_index_v6(std::num::NonZeroU32::new(lan_ifindex))?;
    socket.set_unicast_hops_v6(1)?;
    socket.send_to(&[], &std::net::SocketAddr::from((addr, 9)).into())?;
    Ok(())
}
