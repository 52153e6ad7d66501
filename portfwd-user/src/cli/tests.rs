use super::*;

#[test]
fn tables_align_and_name_the_source() {
    let list = json!({"shares": [
        {"id": "tcp:8080", "internal": "10.0.0.10:80", "name": "web", "enabled": true,
         "active": true, "source": "static", "from_config": false, "client": null,
         "lease_remaining": null,
         "counters": {"packets_in": 3, "bytes_in": 180, "packets_out": 2, "bytes_out": 120}},
        {"id": "udp:3074", "internal": "10.0.0.11:3074", "name": null, "enabled": false,
         "active": false, "source": "upnp", "from_config": false, "client": "10.0.0.11",
         "lease_remaining": 3599,
         "counters": {"packets_in": 0, "bytes_in": 0, "packets_out": 0, "bytes_out": 0}}
    ]});
    let text = shares_table(&list);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 3, "{text}");
    assert!(lines[0].starts_with("SHARE     TARGET"), "{text}");
    assert!(
        lines[1].contains("static") && lines[1].contains("3p/180B"),
        "{text}"
    );
    assert!(
        lines[2].contains("upnp 10.0.0.11")
            && lines[2].contains("disabled")
            && lines[2].contains("3599s"),
        "{text}"
    );
    assert_eq!(shares_table(&json!({"shares": []})), "no shares\n");
}

#[test]
fn status_counts_shares_by_source_in_words() {
    let status = json!({
        "version": "0.1.0", "uptime_secs": 5,
        "wan": {"interface": "eth0", "link": "up", "external_address": "198.51.100.1",
                "xdp_mode": "native", "program_id": 7},
        "lan": {"interface": "eth1", "address": "10.0.0.1", "xdp_mode": "native",
                "program_id": 8},
        "shares": {"total": 3, "active": 2, "by_source": {"static": 2, "upnp": 1}},
        "upnp": {"enabled": true, "url": "http://10.0.0.1:5000/rootDesc.xml"}
    });
    let text = status_text(&status);
    assert!(
        text.contains("shares 3 (2 active): 2 static, 1 upnp\n"),
        "{text}"
    );
    assert!(!text.contains('{'), "no JSON for people: {text}");
}
