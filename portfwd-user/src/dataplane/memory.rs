//! [`MemoryMaps`]: the kernel maps kept in memory, for unit tests of the logic above them.

use std::{
    any::Any,
    collections::BTreeMap,
    sync::{Arc, Mutex, MutexGuard},
};

use portfwd_common::{
    Config, PinholeKey, PinholeTarget, ReverseKey, ReverseTarget, ShareKey, ShareStats,
    ShareTarget, VERDICT_COUNT, exposed::Exposed,
};

use super::{Adopted, DataplaneError, KernelMaps, MapReader, Verdicts};

/// The kernel maps kept in memory, for tests of the logic above them.
#[derive(Debug, Default)]
pub struct MemoryMaps {
    pub shares: BTreeMap<ShareKey, ShareTarget>,
    pub reverse: BTreeMap<ReverseKey, ReverseTarget>,
    pub pinholes: BTreeMap<PinholeKey, PinholeTarget>,
    pub config: Config,
    pub exposed: Exposed,
    pub fib_generation: u32,
    /// Every write, in order, as `"put share"`, `"del reverse"`, ...
    pub log: Vec<&'static str>,
    /// Whether the maps act as pinned maps found at start: [`KernelMaps::adopted`] reports
    /// what they hold.
    pub pinned: bool,
    counters: Arc<Mutex<MemoryCounters>>,
}

/// The counters of [`MemoryMaps`], shared with its readers.
#[derive(Debug, Default)]
pub struct MemoryCounters {
    pub stats: BTreeMap<u32, ShareStats>,
    pub pinhole_stats: BTreeMap<u32, ShareStats>,
    pub verdicts: Verdicts,
    pub exposed_stats: [ShareStats; 2],
}

impl MemoryMaps {
    /// The counters, for a test to set or read.
    pub fn counters(&self) -> MutexGuard<'_, MemoryCounters> {
        self.counters
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

pub(super) struct MemoryReader(pub(super) Arc<Mutex<MemoryCounters>>);

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
    fn exposed_stats(&self) -> Result<[ShareStats; 2], DataplaneError> {
        Ok(self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .exposed_stats)
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
    fn set_exposed(&mut self, exposed: Exposed) -> Result<(), DataplaneError> {
        self.log.push("set exposed");
        self.exposed = exposed;
        Ok(())
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
    fn adopted(&self) -> Adopted {
        if !self.pinned {
            return Adopted::default();
        }
        Adopted {
            shares: self.shares.clone(),
            reverse: self.reverse.clone(),
            pinholes: self.pinholes.clone(),
            config: self.config,
            exposed: self.exposed,
            reused: true,
        }
    }
    fn as_any(&self) -> &dyn Any {
        self
    }
    fn as_any_mut(&mut self) -> &mut dyn Any {
        self
    }
}
