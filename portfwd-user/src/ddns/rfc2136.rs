//! RFC 2136 dynamic update of one A record, signed with TSIG (RFC 8945, HMAC-SHA256): the
//! provider's settings, the message portfwd sends and the reading of the server's answer
//! (pure functions, fuzzed), and [`send`], the one exchange over UDP.
//!
//! The update replaces the name's A records with the external address: in the zone section
//! the zone (SOA, IN); in the update section "delete the A `RRset`" (class ANY, TTL 0, no data)
//! and "add A address" (class IN). Names go out uncompressed; answers may compress theirs.
//! The answer is accepted only with the request's ID, the QR bit, opcode UPDATE, and a TSIG
//! record whose MAC checks out (over the request's MAC, the answer without its TSIG record and
//! the TSIG variables), unless the server answers a TSIG error, which it cannot sign.

use std::{
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
    time::Duration,
};

use hmac::{Hmac, Mac as _};
use sha2::Sha256;
use tokio::{net::UdpSocket, time::Instant};

use super::{FileDdns, Invalid};

/// `hmac-sha256.`, the one algorithm portfwd signs with.
pub const ALGORITHM: &str = "hmac-sha256";
/// Seconds of clock skew a server accepts (RFC 8945 recommends 300).
const FUDGE: u16 = 300;
const OPCODE_UPDATE: u16 = 5;
const TYPE_A: u16 = 1;
const TYPE_SOA: u16 = 6;
const TYPE_TSIG: u16 = 250;
const CLASS_IN: u16 = 1;
const CLASS_ANY: u16 = 255;
/// The largest answer read: an UPDATE answer is a header, a zone and a TSIG record.
pub const MAX_ANSWER: usize = 1232;
/// How long an answer is waited for.
const ANSWER_WAIT: Duration = Duration::from_secs(5);

/// The owner's DNS server and what to update there with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Server {
    /// The server, port 53 unless told otherwise.
    pub addr: SocketAddr,
    /// The zone the name is in, lower case, without a final dot.
    pub zone: String,
    pub key: Key,
    /// TTL of the A record, seconds.
    pub ttl: u32,
}

impl Server {
    /// The rfc2136 keys of `file` checked, for `name` (already a DNS name, lower case), and
    /// the key's secret read.
    pub fn compile(file: &FileDdns, name: &str) -> Result<Self, Invalid> {
        let addr = file
            .server
            .parse::<SocketAddr>()
            .or_else(|_| {
                file.server
                    .parse::<IpAddr>()
                    .map(|ip| SocketAddr::new(ip, 53))
            })
            .map_err(|_| (format!("`{}` is not IP or IP:PORT", file.server), "server"))?;
        let missing = |key| (format!("missing: provider rfc2136 needs `{key}`"), key);
        let zone = file.zone.as_deref().ok_or_else(|| missing("zone"))?;
        let key_name = file
            .key_name
            .as_deref()
            .ok_or_else(|| missing("key_name"))?;
        for (value, key) in [(zone, "zone"), (key_name, "key_name")] {
            if wire_name(value).is_none() || value.is_empty() {
                return Err((format!("`{value}` is not a DNS name"), key));
            }
        }
        let zone = zone.trim_end_matches('.').to_ascii_lowercase();
        if !(name == zone || name.ends_with(&format!(".{zone}"))) {
            return Err((format!("{name} is not in zone {zone}"), "name"));
        }
        let text = match (&file.key_secret, &file.key_file) {
            (Some(secret), None) => secret.expose().to_owned(),
            (None, Some(path)) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|e| (format!("cannot read {}: {e}", path.display()), "key_file"))?;
                bind_secret(&text).unwrap_or_else(|| text.trim().to_owned())
            }
            _ => {
                return Err((
                    "give the key as key_secret or key_file (one of them)".to_owned(),
                    "key_secret",
                ));
            }
        };
        let secret =
            base64::Engine::decode(&base64::engine::general_purpose::STANDARD, text.trim())
                .ok()
                .filter(|s| !s.is_empty())
                .ok_or_else(|| ("the key's secret is not base64".to_owned(), "key_secret"))?;
        Ok(Self {
            addr,
            zone,
            key: Key {
                name: key_name.to_owned(),
                secret,
            },
            ttl: file.ttl.unwrap_or(60),
        })
    }
}

/// The secret of a BIND `key` clause (`secret "…";`), as `tsig-keygen` writes it.
fn bind_secret(text: &str) -> Option<String> {
    let rest = &text[text.find("secret")? + "secret".len()..];
    let start = rest.find('"')? + 1;
    let len = rest[start..].find('"')?;
    Some(rest[start..start + len].to_owned())
}

/// Why an update failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("the name, zone or key name cannot be written")]
    Name,
    #[error("sending to the DNS server: {0}")]
    Io(#[from] std::io::Error),
    #[error("no answer from the DNS server within {} s", ANSWER_WAIT.as_secs())]
    Timeout,
    #[error(transparent)]
    Answer(#[from] AnswerError),
}

impl Error {
    /// Whether the server refused what only the owner can change: the key (a TSIG error), or
    /// the name or zone (REFUSED, NOTAUTH, NOTZONE).
    #[must_use]
    pub const fn needs_owner(&self) -> bool {
        matches!(
            self,
            Self::Answer(AnswerError::Tsig(_) | AnswerError::Rcode(5 | 9 | 10))
        )
    }
}

/// Sends one update of `name` to `address` to `server` and checks the answer.
pub async fn send(server: &Server, name: &str, address: Ipv4Addr) -> Result<(), Error> {
    let id = u16::from_be_bytes(crate::daemon::random_bytes::<2>());
    let update = Update {
        zone: &server.zone,
        name,
        address,
        ttl: server.ttl,
    };
    let signed = request(&update, &server.key, id, crate::clock::unix_now()).ok_or(Error::Name)?;
    let local: SocketAddr = if server.addr.is_ipv4() {
        (Ipv4Addr::UNSPECIFIED, 0).into()
    } else {
        (Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let socket = UdpSocket::bind(local).await?;
    socket.connect(server.addr).await?;
    socket.send(&signed.message).await?;
    let mut buf = vec![0u8; MAX_ANSWER + 1];
    let deadline = Instant::now() + ANSWER_WAIT;
    loop {
        let n = tokio::time::timeout_at(deadline, socket.recv(&mut buf))
            .await
            .map_err(|_| Error::Timeout)??;
        match check_answer(&buf[..n], &signed, &server.key) {
            // A stray datagram (another ID): wait on for ours.
            Err(AnswerError::Mismatch) => {}
            other => return Ok(other?),
        }
    }
}

/// A TSIG key.
#[derive(Clone, PartialEq, Eq)]
pub struct Key {
    /// The key's name, as the server knows it.
    pub name: String,
    /// The shared secret (decoded).
    pub secret: Vec<u8>,
}

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The secret never reaches a log.
        f.debug_struct("Key")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

/// What to update.
#[derive(Clone, Debug)]
pub struct Update<'a> {
    pub zone: &'a str,
    pub name: &'a str,
    pub address: Ipv4Addr,
    pub ttl: u32,
}

/// A signed UPDATE message and the MAC its answer's signature covers.
#[derive(Debug)]
pub struct Signed {
    pub id: u16,
    pub message: Vec<u8>,
    pub mac: Vec<u8>,
}

/// Why an answer is not a success.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AnswerError {
    #[error("the answer is malformed ({0})")]
    Malformed(&'static str),
    #[error("the answer is not for this request")]
    Mismatch,
    #[error("the answer's signature does not check out")]
    BadSignature,
    #[error("the answer is not signed")]
    Unsigned,
    #[error("the server refused the key: TSIG error {code} ({name})", code = .0, name = tsig_error_name(*.0))]
    Tsig(u16),
    #[error("the server answered {code} ({name})", code = .0, name = rcode_name(*.0))]
    Rcode(u16),
}

/// A name in wire form, lower-cased (the canonical form TSIG signs): `None` for an empty
/// label, a label over 63 bytes or a name over 255.
#[must_use]
pub fn wire_name(name: &str) -> Option<Vec<u8>> {
    let name = name.strip_suffix('.').unwrap_or(name);
    let mut out = Vec::with_capacity(name.len() + 2);
    if !name.is_empty() {
        for label in name.split('.') {
            let len = u8::try_from(label.len())
                .ok()
                .filter(|l| (1..=63).contains(l))?;
            out.push(len);
            out.extend(label.bytes().map(|b| b.to_ascii_lowercase()));
        }
    }
    out.push(0);
    (out.len() <= 255).then_some(out)
}

fn push16(out: &mut Vec<u8>, v: u16) {
    out.extend_from_slice(&v.to_be_bytes());
}

fn push32(out: &mut Vec<u8>, v: u32) {
    out.extend_from_slice(&v.to_be_bytes());
}

/// The TSIG variables after the key name, class and TTL (RFC 8945 section 4.3.3).
fn tsig_variables(algorithm: &[u8], time: u64, error: u16) -> Vec<u8> {
    let mut out = algorithm.to_vec();
    out.extend_from_slice(&time.to_be_bytes()[2..]);
    push16(&mut out, FUDGE);
    push16(&mut out, error);
    push16(&mut out, 0); // other len
    out
}

fn hmac(secret: &[u8]) -> Hmac<Sha256> {
    // HMAC takes a key of any length.
    <Hmac<Sha256> as hmac::Mac>::new_from_slice(secret).unwrap_or_else(|_| unreachable!())
}

/// The UPDATE message for `update`, signed with `key` at `time` (seconds since the epoch).
/// `None` for a name, zone or key name that cannot be written.
#[must_use]
pub fn request(update: &Update<'_>, key: &Key, id: u16, time: u64) -> Option<Signed> {
    let zone = wire_name(update.zone)?;
    let name = wire_name(update.name)?;
    let key_name = wire_name(&key.name)?;
    let algorithm = wire_name(ALGORITHM)?;
    let mut msg = Vec::with_capacity(128);
    push16(&mut msg, id);
    push16(&mut msg, OPCODE_UPDATE << 11);
    for count in [1, 0, 2, 0] {
        push16(&mut msg, count); // zone, prerequisites, updates, additional
    }
    msg.extend_from_slice(&zone);
    push16(&mut msg, TYPE_SOA);
    push16(&mut msg, CLASS_IN);
    // Delete every A record of the name.
    msg.extend_from_slice(&name);
    push16(&mut msg, TYPE_A);
    push16(&mut msg, CLASS_ANY);
    push32(&mut msg, 0);
    push16(&mut msg, 0);
    // Add the one with the address.
    msg.extend_from_slice(&name);
    push16(&mut msg, TYPE_A);
    push16(&mut msg, CLASS_IN);
    push32(&mut msg, update.ttl);
    push16(&mut msg, 4);
    msg.extend_from_slice(&update.address.octets());

    let mut signer = hmac(&key.secret);
    signer.update(&msg);
    signer.update(&key_name);
    signer.update(&CLASS_ANY.to_be_bytes());
    signer.update(&0u32.to_be_bytes());
    signer.update(&tsig_variables(&algorithm, time, 0));
    let mac = signer.finalize().into_bytes().to_vec();

    // The TSIG record, and the additional count that now includes it.
    msg[10..12].copy_from_slice(&1u16.to_be_bytes());
    msg.extend_from_slice(&key_name);
    push16(&mut msg, TYPE_TSIG);
    push16(&mut msg, CLASS_ANY);
    push32(&mut msg, 0);
    let mut rdata = algorithm;
    rdata.extend_from_slice(&time.to_be_bytes()[2..]);
    push16(&mut rdata, FUDGE);
    push16(&mut rdata, u16::try_from(mac.len()).ok()?);
    rdata.extend_from_slice(&mac);
    push16(&mut rdata, id); // original ID
    push16(&mut rdata, 0); // error
    push16(&mut rdata, 0); // other len
    push16(&mut msg, u16::try_from(rdata.len()).ok()?);
    msg.extend_from_slice(&rdata);
    Some(Signed {
        id,
        message: msg,
        mac,
    })
}

/// A cursor over an answer.
struct Reader<'a> {
    buf: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], AnswerError> {
        let end = self.at.checked_add(n).filter(|e| *e <= self.buf.len());
        let end = end.ok_or(AnswerError::Malformed("cut short"))?;
        let out = &self.buf[self.at..end];
        self.at = end;
        Ok(out)
    }

    fn u16(&mut self) -> Result<u16, AnswerError> {
        let b = self.take(2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }

    /// Reads a name (following compression pointers, boundedly) in canonical wire form.
    fn name(&mut self) -> Result<Vec<u8>, AnswerError> {
        let mut out = Vec::new();
        let mut at = self.at;
        let mut jumped = false;
        for _ in 0..128 {
            let len = *self.buf.get(at).ok_or(AnswerError::Malformed("name"))?;
            match len {
                0 => {
                    out.push(0);
                    if !jumped {
                        self.at = at + 1;
                    }
                    return if out.len() <= 255 {
                        Ok(out)
                    } else {
                        Err(AnswerError::Malformed("name too long"))
                    };
                }
                1..=63 => {
                    let label = self
                        .buf
                        .get(at + 1..at + 1 + usize::from(len))
                        .ok_or(AnswerError::Malformed("label"))?;
                    out.push(len);
                    out.extend(label.iter().map(u8::to_ascii_lowercase));
                    at += 1 + usize::from(len);
                }
                0xc0..=0xff => {
                    let low = *self
                        .buf
                        .get(at + 1)
                        .ok_or(AnswerError::Malformed("pointer"))?;
                    if !jumped {
                        self.at = at + 2;
                    }
                    jumped = true;
                    at = usize::from(u16::from_be_bytes([len & 0x3f, low]));
                }
                _ => return Err(AnswerError::Malformed("label type")),
            }
        }
        Err(AnswerError::Malformed("pointer loop"))
    }
}

/// Checks the server's answer to `request` signed with `key`: `Ok` for NOERROR with a good
/// signature.
pub fn check_answer(answer: &[u8], request: &Signed, key: &Key) -> Result<(), AnswerError> {
    if answer.len() > MAX_ANSWER {
        return Err(AnswerError::Malformed("too long"));
    }
    let mut r = Reader { buf: answer, at: 0 };
    let id = r.u16()?;
    let flags = r.u16()?;
    if id != request.id || flags & 0x8000 == 0 || (flags >> 11) & 0xf != OPCODE_UPDATE {
        return Err(AnswerError::Mismatch);
    }
    let rcode = flags & 0xf;
    let counts = [r.u16()?, r.u16()?, r.u16()?, r.u16()?];
    // The zone section's entries are questions (name, type, class); the rest are records.
    for _ in 0..counts[0] {
        r.name()?;
        r.take(4)?;
    }
    let records = u32::from(counts[1]) + u32::from(counts[2]) + u32::from(counts[3]);
    let mut tsig = None;
    for n in 0..records {
        let start = r.at;
        let owner = r.name()?;
        let kind = r.u16()?;
        r.take(6)?; // class, TTL
        let len = usize::from(r.u16()?);
        let rdata_at = r.at;
        r.take(len)?;
        if kind == TYPE_TSIG {
            // The TSIG record comes last (RFC 8945 section 5.4.1).
            if n + 1 != records {
                return Err(AnswerError::Malformed("TSIG record not last"));
            }
            tsig = Some((start, owner, rdata_at, len));
        }
    }
    if r.at != answer.len() {
        return Err(AnswerError::Malformed("trailing bytes"));
    }
    let Some((start, owner, rdata_at, len)) = tsig else {
        return match rcode {
            0 => Err(AnswerError::Unsigned),
            other => Err(AnswerError::Rcode(other)),
        };
    };
    let mut t = Reader {
        buf: &answer[..rdata_at + len],
        at: rdata_at,
    };
    let algorithm = t.name()?;
    let time = t.take(6)?;
    let fudge = t.u16()?;
    let mac_len = usize::from(t.u16()?);
    let mac = t.take(mac_len)?;
    let original = t.u16()?;
    let error = t.u16()?;
    let other_len = usize::from(t.u16()?);
    let other = t.take(other_len)?;
    if t.at != rdata_at + len || original != request.id {
        return Err(AnswerError::Malformed("TSIG record"));
    }
    if error != 0 {
        // BADSIG, BADKEY, BADTIME: the server could not sign with our key.
        return Err(AnswerError::Tsig(error));
    }
    let key_name = wire_name(&key.name).ok_or(AnswerError::Mismatch)?;
    if owner != key_name || algorithm != wire_name(ALGORITHM).ok_or(AnswerError::Mismatch)? {
        return Err(AnswerError::BadSignature);
    }
    let mut verifier = hmac(&key.secret);
    verifier.update(&u16::try_from(request.mac.len()).unwrap_or(0).to_be_bytes());
    verifier.update(&request.mac);
    // The answer as it was before the TSIG record: the additional count one less.
    let mut head = answer[..12].to_vec();
    head[10..12].copy_from_slice(&counts[3].saturating_sub(1).to_be_bytes());
    verifier.update(&head);
    verifier.update(&answer[12..start]);
    verifier.update(&key_name);
    verifier.update(&CLASS_ANY.to_be_bytes());
    verifier.update(&0u32.to_be_bytes());
    verifier.update(&algorithm);
    verifier.update(time);
    verifier.update(&fudge.to_be_bytes());
    verifier.update(&error.to_be_bytes());
    verifier.update(&u16::try_from(other.len()).unwrap_or(0).to_be_bytes());
    verifier.update(other);
    verifier
        .verify_slice(mac)
        .map_err(|_| AnswerError::BadSignature)?;
    match rcode {
        0 => Ok(()),
        other => Err(AnswerError::Rcode(other)),
    }
}

/// The mnemonic of a DNS RCODE an UPDATE can get (RFC 2136 section 2.2).
#[must_use]
pub const fn rcode_name(rcode: u16) -> &'static str {
    match rcode {
        1 => "FORMERR",
        2 => "SERVFAIL",
        3 => "NXDOMAIN",
        4 => "NOTIMP",
        5 => "REFUSED",
        6 => "YXDOMAIN",
        7 => "YXRRSET",
        8 => "NXRRSET",
        9 => "NOTAUTH",
        10 => "NOTZONE",
        _ => "unknown",
    }
}

/// The mnemonic of a TSIG error (RFC 8945 section 4.2).
#[must_use]
pub const fn tsig_error_name(error: u16) -> &'static str {
    match error {
        16 => "BADSIG",
        17 => "BADKEY",
        18 => "BADTIME",
        22 => "BADTRUNC",
        _ => "unknown",
    }
}

#[cfg(test)]
mod tests;
