//! The `xsrouter` command: run the router on an approuter working directory, check a
//! configuration, or start the demo.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use tokio::net::TcpListener;

use xsrouter::config::{Environment, Runtime};
use xsrouter::pipeline::AppState;
use xsrouter::routing::RouteTo;
use xsrouter::server::{self, Stopped};

#[derive(Parser)]
#[command(
    name = "xsrouter",
    version,
    about = "Application router: a drop-in replacement for @sap/approuter",
    after_help = ENVIRONMENT_HELP
)]
struct Cli {
    /// Working directory holding xs-app.json (and optionally default-env.json, resources/).
    #[arg(short = 'w', long = "workdir", global = true, default_value = ".")]
    workdir: PathBuf,
    #[command(subcommand)]
    command: Option<Command>,
}

/// Every environment variable xsrouter reads (the README has the full reference).
const ENVIRONMENT_HELP: &str = "\
Environment (defaults in parentheses):
  PORT (5000), XS_BIND_ADDRESS (0.0.0.0)         where to listen
  destinations, httpHeaders, DESTINATION_HOST_PATTERN, SEND_XFRAMEOPTIONS (true)
  VCAP_SERVICES, VCAP_SERVICES_FILE_PATH, SERVICE_BINDING_ROOT, UAA_SERVICE_NAME, IAS_SERVICE_NAME
  XSUAA_PRIVATE_KEY, IAS_PRIVATE_KEY, FULL_CERTIFICATE_CHAIN (false), XS_CACERT_PATH, VCAP_APPLICATION
  XSROUTER_CREDENTIALS_POLL_INTERVAL (10 s)       re-read bound certificates (also on SIGHUP)
  JWT_REFRESH (5 min), MINIMUM_TOKEN_VALIDITY (0 s), SKIP_CLIENT_CREDENTIALS_TOKENS_LOAD (false),
  XSROUTER_TOKEN_CACHE_SIZE (10000)
  XSROUTER_DESTINATION_CACHE_TTL (300 s)          longest a Destination service lookup is kept
  SESSION_TIMEOUT (15 min), SESSION_COOKIE_NAME (JSESSIONID), SECURE_SESSION_COOKIE, COOKIES,
  STATE_PARAMETER_SECRET (true), PKCE_ENABLED (true)
  EXT_SESSION_MGT, REDIS_URL, XSROUTER_SESSION_SECRET   sessions in Redis
  XSROUTER_TLS_CERT, XSROUTER_TLS_KEY, XSROUTER_CLIENT_CERT_MODE (off), XSROUTER_CLIENT_CA,
  XSROUTER_CLIENT_CERT_HEADERS (envoy)            inbound TLS and client certificates
  XSROUTER_CLIENT_CERT_PERMISSIVE (false), XSROUTER_CLIENT_ISSUERS, XSROUTER_CLIENT_CHAIN_DEPTH,
  XSROUTER_CLIENT_CRL, XSROUTER_CLIENT_CRL_SCOPE (chain), XSROUTER_CLIENT_CRL_ALLOW_UNKNOWN_STATUS
  (false), XSROUTER_CLIENT_CRL_ENFORCE_EXPIRATION (true), XSROUTER_TLS_HOSTS (SNI sites)
                                                  re-read with the credentials (also on SIGHUP)
  XSROUTER_TRUSTED_PROXIES, XSROUTER_TRUSTED_PROXY_CERTS, XSROUTER_FORWARDED_CLIENT_CERT,
  XSROUTER_FORWARDED_CLIENT_CERT_VERIFY (reverify)  client certificates from trusted proxies
  XSROUTER_XFCC_MODE (sanitize_set), XSROUTER_XFCC_FIELDS (subject,uri,dns),
  XSROUTER_CLIENT_CERT_HEADERS_MAX_BYTES (16384)   client-certificate headers to destinations
  WS_ALLOWED_ORIGINS (the router's own URL)       origins that may open WebSockets
  plugins                                         routes put in front of xs-app.json's
  TENANT_HOST_PATTERN, EXTERNAL_REVERSE_PROXY (false)   the tenant from the host (x-custom-host)
  XSROUTER_MANAGEMENT_PORT (off)                  /health/live, /health/ready, /metrics
  XSROUTER_MAX_HEADER_SIZE (16384), XSROUTER_MAX_HEADER_COUNT (100), XSROUTER_MAX_URL_LENGTH (16384),
  XSROUTER_HEADER_READ_TIMEOUT (60 s), XSROUTER_MAX_BODY_SIZE (unlimited)   request limits
  INCOMING_REQUEST_TIMEOUT (300000 ms), INCOMING_CONNECTION_TIMEOUT (120000 ms),
  SERVER_KEEP_ALIVE (0: off)                      client time limits (0 switches each off)
  COMPRESSION, CORS                               as xs-app.json `compression` / `cors`
  RETURN_ERROR_SOURCE (false)                     x-error-source: gateway on the router's errors
  XSROUTER_SHUTDOWN_TIMEOUT (30 s), LOG_FORMAT (json), LOG_LEVEL / RUST_LOG (info)
The working directory may hold default-env.json (values for unset variables) and
default-services.json (local bindings).";

#[derive(Subcommand)]
enum Command {
    /// Load and validate the configuration, print a summary, and exit.
    Check,
    /// Start the example (xs-app/) on loopback with a generated CA and x509 binding, an mTLS-only
    /// backend and a demo token service; print what to try. Ctrl-C stops it.
    Demo,
    /// Probe a running router's readiness on its management port (for container health checks):
    /// exit 0 when `GET /health/ready` answers 200.
    Health {
        /// Management port (default: XSROUTER_MANAGEMENT_PORT, else 9090).
        #[arg(long)]
        port: Option<u16>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    xsrouter::telemetry::logging::init();
    xsrouter::install_crypto_provider();
    let result = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt.block_on(run(cli)),
        Err(err) => Err(anyhow::Error::new(err).context("cannot start the async runtime")),
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            eprintln!("xsrouter: {err:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Some(Command::Check) => check(&cli.workdir),
        Some(Command::Demo) => demo().await,
        Some(Command::Health { port }) => health(port).await,
        None => {
            let runtime = Runtime::load(&cli.workdir, Environment::from_process())?;
            serve(runtime).await
        }
    }
}

fn check(workdir: &Path) -> anyhow::Result<ExitCode> {
    let runtime = Runtime::load(workdir, Environment::from_process())?;
    println!("configuration OK: {}", runtime.workdir.display());
    println!("routes ({}):", runtime.routes.routes().len());
    for route in runtime.routes.routes() {
        let to = match &route.to {
            RouteTo::Destination(d) => format!("destination {d:?}"),
            RouteTo::LocalDir(dir) => format!("localDir {}", dir.display()),
            RouteTo::UserApi => "user API".to_owned(),
        };
        let auth = route.authentication.map_or("none", |a| a.as_str());
        let position = route
            .position
            .map_or("implicit".to_owned(), |p| format!("#{p}"));
        println!(
            "  {position} {} -> {to} (authentication: {auth})",
            route.source
        );
    }
    println!("destinations ({}):", runtime.destinations.len());
    for d in runtime.destinations.values() {
        println!(
            "  {} -> {} (timeout {} ms{}{})",
            d.name,
            d.url,
            d.timeout.as_millis(),
            if d.forward_auth_token {
                ", forwardAuthToken"
            } else {
                ""
            },
            if d.forward_auth_certificates {
                ", forwardAuthCertificates"
            } else {
                ""
            },
        );
    }
    if let Some(service) = &runtime.destination_service {
        println!(
            "Destination service `{}`: other names are looked up at {}",
            service.instance, service.uri
        );
    }
    for warning in &runtime.warnings {
        println!("warning: {warning}");
    }
    Ok(ExitCode::SUCCESS)
}

async fn serve(runtime: Runtime) -> anyhow::Result<ExitCode> {
    for warning in &runtime.warnings {
        tracing::warn!("{warning}");
    }
    for bound in [&runtime.identities.xsuaa, &runtime.identities.ias]
        .into_iter()
        .flatten()
    {
        xsrouter::identity::rotation::log_certificate(
            xsrouter::identity::kind_name(bound.kind),
            &bound.binding,
            &bound.identity.leaf,
        );
    }
    let addr = format!(
        "{}:{}",
        runtime.settings.bind_address, runtime.settings.port
    );
    let grace = runtime.settings.shutdown_timeout;
    let (workdir, routes) = (runtime.workdir.clone(), runtime.routes.routes().len());
    let (management_port, bind_address) = (
        runtime.settings.management_port,
        runtime.settings.bind_address.clone(),
    );
    // Everything that can fail is built before the port is taken and announced.
    let state = AppState::build(runtime).await?;
    let listener = server::bind(&addr)
        .await
        .with_context(|| format!("cannot listen on {addr}"))?;
    let local = listener.local_addr()?;
    tracing::info!(address = %local, workdir = %workdir.display(), routes, "xsrouter listening");
    if let Some(port) = management_port {
        let addr = format!("{bind_address}:{port}");
        let management = TcpListener::bind(&addr)
            .await
            .with_context(|| format!("cannot listen on {addr} (XSROUTER_MANAGEMENT_PORT)"))?;
        tracing::info!(address = %management.local_addr()?, "management endpoints listening (/health/live, /health/ready, /metrics)");
        tokio::spawn(xsrouter::management::serve(management, state.clone()));
    }
    let _watcher = state.spawn_credential_watcher();
    // Trust files for certificates forwarded by trusted proxies, re-read on the same schedule
    // (with or without the HTTPS listener, which re-reads its own).
    let _forwarded_trust = state
        .runtime()
        .trusted_proxies
        .as_ref()
        .and_then(|proxies| proxies.reverifier())
        .map(|verifier| {
            tokio::spawn(xsrouter::inbound::reverify::watch(
                verifier.clone(),
                state.runtime().settings.credentials_poll_interval,
            ))
        });
    state.spawn_token_prefetch();
    finish(server::serve(listener, state, server::termination_signal(), grace).await?)
}

async fn health(port: Option<u16>) -> anyhow::Result<ExitCode> {
    let port = match port {
        Some(port) => port,
        None => std::env::var("XSROUTER_MANAGEMENT_PORT")
            .ok()
            .and_then(|p| p.parse().ok())
            .unwrap_or(9090),
    };
    let client = reqwest::Client::builder()
        .no_proxy()
        .timeout(std::time::Duration::from_secs(5))
        .build()?;
    let response = client
        .get(format!("http://127.0.0.1:{port}/health/ready"))
        .send()
        .await?;
    let ready = response.status().is_success();
    println!("{}", response.text().await.unwrap_or_default().trim());
    Ok(if ready {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn finish(stopped: Stopped) -> anyhow::Result<ExitCode> {
    match stopped {
        Stopped::Drained => tracing::info!("stopped"),
        Stopped::GraceExpired => {
            tracing::warn!("stopped with requests still in flight after the grace period")
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn demo() -> anyhow::Result<ExitCode> {
    let repo = xsrouter::demo::setup::example_root();
    finish(xsrouter::demo::walkthrough::run(&repo, Environment::from_process()).await?)
}
