use super::*;

fn file(text: &str) -> FileDdns {
    toml::from_str(text).expect("toml")
}

const GOOD: &str = r#"
provider = "rfc2136"
server = "198.51.100.53"
zone = "example.test"
name = "Home.example.test."
key_name = "portfwd"
key_secret = "c2l4dGVlbiBieXRlIGtleQ=="
"#;

fn rfc2136(ddns: &Ddns) -> &rfc2136::Server {
    match &ddns.protocol {
        Protocol::Rfc2136(server) => server,
        Protocol::Dyndns2(_) => panic!("not rfc2136: {ddns:?}"),
    }
}

fn dyndns2(ddns: &Ddns) -> &dyndns2::Account {
    match &ddns.protocol {
        Protocol::Dyndns2(account) => account,
        Protocol::Rfc2136(_) => panic!("not dyndns2: {ddns:?}"),
    }
}

#[test]
fn a_section_compiles_with_defaults_and_a_lower_case_name() {
    let ddns = file(GOOD).compile().expect("valid");
    let server = rfc2136(&ddns);
    assert_eq!(server.addr, "198.51.100.53:53".parse().expect("addr"));
    assert_eq!(ddns.server(), "198.51.100.53:53");
    assert_eq!(ddns.name, "home.example.test");
    assert_eq!(server.key.secret, b"sixteen byte key");
    assert_eq!((server.ttl, ddns.interval), (60, Duration::from_hours(1)));
    // The secret stays out of debug output (and so of logs), as written and as read.
    assert!(!format!("{ddns:?}").contains("c2l4"), "{ddns:?}");
    assert!(!format!("{:?}", server.key).contains("sixteen"));
    let written = file(GOOD);
    assert!(!format!("{written:?}").contains("c2l4"), "{written:?}");
}

#[test]
fn each_mistake_names_its_key() {
    let wrong = |from: &str, to: &str| file(&GOOD.replace(from, to)).compile().expect_err(to).1;
    assert_eq!(wrong("rfc2136", "dyndns9"), "provider");
    assert_eq!(wrong("198.51.100.53", "ns1.example.test"), "server");
    assert_eq!(wrong("Home.example.test.", "home.example.org"), "name");
    assert_eq!(wrong("Home.example.test.", "a..b"), "name");
    assert_eq!(
        wrong("c2l4dGVlbiBieXRlIGtleQ==", "not base64!"),
        "key_secret"
    );
    let neither = GOOD.replace("key_secret = \"c2l4dGVlbiBieXRlIGtleQ==\"", "");
    assert_eq!(
        file(&neither).compile().expect_err("no key").1,
        "key_secret"
    );
    assert_eq!(wrong("zone = \"example.test\"", ""), "zone");
    assert_eq!(wrong("key_name = \"portfwd\"", ""), "key_name");
    // A dyndns2 key does nothing here: named rather than ignored.
    assert_eq!(wrong("provider", "username = \"me\"\nprovider"), "username");
}

#[test]
fn a_key_file_may_hold_the_secret_or_a_bind_key_clause() {
    let dir = std::env::temp_dir().join(format!("portfwd-ddns-key-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let clause = dir.join("bind.key");
    std::fs::write(
        &clause,
        "key \"portfwd\" {\n\talgorithm hmac-sha256;\n\tsecret \"c2l4dGVlbiBieXRlIGtleQ==\";\n};\n",
    )
    .expect("write");
    let bare = dir.join("bare.key");
    std::fs::write(&bare, "c2l4dGVlbiBieXRlIGtleQ==\n").expect("write");
    for path in [&clause, &bare] {
        let text = GOOD.replace(
            "key_secret = \"c2l4dGVlbiBieXRlIGtleQ==\"",
            &format!("key_file = \"{}\"", path.display()),
        );
        let ddns = file(&text).compile().expect("valid");
        assert_eq!(
            rfc2136(&ddns).key.secret,
            b"sixteen byte key",
            "{}",
            path.display()
        );
    }
    std::fs::remove_dir_all(dir).expect("cleanup");
}

const DYNDNS2: &str = r#"
provider = "dyndns2"
server = "https://members.dyndns.org"
name = "Home.dyndns.test."
username = "owner"
password = "pass word:1"
"#;

#[test]
fn a_dyndns2_section_compiles_with_the_default_path() {
    let ddns = file(DYNDNS2).compile().expect("valid");
    let account = dyndns2(&ddns);
    assert_eq!(ddns.name, "home.dyndns.test");
    assert!(account.url.tls);
    assert_eq!(account.url.authority, "members.dyndns.org:443");
    assert_eq!(account.url.path, "/nic/update");
    assert_eq!(ddns.server(), "https://members.dyndns.org/nic/update");
    assert_eq!(
        (account.username.as_str(), account.password.expose()),
        ("owner", "pass word:1")
    );
    // A path given is kept; plain http on another port.
    let ddns = file(&DYNDNS2.replace(
        "https://members.dyndns.org",
        "http://198.51.100.2:8245/update.php?system=dyndns",
    ))
    .compile()
    .expect("valid");
    let account = dyndns2(&ddns);
    assert!(!account.url.tls);
    assert_eq!(account.url.authority, "198.51.100.2:8245");
    assert_eq!(account.url.path, "/update.php?system=dyndns");
}

#[test]
fn the_password_is_nowhere_but_in_the_request() {
    let written = file(DYNDNS2);
    let ddns = written.clone().compile().expect("valid");
    for shown in [format!("{written:?}"), format!("{ddns:?}"), ddns.server()] {
        assert!(!shown.contains("pass word"), "{shown}");
    }
    assert_eq!(format!("{:?}", dyndns2(&ddns).password), "<redacted>");
}

#[test]
fn each_dyndns2_mistake_names_its_key() {
    let wrong = |from: &str, to: &str| file(&DYNDNS2.replace(from, to)).compile().expect_err(to);
    let scheme = wrong("https://", "ftp://");
    assert_eq!(scheme.1, "server");
    assert!(scheme.0.contains("https://"), "{}", scheme.0);
    assert_eq!(
        wrong("members.dyndns.org", "members.dyndns.org:99999").1,
        "server"
    );
    assert_eq!(
        wrong("members.dyndns.org", "me:pw@members.dyndns.org").1,
        "server"
    );
    assert_eq!(wrong("Home.dyndns.test.", "a,b.dyndns.test").1, "name");
    assert_eq!(wrong("Home.dyndns.test.", "a..b").1, "name");
    assert_eq!(wrong("username = \"owner\"", "").1, "username");
    assert_eq!(wrong("\"owner\"", "\"own:er\"").1, "username");
    assert_eq!(wrong("password = \"pass word:1\"", "").1, "password");
    assert_eq!(wrong("\"pass word:1\"", "\"\"").1, "password");
    let both = DYNDNS2.replace("password =", "password_file = \"/nonexistent\"\npassword =");
    assert_eq!(file(&both).compile().expect_err("both").1, "password");
    let unreadable = DYNDNS2.replace(
        "password = \"pass word:1\"",
        "password_file = \"/nonexistent\"",
    );
    assert_eq!(
        file(&unreadable).compile().expect_err("unreadable").1,
        "password_file"
    );
    // rfc2136 keys do nothing here: named rather than ignored.
    for key in [
        "zone = \"x.test\"",
        "key_name = \"k\"",
        "key_secret = \"a2V5\"",
        "ttl = 60",
    ] {
        let name = key.split(' ').next().expect("key");
        assert_eq!(wrong("provider", &format!("{key}\nprovider")).1, name);
    }
}

#[test]
fn a_password_file_is_read_without_its_newline() {
    let dir = std::env::temp_dir().join(format!("portfwd-ddns-password-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let path = dir.join("password");
    std::fs::write(&path, " secret with blanks \r\n").expect("write");
    let text = DYNDNS2.replace(
        "password = \"pass word:1\"",
        &format!("password_file = \"{}\"", path.display()),
    );
    let ddns = file(&text).compile().expect("valid");
    assert_eq!(dyndns2(&ddns).password.expose(), " secret with blanks ");
    std::fs::remove_dir_all(dir).expect("cleanup");
}
