//! Dynamic DNS: keeps a DNS name pointing at the external address, so that a share can be
//! called from the internet under one name (the FRITZ!Box's `MyFRITZ!` or dynamic DNS).
//!
//! One task watches the table's snapshots. At start, whenever the external address changes,
//! and every `interval` besides, it sends one update by the configured protocol and waits for
//! the answer:
//!
//! - [`rfc2136`]: an RFC 2136 UPDATE signed with TSIG to the owner's own DNS server, whose
//!   answer counts only with a good signature;
//! - [`dyndns2`]: the HTTP(S) `GET /nic/update` most commercial providers take (Dyn, No-IP,
//!   many others), with HTTP Basic auth.
//!
//! This module is the part the protocols share: the `[ddns]` section (each protocol checks
//! its own keys), the runner and its retries, the status and the events. A failure of either
//! protocol is retried with a delay that doubles from 5 s up to an hour, a failure the owner
//! must fix (a wrong password, a name the account does not hold) too: that fix may be made on
//! the provider's side (a host created, an account renewed), and then takes effect at the next
//! retry without anyone touching the box; meanwhile the owner is told through the log (as an
//! error), the status and an event, and the delay's growth keeps the provider from being
//! hammered. (A fix in the config file needs a restart: SIGHUP reloads the shares only.)
//!
//! The last result is published for `status` and the API; the first failure of a run (and
//! each new reason within it) and the next success are events. Secrets (the TSIG key, the
//! password) are held in types whose `Debug` hides them, and never reach a log, an event, the
//! status or the API.

pub mod dyndns2;
pub mod rfc2136;

use std::{net::Ipv4Addr, path::PathBuf, sync::Arc, time::Duration};

use serde::{Deserialize, Serialize};
use tokio::{sync::watch, time::Instant};

use crate::{
    events::{EventKind, NewEvent},
    table::{Snapshot, TableHandle},
};

/// The first retry delay after a failure; it doubles up to [`MAX_BACKOFF`].
pub const FIRST_BACKOFF: Duration = Duration::from_secs(5);
/// The longest retry delay.
pub const MAX_BACKOFF: Duration = Duration::from_hours(1);

/// The `[ddns]` section as written: the keys of both protocols, each checked by its own.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileDdns {
    /// `rfc2136` (a TSIG-signed dynamic update) or `dyndns2` (the HTTP protocol).
    pub provider: String,
    /// rfc2136: the DNS server, `IP:PORT` (port 53 if left out). dyndns2: the provider's URL.
    pub server: String,
    /// The name to keep pointing at the external address.
    pub name: String,
    /// rfc2136: the zone the name is in.
    pub zone: Option<String>,
    /// rfc2136: the TSIG key's name.
    pub key_name: Option<String>,
    /// rfc2136: the key's secret, base64 (or `key_file`).
    pub key_secret: Option<Secret>,
    /// rfc2136: a file holding the secret: the base64 text alone, or a BIND `key` clause.
    pub key_file: Option<PathBuf>,
    /// rfc2136: TTL of the A record, seconds (60 if left out).
    pub ttl: Option<u32>,
    /// dyndns2: the account's user name.
    pub username: Option<String>,
    /// dyndns2: the account's password (or `password_file`).
    pub password: Option<Secret>,
    /// dyndns2: a file holding the password (a trailing newline is not part of it).
    pub password_file: Option<PathBuf>,
    /// Seconds between updates when nothing changed.
    #[serde(default = "default_interval")]
    pub interval: u64,
}

const fn default_interval() -> u64 {
    3600
}

/// A password or key as written: `Debug` shows `<redacted>`, and nothing else shows it.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    #[must_use]
    pub const fn new(text: String) -> Self {
        Self(text)
    }

    /// The secret itself: for the request that carries it, and for nothing else.
    #[must_use]
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

/// Dynamic DNS, checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ddns {
    /// The name kept, lower case, without a final dot.
    pub name: String,
    pub interval: Duration,
    pub protocol: Protocol,
}

/// How the name is updated, with the protocol's own settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Protocol {
    Rfc2136(rfc2136::Server),
    Dyndns2(dyndns2::Account),
}

/// A checking error: the message, and the key of `[ddns]` at fault.
pub type Invalid = (String, &'static str);

impl FileDdns {
    /// Checks the section and reads the key or password. The error says which key is wrong.
    pub fn compile(self) -> Result<Ddns, Invalid> {
        // The keys of each protocol, and whether they are set: those of the other protocol
        // are refused, as a key that does nothing would mislead whoever reads the file.
        let rfc2136_keys = [
            ("zone", self.zone.is_some()),
            ("key_name", self.key_name.is_some()),
            ("key_secret", self.key_secret.is_some()),
            ("key_file", self.key_file.is_some()),
            ("ttl", self.ttl.is_some()),
        ];
        let dyndns2_keys = [
            ("username", self.username.is_some()),
            ("password", self.password.is_some()),
            ("password_file", self.password_file.is_some()),
        ];
        let others: &[(&'static str, bool)] = match self.provider.as_str() {
            "rfc2136" => &dyndns2_keys,
            "dyndns2" => &rfc2136_keys,
            other => {
                return Err((
                    format!(
                        "unknown provider `{other}`: expected rfc2136 (a TSIG-signed dynamic update) or dyndns2 (the HTTP protocol of Dyn, No-IP and most providers)"
                    ),
                    "provider",
                ));
            }
        };
        if let Some((key, _)) = others.iter().find(|(_, set)| *set) {
            let message = format!("not a setting of provider {}", self.provider);
            return Err((message, key));
        }
        if rfc2136::wire_name(&self.name).is_none() || self.name.trim_end_matches('.').is_empty() {
            return Err((format!("`{}` is not a DNS name", self.name), "name"));
        }
        if !(1..=86_400 * 7).contains(&self.interval) {
            return Err((
                format!("{} s: expected 1 to 604800 seconds", self.interval),
                "interval",
            ));
        }
        let name = self.name.trim_end_matches('.').to_ascii_lowercase();
        let protocol = if self.provider == "rfc2136" {
            Protocol::Rfc2136(rfc2136::Server::compile(&self, &name)?)
        } else {
            Protocol::Dyndns2(dyndns2::Account::compile(&self, &name)?)
        };
        Ok(Ddns {
            name,
            interval: Duration::from_secs(self.interval),
            protocol,
        })
    }
}

impl Ddns {
    /// Where the updates go, as the status shows it (no credentials).
    #[must_use]
    pub fn server(&self) -> String {
        match &self.protocol {
            Protocol::Rfc2136(server) => server.addr.to_string(),
            Protocol::Dyndns2(account) => account.url.to_string(),
        }
    }
}

/// What the last update did, for `status` and the API.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct DdnsStatus {
    pub name: String,
    pub server: String,
    /// The address the name was last set to.
    pub address: Option<Ipv4Addr>,
    /// `ok` (rfc2136), `ok (good)` or `ok (nochg)` (dyndns2), or why the last attempt failed.
    pub result: Option<String>,
    /// Seconds since the Unix epoch of the last attempt.
    pub at: Option<u64>,
}

/// Why an update failed.
#[derive(Debug, thiserror::Error)]
pub enum DdnsError {
    #[error(transparent)]
    Rfc2136(#[from] rfc2136::Error),
    #[error(transparent)]
    Dyndns2(#[from] dyndns2::Error),
}

impl DdnsError {
    /// Whether retrying cannot help until the owner changes something (a wrong key or
    /// password, a name the server will not update): logged as an error, not a warning.
    #[must_use]
    pub fn needs_owner(&self) -> bool {
        match self {
            Self::Rfc2136(err) => err.needs_owner(),
            Self::Dyndns2(err) => err.needs_owner(),
        }
    }
}

/// Sends one update of `config`'s name to `address` and checks the answer: the result to
/// show.
pub async fn update(config: &Ddns, address: Ipv4Addr) -> Result<String, DdnsError> {
    match &config.protocol {
        Protocol::Rfc2136(server) => {
            rfc2136::send(server, &config.name, address).await?;
            Ok("ok".to_owned())
        }
        Protocol::Dyndns2(account) => {
            let answer = dyndns2::send(account, &config.name, address).await?;
            Ok(format!("ok ({})", answer.code()))
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
    // Why the attempts fail, while they do.
    let mut failing: Option<String> = None;
    let server = config.server();
    loop {
        let external = current(&snapshots.borrow_and_update());
        if let Some(address) = external.filter(|a| Some(*a) != tried || Instant::now() >= wake) {
            tried = Some(address);
            let result = update(&config, address).await;
            let at = crate::clock::unix_now();
            match result {
                Ok(result) => {
                    tracing::info!("dynamic DNS: {} -> {address}: {result}", config.name);
                    if sent != Some(address) || failing.is_some() {
                        let detail = format!("{} -> {address} at {server}", config.name);
                        note(&table, EventKind::DdnsUpdated, detail).await;
                    }
                    sent = Some(address);
                    failing = None;
                    backoff = FIRST_BACKOFF;
                    wake = Instant::now() + config.interval;
                    publish(&status, &config, Some(address), result, at);
                }
                Err(err) => {
                    let why = crate::error_chain(&err);
                    if err.needs_owner() {
                        tracing::error!(
                            "dynamic DNS: {} -> {address}: {why}; this needs the owner (retried in {} s)",
                            config.name,
                            backoff.as_secs()
                        );
                    } else {
                        tracing::warn!(
                            "dynamic DNS: {} -> {address}: {why}; again in {} s",
                            config.name,
                            backoff.as_secs()
                        );
                    }
                    // An event for the first failure of a run, and for another reason within
                    // one (a provider's outage, then a refused password).
                    if failing.as_ref() != Some(&why) {
                        let detail = format!("{} -> {address}: {why}", config.name);
                        note(&table, EventKind::DdnsFailed, detail).await;
                    }
                    publish(&status, &config, sent, why.clone(), at);
                    failing = Some(why);
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
        server: config.server(),
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
