//! The page's HTML (maud): the frame every page shares and the small pieces they use. The
//! pages read the same JSON the API answers, so the page shows exactly what the API does.

use std::collections::BTreeMap;

use maud::{DOCTYPE, Markup, html};
use serde_json::Value;

mod other;
pub mod sharing;

pub use other::{apps, edit, events, login, settings, status};
pub use sharing::sharing;

/// The stylesheet and script, named by the version so a new build is fetched anew.
pub const CSS_URL: &str = concat!("/static/app.css?v=", env!("CARGO_PKG_VERSION"));
pub const JS_URL: &str = concat!("/static/app.js?v=", env!("CARGO_PKG_VERSION"));

/// The pages in the navigation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tab {
    Sharing,
    Apps,
    Settings,
    Events,
    Status,
}

impl Tab {
    const ALL: [(Self, &'static str, &'static str); 5] = [
        (Self::Sharing, "/", "Port sharing"),
        (Self::Apps, "/apps", "Opened by applications"),
        (Self::Settings, "/settings", "Settings"),
        (Self::Events, "/events", "Events"),
        (Self::Status, "/status", "Status"),
    ];
}

/// What every page of a session knows.
#[derive(Clone, Copy, Debug)]
pub struct Frame<'a> {
    pub csrf: &'a str,
    /// The newest event's id: the script follows the log from there.
    pub last_event: u64,
    /// A line saying what the last action did.
    pub notice: Option<&'a str>,
}

/// What a refused form gets back: the message for each field, and one for the form.
#[derive(Clone, Debug, Default)]
pub struct Problems {
    pub fields: BTreeMap<&'static str, String>,
    pub general: Option<String>,
}

impl Problems {
    #[must_use]
    pub fn general(message: impl Into<String>) -> Self {
        Self {
            general: Some(message.into()),
            ..Self::default()
        }
    }

    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.fields.is_empty() && self.general.is_none()
    }
}

/// A logged-in page: navigation, log-out, and `body` in `<main>`.
#[must_use]
pub fn page(title: &str, tab: Tab, frame: &Frame<'_>, body: &Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            (head(title))
            body {
                a.skip href="#main" { "Skip to the content" }
                header {
                    p.brand { "portfwd" }
                    nav aria-label="Pages" {
                        ul {
                            @for (t, href, name) in Tab::ALL {
                                li {
                                    @if t == tab {
                                        a href=(href) aria-current="page" { (name) }
                                    } @else {
                                        a href=(href) { (name) }
                                    }
                                }
                            }
                        }
                    }
                    form.logout.whole-page method="post" action="/logout" {
                        (csrf(frame.csrf))
                        button type="submit" { "Log out" }
                    }
                }
                div #announce .visually-hidden role="status" aria-live="polite" {}
                main id="main" data-last-event=(frame.last_event) {
                    h1 tabindex="-1" { (title) }
                    @if let Some(notice) = frame.notice {
                        p.notice role="status" { (notice) }
                    }
                    (body)
                }
            }
        }
    }
}

fn head(title: &str) -> Markup {
    html! {
        head {
            meta charset="utf-8";
            meta name="viewport" content="width=device-width, initial-scale=1";
            title { (title) " · portfwd" }
            link rel="stylesheet" href=(CSS_URL);
            link rel="icon" href="/static/icon.svg" type="image/svg+xml";
            script src=(JS_URL) defer {}
        }
    }
}

/// A page without a session: what went wrong, and the way back.
#[must_use]
pub fn problem(status: hyper::StatusCode, message: &str) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            (head(status.canonical_reason().unwrap_or("Error")))
            body {
                main id="main" .login {
                    h1 { (status.canonical_reason().unwrap_or("Error")) }
                    p.error role="alert" { (message) }
                    p { a href="/" { "Back to port sharing" } " · " a href="/login" { "Log in" } }
                }
            }
        }
    }
}

/// The hidden CSRF field every form carries.
#[must_use]
pub fn csrf(token: &str) -> Markup {
    html! { input type="hidden" name="csrf" value=(token); }
}

/// A one-button form posting to `action` with hidden fields.
#[must_use]
pub fn button(
    frame: &Frame<'_>,
    action: &str,
    hidden: &[(&str, &str)],
    label: &str,
    aria: &str,
) -> Markup {
    html! {
        form.inline method="post" action=(action) {
            (csrf(frame.csrf))
            @for (name, value) in hidden {
                input type="hidden" name=(name) value=(value);
            }
            button type="submit" aria-label=(aria) { (label) }
        }
    }
}

/// A labelled text field, with its error under it (and tied to it for screen readers).
#[must_use]
pub fn field(
    id: &str,
    name: &'static str,
    label: &str,
    value: &str,
    problems: &Problems,
    extra: &FieldOpts<'_>,
) -> Markup {
    let error = problems.fields.get(name);
    let error_id = format!("{id}-error");
    html! {
        div.field {
            label for=(id) { (label) }
            input id=(id) name=(name) value=(value) type=(extra.kind)
                inputmode=[extra.inputmode] placeholder=[extra.placeholder] list=[extra.list]
                required[extra.required] aria-invalid=[error.map(|_| "true")]
                aria-describedby=[error.map(|_| error_id.as_str())];
            @if let Some(error) = error {
                p.error id=(error_id) { (error) }
            }
        }
    }
}

/// A labelled checkbox, ticked if `checked`.
pub fn checkbox(id: &str, name: &'static str, label: &str, checked: bool) -> Markup {
    html! {
        div.field.check {
            input id=(id) type="checkbox" name=(name) checked[checked];
            label for=(id) { (label) }
        }
    }
}

/// How a field is typed.
#[derive(Clone, Copy, Debug)]
pub struct FieldOpts<'a> {
    pub kind: &'a str,
    pub inputmode: Option<&'a str>,
    pub placeholder: Option<&'a str>,
    pub list: Option<&'a str>,
    pub required: bool,
}

impl FieldOpts<'_> {
    pub const TEXT: Self = Self {
        kind: "text",
        inputmode: None,
        placeholder: None,
        list: None,
        required: false,
    };
}

/// The message for the whole form, if any.
#[must_use]
pub fn general(problems: &Problems) -> Markup {
    html! {
        @if let Some(message) = &problems.general {
            p.error role="alert" { (message) }
        }
    }
}

/// A string field of an API answer (`""` when absent).
#[must_use]
pub fn text<'a>(value: &'a Value, key: &str) -> &'a str {
    value[key].as_str().unwrap_or("")
}

/// A share's external port, or its range as `FIRST-LAST`, as the forms take it.
#[must_use]
pub fn external_ports(share: &Value) -> String {
    match (
        share["external_port"].as_u64(),
        share["external_last"].as_u64(),
    ) {
        (Some(first), Some(last)) if last > first => format!("{first}-{last}"),
        (Some(first), _) => first.to_string(),
        _ => String::new(),
    }
}

/// A byte count for people.
#[must_use]
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "kB", "MB", "GB", "TB"];
    let (mut div, mut unit) = (1u64, 0);
    while n / div >= 1000 && unit < UNITS.len() - 1 {
        div *= 1000;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{}.{} {}", n / div, n % div * 10 / div, UNITS[unit])
    }
}

/// Seconds left for people: `2 h 5 min`, `40 s`; `None` is a share without a lease.
#[must_use]
pub fn left(seconds: Option<u64>) -> String {
    match seconds {
        None => "permanent".to_owned(),
        Some(s) if s < 60 => format!("{s} s"),
        Some(s) if s < 3600 => format!("{} min", s / 60),
        Some(s) if s < 86_400 => format!("{} h {} min", s / 3600, s % 3600 / 60),
        Some(s) => format!("{} d {} h", s / 86_400, s % 86_400 / 3600),
    }
}

/// Where a share or pinhole came from, in words.
#[must_use]
pub fn source(value: &Value) -> &'static str {
    match text(value, "source") {
        "static" if value["from_config"].as_bool() == Some(true) => "config file",
        "upnp" => "UPnP",
        "natpmp" => "NAT-PMP",
        "pcp" => "PCP",
        _ => "owner",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_for_people() {
        assert_eq!(bytes(999), "999 B");
        assert_eq!(bytes(1_500), "1.5 kB");
        assert_eq!(bytes(2_000_000_000), "2.0 GB");
        assert_eq!(left(None), "permanent");
        assert_eq!(left(Some(59)), "59 s");
        assert_eq!(left(Some(3599)), "59 min");
        assert_eq!(left(Some(7500)), "2 h 5 min");
        assert_eq!(left(Some(90_000)), "1 d 1 h");
    }

    #[test]
    fn fields_carry_their_error_and_input() {
        let mut problems = Problems::default();
        problems
            .fields
            .insert("external_port", "taken by tcp:8080".to_owned());
        let html = field(
            "add-ext",
            "external_port",
            "External port",
            "8080<script>",
            &problems,
            &FieldOpts::TEXT,
        )
        .into_string();
        assert!(
            html.contains(r#"<label for="add-ext">External port</label>"#),
            "{html}"
        );
        assert!(html.contains(r#"value="8080&lt;script&gt;""#), "{html}");
        assert!(html.contains(r#"aria-invalid="true""#), "{html}");
        assert!(
            html.contains(r#"aria-describedby="add-ext-error""#),
            "{html}"
        );
        assert!(html.contains("taken by tcp:8080"), "{html}");
    }
}
