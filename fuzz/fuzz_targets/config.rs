//! The config file: `Config::load` on any TOML (written to a file, read as the daemon reads
//! it), with the interfaces also given as flags so that a file without them is checked through.
//! What it accepts has shares whose text form reads back the same, at most one share per id,
//! no port 0 and a webhook URL that reads back the same.
#![no_main]

use std::{collections::BTreeSet, path::PathBuf, sync::OnceLock};

use libfuzzer_sys::fuzz_target;
use portfwd::config::{Config, Overrides};

/// This process's config file, on tmpfs where there is one.
fn path() -> &'static PathBuf {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| portfwd_fuzz::scratch_dir("config").join("portfwd.toml"))
}

fuzz_target!(|data: &[u8]| {
    std::fs::write(path(), data).expect("write the config file");
    let Ok(config) = Config::load(Overrides {
        wan: Some("wan0".into()),
        lan: Some("lan0".into()),
        file: Some(path().clone()),
        ..Overrides::default()
    }) else {
        return;
    };
    let mut ids = BTreeSet::new();
    for share in &config.shares {
        assert!(ids.insert(share.id), "{} twice", share.id);
        assert!(
            share.id.ext_port != 0 && share.internal.port() != 0,
            "{share}"
        );
        let text = share.to_string();
        let back: portfwd::share::ShareSpec =
            text.parse().unwrap_or_else(|e| panic!("{text}: {e}"));
        assert_eq!((back.id, back.internal), (share.id, share.internal));
    }
    if let Some(url) = &config.api.webhook {
        assert_eq!(url.to_string().parse().ok().as_ref(), Some(url));
    }
    // A reload of the same file gives the same shares.
    let again = config.reload_shares(&[]).expect("reload");
    assert_eq!(again, config.shares);
});
