//! The XDP programs and their maps, behind the [`KernelMaps`] seam.
//!
//! [`Dataplane`] loads the embedded object, takes its maps out once into typed handles and
//! attaches the programs; the share table writes them ([`crate::table`]'s kernel layer) and
//! other tasks read the counters through a [`MapReader`] of their own file descriptors.
//! [`MemoryMaps`] is the in-memory stand-in for unit tests of everything above the kernel.

mod batch;
mod layout;
mod link;
mod memory;
pub mod pins;
mod ports;
mod reader;

use memory::MemoryReader;
pub use memory::{MemoryCounters, MemoryMaps};
use ports::wildcard_index;
use reader::DataplaneReader;

use std::{any::Any, collections::BTreeMap, fs, io, path::PathBuf, sync::Arc};

use aya::{
    Ebpf, EbpfLoader,
    maps::{Array, DevMap, HashMap, Map, MapData, PerCpuArray, PerCpuValues},
    programs::{ProgramError, Xdp, XdpMode as AyaXdpMode},
};
use portfwd_common::{
    Config, EGRESS_LAN, EGRESS_WAN, LAYOUT_VERSION, MAP_CONFIG, MAP_EGRESS, MAP_FIB_GEN,
    MAP_LAYOUT, MAP_PINHOLE_STATS, MAP_PINHOLES, MAP_PORTS, MAP_REVERSE, MAP_SHARE_STATS,
    MAP_SHARES, MAP_VERDICTS, PROG_LAN, PROG_WAN, PinholeKey, PinholeTarget, ReverseKey,
    ReverseTarget, ShareKey, ShareStats, ShareTarget, VERDICT_COUNT,
    exposed::{Exposed, MAP_EXPOSED, MAP_EXPOSED_FLOWS, MAP_EXPOSED_STATS, MAP_OUTBOUND},
    hairpin::{HairpinEntry, HairpinKey, MAP_HAIRPIN},
};

use serde::Deserialize;

/// How the XDP programs are attached.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum XdpMode {
    /// Native (driver) mode, falling back to generic mode where the driver refuses.
    #[default]
    Auto,
    /// Native (driver) mode only.
    Native,
    /// Generic (skb) mode: works on any interface, slower.
    Skb,
}

/// The XDP object the daemon runs, built by `build.rs` and embedded in the binary.
#[must_use]
pub fn portfwd_object() -> &'static [u8] {
    aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/portfwd"))
}

/// The lab's helper programs (see `portfwd-ebpf/src/bin/lab.rs`); unused by the daemon, so the
/// linker leaves it out of the `portfwd` binary.
#[must_use]
pub fn lab_object() -> &'static [u8] {
    aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/portfwd-lab"))
}

/// A failure talking to the kernel's BPF side.
#[derive(Debug, thiserror::Error)]
pub enum DataplaneError {
    #[error(
        "permission denied loading BPF programs: run as root (or with CAP_BPF, CAP_NET_ADMIN and CAP_PERFMON)"
    )]
    Permission(#[source] Box<dyn std::error::Error + Send + Sync>),
    #[error("this portfwd was built without its XDP programs (AYA_BUILD_SKIP); rebuild without it")]
    NoObject,
    #[error("loading the XDP object")]
    Load(#[source] aya::EbpfError),
    #[error("the XDP object has no map `{0}`")]
    MissingMap(&'static str),
    #[error("the XDP object has no program `{0}`")]
    MissingProgram(&'static str),
    #[error("map `{name}` has an unexpected type or layout")]
    MapType {
        name: &'static str,
        #[source]
        source: aya::maps::MapError,
    },
    #[error("loading program `{name}` into the kernel")]
    Program {
        name: &'static str,
        #[source]
        source: ProgramError,
    },
    #[error("attaching XDP to {interface} in {mode} mode")]
    Attach {
        interface: String,
        mode: &'static str,
        #[source]
        source: ProgramError,
    },
    #[error("putting interface {ifindex} into the device map")]
    Egress {
        ifindex: u32,
        #[source]
        source: aya::maps::xdp::XdpMapError,
    },
    #[error(
        "the pinned maps in {dir} have layout version {found}, newer than this portfwd's {ours}: run the newer portfwd, or `portfwd down` to start afresh (the running forwarding is left as it is)"
    )]
    NewerLayout { dir: PathBuf, found: u32, ours: u32 },
    #[error("the pinned map {path} is not what this portfwd's layout version {ours} says ({what})")]
    Layout {
        path: PathBuf,
        ours: u32,
        what: String,
    },
    #[error("pinning {path}")]
    Pin {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("updating map `{name}`")]
    Map {
        name: &'static str,
        #[source]
        source: aya::maps::MapError,
    },
}

fn is_permission_error(mut err: &(dyn std::error::Error + 'static)) -> bool {
    loop {
        if let Some(io) = err.downcast_ref::<io::Error>() {
            // EACCES is the verifier refusing a program, not a missing privilege.
            if io.raw_os_error() == Some(libc::EPERM) {
                return true;
            }
        }
        match err.source() {
            Some(source) => err = source,
            None => return false,
        }
    }
}

/// What the reconciler and the daemon write to the kernel. The aya implementation is
/// [`Dataplane`]; [`MemoryMaps`] keeps the same state in memory.
pub trait KernelMaps {
    fn put_share(&mut self, key: ShareKey, target: ShareTarget) -> Result<(), DataplaneError>;
    fn del_share(&mut self, key: &ShareKey) -> Result<(), DataplaneError>;
    fn put_reverse(&mut self, key: ReverseKey, target: ReverseTarget)
    -> Result<(), DataplaneError>;
    fn del_reverse(&mut self, key: &ReverseKey) -> Result<(), DataplaneError>;
    /// Zeroes a counter slot before a new share uses it.
    fn reset_stats(&mut self, slot: u32) -> Result<(), DataplaneError>;
    /// The counters of a slot, summed over CPUs.
    fn stats(&self, slot: u32) -> Result<ShareStats, DataplaneError>;
    fn set_config(&mut self, config: Config) -> Result<(), DataplaneError>;
    /// Invalidates every cached next hop.
    fn bump_fib_generation(&mut self) -> Result<(), DataplaneError>;
    /// The verdict counters of one direction ([`portfwd_common::DIR_WAN`] or `DIR_LAN`),
    /// summed over CPUs, in [`Verdict::ALL`] order.
    fn verdicts(&self, dir: u32) -> Result<[u64; VERDICT_COUNT as usize], DataplaneError>;
    fn put_pinhole(&mut self, key: PinholeKey, target: PinholeTarget)
    -> Result<(), DataplaneError>;
    fn del_pinhole(&mut self, key: &PinholeKey) -> Result<(), DataplaneError>;
    /// Zeroes a pinhole counter slot before a new pinhole uses it.
    fn reset_pinhole_stats(&mut self, slot: u32) -> Result<(), DataplaneError>;
    /// The counters of a pinhole slot, summed over CPUs.
    fn pinhole_stats(&self, slot: u32) -> Result<ShareStats, DataplaneError>;
    /// Sets the exposed hosts (zero: none).
    fn set_exposed(&mut self, exposed: Exposed) -> Result<(), DataplaneError>;
    /// A reader of the counters for other tasks.
    fn reader(&self) -> Arc<dyn MapReader>;
    /// What the maps held when they were opened: pinned maps an earlier daemon left.
    fn adopted(&self) -> Adopted {
        Adopted::default()
    }
    /// For tests that look at the in-memory maps, and the daemon at its data plane.
    fn as_any(&self) -> &dyn Any;
    fn as_any_mut(&mut self) -> &mut dyn Any;
}

/// Per-direction verdict counters of the programs ([`portfwd_common::DIR_WAN`] first).
pub type Verdicts = [[u64; VERDICT_COUNT as usize]; 2];

/// Reads the kernel's counters without the table's owner: listings and scrapes.
pub trait MapReader: Send + Sync {
    /// The counters of share slots `slots`, in that order, summed over CPUs.
    fn share_stats(&self, slots: &[u32]) -> Result<Vec<ShareStats>, DataplaneError>;
    /// The counters of pinhole slots `slots`, in that order, summed over CPUs.
    fn pinhole_stats(&self, slots: &[u32]) -> Result<Vec<ShareStats>, DataplaneError>;
    /// Both programs' verdict counters.
    fn verdicts(&self) -> Result<Verdicts, DataplaneError>;
    /// The exposed hosts' counters: IPv4, IPv6.
    fn exposed_stats(&self) -> Result<[ShareStats; 2], DataplaneError>;
}

/// Operations one reconciliation applied.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Applied {
    pub upserts: usize,
    pub deletes: usize,
}

/// The mode an interface's program ended up attached in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AttachedMode {
    Native,
    Generic,
}

impl AttachedMode {
    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            Self::Native => "native",
            Self::Generic => "skb",
        }
    }
}

/// The loaded XDP object with its typed maps. Dropping it detaches the programs.
pub struct Dataplane {
    /// Shares tied to a remote host.
    shares: HashMap<MapData, ShareKey, ShareTarget>,
    /// Shares open to any remote host, at their `port_index`.
    ports: Array<MapData, ShareTarget>,
    /// Hairpin flows (the programs' own; held for the layout check).
    hairpin: HashMap<MapData, HairpinKey, HairpinEntry>,
    exposed: Array<MapData, Exposed>,
    exposed_stats: PerCpuArray<MapData, ShareStats>,
    reverse: HashMap<MapData, ReverseKey, ReverseTarget>,
    config: Array<MapData, Config>,
    fib_gen: Array<MapData, u32>,
    egress: DevMap<MapData>,
    /// The interfaces `egress` holds, as last written.
    egress_ifindexes: (u32, u32),
    stats: PerCpuArray<MapData, ShareStats>,
    verdicts: PerCpuArray<MapData, u64>,
    pinholes: HashMap<MapData, PinholeKey, PinholeTarget>,
    pinhole_stats: PerCpuArray<MapData, ShareStats>,
    generation: u32,
    /// Where the maps and links are pinned; `None`: nothing outlives the daemon.
    pins: Option<pins::Pins>,
    /// What the pinned maps held when this daemon found them.
    adopted: Adopted,
    /// Older layouts' maps to remove once the links run this build's programs.
    superseded: Vec<u32>,
    // Last: the maps above are plain fds and may go in any order; the programs and their
    // links live in here.
    ebpf: Ebpf,
}

/// What pinned maps held when the daemon found them: the data plane as the last daemon left
/// it, which the table reconciles against instead of starting from empty maps.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Adopted {
    pub shares: BTreeMap<ShareKey, ShareTarget>,
    pub reverse: BTreeMap<ReverseKey, ReverseTarget>,
    pub pinholes: BTreeMap<PinholeKey, PinholeTarget>,
    pub config: Config,
    pub exposed: Exposed,
    /// The maps were this build's layout and were reused (not made new).
    pub reused: bool,
}

/// Every map of the object, pinned by these names.
const MAPS: [&str; 17] = [
    MAP_SHARES,
    MAP_PORTS,
    MAP_HAIRPIN,
    MAP_EXPOSED,
    MAP_EXPOSED_STATS,
    MAP_EXPOSED_FLOWS,
    MAP_OUTBOUND,
    MAP_REVERSE,
    MAP_CONFIG,
    MAP_FIB_GEN,
    portfwd_common::MAP_NEXT_HOPS,
    MAP_EGRESS,
    MAP_SHARE_STATS,
    MAP_VERDICTS,
    MAP_PINHOLES,
    MAP_PINHOLE_STATS,
    MAP_LAYOUT,
];

fn take<T>(ebpf: &mut Ebpf, name: &'static str) -> Result<T, DataplaneError>
where
    T: TryFrom<Map, Error = aya::maps::MapError>,
{
    let map = ebpf
        .take_map(name)
        .ok_or(DataplaneError::MissingMap(name))?;
    T::try_from(map).map_err(|source| DataplaneError::MapType { name, source })
}

impl Dataplane {
    /// Loads the embedded object and its two programs into the kernel, unattached, with its
    /// maps pinned in `pins` (reused where this build's layout is pinned already).
    pub fn load(pins: Option<pins::Pins>) -> Result<Self, DataplaneError> {
        let object = portfwd_object();
        if object.is_empty() {
            return Err(DataplaneError::NoObject);
        }
        let mut loader = EbpfLoader::new();
        let mut superseded = Vec::new();
        let mut reused = false;
        let pin_paths: Vec<(&'static str, PathBuf)>;
        if let Some(pins) = &pins {
            let found = pins.found().map_err(|source| DataplaneError::Pin {
                path: pins.dir().to_owned(),
                source,
            })?;
            if let Some(&newer) = found.versions.iter().find(|v| **v > LAYOUT_VERSION) {
                return Err(DataplaneError::NewerLayout {
                    dir: pins.maps(newer),
                    found: newer,
                    ours: LAYOUT_VERSION,
                });
            }
            reused = found.versions.contains(&LAYOUT_VERSION);
            superseded = found
                .versions
                .iter()
                .copied()
                .filter(|v| *v < LAYOUT_VERSION)
                .collect();
            let dir = pins.own_maps();
            fs::create_dir_all(&dir).map_err(|source| DataplaneError::Pin {
                path: dir.clone(),
                source,
            })?;
            pin_paths = MAPS.iter().map(|name| (*name, dir.join(name))).collect();
            for (name, path) in &pin_paths {
                loader.map_pin_path(name, path.as_path());
            }
        }
        let mut ebpf = loader.load(object).map_err(|e| {
            if is_permission_error(&e) {
                DataplaneError::Permission(Box::new(e))
            } else {
                DataplaneError::Load(e)
            }
        })?;
        for name in [PROG_WAN, PROG_LAN] {
            let program: &mut Xdp = ebpf
                .program_mut(name)
                .ok_or(DataplaneError::MissingProgram(name))?
                .try_into()
                .map_err(|source| DataplaneError::Program { name, source })?;
            program.load().map_err(|source| {
                if is_permission_error(&source) {
                    DataplaneError::Permission(Box::new(source))
                } else {
                    DataplaneError::Program { name, source }
                }
            })?;
        }
        let mut dataplane = Self {
            shares: take(&mut ebpf, MAP_SHARES)?,
            ports: take(&mut ebpf, MAP_PORTS)?,
            hairpin: take(&mut ebpf, MAP_HAIRPIN)?,
            exposed: take(&mut ebpf, MAP_EXPOSED)?,
            exposed_stats: take(&mut ebpf, MAP_EXPOSED_STATS)?,
            reverse: take(&mut ebpf, MAP_REVERSE)?,
            config: take(&mut ebpf, MAP_CONFIG)?,
            fib_gen: take(&mut ebpf, MAP_FIB_GEN)?,
            egress: take(&mut ebpf, MAP_EGRESS)?,
            egress_ifindexes: (0, 0),
            stats: take(&mut ebpf, MAP_SHARE_STATS)?,
            verdicts: take(&mut ebpf, MAP_VERDICTS)?,
            pinholes: take(&mut ebpf, MAP_PINHOLES)?,
            pinhole_stats: take(&mut ebpf, MAP_PINHOLE_STATS)?,
            generation: 0,
            pins,
            adopted: Adopted::default(),
            superseded,
            ebpf,
        };
        dataplane.check_layout(reused)?;
        if reused {
            dataplane.adopted = dataplane.read_back()?;
            // Go on from the pinned generation: a cached next hop of an earlier one must never
            // look current again.
            dataplane.generation =
                dataplane
                    .fib_gen
                    .get(&0, 0)
                    .map_err(|source| DataplaneError::Map {
                        name: MAP_FIB_GEN,
                        source,
                    })?;
            dataplane.egress_ifindexes = (
                dataplane.adopted.config.lan_ifindex,
                dataplane.adopted.config.wan_ifindex,
            );
        }
        Ok(dataplane)
    }

    /// What the pinned maps held when this daemon found them (empty for new maps).
    #[must_use]
    pub fn adopted(&self) -> &Adopted {
        &self.adopted
    }

    /// One of the loaded programs ([`PROG_WAN`] or [`PROG_LAN`]), e.g. for `test_run`.
    pub fn program(&self, name: &'static str) -> Result<&Xdp, DataplaneError> {
        self.ebpf
            .program(name)
            .ok_or(DataplaneError::MissingProgram(name))?
            .try_into()
            .map_err(|source| DataplaneError::Program { name, source })
    }

    /// Attaches program `name` to `interface`. `Auto` tries native mode and falls back to
    /// generic mode where the driver refuses. With pins, a link pinned for this interface gets
    /// the program atomically (`BPF_LINK_UPDATE`: the interface never runs without one), and a
    /// new link is pinned; links pinned for interfaces that are gone are removed.
    pub fn attach(
        &mut self,
        name: &'static str,
        interface: &str,
        ifindex: u32,
        mode: XdpMode,
    ) -> Result<AttachedMode, DataplaneError> {
        let role = if name == PROG_WAN { "wan" } else { "lan" };
        let pins = self.pins.clone();
        let program: &mut Xdp = self
            .ebpf
            .program_mut(name)
            .ok_or(DataplaneError::MissingProgram(name))?
            .try_into()
            .map_err(|source| DataplaneError::Program { name, source })?;
        if let Some(pins) = &pins
            && let Some(mode) = link::adopt(program, pins, role, ifindex, mode)?
        {
            return Ok(mode);
        }
        let attach = |program: &mut Xdp, mode: AttachedMode| {
            let flags = match mode {
                AttachedMode::Native => AyaXdpMode::Driver,
                AttachedMode::Generic => AyaXdpMode::Skb,
            };
            program
                .attach_to_if_index(ifindex, flags)
                .map(|id| (id, mode))
                .map_err(|source| DataplaneError::Attach {
                    interface: interface.to_owned(),
                    mode: mode.name(),
                    source,
                })
        };
        let (id, mode) = match mode {
            XdpMode::Native => attach(program, AttachedMode::Native),
            XdpMode::Skb => attach(program, AttachedMode::Generic),
            XdpMode::Auto => attach(program, AttachedMode::Native).or_else(|err| {
                tracing::warn!(
                    "native XDP refused on {interface} ({}); falling back to generic (skb) mode",
                    crate::error_chain(&err)
                );
                attach(program, AttachedMode::Generic)
            }),
        }?;
        if let Some(pins) = &pins {
            link::pin(program, id, pins, role, ifindex, mode)?;
        }
        Ok(mode)
    }

    /// Once the links run this build's programs: removes the maps of older layouts.
    pub fn commit_upgrade(&mut self) {
        let Some(pins) = &self.pins else { return };
        for version in std::mem::take(&mut self.superseded) {
            match pins.remove_maps(version) {
                Ok(()) => tracing::info!(
                    "maps of layout version {version} replaced by version {LAYOUT_VERSION}, removed"
                ),
                Err(err) => tracing::warn!(
                    "cannot remove the maps of layout version {version} in {}: {err}",
                    pins.maps(version).display()
                ),
            }
        }
    }

    /// Whether the maps and links outlive the daemon.
    #[must_use]
    pub fn pinned(&self) -> bool {
        self.pins.is_some()
    }
}

/// Zeroes `slot` of a per-CPU counter map on every CPU.
fn zero_stats(
    map: &mut PerCpuArray<MapData, ShareStats>,
    name: &'static str,
    slot: u32,
) -> Result<(), DataplaneError> {
    let err = |source| DataplaneError::Map { name, source };
    let cpus =
        aya::util::nr_cpus().map_err(|(_, io_error)| err(aya::maps::MapError::from(io_error)))?;
    let zero = PerCpuValues::try_from(vec![ShareStats::default(); cpus])
        .map_err(|e| err(aya::maps::MapError::from(e)))?;
    map.set(slot, zero, 0).map_err(err)
}

/// `slot` of a per-CPU counter map, summed over CPUs.
fn sum_stats(
    map: &PerCpuArray<MapData, ShareStats>,
    name: &'static str,
    slot: u32,
) -> Result<ShareStats, DataplaneError> {
    let values = map
        .get(&slot, 0)
        .map_err(|source| DataplaneError::Map { name, source })?;
    Ok(values
        .iter()
        .fold(ShareStats::default(), |a, s| ShareStats {
            packets_in: a.packets_in + s.packets_in,
            bytes_in: a.bytes_in + s.bytes_in,
            packets_out: a.packets_out + s.packets_out,
            bytes_out: a.bytes_out + s.bytes_out,
        }))
}

impl KernelMaps for Dataplane {
    fn put_share(&mut self, key: ShareKey, target: ShareTarget) -> Result<(), DataplaneError> {
        match wildcard_index(key) {
            Some(index) => self
                .ports
                .set(index, target, 0)
                .map_err(|source| DataplaneError::Map {
                    name: MAP_PORTS,
                    source,
                }),
            None => self
                .shares
                .insert(key, target, 0)
                .map_err(|source| DataplaneError::Map {
                    name: MAP_SHARES,
                    source,
                }),
        }
    }
    fn del_share(&mut self, key: &ShareKey) -> Result<(), DataplaneError> {
        match wildcard_index(*key) {
            Some(index) => self
                .ports
                .set(index, ShareTarget::default(), 0)
                .map_err(|source| DataplaneError::Map {
                    name: MAP_PORTS,
                    source,
                }),
            None => self
                .shares
                .remove(key)
                .map_err(|source| DataplaneError::Map {
                    name: MAP_SHARES,
                    source,
                }),
        }
    }
    fn put_reverse(
        &mut self,
        key: ReverseKey,
        target: ReverseTarget,
    ) -> Result<(), DataplaneError> {
        self.reverse
            .insert(key, target, 0)
            .map_err(|source| DataplaneError::Map {
                name: MAP_REVERSE,
                source,
            })
    }
    fn del_reverse(&mut self, key: &ReverseKey) -> Result<(), DataplaneError> {
        self.reverse
            .remove(key)
            .map_err(|source| DataplaneError::Map {
                name: MAP_REVERSE,
                source,
            })
    }
    fn reset_stats(&mut self, slot: u32) -> Result<(), DataplaneError> {
        zero_stats(&mut self.stats, MAP_SHARE_STATS, slot)
    }
    fn stats(&self, slot: u32) -> Result<ShareStats, DataplaneError> {
        sum_stats(&self.stats, MAP_SHARE_STATS, slot)
    }
    fn put_pinhole(
        &mut self,
        key: PinholeKey,
        target: PinholeTarget,
    ) -> Result<(), DataplaneError> {
        self.pinholes
            .insert(key, target, 0)
            .map_err(|source| DataplaneError::Map {
                name: MAP_PINHOLES,
                source,
            })
    }
    fn del_pinhole(&mut self, key: &PinholeKey) -> Result<(), DataplaneError> {
        self.pinholes
            .remove(key)
            .map_err(|source| DataplaneError::Map {
                name: MAP_PINHOLES,
                source,
            })
    }
    fn reset_pinhole_stats(&mut self, slot: u32) -> Result<(), DataplaneError> {
        zero_stats(&mut self.pinhole_stats, MAP_PINHOLE_STATS, slot)
    }
    fn pinhole_stats(&self, slot: u32) -> Result<ShareStats, DataplaneError> {
        sum_stats(&self.pinhole_stats, MAP_PINHOLE_STATS, slot)
    }
    fn set_exposed(&mut self, exposed: Exposed) -> Result<(), DataplaneError> {
        self.exposed
            .set(0, exposed, 0)
            .map_err(|source| DataplaneError::Map {
                name: MAP_EXPOSED,
                source,
            })
    }
    fn set_config(&mut self, config: Config) -> Result<(), DataplaneError> {
        // The device map first: the programs redirect through it as soon as the config names
        // the interfaces.
        let ifindexes = (config.lan_ifindex, config.wan_ifindex);
        if ifindexes != self.egress_ifindexes {
            for (index, ifindex) in [(EGRESS_LAN, ifindexes.0), (EGRESS_WAN, ifindexes.1)] {
                self.egress
                    .set(index, ifindex, None, 0)
                    .map_err(|source| DataplaneError::Egress { ifindex, source })?;
            }
            self.egress_ifindexes = ifindexes;
        }
        self.config
            .set(0, config, 0)
            .map_err(|source| DataplaneError::Map {
                name: MAP_CONFIG,
                source,
            })
    }
    fn bump_fib_generation(&mut self) -> Result<(), DataplaneError> {
        // Never 0 after the first bump, so zeroed cache entries can never look current.
        self.generation = self.generation.wrapping_add(1).max(1);
        self.fib_gen
            .set(0, self.generation, 0)
            .map_err(|source| DataplaneError::Map {
                name: MAP_FIB_GEN,
                source,
            })
    }
    fn verdicts(&self, dir: u32) -> Result<[u64; VERDICT_COUNT as usize], DataplaneError> {
        reader::verdicts(&self.verdicts, dir)
    }
    fn adopted(&self) -> Adopted {
        self.adopted.clone()
    }
    fn reader(&self) -> Arc<dyn MapReader> {
        match DataplaneReader::new(self) {
            Ok(reader) => Arc::new(reader),
            Err(err) => {
                tracing::error!("reading counters: {}", crate::error_chain(&err));
                Arc::new(MemoryReader(Arc::default()))
            }
        }
    }
    fn as_any(&self) -> &dyn Any {
        self
    }
    fn as_any_mut(&mut self) -> &mut dyn Any {
        self
    }
}
