//! The owner's surface end to end: the real `portfwd` binary in the netns lab, its REST API,
//! its CLI, `/metrics` checked by Prometheus's own `promtool`, the event log, the WAN link
//! going down and up, a webhook, and state that outlives `kill -9`. Needs root.

use std::{
    fs,
    io::{BufRead as _, BufReader, Read as _},
    net::{SocketAddr, SocketAddrV4, TcpListener},
    path::Path,
    process::{Command, Stdio},
    sync::mpsc,
    thread,
    time::{Duration, Instant},
};

use portfwd_tests::{
    Daemon, EXTERNAL, LAN_HOST, Lab, Netns, WAIT, cli, cli_ok, external, http_get, http_request,
    serve_http, temp_dir,
};
use serde_json::Value;

/// The API address inside the router namespace (each namespace has its own loopback).
const API: &str = "127.0.0.1:9780";

fn api_addr() -> SocketAddr {
    API.parse().expect("addr")
}

fn start(lab: &Lab, extra: &[&str]) -> Daemon {
    let daemon = Daemon::in_lab(lab, "skb", extra);
    assert!(
        daemon.ready_line.contains(&format!("API on {API}")),
        "{}",
        daemon.ready_line
    );
    daemon
}

fn token(state_dir: &Path) -> String {
    let path = state_dir.join("api-token");
    let meta = fs::metadata(&path).expect("token file");
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&meta.permissions()) & 0o777,
        0o600,
        "the token is the owner's only"
    );
    fs::read_to_string(path).expect("token").trim().to_owned()
}

/// An API call with the token: status and JSON.
fn api(ns: &Netns, token: &str, method: &str, path: &str, body: &str) -> (u16, Value) {
    let auth = format!("Bearer {token}");
    let (status, text) = http_request(
        ns,
        api_addr(),
        method,
        path,
        &[
            ("Authorization", &auth),
            ("Content-Type", "application/json"),
        ],
        body,
    )
    .unwrap_or_else(|e| panic!("{method} {path}: {e}"));
    let value = serde_json::from_str(&text).unwrap_or(Value::String(text));
    (status, value)
}

fn scrape(ns: &Netns) -> String {
    let (status, text) =
        http_request(ns, api_addr(), "GET", "/metrics", &[], "").expect("scrape /metrics");
    assert_eq!(status, 200, "{text}");
    text
}

/// The value of the sample `name{labels}` (labels as printed, in order).
fn sample(text: &str, series: &str) -> Option<u64> {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.trim().parse().ok())
}

fn promtool_check(text: &str) {
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool (Debian package prometheus; cargo xtask test installs it)");
    std::io::Write::write_all(&mut child.stdin.take().expect("stdin"), text.as_bytes())
        .expect("feed promtool");
    let out = child.wait_with_output().expect("promtool");
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && said.trim().is_empty(),
        "promtool check metrics: {said}\n{text}"
    );
}

fn wait_until(what: &str, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !ok() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        thread::sleep(Duration::from_millis(100));
    }
}

fn event_kinds(ns: &Netns, token: &str) -> Vec<String> {
    let (status, page) = api(ns, token, "GET", "/api/v1/events?limit=1000", "");
    assert_eq!(status, 200, "{page}");
    page["events"]
        .as_array()
        .expect("events")
        .iter()
        .map(|e| e["kind"].as_str().expect("kind").to_owned())
        .collect()
}

#[test]
#[expect(clippy::too_many_lines, reason = "one owner's session, step by step")]
fn a_share_made_with_the_cli_carries_traffic_counted_in_metrics() {
    let lab = Lab::fresh("cli");
    serve_http(&lab.lan, 80, "hello from the LAN host");
    lab.learn_lan_neighbour();
    lab.learn_remote_neighbour();
    lab.block_kernel_forwarding();
    let daemon = start(&lab, &[]);
    let state = daemon.state_dir().expect("own state dir").to_owned();

    assert!(
        http_get(&lab.remote, external(8080), Duration::from_secs(1)).is_err(),
        "nothing shared yet"
    );
    let out = cli_ok(
        &lab,
        &state,
        &["share", "add", "tcp:8080=10.77.0.10:80", "--name", "web"],
    );
    assert!(
        out.contains("added tcp:8080 -> 10.77.0.10:80 \"web\""),
        "{out}"
    );
    let body = http_get(&lab.remote, external(8080), WAIT).expect("through the CLI's share");
    assert!(body.starts_with("hello from the LAN host"), "{body}");

    let table = cli_ok(&lab, &state, &["share", "list"]);
    assert!(
        table.lines().next().is_some_and(|h| h.starts_with("SHARE")),
        "{table}"
    );
    assert!(
        table.contains("tcp:8080") && table.contains("web") && table.contains("active"),
        "{table}"
    );
    let listed: Value =
        serde_json::from_str(&cli_ok(&lab, &state, &["share", "list", "--json"])).expect("json");
    let share = &listed["shares"][0];
    assert_eq!(share["source"], "static");
    assert_eq!(share["from_config"], false);
    assert_eq!(share["device"], LAN_HOST.to_string());
    assert!(
        share["counters"]["packets_in"].as_u64() >= Some(1),
        "{share}"
    );

    // /metrics without the token (the default), and the counters rise with traffic.
    let series = r#"portfwd_share_packets_total{share="tcp:8080",internal="10.77.0.10:80",source="static",direction="in"}"#;
    let bytes_out = r#"portfwd_share_bytes_total{share="tcp:8080",internal="10.77.0.10:80",source="static",direction="out"}"#;
    let before = scrape(&lab.router);
    promtool_check(&before);
    let (packets0, bytes0) = (
        sample(&before, series).expect("share series"),
        sample(&before, bytes_out).expect("bytes series"),
    );
    assert!(
        packets0 >= 3,
        "a TCP exchange is several packets: {packets0}"
    );
    for _ in 0..3 {
        http_get(&lab.remote, external(8080), WAIT).expect("more traffic");
    }
    let after = scrape(&lab.router);
    promtool_check(&after);
    assert!(sample(&after, series).expect("series") >= packets0 + 9);
    assert!(sample(&after, bytes_out).expect("series") > bytes0);
    assert!(
        sample(
            &after,
            r#"portfwd_xdp_packets_total{interface="wan",verdict="forwarded"}"#
        )
        .is_some_and(|n| n > 0),
        "{after}"
    );
    assert_eq!(sample(&after, "portfwd_wan_link_up"), Some(1));
    assert_eq!(
        sample(&after, r#"portfwd_events_total{kind="share_created"}"#),
        Some(1)
    );

    // Status, events and one-line errors.
    let status: Value =
        serde_json::from_str(&cli_ok(&lab, &state, &["status", "--json"])).expect("json");
    assert_eq!(status["wan"]["link"], "up");
    assert_eq!(status["wan"]["external_address"], EXTERNAL.to_string());
    assert_eq!(status["wan"]["xdp_mode"], "skb");
    assert!(status["wan"]["program_id"].as_u64().is_some(), "{status}");
    assert!(status["lan"]["program_id"].as_u64().is_some(), "{status}");
    let events = cli_ok(&lab, &state, &["events"]);
    assert!(
        events.contains("share_created") && events.contains("tcp:8080") && events.contains("api"),
        "{events}"
    );
    let (ok, out, err) = cli(&lab, &state, &["share", "add", "tcp:8080=10.77.0.11:80"]);
    assert!(!ok && out.is_empty(), "{out}");
    assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
    assert!(
        err.contains("409") && err.contains("tcp:8080"),
        "a conflict names the share: {err}"
    );
    let (ok, _, err) = cli(&lab, &state, &["share", "rm", "tcp:9"]);
    assert!(!ok && err.contains("404"), "{err}");
    let (ok, _, err) = cli(&lab, &state, &["share", "add", "tcp:80=10.99.0.1:80"]);
    assert!(
        !ok && err.contains("400") && err.contains("not a host"),
        "{err}"
    );

    let out = cli_ok(&lab, &state, &["share", "disable", "tcp:8080"]);
    assert!(out.contains("disabled"), "{out}");
    assert!(
        http_get(&lab.remote, external(8080), Duration::from_secs(1)).is_err(),
        "a disabled share forwards nothing"
    );
    cli_ok(&lab, &state, &["share", "enable", "tcp:8080"]);
    http_get(&lab.remote, external(8080), WAIT).expect("enabled again");
    let (status, log) = daemon.stop();
    assert!(status.success(), "{log}");
}

#[test]
fn the_api_needs_its_token_and_a_delete_stops_traffic() {
    let lab = Lab::fresh("api");
    serve_http(&lab.lan, 80, "hello from the LAN host");
    serve_http(&lab.lan, 7000, "hello from the LAN host");
    lab.learn_lan_neighbour();
    lab.learn_remote_neighbour();
    lab.block_kernel_forwarding();
    let daemon = start(&lab, &["--share", "tcp:7000=10.77.0.10:7000"]);
    let state = daemon.state_dir().expect("state dir").to_owned();
    let token = token(&state);

    for (method, path) in [
        ("GET", "/api/v1/shares"),
        ("GET", "/api/v1/status"),
        ("GET", "/api/v1/openapi.json"),
        ("DELETE", "/api/v1/shares/tcp:7000"),
    ] {
        let (status, _) =
            http_request(&lab.router, api_addr(), method, path, &[], "").expect("request");
        assert_eq!(status, 401, "{method} {path} without a token");
        let (status, _) = api(&lab.router, "not-the-token", method, path, "");
        assert_eq!(status, 401, "{method} {path} with a wrong token");
    }
    let (ok, _, err) = cli(&lab, &state, &["share", "list", "--token", "nope"]);
    assert!(!ok && err.contains("401"), "{err}");

    let (status, openapi) = api(&lab.router, &token, "GET", "/api/v1/openapi.json", "");
    assert_eq!(status, 200);
    assert!(openapi["paths"]["/api/v1/shares/{id}"]["delete"].is_object());

    // Bad input names the field; a collision names the share.
    let (status, err) = api(
        &lab.router,
        &token,
        "POST",
        "/api/v1/shares",
        r#"{"proto":"tcp","external_port":8080,"internal":"10.77.0.10"}"#,
    );
    assert_eq!(
        (status, err["field"].as_str()),
        (400, Some("internal")),
        "{err}"
    );
    let (status, err) = api(&lab.router, &token, "POST", "/api/v1/shares", "{not json");
    assert_eq!(status, 400, "{err}");
    let (status, err) = api(
        &lab.router,
        &token,
        "POST",
        "/api/v1/shares",
        r#"{"proto":"tcp","external_port":7000,"internal":"10.77.0.10:8000"}"#,
    );
    assert_eq!(
        (status, err["conflict"].as_str()),
        (409, Some("tcp:7000")),
        "{err}"
    );
    let (status, err) = api(&lab.router, &token, "DELETE", "/api/v1/shares/tcp:7000", "");
    assert_eq!(
        status, 409,
        "a share of the command line is not the API's: {err}"
    );

    let (status, made) = api(
        &lab.router,
        &token,
        "POST",
        "/api/v1/shares",
        r#"{"proto":"tcp","external_port":8080,"internal":"10.77.0.10:80","name":"web"}"#,
    );
    assert_eq!(status, 201, "{made}");
    assert_eq!(made["id"], "tcp:8080");
    http_get(&lab.remote, external(8080), WAIT).expect("through the API's share");

    let (status, _) = api(&lab.router, &token, "DELETE", "/api/v1/shares/tcp:8080", "");
    assert_eq!(status, 200);
    assert!(
        http_get(&lab.remote, external(8080), Duration::from_secs(1)).is_err(),
        "deleted through the API: nothing forwarded"
    );
    http_get(&lab.remote, external(7000), WAIT).expect("the other share still forwards");
    let (status, _) = api(&lab.router, &token, "DELETE", "/api/v1/shares/tcp:8080", "");
    assert_eq!(status, 404);
    let (status, _) = api(&lab.router, &token, "GET", "/api/v1/nothing", "");
    assert_eq!(status, 404);
    let (status, _) = api(&lab.router, &token, "PUT", "/api/v1/shares", "");
    assert_eq!(status, 405);
    let kinds = event_kinds(&lab.router, &token);
    assert_eq!(
        kinds,
        ["share_created", "share_deleted"],
        "refusals are not events"
    );
    let (status, log) = daemon.stop();
    assert!(status.success(), "{log}");
}

#[test]
fn a_wan_link_down_takes_shares_out_and_up_brings_them_back() {
    let lab = Lab::fresh("link");
    serve_http(&lab.lan, 80, "hello from the LAN host");
    let dir = temp_dir("link");
    let config = dir.join("portfwd.toml");
    fs::write(&config, "[wan_link]\nflap_window = 2\n").expect("config");
    let daemon = start(
        &lab,
        &[
            "--config",
            config.to_str().expect("path"),
            "--share",
            "tcp:8080=10.77.0.10:80",
        ],
    );
    let state = daemon.state_dir().expect("state dir").to_owned();
    let token = token(&state);
    http_get(&lab.remote, external(8080), WAIT).expect("forwarded");
    let active = |lab: &Lab| {
        let (_, list) = api(&lab.router, &token, "GET", "/api/v1/shares", "");
        list["shares"][0]["active"].as_bool().expect("active")
    };

    // A flap shorter than the window: one event.
    lab.router.ip(&["link", "set", "wan", "down"]);
    wait_until("the share to leave the data plane", || !active(&lab));
    let (_, status) = api(&lab.router, &token, "GET", "/api/v1/status", "");
    assert_eq!(status["wan"]["link"], "down");
    assert!(status["wan"]["down_since"].is_string(), "{status}");
    lab.router.ip(&["link", "set", "wan", "up"]);
    wait_until("the share to come back", || active(&lab));
    assert_eq!(event_kinds(&lab.router, &token), ["wan_flap"]);

    // A longer outage: down, then up, in that order.
    lab.router.ip(&["link", "set", "wan", "down"]);
    wait_until("the outage to be logged", || {
        event_kinds(&lab.router, &token).len() == 2
    });
    assert!(!active(&lab));
    let listed: Value =
        serde_json::from_str(&cli_ok(&lab, &state, &["share", "list", "--json"])).expect("json");
    assert_eq!(
        listed["shares"][0]["enabled"], true,
        "the owner's switch is untouched"
    );
    lab.router.ip(&["link", "set", "wan", "up"]);
    wait_until("the share to come back", || active(&lab));
    assert_eq!(
        event_kinds(&lab.router, &token),
        ["wan_flap", "wan_down", "wan_up"]
    );
    wait_until("traffic to flow again", || {
        http_get(&lab.remote, external(8080), Duration::from_secs(1)).is_ok()
    });
    let metrics = scrape(&lab.router);
    assert_eq!(sample(&metrics, "portfwd_wan_link_changes_total"), Some(4));
    let log = daemon.stop().1;
    assert!(log.contains("WAN link down"), "{log}");
    fs::remove_dir_all(dir).expect("cleanup");
}

#[test]
fn an_acknowledged_change_survives_kill_9() {
    let lab = Lab::fresh("kill");
    serve_http(&lab.lan, 80, "hello from the LAN host");
    lab.learn_lan_neighbour();
    lab.learn_remote_neighbour();
    lab.block_kernel_forwarding();
    let state = temp_dir("kill");
    let state_arg = state.to_str().expect("path");
    let daemon = start(&lab, &["--state-dir", state_arg]);
    let token = token(&state);
    let (status, made) = api(
        &lab.router,
        &token,
        "POST",
        "/api/v1/shares",
        r#"{"proto":"tcp","external_port":8080,"internal":"10.77.0.10:80"}"#,
    );
    assert_eq!(status, 201, "{made}");
    let (status, settings) = api(
        &lab.router,
        &token,
        "PATCH",
        "/api/v1/settings",
        r#"{"secure_mode":false,"quota_total":7}"#,
    );
    assert_eq!(status, 200, "{settings}");
    // No grace: SIGKILL right after the 2xx.
    daemon.kill();

    let daemon = start(&lab, &["--state-dir", state_arg]);
    assert_eq!(token, self::token(&state), "the token is kept");
    let (_, list) = api(&lab.router, &token, "GET", "/api/v1/shares", "");
    assert_eq!(list["shares"][0]["id"], "tcp:8080", "{list}");
    let (_, settings) = api(&lab.router, &token, "GET", "/api/v1/settings", "");
    assert_eq!(settings["secure_mode"], false, "{settings}");
    assert_eq!(settings["quota_total"], 7, "{settings}");
    http_get(&lab.remote, external(8080), WAIT).expect("forwarded after the restart");
    assert_eq!(
        event_kinds(&lab.router, &token),
        ["share_created", "settings_changed"],
        "the event log outlives the process too"
    );
    drop(daemon);
    fs::remove_dir_all(state).expect("cleanup");
}

#[test]
fn the_webhook_hears_of_a_share_switched_on_and_a_dead_one_blocks_nothing() {
    let lab = Lab::fresh("hook");
    // The receiver listens in the router namespace, as a relay on the box would.
    let listener = lab
        .router
        .run(|| TcpListener::bind("127.0.0.1:0").expect("bind"));
    let port = listener.local_addr().expect("addr").port();
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { break };
            let mut reader = BufReader::new(stream.try_clone().expect("clone"));
            let mut head = String::new();
            let mut length = 0;
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    length = v.trim().parse().unwrap_or(0);
                }
                head.push_str(&line);
            }
            let mut body = vec![0; length];
            let _ = reader.read_exact(&mut body);
            let _ = std::io::Write::write_all(
                &mut stream,
                b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n",
            );
            let _ = tx.send((head, String::from_utf8_lossy(&body).into_owned()));
        }
    });
    let dir = temp_dir("hook");
    let config = dir.join("portfwd.toml");
    fs::write(
        &config,
        format!("[api]\nwebhook = \"http://127.0.0.1:{port}/portfwd\"\n"),
    )
    .expect("config");
    let daemon = start(&lab, &["--config", config.to_str().expect("path")]);
    let state = daemon.state_dir().expect("state dir").to_owned();
    cli_ok(&lab, &state, &["share", "add", "udp:3074=10.77.0.10:3074"]);
    let (head, body) = rx
        .recv_timeout(Duration::from_secs(5))
        .expect("webhook call");
    assert!(head.starts_with("POST /portfwd HTTP/1.1"), "{head}");
    let event: Value = serde_json::from_str(&body).expect("JSON event");
    assert_eq!(event["kind"], "share_created");
    assert_eq!(event["share"], "udp:3074");
    cli_ok(&lab, &state, &["share", "disable", "udp:3074"]);
    cli_ok(&lab, &state, &["share", "enable", "udp:3074"]);
    let (_, body) = rx
        .recv_timeout(Duration::from_secs(5))
        .expect("webhook call");
    let event: Value = serde_json::from_str(&body).expect("JSON event");
    assert_eq!(
        event["kind"], "share_enabled",
        "switching off is not a notice"
    );
    drop(daemon);

    // A webhook that takes the connection and never answers: each notice waits out its
    // limit (5 s) on the webhook's task, and changes go through at once all the same.
    let silent = lab
        .router
        .run(|| TcpListener::bind("127.0.0.1:0").expect("bind"));
    let silent_port = silent.local_addr().expect("addr").port();
    fs::write(
        &config,
        format!("[api]\nwebhook = \"http://127.0.0.1:{silent_port}/\"\n"),
    )
    .expect("config");
    let daemon = start(&lab, &["--config", config.to_str().expect("path")]);
    let state = daemon.state_dir().expect("state dir").to_owned();
    let begun = Instant::now();
    for port in 4000..4005 {
        cli_ok(
            &lab,
            &state,
            &["share", "add", &format!("tcp:{port}=10.77.0.10:{port}")],
        );
    }
    // Blocking would take 5 x 5 s; the bound is loose on purpose (it is not a speed test).
    assert!(
        begun.elapsed() < Duration::from_secs(15),
        "changes waited for the webhook: {:?}",
        begun.elapsed()
    );
    drop(silent);
    drop(daemon);
    fs::remove_dir_all(dir).expect("cleanup");
}

#[test]
fn an_api_beyond_loopback_answers_the_lan_and_never_the_wan() {
    let lab = Lab::fresh("apiw");
    let daemon = Daemon::in_lab(&lab, "skb", &["--api", "0.0.0.0:9780"]);
    let on = |addr: std::net::Ipv4Addr| SocketAddr::V4(SocketAddrV4::new(addr, 9780));
    // From the LAN host: answered (and still behind the token).
    let (status, _) = http_request(
        &lab.lan,
        on(portfwd_tests::ROUTER_LAN),
        "GET",
        "/api/v1/status",
        &[],
        "",
    )
    .expect("the LAN reaches the API");
    assert_eq!(status, 401);
    // From the remote host, to the external address: nothing.
    assert!(
        http_request(&lab.remote, on(EXTERNAL), "GET", "/metrics", &[], "").is_err(),
        "the WAN got an answer"
    );
    let (status, log) = daemon.stop();
    assert!(status.success(), "{log}");
    assert!(
        log.contains("on the LAN interface lan"),
        "the owner is warned: {log}"
    );
}
