//! The demo's plain HTTP echo backend: answers every request with a JSON description of what it
//! received (for the example's `backend` destination).

use std::net::SocketAddr;

use axum::body::Body;
use axum::extract::Request;
use axum::response::Response;
use http::{HeaderValue, header};
use tokio::net::TcpListener;

/// A running echo backend.
pub struct EchoBackend {
    pub addr: SocketAddr,
}

/// Starts a backend on loopback that describes every request it receives.
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
