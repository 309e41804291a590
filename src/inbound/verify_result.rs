//! Why a client certificate failed verification, in a small fixed set of reason classes, and
//! the per-router counters of verification results (`success`, `failed` by reason, `none`)
//! that the metrics endpoint renders.

use std::sync::atomic::{AtomicU64, Ordering};

use rustls::CertificateError;

/// Why a client certificate did not verify. The classes are stable: they label metrics and
/// make the `FAILED:<reason>` text of the verification headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VerifyFailure {
    Expired,
    NotYetValid,
    /// It does not chain to a trust anchor of the CA bundles.
    UnknownIssuer,
    Revoked,
    /// CRLs are configured, but none covers a certificate of the chain.
    UnknownRevocationStatus,
    /// The CRL covering a certificate of the chain is past its `nextUpdate`.
    CrlExpired,
    /// It chains to a trust anchor, but its issuing CA is not one of the pinned issuers.
    IssuerNotAllowed,
    /// More CA certificates above the leaf than the configured maximum chain depth.
    ChainTooLong,
    BadSignature,
    /// Not usable for client authentication (extended key usage, CA as leaf).
    WrongUsage,
    BadEncoding,
    Other,
}

impl VerifyFailure {
    pub const ALL: [Self; 12] = [
        Self::Expired,
        Self::NotYetValid,
        Self::UnknownIssuer,
        Self::Revoked,
        Self::UnknownRevocationStatus,
        Self::CrlExpired,
        Self::IssuerNotAllowed,
        Self::ChainTooLong,
        Self::BadSignature,
        Self::WrongUsage,
        Self::BadEncoding,
        Self::Other,
    ];

    /// The metrics label (`reason="revoked"`).
    pub fn class(self) -> &'static str {
        match self {
            Self::Expired => "expired",
            Self::NotYetValid => "not_yet_valid",
            Self::UnknownIssuer => "unknown_issuer",
            Self::Revoked => "revoked",
            Self::UnknownRevocationStatus => "unknown_revocation_status",
            Self::CrlExpired => "crl_expired",
            Self::IssuerNotAllowed => "issuer_not_allowed",
            Self::ChainTooLong => "chain_too_long",
            Self::BadSignature => "bad_signature",
            Self::WrongUsage => "wrong_usage",
            Self::BadEncoding => "bad_encoding",
            Self::Other => "other",
        }
    }

    /// The reason as nginx/OpenSSL words it where there is an equivalent (`FAILED:<reason>`).
    pub fn reason(self) -> &'static str {
        match self {
            Self::Expired => "certificate has expired",
            Self::NotYetValid => "certificate is not yet valid",
            Self::UnknownIssuer => "unable to get local issuer certificate",
            Self::Revoked => "certificate revoked",
            Self::UnknownRevocationStatus => "unable to get certificate CRL",
            Self::CrlExpired => "CRL has expired",
            Self::IssuerNotAllowed => "certificate issuer not allowed",
            Self::ChainTooLong => "certificate chain too long",
            Self::BadSignature => "certificate signature failure",
            Self::WrongUsage => "unsupported certificate purpose",
            Self::BadEncoding => "unable to decode certificate",
            Self::Other => "certificate verification failed",
        }
    }

    /// The class of a webpki path-building error.
    pub fn from_webpki(error: &webpki::Error) -> Self {
        use webpki::Error as E;
        match error {
            E::CertExpired { .. } | E::InvalidCertValidity => Self::Expired,
            E::CertNotValidYet { .. } => Self::NotYetValid,
            E::UnknownIssuer => Self::UnknownIssuer,
            E::CertRevoked => Self::Revoked,
            E::UnknownRevocationStatus => Self::UnknownRevocationStatus,
            E::CrlExpired { .. } => Self::CrlExpired,
            E::MaximumPathDepthExceeded | E::PathLenConstraintViolated => Self::ChainTooLong,
            E::InvalidSignatureForPublicKey
            | E::UnsupportedSignatureAlgorithmContext(_)
            | E::UnsupportedSignatureAlgorithmForPublicKeyContext(_) => Self::BadSignature,
            E::RequiredEkuNotFoundContext(_) | E::CaUsedAsEndEntity | E::EndEntityUsedAsCa => {
                Self::WrongUsage
            }
            E::BadDer | E::BadDerTime | E::TrailingData(_) => Self::BadEncoding,
            _ => Self::Other,
        }
    }

    /// The TLS error the handshake fails with (its alert tells the client why).
    pub fn to_rustls(self) -> rustls::Error {
        let error = match self {
            Self::Expired => CertificateError::Expired,
            Self::NotYetValid => CertificateError::NotValidYet,
            Self::UnknownIssuer => CertificateError::UnknownIssuer,
            Self::Revoked => CertificateError::Revoked,
            Self::UnknownRevocationStatus => CertificateError::UnknownRevocationStatus,
            Self::CrlExpired => CertificateError::ExpiredRevocationList,
            Self::BadSignature => CertificateError::BadSignature,
            Self::WrongUsage => CertificateError::InvalidPurpose,
            Self::BadEncoding => CertificateError::BadEncoding,
            Self::IssuerNotAllowed | Self::ChainTooLong | Self::Other => {
                CertificateError::ApplicationVerificationFailure
            }
        };
        rustls::Error::InvalidCertificate(error)
    }
}

impl std::fmt::Display for VerifyFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.reason())
    }
}

/// Counts of inbound client-certificate verification results, one atomic per result.
#[derive(Debug, Default)]
pub struct VerificationCounters {
    success: AtomicU64,
    none: AtomicU64,
    failed: [AtomicU64; VerifyFailure::ALL.len()],
}

impl VerificationCounters {
    pub fn success(&self) {
        self.success.fetch_add(1, Ordering::Relaxed);
    }

    /// A connection on a listener that asks for certificates came without one.
    pub fn none(&self) {
        self.none.fetch_add(1, Ordering::Relaxed);
    }

    pub fn failed(&self, failure: VerifyFailure) {
        if let Some(counter) = VerifyFailure::ALL
            .iter()
            .position(|f| *f == failure)
            .and_then(|i| self.failed.get(i))
        {
            counter.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// (result, reason, count): `success`/`none` with an empty reason, then every failure
    /// class (zeros included, so the series exist from the start).
    pub fn snapshot(&self) -> Vec<(&'static str, &'static str, u64)> {
        let mut rows = vec![
            ("success", "", self.success.load(Ordering::Relaxed)),
            ("none", "", self.none.load(Ordering::Relaxed)),
        ];
        for (failure, counter) in VerifyFailure::ALL.iter().zip(&self.failed) {
            rows.push(("failed", failure.class(), counter.load(Ordering::Relaxed)));
        }
        rows
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_keep_each_result_apart() {
        let counters = VerificationCounters::default();
        counters.success();
        counters.success();
        counters.none();
        counters.failed(VerifyFailure::Revoked);
        let rows = counters.snapshot();
        assert!(rows.contains(&("success", "", 2)));
        assert!(rows.contains(&("none", "", 1)));
        assert!(rows.contains(&("failed", "revoked", 1)));
        assert!(rows.contains(&("failed", "expired", 0)));
        assert_eq!(rows.len(), 2 + VerifyFailure::ALL.len());
    }

    #[test]
    fn webpki_errors_fall_into_their_class() {
        assert_eq!(
            VerifyFailure::from_webpki(&webpki::Error::CertRevoked),
            VerifyFailure::Revoked
        );
        assert_eq!(
            VerifyFailure::from_webpki(&webpki::Error::UnknownIssuer),
            VerifyFailure::UnknownIssuer
        );
        assert_eq!(
            VerifyFailure::from_webpki(&webpki::Error::MaximumPathDepthExceeded),
            VerifyFailure::ChainTooLong
        );
        let classes: std::collections::HashSet<_> =
            VerifyFailure::ALL.iter().map(|f| f.class()).collect();
        assert_eq!(classes.len(), VerifyFailure::ALL.len());
    }
}
