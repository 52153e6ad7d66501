//! Where share keys live: those open to any remote host in the `PORTS` array, by index.

use portfwd_common::{ShareKey, port_index};

/// Where a share key lives in `PORTS`: a key open to any remote host, of TCP or UDP. Others
/// (tied to a remote host) live in `SHARES`.
pub(super) fn wildcard_index(key: ShareKey) -> Option<u32> {
    if key.remote_addr == 0 {
        port_index(key.proto, key.ext_port)
    } else {
        None
    }
}

/// The share key of `PORTS` element `index` (the inverse of `port_index`).
pub(super) fn port_key(index: u32) -> ShareKey {
    let (proto, port) = if index < 65_536 {
        (portfwd_common::IPPROTO_TCP, index)
    } else {
        (portfwd_common::IPPROTO_UDP, index - 65_536)
    };
    ShareKey {
        remote_addr: 0,
        ext_port: u16::try_from(port).unwrap_or(0).to_be(),
        proto,
        _pad: 0,
    }
}

#[cfg(test)]
mod tests {
    use portfwd_common::{IPPROTO_TCP, IPPROTO_UDP, ShareKey};

    use super::{port_key, wildcard_index};

    #[test]
    fn wildcard_keys_go_to_the_port_array_and_come_back_the_same() {
        for proto in [IPPROTO_TCP, IPPROTO_UDP] {
            for port in [0u16, 1, 80, 27_015, u16::MAX] {
                let key = ShareKey {
                    remote_addr: 0,
                    ext_port: port.to_be(),
                    proto,
                    _pad: 0,
                };
                let index = wildcard_index(key).expect("a wildcard TCP/UDP key has an index");
                assert_eq!(port_key(index), key);
            }
        }
        let tied = ShareKey {
            remote_addr: u32::from_be_bytes([198, 51, 100, 7]).to_be(),
            ext_port: 80u16.to_be(),
            proto: IPPROTO_TCP,
            _pad: 0,
        };
        assert_eq!(
            wildcard_index(tied),
            None,
            "a key tied to a remote stays in the hash"
        );
    }
}
