//! Changes to the table and the kernel maps that follow them.

use portfwd_common::{CONFIG_F_REMOTE_SPECIFIC, ShareStats};

use super::*;

#[tokio::test]
async fn handle_round_trip_reconciles_before_replying() {
    let (handle, task) = spawn(new_table(), None);
    handle
        .change(|t| t.replace_static(specs(&["tcp:8080=10.0.0.10:80"])))
        .await
        .expect("replace");
    handle
        .change(|t| t.set_external(Some(Ipv4Addr::new(198, 51, 100, 1))))
        .await
        .expect("external");
    handle
        .change(Table::forwarding_changed)
        .await
        .expect("bump");
    let snapshot = handle.snapshot();
    let list: Vec<_> = snapshot.entries(now()).collect();
    assert_eq!(list.len(), 1);
    assert_eq!(list[0].spec.to_string(), "tcp:8080=10.0.0.10:80");
    assert_eq!(snapshot.external, Some(Ipv4Addr::new(198, 51, 100, 1)));
    drop(handle);
    let table = task.await.expect("task");
    let maps = memory(&table);
    assert_eq!(maps.shares.len(), 1);
    assert_eq!(maps.fib_generation, 1);
    assert_eq!(maps.config.wan_ifindex, 7);
    assert_eq!(
        maps.config.ext_addr,
        u32::from_be_bytes([198, 51, 100, 1]).to_be()
    );
}

#[tokio::test(start_paused = true)]
async fn a_lease_expires_at_its_deadline_and_leaves_the_kernel() {
    let (handle, task) = spawn(new_table(), None);
    let ask = || upnp("udp:5000=10.0.0.10:5000", CLIENT, 10);
    handle.change(move |t| t.admit(ask())).await.expect("lease");
    tokio::time::advance(secs(6)).await;
    let listed: Vec<_> = handle.snapshot().entries(now()).collect();
    assert_eq!(listed[0].expires_in, Some(secs(4)));
    assert_eq!(listed[0].origin, Origin::Upnp { client: CLIENT });

    // Renewal by its client moves the deadline.
    handle.change(move |t| t.admit(ask())).await.expect("renew");
    tokio::time::advance(secs(9)).await;
    assert_eq!(handle.snapshot().shares.len(), 1, "renewed, not expired");
    tokio::time::advance(Duration::from_millis(1001)).await;
    tokio::task::yield_now().await;
    assert!(handle.snapshot().shares.is_empty(), "expired");
    drop(handle);
    let table = task.await.expect("task");
    assert!(
        memory(&table).shares.is_empty(),
        "gone from the kernel map too"
    );
    assert!(memory(&table).reverse.is_empty());
}

#[test]
fn only_the_owner_renews_or_removes_a_leased_share() {
    let mut t = table_with(settings("secure_mode = false"), Arc::default());
    lease(&mut t, "tcp:6000=10.0.0.10:6000", CLIENT, 0).expect("lease");
    let err = lease(&mut t, "tcp:6000=10.0.0.11:6000", OTHER, 0).expect_err("taken");
    assert!(
        matches!(err, TableError::Conflict { origin: Origin::Upnp { client }, .. } if client == CLIENT),
        "{err:?}"
    );
    // The same client pointing the share elsewhere is a conflict too, not a silent move.
    assert!(matches!(
        lease(&mut t, "tcp:6000=10.0.0.10:6001", CLIENT, 0),
        Err(TableError::Conflict { .. })
    ));
    let id = spec("tcp:6000=10.0.0.10:6000").id;
    assert!(matches!(
        t.remove(id, By::Client(Origin::Upnp { client: OTHER })),
        Err(TableError::NotOwner(..))
    ));
    // Static shares are not the clients' either.
    t.replace_static(specs(&["tcp:1=10.0.0.10:1"]))
        .expect("static");
    let static_id = spec("tcp:1=10.0.0.10:1").id;
    assert!(matches!(
        t.remove(static_id, By::Client(Origin::Upnp { client: CLIENT })),
        Err(TableError::NotOwner(..))
    ));
    assert!(matches!(
        t.remove(static_id, By::AnyClient(Origin::Upnp { client: OTHER })),
        Err(TableError::NotOwner(..))
    ));
    t.remove(id, By::Client(Origin::Upnp { client: CLIENT }))
        .expect("its own");
    assert!(matches!(
        t.remove(id, By::Operator),
        Err(TableError::NoSuchShare(_))
    ));
}

#[test]
fn a_static_reload_keeps_leased_shares() {
    let mut t = new_table();
    lease(&mut t, "udp:7000=10.0.0.10:7000", CLIENT, 0).expect("lease");
    t.replace_static(specs(&["tcp:1=10.0.0.10:1"]))
        .expect("reload");
    t.replace_static(specs(&[])).expect("reload to nothing");
    let list = entries(&t);
    assert_eq!(list.len(), 1);
    assert_eq!(list[0].spec.id, spec("udp:7000=10.0.0.10:7000").id);
}

#[test]
fn the_remote_specific_flag_follows_the_shares() {
    let mut t = new_table();
    t.replace_static(specs(&["tcp:1=10.0.0.10:1"]))
        .expect("wildcard");
    assert_eq!(memory(&t).config.flags & CONFIG_F_REMOTE_SPECIFIC, 0);
    t.replace_static(specs(&[
        "tcp:1=10.0.0.10:1",
        "tcp:1@198.51.100.7=10.0.0.10:1",
    ]))
    .expect("remote");
    assert_eq!(
        memory(&t).config.flags & CONFIG_F_REMOTE_SPECIFIC,
        CONFIG_F_REMOTE_SPECIFIC
    );
    t.replace_static(specs(&["tcp:1=10.0.0.10:1"]))
        .expect("back");
    assert_eq!(memory(&t).config.flags & CONFIG_F_REMOTE_SPECIFIC, 0);
}

#[test]
fn a_refused_reload_changes_nothing() {
    let mut t = new_table();
    t.replace_static(specs(&["tcp:1=10.0.0.10:1", "tcp:2=10.0.0.11:2"]))
        .expect("first");
    let before = memory(&t).shares.clone();
    let err = t
        .replace_static(specs(&["tcp:1=10.0.0.10:1", "tcp:3=192.168.9.9:3"]))
        .expect_err("not on the LAN");
    assert!(err.to_string().contains("tcp:3"), "{err}");
    assert_eq!(memory(&t).shares, before);
    assert_eq!(entries(&t).len(), 2);
}

#[test]
fn reload_keeps_unchanged_shares_and_their_counters() {
    let mut t = new_table();
    t.replace_static(specs(&["tcp:1=10.0.0.10:1", "tcp:2=10.0.0.11:2"]))
        .expect("first");
    let slot_of = |t: &Table, port: u16| {
        memory(t)
            .shares
            .iter()
            .find(|(k, _)| k.ext_port == port.to_be())
            .map(|(_, v)| v.slot)
            .expect("share")
    };
    let slot1 = slot_of(&t, 1);
    memory(&t).counters().stats.insert(
        slot1,
        ShareStats {
            packets_in: 5,
            ..ShareStats::default()
        },
    );
    let mut renamed = specs(&["tcp:1=10.0.0.10:1", "tcp:4=10.0.0.11:2"]);
    renamed[0].name = Some("ssh".into());
    let applied = t.replace_static(renamed).expect("second");
    assert_eq!(slot_of(&t, 1), slot1);
    assert_eq!(applied.deletes, 1, "tcp:2 went away");
    let list = t
        .snapshot()
        .share_views(t.reader().as_ref(), t.now)
        .expect("list");
    assert_eq!(list[0].entry.spec.name.as_deref(), Some("ssh"));
    assert_eq!(list[0].stats.packets_in, 5);
    assert_eq!(
        list[1].stats,
        ShareStats::default(),
        "new share, fresh counters"
    );
}

#[test]
fn a_lease_on_a_static_port_is_a_conflict_for_any_remote_host() {
    let mut t = new_table();
    t.replace_static(specs(&["tcp:8080@198.51.100.7=10.0.0.20:80"]))
        .expect("static");
    let err = lease(&mut t, "tcp:8080=10.0.0.10:80", CLIENT, 60).expect_err("static port");
    assert!(
        matches!(
            err,
            TableError::Conflict {
                origin: Origin::Static,
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(memory(&t).shares.len(), 1, "kernel untouched");
    lease(&mut t, "udp:8080=10.0.0.10:80", CLIENT, 60).expect("udp is another share");
}

#[test]
fn range_removal_takes_only_the_clients_leased_shares() {
    let mut t = table_with(settings("secure_mode = false"), Arc::default());
    t.replace_static(specs(&["tcp:2001=10.0.0.12:1"]))
        .expect("static");
    for (s, c) in [
        ("tcp:2000=10.0.0.10:2000", CLIENT),
        ("tcp:2002=10.0.0.10:2002", CLIENT),
        ("udp:2002=10.0.0.10:2002", CLIENT),
        ("tcp:2003=10.0.0.11:2003", OTHER),
        ("tcp:3000=10.0.0.10:3000", CLIENT),
    ] {
        lease(&mut t, s, c, 0).expect("lease");
    }
    let removed = t
        .remove_range(
            Proto::Tcp,
            2000..=2999,
            By::Client(Origin::Upnp { client: CLIENT }),
        )
        .expect("range");
    let ports: Vec<u16> = removed.iter().map(|s| s.spec.id.ext_port).collect();
    assert_eq!(ports, [2000, 2002]);
    let left: Vec<String> = entries(&t).iter().map(|v| v.spec.id.to_string()).collect();
    assert_eq!(left, ["tcp:2001", "tcp:2003", "tcp:3000", "udp:2002"]);
    assert_eq!(memory(&t).shares.len(), 4);
}

#[test]
fn the_owner_creates_edits_switches_and_deletes_with_events() {
    let mut t = armed();
    let id = spec("tcp:8080=10.0.0.10:80").id;
    t.create(spec("tcp:8080=10.0.0.10:80")).expect("create");
    assert!(matches!(
        t.create(spec("tcp:8080=10.0.0.11:80")),
        Err(TableError::Share {
            source: crate::share::ShareError::Duplicate(_),
            ..
        })
    ));
    let moved = t
        .edit(
            id,
            SharePatch {
                external_port: Some((8081, 8081)),
                name: Some(Some("web".into())),
                ..SharePatch::default()
            },
        )
        .expect("edit");
    assert_eq!(moved.spec.to_string(), "tcp:8081=10.0.0.10:80");
    assert_eq!(memory(&t).shares.len(), 1);
    assert_eq!(
        memory(&t)
            .shares
            .keys()
            .next()
            .map(|k| u16::from_be(k.ext_port)),
        Some(8081)
    );
    let id = moved.spec.id;
    let off = SharePatch {
        enabled: Some(false),
        ..SharePatch::default()
    };
    t.edit(id, off.clone()).expect("off");
    assert!(
        memory(&t).shares.is_empty(),
        "a disabled share leaves the kernel"
    );
    t.edit(id, off).expect("off again: no change, no event");
    t.edit(
        id,
        SharePatch {
            enabled: Some(true),
            ..SharePatch::default()
        },
    )
    .expect("on");
    t.remove(id, By::Operator).expect("delete");
    assert!(memory(&t).shares.is_empty());
    assert!(memory(&t).reverse.is_empty());
    assert_eq!(
        kinds(&t),
        [
            "share_created",
            "share_edited",
            "share_disabled",
            "share_enabled",
            "share_deleted"
        ]
    );
    let events = t.events().page(None, 100);
    assert_eq!(events[1].share, Some(id));
    assert!(
        events[1].detail.contains("was tcp:8080"),
        "{}",
        events[1].detail
    );
    assert!(events.iter().all(|e| e.source == "api"));
}

#[test]
fn the_owner_is_refused_a_port_the_box_listens_on() {
    let host = Arc::new(FakeHost::default());
    host.listening.lock().expect("lock").push((None, 22));
    let mut t = table_with(Settings::default(), Arc::clone(&host));
    assert!(matches!(
        t.create(spec("tcp:22=10.0.0.10:22")),
        Err(TableError::BoxListens { port: 22, .. })
    ));
    t.create(spec("tcp:2222=10.0.0.10:22"))
        .expect("another port");
    assert!(matches!(
        t.edit(
            spec("tcp:2222=10.0.0.10:22").id,
            SharePatch {
                external_port: Some((22, 22)),
                ..SharePatch::default()
            }
        ),
        Err(TableError::BoxListens { .. })
    ));
}

#[test]
fn static_shares_are_switched_not_edited_or_deleted_by_the_owner() {
    let mut t = armed();
    t.replace_static(specs(&["tcp:80=10.0.0.10:80"]))
        .expect("static");
    let id = spec("tcp:80=10.0.0.10:80").id;
    let err = t
        .edit(
            id,
            SharePatch {
                internal: Some("10.0.0.11:80".parse().expect("addr")),
                ..SharePatch::default()
            },
        )
        .expect_err("config's");
    assert!(matches!(err, TableError::Static(_)), "{err:?}");
    assert!(matches!(
        t.remove(id, By::Operator),
        Err(TableError::Static(_))
    ));
    t.edit(
        id,
        SharePatch {
            enabled: Some(false),
            ..SharePatch::default()
        },
    )
    .expect("switch");
    // A reload keeps the owner's switch; a reload without the share forgets it.
    t.replace_static(specs(&["tcp:80=10.0.0.10:80"]))
        .expect("reload");
    assert!(memory(&t).shares.is_empty());
    t.replace_static(Vec::new()).expect("gone");
    t.replace_static(specs(&["tcp:80=10.0.0.10:80"]))
        .expect("back");
    assert_eq!(memory(&t).shares.len(), 1, "back as the config says");
    assert_eq!(
        kinds(&t),
        [
            "share_created",
            "share_disabled",
            "share_deleted",
            "share_created"
        ]
    );
    assert!(t.events().page(None, 100)[2].source == "config");
}

#[test]
fn a_short_wan_outage_is_one_event_a_long_one_two() {
    let mut t = Table::builder(
        lan(),
        Box::new(MemoryMaps::default()),
        Arc::new(FakeHost::default()),
        7,
        8,
    )
    .flap_window(secs(10))
    .build(Instant::now())
    .expect("table");
    t.arm(EventLog::memory(100));
    t.replace_static(specs(&["tcp:80=10.0.0.10:80"]))
        .expect("static");
    let start = t.now;
    t.set_link(false).expect("down");
    assert!(memory(&t).shares.is_empty(), "out of the data plane");
    let view = &t
        .snapshot()
        .share_views(t.reader().as_ref(), start)
        .expect("list")[0];
    assert!(!view.active && view.entry.spec.enabled);
    t.set_now(start + secs(3));
    t.set_link(true).expect("up");
    assert_eq!(memory(&t).shares.len(), 1, "back");
    assert_eq!(kinds(&t), ["share_created", "wan_flap"]);

    t.set_now(start + secs(20));
    t.set_link(false).expect("down");
    assert_eq!(
        t.next_deadline(),
        Some(start + secs(30)),
        "the flap window ends"
    );
    t.set_now(start + secs(30));
    t.expire().expect("window");
    assert_eq!(t.next_deadline(), None);
    t.set_now(start + secs(40));
    t.set_link(true).expect("up");
    assert_eq!(
        kinds(&t),
        ["share_created", "wan_flap", "wan_down", "wan_up"]
    );
    assert_eq!(t.snapshot().status().counters.wan_link_changes, 4);
}

#[test]
fn lease_expiry_is_an_event_and_a_count() {
    let mut t = armed();
    lease(&mut t, "udp:3074=10.0.0.10:3074", CLIENT, 5).expect("lease");
    let start = t.now;
    t.set_now(start + secs(5));
    t.expire().expect("expire");
    assert_eq!(kinds(&t), ["share_created", "share_expired"]);
    assert_eq!(t.snapshot().status().counters.lease_expirations, 1);
    assert_eq!(t.events().page(None, 10)[1].source, "lease");
    assert!(memory(&t).shares.is_empty());
}

#[test]
fn a_refused_change_leaves_table_and_kernel_as_they_were() {
    let mut t = new_table();
    lease(&mut t, "tcp:5000=10.0.0.10:5000", CLIENT, 0).expect("lease");
    let before = (memory(&t).shares.clone(), memory(&t).reverse.clone());
    let deadline = t.next_deadline();
    // Another external port for an endpoint already shared: refused by the table.
    let err = lease(&mut t, "tcp:5001=10.0.0.10:5000", CLIENT, 60).expect_err("endpoint");
    assert!(matches!(err, TableError::Share { .. }), "{err:?}");
    let err = t
        .create(spec("tcp:5002=10.0.0.10:5000"))
        .expect_err("endpoint");
    assert!(matches!(err, TableError::Share { .. }), "{err:?}");
    assert_eq!(
        (memory(&t).shares.clone(), memory(&t).reverse.clone()),
        before
    );
    assert_eq!(entries(&t).len(), 1);
    assert_eq!(
        t.next_deadline(),
        deadline,
        "no deadline of the refused lease stays"
    );
}

#[test]
fn hairpin_is_on_by_default_from_the_box_lan_address_and_can_be_switched_off() {
    let t = new_table();
    let config = memory(&t).config;
    assert_ne!(config.flags & portfwd_common::CONFIG_F_HAIRPIN, 0);
    assert_eq!(config.lan_addr, u32::from_be_bytes([10, 0, 0, 1]).to_be());
    let off = Table::builder(
        lan(),
        Box::new(MemoryMaps::default()),
        Arc::new(FakeHost::default()),
        7,
        8,
    )
    .hairpin(false)
    .build(Instant::now())
    .expect("table");
    assert_eq!(
        memory(&off).config.flags & portfwd_common::CONFIG_F_HAIRPIN,
        0
    );

    // A share's own switch travels in its kernel entries.
    let mut t = new_table();
    let mut spec = spec("tcp:8080=10.0.0.10:80");
    spec.hairpin = false;
    t.create(spec).expect("share");
    let target = memory(&t).shares.values().next().copied().expect("entry");
    assert_eq!(target.flags, portfwd_common::SHARE_F_NO_HAIRPIN);
}
