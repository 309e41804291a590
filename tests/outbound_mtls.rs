//! Outbound mutual TLS: destinations with `forwardAuthCertificates` are reached presenting the
//! bound XSUAA/IAS certificate chain and key, checked against a real rustls server that requires
//! a client certificate and reports the chain it received.

mod support;

use serde_json::{Value, json};
use support::mtls::{self, MtlsUpstream};
use support::pki::{ALL_KEY_FORMS, KeyForm, Leaf, Pki};
use support::{Router, WorkDir, client};

fn app() -> WorkDir {
    WorkDir::new(&json!({
        "authenticationMethod": "none",
        "routes": [
            {"source": "^/mtls/(.*)$", "target": "/$1", "destination": "secure"},
            {"source": "^/lax/(.*)$", "target": "/$1", "destination": "lax"}
        ]
    }))
}

fn xsuaa_binding(certificate: &str, key: Option<&str>) -> Value {
    let mut credentials = json!({
        "clientid": "sb-xsrouter!t1",
        "url": "https://sub.authentication.example",
        "certurl": "https://sub.authentication.cert.example",
        "xsappname": "xsrouter!t1",
        "credential-type": "x509",
        "certificate": certificate,
    });
    if let Some(key) = key {
        credentials["key"] = key.into();
    }
    json!({"name": "my-xsuaa", "label": "xsuaa", "tags": ["xsuaa"], "credentials": credentials})
}

fn vcap(instances: &[(&str, Value)]) -> String {
    let mut doc = serde_json::Map::new();
    for (label, instance) in instances {
        doc.entry(label.to_string())
            .or_insert_with(|| json!([]))
            .as_array_mut()
            .expect("array")
            .push(instance.clone());
    }
    Value::Object(doc).to_string()
}

fn secure_destinations(upstream: &MtlsUpstream) -> String {
    json!([
        {"name": "secure", "url": upstream.url(), "forwardAuthCertificates": true},
        {"name": "lax", "url": upstream.url(), "forwardAuthCertificates": true, "strictSSL": false}
    ])
    .to_string()
}

/// The server root written where XS_CACERT_PATH can point.
fn ca_file(dir: &WorkDir, pki: &Pki) -> String {
    dir.file("server-ca.pem", pki.root_pem())
        .display()
        .to_string()
}

async fn chain_seen(router: &Router, path: &str) -> Vec<String> {
    let response = client().get(router.url(path)).send().await.expect("send");
    assert_eq!(response.status(), 200, "{path}");
    let body: Value = serde_json::from_slice(&response.bytes().await.expect("body")).expect("json");
    body["chain"]
        .as_array()
        .expect("chain")
        .iter()
        .map(|c| c.as_str().expect("cn").to_owned())
        .collect()
}

struct Setup {
    server_pki: Pki,
    client_pki: Pki,
    upstream: MtlsUpstream,
    dir: WorkDir,
}

async fn setup() -> Setup {
    let server_pki = Pki::new("Server");
    let client_pki = Pki::new("Client");
    let upstream = mtls::start(&server_pki, &client_pki, 0).await;
    Setup {
        server_pki,
        client_pki,
        upstream,
        dir: app(),
    }
}

impl Setup {
    fn env(&self, vcap_services: String) -> Vec<(&'static str, String)> {
        vec![
            ("destinations", secure_destinations(&self.upstream)),
            ("VCAP_SERVICES", vcap_services),
            ("XS_CACERT_PATH", ca_file(&self.dir, &self.server_pki)),
        ]
    }

    fn leaf(&self, cn: &str, form: KeyForm) -> Leaf {
        self.client_pki.client(cn, form)
    }
}

#[tokio::test]
async fn default_chain_is_leaf_and_intermediate_for_every_key_form() {
    let s = setup().await;
    for form in ALL_KEY_FORMS {
        let leaf = s.leaf(&format!("client {form:?}"), form);
        let env = s.env(vcap(&[(
            "xsuaa",
            xsuaa_binding(&leaf.chain_pem(&s.client_pki), Some(&leaf.key_pem)),
        )]));
        let router = Router::start(s.dir.path(), &env).await;
        assert_eq!(
            chain_seen(&router, "/mtls/x").await,
            vec![leaf.cn.clone(), "Client Intermediate CA".to_owned()],
            "{form:?}"
        );
    }
}

#[tokio::test]
async fn full_chain_and_any_bound_order() {
    let s = setup().await;
    let leaf = s.leaf("client full", KeyForm::EcPkcs8);
    // Bound out of order: root, leaf, intermediate. Escaped newlines as some bindings carry them.
    let scrambled = format!(
        "{}{}{}",
        s.client_pki.root_pem(),
        leaf.cert_pem,
        s.client_pki.intermediate_pem()
    )
    .replace('\n', "\\n");
    let mut env = s.env(vcap(&[(
        "xsuaa",
        xsuaa_binding(&scrambled, Some(&leaf.key_pem)),
    )]));
    let router = Router::start(s.dir.path(), &env).await;
    assert_eq!(
        chain_seen(&router, "/mtls/x").await,
        vec!["client full", "Client Intermediate CA"]
    );

    env.push(("FULL_CERTIFICATE_CHAIN", "true".to_owned()));
    let router = Router::start(s.dir.path(), &env).await;
    assert_eq!(
        chain_seen(&router, "/mtls/x").await,
        vec!["client full", "Client Intermediate CA", "Client Root CA"]
    );
}

#[tokio::test]
async fn key_from_environment_variable() {
    let s = setup().await;
    let leaf = s.leaf("client env key", KeyForm::RsaPkcs1);
    let mut env = s.env(vcap(&[(
        "xsuaa",
        xsuaa_binding(&leaf.chain_pem(&s.client_pki), None),
    )]));
    env.push(("XSUAA_PRIVATE_KEY", leaf.key_pem.clone()));
    let router = Router::start(s.dir.path(), &env).await;
    assert_eq!(chain_seen(&router, "/mtls/x").await[0], "client env key");
}

#[tokio::test]
async fn ias_binding_and_the_choice_between_two_identities() {
    let s = setup().await;
    let x = s.leaf("xsuaa identity", KeyForm::EcPkcs8);
    let i = s.leaf("ias identity", KeyForm::EcSec1);
    let ias = json!({"name": "my-ias", "label": "identity", "credentials": {
        "clientid": "ias-client", "url": "https://tenant.accounts.example",
        "certificate": i.chain_pem(&s.client_pki), "key": i.key_pem}});
    // Only IAS bound: every route uses it.
    let router = Router::start(s.dir.path(), &s.env(vcap(&[("identity", ias.clone())]))).await;
    assert_eq!(chain_seen(&router, "/mtls/x").await[0], "ias identity");

    // Both bound: XSUAA unless the route authenticates with IAS.
    let env = s.env(vcap(&[
        (
            "xsuaa",
            xsuaa_binding(&x.chain_pem(&s.client_pki), Some(&x.key_pem)),
        ),
        ("identity", ias),
    ]));
    let router = Router::start(s.dir.path(), &env).await;
    assert_eq!(chain_seen(&router, "/mtls/x").await[0], "xsuaa identity");

    let runtime = support::load_runtime(s.dir.path(), &env).expect("runtime");
    let upstreams = xsrouter::upstream::Upstreams::build(&runtime).expect("upstreams");
    for (route, expected) in [
        (
            Some(xsrouter::config::xs_app::AuthenticationType::Ias),
            "ias identity",
        ),
        (
            Some(xsrouter::config::xs_app::AuthenticationType::Xsuaa),
            "xsuaa identity",
        ),
        (None, "xsuaa identity"),
    ] {
        let upstream_client = upstreams.client("secure", route).expect("client");
        let response = upstream_client
            .http()
            .get(upstream_client.url_for("/x"))
            .send()
            .await
            .expect("send");
        let body: Value =
            serde_json::from_slice(&response.bytes().await.expect("body")).expect("json");
        assert_eq!(body["chain"][0], expected, "{route:?}");
    }
}

#[tokio::test]
async fn binding_from_default_services_and_binding_directory() {
    let s = setup().await;
    let leaf = s.leaf("local default", KeyForm::EcPkcs8);
    s.dir.file(
        "default-services.json",
        json!({"uaa": {"clientid": "c", "url": "https://u.example", "certificate": leaf.chain_pem(&s.client_pki), "key": leaf.key_pem}})
            .to_string(),
    );
    let env = vec![
        ("destinations", secure_destinations(&s.upstream)),
        ("XS_CACERT_PATH", ca_file(&s.dir, &s.server_pki)),
    ];
    let router = Router::start(s.dir.path(), &env).await;
    assert_eq!(chain_seen(&router, "/mtls/x").await[0], "local default");

    let k8s = s.leaf("kyma binding", KeyForm::RsaPkcs8);
    let root = tempfile::tempdir().expect("tmp");
    let binding = root.path().join("xsuaa");
    std::fs::create_dir(&binding).expect("dir");
    for (file, content) in [
        ("type", "xsuaa".to_owned()),
        ("clientid", "sb-k8s".to_owned()),
        ("certificate", k8s.chain_pem(&s.client_pki)),
        ("key", k8s.key_pem.clone()),
    ] {
        std::fs::write(binding.join(file), content).expect("write");
    }
    let mut env = env;
    env.push(("SERVICE_BINDING_ROOT", root.path().display().to_string()));
    let router = Router::start(s.dir.path(), &env).await;
    assert_eq!(
        chain_seen(&router, "/mtls/x").await[0],
        "kyma binding",
        "binding directories come before default-services.json"
    );
}

async fn start_error(dir: &WorkDir, env: &[(&str, String)]) -> String {
    match Router::try_start(dir.path(), env).await {
        Ok(_) => panic!("start-up should fail"),
        Err(err) => err.to_string(),
    }
}

#[tokio::test]
async fn bad_credentials_stop_start_up_naming_the_binding_and_never_the_key() {
    let s = setup().await;
    let leaf = s.leaf("client", KeyForm::EcPkcs8);
    let other = s.leaf("other", KeyForm::EcPkcs8);

    let err = start_error(
        &s.dir,
        &s.env(vcap(&[(
            "xsuaa",
            xsuaa_binding(&leaf.chain_pem(&s.client_pki), Some(&other.key_pem)),
        )])),
    )
    .await;
    assert!(
        err.contains("XSUAA binding `my-xsuaa`")
            && err.contains("does not belong to the leaf certificate"),
        "{err}"
    );
    assert!(err.contains("$.xsuaa[0].credentials.key"), "{err}");
    let key_body: String = other.key_pem.lines().nth(1).expect("key line").to_owned();
    assert!(
        !err.contains(&key_body),
        "the key leaked into the error: {err}"
    );

    let err = start_error(
        &s.dir,
        &s.env(vcap(&[(
            "xsuaa",
            xsuaa_binding(
                "-----BEGIN CERTIFICATE-----\ngarbage\n-----END CERTIFICATE-----\n",
                Some(&leaf.key_pem),
            ),
        )])),
    )
    .await;
    assert!(
        err.contains("my-xsuaa") && err.contains("certificate"),
        "{err}"
    );

    let err = start_error(
        &s.dir,
        &s.env(vcap(&[(
            "xsuaa",
            xsuaa_binding(&leaf.chain_pem(&s.client_pki), Some("not a key")),
        )])),
    )
    .await;
    assert!(err.contains("not a PEM private key"), "{err}");

    let err = start_error(
        &s.dir,
        &s.env(vcap(&[(
            "xsuaa",
            xsuaa_binding(&leaf.chain_pem(&s.client_pki), None),
        )])),
    )
    .await;
    assert!(
        err.contains("no `key`") && err.contains("XSUAA_PRIVATE_KEY"),
        "{err}"
    );

    let err = start_error(&s.dir, &s.env("{}".to_owned())).await;
    assert!(
        err.contains("$[0].forwardAuthCertificates")
            && err.contains("no bound XSUAA or IAS service has a certificate"),
        "{err}"
    );
}

#[tokio::test]
async fn server_trust_xs_cacert_path_and_strict_ssl() {
    let s = setup().await;
    let leaf = s.leaf("client", KeyForm::EcPkcs8);
    let vcap_services = vcap(&[(
        "xsuaa",
        xsuaa_binding(&leaf.chain_pem(&s.client_pki), Some(&leaf.key_pem)),
    )]);
    // Without XS_CACERT_PATH the test server's CA is unknown: strict destinations fail, lax ones work.
    let env = vec![
        ("destinations", secure_destinations(&s.upstream)),
        ("VCAP_SERVICES", vcap_services.clone()),
    ];
    let router = Router::start(s.dir.path(), &env).await;
    let response = client()
        .get(router.url("/mtls/x"))
        .send()
        .await
        .expect("send");
    assert_eq!(response.status(), 502);
    assert_eq!(chain_seen(&router, "/lax/x").await[0], "client");

    let err = start_error(
        &s.dir,
        &[
            ("destinations", secure_destinations(&s.upstream)),
            ("VCAP_SERVICES", vcap_services),
            ("XS_CACERT_PATH", "/nonexistent/ca.pem".to_owned()),
        ],
    )
    .await;
    assert!(
        err.contains("XS_CACERT_PATH") && err.contains("cannot read"),
        "{err}"
    );
}

#[tokio::test]
async fn http2_to_upstreams_that_offer_it() {
    let s = setup().await;
    let leaf = s.leaf("client", KeyForm::EcPkcs8);
    let router = Router::start(
        s.dir.path(),
        &s.env(vcap(&[(
            "xsuaa",
            xsuaa_binding(&leaf.chain_pem(&s.client_pki), Some(&leaf.key_pem)),
        )])),
    )
    .await;
    let response = client()
        .get(router.url("/mtls/v"))
        .send()
        .await
        .expect("send");
    let body: Value = serde_json::from_slice(&response.bytes().await.expect("body")).expect("json");
    assert_eq!(body["version"], "HTTP/2.0");
}

#[tokio::test]
async fn ias_key_from_environment_variable_and_cert_domain_warning() {
    let s = setup().await;
    let leaf = s.leaf("ias env key", KeyForm::EcSec1);
    let ias = json!({"name": "my-ias", "label": "identity", "credentials": {
        "clientid": "ias-client", "url": "https://tenant.accounts.example", "certificate": leaf.chain_pem(&s.client_pki)}});
    let mut env = s.env(vcap(&[("identity", ias)]));
    env.push(("IAS_PRIVATE_KEY", leaf.key_pem.clone()));
    let router = Router::start(s.dir.path(), &env).await;
    assert_eq!(chain_seen(&router, "/mtls/x").await[0], "ias env key");

    // On Cloud Foundry, a certificate-forwarding destination without a `.cert.` host is warned about.
    env.push((
        "VCAP_APPLICATION",
        r#"{"application_name": "router"}"#.to_owned(),
    ));
    let runtime = support::load_runtime(s.dir.path(), &env).expect("runtime");
    let warnings = runtime.warnings.join("\n");
    assert!(
        warnings.contains("destination `secure`") && warnings.contains("no `.cert.` segment"),
        "{warnings}"
    );
}
