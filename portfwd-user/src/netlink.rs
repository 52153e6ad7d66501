//! Following the kernel's routes, neighbours, addresses and links over rtnetlink.
//!
//! The packet path caches next hops; any change to what `bpf_fib_lookup` would answer must
//! invalidate that cache, and an address change on the WAN interface changes the external
//! address. Rather than keep a copy of the kernel's tables, the monitor only classifies each
//! notification: the daemon bumps the cache generation on every one and re-reads the WAN
//! address when addresses changed. Notifications are pushed by the kernel (multicast groups),
//! never polled.

use std::{
    io,
    os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd},
};

use tokio::io::unix::AsyncFd;

// rtnetlink multicast groups (linux/rtnetlink.h, the legacy RTMGRP_* bitmask for bind()).
const RTMGRP_LINK: u32 = 0x1;
const RTMGRP_NEIGH: u32 = 0x4;
const RTMGRP_IPV4_IFADDR: u32 = 0x10;
const RTMGRP_IPV4_ROUTE: u32 = 0x40;

// Message types (linux/rtnetlink.h).
const RTM_NEWLINK: u16 = 16;
const RTM_DELLINK: u16 = 17;
const RTM_NEWADDR: u16 = 20;
const RTM_DELADDR: u16 = 21;
const RTM_NEWROUTE: u16 = 24;
const RTM_DELROUTE: u16 = 25;
const RTM_NEWNEIGH: u16 = 28;
const RTM_DELNEIGH: u16 = 29;

// Interface flags (linux/if.h). The kernel reports IFF_RUNNING in link messages when the
// device is up with carrier (dev_get_flags).
const IFF_UP: u32 = 0x1;
const IFF_RUNNING: u32 = 0x40;

/// What a batch of notifications changed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Changes {
    /// Routes, neighbours or links changed: cached next hops may be stale.
    pub forwarding: bool,
    /// Interface addresses changed: the external address may have changed.
    pub addresses: bool,
    /// The watched interface's link as the last message about it says: up (administratively
    /// up, with carrier) or not (down, no carrier, or removed).
    pub link: Option<bool>,
    /// Notifications were lost (the socket's buffer overran): re-read what matters.
    pub lost: bool,
}

impl Changes {
    fn any(self) -> bool {
        self.forwarding || self.addresses || self.link.is_some() || self.lost
    }

    fn merge(&mut self, other: Self) {
        self.forwarding |= other.forwarding;
        self.addresses |= other.addresses;
        self.link = other.link.or(self.link);
        self.lost |= other.lost;
    }
}

/// Classifies the netlink messages in one datagram; link messages about interface `watch` say
/// whether its link is up. Malformed or truncated messages end the walk; what was read so far
/// counts.
#[must_use]
pub fn classify(mut buf: &[u8], watch: u32) -> Changes {
    const HEADER: usize = 16;
    let mut changes = Changes::default();
    while buf.len() >= HEADER {
        let len = u32::from_ne_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
        let kind = u16::from_ne_bytes([buf[4], buf[5]]);
        if len < HEADER || len > buf.len() {
            break;
        }
        match kind {
            RTM_NEWADDR | RTM_DELADDR => changes.addresses = true,
            RTM_NEWLINK | RTM_DELLINK => {
                changes.forwarding = true;
                // struct ifinfomsg: family, pad, type (u16), index (i32), flags, change.
                if let Some(info) = buf.get(HEADER..HEADER + 16) {
                    let index = u32::from_ne_bytes([info[4], info[5], info[6], info[7]]);
                    let flags = u32::from_ne_bytes([info[8], info[9], info[10], info[11]]);
                    if index == watch {
                        changes.link = Some(
                            kind == RTM_NEWLINK && flags & IFF_UP != 0 && flags & IFF_RUNNING != 0,
                        );
                    }
                }
            }
            RTM_NEWROUTE | RTM_DELROUTE | RTM_NEWNEIGH | RTM_DELNEIGH => {
                changes.forwarding = true;
            }
            _ => {}
        }
        // Messages are 4-byte aligned (NLMSG_ALIGN).
        let advance = (len + 3) & !3;
        buf = buf.get(advance..).unwrap_or_default();
    }
    changes
}

/// A netlink socket subscribed to route, neighbour, address and link notifications.
pub struct Monitor {
    fd: AsyncFd<OwnedFd>,
    buf: Vec<u8>,
    watch: u32,
}

impl Monitor {
    /// Opens and subscribes the socket in the current network namespace; the link of interface
    /// `watch` is followed.
    pub fn open(watch: u32) -> io::Result<Self> {
        // SAFETY: plain socket(2); the result is checked and owned below.
        let raw = unsafe {
            libc::socket(
                libc::AF_NETLINK,
                libc::SOCK_RAW | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
                libc::NETLINK_ROUTE,
            )
        };
        if raw < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: raw is a fresh, valid descriptor nobody else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        // SAFETY: sockaddr_nl is plain data; all-zero is its unspecified form.
        let mut addr: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
        #[expect(
            clippy::cast_possible_truncation,
            reason = "AF_NETLINK fits in sa_family_t"
        )]
        {
            addr.nl_family = libc::AF_NETLINK as libc::sa_family_t;
        }
        addr.nl_groups = RTMGRP_LINK | RTMGRP_NEIGH | RTMGRP_IPV4_IFADDR | RTMGRP_IPV4_ROUTE;
        // SAFETY: addr is a valid sockaddr_nl of the size passed.
        let rc = unsafe {
            libc::bind(
                fd.as_raw_fd(),
                (&raw const addr).cast(),
                #[expect(clippy::cast_possible_truncation, reason = "a small struct")]
                {
                    size_of::<libc::sockaddr_nl>() as libc::socklen_t
                },
            )
        };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: the OwnedFd is moved into the AsyncFd and stays open, the same descriptor,
        // for as long as the AsyncFd lives.
        let fd = unsafe { AsyncFd::register(fd) }.map_err(io::Error::from)?;
        Ok(Self {
            fd,
            buf: vec![0; 64 * 1024],
            watch,
        })
    }

    /// Waits for the next notifications and says what they changed. A receive-buffer overrun
    /// (ENOBUFS: notifications were lost) reports everything as changed.
    pub async fn next(&mut self) -> io::Result<Changes> {
        loop {
            let mut guard = self.fd.readable().await?;
            let mut changes = Changes::default();
            // Drain what is queued so that a burst costs one cache flush.
            loop {
                // SAFETY: buf is valid for writes of its length.
                let n = unsafe {
                    libc::recv(
                        guard.get_inner().as_raw_fd(),
                        self.buf.as_mut_ptr().cast(),
                        self.buf.len(),
                        0,
                    )
                };
                if n >= 0 {
                    #[expect(clippy::cast_sign_loss, reason = "checked non-negative")]
                    let n = n as usize;
                    changes.merge(classify(&self.buf[..n], self.watch));
                    continue;
                }
                let err = io::Error::last_os_error();
                match err.raw_os_error() {
                    Some(libc::EAGAIN) => {
                        guard.clear_ready();
                        break;
                    }
                    Some(libc::EINTR) => {}
                    Some(libc::ENOBUFS) => {
                        changes.merge(Changes {
                            forwarding: true,
                            addresses: true,
                            link: None,
                            lost: true,
                        });
                    }
                    _ => return Err(err),
                }
            }
            if changes.any() {
                return Ok(changes);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(kind: u16, payload: usize) -> Vec<u8> {
        let len = 16 + payload;
        let mut m = Vec::new();
        m.extend_from_slice(&u32::try_from(len).expect("small").to_ne_bytes());
        m.extend_from_slice(&kind.to_ne_bytes());
        m.resize(len, 0);
        m.resize((len + 3) & !3, 0);
        m
    }

    fn link(kind: u16, index: u32, flags: u32) -> Vec<u8> {
        let mut m = message(kind, 16);
        m[20..24].copy_from_slice(&index.to_ne_bytes());
        m[24..28].copy_from_slice(&flags.to_ne_bytes());
        m
    }

    #[test]
    fn classifies_batches_and_survives_garbage() {
        let mut batch = message(RTM_NEWNEIGH, 13);
        batch.extend(message(RTM_NEWADDR, 8));
        assert_eq!(
            classify(&batch, 2),
            Changes {
                forwarding: true,
                addresses: true,
                ..Changes::default()
            }
        );
        assert!(classify(&message(RTM_DELROUTE, 0), 2).forwarding);
        assert_eq!(
            classify(&message(3, 4), 2),
            Changes::default(),
            "NLMSG_DONE"
        );
        // Truncated, zero-length and oversize headers stop the walk without panicking.
        assert_eq!(classify(&[0xff; 7], 2), Changes::default());
        let mut bad = message(RTM_NEWLINK, 0);
        bad[..4].copy_from_slice(&1000u32.to_ne_bytes());
        assert_eq!(classify(&bad, 2), Changes::default());
        let mut zero = message(RTM_NEWLINK, 0);
        zero[..4].copy_from_slice(&0u32.to_ne_bytes());
        assert_eq!(classify(&zero, 2), Changes::default());
        // A link message too short for its ifinfomsg still counts as a forwarding change.
        assert_eq!(classify(&message(RTM_NEWLINK, 4), 0).link, None);
    }

    #[test]
    fn follows_the_watched_link() {
        let running = IFF_UP | IFF_RUNNING;
        assert_eq!(classify(&link(RTM_NEWLINK, 2, running), 2).link, Some(true));
        assert_eq!(
            classify(&link(RTM_NEWLINK, 2, IFF_UP), 2).link,
            Some(false),
            "no carrier"
        );
        assert_eq!(
            classify(&link(RTM_NEWLINK, 2, 0), 2).link,
            Some(false),
            "down"
        );
        assert_eq!(
            classify(&link(RTM_DELLINK, 2, running), 2).link,
            Some(false),
            "gone"
        );
        assert_eq!(
            classify(&link(RTM_NEWLINK, 3, 0), 2).link,
            None,
            "another interface"
        );
        let mut batch = link(RTM_NEWLINK, 2, 0);
        batch.extend(link(RTM_NEWLINK, 2, running));
        assert_eq!(
            classify(&batch, 2).link,
            Some(true),
            "the last message wins"
        );
    }
}
