//! NAT-PMP and PCP: `pcp::wire::parse` on any datagram, re-encoded with the encoders the
//! answers use (`map_fields`, `peer_fields`, `encode_options`) and read back the same; then the
//! whole responder (`answer` over IPv4, `answer6` over IPv6) on a fresh table, whose answer
//! must have the layout RFC 6886 or RFC 6887 gives it and carry the request's nonce, protocol
//! and internal port back.
//!
//! Input: one byte of flags (bits 0-3: the settings, see `portfwd_fuzz::settings`; bit 4:
//! over IPv6), then the datagram.
#![no_main]

use libfuzzer_sys::fuzz_target;
use portfwd::pcp::{
    Responder,
    wire::{self, Pcp, PcpOp, Request, code},
};
use portfwd_fuzz::{CLIENT, CLIENT6};

fuzz_target!(|data: &[u8]| {
    let Some((&flags, datagram)) = data.split_first() else {
        return;
    };
    if let Ok(request) = wire::parse(datagram) {
        round_trip(&request);
    }
    let six = flags & 0x10 != 0;
    let rt = portfwd_fuzz::runtime();
    let answer = rt.block_on(portfwd_fuzz::with_table(flags & 0x0f, |table| async move {
        let responder = Responder {
            table,
            metrics: std::sync::Arc::default(),
            lan: portfwd_fuzz::lan(),
            lan6: portfwd_fuzz::lan6(),
            started: std::time::Instant::now(),
        };
        if six {
            responder.answer6(CLIENT6, datagram).await
        } else {
            responder.answer(CLIENT, datagram).await
        }
    }));
    if let Some(answer) = answer {
        check_answer(datagram, &answer, six);
    }
});

/// The request written out again with the answers' encoders reads back as it was.
fn round_trip(request: &Request) {
    let mut d = Vec::new();
    match request {
        Request::PmpExternal => d.extend_from_slice(&[0, 0]),
        Request::PmpMap {
            proto,
            internal_port,
            external_port,
            lifetime,
        } => {
            let op = match proto {
                portfwd::share::Proto::Udp => 1,
                portfwd::share::Proto::Tcp => 2,
            };
            d.extend_from_slice(&[0, op, 0, 0]);
            d.extend_from_slice(&internal_port.to_be_bytes());
            d.extend_from_slice(&external_port.to_be_bytes());
            d.extend_from_slice(&lifetime.to_be_bytes());
        }
        Request::Pcp(pcp) => {
            let op = match pcp.op {
                PcpOp::Announce => code::OP_ANNOUNCE,
                PcpOp::Map(_) => code::OP_MAP,
                PcpOp::Peer { .. } => code::OP_PEER,
            };
            d.extend_from_slice(&[2, op, 0, 0]);
            d.extend_from_slice(&pcp.lifetime.to_be_bytes());
            d.extend_from_slice(&pcp.client.octets());
            match &pcp.op {
                PcpOp::Announce => {}
                PcpOp::Map(map) => d.extend(wire::map_fields(map, map.external_port, map.external)),
                PcpOp::Peer {
                    map,
                    remote_port,
                    remote,
                } => {
                    d.extend(wire::map_fields(map, map.external_port, map.external));
                    d.extend(wire::peer_fields(*remote_port, *remote));
                }
            }
            d.extend(wire::encode_options(&pcp.options));
        }
    }
    let back = wire::parse(&d).unwrap_or_else(|err| panic!("{request:?} re-encoded: {err:?}"));
    match (request, &back) {
        (Request::Pcp(a), Request::Pcp(b)) => {
            // The body is the request as sent: optional options nobody knows are not written
            // back.
            let strip = |p: &Pcp| Pcp {
                body: Vec::new(),
                ..p.clone()
            };
            assert_eq!(strip(a), strip(b));
        }
        _ => assert_eq!(request, &back),
    }
}

fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

/// The answer's layout: RFC 6886 section 3 for NAT-PMP, RFC 6887 section 7.2 for PCP.
fn check_answer(request: &[u8], answer: &[u8], six: bool) {
    let (version, op) = (request[0], request[1]);
    if version == wire::NATPMP_VERSION && !six {
        assert_eq!(answer[0], 0, "{answer:?}");
        assert_eq!(answer[1], op | 0x80, "{answer:?}");
        let result = u16_at(answer, 2);
        let len = match (op, result) {
            (_, wire::pmp::UNSUPP_OPCODE) => 8,
            (wire::pmp::OP_EXTERNAL, _) => 12,
            _ => 16,
        };
        assert_eq!(answer.len(), len, "{answer:?}");
        if len == 16 {
            // The internal port is the request's.
            assert_eq!(u16_at(answer, 8), u16_at(request, 4), "{answer:?}");
        }
        return;
    }
    assert!(
        version != wire::NATPMP_VERSION,
        "NAT-PMP over IPv6 answered"
    );
    assert_eq!(answer[0], wire::PCP_VERSION, "{answer:?}");
    assert_eq!(answer[1], op | 0x80, "{answer:?}");
    assert_eq!(answer[2], 0, "{answer:?}");
    assert!(
        answer.len() >= 24 && answer.len() <= wire::MAX_MESSAGE,
        "{answer:?}"
    );
    assert!(answer.len().is_multiple_of(4), "{answer:?}");
    let result = answer[3];
    if version != wire::PCP_VERSION {
        assert_eq!(result, code::UNSUPP_VERSION);
    }
    if result == code::SUCCESS && matches!(op, code::OP_MAP | code::OP_PEER) {
        // Nonce, protocol and internal port come back as asked (RFC 6887 sections 11.4, 12.4).
        assert!(answer.len() >= 24 + 36, "{answer:?}");
        assert_eq!(answer[24..37], request[24..37], "{answer:?}");
        assert_eq!(answer[40..42], request[40..42], "{answer:?}");
    }
}
