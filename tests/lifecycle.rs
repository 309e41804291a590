//! The real binary as a server: it logs its address, and on SIGTERM stops accepting, lets
//! requests in flight finish within `XSROUTER_SHUTDOWN_TIMEOUT`, and exits 0.

mod support;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::process::RouterProcess;
use support::{WorkDir, destinations, upstream};

fn api_app() -> WorkDir {
    WorkDir::new(&json!({
        "authenticationMethod": "none",
        "routes": [{"source": "^/api/(.*)$", "target": "/$1", "destination": "backend"}]
    }))
}

/// Waits until the upstream has a connection from the router: the request is in flight.
async fn wait_for_upstream_connection(upstream: &upstream::Upstream) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while upstream.connections() == 0 {
        assert!(
            Instant::now() < deadline,
            "the router never reached the upstream"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Once the process is gone, nothing listens on its port any more.
async fn assert_refused(addr: SocketAddr) {
    let err = tokio::net::TcpStream::connect(addr)
        .await
        .expect_err("nothing may accept connections after the shutdown");
    assert_eq!(err.kind(), std::io::ErrorKind::ConnectionRefused, "{err}");
}

/// Whether a new connection is turned away. A connection the kernel had half set up when the
/// listener closed is reset rather than refused: it was not accepted either.
async fn connection_refused(addr: SocketAddr) -> bool {
    match tokio::net::TcpStream::connect(addr).await {
        Ok(_) => false,
        Err(err) => {
            assert!(
                matches!(
                    err.kind(),
                    std::io::ErrorKind::ConnectionRefused | std::io::ErrorKind::ConnectionReset
                ),
                "unexpected connect error: {err}"
            );
            true
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_lets_requests_in_flight_finish_then_exits_zero() {
    let upstream = upstream::start().await;
    let dir = api_app();
    let mut router = RouterProcess::start(
        dir.path(),
        &[("destinations", destinations(&[("backend", upstream.url())]))],
    );
    assert_eq!(router.addr.ip().to_string(), "127.0.0.1");
    assert_ne!(router.addr.port(), 0);

    let url = router.url("/api/slow/1500");
    let in_flight = tokio::spawn(async move {
        let response = support::client()
            .get(url)
            .timeout(Duration::from_secs(20))
            .send()
            .await
            .expect("the request in flight gets its answer");
        let status = response.status().as_u16();
        let frame = response.headers().get("x-frame-options").cloned();
        let body = response.bytes().await.expect("the whole body");
        (status, frame, body)
    });
    wait_for_upstream_connection(&upstream).await;
    let signalled = Instant::now();
    router.sigterm();

    // While the request drains, the listener is already gone.
    let deadline = Instant::now() + Duration::from_secs(1);
    while !connection_refused(router.addr).await {
        assert!(
            Instant::now() < deadline,
            "still accepting connections 1 s after SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(
        !in_flight.is_finished(),
        "the slow request should still be in flight when new connections are refused"
    );

    let (status, frame, body) = tokio::time::timeout(Duration::from_secs(10), in_flight)
        .await
        .expect("the in-flight request completes")
        .expect("request task");
    assert_eq!(status, 200);
    assert_eq!(
        frame.as_ref().map(|v| v.as_bytes()),
        Some(&b"SAMEORIGIN"[..])
    );
    let echo: Value = serde_json::from_slice(&body).expect("echo JSON");
    assert_eq!(echo["url"], "/slow/1500");

    let exit = router.exit_within(Duration::from_secs(5)).await;
    assert_eq!(exit.code(), Some(0), "log:\n{}", router.log_text());
    assert!(
        signalled.elapsed() >= Duration::from_millis(1000),
        "exited after {:?}: it cannot have waited for the 1.5 s request",
        signalled.elapsed()
    );
    assert_refused(router.addr).await;
    let log = router.finished_log();
    assert!(log.contains("shutting down"), "{log}");
    assert!(
        log.lines().any(|l| l.trim_end().ends_with(" stopped")),
        "{log}"
    );
    assert!(
        !log.contains("still in flight after the grace period"),
        "{log}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_when_idle_exits_at_once() {
    let dir = api_app();
    let mut router = RouterProcess::start(
        dir.path(),
        &[(
            "destinations",
            destinations(&[("backend", "http://127.0.0.1:9".to_owned())]),
        )],
    );
    // It answers before the signal.
    let response = support::client()
        .get(router.url("/nothing"))
        .send()
        .await
        .expect("send");
    assert_eq!(response.status(), 404);
    let signalled = Instant::now();
    router.sigterm();
    let exit = router.exit_within(Duration::from_secs(3)).await;
    assert_eq!(exit.code(), Some(0), "log:\n{}", router.log_text());
    assert!(
        signalled.elapsed() < Duration::from_secs(2),
        "{:?}",
        signalled.elapsed()
    );
    assert_refused(router.addr).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_grace_period_expires() {
    let upstream = upstream::start().await;
    let dir = api_app();
    let mut router = RouterProcess::start(
        dir.path(),
        &[
            ("destinations", destinations(&[("backend", upstream.url())])),
            ("XSROUTER_SHUTDOWN_TIMEOUT", "1".to_owned()),
        ],
    );
    let url = router.url("/api/slow/10000");
    let in_flight = tokio::spawn(async move {
        support::client()
            .get(url)
            .timeout(Duration::from_secs(20))
            .send()
            .await
    });
    wait_for_upstream_connection(&upstream).await;
    let signalled = Instant::now();
    router.sigterm();
    let exit = router.exit_within(Duration::from_secs(3)).await;
    let waited = signalled.elapsed();
    assert_eq!(exit.code(), Some(0), "log:\n{}", router.log_text());
    assert!(
        waited >= Duration::from_millis(900),
        "exited after {waited:?}, before the 1 s grace period"
    );
    // The request was cut off with the process, long before the upstream answered.
    let outcome = tokio::time::timeout(Duration::from_secs(5), in_flight)
        .await
        .expect("the client notices the closed connection")
        .expect("request task");
    assert!(
        outcome.is_err(),
        "the cut-off request must not look answered: {outcome:?}"
    );
    assert_refused(router.addr).await;
    let log = router.finished_log();
    assert!(
        log.contains("stopped with requests still in flight after the grace period"),
        "{log}"
    );
}
