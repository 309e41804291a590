//! An HTTPS upstream that requires a client certificate and reports exactly the chain each
//! connection presented: the response body is the JSON list of subject CNs, leaf first.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::extract::Request;
use axum::response::Response;
use rustls::pki_types::CertificateDer;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use x509_parser::prelude::{FromDer, X509Certificate};

use super::pki::Pki;

/// A running mTLS upstream.
pub struct MtlsUpstream {
    pub addr: SocketAddr,
    /// The chain (CNs, leaf first) of every accepted connection, in order.
    pub chains: Arc<Mutex<Vec<Vec<String>>>>,
    /// Handshakes that failed (no or bad client certificate).
    pub rejected: Arc<Mutex<usize>>,
}

impl MtlsUpstream {
    pub fn url(&self) -> String {
        format!("https://127.0.0.1:{}", self.addr.port())
    }

    pub fn chains(&self) -> Vec<Vec<String>> {
        self.chains.lock().expect("lock").clone()
    }
}

pub fn cn_of(der: &CertificateDer<'_>) -> String {
    let (_, cert) = X509Certificate::from_der(der).expect("certificate");
    cert.subject()
        .iter_common_name()
        .next()
        .and_then(|cn| cn.as_str().ok())
        .unwrap_or("?")
        .to_owned()
}

/// Starts the upstream with a server certificate from `server_pki`, trusting client
/// certificates issued under `client_pki`. After `close_every` requests a connection is shut
/// down gracefully (HTTP/1.1 close, HTTP/2 GOAWAY; 0: never), so that clients must open new ones.
pub async fn start(server_pki: &Pki, client_pki: &Pki, close_every: usize) -> MtlsUpstream {
    let config = server_pki.mtls_server_config(client_pki);
    let acceptor = TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let chains = Arc::new(Mutex::new(Vec::new()));
    let rejected = Arc::new(Mutex::new(0));
    let (chains_task, rejected_task) = (chains.clone(), rejected.clone());
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            let chains = chains_task.clone();
            let rejected = rejected_task.clone();
            tokio::spawn(async move {
                let tls = match acceptor.accept(stream).await {
                    Ok(tls) => tls,
                    Err(_) => {
                        *rejected.lock().expect("lock") += 1;
                        return;
                    }
                };
                let presented: Vec<String> = tls
                    .get_ref()
                    .1
                    .peer_certificates()
                    .unwrap_or_default()
                    .iter()
                    .map(cn_of)
                    .collect();
                chains.lock().expect("lock").push(presented.clone());
                let served = Arc::new(std::sync::atomic::AtomicUsize::new(0));
                let enough = Arc::new(tokio::sync::Notify::new());
                let enough_app = enough.clone();
                let app = axum::Router::new().fallback(move |request: Request| {
                    let presented = presented.clone();
                    let served = served.clone();
                    let enough = enough_app.clone();
                    async move {
                        let n = served.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
                        if close_every > 0 && n == close_every {
                            enough.notify_one();
                        }
                        let body = serde_json::json!({
                            "chain": presented,
                            "url": request.uri().to_string(),
                            "version": format!("{:?}", request.version()),
                        });
                        Response::new(Body::from(body.to_string()))
                    }
                });
                let service = hyper_util::service::TowerToHyperService::new(app);
                let builder = hyper_util::server::conn::auto::Builder::new(
                    hyper_util::rt::TokioExecutor::new(),
                );
                let connection =
                    builder.serve_connection(hyper_util::rt::TokioIo::new(tls), service);
                tokio::pin!(connection);
                tokio::select! {
                    _ = connection.as_mut() => {}
                    _ = enough.notified() => {
                        connection.as_mut().graceful_shutdown();
                        let _ = connection.await;
                    }
                }
            });
        }
    });
    MtlsUpstream {
        addr,
        chains,
        rejected,
    }
}
