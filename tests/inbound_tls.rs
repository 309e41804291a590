//! Inbound TLS and client certificates end to end: the router started in-process on its HTTPS
//! listener (`XSROUTER_TLS_CERT`/`XSROUTER_TLS_KEY`), real rustls clients with and without
//! client certificates from rcgen PKIs, and the echo upstream reporting which client-certificate
//! headers the destination received. Also: spoofed client-certificate headers are removed on
//! both listeners, and bad settings are reported per variable.

mod support;

use std::time::Duration;

use base64::Engine as _;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use serde_json::{Value, json};
use support::pki::{KeyForm, Leaf, Pki};
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
    reqwest::Client::builder()
        .tls_backend_preconfigured(config)
        .resolve("localhost", router.addr)
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
        text.contains("env XSROUTER_TLS_CERT: $: server certificate and key"),
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
