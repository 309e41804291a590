//! Builds the rustls server configurations of the HTTPS listener from the configured sites:
//! reads the server certificate and key and the client-certificate trust files, and picks the
//! client verifier (none, or [`ClientVerifier`] over a [`TrustPolicy`]). [`TlsSites`] is one
//! immutable snapshot — the default site plus the sites chosen by SNI — swapped whole on reload.

use std::collections::HashMap;
use std::sync::Arc;

use rustls::pki_types::PrivateKeyDer;
use rustls::pki_types::pem::PemObject;
use rustls::server::danger::ClientCertVerifier;
use rustls::server::{ServerConfig, WebPkiClientVerifier};

use super::trust::{FileRole, MaterialError, TrustPolicy, read_certificates, read_file};
use super::verifier::ClientVerifier;
use super::verify_result::VerificationCounters;
use crate::config::inbound_tls::{ClientCertMode, InboundTls, TlsSite};
use crate::identity::certificate::{CertificateSummary, summary};

/// Whether `host` (lowercase or not, without port) is `pattern`: equal ignoring ASCII case, or
/// for `*.parent` one more label in front of `parent` (as TLS certificates match wildcards).
pub fn server_name_matches(pattern: &str, host: &str) -> bool {
    match pattern.strip_prefix("*.") {
        Some(parent) => host.split_once('.').is_some_and(|(label, rest)| {
            !label.is_empty() && label != "*" && rest.eq_ignore_ascii_case(parent)
        }),
        None => pattern.eq_ignore_ascii_case(host),
    }
}

/// One site, ready to serve.
#[derive(Debug)]
pub struct HostTls {
    pub config: Arc<ServerConfig>,
    /// The trust policy client certificates are verified against (`None` when none are asked).
    pub policy: Option<Arc<TrustPolicy>>,
    /// A failing certificate is accepted; the listener re-verifies it to learn why.
    pub permissive: bool,
    /// The handshake asks for a client certificate (mode `optional` or `require`).
    pub asks_for_certificates: bool,
    /// `default` or the site's SNI names, for logs.
    pub label: String,
    /// Subject, issuer and validity of the server certificate, for logs.
    pub server_certificate: Option<CertificateSummary>,
}

impl HostTls {
    /// Reads the site's files and builds its rustls configuration (ring provider, HTTP/2 and
    /// HTTP/1.1 by ALPN). Verification results are counted in `counters`.
    pub fn build(
        site: &TlsSite,
        counters: &Arc<VerificationCounters>,
    ) -> Result<Self, MaterialError> {
        let chain = read_certificates(FileRole::ServerCertificate, &site.cert_file)?;
        let server_certificate = chain.first().and_then(|leaf| summary(leaf).ok());
        let key_bytes = read_file(FileRole::ServerKey, &site.key_file)?;
        let key = PrivateKeyDer::from_pem_slice(&key_bytes).map_err(|err| {
            MaterialError::new(
                FileRole::ServerKey,
                &site.key_file,
                format!("no usable PEM private key (PKCS#8, PKCS#1 or SEC1): {err}"),
            )
        })?;
        let auth = &site.client_auth;
        let (verifier, policy): (Arc<dyn ClientCertVerifier>, _) = match auth.mode {
            ClientCertMode::Off => (WebPkiClientVerifier::no_client_auth(), None),
            mode => {
                let policy = Arc::new(TrustPolicy::load(auth)?);
                let verifier = ClientVerifier::new(
                    policy.clone(),
                    mode == ClientCertMode::Require,
                    auth.permissive,
                    counters.clone(),
                );
                (Arc::new(verifier), Some(policy))
            }
        };
        let server_error = |err: rustls::Error| {
            MaterialError::new(
                FileRole::ServerCertificate,
                &site.cert_file,
                format!("server certificate and key: {err}"),
            )
        };
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(server_error)?
            .with_client_cert_verifier(verifier)
            .with_single_cert(chain, key)
            .map_err(server_error)?;
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(Self {
            config: Arc::new(config),
            policy,
            permissive: auth.permissive && auth.mode == ClientCertMode::Optional,
            asks_for_certificates: auth.mode != ClientCertMode::Off,
            label: if site.server_names.is_empty() {
                "default".to_owned()
            } else {
                site.server_names.join(",")
            },
            server_certificate,
        })
    }
}

/// Which site a [`SiteError`] is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SiteRef {
    /// The `XSROUTER_TLS_*` / `XSROUTER_CLIENT_*` variables.
    Default,
    /// Entry n of `XSROUTER_TLS_HOSTS`.
    Host(usize),
}

/// A site whose files cannot be used.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{}: {error}", match site { SiteRef::Default => "default site".to_owned(), SiteRef::Host(i) => format!("XSROUTER_TLS_HOSTS[{i}]") })]
pub struct SiteError {
    pub site: SiteRef,
    pub error: MaterialError,
}

/// Every site of the listener, as built from the files at one moment.
#[derive(Debug)]
pub struct TlsSites {
    default: HostTls,
    hosts: Vec<HostTls>,
    by_name: HashMap<Box<str>, usize>,
    /// SNI names of the sites that ask for client certificates.
    client_auth_names: Arc<[Arc<str>]>,
}

impl TlsSites {
    /// Builds every site of `tls`; the errors of every site that fails.
    pub fn build(
        tls: &InboundTls,
        counters: &Arc<VerificationCounters>,
    ) -> Result<Self, Vec<SiteError>> {
        let mut errors = Vec::new();
        let default = match &tls.server {
            Some(site) => HostTls::build(site, counters).map_err(|error| SiteError {
                site: SiteRef::Default,
                error,
            }),
            None => Err(SiteError {
                site: SiteRef::Default,
                error: MaterialError::new(
                    FileRole::ServerCertificate,
                    std::path::Path::new("XSROUTER_TLS_CERT"),
                    "the HTTPS listener is not configured",
                ),
            }),
        };
        let mut hosts = Vec::new();
        let mut by_name = HashMap::new();
        let mut client_auth_names = Vec::new();
        for (i, site) in tls.sni_sites.iter().enumerate() {
            match HostTls::build(site, counters) {
                Ok(host) => {
                    for name in &site.server_names {
                        by_name.insert(name.as_str().into(), hosts.len());
                        if host.asks_for_certificates {
                            client_auth_names.push(Arc::from(name.as_str()));
                        }
                    }
                    hosts.push(host);
                }
                Err(error) => errors.push(SiteError {
                    site: SiteRef::Host(i),
                    error,
                }),
            }
        }
        match default {
            Ok(default) if errors.is_empty() => Ok(Self {
                default,
                hosts,
                by_name,
                client_auth_names: client_auth_names.into(),
            }),
            Ok(_) => Err(errors),
            Err(error) => {
                errors.insert(0, error);
                Err(errors)
            }
        }
    }

    /// The site for the SNI name a client sent (lowercase): an exact name first, then a
    /// `*.parent` wildcard for one leading label; the default site otherwise.
    pub fn select(&self, server_name: Option<&str>) -> &HostTls {
        server_name
            .and_then(|name| {
                self.by_name.get(name).or_else(|| {
                    let (_, parent) = name.split_once('.')?;
                    self.by_name.get(format!("*.{parent}").as_str())
                })
            })
            .and_then(|i| self.hosts.get(*i))
            .unwrap_or(&self.default)
    }

    /// Every site, the default first.
    pub fn sites(&self) -> impl Iterator<Item = &HostTls> {
        std::iter::once(&self.default).chain(&self.hosts)
    }

    /// SNI names (or `*.parent` patterns) of the sites that ask for client certificates.
    pub fn client_auth_names(&self) -> &Arc<[Arc<str>]> {
        &self.client_auth_names
    }
}

#[cfg(test)]
mod tests {
    use super::server_name_matches;

    #[test]
    fn wildcards_cover_exactly_one_leading_label() {
        assert!(server_name_matches("api.example.com", "API.example.com"));
        assert!(!server_name_matches("api.example.com", "www.example.com"));
        assert!(server_name_matches("*.example.com", "api.example.com"));
        assert!(!server_name_matches("*.example.com", "example.com"));
        assert!(!server_name_matches("*.example.com", "a.b.example.com"));
        assert!(!server_name_matches("*.example.com", ".example.com"));
    }
}
