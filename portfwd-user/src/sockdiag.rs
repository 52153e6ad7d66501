//! Listening sockets and single neighbours, asked of the kernel over netlink.
//!
//! A UPnP or PCP request asks whether a port is taken by a local service and which MAC address
//! a LAN host has. `/proc/net/tcp` answers the first by walking every bucket of the established
//! hash (one table for all network namespaces) and formatting each socket as text;
//! `/proc/net/arp` formats the whole neighbour table. Here each question costs what its answer
//! costs:
//!
//! - [`listening`] dumps sockets through `NETLINK_SOCK_DIAG` (`SOCK_DIAG_BY_FAMILY` with a
//!   `struct inet_diag_req_v2`, `include/uapi/linux/inet_diag.h`). For TCP it asks for
//!   `TCP_LISTEN` only, and the kernel then walks the listening hash and skips the established
//!   one: `net/ipv4/tcp_diag.c` `tcp_diag_dump` (`inet_diag_dump_icsk` in
//!   `net/ipv4/inet_diag.c` on older kernels) goes to `out` when `idiag_states & ~TCPF_LISTEN`
//!   is empty, before the `ehash` loop, and the bound-only walk needs `TCPF_BOUND_INACTIVE`.
//!   UDP has one hash of all bound sockets, connected or not (`net/ipv4/udp_diag.c`
//!   `udp_dump`): that walk grows with the box's UDP sockets, as `/proc/net/udp` does, but
//!   never with its TCP connections.
//! - [`neighbour`] asks for one entry with a non-dump `RTM_GETNEIGH` (`net/core/neighbour.c`
//!   `neigh_get`, Linux 5.0 and later): one hash lookup, whatever the size of the table.
//!
//! Both follow the network namespace of the calling thread (the netlink socket's), where
//! `/proc/net` follows the process's.

use std::{
    io,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    os::fd::OwnedFd,
};

use crate::{
    netlink::{recv_datagram, request_socket, send_request},
    share::Proto,
};

/// `include/uapi/linux/netlink.h`: `NETLINK_SOCK_DIAG` (formerly `NETLINK_INET_DIAG`).
const NETLINK_SOCK_DIAG: libc::c_int = 4;
/// `include/uapi/linux/sock_diag.h`.
const SOCK_DIAG_BY_FAMILY: u16 = 20;
/// `include/uapi/linux/netlink.h`.
const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_DUMP: u16 = 0x300;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
/// `struct nlmsghdr`: length, type, flags, sequence number, port id.
const NLMSG_HDRLEN: usize = 16;
/// `struct inet_diag_req_v2`: family, protocol, ext, pad, states, `struct inet_diag_sockid`.
const INET_DIAG_REQ_V2: usize = 56;
/// `struct inet_diag_msg`: family, state, timer, retrans, sockid (48 bytes), expires, rqueue,
/// wqueue, uid, inode.
const INET_DIAG_MSG: usize = 72;
/// `include/uapi/linux/inet_diag.h`. Sent for every `AF_INET6` socket in `TCP_LISTEN` or
/// `TCP_CLOSE`, unasked (`net/ipv4/inet_diag.c` `inet_diag_msg_attrs_fill`); `idiag_ext` could
/// not ask for it anyway, its bits only reach attribute 8.
const INET_DIAG_SKV6ONLY: u16 = 11;
/// `include/net/tcp_states.h`. UDP sockets borrow the TCP states: unconnected ones are
/// `TCP_CLOSE`, connected ones `TCP_ESTABLISHED`.
const TCP_LISTEN: u8 = 10;
const TCP_CLOSE: u8 = 7;
/// `struct ndmsg` (`include/uapi/linux/neighbour.h`): family, pad, pad, ifindex, state, flags,
/// type.
const NDMSG: usize = 12;
/// The states in which an entry holds a link-layer address (`include/net/neighbour.h`
/// `NUD_VALID`); `neigh_fill_info` puts `NDA_LLADDR` only in these.
const NUD_VALID: u16 = libc::NUD_PERMANENT
    | libc::NUD_NOARP
    | libc::NUD_REACHABLE
    | libc::NUD_PROBE
    | libc::NUD_STALE
    | libc::NUD_DELAY;
#[expect(clippy::cast_possible_truncation, reason = "AF_INET is 2")]
const AF_INET: u8 = libc::AF_INET as u8;
#[expect(clippy::cast_possible_truncation, reason = "AF_INET6 is 10")]
const AF_INET6: u8 = libc::AF_INET6 as u8;
/// Room for one datagram: the kernel fills dump datagrams up to 32 KiB (`net/netlink/af_netlink.c`
/// `netlink_dump`, `max_recvmsg_len`); a longer one is an error, not a cut answer.
const BUF: usize = 64 * 1024;
/// Room for the answer to a get request: one message, or one error.
const ONE: usize = 8 * 1024;
/// Datagrams one dump may take: far more than the sockets a box can have listening, and a bound
/// on a kernel that keeps sending.
const MAX_DATAGRAMS: usize = 4096;

/// The ports sockets of this network namespace receive on from anywhere: listening TCP
/// sockets, unconnected UDP sockets. Each with its local IPv4 address, `None` for the wildcard:
/// `0.0.0.0`, or `::` of a socket that is not `IPV6_V6ONLY`. A v4-mapped `::ffff:a.b.c.d`
/// counts as `a.b.c.d`; other IPv6 addresses and v6-only sockets never receive IPv4 and are
/// left out. Connected sockets are left out: they receive from their peer only.
///
/// The same answer as [`crate::netinfo::listening_ports`], at a cost independent of the number
/// of TCP connections on the box (see the module documentation). A kernel built without socket
/// monitoring for the protocol (`CONFIG_INET_TCP_DIAG`, `CONFIG_INET_UDP_DIAG`, which defaults
/// to off) answers `ENOENT`.
pub fn listening(proto: Proto) -> io::Result<Vec<(Option<Ipv4Addr>, u16)>> {
    let state = match proto {
        Proto::Tcp => TCP_LISTEN,
        Proto::Udp => TCP_CLOSE,
    };
    let fd = request_socket(NETLINK_SOCK_DIAG)?;
    let mut buf = vec![0u8; BUF];
    let mut found = Vec::new();
    // sock_diag serves one family a request (net/core/sock_diag.c `sock_diag_rcv_msg`).
    for (seq, family) in [(1, AF_INET), (2, AF_INET6)] {
        send_request(&fd, &dump_request(family, proto.number(), state, seq))?;
        dump(&fd, &mut buf, |datagram| {
            parse_listening(datagram, seq, state, &mut found)
        })?;
    }
    Ok(found)
}

/// Whether a `proto` packet from anywhere to `addr:port`, arriving on interface `ifindex`, would
/// find a socket of this namespace: a TCP listener, or an unconnected UDP socket, bound to
/// `addr` or to the wildcard (`0.0.0.0`, or `::` of a socket that is not `IPV6_V6ONLY`), and
/// to no device or to `ifindex`. With `addr` `0.0.0.0`, only wildcard sockets.
///
/// The kernel answers with its own lookup for an arriving packet, one hash lookup whatever the
/// box's sockets: a `SOCK_DIAG_BY_FAMILY` request without `NLM_F_DUMP` (`net/ipv4/inet_diag.c`
/// `inet_diag_find_one_icsk`, `net/ipv4/udp_diag.c` `udp_dump_one`, where the socket id's
/// source and destination are swapped "for historical reasons"), where [`listening`] walks
/// every bucket of the listening hash. `ENOENT` is the answer "none", but also what a kernel
/// without the protocol's socket monitoring says: ask only once [`listening`] has worked for
/// `proto`.
pub fn receives(proto: Proto, addr: Ipv4Addr, port: u16, ifindex: u32) -> io::Result<bool> {
    const SEQ: u32 = 1;
    let request = exact_request(proto, addr, port, ifindex, SEQ);
    get(NETLINK_SOCK_DIAG, &request, "a socket lookup", |datagram| {
        parse_exact(datagram, SEQ)
    })
}

/// Sends the get `request` on a new `protocol` socket and reads datagrams until `parse` finds
/// the answer. It is one message or one error; a few datagrams bound anything else.
fn get<T>(
    protocol: libc::c_int,
    request: &[u8],
    what: &str,
    mut parse: impl FnMut(&[u8]) -> io::Result<Option<T>>,
) -> io::Result<T> {
    let fd = request_socket(protocol)?;
    send_request(&fd, request)?;
    let mut buf = vec![0u8; ONE];
    for _ in 0..4 {
        let n = recv_datagram(&fd, &mut buf)?;
        if n == 0 {
            break;
        }
        if let Some(answer) = parse(&buf[..n])? {
            return Ok(answer);
        }
    }
    Err(io::Error::new(
        io::ErrorKind::InvalidData,
        format!("no answer to {what}"),
    ))
}

/// A `SOCK_DIAG_BY_FAMILY` get request for the IPv4 socket a packet to `addr:port` on
/// `ifindex` would find.
fn exact_request(
    proto: Proto,
    addr: Ipv4Addr,
    port: u16,
    ifindex: u32,
    seq: u32,
) -> [u8; NLMSG_HDRLEN + INET_DIAG_REQ_V2] {
    let mut request = [0u8; NLMSG_HDRLEN + INET_DIAG_REQ_V2];
    header(&mut request, SOCK_DIAG_BY_FAMILY, NLM_F_REQUEST, seq);
    let req = &mut request[NLMSG_HDRLEN..];
    req[0] = AF_INET;
    req[1] = proto.number();
    req[4..8].copy_from_slice(&u32::MAX.to_ne_bytes());
    // struct inet_diag_sockid: sport, dport (big-endian), src[4], dst[4], if, cookie[2].
    let id = &mut req[8..];
    let (port_at, addr_at) = match proto {
        // The socket's own end is the "source" for TCP, the "destination" for UDP.
        Proto::Tcp => (0, 4),
        Proto::Udp => (2, 20),
    };
    id[port_at..port_at + 2].copy_from_slice(&port.to_be_bytes());
    id[addr_at..addr_at + 4].copy_from_slice(&addr.octets());
    id[36..40].copy_from_slice(&ifindex.to_ne_bytes());
    // INET_DIAG_NOCOOKIE: any socket, not one with a given cookie.
    id[40..48].fill(0xff);
    request
}

/// Reads the answer to exact request `seq` from one datagram: `Some(found)`, or `None` if the
/// datagram has none.
fn parse_exact(datagram: &[u8], seq: u32) -> io::Result<Option<bool>> {
    for message in messages(datagram) {
        let message = message?;
        if message.seq != seq {
            continue;
        }
        match message.kind {
            NLMSG_ERROR => return none_such(message.payload).map(|()| Some(false)),
            SOCK_DIAG_BY_FAMILY => {
                return match message.payload.len() {
                    INET_DIAG_MSG.. => Ok(Some(true)),
                    _ => Err(cut_short()),
                };
            }
            _ => {}
        }
    }
    Ok(None)
}

/// Receives datagrams and hands them to `parse` until it says the dump is over.
fn dump(
    fd: &OwnedFd,
    buf: &mut [u8],
    mut parse: impl FnMut(&[u8]) -> io::Result<bool>,
) -> io::Result<()> {
    for _ in 0..MAX_DATAGRAMS {
        let n = recv_datagram(fd, buf)?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "empty netlink datagram",
            ));
        }
        if parse(&buf[..n])? {
            return Ok(());
        }
    }
    Err(io::Error::new(
        io::ErrorKind::InvalidData,
        "socket dump did not end",
    ))
}

/// A `SOCK_DIAG_BY_FAMILY` dump request for the sockets of `family` and IP `protocol` in
/// `state`, on any address and port.
fn dump_request(
    family: u8,
    protocol: u8,
    state: u8,
    seq: u32,
) -> [u8; NLMSG_HDRLEN + INET_DIAG_REQ_V2] {
    let mut request = [0u8; NLMSG_HDRLEN + INET_DIAG_REQ_V2];
    header(
        &mut request,
        SOCK_DIAG_BY_FAMILY,
        NLM_F_REQUEST | NLM_F_DUMP,
        seq,
    );
    request[NLMSG_HDRLEN] = family;
    request[NLMSG_HDRLEN + 1] = protocol;
    // idiag_ext stays 0: no extensions wanted. The sockid stays zero: no filter.
    let states = 1u32 << state;
    request[NLMSG_HDRLEN + 4..NLMSG_HDRLEN + 8].copy_from_slice(&states.to_ne_bytes());
    request
}

/// Writes a `struct nlmsghdr` for the whole of `message` at its start.
fn header(message: &mut [u8], kind: u16, flags: u16, seq: u32) {
    let len = u32::try_from(message.len()).unwrap_or(u32::MAX);
    message[0..4].copy_from_slice(&len.to_ne_bytes());
    message[4..6].copy_from_slice(&kind.to_ne_bytes());
    message[6..8].copy_from_slice(&flags.to_ne_bytes());
    message[8..12].copy_from_slice(&seq.to_ne_bytes());
}

/// Reads one datagram of the answer to dump request `seq`, adding each socket in `state` that
/// receives IPv4 from anywhere to `found`, and says whether the dump is over. A message cut
/// short is an error (the answer is incomplete), as is an error the kernel sends.
fn parse_listening(
    datagram: &[u8],
    seq: u32,
    state: u8,
    found: &mut Vec<(Option<Ipv4Addr>, u16)>,
) -> io::Result<bool> {
    for message in messages(datagram) {
        let message = message?;
        if message.seq != seq {
            continue;
        }
        match message.kind {
            NLMSG_DONE => {
                // A dump that failed half-way ends with its error here (net/netlink/af_netlink.c
                // `netlink_dump_done`); kernels before that sent no payload.
                if message.payload.len() >= 4 {
                    errno(message.payload)?;
                }
                return Ok(true);
            }
            NLMSG_ERROR => {
                errno(message.payload)?;
                return Ok(true);
            }
            SOCK_DIAG_BY_FAMILY => found.extend(listener(message.payload, state)?),
            _ => {}
        }
    }
    Ok(false)
}

/// The port the socket of an `inet_diag_msg` receives on from anywhere, with its IPv4 address,
/// if it is in `state` and receives IPv4 at all.
fn listener(payload: &[u8], state: u8) -> io::Result<Option<(Option<Ipv4Addr>, u16)>> {
    let Some(socket) = payload.get(..INET_DIAG_MSG) else {
        return Err(cut_short());
    };
    if socket[1] != state {
        return Ok(None);
    }
    let port = u16::from_be_bytes([socket[4], socket[5]]);
    let mut src = [0u8; 16];
    src.copy_from_slice(&socket[8..24]);
    let addr = match socket[0] {
        AF_INET => Ipv4Addr::new(src[0], src[1], src[2], src[3]),
        AF_INET6 => {
            let v6only = attributes(&payload[INET_DIAG_MSG..])
                .find(|&(kind, _)| kind == INET_DIAG_SKV6ONLY)
                .is_some_and(|(_, data)| data.first().is_some_and(|&flag| flag != 0));
            let v6 = Ipv6Addr::from(src);
            match v6.to_ipv4_mapped() {
                _ if v6only => return Ok(None),
                Some(v4) => v4,
                None if v6.is_unspecified() => Ipv4Addr::UNSPECIFIED,
                None => return Ok(None),
            }
        }
        _ => return Ok(None),
    };
    Ok(Some(((!addr.is_unspecified()).then_some(addr), port)))
}

/// The MAC address the kernel's neighbour table has for `addr` on interface `ifindex`, if the
/// entry is usable: `None` for no entry, and for entries without a link-layer address (being
/// resolved, `INCOMPLETE`; unreachable, `FAILED`; or on a device without Ethernet addresses).
/// A v4-mapped IPv6 address is looked up as the IPv4 address it carries.
///
/// The kernel needs the interface: `neigh_get` (`net/core/neighbour.c`) answers `EINVAL` "No
/// device specified" without `ndm_ifindex` (only proxy entries, `NTF_PROXY`, can be looked up
/// without one, and those carry no MAC); an unknown index is `ENODEV`. It takes only `NDA_DST`,
/// of exactly the family's address length, and zero state, type and flags
/// (`neigh_valid_get_req`). Kernels before 5.0 have no `neigh_get` and answer `EOPNOTSUPP`.
pub fn neighbour(addr: IpAddr, ifindex: u32) -> io::Result<Option<[u8; 6]>> {
    const SEQ: u32 = 1;
    let (request, len) = neighbour_request(addr.to_canonical(), ifindex, SEQ);
    get(
        libc::NETLINK_ROUTE,
        &request[..len],
        "a neighbour request",
        |datagram| {
            Ok(match parse_neighbour(datagram, SEQ)? {
                Reply::Answer(mac) => Some(mac),
                Reply::Pending => None,
            })
        },
    )
}

/// An `RTM_GETNEIGH` get request for `addr` on `ifindex`, and how many of its bytes are used
/// (an IPv4 `NDA_DST` is 12 bytes shorter).
fn neighbour_request(
    addr: IpAddr,
    ifindex: u32,
    seq: u32,
) -> ([u8; NLMSG_HDRLEN + NDMSG + 4 + 16], usize) {
    let mut request = [0u8; NLMSG_HDRLEN + NDMSG + 4 + 16];
    // An IPv4 address is the last 4 bytes of its IPv4-compatible form.
    let (family, octets, dst_len) = match addr {
        IpAddr::V4(v4) => (AF_INET, v4.to_ipv6_compatible().octets(), 4),
        IpAddr::V6(v6) => (AF_INET6, v6.octets(), 16),
    };
    let dst = &octets[16 - dst_len..];
    let len = NLMSG_HDRLEN + NDMSG + 4 + dst.len();
    request[NLMSG_HDRLEN] = family;
    request[NLMSG_HDRLEN + 4..NLMSG_HDRLEN + 8].copy_from_slice(&ifindex.to_ne_bytes());
    let attr = &mut request[NLMSG_HDRLEN + NDMSG..len];
    #[expect(clippy::cast_possible_truncation, reason = "4 + at most 16")]
    attr[0..2].copy_from_slice(&((4 + dst.len()) as u16).to_ne_bytes());
    attr[2..4].copy_from_slice(&libc::NDA_DST.to_ne_bytes());
    attr[4..].copy_from_slice(dst);
    header(&mut request[..len], libc::RTM_GETNEIGH, NLM_F_REQUEST, seq);
    (request, len)
}

/// What a datagram says to a neighbour request.
#[derive(Debug, PartialEq, Eq)]
enum Reply {
    /// The answer: the MAC, or `None` for no usable entry.
    Answer(Option<[u8; 6]>),
    /// Nothing for this request.
    Pending,
}

/// Reads the answer to neighbour request `seq` from one datagram.
fn parse_neighbour(datagram: &[u8], seq: u32) -> io::Result<Reply> {
    for message in messages(datagram) {
        let message = message?;
        if message.seq != seq {
            continue;
        }
        match message.kind {
            NLMSG_ERROR => return none_such(message.payload).map(|()| Reply::Answer(None)),
            libc::RTM_NEWNEIGH => {
                let Some(ndmsg) = message.payload.get(..NDMSG) else {
                    return Err(cut_short());
                };
                let state = u16::from_ne_bytes([ndmsg[8], ndmsg[9]]);
                let mac = attributes(&message.payload[NDMSG..])
                    .find(|&(kind, _)| kind == libc::NDA_LLADDR)
                    .and_then(|(_, data)| <[u8; 6]>::try_from(data).ok());
                return Ok(Reply::Answer(
                    mac.filter(|&mac| state & NUD_VALID != 0 && mac != [0; 6]),
                ));
            }
            _ => {}
        }
    }
    Ok(Reply::Pending)
}

/// One netlink message of a datagram.
#[derive(Debug)]
struct Message<'a> {
    kind: u16,
    seq: u32,
    payload: &'a [u8],
}

/// The messages of one datagram, in order. A header cut short, or one that claims more than the
/// datagram holds, yields an error and ends the walk.
fn messages(mut datagram: &[u8]) -> impl Iterator<Item = io::Result<Message<'_>>> {
    std::iter::from_fn(move || {
        if datagram.is_empty() {
            return None;
        }
        let parsed = datagram.get(..NLMSG_HDRLEN).and_then(|header| {
            let len = u32::from_ne_bytes([header[0], header[1], header[2], header[3]]) as usize;
            let message = datagram.get(..len).filter(|_| len >= NLMSG_HDRLEN)?;
            Some((
                Message {
                    kind: u16::from_ne_bytes([header[4], header[5]]),
                    seq: u32::from_ne_bytes([header[8], header[9], header[10], header[11]]),
                    payload: &message[NLMSG_HDRLEN..],
                },
                // Messages are 4-byte aligned (NLMSG_ALIGN); the last may lack its padding.
                datagram.get((len + 3) & !3..).unwrap_or_default(),
            ))
        });
        if let Some((message, rest)) = parsed {
            datagram = rest;
            Some(Ok(message))
        } else {
            datagram = &[];
            Some(Err(cut_short()))
        }
    })
}

/// The `(type, data)` of each netlink attribute (`struct rtattr`, `struct nlattr`) in `buf`;
/// one cut short ends the walk.
fn attributes(mut buf: &[u8]) -> impl Iterator<Item = (u16, &[u8])> {
    std::iter::from_fn(move || {
        let len = usize::from(u16::from_ne_bytes([*buf.first()?, *buf.get(1)?]));
        // NLA_TYPE_MASK: the top two bits are the nested and byte-order flags.
        let kind = u16::from_ne_bytes([*buf.get(2)?, *buf.get(3)?]) & 0x3fff;
        let data = buf.get(4..len)?;
        buf = buf.get((len + 3) & !3..).unwrap_or_default();
        Some((kind, data))
    })
}

/// The status of an `NLMSG_ERROR` (or `NLMSG_DONE`) payload: a negative errno, or 0 for
/// success (`include/uapi/linux/netlink.h` `struct nlmsgerr`).
fn errno(payload: &[u8]) -> io::Result<()> {
    let Some(&[a, b, c, d]) = payload.get(..4) else {
        return Err(cut_short());
    };
    match i32::from_ne_bytes([a, b, c, d]) {
        0 => Ok(()),
        code => Err(io::Error::from_raw_os_error(code.saturating_neg())),
    }
}

/// The error message answering a get request: `Ok` if it says there is no such entry
/// (`ENOENT`, or an acknowledgement, not asked for, with no answer before it).
fn none_such(payload: &[u8]) -> io::Result<()> {
    match errno(payload) {
        Err(err) if err.raw_os_error() != Some(libc::ENOENT) => Err(err),
        _ => Ok(()),
    }
}

fn cut_short() -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, "netlink message cut short")
}

#[cfg(test)]
mod tests;
