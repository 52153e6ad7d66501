//! Incremental Internet checksum updates (RFC 1624).
//!
//! The packet path changes a few 16-bit words of a header (an address, a port, the TTL) and
//! must fix the IPv4 header checksum and the TCP/UDP checksum without summing the whole packet
//! again. RFC 1624 eqn. 3 gives `HC' = ~(~HC + ~m + m')`, which, unlike the older RFC 1141
//! form, never produces `0x0000` where a full computation gives `0xFFFF`.
//!
//! All values are the big-endian (network order) interpretation of the header bytes: the
//! one's-complement sum is then exactly the one the RFC defines, and the functions can be tested
//! against a checksum computed from scratch.

/// Folds a 32-bit one's-complement accumulator into 16 bits.
#[inline]
#[must_use]
pub const fn fold(mut sum: u32) -> u16 {
    sum = (sum & 0xffff) + (sum >> 16);
    sum = (sum & 0xffff) + (sum >> 16);
    #[expect(
        clippy::cast_possible_truncation,
        reason = "folded twice: fits in 16 bits"
    )]
    let folded = sum as u16;
    folded
}

/// The checksum after one 16-bit word of the covered data changed from `old` to `new`.
#[inline]
#[must_use]
pub const fn replace16(check: u16, old: u16, new: u16) -> u16 {
    !fold(!check as u32 + !old as u32 + new as u32)
}

/// The checksum after a 32-bit field (two words, e.g. an IPv4 address) changed.
#[inline]
#[must_use]
pub const fn replace32(check: u16, old: [u8; 4], new: [u8; 4]) -> u16 {
    let old_hi = u16::from_be_bytes([old[0], old[1]]);
    let old_lo = u16::from_be_bytes([old[2], old[3]]);
    let new_hi = u16::from_be_bytes([new[0], new[1]]);
    let new_lo = u16::from_be_bytes([new[2], new[3]]);
    !fold(!check as u32 + !old_hi as u32 + !old_lo as u32 + new_hi as u32 + new_lo as u32)
}

/// The UDP checksum after an update: `0` means "no checksum" in UDP over IPv4 (RFC 768), so a
/// packet that had none keeps none, and a computed `0` is sent as `0xFFFF`.
#[inline]
#[must_use]
pub const fn udp_result(had_checksum: bool, updated: u16) -> u16 {
    if !had_checksum {
        0
    } else if updated == 0 {
        0xffff
    } else {
        updated
    }
}

/// A TCP or UDP checksum after an address of its pseudo-header and a port changed (`(old,
/// new)` each). A UDP checksum of 0 (none) stays 0.
#[inline]
#[must_use]
pub const fn l4_update(check: u16, udp: bool, addr: ([u8; 4], [u8; 4]), port: (u16, u16)) -> u16 {
    let updated = replace16(replace32(check, addr.0, addr.1), port.0, port.1);
    if udp {
        udp_result(check != 0, updated)
    } else {
        updated
    }
}

/// The IPv4 header checksum after the TTL dropped by one.
///
/// TTL is the high byte of the (TTL, protocol) word, so the word drops by `0x0100`.
#[inline]
#[must_use]
pub const fn ttl_decrement(check: u16, ttl: u8, proto: u8) -> u16 {
    let old = u16::from_be_bytes([ttl, proto]);
    let new = u16::from_be_bytes([ttl.wrapping_sub(1), proto]);
    replace16(check, old, new)
}

#[cfg(test)]
mod tests {
    use super::{fold, l4_update, replace16, replace32, ttl_decrement, udp_result};

    /// RFC 1071 checksum from scratch over `data` (big-endian words, odd byte padded).
    fn full(data: &[u8]) -> u16 {
        let mut sum: u32 = 0;
        for chunk in data.chunks(2) {
            let word = u16::from_be_bytes([chunk[0], *chunk.get(1).unwrap_or(&0)]);
            sum += u32::from(word);
        }
        !fold(sum)
    }

    fn header(ttl: u8, src: [u8; 4], dst: [u8; 4]) -> [u8; 20] {
        let mut h = [
            0x45, 0, 0, 60, 0x1c, 0x46, 0x40, 0, ttl, 6, 0, 0, src[0], src[1], src[2], src[3],
            dst[0], dst[1], dst[2], dst[3],
        ];
        let c = full(&h).to_be_bytes();
        h[10] = c[0];
        h[11] = c[1];
        h
    }

    #[test]
    fn header_checksum_follows_address_and_ttl_changes() {
        // A spread of addresses, including ones that make sums wrap and hit 0xFFFF/0x0000.
        let addrs: [[u8; 4]; 6] = [
            [198, 51, 100, 1],
            [10, 77, 0, 10],
            [255, 255, 255, 255],
            [0, 0, 0, 1],
            [192, 168, 0, 255],
            [127, 0, 0, 1],
        ];
        for &old in &addrs {
            for &new in &addrs {
                for ttl in [1u8, 2, 64, 128, 255] {
                    let before = header(ttl, [203, 0, 113, 7], old);
                    let check = u16::from_be_bytes([before[10], before[11]]);
                    let updated = ttl_decrement(replace32(check, old, new), ttl, 6);
                    let expected = header(ttl - 1, [203, 0, 113, 7], new);
                    assert_eq!(
                        updated.to_be_bytes(),
                        [expected[10], expected[11]],
                        "{old:?} -> {new:?}, ttl {ttl}"
                    );
                }
            }
        }
    }

    #[test]
    fn port_change_matches_full_recompute() {
        for (old, new) in [(8080u16, 80u16), (1, 65535), (65535, 1), (0x1234, 0xedcb)] {
            let mut seg = [0u8; 24];
            seg[..2].copy_from_slice(&old.to_be_bytes());
            seg[10..14].copy_from_slice(b"data");
            let check = full(&seg);
            seg[..2].copy_from_slice(&new.to_be_bytes());
            assert_eq!(replace16(check, old, new), full(&seg), "{old} -> {new}");
        }
    }

    #[test]
    fn udp_zero_checksum_rules() {
        assert_eq!(udp_result(false, 0x1234), 0, "no checksum stays none");
        assert_eq!(
            udp_result(true, 0),
            0xffff,
            "computed zero is sent as all ones"
        );
        assert_eq!(udp_result(true, 0xabcd), 0xabcd);
    }

    #[test]
    fn l4_update_follows_the_pseudo_header_and_port_and_keeps_no_checksum() {
        // A UDP datagram: pseudo-header (src, dst, 0, 17, len) then header and payload.
        let datagram = |src: [u8; 4], dst: [u8; 4], dport: u16| {
            let mut udp = [0u8; 12];
            udp[..2].copy_from_slice(&4000u16.to_be_bytes());
            udp[2..4].copy_from_slice(&dport.to_be_bytes());
            udp[4..6].copy_from_slice(&12u16.to_be_bytes());
            udp[8..].copy_from_slice(b"ping");
            let mut pseudo = [0u8; 24];
            pseudo[..4].copy_from_slice(&src);
            pseudo[4..8].copy_from_slice(&dst);
            pseudo[8..12].copy_from_slice(&[0, 17, 0, 12]);
            pseudo[12..].copy_from_slice(&udp);
            full(&pseudo)
        };
        let (src, old, new) = ([198, 51, 100, 2], [198, 51, 100, 1], [10, 77, 0, 10]);
        let before = datagram(src, old, 5300);
        let after = l4_update(before, true, (old, new), (5300, 5353));
        assert_eq!(after, datagram(src, new, 5353));
        assert_eq!(
            l4_update(0, true, (old, new), (5300, 5353)),
            0,
            "no checksum stays none"
        );
        assert_eq!(
            l4_update(before, false, (old, new), (5300, 5353)),
            after,
            "TCP's is the same arithmetic"
        );
    }
}
