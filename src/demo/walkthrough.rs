//! Runs the demo in the foreground: starts everything, serves the router on `PORT` (loopback),
//! prints what runs where and the curl commands to try, sends the first request itself and shows
//! what the mTLS backend saw. Ctrl-C (or SIGTERM) stops it all.

use std::path::Path;

use tokio::net::TcpListener;

use super::setup::{BINDING_NAME, CLIENT_ID, DemoSetup};
use super::{DEMO_DESTINATIONS, DEMO_WORKDIR, DemoError};
use crate::config::Environment;
use crate::pipeline::AppState;
use crate::server::{self, Stopped};

/// The request the walkthrough sends itself: routed to the mTLS backend with a minted token.
pub const MTLS_PATH: &str = "/mtls/whoami";

pub async fn run(repo: &Path, env: Environment) -> Result<Stopped, DemoError> {
    let setup = DemoSetup::start(repo, env).await?;
    let runtime = &setup.runtime;
    let addr = format!("127.0.0.1:{}", runtime.settings.port);
    let grace = runtime.settings.shutdown_timeout;
    let management_port = runtime.settings.management_port;
    let listener = crate::server::bind(&addr)
        .await
        .map_err(|source| DemoError::Bind {
            addr: addr.clone(),
            source,
        })?;
    let router = listener.local_addr()?;
    let DemoSetup {
        runtime,
        echo_backend,
        mtls_backend,
        token_service,
        client_subject,
        client_not_after,
    } = setup;
    let state = AppState::build(runtime).await?;
    tracing::info!(address = %router, workdir = DEMO_WORKDIR, "xsrouter listening");
    let management = match management_port {
        Some(port) => {
            let listener = TcpListener::bind(("127.0.0.1", port)).await?;
            let addr = listener.local_addr()?;
            tracing::info!(address = %addr, "management endpoints listening (/health/live, /health/ready, /metrics)");
            tokio::spawn(crate::management::serve(listener, state.clone()));
            Some(addr)
        }
        None => None,
    };
    state.spawn_token_prefetch();
    let server = tokio::spawn(server::serve(
        listener,
        state,
        server::termination_signal(),
        grace,
    ));

    let hours_left = (client_not_after - crate::identity::rotation::now_unix()) / 3600;
    println!(
        "xsrouter demo: everything below runs on loopback; keys and certificates were generated at start-up"
    );
    println!(
        "  client certificate  {client_subject} (demo CA, valid {hours_left} h more), bound as x509 XSUAA binding `{BINDING_NAME}` (clientid {CLIENT_ID})"
    );
    println!(
        "  token service       {}  XSUAA-compatible, mTLS only: client_credentials -> ES256 JWT, /token_keys",
        token_service.url()
    );
    println!(
        "  mTLS backend        https://{mtls_backend}  accepts only demo-CA client certificates; destination `mtls-backend` (forwardAuthCertificates, OAuth2ClientCredentials via the binding)"
    );
    println!("  echo backend        http://{echo_backend}  destination `backend`");
    println!(
        "  router              http://{router}  {DEMO_WORKDIR}/xs-app.json with {DEMO_DESTINATIONS}"
    );
    if let Some(management) = management {
        println!("  management          http://{management}/metrics  /health/ready");
    }
    println!();
    println!("Try:");
    println!(
        "  curl -s http://{router}{MTLS_PATH}   # over mTLS with a minted token: the certificate and token claims the backend saw"
    );
    println!("  curl -s http://{router}/api/hello     # the plain echo route");
    println!("  curl -si http://{router}/              # the welcome file redirect");
    println!(
        "  curl -sk https://{mtls_backend}/whoami   # the mTLS backend without a client certificate: refused"
    );
    println!();

    let client = reqwest::Client::builder().no_proxy().build()?;
    let response = client
        .get(format!("http://{router}{MTLS_PATH}"))
        .send()
        .await?;
    println!("GET {MTLS_PATH} -> {}", response.status());
    println!("{}", response.text().await?.trim_end());
    println!(
        "Tokens issued by the demo token service so far: {}",
        token_service.issued()
    );
    println!("Press Ctrl-C to stop.");
    let stopped = match server.await {
        Ok(result) => result?,
        Err(join) => return Err(DemoError::Listen(std::io::Error::other(join))),
    };
    Ok(stopped)
}
