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

#[test]
fn a_section_compiles_with_defaults_and_a_lower_case_name() {
    let ddns = file(GOOD).compile().expect("valid");
    assert_eq!(ddns.server, "198.51.100.53:53".parse().expect("addr"));
    assert_eq!(ddns.name, "home.example.test");
    assert_eq!(ddns.key.secret, b"sixteen byte key");
    assert_eq!((ddns.ttl, ddns.interval), (60, Duration::from_hours(1)));
    // The secret stays out of debug output (and so of logs).
    assert!(!format!("{ddns:?}").contains("c2l4"), "{ddns:?}");
    assert!(!format!("{:?}", ddns.key).contains("sixteen"));
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
        assert_eq!(ddns.key.secret, b"sixteen byte key", "{}", path.display());
    }
    std::fs::remove_dir_all(dir).expect("cleanup");
}
