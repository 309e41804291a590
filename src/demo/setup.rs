//! Assembles the demo: PKI, token service, backends, and the router's configuration — the
//! example working directory, `destinations/demo.json` pointed at the demo backends, and the
//! generated client certificate bound as an x509 XSUAA service in `VCAP_SERVICES`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use super::jwt::JwtSigner;
use super::pki::DemoCa;
use super::token_service::{DemoTokenService, RegisteredClient};
use super::{DEMO_DESTINATIONS, DEMO_WORKDIR, DemoError, mtls_backend, start_echo_backend};
use crate::config::{Environment, Runtime};

/// The demo binding's names.
pub const BINDING_NAME: &str = "xsrouter-demo-uaa";
pub const CLIENT_ID: &str = "sb-xsrouter-demo!t1";
pub const XSAPPNAME: &str = "xsrouter-demo!t1";
/// The common name of the generated client certificate.
pub const CLIENT_COMMON_NAME: &str = "xsrouter-demo-client";

/// Everything the demo started, and the router's configuration.
pub struct DemoSetup {
    pub runtime: Runtime,
    pub echo_backend: SocketAddr,
    pub mtls_backend: SocketAddr,
    pub token_service: DemoTokenService,
    /// Subject of the generated client certificate, as the backend reports it.
    pub client_subject: String,
    /// Expiry of the generated client certificate (Unix seconds).
    pub client_not_after: i64,
}

/// The repository holding the example: the current directory when it has `xs-app/`, else the
/// source tree xsrouter was built from.
pub fn example_root() -> PathBuf {
    match std::env::current_dir() {
        Ok(dir) if dir.join(DEMO_WORKDIR).join("xs-app.json").is_file() => dir,
        _ => PathBuf::from(env!("CARGO_MANIFEST_DIR")),
    }
}

impl DemoSetup {
    /// Generates the PKI, starts the token service and the backends, and loads the router's
    /// configuration from `repo` with `env` (whose `destinations` and `VCAP_SERVICES` the demo
    /// replaces).
    pub async fn start(repo: &Path, env: Environment) -> Result<Self, DemoError> {
        let ca = DemoCa::new()?;
        let client = ca.client(CLIENT_COMMON_NAME)?;
        let parsed =
            crate::inbound::ClientCertificate::from_chain(&[client.certificate_der.as_ref()])
                .map_err(super::pki::PkiError::from)?;
        let signer = JwtSigner::generate()?;
        let verifier = signer.verifier();
        let token_service = DemoTokenService::start(
            &ca,
            RegisteredClient {
                client_id: CLIENT_ID.to_owned(),
                certificate_der: client.certificate_der.to_vec(),
                xsappname: XSAPPNAME.to_owned(),
            },
            signer,
        )
        .await?;
        let mtls_backend = mtls_backend::start(&ca, verifier).await?;
        let echo_backend = start_echo_backend(0).await?.addr;
        let vcap = json!({"xsuaa": [{
            "name": BINDING_NAME,
            "label": "xsuaa",
            "plan": "application",
            "tags": ["xsuaa"],
            "credentials": {
                "credential-type": "x509",
                "clientid": CLIENT_ID,
                "xsappname": XSAPPNAME,
                "url": token_service.url(),
                "certurl": token_service.url(),
                "uaadomain": "127.0.0.1",
                "identityzone": "xsrouter-demo",
                "tenantmode": "dedicated",
                "certificate": client.certificate_pem,
                "key": client.key_pem,
            }
        }]});
        let mut runtime = demo_runtime(repo, echo_backend, mtls_backend, vcap, env)?;
        runtime.extra_roots.push(ca.certificate_der());
        Ok(Self {
            runtime,
            echo_backend,
            mtls_backend,
            token_service,
            client_subject: parsed.subject().to_owned(),
            client_not_after: parsed.not_after(),
        })
    }
}

/// Loads the example working directory with each demo destination pointed at a demo backend:
/// those with `forwardAuthCertificates` at the mTLS backend, the others at the echo backend.
pub fn demo_runtime(
    repo: &Path,
    echo_backend: SocketAddr,
    mtls_backend: SocketAddr,
    vcap_services: Value,
    mut env: Environment,
) -> Result<Runtime, DemoError> {
    let path = repo.join(DEMO_DESTINATIONS);
    let text = std::fs::read_to_string(&path).map_err(|source| DemoError::Read {
        path: path.clone(),
        source,
    })?;
    let mut list: Vec<Value> =
        serde_json::from_str(&text).map_err(|e| DemoError::Destinations {
            path: path.clone(),
            reason: e.to_string(),
        })?;
    for destination in &mut list {
        if let Some(object) = destination.as_object_mut() {
            let mtls = matches!(
                object.get("forwardAuthCertificates"),
                Some(Value::Bool(true))
            ) || object
                .get("forwardAuthCertificates")
                .and_then(Value::as_str)
                == Some("true");
            let url = if mtls {
                format!("https://{mtls_backend}")
            } else {
                format!("http://{echo_backend}")
            };
            object.insert("url".into(), url.into());
        }
    }
    env.set("destinations", Value::Array(list).to_string());
    env.set("VCAP_SERVICES", vcap_services.to_string());
    Ok(Runtime::load(&repo.join(DEMO_WORKDIR), env)?)
}
