//! The page over a real share table (in-memory maps): login, sessions, CSRF and Origin, and
//! forms that become API calls.

use std::{
    net::{Ipv4Addr, Ipv6Addr},
    sync::Arc,
};

use http_body_util::BodyExt as _;

use super::*;
use crate::{
    api::Facts,
    host::{Host, WanStats},
    share::{LanSubnet, Proto},
};

const TOKEN: &str = "the-token";
const PEER: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 10));
const HOST_HEADER: &str = "10.0.0.1:9780";

struct Lan;

impl Host for Lan {
    fn neighbours(&self) -> Vec<(Ipv4Addr, [u8; 6])> {
        vec![(Ipv4Addr::new(10, 0, 0, 20), [2, 0, 0, 0, 0, 20])]
    }
    fn neighbours6(&self) -> Vec<(Ipv6Addr, [u8; 6])> {
        Vec::new()
    }
    fn listening(&self, _: Proto) -> Vec<(Option<Ipv4Addr>, u16)> {
        vec![(None, 22)]
    }
    fn wan_up(&self) -> bool {
        true
    }
    fn wan_stats(&self) -> WanStats {
        WanStats::default()
    }
}

fn api() -> Api {
    Api {
        table: crate::table::testing(
            crate::policy::Settings::default(),
            Arc::new(Lan),
            &["tcp:8080=10.0.0.20:80"],
        ),
        token: TOKEN.into(),
        metrics: Arc::default(),
        metrics_auth: false,
        facts: Facts {
            wan: "wan0".into(),
            lan: "lan0".into(),
            lan_address: Ipv4Addr::new(10, 0, 0, 1),
            wan_mode: "native",
            lan_mode: "native",
            wan_program: None,
            lan_program: None,
            upnp_url: "http://10.0.0.1:5000/rootDesc.xml".into(),
            started: Instant::now(),
        },
        lan: vec![LanSubnet {
            addr: Ipv4Addr::new(10, 0, 0, 1),
            prefix_len: 24,
        }],
        host: Arc::new(Lan),
        ddns: None,
        page: Page::default(),
    }
}

struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    body: String,
}

async fn send(api: &Api, method: &str, uri: &str, headers: &[(&str, &str)], body: &str) -> Answer {
    let mut request = Request::builder()
        .method(method)
        .uri(uri)
        .header(HOST, HOST_HEADER);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let request = request
        .body(Full::new(Bytes::from(body.to_owned())))
        .expect("request");
    let response = respond(api, PEER, request).await;
    let status = response.status();
    let headers = response.headers().clone();
    let body = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes();
    Answer {
        status,
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    }
}

fn set_cookies(answer: &Answer) -> Vec<String> {
    answer
        .headers
        .get_all(SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok().map(str::to_owned))
        .collect()
}

/// The value of `name="..."` after `marker` in `html`.
fn attribute(html: &str, marker: &str) -> String {
    let at = html.find(marker).expect(marker);
    let rest = &html[at + marker.len()..];
    rest[..rest.find('"').expect("quote")].to_owned()
}

/// Logs in; the session cookie and the CSRF token.
async fn login(api: &Api) -> (String, String) {
    let form = send(api, "GET", "/login", &[], "").await;
    assert_eq!(form.status, StatusCode::OK);
    let login_cookie = set_cookies(&form)[0]
        .split(';')
        .next()
        .expect("cookie")
        .to_owned();
    let login_csrf = attribute(&form.body, r#"name="login_csrf" value=""#);
    let answer = send(
        api,
        "POST",
        "/login",
        &[
            ("cookie", &login_cookie),
            ("origin", "http://10.0.0.1:9780"),
        ],
        &format!("login_csrf={login_csrf}&token={TOKEN}"),
    )
    .await;
    assert_eq!(answer.status, StatusCode::SEE_OTHER, "{}", answer.body);
    let cookies = set_cookies(&answer);
    let session = cookies
        .iter()
        .find(|c| c.starts_with(SESSION_COOKIE))
        .expect("a session cookie");
    assert!(session.contains("HttpOnly"), "{session}");
    assert!(session.contains("SameSite=Strict"), "{session}");
    assert!(!session.contains("Secure"), "plain HTTP: {session}");
    let cookie = session.split(';').next().expect("cookie").to_owned();
    let page = send(api, "GET", "/", &[("cookie", &cookie)], "").await;
    assert_eq!(page.status, StatusCode::OK);
    let csrf = attribute(&page.body, r#"name="csrf" value=""#);
    (cookie, csrf)
}

#[tokio::test]
async fn pages_need_a_login_with_the_token() {
    let api = api();
    let answer = send(&api, "GET", "/", &[], "").await;
    assert_eq!(answer.status, StatusCode::SEE_OTHER);
    assert_eq!(answer.headers[LOCATION], "/login");
    let form = send(&api, "GET", "/login", &[], "").await;
    assert!(
        form.body.contains(r#"<label for="token">Token</label>"#),
        "{}",
        form.body
    );
    let login_cookie = set_cookies(&form)[0]
        .split(';')
        .next()
        .expect("cookie")
        .to_owned();
    let login_csrf = attribute(&form.body, r#"name="login_csrf" value=""#);
    // A wrong token: 401, no session.
    let wrong = send(
        &api,
        "POST",
        "/login",
        &[("cookie", &login_cookie)],
        &format!("login_csrf={login_csrf}&token=nope"),
    )
    .await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
    assert!(wrong.body.contains("Wrong token."), "{}", wrong.body);
    assert!(
        !set_cookies(&wrong)
            .iter()
            .any(|c| c.starts_with(SESSION_COOKIE))
    );
    // The right token without the login form's own cookie: refused.
    let stale = send(
        &api,
        "POST",
        "/login",
        &[],
        &format!("login_csrf={login_csrf}&token={TOKEN}"),
    )
    .await;
    assert_eq!(stale.status, StatusCode::FORBIDDEN);
    // A session cookie that is not one is no session.
    let forged = send(&api, "GET", "/", &[("cookie", "portfwd_session=abc")], "").await;
    assert_eq!(forged.status, StatusCode::SEE_OTHER);

    let (cookie, csrf) = login(&api).await;
    let page = send(&api, "GET", "/", &[("cookie", &cookie)], "").await;
    assert!(
        page.body.contains("<h1 tabindex=\"-1\">Port sharing</h1>"),
        "{}",
        page.body
    );
    // The owner's static share is there, with how it is called from the internet.
    assert!(page.body.contains("10.0.0.20:80"), "{}", page.body);
    assert!(page.body.contains("198.51.100.1:8080"), "{}", page.body);
    // No inline script or style: the policy allows none.
    assert!(!page.body.contains("<script>") && !page.body.contains("style="));
    // Log-out ends the session.
    let out = send(
        &api,
        "POST",
        "/logout",
        &[("cookie", &cookie)],
        &format!("csrf={csrf}"),
    )
    .await;
    assert_eq!(out.status, StatusCode::SEE_OTHER);
    let after = send(&api, "GET", "/", &[("cookie", &cookie)], "").await;
    assert_eq!(after.headers[LOCATION], "/login");
}

#[tokio::test]
async fn posts_without_the_csrf_token_or_from_another_site_change_nothing() {
    let api = api();
    let (cookie, csrf) = login(&api).await;
    let add = "proto=tcp&external_port=9000&internal_address=10.0.0.20&internal_port=90&name=web&hairpin=on";
    let shares = |api: &Api| api.table.snapshot().entries(crate::table::now()).count();
    let before = shares(&api);
    let cases: [(&[(&str, &str)], String); 5] = [
        (&[("cookie", &cookie)], add.to_owned()),
        (&[("cookie", &cookie)], format!("{add}&csrf=0000")),
        (
            &[("cookie", &cookie), ("origin", "http://evil.example")],
            format!("{add}&csrf={csrf}"),
        ),
        (
            &[("cookie", &cookie), ("origin", "null")],
            format!("{add}&csrf={csrf}"),
        ),
        (
            &[("cookie", &cookie), ("sec-fetch-site", "cross-site")],
            format!("{add}&csrf={csrf}"),
        ),
    ];
    for (headers, body) in cases {
        let answer = send(&api, "POST", "/shares/add", headers, &body).await;
        assert_eq!(answer.status, StatusCode::FORBIDDEN, "{headers:?} {body}");
        assert_eq!(shares(&api), before);
    }
    // No session at all.
    let answer = send(
        &api,
        "POST",
        "/shares/add",
        &[],
        &format!("{add}&csrf={csrf}"),
    )
    .await;
    assert_eq!(answer.status, StatusCode::FORBIDDEN);
    assert_eq!(shares(&api), before);
    // The same post from the page itself goes through.
    let answer = send(
        &api,
        "POST",
        "/shares/add",
        &[("cookie", &cookie), ("origin", "http://10.0.0.1:9780")],
        &format!("{add}&csrf={csrf}"),
    )
    .await;
    assert_eq!(answer.status, StatusCode::SEE_OTHER, "{}", answer.body);
    assert_eq!(answer.headers[LOCATION], "/?done=added");
    assert_eq!(shares(&api), before + 1);
}

#[tokio::test]
async fn a_refused_form_shows_the_error_at_its_field_and_keeps_the_input() {
    let api = api();
    let (cookie, csrf) = login(&api).await;
    let post = |body: String| {
        let api = &api;
        let cookie = cookie.clone();
        async move { send(api, "POST", "/shares/add", &[("cookie", &cookie)], &body).await }
    };
    // The port the owner's static share has.
    let taken = post(format!(
        "csrf={csrf}&proto=tcp&external_port=8080&internal_address=10.0.0.30&internal_port=80&name=my+camera"
    ))
    .await;
    assert_eq!(taken.status, StatusCode::UNPROCESSABLE_ENTITY);
    let error = attribute(
        &taken.body,
        r#"<p class="error" id="add-external-error">"#.trim_end_matches('"'),
    );
    assert!(
        taken
            .body
            .contains(r#"id="add-external-error">This port is taken"#),
        "{}",
        taken.body
    );
    assert!(!error.is_empty());
    assert!(
        taken.body.contains(r#"value="my camera""#),
        "{}",
        taken.body
    );
    assert!(taken.body.contains(r#"value="10.0.0.30""#));
    // Words, not parse errors, for what a person mistypes.
    let typo = post(format!(
        "csrf={csrf}&proto=tcp&external_port=9000&internal_address=10.0.0&internal_port=0"
    ))
    .await;
    assert!(
        typo.body.contains("Enter the device&#39;s IPv4 address")
            || typo.body.contains("Enter the device's IPv4 address"),
        "{}",
        typo.body
    );
    assert!(typo.body.contains("Enter a port from 1 to 65535."));
    // A share outside the LAN: the API's reason, at the address.
    let outside = post(format!(
        "csrf={csrf}&proto=udp&external_port=9001&internal_address=192.0.2.5&internal_port=53"
    ))
    .await;
    assert!(
        outside.body.contains(r#"id="add-internal-error""#),
        "{}",
        outside.body
    );
}

#[tokio::test]
async fn every_page_renders_and_the_actions_reach_the_table() {
    let api = api();
    let (cookie, csrf) = login(&api).await;
    let post = |path: &'static str, body: String| {
        let api = &api;
        let cookie = cookie.clone();
        async move { send(api, "POST", path, &[("cookie", &cookie)], &body).await }
    };
    let added = post(
        "/shares/add",
        format!("csrf={csrf}&proto=udp&external_port=27015-27030&internal_address=10.0.0.20&internal_port=27015&name=game&ipv6_address=2001:db8:77::20"),
    )
    .await;
    assert_eq!(added.status, StatusCode::SEE_OTHER, "{}", added.body);
    let id: ShareIdText = "udp:27015-27030";
    let disabled = post("/shares/disable", format!("csrf={csrf}&id={id}")).await;
    assert_eq!(disabled.headers[LOCATION], "/?done=disabled");
    let page = send(&api, "GET", "/?done=disabled", &[("cookie", &cookie)], "").await;
    assert!(page.body.contains("Share switched off."));
    assert!(page.body.contains("27015-27030"));
    assert!(
        page.body.contains("[2001:db8:77::20]:27015"),
        "{}",
        page.body
    );
    let edit = send(
        &api,
        "GET",
        "/share?id=udp%3A27015-27030",
        &[("cookie", &cookie)],
        "",
    )
    .await;
    assert!(
        edit.body.contains(r#"value="27015-27030""#),
        "{}",
        edit.body
    );
    let saved = post(
        "/shares/edit",
        format!("csrf={csrf}&id={id}&name=game2&external_port=27015-27030&internal_address=10.0.0.20&internal_port=27015&enabled=on"),
    )
    .await;
    assert_eq!(saved.status, StatusCode::SEE_OTHER, "{}", saved.body);
    let views = api.table.snapshot();
    let entry = views
        .entries(crate::table::now())
        .find(|e| e.spec.id.to_string() == id)
        .expect("the share");
    assert_eq!(entry.spec.name.as_deref(), Some("game2"));
    assert!(entry.spec.enabled && !entry.spec.hairpin);
    let denied = post(
        "/devices/permission",
        format!("csrf={csrf}&address=10.0.0.20&allowed=deny"),
    )
    .await;
    assert_eq!(denied.status, StatusCode::SEE_OTHER, "{}", denied.body);
    let exposed = post(
        "/exposed-host/set",
        format!("csrf={csrf}&address=10.0.0.40"),
    )
    .await;
    assert_eq!(exposed.status, StatusCode::SEE_OTHER, "{}", exposed.body);
    let settings = post(
        "/settings",
        format!("csrf={csrf}&upnp_enabled=on&quota_per_client=x"),
    )
    .await;
    assert_eq!(settings.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(settings.body.contains("Enter a number."));
    let settings = post(
        "/settings",
        format!("csrf={csrf}&quota_per_client=7&quota_total=70"),
    )
    .await;
    assert_eq!(settings.status, StatusCode::SEE_OTHER, "{}", settings.body);
    let view = api.table.snapshot().settings_view();
    assert!(!view.effective.enabled);
    assert_eq!(view.effective.limits.per_client, 7);
    for path in [
        "/",
        "/apps",
        "/settings",
        "/events",
        "/events?kind=share_created",
        "/status",
    ] {
        let page = send(&api, "GET", path, &[("cookie", &cookie)], "").await;
        assert_eq!(page.status, StatusCode::OK, "{path}");
        assert!(page.body.starts_with("<!DOCTYPE html>"), "{path}");
    }
    let events = send(&api, "GET", "/events", &[("cookie", &cookie)], "").await;
    assert!(events.body.contains("exposed host set"), "{}", events.body);
    let deleted = post("/shares/delete", format!("csrf={csrf}&id={id}")).await;
    assert_eq!(deleted.headers[LOCATION], "/?done=deleted");
    let gone = post("/shares/delete", format!("csrf={csrf}&id={id}")).await;
    assert_eq!(gone.status, StatusCode::NOT_FOUND);
    assert!(gone.body.contains("It is gone already"), "{}", gone.body);
}

type ShareIdText = &'static str;

#[test]
fn every_response_forbids_framing_and_inline_script() {
    let mut headers = HeaderMap::new();
    security_headers(&mut headers);
    assert_eq!(headers["x-frame-options"], "DENY");
    let csp = headers["content-security-policy"].to_str().expect("ascii");
    assert!(csp.contains("frame-ancestors 'none'") && csp.contains("script-src 'self'"));
    assert!(!csp.contains("unsafe-inline"));
    assert!(
        is_page("/") && is_page("/settings") && !is_page("/metrics") && !is_page("/api/v1/shares")
    );
}

#[test]
fn the_page_fits_its_budget() {
    // The page's own files; the port-sharing page itself is a few kB more.
    assert!(CSS.len() + JS.len() + ICON.len() < 20 * 1024);
}

/// The relative luminance of `#rrggbb` (WCAG 2.x).
fn luminance(hex: &str) -> f64 {
    let channel = |i: usize| {
        let c = f64::from(u8::from_str_radix(&hex[i..i + 2], 16).expect("hex")) / 255.0;
        if c <= 0.039_28 {
            c / 12.92
        } else {
            ((c + 0.055) / 1.055).powf(2.4)
        }
    };
    0.2126 * channel(1) + 0.7152 * channel(3) + 0.0722 * channel(5)
}

#[test]
fn the_colours_pass_wcag_aa() {
    // The stylesheet's colours, by name, and every text-on-background pair it uses.
    let var = |name: &str| {
        let at = CSS.find(&format!("--{name}: ")).expect(name) + name.len() + 4;
        &CSS[at..at + 7]
    };
    let pairs = [
        ("fg", "bg"),
        ("fg", "panel"),
        ("muted", "bg"),
        ("muted", "panel"),
        ("accent", "bg"),
        ("accent-fg", "accent"),
        ("error", "bg"),
        ("error", "panel"),
        ("ok", "bg"),
        ("fg", "warn-bg"),
    ];
    for (text, background) in pairs {
        let (a, b) = (luminance(var(text)), luminance(var(background)));
        let ratio = (a.max(b) + 0.05) / (a.min(b) + 0.05);
        assert!(ratio >= 4.5, "{text} on {background}: {ratio:.2}");
    }
}

#[tokio::test]
async fn shares_are_called_by_the_dynamic_dns_name_and_its_last_result_is_shown() {
    let mut api = api();
    let (_status, watch) = tokio::sync::watch::channel(crate::ddns::DdnsStatus {
        name: "home.example.test".into(),
        server: "198.51.100.2:53".into(),
        address: Some(Ipv4Addr::new(198, 51, 100, 1)),
        result: Some("ok".into()),
        ..crate::ddns::DdnsStatus::default()
    });
    api.ddns = Some(watch);
    let (cookie, _) = login(&api).await;
    let page = send(&api, "GET", "/", &[("cookie", &cookie)], "").await;
    assert!(
        page.body.contains("home.example.test:8080"),
        "{}",
        page.body
    );
    let settings = send(&api, "GET", "/settings", &[("cookie", &cookie)], "").await;
    for shown in [
        "home.example.test",
        "198.51.100.2:53",
        "198.51.100.1",
        "<dd>ok</dd>",
    ] {
        assert!(settings.body.contains(shown), "{shown}: {}", settings.body);
    }
}

#[tokio::test]
async fn only_requests_for_an_address_or_a_listed_name_are_answered() {
    let mut api = api();
    api.page.names = vec!["router.example".into()];
    for (host, answered) in [
        ("10.0.0.1:9780", true),
        ("10.0.0.1", true),
        ("[::1]:9780", true),
        ("localhost:9780", true),
        ("Router.Example:443", true),
        ("evil.example:9780", false),
        ("[zz]:1", false),
        ("", false),
    ] {
        let request = Request::builder()
            .uri("/login")
            .header(HOST, host)
            .body(Full::new(Bytes::new()))
            .expect("request");
        let status = respond(&api, PEER, request).await.status();
        assert_eq!(status == StatusCode::OK, answered, "{host}: {status}");
    }
}

#[tokio::test]
async fn saving_an_edit_form_sends_only_what_changed() {
    let api = api();
    let (cookie, csrf) = login(&api).await;
    // The owner's config-file share, saved untouched: nothing is overridden.
    let form = send(
        &api,
        "GET",
        "/share?id=tcp%3A8080",
        &[("cookie", &cookie)],
        "",
    )
    .await;
    let was = |key: &str| attribute(&form.body, &format!(r#"name="was_{key}" value=""#));
    assert_eq!(was("external_port"), "8080");
    assert_eq!(was("enabled"), "on");
    let fields = format!(
        "csrf={csrf}&id=tcp:8080&was_name=&was_external_port=8080&was_internal_address=10.0.0.20\
         &was_internal_port=80&was_hairpin=on&was_enabled=on&name=&external_port=8080\
         &internal_address=10.0.0.20&internal_port=80&hairpin=on&enabled=on"
    );
    let version = api.table.snapshot().version;
    let saved = send(
        &api,
        "POST",
        "/shares/edit",
        &[("cookie", &cookie)],
        &fields,
    )
    .await;
    assert_eq!(saved.status, StatusCode::SEE_OTHER, "{}", saved.body);
    assert_eq!(
        api.table.snapshot().version,
        version,
        "an untouched form changed the table"
    );
    // A device permission needs its button.
    let bare = send(
        &api,
        "POST",
        "/devices/permission",
        &[("cookie", &cookie)],
        &format!("csrf={csrf}&address=10.0.0.20"),
    )
    .await;
    assert_eq!(bare.status, StatusCode::BAD_REQUEST);
}
