use std::net::{Ipv4Addr, SocketAddr};

use tokio::{
    io::{AsyncReadExt as _, AsyncWriteExt as _},
    net::TcpListener,
};

use super::*;

const SENT: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 1);

fn account(server: &str) -> Account {
    Account {
        url: Url::parse(server, PATH).expect("url"),
        username: "owner".into(),
        password: Secret::new("pass word:1".into()),
    }
}

#[test]
fn the_request_is_a_get_of_the_path_with_basic_auth_and_an_agent() {
    let request = request(
        &account("https://members.dyndns.org"),
        "home.example.test",
        SENT,
    )
    .expect("request");
    assert_eq!(request.method(), hyper::Method::GET);
    assert_eq!(
        request.uri().to_string(),
        "/nic/update?hostname=home.example.test&myip=198.51.100.1"
    );
    let headers = request.headers();
    assert_eq!(headers[header::HOST], "members.dyndns.org");
    // base64("owner:pass word:1"): the password's own colon is fine, only the user's is not.
    assert_eq!(
        headers[header::AUTHORIZATION],
        "Basic b3duZXI6cGFzcyB3b3JkOjE="
    );
    assert!(headers[header::AUTHORIZATION].is_sensitive());
    assert!(
        headers[header::USER_AGENT]
            .to_str()
            .expect("ascii")
            .starts_with("portfwd/")
    );
    // hyper's Debug of the request hides the sensitive header.
    let shown = format!("{request:?}");
    assert!(!shown.contains("b3duZXI6"), "{shown}");
}

#[test]
fn the_name_is_escaped_and_a_query_in_the_url_is_kept() {
    assert_eq!(escape("home.example-1.test"), "home.example-1.test");
    assert_eq!(escape("a&b=c d/é"), "a%26b%3Dc%20d%2F%C3%A9");
    let request = request(
        &account("http://198.51.100.2:8245/update.php?system=dyndns"),
        "x&myip=1.2.3.4",
        SENT,
    )
    .expect("request");
    assert_eq!(
        request.uri().to_string(),
        "/update.php?system=dyndns&hostname=x%26myip%3D1.2.3.4&myip=198.51.100.1"
    );
    assert_eq!(request.headers()[header::HOST], "198.51.100.2:8245");
}

#[test]
fn good_and_nochg_are_successes_that_say_which() {
    let ok = StatusCode::OK;
    let good = check_answer(ok, b"good 198.51.100.1\n", SENT).expect("good");
    assert_eq!((good.code(), good.result(SENT).as_str()), ("good", "good"));
    let nochg = check_answer(ok, b"nochg 198.51.100.1", SENT).expect("nochg");
    assert_eq!((nochg.code(), nochg.unchanged), ("nochg", true));
    // Some providers leave the address out, or add blank lines first.
    assert_eq!(
        check_answer(ok, b"\r\n  good\r\n", SENT)
            .expect("good")
            .address,
        None
    );
    let elsewhere = check_answer(ok, b"good 203.0.113.9", SENT).expect("good");
    assert_eq!(
        elsewhere.result(SENT),
        "good, but the provider set 203.0.113.9"
    );
    // `good 127.0.0.1`: Dyn's way of saying the update was ignored.
    assert!(matches!(
        check_answer(ok, b"good 127.0.0.1", SENT),
        Err(Error::Ignored)
    ));
    assert!(check_answer(ok, b"good 127.0.0.1", Ipv4Addr::LOCALHOST).is_ok());
}

#[test]
fn every_refusal_is_read_with_its_meaning() {
    for code in Code::ALL {
        let body = format!("{}\n", code.as_str());
        let err = check_answer(StatusCode::OK, body.as_bytes(), SENT).expect_err(&body);
        assert!(matches!(err, Error::Refused(c) if c == code), "{err:?}");
        let text = err.to_string();
        assert!(
            text.contains(code.as_str()) && text.contains(code.meaning()),
            "{text}"
        );
        assert_eq!(
            err.needs_owner(),
            !matches!(code, Code::Dnserr | Code::Emergency),
            "{code:?}"
        );
    }
    assert_eq!(
        check_answer(StatusCode::OK, b"badauth", SENT)
            .expect_err("badauth")
            .to_string(),
        "the provider answered badauth (the username or password is wrong)"
    );
    assert!(matches!(
        check_answer(StatusCode::OK, b"!donator", SENT),
        Err(Error::Refused(Code::NotDonator))
    ));
    assert!(matches!(
        check_answer(StatusCode::OK, b"911", SENT),
        Err(Error::Refused(Code::Emergency))
    ));
}

#[test]
fn other_answers_and_statuses_are_failures_that_name_them() {
    let err = check_answer(StatusCode::OK, b"", SENT).expect_err("empty");
    assert!(
        matches!(err, Error::Unexpected(ref t) if t.is_empty()),
        "{err:?}"
    );
    let long = "x".repeat(1000);
    let err = check_answer(StatusCode::OK, long.as_bytes(), SENT).expect_err("long");
    assert!(
        err.to_string().len() < 150,
        "quoted at most 64 characters: {err}"
    );
    // Found by the dyndns2 fuzz target: control characters, quoted with `{:?}`, took ten
    // bytes each (`\u{1a}`), so 64 of them made a 640-byte log line. Quoted plainly now.
    let err =
        check_answer(StatusCode::OK, b"ba\x1a\x1a\x1a\xc3\xa9dauth", SENT).expect_err("control");
    assert_eq!(
        err.to_string(),
        "the provider answered `ba????dauth`, not a dyndns2 answer"
    );
    let err = check_answer(StatusCode::OK, b"<html>oops</html>", SENT).expect_err("html");
    assert!(err.to_string().contains("<html>oops</html>"), "{err}");
    assert!(!err.needs_owner());
    // A status other than 2xx fails even with `good`, and names the status.
    let err =
        check_answer(StatusCode::SERVICE_UNAVAILABLE, b"good 198.51.100.1", SENT).expect_err("503");
    assert_eq!(
        err.to_string(),
        "the provider answered HTTP 503 Service Unavailable"
    );
    assert!(!err.needs_owner());
    let err = check_answer(StatusCode::UNAUTHORIZED, b"badauth", SENT).expect_err("401");
    assert_eq!(
        err.to_string(),
        "the provider answered HTTP 401 Unauthorized: badauth (the username or password is wrong)"
    );
    assert!(err.needs_owner());
    let err = check_answer(StatusCode::NOT_FOUND, b"", SENT).expect_err("404");
    assert!(err.needs_owner(), "a wrong path");
    let err = check_answer(StatusCode::TOO_MANY_REQUESTS, b"", SENT).expect_err("429");
    assert!(!err.needs_owner());
}

/// A listener on a free loopback port, and its address.
async fn listener() -> (TcpListener, SocketAddr) {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    (listener, addr)
}

/// A one-shot HTTP server on loopback: answers the first request with `response` and hands
/// the request's head back.
async fn serve_once(response: Vec<u8>) -> (SocketAddr, tokio::task::JoinHandle<String>) {
    let (listener, addr) = listener().await;
    let task = tokio::spawn(async move {
        let (mut stream, _) = listener.accept().await.expect("accept");
        let mut head = Vec::new();
        let mut buf = [0u8; 1024];
        while !head.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = stream.read(&mut buf).await.expect("read");
            if n == 0 {
                break;
            }
            head.extend_from_slice(&buf[..n]);
        }
        let _ = stream.write_all(&response).await;
        let _ = stream.shutdown().await;
        String::from_utf8_lossy(&head).into_owned()
    });
    (addr, task)
}

#[tokio::test]
async fn an_update_over_http_sends_the_request_and_reads_the_answer() {
    let (addr, server) =
        serve_once(b"HTTP/1.1 200 OK\r\nContent-Length: 18\r\n\r\nnochg 198.51.100.1".to_vec())
            .await;
    let account = account(&format!("http://{addr}"));
    let answer = send(&account, "home.example.test", SENT)
        .await
        .expect("answer");
    assert!(answer.unchanged);
    let head = server.await.expect("server");
    assert!(
        head.starts_with(
            "GET /nic/update?hostname=home.example.test&myip=198.51.100.1 HTTP/1.1\r\n"
        ),
        "{head}"
    );
    let head = head.to_ascii_lowercase();
    assert!(
        head.contains("authorization: basic b3duzxi6cgfzcyb3b3jkoje="),
        "{head}"
    );
    assert!(head.contains(&format!("host: {addr}\r\n")), "{head}");
    assert!(head.contains("user-agent: portfwd/"), "{head}");
}

#[tokio::test]
async fn an_answer_over_4_kib_is_refused_unread() {
    let mut response = b"HTTP/1.1 200 OK\r\nContent-Length: 5000\r\n\r\ngood ".to_vec();
    response.resize(response.len() + 4995, b'x');
    let (addr, _server) = serve_once(response).await;
    let err = send(&account(&format!("http://{addr}")), "h.example.test", SENT)
        .await
        .expect_err("too long");
    assert!(matches!(err, Error::TooLong), "{err:?}");
}

#[tokio::test]
async fn a_server_that_is_not_there_is_a_connect_error() {
    // Bound, then closed: nothing listens on the port.
    let addr = listener().await.1;
    let err = send(&account(&format!("http://{addr}")), "h.example.test", SENT)
        .await
        .expect_err("refused");
    assert!(matches!(err, Error::Connect(..)), "{err:?}");
    assert!(!err.needs_owner());
}

#[tokio::test]
async fn https_speaks_tls_first() {
    // A plain HTTP server where TLS is expected: it reads the ClientHello and answers in
    // plain HTTP, which is no TLS record. Nothing went out in clear but the ClientHello.
    let (listener, addr) = listener().await;
    let server = tokio::spawn(async move {
        let (mut stream, _) = listener.accept().await.expect("accept");
        let mut hello = vec![0u8; 16 * 1024];
        let n = stream.read(&mut hello).await.expect("read");
        hello.truncate(n);
        let _ = stream
            .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\ngood")
            .await;
        hello
    });
    let err = send(&account(&format!("https://{addr}")), "h.example.test", SENT)
        .await
        .expect_err("not TLS");
    assert!(matches!(err, Error::Tls(..)), "{err:?}");
    let hello = server.await.expect("server");
    assert_eq!(hello.first(), Some(&0x16), "a TLS handshake record");
    assert!(
        !hello.windows(4).any(|w| w == b"pass"),
        "no password in clear"
    );
}
