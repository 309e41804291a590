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
    read_to_close(&mut stream).await
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

/// `Content-Length` and `Transfer-Encoding` together, in either order and any casing.
const BOTH_FRAMINGS: &[&str] = &[
    "POST /api/both HTTP/1.1\r\nHost: r\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    "POST /api/both HTTP/1.1\r\nHost: r\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n",
    "POST /api/both HTTP/1.1\r\nHost: r\r\ncontent-length: 0\r\ntransfer-encoding: chunked\r\n\r\n0\r\n\r\n",
    "POST /api/both HTTP/1.1\r\nHost: r\r\nTRANSFER-ENCODING: chunked\r\nCONTENT-LENGTH: 3\r\n\r\n0\r\n\r\n",
    "POST /api/both HTTP/1.1\r\nHost: r\r\nContent-length: 5\r\nX-A: b\r\ntransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    "POST /api/both HTTP/1.1\nHost: r\nTransfer-Encoding: chunked\nContent-Length: 5\n\n0\r\n\r\n",
    "GET /api/both HTTP/1.1\r\nHost: r\r\nContent-Length: 0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
];

#[tokio::test]
async fn content_length_with_transfer_encoding_is_refused_with_400_and_never_forwarded() {
    let (router, up, _dir) = start(&[]).await;
    for request in BOTH_FRAMINGS {
        let status = refused(router.addr, request.as_bytes()).await;
        assert_eq!(status, 400, "{request:?}");
    }
    // The classic attack: a front proxy that believed Content-Length would send the "smuggled"
    // request as body. Neither request reaches the upstream.
    let answer = exchange(
        router.addr,
        b"POST /api/framed HTTP/1.1\r\nHost: r\r\nContent-Length: 60\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\nGET /api/smuggled HTTP/1.1\r\nHost: r\r\n\r\n",
    )
    .await;
    assert_eq!(
        statuses(&answer),
        vec![400],
        "{}",
        String::from_utf8_lossy(&answer)
    );
    // The head arriving a few bytes at a time changes nothing.
    let mut stream = TcpStream::connect(router.addr).await.expect("connect");
    stream.set_nodelay(true).expect("nodelay");
    for piece in BOTH_FRAMINGS[1].as_bytes().chunks(3) {
        stream.write_all(piece).await.expect("write");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let answer = read_to_close(&mut stream).await;
    assert_eq!(statuses(&answer), vec![400]);
    assert_eq!(
        up.connections(),
        0,
        "something reached the upstream: {:?}",
        upstream_paths(&up)
    );
}

#[tokio::test]
async fn both_framings_are_refused_later_on_a_keep_alive_connection() {
    let (router, up, _dir) = start(&[]).await;
    let mut stream = TcpStream::connect(router.addr).await.expect("connect");
    // Bodies that contain what looks like a conflicting head are bodies, nothing else.
    let decoy = "Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n";
    let requests = [
        "GET /api/first HTTP/1.1\r\nHost: r\r\n\r\n".to_owned(),
        format!(
            "POST /api/sized HTTP/1.1\r\nHost: r\r\nContent-Length: {}\r\n\r\n{decoy}",
            decoy.len()
        ),
        format!(
            "POST /api/chunked HTTP/1.1\r\nHost: r\r\nTransfer-Encoding: chunked\r\n\r\n{:x};ext=1\r\n{decoy}\r\n0\r\nX-Trailer: t\r\n\r\n",
            decoy.len()
        ),
    ];
    for (request, path) in requests.iter().zip(["/first", "/sized", "/chunked"]) {
        stream.write_all(request.as_bytes()).await.expect("write");
        let (status, body) = read_response(&mut stream).await;
        assert_eq!(status, 200, "{request:?}");
        assert!(String::from_utf8_lossy(&body).contains(path), "{path}");
    }
    for request in BOTH_FRAMINGS {
        // Each conflicting request ends its connection: a fresh keep-alive connection, one
        // good request, then the conflicting one.
        let mut stream = TcpStream::connect(router.addr).await.expect("connect");
        stream
            .write_all(requests[2].as_bytes())
            .await
            .expect("write");
        assert_eq!(read_response(&mut stream).await.0, 200);
        stream.write_all(request.as_bytes()).await.expect("write");
        let answer = read_to_close(&mut stream).await;
        assert_eq!(statuses(&answer), vec![400], "{request:?}");
    }
    stream
        .write_all(BOTH_FRAMINGS[0].as_bytes())
        .await
        .expect("write");
    let answer = read_to_close(&mut stream).await;
    assert_eq!(statuses(&answer), vec![400]);
    let mut expected = vec!["/first", "/sized", "/chunked"];
    expected.extend(std::iter::repeat_n("/chunked", BOTH_FRAMINGS.len()));
    assert_eq!(upstream_paths(&up), expected);
}

#[tokio::test]
async fn a_pipelined_conflicting_request_after_a_chunked_body_gets_400_alone() {
    let (router, up, _dir) = start(&[]).await;
    let decoy =
        "POST /api/decoy HTTP/1.1\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n";
    // In one write: a chunked request (extension, trailer, the decoy in its body), then a
    // conflicting request, then one more that hyper never reads.
    let pipelined = format!(
        "POST /api/chunked HTTP/1.1\r\nHost: r\r\nTransfer-Encoding: chunked\r\n\r\n\
         {:x};name=value\r\n{decoy}\r\n3\r\nabc\r\n0\r\nX-Checksum: 1\r\n\r\n\
         POST /api/conflict HTTP/1.1\r\nHost: r\r\nTransfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n0\r\n\r\n\
         GET /api/after HTTP/1.1\r\nHost: r\r\n\r\n",
        decoy.len()
    );
    let answer = exchange(router.addr, pipelined.as_bytes()).await;
    assert_eq!(
        statuses(&answer),
        vec![200, 400],
        "{}",
        String::from_utf8_lossy(&answer)
    );
    assert_eq!(upstream_paths(&up), vec!["/chunked".to_owned()]);
    // Without the conflicting request, everything pipelined is served in order.
    let clean = pipelined.replace("Content-Length: 4\r\n", "");
    let answer = exchange(
        router.addr,
        format!("{clean}GET /api/last HTTP/1.1\r\nHost: r\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .await;
    assert_eq!(
        statuses(&answer),
        vec![200, 200, 200, 200],
        "{}",
        String::from_utf8_lossy(&answer)
    );
    assert_eq!(
        upstream_paths(&up),
        vec!["/chunked", "/chunked", "/conflict", "/after", "/last"]
    );
}

/// Reads until the router closes the connection (at most 10 s).
async fn read_to_close<S: AsyncReadExt + Unpin>(stream: &mut S) -> Vec<u8> {
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
    assert!(read.is_ok(), "the router did not close within 10 s");
    buf
}

/// Reads one response from a keep-alive connection: its status and body (sized or chunked).
async fn read_response(stream: &mut TcpStream) -> (u16, Vec<u8>) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let complete = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            if let Some(done) = parse_response(&buf) {
                return done;
            }
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => panic!("closed mid-response: {}", String::from_utf8_lossy(&buf)),
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
    })
    .await;
    complete.expect("no complete response within 10 s")
}

/// A complete response at the start of `bytes`, if there is one.
fn parse_response(bytes: &[u8]) -> Option<(u16, Vec<u8>)> {
    let text = String::from_utf8_lossy(bytes);
    let head_end = text.find("\r\n\r\n")? + 4;
    let head = text[..head_end].to_ascii_lowercase();
    let status = *statuses(bytes).first()?;
    let body = &bytes[head_end..];
    if let Some(line) = head.lines().find(|l| l.starts_with("content-length:")) {
        let length: usize = line[15..].trim().parse().ok()?;
        return (body.len() >= length).then(|| (status, body[..length].to_vec()));
    }
    assert!(head.contains("transfer-encoding: chunked"), "{head}");
    let mut decoded = Vec::new();
    let mut at = 0;
    loop {
        let line_end = at + body[at..].windows(2).position(|w| w == b"\r\n")?;
        let size =
            usize::from_str_radix(std::str::from_utf8(&body[at..line_end]).ok()?, 16).ok()?;
        at = line_end + 2;
        if size == 0 {
            return (body.len() >= at + 2).then_some((status, decoded));
        }
        decoded.extend_from_slice(body.get(at..at + size)?);
        at += size + 2;
    }
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

/// A router serving HTTPS (a certificate for `localhost`) with `extra` settings.
async fn start_tls(
    extra: &[(&str, String)],
) -> (
    Router,
    upstream::Upstream,
    WorkDir,
    support::pki::Pki,
    tempfile::TempDir,
) {
    let pki = support::pki::Pki::new("Router TLS");
    let files = tempfile::tempdir().expect("tmp");
    let (chain, key) = pki.server();
    std::fs::write(files.path().join("cert.pem"), chain).expect("cert");
    std::fs::write(files.path().join("key.pem"), key).expect("key");
    let mut env = vec![
        (
            "XSROUTER_TLS_CERT",
            files.path().join("cert.pem").display().to_string(),
        ),
        (
            "XSROUTER_TLS_KEY",
            files.path().join("key.pem").display().to_string(),
        ),
    ];
    env.extend(extra.iter().cloned());
    let (router, up, dir) = start(&env).await;
    (router, up, dir, pki, files)
}

/// A TLS client connection to the router offering `alpn`.
async fn tls_connect(
    router: &Router,
    pki: &support::pki::Pki,
    alpn: &[&[u8]],
) -> tokio_rustls::client::TlsStream<TcpStream> {
    let mut config = support::pki::tls_client_config(pki, None);
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    let connector = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config));
    let tcp = TcpStream::connect(router.addr).await.expect("connect");
    let name = rustls::pki_types::ServerName::try_from("localhost").expect("name");
    connector.connect(name, tcp).await.expect("handshake")
}

/// How long until the router closes `stream` (EOF or an error); fails after `limit`.
async fn time_to_close<S: AsyncReadExt + Unpin>(stream: &mut S, limit: Duration) -> Duration {
    let started = std::time::Instant::now();
    let mut buf = [0u8; 256];
    let closed = tokio::time::timeout(limit, async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
        }
    })
    .await;
    assert!(
        closed.is_ok(),
        "the connection was not closed within {limit:?}"
    );
    started.elapsed()
}

#[tokio::test]
async fn slow_heads_over_tls_are_cut_off_too() {
    let (router, up, _dir, pki, _files) =
        start_tls(&[("XSROUTER_HEADER_READ_TIMEOUT", "1".to_owned())]).await;
    let mut tls = tls_connect(&router, &pki, &[b"http/1.1"]).await;
    tls.write_all(b"GET /api/slow HTTP/1.1\r\nHost: r\r\nX-Slow: ")
        .await
        .expect("write");
    tls.flush().await.expect("flush");
    time_to_close(&mut tls, Duration::from_secs(8)).await;
    assert_eq!(up.connections(), 0);
}

#[tokio::test]
async fn silent_tls_clients_are_cut_off_after_the_header_read_timeout() {
    let (router, up, _dir, pki, _files) =
        start_tls(&[("XSROUTER_HEADER_READ_TIMEOUT", "1".to_owned())]).await;
    // Whatever protocol was negotiated: a client that completes the handshake and then sends
    // nothing, or half an HTTP/2 preface, is closed after the timeout (not before, not never).
    let alpns: [&[&[u8]]; 3] = [&[b"http/1.1"], &[b"h2"], &[]];
    for alpn in alpns {
        for sent in [&b""[..], b"PRI * HTTP/2.0\r\n"] {
            let mut tls = tls_connect(&router, &pki, alpn).await;
            tls.write_all(sent).await.expect("write");
            tls.flush().await.expect("flush");
            let after = time_to_close(&mut tls, Duration::from_secs(5)).await;
            assert!(
                after >= Duration::from_millis(800),
                "{alpn:?} {sent:?}: closed after {after:?}"
            );
        }
    }
    // Meanwhile the listener serves: HTTP/1.1 over TLS still works.
    let mut tls = tls_connect(&router, &pki, &[b"http/1.1"]).await;
    tls.write_all(b"GET /api/ok HTTP/1.1\r\nHost: r\r\nConnection: close\r\n\r\n")
        .await
        .expect("write");
    let answer = read_to_close(&mut tls).await;
    assert_eq!(statuses(&answer), vec![200]);
    // And a conflicting head is refused over TLS as well.
    let mut tls = tls_connect(&router, &pki, &[b"http/1.1"]).await;
    tls.write_all(BOTH_FRAMINGS[0].as_bytes())
        .await
        .expect("write");
    let answer = read_to_close(&mut tls).await;
    assert_eq!(statuses(&answer), vec![400]);
    assert_eq!(upstream_paths(&up), vec!["/ok".to_owned()]);
}

#[tokio::test]
async fn stalled_tls_handshakes_are_cut_off() {
    let (router, _up, _dir, pki, _files) =
        start_tls(&[("XSROUTER_HEADER_READ_TIMEOUT", "1".to_owned())]).await;
    // The first half of a real ClientHello, then nothing.
    let config = support::pki::tls_client_config(&pki, None);
    let name = rustls::pki_types::ServerName::try_from("localhost").expect("name");
    let mut client =
        rustls::ClientConnection::new(std::sync::Arc::new(config), name).expect("client");
    let mut hello = Vec::new();
    client.write_tls(&mut hello).expect("client hello");
    assert!(hello.len() > 100, "{}", hello.len());
    for sent in [&hello[..hello.len() / 2], &hello[..5], &[]] {
        let mut tcp = TcpStream::connect(router.addr).await.expect("connect");
        tcp.write_all(sent).await.expect("write");
        // The handshake timeout follows XSROUTER_HEADER_READ_TIMEOUT when that is shorter
        // than 10 s.
        let after = time_to_close(&mut tcp, Duration::from_secs(5)).await;
        assert!(
            after >= Duration::from_millis(800),
            "{} bytes: closed after {after:?}",
            sent.len()
        );
    }
}

#[tokio::test]
async fn half_an_http2_preface_is_cut_off_on_plain_http() {
    let (router, _up, _dir) = start(&[("XSROUTER_HEADER_READ_TIMEOUT", "1".to_owned())]).await;
    for sent in [&b"P"[..], b"PRI * HTTP/2.0\r\n\r\nSM"] {
        let mut tcp = TcpStream::connect(router.addr).await.expect("connect");
        tcp.write_all(sent).await.expect("write");
        let after = time_to_close(&mut tcp, Duration::from_secs(5)).await;
        assert!(after >= Duration::from_millis(800), "{sent:?}: {after:?}");
    }
    // A client that sends the request line and stops there is cut off too.
    let mut tcp = TcpStream::connect(router.addr).await.expect("connect");
    tcp.write_all(b"GET /api/x HTTP/1.1\r\n")
        .await
        .expect("write");
    let after = time_to_close(&mut tcp, Duration::from_secs(5)).await;
    assert!(after >= Duration::from_millis(800), "{after:?}");
}

#[tokio::test]
async fn after_an_upgrade_request_both_framings_are_left_to_hyper() {
    let (router, up, _dir) = start(&[]).await;
    // The check stops at a request with Upgrade (the connection may become a tunnel). When it
    // is not upgraded, a later conflicting request is framed as chunked by hyper, forwarded
    // without Content-Length, and the connection is closed after it: never ambiguous.
    let answer = exchange(
        router.addr,
        b"GET /api/upgrade HTTP/1.1\r\nHost: r\r\nUpgrade: foo\r\n\r\n\
          POST /api/late HTTP/1.1\r\nHost: r\r\nContent-Length: 60\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n\
          GET /api/smuggled HTTP/1.1\r\nHost: r\r\n\r\n",
    )
    .await;
    let text = String::from_utf8_lossy(&answer);
    assert_eq!(statuses(&answer), vec![200, 200], "{text}");
    assert_eq!(upstream_paths(&up), vec!["/upgrade", "/late"]);
    let late =
        &text[text.rfind("{\"body_length\"").expect("json")..=text.rfind('}').expect("json")];
    let echo: Value = serde_json::from_str(late).expect("echo json");
    assert_eq!(echo["body_length"], 5, "{echo}");
    assert!(echo["headers"]["content-length"].is_null(), "{echo}");
    assert!(text.contains("\r\nconnection: close\r\n"), "{text}");
}

#[tokio::test]
async fn silent_connections_do_not_hold_up_shutdown() {
    // Default header read timeout (60 s): only the shutdown can end these connections.
    let (router, _up, _dir) = start(&[]).await;
    let mut silent = TcpStream::connect(router.addr).await.expect("connect");
    let mut preface = TcpStream::connect(router.addr).await.expect("connect");
    preface
        .write_all(b"PRI * HTTP/2.0\r\n")
        .await
        .expect("write");
    // Make sure both are accepted and being served before the shutdown.
    let response = support::raw_get(router.addr, "/api/ok").await;
    assert_eq!(response.status, 200);
    let started = std::time::Instant::now();
    assert_eq!(router.stop().await, xsrouter::server::Stopped::Drained);
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    time_to_close(&mut silent, Duration::from_secs(1)).await;
    time_to_close(&mut preface, Duration::from_secs(1)).await;
}
