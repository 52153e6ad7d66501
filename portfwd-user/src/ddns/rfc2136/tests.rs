use hmac::{Hmac, Mac as _};
use sha2::Sha256;

use super::*;

fn key() -> Key {
    Key {
        name: "portfwd".into(),
        secret: b"sixteen byte key".to_vec(),
    }
}

fn update() -> Update<'static> {
    Update {
        zone: "example.test",
        name: "home.example.test",
        address: Ipv4Addr::new(198, 51, 100, 1),
        ttl: 60,
    }
}

#[test]
fn names_go_out_in_lower_case_wire_form_and_bad_ones_are_refused() {
    assert_eq!(
        wire_name("Home.Example.test.").expect("name"),
        b"\x04home\x07example\x04test\x00"
    );
    assert_eq!(wire_name("").expect("root"), b"\x00");
    assert_eq!(wire_name("a..b"), None, "empty label");
    assert_eq!(wire_name(&"x".repeat(64)), None, "label over 63");
    assert_eq!(wire_name(&["abcdefg"; 40].join(".")), None, "name over 255");
}

#[test]
fn the_request_replaces_the_a_records_and_carries_a_tsig_record_last() {
    let signed = request(&update(), &key(), 0x1234, 1_764_000_000).expect("signed");
    let m = &signed.message;
    assert_eq!(&m[..2], &[0x12, 0x34]);
    assert_eq!(u16::from_be_bytes([m[2], m[3]]) >> 11, 5, "opcode UPDATE");
    assert_eq!(
        &m[4..12],
        &[0, 1, 0, 0, 0, 2, 0, 1],
        "1 zone, 2 updates, TSIG"
    );
    let zone = wire_name("example.test").expect("zone");
    assert_eq!(&m[12..12 + zone.len()], zone.as_slice());
    let address = Ipv4Addr::new(198, 51, 100, 1).octets();
    assert!(
        m.windows(4).any(|w| w == address),
        "the address is in the add record"
    );
    assert_eq!(signed.mac.len(), 32, "HMAC-SHA256");
    assert!(
        m.windows(signed.mac.len())
            .any(|w| w == signed.mac.as_slice()),
        "the MAC is in the TSIG record"
    );
    // Another time, another MAC.
    let later = request(&update(), &key(), 0x1234, 1_764_000_001).expect("signed");
    assert_ne!(later.mac, signed.mac);
    assert!(
        request(
            &Update {
                name: "a..b",
                ..update()
            },
            &key(),
            1,
            0
        )
        .is_none()
    );
}

/// An answer as a server signs it (RFC 8945 section 4.3.1): the header, the zone section
/// echoed, and a TSIG record with `error` over the request's MAC.
fn answer(signed: &Signed, key: &Key, rcode: u16, error: u16, tamper: bool) -> Vec<u8> {
    let zone = wire_name("example.test").expect("zone");
    let mut body = Vec::new();
    body.extend_from_slice(&signed.id.to_be_bytes());
    body.extend_from_slice(&(0x8000 | (5 << 11) | rcode).to_be_bytes());
    body.extend_from_slice(&[0, 1, 0, 0, 0, 0, 0, 0]);
    body.extend_from_slice(&zone);
    body.extend_from_slice(&[0, 6, 0, 1]);
    let key_name = wire_name(&key.name).expect("key");
    let algorithm = wire_name(ALGORITHM).expect("algorithm");
    let time = 1_764_000_002u64.to_be_bytes();
    let mut mac = <Hmac<Sha256> as hmac::Mac>::new_from_slice(&key.secret).expect("key");
    mac.update(&32u16.to_be_bytes());
    mac.update(&signed.mac);
    mac.update(&body);
    mac.update(&key_name);
    mac.update(&[0, 255, 0, 0, 0, 0]);
    mac.update(&algorithm);
    mac.update(&time[2..]);
    mac.update(&[1, 44]);
    mac.update(&error.to_be_bytes());
    mac.update(&[0, 0]);
    let mac = mac.finalize().into_bytes();
    let mut out = body;
    out[11] = 1;
    out.extend_from_slice(&key_name);
    out.extend_from_slice(&[0, 250, 0, 255, 0, 0, 0, 0]);
    let mut rdata = algorithm;
    rdata.extend_from_slice(&time[2..]);
    rdata.extend_from_slice(&[1, 44, 0, 32]);
    rdata.extend_from_slice(&mac);
    rdata.extend_from_slice(&signed.id.to_be_bytes());
    rdata.extend_from_slice(&error.to_be_bytes());
    rdata.extend_from_slice(&[0, 0]);
    out.extend_from_slice(&u16::try_from(rdata.len()).expect("small").to_be_bytes());
    out.extend_from_slice(&rdata);
    if tamper {
        out[13] ^= 1; // a letter of the zone name
    }
    out
}

#[test]
fn a_signed_noerror_answer_is_a_success_and_anything_else_says_why() {
    let key = key();
    let signed = request(&update(), &key, 7, 1_764_000_000).expect("signed");
    assert_eq!(
        check_answer(&answer(&signed, &key, 0, 0, false), &signed, &key),
        Ok(())
    );
    assert_eq!(
        check_answer(&answer(&signed, &key, 5, 0, false), &signed, &key),
        Err(AnswerError::Rcode(5)),
        "REFUSED, signed"
    );
    assert_eq!(
        check_answer(&answer(&signed, &key, 0, 0, true), &signed, &key),
        Err(AnswerError::BadSignature),
        "a changed answer"
    );
    let other = Key {
        secret: b"another secret!!".to_vec(),
        ..key.clone()
    };
    assert_eq!(
        check_answer(&answer(&signed, &other, 0, 0, false), &signed, &key),
        Err(AnswerError::BadSignature),
        "signed with another key"
    );
    assert_eq!(
        check_answer(&answer(&signed, &key, 9, 16, false), &signed, &key),
        Err(AnswerError::Tsig(16)),
        "BADSIG: the server did not take our signature"
    );
    let stranger = request(&update(), &key, 8, 1_764_000_000).expect("signed");
    assert_eq!(
        check_answer(&answer(&stranger, &key, 0, 0, false), &signed, &key),
        Err(AnswerError::Mismatch)
    );
    // Unsigned answers: an error code says so; a success cannot be trusted.
    let mut unsigned = answer(&signed, &key, 5, 0, false);
    unsigned.truncate(12 + 14 + 4);
    unsigned[11] = 0;
    assert_eq!(
        check_answer(&unsigned, &signed, &key),
        Err(AnswerError::Rcode(5))
    );
    unsigned[3] &= 0xf0;
    assert_eq!(
        check_answer(&unsigned, &signed, &key),
        Err(AnswerError::Unsigned)
    );
}

#[test]
fn cut_or_looping_answers_are_errors_not_panics() {
    let key = key();
    let signed = request(&update(), &key, 7, 1_764_000_000).expect("signed");
    let good = answer(&signed, &key, 0, 0, false);
    for len in 0..good.len() {
        assert!(
            check_answer(&good[..len], &signed, &key).is_err(),
            "cut at {len}"
        );
    }
    // A zone name that points at itself.
    let mut looping = good[..12].to_vec();
    looping.extend_from_slice(&[0xc0, 12, 0, 6, 0, 1]);
    assert!(matches!(
        check_answer(&looping, &signed, &key),
        Err(AnswerError::Malformed(_))
    ));
}
