//! Real upstream servers for tests: an echo server that reports what it received, plus
//! endpoints that stall, stream, set headers and count connections.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::Response;
use axum::routing::{any, get};
use bytes::Bytes;
use futures_util::StreamExt;
use http::{HeaderValue, StatusCode};
use tokio::net::TcpListener;
use tokio::sync::mpsc;

/// What the echo endpoint saw, as JSON: method, url, headers (lists), body length.
pub async fn echo(request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let mut headers = serde_json::Map::new();
    for (name, value) in &parts.headers {
        let entry = headers
            .entry(name.as_str())
            .or_insert_with(|| serde_json::json!([]));
        if let Some(list) = entry.as_array_mut() {
            list.push(
                String::from_utf8_lossy(value.as_bytes())
                    .into_owned()
                    .into(),
            );
        }
    }
    let mut length = 0usize;
    let mut stream = body.into_data_stream();
    while let Some(chunk) = stream.next().await {
        match chunk {
            Ok(chunk) => length += chunk.len(),
            Err(_) => break,
        }
    }
    let body = serde_json::json!({
        "method": parts.method.as_str(),
        "url": parts.uri.to_string(),
        "version": format!("{:?}", parts.version),
        "headers": headers,
        "body_length": length,
    });
    let mut response = Response::new(Body::from(body.to_string()));
    response
        .headers_mut()
        .insert("content-type", HeaderValue::from_static("application/json"));
    response
}

/// Shared state of a test upstream.
#[derive(Clone, Default)]
pub struct Observed {
    pub connections: Arc<AtomicUsize>,
    /// Every request's path and `Authorization` header (empty when absent).
    pub paths: Arc<std::sync::Mutex<Vec<(String, String)>>>,
    /// Receives a message when the streaming-upload endpoint got its first chunk.
    pub first_chunk: Arc<tokio::sync::Mutex<Option<mpsc::Sender<usize>>>>,
}

/// A running test upstream.
pub struct Upstream {
    pub addr: SocketAddr,
    pub observed: Observed,
}

impl Upstream {
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn connections(&self) -> usize {
        self.observed.connections.load(Ordering::SeqCst)
    }
}

fn app(observed: Observed) -> axum::Router {
    let recorder = observed.paths.clone();
    axum::Router::new()
        .route("/slow/{ms}", any(slow))
        .route("/headers", get(with_headers))
        .route("/download/{mib}", get(download))
        .route("/upload", any(upload))
        .route("/status/{code}", any(status))
        .fallback(echo)
        .with_state(observed)
        .layer(axum::middleware::from_fn(
            move |request: Request, next: axum::middleware::Next| {
                let recorder = recorder.clone();
                async move {
                    let authorization = request
                        .headers()
                        .get("authorization")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or_default()
                        .to_owned();
                    if let Ok(mut paths) = recorder.lock() {
                        paths.push((request.uri().path().to_owned(), authorization));
                    }
                    next.run(request).await
                }
            },
        ))
}

/// Starts the echo upstream on an ephemeral loopback port, counting connections.
pub async fn start() -> Upstream {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind upstream");
    let addr = listener.local_addr().expect("addr");
    let observed = Observed::default();
    let app = app(observed.clone());
    let counter = observed.connections.clone();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                break;
            };
            counter.fetch_add(1, Ordering::SeqCst);
            let service = hyper_util::service::TowerToHyperService::new(app.clone());
            tokio::spawn(async move {
                let _ = hyper_util::server::conn::auto::Builder::new(
                    hyper_util::rt::TokioExecutor::new(),
                )
                .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                .await;
            });
        }
    });
    Upstream { addr, observed }
}

async fn slow(axum::extract::Path(ms): axum::extract::Path<u64>, request: Request) -> Response {
    tokio::time::sleep(Duration::from_millis(ms)).await;
    echo(request).await
}

async fn status(axum::extract::Path(code): axum::extract::Path<u16>) -> Response {
    let mut response = Response::new(Body::from(format!("status {code}")));
    *response.status_mut() = StatusCode::from_u16(code).unwrap_or(StatusCode::IM_A_TEAPOT);
    response
}

async fn with_headers() -> Response {
    let mut response = Response::new(Body::from("with headers"));
    let headers = response.headers_mut();
    headers.insert("x-frame-options", HeaderValue::from_static("DENY"));
    headers.insert("x-test", HeaderValue::from_static("backend"));
    headers.insert("connection", HeaderValue::from_static("x-private"));
    headers.insert("x-private", HeaderValue::from_static("hop"));
    headers.insert("keep-alive", HeaderValue::from_static("timeout=5"));
    headers.append("set-cookie", HeaderValue::from_static("backend=1; Path=/"));
    response
}

/// Streams `mib` MiB of generated bytes, one 64 KiB chunk at a time.
async fn download(axum::extract::Path(mib): axum::extract::Path<usize>) -> Response {
    let chunk = Bytes::from(vec![b'x'; 64 * 1024]);
    let stream = futures_util::stream::iter(
        (0..mib * 16).map(move |_| Ok::<_, std::io::Error>(chunk.clone())),
    );
    Response::new(Body::from_stream(stream))
}

/// Reads the body, reporting the first chunk as soon as it arrives, and answers with the total.
async fn upload(State(observed): State<Observed>, request: Request) -> Response {
    let mut stream = request.into_body().into_data_stream();
    let mut total = 0usize;
    let mut reported = false;
    while let Some(chunk) = stream.next().await {
        let Ok(chunk) = chunk else { break };
        total += chunk.len();
        if !reported {
            reported = true;
            if let Some(tx) = observed.first_chunk.lock().await.as_ref() {
                let _ = tx.send(total).await;
            }
        }
    }
    Response::new(Body::from(total.to_string()))
}
