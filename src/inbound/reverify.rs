//! Re-verification of a certificate a trusted proxy forwarded: the same trust settings the TLS
//! listener applies in the handshake (CA bundles with their intermediates, pinned issuers, chain
//! depth, CRLs and their revocation options), with the intermediates the proxy forwarded, for
//! client-auth usage.
//!
//! Proxies such as Envoy without `trusted_ca`, nginx `optional_no_ca` or Azure Application
//! Gateway in passthrough pass certificates they never verified; re-verifying is the default.
//!
//! The trust files are re-read without a restart, like the listener's ([`super::reload`]):
//! [`watch`] checks them on the reload interval and on SIGHUP — also when the router serves
//! plain HTTP behind its proxy — and only files whose size or modification time changed trigger
//! a rebuild. A new set that does not load is logged (file and reason, never contents) and the
//! previous policy stays in use.
//!
//! A proxy forwards the same few certificates over and over, so results are kept for a minute
//! (bounded; a success never beyond the certificate's `notAfter`, and never past a reload of the
//! trust files): path building and signature checks run once per certificate and minute, not
//! once per request.

use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;
use moka::future::Cache;
use rustls::pki_types::{CertificateDer, UnixTime};

use super::client_cert::ClientCertificate;
use super::headers_out::Verification;
use super::reload::{Fingerprint, Reloaded, client_auth_files, files_fingerprint};
use super::trust::{MaterialError, TrustPolicy};
use crate::config::inbound_tls::ClientAuth;
use crate::reload_schedule::ReloadSchedule;

/// How many recent results are kept, and for how long at most.
const RECENT_CAPACITY: u64 = 10_000;
const RECENT_SECONDS: u64 = 60;

/// A recent result, the Unix second until which it may be used, and the load of the trust files
/// it was computed with.
#[derive(Clone)]
struct Recent {
    verification: Verification,
    until: u64,
    generation: u64,
}

/// A trust policy and which load of the files it is (counting from 0 at start-up).
struct Loaded {
    policy: TrustPolicy,
    generation: u64,
}

/// What every clone of a [`ForwardedCertVerifier`] shares.
struct Shared {
    current: ArcSwap<Loaded>,
    settings: ClientAuth,
    /// The fingerprint of the files last tried (loaded or rejected); held while reloading.
    seen: Mutex<Fingerprint>,
    /// Keyed by SHA-256 over the leaf and the forwarded chain.
    recent: Cache<[u8; 32], Recent>,
}

/// Verifies forwarded client certificates against the current trust policy.
#[derive(Clone)]
pub struct ForwardedCertVerifier {
    shared: Arc<Shared>,
}

impl fmt::Debug for ForwardedCertVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ForwardedCertVerifier")
    }
}

impl ForwardedCertVerifier {
    /// Reads the CA bundles, pinned issuers and CRLs of `auth` (and keeps `auth` for reloads).
    pub fn new(auth: &ClientAuth) -> Result<Self, MaterialError> {
        // Taken before reading, so a change while loading is seen by the first reload.
        let seen = files_fingerprint(client_auth_files(auth));
        let policy = TrustPolicy::load(auth)?;
        Ok(Self {
            shared: Arc::new(Shared {
                current: ArcSwap::from_pointee(Loaded {
                    policy,
                    generation: 0,
                }),
                settings: auth.clone(),
                seen: Mutex::new(seen),
                recent: Cache::builder()
                    .max_capacity(RECENT_CAPACITY)
                    .time_to_live(Duration::from_secs(RECENT_SECONDS))
                    .build(),
            }),
        })
    }

    /// Re-reads the trust files if any changed, and uses the new policy from now on if it
    /// loads (recent results are dropped then). Blocking file I/O: call it off the async
    /// threads.
    pub fn reload(&self) -> Reloaded {
        let shared = &self.shared;
        let now = files_fingerprint(client_auth_files(&shared.settings));
        let Ok(mut seen) = shared.seen.lock() else {
            return Reloaded::Unchanged;
        };
        if *seen == now {
            return Reloaded::Unchanged;
        }
        *seen = now;
        match TrustPolicy::load(&shared.settings) {
            Ok(policy) => {
                let generation = shared.current.load().generation.wrapping_add(1);
                shared
                    .current
                    .store(Arc::new(Loaded { policy, generation }));
                shared.recent.invalidate_all();
                tracing::info!(
                    "client CA bundles, pinned issuers or CRLs changed: forwarded client certificates are verified against the new ones"
                );
                Reloaded::Replaced
            }
            Err(error) => {
                tracing::warn!(file = %error.file.display(), reason = %error.reason, "client CA bundles, pinned issuers or CRLs for forwarded client certificates rejected; keeping the current ones");
                Reloaded::Rejected
            }
        }
    }

    /// Verifies `certificate` (leaf plus the intermediates forwarded with it) now, or takes a
    /// recent result for the same leaf and chain.
    pub async fn verify(&self, certificate: &ClientCertificate) -> Verification {
        self.verify_recent(certificate, UnixTime::now()).await
    }

    async fn verify_recent(&self, certificate: &ClientCertificate, now: UnixTime) -> Verification {
        let key = recent_key(certificate);
        let seconds = now.as_secs();
        let loaded = self.shared.current.load_full();
        if let Some(recent) = self.shared.recent.get(&key).await
            && seconds < recent.until
            && recent.generation == loaded.generation
        {
            return recent.verification;
        }
        let verification = verify_with(&loaded.policy, certificate, now);
        let mut until = seconds.saturating_add(RECENT_SECONDS);
        if verification == Verification::Success {
            // One second past notAfter it must fail; `until` is exclusive.
            let not_after = u64::try_from(certificate.not_after()).unwrap_or(0);
            until = until.min(not_after.saturating_add(1));
        }
        self.shared
            .recent
            .insert(
                key,
                Recent {
                    verification: verification.clone(),
                    until,
                    generation: loaded.generation,
                },
            )
            .await;
        verification
    }

    /// `FAILED:<reason>` uses the words nginx/OpenSSL use, as the listener's permissive mode.
    pub fn verify_at(&self, certificate: &ClientCertificate, now: UnixTime) -> Verification {
        verify_with(&self.shared.current.load().policy, certificate, now)
    }
}

fn verify_with(
    policy: &TrustPolicy,
    certificate: &ClientCertificate,
    now: UnixTime,
) -> Verification {
    let leaf = CertificateDer::from(certificate.leaf_der());
    let intermediates: Vec<CertificateDer<'_>> = certificate
        .chain_der()
        .iter()
        .map(|der| CertificateDer::from(der.as_slice()))
        .collect();
    match policy.verify(&leaf, &intermediates, now) {
        Ok(()) => Verification::Success,
        Err(failure) => Verification::Failed(failure.reason().to_owned()),
    }
}

/// Re-reads `verifier`'s trust files every `interval` and on SIGHUP, until every other clone of
/// it is gone (or the task is aborted).
pub async fn watch(verifier: ForwardedCertVerifier, interval: Duration) {
    let shared = Arc::downgrade(&verifier.shared);
    drop(verifier);
    let mut schedule = ReloadSchedule::start(interval).await;
    loop {
        schedule
            .next("the client CA bundles and CRLs for forwarded certificates")
            .await;
        let Some(shared) = shared.upgrade() else {
            return;
        };
        let verifier = ForwardedCertVerifier { shared };
        // File reads and PEM parsing stay off the request-serving threads.
        let _ = tokio::task::spawn_blocking(move || verifier.reload()).await;
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
    async fn a_reloaded_bundle_replaces_recent_results_and_a_broken_one_is_refused() {
        let (first, second) = (new_ca(), new_ca());
        let (verifier, dir) = verifier(&first);
        let file = dir.path().join("ca.pem");
        let (ours, theirs) = (client_leaf(&first), client_leaf(&second));
        let not_after = u64::try_from(ours.not_after()).expect("after 1970");
        let at = |secs: u64| UnixTime::since_unix_epoch(Duration::from_secs(secs));
        let when = at(not_after - 100);
        assert_eq!(verifier.reload(), Reloaded::Unchanged);
        assert_eq!(
            verifier.verify_recent(&ours, when).await,
            Verification::Success
        );
        assert!(matches!(
            verifier.verify_recent(&theirs, when).await,
            Verification::Failed(_)
        ));

        // Another size, so the change is seen even within the file system's time granularity.
        std::fs::write(&file, format!("{}\n", second.pem())).expect("write");
        assert_eq!(verifier.reload(), Reloaded::Replaced);
        assert_eq!(verifier.reload(), Reloaded::Unchanged);
        // Within the minute the old results would still be kept; the reload dropped them.
        assert!(matches!(
            verifier.verify_recent(&ours, at(not_after - 99)).await,
            Verification::Failed(_)
        ));
        assert_eq!(
            verifier.verify_recent(&theirs, at(not_after - 99)).await,
            Verification::Success
        );

        // A file that does not load: refused, the previous policy stays.
        std::fs::write(&file, "-----BEGIN CERTIFICATE-----\nnot base64\n").expect("write");
        assert_eq!(verifier.reload(), Reloaded::Rejected);
        assert_eq!(
            verifier.verify_recent(&theirs, at(not_after - 98)).await,
            Verification::Success
        );
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
