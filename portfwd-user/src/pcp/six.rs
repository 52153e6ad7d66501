//! PCP over IPv6: MAP and PEER for a LAN host's own IPv6 address open pinholes.
//!
//! Nothing is translated over IPv6, so the box is a PCP-controlled firewall (RFC 6887 section
//! 11.3 on the external address of a firewall): the assigned external address and port are
//! the internal ones, and a mapping is a pinhole ([`crate::pinhole`]) in the client's name
//! ([`Origin::Pcp6`]), renewed and deleted only with the same nonce. Decisions:
//! * The socket is `[::]:5351` bound to the LAN interface (`SO_BINDTODEVICE`, IPv6 only), so a
//!   client may use the router's global or link-local address; requests from addresses outside
//!   the LAN's global prefixes (link-local sources included: a pinhole to a link-local address
//!   reaches nothing) are dropped. NAT-PMP is IPv4 only: version 0 over IPv6 is dropped.
//! * Pinholes are opened whether or not inbound IPv6 is default-deny: either way the pinhole is
//!   the data plane's fast path to the host.
//! * The device permission and the port rules are the IPv4 ones: the client's IPv6 address is
//!   tied to its device's IPv4 address through the MAC both neighbour tables give (a host the
//!   box only knows over IPv6 matches MAC and "every host" entries only). Secure mode keeps
//!   `THIRD_PARTY` (where allowed) to the client's own addresses: only the client itself.
//! * `FILTER` and `PEER` restrict the pinhole to one remote address and, where given, port;
//!   more than one filter is `EXCESSIVE_REMOTE_PEERS`.
//! * Lifetimes are clamped as for IPv4; the unsolicited ANNOUNCE after a start goes to
//!   `ff02::1` port 5350 on the LAN.

use std::{
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddrV6},
    sync::Arc,
    time::Duration,
};

use tokio::net::UdpSocket;

use super::{
    Fail, Responder, error_lifetime, protocol, table_fail,
    wire::{self, Map, Pcp, Refused, Request, code},
};
use crate::{
    pinhole::{PinholeId, PinholeSpec},
    share::Origin,
    table::{Mechanism, PinholeAsk},
};

/// Where IPv6 announcements go: all nodes on the LAN link, the clients' port.
const ANNOUNCE_TO: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1);

impl Responder {
    /// Whether `addr` is a host of one of the LAN's global IPv6 prefixes.
    fn on_lan6(&self, addr: Ipv6Addr) -> bool {
        self.lan6.iter().any(|p| p.has_host(addr))
    }

    /// The answer to one datagram from `from` over IPv6, if it deserves one.
    pub async fn answer6(&self, from: Ipv6Addr, datagram: &[u8]) -> Option<Vec<u8>> {
        if !self.on_lan6(from) {
            tracing::debug!("PCP datagram from {from}, not a host of a LAN prefix: dropped");
            return None;
        }
        let epoch = self.epoch();
        match wire::parse(datagram) {
            Err(Refused::Pcp {
                opcode,
                result,
                body,
            }) => {
                self.metrics.request("pcp", "unknown", code::name(result));
                Some(wire::pcp_reply(
                    opcode,
                    result,
                    error_lifetime(result),
                    epoch,
                    &body,
                ))
            }
            Err(Refused::Drop(_) | Refused::Pmp { .. })
            | Ok(Request::PmpExternal | Request::PmpMap { .. }) => {
                tracing::debug!("NAT-PMP (IPv4 only) or junk over IPv6 from {from}: dropped");
                self.metrics.request("natpmp", "unknown", "dropped");
                None
            }
            Ok(Request::Pcp(request)) => Some(self.pcp(IpAddr::V6(from), &request, epoch).await),
        }
    }

    /// MAP, or PEER with `peer`, for an IPv6 host: the lifetime granted and the MAP fields.
    pub(super) async fn pinhole(
        &self,
        from: Ipv6Addr,
        request: &Pcp,
        map: &Map,
        peer: Option<(u16, Ipv6Addr)>,
    ) -> Result<(u32, Vec<u8>), Fail> {
        if request.client != from {
            return Err(Fail::new(
                code::ADDRESS_MISMATCH,
                format!(
                    "the request says the client is {}, it came from {from}",
                    request.client
                ),
            ));
        }
        let internal = match request.options.third_party {
            None => from,
            Some(_) if !self.table.snapshot().settings.pcp.third_party => {
                return Err(Fail::new(
                    code::UNSUPP_OPTION,
                    "THIRD_PARTY is not allowed here (pcp.third_party)",
                ));
            }
            Some(addr) => addr,
        };
        let origin = Origin::Pcp6 {
            client: from,
            nonce: map.nonce,
        };
        let proto = protocol(map)?;
        if request.lifetime == 0 {
            let port = map.internal_port;
            self.table
                .change(move |t| t.release_pinholes(origin, internal, proto, port))
                .await
                .map_err(|err| table_fail(&err, false))?;
            return Ok((0, wire::map_fields(map, 0, Ipv6Addr::UNSPECIFIED)));
        }
        let Some(proto) = proto.filter(|_| map.internal_port != 0) else {
            return Err(Fail::new(
                code::UNSUPP_PROTOCOL,
                "opening every port (internal port 0) is not offered",
            ));
        };
        let port = map.internal_port;
        // A firewall assigns the internal address and port themselves.
        let other_port = map.external_port != 0 && map.external_port != port;
        let other_addr = !map.external.is_unspecified()
            && map.external.to_ipv4_mapped() != Some(Ipv4Addr::UNSPECIFIED)
            && map.external != internal;
        if request.options.prefer_failure && (other_port || other_addr) {
            return Err(Fail::new(
                code::CANNOT_PROVIDE_EXTERNAL,
                format!("over IPv6 the external address and port are [{internal}]:{port}"),
            ));
        }
        let (remote, remote_port) = match peer {
            Some((port, addr)) if port == 0 || addr.is_unspecified() => {
                return Err(Fail::new(
                    code::MALFORMED_REQUEST,
                    "PEER without a remote peer",
                ));
            }
            Some((port, addr)) => (Some(addr), Some(port)),
            None => filter6(&request.options.filters)?,
        };
        let ask = PinholeAsk {
            spec: PinholeSpec {
                id: PinholeId {
                    proto,
                    addr: internal,
                    port,
                },
                remote,
                remote_port,
                name: None,
                enabled: true,
            },
            origin,
            mechanism: Mechanism::Pcp,
            lease: request.lifetime,
        };
        let view = self
            .table
            .change(move |t| t.admit_pinhole(ask))
            .await
            .map_err(|e| table_fail(&e, false))?;
        let lifetime = view
            .expires_in
            .map_or(u32::MAX, |left| {
                u32::try_from(left.as_secs()).unwrap_or(u32::MAX)
            })
            .max(1);
        Ok((lifetime, wire::map_fields(map, port, internal)))
    }
}

/// The remote address and port a set of `FILTER` options restricts an IPv6 pinhole to.
fn filter6(filters: &[wire::Filter]) -> Result<(Option<Ipv6Addr>, Option<u16>), Fail> {
    let port = |p: u16| (p != 0).then_some(p);
    match filters {
        [] => Ok((None, None)),
        [f] if f.prefix_len == 0 => Ok((None, port(f.remote_port))),
        [f] if f.prefix_len == 128 => Ok((Some(f.remote), port(f.remote_port))),
        _ => Err(Fail::new(
            code::EXCESSIVE_REMOTE_PEERS,
            "one FILTER for one remote address (prefix 128) or any (prefix 0) is what can be \
             installed",
        )),
    }
}

/// Binds UDP `[::]:5351` on the LAN interface only (`SO_BINDTODEVICE`, IPv6 only).
pub fn bind6(lan: &str, lan_ifindex: u32) -> std::io::Result<UdpSocket> {
    let socket = socket2::Socket::new(
        socket2::Domain::IPV6,
        socket2::Type::DGRAM,
        Some(socket2::Protocol::UDP),
    )?;
    socket.set_only_v6(true)?;
    socket.set_reuse_address(true)?;
    socket.bind_device(Some(lan.as_bytes()))?;
    socket.bind(&SocketAddrV6::new(Ipv6Addr::UNSPECIFIED, wire::SERVER_PORT, 0, 0).into())?;
    socket.set_multicast_if_v6(lan_ifindex)?;
    socket.set_multicast_loop_v6(false)?;
    socket.set_nonblocking(true)?;
    UdpSocket::from_std(socket.into())
}

/// Serves PCP over IPv6 on `socket` until `shutdown` completes; announces the restart to the
/// LAN (`ff02::1`, port 5350) ten times at 250 ms doubling, as over IPv4.
pub async fn serve6(
    socket: UdpSocket,
    lan_ifindex: u32,
    responder: Arc<Responder>,
    shutdown: impl Future<Output = ()>,
) {
    let socket = Arc::new(socket);
    let announcer = tokio::spawn({
        let (socket, responder) = (Arc::clone(&socket), Arc::clone(&responder));
        async move {
            let to = SocketAddrV6::new(ANNOUNCE_TO, wire::CLIENT_PORT, 0, lan_ifindex);
            let mut delay = Duration::from_millis(250);
            for _ in 0..10 {
                let message =
                    wire::pcp_reply(code::OP_ANNOUNCE, code::SUCCESS, 0, responder.epoch(), &[]);
                if let Err(err) = socket.send_to(&message, to).await {
                    tracing::debug!("announcing to {to}: {err}");
                }
                tokio::time::sleep(delay).await;
                delay *= 2;
            }
        }
    });
    super::answer_on(&socket, &responder, shutdown).await;
    announcer.abort();
}
