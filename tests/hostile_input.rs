//! Hostile input against a real router on loopback, over raw TCP: request smuggling attempts,
//! oversized heads, slow clients, oversized bodies, path tricks, Host injection and CRLF. Every
//! refused request must be answered (never a hang or a dropped connection without reason) and
//! must never reach the upstream.

mod support;

use std::net::SocketAddr;
use std::time::Duration;

use serde_json::{Value, json};
use support::{Router, WorkDir, destinations, upstream};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn api_app() -> WorkDir {
    WorkDir::new(&json!({
        "authenticationMethod": "none",
        "welcomeFile": "/index.html",
        "routes": [
            {"source": "^/api/(.*)$", "target": "/$1", "destination": "backend"},
            {"source": "^/web/(.*)$", "target": "$1", "localDir": "web"}
        ]
    }))
}

async fn start(extra: &[(&str, String)]) -> (Router, upstream::Upstream, WorkDir) {
    let up = upstream::start().await;
    let dir = api_app();
    dir.file("web/index.html", "<html>index</html>");
    dir.file("web/sub/page.html", "<html>page</html>");
    dir.file("secret.txt", "secret");
    let mut env = vec![("destinations", destinations(&[("backend", up.url())]))];
    env.extend(extra.iter().cloned());
    let router = Router::start(dir.path(), &env).await;
    (router, up, dir)
}

/// Writes `request` and reads until the router closes the connection (at most 10 s).
async fn exchange(addr: SocketAddr, request: &[u8]) -> Vec<u8> {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    // The router may answer and close before it has read everything: a failed write is fine.
    let _ = stream.write_all(request).await;
    let mut buf = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), async {
        let mut chunk = [0u8; 4096];
        loop {
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => break,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
    })
    .await;
    assert!(
        read.is_ok(),
        "the router neither answered nor closed within 10 s"
    );
    buf
}

/// The status codes of every response in `bytes`, in order.
fn statuses(bytes: &[u8]) -> Vec<u16> {
    String::from_utf8_lossy(bytes)
        .match_indices("HTTP/1.")
        .filter_map(|(at, _)| {
            let text = String::from_utf8_lossy(
                &bytes[(at + 9).min(bytes.len())..(at + 12).min(bytes.len())],
            )
            .into_owned();
            text.parse().ok()
        })
        .collect()
}

/// The single status of a refused request.
async fn refused(addr: SocketAddr, request: &[u8]) -> u16 {
    let answer = exchange(addr, request).await;
    let found = statuses(&answer);
    assert_eq!(
        found.len(),
        1,
        "exactly one response expected for {:?}: {:?}",
        String::from_utf8_lossy(request),
        String::from_utf8_lossy(&answer)
    );
    found[0]
}

fn upstream_paths(up: &upstream::Upstream) -> Vec<String> {
    up.observed
        .paths
        .lock()
        .expect("paths")
        .iter()
        .map(|(path, _)| path.clone())
        .collect()
}

#[tokio::test]
async fn smuggling_attempts_are_refused_with_400_and_never_forwarded() {
    let (router, up, _dir) = start(&[]).await;
    let cases: &[&[u8]] = &[
        // Two differing lengths.
        b"POST /api/a HTTP/1.1\r\nHost: r\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!",
        // A list of lengths, signs, hex, spaces inside.
        b"POST /api/a HTTP/1.1\r\nHost: r\r\nContent-Length: 5, 6\r\n\r\nhello!",
        b"POST /api/a HTTP/1.1\r\nHost: r\r\nContent-Length: +5\r\n\r\nhello",
        b"POST /api/a HTTP/1.1\r\nHost: r\r\nContent-Length: -1\r\n\r\nhello",
        b"POST /api/a HTTP/1.1\r\nHost: r\r\nContent-Length: 0x5\r\n\r\nhello",
        b"POST /api/a HTTP/1.1\r\nHost: r\r\nContent-Length: 5 5\r\n\r\nhello",
        // A transfer coding other than chunked last, and one on HTTP/1.0.
        b"POST /api/a HTTP/1.1\r\nHost: r\r\nTransfer-Encoding: chunked, gzip\r\n\r\n0\r\n\r\n",
        b"POST /api/a HTTP/1.1\r\nHost: r\r\nTransfer-Encoding: xchunked\r\n\r\n0\r\n\r\n",
        b"POST /api/a HTTP/1.0\r\nHost: r\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        // obs-fold (a continuation line).
        b"GET /api/a HTTP/1.1\r\nHost: r\r\nX-Folded: a\r\n b\r\n\r\n",
        b"GET /api/a HTTP/1.1\r\nHost: r\r\nX-Folded: a\r\n\tb\r\n\r\n",
        // Whitespace between name and colon, in a name, or before the first header.
        b"GET /api/a HTTP/1.1\r\nHost : r\r\n\r\n",
        b"GET /api/a HTTP/1.1\r\nHost: r\r\nTransfer-Encoding : chunked\r\n\r\n0\r\n\r\n",
        b"GET /api/a HTTP/1.1\r\nHost: r\r\nX Bad: b\r\n\r\n",
        b"GET /api/a HTTP/1.1\r\n Host: r\r\n\r\n",
        // Control bytes: NUL, a bare CR, DEL in values; non-token bytes in names.
        b"GET /api/a HTTP/1.1\r\nHost: r\r\nX-Nul: a\0b\r\n\r\n",
        b"GET /api/a HTTP/1.1\r\nHost: r\r\nX-Cr: a\rb\r\n\r\n",
        b"GET /api/a HTTP/1.1\r\nHost: r\r\nX-Del: a\x7fb\r\n\r\n",
        b"GET /api/a HTTP/1.1\r\nHost: r\r\nX-\x01: b\r\n\r\n",
        b"GET /api/a HTTP/1.1\r\nHost: r\r\nX-(a): b\r\n\r\n",
        // Broken request lines.
        b"GET /api/a b HTTP/1.1\r\nHost: r\r\n\r\n",
        b"GET /api/a\0 HTTP/1.1\r\nHost: r\r\n\r\n",
        b"G\x01T /api/a HTTP/1.1\r\nHost: r\r\n\r\n",
        b"GET /api/a HTTP/1.1 extra\r\nHost: r\r\n\r\n",
        b"GET /api/a HTTP/9.9\r\nHost: r\r\n\r\n",
    ];
    for request in cases {
        let status = refused(router.addr, request).await;
        assert_eq!(status, 400, "{:?}", String::from_utf8_lossy(request));
    }
    assert_eq!(
        up.connections(),
        0,
        "something reached the upstream: {:?}",
        upstream_paths(&up)
    );
}

#[tokio::test]
async fn transfer_encoding_beats_content_length_and_the_connection_closes() {
    let (router, up, _dir) = start(&[]).await;
    // The chunked body ends after "hello"; a front proxy that believed Content-Length would
    // have sent the "smuggled" request as body. It must never reach the upstream.
    let request = b"POST /api/framed HTTP/1.1\r\nHost: r\r\nContent-Length: 60\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\nGET /api/smuggled HTTP/1.1\r\nHost: r\r\n\r\n";
    let answer = exchange(router.addr, request).await;
    assert_eq!(
        statuses(&answer),
        vec![200],
        "{}",
        String::from_utf8_lossy(&answer)
    );
    assert_eq!(upstream_paths(&up), vec!["/framed".to_owned()]);
    let text = String::from_utf8_lossy(&answer);
    let body = &text[text.find("\r\n\r\n").expect("head") + 4..];
    // The echo body may be chunked on the way back; find the JSON inside.
    let json_start = body.find('{').expect("json");
    let json_end = body.rfind('}').expect("json");
    let echo: Value = serde_json::from_str(&body[json_start..=json_end]).expect("echo json");
    assert_eq!(echo["body_length"], 5);
    assert!(echo["headers"]["content-length"].is_null(), "{echo}");
}

#[tokio::test]
async fn repeated_equal_content_lengths_are_forwarded_once() {
    let (router, up, _dir) = start(&[]).await;
    let answer = exchange(
        router.addr,
        b"POST /api/twice HTTP/1.1\r\nHost: r\r\nConnection: close\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\nhello",
    )
    .await;
    assert_eq!(statuses(&answer), vec![200]);
    let text = String::from_utf8_lossy(&answer);
    let echo: Value =
        serde_json::from_str(&text[text.find('{').expect("json")..=text.rfind('}').expect("json")])
            .expect("echo json");
    assert_eq!(echo["headers"]["content-length"], json!(["5"]));
    assert_eq!(echo["body_length"], 5);
    assert_eq!(upstream_paths(&up), vec!["/twice".to_owned()]);
}

const STATIC_PAGE: &str = "/web/sub/page.html";

fn request_with_headers(count: usize, value_len: usize) -> Vec<u8> {
    request_with_headers_to("/api/many", count, value_len)
}

fn request_with_headers_to(path: &str, count: usize, value_len: usize) -> Vec<u8> {
    let mut request =
        format!("GET {path} HTTP/1.1\r\nHost: r\r\nConnection: close\r\n").into_bytes();
    let value = "v".repeat(value_len);
    for i in 0..count {
        request.extend_from_slice(format!("X-H{i}: {value}\r\n").as_bytes());
    }
    request.extend_from_slice(b"\r\n");
    request
}

#[tokio::test]
async fn oversized_heads_get_431_and_long_urls_414() {
    let (router, up, _dir) = start(&[("XSROUTER_MAX_URL_LENGTH", "1024".to_owned())]).await;
    // Defaults: 16 KiB of head, 100 header lines.
    assert_eq!(
        refused(router.addr, &request_with_headers(1, 17 * 1024)).await,
        431
    );
    assert_eq!(
        refused(router.addr, &request_with_headers(4, 5 * 1024)).await,
        431
    );
    assert_eq!(
        refused(router.addr, &request_with_headers(120, 1)).await,
        431
    );
    let long = format!(
        "GET /api/{} HTTP/1.1\r\nHost: r\r\nConnection: close\r\n\r\n",
        "a".repeat(1100)
    );
    assert_eq!(refused(router.addr, long.as_bytes()).await, 414);
    let long_query = format!(
        "GET /api/x?q={} HTTP/1.1\r\nHost: r\r\nConnection: close\r\n\r\n",
        "a".repeat(1100)
    );
    assert_eq!(refused(router.addr, long_query.as_bytes()).await, 414);
    assert_eq!(up.connections(), 0, "refused heads reached the upstream");
    // Within the limits everything passes.
    assert_eq!(
        refused(router.addr, &request_with_headers(90, 100)).await,
        200
    );
    assert_eq!(
        refused(router.addr, &request_with_headers(1, 12 * 1024)).await,
        200
    );
    let fits = format!(
        "GET /api/{} HTTP/1.1\r\nHost: r\r\nConnection: close\r\n\r\n",
        "a".repeat(1000)
    );
    assert_eq!(refused(router.addr, fits.as_bytes()).await, 200);
}

#[tokio::test]
async fn head_limits_follow_their_variables() {
    let (router, _up, _dir) = start(&[
        ("XSROUTER_MAX_HEADER_SIZE", "40000".to_owned()),
        ("XSROUTER_MAX_HEADER_COUNT", "300".to_owned()),
    ])
    .await;
    // A local file: the test upstream has hyper's own default limits (100 headers).
    assert_eq!(
        refused(
            router.addr,
            &request_with_headers_to(STATIC_PAGE, 1, 30 * 1024)
        )
        .await,
        200
    );
    assert_eq!(
        refused(router.addr, &request_with_headers_to(STATIC_PAGE, 250, 10)).await,
        200
    );
    assert_eq!(
        refused(
            router.addr,
            &request_with_headers_to(STATIC_PAGE, 1, 41 * 1024)
        )
        .await,
        431
    );
    assert_eq!(
        refused(router.addr, &request_with_headers_to(STATIC_PAGE, 310, 1)).await,
        431
    );
}

#[test]
fn bad_limit_settings_stop_start_up_with_the_variable_named() {
    let dir = api_app();
    for (key, value) in [
        ("XSROUTER_MAX_HEADER_SIZE", "100"),
        ("XSROUTER_MAX_HEADER_SIZE", "lots"),
        ("XSROUTER_MAX_HEADER_COUNT", "0"),
        ("XSROUTER_MAX_URL_LENGTH", "-5"),
        ("XSROUTER_HEADER_READ_TIMEOUT", "0"),
        ("XSROUTER_MAX_BODY_SIZE", "ten"),
    ] {
        let err = support::load_runtime(dir.path(), &[(key, value.to_owned())])
            .expect_err("a bad limit must stop start-up");
        let text = err.to_string();
        assert!(text.contains(key), "{key}={value}: {text}");
    }
}

#[tokio::test]
async fn slow_heads_are_cut_off_after_the_header_read_timeout() {
    let (router, up, _dir) = start(&[("XSROUTER_HEADER_READ_TIMEOUT", "1".to_owned())]).await;
    // A slowloris client: one header byte every 200 ms, never finishing the head.
    let mut slow = TcpStream::connect(router.addr).await.expect("connect");
    slow.write_all(b"GET /api/slow HTTP/1.1\r\nHost: r\r\n")
        .await
        .expect("write");
    let dripping = async {
        loop {
            tokio::time::sleep(Duration::from_millis(200)).await;
            if slow.write_all(b"X").await.is_err() {
                break;
            }
            let mut probe = [0u8; 1];
            // Anything read (or EOF) means the router gave up on us.
            match tokio::time::timeout(Duration::from_millis(1), slow.read(&mut probe)).await {
                Ok(_) => break,
                Err(_) => continue,
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(8), dripping)
        .await
        .expect("the slow connection was not closed");
    // A connection that sends nothing at all is closed too.
    let mut silent = TcpStream::connect(router.addr).await.expect("connect");
    let mut byte = [0u8; 1];
    let closed = tokio::time::timeout(Duration::from_secs(8), silent.read(&mut byte))
        .await
        .expect("the silent connection was not closed");
    assert!(matches!(closed, Ok(0) | Err(_)), "{closed:?}");
    // Meanwhile normal clients were served, and the slow request never went upstream.
    let response = support::raw_get(router.addr, "/api/normal").await;
    assert_eq!(response.status, 200);
    assert_eq!(upstream_paths(&up), vec!["/normal".to_owned()]);
}

#[tokio::test]
async fn bodies_over_the_configured_limit_get_413() {
    let (router, up, _dir) = start(&[("XSROUTER_MAX_BODY_SIZE", "1000".to_owned())]).await;
    let declared = format!(
        "POST /api/declared HTTP/1.1\r\nHost: r\r\nConnection: close\r\nContent-Length: 2000\r\n\r\n{}",
        "x".repeat(2000)
    );
    assert_eq!(refused(router.addr, declared.as_bytes()).await, 413);
    assert_eq!(
        up.connections(),
        0,
        "a declared oversized body reached the upstream"
    );
    // A chunked body can only be counted while it streams: cut off, answered 413.
    let chunk = "y".repeat(600);
    let chunked = format!(
        "POST /api/upload HTTP/1.1\r\nHost: r\r\nConnection: close\r\nTransfer-Encoding: chunked\r\n\r\n258\r\n{chunk}\r\n258\r\n{chunk}\r\n0\r\n\r\n"
    );
    assert_eq!(refused(router.addr, chunked.as_bytes()).await, 413);
    // Within the limit, both framings pass.
    let small = format!(
        "POST /api/upload HTTP/1.1\r\nHost: r\r\nConnection: close\r\nTransfer-Encoding: chunked\r\n\r\n258\r\n{chunk}\r\n0\r\n\r\n"
    );
    let answer = exchange(router.addr, small.as_bytes()).await;
    assert_eq!(statuses(&answer), vec![200]);
    assert!(
        String::from_utf8_lossy(&answer).ends_with("600"),
        "{}",
        String::from_utf8_lossy(&answer)
    );
    let fits = format!(
        "POST /api/fits HTTP/1.1\r\nHost: r\r\nConnection: close\r\nContent-Length: 1000\r\n\r\n{}",
        "x".repeat(1000)
    );
    assert_eq!(refused(router.addr, fits.as_bytes()).await, 200);
}

#[tokio::test]
async fn without_a_body_limit_large_uploads_pass() {
    let (router, _up, _dir) = start(&[]).await;
    let body = "z".repeat(3 * 1024 * 1024);
    let request = format!(
        "POST /api/upload HTTP/1.1\r\nHost: r\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let answer = exchange(router.addr, request.as_bytes()).await;
    assert_eq!(statuses(&answer), vec![200]);
    assert!(String::from_utf8_lossy(&answer).ends_with(&body.len().to_string()));
}

#[tokio::test]
async fn path_tricks_against_routes_are_refused_before_the_upstream() {
    let (router, up, _dir) = start(&[]).await;
    for path in [
        // Path parameters that servlet containers resolve as dot segments.
        "/api/..;/admin",
        "/api/x/..;jsessionid=1/admin",
        "/api/.;/x",
        "/api/%2e%2e;/admin",
        "/api/..%3b/admin",
        "/api/%252e%252e%253b/admin",
        // Encoded dots and slashes, double encoding, backslashes, NUL.
        "/api/%2e%2e/admin",
        "/api/%2E%2e%2fadmin",
        "/api%2f..%2fadmin",
        "/api/%252e%252e/admin",
        "/api/%25252e%25252e/admin",
        "/api/..%5cadmin",
        "/api/x%00.json",
        "/api/x%2500",
        "/api/%0d%0aX-Injected:%20yes",
        "/api/a%250d%250ab",
    ] {
        let response = support::raw_get(router.addr, path).await;
        assert_eq!(response.status, 400, "{path}: {response:?}");
    }
    assert_eq!(up.connections(), 0, "{:?}", upstream_paths(&up));
    // Ordinary path parameters still pass.
    let response = support::raw_get(router.addr, "/api/orders;v=2/items").await;
    assert_eq!(response.status, 200);
    assert_eq!(upstream_paths(&up), vec!["/orders;v=2/items".to_owned()]);
}

#[tokio::test]
async fn path_tricks_against_local_dir_stay_inside() {
    let (router, _up, _dir) = start(&[]).await;
    for path in [
        "/web/..;/secret.txt",
        "/web/sub/..;/..;/secret.txt",
        "/web/%2e%2e;/secret.txt",
        "/web/..%3bx/secret.txt",
        "/web/%252e%252e%252fsecret.txt",
        "/web/secret.txt%00.html",
    ] {
        let response = support::raw_get(router.addr, path).await;
        assert_eq!(response.status, 400, "{path}: {response:?}");
        assert!(
            !String::from_utf8_lossy(&response.body).contains("secret"),
            "{path}"
        );
    }
    let response = support::raw_get(router.addr, "/web/sub/page.html").await;
    assert_eq!(response.status, 200);
}

fn with_host(path: &str, host_lines: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\n{host_lines}Connection: close\r\n\r\n").into_bytes()
}

#[tokio::test]
async fn hostile_host_headers_are_refused() {
    let (router, up, _dir) = start(&[]).await;
    for lines in [
        "Host: evil.example/x\r\n",
        "Host: evil.example?x=1\r\n",
        "Host: user@evil.example\r\n",
        "Host: evil.example#frag\r\n",
        "Host: a b\r\n",
        "Host: \"><script>\r\n",
        "Host: evil.example:80:80\r\n",
        "Host: router.example\r\nHost: evil.example\r\n",
        "",
        "Host: router.example\r\nX-Forwarded-Host: evil.example/path\r\n",
        "Host: router.example\r\nX-Forwarded-Host: ok.example, a@evil.example\r\n",
    ] {
        for path in ["/api/x", "/"] {
            let status = refused(router.addr, &with_host(path, lines)).await;
            assert_eq!(status, 400, "{path} with {lines:?}");
        }
    }
    assert_eq!(up.connections(), 0);
    // A plain host and port, and a forwarded list, pass and reach the backend as sent.
    let answer = exchange(
        router.addr,
        &with_host(
            "/api/ok",
            "Host: router.example:8080\r\nX-Forwarded-Host: front.example, [::1]:443\r\n",
        ),
    )
    .await;
    assert_eq!(statuses(&answer), vec![200]);
    let text = String::from_utf8_lossy(&answer);
    let echo: Value =
        serde_json::from_str(&text[text.find('{').expect("json")..=text.rfind('}').expect("json")])
            .expect("echo json");
    assert_eq!(
        echo["headers"]["x-forwarded-host"],
        json!(["front.example, [::1]:443"])
    );
    // HTTP/1.0 needs no Host.
    let answer = exchange(router.addr, b"GET /api/old HTTP/1.0\r\n\r\n").await;
    assert_eq!(
        statuses(&answer).len(),
        1,
        "{}",
        String::from_utf8_lossy(&answer)
    );
}

#[tokio::test]
async fn redirects_never_take_their_host_from_the_request() {
    let (router, _up, _dir) = start(&[]).await;
    // The welcome redirect and the directory redirect are local paths whatever Host says.
    for (path, location) in [("/", "/index.html"), ("/web/sub", "/web/sub/")] {
        let answer = exchange(router.addr, &with_host(path, "Host: evil.example\r\n")).await;
        let text = String::from_utf8_lossy(&answer);
        assert!(
            statuses(&answer)[0] == 302 || statuses(&answer)[0] == 301,
            "{text}"
        );
        let found = text
            .lines()
            .find_map(|l| {
                l.strip_prefix("location: ")
                    .or_else(|| l.strip_prefix("Location: "))
            })
            .expect("location");
        assert_eq!(found, location, "{text}");
    }
}

#[tokio::test]
async fn nothing_echoed_can_carry_crlf() {
    let (router, _up, _dir) = start(&[]).await;
    // Encoded CR/LF in a query survives only encoded in a redirect's Location.
    let answer = exchange(
        router.addr,
        &with_host("/web/sub?x=%0d%0aSet-Cookie:%20evil=1", "Host: r\r\n"),
    )
    .await;
    let text = String::from_utf8_lossy(&answer).into_owned();
    let head = &text[..text.find("\r\n\r\n").expect("head")];
    for line in head.split("\r\n") {
        assert!(!line.contains('\n') && !line.contains('\r'), "{line:?}");
        assert!(
            !line.to_ascii_lowercase().starts_with("set-cookie"),
            "{head}"
        );
    }
    assert!(
        head.contains("\r\nlocation: /web/sub/?x=%0d%0aSet-Cookie:%20evil=1\r\n"),
        "{head}"
    );
    // Raw CR, LF or NUL inside an echoed header (the correlation id) never get that far.
    for value in ["a\rSet-Cookie: evil=1", "a\0b"] {
        let request = format!(
            "GET /api/x HTTP/1.1\r\nHost: r\r\nX-Request-Id: {value}\r\nConnection: close\r\n\r\n"
        );
        assert_eq!(
            refused(router.addr, request.as_bytes()).await,
            400,
            "{value:?}"
        );
    }
    // A correlation id with encoded CR/LF comes back byte for byte, on one line; one with
    // spaces or other bytes is replaced by a fresh id rather than echoed.
    let answer = exchange(
        router.addr,
        b"GET /api/x HTTP/1.1\r\nHost: r\r\nX-Request-Id: a%0d%0ab<x>\r\nConnection: close\r\n\r\n",
    )
    .await;
    let text = String::from_utf8_lossy(&answer);
    assert!(text.contains("\r\nx-request-id: a%0d%0ab<x>\r\n"), "{text}");
    let answer = exchange(
        router.addr,
        b"GET /api/x HTTP/1.1\r\nHost: r\r\nX-Request-Id: a b\xff\r\nConnection: close\r\n\r\n",
    )
    .await;
    let text = String::from_utf8_lossy(&answer);
    let head = &text[..text.find("\r\n\r\n").expect("head")];
    assert!(!head.contains("a b"), "{head}");
    assert_eq!(statuses(&answer), vec![200]);
}

#[tokio::test]
async fn slow_heads_over_tls_are_cut_off_too() {
    let pki = support::pki::Pki::new("Router TLS");
    let files = tempfile::tempdir().expect("tmp");
    let (chain, key) = pki.server();
    std::fs::write(files.path().join("cert.pem"), chain).expect("cert");
    std::fs::write(files.path().join("key.pem"), key).expect("key");
    let (router, up, _dir) = start(&[
        (
            "XSROUTER_TLS_CERT",
            files.path().join("cert.pem").display().to_string(),
        ),
        (
            "XSROUTER_TLS_KEY",
            files.path().join("key.pem").display().to_string(),
        ),
        ("XSROUTER_HEADER_READ_TIMEOUT", "1".to_owned()),
    ])
    .await;
    let mut config = support::pki::tls_client_config(&pki, None);
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let connector = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config));
    let tcp = TcpStream::connect(router.addr).await.expect("connect");
    let name = rustls::pki_types::ServerName::try_from("localhost").expect("name");
    let mut tls = connector.connect(name, tcp).await.expect("handshake");
    tls.write_all(b"GET /api/slow HTTP/1.1\r\nHost: r\r\nX-Slow: ")
        .await
        .expect("write");
    tls.flush().await.expect("flush");
    let mut buf = [0u8; 256];
    let closed = tokio::time::timeout(Duration::from_secs(8), async {
        loop {
            match tls.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
        }
    })
    .await;
    assert!(closed.is_ok(), "the slow TLS connection was not closed");
    assert_eq!(up.connections(), 0);
}
