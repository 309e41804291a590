//! The request's effective client certificate: the one verified in the router's own TLS
//! handshake, or — when the direct peer is a trusted proxy — the one that proxy forwarded in
//! its configured header (re-verified by default), with its verification state
//! (`SUCCESS` / `FAILED:<reason>` / `NONE`). Route rules and the headers sent to destinations
//! both use this one value. Resolving it also strips every client-certificate header from the
//! request, so nothing a client sent is ever passed on.

use std::net::IpAddr;
use std::sync::Arc;

use http::HeaderMap;

use super::client_cert::ClientCertificate;
use super::forwarded::ForwardedCertError;
use super::headers_out::{Verification, strip_client_cert_headers};
use super::listener::TlsConnection;
use super::trusted_proxy::{ForwardedVerification, TrustedProxies};

const XFCC: &str = "x-forwarded-client-cert";

/// Where the effective certificate came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CertificateSource {
    /// No certificate.
    #[default]
    None,
    /// The router's own TLS handshake.
    Handshake,
    /// A trusted proxy's header.
    Forwarded,
}

/// The client certificate of one request and how it was verified.
#[derive(Debug, Clone)]
pub struct EffectiveClientCert {
    certificate: Option<Arc<ClientCertificate>>,
    verification: Verification,
    source: CertificateSource,
    /// The verified certificate the direct peer presented in the handshake (a trusted proxy's
    /// own, or the client's): the subject of this hop's XFCC element in Envoy's
    /// `append_forward` / `forward_only` modes.
    connection_certificate: Option<Arc<ClientCertificate>>,
    /// The XFCC a trusted proxy sent (repeated instances joined with `,`), kept for Envoy's
    /// forwarding modes; never set for other peers or when the forwarded certificate failed
    /// re-verification.
    incoming_xfcc: Option<String>,
    /// The direct peer is a trusted proxy.
    via_trusted_proxy: bool,
}

impl Default for EffectiveClientCert {
    /// No certificate (`NONE`).
    fn default() -> Self {
        Self {
            certificate: None,
            verification: Verification::Success,
            source: CertificateSource::None,
            connection_certificate: None,
            incoming_xfcc: None,
            via_trusted_proxy: false,
        }
    }
}

impl EffectiveClientCert {
    /// Resolves the certificate of a request from `peer` (over `tls` when it came over the
    /// router's TLS listener), then strips every client-certificate header from `headers`.
    /// A malformed forwarded header from a trusted proxy is an error (answer 400).
    pub async fn resolve(
        trusted: Option<&TrustedProxies>,
        peer: IpAddr,
        tls: Option<&TlsConnection>,
        headers: &mut HeaderMap,
    ) -> Result<Self, ForwardedCertError> {
        // Only a certificate that verified in the handshake identifies a peer.
        let connection_certificate = tls.and_then(|tls| tls.verified_certificate().cloned());
        let resolved = match trusted.filter(|t| t.trusts(peer, connection_certificate.as_deref())) {
            Some(proxies) => Self::forwarded(proxies, connection_certificate, headers).await,
            None => Ok(Self::handshake(tls, connection_certificate)),
        };
        let stripped = strip_client_cert_headers(headers);
        if stripped > 0
            && resolved
                .as_ref()
                .is_ok_and(|r| r.source != CertificateSource::Forwarded)
        {
            tracing::debug!(
                stripped,
                "removed client-certificate headers the peer sent (not a trusted proxy)"
            );
        }
        resolved
    }

    /// The certificate of the router's own handshake (permissive mode: possibly one that
    /// failed verification).
    fn handshake(
        tls: Option<&TlsConnection>,
        connection_certificate: Option<Arc<ClientCertificate>>,
    ) -> Self {
        match tls.and_then(|tls| Some((tls.client_certificate.clone()?, tls))) {
            Some((certificate, tls)) => Self {
                certificate: Some(certificate),
                verification: tls.verification.clone().unwrap_or(Verification::Unverified),
                source: CertificateSource::Handshake,
                connection_certificate,
                incoming_xfcc: None,
                via_trusted_proxy: false,
            },
            None => Self::default(),
        }
    }

    /// From a trusted proxy, the client certificate is the one in its header, or none: the
    /// proxy's own handshake certificate is never taken for the client's.
    async fn forwarded(
        proxies: &TrustedProxies,
        connection_certificate: Option<Arc<ClientCertificate>>,
        headers: &HeaderMap,
    ) -> Result<Self, ForwardedCertError> {
        let mut incoming_xfcc = joined_text(headers, XFCC);
        let Some(certificate) = proxies.format.parse(headers)? else {
            return Ok(Self {
                connection_certificate,
                incoming_xfcc,
                via_trusted_proxy: true,
                ..Self::default()
            });
        };
        let verification = match &proxies.verification {
            ForwardedVerification::Reverify(verifier) => verifier.verify(&certificate).await,
            ForwardedVerification::TrustProxy => Verification::Success,
        };
        if verification != Verification::Success {
            // A certificate the router refused is never passed on, not even verbatim.
            incoming_xfcc = None;
        }
        Ok(Self {
            certificate: Some(Arc::new(certificate)),
            verification,
            source: CertificateSource::Forwarded,
            connection_certificate,
            incoming_xfcc,
            via_trusted_proxy: true,
        })
    }

    /// The client certificate, if there is one (whatever its verification state).
    pub fn certificate(&self) -> Option<&ClientCertificate> {
        self.certificate.as_deref()
    }

    /// How the certificate was verified (meaningful only with a certificate).
    pub fn verification(&self) -> &Verification {
        &self.verification
    }

    pub fn source(&self) -> CertificateSource {
        self.source
    }

    pub fn connection_certificate(&self) -> Option<&ClientCertificate> {
        self.connection_certificate.as_deref()
    }

    /// The direct peer is a trusted proxy (whether or not it forwarded a certificate).
    pub fn via_trusted_proxy(&self) -> bool {
        self.via_trusted_proxy
    }

    pub fn incoming_xfcc(&self) -> Option<&str> {
        self.incoming_xfcc.as_deref()
    }

    /// `SUCCESS`, `FAILED:<reason>` or `NONE` (nginx's `$ssl_client_verify` words).
    pub fn status(&self) -> String {
        match (&self.certificate, &self.verification) {
            (None, _) => "NONE".to_owned(),
            (Some(_), Verification::Success) => "SUCCESS".to_owned(),
            (Some(_), Verification::Failed(reason)) => format!("FAILED:{reason}"),
            (Some(_), Verification::Unverified) => "FAILED:unverified".to_owned(),
        }
    }
}

/// Every instance of a header as text, joined with `,`; non-text instances are left out.
fn joined_text(headers: &HeaderMap, name: &str) -> Option<String> {
    let mut out: Option<String> = None;
    for value in headers.get_all(name) {
        let Ok(text) = value.to_str() else { continue };
        let joined = out.get_or_insert_with(String::new);
        if !joined.is_empty() {
            joined.push(',');
        }
        joined.push_str(text);
    }
    out
}
