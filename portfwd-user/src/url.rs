//! `http://` and `https://` URLs as the daemon's own HTTP clients take them (the webhook,
//! dynamic DNS over dyndns2): `SCHEME://HOST[:PORT][/PATH]`, with the host a name, an IPv4
//! address or a bracketed IPv6 address. No user info (credentials have settings of their own,
//! so that they never show where a URL is shown), no fragment.

use std::{fmt, str::FromStr};

/// A parsed `http://` or `https://` URL.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Url {
    /// `https://`: the exchange goes over TLS.
    pub tls: bool,
    /// `host:port`, to connect to.
    pub authority: String,
    /// The host as written (an IPv6 address with its brackets).
    pub host: String,
    pub port: u16,
    /// The path, with its query if it has one; the caller's default when the URL has none.
    pub path: String,
}

impl Url {
    /// Reads `s`, with `default_path` when it has no path.
    pub fn parse(s: &str, default_path: &str) -> Result<Self, String> {
        let (tls, rest) = if let Some(rest) = s.strip_prefix("http://") {
            (false, rest)
        } else if let Some(rest) = s.strip_prefix("https://") {
            (true, rest)
        } else {
            return Err(format!("`{s}` is not an http:// or https:// URL"));
        };
        let default_port = if tls { 443 } else { 80 };
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, default_path),
        };
        if authority.is_empty() || authority.contains('@') {
            return Err(format!(
                "`{s}` has no host (or has user info, which is not supported)"
            ));
        }
        if path.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(format!(
                "`{s}` has spaces or control characters in its path"
            ));
        }
        let bad_port = || format!("`{s}` has a bad port");
        // An IPv6 literal is bracketed, and only its brackets may hold colons or brackets.
        let (host, port) = if let Some(rest) = authority.strip_prefix('[') {
            let (addr, after) = rest
                .split_once(']')
                .ok_or_else(|| format!("`{s}` has an unclosed `[`"))?;
            if addr.parse::<std::net::Ipv6Addr>().is_err() {
                return Err(format!("`{s}`: `[{addr}]` is not an IPv6 address"));
            }
            let port = match after {
                "" => default_port,
                after => after
                    .strip_prefix(':')
                    .and_then(|p| p.parse::<u16>().ok())
                    .ok_or_else(bad_port)?,
            };
            (&authority[..addr.len() + 2], port)
        } else {
            let (host, port) = match authority.rsplit_once(':') {
                Some((host, port)) => (host, port.parse::<u16>().map_err(|_| bad_port())?),
                None => (authority, default_port),
            };
            // A name or an IPv4 address: nothing a resolver or a `Host` header would read
            // otherwise (`?`, `#`, `%`...).
            let usable = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_');
            if host.is_empty() || !host.bytes().all(usable) {
                return Err(format!(
                    "`{s}` has no usable host (a name or an address; an IPv6 address goes in brackets)"
                ));
            }
            (host, port)
        };
        Ok(Self {
            tls,
            authority: format!("{host}:{port}"),
            host: host.to_owned(),
            port,
            path: path.to_owned(),
        })
    }

    /// The `Host` header: the host, and the port unless it is the scheme's own (RFC 9110
    /// section 7.2).
    #[must_use]
    pub fn host_header(&self) -> String {
        if self.port == self.default_port() {
            self.host.clone()
        } else {
            self.authority.clone()
        }
    }

    const fn default_port(&self) -> u16 {
        if self.tls { 443 } else { 80 }
    }
}

impl FromStr for Url {
    type Err = String;

    /// Reads `s`, with the path `/` when it has none.
    fn from_str(s: &str) -> Result<Self, String> {
        Self::parse(s, "/")
    }
}

impl fmt::Display for Url {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = if self.tls { "https" } else { "http" };
        write!(f, "{scheme}://{}{}", self.host_header(), self.path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        let url: Url = "http://10.0.0.2:8000/hook?x=1".parse().expect("url");
        assert_eq!(url.authority, "10.0.0.2:8000");
        assert_eq!(url.path, "/hook?x=1");
        assert!(!url.tls);
        let url: Url = "http://relay.lan".parse().expect("url");
        assert_eq!(
            (url.authority.as_str(), url.path.as_str()),
            ("relay.lan:80", "/")
        );
        assert!("ftp://x".parse::<Url>().is_err());
        assert!("http://".parse::<Url>().is_err());
        assert!("http://a:b/".parse::<Url>().is_err());
        assert!("http://a/b c".parse::<Url>().is_err());
        assert!("https://user:pw@a/".parse::<Url>().is_err(), "user info");
        let url: Url = "http://[::1]:8080/x".parse().expect("url");
        assert_eq!(
            (url.host.as_str(), url.authority.as_str()),
            ("[::1]", "[::1]:8080")
        );
        let url: Url = "http://[::1]".parse().expect("url");
        assert_eq!(url.authority, "[::1]:80");
    }

    #[test]
    fn https_has_port_443_and_the_default_path_is_the_callers() {
        let url = Url::parse("https://members.dyndns.org", "/nic/update").expect("url");
        assert!(url.tls);
        assert_eq!(url.authority, "members.dyndns.org:443");
        assert_eq!(url.path, "/nic/update");
        assert_eq!(url.host_header(), "members.dyndns.org");
        assert_eq!(url.to_string(), "https://members.dyndns.org/nic/update");
        // A path given is kept, even `/`.
        let url = Url::parse("http://198.51.100.2:8245/", "/nic/update").expect("url");
        assert_eq!(url.path, "/");
        assert_eq!(url.host_header(), "198.51.100.2:8245");
    }

    #[test]
    fn a_url_reads_back_as_written() {
        // Found by the ids fuzz target: `http://]` read as host `]`, was written
        // `http://]:80/`, and that read as host `]:80`.
        for bad in [
            "http://]",
            "http://]:80/",
            "http://a:b:80/",
            "http://:80/",
            "http://[::1/",
            "http://[xyz]/",
            "http://host?x=1",
            "http://a%20b/",
        ] {
            assert!(bad.parse::<Url>().is_err(), "{bad}");
        }
        for good in [
            "http://relay.lan",
            "http://10.0.0.2:8000/hook",
            "http://[fe80::1]/x",
            "https://[fe80::1]:443/x",
            "https://relay.lan:80/",
        ] {
            let url: Url = good.parse().expect("url");
            assert_eq!(url.to_string().parse::<Url>(), Ok(url), "{good}");
        }
    }
}
