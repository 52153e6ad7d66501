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

use std::{
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4},
    sync::Arc,
    time::{Duration, Instant},
};

use serde::Deserialize;
use tokio::{net::UdpSocket, sync::watch};
use wire::{Map, Pcp, PcpOp, Refused, Request, code, pmp};

use crate::{
    metrics::Metrics,
    share::{LanSubnet, Nonce, Origin, Proto, ShareError, ShareId, ShareSpec},
    table::{By, LeaseRequest, ShareEntry, TableError, TableHandle},
    upnp::{
        Settings,
        control::{Host, listens, nearest},
        policy::Refusal,
    },
};

/// The `[pcp]` section: NAT-PMP and PCP.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PcpSettings {
    /// Off: every mapping request is answered `NOT_AUTHORIZED`.
    pub enabled: bool,
    /// Whether a client may map ports for another host (PCP `THIRD_PARTY`); secure mode still
    /// applies.
    pub third_party: bool,
    /// Seconds: shorter lifetimes asked for are raised to this.
    pub min_lifetime: u32,
    /// Seconds: longer lifetimes asked for are cut to this.
    pub max_lifetime: u32,
}

impl Default for PcpSettings {
    fn default() -> Self {
        Self {
            enabled: true,
            third_party: false,
            min_lifetime: 120,
            max_lifetime: 86_400,
        }
    }
}

impl PcpSettings {
    /// Checks the section.
    pub fn check(&self) -> Result<(), String> {
        if self.min_lifetime == 0 || self.min_lifetime > self.max_lifetime {
            return Err(format!(
                "pcp.min_lifetime ({}) must be at least 1 and at most pcp.max_lifetime ({})",
                self.min_lifetime, self.max_lifetime
            ));
        }
        Ok(())
    }
}

/// How long an error answer tells the client to wait: a refusal of policy stands for half an
/// hour, a shortage for half a minute (RFC 6887 section 7.2 leaves the numbers to the server).
const LONG_ERROR: u32 = 1800;
const SHORT_ERROR: u32 = 30;

/// How many nearby ports are tried when the one asked for is taken.
const ALTERNATIVES: usize = 8;

/// Answers NAT-PMP and PCP requests from LAN clients.
pub struct Responder {
    pub table: TableHandle,
    pub metrics: Arc<Metrics>,
    pub settings: watch::Receiver<Arc<Settings>>,
    pub pcp: PcpSettings,
    pub host: Arc<dyn Host>,
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

/// The result code a refused table change is for PCP.
fn table_code(err: &TableError) -> u8 {
    match err {
        TableError::Conflict { .. }
        | TableError::NoFreePort(_)
        | TableError::Pinhole { .. }
        | TableError::Share {
            source: ShareError::Duplicate(_) | ShareError::InternalInUse { .. },
            ..
        } => code::CANNOT_PROVIDE_EXTERNAL,
        TableError::Quota { .. } => code::USER_EX_QUOTA,
        TableError::Share {
            source: ShareError::Full { .. },
            ..
        } => code::NO_RESOURCES,
        TableError::Share {
            source: ShareError::NotOnLan { .. },
            ..
        }
        | TableError::NotOwner(..)
        | TableError::PinholeNotOwner(..)
        | TableError::Static(_) => code::NOT_AUTHORIZED,
        // Deleting what is not there is no error; callers do not get here with it.
        TableError::NoSuchShare(_) | TableError::NoSuchPinhole(_) => code::SUCCESS,
        TableError::Dataplane(_) | TableError::State(_) | TableError::Stopped => {
            code::NETWORK_FAILURE
        }
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

fn table_fail(err: &TableError) -> Fail {
    Fail::new(table_code(err), crate::error_chain(err))
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
struct Ask {
    origin: Origin,
    proto: Proto,
    internal: SocketAddrV4,
    /// 0: any.
    external_port: u16,
    remote: Option<Ipv4Addr>,
    lifetime: u32,
    /// Only the port asked for will do.
    exact: bool,
    /// The box's external address now (the box's own ports there are not handed out).
    external: Option<Ipv4Addr>,
}

/// A mapping made: the external port and the lifetime granted.
struct Granted {
    external_port: u16,
    lifetime: u32,
}

impl Responder {
    fn settings(&self) -> Arc<Settings> {
        self.settings.borrow().clone()
    }

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
                let external = self.table.external().await.ok().flatten();
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
                let ask = Ask {
                    origin: Origin::Natpmp { client: from },
                    proto,
                    internal: SocketAddrV4::new(from, internal_port),
                    external_port,
                    remote: None,
                    lifetime,
                    exact: false,
                    external: self.table.external().await.ok().flatten(),
                };
                let (result, granted) = match self.map(ask).await {
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
            self.unmap(origin, proto, map.internal_port, Some(map.nonce))
                .await?;
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
        let external = self.table.external().await.ok().flatten();
        let Some(external) = external else {
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
            .map(Ask {
                origin,
                proto,
                internal: SocketAddrV4::new(internal_addr, map.internal_port),
                external_port: map.external_port,
                remote,
                lifetime: request.lifetime,
                exact: request.options.prefer_failure,
                external: Some(external),
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
            Some(_) if !self.pcp.third_party => {
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

    async fn entries(&self) -> Result<Vec<ShareEntry>, Fail> {
        self.table.entries().await.map_err(|e| table_fail(&e))
    }

    /// Makes or renews the share `ask` describes.
    async fn map(&self, ask: Ask) -> Result<Granted, Fail> {
        let client = ask.origin.client().unwrap_or(Ipv4Addr::UNSPECIFIED);
        if ask.lifetime == 0 {
            self.unmap(ask.origin, Some(ask.proto), ask.internal.port(), None)
                .await?;
            return Ok(Granted {
                external_port: 0,
                lifetime: 0,
            });
        }
        let shares = self.entries().await?;
        if let Origin::Pcp { nonce: asked, .. } = ask.origin
            && let Some(Origin::Pcp { nonce, .. }) = shares
                .iter()
                .find(|s| same_endpoint(s, ask.proto, ask.internal))
                .map(|s| s.origin)
            && nonce != asked
        {
            return Err(Fail::new(
                code::NOT_AUTHORIZED,
                "the mapping of this internal port was made with another nonce",
            ));
        }
        if !self.pcp.enabled {
            return Err(Fail::new(
                code::NOT_AUTHORIZED,
                "NAT-PMP and PCP are turned off (pcp.enabled)",
            ));
        }
        if ask.internal.port() == 0 {
            return Err(Fail::new(
                code::NOT_AUTHORIZED,
                "internal port 0 maps nothing",
            ));
        }
        let settings = self.settings();
        settings
            .check_device(client, self.host.mac_of(client))
            .map_err(|r| Fail::new(code::NOT_AUTHORIZED, r.to_string()))?;
        let lease = self.lifetime(ask.lifetime, &settings);
        let spec = |ext_port| ShareSpec {
            id: ShareId {
                proto: ask.proto,
                ext_port,
                remote: ask.remote,
            },
            internal: ask.internal,
            name: None,
            enabled: true,
        };
        let request = |ext_port| LeaseRequest {
            spec: spec(ext_port),
            origin: ask.origin,
            lease: Some(lease),
            limits: settings.limits,
        };
        let granted = |external_port| Granted {
            external_port,
            lifetime: u32::try_from(lease.as_secs()).unwrap_or(u32::MAX),
        };
        // The client's own share of this internal port: renewed where it is.
        if let Some(mine) = shares.iter().find(|s| {
            s.origin.client() == Some(client)
                && s.origin.source() == ask.origin.source()
                && s.spec.id.remote == ask.remote
                && same_endpoint(s, ask.proto, ask.internal)
        }) && (!ask.exact || ask.external_port == mine.spec.id.ext_port)
        {
            let port = mine.spec.id.ext_port;
            self.table
                .lease(request(port))
                .await
                .map_err(|e| table_fail(&e))?;
            return Ok(granted(port));
        }
        let wanted = if ask.external_port == 0 {
            ask.internal.port()
        } else {
            ask.external_port
        };
        let (ip, port) = (*ask.internal.ip(), ask.internal.port());
        if let Err(refusal @ Refusal::NotSelf { .. }) =
            settings.check_mapping(client, wanted, ip, port)
        {
            return Err(Fail::new(code::NOT_AUTHORIZED, refusal.to_string()));
        }
        let candidates = self.candidates(&ask, wanted, &shares, &settings)?;
        let port = self
            .table
            .lease_any(request(wanted), candidates)
            .await
            .map_err(|e| table_fail(&e))?;
        Ok(granted(port))
    }

    /// The external ports to try for `ask`, in order: `wanted` alone if only it will do, else
    /// the nearest ones free and allowed.
    fn candidates(
        &self,
        ask: &Ask,
        wanted: u16,
        shares: &[ShareEntry],
        settings: &Settings,
    ) -> Result<Vec<u16>, Fail> {
        let client = ask.origin.client().unwrap_or(Ipv4Addr::UNSPECIFIED);
        let (ip, port) = (*ask.internal.ip(), ask.internal.port());
        let listening = self.host.listening(ask.proto);
        let usable = |p: u16| {
            !shares
                .iter()
                .any(|s| s.spec.id.proto == ask.proto && s.spec.id.ext_port == p)
                && settings.check_mapping(client, p, ip, port).is_ok()
                && !listens(&listening, p, ask.external)
        };
        let candidates: Vec<u16> = if ask.exact {
            vec![wanted]
        } else {
            nearest(wanted)
                .filter(|&p| usable(p))
                .take(ALTERNATIVES)
                .collect()
        };
        if candidates.is_empty() {
            return Err(Fail::new(
                code::NOT_AUTHORIZED,
                format!("no rule allows an external port near {wanted} for {ip}:{port}"),
            ));
        }
        if ask.exact && !usable(wanted) {
            let why = settings
                .check_mapping(client, wanted, ip, port)
                .map_or_else(|r| r.to_string(), |()| format!("port {wanted} is taken"));
            return Err(Fail::new(code::CANNOT_PROVIDE_EXTERNAL, why));
        }
        Ok(candidates)
    }

    /// The lease a client asking for `requested` seconds gets.
    fn lifetime(&self, requested: u32, settings: &Settings) -> Duration {
        let secs = requested.clamp(self.pcp.min_lifetime, self.pcp.max_lifetime);
        let lease = Duration::from_secs(u64::from(secs));
        settings.max_lease.map_or(lease, |cap| lease.min(cap))
    }

    /// Deletes the share of `origin`'s client of `proto` (`None`: any) and internal port
    /// `port` (0: all its shares), made by the same protocol (and for PCP, with `nonce`).
    /// Deleting what is not there succeeds, as both RFCs say.
    async fn unmap(
        &self,
        origin: Origin,
        proto: Option<Proto>,
        port: u16,
        nonce: Option<Nonce>,
    ) -> Result<(), Fail> {
        let client = origin.client().unwrap_or(Ipv4Addr::UNSPECIFIED);
        let shares = self.entries().await?;
        let mine = shares.iter().filter(|s| {
            s.origin.client() == Some(client)
                && s.origin.source() == origin.source()
                && proto.is_none_or(|p| p == s.spec.id.proto)
                && *s.spec.internal.ip() == client
                && (port == 0 || s.spec.internal.port() == port)
        });
        for share in mine {
            if let (Some(nonce), Origin::Pcp { nonce: theirs, .. }) = (nonce, share.origin)
                && nonce != theirs
            {
                if port == 0 {
                    continue;
                }
                return Err(Fail::new(
                    code::NOT_AUTHORIZED,
                    format!("{} was made with another nonce", share.spec.id),
                ));
            }
            match self.table.remove(share.spec.id, By::Client(origin)).await {
                Ok(_) | Err(TableError::NoSuchShare(_)) => {}
                Err(err) => return Err(table_fail(&err)),
            }
        }
        Ok(())
    }
}

/// Whether `share` shares `internal` of `proto`.
fn same_endpoint(share: &ShareEntry, proto: Proto, internal: SocketAddrV4) -> bool {
    share.spec.id.proto == proto && share.spec.internal == internal
}

/// The remote host PCP `FILTER` options restrict a mapping to, where the data plane can
/// enforce it.
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
    let Ok(mut events) = responder.table.subscribe().await else {
        return;
    };
    let mut announced = None;
    let (mut left, mut delay) = (0u32, Duration::ZERO);
    loop {
        let external = responder.table.external().await.ok().flatten();
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
            changed = events.changed() => if changed.is_err() { return },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        dataplane::MemoryMaps,
        table::{self, Table},
        upnp::{control::WanStats, policy::UpnpConfig},
    };

    const ME: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 10);
    const OTHER: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 11);
    const EXTERNAL: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 1);

    struct Quiet;

    impl Host for Quiet {
        fn neighbours(&self) -> Vec<(Ipv4Addr, [u8; 6])> {
            Vec::new()
        }
        fn neighbours6(&self) -> Vec<(Ipv6Addr, [u8; 6])> {
            Vec::new()
        }
        fn listening(&self, _: Proto) -> Vec<(Option<Ipv4Addr>, u16)> {
            vec![(None, 6500)]
        }
        fn wan_up(&self) -> bool {
            true
        }
        fn wan_stats(&self) -> WanStats {
            WanStats::default()
        }
    }

    fn responder(upnp: &str, pcp: PcpSettings) -> Responder {
        let lan = vec![LanSubnet {
            addr: Ipv4Addr::new(10, 0, 0, 1),
            prefix_len: 24,
        }];
        let mut table = Table::new(lan.clone(), MemoryMaps::default(), 1, 2);
        table.set_external(Some(EXTERNAL)).expect("external");
        table.set_lan6(lan6());
        table
            .replace_static(vec!["tcp:8080=10.0.0.20:80".parse().expect("spec")])
            .expect("static");
        let (handle, _task) = table::spawn(table);
        let settings = toml::from_str::<UpnpConfig>(upnp)
            .expect("toml")
            .compile()
            .expect("settings");
        Responder {
            table: handle,
            metrics: Arc::default(),
            settings: watch::Sender::new(Arc::new(settings)).subscribe(),
            pcp,
            host: Arc::new(Quiet),
            lan,
            lan6: lan6(),
            started: Instant::now(),
        }
    }

    fn lan6() -> Vec<crate::pinhole::Prefix6> {
        vec![crate::pinhole::Prefix6 {
            addr: "2001:db8:77::1".parse().expect("addr"),
            prefix_len: 64,
        }]
    }

    const ME6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0x77, 0, 0, 0, 0, 0x10);

    /// A PCP MAP from `client` over IPv6 for its own `port`, suggesting `external`.
    fn map6(client: Ipv6Addr, nonce: u8, port: u16, external: u16, lifetime: u32) -> Vec<u8> {
        let mut d = vec![2, code::OP_MAP, 0, 0];
        d.extend_from_slice(&lifetime.to_be_bytes());
        d.extend_from_slice(&client.octets());
        d.extend_from_slice(&[nonce; 12]);
        d.extend_from_slice(&[6, 0, 0, 0]);
        d.extend_from_slice(&port.to_be_bytes());
        d.extend_from_slice(&external.to_be_bytes());
        d.extend_from_slice(&[0; 16]);
        d
    }

    #[tokio::test]
    async fn pcp_over_ipv6_opens_renews_and_closes_pinholes_with_its_nonce() {
        let r = responder("", PcpSettings::default());
        let answer = r
            .answer6(ME6, &map6(ME6, 1, 8443, 9000, 600))
            .await
            .expect("answer");
        assert_eq!(answer[3], code::SUCCESS, "{answer:?}");
        assert_eq!(
            u32::from_be_bytes([answer[4], answer[5], answer[6], answer[7]]),
            600
        );
        // A firewall: the external port and address are the internal ones.
        assert_eq!(u16::from_be_bytes([answer[42], answer[43]]), 8443);
        assert_eq!(&answer[44..60], &ME6.octets());
        let pinholes = r.table.pinholes().await.expect("list");
        assert_eq!(pinholes.len(), 1);
        assert_eq!(
            pinholes[0].pinhole.spec.id.to_string(),
            "tcp:[2001:db8:77::10]:8443"
        );
        assert_eq!(
            pinholes[0].pinhole.origin,
            Origin::Pcp6 {
                client: ME6,
                nonce: [1; 12]
            }
        );

        // Another nonce can neither take it over nor delete it; the right one renews it.
        let other = r
            .answer6(ME6, &map6(ME6, 2, 8443, 0, 600))
            .await
            .expect("answer");
        assert_eq!(other[3], code::NOT_AUTHORIZED);
        let other = r
            .answer6(ME6, &map6(ME6, 2, 8443, 0, 0))
            .await
            .expect("answer");
        assert_eq!(other[3], code::NOT_AUTHORIZED);
        let renewed = r
            .answer6(ME6, &map6(ME6, 1, 8443, 0, 10))
            .await
            .expect("answer");
        assert_eq!(renewed[3], code::SUCCESS);
        assert_eq!(
            u32::from_be_bytes([renewed[4], renewed[5], renewed[6], renewed[7]]),
            120,
            "raised to the minimum lifetime"
        );

        // The header must name the sender; PREFER_FAILURE with another port cannot be had.
        let lying = r
            .answer6(
                ME6,
                &map6("2001:db8:77::11".parse().expect("addr"), 1, 8443, 0, 60),
            )
            .await
            .expect("answer");
        assert_eq!(lying[3], code::ADDRESS_MISMATCH);
        let mut prefer = map6(ME6, 1, 5000, 6000, 60);
        prefer.extend_from_slice(&[2, 0, 0, 0]);
        let refused = r.answer6(ME6, &prefer).await.expect("answer");
        assert_eq!(refused[3], code::CANNOT_PROVIDE_EXTERNAL);

        // Not a host of the LAN prefix, or NAT-PMP over IPv6: no answer at all.
        let outside: Ipv6Addr = "2001:db8:99::10".parse().expect("addr");
        assert!(
            r.answer6(outside, &map6(outside, 1, 8443, 0, 60))
                .await
                .is_none()
        );
        assert!(r.answer6(ME6, &[0, 0]).await.is_none());

        let closed = r
            .answer6(ME6, &map6(ME6, 1, 8443, 0, 0))
            .await
            .expect("answer");
        assert_eq!(closed[3], code::SUCCESS);
        assert!(r.table.pinholes().await.expect("list").is_empty());
        let again = r
            .answer6(ME6, &map6(ME6, 1, 8443, 0, 0))
            .await
            .expect("answer");
        assert_eq!(
            again[3],
            code::SUCCESS,
            "closing what is not there succeeds"
        );
    }

    fn pmp_map(proto: u8, internal: u16, external: u16, lifetime: u32) -> Vec<u8> {
        let mut d = vec![0, proto, 0, 0];
        d.extend_from_slice(&internal.to_be_bytes());
        d.extend_from_slice(&external.to_be_bytes());
        d.extend_from_slice(&lifetime.to_be_bytes());
        d
    }

    /// (result, external port, lifetime) of a NAT-PMP mapping answer.
    fn pmp_answer(a: &[u8]) -> (u16, u16, u32) {
        assert_eq!(a.len(), 16, "{a:?}");
        (
            u16::from_be_bytes([a[2], a[3]]),
            u16::from_be_bytes([a[10], a[11]]),
            u32::from_be_bytes([a[12], a[13], a[14], a[15]]),
        )
    }

    struct PcpMap {
        op: u8,
        client: Ipv4Addr,
        nonce: u8,
        protocol: u8,
        internal: u16,
        external: u16,
        lifetime: u32,
        options: Vec<u8>,
    }

    impl PcpMap {
        fn new(internal: u16, external: u16) -> Self {
            Self {
                op: code::OP_MAP,
                client: ME,
                nonce: 1,
                protocol: 17,
                internal,
                external,
                lifetime: 3600,
                options: Vec::new(),
            }
        }

        fn bytes(&self) -> Vec<u8> {
            let mut d = vec![2, self.op, 0, 0];
            d.extend_from_slice(&self.lifetime.to_be_bytes());
            d.extend_from_slice(&self.client.to_ipv6_mapped().octets());
            d.extend_from_slice(&[self.nonce; 12]);
            d.extend_from_slice(&[self.protocol, 0, 0, 0]);
            d.extend_from_slice(&self.internal.to_be_bytes());
            d.extend_from_slice(&self.external.to_be_bytes());
            d.extend_from_slice(&[0; 16]);
            if self.op == code::OP_PEER {
                d.extend_from_slice(&[0x1f, 0x90, 0, 0]);
                d.extend_from_slice(&Ipv4Addr::new(192, 0, 2, 7).to_ipv6_mapped().octets());
            }
            d.extend_from_slice(&self.options);
            d
        }
    }

    /// (result, lifetime, external port, external address) of a PCP MAP answer.
    fn pcp_answer(a: &[u8]) -> (u8, u32, u16, Option<Ipv4Addr>) {
        assert_eq!((a[0], a[1] & 0x80), (2, 0x80), "{a:?}");
        let lifetime = u32::from_be_bytes([a[4], a[5], a[6], a[7]]);
        if a.len() < 60 {
            return (a[3], lifetime, 0, None);
        }
        let mut addr = [0u8; 16];
        addr.copy_from_slice(&a[44..60]);
        (
            a[3],
            lifetime,
            u16::from_be_bytes([a[42], a[43]]),
            Ipv6Addr::from(addr).to_ipv4_mapped(),
        )
    }

    async fn ask(r: &Responder, from: Ipv4Addr, d: &[u8]) -> Vec<u8> {
        r.answer(from, d).await.expect("an answer")
    }

    #[tokio::test]
    async fn nat_pmp_maps_renews_moves_and_deletes() {
        let r = responder("", PcpSettings::default());
        let external = ask(&r, ME, &[0, 0]).await;
        assert_eq!(&external[..4], &[0, 128, 0, 0]);
        assert_eq!(&external[8..], &EXTERNAL.octets());

        let (result, port, lifetime) =
            pmp_answer(&ask(&r, ME, &pmp_map(1, 5000, 6000, 7200)).await);
        assert_eq!((result, port, lifetime), (0, 6000, 7200));
        // Asking again for the same internal port renews it, whatever port is suggested.
        let again = pmp_answer(&ask(&r, ME, &pmp_map(1, 5000, 7000, 10)).await);
        assert_eq!(
            again,
            (0, 6000, 120),
            "renewed in place, lifetime raised to the minimum"
        );
        // Another client asking for the taken port gets the nearest free one.
        let (_, moved, _) = pmp_answer(&ask(&r, OTHER, &pmp_map(1, 5000, 6000, 60)).await);
        assert_eq!(moved, 6001);
        // The static share's port, and a port the box listens on, are skipped too.
        let (_, port, _) = pmp_answer(&ask(&r, ME, &pmp_map(2, 80, 8080, 60)).await);
        assert_eq!(port, 8081);
        let (_, port, _) = pmp_answer(&ask(&r, ME, &pmp_map(2, 2222, 6500, 60)).await);
        assert_eq!(port, 6501);
        let shares = r.table.entries().await.expect("entries");
        let mine: Vec<_> = shares
            .iter()
            .filter(|s| s.origin == Origin::Natpmp { client: ME })
            .map(|s| s.spec.to_string())
            .collect();
        assert_eq!(
            mine,
            [
                "tcp:6501=10.0.0.10:2222",
                "tcp:8081=10.0.0.10:80",
                "udp:6000=10.0.0.10:5000"
            ]
        );

        // Lifetime 0 deletes one; internal port 0 with lifetime 0 deletes all of that protocol.
        let gone = pmp_answer(&ask(&r, ME, &pmp_map(1, 5000, 0, 0)).await);
        assert_eq!(gone, (0, 0, 0));
        let all = pmp_answer(&ask(&r, ME, &pmp_map(2, 0, 0, 0)).await);
        assert_eq!(all.0, 0);
        let left = r.table.entries().await.expect("entries");
        assert!(
            left.iter().all(|s| s.origin.client() != Some(ME)),
            "{left:?}"
        );
        assert!(
            left.iter()
                .any(|s| s.origin == Origin::Natpmp { client: OTHER }),
            "another client's share stays"
        );
    }

    #[tokio::test]
    async fn nat_pmp_refusals_carry_result_codes() {
        let r = responder("devices = [\"10.0.0.10\"]", PcpSettings::default());
        let denied = pmp_answer(&ask(&r, OTHER, &pmp_map(1, 5000, 5000, 60)).await);
        assert_eq!(denied.0, pmp::NOT_AUTHORIZED);
        assert_eq!(ask(&r, ME, &[0, 7]).await, [0, 135, 0, 5, 0, 0, 0, 0]);
        assert!(r.answer(ME, &[0]).await.is_none(), "too short: dropped");
        assert!(r.answer(ME, &pmp_map(1, 1, 1, 1)[..9]).await.is_none());
        assert!(
            r.answer(Ipv4Addr::new(192, 0, 2, 1), &[0, 0])
                .await
                .is_none(),
            "not a LAN host"
        );
        let off = responder(
            "",
            PcpSettings {
                enabled: false,
                ..PcpSettings::default()
            },
        );
        let refused = pmp_answer(&ask(&off, ME, &pmp_map(1, 5000, 5000, 60)).await);
        assert_eq!(refused.0, pmp::NOT_AUTHORIZED);
        let quota = responder("quota_per_client = 1", PcpSettings::default());
        ask(&quota, ME, &pmp_map(1, 5000, 5000, 60)).await;
        let over = pmp_answer(&ask(&quota, ME, &pmp_map(1, 5001, 5001, 60)).await);
        assert_eq!(over.0, pmp::NO_RESOURCES);
    }

    #[tokio::test]
    #[expect(
        clippy::too_many_lines,
        reason = "one table, one request after another, each answer checked"
    )]
    async fn pcp_map_checks_nonce_address_and_options() {
        let r = responder("max_lease = 600", PcpSettings::default());
        let first = pcp_answer(&ask(&r, ME, &PcpMap::new(5000, 6000).bytes()).await);
        assert_eq!(
            first,
            (0, 600, 6000, Some(EXTERNAL)),
            "lifetime cut to max_lease"
        );
        let answer = ask(&r, ME, &PcpMap::new(5000, 6000).bytes()).await;
        assert_eq!(&answer[24..36], &[1; 12], "the nonce comes back");

        let other_nonce = PcpMap {
            nonce: 2,
            ..PcpMap::new(5000, 6000)
        };
        let refused = pcp_answer(&ask(&r, ME, &other_nonce.bytes()).await);
        assert_eq!((refused.0, refused.1), (code::NOT_AUTHORIZED, 1800));
        let delete_other = PcpMap {
            lifetime: 0,
            ..other_nonce
        };
        assert_eq!(
            pcp_answer(&ask(&r, ME, &delete_other.bytes()).await).0,
            code::NOT_AUTHORIZED
        );

        let spoofed = PcpMap {
            client: OTHER,
            ..PcpMap::new(5001, 5001)
        };
        assert_eq!(
            pcp_answer(&ask(&r, ME, &spoofed.bytes()).await).0,
            code::ADDRESS_MISMATCH
        );
        let prefer = PcpMap {
            options: vec![code::OPT_PREFER_FAILURE, 0, 0, 0],
            ..PcpMap::new(5002, 6000)
        };
        let taken = pcp_answer(&ask(&r, ME, &prefer.bytes()).await);
        assert_eq!((taken.0, taken.1), (code::CANNOT_PROVIDE_EXTERNAL, 30));
        let static_port = PcpMap {
            protocol: 6,
            options: vec![code::OPT_PREFER_FAILURE, 0, 0, 0],
            ..PcpMap::new(5003, 8080)
        };
        assert_eq!(
            pcp_answer(&ask(&r, ME, &static_port.bytes()).await).0,
            code::CANNOT_PROVIDE_EXTERNAL
        );
        let mut third = vec![code::OPT_THIRD_PARTY, 0, 0, 16];
        third.extend_from_slice(&OTHER.to_ipv6_mapped().octets());
        let third_party = PcpMap {
            options: third,
            ..PcpMap::new(5004, 5004)
        };
        assert_eq!(
            pcp_answer(&ask(&r, ME, &third_party.bytes()).await).0,
            code::UNSUPP_OPTION
        );
        let sctp = PcpMap {
            protocol: 132,
            ..PcpMap::new(5005, 5005)
        };
        assert_eq!(
            pcp_answer(&ask(&r, ME, &sctp.bytes()).await).0,
            code::UNSUPP_PROTOCOL
        );
        let mut two_filters = Vec::new();
        for host in [1, 2] {
            two_filters.extend_from_slice(&[code::OPT_FILTER, 0, 0, 20, 0, 128, 0, 0]);
            two_filters
                .extend_from_slice(&Ipv4Addr::new(192, 0, 2, host).to_ipv6_mapped().octets());
        }
        let filtered = PcpMap {
            options: two_filters.clone(),
            ..PcpMap::new(5006, 5006)
        };
        assert_eq!(
            pcp_answer(&ask(&r, ME, &filtered.bytes()).await).0,
            code::EXCESSIVE_REMOTE_PEERS
        );
        let one_filter = PcpMap {
            options: two_filters[..24].to_vec(),
            ..PcpMap::new(5006, 5006)
        };
        let answer = ask(&r, ME, &one_filter.bytes()).await;
        assert_eq!(pcp_answer(&answer).0, code::SUCCESS);
        assert_eq!(&answer[60..], &two_filters[..24], "the FILTER comes back");
        let shares = r.table.entries().await.expect("entries");
        let filtered = shares
            .iter()
            .find(|s| s.spec.internal.port() == 5006)
            .expect("filtered share");
        assert_eq!(filtered.spec.id.remote, Some(Ipv4Addr::new(192, 0, 2, 1)));

        // Deleting with the right nonce.
        let delete = PcpMap {
            lifetime: 0,
            ..PcpMap::new(5000, 0)
        };
        assert_eq!(
            pcp_answer(&ask(&r, ME, &delete.bytes()).await).0,
            code::SUCCESS
        );
        let left = r.table.entries().await.expect("entries");
        assert!(left.iter().all(|s| s.spec.internal.port() != 5000));
    }

    #[tokio::test]
    async fn pcp_peer_and_announce() {
        let r = responder("", PcpSettings::default());
        let peer = PcpMap {
            op: code::OP_PEER,
            ..PcpMap::new(7000, 7000)
        };
        let answer = ask(&r, ME, &peer.bytes()).await;
        assert_eq!(answer.len(), 80);
        assert_eq!(pcp_answer(&answer).0, code::SUCCESS);
        let shares = r.table.entries().await.expect("entries");
        let share = shares
            .iter()
            .find(|s| s.spec.internal.port() == 7000)
            .expect("peer share");
        assert_eq!(share.spec.id.remote, Some(Ipv4Addr::new(192, 0, 2, 7)));
        assert_eq!(share.origin.source(), "pcp");

        let mut announce = vec![2, 0, 0, 0, 0, 0, 0, 0];
        announce.extend_from_slice(&ME.to_ipv6_mapped().octets());
        let answer = ask(&r, ME, &announce).await;
        assert_eq!(
            (answer.len(), answer[1], answer[3]),
            (24, 0x80, code::SUCCESS)
        );
        // Version 1 is answered UNSUPP_VERSION, as version 2.
        let mut v1 = announce.clone();
        v1[0] = 1;
        let answer = ask(&r, ME, &v1).await;
        assert_eq!((answer[0], answer[3]), (2, code::UNSUPP_VERSION));
    }
}
