//! Facts about the box's interfaces, read from the kernel.

use std::{ffi::CString, net::Ipv4Addr};

use crate::share::LanSubnet;

/// An interface the daemon was told to use does not exist or cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum NetInfoError {
    #[error("no such interface: {0}")]
    NoSuchInterface(String),
    #[error("interface name {0:?} contains a NUL byte")]
    BadName(String),
    #[error("listing interface addresses")]
    GetIfAddrs(#[source] std::io::Error),
}

/// The interface index of `name`.
pub fn ifindex(name: &str) -> Result<u32, NetInfoError> {
    let c_name = CString::new(name).map_err(|_| NetInfoError::BadName(name.to_owned()))?;
    // SAFETY: c_name is a valid NUL-terminated string for the duration of the call.
    match unsafe { libc::if_nametoindex(c_name.as_ptr()) } {
        0 => Err(NetInfoError::NoSuchInterface(name.to_owned())),
        index => Ok(index),
    }
}

/// The global IPv6 prefixes of interface `name`, from `/proc/net/if_inet6` (none if IPv6 is
/// off).
#[must_use]
pub fn ipv6_prefixes(name: &str) -> Vec<crate::pinhole::Prefix6> {
    let Ok(table) = std::fs::read_to_string("/proc/net/if_inet6") else {
        return Vec::new();
    };
    table
        .lines()
        .filter_map(|line| {
            // address ifindex prefix-length scope flags name, in hex but the name.
            let fields: Vec<&str> = line.split_whitespace().collect();
            let [addr, _, prefix_len, scope, _, dev] = fields[..] else {
                return None;
            };
            if dev != name || scope != "00" {
                return None;
            }
            Some(crate::pinhole::Prefix6 {
                addr: u128::from_str_radix(addr, 16).ok()?.into(),
                prefix_len: u8::from_str_radix(prefix_len, 16).ok()?.min(128),
            })
        })
        .collect()
}

/// The IPv4 addresses and prefix lengths of interface `name`, in the kernel's order (the
/// primary address first).
#[expect(
    clippy::cast_ptr_alignment,
    reason = "sockaddr_in is read with read_unaligned"
)]
pub fn ipv4_subnets(name: &str) -> Result<Vec<LanSubnet>, NetInfoError> {
    let mut list: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs fills `list` with a linked list we free below.
    if unsafe { libc::getifaddrs(&raw mut list) } != 0 {
        return Err(NetInfoError::GetIfAddrs(std::io::Error::last_os_error()));
    }
    let mut subnets = Vec::new();
    let mut cursor = list;
    while !cursor.is_null() {
        // SAFETY: cursor points into the list getifaddrs returned, which is alive until freed.
        let entry = unsafe { &*cursor };
        cursor = entry.ifa_next;
        if entry.ifa_addr.is_null() || entry.ifa_netmask.is_null() {
            continue;
        }
        // SAFETY: ifa_name is a NUL-terminated string owned by the list.
        let entry_name = unsafe { std::ffi::CStr::from_ptr(entry.ifa_name) };
        if entry_name.to_bytes() != name.as_bytes() {
            continue;
        }
        // SAFETY: ifa_addr is non-null and sa_family tells its real type.
        if i32::from(unsafe { (*entry.ifa_addr).sa_family }) != libc::AF_INET {
            continue;
        }
        // SAFETY: both are sockaddr_in for AF_INET entries.
        let (addr, mask) = unsafe {
            (
                (*entry.ifa_addr.cast::<libc::sockaddr_in>())
                    .sin_addr
                    .s_addr,
                (*entry.ifa_netmask.cast::<libc::sockaddr_in>())
                    .sin_addr
                    .s_addr,
            )
        };
        #[expect(clippy::cast_possible_truncation, reason = "at most 32 ones")]
        subnets.push(LanSubnet {
            addr: Ipv4Addr::from(u32::from_be(addr)),
            prefix_len: u32::from_be(mask).count_ones() as u8,
        });
    }
    // SAFETY: list came from getifaddrs and is freed once.
    unsafe { libc::freeifaddrs(list) };
    Ok(subnets)
}

/// The external IPv4 address: the primary IPv4 address of the WAN interface, if it has one.
pub fn external_addr(wan: &str) -> Result<Option<Ipv4Addr>, NetInfoError> {
    Ok(ipv4_subnets(wan)?.first().map(|s| s.addr))
}

/// Whether `interface`'s link is up: operational state up (or unknown, for devices that do not
/// report one), which is what the kernel's `IFF_RUNNING` in link notifications says too.
#[must_use]
pub fn link_up(interface: &str) -> bool {
    let path = format!("/sys/class/net/{interface}/operstate");
    std::fs::read_to_string(path).is_ok_and(|s| matches!(s.trim(), "up" | "unknown"))
}

/// The ports sockets of this network namespace receive on from anywhere: listening TCP
/// sockets, unconnected UDP sockets. Each with its local IPv4 address, `None` for the wildcard
/// (`0.0.0.0`, or `::` of a dual-stack socket). Read from `/proc/net/{tcp,udp}{,6}`; a file
/// that cannot be read counts as no sockets.
#[must_use]
pub fn listening_ports(proto: crate::share::Proto) -> Vec<(Option<Ipv4Addr>, u16)> {
    let (name, state) = match proto {
        crate::share::Proto::Tcp => ("tcp", "0A"),
        crate::share::Proto::Udp => ("udp", "07"),
    };
    let mut out = Vec::new();
    for file in [format!("/proc/net/{name}"), format!("/proc/net/{name}6")] {
        let Ok(text) = std::fs::read_to_string(&file) else {
            continue;
        };
        out.extend(parse_proc_net(&text, state));
    }
    out
}

/// The `(address, port)` of every socket in state `state` of a `/proc/net/tcp`-style table.
fn parse_proc_net(text: &str, state: &str) -> Vec<(Option<Ipv4Addr>, u16)> {
    text.lines()
        .skip(1)
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            let local = fields.nth(1)?;
            let st = fields.nth(1)?;
            if st != state {
                return None;
            }
            let (addr, port) = local.split_once(':')?;
            let port = u16::from_str_radix(port, 16).ok()?;
            // The kernel prints each 32-bit word of the address in host byte order.
            let words: Vec<u32> = (0..addr.len() / 8)
                .map(|i| u32::from_str_radix(addr.get(i * 8..i * 8 + 8)?, 16).ok())
                .collect::<Option<_>>()?;
            let addr = match words.as_slice() {
                [v4] => Some(Ipv4Addr::from(v4.to_ne_bytes())),
                [0, 0, 0, 0] => None,
                // ::ffff:a.b.c.d, a v4-mapped address.
                [0, 0, mapped, v4] if mapped.to_ne_bytes() == [0, 0, 0xff, 0xff] => {
                    Some(Ipv4Addr::from(v4.to_ne_bytes()))
                }
                _ => return None,
            };
            Some((addr.filter(|a| !a.is_unspecified()), port))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_is_found_and_unknown_names_are_errors() {
        assert_eq!(ifindex("lo").expect("lo"), 1);
        let subnets = ipv4_subnets("lo").expect("lo");
        assert!(
            subnets
                .iter()
                .any(|s| s.addr == Ipv4Addr::LOCALHOST && s.prefix_len == 8)
        );
        assert!(matches!(
            ifindex("no-such-if0"),
            Err(NetInfoError::NoSuchInterface(_))
        ));
        assert!(matches!(ifindex("a\0b"), Err(NetInfoError::BadName(_))));
    }

    #[test]
    fn proc_net_tables_give_listening_sockets() {
        let v4 = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1 1 0 100 0 0 10 0
   1: 0100007F:0035 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 2 1 0 100 0 0 10 0
   2: 0100007F:A000 0100007F:1F90 01 00000000:00000000 00:00000000 00000000     0        0 3 1 0 100 0 0 10 0
";
        let got = parse_proc_net(v4, "0A");
        assert_eq!(got, vec![(None, 8080), (Some(Ipv4Addr::LOCALHOST), 53)]);
        let v6 =
            "  sl  local_address                         remote_address                        st
   0: 00000000000000000000000000000000:1388 00000000000000000000000000000000:0000 0A 0
   1: 0000000000000000FFFF00000100007F:0016 00000000000000000000000000000000:0000 0A 0
   2: 000080FE00000000FF00000001000000:0017 00000000000000000000000000000000:0000 0A 0
";
        assert_eq!(
            parse_proc_net(v6, "0A"),
            vec![(None, 5000), (Some(Ipv4Addr::LOCALHOST), 22)]
        );
    }
}
