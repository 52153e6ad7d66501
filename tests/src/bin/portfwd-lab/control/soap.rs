//! A minimal UPnP IGD control client that talks the way miniupnpc does: a new TCP connection
//! per call, an HTTP/1.1 `POST` with a `SOAPAction` header and `Connection: close`, and the
//! whole answer read (to its `Content-Length`, or to the end of the connection).
//!
//! One difference from miniupnpc, on purpose: after reading the answer the client closes with a
//! reset (`SO_LINGER` 0) instead of a FIN. At thousands of calls per second a normal close
//! leaves one `TIME_WAIT` socket per call for 60 s on the side that closes first (usually the
//! daemon, which closes once it has answered). They would pile up in the router's
//! `/proc/net/tcp`, which both daemons read to find ports in use, so that each measurement
//! would pay for the calls of the one before it (or, on the client's side, use up the LAN
//! host's ephemeral ports). Real clients call a few times a minute, not thousands of times a
//! second; the cost of many sockets on the box is measured on purpose, with established
//! connections ([`super::conns`]).

use std::{
    fmt::{self, Write as _},
    io::{Read as _, Write as _},
    net::{Ipv4Addr, SocketAddr, TcpStream},
    time::Duration,
};

/// How long a call may take to connect.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a call may wait for each read or write once connected.
const IO_TIMEOUT: Duration = Duration::from_secs(20);
/// The largest answer read: SOAP answers are a few hundred bytes, descriptions a few KiB.
const MAX_ANSWER: usize = 256 * 1024;

/// The description of the mapping every call asks for.
const DESCRIPTION: &str = "portfwd-bench";
/// The lease of every mapping (s).
const LEASE: u32 = 3600;

/// Why a call did not return `200 OK`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum CallError {
    /// Another status: a SOAP fault (HTTP 500 with a UPnP error code) or an HTTP error.
    Status { status: u16, upnp: Option<u16> },
    /// Connecting, writing or reading failed.
    Transport { step: &'static str, error: String },
    /// The answer was not HTTP, or too large.
    Malformed,
}

impl fmt::Display for CallError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Status {
                status,
                upnp: Some(code),
            } => write!(f, "HTTP {status} UPnP error {code}"),
            Self::Status { status, upnp: None } => write!(f, "HTTP {status}"),
            Self::Transport { step, error } => write!(f, "{step}: {error}"),
            Self::Malformed => f.write_str("not an HTTP answer"),
        }
    }
}

fn transport(step: &'static str, error: &std::io::Error) -> CallError {
    CallError::Transport {
        step,
        error: error.kind().to_string(),
    }
}

/// A WANIPConnection control point: where to post and which service type to name.
#[derive(Clone, Debug)]
pub struct Igd {
    pub addr: SocketAddr,
    pub control_path: String,
    pub service: String,
}

impl Igd {
    /// Reads the description at `http://ADDR/rootDesc.xml` and finds its WANIPConnection
    /// service (`:1` or `:2`, whichever the device offers) and control URL. Run it from the
    /// LAN host's namespace.
    pub fn discover(addr: SocketAddr) -> Result<Self, String> {
        let request =
            format!("GET /rootDesc.xml HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
        let (status, body) = exchange(addr, request.as_bytes()).map_err(|e| e.to_string())?;
        if status != 200 {
            return Err(format!("GET /rootDesc.xml: HTTP {status}"));
        }
        let description = String::from_utf8_lossy(&body);
        let (service, control_path) = wan_ip_connection(&description)
            .ok_or_else(|| "no WANIPConnection service in rootDesc.xml".to_owned())?;
        Ok(Self {
            addr,
            control_path,
            service,
        })
    }

    /// `AddPortMapping` of TCP `port` to the same port of `client`, for [`LEASE`] seconds.
    pub fn add(&self, port: u16, client: Ipv4Addr) -> Result<(), CallError> {
        self.call(
            "AddPortMapping",
            &[
                ("NewRemoteHost", String::new()),
                ("NewExternalPort", port.to_string()),
                ("NewProtocol", "TCP".to_owned()),
                ("NewInternalPort", port.to_string()),
                ("NewInternalClient", client.to_string()),
                ("NewEnabled", "1".to_owned()),
                ("NewPortMappingDescription", DESCRIPTION.to_owned()),
                ("NewLeaseDuration", LEASE.to_string()),
            ],
        )
    }

    /// `DeletePortMapping` of TCP `port`.
    pub fn delete(&self, port: u16) -> Result<(), CallError> {
        self.call(
            "DeletePortMapping",
            &[
                ("NewRemoteHost", String::new()),
                ("NewExternalPort", port.to_string()),
                ("NewProtocol", "TCP".to_owned()),
            ],
        )
    }

    /// One SOAP action on a new connection; `Ok` only for `200 OK`.
    pub fn call(&self, action: &str, args: &[(&str, String)]) -> Result<(), CallError> {
        let request = self.request(action, args);
        let (status, body) = exchange(self.addr, &request)?;
        if status == 200 {
            Ok(())
        } else {
            Err(CallError::Status {
                status,
                upnp: element(&String::from_utf8_lossy(&body), "errorCode")
                    .and_then(|code| code.trim().parse().ok()),
            })
        }
    }

    /// The whole request, head and body, so that it leaves in one write.
    fn request(&self, action: &str, args: &[(&str, String)]) -> Vec<u8> {
        let mut body = format!(
            "<?xml version=\"1.0\"?>\r\n<s:Envelope xmlns:s=\"http://schemas.xmlsoap.org/soap/envelope/\" \
             s:encodingStyle=\"http://schemas.xmlsoap.org/soap/encoding/\"><s:Body><u:{action} xmlns:u=\"{}\">",
            self.service
        );
        for (name, value) in args {
            let _ = write!(body, "<{name}>{value}</{name}>");
        }
        let _ = write!(body, "</u:{action}></s:Body></s:Envelope>\r\n");
        format!(
            "POST {} HTTP/1.1\r\nHost: {}\r\nContent-Type: text/xml; charset=\"utf-8\"\r\n\
             SOAPAction: \"{}#{action}\"\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{body}",
            self.control_path,
            self.addr,
            self.service,
            body.len()
        )
        .into_bytes()
    }
}

/// The service type and control URL of the first WANIPConnection service of a description.
fn wan_ip_connection(description: &str) -> Option<(String, String)> {
    let mut rest = description;
    while let Some(start) = rest.find("<service>") {
        let service = &rest[start..];
        let end = service.find("</service>")?;
        let (one, after) = service.split_at(end);
        let service_type = element(one, "serviceType")?.trim();
        if service_type.starts_with("urn:schemas-upnp-org:service:WANIPConnection:") {
            let control = element(one, "controlURL")?.trim();
            // A control URL may be absolute; the path is what the request line needs.
            let path = control
                .strip_prefix("http://")
                .and_then(|rest| rest.find('/').map(|i| &rest[i..]))
                .unwrap_or(control);
            return Some((service_type.to_owned(), path.to_owned()));
        }
        rest = after;
    }
    None
}

/// The text of the first `<name>` element (without a namespace prefix) in `xml`.
fn element<'a>(xml: &'a str, name: &str) -> Option<&'a str> {
    let open = format!("<{name}>");
    let start = xml.find(&open)? + open.len();
    let end = xml[start..].find(&format!("</{name}>"))?;
    Some(&xml[start..start + end])
}

/// One HTTP exchange on a new connection: the status and the body. The connection is reset
/// afterwards (see the module doc).
pub fn exchange(addr: SocketAddr, request: &[u8]) -> Result<(u16, Vec<u8>), CallError> {
    let mut stream =
        TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT).map_err(|e| transport("connect", &e))?;
    let answer = stream
        .set_read_timeout(Some(IO_TIMEOUT))
        .and_then(|()| stream.set_write_timeout(Some(IO_TIMEOUT)))
        .map_err(|e| transport("socket options", &e))
        .and_then(|()| {
            stream
                .write_all(request)
                .map_err(|e| transport("write", &e))
        })
        .and_then(|()| read_answer(&mut stream));
    reset_on_close(&stream);
    answer
}

/// Makes closing `stream` send a reset rather than a FIN: no `TIME_WAIT` on either side.
pub fn reset_on_close(stream: &TcpStream) {
    let _ = socket2::SockRef::from(stream).set_linger(Some(Duration::ZERO));
}

/// Reads an HTTP answer to the end of its body.
fn read_answer(stream: &mut TcpStream) -> Result<(u16, Vec<u8>), CallError> {
    let mut answer = Vec::with_capacity(2048);
    let mut chunk = [0u8; 4096];
    // Where the body starts, and how long it is (None: to the end of the connection).
    let mut head: Option<(usize, Option<usize>)> = None;
    loop {
        if let Some((start, Some(len))) = head
            && answer.len() >= start + len
        {
            break;
        }
        let n = stream.read(&mut chunk).map_err(|e| transport("read", &e))?;
        if n == 0 {
            break;
        }
        answer.extend_from_slice(&chunk[..n]);
        if answer.len() > MAX_ANSWER {
            return Err(CallError::Malformed);
        }
        if head.is_none()
            && let Some(end) = answer.windows(4).position(|w| w == b"\r\n\r\n")
        {
            head = Some((end + 4, content_length(&answer[..end])));
        }
    }
    let (start, len) = head.ok_or(CallError::Malformed)?;
    let status = std::str::from_utf8(&answer[..start])
        .ok()
        .and_then(|h| h.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .ok_or(CallError::Malformed)?;
    let end = match len {
        Some(len) if answer.len() < start + len => {
            return Err(CallError::Transport {
                step: "read",
                error: "answer cut short".to_owned(),
            });
        }
        Some(len) => start + len,
        None => answer.len(),
    };
    Ok((status, answer[start..end].to_vec()))
}

/// The `Content-Length` of an HTTP head, if it has one.
fn content_length(head: &[u8]) -> Option<usize> {
    String::from_utf8_lossy(head).lines().find_map(|line| {
        let (name, value) = line.split_once(':')?;
        name.trim()
            .eq_ignore_ascii_case("content-length")
            .then(|| value.trim().parse().ok())?
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_wan_ip_connection_of_a_description() {
        let desc = "<serviceList><service><serviceType>urn:schemas-upnp-org:service:WANCommonInterfaceConfig:1</serviceType>\
                    <controlURL>/ctl/CmnIfCfg</controlURL></service><service>\
                    <serviceType>urn:schemas-upnp-org:service:WANIPConnection:2</serviceType>\
                    <controlURL>/ctl/IPConn</controlURL></service></serviceList>";
        assert_eq!(
            wan_ip_connection(desc),
            Some((
                "urn:schemas-upnp-org:service:WANIPConnection:2".to_owned(),
                "/ctl/IPConn".to_owned()
            ))
        );
    }

    #[test]
    fn reads_content_length_in_any_case() {
        assert_eq!(
            content_length(b"HTTP/1.1 200 OK\r\ncontent-LENGTH: 42\r\nX: y"),
            Some(42)
        );
        assert_eq!(content_length(b"HTTP/1.1 200 OK\r\nX: y"), None);
    }
}
