//! Minimal axum + hyper-util reverse proxy: the floor for the per-request cost (temporary).
use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::Response;
use hyper_util::client::legacy::{Client, connect::HttpConnector};
use hyper_util::rt::TokioExecutor;

type C = Client<HttpConnector, Body>;

async fn proxy(State(client): State<C>, mut req: Request) -> Response {
    let path = req
        .uri()
        .path()
        .strip_prefix("/plain")
        .unwrap_or("/")
        .to_owned();
    *req.uri_mut() = format!("http://127.0.0.1:19080{path}").parse().unwrap();
    match client.request(req).await {
        Ok(r) => r.map(Body::new),
        Err(_) => Response::builder().status(502).body(Body::empty()).unwrap(),
    }
}

#[tokio::main]
async fn main() {
    let mut http = HttpConnector::new();
    http.set_nodelay(true);
    let client: C = Client::builder(TokioExecutor::new()).build(http);
    let app = axum::Router::new().fallback(proxy).with_state(client);
    let l = tokio::net::TcpListener::bind("127.0.0.1:19002")
        .await
        .unwrap();
    axum::serve(l, app).await.unwrap();
}
