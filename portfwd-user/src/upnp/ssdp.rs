//! SSDP (UPnP Device Architecture 1.1, section 1): answers M-SEARCH from LAN hosts and
//! advertises the box with `ssdp:alive` NOTIFYs at start and every `notify_interval`, and
//! `ssdp:byebye` when it stops.
//!
//! The socket is bound to the multicast group's address and to the LAN interface
//! (`SO_BINDTODEVICE`), so it neither hears nor sends anything on the WAN; datagrams from
//! outside the LAN subnets are ignored as well. Searches are answered at once rather than after
//! a random part of MX: the LAN has one gateway, so there is no storm of answers to spread.

use std::{
    fmt::Write as _,
    future::Future,
    io,
    net::{Ipv4Addr, SocketAddr, SocketAddrV4},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::UdpSocket;

use super::Identity;
use crate::share::LanSubnet;

pub const SSDP_GROUP: Ipv4Addr = Ipv4Addr::new(239, 255, 255, 250);
pub const SSDP_PORT: u16 = 1900;
/// Datagrams longer than this are not searches anyone sends; they are dropped.
const MAX_DATAGRAM: usize = 2048;
/// Answers to one search at most (ssdp:all gets every target, which is fewer).
const MAX_ANSWERS: usize = 16;

/// Binds the SSDP socket to the LAN interface `lan` (index `lan_index`, address `lan_addr`).
pub fn bind(lan: &str, lan_index: u32, lan_addr: Ipv4Addr) -> io::Result<UdpSocket> {
    let socket = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))?;
    socket.set_reuse_address(true)?;
    socket.bind_device(Some(lan.as_bytes()))?;
    socket.bind(&SocketAddrV4::new(SSDP_GROUP, SSDP_PORT).into())?;
    socket.join_multicast_v4_n(
        &SSDP_GROUP,
        &socket2::InterfaceIndexOrAddress::Index(lan_index),
    )?;
    socket.set_multicast_if_v4(&lan_addr)?;
    // UDA 1.1: a TTL of 2 by default.
    socket.set_multicast_ttl_v4(2)?;
    socket.set_multicast_loop_v4(false)?;
    socket.set_nonblocking(true)?;
    UdpSocket::from_std(socket.into())
}

/// Runs SSDP on `socket` until `shutdown` completes, then says goodbye.
pub async fn run(
    socket: UdpSocket,
    identity: Identity,
    lan: Vec<LanSubnet>,
    notify_interval: Duration,
    shutdown: impl Future<Output = ()>,
) {
    let group = SocketAddr::V4(SocketAddrV4::new(SSDP_GROUP, SSDP_PORT));
    let max_age = notify_interval * 2;
    let mut ticks = tokio::time::interval(notify_interval);
    let mut buf = vec![0u8; MAX_DATAGRAM + 1];
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            _ = ticks.tick() => {
                for message in notify_all(&identity, "ssdp:alive", max_age) {
                    send(&socket, &message, group).await;
                }
            }
            received = socket.recv_from(&mut buf) => {
                let (len, from) = match received {
                    Ok(received) => received,
                    Err(err) => {
                        tracing::debug!("SSDP receive: {err}");
                        continue;
                    }
                };
                let SocketAddr::V4(from_v4) = from else { continue };
                if len > MAX_DATAGRAM || !super::http::on_lan(&lan, *from_v4.ip()) {
                    continue;
                }
                let Some(st) = parse_search(&buf[..len]) else { continue };
                for answer in answers(&identity, &st, max_age).into_iter().take(MAX_ANSWERS) {
                    send(&socket, &answer, from).await;
                }
            }
        }
    }
    for message in notify_all(&identity, "ssdp:byebye", max_age) {
        send(&socket, &message, group).await;
    }
}

async fn send(socket: &UdpSocket, message: &str, to: SocketAddr) {
    if let Err(err) = socket.send_to(message.as_bytes(), to).await {
        tracing::debug!("SSDP send to {to}: {err}");
    }
}

/// The search target of an M-SEARCH, if the datagram is a well-formed one.
#[must_use]
pub fn parse_search(datagram: &[u8]) -> Option<String> {
    let text = std::str::from_utf8(datagram).ok()?;
    let mut lines = text.split("\r\n").flat_map(|l| l.split('\n'));
    if lines.next()?.trim() != "M-SEARCH * HTTP/1.1" {
        return None;
    }
    let (mut st, mut man, mut mx) = (None, None, None);
    for line in lines.take(32) {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        match name.trim().to_ascii_uppercase().as_str() {
            "ST" => st = Some(value.to_owned()),
            "MAN" => man = Some(value.to_owned()),
            "MX" => mx = value.parse::<u32>().ok(),
            _ => {}
        }
    }
    // Multicast searches must say how long the searcher waits (UDA 1.1 1.3.2).
    (man.as_deref() == Some("\"ssdp:discover\"") && mx.is_some())
        .then_some(st)
        .flatten()
        .filter(|st| !st.is_empty() && st.len() <= 256)
}

/// The answers to a search for `st`: (ST, USN) of each matching target.
fn matches(identity: &Identity, st: &str) -> Vec<(String, String)> {
    let targets = identity.targets();
    if st == "ssdp:all" {
        return targets;
    }
    if let Some((kind, version)) = st.rsplit_once(':')
        && st.starts_with("urn:")
        && let Ok(version) = version.parse::<u8>()
    {
        // A device or service type: answered for any version up to ours, with the version
        // asked for (UDA 1.1 1.3.2).
        return targets
            .into_iter()
            .filter_map(|(nt, usn)| {
                let (our_kind, ours) = nt.rsplit_once(':')?;
                let ours: u8 = ours.parse().ok()?;
                (our_kind == kind && version >= 1 && version <= ours).then(|| {
                    let udn = usn.split("::").next().unwrap_or_default();
                    (st.to_owned(), format!("{udn}::{st}"))
                })
            })
            .collect();
    }
    targets.into_iter().filter(|(nt, _)| nt == st).collect()
}

fn answers(identity: &Identity, st: &str, max_age: Duration) -> Vec<String> {
    let date = http_date(SystemTime::now());
    matches(identity, st)
        .into_iter()
        .map(|(st, usn)| {
            format!(
                "HTTP/1.1 200 OK\r\nCACHE-CONTROL: max-age={}\r\nDATE: {date}\r\nEXT:\r\n\
                 LOCATION: {}\r\nSERVER: {}\r\nST: {st}\r\nUSN: {usn}\r\n\
                 BOOTID.UPNP.ORG: {}\r\nCONFIGID.UPNP.ORG: {}\r\n\r\n",
                max_age.as_secs(),
                identity.location(),
                identity.server(),
                identity.boot_id,
                identity.config_id,
            )
        })
        .collect()
}

fn notify_all(identity: &Identity, nts: &str, max_age: Duration) -> Vec<String> {
    identity
        .targets()
        .into_iter()
        .map(|(nt, usn)| {
            let mut message = format!(
                "NOTIFY * HTTP/1.1\r\nHOST: {SSDP_GROUP}:{SSDP_PORT}\r\nNT: {nt}\r\nNTS: {nts}\r\nUSN: {usn}\r\n"
            );
            if nts == "ssdp:alive" {
                let _ = write!(
                    message,
                    "CACHE-CONTROL: max-age={}\r\nLOCATION: {}\r\nSERVER: {}\r\n",
                    max_age.as_secs(),
                    identity.location(),
                    identity.server()
                );
            }
            let _ = write!(
                message,
                "BOOTID.UPNP.ORG: {}\r\nCONFIGID.UPNP.ORG: {}\r\n\r\n",
                identity.boot_id, identity.config_id
            );
            message
        })
        .collect()
}

/// An RFC 1123 date, as HTTP and SSDP write it.
#[must_use]
pub fn http_date(time: SystemTime) -> String {
    let secs = time.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let t = crate::clock::Civil::from_unix(secs);
    let weekday = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"][t.weekday_from_thursday];
    let month_name = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ][usize::from(t.month - 1)];
    format!(
        "{weekday}, {:02} {month_name} {} {:02}:{:02}:{:02} GMT",
        t.day, t.year, t.hour, t.minute, t.second
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::upnp::IgdVersion;

    use crate::upnp::test_identity as identity;

    fn search(st: &str) -> Vec<u8> {
        format!(
            "M-SEARCH * HTTP/1.1\r\nHOST: 239.255.255.250:1900\r\nMAN: \"ssdp:discover\"\r\nMX: 2\r\nST: {st}\r\n\r\n"
        )
        .into_bytes()
    }

    #[test]
    fn searches_are_read_and_junk_is_not() {
        assert_eq!(
            parse_search(&search("ssdp:all")).as_deref(),
            Some("ssdp:all")
        );
        assert_eq!(parse_search(b""), None);
        assert_eq!(parse_search(b"NOTIFY * HTTP/1.1\r\nNT: x\r\n\r\n"), None);
        let no_mx = b"M-SEARCH * HTTP/1.1\r\nMAN: \"ssdp:discover\"\r\nST: ssdp:all\r\n\r\n";
        assert_eq!(parse_search(no_mx), None);
        let no_man = b"M-SEARCH * HTTP/1.1\r\nMX: 1\r\nST: ssdp:all\r\n\r\n";
        assert_eq!(parse_search(no_man), None);
        assert_eq!(parse_search(&[0xff, 0xfe, 0x00]), None);
    }

    #[test]
    fn answers_match_types_up_to_our_version() {
        let v2 = identity(IgdVersion::V2);
        // Root, 3 devices by UDN and by type, 3 services (IGD:2 has WANIPv6FirewallControl).
        assert_eq!(matches(&v2, "ssdp:all").len(), 10);
        assert_eq!(
            matches(&v2, "urn:schemas-upnp-org:service:WANIPv6FirewallControl:1").len(),
            1
        );
        let v1 = identity(IgdVersion::V1);
        assert_eq!(matches(&v1, "ssdp:all").len(), 9);
        assert_eq!(matches(&v2, "upnp:rootdevice").len(), 1);
        let igd1 = matches(&v2, "urn:schemas-upnp-org:device:InternetGatewayDevice:1");
        assert_eq!(igd1.len(), 1);
        assert_eq!(
            igd1[0].0,
            "urn:schemas-upnp-org:device:InternetGatewayDevice:1"
        );
        assert!(
            igd1[0]
                .1
                .ends_with("::urn:schemas-upnp-org:device:InternetGatewayDevice:1")
        );
        assert_eq!(
            matches(&v2, "urn:schemas-upnp-org:service:WANIPConnection:2").len(),
            1
        );
        let v1 = identity(IgdVersion::V1);
        assert!(matches(&v1, "urn:schemas-upnp-org:service:WANIPConnection:2").is_empty());
        assert_eq!(matches(&v1, &v1.udn(crate::upnp::DeviceKind::Wan)).len(), 1);
        assert!(matches(&v2, "urn:schemas-upnp-org:device:MediaServer:1").is_empty());
        let answer = &answers(&v2, "upnp:rootdevice", Duration::from_mins(30))[0];
        for header in [
            "CACHE-CONTROL: max-age=1800",
            "EXT:",
            "LOCATION: http://10.0.0.1:5000/rootDesc.xml",
            "ST: upnp:rootdevice",
            "BOOTID.UPNP.ORG: 17",
            "CONFIGID.UPNP.ORG: 42",
        ] {
            assert!(answer.contains(header), "{header} in {answer}");
        }
    }

    #[test]
    fn dates_are_rfc_1123() {
        let t = UNIX_EPOCH + Duration::from_secs(1_763_683_200 + 3723);
        assert_eq!(http_date(t), "Fri, 21 Nov 2025 01:02:03 GMT");
        assert_eq!(http_date(UNIX_EPOCH), "Thu, 01 Jan 1970 00:00:00 GMT");
    }
}
