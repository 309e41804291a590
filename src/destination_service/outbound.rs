//! Upstream clients of service destinations. A client is kept across lookups (bounded, dropped
//! when unused for a while) so its connection pool survives a cache refresh; it is keyed by
//! everything that shapes it — URL, timeout, the destination's own certificate chain, its trust
//! store, and whether it forwards the router's certificate — so a changed configuration gets a
//! new client.
//!
//! TLS identity, first match wins (as approuter): the destination's own keystore
//! (`ClientCertificateAuthentication`), else with `HTML5.ForwardAuthCertificates` the router's
//! bound XSUAA/IAS identity (per route, as for `destinations` entries), else none. A
//! `TrustStoreLocation` replaces the default roots for that destination.

use std::sync::Arc;
use std::time::Duration;

use moka::future::Cache;
use rustls::RootCertStore;
use rustls::client::ResolvesClientCert;
use rustls::pki_types::CertificateDer;

use super::lookup::FixedClientCert;
use crate::config::Destination;
use crate::config::bindings::AuthServiceKind;
use crate::config::xs_app::AuthenticationType;
use crate::identity::ClientIdentity;
use crate::identity::rotation::IdentityStore;
use crate::upstream::UpstreamClient;

/// Most service-destination clients kept.
const CAPACITY: u64 = 1_000;
/// A client unused this long is dropped (with its idle connections).
const IDLE: Duration = Duration::from_secs(15 * 60);

/// The client(s) of one service destination.
#[derive(Debug)]
pub enum DestinationClient {
    Plain(UpstreamClient),
    /// `HTML5.ForwardAuthCertificates`: one client per bound identity.
    RouterIdentity {
        xsuaa: Option<UpstreamClient>,
        ias: Option<UpstreamClient>,
    },
}

impl DestinationClient {
    /// The client for a route with the given authentication: IAS routes present the IAS
    /// identity, others the XSUAA one, each falling back to the other.
    pub fn for_route(&self, route: Option<AuthenticationType>) -> Option<&UpstreamClient> {
        match self {
            Self::Plain(client) => Some(client),
            Self::RouterIdentity { xsuaa, ias } => {
                if route == Some(AuthenticationType::Ias) {
                    ias.as_ref().or(xsuaa.as_ref())
                } else {
                    xsuaa.as_ref().or(ias.as_ref())
                }
            }
        }
    }
}

/// What a destination's TLS is made of, besides the destination itself.
#[derive(Debug, Clone, Copy, Default)]
pub struct ClientTls<'a> {
    /// The destination's own client identity.
    pub identity: Option<&'a ClientIdentity>,
    /// The destination's trust store, replacing the default roots.
    pub trust: Option<&'a [CertificateDer<'static>]>,
}

/// Builds and keeps the clients of service destinations.
pub struct OutboundClients {
    cache: Cache<[u8; 32], Arc<DestinationClient>>,
    roots: Arc<RootCertStore>,
    identities: Arc<IdentityStore>,
    /// xs-app.json `websockets.enabled`: clients can also upgrade.
    websockets: bool,
}

impl std::fmt::Debug for OutboundClients {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OutboundClients")
            .field("clients", &self.cache.entry_count())
            .finish()
    }
}

/// Why a client could not be built (a reason for the log).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct OutboundError(pub String);

fn key_of(destination: &Destination, tls: ClientTls<'_>) -> [u8; 32] {
    let mut digest = ring::digest::Context::new(&ring::digest::SHA256);
    let mut field = |bytes: &[u8]| {
        digest.update(&(bytes.len() as u64).to_be_bytes());
        digest.update(bytes);
    };
    field(destination.url.as_str().as_bytes());
    field(&(destination.timeout.as_millis() as u64).to_be_bytes());
    field(&[u8::from(destination.forward_auth_certificates)]);
    for certificate in tls.identity.map(ClientIdentity::chain).unwrap_or_default() {
        field(b"identity");
        field(certificate);
    }
    for certificate in tls.trust.unwrap_or_default() {
        field(b"trust");
        field(certificate);
    }
    let mut out = [0u8; 32];
    out.copy_from_slice(digest.finish().as_ref());
    out
}

impl OutboundClients {
    pub fn new(
        roots: Arc<RootCertStore>,
        identities: Arc<IdentityStore>,
        websockets: bool,
    ) -> Self {
        Self {
            cache: Cache::builder()
                .max_capacity(CAPACITY)
                .time_to_idle(IDLE)
                .build(),
            roots,
            identities,
            websockets,
        }
    }

    /// The client for `destination` with `tls`, built once and reused.
    pub async fn client(
        &self,
        destination: &Destination,
        tls: ClientTls<'_>,
    ) -> Result<Arc<DestinationClient>, OutboundError> {
        self.cache
            .try_get_with(key_of(destination, tls), async {
                self.build(destination, tls).map(Arc::new)
            })
            .await
            .map_err(|err| (*err).clone())
    }

    fn build(
        &self,
        destination: &Destination,
        tls: ClientTls<'_>,
    ) -> Result<DestinationClient, OutboundError> {
        let roots = match tls.trust {
            Some(trust) => {
                let mut roots = RootCertStore::empty();
                for certificate in trust {
                    roots.add(certificate.clone()).map_err(|err| {
                        OutboundError(format!("a trust store certificate is unusable: {err}"))
                    })?;
                }
                Arc::new(roots)
            }
            None => self.roots.clone(),
        };
        let build = |identity: Option<Arc<dyn ResolvesClientCert>>| {
            UpstreamClient::for_service_destination(destination, &roots, identity, self.websockets)
                .map_err(|err| OutboundError(err.to_string()))
        };
        if let Some(identity) = tls.identity {
            let resolver: Arc<dyn ResolvesClientCert> =
                Arc::new(FixedClientCert(identity.certified.clone()));
            return Ok(DestinationClient::Plain(build(Some(resolver))?));
        }
        if !destination.forward_auth_certificates {
            return Ok(DestinationClient::Plain(build(None)?));
        }
        let with = |kind| {
            self.identities
                .get(kind)
                .map(|identity| {
                    let resolver: Arc<dyn ResolvesClientCert> = identity.clone();
                    build(Some(resolver))
                })
                .transpose()
        };
        let (xsuaa, ias) = (with(AuthServiceKind::Xsuaa)?, with(AuthServiceKind::Ias)?);
        if xsuaa.is_none() && ias.is_none() {
            return Err(OutboundError(
                "`HTML5.ForwardAuthCertificates` needs a bound XSUAA or IAS service with a certificate"
                    .to_owned(),
            ));
        }
        Ok(DestinationClient::RouterIdentity { xsuaa, ias })
    }
}
