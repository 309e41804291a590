//! The listening side: binds the port, serves the pipeline, and shuts down gracefully — on the
//! shutdown signal it stops accepting, lets in-flight requests finish, and gives up after the
//! configured grace period.

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use std::convert::Infallible;
use std::pin::Pin;

use axum::body::Body;
use axum::response::Response;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder;
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use tokio::net::{TcpListener, TcpStream};

use crate::client_timeouts::{IdleConnection, IdleExemption};
use crate::connection_guard::ConnectionGuard;
use crate::inbound::listener::TlsConnection;
use crate::pipeline::{self, AppState};

/// Pending connections the kernel queues before they are accepted. Tokio's default (128) drops
/// SYNs when hundreds of clients connect at once (seen in the benchmark: 1–3 s retransmission
/// stalls); nginx uses 511.
const LISTEN_BACKLOG: u32 = 1024;

/// Binds the router's port (`host:port`; the first address the name resolves to) with a listen
/// backlog sized for bursts of new connections.
pub async fn bind(addr: &str) -> std::io::Result<TcpListener> {
    let resolved = tokio::net::lookup_host(addr).await?.next().ok_or_else(|| {
        std::io::Error::new(std::io::ErrorKind::AddrNotAvailable, "no address to bind")
    })?;
    let socket = match resolved {
        SocketAddr::V4(_) => tokio::net::TcpSocket::new_v4()?,
        SocketAddr::V6(_) => tokio::net::TcpSocket::new_v6()?,
    };
    socket.set_reuseaddr(true)?;
    socket.bind(resolved)?;
    socket.listen(LISTEN_BACKLOG)
}

/// The request service of one connection: every request runs the whole pipeline
/// ([`pipeline::handle`]) with what the connection knows — the peer address, the router's own
/// TLS handshake, the idle-timeout exemption for upgrades. No router framework in between: one
/// boxed future per request.
#[derive(Clone)]
pub struct ConnectionService {
    state: AppState,
    peer: SocketAddr,
    tls: Option<TlsConnection>,
    exemption: Option<IdleExemption>,
}

impl ConnectionService {
    pub fn new(state: AppState, peer: SocketAddr) -> Self {
        Self {
            state,
            peer,
            tls: None,
            exemption: None,
        }
    }

    /// A connection over the router's own TLS listener.
    pub fn with_tls(mut self, connection: TlsConnection) -> Self {
        self.tls = Some(connection);
        self
    }

    fn with_exemption(mut self, exemption: IdleExemption) -> Self {
        self.exemption = Some(exemption);
        self
    }
}

impl hyper::service::Service<http::Request<Incoming>> for ConnectionService {
    type Response = Response;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response, Infallible>> + Send>>;

    fn call(&self, request: http::Request<Incoming>) -> Self::Future {
        let mut request = request.map(Body::new);
        if let Some(exemption) = &self.exemption {
            request.extensions_mut().insert(exemption.clone());
        }
        if let Some(tls) = &self.tls {
            if let Some(refusal) = crate::inbound::listener::misdirected(tls, &request) {
                return Box::pin(std::future::ready(Ok(refusal)));
            }
            request.extensions_mut().insert(tls.clone());
        }
        let state = self.state.clone();
        let peer = self.peer;
        Box::pin(async move { Ok(pipeline::handle(state, peer, request).await) })
    }
}

/// Outcome of [`serve`].
#[derive(Debug, PartialEq, Eq)]
pub enum Stopped {
    /// Every in-flight request finished.
    Drained,
    /// The grace period ran out with requests still in flight.
    GraceExpired,
}

/// Serves until `shutdown` completes, then drains for at most `grace`. With
/// `XSROUTER_TLS_CERT` configured the listener speaks HTTPS ([`crate::inbound::listener`]).
pub async fn serve(
    listener: TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
    grace: Duration,
) -> std::io::Result<Stopped> {
    let tls = &state.runtime().inbound_tls;
    if tls.server.is_some() {
        return serve_tls(listener, state, shutdown, grace).await;
    }
    let limits = state.runtime().settings.limits;
    let idle_timeout = state.runtime().settings.incoming_connection_timeout;
    let builder = crate::limits::connection_builder(&limits);
    let graceful = GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    // No Nagle delay: a response's last partial segment must not wait for
                    // the client's delayed ACK (40 ms stalls on large responses).
                    let _ = stream.set_nodelay(true);
                    tokio::spawn(serve_plain(
                        stream,
                        peer,
                        state.clone(),
                        builder.clone(),
                        graceful.watcher(),
                        limits.header_read_timeout,
                        idle_timeout,
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

/// One plain-HTTP connection.
async fn serve_plain(
    stream: TcpStream,
    peer: SocketAddr,
    state: AppState,
    builder: Builder<TokioExecutor>,
    watcher: Watcher,
    first_head_within: Duration,
    idle_timeout: Option<Duration>,
) {
    let service = ConnectionService::new(state, peer);
    serve_connection(
        stream,
        peer,
        service,
        &builder,
        watcher,
        first_head_within,
        idle_timeout,
    )
    .await;
}

/// Serves one accepted connection (plain TCP or TLS, after the handshake) with upgrades until
/// it ends. The first request head must be complete within `first_head_within`
/// (`XSROUTER_HEADER_READ_TIMEOUT`; hyper times the later ones), and HTTP/1 requests with both
/// `Content-Length` and `Transfer-Encoding` get 400 ([`ConnectionGuard`]).
/// `INCOMING_CONNECTION_TIMEOUT`: no byte either way for that long closes the connection
/// (connections upgraded to WebSocket are exempt).
pub(crate) async fn serve_connection<S>(
    stream: S,
    peer: SocketAddr,
    service: ConnectionService,
    builder: &Builder<TokioExecutor>,
    watcher: Watcher,
    first_head_within: Duration,
    idle_timeout: Option<Duration>,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let stream = ConnectionGuard::new(stream, first_head_within);
    let served = match idle_timeout {
        Some(timeout) => {
            let (stream, exemption) = IdleConnection::new(stream, timeout);
            let service = service.with_exemption(exemption);
            watcher
                .watch(
                    builder
                        .serve_connection_with_upgrades(TokioIo::new(stream), service)
                        .into_owned(),
                )
                .await
        }
        None => {
            watcher
                .watch(
                    builder
                        .serve_connection_with_upgrades(TokioIo::new(stream), service)
                        .into_owned(),
                )
                .await
        }
    };
    // Header timeouts, resets and parse errors end here, per connection.
    if let Err(err) = served {
        tracing::debug!(%peer, error = %err, "connection ended with an error");
    }
}

/// The HTTPS listener, with its TLS files re-read on the credentials poll interval and SIGHUP.
async fn serve_tls(
    listener: TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
    grace: Duration,
) -> std::io::Result<Stopped> {
    use crate::inbound::{listener as tls_listener, reload};
    let counters = state.client_cert_counters().clone();
    let live =
        reload::LiveTls::new(&state.runtime().inbound_tls, counters.clone()).map_err(|errors| {
            let reasons: Vec<String> = errors.iter().map(ToString::to_string).collect();
            std::io::Error::other(reasons.join("; "))
        })?;
    let live = std::sync::Arc::new(live);
    let watcher = tokio::spawn(reload::watch(
        live.clone(),
        state.runtime().settings.credentials_poll_interval,
    ));
    let stopped = tls_listener::serve(listener, state, live, counters, shutdown, grace).await;
    watcher.abort();
    stopped
}

/// Completes on SIGTERM or Ctrl-C.
pub async fn termination_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
}
