//! The trust policy client certificates are verified against: trust anchors from the CA bundles
//! (each bundle must hold a self-signed root; its other certificates help build paths), issuing
//! CAs pinned by exact certificate identity, a maximum chain depth, and CRLs with their
//! revocation options. [`TrustPolicy::load`] reads the files; [`TrustPolicy::verify`] runs webpki
//! path building (client-auth usage) and tells why a certificate fails.

use std::cell::Cell;
use std::path::{Path, PathBuf};

use rustls::DistinguishedName;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, CertificateRevocationListDer, TrustAnchor, UnixTime};
use webpki::{
    CertRevocationList, EndEntityCert, ExpirationPolicy, KeyUsage, OwnedCertRevocationList,
    RevocationCheckDepth, RevocationOptionsBuilder, UnknownStatusPolicy, VerifiedPath,
};

use super::verify_result::VerifyFailure;
use crate::config::inbound_tls::{ClientAuth, CrlScope};

/// Which configured file a [`MaterialError`] is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileRole {
    ServerCertificate,
    ServerKey,
    /// The n-th CA bundle.
    ClientCa(usize),
    /// The n-th pinned issuer file.
    AllowedIssuer(usize),
    /// The n-th CRL file.
    Crl(usize),
}

/// A TLS file that cannot be used, with the reason (never its content).
#[derive(Debug, Clone, thiserror::Error)]
#[error("{}: {reason}", file.display())]
pub struct MaterialError {
    pub role: FileRole,
    pub file: PathBuf,
    pub reason: String,
}

impl MaterialError {
    pub fn new(role: FileRole, file: &Path, reason: impl Into<String>) -> Self {
        Self {
            role,
            file: file.to_owned(),
            reason: reason.into(),
        }
    }
}

/// Reads a file; the error names it.
pub fn read_file(role: FileRole, file: &Path) -> Result<Vec<u8>, MaterialError> {
    std::fs::read(file).map_err(|err| MaterialError::new(role, file, format!("cannot read: {err}")))
}

/// Every PEM certificate in a file (at least one).
pub fn read_certificates(
    role: FileRole,
    file: &Path,
) -> Result<Vec<CertificateDer<'static>>, MaterialError> {
    let bytes = read_file(role, file)?;
    match CertificateDer::pem_slice_iter(&bytes).collect::<Result<Vec<_>, _>>() {
        Ok(certs) if !certs.is_empty() => Ok(certs),
        Ok(_) => Err(MaterialError::new(role, file, "holds no PEM certificate")),
        Err(err) => Err(MaterialError::new(
            role,
            file,
            format!("not valid PEM: {err}"),
        )),
    }
}

/// An issuing CA allowed by pinning: matched by the whole certificate when it is an
/// intermediate of the verified path, by its trust-anchor form (subject, key, constraints)
/// when it is the anchor itself.
#[derive(Debug)]
struct PinnedIssuer {
    certificate: CertificateDer<'static>,
    anchor: TrustAnchor<'static>,
}

/// What client certificates are verified against; built once per (re)load, shared read-only.
#[derive(Debug)]
pub struct TrustPolicy {
    anchors: Vec<TrustAnchor<'static>>,
    /// Non-root certificates of the bundles, offered to path building with the client's chain.
    bundle_intermediates: Vec<CertificateDer<'static>>,
    /// Subjects of the roots, sent as acceptable CAs in the CertificateRequest.
    hints: Vec<DistinguishedName>,
    pinned: Vec<PinnedIssuer>,
    max_chain_depth: Option<usize>,
    crls: Vec<CertRevocationList<'static>>,
    revocation_depth: RevocationCheckDepth,
    unknown_status: UnknownStatusPolicy,
    expiration: ExpirationPolicy,
}

impl TrustPolicy {
    /// Reads the CA bundles, pinned issuers and CRLs of `auth`.
    pub fn load(auth: &ClientAuth) -> Result<Self, MaterialError> {
        let mut anchors = Vec::new();
        let mut bundle_intermediates = Vec::new();
        let mut hints = Vec::new();
        for (i, file) in auth.ca_files.iter().enumerate() {
            let role = FileRole::ClientCa(i);
            let mut roots = 0;
            for cert in read_certificates(role, file)? {
                if is_self_signed(&cert).map_err(|reason| MaterialError::new(role, file, reason))? {
                    let anchor = webpki::anchor_from_trusted_cert(&cert)
                        .map_err(|err| {
                            MaterialError::new(role, file, format!("unusable root: {err}"))
                        })?
                        .to_owned();
                    hints.push(DistinguishedName::in_sequence(anchor.subject.as_ref()));
                    anchors.push(anchor);
                    roots += 1;
                } else {
                    bundle_intermediates.push(cert);
                }
            }
            if roots == 0 {
                return Err(MaterialError::new(
                    role,
                    file,
                    "holds no root (self-signed) certificate: a CA bundle must contain its root",
                ));
            }
        }
        let mut pinned = Vec::new();
        for (i, file) in auth.allowed_issuer_files.iter().enumerate() {
            let role = FileRole::AllowedIssuer(i);
            for certificate in read_certificates(role, file)? {
                let anchor = webpki::anchor_from_trusted_cert(&certificate)
                    .map_err(|err| {
                        MaterialError::new(role, file, format!("unusable certificate: {err}"))
                    })?
                    .to_owned();
                pinned.push(PinnedIssuer {
                    certificate,
                    anchor,
                });
            }
        }
        let mut crls = Vec::new();
        for (i, file) in auth.crl_files.iter().enumerate() {
            let role = FileRole::Crl(i);
            let bytes = read_file(role, file)?;
            let ders: Vec<CertificateRevocationListDer<'static>> =
                if bytes.windows(10).any(|w| w == b"-----BEGIN") {
                    CertificateRevocationListDer::pem_slice_iter(&bytes)
                        .collect::<Result<_, _>>()
                        .map_err(|err| {
                            MaterialError::new(role, file, format!("not valid PEM: {err}"))
                        })?
                } else {
                    vec![CertificateRevocationListDer::from(bytes)]
                };
            if ders.is_empty() {
                return Err(MaterialError::new(role, file, "holds no X509 CRL"));
            }
            for der in ders {
                let crl = OwnedCertRevocationList::from_der(der.as_ref()).map_err(|err| {
                    MaterialError::new(role, file, format!("not a valid CRL: {err}"))
                })?;
                crls.push(CertRevocationList::from(crl));
            }
        }
        Ok(Self {
            anchors,
            bundle_intermediates,
            hints,
            pinned,
            max_chain_depth: auth.max_chain_depth.map(usize::from),
            crls,
            revocation_depth: match auth.revocation.scope {
                CrlScope::Chain => RevocationCheckDepth::Chain,
                CrlScope::Leaf => RevocationCheckDepth::EndEntity,
            },
            unknown_status: if auth.revocation.allow_unknown_status {
                UnknownStatusPolicy::Allow
            } else {
                UnknownStatusPolicy::Deny
            },
            expiration: if auth.revocation.enforce_expiration {
                ExpirationPolicy::Enforce
            } else {
                ExpirationPolicy::Ignore
            },
        })
    }

    /// Distinguished names of the roots (the CertificateRequest's acceptable CAs).
    pub fn hints(&self) -> &[DistinguishedName] {
        &self.hints
    }

    /// Verifies `end_entity` with the chain the client sent, for client authentication at `now`.
    pub fn verify(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<(), VerifyFailure> {
        let cert =
            EndEntityCert::try_from(end_entity).map_err(|e| VerifyFailure::from_webpki(&e))?;
        let mut candidates: Vec<CertificateDer<'_>> =
            Vec::with_capacity(intermediates.len() + self.bundle_intermediates.len());
        candidates.extend(
            intermediates
                .iter()
                .map(|c| CertificateDer::from(c.as_ref())),
        );
        candidates.extend(
            self.bundle_intermediates
                .iter()
                .map(|c| CertificateDer::from(c.as_ref())),
        );
        let crl_refs: Vec<&CertRevocationList<'_>> = self.crls.iter().collect();
        let revocation = RevocationOptionsBuilder::new(&crl_refs)
            .ok()
            .map(|builder| {
                builder
                    .with_depth(self.revocation_depth)
                    .with_status_policy(self.unknown_status)
                    .with_expiration_policy(self.expiration)
                    .build()
            });
        // A path the policy refuses lets webpki try another one; if none is left, the policy's
        // reason is the one reported.
        let refused = Cell::new(None);
        let check = |path: &VerifiedPath<'_>| -> Result<(), webpki::Error> {
            match self.check_path(path) {
                Ok(()) => Ok(()),
                Err(failure) => {
                    refused.set(Some(failure));
                    Err(webpki::Error::UnknownIssuer)
                }
            }
        };
        let algorithms = rustls::crypto::ring::default_provider()
            .signature_verification_algorithms
            .all;
        match cert.verify_for_usage(
            algorithms,
            &self.anchors,
            &candidates,
            now,
            KeyUsage::client_auth(),
            revocation,
            Some(&check),
        ) {
            Ok(_) => Ok(()),
            Err(webpki::Error::UnknownIssuer) if refused.get().is_some() => {
                Err(refused.get().unwrap_or(VerifyFailure::UnknownIssuer))
            }
            Err(err) => Err(VerifyFailure::from_webpki(&err)),
        }
    }

    /// Depth and issuer pinning on a path webpki verified.
    fn check_path(&self, path: &VerifiedPath<'_>) -> Result<(), VerifyFailure> {
        let intermediates = path.intermediate_certificates().count();
        // nginx `ssl_verify_depth`: CA certificates above the leaf, the anchor included.
        if self
            .max_chain_depth
            .is_some_and(|max| intermediates + 1 > max)
        {
            return Err(VerifyFailure::ChainTooLong);
        }
        if self.pinned.is_empty() {
            return Ok(());
        }
        let allowed = match path.intermediate_certificates().next() {
            Some(issuer) => {
                let der = issuer.der();
                self.pinned
                    .iter()
                    .any(|p| p.certificate.as_ref() == der.as_ref())
            }
            None => {
                let anchor = path.anchor();
                self.pinned.iter().any(|p| &p.anchor == anchor)
            }
        };
        if allowed {
            Ok(())
        } else {
            Err(VerifyFailure::IssuerNotAllowed)
        }
    }
}

/// Whether `cert` is a root: its issuer is its subject.
fn is_self_signed(cert: &CertificateDer<'_>) -> Result<bool, String> {
    let (_, parsed) = x509_parser::parse_x509_certificate(cert.as_ref())
        .map_err(|err| format!("unparsable certificate: {err}"))?;
    Ok(parsed.issuer().as_raw() == parsed.subject().as_raw())
}
