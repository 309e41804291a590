//! `xsrouter demo`, the README's first command, run as the real binary on ephemeral ports: the
//! curl commands it prints are performed, and the mTLS backend must have seen the demo's client
//! certificate and a bearer token minted by the demo token service for that certificate.

mod support;

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use support::client;
use support::process::RouterProcess;

/// The URL of the printed curl command whose line contains `marker`.
fn curl_url(output: &str, marker: &str) -> String {
    let line = output
        .lines()
        .map(str::trim)
        .find(|l| l.starts_with("curl ") && l.contains(marker))
        .unwrap_or_else(|| panic!("no curl line with {marker:?} in:\n{output}"));
    line.split_whitespace()
        .find(|word| word.starts_with("http://") || word.starts_with("https://"))
        .unwrap_or_else(|| panic!("no URL in {line:?}"))
        .to_owned()
}

/// The first `https://...` word of the printed line that starts with `label`.
fn listed_url(output: &str, label: &str) -> String {
    let line = output
        .lines()
        .map(str::trim)
        .find(|l| l.starts_with(label))
        .unwrap_or_else(|| panic!("no {label:?} line in:\n{output}"));
    line.split_whitespace()
        .find(|w| w.starts_with("https://"))
        .unwrap_or_else(|| panic!("no URL in {line:?}"))
        .to_owned()
}

#[tokio::test]
async fn the_demo_routes_over_mtls_with_a_minted_token_and_stops_on_ctrl_c() {
    let repo = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut demo = RouterProcess::demo(repo, &[("XSROUTER_MANAGEMENT_PORT", "0".to_owned())]);
    demo.wait_for_line("Press Ctrl-C to stop", Duration::from_secs(30))
        .await;
    let output = demo.log_text();
    let c = client();

    // The request routed over mTLS with a minted token.
    let mtls_url = curl_url(&output, "/mtls/");
    assert!(
        mtls_url.starts_with(&format!("http://{}/", demo.addr)),
        "{mtls_url}"
    );
    let response = c.get(&mtls_url).send().await.expect("send");
    assert_eq!(response.status(), 200, "{output}");
    let seen: serde_json::Value =
        serde_json::from_slice(&response.bytes().await.expect("body")).expect("json");
    assert_eq!(seen["backend"], "xsrouter demo mTLS backend", "{seen}");
    assert_eq!(seen["url"], "/whoami");
    let cert = &seen["client_certificate"];
    let subject = cert["subject"].as_str().expect("subject");
    assert!(subject.contains("CN=xsrouter-demo-client"), "{seen}");
    assert!(
        cert["issuer"]
            .as_str()
            .expect("issuer")
            .contains("CN=xsrouter demo root CA"),
        "{seen}"
    );
    assert!(
        output.contains(subject),
        "the printed client certificate is the one the backend saw:\n{output}"
    );
    let token = &seen["bearer_token"];
    assert_eq!(token["present"], true, "{seen}");
    assert_eq!(token["signature"], "valid (demo token service)", "{seen}");
    let token_service = listed_url(&output, "token service");
    assert_eq!(
        token["issuer"],
        format!("{token_service}/oauth/token"),
        "{seen}"
    );
    let claims = &token["claims"];
    assert_eq!(claims["grant_type"], "client_credentials");
    assert_eq!(claims["client_id"], "sb-xsrouter-demo!t1");
    // The token was minted over mTLS for the very certificate the backend saw.
    let sha256 = cert["sha256"].as_str().expect("sha256");
    let bytes: Vec<u8> = (0..sha256.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&sha256[i..i + 2], 16).expect("hex"))
        .collect();
    assert_eq!(claims["cnf"]["x5t#S256"], URL_SAFE_NO_PAD.encode(bytes));
    assert!(
        !seen.to_string().contains("eyJ"),
        "the backend never echoes the token: {seen}"
    );

    // The plain echo route, the example page and the welcome redirect.
    let echo_url = curl_url(&output, "/api/hello");
    let echo: serde_json::Value = serde_json::from_slice(
        &c.get(&echo_url)
            .send()
            .await
            .expect("send")
            .bytes()
            .await
            .expect("body"),
    )
    .expect("json");
    assert_eq!(echo["backend"], "xsrouter demo echo backend");
    assert_eq!(echo["url"], "/hello");
    assert!(
        echo["headers"].get("authorization").is_none(),
        "no token for the plain destination: {echo}"
    );
    let welcome = c
        .get(curl_url(&output, "welcome"))
        .send()
        .await
        .expect("send");
    assert_eq!(welcome.status(), 302);
    assert_eq!(welcome.headers()["location"], "/index.html");
    let page = c
        .get(format!("http://{}/index.html", demo.addr))
        .send()
        .await
        .expect("send");
    assert!(page.text().await.expect("page").contains("/mtls/whoami"));

    // The backend itself refuses a client without a certificate.
    let direct = curl_url(&output, "refused");
    assert!(direct.starts_with("https://"), "{direct}");
    let insecure = reqwest::Client::builder()
        .no_proxy()
        .danger_accept_invalid_certs(true)
        .build()
        .expect("client");
    assert!(
        insecure.get(&direct).send().await.is_err(),
        "the mTLS backend answered a client without a certificate"
    );
    // So does the token service: tokens only for the bound certificate.
    assert!(
        insecure
            .post(format!("{token_service}/oauth/token"))
            .body("grant_type=client_credentials&client_id=sb-xsrouter-demo!t1")
            .send()
            .await
            .is_err(),
        "the demo token service answered a client without a certificate"
    );

    // One token minted (at start-up or by the first request), then served from the cache.
    let management = demo
        .wait_for_line("management endpoints listening", Duration::from_secs(1))
        .await;
    let addr = support::process::address_field(&management).expect("address");
    let metrics = c
        .get(format!("http://{addr}/metrics"))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    assert!(
        metrics.contains("xsrouter_token_cache_misses_total 1\n"),
        "{metrics}"
    );
    assert!(
        metrics.contains("xsrouter_client_certificate_expiry_seconds{service=\"xsuaa\"}"),
        "{metrics}"
    );

    demo.signal("INT");
    let status = demo.exit_within(Duration::from_secs(10)).await;
    assert!(status.success(), "{status}");
    let log = demo.finished_log();
    assert!(!log.contains("PRIVATE KEY"), "{log}");
}
