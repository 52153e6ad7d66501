//! The dyndns2 protocol: the HTTP update Dyn defined and most dynamic DNS providers (No-IP,
//! dynu, many registrars' own) and clients (ddclient, inadyn) speak.
//!
//! One update is one HTTP/1.1 `GET PATH?hostname=NAME&myip=ADDRESS` with HTTP Basic auth and
//! a `User-Agent` that names portfwd and its version, over TLS for `https://` (rustls with
//! Mozilla's roots compiled in, so that a box without a CA bundle can check the provider's
//! certificate). The path is `/nic/update` unless the URL gives one. The exchange, connection
//! to the last byte of the answer, has 30 s, and at most 4 KiB of answer are read: a dyndns2
//! answer is one short line per name.
//!
//! The answer's first word decides (the protocol's own codes; Dyn's "Return Codes"):
//!
//! | answer | meaning | portfwd |
//! |---|---|---|
//! | `good ADDRESS` | the name was set | success |
//! | `nochg ADDRESS` | the name already had the address | success |
//! | `good 127.0.0.1` when another address was sent | the provider ignored the update | failure, retried |
//! | `badauth`, `!donator`, `notfqdn`, `nohost`, `numhost`, `abuse`, `badagent` | refused: something only the owner can change | failure, logged as an error, retried |
//! | `dnserr`, `911` | trouble at the provider | failure, retried |
//! | anything else, or an HTTP status other than 2xx | | failure, retried |
//!
//! Every failure is retried by the runner with its backoff (5 s doubling to an hour): Dyn asks
//! clients to stop after a refusal until the owner acts, but a refusal is often mended on the
//! provider's side (a host added, an account renewed), and an hour between attempts is no
//! burden on anyone. The password is a [`Secret`]: it goes into the `Authorization` header,
//! marked sensitive, and nowhere else.

use std::{
    fmt::{self, Write as _},
    net::{IpAddr, Ipv4Addr},
    sync::Arc,
    time::Duration,
};

use bytes::Bytes;
use http_body_util::{BodyExt as _, Empty, LengthLimitError, Limited};
use hyper::{Request, StatusCode, header};
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite};

use super::{FileDdns, Invalid, Secret};
use crate::url::Url;

/// The update's path when the URL gives none.
pub const PATH: &str = "/nic/update";
/// The most of an answer that is read.
pub const MAX_ANSWER: usize = 4096;
/// How long one update may take, connection to answer.
const TIMEOUT: Duration = Duration::from_secs(30);
/// Dyn asks for `company-device-version`; the program and its version name the client enough.
const USER_AGENT: &str = concat!("portfwd/", env!("CARGO_PKG_VERSION"));

/// The provider's endpoint and the account the updates are made with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Account {
    pub url: Url,
    pub username: String,
    pub password: Secret,
}

impl Account {
    /// The dyndns2 keys of `file` checked, for `name` (already a DNS name, lower case), and
    /// the password read.
    pub fn compile(file: &FileDdns, name: &str) -> Result<Self, Invalid> {
        let url = Url::parse(&file.server, PATH).map_err(|e| (e, "server"))?;
        if url.tls && server_name(&url).is_none() {
            return Err((
                format!("`{}` cannot be checked against a certificate", url.host),
                "server",
            ));
        }
        if name.contains(',') {
            // A list would get one answer line per name; portfwd keeps one name.
            return Err((format!("`{name}`: one name, not a list"), "name"));
        }
        let username = file.username.clone().ok_or_else(|| {
            (
                "missing: provider dyndns2 needs the account's `username`".to_owned(),
                "username",
            )
        })?;
        // RFC 7617 section 2: the user-id of Basic auth cannot hold a colon.
        if username.is_empty() || username.contains(':') || username.contains(char::is_control) {
            return Err((
                "expected a user name without `:` or control characters".to_owned(),
                "username",
            ));
        }
        let password = match (&file.password, &file.password_file) {
            (Some(password), None) => password.clone(),
            (None, Some(path)) => {
                let text = std::fs::read_to_string(path).map_err(|e| {
                    (
                        format!("cannot read {}: {e}", path.display()),
                        "password_file",
                    )
                })?;
                Secret::new(text.trim_end_matches(['\n', '\r']).to_owned())
            }
            _ => {
                return Err((
                    "give the password as password or password_file (one of them)".to_owned(),
                    "password",
                ));
            }
        };
        let at = if file.password_file.is_some() {
            "password_file"
        } else {
            "password"
        };
        if password.expose().is_empty() || password.expose().contains(char::is_control) {
            return Err((
                "the password is empty or has control characters".to_owned(),
                at,
            ));
        }
        let account = Self {
            url,
            username,
            password,
        };
        // What cannot make a request is refused now rather than at every update.
        request(&account, name, Ipv4Addr::UNSPECIFIED).map_err(|_| {
            (
                format!("`{}` does not make a valid request target", account.url),
                "server",
            )
        })?;
        Ok(account)
    }
}

/// `text` percent-encoded for a query value: everything but RFC 3986's unreserved characters.
#[must_use]
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(byte));
        } else {
            let _ = write!(out, "%{byte:02X}");
        }
    }
    out
}

/// The update request: `GET PATH?hostname=NAME&myip=ADDRESS` (after the URL's own query, if
/// it has one), with `Host`, Basic auth (marked sensitive, so that hyper's `Debug` hides it)
/// and `User-Agent`.
pub fn request(
    account: &Account,
    name: &str,
    address: Ipv4Addr,
) -> Result<Request<Empty<Bytes>>, hyper::http::Error> {
    let join = if account.url.path.contains('?') {
        '&'
    } else {
        '?'
    };
    let target = format!(
        "{}{join}hostname={}&myip={address}",
        account.url.path,
        escape(name)
    );
    let credentials = base64::Engine::encode(
        &base64::engine::general_purpose::STANDARD,
        format!("{}:{}", account.username, account.password.expose()),
    );
    let mut authorization = header::HeaderValue::try_from(format!("Basic {credentials}"))?;
    authorization.set_sensitive(true);
    Request::get(target)
        .header(header::HOST, account.url.host_header())
        .header(header::AUTHORIZATION, authorization)
        .header(header::USER_AGENT, USER_AGENT)
        .body(Empty::new())
}

/// A refusal or a failure the provider answered with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Code {
    Badauth,
    NotDonator,
    Notfqdn,
    Nohost,
    Numhost,
    Abuse,
    Badagent,
    Dnserr,
    /// `911`.
    Emergency,
}

impl Code {
    /// Every code, for tests and the fuzz target.
    pub const ALL: [Self; 9] = [
        Self::Badauth,
        Self::NotDonator,
        Self::Notfqdn,
        Self::Nohost,
        Self::Numhost,
        Self::Abuse,
        Self::Badagent,
        Self::Dnserr,
        Self::Emergency,
    ];

    /// The code as the provider writes it.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Badauth => "badauth",
            Self::NotDonator => "!donator",
            Self::Notfqdn => "notfqdn",
            Self::Nohost => "nohost",
            Self::Numhost => "numhost",
            Self::Abuse => "abuse",
            Self::Badagent => "badagent",
            Self::Dnserr => "dnserr",
            Self::Emergency => "911",
        }
    }

    /// What it means, in plain words.
    #[must_use]
    pub const fn meaning(self) -> &'static str {
        match self {
            Self::Badauth => "the username or password is wrong",
            Self::NotDonator => {
                "the update asked for a feature the account does not have (a paid option)"
            }
            Self::Notfqdn => "the name is not a fully qualified domain name",
            Self::Nohost => "the name is not in this account",
            Self::Numhost => "too many names in one update",
            Self::Abuse => "the name is blocked for abuse of the service",
            Self::Badagent => "the provider refuses this client",
            Self::Dnserr => "a DNS error at the provider",
            Self::Emergency => "trouble or maintenance at the provider",
        }
    }

    /// Whether only the owner can mend it (the account, the name, the password).
    #[must_use]
    pub const fn needs_owner(self) -> bool {
        !matches!(self, Self::Dnserr | Self::Emergency)
    }

    fn parse(word: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|code| code.as_str().eq_ignore_ascii_case(word))
    }
}

impl fmt::Display for Code {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.as_str(), self.meaning())
    }
}

/// A successful answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Answer {
    /// `nochg`: the name had the address already.
    pub unchanged: bool,
    /// The address the provider says it set, if it says.
    pub address: Option<IpAddr>,
}

impl Answer {
    /// `good` or `nochg`.
    #[must_use]
    pub const fn code(&self) -> &'static str {
        if self.unchanged { "nochg" } else { "good" }
    }

    /// For the status: the code, and the address the provider set when it is not `sent`.
    #[must_use]
    pub fn result(&self, sent: Ipv4Addr) -> String {
        match self.address {
            Some(other) if other != IpAddr::V4(sent) => {
                format!("{}, but the provider set {other}", self.code())
            }
            _ => self.code().to_owned(),
        }
    }
}

/// Why an update failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("connecting to {0}")]
    Connect(String, #[source] std::io::Error),
    #[error("TLS with {0}")]
    Tls(String, #[source] std::io::Error),
    #[error("`{0}` cannot be checked against a certificate")]
    ServerName(String),
    #[error("HTTP exchange with {0}")]
    Http(String, #[source] hyper::Error),
    #[error("the request cannot be made")]
    Request(#[source] hyper::http::Error),
    #[error("no answer from {0} within {secs} s", secs = TIMEOUT.as_secs())]
    Timeout(String),
    #[error("the answer is over {MAX_ANSWER} bytes")]
    TooLong,
    #[error("reading the answer")]
    Body(#[source] Box<dyn std::error::Error + Send + Sync>),
    #[error("the provider answered HTTP {status}{}", code.map_or_else(String::new, |c| format!(": {c}")))]
    Status {
        status: StatusCode,
        /// The code in the answer's body, if it has one.
        code: Option<Code>,
    },
    #[error("the provider answered {0}")]
    Refused(Code),
    #[error("the provider answered good 127.0.0.1: it ignored the update")]
    Ignored,
    /// The answer's first line as quoted: at most [`QUOTED`] characters, printable ASCII (the
    /// rest `?`), so that a log line or an event stays short and plain whatever came.
    #[error("the provider answered `{0}`, not a dyndns2 answer")]
    Unexpected(String),
}

impl Error {
    /// Whether only the owner can mend it: a refusal, or an HTTP status that says the URL,
    /// the request or its credentials are wrong (a redirection, 401, 403, 404...; not 408 or
    /// 429).
    #[must_use]
    pub fn needs_owner(&self) -> bool {
        match self {
            Self::Refused(code) => code.needs_owner(),
            Self::Status { status, code } => code.map_or(
                status.is_redirection()
                    || status.is_client_error()
                        && !matches!(
                            *status,
                            StatusCode::REQUEST_TIMEOUT | StatusCode::TOO_MANY_REQUESTS
                        ),
                Code::needs_owner,
            ),
            Self::ServerName(_) => true,
            _ => false,
        }
    }
}

/// The longest stretch of an unexpected answer quoted back.
pub const QUOTED: usize = 64;

/// The start of `line` as an error quotes it.
fn quote(line: &str) -> String {
    line.chars()
        .take(QUOTED)
        .map(|c| {
            if c == ' ' || c.is_ascii_graphic() {
                c
            } else {
                '?'
            }
        })
        .collect()
}

/// Reads the provider's answer to an update that sent `sent`: its HTTP status and body.
pub fn check_answer(status: StatusCode, body: &[u8], sent: Ipv4Addr) -> Result<Answer, Error> {
    let text = String::from_utf8_lossy(body);
    // One line per name; portfwd sends one name.
    let line = text.lines().map(str::trim).find(|l| !l.is_empty());
    let mut words = line.unwrap_or("").split_whitespace();
    let word = words.next().unwrap_or("");
    let address = words.next().and_then(|a| a.parse::<IpAddr>().ok());
    if !status.is_success() {
        return Err(Error::Status {
            status,
            code: Code::parse(word),
        });
    }
    let unchanged = match word.to_ascii_lowercase().as_str() {
        "good" => false,
        "nochg" => true,
        _ => {
            return Err(Code::parse(word).map_or_else(
                || Error::Unexpected(quote(line.unwrap_or(""))),
                Error::Refused,
            ));
        }
    };
    // Dyn: `good 127.0.0.1` is a success only for 127.0.0.1; otherwise the update was
    // ignored (a client that does not follow the protocol).
    if !unchanged && address == Some(IpAddr::V4(Ipv4Addr::LOCALHOST)) && sent != Ipv4Addr::LOCALHOST
    {
        return Err(Error::Ignored);
    }
    Ok(Answer { unchanged, address })
}

/// The name TLS checks the certificate against (a DNS name or an IP address).
fn server_name(url: &Url) -> Option<ServerName<'static>> {
    let host = url.host.trim_start_matches('[').trim_end_matches(']');
    ServerName::try_from(host.to_owned()).ok()
}

/// The TLS client: the ring provider, its safe protocol versions, Mozilla's roots. Built for
/// each update (one an hour or so): the roots are borrowed, nothing is parsed.
fn tls() -> Result<tokio_rustls::TlsConnector, rustls::Error> {
    let roots = rustls::RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_root_certificates(roots)
    .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(tokio_rustls::TlsConnector::from(Arc::new(config)))
}

/// Sends one update of `name` to `address` with `account` and reads the answer.
pub async fn send(account: &Account, name: &str, address: Ipv4Addr) -> Result<Answer, Error> {
    let url = &account.url;
    let request = request(account, name, address).map_err(Error::Request)?;
    let (status, body) = tokio::time::timeout(TIMEOUT, async {
        let tcp = tokio::net::TcpStream::connect(&url.authority)
            .await
            .map_err(|e| Error::Connect(url.authority.clone(), e))?;
        if url.tls {
            let server = server_name(url).ok_or_else(|| Error::ServerName(url.host.clone()))?;
            let connector =
                tls().map_err(|e| Error::Tls(url.authority.clone(), std::io::Error::other(e)))?;
            let stream = connector
                .connect(server, tcp)
                .await
                .map_err(|e| Error::Tls(url.authority.clone(), e))?;
            exchange(stream, request, url).await
        } else {
            exchange(tcp, request, url).await
        }
    })
    .await
    .map_err(|_| Error::Timeout(url.authority.clone()))??;
    check_answer(status, &body, address)
}

/// One request on a new connection over `stream`: the answer's status and (bounded) body.
async fn exchange<S>(
    stream: S,
    request: Request<Empty<Bytes>>,
    url: &Url,
) -> Result<(StatusCode, Bytes), Error>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let http = |e| Error::Http(url.to_string(), e);
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(http)?;
    let answer = async {
        let response = sender.send_request(request).await.map_err(http)?;
        let status = response.status();
        let body = Limited::new(response.into_body(), MAX_ANSWER)
            .collect()
            .await
            .map_err(|e| {
                if e.is::<LengthLimitError>() {
                    Error::TooLong
                } else {
                    Error::Body(e)
                }
            })?
            .to_bytes();
        Ok((status, body))
    };
    // The connection is driven here, not on a task of its own, so that the caller's timeout
    // ends it with the exchange; when it ends first, the answer has what it got.
    let mut answer = std::pin::pin!(answer);
    tokio::select! {
        biased;
        done = &mut answer => done,
        closed = connection => {
            closed.map_err(http)?;
            answer.await
        }
    }
}

#[cfg(test)]
mod tests;
