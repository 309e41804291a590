//! The HTTPS listener: a TLS accept loop (tokio-rustls) serving the same axum application as the
//! plain listener, HTTP/1.1 and HTTP/2 (ALPN) with upgrades, and the same graceful shutdown.
//!
//! Client certificates are verified during the handshake by rustls' `WebPkiClientVerifier`
//! against the configured CA bundles (`require`: mandatory; `optional`: a connection without a
//! certificate is accepted, a presented one must verify; `off`: none asked for). The verified
//! peer chain becomes a [`ClientCertificate`], parsed once per connection and handed to every
//! request of that connection in a [`TlsConnection`] request extension.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Extension;
use axum::extract::ConnectInfo;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder;
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use hyper_util::service::TowerToHyperService;
use rustls::RootCertStore;
use rustls::server::{ServerConfig, WebPkiClientVerifier};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;

use super::ClientCertificate;
use crate::config::inbound_tls::{ClientCertMode, InboundTls};
use crate::pipeline::AppState;
use crate::server::{self, Stopped};

/// How long a client may take to complete the TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Request extension: the request arrived over the router's own TLS listener.
#[derive(Debug, Clone, Default)]
pub struct TlsConnection {
    /// The client certificate verified in the handshake, if one was presented.
    pub client_certificate: Option<Arc<ClientCertificate>>,
}

/// Why the TLS configuration could not be built.
#[derive(Debug, thiserror::Error)]
pub enum ListenerError {
    #[error("the HTTPS listener is not configured (XSROUTER_TLS_CERT and XSROUTER_TLS_KEY)")]
    NotConfigured,
    #[error("client CA certificate is not usable: {0}")]
    ClientCa(rustls::Error),
    #[error("client certificate verifier: {0}")]
    Verifier(#[from] rustls::server::VerifierBuilderError),
    #[error("server certificate and key: {0}")]
    Tls(#[from] rustls::Error),
}

/// The rustls server configuration for `tls` (ring provider, HTTP/2 and HTTP/1.1 by ALPN).
pub fn server_config(tls: &InboundTls) -> Result<Arc<ServerConfig>, ListenerError> {
    let identity = tls.server.as_ref().ok_or(ListenerError::NotConfigured)?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()?;
    let verifier = match tls.client_cert_mode {
        ClientCertMode::Off => WebPkiClientVerifier::no_client_auth(),
        mode => {
            let mut roots = RootCertStore::empty();
            for ca in &tls.client_cas {
                roots.add(ca.clone()).map_err(ListenerError::ClientCa)?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider);
            let verifier = if mode == ClientCertMode::Optional {
                verifier.allow_unauthenticated()
            } else {
                verifier
            };
            verifier.build()?
        }
    };
    let mut config = builder
        .with_client_cert_verifier(verifier)
        .with_single_cert(identity.chain.clone(), identity.key.clone_key())?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// Serves HTTPS on `listener` until `shutdown` completes, then drains for at most `grace`
/// (the TLS counterpart of [`server::serve`]).
pub async fn serve(
    listener: TcpListener,
    state: AppState,
    config: Arc<ServerConfig>,
    shutdown: impl Future<Output = ()> + Send + 'static,
    grace: Duration,
) -> std::io::Result<Stopped> {
    let app = server::app(state);
    let acceptor = TlsAcceptor::from(config);
    let builder = Builder::new(TokioExecutor::new());
    let graceful = GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    tokio::spawn(connection(
                        acceptor.clone(),
                        stream,
                        peer,
                        app.clone(),
                        builder.clone(),
                        graceful.watcher(),
                    ));
                }
                Err(err) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(error = %err, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
            () = &mut shutdown => break,
        }
    }
    drop(listener);
    tracing::info!(
        grace_seconds = grace.as_secs(),
        "shutting down: no new connections, finishing requests in flight"
    );
    match tokio::time::timeout(grace, graceful.shutdown()).await {
        Ok(()) => Ok(Stopped::Drained),
        Err(_) => Ok(Stopped::GraceExpired),
    }
}

/// One connection: handshake, read the client certificate, serve requests.
async fn connection(
    acceptor: TlsAcceptor,
    stream: TcpStream,
    peer: SocketAddr,
    app: axum::Router,
    builder: Builder<TokioExecutor>,
    watcher: Watcher,
) {
    let stream = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
        Ok(Ok(stream)) => stream,
        Ok(Err(err)) => {
            tracing::debug!(%peer, error = %err, "TLS handshake failed");
            return;
        }
        Err(_) => {
            tracing::debug!(%peer, "TLS handshake timed out");
            return;
        }
    };
    let client_certificate = match stream.get_ref().1.peer_certificates() {
        None | Some([]) => None,
        Some(chain) => match ClientCertificate::from_chain(chain) {
            Ok(certificate) => Some(Arc::new(certificate)),
            Err(err) => {
                // Verified by webpki but not describable: never pass on a certificate we
                // cannot represent, and never treat the connection as anonymous either.
                tracing::warn!(%peer, error = %err, "client certificate cannot be parsed; closing the connection");
                return;
            }
        },
    };
    let app = app
        .layer(Extension(TlsConnection { client_certificate }))
        .layer(Extension(ConnectInfo(peer)));
    let service = TowerToHyperService::new(app);
    let served = watcher.watch(
        builder
            .serve_connection_with_upgrades(TokioIo::new(stream), service)
            .into_owned(),
    );
    if let Err(err) = served.await {
        tracing::debug!(%peer, error = %err, "connection ended with an error");
    }
}
