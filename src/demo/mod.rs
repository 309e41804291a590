//! `xsrouter demo`: the router on the example working directory (`xs-app/`) with a small echo
//! backend started beside it on loopback, so a fresh clone shows a page and a proxied route
//! without any setup.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use axum::body::Body;
use axum::extract::Request;
use axum::response::Response;
use http::{HeaderValue, header};
use tokio::net::TcpListener;

use crate::config::{Environment, Runtime};
use crate::pipeline::AppState;

/// The example destinations, relative to the repository root.
pub const DEMO_DESTINATIONS: &str = "destinations/demo.json";
pub const DEMO_WORKDIR: &str = "xs-app";

/// Errors of the demo set-up.
#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    #[error("cannot read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: {reason}", path.display())]
    Destinations { path: PathBuf, reason: String },
    #[error(transparent)]
    Config(#[from] crate::config::LoadError),
    #[error(transparent)]
    Start(#[from] crate::pipeline::StartError),
    #[error("cannot listen: {0}")]
    Listen(#[from] std::io::Error),
}

/// A running echo backend.
pub struct EchoBackend {
    pub addr: SocketAddr,
}

/// Starts a backend that answers every request with a JSON description of what it received.
pub async fn start_echo_backend(port: u16) -> std::io::Result<EchoBackend> {
    let listener = TcpListener::bind(("127.0.0.1", port)).await?;
    let addr = listener.local_addr()?;
    let app = axum::Router::new().fallback(echo);
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Ok(EchoBackend { addr })
}

async fn echo(request: Request) -> Response {
    let headers: serde_json::Map<String, serde_json::Value> = request
        .headers()
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().to_owned(),
                serde_json::Value::String(String::from_utf8_lossy(v.as_bytes()).into_owned()),
            )
        })
        .collect();
    let body = serde_json::json!({
        "backend": "xsrouter demo echo backend",
        "method": request.method().as_str(),
        "url": request.uri().to_string(),
        "headers": headers,
    });
    let mut response = Response::new(Body::from(format!("{body:#}\n")));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

/// Loads the example working directory with every demo destination pointing at `backend`.
pub fn demo_runtime(
    repo: &Path,
    backend: SocketAddr,
    mut env: Environment,
) -> Result<Runtime, DemoError> {
    let path = repo.join(DEMO_DESTINATIONS);
    let text = std::fs::read_to_string(&path).map_err(|source| DemoError::Read {
        path: path.clone(),
        source,
    })?;
    let mut list: Vec<serde_json::Value> =
        serde_json::from_str(&text).map_err(|e| DemoError::Destinations {
            path: path.clone(),
            reason: e.to_string(),
        })?;
    for destination in &mut list {
        if let Some(object) = destination.as_object_mut() {
            object.insert("url".into(), format!("http://{backend}").into());
        }
    }
    env.set("destinations", serde_json::Value::Array(list).to_string());
    Ok(Runtime::load(&repo.join(DEMO_WORKDIR), env)?)
}

/// Builds the shared state of a demo router.
pub async fn demo_state(runtime: Runtime) -> Result<AppState, DemoError> {
    Ok(AppState::build(runtime).await?)
}
