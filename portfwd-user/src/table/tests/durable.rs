//! Durability: the journal on a real directory, group commit, restarts, migration of
//! `state.json`, and undoing what the disk refused.

use std::collections::BTreeMap;

use super::*;
use crate::{
    state::{Saved, SavedPinhole, SavedShare, SavedSource, StateDir},
    store::Writer,
};

/// A fresh state directory, removed on drop.
struct Dir(std::path::PathBuf, StateDir);

impl Dir {
    fn new(tag: &str) -> Self {
        use std::sync::atomic::{AtomicU32, Ordering};
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let path = std::env::temp_dir().join(format!(
            "portfwd-table-{tag}-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&path);
        let state = StateDir::open(&path).expect("state dir");
        Self(path, state)
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Starts a table on `dir` as the daemon does: static shares, what was saved, the writer.
fn start(dir: &Dir, statics: &[&str]) -> (TableHandle, tokio::task::JoinHandle<Table>, usize) {
    let (journal, loaded) = load(&dir.1, true).expect("load");
    let mut t = table_with(
        settings("quota_per_client = 1000\nquota_total = 1000"),
        Arc::default(),
    );
    t.set_now(now());
    t.replace_static(specs(statics)).expect("static");
    let restored = t.restore(loaded.saved);
    t.arm(EventLog::memory(100));
    let writer = Writer::spawn(journal, None).expect("writer");
    let (handle, task) = spawn(t, Some(writer));
    (handle, task, restored)
}

#[tokio::test]
async fn concurrent_changes_share_syncs_and_each_is_on_disk_when_acknowledged() {
    let dir = Dir::new("group");
    let (journal, _) = load(&dir.1, true).expect("load");
    let writer = Writer::spawn(journal, None).expect("writer");
    let (handle, task) = spawn(
        table_with(settings("quota_per_client = 1000"), Arc::default()),
        Some(writer),
    );
    let syncs = || async {
        handle
            .ask(|t| t.store_stats().expect("a writer").syncs)
            .await
            .expect("owner")
    };
    let syncs_before = syncs().await;
    let n: u16 = 64;
    let changes = (0..n).map(|i| {
        let handle = handle.clone();
        async move {
            let port = 10_000 + i;
            handle
                .change(move |t| {
                    t.admit(upnp(&format!("tcp:{port}=10.0.0.10:{port}"), CLIENT, 3600))
                })
                .await
        }
    });
    for result in futures_join_all(changes).await {
        result.expect("admitted and saved");
    }
    let syncs = syncs().await - syncs_before;
    assert!(syncs < u64::from(n), "{n} changes took {syncs} syncs");
    assert!(syncs >= 1);
    drop(handle);
    drop(task.await.expect("task"));
    // Everything acknowledged is in the store.
    let (_, loaded) = load(&dir.1, true).expect("reload");
    assert_eq!(loaded.saved.shares.len(), usize::from(n));
}

/// Polls all of `futures` together (what `futures::future::join_all` does), in order.
async fn futures_join_all<F: Future>(futures: impl Iterator<Item = F>) -> Vec<F::Output> {
    let tasks: Vec<_> = futures.map(|f| Box::pin(f)).collect();
    let mut outputs: Vec<Option<F::Output>> = tasks.iter().map(|_| None).collect();
    let mut tasks: Vec<Option<_>> = tasks.into_iter().map(Some).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (task, out) in tasks.iter_mut().zip(outputs.iter_mut()) {
            if let Some(f) = task {
                match f.as_mut().poll(cx) {
                    std::task::Poll::Ready(v) => {
                        *out = Some(v);
                        *task = None;
                    }
                    std::task::Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            std::task::Poll::Pending
        } else {
            std::task::Poll::Ready(())
        }
    })
    .await;
    outputs.into_iter().map(|o| o.expect("ready")).collect()
}

#[tokio::test]
async fn leases_survive_a_restart_with_the_time_they_had_left() {
    let dir = Dir::new("restart");
    let (handle, task, _) = start(&dir, &["tcp:7000=10.0.0.40:80"]);
    for (s, lease) in [
        ("udp:3074=10.0.0.10:3074", 3600),
        ("tcp:4000=10.0.0.10:4000", 0),
        ("tcp:4001=10.0.0.10:4001", 60),
    ] {
        handle
            .change(move |t| {
                t.admit(Ask {
                    mechanism: Mechanism::Upnp { v2: false },
                    ..upnp(s, CLIENT, lease)
                })
            })
            .await
            .expect("lease");
    }
    handle
        .change(|t| {
            t.remove(
                spec("tcp:4001=10.0.0.10:4001").id,
                By::Client(Origin::Upnp { client: CLIENT }),
            )
        })
        .await
        .expect("removed before the restart");
    handle
        .change(|t| t.create(spec("tcp:6000=10.0.0.30:80")))
        .await
        .expect("the owner's");
    handle
        .change(|t| {
            t.edit(
                spec("tcp:7000=10.0.0.40:80").id,
                SharePatch {
                    enabled: Some(false),
                    ..SharePatch::default()
                },
            )
        })
        .await
        .expect("switched off");
    handle
        .change(|t| {
            t.set_settings(&SettingsPatch {
                secure_mode: Some(false),
                ..SettingsPatch::default()
            })
        })
        .await
        .expect("settings");
    drop(handle);
    drop(task.await.expect("task"));

    // A static share that took a leased port meanwhile wins; the lease is dropped.
    let (handle, _task, restored) =
        start(&dir, &["tcp:4000=10.0.0.20:4000", "tcp:7000=10.0.0.40:80"]);
    assert_eq!(
        restored, 2,
        "the lease of udp:3074 and the owner's tcp:6000"
    );
    let snapshot = handle.snapshot();
    let list: Vec<_> = snapshot.entries(now()).collect();
    let switched = list
        .iter()
        .find(|e| e.spec.id.ext_port == 7000)
        .expect("static");
    assert!(
        !switched.spec.enabled,
        "the owner's switch outlives a restart"
    );
    assert!(!snapshot.settings.secure_mode, "so do settings");
    assert!(
        list.iter()
            .any(|e| e.spec.id.ext_port == 6000 && e.origin == Origin::Api)
    );
    let leased: Vec<_> = list
        .iter()
        .filter(|v| v.origin == Origin::Upnp { client: CLIENT })
        .collect();
    assert_eq!(leased.len(), 1);
    assert_eq!(leased[0].spec.id.ext_port, 3074);
    let left = leased[0].expires_in.expect("leased");
    assert!(left > secs(3590) && left <= secs(3600), "{left:?}");
}

/// What an earlier portfwd's `state.json` held: every kind of thing it kept.
fn old_state() -> Saved {
    let in_an_hour = crate::clock::wall_deadline(secs(3600));
    let share =
        |proto, port, source, client: Option<Ipv4Addr>, nonce: Option<&str>, expires| SavedShare {
            proto,
            external_port: port,
            external_last: None,
            hairpin: None,
            remote: None,
            internal: format!("10.0.0.10:{port}").parse().expect("addr"),
            source,
            client,
            nonce: nonce.map(str::to_owned),
            name: Some(format!("share {port}")),
            enabled: port != 4003,
            expires_at: expires,
        };
    Saved {
        shares: vec![
            share(Proto::Tcp, 4000, SavedSource::Api, None, None, None),
            share(
                Proto::Udp,
                4001,
                SavedSource::Upnp,
                Some(CLIENT),
                None,
                Some(in_an_hour),
            ),
            share(
                Proto::Udp,
                4002,
                SavedSource::Natpmp,
                Some(CLIENT),
                None,
                Some(in_an_hour),
            ),
            share(
                Proto::Tcp,
                4003,
                SavedSource::Pcp,
                Some(CLIENT),
                Some("0a0a0a0a0a0a0a0a0a0a0a0a"),
                Some(in_an_hour),
            ),
        ],
        static_enabled: BTreeMap::from([(spec("tcp:80=10.0.0.40:80").id, false)]),
        settings: Overlay {
            secure_mode: Some(false),
            quota_total: Some(99),
            devices: BTreeMap::from([(OTHER, false)]),
            ..Overlay::default()
        },
        pinholes: vec![SavedPinhole {
            id: "udp:[2001:db8:77::10]:9000".parse().expect("id"),
            remote: None,
            remote_port: Some(53),
            name: None,
            enabled: true,
            source: SavedSource::Pcp,
            client: Some("2001:db8:77::10".parse().expect("addr")),
            nonce: Some("0b0b0b0b0b0b0b0b0b0b0b0b".into()),
            uid: Some(4242),
            expires_at: Some(in_an_hour),
        }],
    }
}

#[tokio::test]
async fn migration_from_state_json_loses_nothing_and_keeps_the_file() {
    let dir = Dir::new("migrate");
    dir.1
        .save(&old_state())
        .expect("state.json of an earlier portfwd");
    let old_file = std::fs::read(dir.0.join("state.json")).expect("written");
    let (_, loaded) = load(&dir.1, true).expect("load");
    assert!(loaded.migrated);
    drop(loaded);
    let (handle, task, restored) = start(&dir, &["tcp:80=10.0.0.40:80"]);
    assert_eq!(restored, 5, "four shares and a pinhole");
    let check = |snapshot: &Snapshot| {
        let now = now();
        let by_port = |port: u16| {
            snapshot
                .entries(now)
                .find(|e| e.spec.id.ext_port == port)
                .unwrap_or_else(|| panic!("share {port}"))
        };
        assert_eq!(by_port(4000).origin, Origin::Api);
        assert_eq!(by_port(4001).origin, Origin::Upnp { client: CLIENT });
        assert_eq!(by_port(4002).origin, Origin::Natpmp { client: CLIENT });
        assert_eq!(
            by_port(4003).origin,
            Origin::Pcp {
                client: CLIENT,
                nonce: [10; 12]
            }
        );
        assert!(!by_port(4003).spec.enabled);
        assert_eq!(by_port(4001).spec.name.as_deref(), Some("share 4001"));
        let left = by_port(4002).expires_in.expect("lease");
        assert!(left > secs(3500) && left <= secs(3600), "{left:?}");
        assert!(
            !by_port(80).spec.enabled,
            "the owner's switch on a static share"
        );
        assert!(!snapshot.settings.secure_mode);
        assert_eq!(snapshot.settings.limits.total, 99);
        assert!(!snapshot.settings.permission(OTHER, None).0);
        let pinhole = snapshot.pinholes.values().next().expect("pinhole");
        assert_eq!(pinhole.uid, 4242);
        assert_eq!(pinhole.spec.remote_port, Some(53));
        assert!(matches!(pinhole.origin, Origin::Pcp6 { nonce, .. } if nonce == [11; 12]));
        assert!(pinhole.expires.is_some());
    };
    check(&handle.snapshot());
    drop(handle);
    drop(task.await.expect("task"));
    assert_eq!(
        std::fs::read(dir.0.join("state.json")).expect("kept"),
        old_file,
        "the old file stays beside the store, untouched"
    );
    // The second start reads the store, not state.json.
    let (_, loaded) = load(&dir.1, true).expect("load");
    assert!(!loaded.migrated);
    let (handle, _task, restored) = start(&dir, &["tcp:80=10.0.0.40:80"]);
    assert_eq!(restored, 5);
    check(&handle.snapshot());
}

#[test]
fn changes_the_disk_refused_are_undone_newest_first() {
    let dir = Dir::new("refused");
    let (journal, _) = load(&dir.1, true).expect("load");
    let mut t = new_table();
    let writer = Writer::spawn(journal, None).expect("writer");
    let acks = Arc::new(Mutex::new(Vec::new()));
    t.set_durability(Durability {
        writer,
        notify: Arc::new({
            let acks = Arc::clone(&acks);
            move |ack| acks.lock().expect("lock").push(ack)
        }),
    });
    lease(&mut t, "tcp:5000=10.0.0.10:5000", CLIENT, 60).expect("first");
    lease(&mut t, "tcp:5001=10.0.0.10:5001", CLIENT, 60).expect("second");
    t.set_settings(&SettingsPatch {
        quota_total: Some(5),
        ..SettingsPatch::default()
    })
    .expect("third");
    assert_eq!(memory(&t).shares.len(), 2);
    // The writer says the second change (and so everything after it) did not reach the
    // disk: both are undone, the first stays.
    t.acked(Ack::Commit(1, false));
    let left: Vec<String> = entries(&t).iter().map(|e| e.spec.id.to_string()).collect();
    assert_eq!(left, ["tcp:5000"]);
    assert_eq!(memory(&t).shares.len(), 1, "the kernel follows");
    assert_eq!(t.settings().limits.total, Settings::default().limits.total);
    // A late failure report of an undone change changes nothing more.
    t.acked(Ack::Commit(2, false));
    assert_eq!(entries(&t).len(), 1);
    t.close();
}
