//! Trust files for re-verifying forwarded client certificates change while the router runs:
//! the real `xsrouter` binary (so SIGHUP reaches only it, and the wiring of `main` is what is
//! tested) on loopback, an echo upstream reporting the verification status it received, rcgen
//! PKIs, and a client bound to 127.0.0.2 playing the trusted proxy. Covers: a CA bundle replaced
//! on disk is used after SIGHUP (and not before) behind a plain-HTTP proxy, a broken bundle keeps
//! the previous one with a warning that shows no certificate, and a CRL added later revokes a
//! forwarded certificate on the poll interval with the HTTPS listener running too.

mod support;

use std::net::IpAddr;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use serde_json::{Value, json};
use support::WorkDir;
use support::pki::{CrlValidity, KeyForm, Leaf, Pki};
use support::process::RouterProcess;
use support::upstream::{self, Upstream};

const PROXY_IP: &str = "127.0.0.2";
const RELOADED: &str = "forwarded client certificates are verified against the new ones";
const REJECTED: &str = "for forwarded client certificates rejected; keeping the current ones";

struct Setup {
    upstream: Upstream,
    dir: WorkDir,
}

async fn setup() -> Setup {
    let upstream = upstream::start().await;
    let dir = WorkDir::new(&json!({
        "authenticationMethod": "none",
        "routes": [{"source": "^/be/(.*)$", "target": "/$1", "destination": "backend"}]
    }));
    Setup { upstream, dir }
}

impl Setup {
    fn path(&self, relative: &str) -> String {
        self.dir.path().join(relative).display().to_string()
    }

    /// A router trusting 127.0.0.2 with Cloud Foundry's XFCC, passing the verification status
    /// on as nginx does; `extra` adds variables.
    fn env(&self, extra: &[(&'static str, String)]) -> Vec<(&'static str, String)> {
        let mut env = vec![
            (
                "destinations",
                support::destinations(&[("backend", self.upstream.url())]),
            ),
            ("XSROUTER_CLIENT_CA", self.path("ca/clients.pem")),
            ("XSROUTER_TRUSTED_PROXIES", format!("{PROXY_IP}/32")),
            ("XSROUTER_FORWARDED_CLIENT_CERT", "cf".to_owned()),
            ("XSROUTER_CLIENT_CERT_HEADERS", "nginx".to_owned()),
        ];
        env.extend(extra.iter().cloned());
        env
    }
}

/// `pki`'s root and intermediate: a bundle for a format that forwards only the leaf.
fn bundle(pki: &Pki) -> String {
    format!("{}{}", pki.root_pem(), pki.intermediate_pem())
}

/// A client whose connections come from the trusted proxy's address; over HTTPS it trusts
/// `server`'s root and presents no certificate of its own.
fn proxy(server: Option<(&Pki, std::net::SocketAddr)>) -> reqwest::Client {
    xsrouter::install_crypto_provider();
    let builder = reqwest::Client::builder()
        .local_address(PROXY_IP.parse::<IpAddr>().expect("ip"))
        .no_proxy()
        .timeout(Duration::from_secs(10));
    let builder = match server {
        Some((pki, addr)) => builder
            .tls_backend_preconfigured(support::pki::tls_client_config(pki, None))
            .resolve("localhost", addr),
        None => builder,
    };
    builder.build().expect("client")
}

/// The `ssl-client-verify` value the backend got for `leaf`, forwarded as Cloud Foundry does.
async fn verify_status(client: &reqwest::Client, url: &str, leaf: &Leaf) -> String {
    let der = CertificateDer::from_pem_slice(leaf.cert_pem.as_bytes()).expect("leaf DER");
    let response = client
        .get(url)
        .header("x-forwarded-client-cert", STANDARD.encode(der.as_ref()))
        .send()
        .await
        .expect("response");
    assert_eq!(response.status(), 200, "{url}");
    let echoed: Value =
        serde_json::from_slice(&response.bytes().await.expect("body")).expect("JSON");
    let values = echoed["headers"]["ssl-client-verify"]
        .as_array()
        .unwrap_or_else(|| panic!("no ssl-client-verify in {echoed}"))
        .clone();
    assert_eq!(values.len(), 1, "{values:?}");
    values[0].as_str().expect("string").to_owned()
}

/// Polls `status` for up to 10 s until it returns `want`; the last value otherwise.
async fn settles<F, Fut>(want: &str, mut status: F) -> String
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = String>,
{
    let mut last = String::new();
    for _ in 0..50 {
        last = status().await;
        if last == want {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    last
}

/// The base64 body lines of every PEM block in `pem`.
fn pem_bodies(pem: &str) -> Vec<&str> {
    pem.lines()
        .filter(|line| !line.starts_with("-----") && !line.is_empty())
        .collect()
}

#[cfg(unix)]
#[tokio::test]
async fn a_ca_bundle_replaced_on_disk_is_used_after_sighup_behind_a_plain_proxy() {
    let setup = setup().await;
    let first = Pki::new("clients");
    let second = Pki::new("renewed clients");
    setup.dir.file("ca/clients.pem", bundle(&first));
    let alice = first.client("alice", KeyForm::EcPkcs8);
    let bob = second.client("bob", KeyForm::EcPkcs8);
    // An hour between polls: only the signal can explain a reload within the test.
    let env = setup.env(&[("XSROUTER_CREDENTIALS_POLL_INTERVAL", "3600".to_owned())]);
    let router = RouterProcess::start(setup.dir.path(), &env);
    let client = proxy(None);
    let url = router.url("/be/x");
    let unknown = "FAILED:unable to get local issuer certificate";
    assert_eq!(verify_status(&client, &url, &alice).await, "SUCCESS");
    assert_eq!(verify_status(&client, &url, &bob).await, unknown);

    // The bundle is replaced; without a signal nothing changes.
    setup.dir.file("ca/clients.pem", bundle(&second));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(verify_status(&client, &url, &alice).await, "SUCCESS");
    router.signal("HUP");
    router
        .wait_for_line(RELOADED, Duration::from_secs(10))
        .await;
    // Well within the minute results are kept: the reload dropped them.
    assert_eq!(verify_status(&client, &url, &alice).await, unknown);
    assert_eq!(verify_status(&client, &url, &bob).await, "SUCCESS");

    // A bundle that does not load: logged with its file, the previous one stays in use.
    let broken = format!(
        "{}{}",
        "-----BEGIN CERTIFICATE-----\nnot base64\n",
        first.root_pem()
    );
    setup.dir.file("ca/clients.pem", &broken);
    router.signal("HUP");
    let rejected = router
        .wait_for_line(REJECTED, Duration::from_secs(10))
        .await;
    assert!(rejected.contains("clients.pem"), "{rejected}");
    assert!(rejected.contains("WARN"), "{rejected}");
    assert_eq!(verify_status(&client, &url, &bob).await, "SUCCESS");
    assert_eq!(verify_status(&client, &url, &alice).await, unknown);

    let log = router.log_text();
    for pem in [bundle(&first), bundle(&second), alice.key_pem.clone()] {
        for body in pem_bodies(&pem) {
            assert!(
                !log.contains(body),
                "certificate or key material in the log:\n{log}"
            );
        }
    }
    assert!(!log.contains("BEGIN"), "{log}");
}

#[tokio::test]
async fn a_crl_added_later_revokes_a_forwarded_certificate_on_the_poll_interval() {
    let setup = setup().await;
    let clients = Pki::new("clients");
    let server = Pki::new("server");
    setup.dir.file("ca/clients.pem", bundle(&clients));
    let (chain, key) = server.server();
    setup.dir.file("tls/server.pem", chain);
    setup.dir.file("tls/server.key", key);
    // At first only the root's CRL, covering the intermediate; the leaves' status is unknown,
    // which is allowed.
    setup.dir.file(
        "crl/clients.pem",
        clients.intermediate_crl(CrlValidity::Current),
    );
    let alice = clients.client("alice", KeyForm::EcPkcs8);
    let bob = clients.client("bob", KeyForm::EcPkcs8);
    let env = setup.env(&[
        ("XSROUTER_TLS_CERT", setup.path("tls/server.pem")),
        ("XSROUTER_TLS_KEY", setup.path("tls/server.key")),
        ("XSROUTER_CLIENT_CERT_MODE", "optional".to_owned()),
        ("XSROUTER_CLIENT_CRL", setup.path("crl/clients.pem")),
        (
            "XSROUTER_CLIENT_CRL_ALLOW_UNKNOWN_STATUS",
            "true".to_owned(),
        ),
        ("XSROUTER_CREDENTIALS_POLL_INTERVAL", "1".to_owned()),
    ]);
    let router = RouterProcess::start(setup.dir.path(), &env);
    let client = proxy(Some((&server, router.addr)));
    let url = format!("https://localhost:{}/be/x", router.addr.port());
    assert_eq!(verify_status(&client, &url, &alice).await, "SUCCESS");
    assert_eq!(verify_status(&client, &url, &bob).await, "SUCCESS");

    // The intermediate's CRL, revoking Alice, is added to the file.
    setup.dir.file(
        "crl/clients.pem",
        format!(
            "{}{}",
            clients.intermediate_crl(CrlValidity::Current),
            clients.leaf_crl(&[&alice], CrlValidity::Current)
        ),
    );
    let revoked = "FAILED:certificate revoked";
    let status = settles(revoked, || verify_status(&client, &url, &alice)).await;
    assert_eq!(status, revoked, "the added CRL was not applied");
    assert_eq!(verify_status(&client, &url, &bob).await, "SUCCESS");
    router.wait_for_line(RELOADED, Duration::from_secs(1)).await;
}
