//! The owner's page, end to end: Debian's Chromium, headless, driven through `chromedriver`
//! (`WebDriver`, with the `fantoccini` client) from the LAN host's namespace against the real
//! daemon, with JavaScript on and off; and its security checked with plain HTTP requests
//! (CSRF, Origin, the login brake, the WAN). Needs root (`cargo xtask test` installs
//! chromium and chromium-driver and runs it as such).
//!
//! With `PORTFWD_SCREENSHOTS=DIR` the browser test saves the screenshots the README shows.

use std::{
    fs,
    io::{Read as _, Write as _},
    net::{SocketAddr, TcpStream},
    path::{Path, PathBuf},
    process::{Child, Stdio},
    thread,
    time::{Duration, Instant},
};

use fantoccini::{Client, ClientBuilder, Locator, elements::Element};
use portfwd_tests::{
    Daemon, EXTERNAL, Lab, Netns, ROUTER_LAN, WAIT, cli_ok, serve_http, tcp_reaches_lan, temp_dir,
    upnpc,
};
use serde_json::{Value, json};

const API: &str = "10.77.0.1:9780";
const PAGE: &str = "http://10.77.0.1:9780";
const DRIVER_PORT: u16 = 9515;

fn api_addr() -> SocketAddr {
    API.parse().expect("addr")
}

/// chromedriver in the LAN host's namespace, killed when dropped.
struct Driver(Child);

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn chromedriver(ns: &Netns) -> Driver {
    let child = ns
        .command("chromedriver")
        .arg(format!("--port={DRIVER_PORT}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("chromedriver (cargo xtask test installs chromium-driver)");
    let driver = Driver(child);
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        let up = ns.run(|| {
            TcpStream::connect_timeout(
                &SocketAddr::from(([127, 0, 0, 1], DRIVER_PORT)),
                Duration::from_millis(200),
            )
            .is_ok()
        });
        if up {
            return driver;
        }
        thread::sleep(Duration::from_millis(100));
    }
    panic!("chromedriver did not listen within 20 s");
}

/// A headless Chromium session; `javascript` false turns scripts off for every site.
async fn browser(javascript: bool, profile: &Path) -> Client {
    let mut options = json!({
        "binary": "/usr/bin/chromium",
        "args": [
            "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
            "--window-size=1280,1000", format!("--user-data-dir={}", profile.display()),
        ],
    });
    if !javascript {
        options["prefs"] = json!({ "profile.managed_default_content_settings.javascript": 2 });
    }
    let mut caps = serde_json::Map::new();
    caps.insert("goog:chromeOptions".into(), options);
    ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(caps)
        .connect(&format!("http://127.0.0.1:{DRIVER_PORT}"))
        .await
        .expect("a WebDriver session")
}

async fn wait_for(client: &Client, css: &str) -> Element {
    client
        .wait()
        .at_most(Duration::from_secs(15))
        .for_element(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("no `{css}` on the page: {e}"))
}

/// Waits until the page's text contains `text` (while a page loads, or the script swaps its
/// `main`, there may be none for a moment).
async fn wait_text(client: &Client, text: &str) {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let body = match client.find(Locator::Css("main")).await {
            Ok(main) => main.text().await.unwrap_or_default(),
            Err(_) => String::new(),
        };
        if body.contains(text) {
            return;
        }
        assert!(Instant::now() < deadline, "`{text}` never shown: {body}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn fill(client: &Client, css: &str, text: &str) {
    let field = wait_for(client, css).await;
    field.clear().await.expect("clear");
    field.send_keys(text).await.expect("type");
}

async fn log_in(client: &Client, token: &str) {
    client.goto(PAGE).await.expect("open the page");
    fill(client, "#token", "not-the-token").await;
    wait_for(client, "main button[type=submit]")
        .await
        .click()
        .await
        .expect("log in");
    wait_text(client, "Wrong token.").await;
    fill(client, "#token", token).await;
    wait_for(client, "main button[type=submit]")
        .await
        .click()
        .await
        .expect("log in");
    wait_for(client, "h1").await;
    wait_text(client, "Port sharing").await;
}

/// Fills the add form and sends it.
async fn add_share(client: &Client, external: &str, internal_port: &str, name: &str) {
    fill(client, "#add-external", external).await;
    fill(client, "#add-internal", "10.77.0.10").await;
    fill(client, "#add-port", internal_port).await;
    fill(client, "#add-name", name).await;
    wait_for(client, "#add button[type=submit]")
        .await
        .click()
        .await
        .expect("add");
}

async fn screenshot(client: &Client, name: &str) {
    let Some(dir) = std::env::var_os("PORTFWD_SCREENSHOTS") else {
        return;
    };
    let png = client.screenshot().await.expect("screenshot");
    fs::create_dir_all(&dir).expect("screenshot dir");
    fs::write(PathBuf::from(dir).join(format!("{name}.png")), png).expect("save screenshot");
}

fn token(daemon: &Daemon) -> String {
    fs::read_to_string(daemon.state_dir().expect("own state").join("api-token"))
        .expect("token")
        .trim()
        .to_owned()
}

fn shares(lab: &Lab, state: &Path) -> Vec<String> {
    let list: Value = serde_json::from_str(&cli_ok(
        lab,
        state,
        &["share", "list", "--json", "--api", API],
    ))
    .expect("json");
    list.as_array()
        .or_else(|| list["shares"].as_array())
        .expect("a list")
        .iter()
        .filter_map(|s| s["id"].as_str().map(str::to_owned))
        .collect()
}

/// Runs `f`'s future on a thread in the LAN host's namespace, on a runtime of its own.
fn in_lan<F: Future>(lab: &Lab, f: impl FnOnce() -> F + Send) -> F::Output
where
    F::Output: Send,
{
    thread::scope(|scope| {
        scope
            .spawn(|| {
                lab.lan.enter();
                tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("runtime")
                    .block_on(f())
            })
            .join()
            .unwrap_or_else(|e| std::panic::resume_unwind(e))
    })
}

/// The port-sharing page with everything it loads stays under 150 kB, and on a phone's width
/// nothing but the tables' own boxes scrolls sideways.
async fn weight_and_phone(client: &Client) {
    client.goto(PAGE).await.expect("page");
    wait_for(client, "button[aria-label='Disable web']").await;
    let bytes = client
        .execute(
            "return [...performance.getEntriesByType('navigation'), \
             ...performance.getEntriesByType('resource')] \
             .reduce((sum, e) => sum + e.encodedBodySize + 400, 0);",
            vec![],
        )
        .await
        .expect("resource sizes");
    let bytes = bytes.as_f64().expect("a number");
    eprintln!("the port-sharing page with everything it loads: {bytes} bytes");
    assert!(bytes < 150_000.0, "the page weighs {bytes} bytes");
    // On a phone's width nothing but the tables' own boxes scrolls sideways.
    client.set_window_size(390, 844).await.expect("resize");
    client.refresh().await.expect("reload");
    wait_for(client, "button[aria-label='Disable web']").await;
    let overflow = client
        .execute(
            "return document.documentElement.scrollWidth - window.innerWidth;",
            vec![],
        )
        .await
        .expect("widths");
    assert!(
        overflow.as_i64().is_some_and(|o| o <= 0),
        "the page is wider than a phone by {overflow}"
    );
    screenshot(client, "phone").await;
}

/// Adds share `name` on `port` through the form, checks it carries HTTP, switches it off and
/// on again, then adds another on the same port and sees the error at the field with what
/// was typed kept. Without scripts each step is a full page load.
async fn add_switch_and_collide(
    client: &Client,
    lab: &Lab,
    port: u16,
    name: &str,
    javascript: bool,
) {
    let button = |verb: &str| format!("button[aria-label='{verb} {name}']");
    add_share(client, &port.to_string(), "80", name).await;
    wait_text(client, "Share added.").await;
    if !javascript {
        let url = client.current_url().await.expect("url");
        assert!(url.as_str().ends_with("/?done=added"), "{url}");
    }
    wait_for(client, &button("Disable")).await;
    assert!(tcp_reaches_lan(lab, port), "the new share carries HTTP");
    wait_for(client, &button("Disable"))
        .await
        .click()
        .await
        .expect("disable");
    wait_for(client, &button("Enable")).await;
    assert!(
        !tcp_reaches_lan(lab, port),
        "a share switched off still carries traffic"
    );
    wait_for(client, &button("Enable"))
        .await
        .click()
        .await
        .expect("enable");
    wait_for(client, &button("Disable")).await;
    assert!(
        tcp_reaches_lan(lab, port),
        "the share switched on again carries nothing"
    );
    add_share(client, &port.to_string(), "81", "second web").await;
    let error = wait_for(client, "#add-external-error")
        .await
        .text()
        .await
        .expect("text");
    assert!(error.contains("This port is taken"), "{error}");
    let kept = client
        .find(Locator::Css("#add-name"))
        .await
        .expect("name field")
        .prop("value")
        .await
        .expect("value");
    assert_eq!(kept.as_deref(), Some("second web"));
}

/// A lab whose daemon serves the page on the LAN address, the LAN host's web server on port
/// 80, and chromedriver beside it; the browser profile is removed when dropped.
struct Setup {
    _driver: Driver,
    _daemon: Daemon,
    lab: Lab,
    token: String,
    state: PathBuf,
    profile: PathBuf,
}

fn setup(tag: &str, mode: &str) -> Setup {
    let mut lab = Lab::fresh(tag);
    if mode == "native" {
        // Native XDP on veth needs a program on the far ends too.
        lab.attach_host_pass_programs();
    }
    let daemon = Daemon::in_lab(&lab, mode, &["--api", API]);
    serve_http(&lab.lan, 80, "hello from the LAN host");
    Setup {
        _driver: chromedriver(&lab.lan),
        token: token(&daemon),
        state: daemon.state_dir().expect("own").to_owned(),
        _daemon: daemon,
        lab,
        profile: temp_dir("chromium"),
    }
}

impl Drop for Setup {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.profile);
    }
}

#[test]
fn the_owner_shares_a_port_in_a_real_browser() {
    let Setup {
        lab,
        token,
        state,
        profile,
        ..
    } = &setup("page", "native");
    in_lan(lab, || async {
        let client = browser(true, profile).await;
        log_in(&client, token).await;
        assert!(
            client.find(Locator::Css("html.js")).await.is_ok(),
            "the script runs"
        );
        add_switch_and_collide(&client, lab, 8080, "web", true).await;
        screenshot(&client, "port-sharing").await;
        // A UPnP mapping made by upnpc shows up by itself on the applications page, and goes.
        client.goto(&format!("{PAGE}/apps")).await.expect("apps");
        wait_text(&client, "No application has opened a port.").await;
        let out = upnpc(
            lab,
            &["-e", "game", "-a", "10.77.0.10", "5555", "5555", "TCP"],
        );
        assert!(out.contains("is redirected"), "{out}");
        let delete = wait_for(&client, "button[aria-label='Delete tcp:5555']").await;
        screenshot(&client, "applications").await;
        delete.click().await.expect("delete");
        wait_text(&client, "Deleted.").await;
        assert!(!shares(lab, state).contains(&"tcp:5555".to_owned()));
        for (page, name) in [
            ("/events", "events"),
            ("/settings", "settings"),
            ("/status", "status"),
        ] {
            client.goto(&format!("{PAGE}{page}")).await.expect("page");
            wait_for(&client, "h1").await;
            screenshot(&client, name).await;
        }
        client
            .goto(&format!("{PAGE}/events"))
            .await
            .expect("events");
        wait_text(&client, "share deleted").await;
        weight_and_phone(&client).await;
        client.close().await.expect("close");
    });
    assert!(shares(lab, state).contains(&"tcp:8080".to_owned()));
}

#[test]
fn every_action_works_without_javascript() {
    let Setup {
        lab,
        token,
        profile,
        ..
    } = &setup("pagenojs", "skb");
    in_lan(lab, || async {
        let client = browser(false, profile).await;
        log_in(&client, token).await;
        assert!(
            client.find(Locator::Css("html.js")).await.is_err(),
            "scripts are off"
        );
        add_switch_and_collide(&client, lab, 8081, "plain", false).await;
        client.close().await.expect("close");
    });
}

/// One HTTP/1.0 exchange from `ns`: status, head, body.
fn exchange(
    ns: &Netns,
    addr: SocketAddr,
    request: String,
) -> Result<(u16, String, String), String> {
    ns.run(move || {
        let mut stream = TcpStream::connect_timeout(&addr, WAIT).map_err(|e| e.to_string())?;
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .map_err(|e| e.to_string())?;
        stream
            .write_all(request.as_bytes())
            .map_err(|e| e.to_string())?;
        let mut response = String::new();
        stream
            .read_to_string(&mut response)
            .map_err(|e| e.to_string())?;
        let (head, body) = response.split_once("\r\n\r\n").ok_or("not HTTP")?;
        let status = head
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or("no status")?;
        Ok((status, head.to_owned(), body.to_owned()))
    })
}

fn request(method: &str, path: &str, headers: &[(&str, &str)], body: &str) -> String {
    let mut text = format!("{method} {path} HTTP/1.0\r\nHost: {API}\r\n");
    for (name, value) in headers {
        text = text + name + ": " + value + "\r\n";
    }
    text + "Content-Type: application/x-www-form-urlencoded\r\nContent-Length: "
        + &body.len().to_string()
        + "\r\n\r\n"
        + body
}

/// A cookie the response sets (`NAME=VALUE`).
fn set_cookie(head: &str, name: &str) -> String {
    head.lines()
        .filter_map(|l| l.strip_prefix("set-cookie: "))
        .find(|c| c.starts_with(&format!("{name}=")))
        .and_then(|c| c.split(';').next())
        .unwrap_or_else(|| panic!("no {name} cookie: {head}"))
        .to_owned()
}

fn hidden(body: &str, name: &str) -> String {
    let marker = format!(r#"name="{name}" value=""#);
    let at = body
        .find(&marker)
        .unwrap_or_else(|| panic!("no {name}: {body}"))
        + marker.len();
    body[at..at + body[at..].find('"').expect("quote")].to_owned()
}

/// A login attempt from the LAN host with `token`: status, head, and how long it took.
fn try_login(lab: &Lab, token: &str) -> (u16, String, Duration) {
    let (_, head, body) =
        exchange(&lab.lan, api_addr(), request("GET", "/login", &[], "")).expect("login form");
    let cookie = set_cookie(&head, "portfwd_login");
    let form = format!("login_csrf={}&token={token}", hidden(&body, "login_csrf"));
    let started = Instant::now();
    let (status, head, _) = exchange(
        &lab.lan,
        api_addr(),
        request(
            "POST",
            "/login",
            &[("Cookie", &cookie), ("Origin", PAGE)],
            &form,
        ),
    )
    .expect("login");
    (status, head, started.elapsed())
}

#[test]
fn forms_need_their_csrf_token_and_this_origin_and_the_wan_gets_nothing() {
    let lab = Lab::fresh("pagesec");
    let daemon = Daemon::in_lab(&lab, "skb", &["--api", API]);
    let token = token(&daemon);
    let state = daemon.state_dir().expect("own").to_owned();
    // Every response forbids framing and inline script.
    let (status, head, _) =
        exchange(&lab.lan, api_addr(), request("GET", "/login", &[], "")).expect("login page");
    assert_eq!(status, 200);
    assert!(head.contains("x-frame-options: DENY"), "{head}");
    assert!(
        head.contains("content-security-policy: default-src 'none'; script-src 'self'"),
        "{head}"
    );
    assert!(head.contains("frame-ancestors 'none'"), "{head}");
    let (status, head, _) = try_login(&lab, &token);
    assert_eq!(status, 303, "{head}");
    let session = set_cookie(&head, "portfwd_session");
    assert!(head.contains("HttpOnly; SameSite=Strict"), "{head}");
    let (_, _, page) = exchange(
        &lab.lan,
        api_addr(),
        request("GET", "/", &[("Cookie", &session)], ""),
    )
    .expect("page");
    let csrf = hidden(&page, "csrf");
    let add = "proto=tcp&external_port=9090&internal_address=10.77.0.10&internal_port=80&name=x";
    let before = shares(&lab, &state);
    for (headers, body) in [
        (
            vec![("Cookie", session.as_str()), ("Origin", PAGE)],
            add.to_owned(),
        ),
        (
            vec![
                ("Cookie", session.as_str()),
                ("Origin", "http://evil.example"),
            ],
            format!("{add}&csrf={csrf}"),
        ),
    ] {
        let (status, _, body) = exchange(
            &lab.lan,
            api_addr(),
            request("POST", "/shares/add", &headers, &body),
        )
        .expect("post");
        assert_eq!(status, 403, "{body}");
        assert_eq!(
            shares(&lab, &state),
            before,
            "a refused post changed the shares"
        );
    }
    let (status, _, _) = exchange(
        &lab.lan,
        api_addr(),
        request(
            "POST",
            "/shares/add",
            &[("Cookie", &session), ("Origin", PAGE)],
            &format!("{add}&csrf={csrf}"),
        ),
    )
    .expect("post");
    assert_eq!(status, 303);
    assert!(shares(&lab, &state).contains(&"tcp:9090".to_owned()));
    // The WAN: no answer on the external address, none on the LAN address either.
    for addr in [
        SocketAddr::from((EXTERNAL, 9780)),
        SocketAddr::from((ROUTER_LAN, 9780)),
    ] {
        let answer = exchange(&lab.remote, addr, request("GET", "/login", &[], ""));
        assert!(
            answer.is_err(),
            "the WAN got an answer from {addr}: {answer:?}"
        );
    }
    drop(daemon);
}

#[test]
fn five_wrong_tokens_slow_each_further_login_and_the_right_one_still_gets_in() {
    let lab = Lab::fresh("pagerate");
    let daemon = Daemon::in_lab(&lab, "skb", &["--api", API]);
    let token = token(&daemon);
    for _ in 0..5 {
        let (status, _, took) = try_login(&lab, "wrong");
        assert_eq!(status, 401);
        assert!(
            took < Duration::from_millis(900),
            "the first five are not slowed: {took:?}"
        );
    }
    let (status, _, took) = try_login(&lab, "wrong");
    assert_eq!(status, 401);
    assert!(
        took >= Duration::from_secs(1),
        "the sixth waited only {took:?}"
    );
    let (status, head, took) = try_login(&lab, &token);
    assert_eq!(status, 303, "{head}");
    assert!(took >= Duration::from_secs(1), "{took:?}");
    assert!(head.contains("portfwd_session="));
    drop(daemon);
}
