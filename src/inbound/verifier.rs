//! The rustls client-certificate verifier of the HTTPS listener: verifies the client's chain
//! against a [`TrustPolicy`] during the handshake, counts the result, and — in permissive mode —
//! accepts a certificate that fails (the listener re-runs the policy afterwards to learn why,
//! so no state is shared between handshake and connection). The handshake signature is always
//! checked: a client must own the key of whatever certificate it presents.
//!
//! A chain the handshake accepted can still be one the router cannot parse (an extra
//! certificate that is not X.509, an extension the parser refuses). A permissive listener keeps
//! it as `FAILED:unable to decode certificate` ([`unparsable_certificate`]), like any other
//! failure; otherwise the connection is closed.

use std::sync::Arc;

use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::{WebPkiSupportedAlgorithms, verify_tls12_signature, verify_tls13_signature};
use rustls::pki_types::{CertificateDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{DigitallySignedStruct, DistinguishedName, SignatureScheme};

use super::client_cert::ClientCertificate;
use super::headers_out::Verification;
use super::trust::TrustPolicy;
use super::verify_result::{VerificationCounters, VerifyFailure};

/// A client-certificate verifier for one host configuration.
#[derive(Debug)]
pub struct ClientVerifier {
    policy: Arc<TrustPolicy>,
    mandatory: bool,
    permissive: bool,
    algorithms: WebPkiSupportedAlgorithms,
    counters: Arc<VerificationCounters>,
}

impl ClientVerifier {
    /// `mandatory`: no certificate, no connection. `permissive`: a certificate that fails
    /// verification is still accepted (never together with `mandatory`).
    pub fn new(
        policy: Arc<TrustPolicy>,
        mandatory: bool,
        permissive: bool,
        counters: Arc<VerificationCounters>,
    ) -> Self {
        Self {
            policy,
            mandatory,
            permissive: permissive && !mandatory,
            algorithms: rustls::crypto::ring::default_provider().signature_verification_algorithms,
            counters,
        }
    }
}

impl ClientCertVerifier for ClientVerifier {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        self.mandatory
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.policy.hints()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        match self.policy.verify(end_entity, intermediates, now) {
            Ok(()) => {
                self.counters.success();
                Ok(ClientCertVerified::assertion())
            }
            Err(failure) => {
                self.counters.failed(failure);
                if self.permissive {
                    Ok(ClientCertVerified::assertion())
                } else {
                    Err(failure.to_rustls())
                }
            }
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// The certificate of a permissive connection whose chain does not parse, and its result:
/// `FAILED:unable to decode certificate` (whatever path building made of it).
pub fn unparsable_certificate(chain: &[CertificateDer<'_>]) -> (ClientCertificate, Verification) {
    (
        ClientCertificate::unparsed(chain),
        Verification::Failed(VerifyFailure::BadEncoding.reason().to_owned()),
    )
}
