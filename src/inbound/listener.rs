//! The HTTPS listener: a TLS accept loop (tokio-rustls) serving the same axum application as the
//! plain listener, HTTP/1.1 and HTTP/2 (ALPN) with upgrades, and the same graceful shutdown.
//!
//! Each connection reads the current sites once ([`LiveTls`], hot-reloaded) and picks its site
//! by the ClientHello's SNI. Client certificates are verified in the handshake by the site's
//! [`super::verifier::ClientVerifier`] (`require`: mandatory; `optional`: a connection without
//! a certificate is accepted, a presented one must verify unless the site is permissive; `off`:
//! none asked for). The peer chain becomes a [`ClientCertificate`], parsed once per connection
//! and handed with its verification result to every request of that connection in a
//! [`TlsConnection`] request extension.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::response::Response;
use http::{HeaderValue, StatusCode};
use hyper_util::rt::TokioExecutor;
use hyper_util::server::conn::auto::Builder;
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use rustls::pki_types::{CertificateDer, UnixTime};
use rustls::server::Acceptor;
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::LazyConfigAcceptor;
use tokio_rustls::server::TlsStream;

use super::reload::LiveTls;
use super::server_config::{HostTls, TlsSites, server_name_matches};
use super::verify_result::VerificationCounters;
use super::{ClientCertificate, Verification};
use crate::pipeline::AppState;
use crate::server::Stopped;

/// The longest a client may take to complete the TLS handshake (less when
/// `XSROUTER_HEADER_READ_TIMEOUT` is shorter: a stalled handshake is a slow head too).
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Request extension: the request arrived over the router's own TLS listener. Built once per
/// connection and shared by every request on it.
///
/// `client_certificate` and `verification` together give nginx's `$ssl_client_verify`:
/// no certificate → `NONE`; a certificate with [`Verification::Success`] → `SUCCESS`; a
/// certificate with [`Verification::Failed`] → `FAILED:<reason>` (only in permissive mode, where
/// the handshake accepts a certificate that does not verify). Use
/// [`TlsConnection::verified_certificate`] where only a verified certificate may count.
#[derive(Debug, Clone, Default)]
pub struct TlsConnection {
    /// The client certificate presented in the handshake (leaf and the chain the client sent),
    /// parsed once; see `verification` for whether it verified.
    pub client_certificate: Option<Arc<ClientCertificate>>,
    /// How `client_certificate` fared against the host's trust policy (CA bundles, pinned
    /// issuers, chain depth, CRLs); `None` exactly when no certificate was presented.
    pub verification: Option<Verification>,
    /// The SNI server name the client asked for (lowercase), if it sent one.
    pub server_name: Option<Arc<str>>,
    /// The SNI host requires client certificates: a request whose `Host` (or `:authority`)
    /// differs from `server_name` gets 421 Misdirected Request.
    pub host_must_match_sni: bool,
    /// SNI names (or `*.parent` patterns) of the listener's sites that ask for client
    /// certificates: a request on another site's connection whose `Host` is one of them gets
    /// 421 too.
    pub client_auth_hosts: Arc<[Arc<str>]>,
}

impl TlsConnection {
    /// The client certificate, only if it verified.
    pub fn verified_certificate(&self) -> Option<&Arc<ClientCertificate>> {
        match self.verification {
            Some(Verification::Success) => self.client_certificate.as_ref(),
            _ => None,
        }
    }
}

impl TlsConnection {
    /// Whether a request for `host` (its `Host` or `:authority`, port allowed) does not belong
    /// on this connection: the connection's site asks for client certificates and the host is
    /// not the SNI name, or the host is another site that asks for client certificates. Such a
    /// request gets 421 Misdirected Request (the client retries on a new connection).
    pub fn is_misdirected(&self, host: Option<&str>) -> bool {
        let Some(host) = host.map(host_without_port) else {
            return false;
        };
        let same = |name: &str| name.eq_ignore_ascii_case(host);
        match self.server_name.as_deref() {
            Some(sni) if same(sni) => false,
            Some(_) if self.host_must_match_sni => true,
            _ => self
                .client_auth_hosts
                .iter()
                .any(|pattern| server_name_matches(pattern, host)),
        }
    }
}

/// `host[:port]` or `[v6]:port` without the port.
fn host_without_port(authority: &str) -> &str {
    if authority.starts_with('[') {
        return authority
            .find(']')
            .map_or(authority, |end| &authority[..=end]);
    }
    authority
        .split_once(':')
        .map_or(authority, |(host, _)| host)
}

/// Serves HTTPS on `listener` until `shutdown` completes, then drains for at most `grace`
/// (the TLS counterpart of [`server::serve`]). Every accepted connection uses the sites `live`
/// holds at that moment; the counters of `live` count its verification results.
pub async fn serve(
    listener: TcpListener,
    state: AppState,
    live: Arc<LiveTls>,
    counters: Arc<VerificationCounters>,
    shutdown: impl Future<Output = ()> + Send + 'static,
    grace: Duration,
) -> std::io::Result<Stopped> {
    // The head limits and the header read timeout, as on the plain listener.
    let limits = state.runtime().settings.limits;
    let serving = Serving {
        builder: crate::limits::connection_builder(&limits),
        handshake_timeout: HANDSHAKE_TIMEOUT.min(limits.header_read_timeout),
        header_read_timeout: limits.header_read_timeout,
        idle_timeout: state.runtime().settings.incoming_connection_timeout,
        counters,
        state,
    };
    let graceful = GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    // No Nagle delay: a response's last partial segment must not wait for
                    // the client's delayed ACK (40 ms stalls on large responses).
                    let _ = stream.set_nodelay(true);
                    tokio::spawn(connection(
                        live.current(),
                        stream,
                        peer,
                        serving.clone(),
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

/// The TLS handshake: the site is chosen by the ClientHello's SNI.
async fn handshake(
    sites: &TlsSites,
    stream: TcpStream,
) -> std::io::Result<(TlsStream<TcpStream>, Option<Arc<str>>, &HostTls)> {
    let start = LazyConfigAcceptor::new(Acceptor::default(), stream).await?;
    let server_name: Option<Arc<str>> = start
        .client_hello()
        .server_name()
        .map(|name| Arc::from(name.to_ascii_lowercase()));
    let host = sites.select(server_name.as_deref());
    let stream = start.into_stream(host.config.clone()).await?;
    Ok((stream, server_name, host))
}

/// What every connection of the listener shares.
#[derive(Clone)]
struct Serving {
    state: AppState,
    builder: Builder<TokioExecutor>,
    counters: Arc<VerificationCounters>,
    /// [`HANDSHAKE_TIMEOUT`], or `XSROUTER_HEADER_READ_TIMEOUT` when shorter.
    handshake_timeout: Duration,
    /// `XSROUTER_HEADER_READ_TIMEOUT`: for the first request head, counted from the end of
    /// the handshake.
    header_read_timeout: Duration,
    /// `INCOMING_CONNECTION_TIMEOUT`.
    idle_timeout: Option<Duration>,
}

/// One connection: handshake, read and classify the client certificate, serve requests.
async fn connection(
    sites: Arc<TlsSites>,
    stream: TcpStream,
    peer: SocketAddr,
    serving: Serving,
    watcher: Watcher,
) {
    let Serving {
        state,
        builder,
        counters,
        handshake_timeout,
        header_read_timeout,
        idle_timeout,
    } = serving;
    let (stream, server_name, host) =
        match tokio::time::timeout(handshake_timeout, handshake(&sites, stream)).await {
            Ok(Ok(done)) => done,
            Ok(Err(err)) => {
                tracing::debug!(%peer, error = %err, "TLS handshake failed");
                return;
            }
            Err(_) => {
                tracing::debug!(%peer, "TLS handshake timed out");
                return;
            }
        };
    let (client_certificate, verification) = match stream.get_ref().1.peer_certificates() {
        None | Some([]) => {
            if host.asks_for_certificates {
                counters.none();
            }
            (None, None)
        }
        Some(chain) => match ClientCertificate::from_chain(chain) {
            Ok(certificate) => (
                Some(Arc::new(certificate)),
                Some(verification_of(host, chain)),
            ),
            // Permissive: a FAILED certificate like any other failure (never passed on).
            Err(err) if host.permissive => {
                tracing::info!(%peer, error = %err, "client certificate cannot be parsed; accepted as FAILED (permissive)");
                let (certificate, verification) = super::verifier::unparsable_certificate(chain);
                (Some(Arc::new(certificate)), Some(verification))
            }
            Err(err) => {
                // Never pass on a certificate we cannot represent, and never treat the
                // connection as anonymous either.
                tracing::warn!(%peer, error = %err, "client certificate cannot be parsed; closing the connection");
                return;
            }
        },
    };
    let connection = TlsConnection {
        client_certificate,
        verification,
        server_name,
        host_must_match_sni: host.asks_for_certificates,
        client_auth_hosts: sites.client_auth_names().clone(),
    };
    drop(sites);
    let service = crate::server::ConnectionService::new(state, peer).with_tls(connection);
    crate::server::serve_connection(
        stream,
        peer,
        service,
        &builder,
        watcher,
        header_read_timeout,
        idle_timeout,
    )
    .await;
}

/// 421 Misdirected Request for a request whose host does not belong on this connection
/// ([`TlsConnection::is_misdirected`]); `None` for every other request. Only connections where
/// a host can be misdirected pay for the check.
pub(crate) fn misdirected<B>(
    connection: &TlsConnection,
    request: &http::Request<B>,
) -> Option<Response> {
    if !connection.host_must_match_sni && connection.client_auth_hosts.is_empty() {
        return None;
    }
    let host = match request.uri().host() {
        Some(host) => Some(host),
        None => request
            .headers()
            .get(http::header::HOST)
            .and_then(|value| value.to_str().ok()),
    };
    if connection.is_misdirected(host) {
        tracing::debug!(
            sni = connection.server_name.as_deref(),
            host,
            "request for another host on a client-certificate connection: 421"
        );
        let mut response = Response::new(Body::from("Misdirected Request\n"));
        *response.status_mut() = StatusCode::MISDIRECTED_REQUEST;
        response.headers_mut().insert(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        return Some(response);
    }
    None
}

/// The verification result of a certificate the handshake accepted: success, unless the site
/// is permissive — then the policy runs again to tell why it failed (the handshake's verifier
/// keeps no per-connection state).
fn verification_of(host: &HostTls, chain: &[CertificateDer<'static>]) -> Verification {
    let (Some(policy), true, Some((leaf, intermediates))) =
        (&host.policy, host.permissive, chain.split_first())
    else {
        return Verification::Success;
    };
    match policy.verify(leaf, intermediates, UnixTime::now()) {
        Ok(()) => Verification::Success,
        Err(failure) => Verification::Failed(failure.reason().to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn connection(sni: Option<&str>, must_match: bool, client_auth: &[&str]) -> TlsConnection {
        TlsConnection {
            server_name: sni.map(Arc::from),
            host_must_match_sni: must_match,
            client_auth_hosts: client_auth.iter().map(|h| Arc::from(*h)).collect(),
            ..TlsConnection::default()
        }
    }

    #[test]
    fn a_client_certificate_site_serves_only_its_sni_host() {
        let secure = connection(Some("secure.test"), true, &["secure.test"]);
        assert!(!secure.is_misdirected(Some("secure.test")));
        assert!(!secure.is_misdirected(Some("SECURE.test:8443")));
        assert!(secure.is_misdirected(Some("other.test")));
        assert!(secure.is_misdirected(Some("other.test:443")));
        // No Host at all (HTTP/1.0): nothing to compare.
        assert!(!secure.is_misdirected(None));
    }

    #[test]
    fn other_sites_never_serve_a_client_certificate_host() {
        let plain = connection(Some("www.test"), false, &["secure.test"]);
        assert!(!plain.is_misdirected(Some("www.test")));
        assert!(!plain.is_misdirected(Some("anything.test")));
        assert!(plain.is_misdirected(Some("secure.test:443")));
        // Without SNI (a client that connected by address) only that rule applies.
        let no_sni = connection(None, true, &["secure.test"]);
        assert!(!no_sni.is_misdirected(Some("127.0.0.1:8443")));
        assert!(no_sni.is_misdirected(Some("secure.test")));
        // A wildcard site: any one-label name under it.
        let wildcard = connection(Some("www.test"), false, &["*.secure.test"]);
        assert!(wildcard.is_misdirected(Some("api.secure.test:443")));
        assert!(!wildcard.is_misdirected(Some("secure.test")));
    }

    #[test]
    fn ports_are_removed_from_hosts_and_ipv6_literals() {
        assert_eq!(host_without_port("a.test:443"), "a.test");
        assert_eq!(host_without_port("a.test"), "a.test");
        assert_eq!(host_without_port("[::1]:8443"), "[::1]");
        assert_eq!(host_without_port("[::1]"), "[::1]");
    }
}
