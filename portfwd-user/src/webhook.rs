//! The optional webhook: an HTTP POST of the event (JSON, as the API shows it) when a share is
//! switched on, the way a FRITZ!Box push service mails a change notice.
//!
//! The table task hands events over through a bounded queue without waiting
//! ([`crate::events::EventLog::set_webhook`]); this task posts them one at a time, each with a
//! 5 s limit, and logs a failure. A slow or dead receiver therefore delays nothing but later
//! notices, and a full queue drops notices (with a warning), never a change.
//!
//! Only `http://` URLs: the TLS client dynamic DNS uses is not wired in here. Point it at a
//! relay on the box or the LAN for anything that needs HTTPS.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper_util::rt::TokioIo;
use tokio::sync::mpsc;

use crate::events::Event;

/// How long one POST may take, connect to response.
const TIMEOUT: Duration = Duration::from_secs(5);
/// Notices queued while one is being posted.
pub const QUEUE: usize = 64;

pub use crate::url::Url;

/// Reads a webhook URL: `http://` only.
pub fn parse_url(s: &str) -> Result<Url, String> {
    let url: Url = s.parse()?;
    if url.tls {
        return Err(format!(
            "`{s}` is not an http:// URL (webhooks are posted over plain HTTP: use a relay for https)"
        ));
    }
    Ok(url)
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
    fn only_http_urls() {
        let url = parse_url("http://10.0.0.2:8000/hook?x=1").expect("url");
        assert_eq!(url.path, "/hook?x=1");
        assert!(parse_url("https://x").expect_err("tls").contains("relay"));
    }
}
