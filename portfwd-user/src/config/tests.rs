//! The config file's parsing, merging and errors.

use super::*;

#[test]
fn parses_a_full_file() {
    let file = parse(
        r#"
        wan = "eth0"
        lan = "eth1"
        xdp_mode = "skb"

        [[share]]
        name = "web"
        proto = "tcp"
        external_port = 8080
        internal = "10.0.0.10:80"

        [[share]]
        proto = "udp"
        external_port = 27015
        internal = "10.0.0.11:27015"
        remote = "198.51.100.7"
        enabled = false
        "#,
    )
    .expect("valid");
    assert_eq!(file.wan.as_deref(), Some("eth0"));
    assert_eq!(file.xdp_mode, Some(XdpMode::Skb));
    let shares = file_shares(file.share).expect("shares");
    assert_eq!(shares.len(), 2);
    assert_eq!(shares[0].name.as_deref(), Some("web"));
    assert!(shares[0].enabled);
    assert!(!shares[1].enabled);
    assert_eq!(shares[1].id.remote, Some(Ipv4Addr::new(198, 51, 100, 7)));
}

#[test]
fn unknown_keys_and_bad_values_are_named() {
    let err = parse("wan = \"eth0\"\nlna = \"eth1\"\n")
        .expect_err("typo")
        .to_string();
    assert!(err.contains("lna") && err.contains("line 2"), "{err}");
    let err = parse("[[share]]\nproto = \"icmp\"\nexternal_port = 1\ninternal = \"10.0.0.1:1\"\n")
        .expect_err("proto")
        .to_string();
    assert!(err.contains("icmp"), "{err}");
    let err =
        parse("[[share]]\nproto = \"tcp\"\nexternal_port = 70000\ninternal = \"10.0.0.1:1\"\n")
            .expect_err("port")
            .to_string();
    assert!(err.contains("line 3"), "{err}");
}

#[test]
fn port_zero_in_the_file_is_refused() {
    let file = parse("[[share]]\nproto = \"tcp\"\nexternal_port = 0\ninternal = \"10.0.0.1:1\"\n")
        .expect("parses");
    assert!(matches!(
        file_shares(file.share),
        Err((
            ConfigError::PortZero(_),
            Some(Key::Share(0, Some("external_port")))
        ))
    ));
}

#[test]
fn flags_override_the_file_and_duplicates_are_refused() {
    let dir = std::env::temp_dir().join(format!("portfwd-config-{}", std::process::id()));
    fs::create_dir_all(&dir).expect("dir");
    let path = dir.join("portfwd.toml");
    fs::write(
        &path,
        "wan = \"a\"\nlan = \"b\"\n[[share]]\nproto = \"tcp\"\nexternal_port = 80\ninternal = \"10.0.0.2:80\"\n",
    )
    .expect("write");
    let config = Config::load(Overrides {
        wan: Some("wan0".into()),
        file: Some(path.clone()),
        shares: vec!["udp:80=10.0.0.2:80".parse().expect("spec")],
        ..Overrides::default()
    })
    .expect("config");
    assert_eq!((config.wan.as_str(), config.lan.as_str()), ("wan0", "b"));
    assert_eq!(config.shares.len(), 2);
    let dup = Config::load(Overrides {
        file: Some(path),
        shares: vec!["tcp:80=10.0.0.3:80".parse().expect("spec")],
        ..Overrides::default()
    });
    // Once in the file and once as a flag: the file is not at fault, no line.
    assert!(
        matches!(&dup, Err(ConfigError::At { line: None, error, .. }) if matches!(**error, ConfigError::Duplicate(_))),
        "{dup:?}"
    );
    fs::remove_dir_all(dir).expect("cleanup");
}

#[test]
fn api_and_link_sections() {
    let file = parse(
        "[api]\nlisten = \"0.0.0.0:9000\"\nmetrics_auth = true\nwebhook = \"http://10.0.0.2:8000/hook\"\n[wan_link]\nflap_window = 10\n",
    )
    .expect("valid");
    assert_eq!(file.api.listen, Some("0.0.0.0:9000".parse().expect("addr")));
    assert!(file.api.metrics_auth);
    assert_eq!(file.link.flap_window, Some(10));
    let err = parse("[api]\nlisten = \"localhost\"\n")
        .expect_err("not an address")
        .to_string();
    assert!(err.contains("line 2"), "{err}");
    let config = Config::load(Overrides {
        wan: Some("a".into()),
        lan: Some("b".into()),
        ..Overrides::default()
    })
    .expect("defaults");
    assert_eq!(config.api.listen, DEFAULT_API);
    assert!(!config.api.metrics_auth);
    assert_eq!(config.flap_window, Duration::from_mins(5));
}

#[test]
fn interfaces_are_required_and_distinct() {
    let missing = Config::load(Overrides {
        lan: Some("b".into()),
        ..Overrides::default()
    });
    assert!(matches!(missing, Err(ConfigError::MissingInterface("wan"))));
    let same = Config::load(Overrides {
        wan: Some("a".into()),
        lan: Some("a".into()),
        ..Overrides::default()
    });
    assert!(matches!(same, Err(ConfigError::SameInterface(_))));
}

/// Writes `text` to a config file of its own and loads it as `check-config` does.
fn load_text(text: &str) -> Result<Config, ConfigError> {
    static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let dir = std::env::temp_dir().join(format!(
        "portfwd-config-errors-{}-{}",
        std::process::id(),
        N.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    ));
    fs::create_dir_all(&dir).expect("dir");
    let path = dir.join("portfwd.toml");
    fs::write(&path, text).expect("write");
    let result = Config::load(Overrides {
        file: Some(path),
        ..Overrides::default()
    });
    fs::remove_dir_all(dir).expect("cleanup");
    result
}

const HEAD: &str = "wan = \"eth0\"\nlan = \"eth1\"\n";

#[test]
fn every_error_in_the_file_names_its_line() {
    let share = "[[share]]\nproto = \"tcp\"\nexternal_port = 8080\ninternal = \"10.0.0.10:80\"\n";
    // (text after HEAD, line of the fault, words the message has)
    let cases: &[(String, usize, &str)] = &[
        ("xdp_mode = \"fast\"\n".into(), 3, "fast"),
        ("log_level = \"verbose\"\n".into(), 3, "verbose"),
        ("\n[upnp]\nigd_version = 3\n".into(), 5, "igd_version"),
        ("[upnp]\nnotify_interval = 5\n".into(), 4, "notify_interval"),
        ("[upnp]\nmax_lease = 0\n".into(), 4, "max_lease"),
        (
            "[upnp]\ndevices = [\n  \"10.0.0.1\",\n  \"10.0.0.300\",\n]\n".into(),
            6,
            "10.0.0.300",
        ),
        (
            "[[upnp.rule]]\naction = \"allow\"\nexternal_ports = \"9-3\"\n".into(),
            5,
            "empty",
        ),
        ("[pcp]\nmin_lifetime = 0\n".into(), 4, "min_lifetime"),
        (
            "[api]\nwebhook = \"https://10.0.0.2/\"\n".into(),
            4,
            "webhook",
        ),
        ("[wan_link]\nflap_window = 0\n".into(), 4, "flap_window"),
        (format!("{share}{share}"), 7, "given twice"),
        (
            "[[share]]\nproto = \"tcp\"\nexternal_port = 0\ninternal = \"10.0.0.10:80\"\n".into(),
            5,
            "port 0",
        ),
        (
            "[[share]]\nproto = \"tcp\"\nexternal_port = 80\ninternal = \"10.0.0.10:0\"\n".into(),
            6,
            "port 0",
        ),
        (
            "[[share]]\nproto = \"tcp\"\nexternal_port = 80\ninternal = \"10.0.0.10\"\n".into(),
            6,
            "socket address",
        ),
        ("[[share]]\nprotocol = \"tcp\"\n".into(), 4, "protocol"),
        (
            "[[share]]\nproto = \"tcp\"\nexternal_port = \"30-20\"\ninternal = \"10.0.0.10:80\"\n"
                .into(),
            5,
            "port range",
        ),
        (
            "[[share]]\nproto = \"udp\"\nexternal_port = \"100-200\"\ninternal = \"10.0.0.10:65500\"\n"
                .into(),
            6,
            "past 65535",
        ),
        (
            format!(
                "{share}[[share]]\nproto = \"tcp\"\nexternal_port = \"8000-8100\"\ninternal = \"10.0.0.11:8000\"\n"
            ),
            7,
            "overlaps",
        ),
        ("wan = \"eth2\"\n".into(), 3, "duplicate key"),
        (
            "[ddns]\nprovider = \"dyndns2\"\nserver = \"ftp://members.dyndns.org\"\nname = \"h.example.test\"\n".into(),
            5,
            "ddns.server",
        ),
        (
            "[ddns]\nprovider = \"dyndns2\"\nserver = \"https://members.dyndns.org\"\nname = \"h.example.test\"\nusername = \"me\"\npassword_file = \"/nonexistent\"\n".into(),
            8,
            "ddns.password_file: cannot read /nonexistent",
        ),
        (
            "[ddns]\nprovider = \"dyndns2\"\nserver = \"https://members.dyndns.org\"\nname = \"h.example.test\"\n".into(),
            3,
            "ddns.username: missing",
        ),
    ];
    for (tail, line, words) in cases {
        let text = format!("{HEAD}{tail}");
        let err = load_text(&text).expect_err(&text);
        let message = crate::error_chain(&err);
        assert!(
            message.contains(&format!("line {line}")) && message.contains(words),
            "{text}\n=> {message}\n(expected line {line} and {words:?})"
        );
    }
    let err = load_text("wan = \"eth0\"\nlan = \"eth0\"\n").expect_err("same");
    assert!(crate::error_chain(&err).contains("line 2"), "{err}");
}

#[test]
fn a_missing_interface_says_where_to_set_it() {
    let err = load_text("lan = \"eth1\"\n").expect_err("no wan");
    assert!(
        matches!(err, ConfigError::MissingInterface("wan")),
        "{err:?}"
    );
    assert!(
        err.to_string().contains("`wan` in the config file"),
        "{err}"
    );
}

#[test]
fn log_level_is_read_and_checked() {
    let config = load_text(&format!(
        "{HEAD}log_level = \"debug,portfwd::upnp=trace\"\n"
    ))
    .expect("valid");
    assert_eq!(
        config.log_level.as_deref(),
        Some("debug,portfwd::upnp=trace")
    );
    assert_eq!(load_text(HEAD).expect("valid").log_level, None);
}

/// The Debian package's config file, `/etc/portfwd/portfwd.toml`.
const SHIPPED: &str = include_str!("../../../packaging/debian/portfwd.toml");

/// `text` with the lines that start with `prefix` uncommented (`#` and the prefix's spaces
/// removed).
fn uncomment(text: &str, keep: impl Fn(&str) -> bool) -> String {
    text.lines()
        .map(|line| match line.strip_prefix('#') {
            Some(rest) if keep(rest) => rest.trim_start(),
            _ => line,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn is_setting(rest: &str) -> bool {
    rest.starts_with(|c: char| c.is_ascii_lowercase()) && rest.contains(" = ")
}

#[test]
fn the_shipped_config_wants_its_interfaces_and_states_every_default() {
    let err = load_text(SHIPPED).expect_err("wan and lan are left to the owner");
    assert!(
        matches!(err, ConfigError::MissingInterface("wan")),
        "{err:?}"
    );
    let filled = uncomment(SHIPPED, |rest| {
        rest.starts_with("wan =") || rest.starts_with("lan =")
    });
    let mut shipped = load_text(&filled).expect("valid once wan and lan are in");
    let mut bare = load_text("wan = \"eth0\"\nlan = \"eth1\"\n").expect("valid");
    shipped.file = None;
    bare.file = None;
    assert_eq!(
        shipped, bare,
        "the shipped file sets nothing but the interfaces"
    );
    // Every `#key = value` is the default: uncommented, nothing changes.
    let mut all = load_text(&uncomment(SHIPPED, is_setting)).expect("the defaults are valid");
    all.file = None;
    // Written out, the log level is what the daemon uses without one.
    assert_eq!(all.log_level.take().as_deref(), Some("info"));
    assert_eq!(all, bare, "a commented setting is not its default");
    assert!(
        SHIPPED.matches("\n#").count() > 20,
        "the settings are present, commented"
    );
    for key in [
        "xdp_mode",
        "state_dir",
        "log_level",
        "igd_version",
        "secure_mode",
        "quota_per_client",
        "quota_total",
        "notify_interval",
        "port",
        "max_lease",
        "devices",
        "upnp.rule",
        "third_party",
        "min_lifetime",
        "max_lifetime",
        "inbound",
        "listen",
        "metrics_auth",
        "webhook",
        "page_names",
        "flap_window",
        "[[share]]",
    ] {
        assert!(
            SHIPPED.contains(key),
            "{key} is missing from the shipped config"
        );
    }
}

#[test]
fn the_shipped_config_examples_are_valid() {
    let examples = uncomment(SHIPPED, |rest| {
        is_setting(rest)
            || rest.starts_with("  [")
            || (rest.starts_with("  ") && rest.contains(" = "))
    });
    // The two `[ddns]` examples, last in the file, are alternatives: each is read with the rest.
    let second = examples.rfind("[ddns]").expect("a dyndns2 example");
    let first = examples[..second]
        .rfind("[ddns]")
        .expect("an rfc2136 example");
    let config = load_text(&examples[..second]).expect("the examples are valid");
    assert_eq!(config.shares.len(), 1);
    assert_eq!(config.upnp.max_lease, Some(Duration::from_hours(1)));
    assert_eq!(config.upnp.rules.len(), 1);
    assert!(config.api.webhook.is_some());
    assert!(matches!(
        config.ddns.map(|d| d.protocol),
        Some(crate::ddns::Protocol::Rfc2136(_))
    ));
    let dyndns2 = format!("{}{}", &examples[..first], &examples[second..]);
    let config = load_text(&dyndns2).expect("the dyndns2 example is valid");
    assert!(matches!(
        config.ddns.map(|d| d.protocol),
        Some(crate::ddns::Protocol::Dyndns2(_))
    ));
}

#[test]
fn a_share_covers_a_port_range_written_as_text() {
    let config = load_text(&format!(
        "{HEAD}[[share]]\nproto = \"udp\"\nexternal_port = \"27015-27030\"\ninternal = \"10.0.0.20:27015\"\n\
         [[share]]\nproto = \"tcp\"\nexternal_port = \"8080\"\ninternal = \"10.0.0.20:80\"\n"
    ))
    .expect("valid");
    let ids: Vec<String> = config.shares.iter().map(|s| s.id.to_string()).collect();
    assert_eq!(ids, ["udp:27015-27030", "tcp:8080"]);
}

#[test]
fn the_exposed_hosts_are_read_and_start_off() {
    let none = load_text(HEAD).expect("valid");
    assert_eq!(none.upnp.exposed, crate::policy::ExposedHosts::default());
    let set = load_text(&format!(
        "{HEAD}exposed_host = \"10.0.0.20\"\nexposed_host6 = \"2001:db8::20\"\n"
    ))
    .expect("valid");
    assert_eq!(
        set.upnp.exposed.v4,
        Some("10.0.0.20".parse().expect("addr"))
    );
    assert_eq!(
        set.upnp.exposed.v6,
        Some("2001:db8::20".parse().expect("addr"))
    );
    let err = load_text(&format!("{HEAD}exposed_host = \"10.0.0\"\n")).expect_err("bad");
    assert!(crate::error_chain(&err).contains("line 3"), "{err}");
}
