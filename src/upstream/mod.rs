//! The upstream (outbound) side: one pooled HTTP client per destination, with that
//! destination's TLS settings, proxy and timeouts. Connections are kept alive and reused;
//! HTTPS upstreams that offer HTTP/2 get it through ALPN.

pub mod tls;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use rustls::RootCertStore;

use crate::config::{Destination, Runtime};

/// How long an unused pooled connection is kept.
const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(30);

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
    /// The destination URL without trailing slash, ready to have a path appended.
    base: Arc<str>,
}

impl UpstreamClient {
    fn build(destination: &Destination, roots: &Arc<RootCertStore>) -> Result<Self, UpstreamError> {
        let tls = tls::client_config(roots.clone(), destination.strict_ssl).map_err(|source| {
            UpstreamError::Tls {
                destination: destination.name.clone(),
                source,
            }
        })?;
        let mut builder = reqwest::Client::builder()
            .tls_backend_preconfigured(tls)
            .redirect(reqwest::redirect::Policy::none())
            .referer(false)
            .tcp_nodelay(true)
            .pool_idle_timeout(POOL_IDLE_TIMEOUT)
            .connect_timeout(destination.timeout);
        builder = match &destination.proxy {
            Some(proxy) => {
                builder.proxy(reqwest::Proxy::all(proxy.as_str()).map_err(|source| {
                    UpstreamError::Client {
                        destination: destination.name.clone(),
                        source,
                    }
                })?)
            }
            None => builder.no_proxy(),
        };
        let http = builder.build().map_err(|source| UpstreamError::Client {
            destination: destination.name.clone(),
            source,
        })?;
        let mut base = destination.url.as_str().trim_end_matches('/').to_owned();
        // WebSocket destinations are reached over HTTP(S) for ordinary requests.
        if let Some(rest) = base.strip_prefix("ws://") {
            base = format!("http://{rest}");
        } else if let Some(rest) = base.strip_prefix("wss://") {
            base = format!("https://{rest}");
        }
        Ok(Self {
            http,
            base: base.into(),
        })
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
}

/// The clients of all configured destinations, by name.
#[derive(Debug, Default)]
pub struct Upstreams {
    clients: HashMap<String, UpstreamClient>,
}

impl Upstreams {
    pub fn build(runtime: &Runtime) -> Result<Self, UpstreamError> {
        crate::install_crypto_provider();
        let roots = Arc::new(tls::default_roots());
        let mut clients = HashMap::new();
        for (name, destination) in &runtime.destinations {
            clients.insert(name.clone(), UpstreamClient::build(destination, &roots)?);
        }
        Ok(Self { clients })
    }

    pub fn get(&self, destination: &str) -> Option<&UpstreamClient> {
        self.clients.get(destination)
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
            base: "http://h:1/base".into(),
        };
        assert_eq!(client.url_for("/v1/x?q=1"), "http://h:1/base/v1/x?q=1");
        assert_eq!(client.url_for("x"), "http://h:1/base/x");
        assert_eq!(client.url_for(""), "http://h:1/base/");
    }
}
