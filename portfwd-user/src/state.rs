//! The state directory: what the daemon keeps across restarts.
//!
//! * `state.json`: everything changed at run time: the shares the owner made through the API,
//!   the shares LAN clients requested (UPnP), each with its client and the wall-clock time its
//!   lease ends (so a restarted daemon restores them with the time they had left), the owner's
//!   switches on static shares, the settings changed through the API and the per-device
//!   permissions. Written after every change, before the change is acknowledged. (A
//!   `leases.json` of portfwd 0.1's UPnP-only format is read when there is no `state.json`.)
//! * `uuid`: the UPnP device identity, made once so control points recognise the box after
//!   a restart.
//! * `api-token`: the REST API's bearer token (mode 0600), made on first start.
//! * `events.jsonl`: the event log ([`crate::events`]).
//!
//! Every file is written atomically: a temporary file in the same directory, `fsync`, rename
//! over the old file, `fsync` of the directory. A crash leaves the old or the new file, never a
//! torn one.

use std::{
    collections::BTreeMap,
    fmt::Write as _,
    fs,
    io::Write as _,
    net::{IpAddr, Ipv4Addr, SocketAddrV4},
    os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _},
    path::{Path, PathBuf},
};

use serde::{Deserialize, Serialize};

use crate::{
    policy::Overlay,
    share::{Origin, Proto, ShareId},
};

const STATE: &str = "state.json";
/// The UPnP-only file it replaces, still read when there is no `state.json`.
const LEASES: &str = "leases.json";
/// Bumped when the file's meaning changes; older daemons refuse newer files.
const STATE_VERSION: u32 = 2;

/// Why the state directory could not be used.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("cannot create state directory {path}")]
    Create {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot read {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot write {path}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is not a portfwd state file")]
    Parse {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("cannot open the store in {path}")]
    Store {
        path: PathBuf,
        #[source]
        source: crate::store::StoreError,
    },
    #[error(
        "{path} was written by a newer portfwd (format {found}, this one reads {STATE_VERSION})"
    )]
    Version { path: PathBuf, found: u32 },
}

/// Who made a saved share.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SavedSource {
    /// The owner, through the API.
    Api,
    /// A LAN client over UPnP (the only kind `leases.json` had).
    Upnp,
    /// A LAN client over NAT-PMP.
    Natpmp,
    /// A LAN client over PCP, with its nonce.
    Pcp,
}

impl SavedSource {
    /// How `origin` is saved: its source and, for PCP, its nonce in hex. The owner's static
    /// shares are not saved (they come from the config); they read as `api` here.
    #[must_use]
    pub fn of(origin: Origin) -> (Self, Option<String>) {
        match origin {
            Origin::Static | Origin::Api => (Self::Api, None),
            Origin::Upnp { .. } => (Self::Upnp, None),
            Origin::Natpmp { .. } => (Self::Natpmp, None),
            Origin::Pcp { nonce, .. } | Origin::Pcp6 { nonce, .. } => {
                (Self::Pcp, Some(hex(&nonce)))
            }
        }
    }

    /// The origin saved as this source with `client` and `nonce`; `None` if a client's origin
    /// lacks its client or (PCP) its nonce.
    #[must_use]
    pub fn origin(self, client: Option<IpAddr>, nonce: Option<&str>) -> Option<Origin> {
        if self == Self::Api {
            return Some(Origin::Api);
        }
        let nonce = || nonce.and_then(unhex::<12>);
        Some(match (self, client?) {
            (Self::Api, _) => Origin::Api,
            (Self::Upnp, IpAddr::V4(client)) => Origin::Upnp { client },
            (Self::Natpmp, IpAddr::V4(client)) => Origin::Natpmp { client },
            (Self::Pcp, IpAddr::V4(client)) => Origin::Pcp {
                client,
                nonce: nonce()?,
            },
            (Self::Pcp, IpAddr::V6(client)) => Origin::Pcp6 {
                client,
                nonce: nonce()?,
            },
            (_, IpAddr::V6(_)) => return None,
        })
    }
}

/// A share made at run time, as saved.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SavedShare {
    pub proto: Proto,
    pub external_port: u16,
    /// The last external port of a range (absent for a single port).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external_last: Option<u16>,
    /// `Some(false)`: not reached through the external address from the LAN (absent: it is).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hairpin: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remote: Option<Ipv4Addr>,
    pub internal: SocketAddrV4,
    #[serde(default = "upnp")]
    pub source: SavedSource,
    /// The LAN client that made it (clients' shares only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client: Option<Ipv4Addr>,
    /// The PCP nonce the share answers to (PCP shares only), in hex.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nonce: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub enabled: bool,
    /// Seconds since the Unix epoch when the lease ends; `None`: until removed.
    pub expires_at: Option<u64>,
}

/// `bytes` in lowercase hex.
#[must_use]
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().fold(String::new(), |mut hex, b| {
        let _ = write!(hex, "{b:02x}");
        hex
    })
}

/// `N` bytes from `text` in hex, if it is exactly that.
#[must_use]
pub fn unhex<const N: usize>(text: &str) -> Option<[u8; N]> {
    let text = text.as_bytes();
    if text.len() != 2 * N {
        return None;
    }
    let mut bytes = [0u8; N];
    for (byte, pair) in bytes.iter_mut().zip(text.chunks_exact(2)) {
        *byte = u8::from_str_radix(std::str::from_utf8(pair).ok()?, 16).ok()?;
    }
    Some(bytes)
}

fn upnp() -> SavedSource {
    SavedSource::Upnp
}

/// What `state.json` holds.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Saved {
    pub shares: Vec<SavedShare>,
    /// The owner's on/off switch on static shares (config file or command line), by share.
    pub static_enabled: BTreeMap<ShareId, bool>,
    /// Settings changed through the API, over the config file's.
    pub settings: Overlay,
    /// IPv6 pinholes the owner opened.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub pinholes: Vec<SavedPinhole>,
}

/// An IPv6 pinhole, as saved. Fields after `enabled` came with client pinholes; a pinhole
/// saved without them is the owner's.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SavedPinhole {
    pub id: crate::pinhole::PinholeId,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remote: Option<std::net::Ipv6Addr>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remote_port: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub enabled: bool,
    #[serde(default = "api")]
    pub source: SavedSource,
    /// The LAN client that opened it (clients' pinholes only): IPv4 for UPnP, the host's own
    /// IPv6 address for PCP.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client: Option<IpAddr>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nonce: Option<String>,
    /// The UPnP `UniqueID`, kept so that a client's id stays valid across restarts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uid: Option<u16>,
    /// Seconds since the Unix epoch when the lease ends; `None`: until closed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<u64>,
}

impl SavedPinhole {
    /// Who opened it; `None` if the saved client or nonce is missing.
    #[must_use]
    pub fn origin(&self) -> Option<Origin> {
        self.source.origin(self.client, self.nonce.as_deref())
    }
}

fn api() -> SavedSource {
    SavedSource::Api
}

#[derive(Serialize, Deserialize)]
struct StateFile {
    version: u32,
    #[serde(flatten)]
    saved: Saved,
}

/// `leases.json` as portfwd 0.1 wrote it.
#[derive(Deserialize)]
struct LeasesFile {
    version: u32,
    leases: Vec<SavedShare>,
}

/// The state directory.
#[derive(Clone, Debug)]
pub struct StateDir {
    path: PathBuf,
}

impl StateDir {
    /// Opens `path`, creating it (mode 0700) if needed.
    pub fn open(path: &Path) -> Result<Self, StateError> {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(path)
            .map_err(|source| StateError::Create {
                path: path.to_owned(),
                source,
            })?;
        Ok(Self {
            path: path.to_owned(),
        })
    }

    #[must_use]
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// What was saved; nothing if no file exists yet.
    pub fn load(&self) -> Result<Saved, StateError> {
        let read = |name: &str| -> Result<Option<(PathBuf, Vec<u8>)>, StateError> {
            let path = self.path.join(name);
            match fs::read(&path) {
                Ok(bytes) => Ok(Some((path, bytes))),
                Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(None),
                Err(source) => Err(StateError::Read { path, source }),
            }
        };
        let parse_error = |path: &Path| {
            let path = path.to_owned();
            move |source| StateError::Parse { path, source }
        };
        if let Some((path, bytes)) = read(STATE)? {
            let file: StateFile = serde_json::from_slice(&bytes).map_err(parse_error(&path))?;
            if file.version > STATE_VERSION {
                return Err(StateError::Version {
                    path,
                    found: file.version,
                });
            }
            return Ok(file.saved);
        }
        let Some((path, bytes)) = read(LEASES)? else {
            return Ok(Saved::default());
        };
        let file: LeasesFile = serde_json::from_slice(&bytes).map_err(parse_error(&path))?;
        if file.version > 1 {
            return Err(StateError::Version {
                path,
                found: file.version,
            });
        }
        Ok(Saved {
            shares: file.leases,
            ..Saved::default()
        })
    }

    /// Moves an unreadable state file out of the way (never overwriting it: it may be all the
    /// owner has), as `NAME.unreadable-SECONDS`; the new name, if the move worked.
    #[must_use]
    pub fn set_aside(&self) -> Option<PathBuf> {
        let name = if self.path.join("store").exists() {
            "store"
        } else if self.path.join(STATE).exists() {
            STATE
        } else {
            LEASES
        };
        let aside = self
            .path
            .join(format!("{name}.unreadable-{}", crate::clock::unix_now()));
        fs::rename(self.path.join(name), &aside).ok()?;
        Some(aside)
    }

    /// Replaces what is saved with `saved`. A `leases.json` it supersedes is removed once the
    /// new file is in place.
    pub fn save(&self, saved: &Saved) -> Result<(), StateError> {
        #[derive(Serialize)]
        struct Out<'a> {
            version: u32,
            #[serde(flatten)]
            saved: &'a Saved,
        }
        // Serialising plain data into a Vec cannot fail.
        let mut bytes = serde_json::to_vec_pretty(&Out {
            version: STATE_VERSION,
            saved,
        })
        .unwrap_or_default();
        bytes.push(b'\n');
        self.write_atomic(STATE, &bytes, 0o600)?;
        match fs::remove_file(self.path.join(LEASES)) {
            Err(err) if err.kind() != std::io::ErrorKind::NotFound => tracing::warn!(
                "cannot remove the superseded {}: {err}",
                self.path.join(LEASES).display()
            ),
            _ => {}
        }
        Ok(())
    }

    /// The contents of `name`, or `make()`'s result written there first (atomically, with
    /// `mode`) if it does not exist yet.
    pub fn read_or_create(
        &self,
        name: &str,
        mode: u32,
        make: impl FnOnce() -> String,
    ) -> Result<String, StateError> {
        let path = self.path.join(name);
        match fs::read_to_string(&path) {
            Ok(text) => Ok(text),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
                let text = make();
                self.write_atomic(name, text.as_bytes(), mode)?;
                Ok(text)
            }
            Err(source) => Err(StateError::Read { path, source }),
        }
    }

    /// Writes `bytes` to `name` atomically: temporary file, fsync, rename, fsync of the
    /// directory (so the rename itself survives a power cut).
    pub fn write_atomic(&self, name: &str, bytes: &[u8], mode: u32) -> Result<(), StateError> {
        let path = self.path.join(name);
        let tmp = self.path.join(format!(".{name}.tmp"));
        let write = || -> std::io::Result<()> {
            let mut file = fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(mode)
                .open(&tmp)?;
            file.write_all(bytes)?;
            file.sync_all()?;
            fs::rename(&tmp, &path)?;
            fs::File::open(&self.path)?.sync_all()
        };
        write().map_err(|source| StateError::Write { path, source })
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::clock::{Civil, wall_deadline, wall_remaining};

    fn temp_dir(tag: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("portfwd-state-{tag}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        dir
    }

    fn lease() -> SavedShare {
        SavedShare {
            proto: Proto::Udp,
            external_port: 3074,
            external_last: None,
            hairpin: None,
            remote: None,
            internal: "10.0.0.10:3074".parse().expect("addr"),
            source: SavedSource::Upnp,
            client: Some(Ipv4Addr::new(10, 0, 0, 10)),
            nonce: None,
            name: Some("game".into()),
            enabled: true,
            expires_at: Some(wall_deadline(Duration::from_mins(1))),
        }
    }

    #[test]
    fn state_round_trips_and_is_replaced_atomically() {
        let dir = temp_dir("roundtrip");
        let state = StateDir::open(&dir).expect("open");
        assert_eq!(state.load().expect("empty"), Saved::default());
        let saved = Saved {
            shares: vec![lease()],
            static_enabled: [("tcp:8080".parse().expect("id"), false)].into(),
            settings: Overlay {
                secure_mode: Some(false),
                ..Overlay::default()
            },
            pinholes: vec![
                SavedPinhole {
                    id: "tcp:[2001:db8::10]:443".parse().expect("id"),
                    remote: None,
                    remote_port: None,
                    name: Some("web".into()),
                    enabled: true,
                    source: SavedSource::Api,
                    client: None,
                    nonce: None,
                    uid: Some(3),
                    expires_at: None,
                },
                SavedPinhole {
                    id: "udp:[2001:db8::11]:3478".parse().expect("id"),
                    remote: Some("2001:db8:ff::2".parse().expect("addr")),
                    remote_port: Some(3478),
                    name: None,
                    enabled: true,
                    source: SavedSource::Pcp,
                    client: Some("2001:db8::11".parse().expect("addr")),
                    nonce: Some(hex(&[7; 12])),
                    uid: Some(4),
                    expires_at: Some(4_000_000_000),
                },
            ],
        };
        state.save(&saved).expect("save");
        assert_eq!(state.load().expect("load"), saved);
        state.save(&Saved::default()).expect("save empty");
        assert_eq!(state.load().expect("load"), Saved::default());
        let names: Vec<_> = fs::read_dir(&dir)
            .expect("dir")
            .map(|e| e.expect("entry").file_name())
            .collect();
        assert_eq!(names, vec![STATE], "no temporary file left behind");
        fs::remove_dir_all(&dir).expect("cleanup");
    }

    #[test]
    fn a_leases_file_of_the_upnp_only_format_is_read_then_superseded() {
        let dir = temp_dir("migrate");
        let state = StateDir::open(&dir).expect("open");
        let mut old = serde_json::to_value(lease()).expect("json");
        old.as_object_mut().expect("object").remove("source");
        let file = serde_json::json!({"version": 1, "leases": [old]});
        fs::write(dir.join(LEASES), file.to_string()).expect("write");
        let saved = state.load().expect("load");
        assert_eq!(saved.shares, vec![lease()]);
        state.save(&saved).expect("save");
        assert!(!dir.join(LEASES).exists(), "superseded");
        assert_eq!(state.load().expect("load"), saved);
        fs::remove_dir_all(&dir).expect("cleanup");
    }

    #[test]
    fn a_damaged_or_newer_file_is_an_error_not_an_empty_table() {
        let dir = temp_dir("damaged");
        let state = StateDir::open(&dir).expect("open");
        fs::write(dir.join(STATE), b"{\"version\":2,\"shares\":[{").expect("write");
        assert!(matches!(state.load(), Err(StateError::Parse { .. })));
        let aside = state.set_aside().expect("set aside");
        assert_eq!(
            fs::read(&aside).expect("kept"),
            b"{\"version\":2,\"shares\":[{"
        );
        assert_eq!(state.load().expect("a fresh start"), Saved::default());
        fs::write(dir.join(STATE), b"{\"version\":9}").expect("write");
        assert!(matches!(
            state.load(),
            Err(StateError::Version { found: 9, .. })
        ));
        fs::remove_dir_all(&dir).expect("cleanup");
    }

    #[test]
    fn calendar_times() {
        assert_eq!(Civil::from_unix(0).rfc3339(), "1970-01-01T00:00:00Z");
        assert_eq!(
            Civil::from_unix(1_795_000_000).rfc3339(),
            "2026-11-18T11:06:40Z"
        );
        assert_eq!(
            Civil::from_unix(951_782_400).rfc3339(),
            "2000-02-29T00:00:00Z"
        );
    }

    #[test]
    fn wall_clock_deadlines_count_down() {
        let deadline = wall_deadline(Duration::from_secs(100));
        let left = wall_remaining(deadline);
        assert!(left <= Duration::from_secs(100) && left >= Duration::from_secs(98));
        assert_eq!(wall_remaining(1), Duration::ZERO);
    }
}
