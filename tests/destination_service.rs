//! Destinations from the Destination service, end to end: the router looks names up at the
//! Destination-service test server (which only answers bearer tokens the test token service
//! issued to the binding) and forwards to real upstreams — each authentication type, the
//! keystore of `ClientCertificateAuthentication` presented to an mTLS upstream, the
//! `destinations` variable winning on a clash, single flight, cache bounds, errors, dynamic
//! destinations and the on-premise refusal.

mod support;

use std::time::Duration;

use base64::Engine;
use serde_json::{Value, json};
use support::destination_service::{DestinationService, pkcs12};
use support::pki::{KeyForm, Pki};
use support::token_service::TokenService;
use support::{Router, WorkDir, client, upstream};

const DEST_CLIENT: &str = "sb-dest!b1";
const DEST_SECRET: &str = "dest-secret";
const ROUTER_CLIENT: &str = "sb-router!t1";
const APP: &str = "router-app";

struct Setup {
    ts: TokenService,
    ds: DestinationService,
    backend: upstream::Upstream,
    server_pki: Pki,
    client_pki: Pki,
}

async fn setup() -> Setup {
    let server_pki = Pki::new("Server");
    let client_pki = Pki::new("Client");
    let ts = TokenService::start(&server_pki, &client_pki).await;
    ts.register_client(DEST_CLIENT, Some(DEST_SECRET), None);
    ts.register_client("backend-client", Some("backend-secret"), None);
    let ds = DestinationService::start(&ts, DEST_CLIENT).await;
    let backend = upstream::start().await;
    Setup {
        ts,
        ds,
        backend,
        server_pki,
        client_pki,
    }
}

/// Public routes: a named destination, a dynamic one (`$1`) and a named `plain`.
fn public_app() -> WorkDir {
    WorkDir::new(&json!({
        "authenticationMethod": "none",
        "routes": [
            {"source": "^/orders/(.*)$", "target": "/$1", "destination": "orders"},
            {"source": "^/plain/(.*)$", "target": "/$1", "destination": "plain"},
            {"source": "^/dyn/([^/]+)/(.*)$", "target": "/$2", "destination": "$1"}
        ]
    }))
}

impl Setup {
    fn env(&self) -> Vec<(&'static str, String)> {
        let vcap = json!({"destination": [self.ds.binding(&self.ts, DEST_SECRET)]});
        vec![("VCAP_SERVICES", vcap.to_string())]
    }

    async fn public_router(&self, extra: &[(&'static str, String)]) -> (WorkDir, Router) {
        let dir = public_app();
        let mut env = self.env();
        env.extend(extra.iter().cloned());
        let router = Router::start(dir.path(), &env).await;
        (dir, router)
    }

    fn plain(&self, name: &str) -> Value {
        json!({"Name": name, "Type": "HTTP", "URL": self.backend.url(),
               "Authentication": "NoAuthentication", "ProxyType": "Internet"})
    }

    fn client_credentials(&self, name: &str) -> Value {
        json!({"Name": name, "Type": "HTTP", "URL": self.backend.url(),
               "Authentication": "OAuth2ClientCredentials", "ProxyType": "Internet",
               "tokenServiceURL": self.ts.token_url(), "clientId": "backend-client",
               "clientSecret": "backend-secret"})
    }
}

/// Status and body of `GET path` with extra headers.
async fn get(router: &Router, path: &str, headers: &[(&str, &str)]) -> (u16, String) {
    let mut request = client().get(router.url(path));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = request.send().await.expect("send");
    let status = response.status().as_u16();
    (status, response.text().await.expect("body"))
}

fn echo(body: &str) -> Value {
    serde_json::from_str(body).unwrap_or_else(|_| panic!("not an echo: {body}"))
}

fn bearer(echo: &Value) -> String {
    echo["headers"]["authorization"][0]
        .as_str()
        .and_then(|a| a.strip_prefix("Bearer "))
        .unwrap_or_else(|| panic!("no bearer token in {echo}"))
        .to_owned()
}

#[tokio::test]
async fn no_authentication_with_html5_properties() {
    let s = setup().await;
    let mut destination = s.plain("orders");
    destination["URL"] = json!(format!("{}/base", s.backend.url()));
    destination["sap-client"] = json!("100");
    destination["URL.headers.x-tenant"] = json!("t1");
    destination["URL.headers.x-kept"] = json!("from-service");
    destination["HTML5.SetXForwardedHeaders"] = json!("false");
    s.ds.put(destination);
    let (_dir, router) = s.public_router(&[]).await;
    let (status, body) = get(
        &router,
        "/orders/items?q=1",
        &[
            ("x-kept", "from-client"),
            ("x-forwarded-host", "evil.example"),
        ],
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let seen = echo(&body);
    assert_eq!(seen["url"], "/base/items?q=1");
    assert_eq!(seen["headers"]["sap-client"], json!(["100"]));
    assert_eq!(seen["headers"]["x-tenant"], json!(["t1"]));
    assert_eq!(
        seen["headers"]["x-kept"],
        json!(["from-client"]),
        "the client's header wins"
    );
    assert_eq!(seen["headers"]["x-forwarded-host"], Value::Null);
    assert_eq!(seen["headers"]["authorization"], Value::Null);
    assert_eq!(seen["headers"]["x-user-token"], Value::Null);
    let (status, _) = get(&router, "/orders/again", &[]).await;
    assert_eq!(status, 200);
    let lookups = s.ds.lookups();
    assert_eq!(lookups.len(), 1, "cached: {lookups:?}");
    assert_eq!(lookups[0].name, "orders");
    assert_eq!(lookups[0].user_token, None);
    assert_eq!(
        lookups[0].status, 200,
        "the lookup carried a valid binding token"
    );
}

#[tokio::test]
async fn basic_authentication_replaces_the_clients_authorization() {
    let s = setup().await;
    let mut destination = s.plain("orders");
    destination["Authentication"] = json!("BasicAuthentication");
    destination["User"] = json!("svc");
    destination["Password"] = json!("p@ss:word");
    s.ds.put(destination);
    let (_dir, router) = s.public_router(&[]).await;
    let (status, body) = get(&router, "/orders/x", &[("authorization", "Bearer forged")]).await;
    assert_eq!(status, 200, "{body}");
    let expected = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode("svc:p@ss:word")
    );
    assert_eq!(echo(&body)["headers"]["authorization"], json!([expected]));
}

#[tokio::test]
async fn oauth2_client_credentials_sends_the_services_token() {
    let s = setup().await;
    s.ds.put(s.client_credentials("orders"));
    let (_dir, router) = s.public_router(&[]).await;
    let (status, body) = get(&router, "/orders/x", &[]).await;
    assert_eq!(status, 200, "{body}");
    let token = bearer(&echo(&body));
    let claims = s.ts.claims(&token);
    assert_eq!(claims["cid"], "backend-client");
    assert_eq!(claims["grant_type"], "client_credentials");
    let (_, body) = get(&router, "/orders/y", &[]).await;
    assert_eq!(
        bearer(&echo(&body)),
        token,
        "the cached lookup's token is reused"
    );
    assert_eq!(s.ds.lookup_count(), 1);
}

#[tokio::test]
async fn user_token_exchange_sends_the_users_token_to_the_service() {
    let s = setup().await;
    s.ts.register_client(ROUTER_CLIENT, Some("router-secret"), None);
    let mut destination = s.client_credentials("orders");
    destination["Authentication"] = json!("OAuth2UserTokenExchange");
    s.ds.put(destination);
    let mut forwarding = s.plain("forwarding");
    forwarding["HTML5.ForwardAuthToken"] = json!("true");
    s.ds.put(forwarding);
    let dir = WorkDir::new(&json!({
        "routes": [{"source": "^/orders/(.*)$", "target": "/$1", "destination": "orders",
                    "authenticationType": "xsuaa", "csrfProtection": false},
                   {"source": "^/forwarding/(.*)$", "target": "/$1", "destination": "forwarding",
                    "authenticationType": "xsuaa", "csrfProtection": false}]
    }));
    let vcap = json!({
        "destination": [s.ds.binding(&s.ts, DEST_SECRET)],
        "xsuaa": [{"name": "uaa", "label": "xsuaa", "tags": ["xsuaa"], "credentials": {
            "clientid": ROUTER_CLIENT, "clientsecret": "router-secret", "url": s.ts.url,
            "xsappname": APP}}]
    });
    let router = Router::start(dir.path(), &[("VCAP_SERVICES", vcap.to_string())]).await;
    let scope = format!("{APP}.Read");
    let alice =
        s.ts.issue_user_token("alice", ROUTER_CLIENT, &[&scope], 600);
    let bob = s.ts.issue_user_token("bob", ROUTER_CLIENT, &[&scope], 600);
    let as_user = |token: &str| format!("Bearer {token}");

    let (status, body) = get(
        &router,
        "/orders/x",
        &[("x-approuter-authorization", &as_user(&alice))],
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let claims = s.ts.claims(&bearer(&echo(&body)));
    assert_eq!(claims["user_name"], "alice");
    assert_eq!(claims["cid"], "backend-client");
    assert_eq!(claims["grant_type"], support::token_service::JWT_BEARER);
    let lookups = s.ds.lookups();
    assert_eq!(lookups.len(), 2, "{lookups:?}");
    assert_eq!(
        lookups[0].user_token, None,
        "the type is learnt without the user"
    );
    assert_eq!(lookups[1].user_token.as_deref(), Some(alice.as_str()));

    let (status, _) = get(
        &router,
        "/orders/y",
        &[("x-approuter-authorization", &as_user(&alice))],
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(s.ds.lookup_count(), 2, "alice's lookup is cached");

    let (status, body) = get(
        &router,
        "/orders/z",
        &[("x-approuter-authorization", &as_user(&bob))],
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(s.ts.claims(&bearer(&echo(&body)))["user_name"], "bob");
    let lookups = s.ds.lookups();
    assert_eq!(lookups.len(), 3, "bob gets his own lookup: {lookups:?}");
    assert_eq!(lookups[2].user_token.as_deref(), Some(bob.as_str()));

    // NoAuthentication with HTML5.ForwardAuthToken: the user's own token, one shared lookup.
    for user in [&alice, &bob] {
        let (status, body) = get(
            &router,
            "/forwarding/x",
            &[("x-approuter-authorization", &as_user(user))],
        )
        .await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(&bearer(&echo(&body)), user);
    }
    let forwarding: Vec<_> =
        s.ds.lookups()
            .into_iter()
            .filter(|l| l.name == "forwarding")
            .collect();
    assert_eq!(forwarding.len(), 1, "{forwarding:?}");
    assert_eq!(
        forwarding[0].user_token, None,
        "no X-user-token for types that do not need it"
    );
}

#[tokio::test]
async fn forward_auth_certificates_presents_the_routers_identity() {
    let s = setup().await;
    let mtls = support::mtls::start(&s.server_pki, &s.client_pki, 0).await;
    let leaf = s.client_pki.client("router-identity", KeyForm::EcPkcs8);
    s.ds.put_with_files(
        json!({"Name": "orders", "Type": "HTTP", "URL": mtls.url(), "ProxyType": "Internet",
               "Authentication": "NoAuthentication", "HTML5.ForwardAuthCertificates": "true",
               "TrustStoreLocation": "server.pem"}),
        vec![(
            "server.pem".to_owned(),
            s.server_pki.root_pem().into_bytes(),
        )],
    );
    let dir = public_app();
    let vcap = json!({
        "destination": [s.ds.binding(&s.ts, DEST_SECRET)],
        "xsuaa": [{"name": "uaa", "label": "xsuaa", "tags": ["xsuaa"], "credentials": {
            "clientid": ROUTER_CLIENT, "credential-type": "x509", "url": s.ts.url,
            "certurl": s.ts.cert_url, "xsappname": APP,
            "certificate": leaf.chain_pem(&s.client_pki), "key": leaf.key_pem}}]
    });
    let router = Router::start(dir.path(), &[("VCAP_SERVICES", vcap.to_string())]).await;
    let (status, body) = get(&router, "/orders/x", &[]).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(echo(&body)["chain"][0], "router-identity");
}

#[tokio::test]
async fn client_certificate_authentication_presents_the_keystore() {
    let s = setup().await;
    let mtls = support::mtls::start(&s.server_pki, &s.client_pki, 0).await;
    let trust = (
        "server.pem".to_owned(),
        s.server_pki.root_pem().into_bytes(),
    );
    use p12_keystore::EncryptionAlgorithm as Algorithm;
    let cases = [
        (
            "aes",
            Algorithm::PbeWithHmacSha256AndAes256,
            KeyForm::EcPkcs8,
        ),
        (
            "des3",
            Algorithm::PbeWithShaAnd3KeyTripleDesCbc,
            KeyForm::RsaPkcs8,
        ),
        ("rc2", Algorithm::PbeWithShaAnd40BitRc4Cbc, KeyForm::EcPkcs8),
    ];
    for (label, algorithm, form) in cases {
        let leaf = s.client_pki.client(&format!("orders-{label}"), form);
        s.ds.put_with_files(
            json!({"Name": format!("cert-{label}"), "Type": "HTTP", "URL": mtls.url(),
                   "Authentication": "ClientCertificateAuthentication", "ProxyType": "Internet",
                   "KeyStoreLocation": "orders.p12", "KeyStorePassword": "change it",
                   "TrustStoreLocation": "server.pem", "HTML5.DynamicDestination": "true"}),
            vec![
                (
                    "orders.p12".to_owned(),
                    pkcs12(&leaf, &s.client_pki, "change it", algorithm),
                ),
                trust.clone(),
            ],
        );
    }
    let leaf = s.client_pki.client("orders-wrong", KeyForm::EcPkcs8);
    s.ds.put_with_files(
        json!({"Name": "cert-wrong-password", "URL": mtls.url(), "HTML5.DynamicDestination": true,
               "Authentication": "ClientCertificateAuthentication",
               "KeyStoreLocation": "orders.p12", "KeyStorePassword": "not it",
               "TrustStoreLocation": "server.pem"}),
        vec![
            (
                "orders.p12".to_owned(),
                pkcs12(
                    &leaf,
                    &s.client_pki,
                    "change it",
                    Algorithm::PbeWithHmacSha256AndAes256,
                ),
            ),
            trust.clone(),
        ],
    );
    s.ds.put_with_files(
        json!({"Name": "cert-untrusted", "URL": mtls.url(), "HTML5.DynamicDestination": true,
               "Authentication": "ClientCertificateAuthentication",
               "KeyStoreLocation": "orders.p12", "KeyStorePassword": "change it"}),
        vec![(
            "orders.p12".to_owned(),
            pkcs12(
                &leaf,
                &s.client_pki,
                "change it",
                Algorithm::PbeWithHmacSha256AndAes256,
            ),
        )],
    );
    let (_dir, router) = s.public_router(&[]).await;
    for (label, _, _) in cases {
        let (status, body) = get(&router, &format!("/dyn/cert-{label}/who"), &[]).await;
        assert_eq!(status, 200, "{label}: {body}");
        let seen = echo(&body);
        assert_eq!(
            seen["chain"][0],
            format!("orders-{label}"),
            "{label}: {seen}"
        );
        assert_eq!(
            seen["chain"][1], "Client Intermediate CA",
            "{label}: {seen}"
        );
    }
    let (status, body) = get(&router, "/dyn/cert-wrong-password/who", &[]).await;
    assert_eq!(status, 502, "{body}");
    assert!(body.contains("not usable"), "{body}");
    let (status, _) = get(&router, "/dyn/cert-untrusted/who", &[]).await;
    assert_eq!(
        status, 502,
        "without the trust store the server is not trusted"
    );
    let chains = mtls.chains();
    assert_eq!(
        chains.len(),
        3,
        "only the three good keystores reached the upstream: {chains:?}"
    );
}

#[tokio::test]
async fn the_variable_wins_on_a_clash() {
    let s = setup().await;
    let other = upstream::start().await;
    let mut destination = s.plain("orders");
    destination["URL"] = json!(other.url());
    s.ds.put(destination);
    let variable = json!([{"name": "orders", "url": s.backend.url()}]).to_string();
    let (_dir, router) = s.public_router(&[("destinations", variable)]).await;
    let (status, _) = get(&router, "/orders/x", &[]).await;
    assert_eq!(status, 200);
    assert_eq!(s.backend.observed.paths.lock().expect("lock").len(), 1);
    assert_eq!(other.observed.paths.lock().expect("lock").len(), 0);
    assert_eq!(s.ds.lookup_count(), 0);
}

#[tokio::test]
async fn fifty_concurrent_requests_make_one_lookup() {
    let s = setup().await;
    s.ds.put(s.client_credentials("orders"));
    s.ds.set_delay(Duration::from_millis(300));
    let (_dir, router) = s.public_router(&[]).await;
    let requests = (0..50).map(|i| {
        let url = router.url(&format!("/orders/{i}"));
        async move {
            let response = client().get(url).send().await.expect("send");
            response.status().as_u16()
        }
    });
    let statuses = futures_util::future::join_all(requests).await;
    assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
    assert_eq!(s.ds.lookup_count(), 1);
    let binding_tokens =
        s.ts.requests()
            .iter()
            .filter(|r| r.client_id() == Some(DEST_CLIENT))
            .count();
    assert_eq!(binding_tokens, 1, "one token for the binding");
}

#[tokio::test]
async fn a_lookup_is_cached_no_longer_than_its_token() {
    let s = setup().await;
    // Tokens live 4 s: a lookup carrying one is kept 2 s (half its life, as JWT_REFRESH allows).
    s.ts.set_expires_in(4);
    s.ds.put(s.client_credentials("orders"));
    let (_dir, router) = s.public_router(&[]).await;
    let (status, first) = get(&router, "/orders/a", &[]).await;
    assert_eq!(status, 200, "{first}");
    let (_, second) = get(&router, "/orders/b", &[]).await;
    assert_eq!(bearer(&echo(&second)), bearer(&echo(&first)));
    assert_eq!(s.ds.lookup_count(), 1);
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let (status, third) = get(&router, "/orders/c", &[]).await;
    assert_eq!(status, 200);
    assert_eq!(
        s.ds.lookup_count(),
        2,
        "looked up again before the token expired"
    );
    assert_ne!(bearer(&echo(&third)), bearer(&echo(&first)));
}

#[tokio::test]
async fn the_cache_ttl_bounds_every_lookup() {
    let s = setup().await;
    s.ds.put(s.plain("orders"));
    let (_dir, router) = s
        .public_router(&[("XSROUTER_DESTINATION_CACHE_TTL", "1".to_owned())])
        .await;
    assert_eq!(get(&router, "/orders/a", &[]).await.0, 200);
    assert_eq!(get(&router, "/orders/b", &[]).await.0, 200);
    assert_eq!(s.ds.lookup_count(), 1);
    tokio::time::sleep(Duration::from_millis(1300)).await;
    assert_eq!(get(&router, "/orders/c", &[]).await.0, 200);
    assert_eq!(s.ds.lookup_count(), 2);
}

#[tokio::test]
async fn service_errors_are_not_cached() {
    let s = setup().await;
    s.ds.put(s.plain("orders"));
    let (_dir, router) = s.public_router(&[]).await;
    s.ds.fail_next(1, 503);
    let (status, body) = get(&router, "/orders/x", &[]).await;
    assert_eq!(status, 502, "{body}");
    assert!(body.contains("destination lookup failed"), "{body}");
    assert_eq!(get(&router, "/orders/x", &[]).await.0, 200);
    assert_eq!(s.ds.lookup_count(), 2);
    assert_eq!(get(&router, "/orders/x", &[]).await.0, 200);
    assert_eq!(s.ds.lookup_count(), 2, "the good answer is cached");
}

#[tokio::test]
async fn no_binding_token_no_lookup() {
    let s = setup().await;
    s.ds.put(s.plain("orders"));
    let (_dir, router) = s.public_router(&[]).await;
    s.ts.fail_next(1, 401);
    let (status, _) = get(&router, "/orders/x", &[]).await;
    assert_eq!(status, 502);
    assert_eq!(s.ds.lookup_count(), 0);
    assert_eq!(get(&router, "/orders/x", &[]).await.0, 200, "recovers");
}

#[tokio::test]
async fn unknown_names_are_404_and_not_remembered() {
    let s = setup().await;
    let (_dir, router) = s.public_router(&[]).await;
    let (status, body) = get(&router, "/orders/x", &[]).await;
    assert_eq!(status, 404, "{body}");
    assert!(body.contains("unknown destination"), "{body}");
    s.ds.put(s.plain("orders"));
    assert_eq!(get(&router, "/orders/x", &[]).await.0, 200);
    assert_eq!(s.ds.lookup_count(), 2);
}

#[tokio::test]
async fn an_error_in_auth_tokens_is_502_and_not_cached() {
    let s = setup().await;
    s.ds.put(s.client_credentials("orders"));
    s.ds.set_token_error(
        "orders",
        Some("Retrieval of OAuth token failed due to: 401"),
    );
    let (_dir, router) = s.public_router(&[]).await;
    let (status, body) = get(&router, "/orders/x", &[]).await;
    assert_eq!(status, 502, "{body}");
    assert!(body.contains("no token for the destination"), "{body}");
    assert!(s.backend.observed.paths.lock().expect("lock").is_empty());
    s.ds.set_token_error("orders", None);
    assert_eq!(get(&router, "/orders/x", &[]).await.0, 200);
    assert_eq!(s.ds.lookup_count(), 2);
}

#[tokio::test]
async fn dynamic_routes_reach_only_dynamic_destinations() {
    let s = setup().await;
    let mut flagged = s.plain("flagged");
    flagged["HTML5.DynamicDestination"] = json!("true");
    s.ds.put(flagged);
    s.ds.put(s.plain("plain"));
    let (_dir, router) = s.public_router(&[]).await;
    let (status, body) = get(&router, "/dyn/flagged/x", &[]).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(echo(&body)["url"], "/x");
    assert_eq!(get(&router, "/dyn/plain/x", &[]).await.0, 404);
    assert_eq!(
        get(&router, "/plain/x", &[]).await.0,
        200,
        "a named route may use it"
    );
    let before = s.ds.lookup_count();
    assert_eq!(get(&router, "/dyn/bad.name/x", &[]).await.0, 404);
    assert_eq!(get(&router, "/dyn/a%2Fb/x", &[]).await.0, 404);
    assert_eq!(
        s.ds.lookup_count(),
        before,
        "names that are not destination names are never looked up"
    );
}

#[tokio::test]
async fn on_premise_destinations_are_refused_clearly() {
    let s = setup().await;
    let mut destination = s.plain("orders");
    destination["ProxyType"] = json!("OnPremise");
    s.ds.put(destination);
    let (_dir, router) = s.public_router(&[]).await;
    let (status, body) = get(&router, "/orders/x", &[]).await;
    assert_eq!(status, 502);
    assert!(
        body.contains("on-premise destinations are not supported"),
        "{body}"
    );
    assert_eq!(get(&router, "/orders/x", &[]).await.0, 502);
    assert_eq!(
        s.ds.lookup_count(),
        1,
        "the refusal is remembered like a configuration"
    );
    assert!(s.backend.observed.paths.lock().expect("lock").is_empty());
}

#[tokio::test]
async fn an_x509_binding_gets_its_token_over_mtls() {
    let s = setup().await;
    let leaf = s.client_pki.client("sb-dest-cert", KeyForm::EcPkcs8);
    s.ts.register_client(DEST_CLIENT, None, Some("sb-dest-cert"));
    s.ds.put(s.plain("orders"));
    let dir = public_app();
    let ca = dir.file("server-ca.pem", s.server_pki.root_pem());
    let vcap = json!({"destination": [{"name": "dest", "label": "destination", "credentials": {
        "uri": s.ds.url, "clientid": DEST_CLIENT, "credential-type": "x509",
        "certificate": leaf.chain_pem(&s.client_pki), "key": leaf.key_pem,
        "url": s.ts.url, "certurl": s.ts.cert_url}}]});
    let router = Router::start(
        dir.path(),
        &[
            ("VCAP_SERVICES", vcap.to_string()),
            ("XS_CACERT_PATH", ca.display().to_string()),
        ],
    )
    .await;
    let (status, body) = get(&router, "/orders/x", &[]).await;
    assert_eq!(status, 200, "{body}");
    let requests = s.ts.requests();
    let token_request = requests
        .iter()
        .find(|r| r.client_id() == Some(DEST_CLIENT))
        .expect("a token request of the binding");
    assert!(token_request.via_mtls);
    assert_eq!(
        token_request.client_cert_cn.as_deref(),
        Some("sb-dest-cert")
    );
    assert!(!token_request.form.contains_key("client_secret"));
}

#[tokio::test]
async fn unknown_names_need_a_binding_at_start_up() {
    let s = setup().await;
    let dir = public_app();
    let err = Router::try_start(dir.path(), &[])
        .await
        .err()
        .expect("refused without a Destination service");
    assert!(
        err.to_string().contains("unknown destination `orders`"),
        "{err}"
    );
    // With the binding, the same routes start.
    let router = Router::start(dir.path(), &s.env()).await;
    assert_eq!(get(&router, "/orders/x", &[]).await.0, 404);
}

#[tokio::test]
async fn ias_dependency_of_a_service_destination_is_exchanged() {
    let s = setup().await;
    s.ts.register_client("ias-client", Some("ias-secret"), None);
    let vcap = json!({
        "destination": [s.ds.binding(&s.ts, DEST_SECRET)],
        "identity": [{"name": "ias", "label": "identity", "credentials": {
            "clientid": "ias-client", "clientsecret": "ias-secret", "url": s.ts.url}}]
    });
    let dir = WorkDir::new(&json!({"authenticationMethod": "none", "routes": []}));
    let runtime =
        support::load_runtime(dir.path(), &[("VCAP_SERVICES", vcap.to_string())]).expect("runtime");
    assert!(
        runtime.destinations.is_empty(),
        "no destination names a dependency at start-up"
    );
    let state = xsrouter::pipeline::AppState::build(runtime)
        .await
        .expect("state");
    let configuration = json!({"Name": "orders", "URL": s.backend.url(),
                               "HTML5.IASDependencyName": "orders-api"});
    let parsed = xsrouter::destination_service::configuration::parse(
        "orders",
        configuration.as_object().expect("object"),
    )
    .expect("usable");
    let user = xsrouter::secret::Secret::new(s.ts.issue_user_token(
        "carol",
        "ias-client",
        &["openid"],
        3600,
    ));
    let header = state
        .tokens()
        .authorization(&parsed.destination, Some(&user))
        .await
        .expect("exchange")
        .expect("header");
    let claims = s.ts.claims(header.expose().trim_start_matches("Bearer "));
    assert_eq!(claims["user_name"], "carol");
    let exchange =
        s.ts.requests()
            .into_iter()
            .find(|r| r.client_id() == Some("ias-client"))
            .expect("an exchange at the IAS binding");
    assert_eq!(
        exchange.form.get("resource").map(String::as_str),
        Some("urn:sap:identity:application:provider:name:orders-api")
    );
}

#[tokio::test]
async fn check_names_the_bound_destination_service() {
    let s = setup().await;
    let dir = public_app();
    let mut command = std::process::Command::new(support::process::BIN);
    command.env_clear().arg("check").arg("-w").arg(dir.path());
    for (key, value) in s.env() {
        command.env(key, value);
    }
    let output = command.output().expect("run xsrouter check");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        stdout.contains(&format!(
            "Destination service `destination-service`: other names are looked up at {}",
            s.ds.url
        )),
        "{stdout}"
    );
    assert!(!stdout.contains(DEST_SECRET), "no secret in the output");
}

#[tokio::test]
async fn websockets_reach_service_destinations() {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let s = setup().await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let Ok(mut ws) = tokio_tungstenite::accept_async(stream).await else {
                    return;
                };
                while let Some(Ok(message)) = ws.next().await {
                    if message.is_text() && ws.send(message).await.is_err() {
                        break;
                    }
                }
            });
        }
    });
    let mut chat = s.plain("chat");
    chat["URL"] = json!(format!("ws://127.0.0.1:{port}"));
    s.ds.put(chat);
    let dir = WorkDir::new(&json!({
        "authenticationMethod": "none",
        "websockets": {"enabled": true},
        "routes": [{"source": "^/ws/(.*)$", "target": "/$1", "destination": "chat"}]
    }));
    let router = Router::start(dir.path(), &s.env()).await;
    let mut request = format!("ws://{}/ws/room", router.addr)
        .into_client_request()
        .expect("request");
    request.headers_mut().insert(
        "origin",
        http::HeaderValue::from_str(&format!("http://{}", router.addr)).expect("origin"),
    );
    let stream = tokio::net::TcpStream::connect(router.addr)
        .await
        .expect("connect");
    let (mut ws, _) = tokio_tungstenite::client_async(request, stream)
        .await
        .expect("upgrade accepted");
    ws.send(Message::text("hello")).await.expect("send");
    let answer = tokio::time::timeout(Duration::from_secs(5), ws.next())
        .await
        .expect("an answer within 5 s")
        .expect("open")
        .expect("message");
    assert_eq!(answer, Message::text("hello"));
    assert_eq!(s.ds.lookup_count(), 1);
}

#[tokio::test]
async fn secrets_never_reach_the_log() {
    let s = setup().await;
    let mut basic = s.plain("basic");
    basic["Authentication"] = json!("BasicAuthentication");
    basic["User"] = json!("svc");
    basic["Password"] = json!("p@ss:word");
    let mut oauth = s.client_credentials("oauth");
    oauth["HTML5.DynamicDestination"] = json!("true");
    basic["HTML5.DynamicDestination"] = json!("true");
    s.ds.put(basic);
    s.ds.put(oauth);
    let leaf = s.client_pki.client("orders-client", KeyForm::EcPkcs8);
    let keystore = pkcs12(
        &leaf,
        &s.client_pki,
        "keystore-pw",
        p12_keystore::EncryptionAlgorithm::PbeWithHmacSha256AndAes256,
    );
    for (name, password) in [("cert", "keystore-pw"), ("cert-wrong", "keystore-pw-wrong")] {
        s.ds.put_with_files(
            json!({"Name": name, "URL": s.backend.url(), "HTML5.DynamicDestination": true,
                   "Authentication": "ClientCertificateAuthentication",
                   "KeyStoreLocation": "client.p12", "KeyStorePassword": password}),
            vec![("client.p12".to_owned(), keystore.clone())],
        );
    }
    let dir = public_app();
    let mut env = s.env();
    env.push(("RUST_LOG", "debug".to_owned()));
    let router = support::process::RouterProcess::start(dir.path(), &env);
    let fetch = |path: &str| {
        let url = router.url(path);
        async move {
            let response = client().get(url).send().await.expect("send");
            let status = response.status().as_u16();
            (status, response.text().await.expect("body"))
        }
    };
    assert_eq!(fetch("/dyn/basic/x").await.0, 200);
    let (status, body) = fetch("/dyn/oauth/x").await;
    assert_eq!(status, 200, "{body}");
    let token = bearer(&echo(&body));
    assert_eq!(fetch("/dyn/cert/x").await.0, 200);
    assert_eq!(fetch("/dyn/cert-wrong/x").await.0, 502);
    router
        .wait_for_line("destination refused", Duration::from_secs(5))
        .await;
    let log = router.log_text();
    assert!(
        log.contains("destination looked up"),
        "debug logging is on: {log}"
    );
    let basic_header = base64::engine::general_purpose::STANDARD.encode("svc:p@ss:word");
    for secret in [
        DEST_SECRET,
        "backend-secret",
        "p@ss:word",
        basic_header.as_str(),
        "keystore-pw",
        token.as_str(),
    ] {
        assert!(!log.contains(secret), "`{secret}` in the log:\n{log}");
    }
}

#[tokio::test]
async fn a_rejected_binding_token_is_replaced() {
    let s = setup().await;
    s.ds.put(s.plain("orders"));
    let (_dir, router) = s.public_router(&[]).await;
    assert_eq!(get(&router, "/dyn/unknown/x", &[]).await.0, 404);
    let binding_tokens = || {
        s.ts.requests()
            .iter()
            .filter(|r| r.client_id() == Some(DEST_CLIENT))
            .count()
    };
    assert_eq!(binding_tokens(), 1);
    // The service stops accepting that token (e.g. the binding's credentials were rotated).
    s.ds.fail_next(1, 401);
    assert_eq!(get(&router, "/orders/x", &[]).await.0, 502);
    assert_eq!(get(&router, "/orders/x", &[]).await.0, 200);
    assert_eq!(binding_tokens(), 2, "a new token after the 401");
}

#[tokio::test]
async fn logout_calls_the_logout_path_of_a_service_destination() {
    let s = setup().await;
    s.ts.register_client(ROUTER_CLIENT, Some("router-secret"), None);
    s.ts.set_login_user("alice", &[&format!("{APP}.Read")]);
    s.ds.put(s.plain("orders"));
    let dir = WorkDir::new(&json!({
        "routes": [{"source": "^/orders/(.*)$", "target": "/$1", "destination": "orders"}],
        "logout": {"logoutEndpoint": "/do/logout", "logoutMethod": "GET"},
        "destinations": {"orders": {"logoutPath": "/session/end", "logoutMethod": "GET"}}
    }));
    let vcap = json!({
        "destination": [s.ds.binding(&s.ts, DEST_SECRET)],
        "xsuaa": [{"name": "uaa", "label": "xsuaa", "tags": ["xsuaa"], "credentials": {
            "clientid": ROUTER_CLIENT, "clientsecret": "router-secret", "url": s.ts.url,
            "xsappname": APP}}]
    });
    let router = Router::start(dir.path(), &[("VCAP_SERVICES", vcap.to_string())]).await;
    let mut browser = support::browser::Browser::default();
    let answer = support::browser::echo(browser.login(&router, "/orders/x").await).await;
    assert_eq!(answer["url"], "/x");
    let out = browser.get(&router.url("/do/logout"), &[]).await;
    assert_eq!(out.status(), 302);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    let logout_call = || {
        s.backend
            .observed
            .paths
            .lock()
            .expect("lock")
            .iter()
            .find(|(path, _)| path == "/session/end")
            .cloned()
    };
    let (_, authorization) = loop {
        if let Some(call) = logout_call() {
            break call;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "logoutPath never called"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let claims = s.ts.claims(authorization.trim_start_matches("Bearer "));
    assert_eq!(claims["user_name"], "alice");
}
