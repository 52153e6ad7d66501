//! Servers and clients the suites run on the lab's hosts: HTTP, UDP echo, upnpc, the CLI.

use std::{
    io::{Read as _, Write as _},
    net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpListener, TcpStream, UdpSocket},
    sync::mpsc,
    thread,
    time::Duration,
};

use crate::{EXTERNAL, Lab, Netns, portfwd_bin};

/// A tiny HTTP server: answers every request on `port` with `body`, until the process ends.
/// Runs in `ns`. Returns once it listens.
pub fn serve_http(ns: &Netns, port: u16, body: &'static str) {
    serve_http_on(ns, SocketAddr::from((Ipv4Addr::UNSPECIFIED, port)), body);
}

/// Like [`serve_http`], on `addr` (an IPv6 address serves IPv6 and, for `[::]`, IPv4 too).
pub fn serve_http_on(ns: &Netns, addr: SocketAddr, body: &'static str) {
    let (tx, rx) = mpsc::channel();
    ns.spawn(move || {
        let listener = TcpListener::bind(addr).expect("bind http");
        tx.send(()).expect("ready");
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let peer = stream
                .peer_addr()
                .map_or_else(|_| "?".into(), |a| a.to_string());
            thread::spawn(move || {
                let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
                // Read the whole request: closing with unread data makes the kernel send RST.
                read_request(&mut stream);
                let reply = format!("{body} (you are {peer})\n");
                let response = format!(
                    "HTTP/1.0 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{reply}",
                    reply.len()
                );
                let _ = stream.write_all(response.as_bytes());
            });
        }
    });
    rx.recv_timeout(Duration::from_secs(5))
        .expect("http server up");
}

/// Reads an HTTP request up to the blank line that ends its header (16 KiB at most): what
/// was read.
pub fn read_request(stream: &mut TcpStream) -> Vec<u8> {
    let mut request = Vec::new();
    let mut buf = [0u8; 1024];
    while !request.windows(4).any(|w| w == b"\r\n\r\n") && request.len() < 16 * 1024 {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => request.extend_from_slice(&buf[..n]),
        }
    }
    request
}

/// A UDP echo server on `port` in `ns`, answering `echo: <datagram>`.
pub fn serve_udp_echo(ns: &Netns, port: u16) {
    let (tx, rx) = mpsc::channel();
    ns.spawn(move || {
        let socket = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, port)).expect("bind udp");
        tx.send(()).expect("ready");
        let mut buf = [0u8; 2048];
        while let Ok((n, from)) = socket.recv_from(&mut buf) {
            let mut reply = b"echo: ".to_vec();
            reply.extend_from_slice(&buf[..n]);
            let _ = socket.send_to(&reply, from);
        }
    });
    rx.recv_timeout(Duration::from_secs(5))
        .expect("udp server up");
}

/// An HTTP GET of `/` from inside `ns`; the body, or the error.
/// The lab router's UPnP description.
pub const ROOT_DESC: &str = "http://10.77.0.1:5000/rootDesc.xml";

/// `upnpc -u ROOT_DESC ARGS` (Debian's miniupnpc) in the LAN host's namespace: its stdout
/// and stderr.
pub fn upnpc(lab: &Lab, args: &[&str]) -> String {
    let out = lab
        .lan
        .command("upnpc")
        .arg("-u")
        .arg(ROOT_DESC)
        .args(args)
        .output()
        .expect("run upnpc (is miniupnpc installed? cargo xtask test installs it)");
    String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr)
}

pub fn http_get(ns: &Netns, addr: SocketAddr, timeout: Duration) -> Result<String, String> {
    http_exchange(
        ns,
        addr,
        format!("GET / HTTP/1.0\r\nHost: {addr}\r\n\r\n"),
        timeout,
    )
    .map(|(_, body)| body)
}

/// An HTTP/1.0 request from inside `ns`: the status code and the body.
pub fn http_request(
    ns: &Netns,
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> Result<(u16, String), String> {
    let mut request = format!("{method} {path} HTTP/1.0\r\nHost: {addr}\r\n");
    for (name, value) in headers {
        request = request + name + ": " + value + "\r\n";
    }
    request = request + "Content-Length: " + &body.len().to_string() + "\r\n\r\n" + body;
    http_exchange(ns, addr, request, Duration::from_secs(10))
}

/// Sends `request` from inside `ns` and reads the response to its end: status and body.
fn http_exchange(
    ns: &Netns,
    addr: SocketAddr,
    request: String,
    timeout: Duration,
) -> Result<(u16, String), String> {
    ns.run(move || {
        let mut stream =
            TcpStream::connect_timeout(&addr, timeout).map_err(|e| format!("connect: {e}"))?;
        stream
            .set_read_timeout(Some(timeout))
            .map_err(|e| e.to_string())?;
        stream
            .write_all(request.as_bytes())
            .map_err(|e| format!("write: {e}"))?;
        let mut response = String::new();
        stream
            .read_to_string(&mut response)
            .map_err(|e| format!("read: {e}"))?;
        let (head, body) = response
            .split_once("\r\n\r\n")
            .ok_or_else(|| format!("not HTTP: {response:?}"))?;
        let status = head
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| format!("no status: {head:?}"))?;
        Ok((status, body.to_owned()))
    })
}

/// `portfwd ARGS --state-dir STATE_DIR` (a CLI command) in the lab's router namespace: exit
/// success, stdout, stderr.
pub fn cli(lab: &Lab, state_dir: &std::path::Path, args: &[&str]) -> (bool, String, String) {
    let out = lab
        .router
        .command(portfwd_bin().to_str().expect("path"))
        .args(args)
        .arg("--state-dir")
        .arg(state_dir)
        .output()
        .expect("run the CLI");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// [`cli`] that must succeed: its stdout.
pub fn cli_ok(lab: &Lab, state_dir: &std::path::Path, args: &[&str]) -> String {
    let (ok, out, err) = cli(lab, state_dir, args);
    assert!(ok, "portfwd {args:?} failed: {out}{err}");
    out
}

/// How long tests wait for one exchange through the lab.
pub const WAIT: Duration = Duration::from_secs(3);

/// The router's external address, port `port`: where the remote host reaches shares.
#[must_use]
pub fn external(port: u16) -> SocketAddr {
    SocketAddr::V4(SocketAddrV4::new(EXTERNAL, port))
}

/// Whether HTTP from the remote host to external port `port` reaches the LAN host's server
/// (started by [`serve_http`] with a body beginning "hello from the LAN host").
#[must_use]
pub fn tcp_reaches_lan(lab: &Lab, port: u16) -> bool {
    http_get(&lab.remote, external(port), WAIT)
        .is_ok_and(|body| body.starts_with("hello from the LAN host"))
}

/// Whether UDP from the remote host to external port `port` is echoed by the LAN host's
/// [`serve_udp_echo`], from that same external address and port.
#[must_use]
pub fn udp_reaches_lan(lab: &Lab, port: u16) -> bool {
    udp_exchange(&lab.remote, external(port), b"ping", WAIT)
        .is_ok_and(|(reply, from)| reply == b"echo: ping" && from == external(port))
}

/// Sends `payload` over UDP from inside `ns` and waits for one reply.
pub fn udp_exchange(
    ns: &Netns,
    addr: SocketAddr,
    payload: &'static [u8],
    timeout: Duration,
) -> Result<(Vec<u8>, SocketAddr), String> {
    ns.run(move || {
        let socket = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0)).map_err(|e| e.to_string())?;
        socket
            .set_read_timeout(Some(timeout))
            .map_err(|e| e.to_string())?;
        socket.send_to(payload, addr).map_err(|e| e.to_string())?;
        let mut buf = [0u8; 2048];
        let (n, from) = socket
            .recv_from(&mut buf)
            .map_err(|e| format!("recv: {e}"))?;
        Ok((buf[..n].to_vec(), from))
    })
}

/// The Internet checksum (RFC 1071) of `data`, computed from scratch: what tests check the
/// data plane's incremental updates against, so it shares none of the data plane's code.
pub fn checksum(data: &[u8]) -> u16 {
    let mut sum: u64 = data
        .chunks(2)
        .map(|c| u64::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !u16::try_from(sum).expect("folded to 16 bits")
}

/// Whether the current process can run the lab (root; or at least `CAP_NET_ADMIN` and `CAP_BPF`).
#[must_use]
pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}
