//! NAT-PMP (RFC 6886) and PCP (RFC 6887) on UDP port 5351 of the LAN address.
//!
//! Both open ports the way UPnP does, under the same rules: the owner's per-device permission
//! and allow/deny rules, secure mode, quotas, and the share table's own (a static share, the
//! owner's or another client's share on the port, a port the box listens on). A share made
//! here is the client's, listed by the API with source `natpmp` or `pcp`, and deleted by the
//! owner like any other.
//!
//! Decisions where the RFCs leave room:
//! * Lifetimes are clamped to `[pcp] min_lifetime..=max_lifetime` (120 s to 24 h by default),
//!   then to the owner's `[upnp] max_lease`. A lifetime of 0 deletes.
//! * The epoch counts seconds since the daemon started: shares survive a restart (they are in
//!   the state directory), but a client that renews after seeing the epoch go back does no
//!   harm, and the RFCs' "after a restart, announce" is kept.
//! * A request for a port that is taken gets the nearest free one (NAT-PMP, and PCP without
//!   `PREFER_FAILURE`); a client asking again for an internal port it already has shared gets
//!   that share back with its lease renewed.
//! * PCP `FILTER`: one remote host (prefix 128 for IPv4-mapped addresses, any remote port) is
//!   what the data plane enforces; prefix 0 is no filter. Anything else is
//!   `EXCESSIVE_REMOTE_PEERS`: the server cannot install that filter.
//! * PCP `PEER` makes a share for that one remote host, so the remote peer reaches the client
//!   on the external port and the client's packets to it leave from that port.
//! * `THIRD_PARTY` is refused (`UNSUPP_OPTION`) unless `[pcp] third_party = true`; then it is
//!   still held to secure mode.
//! * Version 1 and versions above 2 are answered `UNSUPP_VERSION` in PCP's layout, version 2.

pub mod six;
pub mod wire;

#[cfg(test)]
mod tests;

use std::{
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4},
    sync::Arc,
    time::{Duration, Instant},
};

use tokio::net::UdpSocket;
use wire::{Map, Pcp, PcpOp, Refused, Request, code, pmp};

use crate::{
    metrics::Metrics,
    pinhole::PinholeError,
    policy::Refusal,
    share::{LanSubnet, Origin, Proto, ShareError, ShareId, ShareSpec},
    table::{Ask, Hunt, Mechanism, Release, TableError, TableHandle},
};

/// How long an error answer tells the client to wait: a refusal of policy stands for half an
/// hour, a shortage for half a minute (RFC 6887 section 7.2 leaves the numbers to the server).
const LONG_ERROR: u32 = 1800;
const SHORT_ERROR: u32 = 30;

/// Answers NAT-PMP and PCP requests from LAN clients.
pub struct Responder {
    pub table: TableHandle,
    pub metrics: Arc<Metrics>,
    pub lan: Vec<LanSubnet>,
    /// The LAN's global IPv6 prefixes: who may ask over IPv6 ([`six`]).
    pub lan6: Vec<crate::pinhole::Prefix6>,
    /// Epoch 0.
    pub started: Instant,
}

/// A refusal: the PCP result code and what the log says.
struct Fail(u8, String);

impl Fail {
    fn new(code: u8, detail: impl Into<String>) -> Self {
        Self(code, detail.into())
    }
}

/// The result code a refused table change is for PCP and NAT-PMP: the one translation of
/// [`TableError`] for them. `exact`: only the port asked for would do (`PREFER_FAILURE`), so
/// a port the rules or the box keep is a port that cannot be provided.
fn table_code(err: &TableError, exact: bool) -> u8 {
    match err {
        TableError::Refused(Refusal::Rule { .. }) if exact => code::CANNOT_PROVIDE_EXTERNAL,
        TableError::Refused(
            Refusal::Disabled
            | Refusal::PcpDisabled
            | Refusal::Device(_)
            | Refusal::NotSelf { .. }
            | Refusal::NotSelf6 { .. }
            | Refusal::Rule { .. },
        )
        | TableError::NotOwner(..)
        | TableError::PinholeNotOwner(..)
        | TableError::Static(_) => code::NOT_AUTHORIZED,
        TableError::BoxListens { .. }
        | TableError::Conflict { .. }
        | TableError::NoFreePort { .. } => code::CANNOT_PROVIDE_EXTERNAL,
        TableError::Pinhole { source, .. } => match source {
            PinholeError::Full { .. } => code::NO_RESOURCES,
            PinholeError::Duplicate(_) | PinholeError::NotOnLan { .. } => code::NOT_AUTHORIZED,
        },
        TableError::Share { source, .. } => match source {
            ShareError::Duplicate(_)
            | ShareError::InternalInUse { .. }
            | ShareError::Overlap { .. } => code::CANNOT_PROVIDE_EXTERNAL,
            ShareError::Full { .. } => code::NO_RESOURCES,
            ShareError::NotOnLan { .. } => code::NOT_AUTHORIZED,
            ShareError::Spec(_) => code::MALFORMED_REQUEST,
        },
        TableError::Quota { .. } => code::USER_EX_QUOTA,
        // Deleting what is not there is no error; callers do not get here with it.
        TableError::NoSuchShare(_) | TableError::NoSuchPinhole(_) => code::SUCCESS,
        // The owner's exposed host is no PCP request's.
        TableError::NotExposable(_)
        | TableError::NoSuchExposedHost(_)
        | TableError::Dataplane(_)
        | TableError::Store(_)
        | TableError::Stopped => code::NETWORK_FAILURE,
    }
}

/// The NAT-PMP result code for a PCP one (NAT-PMP has six).
fn pmp_code(pcp: u8) -> u16 {
    match pcp {
        code::SUCCESS => pmp::SUCCESS,
        code::NOT_AUTHORIZED => pmp::NOT_AUTHORIZED,
        code::NETWORK_FAILURE => pmp::NETWORK_FAILURE,
        _ => pmp::NO_RESOURCES,
    }
}

fn table_fail(err: &TableError, exact: bool) -> Fail {
    Fail::new(table_code(err, exact), crate::error_chain(err))
}

fn error_lifetime(code: u8) -> u32 {
    match code {
        code::NETWORK_FAILURE
        | code::NO_RESOURCES
        | code::USER_EX_QUOTA
        | code::CANNOT_PROVIDE_EXTERNAL => SHORT_ERROR,
        _ => LONG_ERROR,
    }
}

/// What a mapping request asks of the table, whichever protocol carried it.
struct Mapping {
    origin: Origin,
    mechanism: Mechanism,
    proto: Proto,
    internal: SocketAddrV4,
    /// 0: any.
    external_port: u16,
    remote: Option<Ipv4Addr>,
    lifetime: u32,
    /// Only the port asked for will do.
    exact: bool,
}

/// A mapping made: the external port and the lifetime granted.
struct Granted {
    external_port: u16,
    lifetime: u32,
}

impl Responder {
    /// Seconds since epoch 0.
    #[must_use]
    pub fn epoch(&self) -> u32 {
        u32::try_from(self.started.elapsed().as_secs()).unwrap_or(u32::MAX)
    }

    /// The answer to one datagram from `from`, if it deserves one.
    pub async fn answer(&self, from: Ipv4Addr, datagram: &[u8]) -> Option<Vec<u8>> {
        if !self.lan.iter().any(|s| s.has_host(from)) {
            tracing::debug!("NAT-PMP/PCP datagram from {from}, not a LAN host: dropped");
            return None;
        }
        let epoch = self.epoch();
        match wire::parse(datagram) {
            Err(Refused::Drop(why)) => {
                tracing::debug!("NAT-PMP/PCP datagram from {from} dropped: {why}");
                self.metrics.request("natpmp", "unknown", "dropped");
                None
            }
            Err(Refused::Pmp { opcode, result }) => {
                self.metrics.request("natpmp", "unknown", "unsupp_opcode");
                Some(wire::pmp_reply(opcode, result, epoch, &[]))
            }
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
            Ok(Request::PmpExternal) => {
                let external = self.table.snapshot().external;
                let result = if external.is_some() {
                    pmp::SUCCESS
                } else {
                    pmp::NETWORK_FAILURE
                };
                self.metrics
                    .request("natpmp", "external_address", result_name(result));
                Some(wire::pmp_external_reply(result, epoch, external))
            }
            Ok(Request::PmpMap {
                proto,
                internal_port,
                external_port,
                lifetime,
            }) => {
                let mapping = Mapping {
                    origin: Origin::Natpmp { client: from },
                    mechanism: Mechanism::Natpmp,
                    proto,
                    internal: SocketAddrV4::new(from, internal_port),
                    external_port,
                    remote: None,
                    lifetime,
                    exact: false,
                };
                let (result, granted) = match self.map(mapping).await {
                    Ok(granted) => (pmp::SUCCESS, granted),
                    Err(Fail(code, detail)) => {
                        tracing::info!("NAT-PMP mapping for {from} refused: {detail}");
                        (
                            pmp_code(code),
                            Granted {
                                external_port: 0,
                                lifetime: 0,
                            },
                        )
                    }
                };
                self.metrics.request("natpmp", "map", result_name(result));
                Some(wire::pmp_map_reply(
                    proto,
                    result,
                    epoch,
                    internal_port,
                    granted.external_port,
                    granted.lifetime,
                ))
            }
            Ok(Request::Pcp(request)) => Some(self.pcp(IpAddr::V4(from), &request, epoch).await),
        }
    }

    /// A PCP request from `from`: over IPv4 a MAP or PEER is a share ([`Self::pcp_map`]),
    /// over IPv6 a pinhole ([`six`]).
    async fn pcp(&self, from: IpAddr, request: &Pcp, epoch: u32) -> Vec<u8> {
        let (opcode, action) = match &request.op {
            PcpOp::Announce => (code::OP_ANNOUNCE, "announce"),
            PcpOp::Map(_) => (code::OP_MAP, "map"),
            PcpOp::Peer { .. } => (code::OP_PEER, "peer"),
        };
        let answer = match &request.op {
            PcpOp::Announce => Ok((0, Vec::new())),
            PcpOp::Map(map) => self.map_or_open(from, request, map, None).await,
            PcpOp::Peer {
                map,
                remote_port,
                remote,
            } => self
                .map_or_open(from, request, map, Some((*remote_port, *remote)))
                .await
                .map(|(lifetime, mut body)| {
                    body.extend(wire::peer_fields(*remote_port, *remote));
                    (lifetime, body)
                }),
        };
        match answer {
            Ok((lifetime, mut body)) => {
                self.metrics.request("pcp", action, "ok");
                if !matches!(request.op, PcpOp::Announce) {
                    body.extend(wire::encode_options(&request.options));
                }
                wire::pcp_reply(opcode, code::SUCCESS, lifetime, epoch, &body)
            }
            Err(Fail(result, detail)) => {
                tracing::info!("PCP {action} from {from} refused: {detail}");
                self.metrics.request("pcp", action, code::name(result));
                wire::pcp_reply(opcode, result, error_lifetime(result), epoch, &request.body)
            }
        }
    }

    async fn map_or_open(
        &self,
        from: IpAddr,
        request: &Pcp,
        map: &Map,
        peer: Option<(u16, Ipv6Addr)>,
    ) -> Result<(u32, Vec<u8>), Fail> {
        match from {
            IpAddr::V4(from) => self.pcp_map(from, request, map, peer).await,
            IpAddr::V6(from) => self.pinhole(from, request, map, peer).await,
        }
    }

    /// MAP, or PEER with `peer`: the lifetime granted and the MAP fields of the answer.
    async fn pcp_map(
        &self,
        from: Ipv4Addr,
        request: &Pcp,
        map: &Map,
        peer: Option<(u16, Ipv6Addr)>,
    ) -> Result<(u32, Vec<u8>), Fail> {
        let (internal_addr, proto) = self.pcp_subject(from, request, map)?;
        let origin = Origin::Pcp {
            client: internal_addr,
            nonce: map.nonce,
        };
        if request.lifetime == 0 {
            self.unmap(origin, proto, map.internal_port).await?;
            let fields = wire::map_fields(map, 0, Ipv6Addr::UNSPECIFIED);
            return Ok((0, fields));
        }
        let Some(proto) = proto.filter(|_| map.internal_port != 0) else {
            return Err(Fail::new(
                code::UNSUPP_PROTOCOL,
                "mapping every port (internal port 0) is not offered",
            ));
        };
        let remote = match peer {
            Some((port, addr)) => {
                if port == 0 || addr.is_unspecified() {
                    return Err(Fail::new(
                        code::MALFORMED_REQUEST,
                        "PEER without a remote peer",
                    ));
                }
                Some(addr.to_ipv4_mapped().ok_or_else(|| {
                    Fail::new(
                        code::MALFORMED_REQUEST,
                        format!("remote peer {addr} is not an IPv4 address"),
                    )
                })?)
            }
            None => filter_remote(&request.options.filters)?,
        };
        let Some(external) = self.table.snapshot().external else {
            return Err(Fail::new(
                code::NETWORK_FAILURE,
                "the box has no external address",
            ));
        };
        let wanted_addr = map.external.to_ipv4_mapped();
        if request.options.prefer_failure
            && !map.external.is_unspecified()
            && wanted_addr != Some(Ipv4Addr::UNSPECIFIED)
            && wanted_addr != Some(external)
        {
            return Err(Fail::new(
                code::CANNOT_PROVIDE_EXTERNAL,
                format!("the external address is {external}"),
            ));
        }
        let granted = self
            .map(Mapping {
                origin,
                mechanism: Mechanism::Pcp,
                proto,
                internal: SocketAddrV4::new(internal_addr, map.internal_port),
                external_port: map.external_port,
                remote,
                lifetime: request.lifetime,
                exact: request.options.prefer_failure,
            })
            .await?;
        let fields = wire::map_fields(map, granted.external_port, external.to_ipv6_mapped());
        Ok((granted.lifetime, fields))
    }

    /// Whose ports a MAP or PEER is about (the client, or a `THIRD_PARTY`) and of which
    /// protocol (`None`: all, for deleting).
    fn pcp_subject(
        &self,
        from: Ipv4Addr,
        request: &Pcp,
        map: &Map,
    ) -> Result<(Ipv4Addr, Option<Proto>), Fail> {
        if request.client.to_ipv4_mapped() != Some(from) {
            return Err(Fail::new(
                code::ADDRESS_MISMATCH,
                format!(
                    "the request says the client is {}, it came from {from}",
                    request.client
                ),
            ));
        }
        let internal_addr = match request.options.third_party {
            None => from,
            Some(_) if !self.table.snapshot().settings.pcp.third_party => {
                return Err(Fail::new(
                    code::UNSUPP_OPTION,
                    "THIRD_PARTY is not allowed here (pcp.third_party)",
                ));
            }
            Some(addr) => addr.to_ipv4_mapped().ok_or_else(|| {
                Fail::new(
                    code::MALFORMED_OPTION,
                    format!("THIRD_PARTY {addr} is not an IPv4 address"),
                )
            })?,
        };
        let proto = protocol(map)?;
        Ok((internal_addr, proto))
    }

    /// Makes or renews the share `mapping` describes: the table's owner admits it.
    async fn map(&self, mapping: Mapping) -> Result<Granted, Fail> {
        if mapping.lifetime == 0 {
            self.unmap(mapping.origin, Some(mapping.proto), mapping.internal.port())
                .await?;
            return Ok(Granted {
                external_port: 0,
                lifetime: 0,
            });
        }
        if mapping.internal.port() == 0 {
            return Err(Fail::new(
                code::NOT_AUTHORIZED,
                "internal port 0 maps nothing",
            ));
        }
        let exact = mapping.exact;
        let ask = Ask {
            origin: mapping.origin,
            mechanism: mapping.mechanism,
            spec: ShareSpec {
                id: ShareId::single(mapping.proto, mapping.external_port, mapping.remote),
                internal: mapping.internal,
                name: None,
                enabled: true,
                hairpin: true,
            },
            hunt: if exact { Hunt::Exact } else { Hunt::Near },
            lease: mapping.lifetime,
        };
        let granted = self
            .table
            .change(move |t| t.admit(ask))
            .await
            .map_err(|e| table_fail(&e, exact))?;
        Ok(Granted {
            external_port: granted.port,
            lifetime: granted.lease.map_or(u32::MAX, |lease| {
                u32::try_from(lease.as_secs()).unwrap_or(u32::MAX)
            }),
        })
    }

    /// Deletes the shares of `origin`'s client of `proto` (`None`: any) and internal port
    /// `port` (0: all its shares), made by the same protocol (and for PCP, with the same
    /// nonce). Deleting what is not there succeeds, as both RFCs say.
    async fn unmap(&self, origin: Origin, proto: Option<Proto>, port: u16) -> Result<(), Fail> {
        let nonce = match origin {
            Origin::Pcp { nonce, .. } => Some(nonce),
            _ => None,
        };
        self.table
            .change(move |t| {
                t.release(Release {
                    origin,
                    proto,
                    port,
                    nonce,
                })
            })
            .await
            .map(drop)
            .map_err(|err| match err {
                TableError::NotOwner(id, _) => Fail::new(
                    code::NOT_AUTHORIZED,
                    format!("{id} was made with another nonce"),
                ),
                err => table_fail(&err, false),
            })
    }
}

/// The protocol a MAP or PEER names (`None`: all, which only deleting may ask for).
fn protocol(map: &Map) -> Result<Option<Proto>, Fail> {
    match map.protocol {
        6 => Ok(Some(Proto::Tcp)),
        17 => Ok(Some(Proto::Udp)),
        0 if map.internal_port == 0 => Ok(None),
        0 => Err(Fail::new(
            code::MALFORMED_REQUEST,
            "protocol 0 (all) with an internal port",
        )),
        other => Err(Fail::new(
            code::UNSUPP_PROTOCOL,
            format!("protocol {other}: TCP and UDP only"),
        )),
    }
}

/// The remote host PCP `FILTER` options restrict a mapping to, where the data plane can
/// enforce it.
fn filter_remote(filters: &[wire::Filter]) -> Result<Option<Ipv4Addr>, Fail> {
    match filters {
        [] => Ok(None),
        [f] if f.prefix_len == 0 => Ok(None),
        [f] if f.prefix_len == 128 && f.remote_port == 0 => {
            f.remote.to_ipv4_mapped().map(Some).ok_or_else(|| {
                Fail::new(
                    code::MALFORMED_OPTION,
                    format!("FILTER remote {} is not an IPv4 address", f.remote),
                )
            })
        }
        _ => Err(Fail::new(
            code::EXCESSIVE_REMOTE_PEERS,
            "one FILTER for one whole remote host (prefix 128, any port) is what can be installed",
        )),
    }
}

fn result_name(result: u16) -> &'static str {
    match result {
        pmp::SUCCESS => "ok",
        pmp::UNSUPP_VERSION => "unsupp_version",
        pmp::NOT_AUTHORIZED => "not_authorized",
        pmp::NETWORK_FAILURE => "network_failure",
        pmp::NO_RESOURCES => "no_resources",
        _ => "unsupp_opcode",
    }
}

/// Binds UDP 5351 on the LAN address with `SO_BINDTODEVICE`, so nothing from the WAN reaches
/// it.
pub fn bind(lan: &str, lan_addr: Ipv4Addr) -> std::io::Result<UdpSocket> {
    let socket = socket2::Socket::new(
        socket2::Domain::IPV4,
        socket2::Type::DGRAM,
        Some(socket2::Protocol::UDP),
    )?;
    socket.set_reuse_address(true)?;
    socket.bind_device(Some(lan.as_bytes()))?;
    socket.bind(&SocketAddrV4::new(lan_addr, wire::SERVER_PORT).into())?;
    socket.set_multicast_if_v4(&lan_addr)?;
    socket.set_multicast_loop_v4(false)?;
    socket.set_nonblocking(true)?;
    UdpSocket::from_std(socket.into())
}

/// Where announcements go: all hosts on the LAN, the clients' port.
pub const ANNOUNCE_TO: SocketAddrV4 =
    SocketAddrV4::new(Ipv4Addr::new(224, 0, 0, 1), wire::CLIENT_PORT);

/// Serves `socket` until `shutdown` completes, announcing the external address at start and
/// whenever it changes.
pub async fn serve(
    socket: UdpSocket,
    responder: Arc<Responder>,
    shutdown: impl Future<Output = ()>,
) {
    let socket = Arc::new(socket);
    let announcer = tokio::spawn(announce(Arc::clone(&socket), Arc::clone(&responder)));
    answer_on(&socket, &responder, shutdown).await;
    announcer.abort();
}

/// Answers the datagrams `socket` receives until `shutdown` completes: an IPv4 sender's as
/// NAT-PMP or PCP ([`Responder::answer`]), an IPv6 sender's as PCP over IPv6
/// ([`Responder::answer6`]).
async fn answer_on(socket: &UdpSocket, responder: &Responder, shutdown: impl Future<Output = ()>) {
    let mut buf = vec![0u8; wire::MAX_MESSAGE + 4];
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            received = socket.recv_from(&mut buf) => {
                let (len, from) = match received {
                    Ok(r) => r,
                    Err(err) => {
                        tracing::warn!("NAT-PMP/PCP socket: {err}");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                };
                let answer = match from {
                    SocketAddr::V4(v4) => responder.answer(*v4.ip(), &buf[..len]).await,
                    SocketAddr::V6(v6) if v6.ip().to_ipv4_mapped().is_none() => {
                        responder.answer6(*v6.ip(), &buf[..len]).await
                    }
                    SocketAddr::V6(_) => None,
                };
                if let Some(answer) = answer
                    && let Err(err) = socket.send_to(&answer, from).await
                {
                    tracing::debug!("answering {from}: {err}");
                }
            }
        }
    }
}

/// Sends the address-change announcements: NAT-PMP's external-address answer and PCP's
/// unsolicited ANNOUNCE, ten times at 250 ms doubling (RFC 6886 section 3.2.1, RFC 6887
/// section 14.1.3), after start and after every change of the external address.
async fn announce(socket: Arc<UdpSocket>, responder: Arc<Responder>) {
    let mut snapshots = responder.table.snapshots();
    let mut announced = None;
    let (mut left, mut delay) = (0u32, Duration::ZERO);
    loop {
        let external = snapshots.borrow_and_update().external;
        if external.is_some() && announced != Some(external) {
            announced = Some(external);
            (left, delay) = (10, Duration::ZERO);
        }
        let due = async {
            if left == 0 {
                std::future::pending::<()>().await;
            }
            tokio::time::sleep(delay).await;
        };
        tokio::select! {
            () = due => {
                let epoch = responder.epoch();
                for message in [
                    wire::pmp_external_reply(pmp::SUCCESS, epoch, external),
                    wire::pcp_reply(code::OP_ANNOUNCE, code::SUCCESS, 0, epoch, &[]),
                ] {
                    if let Err(err) = socket.send_to(&message, ANNOUNCE_TO).await {
                        tracing::debug!("announcing to {ANNOUNCE_TO}: {err}");
                    }
                }
                left -= 1;
                delay = if delay.is_zero() { Duration::from_millis(250) } else { delay * 2 };
            }
            changed = snapshots.changed() => if changed.is_err() { return },
        }
    }
}
