//! Pinned objects: what keeps forwarding while no daemon runs.
//!
//! An instance's maps and links are pinned in bpffs under `/sys/fs/bpf/portfwd/INSTANCE/`:
//!
//! | path | what |
//! |---|---|
//! | `maps-vN/NAME` | every map of the object, made with layout version N (`LAYOUT_VERSION`) |
//! | `link-wan-IFINDEX-MODE`, `link-lan-IFINDEX-MODE` | the XDP links (`bpf_link`), one per interface |
//!
//! The instance is named after the WAN interface and the network namespace
//! (`wan0-4026531840`: the namespace's inode), so two daemons in two namespaces never share
//! pins, or by `--instance`. A link's pin names the interface index it is attached to and its
//! mode: an interface deleted and made again gets a new index and a fresh link, and the stale
//! pin is removed.
//!
//! A starting daemon that finds pins reuses them: the maps of its own layout version as they
//! are (their key and value sizes checked against its own, the version read from the `LAYOUT`
//! map), the links by replacing their program atomically (`BPF_LINK_UPDATE`), so the
//! interfaces never lose their program. Maps of an older layout are left in place, new maps
//! made beside them (pending), filled from the table, and only once the links run the new
//! program are the old ones removed (Cilium's pending-then-commit). Maps of a newer layout are
//! refused before anything is touched.

use std::{
    fs, io,
    os::unix::ffi::OsStrExt as _,
    path::{Path, PathBuf},
};

use portfwd_common::LAYOUT_VERSION;

/// Where pinned objects live: the conventional bpffs mount.
pub const BPFFS: &str = "/sys/fs/bpf";
/// `BPF_FS_MAGIC` (include/uapi/linux/magic.h).
const BPF_FS_MAGIC: i64 = 0xcafe_4a11;

/// The pins of one instance.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pins {
    dir: PathBuf,
}

/// What an instance's directory holds.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Found {
    /// Layout versions of the map directories there.
    pub versions: Vec<u32>,
    /// Link pins: (role, interface index, mode, path).
    pub links: Vec<(String, u32, String, PathBuf)>,
}

impl Pins {
    /// The pins of instance `name` under bpffs at `root` (normally [`BPFFS`]).
    #[must_use]
    pub fn new(root: &Path, name: &str) -> Self {
        Self {
            dir: root.join("portfwd").join(name),
        }
    }

    /// The instance's directory.
    #[must_use]
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The directory of the maps of layout `version`.
    #[must_use]
    pub fn maps(&self, version: u32) -> PathBuf {
        self.dir.join(format!("maps-v{version}"))
    }

    /// This build's map directory.
    #[must_use]
    pub fn own_maps(&self) -> PathBuf {
        self.maps(LAYOUT_VERSION)
    }

    /// The pin of the `role` (`wan`, `lan`) link on interface `ifindex` in `mode`.
    #[must_use]
    pub fn link(&self, role: &str, ifindex: u32, mode: &str) -> PathBuf {
        self.dir.join(format!("link-{role}-{ifindex}-{mode}"))
    }

    /// What is pinned now (nothing if the directory does not exist).
    pub fn found(&self) -> io::Result<Found> {
        let mut found = Found::default();
        let entries = match fs::read_dir(&self.dir) {
            Ok(entries) => entries,
            Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(found),
            Err(err) => return Err(err),
        };
        for entry in entries {
            let entry = entry?;
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            if let Some(version) = name.strip_prefix("maps-v").and_then(|v| v.parse().ok()) {
                found.versions.push(version);
            } else if let Some(rest) = name.strip_prefix("link-") {
                let mut parts = rest.splitn(3, '-');
                if let (Some(role), Some(ifindex), Some(mode)) = (
                    parts.next(),
                    parts.next().and_then(|i| i.parse().ok()),
                    parts.next(),
                ) {
                    found
                        .links
                        .push((role.to_owned(), ifindex, mode.to_owned(), entry.path()));
                }
            }
        }
        found.versions.sort_unstable();
        Ok(found)
    }

    /// Removes the maps of layout `version` (their last reference goes with the pins of
    /// maps no program uses any more).
    pub fn remove_maps(&self, version: u32) -> io::Result<()> {
        remove_dir(&self.maps(version))
    }

    /// Removes every pin of the instance: links first, each detached from its interface
    /// before its pin goes, then the maps, then the directory. When this returns nothing of
    /// the instance forwards any more.
    pub fn remove_all(&self) -> io::Result<Found> {
        let found = self.found()?;
        for (_, _, _, path) in &found.links {
            detach_link(path)?;
            remove_pin(path)?;
        }
        for version in &found.versions {
            self.remove_maps(*version)?;
        }
        match fs::remove_dir(&self.dir) {
            Err(err) if err.kind() != io::ErrorKind::NotFound => return Err(err),
            _ => {}
        }
        // The parent (`portfwd/`) goes too once the last instance is gone.
        if let Some(parent) = self.dir.parent() {
            let _ = fs::remove_dir(parent);
        }
        Ok(found)
    }
}

/// Detaches the link pinned at `path` from its interface at once (`BPF_LINK_DETACH`). The pin's
/// removal alone drops the link's last reference only after an RCU grace period (bpffs frees
/// its inodes so), and the program would go on forwarding for a moment after `portfwd down`
/// returned. A missing pin is no error.
fn detach_link(path: &Path) -> io::Result<()> {
    /// `BPF_OBJ_GET` and `BPF_LINK_DETACH` (include/uapi/linux/bpf.h, `enum bpf_cmd`).
    const BPF_OBJ_GET: libc::c_long = 7;
    const BPF_LINK_DETACH: libc::c_long = 34;
    let name = std::ffi::CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // union bpf_attr: for BPF_OBJ_GET the path's address first, then bpf_fd, file_flags.
    let mut attr = [0u64; 4];
    attr[0] = name.as_ptr() as u64;
    // SAFETY: `attr` is a bpf_attr for BPF_OBJ_GET whose path outlives the call.
    let fd = unsafe { libc::syscall(libc::SYS_bpf, BPF_OBJ_GET, attr.as_mut_ptr(), 32) };
    if fd < 0 {
        let err = io::Error::last_os_error();
        return if err.kind() == io::ErrorKind::NotFound {
            Ok(())
        } else {
            Err(err)
        };
    }
    let fd = i32::try_from(fd).map_err(|_| io::Error::from(io::ErrorKind::InvalidData))?;
    // SAFETY: a descriptor the kernel just gave this process, closed once below.
    let link = unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) };
    // For BPF_LINK_DETACH: link_fd first.
    let mut attr = [0u64; 4];
    attr[0] = u64::from(u32::try_from(fd).unwrap_or(0));
    // SAFETY: `attr` is a bpf_attr for BPF_LINK_DETACH naming an open link descriptor.
    let ret = unsafe { libc::syscall(libc::SYS_bpf, BPF_LINK_DETACH, attr.as_mut_ptr(), 32) };
    drop(link);
    if ret < 0 {
        let err = io::Error::last_os_error();
        // A link already detached (its interface gone) has nothing left to do.
        if err.raw_os_error() != Some(libc::ENOLINK) {
            return Err(err);
        }
    }
    Ok(())
}

/// Removes one pin; a missing one is no error.
pub fn remove_pin(path: &Path) -> io::Result<()> {
    match fs::remove_file(path) {
        Err(err) if err.kind() != io::ErrorKind::NotFound => Err(err),
        _ => Ok(()),
    }
}

fn remove_dir(dir: &Path) -> io::Result<()> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(err) => return Err(err),
    };
    for entry in entries {
        remove_pin(&entry?.path())?;
    }
    match fs::remove_dir(dir) {
        Err(err) if err.kind() != io::ErrorKind::NotFound => Err(err),
        _ => Ok(()),
    }
}

/// Whether `root` is a mounted bpffs (`statfs`'s magic), where pins can live.
#[must_use]
pub fn is_bpffs(root: &Path) -> bool {
    let Ok(path) = std::ffi::CString::new(root.as_os_str().as_bytes()) else {
        return false;
    };
    // SAFETY: statfs fills one struct statfs, which `stat` is, from a NUL-terminated path.
    let mut stat: libc::statfs = unsafe { std::mem::zeroed() };
    let ret = unsafe { libc::statfs(path.as_ptr(), &raw mut stat) };
    #[expect(
        clippy::useless_conversion,
        reason = "f_type's width differs by target"
    )]
    let magic = i64::from(stat.f_type);
    ret == 0 && magic == BPF_FS_MAGIC
}

/// The name of this process's instance for WAN interface `wan`: the interface and the inode
/// of the network namespace.
#[must_use]
pub fn instance_name(wan: &str) -> String {
    use std::os::unix::fs::MetadataExt as _;
    let netns = fs::metadata("/proc/self/ns/net").map_or(0, |m| m.ino());
    format!("{wan}-{netns}")
}
