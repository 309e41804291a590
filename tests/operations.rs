//! Operations on the real binary: the management port (health, readiness, metrics) apart from
//! the routes, the access log, and secrets kept out of every log line.

mod support;

use std::time::Duration;

use serde_json::json;
use support::pki::{KeyForm, Pki};
use support::process::RouterProcess;
use support::token_service::TokenService;
use support::{WorkDir, client, upstream};

/// `address=...` of the management line.
fn management_url(router: &RouterProcess, path: &str) -> String {
    let log = router.log_text();
    let line = log
        .lines()
        .find(|l| l.contains("management endpoints listening"))
        .expect("management line");
    let addr = support::process::address_field(line).expect("address");
    format!("http://{addr}{path}")
}

#[tokio::test]
async fn management_port_health_metrics_and_no_secrets_in_logs() {
    let pki = Pki::new("Client");
    let ts = TokenService::start(&Pki::new("Token Server"), &pki).await;
    ts.register_client("dest-client", Some("S3CR3T-client-secret"), None);
    let backend = upstream::start().await;
    let leaf = pki.client("router identity", KeyForm::EcPkcs8);
    let dir = WorkDir::new(&json!({
        "authenticationMethod": "none",
        "routes": [{"source": "^/api/(.*)$", "target": "/$1", "destination": "backend"},
                   {"source": "^/(.*)$", "destination": "backend"}]
    }));
    let vcap = json!({"xsuaa": [{"name": "uaa", "tags": ["xsuaa"], "credentials": {"clientid": "c", "url": "https://uaa.example",
        "certificate": leaf.chain_pem(&pki), "key": leaf.key_pem}}]});
    let destinations = json!([{"name": "backend", "url": backend.url(), "authentication": "OAuth2ClientCredentials",
        "tokenServiceURL": format!("{}/oauth/token", ts.url), "clientId": "dest-client", "clientSecret": "S3CR3T-client-secret"}]);
    let router = RouterProcess::start(
        dir.path(),
        &[
            ("destinations", destinations.to_string()),
            ("VCAP_SERVICES", vcap.to_string()),
            ("XSROUTER_MANAGEMENT_PORT", "0".to_owned()),
            ("RUST_LOG", "debug".to_owned()),
            ("LOG_FORMAT", "json".to_owned()),
        ],
    );
    let c = client();
    // Traffic that carries secrets both ways.
    ts.fail_next(1, 500);
    let response = c
        .get(router.url("/api/x?q=1"))
        .header("authorization", "Bearer TOKEN-FROM-CLIENT")
        .header("cookie", "JSESSIONID=COOKIE-SECRET; other=COOKIE-OTHER")
        .header("x-approuter-authorization", "Bearer TOKEN-SERVICE")
        .send()
        .await
        .expect("send");
    assert_eq!(response.status(), 200);
    let minted = ts
        .requests()
        .last()
        .map(|r| r.form.clone())
        .expect("token request");
    assert_eq!(
        minted.get("client_id").map(String::as_str),
        Some("dest-client")
    );
    let body = response.bytes().await.expect("body");
    let echo: serde_json::Value = serde_json::from_slice(&body).expect("json");
    let token = echo["headers"]["authorization"][0]
        .as_str()
        .expect("token")
        .trim_start_matches("Bearer ")
        .to_owned();

    // Management endpoints on their own port.
    let live = c
        .get(management_url(&router, "/health/live"))
        .send()
        .await
        .expect("live");
    assert_eq!(live.status(), 200);
    let ready = c
        .get(management_url(&router, "/health/ready"))
        .send()
        .await
        .expect("ready");
    assert_eq!(ready.status(), 200);
    let metrics = c
        .get(management_url(&router, "/metrics"))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    assert!(
        metrics.contains(
            "xsrouter_requests_total{route=\"0\",destination=\"backend\",status=\"200\"} 1"
        ),
        "{metrics}"
    );
    assert!(
        metrics.contains("xsrouter_upstream_duration_seconds_count{destination=\"backend\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("xsrouter_token_cache_misses_total 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("xsrouter_client_certificate_expiry_seconds{service=\"xsuaa\"}"),
        "{metrics}"
    );
    // ...and not through the routes: /metrics on the main port goes to the backend like any path.
    let routed = c.get(router.url("/metrics")).send().await.expect("routed");
    let routed: serde_json::Value =
        serde_json::from_slice(&routed.bytes().await.expect("body")).expect("echo");
    assert_eq!(routed["url"], "/metrics");

    tokio::time::sleep(Duration::from_millis(200)).await;
    let log = router.log_text();
    assert!(
        log.contains("\"target\":\"xsrouter::access\""),
        "JSON access log: {log}"
    );
    assert!(log.contains("\"destination\":\"backend\""), "{log}");
    for secret in [
        "S3CR3T-client-secret",
        "TOKEN-FROM-CLIENT",
        "COOKIE-SECRET",
        "COOKIE-OTHER",
        "TOKEN-SERVICE",
        token.as_str(),
        "PRIVATE KEY",
        leaf.key_pem.lines().nth(1).expect("key line"),
    ] {
        assert!(!log.contains(secret), "a secret reached the log: {secret}");
    }
    assert!(
        !log.contains("q=1"),
        "query strings may carry secrets and are not logged"
    );
}

#[tokio::test]
async fn the_demo_serves_the_example_page_and_a_proxied_route() {
    let repo = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let backend = xsrouter::demo::start_echo_backend(0)
        .await
        .expect("demo backend");
    let runtime =
        xsrouter::demo::demo_runtime(repo, backend.addr, xsrouter::config::Environment::default())
            .expect("example config");
    let state = xsrouter::demo::demo_state(runtime).await.expect("state");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(xsrouter::server::serve(
        listener,
        state,
        std::future::pending(),
        Duration::from_secs(1),
    ));
    let c = client();
    let welcome = c.get(format!("http://{addr}/")).send().await.expect("send");
    assert_eq!(welcome.status(), 302);
    assert_eq!(welcome.headers()["location"], "/index.html");
    let page = c
        .get(format!("http://{addr}/index.html"))
        .send()
        .await
        .expect("send");
    assert_eq!(page.status(), 200);
    assert!(
        page.text()
            .await
            .expect("page")
            .contains("xsrouter example")
    );
    let api = c
        .get(format!("http://{addr}/api/hello"))
        .send()
        .await
        .expect("send");
    assert_eq!(api.status(), 200);
    let echo: serde_json::Value =
        serde_json::from_slice(&api.bytes().await.expect("body")).expect("json");
    assert_eq!(echo["url"], "/hello");
}
