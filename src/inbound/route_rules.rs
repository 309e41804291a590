//! Per-route client-certificate rules (xs-app.json `clientCertificate`): whether a route needs a
//! verified client certificate and which subject / issuer attributes it must carry. The rule is
//! checked against the request's [`EffectiveClientCert`] after routing; a refusal is a short
//! reason for a 403.
//!
//! Attributes are compared one by one (type and exact value), never as DN strings, so a value
//! such as `x,CN=admin` inside another attribute can never satisfy a `CN` rule.

use super::client_cert::{ClientCertificate, escape_rfc4514_value};
use super::effective_cert::EffectiveClientCert;
use super::headers_out::Verification;

/// Attribute types a rule may name (OpenSSL short names, as in the RFC 4514 subject).
pub const RULE_ATTRIBUTES: &[&str] = &[
    "CN",
    "O",
    "OU",
    "C",
    "ST",
    "L",
    "DC",
    "UID",
    "serialNumber",
    "emailAddress",
    "organizationIdentifier",
    "title",
    "SN",
    "GN",
];

/// Whether the route needs a certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CertificateRequirement {
    /// A verified certificate (matching the rules) is needed.
    Required,
    /// No certificate is fine; a presented one must have verified (and match the rules).
    Optional,
}

impl CertificateRequirement {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Required => "required",
            Self::Optional => "optional",
        }
    }
}

/// One attribute condition: the name has an attribute of this type whose value is one of
/// `values` (RFC 4514-escaped, as [`ClientCertificate::subject_attributes`] holds them).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttributeMatch {
    pub attribute: &'static str,
    values: Vec<String>,
}

impl AttributeMatch {
    /// A condition on `attribute` (one of [`RULE_ATTRIBUTES`]) with the plain values given.
    pub fn new(attribute: &'static str, values: &[String]) -> Self {
        Self {
            attribute,
            values: values
                .iter()
                .map(|v| escape_rfc4514_value(v.as_bytes()))
                .collect(),
        }
    }

    fn holds(&self, attributes: &[(String, String)]) -> bool {
        attributes
            .iter()
            .any(|(ty, value)| ty == self.attribute && self.values.iter().any(|v| v == value))
    }
}

/// A route's `clientCertificate` rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientCertificateRule {
    pub requirement: CertificateRequirement,
    /// Every condition must hold for the subject.
    pub subject: Vec<AttributeMatch>,
    /// Every condition must hold for the issuer.
    pub issuer: Vec<AttributeMatch>,
    /// When not empty, the certificate must carry one of these URI SANs (e.g. SPIFFE ids).
    pub uri: Vec<String>,
    /// When not empty, the certificate must carry one of these DNS SANs (case-insensitive).
    pub dns: Vec<String>,
}

/// Why a request does not pass a route's rule (the body of the 403).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RuleRefusal {
    Missing,
    NotVerified,
    SubjectMismatch,
    IssuerMismatch,
    NameMismatch,
}

impl RuleRefusal {
    pub fn reason(self) -> &'static str {
        match self {
            Self::Missing => "Forbidden: a client certificate is required",
            Self::NotVerified => "Forbidden: the client certificate did not verify",
            Self::SubjectMismatch => "Forbidden: the client certificate subject is not allowed",
            Self::IssuerMismatch => "Forbidden: the client certificate issuer is not allowed",
            Self::NameMismatch => "Forbidden: the client certificate names are not allowed",
        }
    }
}

impl ClientCertificateRule {
    /// Checks the request's client certificate against the rule.
    pub fn check(&self, client: &EffectiveClientCert) -> Result<(), RuleRefusal> {
        let Some(certificate) = client.certificate() else {
            return match self.requirement {
                CertificateRequirement::Required => Err(RuleRefusal::Missing),
                CertificateRequirement::Optional => Ok(()),
            };
        };
        if *client.verification() != Verification::Success {
            return Err(RuleRefusal::NotVerified);
        }
        self.matches(certificate)
    }

    fn matches(&self, certificate: &ClientCertificate) -> Result<(), RuleRefusal> {
        if !self
            .subject
            .iter()
            .all(|m| m.holds(certificate.subject_attributes()))
        {
            return Err(RuleRefusal::SubjectMismatch);
        }
        if !self
            .issuer
            .iter()
            .all(|m| m.holds(certificate.issuer_attributes()))
        {
            return Err(RuleRefusal::IssuerMismatch);
        }
        let uri_ok = self.uri.is_empty() || certificate.uris().iter().any(|u| self.uri.contains(u));
        let dns_ok = self.dns.is_empty()
            || certificate
                .dns_names()
                .iter()
                .any(|d| self.dns.iter().any(|w| w.eq_ignore_ascii_case(d)));
        if !(uri_ok && dns_ok) {
            return Err(RuleRefusal::NameMismatch);
        }
        Ok(())
    }
}
