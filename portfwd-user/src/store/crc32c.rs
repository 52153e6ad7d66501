//! CRC32C (Castagnoli), the checksum of ext4's metadata, of iSCSI (RFC 3720 §B.4) and of
//! leveldb's log: better at the burst errors of a torn write than CRC-32, and small enough to
//! keep here.

/// The reflected polynomial 0x1EDC6F41.
const POLY: u32 = 0x82F6_3B78;

const TABLE: [u32; 256] = {
    let mut table = [0; 256];
    let mut byte: u32 = 0;
    while byte < 256 {
        let mut crc = byte;
        let mut bit = 0;
        while bit < 8 {
            crc = if crc & 1 == 0 {
                crc >> 1
            } else {
                (crc >> 1) ^ POLY
            };
            bit += 1;
        }
        table[byte as usize] = crc;
        byte += 1;
    }
    table
};

/// Continues `crc` (0 to start) over `bytes`: `update(update(0, a), b)` is the CRC of `a ++ b`.
pub(super) fn update(crc: u32, bytes: &[u8]) -> u32 {
    let mut crc = !crc;
    for &byte in bytes {
        crc = TABLE[((crc ^ u32::from(byte)) & 0xff) as usize] ^ (crc >> 8);
    }
    !crc
}

#[cfg(test)]
mod tests {
    use super::update;

    #[test]
    fn known_answers() {
        // The CRC catalogue's check value for CRC-32/ISCSI.
        assert_eq!(update(0, b"123456789"), 0xE306_9283);
        // RFC 3720 §B.4.
        assert_eq!(update(0, &[0; 32]), 0x8A91_36AA);
        assert_eq!(update(0, &[0xff; 32]), 0x62A8_AB43);
        let ascending: Vec<u8> = (0..32).collect();
        assert_eq!(update(0, &ascending), 0x46DD_794E);
    }

    #[test]
    fn continues_across_pieces() {
        assert_eq!(
            update(update(0, b"1234"), b"56789"),
            update(0, b"123456789")
        );
    }
}
