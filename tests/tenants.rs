//! Multi-tenancy through the running router: `TENANT_HOST_PATTERN` picks the tenant from the
//! host (`x-forwarded-host`/`Host`, or `x-custom-host` behind `EXTERNAL_REVERSE_PROXY`), and a
//! shared-tenant-mode XSUAA binding is asked for tokens at the tenant's subdomain — tokens are
//! cached per tenant. The test token service is reached as `<tenant>.localhost`, which the
//! router resolves to loopback (RFC 6761).
//!
//! Login per tenant: on a tenant's host, users log in, are refreshed and log out at the tenant's
//! subdomain of XSUAA (its certurl for x509 bindings); a session or a service token of one tenant
//! is not accepted on another tenant's host.

mod support;

use serde_json::{Value, json};
use support::browser::{Browser, bearer, echo, location};
use support::pki::Pki;
use support::token_service::TokenService;
use support::{Router, WorkDir, client, load_runtime, upstream};

const CLIENT: &str = "sb-xsrouter!t1";

struct Setup {
    ts: TokenService,
    _backend: upstream::Upstream,
    dir: WorkDir,
    env: Vec<(&'static str, String)>,
}

async fn setup() -> Setup {
    let ts = TokenService::start(&Pki::new("Token Server"), &Pki::new("Client")).await;
    ts.register_client(CLIENT, Some("router-secret"), None);
    let backend = upstream::start().await;
    let dir = WorkDir::new(&json!({
        "authenticationMethod": "none",
        "routes": [{"source": "^/api/(.*)$", "target": "/$1", "destination": "backend"}]
    }));
    let vcap = json!({"xsuaa": [{"name": "uaa", "label": "xsuaa", "tags": ["xsuaa"], "credentials": {
        "clientid": CLIENT, "clientsecret": "router-secret", "xsappname": "xsrouter!t1",
        "tenantmode": "shared", "uaadomain": "localhost",
        "url": format!("http://provider.localhost:{}", ts.addr.port())}}]});
    let destinations = json!([{"name": "backend", "url": backend.url(),
        "authentication": "OAuth2ClientCredentials", "tokenServiceBinding": "xsuaa"}]);
    let env = vec![
        ("VCAP_SERVICES", vcap.to_string()),
        ("destinations", destinations.to_string()),
        (
            "TENANT_HOST_PATTERN",
            "^(.*)\\.router\\.example$".to_owned(),
        ),
    ];
    Setup {
        ts,
        _backend: backend,
        dir,
        env,
    }
}

async fn token_via(router: &Router, header: (&str, &str)) -> String {
    let response = client()
        .get(router.url("/api/data"))
        .header(header.0, header.1)
        .send()
        .await
        .expect("send");
    bearer(&echo(response).await)
}

fn token_hosts(ts: &TokenService) -> Vec<String> {
    ts.requests()
        .iter()
        .map(|r| r.host.clone().unwrap_or_default())
        .collect()
}

#[tokio::test]
async fn tokens_come_from_the_tenants_subdomain_and_are_cached_per_tenant() {
    let s = setup().await;
    let router = Router::start(s.dir.path(), &s.env).await;
    let port = s.ts.addr.port();
    let acme = token_via(&router, ("x-forwarded-host", "acme.router.example")).await;
    let again = token_via(&router, ("x-forwarded-host", "acme.router.example:443")).await;
    assert_eq!(acme, again, "the tenant's token is cached");
    let beta = token_via(&router, ("host", "beta.router.example")).await;
    assert_ne!(acme, beta, "another tenant, another token");
    assert_eq!(
        token_via(&router, ("host", "beta.router.example")).await,
        beta
    );
    assert_eq!(
        token_hosts(&s.ts),
        vec![
            format!("acme.localhost:{port}"),
            format!("beta.localhost:{port}")
        ],
        "one token request per tenant, each at the tenant's subdomain"
    );
    let claims: Value = s.ts.claims(&acme);
    assert_eq!(claims["client_id"], CLIENT);

    // A host outside the pattern names no tenant: 400, and no token is requested.
    for host in ["router.example", "evil.com", "a.b.router.example"] {
        let response = client()
            .get(router.url("/api/data"))
            .header("host", host)
            .send()
            .await
            .expect("send");
        assert_eq!(response.status(), 400, "{host}");
    }
    assert_eq!(s.ts.requests().len(), 2);
}

#[tokio::test]
async fn behind_an_external_reverse_proxy_the_custom_host_names_the_tenant() {
    let s = setup().await;
    let mut env = s.env.clone();
    env.push(("EXTERNAL_REVERSE_PROXY", "true".to_owned()));
    let router = Router::start(s.dir.path(), &env).await;
    let response = client()
        .get(router.url("/api/data"))
        .header("x-custom-host", "gamma.router.example")
        .header("x-forwarded-host", "delta.router.example")
        .send()
        .await
        .expect("send");
    assert_eq!(response.status(), 200);
    assert_eq!(
        token_hosts(&s.ts),
        vec![format!("gamma.localhost:{}", s.ts.addr.port())]
    );
}

#[tokio::test]
async fn shared_tenant_mode_needs_a_tenant_host_pattern() {
    let s = setup().await;
    let without: Vec<_> = s
        .env
        .iter()
        .filter(|(k, _)| *k != "TENANT_HOST_PATTERN")
        .cloned()
        .collect();
    let problems: Vec<String> = match load_runtime(s.dir.path(), &without) {
        Err(xsrouter::config::LoadError::Invalid(err)) => {
            err.problems.iter().map(|p| p.to_string()).collect()
        }
        Ok(_) => panic!("a shared-tenant-mode binding needs TENANT_HOST_PATTERN"),
        Err(other) => panic!("unexpected error: {other}"),
    };
    assert_eq!(
        problems,
        vec![
            "env TENANT_HOST_PATTERN: $: must be set: the XSUAA binding `uaa` has tenantmode `shared`"
        ]
    );
    let mut bad = without.clone();
    bad.push(("TENANT_HOST_PATTERN", "^router\\.example$".to_owned()));
    match load_runtime(s.dir.path(), &bad) {
        Err(err) => assert!(
            err.to_string()
                .contains("env TENANT_HOST_PATTERN: $: needs a capture group"),
            "{err}"
        ),
        Ok(_) => panic!("a pattern without a group is refused"),
    }
}

// Login per tenant ----------------------------------------------------------------------------

const APP: &str = "xsrouter!t1";
const PATTERN: &str = "^(.*)\\.router\\.example$";

/// A router in front of a shared-tenant-mode XSUAA binding whose provider subdomain is
/// `provider`, with a login route, a logout endpoint and the user's token forwarded to an echo
/// backend.
struct LoginSetup {
    ts: TokenService,
    backend: upstream::Upstream,
    router: Router,
    _dir: WorkDir,
}

async fn login_setup(x509: bool, extra_env: &[(&'static str, String)]) -> LoginSetup {
    login_setup_in_mode("shared", x509, extra_env).await
}

async fn login_setup_in_mode(
    tenantmode: &str,
    x509: bool,
    extra_env: &[(&'static str, String)],
) -> LoginSetup {
    let server_pki = Pki::new("Token Server");
    let client_pki = Pki::new("Client");
    let ts = TokenService::start_for_zones(&server_pki, &client_pki, &["provider", "acme", "beta"])
        .await;
    ts.set_login_user("alice", &[&format!("{APP}.Read"), "openid"]);
    let backend = upstream::start().await;
    let dir = WorkDir::new(&json!({
        "routes": [
            {"source": "^/app/(.*)$", "target": "/$1", "destination": "backend", "scope": "$XSAPPNAME.Read"}
        ],
        "logout": {"logoutEndpoint": "/do/logout", "logoutPage": "/bye.html", "logoutMethod": "GET"}
    }));
    let mut credentials = json!({
        "clientid": CLIENT, "xsappname": APP, "tenantmode": tenantmode, "uaadomain": "localhost",
        "url": ts.zone_url("provider")
    });
    let mut env = vec![
        (
            "destinations",
            json!([{"name": "backend", "url": backend.url(), "forwardAuthToken": true}])
                .to_string(),
        ),
        ("TENANT_HOST_PATTERN", PATTERN.to_owned()),
    ];
    if x509 {
        let leaf = client_pki.client("sb-router-cert", support::pki::KeyForm::EcPkcs8);
        ts.register_client(CLIENT, None, Some("sb-router-cert"));
        credentials["credential-type"] = json!("x509");
        credentials["certurl"] = json!(ts.zone_cert_url("provider"));
        credentials["certificate"] = json!(leaf.chain_pem(&client_pki));
        credentials["key"] = json!(leaf.key_pem);
        let ca = dir.file("token-ca.pem", server_pki.root_pem());
        env.push(("XS_CACERT_PATH", ca.display().to_string()));
    } else {
        ts.register_client(CLIENT, Some("router-secret"), None);
        credentials["clientsecret"] = json!("router-secret");
    }
    let vcap = json!({"xsuaa": [{"name": "uaa", "label": "xsuaa", "tags": ["xsuaa"],
        "credentials": credentials}]});
    env.push(("VCAP_SERVICES", vcap.to_string()));
    env.extend(extra_env.iter().cloned());
    let router = Router::start(dir.path(), &env).await;
    LoginSetup {
        ts,
        backend,
        router,
        _dir: dir,
    }
}

/// A client that reaches `*.localhost` names on loopback, as browsers do (the token service's
/// tenant subdomains).
fn idp_client() -> reqwest::Client {
    xsrouter::install_crypto_provider();
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .dns_resolver(std::sync::Arc::new(xsrouter::loopback_names::LoopbackNames))
        .build()
        .expect("client")
}

/// The public host of a tenant's router.
fn tenant_host(tenant: &str) -> String {
    format!("{tenant}.router.example")
}

/// A request from `browser` to the router on `tenant`'s host (the platform router names it in
/// `x-forwarded-host`).
async fn on_tenant(
    browser: &mut Browser,
    router: &Router,
    tenant: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> reqwest::Response {
    let host = tenant_host(tenant);
    let mut all = vec![("x-forwarded-host", host.as_str())];
    all.extend_from_slice(headers);
    browser.get(&router.url(path), &all).await
}

/// Path and query of an absolute URL the router sent the browser to on `tenant`'s host.
fn local_part(url: &str, tenant: &str) -> String {
    let parsed = url::Url::parse(url).expect("url");
    assert_eq!(
        parsed.host_str(),
        Some(tenant_host(tenant).as_str()),
        "{url}"
    );
    match parsed.query() {
        Some(query) => format!("{}?{query}", parsed.path()),
        None => parsed.path().to_owned(),
    }
}

/// Starts a login on `tenant`'s host and follows it to the identity provider; returns the
/// callback path (with query) the provider sent the browser back to.
async fn login_until_callback(
    browser: &mut Browser,
    router: &Router,
    tenant: &str,
    path: &str,
) -> String {
    let start = on_tenant(browser, router, tenant, path, &[]).await;
    assert_eq!(start.status(), 302, "login starts with a redirect");
    let authorize = location(&start);
    let idp = browser.send(idp_client().get(&authorize), &[]).await;
    assert_eq!(idp.status(), 302, "the identity provider redirects back");
    local_part(&location(&idp), tenant)
}

/// The whole login on `tenant`'s host; returns the backend's echo of `path` afterwards.
async fn login_on(browser: &mut Browser, router: &Router, tenant: &str, path: &str) -> Value {
    let callback = login_until_callback(browser, router, tenant, path).await;
    assert!(callback.starts_with("/login/callback?"), "{callback}");
    let back = on_tenant(browser, router, tenant, &callback, &[]).await;
    assert_eq!(back.status(), 302, "{:?}", back.text().await);
    assert_eq!(location(&back), path);
    echo(on_tenant(browser, router, tenant, path, &[]).await).await
}

fn host_of(url: &str) -> String {
    let parsed = url::Url::parse(url).expect("url");
    format!(
        "{}:{}",
        parsed.host_str().expect("host"),
        parsed.port().expect("port")
    )
}

fn visits_to(ts: &TokenService, path: &str) -> Vec<support::token_service::Visit> {
    ts.visits().into_iter().filter(|v| v.path == path).collect()
}

#[tokio::test]
async fn each_tenant_logs_in_and_out_at_its_own_subdomain() {
    let s = login_setup(false, &[]).await;
    let zone_host = |tenant: &str| host_of(&s.ts.zone_url(tenant));

    let mut alice_acme = Browser::default();
    let answer = login_on(&mut alice_acme, &s.router, "acme", "/app/orders").await;
    let acme_token = bearer(&answer);
    let claims = s.ts.claims(&acme_token);
    assert_eq!(
        claims["iss"],
        format!("{}/oauth/token", s.ts.zone_url("acme"))
    );
    assert_eq!(claims["ext_attr"]["zdn"], "acme");

    let mut alice_beta = Browser::default();
    let answer = login_on(&mut alice_beta, &s.router, "beta", "/app/orders").await;
    let beta_claims = s.ts.claims(&bearer(&answer));
    assert_eq!(beta_claims["ext_attr"]["zdn"], "beta");
    assert_ne!(beta_claims["zid"], claims["zid"]);

    // Authorize and code redemption went to each tenant's subdomain, never the provider's.
    let authorize = visits_to(&s.ts, "/oauth/authorize");
    assert_eq!(
        authorize
            .iter()
            .map(|v| v.host.clone().unwrap_or_default())
            .collect::<Vec<_>>(),
        vec![zone_host("acme"), zone_host("beta")]
    );
    assert_eq!(
        authorize[0].query.get("redirect_uri").map(String::as_str),
        Some("http://acme.router.example/login/callback")
    );
    let redeemed: Vec<String> =
        s.ts.requests()
            .iter()
            .filter(|r| r.grant_type() == Some("authorization_code"))
            .map(|r| r.host.clone().unwrap_or_default())
            .collect();
    assert_eq!(redeemed, vec![zone_host("acme"), zone_host("beta")]);
    // The tenants' tokens were checked against the tenants' keys.
    let keys: Vec<String> = visits_to(&s.ts, "/token_keys")
        .iter()
        .map(|v| v.host.clone().unwrap_or_default())
        .collect();
    assert!(
        keys.contains(&zone_host("acme")) && keys.contains(&zone_host("beta")),
        "{keys:?}"
    );
    assert!(!keys.contains(&zone_host("provider")), "{keys:?}");

    // Logout on acme's host: acme's logout endpoint, with acme's page to return to.
    let out = on_tenant(&mut alice_acme, &s.router, "acme", "/do/logout", &[]).await;
    assert_eq!(out.status(), 302);
    let idp_logout = location(&out);
    assert!(
        idp_logout.starts_with(&format!("{}/logout.do?", s.ts.zone_url("acme"))),
        "{idp_logout}"
    );
    let back = alice_acme.send(idp_client().get(&idp_logout), &[]).await;
    assert_eq!(location(&back), "http://acme.router.example/bye.html");
    let logouts = visits_to(&s.ts, "/logout.do");
    assert_eq!(logouts.len(), 1);
    assert_eq!(logouts[0].host.as_deref(), Some(zone_host("acme").as_str()));
    assert_eq!(
        logouts[0].query.get("client_id").map(String::as_str),
        Some(CLIENT)
    );
    // acme's session is over; beta's lives on.
    let again = on_tenant(&mut alice_acme, &s.router, "acme", "/app/orders", &[]).await;
    assert_eq!(again.status(), 302, "back to login");
    echo(on_tenant(&mut alice_beta, &s.router, "beta", "/app/orders", &[]).await).await;
}

#[tokio::test]
async fn a_session_of_one_tenant_is_a_new_login_on_another() {
    let s = login_setup(false, &[]).await;
    let mut browser = Browser::default();
    login_on(&mut browser, &s.router, "acme", "/app/a").await;
    let acme_session = browser.session_id();
    let before = s.backend.connections();

    // The same cookie on beta's host: no access, but a login at beta's subdomain.
    let start = on_tenant(&mut browser, &s.router, "beta", "/app/b", &[]).await;
    assert_eq!(start.status(), 302);
    let authorize = location(&start);
    assert!(
        authorize.starts_with(&format!("{}/oauth/authorize?", s.ts.zone_url("beta"))),
        "{authorize}"
    );
    for request in [
        client()
            .get(s.router.url("/app/b"))
            .header("x-requested-with", "XMLHttpRequest"),
        client().post(s.router.url("/app/b")),
    ] {
        let response = request
            .header("x-forwarded-host", tenant_host("beta"))
            .header("cookie", format!("JSESSIONID={acme_session}"))
            .send()
            .await
            .expect("send");
        assert_eq!(response.status(), 401);
    }
    // The same on a Host header instead of x-forwarded-host.
    let by_host = client()
        .get(s.router.url("/app/b"))
        .header("host", tenant_host("beta"))
        .header("cookie", format!("JSESSIONID={acme_session}"))
        .send()
        .await
        .expect("send");
    assert_eq!(by_host.status(), 302);
    assert_eq!(
        s.backend.connections(),
        before,
        "nothing reached the backend"
    );
    // Logging out on beta's host does not end acme's session.
    let out = on_tenant(&mut browser, &s.router, "beta", "/do/logout", &[]).await;
    assert_eq!(out.status(), 302);
    assert!(
        visits_to(&s.ts, "/logout.do").is_empty(),
        "no session of beta to log out"
    );
    let still = client()
        .get(s.router.url("/app/a"))
        .header("x-forwarded-host", tenant_host("acme"))
        .header("cookie", format!("JSESSIONID={acme_session}"))
        .send()
        .await
        .expect("send");
    let answer = echo(still).await;
    assert_eq!(s.ts.claims(&bearer(&answer))["ext_attr"]["zdn"], "acme");

    // Logged in on beta, the browser's session is beta's.
    let mut other = Browser::default();
    login_on(&mut other, &s.router, "beta", "/app/b").await;
    assert_ne!(other.session_id(), acme_session);
}

#[tokio::test]
async fn a_callback_on_another_tenants_host_is_refused() {
    let s = login_setup(false, &[]).await;
    let mut browser = Browser::default();
    let callback = login_until_callback(&mut browser, &s.router, "acme", "/app/x").await;
    let response = on_tenant(&mut browser, &s.router, "beta", &callback, &[]).await;
    assert_eq!(response.status(), 401);
    assert!(!browser.cookies.contains_key("JSESSIONID"));
    assert!(
        s.ts.requests()
            .iter()
            .all(|r| r.grant_type() != Some("authorization_code")),
        "the code was not redeemed anywhere"
    );
}

#[tokio::test]
async fn service_tokens_are_accepted_only_from_the_hosts_tenant() {
    let s = login_setup(false, &[]).await;
    let scopes = [format!("{APP}.Read")];
    let scopes: Vec<&str> = scopes.iter().map(String::as_str).collect();
    let acme =
        s.ts.issue_zone_user_token("acme", "svc-user", CLIENT, &scopes, 600);
    let beta =
        s.ts.issue_zone_user_token("beta", "svc-user", CLIENT, &scopes, 600);
    let provider_zone = s.ts.issue_user_token("svc-user", CLIENT, &scopes, 600);
    let call = |tenant: &str, token: &str| {
        client()
            .get(s.router.url("/app/svc"))
            .header("x-forwarded-host", tenant_host(tenant))
            .header("x-approuter-authorization", format!("Bearer {token}"))
            .send()
    };
    let answer = echo(call("acme", &acme).await.expect("send")).await;
    assert_eq!(bearer(&answer), acme);
    assert_eq!(call("beta", &beta).await.expect("send").status(), 200);
    for (tenant, token, what) in [
        ("beta", &acme, "acme's token on beta's host"),
        ("acme", &beta, "beta's token on acme's host"),
        (
            "acme",
            &provider_zone,
            "a token of another zone on acme's host",
        ),
    ] {
        assert_eq!(
            call(tenant, token).await.expect("send").status(),
            401,
            "{what}"
        );
    }
    // Another tenant's token is refused without asking that tenant's keys.
    assert_eq!(
        call("gamma", &acme).await.expect("send").status(),
        401,
        "acme's token on gamma's host"
    );
    let keys: Vec<String> = visits_to(&s.ts, "/token_keys")
        .iter()
        .map(|v| v.host.clone().unwrap_or_default())
        .collect();
    assert_eq!(
        keys,
        vec![
            host_of(&s.ts.zone_url("acme")),
            host_of(&s.ts.zone_url("beta"))
        ],
        "keys fetched once per tenant whose own token came"
    );
    // A host that names no tenant: no tenant to check the token against.
    let no_tenant = client()
        .get(s.router.url("/app/svc"))
        .header("x-forwarded-host", "router.example")
        .header("x-approuter-authorization", format!("Bearer {acme}"))
        .send()
        .await
        .expect("send");
    assert_eq!(no_tenant.status(), 400);
    // Nor does a browser get a login there.
    let browser_no_tenant = client()
        .get(s.router.url("/app/x"))
        .header("host", "evil.example")
        .send()
        .await
        .expect("send");
    assert_eq!(browser_no_tenant.status(), 400);
    assert!(visits_to(&s.ts, "/oauth/authorize").is_empty());
    let reached = s
        .backend
        .observed
        .paths
        .lock()
        .expect("lock")
        .iter()
        .filter(|(path, _)| path == "/svc")
        .count();
    assert_eq!(reached, 2, "only the tenants' own tokens got through");
}

#[tokio::test]
async fn the_tenants_login_token_is_refreshed_at_its_subdomain() {
    let s = login_setup(false, &[]).await;
    s.ts.set_expires_in(4); // renewed from halfway: after 2 s
    let mut browser = Browser::default();
    let first = bearer(&login_on(&mut browser, &s.router, "acme", "/app/a").await);
    tokio::time::sleep(std::time::Duration::from_millis(2300)).await;
    let refreshed =
        bearer(&echo(on_tenant(&mut browser, &s.router, "acme", "/app/b", &[]).await).await);
    assert_ne!(refreshed, first);
    let claims = s.ts.claims(&refreshed);
    assert_eq!(claims["grant_type"], "refresh_token");
    assert_eq!(claims["ext_attr"]["zdn"], "acme");
    let refreshes: Vec<String> =
        s.ts.requests()
            .iter()
            .filter(|r| r.grant_type() == Some("refresh_token"))
            .map(|r| r.host.clone().unwrap_or_default())
            .collect();
    assert_eq!(refreshes, vec![host_of(&s.ts.zone_url("acme"))]);
}

#[tokio::test]
async fn x509_bindings_redeem_the_tenants_code_at_its_cert_subdomain() {
    let s = login_setup(true, &[]).await;
    let mut browser = Browser::default();
    let answer = login_on(&mut browser, &s.router, "beta", "/app/x").await;
    assert_eq!(s.ts.claims(&bearer(&answer))["ext_attr"]["zdn"], "beta");
    // The browser went to the tenant's url, the router to the tenant's certurl over mTLS.
    let authorize = visits_to(&s.ts, "/oauth/authorize");
    assert_eq!(
        authorize[0].host.as_deref(),
        Some(host_of(&s.ts.zone_url("beta")).as_str())
    );
    let redeem =
        s.ts.requests()
            .into_iter()
            .find(|r| r.grant_type() == Some("authorization_code"))
            .expect("code redeemed");
    assert_eq!(
        redeem.host.as_deref(),
        Some(host_of(&s.ts.zone_cert_url("beta")).as_str())
    );
    assert!(redeem.via_mtls);
    assert_eq!(redeem.client_cert_cn.as_deref(), Some("sb-router-cert"));
    assert!(!redeem.form.contains_key("client_secret"));
}

#[tokio::test]
async fn with_a_dedicated_binding_sessions_are_still_bound_to_the_hosts_tenant() {
    let s = login_setup_in_mode("dedicated", false, &[]).await;
    let provider = host_of(&s.ts.zone_url("provider"));
    let mut browser = Browser::default();
    let answer = login_on(&mut browser, &s.router, "acme", "/app/a").await;
    // One tenant at the binding's own URL: the provider's zone logs everybody in.
    assert_eq!(s.ts.claims(&bearer(&answer))["ext_attr"]["zdn"], "provider");
    assert_eq!(
        visits_to(&s.ts, "/oauth/authorize")[0].host.as_deref(),
        Some(provider.as_str())
    );
    // The session was opened on acme's host: on beta's host it is a new login.
    let start = on_tenant(&mut browser, &s.router, "beta", "/app/b", &[]).await;
    assert_eq!(start.status(), 302);
    assert!(
        location(&start).starts_with(&format!("{}/oauth/authorize?", s.ts.zone_url("provider"))),
        "{}",
        location(&start)
    );
    echo(on_tenant(&mut browser, &s.router, "acme", "/app/a", &[]).await).await;
}
