//! Trusted front proxies end to end: the router in-process on loopback, an echo upstream that
//! reports the headers it received, rcgen PKIs, and real clients bound to chosen loopback
//! addresses (127.0.0.2 plays the trusted proxy, 127.0.0.1 anyone else) or presenting their own
//! client certificates over the router's HTTPS listener. Covers: headers from untrusted peers
//! stripped; every forwarded format believed from a trusted peer and passed on in the configured
//! profiles; re-verification; malformed headers → 400; per-route `clientCertificate` rules;
//! Envoy's XFCC modes; CR/LF/NUL never reaching a destination.

mod support;

use std::net::IpAddr;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use serde_json::{Value, json};
use support::pki::{CrlValidity, KeyForm, Leaf, Pki};
use support::upstream::{self, Upstream};
use support::{Router, WorkDir};

const PROXY_IP: &str = "127.0.0.2";
const OTHER_IP: &str = "127.0.0.1";
const XFCC: &str = "x-forwarded-client-cert";

/// Every header a client might use to claim a certificate.
const SPOOFED: &[(&str, &str)] = &[
    ("ssl-client-s-dn", "CN=admin"),
    ("x-ssl-client-cert", "MIIBspoofed"),
    ("client-cert-chain", ":AAAA:"),
    ("x-client-certificate-subject", "CN=admin"),
    ("x-arr-clientcert", "MIIB"),
];

struct Setup {
    clients: Pki,
    server: Pki,
    upstream: Upstream,
    dir: WorkDir,
}

async fn setup() -> Setup {
    let clients = Pki::new("clients");
    let server = Pki::new("server");
    let upstream = upstream::start().await;
    let dir = WorkDir::new(&json!({
        "authenticationMethod": "none",
        "routes": [
            {"source": "^/open/(.*)$", "target": "/$1", "destination": "backend"},
            {"source": "^/required/(.*)$", "target": "/$1", "destination": "backend",
             "clientCertificate": "required"},
            {"source": "^/optional/(.*)$", "target": "/$1", "destination": "backend",
             "clientCertificate": "optional"},
            {"source": "^/alice/(.*)$", "target": "/$1", "destination": "backend",
             "clientCertificate": {"subject": {"CN": ["alice", "carol"], "O": "xsrouter tests"},
                                   "issuer": {"CN": "clients Intermediate CA"}}}
        ]
    }));
    dir.file(
        "ca/clients.pem",
        format!("{}{}", clients.root_pem(), clients.intermediate_pem()),
    );
    dir.file("ca/root.pem", clients.root_pem());
    let (chain, key) = server.server();
    dir.file("tls/server.pem", chain);
    dir.file("tls/server.key", key);
    Setup {
        clients,
        server,
        upstream,
        dir,
    }
}

impl Setup {
    fn path(&self, relative: &str) -> String {
        self.dir.path().join(relative).display().to_string()
    }

    /// A plain-HTTP router trusting 127.0.0.2, re-verifying against the clients' CAs, passing
    /// certificates on as Envoy XFCC and nginx variables; `extra` adds or replaces variables.
    fn env(&self, extra: &[(&'static str, String)]) -> Vec<(&'static str, String)> {
        let mut env = vec![
            (
                "destinations",
                support::destinations(&[("backend", self.upstream.url())]),
            ),
            ("XSROUTER_CLIENT_CA", self.path("ca/clients.pem")),
            ("XSROUTER_TRUSTED_PROXIES", format!("{PROXY_IP}/32")),
            ("XSROUTER_FORWARDED_CLIENT_CERT", "cf".to_owned()),
            ("XSROUTER_CLIENT_CERT_HEADERS", "envoy,nginx".to_owned()),
        ];
        for (key, value) in extra {
            env.retain(|(k, _)| k != key);
            env.push((key, value.clone()));
        }
        env
    }

    async fn router(&self, extra: &[(&'static str, String)]) -> Router {
        Router::start(self.dir.path(), &self.env(extra)).await
    }

    /// An HTTPS router asking for client certificates (optional), trusting proxies by `extra`.
    async fn https_router(&self, extra: &[(&'static str, String)]) -> Router {
        let mut env = self.env(&[
            ("XSROUTER_TLS_CERT", self.path("tls/server.pem")),
            ("XSROUTER_TLS_KEY", self.path("tls/server.key")),
            ("XSROUTER_CLIENT_CERT_MODE", "optional".to_owned()),
            ("XSROUTER_FORWARDED_CLIENT_CERT", "envoy".to_owned()),
        ]);
        env.retain(|(k, _)| *k != "XSROUTER_TRUSTED_PROXIES");
        for (key, value) in extra {
            env.retain(|(k, _)| k != key);
            env.push((key, value.clone()));
        }
        Router::start(self.dir.path(), &env).await
    }
}

/// A plain HTTP client whose connections come from `ip`.
fn client_from(ip: &str) -> reqwest::Client {
    xsrouter::install_crypto_provider();
    reqwest::Client::builder()
        .local_address(ip.parse::<IpAddr>().expect("ip"))
        .no_proxy()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("client")
}

/// An HTTPS client presenting `identity` to the router.
fn tls_client(router: &Router, server: &Pki, identity: Option<(&Pki, &Leaf)>) -> reqwest::Client {
    reqwest::Client::builder()
        .tls_backend_preconfigured(support::pki::tls_client_config(server, identity))
        .resolve("localhost", router.addr)
        .no_proxy()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("TLS client")
}

fn https(router: &Router, path: &str) -> String {
    format!("https://localhost:{}{path}", router.addr.port())
}

/// Sends GET `url` with `headers`: the status and, on 200, the headers the backend received
/// (otherwise the body as a JSON string).
async fn send(client: &reqwest::Client, url: &str, headers: &[(&str, String)]) -> (u16, Value) {
    let mut request = client.get(url);
    for (name, value) in headers {
        request = request.header(*name, value);
    }
    let response = request.send().await.expect("response");
    let status = response.status().as_u16();
    let body = response.bytes().await.expect("body");
    if status == 200 {
        let echoed: Value = serde_json::from_slice(&body).expect("echo JSON");
        (status, echoed["headers"].clone())
    } else {
        (status, Value::String(String::from_utf8_lossy(&body).into()))
    }
}

fn header<'a>(headers: &'a Value, name: &str) -> Option<Vec<&'a str>> {
    headers[name]
        .as_array()
        .map(|values| values.iter().map(|v| v.as_str().expect("string")).collect())
}

fn one<'a>(headers: &'a Value, name: &str) -> Option<&'a str> {
    let values = header(headers, name)?;
    assert_eq!(values.len(), 1, "{name}: {values:?}");
    Some(values[0])
}

fn der(pem: &str) -> Vec<u8> {
    CertificateDer::from_pem_slice(pem.as_bytes())
        .expect("DER")
        .to_vec()
}

fn sha256_hex(der: &[u8]) -> String {
    ring::digest::digest(&ring::digest::SHA256, der)
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn url_encoded(text: &str) -> String {
    utf8_percent_encode(text, NON_ALPHANUMERIC).to_string()
}

/// The Envoy element xsrouter emits by default for a leaf of the test PKI.
fn element(leaf: &Leaf) -> String {
    format!(
        "Hash={};Subject=\"CN={},O=xsrouter tests\";URI=",
        sha256_hex(&der(&leaf.cert_pem)),
        leaf.cn
    )
}

/// An Envoy XFCC value carrying the leaf as `Cert` (as a proxy hop would send it).
fn envoy_xfcc(leaf: &Leaf) -> String {
    format!(
        "By=spiffe://edge;Hash={};Cert=\"{}\";Subject=\"CN={},O=xsrouter tests\";URI=",
        sha256_hex(&der(&leaf.cert_pem)),
        url_encoded(&leaf.cert_pem),
        leaf.cn
    )
}

/// The headers a trusted proxy sends for `leaf` (issued under `pki`) in `format`.
fn forwarded(format: &str, pki: &Pki, leaf: &Leaf) -> Vec<(&'static str, String)> {
    let leaf_b64 = STANDARD.encode(der(&leaf.cert_pem));
    let intermediate_b64 = STANDARD.encode(der(&pki.intermediate_pem()));
    match format {
        "cf" | "xfcc" => vec![(XFCC, leaf_b64)],
        "envoy" => vec![(XFCC, envoy_xfcc(leaf))],
        "rfc9440" => vec![
            ("client-cert", format!(":{leaf_b64}:")),
            ("client-cert-chain", format!(":{intermediate_b64}:")),
        ],
        "nginx" => vec![(
            "ssl-client-escaped-cert",
            url_encoded(&format!("{}{}", leaf.cert_pem, pki.intermediate_pem())),
        )],
        "traefik" => vec![(
            "x-forwarded-tls-client-cert",
            format!("{leaf_b64},{intermediate_b64}"),
        )],
        other => panic!("no such format {other}"),
    }
}

fn with_spoofed(mut headers: Vec<(&'static str, String)>) -> Vec<(&'static str, String)> {
    headers.extend(SPOOFED.iter().map(|(n, v)| (*n, (*v).to_owned())));
    headers
}

fn assert_no_spoofed(headers: &Value) {
    for (name, value) in SPOOFED {
        if let Some(found) = header(headers, name) {
            assert!(
                !found.contains(value),
                "{name}: {value} reached the backend: {headers}"
            );
        }
    }
}

#[tokio::test]
async fn headers_from_an_untrusted_peer_are_stripped() {
    let setup = setup().await;
    let router = setup.router(&[]).await;
    let alice = setup.clients.client("alice", KeyForm::EcPkcs8);
    let from_other = client_from(OTHER_IP);
    for format in ["cf", "rfc9440", "nginx", "traefik"] {
        let (status, headers) = send(
            &from_other,
            &router.url("/open/x"),
            &with_spoofed(forwarded(format, &setup.clients, &alice)),
        )
        .await;
        assert_eq!(status, 200, "{format}");
        for name in [
            XFCC,
            "client-cert",
            "ssl-client-escaped-cert",
            "x-forwarded-tls-client-cert",
            "ssl-client-verify",
            "ssl-client-s-dn",
        ] {
            assert_eq!(
                header(&headers, name),
                None,
                "{format}: {name} in {headers}"
            );
        }
        assert_no_spoofed(&headers);
    }
    // The same spoofed certificate on a route that needs one: refused, not believed.
    let (status, _) = send(
        &from_other,
        &router.url("/required/x"),
        &forwarded("cf", &setup.clients, &alice),
    )
    .await;
    assert_eq!(status, 403);
}

#[tokio::test]
async fn every_format_from_a_trusted_proxy_is_believed_and_passed_on() {
    let setup = setup().await;
    let alice = setup.clients.client("alice", KeyForm::EcPkcs8);
    let proxy = client_from(PROXY_IP);
    for format in ["cf", "xfcc", "envoy", "rfc9440", "nginx", "traefik"] {
        let router = setup
            .router(&[("XSROUTER_FORWARDED_CLIENT_CERT", format.to_owned())])
            .await;
        // Other certificate headers the proxy lets through are dropped (the chain header is
        // part of the rfc9440 format itself, so it is not sent twice there).
        let mut sent = with_spoofed(forwarded(format, &setup.clients, &alice));
        if format == "rfc9440" {
            sent.retain(|(name, value)| *name != "client-cert-chain" || value != ":AAAA:");
        }
        let (status, headers) = send(&proxy, &router.url("/required/x"), &sent).await;
        assert_eq!(status, 200, "{format}: {headers}");
        assert_eq!(
            one(&headers, XFCC),
            Some(element(&alice).as_str()),
            "{format}"
        );
        assert_eq!(
            one(&headers, "ssl-client-verify"),
            Some("SUCCESS"),
            "{format}"
        );
        assert_eq!(
            one(&headers, "ssl-client-s-dn"),
            Some("CN=alice,O=xsrouter tests"),
            "{format}"
        );
        // The proxy's own headers are consumed, never passed on verbatim: what the nginx
        // profile sends is xsrouter's own encoding of the leaf alone.
        for name in ["client-cert", "x-forwarded-tls-client-cert"] {
            assert_eq!(header(&headers, name), None, "{format}: {name}");
        }
        let escaped = one(&headers, "ssl-client-escaped-cert").expect("escaped cert");
        let decoded = percent_encoding::percent_decode_str(escaped)
            .decode_utf8()
            .expect("UTF-8");
        assert_eq!(decoded.matches("BEGIN CERTIFICATE").count(), 1, "{format}");
        assert_eq!(der(&decoded), der(&alice.cert_pem), "{format}");
        assert_no_spoofed(&headers);
    }
}

#[tokio::test]
async fn rfc9440_chain_verifies_against_the_root_alone() {
    let setup = setup().await;
    let router = setup
        .router(&[
            ("XSROUTER_CLIENT_CA", setup.path("ca/root.pem")),
            ("XSROUTER_FORWARDED_CLIENT_CERT", "rfc9440".to_owned()),
        ])
        .await;
    let alice = setup.clients.client("alice", KeyForm::EcPkcs8);
    let proxy = client_from(PROXY_IP);
    let (status, headers) = send(
        &proxy,
        &router.url("/required/x"),
        &forwarded("rfc9440", &setup.clients, &alice),
    )
    .await;
    assert_eq!(status, 200, "{headers}");
    assert_eq!(one(&headers, "ssl-client-verify"), Some("SUCCESS"));
    // Without the intermediate the leaf does not chain to the root.
    let leaf_only = vec![(
        "client-cert",
        format!(":{}:", STANDARD.encode(der(&alice.cert_pem))),
    )];
    let (status, _) = send(&proxy, &router.url("/required/x"), &leaf_only).await;
    assert_eq!(status, 403);
}

#[tokio::test]
async fn reverification_refuses_a_certificate_of_an_unknown_ca() {
    let setup = setup().await;
    let router = setup.router(&[]).await;
    let other = Pki::new("other");
    let mallory = other.client("mallory", KeyForm::EcPkcs8);
    let proxy = client_from(PROXY_IP);
    let sent = forwarded("cf", &other, &mallory);

    let (status, headers) = send(&proxy, &router.url("/open/x"), &sent).await;
    assert_eq!(status, 200);
    assert_eq!(header(&headers, XFCC), None, "{headers}");
    assert_eq!(header(&headers, "ssl-client-s-dn"), None, "{headers}");
    assert_eq!(
        one(&headers, "ssl-client-verify"),
        Some("FAILED:unable to get local issuer certificate")
    );
    for route in ["/required/x", "/optional/x", "/alice/x"] {
        let (status, body) = send(&proxy, &router.url(route), &sent).await;
        assert_eq!(status, 403, "{route}");
        assert_eq!(
            body,
            Value::String("Forbidden: the client certificate did not verify\n".into())
        );
    }

    // Switched off explicitly, the proxy's word is taken.
    let believing = setup
        .router(&[(
            "XSROUTER_FORWARDED_CLIENT_CERT_VERIFY",
            "trust-proxy".to_owned(),
        )])
        .await;
    let (status, headers) = send(&proxy, &believing.url("/required/x"), &sent).await;
    assert_eq!(status, 200);
    assert_eq!(one(&headers, XFCC), Some(element(&mallory).as_str()));
}

/// Re-verification is the listener's trust policy: CRLs and expiry count for forwarded
/// certificates too.
#[tokio::test]
async fn revoked_and_expired_forwarded_certificates_fail() {
    let setup = setup().await;
    let alice = setup.clients.client("alice", KeyForm::EcPkcs8);
    let bob = setup.clients.client("bob", KeyForm::EcPkcs8);
    let old = setup.clients.expired_client("old", KeyForm::EcPkcs8);
    setup.dir.file(
        "crl/root.pem",
        setup.clients.intermediate_crl(CrlValidity::Current),
    );
    setup.dir.file(
        "crl/leaves.pem",
        setup.clients.leaf_crl(&[&bob], CrlValidity::Current),
    );
    let router = setup
        .router(&[(
            "XSROUTER_CLIENT_CRL",
            format!(
                "{}:{}",
                setup.path("crl/root.pem"),
                setup.path("crl/leaves.pem")
            ),
        )])
        .await;
    let proxy = client_from(PROXY_IP);
    let with = |leaf: &Leaf| forwarded("cf", &setup.clients, leaf);
    let (status, _) = send(&proxy, &router.url("/required/x"), &with(&alice)).await;
    assert_eq!(status, 200);
    for (leaf, reason) in [
        (&bob, "FAILED:certificate revoked"),
        (&old, "FAILED:certificate has expired"),
    ] {
        let (status, _) = send(&proxy, &router.url("/required/x"), &with(leaf)).await;
        assert_eq!(status, 403, "{}", leaf.cn);
        let (_, headers) = send(&proxy, &router.url("/open/x"), &with(leaf)).await;
        assert_eq!(one(&headers, "ssl-client-verify"), Some(reason));
        assert_eq!(header(&headers, XFCC), None);
    }
}

#[tokio::test]
async fn malformed_forwarded_headers_get_400_and_the_router_keeps_serving() {
    let setup = setup().await;
    let proxy = client_from(PROXY_IP);
    let alice = setup.clients.client("alice", KeyForm::EcPkcs8);
    let cases: &[(&str, &[(&str, &str)])] = &[
        ("cf", &[(XFCC, "not base64!")]),
        ("cf", &[(XFCC, "AQID")]),
        ("xfcc", &[(XFCC, "Subject=\"unbalanced")]),
        ("envoy", &[(XFCC, "Hash=abc;Cert=\"%2D%2D\"")]),
        (
            "envoy",
            &[(
                XFCC,
                "Hash=468ed33b6b9c5f3f04a5e4e8d5e6f7a8b9c0d1e2f3a4b5c6d7e8f9a0b1c2d3e4;Subject=\"CN=x\"",
            )],
        ),
        ("rfc9440", &[("client-cert", ":AQID")]),
        ("rfc9440", &[("client-cert-chain", ":AQID:")]),
        (
            "nginx",
            &[(
                "ssl-client-escaped-cert",
                "-----BEGIN%20CERTIFICATE-----junk",
            )],
        ),
        ("traefik", &[("x-forwarded-tls-client-cert", "AQID,")]),
    ];
    for (format, headers) in cases {
        let router = setup
            .router(&[("XSROUTER_FORWARDED_CLIENT_CERT", (*format).to_owned())])
            .await;
        let headers: Vec<(&str, String)> =
            headers.iter().map(|(n, v)| (*n, (*v).to_owned())).collect();
        let (status, body) = send(&proxy, &router.url("/open/x"), &headers).await;
        assert_eq!(status, 400, "{format} {headers:?}: {body}");
        assert_eq!(
            body,
            Value::String("Bad Request: malformed forwarded client certificate\n".into())
        );
        // Still serving, and a well-formed header works.
        let (status, _) = send(
            &proxy,
            &router.url("/required/x"),
            &forwarded(format, &setup.clients, &alice),
        )
        .await;
        assert_eq!(status, 200, "{format} after a malformed request");
    }
    // An oversized header is malformed too (the router's own header limit raised past it).
    let router = setup
        .router(&[("XSROUTER_MAX_HEADER_SIZE", "65536".to_owned())])
        .await;
    let huge = vec![(XFCC, "A".repeat(20 * 1024))];
    let (status, _) = send(&proxy, &router.url("/open/x"), &huge).await;
    assert_eq!(status, 400);
}

#[tokio::test]
async fn route_rules_answer_403_or_pass() {
    let setup = setup().await;
    let router = setup.router(&[]).await;
    let proxy = client_from(PROXY_IP);
    let alice = setup.clients.client("alice", KeyForm::EcPkcs8);
    let bob = setup.clients.client("bob", KeyForm::EcPkcs8);
    let none: Vec<(&str, String)> = Vec::new();
    let with = |leaf: &Leaf| forwarded("cf", &setup.clients, leaf);

    let cases = [
        ("/open/x", none.clone(), 200, None),
        (
            "/required/x",
            none.clone(),
            403,
            Some("a client certificate is required"),
        ),
        ("/required/x", with(&bob), 200, None),
        ("/optional/x", none.clone(), 200, None),
        ("/optional/x", with(&bob), 200, None),
        ("/alice/x", with(&alice), 200, None),
        ("/alice/x", with(&bob), 403, Some("subject is not allowed")),
        (
            "/alice/x",
            none.clone(),
            403,
            Some("a client certificate is required"),
        ),
    ];
    for (path, headers, want, reason) in cases {
        let (status, body) = send(&proxy, &router.url(path), &headers).await;
        assert_eq!(status, want, "{path} {headers:?}: {body}");
        if let Some(reason) = reason {
            assert!(body.as_str().is_some_and(|b| b.contains(reason)), "{body}");
        }
    }
    // A trusted proxy without a certificate header: `NONE`, no XFCC.
    let (_, headers) = send(&proxy, &router.url("/open/x"), &none).await;
    assert_eq!(one(&headers, "ssl-client-verify"), Some("NONE"));
    assert_eq!(header(&headers, XFCC), None);
}

#[tokio::test]
async fn issuer_rules_compare_attributes() {
    let setup = setup().await;
    let router = setup
        .router(&[(
            "XSROUTER_FORWARDED_CLIENT_CERT_VERIFY",
            "trust-proxy".to_owned(),
        )])
        .await;
    let proxy = client_from(PROXY_IP);
    // Subject CN `carol` is allowed, but this CA's intermediate is not the one the rule names.
    let elsewhere = Pki::new("elsewhere");
    let carol = elsewhere.client("carol", KeyForm::EcPkcs8);
    let (status, body) = send(
        &proxy,
        &router.url("/alice/x"),
        &forwarded("cf", &elsewhere, &carol),
    )
    .await;
    assert_eq!(status, 403);
    assert!(
        body.as_str()
            .is_some_and(|b| b.contains("issuer is not allowed")),
        "{body}"
    );
    // A CN that merely contains the allowed value is not it.
    let sly = setup
        .clients
        .client("alice,O=xsrouter tests", KeyForm::EcPkcs8);
    let (status, _) = send(
        &proxy,
        &router.url("/alice/x"),
        &forwarded("cf", &setup.clients, &sly),
    )
    .await;
    assert_eq!(status, 403);
    let carol = setup.clients.client("carol", KeyForm::EcPkcs8);
    let (status, _) = send(
        &proxy,
        &router.url("/alice/x"),
        &forwarded("cf", &setup.clients, &carol),
    )
    .await;
    assert_eq!(status, 200);
}

/// Envoy's modes over the router's HTTPS listener, with a proxy identified by its own client
/// certificate (mTLS) forwarding alice's XFCC.
#[tokio::test]
async fn xfcc_modes_behind_an_mtls_proxy_match_envoy() {
    let setup = setup().await;
    let edge = setup.clients.client("edge-proxy", KeyForm::EcPkcs8);
    let alice = setup.clients.client("alice", KeyForm::EcPkcs8);
    let incoming = envoy_xfcc(&alice);
    let identity = format!("sha256:{}", sha256_hex(&der(&edge.cert_pem)));
    let expected = [
        ("sanitize", None),
        ("sanitize_set", Some(element(&alice))),
        (
            "append_forward",
            Some(format!("{incoming},{}", element(&edge))),
        ),
        ("forward_only", Some(incoming.clone())),
        ("always_forward_only", Some(incoming.clone())),
    ];
    for (mode, want) in expected {
        let router = setup
            .https_router(&[
                ("XSROUTER_TRUSTED_PROXY_CERTS", identity.clone()),
                ("XSROUTER_CLIENT_CERT_HEADERS", "envoy".to_owned()),
                ("XSROUTER_XFCC_MODE", mode.to_owned()),
            ])
            .await;
        let proxy = tls_client(&router, &setup.server, Some((&setup.clients, &edge)));
        let (status, headers) = send(
            &proxy,
            &https(&router, "/required/x"),
            &[(XFCC, incoming.clone())],
        )
        .await;
        assert_eq!(status, 200, "{mode}: {headers}");
        assert_eq!(
            one(&headers, XFCC).map(str::to_owned),
            want,
            "{mode}: {headers}"
        );

        // A direct client with its own certificate is no proxy: its XFCC is dropped, and in
        // the forwarding modes this hop's element describes its certificate.
        let bob = setup.clients.client("bob", KeyForm::EcPkcs8);
        let direct = tls_client(&router, &setup.server, Some((&setup.clients, &bob)));
        let (status, headers) = send(
            &direct,
            &https(&router, "/required/x"),
            &[(XFCC, incoming.clone())],
        )
        .await;
        assert_eq!(status, 200, "{mode}");
        let want_direct = match mode {
            "sanitize" | "always_forward_only" | "forward_only" => None,
            _ => Some(element(&bob)),
        };
        assert_eq!(
            one(&headers, XFCC).map(str::to_owned),
            want_direct,
            "{mode} direct: {headers}"
        );
    }
}

/// Envoy's modes behind a plain-HTTP proxy trusted by address: there is no mTLS connection, so
/// only `always_forward_only` forwards and `sanitize_set` describes the forwarded certificate.
#[tokio::test]
async fn xfcc_modes_behind_a_plain_proxy_match_envoy() {
    let setup = setup().await;
    let alice = setup.clients.client("alice", KeyForm::EcPkcs8);
    let incoming = envoy_xfcc(&alice);
    let proxy = client_from(PROXY_IP);
    for (mode, want) in [
        ("sanitize", None),
        ("sanitize_set", Some(element(&alice))),
        ("append_forward", None),
        ("forward_only", None),
        ("always_forward_only", Some(incoming.clone())),
    ] {
        let router = setup
            .router(&[
                ("XSROUTER_FORWARDED_CLIENT_CERT", "envoy".to_owned()),
                ("XSROUTER_CLIENT_CERT_HEADERS", "envoy".to_owned()),
                ("XSROUTER_XFCC_MODE", mode.to_owned()),
            ])
            .await;
        let (status, headers) =
            send(&proxy, &router.url("/open/x"), &[(XFCC, incoming.clone())]).await;
        assert_eq!(status, 200, "{mode}");
        assert_eq!(one(&headers, XFCC).map(str::to_owned), want, "{mode}");
    }
}

#[tokio::test]
async fn proxy_identity_by_subject_and_address_must_both_match() {
    let setup = setup().await;
    let edge = setup.clients.client("edge-proxy", KeyForm::EcPkcs8);
    let alice = setup.clients.client("alice", KeyForm::EcPkcs8);
    let router = setup
        .https_router(&[
            (
                "XSROUTER_TRUSTED_PROXY_CERTS",
                r#"["subject:CN=edge-proxy,O=xsrouter tests"]"#.to_owned(),
            ),
            // Loopback connections come from 127.0.0.1: not in this range.
            ("XSROUTER_TRUSTED_PROXIES", "10.0.0.0/8".to_owned()),
            ("XSROUTER_XFCC_FIELDS", "subject".to_owned()),
        ])
        .await;
    let proxy = tls_client(&router, &setup.server, Some((&setup.clients, &edge)));
    let (status, headers) = send(
        &proxy,
        &https(&router, "/open/x"),
        &[(XFCC, envoy_xfcc(&alice))],
    )
    .await;
    assert_eq!(status, 200);
    // Not trusted: the XFCC describes the connection's own certificate, not alice.
    let want = format!(
        "Hash={};Subject=\"CN=edge-proxy,O=xsrouter tests\"",
        sha256_hex(&der(&edge.cert_pem))
    );
    assert_eq!(one(&headers, XFCC), Some(want.as_str()));

    let router = setup
        .https_router(&[
            (
                "XSROUTER_TRUSTED_PROXY_CERTS",
                r#"["subject:CN=edge-proxy,O=xsrouter tests"]"#.to_owned(),
            ),
            ("XSROUTER_TRUSTED_PROXIES", "127.0.0.0/8, ::1".to_owned()),
            ("XSROUTER_XFCC_FIELDS", "subject".to_owned()),
        ])
        .await;
    let proxy = tls_client(&router, &setup.server, Some((&setup.clients, &edge)));
    let (_, headers) = send(
        &proxy,
        &https(&router, "/open/x"),
        &[(XFCC, envoy_xfcc(&alice))],
    )
    .await;
    let want = format!(
        "Hash={};Subject=\"CN=alice,O=xsrouter tests\"",
        sha256_hex(&der(&alice.cert_pem))
    );
    assert_eq!(one(&headers, XFCC), Some(want.as_str()));
    // Without a client certificate the same address is not trusted.
    let anonymous = tls_client(&router, &setup.server, None);
    let (_, headers) = send(
        &anonymous,
        &https(&router, "/open/x"),
        &[(XFCC, envoy_xfcc(&alice))],
    )
    .await;
    assert_eq!(header(&headers, XFCC), None);
}

#[tokio::test]
async fn control_characters_never_reach_a_destination() {
    let setup = setup().await;
    let router = setup
        .router(&[(
            "XSROUTER_CLIENT_CERT_HEADERS",
            "envoy,rfc9440,nginx,azure-appgw,traefik".to_owned(),
        )])
        .await;
    let proxy = client_from(PROXY_IP);
    let evil = setup
        .clients
        .client("evil\r\nX-Injected: yes\0\"; By=x", KeyForm::EcPkcs8);
    let (status, headers) = send(
        &proxy,
        &router.url("/required/x"),
        &forwarded("cf", &setup.clients, &evil),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(header(&headers, "x-injected"), None, "{headers}");
    let object = headers.as_object().expect("headers");
    for name in [
        XFCC,
        "client-cert",
        "ssl-client-s-dn",
        "x-client-certificate-subject",
    ] {
        assert!(object.contains_key(name), "{name} missing: {headers}");
    }
    for (name, values) in object {
        for value in values.as_array().expect("list") {
            let value = value.as_str().expect("string");
            assert!(
                !value.contains(['\r', '\n', '\0']),
                "{name}: {value:?} carries a control character"
            );
        }
    }
    // The subject is escaped, and the XFCC stays one element with one Subject.
    let xfcc = one(&headers, XFCC).expect("xfcc");
    assert!(
        xfcc.contains(r#"CN=evil\0D\0AX-Injected: yes\00\22\; By=x"#),
        "{xfcc}"
    );
    let elements = xsrouter::inbound::parse_xfcc(xfcc).expect("parses");
    assert_eq!(elements.len(), 1);
    assert!(elements[0].by.is_empty());
}

#[tokio::test]
async fn client_certificate_rules_are_validated_with_json_paths() {
    let dir = WorkDir::new(&json!({
        "authenticationMethod": "none",
        "routes": [
            {"source": "^/a", "destination": "backend", "clientCertificate": "sometimes"},
            {"source": "^/b", "destination": "backend", "clientCertificate": {"mode": "optional", "subjects": {}}},
            {"source": "^/c", "destination": "backend", "clientCertificate": {"subject": {"XX": "a"}, "issuer": {}}},
            {"source": "^/d", "destination": "backend", "clientCertificate": {"subject": {"CN": []}}},
            {"source": "^/e", "destination": "backend", "clientCertificate": 7},
            {"source": "^/f", "destination": "backend", "clientCertificate": {"uri": [], "dns": [""]}}
        ]
    }));
    let env = vec![(
        "destinations",
        support::destinations(&[("backend", "http://127.0.0.1:1".to_owned())]),
    )];
    let err = support::load_runtime(dir.path(), &env)
        .expect_err("configuration refused")
        .to_string();
    for want in [
        "$.routes[0].clientCertificate: must be `required` or `optional`",
        "$.routes[1].clientCertificate.subjects: unknown property",
        "$.routes[2].clientCertificate.subject.XX: not an attribute name",
        "$.routes[2].clientCertificate.issuer: must name at least one attribute",
        "$.routes[3].clientCertificate.subject.CN: must be a non-empty string",
        "$.routes[4].clientCertificate: must be `required`, `optional` or an object",
        "$.routes[5].clientCertificate.uri: must be a non-empty string",
        "$.routes[5].clientCertificate.dns: must be a non-empty string",
    ] {
        assert!(err.contains(want), "missing {want:?} in\n{err}");
    }
}

/// On a permissive listener (no proxy) the routes decide: a certificate that failed the
/// handshake's verification passes public routes as `FAILED:<reason>` and is refused where a
/// rule applies.
#[tokio::test]
async fn route_rules_on_a_permissive_listener() {
    let setup = setup().await;
    let router = setup
        .https_router(&[
            ("XSROUTER_CLIENT_CERT_PERMISSIVE", "true".to_owned()),
            ("XSROUTER_TRUSTED_PROXIES", "10.0.0.0/8".to_owned()),
            ("XSROUTER_FORWARDED_CLIENT_CERT", "cf".to_owned()),
        ])
        .await;
    let other = Pki::new("other");
    let mallory = other.client("mallory", KeyForm::EcPkcs8);
    let alice = setup.clients.client("alice", KeyForm::EcPkcs8);
    let foreign = tls_client(&router, &setup.server, Some((&other, &mallory)));
    let trusted = tls_client(&router, &setup.server, Some((&setup.clients, &alice)));
    let anonymous = tls_client(&router, &setup.server, None);
    let none: Vec<(&str, String)> = Vec::new();

    let (status, headers) = send(&foreign, &https(&router, "/open/x"), &none).await;
    assert_eq!(status, 200);
    let verify = one(&headers, "ssl-client-verify").expect("verify status");
    assert!(verify.starts_with("FAILED:"), "{verify}");
    assert_eq!(header(&headers, XFCC), None);
    for (client, path, want) in [
        (&foreign, "/optional/x", 403),
        (&foreign, "/required/x", 403),
        (&anonymous, "/optional/x", 200),
        (&anonymous, "/required/x", 403),
        (&trusted, "/alice/x", 200),
    ] {
        let (status, body) = send(client, &https(&router, path), &none).await;
        assert_eq!(status, want, "{path}: {body}");
    }
}

/// A leaf of `pki` with CN `cn` and the given URI and DNS SANs.
fn leaf_with_sans(pki: &Pki, cn: &str, uris: &[&str], dns: &[&str]) -> Leaf {
    use rcgen::{CertificateParams, DistinguishedName, DnType, KeyPair, SanType};
    let key = KeyPair::generate().expect("key");
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "xsrouter tests");
    dn.push(DnType::CommonName, cn);
    params.distinguished_name = dn;
    params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
    params.subject_alt_names = uris
        .iter()
        .map(|u| SanType::URI((*u).try_into().expect("uri")))
        .chain(
            dns.iter()
                .map(|d| SanType::DnsName((*d).try_into().expect("dns"))),
        )
        .collect();
    let cert = params.signed_by(&key, &pki.intermediate).expect("leaf");
    Leaf {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
        cn: cn.to_owned(),
        serial: 0,
    }
}

#[tokio::test]
async fn san_rules_match_uri_and_dns_names() {
    let setup = setup().await;
    let dir = WorkDir::new(&json!({
        "authenticationMethod": "none",
        "routes": [
            {"source": "^/mesh/(.*)$", "target": "/$1", "destination": "backend",
             "clientCertificate": {"uri": ["spiffe://mesh/ns/a/sa/orders"], "dns": "orders.internal"}}
        ]
    }));
    dir.file(
        "ca/clients.pem",
        format!(
            "{}{}",
            setup.clients.root_pem(),
            setup.clients.intermediate_pem()
        ),
    );
    let mut env = setup.env(&[]);
    env.retain(|(k, _)| *k != "XSROUTER_CLIENT_CA");
    env.push((
        "XSROUTER_CLIENT_CA",
        dir.path().join("ca/clients.pem").display().to_string(),
    ));
    let router = Router::start(dir.path(), &env).await;
    let proxy = client_from(PROXY_IP);
    let orders = leaf_with_sans(
        &setup.clients,
        "orders",
        &["spiffe://mesh/ns/a/sa/orders"],
        &["ORDERS.internal"],
    );
    let wrong_uri = leaf_with_sans(
        &setup.clients,
        "orders",
        &["spiffe://mesh/ns/b/sa/orders"],
        &["orders.internal"],
    );
    let no_dns = leaf_with_sans(
        &setup.clients,
        "orders",
        &["spiffe://mesh/ns/a/sa/orders"],
        &[],
    );
    for (leaf, want) in [(&orders, 200), (&wrong_uri, 403), (&no_dns, 403)] {
        let (status, body) = send(
            &proxy,
            &router.url("/mesh/x"),
            &forwarded("cf", &setup.clients, leaf),
        )
        .await;
        assert_eq!(status, want, "{body}");
        if want == 403 {
            assert!(
                body.as_str()
                    .is_some_and(|b| b.contains("names are not allowed")),
                "{body}"
            );
        }
    }
}
