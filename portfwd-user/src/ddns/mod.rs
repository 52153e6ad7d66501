//! Dynamic DNS: keeps a DNS name pointing at the external address, so that a share can be
//! called from the internet under one name (the FRITZ!Box's `MyFRITZ!` or dynamic DNS).
//!
//! One task watches the table's snapshots. At start, whenever the external address changes,
//! and every `interval` besides, it sends an RFC 2136 UPDATE signed with TSIG to the owner's
//! DNS server ([`rfc2136`]) and waits for a signed answer. A failure is retried with a delay
//! that doubles from 5 s up to an hour. The last result is published for `status` and the API,
//! and the first failure of a run and the next success are events. The key's secret never
//! reaches a log, an event or the API.

pub mod rfc2136;

use std::{
    net::{Ipv4Addr, SocketAddr},
    path::PathBuf,
    sync::Arc,
    time::Duration,
};

use serde::{Deserialize, Serialize};
use tokio::{net::UdpSocket, sync::watch, time::Instant};

use crate::{
    events::{EventKind, NewEvent},
    table::{Snapshot, TableHandle},
};

/// The first retry delay after a failure; it doubles up to [`MAX_BACKOFF`].
pub const FIRST_BACKOFF: Duration = Duration::from_secs(5);
/// The longest retry delay.
pub const MAX_BACKOFF: Duration = Duration::from_hours(1);
/// How long an answer is waited for.
const ANSWER_WAIT: Duration = Duration::from_secs(5);

/// The `[ddns]` section as written.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileDdns {
    /// `rfc2136`: a dynamic update to the owner's DNS server.
    pub provider: String,
    /// The DNS server, `IP:PORT` (port 53 if left out).
    pub server: String,
    /// The zone the name is in.
    pub zone: String,
    /// The name to keep pointing at the external address.
    pub name: String,
    /// The TSIG key's name.
    pub key_name: String,
    /// The key's secret, base64 (or `key_file`).
    pub key_secret: Option<String>,
    /// A file holding the secret: the base64 text alone, or a BIND `key` clause.
    pub key_file: Option<PathBuf>,
    /// TTL of the A record, seconds.
    #[serde(default = "default_ttl")]
    pub ttl: u32,
    /// Seconds between updates when nothing changed.
    #[serde(default = "default_interval")]
    pub interval: u64,
}

const fn default_ttl() -> u32 {
    60
}

const fn default_interval() -> u64 {
    3600
}

/// Dynamic DNS, checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ddns {
    pub server: SocketAddr,
    pub zone: String,
    pub name: String,
    pub key: rfc2136::Key,
    pub ttl: u32,
    pub interval: Duration,
}

impl FileDdns {
    /// Checks the section and reads the key. The error says which key is wrong.
    pub fn compile(self) -> Result<Ddns, (String, &'static str)> {
        if self.provider != "rfc2136" {
            return Err((
                format!(
                    "unknown provider `{}`: expected rfc2136 (a TSIG-signed dynamic update)",
                    self.provider
                ),
                "provider",
            ));
        }
        let server = self
            .server
            .parse::<SocketAddr>()
            .or_else(|_| {
                self.server
                    .parse::<std::net::IpAddr>()
                    .map(|ip| SocketAddr::new(ip, 53))
            })
            .map_err(|_| (format!("`{}` is not IP or IP:PORT", self.server), "server"))?;
        for (value, key) in [
            (&self.zone, "zone"),
            (&self.name, "name"),
            (&self.key_name, "key_name"),
        ] {
            if rfc2136::wire_name(value).is_none() || value.is_empty() {
                return Err((format!("`{value}` is not a DNS name"), key));
            }
        }
        let name = self.name.trim_end_matches('.').to_ascii_lowercase();
        let zone = self.zone.trim_end_matches('.').to_ascii_lowercase();
        if !(name == zone || name.ends_with(&format!(".{zone}"))) {
            return Err((format!("{name} is not in zone {zone}"), "name"));
        }
        let text = match (self.key_secret, &self.key_file) {
            (Some(secret), None) => secret,
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
        if !(1..=86_400 * 7).contains(&self.interval) {
            return Err((
                format!("{} s: expected 1 to 604800 seconds", self.interval),
                "interval",
            ));
        }
        Ok(Ddns {
            server,
            zone,
            name,
            key: rfc2136::Key {
                name: self.key_name,
                secret,
            },
            ttl: self.ttl,
            interval: Duration::from_secs(self.interval),
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

/// What the last update did, for `status` and the API.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct DdnsStatus {
    pub name: String,
    pub server: String,
    /// The address the name was last set to.
    pub address: Option<Ipv4Addr>,
    /// `ok`, or why the last attempt failed.
    pub result: Option<String>,
    /// Seconds since the Unix epoch of the last attempt.
    pub at: Option<u64>,
}

/// Why an update failed.
#[derive(Debug, thiserror::Error)]
pub enum DdnsError {
    #[error("the name, zone or key name cannot be written")]
    Name,
    #[error("sending to the DNS server: {0}")]
    Io(#[from] std::io::Error),
    #[error("no answer from the DNS server within {} s", ANSWER_WAIT.as_secs())]
    Timeout,
    #[error(transparent)]
    Answer(#[from] rfc2136::AnswerError),
}

/// Sends one update of `config`'s name to `address` and checks the answer.
pub async fn update(config: &Ddns, address: Ipv4Addr) -> Result<(), DdnsError> {
    let id = u16::from_be_bytes(crate::daemon::random_bytes::<2>());
    let update = rfc2136::Update {
        zone: &config.zone,
        name: &config.name,
        address,
        ttl: config.ttl,
    };
    let signed = rfc2136::request(&update, &config.key, id, crate::clock::unix_now())
        .ok_or(DdnsError::Name)?;
    let local: SocketAddr = if config.server.is_ipv4() {
        (Ipv4Addr::UNSPECIFIED, 0).into()
    } else {
        (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let socket = UdpSocket::bind(local).await?;
    socket.connect(config.server).await?;
    socket.send(&signed.message).await?;
    let mut buf = vec![0u8; rfc2136::MAX_ANSWER + 1];
    let deadline = Instant::now() + ANSWER_WAIT;
    loop {
        let n = tokio::time::timeout_at(deadline, socket.recv(&mut buf))
            .await
            .map_err(|_| DdnsError::Timeout)??;
        match rfc2136::check_answer(&buf[..n], &signed, &config.key) {
            // A stray datagram (another ID): wait on for ours.
            Err(rfc2136::AnswerError::Mismatch) => {}
            other => return Ok(other?),
        }
    }
}

/// Keeps `config`'s name on the external address the table's snapshots say, publishing each
/// result in `status` and logging changes through `table`.
pub async fn run(config: Ddns, table: TableHandle, status: watch::Sender<DdnsStatus>) {
    let mut snapshots = table.snapshots();
    // The address the name was last set to, and the one last tried.
    let mut sent: Option<Ipv4Addr> = None;
    let mut tried: Option<Ipv4Addr> = None;
    let mut wake = Instant::now();
    let mut backoff = FIRST_BACKOFF;
    let mut failing = false;
    loop {
        let external = current(&snapshots.borrow_and_update());
        if let Some(address) = external.filter(|a| Some(*a) != tried || Instant::now() >= wake) {
            tried = Some(address);
            let result = update(&config, address).await;
            let at = crate::clock::unix_now();
            match result {
                Ok(()) => {
                    tracing::info!("dynamic DNS: {} -> {address}", config.name);
                    if sent != Some(address) || failing {
                        let detail = format!("{} -> {address} at {}", config.name, config.server);
                        note(&table, EventKind::DdnsUpdated, detail).await;
                    }
                    sent = Some(address);
                    failing = false;
                    backoff = FIRST_BACKOFF;
                    wake = Instant::now() + config.interval;
                    publish(&status, &config, Some(address), "ok".to_owned(), at);
                }
                Err(err) => {
                    let why = crate::error_chain(&err);
                    tracing::warn!(
                        "dynamic DNS: {} -> {address}: {why}; again in {} s",
                        config.name,
                        backoff.as_secs()
                    );
                    if !failing {
                        let detail = format!("{} -> {address}: {why}", config.name);
                        note(&table, EventKind::DdnsFailed, detail).await;
                    }
                    failing = true;
                    publish(&status, &config, sent, why, at);
                    wake = Instant::now() + backoff;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            }
        }
        // Until the timer, or a new address (sent at once, whatever the backoff). Without an
        // address there is nothing to send until one comes.
        let timer = if external.is_some() {
            wake
        } else {
            Instant::now() + config.interval
        };
        loop {
            tokio::select! {
                changed = snapshots.changed() => {
                    if changed.is_err() {
                        return;
                    }
                    let now = current(&snapshots.borrow());
                    if now.is_some() && now != tried {
                        break;
                    }
                }
                () = tokio::time::sleep_until(timer) => break,
            }
        }
    }
}

/// The address to publish: the external one while the WAN link is up.
fn current(snapshot: &Arc<Snapshot>) -> Option<Ipv4Addr> {
    snapshot.external.filter(|_| snapshot.wan_up)
}

fn publish(
    status: &watch::Sender<DdnsStatus>,
    config: &Ddns,
    address: Option<Ipv4Addr>,
    result: String,
    at: u64,
) {
    status.send_replace(DdnsStatus {
        name: config.name.clone(),
        server: config.server.to_string(),
        address,
        result: Some(result),
        at: Some(at),
    });
}

async fn note(table: &TableHandle, kind: EventKind, detail: String) {
    let event = NewEvent::new(kind, "ddns", detail);
    if let Err(err) = table.change(move |t| t.note(event)).await {
        tracing::warn!("recording a dynamic DNS event: {err}");
    }
}

#[cfg(test)]
mod tests;
