//! The demo's throw-away PKI, made with rcgen at start-up: a local root CA, server certificates
//! for the loopback servers, and a short-lived client certificate as an x509 XSUAA binding
//! carries it. Nothing is written to disk.

use std::sync::Arc;
use std::time::Duration;

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose, SanType,
};
use rustls::RootCertStore;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::server::{ServerConfig, WebPkiClientVerifier};

/// How long the demo client certificate lives (bound certificates live about 7 days; the demo's
/// is deliberately short).
pub const CLIENT_CERTIFICATE_LIFETIME: Duration = Duration::from_secs(24 * 3600);

/// Why the demo PKI could not be made.
#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    #[error("generating a certificate")]
    Generate(#[from] rcgen::Error),
    #[error("TLS configuration")]
    Tls(#[from] rustls::Error),
    #[error("client certificate verifier")]
    Verifier(#[from] rustls::server::VerifierBuilderError),
    #[error("reading back a generated certificate")]
    Parse(#[from] crate::inbound::CertificateError),
}

/// The demo CA.
pub struct DemoCa {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

/// A client certificate and its key, in the PEM forms a binding holds.
pub struct ClientIdentity {
    pub certificate_pem: String,
    pub key_pem: String,
    pub certificate_der: CertificateDer<'static>,
}

fn name(organization: &str, common_name: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CountryName, "DE");
    dn.push(DnType::OrganizationName, organization);
    dn.push(DnType::OrganizationalUnitName, "xsrouter demo");
    dn.push(DnType::CommonName, common_name);
    dn
}

fn validity(params: &mut CertificateParams, lifetime: Duration) {
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::minutes(5);
    params.not_after = now + lifetime;
}

impl DemoCa {
    pub fn new() -> Result<Self, PkiError> {
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.distinguished_name = name("xsrouter demo", "xsrouter demo root CA");
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        validity(&mut params, Duration::from_secs(2 * 24 * 3600));
        let issuer = CertifiedIssuer::self_signed(params, KeyPair::generate()?)?;
        Ok(Self { issuer })
    }

    /// The CA certificate (what the router adds to its trusted roots).
    pub fn certificate_der(&self) -> CertificateDer<'static> {
        self.issuer.der().clone()
    }

    /// A client certificate like the ones XSUAA issues for an x509 binding.
    pub fn client(&self, common_name: &str) -> Result<ClientIdentity, PkiError> {
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.distinguished_name = name("SAP SE (demo)", common_name);
        params.use_authority_key_identifier_extension = true;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        validity(&mut params, CLIENT_CERTIFICATE_LIFETIME);
        let cert = params.signed_by(&key, &self.issuer)?;
        Ok(ClientIdentity {
            certificate_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            certificate_der: cert.der().clone(),
        })
    }

    /// A rustls server configuration for `127.0.0.1`/`localhost` that requires a client
    /// certificate issued by this CA.
    pub fn mtls_server_config(&self, common_name: &str) -> Result<Arc<ServerConfig>, PkiError> {
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::new(vec!["localhost".to_owned()])?;
        params
            .subject_alt_names
            .push(SanType::IpAddress([127, 0, 0, 1].into()));
        params.distinguished_name = name("xsrouter demo", common_name);
        params.use_authority_key_identifier_extension = true;
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        validity(&mut params, Duration::from_secs(24 * 3600));
        let cert = params.signed_by(&key, &self.issuer)?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut roots = RootCertStore::empty();
        roots.add(self.certificate_der())?;
        let verifier =
            WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
                .build()?;
        let mut config = ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_client_cert_verifier(verifier)
            .with_single_cert(
                vec![cert.der().clone()],
                PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
            )?;
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(Arc::new(config))
    }
}
