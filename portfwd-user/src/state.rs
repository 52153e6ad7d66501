//! The state directory: what the daemon keeps across restarts.
//!
//! * `leases.json`: the shares LAN clients requested (UPnP), each with its client and the
//!   wall-clock time its lease ends, so a restarted daemon restores them with the time they
//!   had left. Written after every change, before the client gets its answer.
//! * `uuid`: the UPnP device identity, made once so control points recognise the box after
//!   a restart.
//!
//! Every file is written atomically: a temporary file in the same directory, `fsync`, rename
//! over the old file, `fsync` of the directory. A crash leaves the old or the new file, never a
//! torn one.

use std::{
    fs,
    io::Write as _,
    net::{Ipv4Addr, SocketAddrV4},
    os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _},
    path::{Path, PathBuf},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use serde::{Deserialize, Serialize};

use crate::share::Proto;

const LEASES: &str = "leases.json";
/// Bumped when the file's meaning changes; older daemons refuse newer files.
const LEASES_VERSION: u32 = 1;

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
    #[error(
        "{path} was written by a newer portfwd (format {found}, this one reads {LEASES_VERSION})"
    )]
    Version { path: PathBuf, found: u32 },
}

/// A leased share as saved.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SavedLease {
    pub proto: Proto,
    pub external_port: u16,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remote: Option<Ipv4Addr>,
    pub internal: SocketAddrV4,
    pub client: Ipv4Addr,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub enabled: bool,
    /// Seconds since the Unix epoch when the lease ends; `None`: until removed.
    pub expires_at: Option<u64>,
}

#[derive(Serialize, Deserialize)]
struct LeasesFile {
    version: u32,
    leases: Vec<SavedLease>,
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

    /// The saved leases; none if the file does not exist yet.
    pub fn load_leases(&self) -> Result<Vec<SavedLease>, StateError> {
        let path = self.path.join(LEASES);
        let text = match fs::read(&path) {
            Ok(text) => text,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(source) => return Err(StateError::Read { path, source }),
        };
        let file: LeasesFile =
            serde_json::from_slice(&text).map_err(|source| StateError::Parse {
                path: path.clone(),
                source,
            })?;
        if file.version > LEASES_VERSION {
            return Err(StateError::Version {
                path,
                found: file.version,
            });
        }
        Ok(file.leases)
    }

    /// Moves an unreadable leases file out of the way (never overwriting it: it may be all the
    /// owner has), as `leases.json.unreadable-SECONDS`; the new name, if the move worked.
    #[must_use]
    pub fn set_leases_aside(&self) -> Option<PathBuf> {
        let aside = self
            .path
            .join(format!("{LEASES}.unreadable-{}", unix_now()));
        fs::rename(self.path.join(LEASES), &aside).ok()?;
        Some(aside)
    }

    /// Replaces the saved leases with `leases`.
    pub fn save_leases(&self, leases: Vec<SavedLease>) -> Result<(), StateError> {
        let file = LeasesFile {
            version: LEASES_VERSION,
            leases,
        };
        // Serialising owned plain data into a Vec cannot fail.
        let mut bytes = serde_json::to_vec_pretty(&file).unwrap_or_default();
        bytes.push(b'\n');
        self.write_atomic(LEASES, &bytes, 0o600)
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

/// Seconds since the Unix epoch now.
#[must_use]
pub fn unix_now() -> u64 {
    wall_deadline(Duration::ZERO)
}

/// Seconds since the Unix epoch at `now + after`.
#[must_use]
pub fn wall_deadline(after: Duration) -> u64 {
    (SystemTime::now() + after)
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Time left until `deadline` (seconds since the Unix epoch); zero once it has passed.
#[must_use]
pub fn wall_remaining(deadline: u64) -> Duration {
    (UNIX_EPOCH + Duration::from_secs(deadline))
        .duration_since(SystemTime::now())
        .unwrap_or(Duration::ZERO)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_dir(tag: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("portfwd-state-{tag}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        dir
    }

    #[test]
    fn leases_round_trip_and_replace_atomically() {
        let dir = temp_dir("roundtrip");
        let state = StateDir::open(&dir).expect("open");
        assert_eq!(state.load_leases().expect("empty"), vec![]);
        let lease = SavedLease {
            proto: Proto::Udp,
            external_port: 3074,
            remote: None,
            internal: "10.0.0.10:3074".parse().expect("addr"),
            client: Ipv4Addr::new(10, 0, 0, 10),
            name: Some("game".into()),
            enabled: true,
            expires_at: Some(wall_deadline(Duration::from_mins(1))),
        };
        state.save_leases(vec![lease.clone()]).expect("save");
        assert_eq!(state.load_leases().expect("load"), vec![lease]);
        state.save_leases(vec![]).expect("save empty");
        assert_eq!(state.load_leases().expect("load"), vec![]);
        let names: Vec<_> = fs::read_dir(&dir)
            .expect("dir")
            .map(|e| e.expect("entry").file_name())
            .collect();
        assert_eq!(names, vec![LEASES], "no temporary file left behind");
        fs::remove_dir_all(&dir).expect("cleanup");
    }

    #[test]
    fn a_damaged_or_newer_file_is_an_error_not_an_empty_table() {
        let dir = temp_dir("damaged");
        let state = StateDir::open(&dir).expect("open");
        fs::write(dir.join(LEASES), b"{\"version\":1,\"leases\":[{").expect("write");
        assert!(matches!(state.load_leases(), Err(StateError::Parse { .. })));
        let aside = state.set_leases_aside().expect("set aside");
        assert_eq!(
            fs::read(&aside).expect("kept"),
            b"{\"version\":1,\"leases\":[{"
        );
        assert_eq!(state.load_leases().expect("a fresh start"), vec![]);
        fs::write(dir.join(LEASES), b"{\"version\":9,\"leases\":[]}").expect("write");
        assert!(matches!(
            state.load_leases(),
            Err(StateError::Version { found: 9, .. })
        ));
        fs::remove_dir_all(&dir).expect("cleanup");
    }

    #[test]
    fn wall_clock_deadlines_count_down() {
        let deadline = wall_deadline(Duration::from_secs(100));
        let left = wall_remaining(deadline);
        assert!(left <= Duration::from_secs(100) && left >= Duration::from_secs(98));
        assert_eq!(wall_remaining(1), Duration::ZERO);
    }
}
