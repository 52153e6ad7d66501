//! Following the kernel's routes, neighbours, addresses and links over rtnetlink.
//!
//! The packet path caches next hops; any change to what `bpf_fib_lookup` would answer must
//! invalidate that cache, and an address change on the WAN interface changes the external
//! address. Rather than keep a copy of the kernel's tables, the monitor only classifies each
//! notification: the daemon bumps the cache generation on every one and re-reads the WAN
//! address when addresses changed. Notifications are pushed by the kernel (multicast groups),
//! never polled.

use std::{
    io,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd},
};

use tokio::io::unix::AsyncFd;

// rtnetlink multicast groups (linux/rtnetlink.h, the legacy RTMGRP_* bitmask for bind()).
const RTMGRP_LINK: u32 = 0x1;
const RTMGRP_NEIGH: u32 = 0x4;
const RTMGRP_IPV4_IFADDR: u32 = 0x10;
const RTMGRP_IPV4_ROUTE: u32 = 0x40;

// Message types (linux/rtnetlink.h).
const RTM_NEWLINK: u16 = 16;
const RTM_DELLINK: u16 = 17;
const RTM_NEWADDR: u16 = 20;
const RTM_DELADDR: u16 = 21;
const RTM_NEWROUTE: u16 = 24;
const RTM_DELROUTE: u16 = 25;
const RTM_NEWNEIGH: u16 = 28;
const RTM_DELNEIGH: u16 = 29;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
#[expect(clippy::cast_possible_truncation, reason = "AF_INET is 2")]
const AF_INET: u8 = libc::AF_INET as u8;
#[expect(clippy::cast_possible_truncation, reason = "AF_INET6 is 10")]
const AF_INET6: u8 = libc::AF_INET6 as u8;

// Interface flags (linux/if.h). The kernel reports IFF_RUNNING in link messages when the
// device is up with carrier (dev_get_flags).
const IFF_UP: u32 = 0x1;
const IFF_RUNNING: u32 = 0x40;

/// What a batch of notifications changed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Changes {
    /// Routes, neighbours or links changed: cached next hops may be stale.
    pub forwarding: bool,
    /// Interface addresses changed: the external address may have changed.
    pub addresses: bool,
    /// The watched interface's link as the last message about it says: up (administratively
    /// up, with carrier) or not (down, no carrier, or removed).
    pub link: Option<bool>,
    /// Notifications were lost (the socket's buffer overran): re-read what matters.
    pub lost: bool,
}

impl Changes {
    fn any(self) -> bool {
        self.forwarding || self.addresses || self.link.is_some() || self.lost
    }

    fn merge(&mut self, other: Self) {
        self.forwarding |= other.forwarding;
        self.addresses |= other.addresses;
        self.link = other.link.or(self.link);
        self.lost |= other.lost;
    }
}

/// Classifies the netlink messages in one datagram; link messages about interface `watch` say
/// whether its link is up. Malformed or truncated messages end the walk; what was read so far
/// counts.
#[must_use]
pub fn classify(mut buf: &[u8], watch: u32) -> Changes {
    const HEADER: usize = 16;
    let mut changes = Changes::default();
    while buf.len() >= HEADER {
        let len = u32::from_ne_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
        let kind = u16::from_ne_bytes([buf[4], buf[5]]);
        if len < HEADER || len > buf.len() {
            break;
        }
        match kind {
            RTM_NEWADDR | RTM_DELADDR => changes.addresses = true,
            RTM_NEWLINK | RTM_DELLINK => {
                changes.forwarding = true;
                // struct ifinfomsg: family, pad, type (u16), index (i32), flags, change.
                if let Some(info) = buf.get(HEADER..HEADER + 16) {
                    let index = u32::from_ne_bytes([info[4], info[5], info[6], info[7]]);
                    let flags = u32::from_ne_bytes([info[8], info[9], info[10], info[11]]);
                    if index == watch {
                        changes.link = Some(
                            kind == RTM_NEWLINK && flags & IFF_UP != 0 && flags & IFF_RUNNING != 0,
                        );
                    }
                }
            }
            RTM_NEWROUTE | RTM_DELROUTE | RTM_NEWNEIGH | RTM_DELNEIGH => {
                changes.forwarding = true;
            }
            _ => {}
        }
        // Messages are 4-byte aligned (NLMSG_ALIGN).
        let advance = (len + 3) & !3;
        buf = buf.get(advance..).unwrap_or_default();
    }
    changes
}

/// A netlink socket subscribed to route, neighbour, address and link notifications.
pub struct Monitor {
    fd: AsyncFd<OwnedFd>,
    buf: Vec<u8>,
    watch: u32,
}

impl Monitor {
    /// Opens and subscribes the socket in the current network namespace; the link of interface
    /// `watch` is followed.
    pub fn open(watch: u32) -> io::Result<Self> {
        // SAFETY: plain socket(2); the result is checked and owned below.
        let raw = unsafe {
            libc::socket(
                libc::AF_NETLINK,
                libc::SOCK_RAW | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
                libc::NETLINK_ROUTE,
            )
        };
        if raw < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: raw is a fresh, valid descriptor nobody else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        // SAFETY: sockaddr_nl is plain data; all-zero is its unspecified form.
        let mut addr: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
        #[expect(
            clippy::cast_possible_truncation,
            reason = "AF_NETLINK fits in sa_family_t"
        )]
        {
            addr.nl_family = libc::AF_NETLINK as libc::sa_family_t;
        }
        addr.nl_groups = RTMGRP_LINK | RTMGRP_NEIGH | RTMGRP_IPV4_IFADDR | RTMGRP_IPV4_ROUTE;
        // SAFETY: addr is a valid sockaddr_nl of the size passed.
        let rc = unsafe {
            libc::bind(
                fd.as_raw_fd(),
                (&raw const addr).cast(),
                #[expect(clippy::cast_possible_truncation, reason = "a small struct")]
                {
                    size_of::<libc::sockaddr_nl>() as libc::socklen_t
                },
            )
        };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: the OwnedFd is moved into the AsyncFd and stays open, the same descriptor,
        // for as long as the AsyncFd lives.
        let fd = unsafe { AsyncFd::register(fd) }.map_err(io::Error::from)?;
        Ok(Self {
            fd,
            buf: vec![0; 64 * 1024],
            watch,
        })
    }

    /// Follows the link of interface `watch` from now on (it was made again, with a new
    /// index).
    pub fn watch(&mut self, watch: u32) {
        self.watch = watch;
    }

    /// Waits for the next notifications and says what they changed. A receive-buffer overrun
    /// (ENOBUFS: notifications were lost) reports everything as changed.
    pub async fn next(&mut self) -> io::Result<Changes> {
        loop {
            let mut guard = self.fd.readable().await?;
            let mut changes = Changes::default();
            // Drain what is queued so that a burst costs one cache flush.
            loop {
                // SAFETY: buf is valid for writes of its length.
                let n = unsafe {
                    libc::recv(
                        guard.get_inner().as_raw_fd(),
                        self.buf.as_mut_ptr().cast(),
                        self.buf.len(),
                        0,
                    )
                };
                if n >= 0 {
                    #[expect(clippy::cast_sign_loss, reason = "checked non-negative")]
                    let n = n as usize;
                    changes.merge(classify(&self.buf[..n], self.watch));
                    continue;
                }
                let err = io::Error::last_os_error();
                match err.raw_os_error() {
                    Some(libc::EAGAIN) => {
                        guard.clear_ready();
                        break;
                    }
                    Some(libc::EINTR) => {}
                    Some(libc::ENOBUFS) => {
                        changes.merge(Changes {
                            forwarding: true,
                            addresses: true,
                            link: None,
                            lost: true,
                        });
                    }
                    _ => return Err(err),
                }
            }
            if changes.any() {
                return Ok(changes);
            }
        }
    }
}

/// What a dump of neighbours (one datagram of it) holds.
#[derive(Debug, Default, PartialEq, Eq)]
struct NeighbourDump {
    neighbours: Vec<(IpAddr, [u8; 6])>,
    /// `NLMSG_DONE` or `NLMSG_ERROR` came: the dump is over.
    done: bool,
}

/// Reads the `RTM_NEWNEIGH` messages of `family` in one datagram of a neighbour dump: the
/// destination (`NDA_DST`) and the Ethernet address (`NDA_LLADDR`) of each; entries without
/// both are skipped. Malformed messages end the walk (and the dump).
fn parse_neighbours(mut buf: &[u8], family: u8) -> NeighbourDump {
    const HEADER: usize = 16;
    const NDMSG: usize = 12;
    const NDA_DST: u16 = 1;
    const NDA_LLADDR: u16 = 2;
    let mut dump = NeighbourDump::default();
    while buf.len() >= HEADER {
        let len = u32::from_ne_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
        let kind = u16::from_ne_bytes([buf[4], buf[5]]);
        let Some(message) = buf.get(..len).filter(|_| len >= HEADER) else {
            dump.done = true;
            return dump;
        };
        match kind {
            NLMSG_ERROR | NLMSG_DONE => {
                dump.done = true;
                return dump;
            }
            RTM_NEWNEIGH if message.get(HEADER) == Some(&family) => {
                let mut attrs = message.get(HEADER + NDMSG..).unwrap_or_default();
                let (mut dst, mut mac) = (None, None);
                while attrs.len() >= 4 {
                    let alen = usize::from(u16::from_ne_bytes([attrs[0], attrs[1]]));
                    let atype = u16::from_ne_bytes([attrs[2], attrs[3]]);
                    let Some(data) = attrs.get(4..alen) else {
                        break;
                    };
                    match atype {
                        NDA_DST => {
                            dst = match family {
                                AF_INET6 => <[u8; 16]>::try_from(data).ok().map(IpAddr::from),
                                _ => <[u8; 4]>::try_from(data).ok().map(IpAddr::from),
                            };
                        }
                        NDA_LLADDR => mac = <[u8; 6]>::try_from(data).ok(),
                        _ => {}
                    }
                    attrs = attrs.get((alen + 3) & !3..).unwrap_or_default();
                }
                if let (Some(dst), Some(mac)) = (dst, mac)
                    && mac != [0; 6]
                {
                    dump.neighbours.push((dst, mac));
                }
            }
            _ => {}
        }
        buf = buf.get((len + 3) & !3..).unwrap_or_default();
    }
    dump
}

/// The kernel's IPv6 neighbours that have an Ethernet address, as `ip -6 neigh` lists them
/// (an `RTM_GETNEIGH` dump of the current network namespace): how an IPv6 address is tied to
/// a device's MAC.
pub fn neighbours6() -> io::Result<Vec<(Ipv6Addr, [u8; 6])>> {
    neighbours(AF_INET6, |addr| match addr {
        IpAddr::V6(v6) => Some(v6),
        IpAddr::V4(_) => None,
    })
}

/// The kernel's IPv4 neighbours that have an Ethernet address, as `ip -4 neigh` lists them:
/// the same dump as [`neighbours6`], where `/proc/net/arp` would format the table as text
/// (and follows the process's namespace, not the thread's).
pub fn neighbours4() -> io::Result<Vec<(Ipv4Addr, [u8; 6])>> {
    neighbours(AF_INET, |addr| match addr {
        IpAddr::V4(v4) => Some(v4),
        IpAddr::V6(_) => None,
    })
}

/// The neighbours of `family`, their addresses as `pick` gives them.
fn neighbours<A>(family: u8, pick: fn(IpAddr) -> Option<A>) -> io::Result<Vec<(A, [u8; 6])>> {
    const RTM_GETNEIGH: u16 = 30;
    const NLM_F_REQUEST: u16 = 0x1;
    const NLM_F_DUMP: u16 = 0x300;
    let fd = request_socket(libc::NETLINK_ROUTE)?;
    // nlmsghdr (length, type, flags, sequence, port id) and an ndmsg asking for `family`.
    let mut request = [0u8; 28];
    request[0..4].copy_from_slice(&28u32.to_ne_bytes());
    request[4..6].copy_from_slice(&RTM_GETNEIGH.to_ne_bytes());
    request[6..8].copy_from_slice(&(NLM_F_REQUEST | NLM_F_DUMP).to_ne_bytes());
    request[8..12].copy_from_slice(&1u32.to_ne_bytes());
    request[16] = family;
    send_request(&fd, &request)?;
    let mut buf = vec![0u8; 32 * 1024];
    let mut neighbours = Vec::new();
    // A neighbour table of any size ends; this bounds a kernel that keeps sending.
    for _ in 0..1024 {
        let n = recv_datagram(&fd, &mut buf)?;
        let dump = parse_neighbours(&buf[..n], family);
        neighbours.extend(
            dump.neighbours
                .into_iter()
                .filter_map(|(addr, mac)| Some((pick(addr)?, mac))),
        );
        if dump.done || n == 0 {
            break;
        }
    }
    Ok(neighbours)
}

/// A netlink socket of `protocol` (`NETLINK_ROUTE`, `NETLINK_SOCK_DIAG`) for one request and
/// its answer, in the current network namespace. Blocking, with a receive timeout: a kernel
/// that never answers (or a dump it never finishes) must not hang the caller.
pub(crate) fn request_socket(protocol: libc::c_int) -> io::Result<OwnedFd> {
    // SAFETY: plain socket(2); the result is checked and owned below.
    let raw = unsafe {
        libc::socket(
            libc::AF_NETLINK,
            libc::SOCK_RAW | libc::SOCK_CLOEXEC,
            protocol,
        )
    };
    if raw < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: raw is a fresh, valid descriptor nobody else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(raw) };
    let timeout = libc::timeval {
        tv_sec: 1,
        tv_usec: 0,
    };
    // SAFETY: timeout is a valid timeval of the size passed.
    let rc = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVTIMEO,
            (&raw const timeout).cast(),
            #[expect(clippy::cast_possible_truncation, reason = "a small struct")]
            {
                size_of::<libc::timeval>() as libc::socklen_t
            },
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(fd)
}

/// Sends one request to the kernel (an unbound netlink socket's default destination).
pub(crate) fn send_request(fd: &OwnedFd, request: &[u8]) -> io::Result<()> {
    // SAFETY: request is valid for reads of its length.
    let sent = unsafe { libc::send(fd.as_raw_fd(), request.as_ptr().cast(), request.len(), 0) };
    if sent < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Receives one datagram into `buf` and says how long it is. A datagram longer than `buf` is an
/// error rather than an answer silently cut short (`MSG_TRUNC` makes recv(2) report the real
/// length); the receive timeout reads as `WouldBlock`.
pub(crate) fn recv_datagram(fd: &OwnedFd, buf: &mut [u8]) -> io::Result<usize> {
    loop {
        // SAFETY: buf is valid for writes of its length.
        let n = unsafe {
            libc::recv(
                fd.as_raw_fd(),
                buf.as_mut_ptr().cast(),
                buf.len(),
                libc::MSG_TRUNC,
            )
        };
        if let Ok(n) = usize::try_from(n) {
            if n > buf.len() {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "netlink datagram larger than the receive buffer",
                ));
            }
            return Ok(n);
        }
        let err = io::Error::last_os_error();
        if err.raw_os_error() != Some(libc::EINTR) {
            return Err(err);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(kind: u16, payload: usize) -> Vec<u8> {
        let len = 16 + payload;
        let mut m = Vec::new();
        m.extend_from_slice(&u32::try_from(len).expect("small").to_ne_bytes());
        m.extend_from_slice(&kind.to_ne_bytes());
        m.resize(len, 0);
        m.resize((len + 3) & !3, 0);
        m
    }

    fn link(kind: u16, index: u32, flags: u32) -> Vec<u8> {
        let mut m = message(kind, 16);
        m[20..24].copy_from_slice(&index.to_ne_bytes());
        m[24..28].copy_from_slice(&flags.to_ne_bytes());
        m
    }

    #[test]
    fn classifies_batches_and_survives_garbage() {
        let mut batch = message(RTM_NEWNEIGH, 13);
        batch.extend(message(RTM_NEWADDR, 8));
        assert_eq!(
            classify(&batch, 2),
            Changes {
                forwarding: true,
                addresses: true,
                ..Changes::default()
            }
        );
        assert!(classify(&message(RTM_DELROUTE, 0), 2).forwarding);
        assert_eq!(
            classify(&message(3, 4), 2),
            Changes::default(),
            "NLMSG_DONE"
        );
        // Truncated, zero-length and oversize headers stop the walk without panicking.
        assert_eq!(classify(&[0xff; 7], 2), Changes::default());
        let mut bad = message(RTM_NEWLINK, 0);
        bad[..4].copy_from_slice(&1000u32.to_ne_bytes());
        assert_eq!(classify(&bad, 2), Changes::default());
        let mut zero = message(RTM_NEWLINK, 0);
        zero[..4].copy_from_slice(&0u32.to_ne_bytes());
        assert_eq!(classify(&zero, 2), Changes::default());
        // A link message too short for its ifinfomsg still counts as a forwarding change.
        assert_eq!(classify(&message(RTM_NEWLINK, 4), 0).link, None);
    }

    #[test]
    fn follows_the_watched_link() {
        let running = IFF_UP | IFF_RUNNING;
        assert_eq!(classify(&link(RTM_NEWLINK, 2, running), 2).link, Some(true));
        assert_eq!(
            classify(&link(RTM_NEWLINK, 2, IFF_UP), 2).link,
            Some(false),
            "no carrier"
        );
        assert_eq!(
            classify(&link(RTM_NEWLINK, 2, 0), 2).link,
            Some(false),
            "down"
        );
        assert_eq!(
            classify(&link(RTM_DELLINK, 2, running), 2).link,
            Some(false),
            "gone"
        );
        assert_eq!(
            classify(&link(RTM_NEWLINK, 3, 0), 2).link,
            None,
            "another interface"
        );
        let mut batch = link(RTM_NEWLINK, 2, 0);
        batch.extend(link(RTM_NEWLINK, 2, running));
        assert_eq!(
            classify(&batch, 2).link,
            Some(true),
            "the last message wins"
        );
    }

    fn neighbour(family: u8, dst: &[u8], mac: &[u8]) -> Vec<u8> {
        let mut m = message(RTM_NEWNEIGH, 12);
        m[16] = family;
        for (kind, data) in [(1u16, dst), (2u16, mac)] {
            let len = 4 + data.len();
            m.extend_from_slice(&u16::try_from(len).expect("small").to_ne_bytes());
            m.extend_from_slice(&kind.to_ne_bytes());
            m.extend_from_slice(data);
            m.resize((m.len() + 3) & !3, 0);
        }
        let len = u32::try_from(m.len()).expect("small");
        m[0..4].copy_from_slice(&len.to_ne_bytes());
        m
    }

    #[test]
    fn reads_ipv6_neighbours_and_the_end_of_the_dump() {
        let host: Ipv6Addr = "2001:db8:77::10".parse().expect("addr");
        let mac = [2, 0, 0, 0, 0, 0x10];
        let mut batch = neighbour(AF_INET6, &host.octets(), &mac);
        // IPv4 entries, incomplete ones (no MAC) and truncated attributes are skipped.
        batch.extend(neighbour(2, &[10, 0, 0, 1], &mac));
        batch.extend(neighbour(AF_INET6, &host.octets(), &[0; 6]));
        batch.extend(neighbour(AF_INET6, &host.octets()[..8], &mac));
        assert_eq!(
            parse_neighbours(&batch, AF_INET6),
            NeighbourDump {
                neighbours: vec![(host.into(), mac)],
                done: false
            }
        );
        assert_eq!(
            parse_neighbours(&batch, AF_INET).neighbours,
            [(IpAddr::from([10, 0, 0, 1]), mac)],
            "the IPv4 entry of an IPv4 dump"
        );
        batch.extend(message(NLMSG_DONE, 4));
        assert!(parse_neighbours(&batch, AF_INET6).done);
        let mut bad = neighbour(AF_INET6, &host.octets(), &mac);
        bad[0..4].copy_from_slice(&4000u32.to_ne_bytes());
        assert_eq!(parse_neighbours(&bad, AF_INET6).neighbours, []);
        assert!(
            parse_neighbours(&bad, AF_INET6).done,
            "a message longer than the datagram ends it"
        );
    }
}
