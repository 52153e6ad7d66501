//! Port ranges through the table: one share, one element per port in the kernel, checked per
//! port against what clients ask for.

use std::collections::BTreeSet;

use portfwd_common::ShareKey;

use super::*;

const RANGE: &str = "tcp:27015-27030=10.0.0.20:27015";

fn ranged() -> Table {
    let mut t = new_table();
    t.set_external(Some(Ipv4Addr::new(198, 51, 100, 1)))
        .expect("external");
    t.create(spec(RANGE)).expect("range");
    t
}

fn port_of(key: ShareKey) -> u16 {
    u16::from_be(key.ext_port)
}

#[test]
fn a_range_is_one_share_with_an_element_per_port_and_goes_whole() {
    let mut t = ranged();
    assert_eq!(entries(&t).len(), 1);
    assert_eq!(entries(&t)[0].spec.id.to_string(), "tcp:27015-27030");
    let maps = memory(&t);
    let ports: Vec<u16> = maps.shares.keys().map(|k| port_of(*k)).collect();
    assert_eq!(ports, (27015..=27030).collect::<Vec<_>>());
    let slots: BTreeSet<u32> = maps.shares.values().map(|s| s.slot).collect();
    assert_eq!(slots.len(), 1, "one counter slot for the whole range");
    assert_eq!(maps.reverse.len(), 16);

    let id = "tcp:27015-27030".parse().expect("id");
    t.remove(id, By::Operator).expect("removed");
    assert!(memory(&t).shares.is_empty(), "every port's element gone");
    assert!(memory(&t).reverse.is_empty());
}

#[test]
fn moving_a_range_rewrites_only_what_moves_and_checks_the_new_ports() {
    let mut t = ranged();
    let id: ShareId = "tcp:27015-27030".parse().expect("id");
    let patch = SharePatch {
        external_port: Some((27025, 27040)),
        ..SharePatch::default()
    };
    let entry = t.edit(id, patch).expect("moved");
    assert_eq!(entry.spec.id.to_string(), "tcp:27025-27040");
    let maps = memory(&t);
    let ports: Vec<u16> = maps.shares.keys().map(|k| port_of(*k)).collect();
    assert_eq!(ports, (27025..=27040).collect::<Vec<_>>());
    let target = maps.shares.values().next().expect("first");
    assert_eq!(
        u16::from_be(target.int_port),
        27015,
        "the internal ports stay"
    );

    // A range may not grow over another share, nor run its internal ports past 65535.
    t.create(spec("tcp:27050=10.0.0.21:80")).expect("single");
    let id: ShareId = "tcp:27025-27040".parse().expect("id");
    let over = SharePatch {
        external_port: Some((27025, 27060)),
        ..SharePatch::default()
    };
    assert!(matches!(
        t.edit(id, over),
        Err(TableError::Share {
            source: crate::share::ShareError::Overlap { .. },
            ..
        })
    ));
}

#[test]
fn clients_cannot_map_into_a_range_and_any_port_skips_it() {
    let mut t = ranged();
    // 10.0.0.20 itself asks for a port inside: the owner's range holds it (729).
    let inside = t.admit(upnp(
        "tcp:27020=10.0.0.20:5000",
        Ipv4Addr::new(10, 0, 0, 20),
        60,
    ));
    assert!(
        matches!(
            inside,
            Err(TableError::Conflict { existing, origin: Origin::Api, .. })
                if existing.to_string() == "tcp:27015-27030"
        ),
        "{inside:?}"
    );
    // AddAnyPortMapping near a port inside the range gets one outside it.
    let near = Ask {
        hunt: Hunt::Near,
        ..upnp("tcp:27022=10.0.0.20:5000", Ipv4Addr::new(10, 0, 0, 20), 60)
    };
    let granted = t.admit(near).expect("a free port");
    assert!(
        !(27015..=27030).contains(&granted.port),
        "{} is inside the range",
        granted.port
    );
    // Just beside the range is free.
    t.admit(upnp(
        "tcp:27031=10.0.0.20:5001",
        Ipv4Addr::new(10, 0, 0, 20),
        60,
    ))
    .expect("beside the range");
}
