//! The CLI's side of the REST API: one HTTP/1.1 request per call over a fresh connection to
//! the daemon's `--api` address, with the bearer token.
//!
//! Where the address and the token come from, first found wins: the `--api` / `--token` flags,
//! the `PORTFWD_API` / `PORTFWD_TOKEN` environment variables, then the default address
//! (`127.0.0.1:9780`) and the token file in the state directory (`--state-dir`,
//! `PORTFWD_STATE_DIR`, `/var/lib/portfwd`).

use std::{path::PathBuf, time::Duration};

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full, Limited};
use hyper::{Method, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::Value;

/// How long a request may take, connect to last byte, beyond any long poll it asks for.
const TIMEOUT: Duration = Duration::from_secs(15);
/// Largest answer read (a full share table is a few MiB).
const MAX_ANSWER: usize = 64 * 1024 * 1024;

/// Why a CLI command failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error(
        "cannot read the API token {path} (pass --token, set PORTFWD_TOKEN, or point --state-dir at the daemon's state directory)"
    )]
    Token {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot reach the portfwd API at {addr} (is `portfwd run` running there? see --api)")]
    Connect {
        addr: String,
        #[source]
        source: std::io::Error,
    },
    #[error("talking to the portfwd API at {addr}")]
    Http {
        addr: String,
        #[source]
        source: hyper::Error,
    },
    #[error("the portfwd API at {0} did not answer in time")]
    Timeout(String),
    #[error("the API answered {status}: {message}")]
    Api { status: StatusCode, message: String },
    #[error("the API's answer is not JSON")]
    Answer(#[source] serde_json::Error),
    #[error("{0}")]
    Usage(String),
}

/// Where the daemon's API is and how to get in.
#[derive(Clone, Debug)]
pub struct Client {
    pub addr: String,
    pub token: String,
}

impl Client {
    /// The client for `addr` with `token`, or the token read from `state_dir/api-token`.
    pub fn new(
        addr: String,
        token: Option<String>,
        state_dir: &std::path::Path,
    ) -> Result<Self, ClientError> {
        let token = if let Some(token) = token {
            token
        } else {
            let path = state_dir.join("api-token");
            std::fs::read_to_string(&path).map_err(|source| ClientError::Token { path, source })?
        };
        Ok(Self {
            addr,
            token: token.trim().to_owned(),
        })
    }

    /// Sends one request; the JSON answer of a 2xx, else the API's error message.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
        extra_wait: Duration,
    ) -> Result<Value, ClientError> {
        tokio::time::timeout(TIMEOUT + extra_wait, self.exchange(method, path, body))
            .await
            .map_err(|_| ClientError::Timeout(self.addr.clone()))?
    }

    async fn exchange(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Value, ClientError> {
        let http = |source| ClientError::Http {
            addr: self.addr.clone(),
            source,
        };
        let stream = tokio::net::TcpStream::connect(&self.addr)
            .await
            .map_err(|source| ClientError::Connect {
                addr: self.addr.clone(),
                source,
            })?;
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(http)?;
        let connection = tokio::spawn(connection);
        let bytes = body.map_or_else(Vec::new, |b| serde_json::to_vec(b).unwrap_or_default());
        let request = hyper::Request::builder()
            .method(method)
            .uri(path)
            .header(hyper::header::HOST, self.addr.as_str())
            .header(
                hyper::header::AUTHORIZATION,
                format!("Bearer {}", self.token),
            )
            .header(hyper::header::CONTENT_TYPE, "application/json")
            .body(Full::new(Bytes::from(bytes)))
            .map_err(|e| ClientError::Usage(format!("bad request path {path}: {e}")))?;
        let response = sender.send_request(request).await.map_err(http)?;
        let status = response.status();
        let answer = Limited::new(response.into_body(), MAX_ANSWER)
            .collect()
            .await
            .map_err(|_| ClientError::Timeout(self.addr.clone()))?
            .to_bytes();
        connection.abort();
        if !status.is_success() {
            let message = serde_json::from_slice::<Value>(&answer)
                .ok()
                .and_then(|v| v["error"].as_str().map(str::to_owned))
                .unwrap_or_else(|| String::from_utf8_lossy(&answer).trim().to_owned());
            return Err(ClientError::Api { status, message });
        }
        serde_json::from_slice(&answer).map_err(ClientError::Answer)
    }
}
