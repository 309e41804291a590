//! Re-verification of a certificate a trusted proxy forwarded: the same WebPKI client-certificate
//! check the TLS listener runs in the handshake (rustls `WebPkiClientVerifier`, ring provider),
//! against the router's client CA bundles, with the intermediates the proxy forwarded.
//!
//! Proxies such as Envoy without `trusted_ca`, nginx `optional_no_ca` or Azure Application
//! Gateway in passthrough pass certificates they never verified; re-verifying is the default.

use std::fmt;
use std::sync::Arc;

use rustls::RootCertStore;
use rustls::pki_types::{CertificateDer, UnixTime};
use rustls::server::WebPkiClientVerifier;
use rustls::server::danger::ClientCertVerifier;

use super::client_cert::ClientCertificate;
use super::headers_out::Verification;

/// Why the verifier could not be built.
#[derive(Debug, thiserror::Error)]
pub enum ReverifyError {
    #[error("no CA certificate to verify forwarded client certificates against")]
    NoAnchors,
    #[error("CA certificate {index} is not usable as a trust anchor: {source}")]
    Anchor { index: usize, source: rustls::Error },
    #[error("client certificate verifier: {0}")]
    Builder(#[from] rustls::server::VerifierBuilderError),
}

/// Verifies forwarded client certificates against fixed trust anchors.
#[derive(Clone)]
pub struct ForwardedCertVerifier {
    verifier: Arc<dyn ClientCertVerifier>,
}

impl fmt::Debug for ForwardedCertVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ForwardedCertVerifier")
    }
}

impl ForwardedCertVerifier {
    /// A verifier trusting `anchors` (every certificate of the client CA bundles).
    pub fn new(anchors: &[CertificateDer<'static>]) -> Result<Self, ReverifyError> {
        if anchors.is_empty() {
            return Err(ReverifyError::NoAnchors);
        }
        let mut roots = RootCertStore::empty();
        for (index, ca) in anchors.iter().enumerate() {
            roots
                .add(ca.clone())
                .map_err(|source| ReverifyError::Anchor { index, source })?;
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let verifier =
            WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider).build()?;
        Ok(Self { verifier })
    }

    /// Verifies `certificate` (leaf plus the intermediates forwarded with it) now.
    pub fn verify(&self, certificate: &ClientCertificate) -> Verification {
        self.verify_at(certificate, UnixTime::now())
    }

    pub fn verify_at(&self, certificate: &ClientCertificate, now: UnixTime) -> Verification {
        let leaf = CertificateDer::from(certificate.leaf_der());
        let intermediates: Vec<CertificateDer<'_>> = certificate
            .chain_der()
            .iter()
            .map(|der| CertificateDer::from(der.as_slice()))
            .collect();
        match self.verifier.verify_client_cert(&leaf, &intermediates, now) {
            Ok(_) => Verification::Success,
            Err(err) => Verification::Failed(failure_reason(&err)),
        }
    }
}

/// A short reason for `FAILED:<reason>` (nginx style), without certificate contents.
fn failure_reason(err: &rustls::Error) -> String {
    use rustls::CertificateError as C;
    match err {
        rustls::Error::InvalidCertificate(cert) => match cert {
            C::UnknownIssuer => "unknown issuer".to_owned(),
            C::Expired | C::ExpiredContext { .. } => "certificate expired".to_owned(),
            C::NotValidYet | C::NotValidYetContext { .. } => "certificate not yet valid".to_owned(),
            C::Revoked => "certificate revoked".to_owned(),
            C::BadSignature => "bad signature".to_owned(),
            C::InvalidPurpose | C::InvalidPurposeContext { .. } => {
                "not a client certificate".to_owned()
            }
            C::UnknownRevocationStatus => "unknown revocation status".to_owned(),
            other => format!("{other:?}")
                .split(['(', ' ', '{'])
                .next()
                .unwrap_or("invalid certificate")
                .to_owned(),
        },
        _ => "invalid certificate".to_owned(),
    }
}
