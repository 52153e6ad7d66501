//! The event log: every change to the shares, the device permissions and the settings, and
//! what happened to the WAN link and address, each with its time, who caused it and the share.
//!
//! The share table's task records events as its changes commit, so the log never shows a
//! change that was refused or rolled back. Each event goes to the daemon's log (tracing), to
//! the in-memory window the API serves, and to `events.jsonl` in the state directory: one JSON
//! object per line. The log never touches the disk itself: it hands the lines to the table,
//! which gives them to the writer thread with the change they belong to (appended and synced
//! with it, see [`crate::store`]). The file is bounded: when it holds twice the window, it is
//! replaced (atomically) by the last window's worth. A damaged line (say, the last one after a
//! power cut) is skipped when the file is read back, not fatal.
//!
//! Followers (`portfwd events --follow`, the API's long poll) watch the id of the newest event.

use std::{collections::VecDeque, fs, path::PathBuf};

use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, watch};

use crate::{
    clock::unix_now,
    share::ShareId,
    state::{StateDir, StateError},
};

/// The log's file in the state directory.
pub const EVENTS: &str = "events.jsonl";
/// Events kept in memory and, at least, on disk.
pub const DEFAULT_CAPACITY: usize = 1000;

/// What happened.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    ShareCreated,
    ShareEdited,
    ShareEnabled,
    ShareDisabled,
    ShareDeleted,
    ShareExpired,
    DevicePermission,
    SettingsChanged,
    WanDown,
    WanUp,
    /// The link went down and came back within the flap window: one event for both.
    WanFlap,
    ExternalAddress,
    /// An interface was made again (new index) and the programs attached to it.
    InterfaceAttached,
    /// The owner set an exposed host.
    ExposedHostSet,
    /// The owner cleared an exposed host.
    ExposedHostCleared,
    /// Dynamic DNS set the name to a new address (or worked again after failing).
    DdnsUpdated,
    /// A dynamic DNS update failed (the first of a run of failures).
    DdnsFailed,
}

impl EventKind {
    /// All kinds, for metrics.
    pub const ALL: [Self; 17] = [
        Self::ShareCreated,
        Self::ShareEdited,
        Self::ShareEnabled,
        Self::ShareDisabled,
        Self::ShareDeleted,
        Self::ShareExpired,
        Self::DevicePermission,
        Self::SettingsChanged,
        Self::WanDown,
        Self::WanUp,
        Self::WanFlap,
        Self::ExternalAddress,
        Self::InterfaceAttached,
        Self::ExposedHostSet,
        Self::ExposedHostCleared,
        Self::DdnsUpdated,
        Self::DdnsFailed,
    ];

    /// The name in JSON, the CLI and metrics labels.
    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            Self::ShareCreated => "share_created",
            Self::ShareEdited => "share_edited",
            Self::ShareEnabled => "share_enabled",
            Self::ShareDisabled => "share_disabled",
            Self::ShareDeleted => "share_deleted",
            Self::ShareExpired => "share_expired",
            Self::DevicePermission => "device_permission",
            Self::SettingsChanged => "settings_changed",
            Self::WanDown => "wan_down",
            Self::WanUp => "wan_up",
            Self::WanFlap => "wan_flap",
            Self::ExternalAddress => "external_address",
            Self::InterfaceAttached => "interface_attached",
            Self::ExposedHostSet => "exposed_host_set",
            Self::ExposedHostCleared => "exposed_host_cleared",
            Self::DdnsUpdated => "ddns_updated",
            Self::DdnsFailed => "ddns_failed",
        }
    }
}

/// One entry of the log.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    /// Increases by one per event, across restarts.
    pub id: u64,
    /// Seconds since the Unix epoch.
    pub time: u64,
    pub kind: EventKind,
    /// Who caused it: `api`, `config`, `upnp 10.0.0.5`, `lease`, `wan`.
    pub source: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub share: Option<ShareId>,
    /// A sentence for people: the share's target, the old and new value.
    pub detail: String,
}

/// An event before it is recorded.
#[derive(Clone, Debug)]
pub struct NewEvent {
    pub kind: EventKind,
    pub source: String,
    pub share: Option<ShareId>,
    pub detail: String,
    /// Whether the webhook hears of it (a share was switched on).
    pub notify: bool,
}

impl NewEvent {
    #[must_use]
    pub fn new(kind: EventKind, source: impl Into<String>, detail: impl Into<String>) -> Self {
        Self {
            kind,
            source: source.into(),
            share: None,
            detail: detail.into(),
            notify: false,
        }
    }

    #[must_use]
    pub fn share(mut self, id: ShareId) -> Self {
        self.share = Some(id);
        self
    }

    /// Marks the event as one the webhook is called for, if `on` (a share was switched on).
    #[must_use]
    pub fn notify_if(mut self, on: bool) -> Self {
        self.notify = on;
        self
    }
}

/// Something told of every event recorded (the metrics count them).
pub type Observer = Box<dyn Fn(&Event) + Send>;

/// The log.
pub struct EventLog {
    events: VecDeque<Event>,
    capacity: usize,
    next_id: u64,
    disk: Option<Disk>,
    newest: watch::Sender<u64>,
    webhook: Option<mpsc::Sender<Event>>,
    observers: Vec<Observer>,
}

/// The file's side: what it holds and what is still to be written to it.
struct Disk {
    path: PathBuf,
    lines: usize,
    unwritten: Vec<u8>,
    /// The whole file anew (the window), when it has grown to twice the window.
    rewrite: Option<Vec<u8>>,
}

impl EventLog {
    /// A log kept in memory only (tests, and a daemon whose state directory failed).
    #[must_use]
    pub fn memory(capacity: usize) -> Self {
        Self {
            events: VecDeque::new(),
            capacity: capacity.max(1),
            next_id: 1,
            disk: None,
            newest: watch::Sender::new(0),
            webhook: None,
            observers: Vec::new(),
        }
    }

    /// The log in `state`, with the events already there.
    pub fn open(state: &StateDir, capacity: usize) -> Result<Self, StateError> {
        let path = state.path().join(EVENTS);
        let mut log = Self::memory(capacity);
        let text = match fs::read_to_string(&path) {
            Ok(text) => text,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(source) => return Err(StateError::Read { path, source }),
        };
        let mut damaged = 0;
        let mut lines = 0;
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            lines += 1;
            match serde_json::from_str::<Event>(line) {
                Ok(event) => log.keep(event),
                Err(_) => damaged += 1,
            }
        }
        if damaged > 0 {
            tracing::warn!(
                "{}: skipped {damaged} damaged line(s) of the event log",
                path.display()
            );
        }
        log.next_id = log.events.back().map_or(1, |e| e.id + 1);
        log.newest.send_replace(log.next_id - 1);
        // A torn last line must not swallow the next one.
        let unwritten = if text.is_empty() || text.ends_with('\n') {
            Vec::new()
        } else {
            vec![b'\n']
        };
        log.disk = Some(Disk {
            path,
            lines,
            unwritten,
            rewrite: None,
        });
        Ok(log)
    }

    /// Sends the events marked `notify` to `webhook` from now on (never waiting for it).
    pub fn set_webhook(&mut self, webhook: mpsc::Sender<Event>) {
        self.webhook = Some(webhook);
    }

    /// Tells `observer` of every event recorded from now on.
    pub fn observe(&mut self, observer: Observer) {
        self.observers.push(observer);
    }

    /// Where the log's file is, if it has one.
    #[must_use]
    pub fn path(&self) -> Option<&std::path::Path> {
        self.disk.as_ref().map(|d| d.path.as_path())
    }

    /// The lines recorded since the last call, to append to the file, and the whole file
    /// anew if it is due to be replaced (written after the lines).
    pub fn take_unwritten(&mut self) -> (Vec<u8>, Option<Vec<u8>>) {
        match &mut self.disk {
            Some(disk) => (std::mem::take(&mut disk.unwritten), disk.rewrite.take()),
            None => (Vec::new(), None),
        }
    }

    fn keep(&mut self, event: Event) {
        if self.events.len() == self.capacity {
            self.events.pop_front();
        }
        self.events.push_back(event);
    }

    /// Records `event`: memory, disk, the daemon's log, followers and the webhook.
    pub fn record(&mut self, event: NewEvent) -> &Event {
        let NewEvent {
            kind,
            source,
            share,
            detail,
            notify,
        } = event;
        let event = Event {
            id: self.next_id,
            time: unix_now(),
            kind,
            source,
            share,
            detail,
        };
        self.next_id += 1;
        for observer in &self.observers {
            observer(&event);
        }
        // The detail names the share where there is one.
        tracing::info!("{}: {} ({})", kind.name(), event.detail, event.source);
        self.stage(&event);
        if notify
            && let Some(webhook) = &self.webhook
            && webhook.try_send(event.clone()).is_err()
        {
            tracing::warn!("webhook queue full: event {} not sent", event.id);
        }
        self.newest.send_replace(event.id);
        self.keep(event);
        self.events
            .back()
            .unwrap_or_else(|| unreachable!("just kept"))
    }

    /// Queues `event`'s line for the file (and the whole window, when the file is due to be
    /// replaced).
    fn stage(&mut self, event: &Event) {
        let Some(disk) = &mut self.disk else {
            return;
        };
        // Serialising plain data cannot fail.
        disk.unwritten
            .extend(serde_json::to_vec(event).unwrap_or_default());
        disk.unwritten.push(b'\n');
        disk.lines += 1;
        if disk.lines >= 2 * self.capacity {
            // The window (which now ends with `event`) replaces the file.
            let mut text = Vec::new();
            for kept in self.events.iter().skip(1).chain([event]) {
                text.extend(serde_json::to_vec(kept).unwrap_or_default());
                text.push(b'\n');
            }
            disk.rewrite = Some(text);
            disk.lines = self.capacity;
        }
    }

    /// Up to `limit` events after id `after`, oldest first; without `after`, the newest
    /// `limit`.
    #[must_use]
    pub fn page(&self, after: Option<u64>, limit: usize) -> Vec<Event> {
        match after {
            Some(after) => self
                .events
                .iter()
                .filter(|e| e.id > after)
                .take(limit)
                .cloned()
                .collect(),
            None => self
                .events
                .iter()
                .skip(self.events.len().saturating_sub(limit))
                .cloned()
                .collect(),
        }
    }

    /// The id of the newest event (0: none yet).
    #[must_use]
    pub fn last_id(&self) -> u64 {
        self.next_id - 1
    }

    /// The id of the newest event, updated as events are recorded.
    #[must_use]
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.newest.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_dir(tag: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("portfwd-events-{tag}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        dir
    }

    fn made(n: u16) -> NewEvent {
        NewEvent::new(EventKind::ShareCreated, "api", format!("share {n}"))
            .share(format!("tcp:{n}").parse().expect("id"))
    }

    #[test]
    fn events_are_paged_and_followed() {
        let mut log = EventLog::memory(3);
        let follow = log.subscribe();
        for n in 1..=5 {
            log.record(made(n));
        }
        assert_eq!(*follow.borrow(), 5);
        let ids = |events: Vec<Event>| events.iter().map(|e| e.id).collect::<Vec<_>>();
        assert_eq!(ids(log.page(None, 10)), [3, 4, 5], "the window");
        assert_eq!(ids(log.page(None, 2)), [4, 5]);
        assert_eq!(ids(log.page(Some(3), 10)), [4, 5]);
        assert_eq!(ids(log.page(Some(0), 1)), [3]);
        assert_eq!(ids(log.page(Some(5), 10)), Vec::<u64>::new());
    }

    /// Does with the staged lines what the writer thread does.
    fn flush(log: &mut EventLog, path: &std::path::Path) {
        use std::io::Write as _;
        let (lines, rewrite) = log.take_unwritten();
        let mut file = fs::OpenOptions::new()
            .append(true)
            .create(true)
            .open(path)
            .expect("open");
        file.write_all(&lines).expect("append");
        if let Some(all) = rewrite {
            fs::write(path, all).expect("rewrite");
        }
    }

    #[test]
    fn the_file_is_bounded_and_read_back_past_a_damaged_line() {
        let dir = temp_dir("disk");
        let state = StateDir::open(&dir).expect("open");
        let path = dir.join(EVENTS);
        {
            let mut log = EventLog::open(&state, 4).expect("log");
            assert_eq!(log.path(), Some(path.as_path()));
            for n in 1..=9 {
                log.record(made(n));
                flush(&mut log, &path);
            }
        }
        let text = fs::read_to_string(&path).expect("file");
        assert!(text.lines().count() < 8, "compacted: {text}");
        // A torn last line, as a power cut leaves it.
        let mut torn = text.into_bytes();
        torn.extend_from_slice(b"{\"id\":10,\"ti");
        fs::write(&path, torn).expect("write");
        let mut log = EventLog::open(&state, 4).expect("reopen");
        let ids: Vec<u64> = log.page(None, 10).iter().map(|e| e.id).collect();
        assert_eq!(ids, [6, 7, 8, 9]);
        assert_eq!(log.record(made(10)).id, 10, "ids continue");
        assert_eq!(*log.subscribe().borrow(), 10);
        fs::remove_dir_all(&dir).expect("cleanup");
    }

    #[test]
    fn the_webhook_hears_only_of_shares_switched_on_and_never_blocks() {
        let (tx, mut rx) = mpsc::channel(1);
        let mut log = EventLog::memory(10);
        log.set_webhook(tx);
        log.record(made(1));
        log.record(made(2).notify_if(true));
        log.record(made(3).notify_if(true)); // The queue holds one: dropped, not waited for.
        assert_eq!(rx.try_recv().expect("sent").id, 2);
        assert!(rx.try_recv().is_err());
    }
}
