//! Dynamic DNS answers: `ddns::rfc2136::check_answer` on any datagram, as sent (flags bit 0
//! clear) or with a TSIG record properly signed by the server's key appended (bit 0 set), so
//! that the fuzzer reaches past the signature into the section parsing; and `wire_name` on
//! any text.
//!
//! Input: one byte of flags, then the datagram (or the answer's body, to be signed).
#![no_main]

use hmac::{Hmac, Mac as _};
use libfuzzer_sys::fuzz_target;
use portfwd::ddns::rfc2136::{
    ALGORITHM, AnswerError, Key, Signed, Update, check_answer, request, wire_name,
};
use sha2::Sha256;

const ID: u16 = 0x4242;

/// `body` with a TSIG record appended as the server signs one (RFC 8945 section 4.3.1).
fn sign(body: &[u8], signed: &Signed, key: &Key) -> Vec<u8> {
    let mut out = body.to_vec();
    if out.len() < 12 {
        return out;
    }
    let key_name = wire_name(&key.name).expect("key name");
    let algorithm = wire_name(ALGORITHM).expect("algorithm");
    let time = [0, 0, 0x69, 0x2a, 0x4c, 0x00];
    let mut mac = <Hmac<Sha256> as hmac::Mac>::new_from_slice(&key.secret).expect("key");
    mac.update(&32u16.to_be_bytes());
    mac.update(&signed.mac);
    mac.update(body);
    mac.update(&key_name);
    mac.update(&[0, 255, 0, 0, 0, 0]);
    mac.update(&algorithm);
    mac.update(&time);
    mac.update(&[1, 44, 0, 0, 0, 0]);
    let mac = mac.finalize().into_bytes();
    let additional = u16::from_be_bytes([out[10], out[11]]).wrapping_add(1);
    out[10..12].copy_from_slice(&additional.to_be_bytes());
    out.extend_from_slice(&key_name);
    out.extend_from_slice(&[0, 250, 0, 255, 0, 0, 0, 0]);
    let mut rdata = algorithm;
    rdata.extend_from_slice(&time);
    rdata.extend_from_slice(&[1, 44, 0, 32]);
    rdata.extend_from_slice(&mac);
    rdata.extend_from_slice(&ID.to_be_bytes());
    rdata.extend_from_slice(&[0, 0, 0, 0]);
    out.extend_from_slice(&u16::try_from(rdata.len()).expect("small").to_be_bytes());
    out.extend_from_slice(&rdata);
    out
}

fuzz_target!(|data: &[u8]| {
    let Some((&flags, rest)) = data.split_first() else {
        return;
    };
    let key = Key {
        name: "portfwd".into(),
        secret: b"the fuzzing key".to_vec(),
    };
    let update = Update {
        zone: "example.test",
        name: "home.example.test",
        address: std::net::Ipv4Addr::new(198, 51, 100, 1),
        ttl: 60,
    };
    let signed = request(&update, &key, ID, 1_764_000_000).expect("request");
    // The request is no answer to itself.
    assert_eq!(
        check_answer(&signed.message, &signed, &key),
        Err(AnswerError::Mismatch)
    );
    let answer = if flags & 1 == 0 {
        rest.to_vec()
    } else {
        sign(rest, &signed, &key)
    };
    if check_answer(&answer, &signed, &key).is_ok() {
        // Success needs the request's ID, an UPDATE answer, NOERROR and the signature.
        assert_eq!(&answer[..2], &ID.to_be_bytes());
        assert_eq!(answer[2] & 0xf8, 0xa8, "QR and opcode UPDATE");
        assert_eq!(answer[3] & 0x0f, 0, "NOERROR");
    }
    if let Ok(text) = std::str::from_utf8(rest)
        && let Some(wire) = wire_name(text)
    {
        assert!(wire.len() <= 255 && wire.last() == Some(&0), "{text:?}");
    }
});
