//! A minimal HTTPS server for the demo's loopback services: TLS with a mandatory client
//! certificate (verified by rustls during the handshake), then an axum application that finds
//! the verified certificate in a [`PeerCertificate`] request extension.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Extension;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder;
use hyper_util::service::TowerToHyperService;
use rustls::server::ServerConfig;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use crate::inbound::ClientCertificate;

/// How long a client may take to complete the handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Request extension: the client certificate verified in the handshake.
#[derive(Clone)]
pub struct PeerCertificate(pub Arc<ClientCertificate>);

/// Binds `127.0.0.1:0` and serves `app` over mutual TLS until the process ends.
pub async fn start(
    config: Arc<ServerConfig>,
    app: axum::Router,
    name: &'static str,
) -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
    let addr = listener.local_addr()?;
    let acceptor = TlsAcceptor::from(config);
    tokio::spawn(async move {
        loop {
            let (stream, _) = match listener.accept().await {
                Ok(accepted) => accepted,
                Err(err) => {
                    tracing::warn!(server = name, error = %err, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let (acceptor, app) = (acceptor.clone(), app.clone());
            tokio::spawn(async move {
                let tls =
                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                        Ok(Ok(tls)) => tls,
                        Ok(Err(err)) => {
                            tracing::info!(server = name, error = %err, "TLS handshake refused");
                            return;
                        }
                        Err(_) => return,
                    };
                let peer = tls
                    .get_ref()
                    .1
                    .peer_certificates()
                    .and_then(|certs| ClientCertificate::from_chain(certs).ok());
                let Some(peer) = peer else {
                    tracing::info!(
                        server = name,
                        "connection without a usable client certificate"
                    );
                    return;
                };
                let app = app.layer(Extension(PeerCertificate(Arc::new(peer))));
                let service = TowerToHyperService::new(app);
                let _ = Builder::new(TokioExecutor::new())
                    .serve_connection_with_upgrades(TokioIo::new(tls), service)
                    .await;
            });
        }
    });
    Ok(addr)
}
