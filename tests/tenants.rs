//! Multi-tenancy through the running router: `TENANT_HOST_PATTERN` picks the tenant from the
//! host (`x-forwarded-host`/`Host`, or `x-custom-host` behind `EXTERNAL_REVERSE_PROXY`), and a
//! shared-tenant-mode XSUAA binding is asked for tokens at the tenant's subdomain — tokens are
//! cached per tenant. The test token service is reached as `<tenant>.localhost`, which the
//! router resolves to loopback (RFC 6761).

mod support;

use serde_json::{Value, json};
use support::browser::{bearer, echo};
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
