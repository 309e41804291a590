//! Re-verification of a certificate a trusted proxy forwarded: the same [`TrustPolicy`] the TLS
//! listener applies in the handshake (CA bundles with their intermediates, pinned issuers, chain
//! depth, CRLs), with the intermediates the proxy forwarded, for client-auth usage.
//!
//! Proxies such as Envoy without `trusted_ca`, nginx `optional_no_ca` or Azure Application
//! Gateway in passthrough pass certificates they never verified; re-verifying is the default.
//!
//! A proxy forwards the same few certificates over and over, so results are kept for a minute
//! (bounded; a success never beyond the certificate's `notAfter`): path building and signature
//! checks run once per certificate and minute, not once per request.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use moka::future::Cache;
use rustls::pki_types::{CertificateDer, UnixTime};

use super::client_cert::ClientCertificate;
use super::headers_out::Verification;
use super::trust::{MaterialError, TrustPolicy};
use crate::config::inbound_tls::ClientAuth;

/// How many recent results are kept, and for how long at most.
const RECENT_CAPACITY: u64 = 10_000;
const RECENT_SECONDS: u64 = 60;

/// A recent result and the Unix second until which it may be used.
#[derive(Clone)]
struct Recent {
    verification: Verification,
    until: u64,
}

/// Verifies forwarded client certificates against a trust policy loaded at start-up.
#[derive(Clone)]
pub struct ForwardedCertVerifier {
    policy: Arc<TrustPolicy>,
    /// Keyed by SHA-256 over the leaf and the forwarded chain.
    recent: Cache<[u8; 32], Recent>,
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
            recent: Cache::builder()
                .max_capacity(RECENT_CAPACITY)
                .time_to_live(Duration::from_secs(RECENT_SECONDS))
                .build(),
        })
    }

    /// Verifies `certificate` (leaf plus the intermediates forwarded with it) now, or takes a
    /// recent result for the same leaf and chain.
    pub async fn verify(&self, certificate: &ClientCertificate) -> Verification {
        self.verify_recent(certificate, UnixTime::now()).await
    }

    async fn verify_recent(&self, certificate: &ClientCertificate, now: UnixTime) -> Verification {
        let key = recent_key(certificate);
        let seconds = now.as_secs();
        if let Some(recent) = self.recent.get(&key).await
            && seconds < recent.until
        {
            return recent.verification;
        }
        let verification = self.verify_at(certificate, now);
        let mut until = seconds.saturating_add(RECENT_SECONDS);
        if verification == Verification::Success {
            // One second past notAfter it must fail; `until` is exclusive.
            let not_after = u64::try_from(certificate.not_after()).unwrap_or(0);
            until = until.min(not_after.saturating_add(1));
        }
        self.recent
            .insert(
                key,
                Recent {
                    verification: verification.clone(),
                    until,
                },
            )
            .await;
        verification
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

/// SHA-256 over the leaf's digest and every forwarded chain certificate (length-prefixed).
fn recent_key(certificate: &ClientCertificate) -> [u8; 32] {
    let mut context = ring::digest::Context::new(&ring::digest::SHA256);
    context.update(certificate.sha256());
    for der in certificate.chain_der() {
        context.update(&(der.len() as u64).to_be_bytes());
        context.update(der);
    }
    let mut key = [0u8; 32];
    key.copy_from_slice(context.finish().as_ref());
    key
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};

    fn new_ca() -> CertifiedIssuer<'static, KeyPair> {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        CertifiedIssuer::self_signed(params, KeyPair::generate().expect("key")).expect("ca")
    }

    /// A client leaf valid for one day from 2030-01-01.
    fn client_leaf(ca: &CertifiedIssuer<'static, KeyPair>) -> ClientCertificate {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
        params.not_before = rcgen::date_time_ymd(2030, 1, 1);
        params.not_after = rcgen::date_time_ymd(2030, 1, 2);
        params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
        let cert = params
            .signed_by(&KeyPair::generate().expect("key"), ca)
            .expect("leaf");
        ClientCertificate::from_der(cert.der().to_vec(), Vec::new()).expect("parse")
    }

    fn verifier(
        ca: &CertifiedIssuer<'static, KeyPair>,
    ) -> (ForwardedCertVerifier, tempfile::TempDir) {
        let dir = tempfile::tempdir().expect("dir");
        let file = dir.path().join("ca.pem");
        std::fs::write(&file, ca.pem()).expect("write");
        let auth = ClientAuth {
            ca_files: vec![file],
            ..ClientAuth::default()
        };
        (ForwardedCertVerifier::new(&auth).expect("verifier"), dir)
    }

    #[tokio::test]
    async fn a_recent_success_never_outlives_the_certificate() {
        let ca = new_ca();
        let (verifier, _dir) = verifier(&ca);
        let leaf = client_leaf(&ca);
        let not_after = u64::try_from(leaf.not_after()).expect("after 1970");
        let at = |secs: u64| UnixTime::since_unix_epoch(Duration::from_secs(secs));
        // Ten seconds before notAfter: verified, and kept.
        assert_eq!(
            verifier.verify_recent(&leaf, at(not_after - 10)).await,
            Verification::Success
        );
        assert_eq!(
            verifier.verify_recent(&leaf, at(not_after - 5)).await,
            Verification::Success
        );
        // Past notAfter the kept success is not used.
        assert_eq!(
            verifier.verify_recent(&leaf, at(not_after + 5)).await,
            Verification::Failed("certificate has expired".into())
        );
        // A certificate of another CA fails, and is kept as failed.
        let stranger = client_leaf(&new_ca());
        let first = verifier.verify_recent(&stranger, at(not_after - 10)).await;
        assert!(matches!(first, Verification::Failed(_)), "{first:?}");
        assert_eq!(
            verifier.verify_recent(&stranger, at(not_after - 9)).await,
            first
        );
    }
}
