//! The optional webhook: an HTTP POST of the event (JSON, as the API shows it) when a share is
//! switched on, the way a FRITZ!Box push service mails a change notice.
//!
//! The table task hands events over through a bounded queue without waiting
//! ([`crate::events::EventLog::set_webhook`]); this task posts them one at a time, each with a
//! 5 s limit, and logs a failure. A slow or dead receiver therefore delays nothing but later
//! notices, and a full queue drops notices (with a warning), never a change.
//!
//! Only `http://` URLs: the daemon carries no TLS stack. Point it at a relay on the box or the
//! LAN for anything that needs HTTPS.

use std::{fmt, str::FromStr, time::Duration};

use bytes::Bytes;
use http_body_util::Full;
use hyper_util::rt::TokioIo;
use tokio::sync::mpsc;

use crate::events::Event;

/// How long one POST may take, connect to response.
const TIMEOUT: Duration = Duration::from_secs(5);
/// Notices queued while one is being posted.
pub const QUEUE: usize = 64;

/// A parsed `http://HOST[:PORT][/PATH]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Url {
    /// `host:port`, to connect to.
    pub authority: String,
    pub host: String,
    pub path: String,
}

impl FromStr for Url {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let rest = s.strip_prefix("http://").ok_or_else(|| {
            format!("`{s}` is not an http:// URL (the daemon speaks no TLS: use a relay for https)")
        })?;
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
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
            let port = match after {
                "" => 80,
                after => after
                    .strip_prefix(':')
                    .and_then(|p| p.parse::<u16>().ok())
                    .ok_or_else(bad_port)?,
            };
            (&authority[..addr.len() + 2], port)
        } else {
            let (host, port) = match authority.rsplit_once(':') {
                Some((host, port)) => (host, port.parse::<u16>().map_err(|_| bad_port())?),
                None => (authority, 80),
            };
            if host.is_empty() || host.contains([':', '[', ']']) {
                return Err(format!(
                    "`{s}` has no usable host (an IPv6 address goes in brackets)"
                ));
            }
            (host, port)
        };
        Ok(Self {
            authority: format!("{host}:{port}"),
            host: host.to_owned(),
            path: path.to_owned(),
        })
    }
}

impl fmt::Display for Url {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "http://{}{}", self.authority, self.path)
    }
}

/// Why a notice was not delivered.
#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    #[error("connecting to {0}")]
    Connect(String, #[source] std::io::Error),
    #[error("HTTP exchange with {0}")]
    Http(String, #[source] hyper::Error),
    #[error("{0} did not answer within {TIMEOUT:?}")]
    Timeout(String),
    #[error("{0} is not a valid request target")]
    Target(String),
    #[error("{0} answered {1}")]
    Status(String, hyper::StatusCode),
}

/// Posts the events of `queue` to `url` until the queue closes.
pub async fn run(url: Url, mut queue: mpsc::Receiver<Event>) {
    while let Some(event) = queue.recv().await {
        match tokio::time::timeout(TIMEOUT, post(&url, &event)).await {
            Ok(Ok(())) => tracing::debug!("webhook {url}: event {} delivered", event.id),
            Ok(Err(err)) => tracing::warn!(
                "webhook: event {} not delivered: {}",
                event.id,
                crate::error_chain(&err)
            ),
            Err(_) => tracing::warn!(
                "webhook: event {} not delivered: {}",
                event.id,
                WebhookError::Timeout(url.to_string())
            ),
        }
    }
}

async fn post(url: &Url, event: &Event) -> Result<(), WebhookError> {
    let stream = tokio::net::TcpStream::connect(&url.authority)
        .await
        .map_err(|e| WebhookError::Connect(url.authority.clone(), e))?;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| WebhookError::Http(url.to_string(), e))?;
    let connection = tokio::spawn(connection);
    // Serialising plain data cannot fail.
    let body = serde_json::to_vec(event).unwrap_or_default();
    let request = hyper::Request::post(url.path.as_str())
        .header(hyper::header::HOST, url.host.as_str())
        .header(hyper::header::CONTENT_TYPE, "application/json")
        .header(
            hyper::header::USER_AGENT,
            concat!("portfwd/", env!("CARGO_PKG_VERSION")),
        )
        .body(Full::new(Bytes::from(body)))
        .map_err(|_| WebhookError::Target(url.to_string()))?;
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| WebhookError::Http(url.to_string(), e))?;
    connection.abort();
    if response.status().is_success() {
        Ok(())
    } else {
        Err(WebhookError::Status(url.to_string(), response.status()))
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
        let url: Url = "http://relay.lan".parse().expect("url");
        assert_eq!(
            (url.authority.as_str(), url.path.as_str()),
            ("relay.lan:80", "/")
        );
        assert!(
            "https://x"
                .parse::<Url>()
                .expect_err("tls")
                .contains("relay")
        );
        assert!("http://".parse::<Url>().is_err());
        assert!("http://a:b/".parse::<Url>().is_err());
        assert!("http://a/b c".parse::<Url>().is_err());
        let url: Url = "http://[::1]:8080/x".parse().expect("url");
        assert_eq!(
            (url.host.as_str(), url.authority.as_str()),
            ("[::1]", "[::1]:8080")
        );
        let url: Url = "http://[::1]".parse().expect("url");
        assert_eq!(url.authority, "[::1]:80");
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
        ] {
            assert!(bad.parse::<Url>().is_err(), "{bad}");
        }
        for good in [
            "http://relay.lan",
            "http://10.0.0.2:8000/hook",
            "http://[fe80::1]/x",
        ] {
            let url: Url = good.parse().expect("url");
            assert_eq!(url.to_string().parse::<Url>(), Ok(url), "{good}");
        }
    }
}
