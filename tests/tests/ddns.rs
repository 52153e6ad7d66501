//! Dynamic DNS end to end: a real BIND (`named`) in the remote host's namespace serves
//! `example.test` and takes TSIG-signed updates for `home.example.test`; `dig` sees the A
//! record follow the router's external address, and a wrong key is refused, reported and
//! retried. Needs root.

use std::{
    fs,
    path::{Path, PathBuf},
    process::{Child, Stdio},
    thread,
    time::{Duration, Instant},
};

use portfwd_tests::{Daemon, Lab, WAIT, cli_ok, temp_dir};
use serde_json::Value;

const SECRET: &str = "c2l4dGVlbiBieXRlIGtleSBmb3IgdGVzdHM=";
const WRONG: &str = "YW5vdGhlciBrZXksIG5vdCB0aGUgc2VydmVyJ3M=";

/// `named` in the foreground in the remote namespace, killed when dropped.
struct Named(Child);

impl Drop for Named {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn named(lab: &Lab, dir: &Path) -> Named {
    fs::write(
        dir.join("named.conf"),
        format!(
            "key \"portfwd\" {{ algorithm hmac-sha256; secret \"{SECRET}\"; }};\n\
             options {{ directory \"{dir}\"; listen-on port 53 {{ 198.51.100.2; }};\n\
               listen-on-v6 {{ none; }}; pid-file none; recursion no; dnssec-validation no;\n\
               session-keyfile \"{dir}/session.key\"; managed-keys-directory \"{dir}\"; }};\n\
             zone \"example.test\" {{ type primary; file \"example.test.zone\";\n\
               update-policy {{ grant portfwd name home.example.test A; }}; }};\n",
            dir = dir.display()
        ),
    )
    .expect("named.conf");
    fs::write(
        dir.join("example.test.zone"),
        "$TTL 60\n@ SOA ns.example.test. admin.example.test. 1 3600 600 86400 60\n\
         @ NS ns.example.test.\nns A 198.51.100.2\n",
    )
    .expect("zone");
    let child = lab
        .remote
        .command("named")
        .args(["-g", "-c"])
        .arg(dir.join("named.conf"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("named");
    let named = Named(child);
    let deadline = Instant::now() + WAIT;
    while dig(lab, "ns.example.test") != "198.51.100.2" {
        assert!(Instant::now() < deadline, "named did not come up");
        thread::sleep(Duration::from_millis(100));
    }
    named
}

/// The A record of `name` as the server answers it now (empty: none).
fn dig(lab: &Lab, name: &str) -> String {
    let out = lab
        .remote
        .command("dig")
        .args(["@198.51.100.2", "+short", "+time=1", "+tries=1", name, "A"])
        .output()
        .expect("dig");
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

fn wait_for(lab: &Lab, address: &str) {
    let deadline = Instant::now() + WAIT;
    loop {
        let now = dig(lab, "home.example.test");
        if now == address {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "home.example.test is `{now}`, not {address}"
        );
        thread::sleep(Duration::from_millis(100));
    }
}

fn config(dir: &Path, secret: &str) -> PathBuf {
    let path = dir.join("portfwd.toml");
    fs::write(
        &path,
        format!(
            "[ddns]\nprovider = \"rfc2136\"\nserver = \"198.51.100.2\"\nzone = \"example.test\"\n\
             name = \"home.example.test\"\nkey_name = \"portfwd\"\nkey_secret = \"{secret}\"\nttl = 30\n"
        ),
    )
    .expect("config");
    path
}

fn status(lab: &Lab, state: &Path) -> Value {
    serde_json::from_str(&cli_ok(lab, state, &["status", "--json"])).expect("json")
}

#[test]
fn the_name_follows_the_external_address() {
    let lab = Lab::fresh("dd");
    lab.learn_remote_neighbour();
    let dir = temp_dir("ddns-named");
    let _named = named(&lab, &dir);
    assert_eq!(dig(&lab, "home.example.test"), "", "no record yet");
    let config = config(&dir, SECRET);
    let daemon = Daemon::in_lab(
        &lab,
        "skb",
        &[
            "--config",
            config.to_str().expect("path"),
            "--share",
            "tcp:8080=10.77.0.10:80",
        ],
    );
    let state = daemon.state_dir().expect("state dir").to_owned();
    wait_for(&lab, "198.51.100.1");
    // A share is called by the name.
    let list: Value =
        serde_json::from_str(&cli_ok(&lab, &state, &["share", "list", "--json"])).expect("json");
    assert_eq!(
        list["shares"][0]["from_internet"], "home.example.test:8080",
        "{list}"
    );

    // The WAN address changes, as a new DHCP lease or PPPoE session gives one.
    lab.router
        .ip(&["addr", "del", "198.51.100.1/24", "dev", "wan"]);
    lab.router
        .ip(&["addr", "add", "198.51.100.3/24", "dev", "wan"]);
    wait_for(&lab, "198.51.100.3");
    let ddns = &status(&lab, &state)["ddns"];
    assert_eq!(ddns["name"], "home.example.test", "{ddns}");
    assert_eq!(ddns["address"], "198.51.100.3", "{ddns}");
    assert_eq!(ddns["result"], "ok", "{ddns}");
    let events = cli_ok(&lab, &state, &["events"]);
    assert!(events.contains("ddns_updated"), "{events}");
    assert!(
        events.contains("home.example.test -> 198.51.100.3"),
        "{events}"
    );
    // The secret is nowhere the owner looks.
    let everything = format!("{events}{}", cli_ok(&lab, &state, &["status", "--json"]));
    assert!(!everything.contains(SECRET), "{everything}");
    assert!(!daemon.stderr().contains(SECRET));
}

#[test]
fn a_wrong_key_is_refused_reported_and_retried() {
    let lab = Lab::fresh("dk");
    lab.learn_remote_neighbour();
    let dir = temp_dir("ddns-wrong");
    let _named = named(&lab, &dir);
    let config = config(&dir, WRONG);
    let daemon = Daemon::in_lab(&lab, "skb", &["--config", config.to_str().expect("path")]);
    let state = daemon.state_dir().expect("state dir").to_owned();
    let deadline = Instant::now() + WAIT;
    let first = loop {
        let ddns = status(&lab, &state)["ddns"].clone();
        if ddns["at"].is_u64() {
            break ddns;
        }
        assert!(Instant::now() < deadline, "no attempt: {ddns}");
        thread::sleep(Duration::from_millis(100));
    };
    let result = first["result"].as_str().expect("a result");
    assert!(
        result.contains("BADSIG") || result.contains("BADKEY"),
        "{first}"
    );
    let events = cli_ok(&lab, &state, &["events"]);
    assert!(events.contains("ddns_failed"), "{events}");
    assert_eq!(dig(&lab, "home.example.test"), "", "nothing changed");
    // Retried after the first delay (5 s).
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let ddns = status(&lab, &state)["ddns"].clone();
        if ddns["at"].as_u64() > first["at"].as_u64() {
            break;
        }
        assert!(Instant::now() < deadline, "no retry: {ddns}");
        thread::sleep(Duration::from_millis(250));
    }
    let failures = cli_ok(&lab, &state, &["events"])
        .matches("ddns_failed")
        .count();
    assert_eq!(failures, 1, "one event for a run of failures");
}
