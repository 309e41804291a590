//! Tokens for destinations, end to end through the router against the XSUAA-compatible test
//! token service: minting over secret and mTLS, caching with single flight, expiry, failures
//! and recovery, exchanged user tokens never crossed between users.

mod support;

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use support::pki::{KeyForm, Pki};
use support::token_service::TokenService;
use support::{Router, WorkDir, client, upstream};
use xsrouter::pipeline::AppState;
use xsrouter::secret::Secret;

fn app() -> WorkDir {
    WorkDir::new(&json!({
        "authenticationMethod": "none",
        "routes": [{"source": "^/api/(.*)$", "target": "/$1", "destination": "backend"}]
    }))
}

struct Setup {
    ts: TokenService,
    backend: upstream::Upstream,
    dir: WorkDir,
    server_pki: Pki,
    client_pki: Pki,
}

async fn setup() -> Setup {
    let server_pki = Pki::new("Token Server");
    let client_pki = Pki::new("Client");
    let ts = TokenService::start(&server_pki, &client_pki).await;
    let backend = upstream::start().await;
    Setup {
        ts,
        backend,
        dir: app(),
        server_pki,
        client_pki,
    }
}

impl Setup {
    fn cc_destination(&self) -> Value {
        self.ts
            .register_client("dest-client", Some("dest-secret"), None);
        json!({
            "name": "backend", "url": self.backend.url(),
            "authentication": "OAuth2ClientCredentials",
            "tokenServiceURL": format!("{}/oauth/token", self.ts.url),
            "clientId": "dest-client", "clientSecret": "dest-secret"
        })
    }

    fn env(&self, destination: Value) -> Vec<(&'static str, String)> {
        vec![("destinations", json!([destination]).to_string())]
    }
}

/// The bearer token the backend received.
async fn bearer_seen(router: &Router, path: &str) -> String {
    let response = client().get(router.url(path)).send().await.expect("send");
    assert_eq!(response.status(), 200, "{path}");
    let echo: Value = serde_json::from_slice(&response.bytes().await.expect("body")).expect("json");
    let authorization = echo["headers"]["authorization"][0]
        .as_str()
        .expect("authorization header");
    authorization
        .strip_prefix("Bearer ")
        .expect("bearer")
        .to_owned()
}

#[tokio::test]
async fn client_credentials_with_secret_is_minted_once_and_reused() {
    let s = setup().await;
    let router = Router::start(s.dir.path(), &s.env(s.cc_destination())).await;
    let first = bearer_seen(&router, "/api/a").await;
    let claims = s.ts.claims(&first);
    assert_eq!(claims["cid"], "dest-client");
    assert_eq!(claims["grant_type"], "client_credentials");
    assert_eq!(bearer_seen(&router, "/api/b").await, first);
    assert_eq!(s.ts.token_requests(), 1);
    // The client's own Authorization never reaches the backend in its place.
    let response = client()
        .get(router.url("/api/c"))
        .header("authorization", "Bearer forged")
        .send()
        .await
        .expect("send");
    let echo: Value = serde_json::from_slice(&response.bytes().await.expect("body")).expect("json");
    assert_eq!(
        echo["headers"]["authorization"][0],
        format!("Bearer {first}")
    );
}

#[tokio::test]
async fn client_credentials_over_mtls_with_the_bound_xsuaa_identity() {
    let s = setup().await;
    let leaf = s.client_pki.client("sb-router-cert", KeyForm::EcPkcs8);
    s.ts.register_client("sb-router!t1", None, Some("sb-router-cert"));
    let vcap = json!({"xsuaa": [{"name": "uaa", "tags": ["xsuaa"], "credentials": {
        "clientid": "sb-router!t1", "credential-type": "x509",
        "url": s.ts.url, "certurl": s.ts.cert_url,
        "certificate": leaf.chain_pem(&s.client_pki), "key": leaf.key_pem}}]});
    let destination = json!({"name": "backend", "url": s.backend.url(),
        "authentication": "OAuth2ClientCredentials", "tokenServiceBinding": "xsuaa"});
    let ca = s.dir.file("token-ca.pem", s.server_pki.root_pem());
    let mut env = s.env(destination);
    env.push(("VCAP_SERVICES", vcap.to_string()));
    env.push(("XS_CACERT_PATH", ca.display().to_string()));
    let router = Router::start(s.dir.path(), &env).await;
    let token = bearer_seen(&router, "/api/x").await;
    assert_eq!(s.ts.claims(&token)["cid"], "sb-router!t1");
    let requests = s.ts.requests();
    assert_eq!(requests.len(), 1);
    assert!(
        requests[0].via_mtls,
        "the token request must go to certurl over mTLS"
    );
    assert_eq!(
        requests[0].client_cert_cn.as_deref(),
        Some("sb-router-cert")
    );
    assert!(!requests[0].form.contains_key("client_secret"));
    assert_eq!(
        requests[0].form.get("client_id").map(String::as_str),
        Some("sb-router!t1")
    );
}

#[tokio::test]
async fn wrong_client_certificate_is_a_clear_error() {
    let s = setup().await;
    let leaf = s
        .client_pki
        .client("not-the-registered-cn", KeyForm::EcPkcs8);
    s.ts.register_client("sb-router!t1", None, Some("sb-router-cert"));
    let vcap = json!({"xsuaa": [{"name": "uaa", "tags": ["xsuaa"], "credentials": {
        "clientid": "sb-router!t1", "url": s.ts.url, "certurl": s.ts.cert_url,
        "certificate": leaf.chain_pem(&s.client_pki), "key": leaf.key_pem}}]});
    let ca = s.dir.file("token-ca.pem", s.server_pki.root_pem());
    let env = vec![
        ("destinations", json!([{"name": "backend", "url": s.backend.url(), "authentication": "OAuth2ClientCredentials", "tokenServiceBinding": "xsuaa"}]).to_string()),
        ("VCAP_SERVICES", vcap.to_string()),
        ("XS_CACERT_PATH", ca.display().to_string()),
    ];
    let router = Router::start(s.dir.path(), &env).await;
    let response = client()
        .get(router.url("/api/x"))
        .send()
        .await
        .expect("send");
    assert_eq!(response.status(), 502);
    assert_eq!(
        response.text().await.expect("body").trim(),
        "Bad Gateway: no token for the destination"
    );
    assert_eq!(s.backend.connections(), 0, "no request without a token");
    assert_eq!(s.ts.token_requests(), 1, "a refused client is not retried");

    // The error names what went wrong (without secrets).
    let runtime = support::load_runtime(s.dir.path(), &env).expect("runtime");
    let destination = runtime.destination("backend").expect("destination").clone();
    let state = AppState::build(runtime).await.expect("state");
    let err = state
        .tokens()
        .authorization(&destination, None)
        .await
        .expect_err("refused");
    assert!(err.to_string().contains("(401): invalid_client"), "{err}");
}

#[tokio::test]
async fn concurrent_cold_requests_make_one_token_request() {
    let s = setup().await;
    s.ts.set_delay(Duration::from_millis(300));
    let router = Arc::new(Router::start(s.dir.path(), &s.env(s.cc_destination())).await);
    let c = client();
    let mut tasks = Vec::new();
    for i in 0..200 {
        let (c, router) = (c.clone(), router.clone());
        tasks.push(tokio::spawn(async move {
            c.get(router.url(&format!("/api/{i}")))
                .send()
                .await
                .map(|r| r.status().as_u16())
        }));
    }
    for task in tasks {
        assert_eq!(task.await.expect("join").expect("send"), 200);
    }
    assert_eq!(
        s.ts.token_requests(),
        1,
        "200 concurrent misses must share one token request"
    );
}

#[tokio::test]
async fn expiry_triggers_exactly_one_refresh() {
    let s = setup().await;
    s.ts.set_expires_in(2); // cached for half its life: 1 s
    let router = Router::start(s.dir.path(), &s.env(s.cc_destination())).await;
    let first = bearer_seen(&router, "/api/a").await;
    assert_eq!(bearer_seen(&router, "/api/b").await, first);
    tokio::time::sleep(Duration::from_millis(1300)).await;
    let second = bearer_seen(&router, "/api/c").await;
    assert_ne!(second, first);
    assert_eq!(bearer_seen(&router, "/api/d").await, second);
    assert_eq!(s.ts.token_requests(), 2);
}

#[tokio::test]
async fn token_service_down_gives_502_and_recovers() {
    let s = setup().await;
    let router = Router::start(s.dir.path(), &s.env(s.cc_destination())).await;
    s.ts.set_down(true);
    let response = client()
        .get(router.url("/api/x"))
        .send()
        .await
        .expect("send");
    assert_eq!(response.status(), 502);
    assert_eq!(s.backend.connections(), 0);
    s.ts.set_down(false);
    let token = bearer_seen(&router, "/api/x").await;
    assert_eq!(s.ts.claims(&token)["cid"], "dest-client");
}

#[tokio::test]
async fn transient_failures_are_retried_boundedly() {
    let s = setup().await;
    let router = Router::start(s.dir.path(), &s.env(s.cc_destination())).await;
    s.ts.fail_next(2, 503);
    bearer_seen(&router, "/api/x").await;
    assert_eq!(s.ts.token_requests(), 3, "two 503s, then success");

    let router = Router::start(s.dir.path(), &s.env(s.cc_destination())).await;
    let before = s.ts.token_requests();
    s.ts.fail_next(10, 429);
    let response = client()
        .get(router.url("/api/x"))
        .send()
        .await
        .expect("send");
    assert_eq!(response.status(), 502);
    assert_eq!(s.ts.token_requests() - before, 3, "bounded: three attempts");
    // The failure was not cached: the next request tries again (and still meets 429s).
    s.ts.fail_next(0, 429);
    bearer_seen(&router, "/api/x").await;
}

#[tokio::test]
async fn user_tokens_are_exchanged_per_user_and_never_crossed() {
    let s = setup().await;
    s.ts.register_client("exchange-client", Some("x-secret"), None);
    let destination = json!({"name": "backend", "url": s.backend.url(), "authentication": "OAuth2JWTBearer",
        "tokenServiceURL": format!("{}/oauth/token", s.ts.url), "clientId": "exchange-client", "clientSecret": "x-secret"});
    let env = s.env(destination);
    // Without a logged-in user the destination cannot be called.
    let router = Router::start(s.dir.path(), &env).await;
    assert_eq!(
        client()
            .get(router.url("/api/x"))
            .send()
            .await
            .expect("send")
            .status(),
        401
    );

    let runtime = support::load_runtime(s.dir.path(), &env).expect("runtime");
    let destination = runtime.destination("backend").expect("destination").clone();
    let state = AppState::build(runtime).await.expect("state");
    let alice = Secret::new(s.ts.issue_user_token("alice", "login-client", &["read"], 3600));
    let bob = Secret::new(s.ts.issue_user_token("bob", "login-client", &["read"], 3600));
    let tokens = state.tokens();
    let for_alice = tokens
        .authorization(&destination, Some(&alice))
        .await
        .expect("alice")
        .expect("header");
    let for_bob = tokens
        .authorization(&destination, Some(&bob))
        .await
        .expect("bob")
        .expect("header");
    let claims = |h: &Secret| s.ts.claims(h.expose().trim_start_matches("Bearer "));
    assert_eq!(claims(&for_alice)["user_name"], "alice");
    assert_eq!(claims(&for_bob)["user_name"], "bob");
    assert_eq!(claims(&for_alice)["cid"], "exchange-client");
    // Cached per user.
    let again = tokens
        .authorization(&destination, Some(&alice))
        .await
        .expect("alice")
        .expect("header");
    assert_eq!(again, for_alice);
    assert_eq!(s.ts.token_requests(), 2);
    let form = &s.ts.requests()[0].form;
    assert_eq!(
        form.get("grant_type").map(String::as_str),
        Some("urn:ietf:params:oauth:grant-type:jwt-bearer")
    );
}

#[tokio::test]
async fn ias_dependency_exchange_and_refresh_grant() {
    let s = setup().await;
    s.ts.register_client("ias-client", Some("ias-secret"), None);
    let vcap = json!({"identity": [{"name": "ias", "label": "identity", "credentials": {
        "clientid": "ias-client", "clientsecret": "ias-secret", "url": s.ts.url}}]});
    let destination =
        json!({"name": "backend", "url": s.backend.url(), "IASDependencyName": "orders-api"});
    let mut env = s.env(destination);
    env.push(("VCAP_SERVICES", vcap.to_string()));
    let runtime = support::load_runtime(s.dir.path(), &env).expect("runtime");
    let destination = runtime.destination("backend").expect("destination").clone();
    let state = AppState::build(runtime).await.expect("state");
    let user = Secret::new(s.ts.issue_user_token("carol", "ias-client", &["openid"], 3600));
    let header = state
        .tokens()
        .authorization(&destination, Some(&user))
        .await
        .expect("exchange")
        .expect("header");
    let claims = s.ts.claims(header.expose().trim_start_matches("Bearer "));
    assert_eq!(claims["user_name"], "carol");
    assert!(
        claims["aud"]
            .as_array()
            .expect("aud")
            .iter()
            .any(|a| a == "orders-api"),
        "{claims}"
    );
    let request = &s.ts.requests()[0];
    assert_eq!(
        request.form.get("resource").map(String::as_str),
        Some("urn:sap:identity:application:provider:name:orders-api")
    );

    // refresh_token grant with the refresh token of that exchange.
    use xsrouter::tokens::endpoint::{ClientAuth, EndpointUrl, TokenEndpoint};
    use xsrouter::tokens::{Grant, TokenRequest};
    let endpoint = TokenEndpoint {
        url: EndpointUrl::Fixed(format!("{}/oauth/token", s.ts.url)),
        client_id: "ias-client".into(),
        auth: ClientAuth::Secret(Secret::new("ias-secret")),
    };
    let exchanged = state
        .tokens()
        .service()
        .token(
            &endpoint,
            &TokenRequest::new(Grant::JwtBearer {
                assertion: user.clone(),
            }),
        )
        .await
        .expect("exchange");
    let refresh = exchanged.refresh_token.clone().expect("refresh token");
    let refreshed = state
        .tokens()
        .service()
        .token(
            &endpoint,
            &TokenRequest::new(Grant::RefreshToken {
                refresh_token: refresh,
            }),
        )
        .await
        .expect("refresh");
    assert_eq!(
        s.ts.claims(refreshed.access_token.expose())["user_name"],
        "carol"
    );
    assert_ne!(refreshed.access_token, exchanged.access_token);
}

#[tokio::test]
async fn business_service_route_mints_with_the_service_uaa() {
    let s = setup().await;
    s.ts.register_client("orders-uaa", Some("orders-secret"), None);
    let vcap = json!({"orders": [{"name": "orders-instance", "label": "orders", "credentials": {
        "sap.cloud.service": "com.test.orders",
        "endpoints": {"api": format!("{}/v2", s.backend.url())},
        "uaa": {"clientid": "orders-uaa", "clientsecret": "orders-secret", "url": s.ts.url}}}]});
    let env = vec![
        (
            "destinations",
            json!([{"name": "backend", "url": s.backend.url()}]).to_string(),
        ),
        ("VCAP_SERVICES", vcap.to_string()),
    ];
    let dir = WorkDir::new(&json!({
        "authenticationMethod": "none",
        "routes": [{"source": "^/orders/(.*)$", "target": "/$1", "service": "com.test.orders", "endpoint": "api"}]
    }));
    let router = Router::start(dir.path(), &env).await;
    let response = client()
        .get(router.url("/orders/items?top=1"))
        .send()
        .await
        .expect("send");
    let status = response.status();
    let body = response.bytes().await.expect("body");
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    let echo: Value = serde_json::from_slice(&body).expect("json");
    assert_eq!(echo["url"], "/v2/items?top=1");
    let token = echo["headers"]["authorization"][0]
        .as_str()
        .expect("auth")
        .trim_start_matches("Bearer ")
        .to_owned();
    assert_eq!(s.ts.claims(&token)["cid"], "orders-uaa");
}

#[tokio::test]
async fn basic_authentication_destination() {
    let s = setup().await;
    let destination = json!({"name": "backend", "url": s.backend.url(), "authentication": "BasicAuthentication",
        "user": "tech", "password": "pa:ss"});
    let router = Router::start(s.dir.path(), &s.env(destination)).await;
    let response = client()
        .get(router.url("/api/x"))
        .send()
        .await
        .expect("send");
    let echo: Value = serde_json::from_slice(&response.bytes().await.expect("body")).expect("json");
    assert_eq!(
        echo["headers"]["authorization"][0],
        "Basic dGVjaDpwYTpzcw=="
    );
}

#[tokio::test]
async fn client_credentials_tokens_are_loaded_at_start_up_unless_skipped() {
    for (skip, expected) in [(false, 1), (true, 0)] {
        let s = setup().await;
        let mut env = s.env(s.cc_destination());
        env.push(("SKIP_CLIENT_CREDENTIALS_TOKENS_LOAD", skip.to_string()));
        let runtime = support::load_runtime(s.dir.path(), &env).expect("runtime");
        let state = AppState::build(runtime).await.expect("state");
        state.spawn_token_prefetch();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
        while s.ts.token_requests() < expected && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(s.ts.token_requests(), expected, "skip={skip}");
    }
    // A token service that is down at start-up is not fatal.
    let s = setup().await;
    s.ts.set_down(true);
    let runtime = support::load_runtime(s.dir.path(), &s.env(s.cc_destination())).expect("runtime");
    let state = AppState::build(runtime)
        .await
        .expect("state builds although the token service is down");
    state.spawn_token_prefetch();
}
