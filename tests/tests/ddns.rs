//! Dynamic DNS end to end. RFC 2136: a real BIND (`named`) in the remote host's namespace
//! serves `example.test` and takes TSIG-signed updates for `home.example.test`; `dig` sees the
//! A record follow the router's external address, and a wrong key is refused, reported and
//! retried. dyndns2: a small HTTP endpoint on the remote host (the test's own) records each
//! update and answers as a provider does; it sees the right request follow the external
//! address, and a `badauth` is reported and retried after the backoff's first delay. Needs
//! root.

use std::{
    fs,
    io::Write as _,
    net::TcpListener,
    path::{Path, PathBuf},
    process::{Child, Stdio},
    sync::mpsc,
    thread,
    time::{Duration, Instant},
};

use portfwd_tests::{Daemon, Lab, WAIT, cli_ok, read_request, temp_dir};
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

/// The status's `ddns` part once `done` holds for it; fails after `within`.
fn ddns_status_once(
    lab: &Lab,
    state: &Path,
    within: Duration,
    done: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = Instant::now() + within;
    loop {
        let ddns = status(lab, state)["ddns"].clone();
        if done(&ddns) {
            return ddns;
        }
        assert!(Instant::now() < deadline, "status after {within:?}: {ddns}");
        thread::sleep(Duration::from_millis(100));
    }
}

/// The daemon on the lab's router with `config` and one share: it, and its state directory.
fn start(lab: &Lab, config: &Path) -> (Daemon, PathBuf) {
    let daemon = Daemon::in_lab(
        lab,
        "skb",
        &[
            "--config",
            config.to_str().expect("path"),
            "--share",
            "tcp:8080=10.77.0.10:80",
        ],
    );
    let state = daemon.state_dir().expect("state dir").to_owned();
    (daemon, state)
}

/// The WAN address changes from .1 to .3, as a new DHCP lease or `PPPoE` session gives one.
fn new_external_address(lab: &Lab) {
    lab.router
        .ip(&["addr", "del", "198.51.100.1/24", "dev", "wan"]);
    lab.router
        .ip(&["addr", "add", "198.51.100.3/24", "dev", "wan"]);
}

#[test]
fn the_name_follows_the_external_address() {
    let lab = Lab::fresh("dd");
    lab.learn_remote_neighbour();
    let dir = temp_dir("ddns-named");
    let _named = named(&lab, &dir);
    assert_eq!(dig(&lab, "home.example.test"), "", "no record yet");
    let config = config(&dir, SECRET);
    let (daemon, state) = start(&lab, &config);
    wait_for(&lab, "198.51.100.1");
    // A share is called by the name.
    let list: Value =
        serde_json::from_str(&cli_ok(&lab, &state, &["share", "list", "--json"])).expect("json");
    assert_eq!(
        list["shares"][0]["from_internet"], "home.example.test:8080",
        "{list}"
    );

    new_external_address(&lab);
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
    let (_daemon, state) = start(&lab, &config);
    let first = ddns_status_once(&lab, &state, WAIT, |ddns| ddns["at"].is_u64());
    let result = first["result"].as_str().expect("a result");
    assert!(
        result.contains("BADSIG") || result.contains("BADKEY"),
        "{first}"
    );
    let events = cli_ok(&lab, &state, &["events"]);
    assert!(events.contains("ddns_failed"), "{events}");
    assert_eq!(dig(&lab, "home.example.test"), "", "nothing changed");
    // Retried after the first delay (5 s).
    ddns_status_once(&lab, &state, Duration::from_secs(10), |ddns| {
        ddns["at"].as_u64() > first["at"].as_u64()
    });
    let failures = cli_ok(&lab, &state, &["events"])
        .matches("ddns_failed")
        .count();
    assert_eq!(failures, 1, "one event for a run of failures");
}

/// The dyndns2 account the tests use, and its `Authorization` header: base64 of
/// `portfwd-home:s3cret-pass`.
const USER: &str = "portfwd-home";
const PASSWORD: &str = "s3cret-pass";
const BASIC: &str = "Basic cG9ydGZ3ZC1ob21lOnMzY3JldC1wYXNz";
/// Where the endpoint listens: the remote host.
const DYNDNS2: &str = "198.51.100.2:8245";

/// One update the endpoint received: when, the request line's target, and the headers (names
/// in lower case).
struct Received {
    at: Instant,
    target: String,
    headers: Vec<(String, String)>,
}

impl Received {
    fn header(&self, name: &str) -> &str {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map_or("", |(_, v)| v.as_str())
    }

    /// The value of `key` in the query.
    fn query(&self, key: &str) -> &str {
        let query = self.target.split_once('?').map_or("", |(_, q)| q);
        query
            .split('&')
            .find_map(|pair| pair.strip_prefix(key)?.strip_prefix('='))
            .unwrap_or("")
    }
}

/// A dyndns2 endpoint on the remote host: answers every request with `answer(myip)` and
/// hands each request over. Returns once it listens; runs until the process ends.
fn dyndns2_endpoint(lab: &Lab, answer: fn(&str) -> String) -> mpsc::Receiver<Received> {
    let (ready_tx, ready) = mpsc::channel();
    let (tx, rx) = mpsc::channel();
    lab.remote.spawn(move || {
        let listener = TcpListener::bind(DYNDNS2).expect("bind the dyndns2 endpoint");
        ready_tx.send(()).expect("ready");
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
            let head = String::from_utf8_lossy(&read_request(&mut stream)).into_owned();
            let mut lines = head.lines();
            let target = lines
                .next()
                .and_then(|l| l.split_whitespace().nth(1))
                .unwrap_or("")
                .to_owned();
            let headers = lines
                .filter_map(|l| l.split_once(':'))
                .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
                .collect();
            let received = Received {
                at: Instant::now(),
                target,
                headers,
            };
            let body = answer(received.query("myip"));
            let _ = write!(
                stream,
                "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            if tx.send(received).is_err() {
                break;
            }
        }
    });
    ready
        .recv_timeout(Duration::from_secs(5))
        .expect("dyndns2 endpoint up");
    rx
}

fn dyndns2_config(dir: &Path) -> PathBuf {
    let password = dir.join("ddns-password");
    fs::write(&password, format!("{PASSWORD}\n")).expect("password file");
    let path = dir.join("portfwd.toml");
    fs::write(
        &path,
        format!(
            "[ddns]\nprovider = \"dyndns2\"\nserver = \"http://{DYNDNS2}\"\nname = \"home.dyndns.test\"\n\
             username = \"{USER}\"\npassword_file = \"{}\"\n",
            password.display()
        ),
    )
    .expect("config");
    path
}

fn next_update(updates: &mpsc::Receiver<Received>, within: Duration) -> Received {
    updates.recv_timeout(within).expect("an update request")
}

#[test]
fn dyndns2_sends_the_external_address_with_the_account() {
    let lab = Lab::fresh("d2");
    lab.learn_remote_neighbour();
    let updates = dyndns2_endpoint(&lab, |myip| format!("good {myip}"));
    let dir = temp_dir("ddns-dyndns2");
    let config = dyndns2_config(&dir);
    let (daemon, state) = start(&lab, &config);
    let first = next_update(&updates, Duration::from_secs(10));
    assert_eq!(
        first.target.split_once('?').map(|(path, _)| path),
        Some("/nic/update"),
        "{}",
        first.target
    );
    assert_eq!(first.query("hostname"), "home.dyndns.test");
    assert_eq!(first.query("myip"), "198.51.100.1");
    assert_eq!(first.header("authorization"), BASIC);
    assert!(
        first.header("user-agent").starts_with("portfwd/"),
        "{:?}",
        first.headers
    );
    assert_eq!(first.header("host"), DYNDNS2);

    new_external_address(&lab);
    let second = next_update(&updates, Duration::from_secs(10));
    assert_eq!(second.query("myip"), "198.51.100.3");
    assert_eq!(second.header("authorization"), BASIC);
    let ddns = ddns_status_once(&lab, &state, WAIT, |ddns| ddns["address"] == "198.51.100.3");
    assert_eq!(ddns["name"], "home.dyndns.test", "{ddns}");
    assert_eq!(
        ddns["server"],
        format!("http://{DYNDNS2}/nic/update"),
        "{ddns}"
    );
    assert_eq!(ddns["result"], "ok (good)", "{ddns}");
    let events = cli_ok(&lab, &state, &["events", "--json"]);
    assert!(
        events.contains("home.dyndns.test -> 198.51.100.3"),
        "{events}"
    );
    // The password is nowhere the owner looks, nor in the log.
    let everything = format!(
        "{events}{}{}",
        cli_ok(&lab, &state, &["status", "--json"]),
        cli_ok(&lab, &state, &["status"])
    );
    let log = daemon.stderr();
    for shown in [&everything, &log] {
        assert!(!shown.contains(PASSWORD), "{shown}");
        assert!(!shown.contains(&BASIC[6..]), "{shown}");
    }
}

#[test]
fn dyndns2_badauth_is_reported_and_retried_after_the_backoff() {
    let lab = Lab::fresh("da");
    lab.learn_remote_neighbour();
    let updates = dyndns2_endpoint(&lab, |_| "badauth".to_owned());
    let dir = temp_dir("ddns-badauth");
    let config = dyndns2_config(&dir);
    let (daemon, state) = start(&lab, &config);
    let first = next_update(&updates, Duration::from_secs(10));
    assert_eq!(first.header("authorization"), BASIC);
    // The first delay is 5 s: nothing before 4 s, a retry by 10 s.
    let second = next_update(&updates, Duration::from_secs(10));
    let gap = second.at - first.at;
    assert!(gap >= Duration::from_secs(4), "retried after {gap:?}");
    let result = status(&lab, &state)["ddns"]["result"].clone();
    assert!(
        result.as_str().is_some_and(|r| r.contains("badauth")),
        "{result}"
    );
    let events = cli_ok(&lab, &state, &["events", "--json"]);
    let failed: Vec<Value> = events
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter(|event| event["kind"] == "ddns_failed")
        .collect();
    assert_eq!(
        failed.len(),
        1,
        "one event for a run of one failure: {events}"
    );
    let detail = failed[0]["detail"].as_str().expect("detail");
    assert!(
        detail.contains("badauth") && detail.contains("the username or password is wrong"),
        "{detail}"
    );
    let log = daemon.stderr();
    assert!(log.contains("badauth"), "{log}");
    for shown in [&events, &log] {
        assert!(!shown.contains(PASSWORD), "{shown}");
        assert!(!shown.contains(&BASIC[6..]), "{shown}");
    }
}
