//! The listening side: binds the port, serves the pipeline, and shuts down gracefully — on the
//! shutdown signal it stops accepting, lets in-flight requests finish, and gives up after the
//! configured grace period.

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::TcpListener;

use crate::pipeline::{self, AppState};

/// The axum application: one fallback handler that runs the whole pipeline.
pub fn app(state: AppState) -> axum::Router {
    axum::Router::new()
        .fallback(pipeline::handle)
        .with_state(state)
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
    let (stopping_tx, stopping_rx) = tokio::sync::oneshot::channel::<()>();
    let signal = async move {
        shutdown.await;
        let _ = stopping_tx.send(());
    };
    let service = app(state).into_make_service_with_connect_info::<SocketAddr>();
    let server = axum::serve(listener, service)
        .with_graceful_shutdown(signal)
        .into_future();
    tokio::pin!(server);
    tokio::select! {
        result = &mut server => return result.map(|()| Stopped::Drained),
        _ = stopping_rx => {}
    }
    tracing::info!(
        grace_seconds = grace.as_secs(),
        "shutting down: no new connections, finishing requests in flight"
    );
    match tokio::time::timeout(grace, server).await {
        Ok(result) => result.map(|()| Stopped::Drained),
        Err(_) => Ok(Stopped::GraceExpired),
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
