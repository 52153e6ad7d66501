//! The XDP programs and their maps, behind the [`KernelMaps`] seam.
//!
//! [`Dataplane`] loads the embedded object, takes its maps out once into typed handles and
//! attaches the programs; the share table writes them ([`crate::table`]'s kernel layer) and
//! other tasks read the counters through a [`MapReader`] of their own file descriptors.
//! [`MemoryMaps`] is the in-memory stand-in for unit tests of everything above the kernel.

mod batch;

use std::{
    any::Any,
    collections::BTreeMap,
    os::fd::AsFd as _,
    sync::{Arc, Mutex, MutexGuard},
};

use aya::{
    Ebpf, EbpfLoader,
    maps::{Array, DevMap, HashMap, IterableMap as _, Map, MapData, PerCpuArray, PerCpuValues},
    programs::{ProgramError, Xdp, XdpMode as AyaXdpMode},
};
use portfwd_common::{
    Config, EGRESS_LAN, EGRESS_WAN, MAP_CONFIG, MAP_EGRESS, MAP_FIB_GEN, MAP_PINHOLE_STATS,
    MAP_PINHOLES, MAP_REVERSE, MAP_SHARE_STATS, MAP_SHARES, MAP_VERDICTS, PROG_LAN, PROG_WAN,
    PinholeKey, PinholeTarget, ReverseKey, ReverseTarget, ShareKey, ShareStats, ShareTarget,
    VERDICT_COUNT, Verdict, verdict_index,
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
    #[error("updating map `{name}`")]
    Map {
        name: &'static str,
        #[source]
        source: aya::maps::MapError,
    },
}

fn is_permission_error(mut err: &(dyn std::error::Error + 'static)) -> bool {
    loop {
        if let Some(io) = err.downcast_ref::<std::io::Error>() {
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
    /// A reader of the counters for other tasks.
    fn reader(&self) -> Arc<dyn MapReader>;
    /// For tests that look at the in-memory maps.
    fn as_any(&self) -> &dyn Any;
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
}

/// Operations one reconciliation applied.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Applied {
    pub upserts: usize,
    pub deletes: usize,
}

/// The kernel maps kept in memory, for tests of the logic above them.
#[derive(Debug, Default)]
pub struct MemoryMaps {
    pub shares: BTreeMap<ShareKey, ShareTarget>,
    pub reverse: BTreeMap<ReverseKey, ReverseTarget>,
    pub pinholes: BTreeMap<PinholeKey, PinholeTarget>,
    pub config: Config,
    pub fib_generation: u32,
    /// Every write, in order, as `"put share"`, `"del reverse"`, ...
    pub log: Vec<&'static str>,
    counters: Arc<Mutex<MemoryCounters>>,
}

/// The counters of [`MemoryMaps`], shared with its readers.
#[derive(Debug, Default)]
pub struct MemoryCounters {
    pub stats: BTreeMap<u32, ShareStats>,
    pub pinhole_stats: BTreeMap<u32, ShareStats>,
    pub verdicts: Verdicts,
}

impl MemoryMaps {
    /// The counters, for a test to set or read.
    pub fn counters(&self) -> MutexGuard<'_, MemoryCounters> {
        self.counters
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

struct MemoryReader(Arc<Mutex<MemoryCounters>>);

impl MapReader for MemoryReader {
    fn share_stats(&self, slots: &[u32]) -> Result<Vec<ShareStats>, DataplaneError> {
        let c = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        Ok(slots
            .iter()
            .map(|s| c.stats.get(s).copied().unwrap_or_default())
            .collect())
    }
    fn pinhole_stats(&self, slots: &[u32]) -> Result<Vec<ShareStats>, DataplaneError> {
        let c = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        Ok(slots
            .iter()
            .map(|s| c.pinhole_stats.get(s).copied().unwrap_or_default())
            .collect())
    }
    fn verdicts(&self) -> Result<Verdicts, DataplaneError> {
        Ok(self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .verdicts)
    }
}

impl KernelMaps for MemoryMaps {
    fn put_share(&mut self, key: ShareKey, target: ShareTarget) -> Result<(), DataplaneError> {
        self.log.push("put share");
        self.shares.insert(key, target);
        Ok(())
    }
    fn del_share(&mut self, key: &ShareKey) -> Result<(), DataplaneError> {
        self.log.push("del share");
        self.shares.remove(key);
        Ok(())
    }
    fn put_reverse(
        &mut self,
        key: ReverseKey,
        target: ReverseTarget,
    ) -> Result<(), DataplaneError> {
        self.log.push("put reverse");
        self.reverse.insert(key, target);
        Ok(())
    }
    fn del_reverse(&mut self, key: &ReverseKey) -> Result<(), DataplaneError> {
        self.log.push("del reverse");
        self.reverse.remove(key);
        Ok(())
    }
    fn reset_stats(&mut self, slot: u32) -> Result<(), DataplaneError> {
        self.counters().stats.remove(&slot);
        Ok(())
    }
    fn stats(&self, slot: u32) -> Result<ShareStats, DataplaneError> {
        Ok(self
            .counters()
            .stats
            .get(&slot)
            .copied()
            .unwrap_or_default())
    }
    fn set_config(&mut self, config: Config) -> Result<(), DataplaneError> {
        self.config = config;
        Ok(())
    }
    fn bump_fib_generation(&mut self) -> Result<(), DataplaneError> {
        self.fib_generation = self.fib_generation.wrapping_add(1);
        Ok(())
    }
    fn verdicts(&self, dir: u32) -> Result<[u64; VERDICT_COUNT as usize], DataplaneError> {
        Ok(self.counters().verdicts[dir as usize % 2])
    }
    fn put_pinhole(
        &mut self,
        key: PinholeKey,
        target: PinholeTarget,
    ) -> Result<(), DataplaneError> {
        self.log.push("put pinhole");
        self.pinholes.insert(key, target);
        Ok(())
    }
    fn del_pinhole(&mut self, key: &PinholeKey) -> Result<(), DataplaneError> {
        self.log.push("del pinhole");
        self.pinholes.remove(key);
        Ok(())
    }
    fn reset_pinhole_stats(&mut self, slot: u32) -> Result<(), DataplaneError> {
        self.counters().pinhole_stats.remove(&slot);
        Ok(())
    }
    fn pinhole_stats(&self, slot: u32) -> Result<ShareStats, DataplaneError> {
        Ok(self
            .counters()
            .pinhole_stats
            .get(&slot)
            .copied()
            .unwrap_or_default())
    }
    fn reader(&self) -> Arc<dyn MapReader> {
        Arc::new(MemoryReader(Arc::clone(&self.counters)))
    }
    fn as_any(&self) -> &dyn Any {
        self
    }
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
    shares: HashMap<MapData, ShareKey, ShareTarget>,
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
    // Last: the maps above are plain fds and may go in any order; the programs and their
    // links live in here.
    ebpf: Ebpf,
}

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
    /// Loads the embedded object and its two programs into the kernel, unattached.
    pub fn load() -> Result<Self, DataplaneError> {
        let object = portfwd_object();
        if object.is_empty() {
            return Err(DataplaneError::NoObject);
        }
        let mut ebpf = EbpfLoader::new().load(object).map_err(|e| {
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
        Ok(Self {
            shares: take(&mut ebpf, MAP_SHARES)?,
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
            ebpf,
        })
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
    /// generic mode where the driver refuses.
    pub fn attach(
        &mut self,
        name: &'static str,
        interface: &str,
        ifindex: u32,
        mode: XdpMode,
    ) -> Result<AttachedMode, DataplaneError> {
        let program: &mut Xdp = self
            .ebpf
            .program_mut(name)
            .ok_or(DataplaneError::MissingProgram(name))?
            .try_into()
            .map_err(|source| DataplaneError::Program { name, source })?;
        let attach = |program: &mut Xdp, mode: AttachedMode| {
            let flags = match mode {
                AttachedMode::Native => AyaXdpMode::Driver,
                AttachedMode::Generic => AyaXdpMode::Skb,
            };
            program
                .attach_to_if_index(ifindex, flags)
                .map(|_| mode)
                .map_err(|source| DataplaneError::Attach {
                    interface: interface.to_owned(),
                    mode: mode.name(),
                    source,
                })
        };
        match mode {
            XdpMode::Native => attach(program, AttachedMode::Native),
            XdpMode::Skb => attach(program, AttachedMode::Generic),
            XdpMode::Auto => attach(program, AttachedMode::Native).or_else(|err| {
                tracing::warn!(
                    "native XDP refused on {interface} ({}); falling back to generic (skb) mode",
                    crate::error_chain(&err)
                );
                attach(program, AttachedMode::Generic)
            }),
        }
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
        self.shares
            .insert(key, target, 0)
            .map_err(|source| DataplaneError::Map {
                name: MAP_SHARES,
                source,
            })
    }
    fn del_share(&mut self, key: &ShareKey) -> Result<(), DataplaneError> {
        self.shares
            .remove(key)
            .map_err(|source| DataplaneError::Map {
                name: MAP_SHARES,
                source,
            })
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
        let mut out = [0; VERDICT_COUNT as usize];
        for (slot, verdict) in out.iter_mut().zip(Verdict::ALL) {
            let values = self
                .verdicts
                .get(&verdict_index(dir, verdict), 0)
                .map_err(|source| DataplaneError::Map {
                    name: MAP_VERDICTS,
                    source,
                })?;
            *slot = values.iter().sum();
        }
        Ok(out)
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
}

/// The counter maps through file descriptors of their own, for readers on other tasks.
struct DataplaneReader {
    stats: PerCpuArray<MapData, ShareStats>,
    pinhole_stats: PerCpuArray<MapData, ShareStats>,
    verdicts: PerCpuArray<MapData, u64>,
}

/// A second handle on the map behind `map`.
fn reopen<V: aya::Pod>(
    map: &PerCpuArray<MapData, V>,
    name: &'static str,
) -> Result<PerCpuArray<MapData, V>, DataplaneError> {
    let err = |source| DataplaneError::Map { name, source };
    let fd = map
        .map()
        .fd()
        .as_fd()
        .try_clone_to_owned()
        .map_err(|e| err(aya::maps::MapError::from(e)))?;
    let data = MapData::from_fd(fd).map_err(err)?;
    let map = Map::from_map_data(data).map_err(err)?;
    PerCpuArray::try_from(map).map_err(|source| DataplaneError::MapType { name, source })
}

impl DataplaneReader {
    fn new(dataplane: &Dataplane) -> Result<Self, DataplaneError> {
        Ok(Self {
            stats: reopen(&dataplane.stats, MAP_SHARE_STATS)?,
            pinhole_stats: reopen(&dataplane.pinhole_stats, MAP_PINHOLE_STATS)?,
            verdicts: reopen(&dataplane.verdicts, MAP_VERDICTS)?,
        })
    }
}

/// The counters of `slots` of `map`: the slots up to the highest one in one batch read, or
/// one lookup per slot where the kernel has no batch operations.
fn read_slots(
    map: &PerCpuArray<MapData, ShareStats>,
    name: &'static str,
    slots: &[u32],
) -> Result<Vec<ShareStats>, DataplaneError> {
    let Some(&highest) = slots.iter().max() else {
        return Ok(Vec::new());
    };
    let cpus = aya::util::nr_cpus().map_err(|(_, io_error)| DataplaneError::Map {
        name,
        source: aya::maps::MapError::from(io_error),
    })?;
    match batch::stats(map.map().fd().as_fd(), highest + 1, cpus) {
        Ok(all) => Ok(slots
            .iter()
            .map(|&slot| all.get(slot as usize).copied().unwrap_or_default())
            .collect()),
        Err(err) => {
            tracing::debug!("batch lookup in {name}: {err}; one lookup per share instead");
            slots
                .iter()
                .map(|&slot| sum_stats(map, name, slot))
                .collect()
        }
    }
}

impl MapReader for DataplaneReader {
    fn share_stats(&self, slots: &[u32]) -> Result<Vec<ShareStats>, DataplaneError> {
        read_slots(&self.stats, MAP_SHARE_STATS, slots)
    }
    fn pinhole_stats(&self, slots: &[u32]) -> Result<Vec<ShareStats>, DataplaneError> {
        read_slots(&self.pinhole_stats, MAP_PINHOLE_STATS, slots)
    }
    fn verdicts(&self) -> Result<Verdicts, DataplaneError> {
        let mut out = [[0; VERDICT_COUNT as usize]; 2];
        for (dir, counts) in [portfwd_common::DIR_WAN, portfwd_common::DIR_LAN]
            .into_iter()
            .zip(&mut out)
        {
            for (slot, verdict) in counts.iter_mut().zip(Verdict::ALL) {
                let values =
                    self.verdicts
                        .get(&verdict_index(dir, verdict), 0)
                        .map_err(|source| DataplaneError::Map {
                            name: MAP_VERDICTS,
                            source,
                        })?;
                *slot = values.iter().sum();
            }
        }
        Ok(out)
    }
}
