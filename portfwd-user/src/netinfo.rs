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
}
