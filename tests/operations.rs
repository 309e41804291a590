//! Operations on the real binary: the management port (health, readiness, metrics) apart from
//! the routes, the access log, and secrets kept out of every log line — at trace level, through
//! login, sessions, CSRF, token fetches and exchanges, outbound mTLS and the error paths.

mod support;

use std::time::Duration;

use serde_json::json;
use support::browser::{Browser, bearer, echo};
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

const CLIENT: &str = "sb-ops!t1";
const APP: &str = "ops!t1";

/// Every line of a PEM's base64 body that is long enough to be unmistakable.
fn pem_body_lines(pem: &str) -> Vec<String> {
    pem.lines()
        .filter(|l| !l.starts_with("-----") && l.len() >= 40)
        .map(str::to_owned)
        .collect()
}

#[tokio::test]
async fn no_secret_reaches_the_log_at_trace_level_on_any_path() {
    let server_pki = Pki::new("Server");
    let client_pki = Pki::new("Client");
    let ts = TokenService::start(&server_pki, &client_pki).await;
    let leaf = client_pki.client("router identity", KeyForm::RsaPkcs1);
    ts.register_client(CLIENT, None, Some("router identity"));
    ts.register_client("exchange-client", Some("EXCHANGE-CLIENT-SECRET"), None);
    ts.set_login_user("alice", &[&format!("{APP}.Read"), "openid"]);
    let backend = upstream::start().await;
    let mtls_backend = support::mtls::start(&server_pki, &client_pki, 0).await;
    let dir = WorkDir::new(&json!({
        "routes": [
            {"source": "^/app/(.*)$", "target": "/$1", "destination": "backend", "scope": "$XSAPPNAME.Read"},
            {"source": "^/exchange/(.*)$", "target": "/$1", "destination": "exchanged", "csrfProtection": false},
            {"source": "^/technical/(.*)$", "target": "/$1", "destination": "technical", "authenticationType": "none"},
            {"source": "^/mtls/(.*)$", "target": "/$1", "destination": "mtls", "authenticationType": "none"},
            {"source": "^/down/(.*)$", "target": "/$1", "destination": "down", "authenticationType": "none"}
        ],
        "logout": {"logoutEndpoint": "/do/logout", "logoutMethod": "GET"}
    }));
    let ca = dir.file("server-ca.pem", server_pki.root_pem());
    let vcap = json!({"xsuaa": [{"name": "uaa", "label": "xsuaa", "tags": ["xsuaa"], "credentials": {
        "clientid": CLIENT, "xsappname": APP, "credential-type": "x509",
        "url": ts.url, "certurl": ts.cert_url,
        "certificate": leaf.chain_pem(&client_pki), "key": leaf.key_pem}}]});
    let destinations = json!([
        {"name": "backend", "url": backend.url(), "forwardAuthToken": true},
        {"name": "exchanged", "url": backend.url(), "authentication": "OAuth2JWTBearer",
         "tokenServiceURL": ts.token_url(), "clientId": "exchange-client", "clientSecret": "EXCHANGE-CLIENT-SECRET"},
        {"name": "technical", "url": backend.url(), "authentication": "OAuth2ClientCredentials", "tokenServiceBinding": "xsuaa"},
        {"name": "mtls", "url": mtls_backend.url(), "forwardAuthCertificates": true},
        {"name": "down", "url": "http://127.0.0.1:1"}
    ]);
    let router = RouterProcess::start(
        dir.path(),
        &[
            ("destinations", destinations.to_string()),
            ("VCAP_SERVICES", vcap.to_string()),
            ("XS_CACERT_PATH", ca.display().to_string()),
            ("RUST_LOG", "trace".to_owned()),
            ("XSROUTER_MANAGEMENT_PORT", "0".to_owned()),
        ],
    );
    let c = client();
    let active_sessions = || async {
        let metrics = client()
            .get(management_url(&router, "/metrics"))
            .send()
            .await
            .expect("metrics")
            .text()
            .await
            .expect("text");
        metrics
            .lines()
            .find_map(|l| l.strip_prefix("xsrouter_active_sessions "))
            .unwrap_or_else(|| panic!("no active-sessions gauge: {metrics}"))
            .parse::<u64>()
            .expect("count")
    };
    assert_eq!(active_sessions().await, 0);
    let mut secrets: Vec<String> = vec!["EXCHANGE-CLIENT-SECRET".into(), "PRIVATE KEY".into()];
    secrets.extend(pem_body_lines(&leaf.key_pem));
    secrets.extend(pem_body_lines(&leaf.cert_pem));

    // Login (authorization code over mTLS, state, PKCE), the session and the user's token.
    let mut browser = Browser::default();
    let answer = echo(browser.login(&router, "/app/orders?top=5").await).await;
    let user_token = bearer(&answer);
    assert_eq!(ts.claims(&user_token)["user_name"], "alice");
    secrets.push(user_token);
    secrets.push(browser.session_id());
    assert_eq!(active_sessions().await, 1, "the login's session is counted");
    for authorize in ts.authorize_requests() {
        secrets.extend(authorize.get("state").cloned());
        secrets.extend(authorize.get("code_challenge").cloned());
    }

    // CSRF: fetched, accepted, and a wrong one refused.
    let fetched = browser
        .get(&router.url("/app/x"), &[("x-csrf-token", "fetch")])
        .await;
    let csrf = fetched.headers()["x-csrf-token"]
        .to_str()
        .expect("csrf")
        .to_owned();
    let accepted = browser
        .send(c.post(router.url("/app/x")), &[("x-csrf-token", &csrf)])
        .await;
    assert_eq!(accepted.status(), 200);
    let refused = browser
        .send(
            c.post(router.url("/app/x")),
            &[("x-csrf-token", "WRONG-CSRF-SECRET")],
        )
        .await;
    assert_eq!(refused.status(), 403);
    secrets.push(csrf);
    secrets.push("WRONG-CSRF-SECRET".into());

    // The user's token exchanged (jwt-bearer), a technical token over mTLS, outbound mTLS.
    let exchanged = bearer(&echo(browser.get(&router.url("/exchange/x"), &[]).await).await);
    assert_eq!(ts.claims(&exchanged)["cid"], "exchange-client");
    secrets.push(exchanged);
    let technical = bearer(
        &echo(
            c.get(router.url("/technical/x"))
                .header("authorization", "Bearer CLIENT-AUTHORIZATION-SECRET")
                .header("cookie", "other=CLIENT-COOKIE-SECRET")
                .send()
                .await
                .expect("send"),
        )
        .await,
    );
    assert_eq!(ts.claims(&technical)["cid"], CLIENT);
    secrets.push(technical);
    secrets.push("CLIENT-AUTHORIZATION-SECRET".into());
    secrets.push("CLIENT-COOKIE-SECRET".into());
    let chain = c.get(router.url("/mtls/x")).send().await.expect("send");
    assert_eq!(chain.status(), 200);
    assert_eq!(mtls_backend.chains()[0][0], "router identity");
    for request in ts.requests() {
        for key in [
            "code",
            "code_verifier",
            "assertion",
            "refresh_token",
            "client_secret",
        ] {
            secrets.extend(request.form.get(key).cloned());
        }
    }

    // A service-to-router token, accepted and forged.
    let service_token = ts.issue_user_token("svc", CLIENT, &[&format!("{APP}.Read")], 600);
    let mut forged_claims = ts.claims(&service_token);
    forged_claims["user_name"] = "mallory".into();
    let forged = TokenService::sign_with_foreign_key(&forged_claims);
    for (token, status) in [(&service_token, 200), (&forged, 401)] {
        let response = c
            .get(router.url("/app/svc"))
            .header("x-approuter-authorization", format!("Bearer {token}"))
            .send()
            .await
            .expect("send");
        assert_eq!(response.status(), status);
    }
    secrets.push(service_token);
    secrets.push(forged);

    // Error paths: an unknown session, a forged callback, a failing token service, a dead backend.
    let unknown = c
        .get(router.url("/app/x"))
        .header("cookie", "JSESSIONID=UNKNOWN-SESSION-SECRET")
        .header("x-requested-with", "XMLHttpRequest")
        .send()
        .await
        .expect("send");
    assert_eq!(unknown.status(), 401);
    let forged_callback = browser
        .get(
            &router.url("/login/callback?code=FORGED-CODE-SECRET&state=FORGED-STATE-SECRET"),
            &[],
        )
        .await;
    assert!(forged_callback.status().is_client_error());
    let uncached = ts.issue_user_token("svc2", CLIENT, &[&format!("{APP}.Read")], 600);
    ts.fail_next(3, 500);
    let failing = c
        .get(router.url("/exchange/again"))
        .header("x-approuter-authorization", format!("Bearer {uncached}"))
        .send()
        .await
        .expect("send");
    assert_eq!(failing.status(), 502);
    secrets.push(uncached);
    let dead = c
        .get(router.url("/down/x?token=QUERY-SECRET"))
        .header("authorization", "Bearer DEAD-BACKEND-SECRET")
        .send()
        .await
        .expect("send");
    assert_eq!(dead.status(), 502);
    secrets.extend(
        [
            "UNKNOWN-SESSION-SECRET",
            "FORGED-CODE-SECRET",
            "FORGED-STATE-SECRET",
            "QUERY-SECRET",
            "DEAD-BACKEND-SECRET",
        ]
        .map(String::from),
    );

    // Logout ends it all.
    let logout = browser.get(&router.url("/do/logout"), &[]).await;
    assert_eq!(logout.status(), 302);
    assert_eq!(active_sessions().await, 0, "logout ended the session");

    tokio::time::sleep(Duration::from_millis(300)).await;
    let log = router.log_text();
    assert!(
        log.contains("TRACE"),
        "the router really logged at trace level"
    );
    assert!(log.contains("xsrouter::access"), "{log}");
    assert!(secrets.len() > 20, "{secrets:?}");
    for secret in &secrets {
        assert!(!secret.is_empty());
        if let Some(line) = log.lines().find(|l| l.contains(secret.as_str())) {
            panic!("a secret reached the log: {secret}\n  in: {line}");
        }
    }
}
