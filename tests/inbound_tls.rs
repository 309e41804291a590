//! Inbound TLS and client certificates end to end: the router started in-process on its HTTPS
//! listener (`XSROUTER_TLS_CERT`/`XSROUTER_TLS_KEY`), real rustls clients with and without
//! client certificates from rcgen PKIs, and the echo upstream reporting which client-certificate
//! headers the destination received. Also: spoofed client-certificate headers are removed on
//! both listeners, bad settings are reported per variable, the TLS files reload while the
//! router runs, CRLs (revoked, expired, unknown status), issuer pinning, chain depth,
//! permissive mode results reaching the backend, per-SNI sites with 421, and the counters.

mod support;

use std::time::Duration;

use base64::Engine as _;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use serde_json::{Value, json};
use support::pki::{CrlValidity, KeyForm, Leaf, Pki};
use support::upstream::{self, Upstream};
use support::{Router, WorkDir};

const SPOOFED: &[(&str, &str)] = &[
    ("x-forwarded-client-cert", "Hash=0000;Subject=\"CN=admin\""),
    ("ssl-client-cert", "-----BEGIN CERTIFICATE-----"),
    ("x-ssl-client-cert", "MIIBspoofed"),
    ("client-cert", ":AAAA:"),
    ("ssl-client-verify", "SUCCESS"),
];

struct Setup {
    server_pki: Pki,
    client_pki: Pki,
    upstream: Upstream,
    dir: WorkDir,
}

async fn setup() -> Setup {
    let server_pki = Pki::new("server");
    let client_pki = Pki::new("clients");
    let upstream = upstream::start().await;
    let dir = WorkDir::new(&json!({
        "authenticationMethod": "none",
        "routes": [{"source": "^/be/(.*)$", "target": "/$1", "destination": "backend"}]
    }));
    let (chain, key) = server_pki.server();
    dir.file("tls/server.pem", chain);
    dir.file("tls/server.key", key);
    dir.file("tls/clients.pem", client_pki.root_pem());
    Setup {
        server_pki,
        client_pki,
        upstream,
        dir,
    }
}

impl Setup {
    fn path(&self, relative: &str) -> String {
        self.dir.path().join(relative).display().to_string()
    }

    /// The environment of an HTTPS router with `mode` (and the client CA unless `off`).
    fn env(&self, mode: &str, extra: &[(&'static str, String)]) -> Vec<(&'static str, String)> {
        let mut env = vec![
            (
                "destinations",
                support::destinations(&[("backend", self.upstream.url())]),
            ),
            ("XSROUTER_TLS_CERT", self.path("tls/server.pem")),
            ("XSROUTER_TLS_KEY", self.path("tls/server.key")),
            ("XSROUTER_CLIENT_CERT_MODE", mode.to_owned()),
        ];
        if mode != "off" {
            env.push(("XSROUTER_CLIENT_CA", self.path("tls/clients.pem")));
        }
        env.extend(extra.iter().cloned());
        env
    }

    async fn router(&self, mode: &str, extra: &[(&'static str, String)]) -> Router {
        Router::start(self.dir.path(), &self.env(mode, extra)).await
    }
}

/// A rustls client trusting the server PKI, presenting `identity` (leaf + its intermediate).
fn tls_client(
    router: &Router,
    server_pki: &Pki,
    identity: Option<(&Pki, &Leaf)>,
) -> reqwest::Client {
    let config = support::pki::tls_client_config(server_pki, identity);
    build_client(config, router.addr, "localhost")
}

/// A rustls client for `host` (resolved to `addr`, sent as SNI), HTTP/1.1 only so that a
/// `Host` header can differ from the SNI.
fn client_for(
    addr: std::net::SocketAddr,
    server_pki: &Pki,
    identity: Option<(&Pki, &Leaf)>,
    host: &str,
) -> reqwest::Client {
    let mut config = support::pki::tls_client_config(server_pki, identity);
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    build_client(config, addr, host)
}

fn build_client(
    config: rustls::ClientConfig,
    addr: std::net::SocketAddr,
    host: &str,
) -> reqwest::Client {
    reqwest::Client::builder()
        .tls_backend_preconfigured(config)
        .resolve(host, addr)
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("TLS client")
}

fn https(router: &Router, path: &str) -> String {
    format!("https://localhost:{}{path}", router.addr.port())
}

/// GET through the router with the spoofed headers; the headers the backend received.
async fn backend_headers(client: &reqwest::Client, url: &str) -> Result<Value, reqwest::Error> {
    let mut request = client.get(url);
    for (name, value) in SPOOFED {
        request = request.header(*name, *value);
    }
    let response = request.send().await?;
    assert_eq!(response.status(), 200, "{url}");
    let body: Value = serde_json::from_slice(&response.bytes().await?).expect("echo JSON");
    Ok(body["headers"].clone())
}

fn header<'a>(headers: &'a Value, name: &str) -> Option<Vec<&'a str>> {
    headers[name]
        .as_array()
        .map(|values| values.iter().map(|v| v.as_str().expect("string")).collect())
}

fn assert_no_spoofed_headers(headers: &Value) {
    for (name, _) in SPOOFED {
        assert_eq!(
            header(headers, name),
            None,
            "{name} reached the backend: {headers}"
        );
    }
}

fn leaf_der(leaf: &Leaf) -> Vec<u8> {
    CertificateDer::from_pem_slice(leaf.cert_pem.as_bytes())
        .expect("leaf DER")
        .to_vec()
}

fn sha256_hex(der: &[u8]) -> String {
    ring::digest::digest(&ring::digest::SHA256, der)
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[tokio::test]
async fn require_with_a_valid_certificate_forwards_xfcc() {
    let setup = setup().await;
    let router = setup.router("require", &[]).await;
    let alice = setup.client_pki.client("alice", KeyForm::EcPkcs8);
    let client = tls_client(
        &router,
        &setup.server_pki,
        Some((&setup.client_pki, &alice)),
    );

    let headers = backend_headers(&client, &https(&router, "/be/hello"))
        .await
        .expect("request with a valid certificate");
    let expected = format!(
        "Hash={};Subject=\"CN=alice,O=xsrouter tests\";URI=",
        sha256_hex(&leaf_der(&alice))
    );
    assert_eq!(
        header(&headers, "x-forwarded-client-cert"),
        Some(vec![expected.as_str()])
    );
    assert_eq!(header(&headers, "x-forwarded-proto"), Some(vec!["https"]));
    for (name, _) in SPOOFED.iter().skip(1) {
        assert_eq!(header(&headers, name), None, "{name}: {headers}");
    }
}

#[tokio::test]
async fn require_without_a_certificate_or_with_a_foreign_one_fails_the_handshake() {
    let setup = setup().await;
    let router = setup.router("require", &[]).await;
    let url = https(&router, "/be/hello");

    let anonymous = tls_client(&router, &setup.server_pki, None);
    let err = anonymous.get(&url).send().await.err();
    assert!(err.is_some(), "a client without a certificate was served");

    let other_pki = Pki::new("other");
    let mallory = other_pki.client("mallory", KeyForm::EcPkcs8);
    let foreign = tls_client(&router, &setup.server_pki, Some((&other_pki, &mallory)));
    let err = foreign.get(&url).send().await.err();
    assert!(err.is_some(), "a certificate from another CA was accepted");

    // The same router serves a client whose certificate it trusts.
    let alice = setup.client_pki.client("alice", KeyForm::EcPkcs8);
    let trusted = tls_client(
        &router,
        &setup.server_pki,
        Some((&setup.client_pki, &alice)),
    );
    let response = trusted.get(&url).send().await.expect("trusted client");
    assert_eq!(response.status(), 200);
    assert_eq!(
        setup.upstream.observed.paths.lock().expect("paths").len(),
        1
    );
}

#[tokio::test]
async fn optional_serves_clients_without_a_certificate_without_client_cert_headers() {
    let setup = setup().await;
    let router = setup.router("optional", &[]).await;
    let url = https(&router, "/be/hello");

    let anonymous = tls_client(&router, &setup.server_pki, None);
    let headers = backend_headers(&anonymous, &url)
        .await
        .expect("anonymous client");
    assert_no_spoofed_headers(&headers);
    assert_eq!(header(&headers, "x-forwarded-proto"), Some(vec!["https"]));

    let bob = setup.client_pki.client("bob", KeyForm::RsaPkcs8);
    let with_cert = tls_client(&router, &setup.server_pki, Some((&setup.client_pki, &bob)));
    let headers = backend_headers(&with_cert, &url)
        .await
        .expect("client with a certificate");
    let xfcc = header(&headers, "x-forwarded-client-cert").expect("xfcc");
    assert_eq!(
        xfcc,
        vec![format!(
            "Hash={};Subject=\"CN=bob,O=xsrouter tests\";URI=",
            sha256_hex(&leaf_der(&bob))
        )]
    );

    // A certificate that is presented must still verify.
    let other_pki = Pki::new("other");
    let mallory = other_pki.client("mallory", KeyForm::EcPkcs8);
    let foreign = tls_client(&router, &setup.server_pki, Some((&other_pki, &mallory)));
    assert!(foreign.get(&url).send().await.is_err());
}

#[tokio::test]
async fn off_asks_for_no_certificate_and_forwards_none() {
    let setup = setup().await;
    let router = setup.router("off", &[]).await;
    // The client has a certificate but is never asked for it.
    let alice = setup.client_pki.client("alice", KeyForm::EcPkcs8);
    let client = tls_client(
        &router,
        &setup.server_pki,
        Some((&setup.client_pki, &alice)),
    );
    let headers = backend_headers(&client, &https(&router, "/be/hello"))
        .await
        .expect("request without client auth");
    assert_no_spoofed_headers(&headers);
    assert_eq!(header(&headers, "x-forwarded-proto"), Some(vec!["https"]));
    // Graceful shutdown closes the client's idle keep-alive connection instead of waiting for
    // the grace period.
    let started = std::time::Instant::now();
    assert_eq!(router.stop().await, xsrouter::server::Stopped::Drained);
    assert!(started.elapsed() < Duration::from_secs(4));
}

#[tokio::test]
async fn spoofed_client_cert_headers_are_removed_on_the_plain_listener() {
    let setup = setup().await;
    let router = Router::start(
        setup.dir.path(),
        &[(
            "destinations",
            support::destinations(&[("backend", setup.upstream.url())]),
        )],
    )
    .await;
    let headers = backend_headers(&support::client(), &router.url("/be/hello"))
        .await
        .expect("plain request");
    assert_no_spoofed_headers(&headers);
    assert_eq!(header(&headers, "x-forwarded-proto"), Some(vec!["http"]));
    // Headers that merely look similar are not touched.
    let response = support::client()
        .get(router.url("/be/hello"))
        .header("x-client-id", "kept")
        .send()
        .await
        .expect("send");
    let body: Value = serde_json::from_slice(&response.bytes().await.expect("body")).expect("json");
    assert_eq!(header(&body["headers"], "x-client-id"), Some(vec!["kept"]));
}

#[tokio::test]
async fn configured_profiles_are_sent_instead_of_envoy() {
    let setup = setup().await;
    let router = setup
        .router(
            "require",
            &[("XSROUTER_CLIENT_CERT_HEADERS", "cf, rfc9440".to_owned())],
        )
        .await;
    let alice = setup.client_pki.client("alice", KeyForm::EcSec1);
    let client = tls_client(
        &router,
        &setup.server_pki,
        Some((&setup.client_pki, &alice)),
    );
    let headers = backend_headers(&client, &https(&router, "/be/hello"))
        .await
        .expect("request");
    let b64 = base64::engine::general_purpose::STANDARD.encode(leaf_der(&alice));
    assert_eq!(
        header(&headers, "x-forwarded-client-cert"),
        Some(vec![b64.as_str()])
    );
    let rfc9440 = format!(":{b64}:");
    assert_eq!(
        header(&headers, "client-cert"),
        Some(vec![rfc9440.as_str()])
    );
    let intermediate =
        CertificateDer::from_pem_slice(setup.client_pki.intermediate_pem().as_bytes())
            .expect("intermediate");
    let chain = format!(
        ":{}:",
        base64::engine::general_purpose::STANDARD.encode(intermediate.as_ref())
    );
    assert_eq!(
        header(&headers, "client-cert-chain"),
        Some(vec![chain.as_str()])
    );
}

async fn start_error(dir: &WorkDir, env: &[(&str, String)]) -> String {
    match Router::try_start(dir.path(), env).await {
        Ok(_) => panic!("the router started with {env:?}"),
        Err(err) => err.to_string(),
    }
}

#[tokio::test]
async fn bad_tls_settings_stop_the_start_with_their_variable() {
    let setup = setup().await;
    // A client-certificate mode without CA bundles.
    let mut env = setup.env("require", &[]);
    env.retain(|(k, _)| *k != "XSROUTER_CLIENT_CA");
    let text = start_error(&setup.dir, &env).await;
    assert!(
        text.contains("env XSROUTER_CLIENT_CERT_MODE: $: mode `require` needs XSROUTER_CLIENT_CA"),
        "{text}"
    );

    // A CA file without certificates.
    setup.dir.file("tls/empty.pem", "not a certificate\n");
    let text = start_error(
        &setup.dir,
        &setup.env(
            "optional",
            &[("XSROUTER_CLIENT_CA", setup.path("tls/empty.pem"))],
        ),
    )
    .await;
    assert!(
        text.contains("empty.pem): $: holds no PEM certificate"),
        "{text}"
    );

    // A key that does not belong to the certificate.
    let (_, other_key) = setup.server_pki.server();
    setup.dir.file("tls/other.key", other_key);
    let text = start_error(
        &setup.dir,
        &setup.env("off", &[("XSROUTER_TLS_KEY", setup.path("tls/other.key"))]),
    )
    .await;
    assert!(
        text.contains("env XSROUTER_TLS_CERT (")
            && text.contains("server.pem): $: server certificate and key"),
        "{text}"
    );

    // A certificate file without a key.
    let text = start_error(
        &setup.dir,
        &[("XSROUTER_TLS_CERT", setup.path("tls/server.pem"))],
    )
    .await;
    assert!(
        text.contains("env XSROUTER_TLS_KEY: $: is not set, but XSROUTER_TLS_CERT is"),
        "{text}"
    );
}

/// Whether a fresh connection as `identity` gets a 200 from the backend route.
async fn accepted(setup: &Setup, router: &Router, identity: Option<(&Pki, &Leaf)>) -> bool {
    let client = tls_client(router, &setup.server_pki, identity);
    matches!(
        client.get(https(router, "/be/hello")).send().await,
        Ok(response) if response.status() == 200
    )
}

/// Polls `check` for up to 8 s (the router re-reads its files every second in these tests).
async fn eventually<F, Fut>(mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    for _ in 0..40 {
        if check().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    false
}

const FAST_RELOAD: (&str, &str) = ("XSROUTER_CREDENTIALS_POLL_INTERVAL", "1");

fn fast_reload() -> (&'static str, String) {
    (FAST_RELOAD.0, FAST_RELOAD.1.to_owned())
}

#[tokio::test]
async fn replaced_server_files_are_served_without_restart_and_a_broken_file_keeps_the_old_ones() {
    let setup = setup().await;
    let router = setup.router("off", &[fast_reload()]).await;
    let url = https(&router, "/be/hello");
    let old_trust = tls_client(&router, &setup.server_pki, None);
    assert_eq!(old_trust.get(&url).send().await.expect("old").status(), 200);

    // A new server certificate from another CA, written in place.
    let new_pki = Pki::new("renewed");
    let (chain, key) = new_pki.server();
    setup.dir.file("tls/server.pem", chain);
    setup.dir.file("tls/server.key", key);
    let served_new = eventually(|| async {
        let client = tls_client(&router, &new_pki, None);
        matches!(client.get(&url).send().await, Ok(r) if r.status() == 200)
    })
    .await;
    assert!(served_new, "the renewed certificate was not served");
    let old = tls_client(&router, &setup.server_pki, None);
    assert!(
        old.get(&url).send().await.is_err(),
        "the replaced certificate is still served"
    );

    // A broken certificate file: the renewed certificate stays in use.
    setup.dir.file(
        "tls/server.pem",
        "-----BEGIN CERTIFICATE-----\nnot base64\n",
    );
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let client = tls_client(&router, &new_pki, None);
    assert_eq!(
        client.get(&url).send().await.expect("kept").status(),
        200,
        "a broken file replaced the working certificate"
    );
}

#[tokio::test]
async fn revoked_certificates_are_refused_and_crls_reload() {
    let setup = setup().await;
    let alice = setup.client_pki.client("alice", KeyForm::EcPkcs8);
    let bob = setup.client_pki.client("bob", KeyForm::EcPkcs8);
    setup.dir.file(
        "tls/root.crl",
        setup.client_pki.intermediate_crl(CrlValidity::Current),
    );
    setup.dir.file(
        "tls/leaves.crl",
        setup.client_pki.leaf_crl(&[&bob], CrlValidity::Current),
    );
    let crls = format!(
        "{}:{}",
        setup.path("tls/root.crl"),
        setup.path("tls/leaves.crl")
    );
    let router = setup
        .router("require", &[("XSROUTER_CLIENT_CRL", crls), fast_reload()])
        .await;
    assert!(accepted(&setup, &router, Some((&setup.client_pki, &alice))).await);
    assert!(
        !accepted(&setup, &router, Some((&setup.client_pki, &bob))).await,
        "a revoked certificate was accepted"
    );

    // Alice is revoked while the router runs.
    setup.dir.file(
        "tls/leaves.crl",
        setup
            .client_pki
            .leaf_crl(&[&bob, &alice], CrlValidity::Current),
    );
    let refused = eventually(|| async {
        !accepted(&setup, &router, Some((&setup.client_pki, &alice))).await
    })
    .await;
    assert!(refused, "the reloaded CRL was not applied");
}

#[tokio::test]
async fn an_expired_crl_is_refused_unless_expiration_is_not_enforced() {
    let setup = setup().await;
    let alice = setup.client_pki.client("alice", KeyForm::EcPkcs8);
    setup.dir.file(
        "tls/crls.pem",
        format!(
            "{}{}",
            setup.client_pki.intermediate_crl(CrlValidity::Current),
            setup.client_pki.leaf_crl(&[], CrlValidity::Expired)
        ),
    );
    let crl = ("XSROUTER_CLIENT_CRL", setup.path("tls/crls.pem"));
    let strict = setup.router("require", std::slice::from_ref(&crl)).await;
    assert!(
        !accepted(&setup, &strict, Some((&setup.client_pki, &alice))).await,
        "a certificate was accepted on an expired CRL"
    );
    let lenient = setup
        .router(
            "require",
            &[
                crl,
                ("XSROUTER_CLIENT_CRL_ENFORCE_EXPIRATION", "false".to_owned()),
            ],
        )
        .await;
    assert!(accepted(&setup, &lenient, Some((&setup.client_pki, &alice))).await);
}

#[tokio::test]
async fn unknown_revocation_status_is_refused_unless_allowed_or_only_leaves_are_checked() {
    let setup = setup().await;
    let alice = setup.client_pki.client("alice", KeyForm::EcPkcs8);
    // Only the intermediate's CRL: nothing says whether the intermediate itself is revoked.
    setup.dir.file(
        "tls/leaves.crl",
        setup.client_pki.leaf_crl(&[], CrlValidity::Current),
    );
    let crl = ("XSROUTER_CLIENT_CRL", setup.path("tls/leaves.crl"));
    let strict = setup.router("require", std::slice::from_ref(&crl)).await;
    assert!(
        !accepted(&setup, &strict, Some((&setup.client_pki, &alice))).await,
        "a certificate of unknown revocation status was accepted"
    );
    let leaf_only = setup
        .router(
            "require",
            &[
                crl.clone(),
                ("XSROUTER_CLIENT_CRL_SCOPE", "leaf".to_owned()),
            ],
        )
        .await;
    assert!(accepted(&setup, &leaf_only, Some((&setup.client_pki, &alice))).await);
    let allowed = setup
        .router(
            "require",
            &[
                crl,
                (
                    "XSROUTER_CLIENT_CRL_ALLOW_UNKNOWN_STATUS",
                    "true".to_owned(),
                ),
            ],
        )
        .await;
    assert!(accepted(&setup, &allowed, Some((&setup.client_pki, &alice))).await);
}

#[tokio::test]
async fn pinned_issuers_refuse_another_ca_of_the_same_bundle() {
    let setup = setup().await;
    let partner = Pki::new("partner");
    setup.dir.file(
        "tls/both.pem",
        format!("{}{}", setup.client_pki.root_pem(), partner.root_pem()),
    );
    setup
        .dir
        .file("tls/pinned.pem", setup.client_pki.intermediate_pem());
    let router = setup
        .router(
            "require",
            &[
                ("XSROUTER_CLIENT_CA", setup.path("tls/both.pem")),
                ("XSROUTER_CLIENT_ISSUERS", setup.path("tls/pinned.pem")),
            ],
        )
        .await;
    let alice = setup.client_pki.client("alice", KeyForm::EcPkcs8);
    let carol = partner.client("carol", KeyForm::EcPkcs8);
    assert!(accepted(&setup, &router, Some((&setup.client_pki, &alice))).await);
    assert!(
        !accepted(&setup, &router, Some((&partner, &carol))).await,
        "a certificate from a CA that is trusted but not pinned was accepted"
    );

    // Without pinning the same bundle trusts both.
    let unpinned = setup
        .router(
            "require",
            &[("XSROUTER_CLIENT_CA", setup.path("tls/both.pem"))],
        )
        .await;
    assert!(accepted(&setup, &unpinned, Some((&partner, &carol))).await);
}

#[tokio::test]
async fn chain_depth_limits_the_ca_certificates_above_the_leaf() {
    let setup = setup().await;
    let alice = setup.client_pki.client("alice", KeyForm::EcPkcs8);
    // Leaf → intermediate → root: two CA certificates above the leaf.
    let shallow = setup
        .router(
            "require",
            &[("XSROUTER_CLIENT_CHAIN_DEPTH", "1".to_owned())],
        )
        .await;
    assert!(
        !accepted(&setup, &shallow, Some((&setup.client_pki, &alice))).await,
        "a chain deeper than the limit was accepted"
    );
    let enough = setup
        .router(
            "require",
            &[("XSROUTER_CLIENT_CHAIN_DEPTH", "2".to_owned())],
        )
        .await;
    assert!(accepted(&setup, &enough, Some((&setup.client_pki, &alice))).await);
}

#[tokio::test]
async fn a_bundle_without_a_root_stops_the_start() {
    let setup = setup().await;
    setup.dir.file(
        "tls/intermediate-only.pem",
        setup.client_pki.intermediate_pem(),
    );
    let text = start_error(
        &setup.dir,
        &setup.env(
            "require",
            &[(
                "XSROUTER_CLIENT_CA",
                setup.path("tls/intermediate-only.pem"),
            )],
        ),
    )
    .await;
    assert!(
        text.contains("env XSROUTER_CLIENT_CA (")
            && text.contains("intermediate-only.pem): $: holds no root (self-signed) certificate"),
        "{text}"
    );
    setup.dir.file(
        "tls/broken.crl",
        "-----BEGIN X509 CRL-----\nAAAA\n-----END X509 CRL-----\n",
    );
    let text = start_error(
        &setup.dir,
        &setup.env(
            "require",
            &[("XSROUTER_CLIENT_CRL", setup.path("tls/broken.crl"))],
        ),
    )
    .await;
    assert!(
        text.contains("env XSROUTER_CLIENT_CRL (")
            && text.contains("broken.crl): $: not a valid CRL"),
        "{text}"
    );
}

/// A router whose state the test keeps (for the metrics).
async fn router_with_state(
    dir: &WorkDir,
    env: &[(&'static str, String)],
) -> (
    std::net::SocketAddr,
    xsrouter::pipeline::AppState,
    tokio::task::JoinHandle<std::io::Result<xsrouter::server::Stopped>>,
) {
    xsrouter::install_crypto_provider();
    let runtime = support::load_runtime(dir.path(), env).expect("runtime");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let state = xsrouter::pipeline::AppState::build(runtime)
        .await
        .expect("state");
    let task = tokio::spawn(xsrouter::server::serve(
        listener,
        state.clone(),
        std::future::pending(),
        Duration::from_secs(1),
    ));
    (addr, state, task)
}

#[tokio::test]
async fn permissive_mode_passes_success_failed_and_none_to_the_backend_and_counts_them() {
    let setup = setup().await;
    let env = setup.env(
        "optional",
        &[
            ("XSROUTER_CLIENT_CERT_PERMISSIVE", "true".to_owned()),
            (
                "XSROUTER_CLIENT_CERT_HEADERS",
                "nginx, azure-appgw".to_owned(),
            ),
        ],
    );
    let (addr, state, task) = router_with_state(&setup.dir, &env).await;
    let url = format!("https://localhost:{}/be/hello", addr.port());
    let verify = |headers: &Value| {
        (
            header(headers, "ssl-client-verify").map(|v| v.join(",")),
            header(headers, "x-client-certificate-verification").map(|v| v.join(",")),
        )
    };

    let alice = setup.client_pki.client("alice", KeyForm::EcPkcs8);
    let client = client_for(
        addr,
        &setup.server_pki,
        Some((&setup.client_pki, &alice)),
        "localhost",
    );
    let headers = backend_headers(&client, &url)
        .await
        .expect("valid certificate");
    assert_eq!(
        verify(&headers),
        (Some("SUCCESS".to_owned()), Some("SUCCESS".to_owned()))
    );
    assert_eq!(
        header(&headers, "ssl-client-s-dn"),
        Some(vec!["CN=alice,O=xsrouter tests"])
    );

    let stranger_pki = Pki::new("stranger");
    let mallory = stranger_pki.client("mallory", KeyForm::EcPkcs8);
    let client = client_for(
        addr,
        &setup.server_pki,
        Some((&stranger_pki, &mallory)),
        "localhost",
    );
    let headers = backend_headers(&client, &url)
        .await
        .expect("a failing certificate is accepted in permissive mode");
    let failed = "FAILED:unable to get local issuer certificate".to_owned();
    assert_eq!(verify(&headers), (Some(failed.clone()), Some(failed)));
    // Details of an unverified certificate are not passed on.
    assert_eq!(header(&headers, "ssl-client-s-dn"), None, "{headers}");
    assert_eq!(header(&headers, "x-client-certificate"), None, "{headers}");

    let client = client_for(addr, &setup.server_pki, None, "localhost");
    let headers = backend_headers(&client, &url)
        .await
        .expect("no certificate");
    assert_eq!(
        verify(&headers),
        (Some("NONE".to_owned()), Some("NONE".to_owned()))
    );

    // One handshake each (the metrics endpoint renders these counters).
    let counted = state.client_cert_counters().snapshot();
    for row in [
        ("success", "", 1),
        ("none", "", 1),
        ("failed", "unknown_issuer", 1),
        ("failed", "revoked", 0),
    ] {
        assert!(counted.contains(&row), "missing {row:?} in {counted:?}");
    }
    task.abort();
}

#[tokio::test]
async fn sni_selects_the_site_and_a_host_that_differs_gets_421() {
    let setup = setup().await;
    let secure_pki = Pki::new("secure");
    let (chain, key) = secure_pki.server_for(&["secure.test"]);
    setup.dir.file("tls/secure.pem", chain);
    setup.dir.file("tls/secure.key", key);
    let (chain, key) = secure_pki.server_for(&["*.partners.test"]);
    setup.dir.file("tls/partners.pem", chain);
    setup.dir.file("tls/partners.key", key);
    let hosts = json!([{
        "host": "secure.test",
        "cert": setup.path("tls/secure.pem"),
        "key": setup.path("tls/secure.key"),
        "clientCertMode": "require",
        "clientCa": [setup.path("tls/clients.pem")]
    }, {
        "host": "*.partners.test",
        "cert": setup.path("tls/partners.pem"),
        "key": setup.path("tls/partners.key"),
        "clientCertMode": "optional",
        "clientCa": [setup.path("tls/clients.pem")]
    }]);
    let router = setup
        .router("off", &[("XSROUTER_TLS_HOSTS", hosts.to_string())])
        .await;
    let port = router.addr.port();
    let alice = setup.client_pki.client("alice", KeyForm::EcPkcs8);

    // SNI secure.test: that site's certificate, and its client certificate is required.
    let secure = client_for(
        router.addr,
        &secure_pki,
        Some((&setup.client_pki, &alice)),
        "secure.test",
    );
    let secure_url = format!("https://secure.test:{port}/be/hello");
    let headers = backend_headers(&secure, &secure_url)
        .await
        .expect("secure site");
    assert!(
        header(&headers, "x-forwarded-client-cert").is_some(),
        "{headers}"
    );
    let anonymous = client_for(router.addr, &secure_pki, None, "secure.test");
    assert!(
        anonymous.get(&secure_url).send().await.is_err(),
        "the secure site served a client without a certificate"
    );

    // Same connection policy, another Host: 421.
    let response = secure
        .get(&secure_url)
        .header("host", format!("localhost:{port}"))
        .send()
        .await
        .expect("misdirected request");
    assert_eq!(response.status(), 421);

    // The default site (SNI localhost, no client certificates) serves localhost…
    let plain = client_for(router.addr, &setup.server_pki, None, "localhost");
    let plain_url = format!("https://localhost:{port}/be/hello");
    assert_eq!(
        plain
            .get(&plain_url)
            .send()
            .await
            .expect("default")
            .status(),
        200
    );
    // …but never the host that requires client certificates.
    let response = plain
        .get(&plain_url)
        .header("host", format!("secure.test:{port}"))
        .send()
        .await
        .expect("cross-site request");
    assert_eq!(response.status(), 421);

    // A wildcard site serves any one-label name under it with its own certificate and policy…
    let partner = client_for(
        router.addr,
        &secure_pki,
        Some((&setup.client_pki, &alice)),
        "a.partners.test",
    );
    let partner_url = format!("https://a.partners.test:{port}/be/hello");
    let headers = backend_headers(&partner, &partner_url)
        .await
        .expect("wildcard site");
    assert!(
        header(&headers, "x-forwarded-client-cert").is_some(),
        "{headers}"
    );
    // …and its names are never served on the default site's connection.
    let response = plain
        .get(&plain_url)
        .header("host", format!("b.partners.test:{port}"))
        .send()
        .await
        .expect("cross-site request");
    assert_eq!(response.status(), 421);
    assert_eq!(
        setup.upstream.observed.paths.lock().expect("paths").len(),
        3
    );
}

#[tokio::test]
async fn permissive_mode_names_a_revoked_certificate() {
    let setup = setup().await;
    let alice = setup.client_pki.client("alice", KeyForm::EcPkcs8);
    setup.dir.file(
        "tls/crls.pem",
        format!(
            "{}{}",
            setup.client_pki.intermediate_crl(CrlValidity::Current),
            setup.client_pki.leaf_crl(&[&alice], CrlValidity::Current)
        ),
    );
    let router = setup
        .router(
            "optional",
            &[
                ("XSROUTER_CLIENT_CERT_PERMISSIVE", "true".to_owned()),
                ("XSROUTER_CLIENT_CERT_HEADERS", "nginx".to_owned()),
                ("XSROUTER_CLIENT_CRL", setup.path("tls/crls.pem")),
            ],
        )
        .await;
    let client = tls_client(
        &router,
        &setup.server_pki,
        Some((&setup.client_pki, &alice)),
    );
    let headers = backend_headers(&client, &https(&router, "/be/hello"))
        .await
        .expect("permissive mode accepts a revoked certificate");
    assert_eq!(
        header(&headers, "ssl-client-verify"),
        Some(vec!["FAILED:certificate revoked"])
    );
}

#[cfg(unix)]
#[tokio::test]
async fn sighup_reloads_the_tls_files_at_once() {
    let setup = setup().await;
    // An hour between polls: only the signal can explain a reload within the test.
    let router = setup
        .router(
            "off",
            &[("XSROUTER_CREDENTIALS_POLL_INTERVAL", "3600".to_owned())],
        )
        .await;
    // Let the router's tasks install their SIGHUP handlers.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let url = https(&router, "/be/hello");
    let new_pki = Pki::new("renewed");
    let (chain, key) = new_pki.server();
    setup.dir.file("tls/server.pem", chain);
    setup.dir.file("tls/server.key", key);
    let renewed = || async {
        let client = tls_client(&router, &new_pki, None);
        matches!(client.get(&url).send().await, Ok(r) if r.status() == 200)
    };
    assert!(!renewed().await, "reloaded without a signal");
    let status = std::process::Command::new("kill")
        .args(["-HUP", &std::process::id().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
    assert!(
        eventually(renewed).await,
        "SIGHUP did not reload the TLS files"
    );
}

#[tokio::test]
async fn the_binary_logs_its_tls_files_reloads_on_sighup_and_never_logs_keys() {
    let setup = setup().await;
    let env = setup.env(
        "optional",
        &[
            ("XSROUTER_CLIENT_CERT_PERMISSIVE", "true".to_owned()),
            ("XSROUTER_CREDENTIALS_POLL_INTERVAL", "3600".to_owned()),
        ],
    );
    let router = support::process::RouterProcess::start(setup.dir.path(), &env);
    let loaded = router
        .wait_for_line("HTTPS server certificate loaded", Duration::from_secs(10))
        .await;
    assert!(loaded.contains("CN=localhost"), "{loaded}");
    router
        .wait_for_line("permissive client certificates", Duration::from_secs(5))
        .await;

    // New files, then SIGHUP: the new certificate is announced.
    let renewed = Pki::new("renewed");
    let (chain, key) = renewed.server_for(&["localhost", "renewed.test"]);
    setup.dir.file("tls/server.pem", &chain);
    setup.dir.file("tls/server.key", &key);
    router.signal("HUP");
    router
        .wait_for_line("inbound TLS files changed", Duration::from_secs(10))
        .await;

    // A key that does not belong to the certificate: rejected with file and reason.
    let (_, other_key) = renewed.server();
    setup.dir.file("tls/server.key", &other_key);
    router.signal("HUP");
    let rejected = router
        .wait_for_line("inbound TLS files rejected", Duration::from_secs(10))
        .await;
    assert!(rejected.contains("server.pem"), "{rejected}");

    let log = router.log_text();
    for secret in [&key, &other_key] {
        let body = secret
            .lines()
            .find(|l| !l.starts_with("-----"))
            .expect("key body");
        assert!(!log.contains(body), "key material in the log:\n{log}");
    }
    assert!(!log.contains("PRIVATE KEY"), "{log}");
}

/// A client presenting `leaf`, its intermediate and then bytes that are no certificate at all
/// (the handshake signature is made with the leaf's key, so only parsing can fail).
fn client_with_junk_in_chain(
    router: &Router,
    server_pki: &Pki,
    pki: &Pki,
    leaf: &Leaf,
) -> reqwest::Client {
    use rustls::pki_types::PrivateKeyDer;
    xsrouter::install_crypto_provider();
    let mut roots = rustls::RootCertStore::empty();
    roots.add(server_pki.root.der().clone()).expect("root");
    let chain = vec![
        CertificateDer::from(leaf_der(leaf)),
        CertificateDer::from_pem_slice(pki.intermediate_pem().as_bytes()).expect("intermediate"),
        CertificateDer::from(b"not a certificate".to_vec()),
    ];
    let key = PrivateKeyDer::from_pem_slice(leaf.key_pem.as_bytes()).expect("key");
    let mut config = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("protocol versions")
    .with_root_certificates(roots)
    .with_client_auth_cert(chain, key)
    .expect("client auth");
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    build_client(config, router.addr, "localhost")
}

#[tokio::test]
async fn an_unparsable_client_certificate_is_failed_when_permissive_and_refused_otherwise() {
    let setup = setup().await;
    let alice = setup.client_pki.client("alice", KeyForm::EcPkcs8);
    let nginx = ("XSROUTER_CLIENT_CERT_HEADERS", "nginx".to_owned());
    let permissive = setup
        .router(
            "optional",
            &[
                ("XSROUTER_CLIENT_CERT_PERMISSIVE", "true".to_owned()),
                nginx.clone(),
            ],
        )
        .await;
    let url = https(&permissive, "/be/hello");
    // The same leaf and intermediate without the junk verify.
    let clean = tls_client(
        &permissive,
        &setup.server_pki,
        Some((&setup.client_pki, &alice)),
    );
    let headers = backend_headers(&clean, &url).await.expect("valid chain");
    assert_eq!(header(&headers, "ssl-client-verify"), Some(vec!["SUCCESS"]));

    let junk = client_with_junk_in_chain(&permissive, &setup.server_pki, &setup.client_pki, &alice);
    let headers = backend_headers(&junk, &url)
        .await
        .expect("permissive mode accepts a chain it cannot parse");
    assert_eq!(
        header(&headers, "ssl-client-verify"),
        Some(vec!["FAILED:unable to decode certificate"])
    );
    // Like every failed certificate: no details are passed on.
    assert_eq!(header(&headers, "ssl-client-s-dn"), None, "{headers}");
    assert_eq!(header(&headers, "ssl-client-cert"), None, "{headers}");
    // The connection stays usable.
    let headers = backend_headers(&junk, &url).await.expect("second request");
    assert_eq!(
        header(&headers, "ssl-client-verify"),
        Some(vec!["FAILED:unable to decode certificate"])
    );

    // Without permissive mode the router never serves it.
    let strict = setup.router("require", &[nginx]).await;
    let junk = client_with_junk_in_chain(&strict, &setup.server_pki, &setup.client_pki, &alice);
    assert!(
        junk.get(https(&strict, "/be/hello")).send().await.is_err(),
        "require mode served a certificate chain it cannot parse"
    );
    assert!(accepted(&setup, &strict, Some((&setup.client_pki, &alice))).await);
}
