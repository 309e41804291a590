//! Forwarding to destinations through a real router and real upstreams on loopback: headers
//! both ways, errors, timeouts, streaming and connection reuse.

mod support;

use std::time::Duration;

use serde_json::{Value, json};
use support::{Router, WorkDir, client, destinations, upstream};

fn api_app() -> WorkDir {
    WorkDir::new(&json!({
        "authenticationMethod": "none",
        "routes": [
            {"source": "^/api/(.*)$", "target": "/$1", "destination": "backend"},
            {"source": "^/raw(.*)$", "destination": "backend"}
        ]
    }))
}

/// The router on `api_app` with one destination `backend` at `url`.
async fn router_to(url: String) -> (Router, WorkDir) {
    let dir = api_app();
    let router = Router::start(
        dir.path(),
        &[("destinations", destinations(&[("backend", url)]))],
    )
    .await;
    (router, dir)
}

async fn start_with(
    dest: Value,
    extra: &[(&str, String)],
) -> (Router, upstream::Upstream, WorkDir) {
    let upstream = upstream::start().await;
    let mut dest = dest;
    dest["url"] = upstream.url().into();
    let dir = api_app();
    let mut env = vec![("destinations", Value::Array(vec![dest]).to_string())];
    env.extend(extra.iter().cloned());
    let router = Router::start(dir.path(), &env).await;
    (router, upstream, dir)
}

async fn echo_json(response: reqwest::Response) -> Value {
    assert_eq!(response.status(), 200, "{:?}", response.headers());
    serde_json::from_slice(&response.bytes().await.expect("body")).expect("echo json")
}

fn header<'a>(echo: &'a Value, name: &str) -> Option<&'a str> {
    echo["headers"][name][0].as_str()
}

#[tokio::test]
async fn target_rewriting_reaches_the_backend_with_query() {
    let (router, _up, _dir) = start_with(json!({"name": "backend"}), &[]).await;
    let echo = echo_json(
        client()
            .get(router.url("/api/a/b?q=1&r=%20"))
            .send()
            .await
            .expect("send"),
    )
    .await;
    assert_eq!(echo["url"], "/a/b?q=1&r=%20");
    // Without a target the URL passes unchanged.
    let echo = echo_json(
        client()
            .get(router.url("/raw/x?y"))
            .send()
            .await
            .expect("send"),
    )
    .await;
    assert_eq!(echo["url"], "/raw/x?y");
}

#[tokio::test]
async fn destination_url_path_is_joined_with_one_slash() {
    let upstream = upstream::start().await;
    let dir = api_app();
    let env = [(
        "destinations",
        destinations(&[("backend", format!("{}/base/", upstream.url()))]),
    )];
    let router = Router::start(dir.path(), &env).await;
    let echo = echo_json(
        client()
            .get(router.url("/api/v1/x"))
            .send()
            .await
            .expect("send"),
    )
    .await;
    assert_eq!(echo["url"], "/base/v1/x");
}

#[tokio::test]
async fn forwarded_headers_and_hop_by_hop_removal() {
    let (router, upstream, _dir) = start_with(json!({"name": "backend"}), &[]).await;
    let echo = echo_json(
        client()
            .get(router.url("/api/h"))
            .header("connection", "keep-alive, x-foo")
            .header("x-foo", "must go")
            .header("keep-alive", "timeout=5")
            .header("te", "trailers")
            .header("proxy-authorization", "Basic c2VjcmV0")
            .header("x-approuter-authorization", "Bearer abc")
            .header("authorization", "Bearer public-route-token")
            .header("cookie", "JSESSIONID=s1; a=b; __VCAP_ID__=v")
            .header("x-custom", "kept")
            .send()
            .await
            .expect("send"),
    )
    .await;
    for gone in [
        "x-foo",
        "keep-alive",
        "te",
        "proxy-authorization",
        "x-approuter-authorization",
        "connection",
    ] {
        assert_eq!(
            header(&echo, gone),
            None,
            "{gone} reached the backend: {echo}"
        );
    }
    assert_eq!(header(&echo, "x-custom"), Some("kept"));
    assert_eq!(
        header(&echo, "authorization"),
        Some("Bearer public-route-token")
    );
    assert_eq!(header(&echo, "cookie"), Some("a=b"));
    assert_eq!(
        header(&echo, "host"),
        Some(upstream.addr.to_string().as_str())
    );
    assert_eq!(
        header(&echo, "x-forwarded-host"),
        Some(router.addr.to_string().as_str())
    );
    assert_eq!(header(&echo, "x-forwarded-proto"), Some("http"));
    assert_eq!(header(&echo, "x-forwarded-for"), Some("127.0.0.1"));
    assert_eq!(header(&echo, "x-forwarded-path"), Some("/api/h"));
}

#[tokio::test]
async fn client_forwarded_values_are_kept_or_all_removed() {
    let (router, _up, _dir) = start_with(json!({"name": "backend"}), &[]).await;
    let echo = echo_json(
        client()
            .get(router.url("/api/x"))
            .header("x-forwarded-for", "203.0.113.7")
            .header("x-forwarded-host", "app.example")
            .header("x-forwarded-proto", "https")
            .send()
            .await
            .expect("send"),
    )
    .await;
    assert_eq!(header(&echo, "x-forwarded-for"), Some("203.0.113.7"));
    assert_eq!(header(&echo, "x-forwarded-host"), Some("app.example"));
    assert_eq!(header(&echo, "x-forwarded-proto"), Some("https"));

    let (router, _up, _dir) = start_with(
        json!({"name": "backend", "setXForwardedHeaders": false}),
        &[],
    )
    .await;
    let echo = echo_json(
        client()
            .get(router.url("/api/x"))
            .header("x-forwarded-for", "203.0.113.7")
            .send()
            .await
            .expect("send"),
    )
    .await;
    let names: Vec<&String> = echo["headers"]
        .as_object()
        .expect("headers")
        .keys()
        .collect();
    assert!(
        names.iter().all(|n| !n.starts_with("x-forwarded-")),
        "{names:?}"
    );
}

#[tokio::test]
async fn preserve_host_header() {
    let (router, _up, _dir) = start_with(
        json!({"name": "backend", "preserveHostHeader": "true"}),
        &[],
    )
    .await;
    let echo = echo_json(
        client()
            .get(router.url("/api/x"))
            .header("host", "app.example:443")
            .send()
            .await
            .expect("send"),
    )
    .await;
    assert_eq!(header(&echo, "host"), Some("app.example:443"));
}

#[tokio::test]
async fn response_headers_defaults_and_backend_precedence() {
    let (router, _up, _dir) = start_with(
        json!({"name": "backend"}),
        &[(
            "httpHeaders",
            r#"[{"X-Env": "env"}, {"X-Test": "env"}]"#.to_owned(),
        )],
    )
    .await;
    let response = client()
        .get(router.url("/api/headers"))
        .send()
        .await
        .expect("send");
    assert_eq!(response.status(), 200);
    let h = response.headers();
    assert_eq!(h["x-frame-options"], "DENY", "the backend's value wins");
    assert_eq!(h["x-test"], "backend");
    assert_eq!(h["x-env"], "env");
    assert_eq!(h["set-cookie"], "backend=1; Path=/");
    assert!(
        h.get("x-private").is_none() && h.get("keep-alive").is_none(),
        "hop-by-hop leaked: {h:?}"
    );

    let response = client()
        .get(router.url("/api/plain"))
        .send()
        .await
        .expect("send");
    assert_eq!(response.headers()["x-frame-options"], "SAMEORIGIN");

    let (router, _up, _dir) = start_with(
        json!({"name": "backend"}),
        &[("SEND_XFRAMEOPTIONS", "false".to_owned())],
    )
    .await;
    let response = client()
        .get(router.url("/api/plain"))
        .send()
        .await
        .expect("send");
    assert!(response.headers().get("x-frame-options").is_none());
}

#[tokio::test]
async fn refused_upstream_is_502_and_stalled_upstream_is_504() {
    // A port nobody listens on: bind, note the port, close.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr")
    };
    let (router, _dir) = router_to(format!("http://{closed}")).await;
    let response = client()
        .get(router.url("/api/x"))
        .send()
        .await
        .expect("send");
    assert_eq!(response.status(), 502);
    assert_eq!(
        response.headers()["cache-control"],
        "no-cache, no-store, must-revalidate"
    );
    let body = response.text().await.expect("body");
    assert_eq!(body.trim(), "Bad Gateway");

    let (router, _up, _dir) = start_with(json!({"name": "backend", "timeout": 300}), &[]).await;
    let started = std::time::Instant::now();
    let response = client()
        .get(router.url("/api/slow/3000"))
        .send()
        .await
        .expect("send");
    assert_eq!(response.status(), 504);
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "timeout not applied: {:?}",
        started.elapsed()
    );
    // A backend that answers within the timeout is fine.
    let response = client()
        .get(router.url("/api/slow/50"))
        .send()
        .await
        .expect("send");
    assert_eq!(response.status(), 200);
}

#[tokio::test]
async fn garbage_from_upstream_is_502() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            let mut buf = [0u8; 1024];
            let _ = stream.read(&mut buf).await;
            let _ = stream.write_all(b"this is not HTTP at all\r\n\r\n").await;
        }
    });
    let (router, _dir) = router_to(format!("http://{addr}")).await;
    let response = client()
        .get(router.url("/api/x"))
        .send()
        .await
        .expect("send");
    assert_eq!(response.status(), 502);
}

#[tokio::test]
async fn upstream_status_and_body_pass_through() {
    let (router, _up, _dir) = start_with(json!({"name": "backend"}), &[]).await;
    let response = client()
        .post(router.url("/api/status/418"))
        .body("x")
        .send()
        .await
        .expect("send");
    assert_eq!(response.status(), 418);
    assert_eq!(response.text().await.expect("body"), "status 418");
}

#[tokio::test]
async fn upload_streams_to_the_backend_before_it_is_complete() {
    let (router, upstream, _dir) = start_with(json!({"name": "backend"}), &[]).await;
    let (first_tx, mut first_rx) = tokio::sync::mpsc::channel(1);
    *upstream.observed.first_chunk.lock().await = Some(first_tx);
    let (body_tx, body_rx) = tokio::sync::mpsc::channel::<Result<bytes::Bytes, std::io::Error>>(4);
    let body = reqwest::Body::wrap_stream(tokio_stream_from(body_rx));
    let request = tokio::spawn(client().post(router.url("/api/upload")).body(body).send());
    body_tx
        .send(Ok(bytes::Bytes::from(vec![1u8; 1024])))
        .await
        .expect("first chunk");
    // The backend must see the first chunk while the client still holds the rest back:
    // a buffering proxy would wait for the end of the body.
    let seen = tokio::time::timeout(Duration::from_secs(5), first_rx.recv())
        .await
        .expect("first chunk forwarded before the body ended");
    assert_eq!(seen, Some(1024));
    for _ in 0..16 {
        body_tx
            .send(Ok(bytes::Bytes::from(vec![2u8; 64 * 1024])))
            .await
            .expect("chunk");
    }
    drop(body_tx);
    let response = request.await.expect("join").expect("response");
    assert_eq!(
        response.text().await.expect("body"),
        (1024 + 16 * 64 * 1024).to_string()
    );
}

fn tokio_stream_from<T: Send + 'static>(
    mut rx: tokio::sync::mpsc::Receiver<T>,
) -> impl futures_util::Stream<Item = T> + Send + 'static {
    futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

#[tokio::test]
async fn large_download_streams_through() {
    let (router, _up, _dir) = start_with(json!({"name": "backend"}), &[]).await;
    let response = client()
        .get(router.url("/api/download/64"))
        .send()
        .await
        .expect("send");
    assert_eq!(response.status(), 200);
    let mut total = 0usize;
    let mut stream = response.bytes_stream();
    use futures_util::StreamExt;
    while let Some(chunk) = stream.next().await {
        total += chunk.expect("chunk").len();
    }
    assert_eq!(total, 64 * 1024 * 1024);
}

#[tokio::test]
async fn upstream_connections_are_reused() {
    let (router, upstream, _dir) = start_with(json!({"name": "backend"}), &[]).await;
    let c = client();
    for _ in 0..20 {
        let response = c.get(router.url("/api/x")).send().await.expect("send");
        assert_eq!(response.status(), 200);
        response.bytes().await.expect("body");
    }
    assert_eq!(
        upstream.connections(),
        1,
        "sequential requests should share one pooled connection"
    );
}

#[tokio::test]
async fn requests_go_through_the_configured_forward_proxy() {
    // A forward proxy on loopback that answers itself, reporting the absolute-form target it got.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let proxy_addr = listener.local_addr().expect("addr");
    let app = axum::Router::new().fallback(|request: axum::extract::Request| async move {
        serde_json::json!({"proxied": request.uri().to_string()}).to_string()
    });
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    let dir = api_app();
    let dest = json!([{"name": "backend", "url": "http://backend.internal:8080/base",
        "proxyHost": "127.0.0.1", "proxyPort": proxy_addr.port()}]);
    let router = Router::start(dir.path(), &[("destinations", dest.to_string())]).await;
    let response = client()
        .get(router.url("/api/x?y=1"))
        .send()
        .await
        .expect("send");
    assert_eq!(response.status(), 200);
    let body: Value = serde_json::from_slice(&response.bytes().await.expect("body")).expect("json");
    assert_eq!(body["proxied"], "http://backend.internal:8080/base/x?y=1");
}

#[tokio::test]
async fn a_trailer_header_on_a_plain_request_is_harmless() {
    // approuter 23 exits on this request; xsrouter drops the hop-by-hop header and carries on.
    let (router, _up, _dir) = start_with(json!({"name": "backend"}), &[]).await;
    let raw = support::raw_request(
        router.addr,
        b"GET /api/t HTTP/1.1\r\nHost: router.test\r\nTrailer: X-Checksum\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(raw.status, 200);
    let echo: Value = serde_json::from_slice(&raw.body).expect("json");
    assert_eq!(echo["headers"]["trailer"], Value::Null);
    // And the router is still there.
    let response = client()
        .get(router.url("/api/after"))
        .send()
        .await
        .expect("send");
    assert_eq!(response.status(), 200);
}

#[tokio::test]
async fn correlation_ids_reach_the_backend_and_come_back() {
    let (router, _up, _dir) = start_with(json!({"name": "backend"}), &[]).await;
    let response = client()
        .get(router.url("/api/x"))
        .header("x-request-id", "req-42")
        .send()
        .await
        .expect("send");
    assert_eq!(response.headers()["x-request-id"], "req-42");
    let echo: Value = serde_json::from_slice(&response.bytes().await.expect("body")).expect("json");
    assert_eq!(header(&echo, "x-correlationid"), Some("req-42"));
    // Without one, the router makes one up and uses it both ways.
    let response = client()
        .get(router.url("/api/y"))
        .send()
        .await
        .expect("send");
    let id = response.headers()["x-request-id"]
        .to_str()
        .expect("id")
        .to_owned();
    assert_eq!(id.len(), 36, "a UUID: {id}");
    let echo: Value = serde_json::from_slice(&response.bytes().await.expect("body")).expect("json");
    assert_eq!(header(&echo, "x-correlationid"), Some(id.as_str()));
}
