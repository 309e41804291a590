//! Client time limits through a real router on raw connections: `INCOMING_REQUEST_TIMEOUT` (408
//! for a body that does not arrive in time), `INCOMING_CONNECTION_TIMEOUT` (a connection with no
//! bytes either way is closed) and `SERVER_KEEP_ALIVE` (an idle keep-alive connection is closed).

mod support;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use serde_json::json;
use support::{Router, WorkDir, destinations, upstream};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

struct Setup {
    router: Router,
    _upstream: upstream::Upstream,
    _dir: WorkDir,
}

async fn setup(env: &[(&str, &str)]) -> Setup {
    let upstream = upstream::start().await;
    let dir = WorkDir::new(&json!({
        "authenticationMethod": "none",
        "routes": [{"source": "^/api/(.*)$", "target": "/$1", "destination": "backend"}]
    }));
    let mut env: Vec<(&str, String)> = env.iter().map(|(k, v)| (*k, (*v).to_owned())).collect();
    env.push(("destinations", destinations(&[("backend", upstream.url())])));
    let router = Router::start(dir.path(), &env).await;
    Setup {
        router,
        _upstream: upstream,
        _dir: dir,
    }
}

/// Reads one response with a `Content-Length` body off a kept-alive connection: (status, head).
async fn read_response(stream: &mut TcpStream) -> (u16, String) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).into_owned();
            let length: usize = head
                .lines()
                .find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    k.eq_ignore_ascii_case("content-length")
                        .then(|| v.trim().parse().ok())?
                })
                .unwrap_or(0);
            while buf.len() < end + 4 + length {
                let n = stream.read(&mut chunk).await.expect("read body");
                assert!(n > 0, "connection closed inside the body");
                buf.extend_from_slice(&chunk[..n]);
            }
            let status = head
                .split_whitespace()
                .nth(1)
                .and_then(|s| s.parse().ok())
                .expect("status");
            return (status, head);
        }
        let n = stream.read(&mut chunk).await.expect("read head");
        assert!(n > 0, "connection closed before a response");
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// Waits up to `limit` for the peer to close; the time it took, or `None` if still open.
async fn closed_within(stream: &mut TcpStream, limit: Duration) -> Option<Duration> {
    let started = Instant::now();
    let mut chunk = [0u8; 1024];
    match tokio::time::timeout(limit, stream.read(&mut chunk)).await {
        Ok(Ok(0)) | Ok(Err(_)) => Some(started.elapsed()),
        Ok(Ok(n)) => panic!("unexpected {n} bytes"),
        Err(_) => None,
    }
}

async fn connect(addr: SocketAddr) -> TcpStream {
    TcpStream::connect(addr).await.expect("connect")
}

#[tokio::test]
async fn a_body_that_does_not_arrive_in_time_gets_408() {
    let s = setup(&[("INCOMING_REQUEST_TIMEOUT", "500")]).await;
    let mut stream = connect(s.router.addr).await;
    stream
        .write_all(b"POST /api/upload HTTP/1.1\r\nHost: router.test\r\nContent-Length: 100\r\n\r\n0123456789")
        .await
        .expect("write");
    let started = Instant::now();
    let (status, head) = tokio::time::timeout(Duration::from_secs(5), read_response(&mut stream))
        .await
        .expect("answered");
    assert_eq!(status, 408, "{head}");
    assert!(started.elapsed() >= Duration::from_millis(400));
    assert!(
        head.to_ascii_lowercase().contains("connection: close"),
        "{head}"
    );
    assert!(
        closed_within(&mut stream, Duration::from_secs(2))
            .await
            .is_some()
    );

    // A body that arrives in time is forwarded as usual.
    let mut stream = connect(s.router.addr).await;
    stream
        .write_all(b"POST /api/upload HTTP/1.1\r\nHost: router.test\r\nContent-Length: 10\r\n\r\n")
        .await
        .expect("write");
    tokio::time::sleep(Duration::from_millis(200)).await;
    stream.write_all(b"0123456789").await.expect("write");
    let (status, head) = read_response(&mut stream).await;
    assert_eq!(status, 200, "{head}");
}

#[tokio::test]
async fn request_timeout_can_be_switched_off() {
    let s = setup(&[("INCOMING_REQUEST_TIMEOUT", "0")]).await;
    let mut stream = connect(s.router.addr).await;
    stream
        .write_all(
            b"POST /api/upload HTTP/1.1\r\nHost: router.test\r\nContent-Length: 10\r\n\r\n01234",
        )
        .await
        .expect("write");
    tokio::time::sleep(Duration::from_millis(800)).await;
    stream.write_all(b"56789").await.expect("write");
    let (status, head) = read_response(&mut stream).await;
    assert_eq!(status, 200, "{head}");
}

#[tokio::test]
async fn a_silent_connection_is_closed() {
    let s = setup(&[("INCOMING_CONNECTION_TIMEOUT", "500")]).await;
    // Idle after a completed exchange.
    let mut stream = connect(s.router.addr).await;
    stream
        .write_all(b"GET /api/x HTTP/1.1\r\nHost: router.test\r\n\r\n")
        .await
        .expect("write");
    assert_eq!(read_response(&mut stream).await.0, 200);
    let took = closed_within(&mut stream, Duration::from_secs(5))
        .await
        .expect("closed");
    assert!(took >= Duration::from_millis(300), "{took:?}");
    // No byte either way while a backend takes longer than the limit: closed, as in Node.
    let mut stream = connect(s.router.addr).await;
    stream
        .write_all(b"GET /api/slow/3000 HTTP/1.1\r\nHost: router.test\r\n\r\n")
        .await
        .expect("write");
    assert!(
        closed_within(&mut stream, Duration::from_secs(2))
            .await
            .is_some()
    );
}

#[tokio::test]
async fn connection_timeout_zero_keeps_connections() {
    let s = setup(&[("INCOMING_CONNECTION_TIMEOUT", "0")]).await;
    let mut stream = connect(s.router.addr).await;
    stream
        .write_all(b"GET /api/slow/800 HTTP/1.1\r\nHost: router.test\r\n\r\n")
        .await
        .expect("write");
    assert_eq!(read_response(&mut stream).await.0, 200);
    assert!(
        closed_within(&mut stream, Duration::from_millis(1200))
            .await
            .is_none()
    );
    // Still usable.
    stream
        .write_all(b"GET /api/again HTTP/1.1\r\nHost: router.test\r\n\r\n")
        .await
        .expect("write");
    assert_eq!(read_response(&mut stream).await.0, 200);
}

#[tokio::test]
async fn server_keep_alive_closes_idle_keep_alive_connections() {
    let s = setup(&[("SERVER_KEEP_ALIVE", "300")]).await;
    let mut stream = connect(s.router.addr).await;
    stream
        .write_all(b"GET /api/x HTTP/1.1\r\nHost: router.test\r\n\r\n")
        .await
        .expect("write");
    assert_eq!(read_response(&mut stream).await.0, 200);
    let took = closed_within(&mut stream, Duration::from_secs(3))
        .await
        .expect("closed after SERVER_KEEP_ALIVE");
    assert!(took >= Duration::from_millis(200), "{took:?}");
    // A request within the keep-alive time reuses the connection.
    let mut stream = connect(s.router.addr).await;
    for _ in 0..3 {
        stream
            .write_all(b"GET /api/x HTTP/1.1\r\nHost: router.test\r\n\r\n")
            .await
            .expect("write");
        assert_eq!(read_response(&mut stream).await.0, 200);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[test]
fn timeout_variables_must_be_numbers() {
    let dir = WorkDir::new(&json!({"authenticationMethod": "none", "routes": []}));
    for key in [
        "INCOMING_REQUEST_TIMEOUT",
        "INCOMING_CONNECTION_TIMEOUT",
        "SERVER_KEEP_ALIVE",
    ] {
        let err = support::load_runtime(dir.path(), &[(key, "soon".into())])
            .expect_err("invalid")
            .to_string();
        assert!(err.contains(key), "{key}: {err}");
    }
}

/// The HTTPS listener closes silent connections too (after the TLS handshake).
#[tokio::test]
async fn a_silent_tls_connection_is_closed() {
    use support::pki::{Pki, tls_client_config};
    let pki = Pki::new("Router TLS");
    let (chain, key) = pki.server();
    let dir = WorkDir::new(&json!({"authenticationMethod": "none", "routes": []}));
    let cert_path = dir.file("tls/server.pem", chain).display().to_string();
    let key_path = dir.file("tls/server.key", key).display().to_string();
    let connector =
        tokio_rustls::TlsConnector::from(std::sync::Arc::new(tls_client_config(&pki, None)));
    for (timeout, closes) in [("500", true), ("0", false)] {
        let router = Router::start(
            dir.path(),
            &[
                ("XSROUTER_TLS_CERT", cert_path.clone()),
                ("XSROUTER_TLS_KEY", key_path.clone()),
                ("INCOMING_CONNECTION_TIMEOUT", timeout.to_owned()),
            ],
        )
        .await;
        let tcp = connect(router.addr).await;
        let name = rustls::pki_types::ServerName::try_from("localhost").expect("name");
        let mut tls = connector.connect(name, tcp).await.expect("handshake");
        let mut chunk = [0u8; 64];
        let read = tokio::time::timeout(Duration::from_millis(2500), tls.read(&mut chunk)).await;
        let closed = matches!(read, Ok(Ok(0)) | Ok(Err(_)));
        assert_eq!(
            closed, closes,
            "INCOMING_CONNECTION_TIMEOUT={timeout}: {read:?}"
        );
    }
}
