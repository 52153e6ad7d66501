//! NAT-PMP (RFC 6886) and PCP (RFC 6887) datagrams: what a request says and how an answer is
//! laid out. No I/O and no policy: [`parse`] reads one datagram into a [`Request`] or says how
//! to refuse it; the `*_reply` functions lay answers out.
//!
//! Both protocols share UDP port 5351 and tell themselves apart by the first byte: version 0
//! is NAT-PMP, version 2 is PCP. Version 1 (pre-standard PCP drafts) and anything newer than 2
//! are answered `UNSUPP_VERSION` in PCP's layout with version 2, the one this server speaks
//! (RFC 6887 section 9).

use std::net::{Ipv4Addr, Ipv6Addr};

use crate::share::{Nonce, Proto};

/// The port servers listen on.
pub const SERVER_PORT: u16 = 5351;
/// The port clients listen on for announcements.
pub const CLIENT_PORT: u16 = 5350;
/// The largest PCP message (RFC 6887 section 7).
pub const MAX_MESSAGE: usize = 1100;

pub const NATPMP_VERSION: u8 = 0;
pub const PCP_VERSION: u8 = 2;

/// NAT-PMP result codes (RFC 6886 section 3.5).
pub mod pmp {
    pub const SUCCESS: u16 = 0;
    pub const UNSUPP_VERSION: u16 = 1;
    pub const NOT_AUTHORIZED: u16 = 2;
    pub const NETWORK_FAILURE: u16 = 3;
    pub const NO_RESOURCES: u16 = 4;
    pub const UNSUPP_OPCODE: u16 = 5;

    pub const OP_EXTERNAL: u8 = 0;
    pub const OP_MAP_UDP: u8 = 1;
    pub const OP_MAP_TCP: u8 = 2;
}

/// PCP result codes (RFC 6887 section 7.4), opcodes and options.
pub mod code {
    pub const SUCCESS: u8 = 0;
    pub const UNSUPP_VERSION: u8 = 1;
    pub const NOT_AUTHORIZED: u8 = 2;
    pub const MALFORMED_REQUEST: u8 = 3;
    pub const UNSUPP_OPCODE: u8 = 4;
    pub const UNSUPP_OPTION: u8 = 5;
    pub const MALFORMED_OPTION: u8 = 6;
    pub const NETWORK_FAILURE: u8 = 7;
    pub const NO_RESOURCES: u8 = 8;
    pub const UNSUPP_PROTOCOL: u8 = 9;
    pub const USER_EX_QUOTA: u8 = 10;
    pub const CANNOT_PROVIDE_EXTERNAL: u8 = 11;
    pub const ADDRESS_MISMATCH: u8 = 12;
    pub const EXCESSIVE_REMOTE_PEERS: u8 = 13;

    pub const OP_ANNOUNCE: u8 = 0;
    pub const OP_MAP: u8 = 1;
    pub const OP_PEER: u8 = 2;

    pub const OPT_THIRD_PARTY: u8 = 1;
    pub const OPT_PREFER_FAILURE: u8 = 2;
    pub const OPT_FILTER: u8 = 3;

    /// The name of a result code, for logs and metrics.
    #[must_use]
    pub const fn name(code: u8) -> &'static str {
        match code {
            SUCCESS => "success",
            UNSUPP_VERSION => "unsupp_version",
            NOT_AUTHORIZED => "not_authorized",
            MALFORMED_REQUEST => "malformed_request",
            UNSUPP_OPCODE => "unsupp_opcode",
            UNSUPP_OPTION => "unsupp_option",
            MALFORMED_OPTION => "malformed_option",
            NETWORK_FAILURE => "network_failure",
            NO_RESOURCES => "no_resources",
            UNSUPP_PROTOCOL => "unsupp_protocol",
            USER_EX_QUOTA => "user_ex_quota",
            CANNOT_PROVIDE_EXTERNAL => "cannot_provide_external",
            ADDRESS_MISMATCH => "address_mismatch",
            EXCESSIVE_REMOTE_PEERS => "excessive_remote_peers",
            _ => "other",
        }
    }
}

const PCP_HEADER: usize = 24;
const MAP_BODY: usize = 36;
const PEER_BODY: usize = 56;
const RESPONSE_BIT: u8 = 0x80;

/// A request read from one datagram.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Request {
    /// NAT-PMP: what is the external address?
    PmpExternal,
    /// NAT-PMP: map (or, with lifetime 0, unmap) an internal port.
    PmpMap {
        proto: Proto,
        internal_port: u16,
        external_port: u16,
        lifetime: u32,
    },
    /// PCP version 2.
    Pcp(Pcp),
}

/// A PCP request: the common header and what its opcode carries.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pcp {
    pub lifetime: u32,
    /// The client's address as it wrote it (IPv4 as `::ffff:a.b.c.d`).
    pub client: Ipv6Addr,
    pub op: PcpOp,
    pub options: Options,
    /// The opcode's fields and the options, as sent: what an error answer carries back.
    pub body: Vec<u8>,
}

/// What a PCP opcode asks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PcpOp {
    Announce,
    Map(Map),
    /// A MAP for one remote peer.
    Peer {
        map: Map,
        remote_port: u16,
        remote: Ipv6Addr,
    },
}

/// The fields MAP and PEER share.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Map {
    pub nonce: Nonce,
    /// IANA protocol number; 0: all protocols.
    pub protocol: u8,
    /// 0: all ports.
    pub internal_port: u16,
    pub external_port: u16,
    pub external: Ipv6Addr,
}

/// The options of a PCP request this server acts on. Optional options (128 and up) it does
/// not know are skipped, as RFC 6887 section 7.3 says.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Options {
    pub third_party: Option<Ipv6Addr>,
    pub prefer_failure: bool,
    pub filters: Vec<Filter>,
}

/// A FILTER option: only this remote prefix and port (0: any) may use the mapping.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Filter {
    pub prefix_len: u8,
    pub remote_port: u16,
    pub remote: Ipv6Addr,
}

/// How to refuse a datagram [`parse`] could not take.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Refused {
    /// Not worth an answer: too short to be anything, or itself an answer.
    Drop(&'static str),
    /// A NAT-PMP error: result code for `opcode`, answered in NAT-PMP's 8-byte error layout.
    Pmp { opcode: u8, result: u16 },
    /// A PCP error: result code for `opcode`, answered with the request's body copied back.
    Pcp {
        opcode: u8,
        result: u8,
        body: Vec<u8>,
    },
}

fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn addr_at(b: &[u8], at: usize) -> Ipv6Addr {
    let mut octets = [0u8; 16];
    octets.copy_from_slice(&b[at..at + 16]);
    Ipv6Addr::from(octets)
}

/// Reads one datagram.
pub fn parse(datagram: &[u8]) -> Result<Request, Refused> {
    let [version, op, ..] = *datagram else {
        return Err(Refused::Drop("shorter than two bytes"));
    };
    if op & RESPONSE_BIT != 0 {
        return Err(Refused::Drop("a response, not a request"));
    }
    match version {
        NATPMP_VERSION => parse_pmp(op, datagram),
        PCP_VERSION => parse_pcp(op, datagram),
        _ => Err(Refused::Pcp {
            opcode: op,
            result: code::UNSUPP_VERSION,
            body: Vec::new(),
        }),
    }
}

fn parse_pmp(op: u8, d: &[u8]) -> Result<Request, Refused> {
    match op {
        pmp::OP_EXTERNAL => Ok(Request::PmpExternal),
        pmp::OP_MAP_UDP | pmp::OP_MAP_TCP => {
            if d.len() < 12 {
                return Err(Refused::Drop(
                    "NAT-PMP mapping request shorter than 12 bytes",
                ));
            }
            Ok(Request::PmpMap {
                proto: if op == pmp::OP_MAP_UDP {
                    Proto::Udp
                } else {
                    Proto::Tcp
                },
                internal_port: u16_at(d, 4),
                external_port: u16_at(d, 6),
                lifetime: u32_at(d, 8),
            })
        }
        _ => Err(Refused::Pmp {
            opcode: op,
            result: pmp::UNSUPP_OPCODE,
        }),
    }
}

fn parse_pcp(op: u8, d: &[u8]) -> Result<Request, Refused> {
    let body = d[d.len().min(PCP_HEADER)..d.len().min(MAX_MESSAGE)].to_vec();
    let refuse = |result| Refused::Pcp {
        opcode: op,
        result,
        body: body.clone(),
    };
    if d.len() < PCP_HEADER || d.len() > MAX_MESSAGE || !d.len().is_multiple_of(4) {
        return Err(refuse(code::MALFORMED_REQUEST));
    }
    let (fields, options_at) = match op {
        code::OP_ANNOUNCE => (0, PCP_HEADER),
        code::OP_MAP => (MAP_BODY, PCP_HEADER + MAP_BODY),
        code::OP_PEER => (PEER_BODY, PCP_HEADER + PEER_BODY),
        _ => return Err(refuse(code::UNSUPP_OPCODE)),
    };
    if d.len() < PCP_HEADER + fields {
        return Err(refuse(code::MALFORMED_REQUEST));
    }
    let map = || {
        let mut nonce = [0u8; 12];
        nonce.copy_from_slice(&d[24..36]);
        Map {
            nonce,
            protocol: d[36],
            internal_port: u16_at(d, 40),
            external_port: u16_at(d, 42),
            external: addr_at(d, 44),
        }
    };
    let op_fields = match op {
        code::OP_ANNOUNCE => PcpOp::Announce,
        code::OP_MAP => PcpOp::Map(map()),
        _ => PcpOp::Peer {
            map: map(),
            remote_port: u16_at(d, 60),
            remote: addr_at(d, 64),
        },
    };
    let options = parse_options(op, &d[options_at..]).map_err(refuse)?;
    Ok(Request::Pcp(Pcp {
        lifetime: u32_at(d, 4),
        client: addr_at(d, 8),
        op: op_fields,
        options,
        body,
    }))
}

/// Reads the options; the error is the result code to refuse the request with.
fn parse_options(op: u8, mut rest: &[u8]) -> Result<Options, u8> {
    let mut options = Options::default();
    while !rest.is_empty() {
        if rest.len() < 4 {
            return Err(code::MALFORMED_OPTION);
        }
        let (option, len) = (rest[0], usize::from(u16_at(rest, 2)));
        let padded = len.div_ceil(4) * 4;
        if rest.len() < 4 + padded {
            return Err(code::MALFORMED_OPTION);
        }
        let data = &rest[4..4 + len];
        match option {
            code::OPT_THIRD_PARTY => {
                if op == code::OP_ANNOUNCE || len != 16 || options.third_party.is_some() {
                    return Err(code::MALFORMED_OPTION);
                }
                options.third_party = Some(addr_at(data, 0));
            }
            code::OPT_PREFER_FAILURE => {
                if op != code::OP_MAP || len != 0 || options.prefer_failure {
                    return Err(code::MALFORMED_OPTION);
                }
                options.prefer_failure = true;
            }
            code::OPT_FILTER => {
                if op != code::OP_MAP || len != 20 || data[1] > 128 {
                    return Err(code::MALFORMED_OPTION);
                }
                options.filters.push(Filter {
                    prefix_len: data[1],
                    remote_port: u16_at(data, 2),
                    remote: addr_at(data, 4),
                });
            }
            // Mandatory to process, and not known here.
            0..=127 => return Err(code::UNSUPP_OPTION),
            // Optional: skipped.
            _ => {}
        }
        rest = &rest[4 + padded..];
    }
    Ok(options)
}

/// The options an answer to a MAP or PEER carries back: those the server acted on.
#[must_use]
pub fn encode_options(options: &Options) -> Vec<u8> {
    let mut out = Vec::new();
    if let Some(addr) = options.third_party {
        out.extend_from_slice(&[code::OPT_THIRD_PARTY, 0, 0, 16]);
        out.extend_from_slice(&addr.octets());
    }
    if options.prefer_failure {
        out.extend_from_slice(&[code::OPT_PREFER_FAILURE, 0, 0, 0]);
    }
    for filter in &options.filters {
        out.extend_from_slice(&[code::OPT_FILTER, 0, 0, 20, 0, filter.prefix_len]);
        out.extend_from_slice(&filter.remote_port.to_be_bytes());
        out.extend_from_slice(&filter.remote.octets());
    }
    out
}

/// A NAT-PMP answer: header, result, epoch, then `rest` (the opcode's fields).
#[must_use]
pub fn pmp_reply(opcode: u8, result: u16, epoch: u32, rest: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(8 + rest.len());
    out.extend_from_slice(&[NATPMP_VERSION, opcode | RESPONSE_BIT]);
    out.extend_from_slice(&result.to_be_bytes());
    out.extend_from_slice(&epoch.to_be_bytes());
    out.extend_from_slice(rest);
    out
}

/// The NAT-PMP external-address answer (also the announcement sent to 224.0.0.1:5350).
#[must_use]
pub fn pmp_external_reply(result: u16, epoch: u32, external: Option<Ipv4Addr>) -> Vec<u8> {
    let addr = external.unwrap_or(Ipv4Addr::UNSPECIFIED);
    pmp_reply(pmp::OP_EXTERNAL, result, epoch, &addr.octets())
}

/// The NAT-PMP mapping answer.
#[must_use]
pub fn pmp_map_reply(
    proto: Proto,
    result: u16,
    epoch: u32,
    internal_port: u16,
    external_port: u16,
    lifetime: u32,
) -> Vec<u8> {
    let opcode = match proto {
        Proto::Udp => pmp::OP_MAP_UDP,
        Proto::Tcp => pmp::OP_MAP_TCP,
    };
    let mut rest = [0u8; 8];
    rest[..2].copy_from_slice(&internal_port.to_be_bytes());
    rest[2..4].copy_from_slice(&external_port.to_be_bytes());
    rest[4..].copy_from_slice(&lifetime.to_be_bytes());
    pmp_reply(opcode, result, epoch, &rest)
}

/// A PCP answer: the 24-byte response header, then `body` (cut to the largest message and
/// padded to a multiple of four).
#[must_use]
pub fn pcp_reply(opcode: u8, result: u8, lifetime: u32, epoch: u32, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(PCP_HEADER + body.len());
    out.extend_from_slice(&[PCP_VERSION, opcode | RESPONSE_BIT, 0, result]);
    out.extend_from_slice(&lifetime.to_be_bytes());
    out.extend_from_slice(&epoch.to_be_bytes());
    out.extend_from_slice(&[0; 12]);
    out.extend_from_slice(&body[..body.len().min(MAX_MESSAGE - PCP_HEADER)]);
    out.resize(out.len().div_ceil(4) * 4, 0);
    out
}

/// The fields of a MAP answer (and the first 36 bytes of a PEER answer): the request's nonce,
/// protocol and internal port with the external port and address assigned.
#[must_use]
pub fn map_fields(map: &Map, external_port: u16, external: Ipv6Addr) -> Vec<u8> {
    let mut out = Vec::with_capacity(MAP_BODY);
    out.extend_from_slice(&map.nonce);
    out.extend_from_slice(&[map.protocol, 0, 0, 0]);
    out.extend_from_slice(&map.internal_port.to_be_bytes());
    out.extend_from_slice(&external_port.to_be_bytes());
    out.extend_from_slice(&external.octets());
    out
}

/// The fields a PEER answer adds after [`map_fields`].
#[must_use]
pub fn peer_fields(remote_port: u16, remote: Ipv6Addr) -> Vec<u8> {
    let mut out = Vec::with_capacity(PEER_BODY - MAP_BODY);
    out.extend_from_slice(&remote_port.to_be_bytes());
    out.extend_from_slice(&[0, 0]);
    out.extend_from_slice(&remote.octets());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pcp_map(lifetime: u32, options: &[u8]) -> Vec<u8> {
        let mut d = vec![2, 1, 0, 0];
        d.extend_from_slice(&lifetime.to_be_bytes());
        d.extend_from_slice(&Ipv4Addr::new(10, 0, 0, 10).to_ipv6_mapped().octets());
        d.extend_from_slice(&[7; 12]);
        d.extend_from_slice(&[6, 0, 0, 0]);
        d.extend_from_slice(&8080u16.to_be_bytes());
        d.extend_from_slice(&9090u16.to_be_bytes());
        d.extend_from_slice(&[0; 16]);
        d.extend_from_slice(options);
        d
    }

    #[test]
    fn nat_pmp_requests_are_read_and_bad_ones_refused() {
        assert_eq!(parse(&[0, 0]), Ok(Request::PmpExternal));
        let map = [0, 2, 0, 0, 0x1f, 0x90, 0x23, 0x82, 0, 0, 0x1c, 0x20];
        assert_eq!(
            parse(&map),
            Ok(Request::PmpMap {
                proto: Proto::Tcp,
                internal_port: 8080,
                external_port: 9090,
                lifetime: 7200,
            })
        );
        assert!(matches!(parse(&map[..11]), Err(Refused::Drop(_))));
        assert!(matches!(parse(&[0]), Err(Refused::Drop(_))));
        assert!(matches!(parse(&[0, 128, 0, 0]), Err(Refused::Drop(_))));
        assert_eq!(
            parse(&[0, 3]),
            Err(Refused::Pmp {
                opcode: 3,
                result: pmp::UNSUPP_OPCODE
            })
        );
    }

    #[test]
    fn pcp_map_with_options_is_read() {
        let mut options = vec![code::OPT_PREFER_FAILURE, 0, 0, 0];
        options.extend_from_slice(&[code::OPT_FILTER, 0, 0, 20, 0, 128, 0, 0]);
        options.extend_from_slice(&Ipv4Addr::new(192, 0, 2, 1).to_ipv6_mapped().octets());
        // An optional option nobody knows: skipped.
        options.extend_from_slice(&[200, 0, 0, 3, 1, 2, 3, 0]);
        let Ok(Request::Pcp(pcp)) = parse(&pcp_map(3600, &options)) else {
            panic!("not read");
        };
        assert_eq!(pcp.lifetime, 3600);
        assert_eq!(
            pcp.client.to_ipv4_mapped(),
            Some(Ipv4Addr::new(10, 0, 0, 10))
        );
        let PcpOp::Map(map) = pcp.op else {
            panic!("not a MAP")
        };
        assert_eq!(
            (map.protocol, map.internal_port, map.external_port),
            (6, 8080, 9090)
        );
        assert!(pcp.options.prefer_failure);
        assert_eq!(pcp.options.filters.len(), 1);
        assert_eq!(pcp.options.filters[0].prefix_len, 128);
    }

    #[test]
    fn bad_pcp_requests_get_their_result_codes() {
        let result = |d: &[u8]| match parse(d) {
            Err(Refused::Pcp { result, .. }) => result,
            other => panic!("{other:?}"),
        };
        assert_eq!(result(&[1, 1, 0, 0]), code::UNSUPP_VERSION);
        assert_eq!(result(&[3, 1, 0, 0]), code::UNSUPP_VERSION);
        assert_eq!(result(&pcp_map(1, &[])[..20]), code::MALFORMED_REQUEST);
        assert_eq!(result(&pcp_map(1, &[])[..50]), code::MALFORMED_REQUEST);
        assert_eq!(result(&pcp_map(1, &[])[..58]), code::MALFORMED_REQUEST);
        assert_eq!(result(&vec![2u8; 1104]), code::MALFORMED_REQUEST);
        let mut unknown_op = pcp_map(1, &[]);
        unknown_op[1] = 9;
        assert_eq!(result(&unknown_op), code::UNSUPP_OPCODE);
        assert_eq!(result(&pcp_map(1, &[99, 0, 0, 0])), code::UNSUPP_OPTION);
        assert_eq!(
            result(&pcp_map(1, &[2, 0, 0, 4, 0, 0, 0, 0])),
            code::MALFORMED_OPTION
        );
        assert_eq!(result(&pcp_map(1, &[1, 0, 0, 16])), code::MALFORMED_OPTION);
        assert_eq!(
            result(&pcp_map(1, &[2, 0, 0, 0, 2, 0, 0, 0])),
            code::MALFORMED_OPTION
        );
        let mut peer_prefer = pcp_map(1, &[0; 20]);
        peer_prefer[1] = 2;
        peer_prefer.extend_from_slice(&[2, 0, 0, 0]);
        assert_eq!(result(&peer_prefer), code::MALFORMED_OPTION);
        // A response is never answered.
        let mut response = pcp_map(1, &[]);
        response[1] |= 0x80;
        assert!(matches!(parse(&response), Err(Refused::Drop(_))));
    }

    #[test]
    fn answers_are_laid_out_as_the_rfcs_say() {
        let ext = pmp_external_reply(pmp::SUCCESS, 42, Some(Ipv4Addr::new(203, 0, 113, 1)));
        assert_eq!(ext, [0, 128, 0, 0, 0, 0, 0, 42, 203, 0, 113, 1]);
        let map = pmp_map_reply(Proto::Udp, pmp::SUCCESS, 1, 5000, 6000, 7200);
        assert_eq!(map.len(), 16);
        assert_eq!(map[1], 129);
        assert_eq!(u16_at(&map, 10), 6000);
        let reply = pcp_reply(code::OP_MAP, code::NOT_AUTHORIZED, 30, 9, &[1, 2, 3]);
        assert_eq!(reply.len(), 28);
        assert_eq!(&reply[..4], &[2, 0x81, 0, 2]);
        assert_eq!((u32_at(&reply, 4), u32_at(&reply, 8)), (30, 9));
        let options = Options {
            third_party: Some(Ipv6Addr::LOCALHOST),
            prefer_failure: true,
            filters: vec![],
        };
        assert_eq!(
            parse_options(code::OP_MAP, &encode_options(&options)),
            Ok(options)
        );
    }
}
