//! The owner's commands (`portfwd share|device|events|status|settings`): each is one or more
//! calls of the REST API ([`crate::client`]), printed as a table for people or, with
//! `--json`, as the API's JSON for scripts.

use std::{fmt::Write as _, path::PathBuf, time::Duration};

use hyper::Method;
use serde_json::{Map, Value, json};

use crate::{
    client::{Client, ClientError},
    config::{DEFAULT_API, DEFAULT_STATE_DIR},
    pinhole::PinholeId,
    share::{ShareId, ShareSpec, SpecError},
};

/// How to reach the daemon.
#[derive(Debug, clap::Args)]
pub struct Connection {
    /// Address of the daemon's API.
    #[arg(long, value_name = "ADDR", env = "PORTFWD_API", default_value_t = DEFAULT_API.to_string(), global = true)]
    pub api: String,
    /// The daemon's state directory, where the API token is.
    #[arg(long, value_name = "DIR", env = "PORTFWD_STATE_DIR", default_value = DEFAULT_STATE_DIR, global = true)]
    pub state_dir: PathBuf,
    /// The API token (instead of reading STATE_DIR/api-token).
    #[arg(
        long,
        value_name = "TOKEN",
        env = "PORTFWD_TOKEN",
        hide_env_values = true,
        global = true
    )]
    pub token: Option<String>,
    /// Print the API's JSON instead of a table.
    #[arg(long, global = true)]
    pub json: bool,
}

#[derive(Debug, clap::Subcommand)]
pub enum ShareCommand {
    /// Share a port.
    #[command(
        about = "Share a port or a range: PROTO:EXTPORT[-LAST][@REMOTE]=IP:PORT (e.g. tcp:8080=10.0.0.10:80), or over IPv6, where nothing is translated, PROTO:PORT=[IPV6]:PORT (e.g. tcp:443=[2001:db8::10]:443)"
    )]
    Add {
        share: ShareArg,
        /// IPv6 only: the one remote address that may use the share.
        #[arg(long, value_name = "IPV6")]
        remote6: Option<std::net::Ipv6Addr>,
        /// A name for the share.
        #[arg(long)]
        name: Option<String>,
        /// Create it switched off.
        #[arg(long)]
        disabled: bool,
        /// LAN hosts do not reach it through the external address (IPv4 shares).
        #[arg(long)]
        no_hairpin: bool,
    },
    /// List every share with its source, lease and counters.
    #[command(alias = "ls")]
    List,
    /// Delete a share.
    #[command(
        alias = "delete",
        about = "Delete a share (e.g. tcp:8080, or tcp:[2001:db8::10]:443 over IPv6)"
    )]
    Rm { id: ShareRef },
    /// Switch shares on.
    Enable {
        #[arg(required = true)]
        ids: Vec<ShareRef>,
    },
    /// Switch shares off (kept, not forwarded).
    Disable {
        #[arg(required = true)]
        ids: Vec<ShareRef>,
    },
    /// Change a share's target, external port or name.
    Edit {
        id: ShareId,
        /// New internal IP:PORT.
        #[arg(long, value_name = "IP:PORT")]
        internal: Option<std::net::SocketAddrV4>,
        /// New external port, or port range FIRST-LAST.
        #[arg(long, value_name = "N[-LAST]", value_parser = external_ports)]
        external_port: Option<(u16, u16)>,
        /// New name.
        #[arg(long, conflicts_with = "no_name")]
        name: Option<String>,
        /// Remove the name.
        #[arg(long)]
        no_name: bool,
    },
}

#[derive(Debug, clap::Subcommand)]
pub enum DeviceCommand {
    /// LAN devices with their permission to share ports independently and their shares.
    #[command(alias = "ls")]
    List,
    /// Allow a device to share ports independently (UPnP).
    Allow { address: std::net::Ipv4Addr },
    /// Revoke it (the device's own shares are removed).
    Deny { address: std::net::Ipv4Addr },
    /// Back to the default for the device.
    Reset { address: std::net::Ipv4Addr },
    /// Revoke it for every device that has not requested a share yet.
    RevokeUnused,
}

#[derive(Debug, clap::Args)]
pub struct EventsArgs {
    /// Keep printing events as they happen.
    #[arg(long, short)]
    pub follow: bool,
    /// How many of the newest events to show first.
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u64).range(1..=1000))]
    pub limit: u64,
}

#[derive(Debug, clap::Subcommand)]
pub enum ExposedCommand {
    /// Make ADDR (a LAN host, IPv4 or IPv6) the exposed host of its address family.
    Set { addr: std::net::IpAddr },
    /// Stop exposing ADDR, or both exposed hosts without it.
    Clear { addr: Option<std::net::IpAddr> },
}

#[derive(Debug, clap::Subcommand)]
pub enum SettingsCommand {
    /// The UPnP settings in force.
    Show,
    /// Change UPnP settings.
    Set {
        /// Allow changes over UPnP.
        #[arg(long, value_name = "on|off", value_parser = on_off)]
        upnp: Option<bool>,
        /// Clients may share only their own ports and delete only their own shares.
        #[arg(long, value_name = "on|off", value_parser = on_off)]
        secure_mode: Option<bool>,
        /// Leased shares one device may hold.
        #[arg(long, value_name = "N")]
        quota_per_client: Option<u32>,
        /// Leased shares all devices together may hold.
        #[arg(long, value_name = "N")]
        quota_total: Option<u32>,
    },
}

fn on_off(text: &str) -> Result<bool, String> {
    match text {
        "on" | "true" | "yes" => Ok(true),
        "off" | "false" | "no" => Ok(false),
        _ => Err(format!("`{text}` is not on or off")),
    }
}

/// The owner's commands.
#[derive(Debug)]
pub enum Command {
    Share(ShareCommand),
    Device(DeviceCommand),
    Events(EventsArgs),
    Status,
    Settings(SettingsCommand),
    ExposedHost(Option<ExposedCommand>),
}

/// Runs `command` against the daemon and prints what it answered.
#[expect(
    clippy::too_many_lines,
    reason = "one arm per command, each a request and its printing"
)]
pub async fn run(command: Command, connection: &Connection) -> Result<(), ClientError> {
    let client = Client::new(
        connection.api.clone(),
        connection.token.clone(),
        &connection.state_dir,
    )?;
    let json = connection.json;
    let call = |method, path: String, body: Option<Value>| {
        let client = client.clone();
        async move {
            client
                .call(method, &path, body.as_ref(), Duration::ZERO)
                .await
        }
    };
    let out = match command {
        Command::Share(ShareCommand::Add {
            share: ShareArg::V6(pinhole),
            remote6,
            name,
            disabled,
            no_hairpin,
        }) => {
            if no_hairpin {
                return Err(ClientError::Usage(
                    "--no-hairpin is for IPv4 shares: an IPv6 pinhole translates nothing".into(),
                ));
            }
            let mut body = json!({
                "proto": pinhole.proto,
                "internal": format!("[{}]:{}", pinhole.addr, pinhole.port),
                "enabled": !disabled,
            });
            if let Some(remote) = remote6 {
                body["remote"] = json!(remote.to_string());
            }
            if let Some(name) = name {
                body["name"] = json!(name);
            }
            let made = call(Method::POST, "/api/v1/pinholes".into(), Some(body)).await?;
            if json {
                pretty(&made)
            } else {
                format!("added {}\n", pinhole_line(&made))
            }
        }
        Command::Share(ShareCommand::Add {
            share: ShareArg::V4(share),
            remote6,
            name,
            disabled,
            no_hairpin,
        }) => {
            if remote6.is_some() {
                return Err(ClientError::Usage(
                    "--remote6 is for IPv6 shares; an IPv4 share names its remote host as tcp:PORT@REMOTE".into(),
                ));
            }
            let mut body = json!({
                "proto": share.id.proto,
                "external_port": if share.id.is_range() {
                    json!(format!("{}-{}", share.id.ext_port, share.id.ext_last))
                } else {
                    json!(share.id.ext_port)
                },
                "internal": share.internal.to_string(),
                "enabled": !disabled,
                "hairpin": !no_hairpin,
            });
            if let Some(remote) = share.id.remote {
                body["remote"] = json!(remote.to_string());
            }
            if let Some(name) = name {
                body["name"] = json!(name);
            }
            let made = call(Method::POST, "/api/v1/shares".into(), Some(body)).await?;
            if json {
                pretty(&made)
            } else {
                format!("added {}\n", share_line(&made))
            }
        }
        Command::Share(ShareCommand::List) => {
            let mut list = call(Method::GET, "/api/v1/shares".into(), None).await?;
            let pinholes = call(Method::GET, "/api/v1/pinholes".into(), None).await?;
            list["pinholes"] = pinholes["pinholes"].clone();
            if json {
                pretty(&list)
            } else {
                shares_table(&list)
            }
        }
        Command::Share(ShareCommand::Rm { id }) => {
            let done = call(Method::DELETE, id.path(), None).await?;
            if json {
                pretty(&done)
            } else {
                format!("deleted {id}\n")
            }
        }
        Command::Share(ShareCommand::Enable { ids }) => {
            return switch(&client, ids, json, "enable").await;
        }
        Command::Share(ShareCommand::Disable { ids }) => {
            return switch(&client, ids, json, "disable").await;
        }
        Command::Share(ShareCommand::Edit {
            id,
            internal,
            external_port,
            name,
            no_name,
        }) => {
            let mut body = Map::new();
            if let Some(internal) = internal {
                body.insert("internal".into(), json!(internal.to_string()));
            }
            if let Some((first, last)) = external_port {
                let ports = if first == last {
                    json!(first)
                } else {
                    json!(format!("{first}-{last}"))
                };
                body.insert("external_port".into(), ports);
            }
            if let Some(name) = name {
                body.insert("name".into(), json!(name));
            }
            if no_name {
                body.insert("name".into(), Value::Null);
            }
            if body.is_empty() {
                return Err(ClientError::Usage(
                    "nothing to change: give --internal, --external-port, --name or --no-name"
                        .into(),
                ));
            }
            let done = call(
                Method::PATCH,
                format!("/api/v1/shares/{id}"),
                Some(Value::Object(body)),
            )
            .await?;
            if json {
                pretty(&done)
            } else {
                format!("changed {}\n", share_line(&done))
            }
        }
        Command::Device(DeviceCommand::List) => {
            let list = call(Method::GET, "/api/v1/devices".into(), None).await?;
            if json {
                pretty(&list)
            } else {
                devices_table(&list)
            }
        }
        Command::Device(DeviceCommand::Allow { address }) => {
            return device(&client, address, Some(true), json).await;
        }
        Command::Device(DeviceCommand::Deny { address }) => {
            return device(&client, address, Some(false), json).await;
        }
        Command::Device(DeviceCommand::Reset { address }) => {
            return device(&client, address, None, json).await;
        }
        Command::Device(DeviceCommand::RevokeUnused) => {
            let done = call(Method::POST, "/api/v1/devices/revoke-unused".into(), None).await?;
            if json {
                pretty(&done)
            } else {
                let kept: Vec<&str> = done["kept"]
                    .as_array()
                    .map(|a| a.iter().filter_map(Value::as_str).collect())
                    .unwrap_or_default();
                if kept.is_empty() {
                    "independent port sharing revoked for every device\n".to_owned()
                } else {
                    format!(
                        "independent port sharing revoked; kept by {}\n",
                        kept.join(", ")
                    )
                }
            }
        }
        Command::Events(args) => return events(&client, &args, json).await,
        Command::Status => {
            let status = call(Method::GET, "/api/v1/status".into(), None).await?;
            if json {
                pretty(&status)
            } else {
                status_text(&status)
            }
        }
        Command::ExposedHost(command) => {
            let answer = match command {
                None => call(Method::GET, "/api/v1/exposed-host".into(), None).await?,
                Some(ExposedCommand::Set { addr }) => {
                    let body = json!({ "address": addr.to_string() });
                    call(Method::PUT, "/api/v1/exposed-host".into(), Some(body)).await?
                }
                Some(ExposedCommand::Clear { addr: None }) => {
                    call(Method::DELETE, "/api/v1/exposed-host".into(), None).await?
                }
                Some(ExposedCommand::Clear { addr: Some(addr) }) => {
                    let path = format!("/api/v1/exposed-host/{addr}");
                    call(Method::DELETE, path, None).await?
                }
            };
            if json {
                pretty(&answer)
            } else {
                exposed_text(&answer)
            }
        }
        Command::Settings(SettingsCommand::Show) => {
            let settings = call(Method::GET, "/api/v1/settings".into(), None).await?;
            if json {
                pretty(&settings)
            } else {
                settings_text(&settings)
            }
        }
        Command::Settings(SettingsCommand::Set {
            upnp,
            secure_mode,
            quota_per_client,
            quota_total,
        }) => {
            let mut body = Map::new();
            if let Some(v) = upnp {
                body.insert("upnp_enabled".into(), json!(v));
            }
            if let Some(v) = secure_mode {
                body.insert("secure_mode".into(), json!(v));
            }
            if let Some(v) = quota_per_client {
                body.insert("quota_per_client".into(), json!(v));
            }
            if let Some(v) = quota_total {
                body.insert("quota_total".into(), json!(v));
            }
            if body.is_empty() {
                return Err(ClientError::Usage(
                    "nothing to change: give --upnp, --secure-mode, --quota-per-client or --quota-total".into(),
                ));
            }
            let settings = call(
                Method::PATCH,
                "/api/v1/settings".into(),
                Some(Value::Object(body)),
            )
            .await?;
            if json {
                pretty(&settings)
            } else {
                settings_text(&settings)
            }
        }
    };
    print!("{out}");
    Ok(())
}

async fn switch(
    client: &Client,
    ids: Vec<ShareRef>,
    json: bool,
    verb: &str,
) -> Result<(), ClientError> {
    for id in ids {
        let done = client
            .call(
                Method::POST,
                &format!("{}/{verb}", id.path()),
                None,
                Duration::ZERO,
            )
            .await?;
        if json {
            print!("{}", pretty(&done));
        } else if matches!(id, ShareRef::Pinhole(_)) {
            println!("{verb}d {}", pinhole_line(&done));
        } else {
            println!("{verb}d {}", share_line(&done));
        }
    }
    Ok(())
}

/// A share to add, as the command line gives it: IPv4 (translated) or IPv6 (a pinhole).
#[derive(Clone, Debug)]
pub enum ShareArg {
    V4(ShareSpec),
    V6(PinholeId),
}

impl std::str::FromStr for ShareArg {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let Some((external, internal)) = s.split_once("=[") else {
            return s
                .parse()
                .map(Self::V4)
                .map_err(|e: SpecError| e.to_string());
        };
        let (proto, port) = external
            .split_once(':')
            .ok_or_else(|| format!("share `{s}` is not of the form PROTO:PORT=[IPV6]:PORT"))?;
        let id: PinholeId = format!("{proto}:[{internal}")
            .parse()
            .map_err(|e: SpecError| e.to_string())?;
        if port.parse::<u16>().ok() != Some(id.port) {
            return Err(format!(
                "share `{s}`: IPv6 is not translated, the external port is the internal port ({})",
                id.port
            ));
        }
        Ok(Self::V6(id))
    }
}

/// A share named on the command line: `tcp:8080[@REMOTE]` or an IPv6 pinhole
/// `tcp:[2001:db8::10]:443`.
#[derive(Clone, Copy, Debug)]
pub enum ShareRef {
    Share(ShareId),
    Pinhole(PinholeId),
}

impl ShareRef {
    /// Its API path.
    fn path(self) -> String {
        match self {
            Self::Share(id) => format!("/api/v1/shares/{id}"),
            Self::Pinhole(id) => format!("/api/v1/pinholes/{id}"),
        }
    }
}

impl std::fmt::Display for ShareRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Share(id) => id.fmt(f),
            Self::Pinhole(id) => id.fmt(f),
        }
    }
}

impl std::str::FromStr for ShareRef {
    type Err = SpecError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.contains('[') {
            s.parse().map(Self::Pinhole)
        } else {
            s.parse().map(Self::Share)
        }
    }
}

/// A pinhole in one line: `tcp:[2001:db8::10]:443 (IPv6) "web"`.
fn pinhole_line(p: &Value) -> String {
    let mut line = format!("{} (IPv6)", text(&p["id"]));
    if let Some(remote) = p["remote"].as_str() {
        let _ = write!(line, " from {remote}");
    }
    if let Some(name) = p["name"].as_str() {
        let _ = write!(line, " \"{name}\"");
    }
    line
}

async fn device(
    client: &Client,
    address: std::net::Ipv4Addr,
    allowed: Option<bool>,
    json: bool,
) -> Result<(), ClientError> {
    let done = client
        .call(
            Method::PUT,
            &format!("/api/v1/devices/{address}"),
            Some(&json!({ "allowed": allowed })),
            Duration::ZERO,
        )
        .await?;
    if json {
        print!("{}", pretty(&done));
        return Ok(());
    }
    match allowed {
        Some(true) => println!("{address} may share ports independently"),
        Some(false) => println!("{address} may no longer share ports independently"),
        None => println!("{address} follows the default again"),
    }
    if let Some(removed) = done["removed"].as_array().filter(|r| !r.is_empty()) {
        let removed: Vec<&str> = removed.iter().filter_map(Value::as_str).collect();
        println!("removed its shares: {}", removed.join(", "));
    }
    Ok(())
}

async fn events(client: &Client, args: &EventsArgs, json: bool) -> Result<(), ClientError> {
    let page = client
        .call(
            Method::GET,
            &format!("/api/v1/events?limit={}", args.limit),
            None,
            Duration::ZERO,
        )
        .await?;
    let mut last = print_events(&page, json, None);
    if !args.follow {
        if !json && page["events"].as_array().is_none_or(Vec::is_empty) {
            println!("no events");
        }
        return Ok(());
    }
    loop {
        let after = last.unwrap_or(0);
        let page = client
            .call(
                Method::GET,
                &format!("/api/v1/events?after={after}&limit=1000&wait=30"),
                None,
                Duration::from_secs(30),
            )
            .await?;
        last = print_events(&page, json, last);
    }
}

/// Prints a page of events (JSON: one object per line); the last id seen.
fn print_events(page: &Value, json: bool, last: Option<u64>) -> Option<u64> {
    let mut last = last;
    let mut out = String::new();
    for event in page["events"].as_array().into_iter().flatten() {
        if json {
            let _ = writeln!(out, "{event}");
        } else {
            let share = event["share"].as_str().unwrap_or("-");
            let _ = writeln!(
                out,
                "{}  {:<18} {:<18} {:<16} {}",
                event["at"].as_str().unwrap_or("?"),
                event["kind"].as_str().unwrap_or("?"),
                share,
                event["source"].as_str().unwrap_or("?"),
                event["detail"].as_str().unwrap_or("")
            );
        }
        last = event["id"].as_u64().or(last);
    }
    print!("{out}");
    let _ = std::io::Write::flush(&mut std::io::stdout());
    last
}

mod print;
#[cfg(test)]
mod tests;

use print::{
    devices_table, exposed_text, pretty, settings_text, share_line, shares_table, status_text, text,
};

/// `--external-port N` or `N-LAST`.
fn external_ports(text: &str) -> Result<(u16, u16), String> {
    crate::share::parse_ports(text).map_err(|e| e.to_string())
}
