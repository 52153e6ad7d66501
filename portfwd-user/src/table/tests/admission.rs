//! Admission in the owner: every check against the owner's settings as they are when the
//! request reaches it.

use super::*;
use crate::{pinhole::PinholeSpec, policy::Refusal};

#[tokio::test]
async fn a_device_revoked_while_a_request_is_in_flight_wins() {
    let (handle, _task) = spawn(new_table(), None);
    // The client's request has been parsed while the device was allowed; the owner's revoke
    // reaches the table first.
    let ask = upnp("tcp:5000=10.0.0.10:5000", CLIENT, 60);
    assert!(
        handle
            .snapshot()
            .settings
            .check_client(CLIENT, None)
            .is_ok()
    );
    let revoke = handle.change(|t| t.set_device(CLIENT, Some(false)));
    let add = handle.change(move |t| t.admit(ask));
    let (revoked, added) = tokio::join!(revoke, add);
    revoked.expect("revoke");
    assert!(
        matches!(added, Err(TableError::Refused(Refusal::Device(c))) if c == CLIENT),
        "{added:?}"
    );
    assert!(handle.snapshot().shares.is_empty());
}

#[test]
fn a_quota_or_switch_change_applies_to_the_very_next_request() {
    let mut t = new_table();
    lease(&mut t, "tcp:5000=10.0.0.10:5000", CLIENT, 60).expect("first");
    t.set_settings(&SettingsPatch {
        quota_per_client: Some(1),
        ..SettingsPatch::default()
    })
    .expect("quota");
    assert!(matches!(
        lease(&mut t, "tcp:5001=10.0.0.10:5001", CLIENT, 60),
        Err(TableError::Quota {
            client: Some(_),
            limit: 1
        })
    ));
    // A renewal is no new share.
    lease(&mut t, "tcp:5000=10.0.0.10:5000", CLIENT, 60).expect("renewal");
    t.set_settings(&SettingsPatch {
        quota_per_client: Some(8),
        upnp_enabled: Some(false),
        ..SettingsPatch::default()
    })
    .expect("off");
    assert!(matches!(
        lease(&mut t, "tcp:5001=10.0.0.10:5001", CLIENT, 60),
        Err(TableError::Refused(Refusal::Disabled))
    ));
    t.set_settings(&SettingsPatch {
        upnp_enabled: Some(true),
        secure_mode: Some(false),
        ..SettingsPatch::default()
    })
    .expect("on, not secure");
    lease(&mut t, "tcp:5001=10.0.0.11:5001", CLIENT, 60).expect("another host's port");
}

#[test]
fn quotas_count_shares_and_pinholes_of_all_clients() {
    let mut t = table_with(
        settings("quota_per_client = 2\nquota_total = 3"),
        Arc::default(),
    );
    lease(&mut t, "tcp:11000=10.0.0.10:11000", CLIENT, 60).expect("first");
    lease(&mut t, "tcp:11001=10.0.0.10:11001", CLIENT, 60).expect("second");
    lease(&mut t, "tcp:11001=10.0.0.10:11001", CLIENT, 60).expect("a renewal is no new share");
    assert!(matches!(
        lease(&mut t, "tcp:11002=10.0.0.10:11002", CLIENT, 60),
        Err(TableError::Quota {
            client: Some(_),
            limit: 2
        })
    ));
    lease(&mut t, "tcp:11003=10.0.0.11:11003", OTHER, 60).expect("other client");
    assert!(matches!(
        lease(&mut t, "tcp:11004=10.0.0.11:11004", OTHER, 60),
        Err(TableError::Quota {
            client: None,
            limit: 3
        })
    ));
    // A share given up makes room, whoever takes it.
    t.remove(spec("tcp:11000=10.0.0.10:11000").id, By::Operator)
        .expect("removed");
    lease(&mut t, "tcp:11004=10.0.0.11:11004", OTHER, 60).expect("room again");
}

#[test]
fn the_hunt_skips_what_is_taken_listened_on_or_not_allowed() {
    let host = Arc::new(FakeHost::default());
    *host.listening.lock().expect("lock") = vec![(None, 4002), (Some(Ipv4Addr::LOCALHOST), 3999)];
    let rules = settings(
        "[[rule]]\naction = \"deny\"\nexternal_ports = \"4001\"\n\
         [[rule]]\naction = \"allow\"\nexternal_ports = \"1024-65535\"",
    );
    let mut t = table_with(rules, host);
    t.set_external(Some(Ipv4Addr::new(198, 51, 100, 1)))
        .expect("external");
    let any = |t: &mut Table, ext: u16, int: u16| {
        let mut ask = Ask {
            hunt: Hunt::Near,
            ..upnp(&format!("udp:1=10.0.0.10:{int}"), CLIENT, 0)
        };
        ask.spec.id = ask.spec.id.at(ext);
        t.admit(ask).map(|g| g.port)
    };
    // Port 0 asks for any: the internal port first.
    assert_eq!(any(&mut t, 0, 4000).expect("free"), 4000);
    // 4000 taken, 4001 denied, 4002 the box's own, 3999 only on loopback: 3999.
    assert_eq!(any(&mut t, 4000, 2).expect("near"), 3999);
    // The same internal endpoint again: its port, renewed, not a second share.
    assert_eq!(any(&mut t, 5000, 2).expect("renewal"), 3999);
    assert_eq!(entries(&t).len(), 2);
    // Nothing above 65535: the search goes the other way.
    assert_eq!(any(&mut t, 65535, 3).expect("top"), 65535);
    assert_eq!(any(&mut t, 65535, 4).expect("below"), 65534);
    // Secure mode is not a port question: no search.
    let err = t
        .admit(Ask {
            hunt: Hunt::Near,
            ..upnp("udp:7000=10.0.0.11:7000", CLIENT, 0)
        })
        .expect_err("not its own");
    assert!(
        matches!(err, TableError::Refused(Refusal::NotSelf { .. })),
        "{err:?}"
    );
    // No rule allows anything near: the rule is the answer, not a shortage.
    let mut strict = table_with(
        settings("[[rule]]\naction = \"allow\"\nexternal_ports = \"1024-2000\""),
        Arc::default(),
    );
    let err = strict
        .admit(Ask {
            hunt: Hunt::Exact,
            ..upnp("udp:3000=10.0.0.10:3000", CLIENT, 0)
        })
        .expect_err("rule");
    assert!(
        matches!(err, TableError::Refused(Refusal::Rule { .. })),
        "{err:?}"
    );
}

#[test]
fn the_box_own_ports_are_other_mechanisms() {
    let host = Arc::new(FakeHost::default());
    *host.listening.lock().expect("lock") = vec![(None, 5000)];
    let mut t = table_with(Settings::default(), host);
    assert!(matches!(
        lease(&mut t, "tcp:5000=10.0.0.10:5000", CLIENT, 60),
        Err(TableError::BoxListens { port: 5000, .. })
    ));
}

#[test]
fn devices_are_matched_by_mac_through_the_host() {
    let host = Arc::new(FakeHost::default());
    host.macs
        .lock()
        .expect("lock")
        .push((Ipv4Addr::new(10, 0, 0, 77), [2, 0, 0, 0, 0, 7]));
    let mut t = table_with(
        settings("secure_mode = false\ndevices = [\"02:00:00:00:00:07\"]"),
        Arc::clone(&host),
    );
    lease(
        &mut t,
        "tcp:4000=10.0.0.77:1",
        Ipv4Addr::new(10, 0, 0, 77),
        0,
    )
    .expect("by MAC");
    assert!(matches!(
        lease(&mut t, "tcp:4001=10.0.0.10:1", CLIENT, 0),
        Err(TableError::Refused(Refusal::Device(_)))
    ));
}

#[test]
fn pcp_mappings_answer_only_to_their_nonce() {
    let mut t = new_table();
    let ask = |nonce: u8, port: u16| Ask {
        origin: Origin::Pcp {
            client: CLIENT,
            nonce: [nonce; 12],
        },
        mechanism: Mechanism::Pcp,
        spec: spec(&format!("udp:{port}=10.0.0.10:6000")),
        hunt: Hunt::Near,
        lease: 600,
    };
    let granted = t.admit(ask(1, 6000)).expect("map");
    assert_eq!(granted.lease, Some(secs(600)));
    assert!(matches!(
        t.admit(ask(2, 6000)),
        Err(TableError::NotOwner(..))
    ));
    assert_eq!(
        t.admit(ask(1, 7000)).expect("renewal").port,
        6000,
        "renewed where it is"
    );
    // Lifetimes are clamped to the PCP range.
    let short = Ask {
        lease: 1,
        ..ask(1, 6000)
    };
    assert_eq!(t.admit(short).expect("renewal").lease, Some(secs(120)));
    // Another nonce may not delete it either; the right one may.
    let release = |nonce: u8| Release {
        origin: Origin::Pcp {
            client: CLIENT,
            nonce: [nonce; 12],
        },
        proto: Some(Proto::Udp),
        port: 6000,
        nonce: Some([nonce; 12]),
    };
    assert!(matches!(
        t.release(release(2)),
        Err(TableError::NotOwner(..))
    ));
    assert_eq!(t.release(release(1)).expect("delete"), 1);
    assert_eq!(
        t.release(release(1)).expect("again"),
        0,
        "what is not there is gone"
    );
}

fn pinhole(id: &str) -> PinholeSpec {
    PinholeSpec {
        id: id.parse().expect("id"),
        remote: None,
        remote_port: None,
        name: None,
        enabled: true,
    }
}

#[test]
fn pinholes_are_admitted_by_switch_device_mac_rules_and_quota() {
    let host = Arc::new(FakeHost::default());
    let mac = [2, 0, 0, 0, 0, 10];
    host.macs.lock().expect("lock").push((CLIENT, mac));
    host.macs6
        .lock()
        .expect("lock")
        .push(("2001:db8:77::10".parse().expect("addr"), mac));
    let mut t = table_with(settings("quota_per_client = 2"), Arc::clone(&host));
    let ask = |id: &str| PinholeAsk {
        spec: pinhole(id),
        origin: Origin::Upnp { client: CLIENT },
        mechanism: Mechanism::Upnp { v2: true },
        lease: 3600,
    };
    let view = t
        .admit_pinhole(ask("tcp:[2001:db8:77::10]:8080"))
        .expect("own device");
    assert_eq!(view.expires_in, Some(secs(3600)));
    // Secure mode: an address of another device (or one the box has not seen).
    assert!(matches!(
        t.admit_pinhole(ask("tcp:[2001:db8:77::99]:8080")),
        Err(TableError::Refused(Refusal::NotSelf6 { .. }))
    ));
    // The default rules keep clients above port 1024.
    assert!(matches!(
        t.admit_pinhole(ask("tcp:[2001:db8:77::10]:80")),
        Err(TableError::Refused(Refusal::Rule { .. }))
    ));
    // Shares and pinholes count together.
    lease(&mut t, "tcp:5000=10.0.0.10:5000", CLIENT, 60).expect("share");
    assert!(matches!(
        t.admit_pinhole(ask("udp:[2001:db8:77::10]:9000")),
        Err(TableError::Quota { .. })
    ));
    // Renewal is no new pinhole; another client's is not this one's.
    t.admit_pinhole(ask("tcp:[2001:db8:77::10]:8080"))
        .expect("renewal");
    t.set_settings(&SettingsPatch {
        upnp_enabled: Some(false),
        ..SettingsPatch::default()
    })
    .expect("off");
    assert!(matches!(
        t.admit_pinhole(ask("tcp:[2001:db8:77::10]:8080")),
        Err(TableError::Refused(Refusal::Disabled))
    ));
    assert_eq!(memory(&t).pinholes.len(), 1);
}

#[test]
fn pcp_over_ipv6_opens_pinholes_for_the_host_itself() {
    let mut t = new_table();
    let me: Ipv6Addr = "2001:db8:77::10".parse().expect("addr");
    let origin = Origin::Pcp6 {
        client: me,
        nonce: [7; 12],
    };
    let ask = |id: &str| PinholeAsk {
        spec: pinhole(id),
        origin,
        mechanism: Mechanism::Pcp,
        lease: 60,
    };
    let view = t
        .admit_pinhole(ask("udp:[2001:db8:77::10]:9000"))
        .expect("itself");
    assert_eq!(
        view.expires_in,
        Some(secs(120)),
        "clamped to pcp.min_lifetime"
    );
    assert!(matches!(
        t.admit_pinhole(ask("udp:[2001:db8:77::11]:9000")),
        Err(TableError::Refused(Refusal::NotSelf6 { .. }))
    ));
    let other_nonce = Origin::Pcp6 {
        client: me,
        nonce: [8; 12],
    };
    assert!(matches!(
        t.release_pinholes(other_nonce, me, Some(Proto::Udp), 9000),
        Err(TableError::PinholeNotOwner(..))
    ));
    assert_eq!(t.release_pinholes(origin, me, None, 0).expect("all"), 1);
    assert!(memory(&t).pinholes.is_empty());
}
