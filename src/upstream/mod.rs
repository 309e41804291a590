//! The upstream (outbound) side: one pooled HTTP client per destination and TLS identity, with
//! that destination's TLS settings, proxy and timeouts. Connections are kept alive and reused;
//! HTTPS upstreams that offer HTTP/2 get it through ALPN.
//!
//! Proxied requests go through hyper-util's pooled client directly ([`ForwardClient`]): the
//! request the router received is passed on as it is, without the URL re-parsing, header copies
//! and redirect/retry layers of a general-purpose client (measured in `docs/benchmarks.md`).
//! Destinations behind a forward proxy (`proxyHost`), WebSocket upgrades and the router's own
//! calls (backend logout) use reqwest.
//!
//! A destination with `forwardAuthCertificates` gets one client per bound authentication
//! service that has a certificate (XSUAA, IAS); the route's authentication type picks which:
//! IAS routes use the IAS identity, every other route the XSUAA one, each falling back to the
//! other when only one is bound. The identity is the router's own, so it is sent on public
//! routes too.

pub mod tls;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use rustls::RootCertStore;
use rustls::client::ResolvesClientCert;

use crate::config::bindings::AuthServiceKind;
use crate::config::xs_app::AuthenticationType;
use crate::config::{Destination, Runtime};
use crate::identity::rotation::IdentityStore;

/// How long an unused pooled connection is kept.
const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(30);

/// The most an upstream connection buffers when reading (response head and body chunks). hyper's
/// default (~400 KiB) let 256 concurrent 1 MiB downloads hold ~190 MiB, 64 KiB ~66 MiB, 32 KiB
/// ~47 MiB at the same throughput (docs/benchmarks.md). It also bounds a response head: hyper
/// gives up (502) when this much holds no complete head, and the read that completes one may
/// take it to about twice this (nginx's `proxy_buffer_size` is 4–8 KiB, Node's limit 16 KiB).
const UPSTREAM_READ_BUFFER: usize = 32 * 1024;

/// The pooled hyper-util client proxied requests take (HTTP or HTTPS with the destination's TLS).
pub type ForwardClient = hyper_util::client::legacy::Client<
    hyper_rustls::HttpsConnector<hyper_util::client::legacy::connect::HttpConnector>,
    axum::body::Body,
>;

/// Why the upstream clients could not be built.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    #[error("destination `{destination}`: TLS settings rejected: {source}")]
    Tls {
        destination: String,
        source: rustls::Error,
    },
    #[error("destination `{destination}`: HTTP client could not be built: {source}")]
    Client {
        destination: String,
        source: reqwest::Error,
    },
}

/// The client of one destination.
#[derive(Debug, Clone)]
pub struct UpstreamClient {
    http: reqwest::Client,
    /// The proxied path; `None` for destinations behind a forward proxy (reqwest speaks to it).
    forward: Option<Box<ForwardClient>>,
    /// HTTP/1.1 only, for WebSocket upgrades (built only when xs-app.json enables websockets):
    /// an upgrade needs HTTP/1.1, which ALPN might otherwise negotiate away.
    websocket: Option<reqwest::Client>,
    /// The destination URL without trailing slash, ready to have a path appended.
    base: Arc<str>,
}

impl UpstreamClient {
    fn build(
        destination: &Destination,
        roots: &Arc<RootCertStore>,
        identity: Option<Arc<dyn ResolvesClientCert>>,
        websockets: bool,
    ) -> Result<Self, UpstreamError> {
        let tls = tls::client_config(roots.clone(), destination.strict_ssl, identity).map_err(
            |source| UpstreamError::Tls {
                destination: destination.name.clone(),
                source,
            },
        )?;
        let websocket = if websockets {
            let mut tls = tls.clone();
            tls.alpn_protocols = vec![b"http/1.1".to_vec()];
            Some(http_client(destination, tls, true)?)
        } else {
            None
        };
        let forward = match destination.proxy {
            Some(_) => None,
            None => Some(Box::new(forward_client(destination, tls.clone()))),
        };
        let http = http_client(destination, tls, false)?;
        let mut base = destination.url.as_str().trim_end_matches('/').to_owned();
        // WebSocket destinations are reached over HTTP(S) for ordinary requests.
        if let Some(rest) = base.strip_prefix("ws://") {
            base = format!("http://{rest}");
        } else if let Some(rest) = base.strip_prefix("wss://") {
            base = format!("https://{rest}");
        }
        Ok(Self {
            http,
            forward,
            websocket,
            base: base.into(),
        })
    }

    /// The client of a destination looked up in the Destination service (built when it is looked
    /// up); `websockets` as xs-app.json `websockets.enabled`.
    pub fn for_service_destination(
        destination: &Destination,
        roots: &Arc<RootCertStore>,
        identity: Option<Arc<dyn ResolvesClientCert>>,
        websockets: bool,
    ) -> Result<Self, UpstreamError> {
        Self::build(destination, roots, identity, websockets)
    }

    /// The upstream URL for a rewritten request URL (path and query).
    pub fn url_for(&self, rewritten: &str) -> String {
        let path = rewritten.trim_start_matches('/');
        let mut url = String::with_capacity(self.base.len() + 1 + path.len());
        url.push_str(&self.base);
        url.push('/');
        url.push_str(path);
        url
    }

    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }

    /// The client proxied requests take, unless the destination is behind a forward proxy.
    pub fn forward(&self) -> Option<&ForwardClient> {
        self.forward.as_deref()
    }

    /// The HTTP/1.1 client for WebSocket upgrades, when websockets are enabled.
    pub fn websocket(&self) -> Option<&reqwest::Client> {
        self.websocket.as_ref()
    }
}

/// A pooled reqwest client with the destination's TLS, proxy and connect timeout.
fn http_client(
    destination: &Destination,
    tls: rustls::ClientConfig,
    http1_only: bool,
) -> Result<reqwest::Client, UpstreamError> {
    let mut builder = reqwest::Client::builder()
        .tls_backend_preconfigured(tls)
        .redirect(reqwest::redirect::Policy::none())
        .referer(false)
        .tcp_nodelay(true)
        .pool_idle_timeout(POOL_IDLE_TIMEOUT)
        .connect_timeout(destination.timeout);
    if http1_only {
        builder = builder.http1_only();
    }
    builder = match &destination.proxy {
        Some(proxy) => builder.proxy(reqwest::Proxy::all(proxy.as_str()).map_err(|source| {
            UpstreamError::Client {
                destination: destination.name.clone(),
                source,
            }
        })?),
        None => builder.no_proxy(),
    };
    builder.build().map_err(|source| UpstreamError::Client {
        destination: destination.name.clone(),
        source,
    })
}

/// The pooled hyper-util client of a destination: its TLS (ALPN h2 and HTTP/1.1), the
/// destination `timeout` for connecting, no Nagle delay.
fn forward_client(destination: &Destination, mut tls: rustls::ClientConfig) -> ForwardClient {
    use hyper_util::client::legacy::connect::HttpConnector;
    // The connector sets ALPN itself (h2, http/1.1) and refuses a config that has it already.
    tls.alpn_protocols.clear();
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_nodelay(true);
    http.set_connect_timeout(Some(destination.timeout));
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1()
        .enable_http2()
        .wrap_connector(http);
    hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .pool_idle_timeout(POOL_IDLE_TIMEOUT)
        .http1_max_buf_size(UPSTREAM_READ_BUFFER)
        .pool_timer(hyper_util::rt::TokioTimer::new())
        .timer(hyper_util::rt::TokioTimer::new())
        .build(connector)
}

/// The clients of one destination.
#[derive(Debug)]
enum DestinationClients {
    /// No client certificate.
    Plain(UpstreamClient),
    /// The router's certificate: one client per bound identity.
    Certificate {
        xsuaa: Option<UpstreamClient>,
        ias: Option<UpstreamClient>,
    },
}

/// The clients of all configured destinations, by name, and the identities they present.
#[derive(Debug)]
pub struct Upstreams {
    clients: HashMap<String, DestinationClients>,
    identities: Arc<IdentityStore>,
    roots: Arc<RootCertStore>,
}

impl Upstreams {
    pub fn build(runtime: &Runtime) -> Result<Self, UpstreamError> {
        crate::install_crypto_provider();
        let roots = Arc::new(tls::roots_with(&runtime.extra_roots).map_err(|source| {
            UpstreamError::Tls {
                destination: "(XS_CACERT_PATH)".to_owned(),
                source,
            }
        })?);
        let identities = Arc::new(IdentityStore::new(&runtime.identities));
        let websockets = runtime.websockets.enabled;
        let mut clients = HashMap::new();
        for (name, destination) in &runtime.destinations {
            let entry = if destination.forward_auth_certificates {
                let with = |kind| -> Result<Option<UpstreamClient>, UpstreamError> {
                    identities
                        .get(kind)
                        .map(|identity| {
                            let resolver: Arc<dyn ResolvesClientCert> = identity.clone();
                            UpstreamClient::build(destination, &roots, Some(resolver), websockets)
                        })
                        .transpose()
                };
                DestinationClients::Certificate {
                    xsuaa: with(AuthServiceKind::Xsuaa)?,
                    ias: with(AuthServiceKind::Ias)?,
                }
            } else {
                DestinationClients::Plain(UpstreamClient::build(
                    destination,
                    &roots,
                    None,
                    websockets,
                )?)
            };
            clients.insert(name.clone(), entry);
        }
        Ok(Self {
            clients,
            identities,
            roots,
        })
    }

    /// The client for `destination` on a route with the given authentication.
    pub fn client(
        &self,
        destination: &str,
        route: Option<AuthenticationType>,
    ) -> Option<&UpstreamClient> {
        match self.clients.get(destination)? {
            DestinationClients::Plain(client) => Some(client),
            DestinationClients::Certificate { xsuaa, ias } => {
                if route == Some(AuthenticationType::Ias) {
                    ias.as_ref().or(xsuaa.as_ref())
                } else {
                    xsuaa.as_ref().or(ias.as_ref())
                }
            }
        }
    }

    /// The trusted roots of outbound TLS (shared with the token service client).
    pub fn roots(&self) -> &Arc<RootCertStore> {
        &self.roots
    }

    /// The rotating identities, for the credential watcher.
    pub fn identities(&self) -> &Arc<IdentityStore> {
        &self.identities
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_join_with_exactly_one_slash() {
        crate::install_crypto_provider();
        let client = UpstreamClient {
            http: reqwest::Client::new(),
            forward: None,
            websocket: None,
            base: "http://h:1/base".into(),
        };
        assert_eq!(client.url_for("/v1/x?q=1"), "http://h:1/base/v1/x?q=1");
        assert_eq!(client.url_for("x"), "http://h:1/base/x");
        assert_eq!(client.url_for(""), "http://h:1/base/");
    }
}
