//! A client identity parsed from PEM: the private key and the certificate chain to present,
//! ordered leaf first by issuer/subject linkage, checked to belong together.

use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::sign::CertifiedKey;
use x509_parser::prelude::{FromDer, X509Certificate};

/// Which certificates of the bound chain are sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChainMode {
    /// The leaf and its intermediates; self-signed roots are left out (the peer has them).
    LeafAndIntermediates,
    /// Every bound certificate, roots included, leaf first (`FULL_CERTIFICATE_CHAIN=true`).
    Full,
}

/// Why PEM material could not become an identity. Messages never contain key material.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdentityError {
    #[error("`certificate` holds no PEM certificate")]
    NoCertificate,
    #[error("`certificate` is not valid PEM: {0}")]
    CertificatePem(String),
    #[error("certificate {index} of the chain cannot be parsed: {reason}")]
    Certificate { index: usize, reason: String },
    #[error("the key is not a PEM private key (PKCS#8, PKCS#1 or SEC1)")]
    NoKey,
    #[error("the private key is not a supported RSA or EC key: {0}")]
    UnsupportedKey(String),
    #[error("the private key does not belong to the leaf certificate `{subject}`")]
    KeyMismatch { subject: String },
}

/// What the logs say about a certificate (no secrets).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertificateSummary {
    pub subject: String,
    pub issuer: String,
    /// Hex, colon-separated.
    pub serial: String,
    /// Seconds since the Unix epoch.
    pub not_before: i64,
    pub not_after: i64,
}

impl CertificateSummary {
    /// Seconds until the certificate expires (negative once expired).
    pub fn seconds_left(&self, now: i64) -> i64 {
        self.not_after - now
    }

    /// Whether less than a fifth of the validity period remains (or it already expired).
    pub fn nearly_expired(&self, now: i64) -> bool {
        let lifetime = (self.not_after - self.not_before).max(1);
        (self.not_after - now) * 5 < lifetime
    }
}

/// The private key and chain the router presents, validated.
#[derive(Debug, Clone)]
pub struct ClientIdentity {
    pub certified: Arc<CertifiedKey>,
    pub leaf: CertificateSummary,
}

impl ClientIdentity {
    /// Parses a PEM chain (any order, `\n` escapes allowed) and a PEM key.
    pub fn from_pem(
        certificate_pem: &str,
        key_pem: &str,
        mode: ChainMode,
        provider: &CryptoProvider,
    ) -> Result<Self, IdentityError> {
        let certificate_pem = unescape_newlines(certificate_pem);
        let key_pem = unescape_newlines(key_pem);
        let bound: Vec<CertificateDer<'static>> =
            CertificateDer::pem_slice_iter(certificate_pem.as_bytes())
                .collect::<Result<_, _>>()
                .map_err(|e| IdentityError::CertificatePem(e.to_string()))?;
        if bound.is_empty() {
            return Err(IdentityError::NoCertificate);
        }
        let names = bound
            .iter()
            .enumerate()
            .map(|(index, der)| {
                X509Certificate::from_der(der)
                    .map(|(_, cert)| Names::of(&cert))
                    .map_err(|e| IdentityError::Certificate {
                        index,
                        reason: e.to_string(),
                    })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let order = chain_order(&names);
        let chain: Vec<CertificateDer<'static>> = order
            .iter()
            .filter(|&&i| mode == ChainMode::Full || i == order[0] || !names[i].self_signed())
            .map(|&i| bound[i].clone())
            .collect();
        let leaf = summary(&chain[0]).map_err(|reason| IdentityError::Certificate {
            index: order[0],
            reason,
        })?;

        let key =
            PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).map_err(|_| IdentityError::NoKey)?;
        let signing_key = provider
            .key_provider
            .load_private_key(key)
            .map_err(|e| IdentityError::UnsupportedKey(e.to_string()))?;
        let certified = CertifiedKey::new(chain, signing_key);
        certified
            .keys_match()
            .map_err(|_| IdentityError::KeyMismatch {
                subject: leaf.subject.clone(),
            })?;
        Ok(Self {
            certified: Arc::new(certified),
            leaf,
        })
    }

    /// The DER certificates presented, leaf first.
    pub fn chain(&self) -> &[CertificateDer<'static>] {
        &self.certified.cert
    }

    /// Whether two identities present the same chain (used to skip no-op rotations).
    pub fn same_chain(&self, other: &ClientIdentity) -> bool {
        self.certified.cert == other.certified.cert
    }
}

fn unescape_newlines(pem: &str) -> String {
    pem.replace("\\n", "\n")
}

/// Raw subject and issuer of one certificate, for linking.
struct Names {
    subject: Vec<u8>,
    issuer: Vec<u8>,
    is_ca: bool,
}

impl Names {
    fn of(cert: &X509Certificate<'_>) -> Self {
        Self {
            subject: cert.subject().as_raw().to_vec(),
            issuer: cert.issuer().as_raw().to_vec(),
            is_ca: cert.is_ca(),
        }
    }

    fn self_signed(&self) -> bool {
        self.subject == self.issuer
    }
}

/// Indices of the certificates leaf first: the leaf is a certificate that issued no other —
/// the one with the longest issuer path, preferring a non-CA — then each issuer in turn; any
/// certificate outside that path follows in bound order.
fn chain_order(names: &[Names]) -> Vec<usize> {
    let issues_another = |i: usize| {
        names
            .iter()
            .enumerate()
            .any(|(j, other)| j != i && !other.self_signed() && other.issuer == names[i].subject)
    };
    let path_from = |start: usize| {
        let mut order = vec![start];
        let mut current = start;
        while !names[current].self_signed() {
            let next = (0..names.len())
                .find(|&j| !order.contains(&j) && names[j].subject == names[current].issuer);
            match next {
                Some(j) => {
                    order.push(j);
                    current = j;
                }
                None => break,
            }
        }
        order
    };
    let mut order = (0..names.len())
        .filter(|&i| !issues_another(i))
        .map(path_from)
        .max_by_key(|path| {
            (
                path.len(),
                !names[path[0]].is_ca,
                std::cmp::Reverse(path[0]),
            )
        })
        .unwrap_or_else(|| path_from(0));
    let rest: Vec<usize> = (0..names.len()).filter(|i| !order.contains(i)).collect();
    order.extend(rest);
    order
}

/// Subject, issuer, serial and validity of a DER certificate.
pub fn summary(der: &CertificateDer<'_>) -> Result<CertificateSummary, String> {
    let (_, cert) = X509Certificate::from_der(der).map_err(|e| e.to_string())?;
    Ok(CertificateSummary {
        subject: cert.subject().to_string(),
        issuer: cert.issuer().to_string(),
        serial: cert.raw_serial_as_string(),
        not_before: cert.validity().not_before.timestamp(),
        not_after: cert.validity().not_after.timestamp(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn summary(not_before: i64, not_after: i64) -> CertificateSummary {
        CertificateSummary {
            subject: "CN=x".into(),
            issuer: "CN=ca".into(),
            serial: "01".into(),
            not_before,
            not_after,
        }
    }

    #[test]
    fn expiry_warning_at_a_fifth_of_the_lifetime() {
        // A 7-day certificate (as XSUAA issues them): the warning starts with 33.6 h left.
        let week = 7 * 24 * 3600;
        let cert = summary(0, week);
        assert!(!cert.nearly_expired(week - week / 5 - 1));
        assert!(cert.nearly_expired(week - week / 5 + 1));
        assert!(cert.nearly_expired(week + 1));
        assert_eq!(cert.seconds_left(week - 10), 10);
    }

    fn names(subject: &str, issuer: &str, is_ca: bool) -> Names {
        Names {
            subject: subject.as_bytes().to_vec(),
            issuer: issuer.as_bytes().to_vec(),
            is_ca,
        }
    }

    #[test]
    fn chains_are_ordered_by_linkage() {
        let bound = [
            names("stranger", "elsewhere", false),
            names("root", "root", true),
            names("int", "root", true),
            names("leaf", "int", false),
        ];
        // The stranger issued nothing either, but the leaf links up to the root.
        let order = chain_order(&bound);
        assert_eq!(order, vec![3, 2, 1, 0]);
        // A lone self-signed certificate is its own chain.
        assert_eq!(chain_order(&[names("self", "self", false)]), vec![0]);
    }
}
