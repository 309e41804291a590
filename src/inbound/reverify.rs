//! Re-verification of a certificate a trusted proxy forwarded: the same [`TrustPolicy`] the TLS
//! listener applies in the handshake (CA bundles with their intermediates, pinned issuers, chain
//! depth, CRLs), with the intermediates the proxy forwarded, for client-auth usage.
//!
//! Proxies such as Envoy without `trusted_ca`, nginx `optional_no_ca` or Azure Application
//! Gateway in passthrough pass certificates they never verified; re-verifying is the default.

use std::fmt;
use std::sync::Arc;

use rustls::pki_types::{CertificateDer, UnixTime};

use super::client_cert::ClientCertificate;
use super::headers_out::Verification;
use super::trust::{MaterialError, TrustPolicy};
use crate::config::inbound_tls::ClientAuth;

/// Verifies forwarded client certificates against a trust policy loaded at start-up.
#[derive(Clone)]
pub struct ForwardedCertVerifier {
    policy: Arc<TrustPolicy>,
}

impl fmt::Debug for ForwardedCertVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ForwardedCertVerifier")
    }
}

impl ForwardedCertVerifier {
    /// Reads the CA bundles, pinned issuers and CRLs of `auth`.
    pub fn new(auth: &ClientAuth) -> Result<Self, MaterialError> {
        Ok(Self {
            policy: Arc::new(TrustPolicy::load(auth)?),
        })
    }

    /// Verifies `certificate` (leaf plus the intermediates forwarded with it) now.
    pub fn verify(&self, certificate: &ClientCertificate) -> Verification {
        self.verify_at(certificate, UnixTime::now())
    }

    /// `FAILED:<reason>` uses the words nginx/OpenSSL use, as the listener's permissive mode.
    pub fn verify_at(&self, certificate: &ClientCertificate, now: UnixTime) -> Verification {
        let leaf = CertificateDer::from(certificate.leaf_der());
        let intermediates: Vec<CertificateDer<'_>> = certificate
            .chain_der()
            .iter()
            .map(|der| CertificateDer::from(der.as_slice()))
            .collect();
        match self.policy.verify(&leaf, &intermediates, now) {
            Ok(()) => Verification::Success,
            Err(failure) => Verification::Failed(failure.reason().to_owned()),
        }
    }
}
