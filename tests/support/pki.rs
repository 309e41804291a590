//! Test PKI made with rcgen: root → intermediate → leaf chains, server certificates, CRLs, and
//! the private key in each PEM form a binding may carry (EC: PKCS#8, SEC1; RSA: PKCS#8, PKCS#1).

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use rcgen::{
    BasicConstraints, CertificateParams, CertificateRevocationListParams, CertifiedIssuer,
    DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, KeyIdMethod, KeyPair,
    KeyUsagePurpose, RevocationReason, RevokedCertParams, SerialNumber,
};

/// The PEM form of a private key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyForm {
    EcPkcs8,
    EcSec1,
    RsaPkcs8,
    RsaPkcs1,
}

pub const ALL_KEY_FORMS: [KeyForm; 4] = [
    KeyForm::EcPkcs8,
    KeyForm::EcSec1,
    KeyForm::RsaPkcs8,
    KeyForm::RsaPkcs1,
];

/// A certificate authority: root plus one intermediate that issues leaves.
pub struct Pki {
    pub root: CertifiedIssuer<'static, KeyPair>,
    pub intermediate: CertifiedIssuer<'static, KeyPair>,
}

/// A leaf certificate with its key.
pub struct Leaf {
    pub cert_pem: String,
    pub key_pem: String,
    pub cn: String,
    /// The serial number (unique in the test binary), for CRLs.
    pub serial: u64,
}

/// Serial numbers unique within one test binary.
fn next_serial() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(1000);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

/// Whether a CRL is current or already past its `nextUpdate`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CrlValidity {
    Current,
    Expired,
}

fn name(cn: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "xsrouter tests");
    dn.push(DnType::CommonName, cn);
    dn
}

fn ca_params(cn: &str, depth: Option<u8>) -> CertificateParams {
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
    params.distinguished_name = name(cn);
    params.is_ca = IsCa::Ca(match depth {
        Some(d) => BasicConstraints::Constrained(d),
        None => BasicConstraints::Unconstrained,
    });
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params
}

impl Pki {
    pub fn new(label: &str) -> Self {
        let root = CertifiedIssuer::self_signed(
            ca_params(&format!("{label} Root CA"), None),
            KeyPair::generate().expect("key"),
        )
        .expect("root");
        let intermediate = CertifiedIssuer::signed_by(
            ca_params(&format!("{label} Intermediate CA"), Some(0)),
            KeyPair::generate().expect("key"),
            &root,
        )
        .expect("intermediate");
        Self { root, intermediate }
    }

    pub fn root_pem(&self) -> String {
        self.root.pem()
    }

    pub fn intermediate_pem(&self) -> String {
        self.intermediate.pem()
    }

    /// A client leaf with CN `cn`, its key in `form`.
    pub fn client(&self, cn: &str, form: KeyForm) -> Leaf {
        let (key, key_pem) = key_in(form);
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
        params.distinguished_name = name(cn);
        params.use_authority_key_identifier_extension = true;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let serial = next_serial();
        params.serial_number = Some(SerialNumber::from(serial));
        let cert = params.signed_by(&key, &self.intermediate).expect("leaf");
        Leaf {
            cert_pem: cert.pem(),
            key_pem,
            cn: cn.to_owned(),
            serial,
        }
    }

    /// A client leaf like [`Pki::client`] whose validity ended on 2 January 2020.
    pub fn expired_client(&self, cn: &str, form: KeyForm) -> Leaf {
        let (key, key_pem) = key_in(form);
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
        params.distinguished_name = name(cn);
        params.use_authority_key_identifier_extension = true;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        params.not_before = rcgen::date_time_ymd(2019, 1, 1);
        params.not_after = rcgen::date_time_ymd(2020, 1, 2);
        let serial = next_serial();
        params.serial_number = Some(SerialNumber::from(serial));
        let cert = params.signed_by(&key, &self.intermediate).expect("leaf");
        Leaf {
            cert_pem: cert.pem(),
            key_pem,
            cn: cn.to_owned(),
            serial,
        }
    }

    /// A server certificate for 127.0.0.1 and localhost: (chain PEM leaf + intermediate, key PEM).
    pub fn server(&self) -> (String, String) {
        self.server_for(&["localhost", "127.0.0.1"])
    }

    /// A server certificate for `names` (the first is the CN): (chain PEM leaf + intermediate,
    /// key PEM).
    pub fn server_for(&self, names: &[&str]) -> (String, String) {
        let key = KeyPair::generate().expect("key");
        let mut params =
            CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
                .expect("params");
        params.distinguished_name = name(names.first().copied().unwrap_or("localhost"));
        params.use_authority_key_identifier_extension = true;
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let cert = params.signed_by(&key, &self.intermediate).expect("server");
        (
            format!("{}{}", cert.pem(), self.intermediate.pem()),
            key.serialize_pem(),
        )
    }
}

impl Pki {
    /// A PEM CRL signed by the intermediate CA (it covers the leaves), revoking `revoked`.
    pub fn leaf_crl(&self, revoked: &[&Leaf], validity: CrlValidity) -> String {
        crl(
            &self.intermediate,
            revoked.iter().map(|l| l.serial),
            validity,
        )
    }

    /// A PEM CRL signed by the root CA (it covers the intermediate), revoking nothing.
    pub fn intermediate_crl(&self, validity: CrlValidity) -> String {
        crl(&self.root, std::iter::empty(), validity)
    }
}

/// A CRL issued an hour ago (two days ago when expired), next update in a day (yesterday).
fn crl(
    issuer: &CertifiedIssuer<'static, KeyPair>,
    serials: impl Iterator<Item = u64>,
    validity: CrlValidity,
) -> String {
    let now = rcgen::date_time_ymd(1970, 1, 1)
        + std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock");
    let day = Duration::from_secs(86_400);
    let (this_update, next_update) = match validity {
        CrlValidity::Current => (now - Duration::from_secs(3600), now + day),
        CrlValidity::Expired => (now - 2 * day, now - day),
    };
    let params = CertificateRevocationListParams {
        this_update,
        next_update,
        crl_number: SerialNumber::from(next_serial()),
        issuing_distribution_point: None,
        revoked_certs: serials
            .map(|serial| RevokedCertParams {
                serial_number: SerialNumber::from(serial),
                revocation_time: this_update,
                reason_code: Some(RevocationReason::KeyCompromise),
                invalidity_date: None,
            })
            .collect(),
        key_identifier_method: KeyIdMethod::Sha256,
    };
    params
        .signed_by(issuer)
        .expect("CRL")
        .pem()
        .expect("CRL PEM")
}

impl Pki {
    /// A rustls server configuration with a certificate from this PKI, requiring client
    /// certificates issued under `clients`, offering HTTP/2 and HTTP/1.1.
    pub fn mtls_server_config(&self, clients: &Pki) -> rustls::ServerConfig {
        self.mtls_server_config_for(clients, &["localhost", "127.0.0.1"])
    }

    /// As [`Self::mtls_server_config`], with a server certificate for `names` (the first is the
    /// CN).
    pub fn mtls_server_config_for(&self, clients: &Pki, names: &[&str]) -> rustls::ServerConfig {
        use rustls::pki_types::pem::PemObject;
        use rustls::pki_types::{CertificateDer, PrivateKeyDer};
        xsrouter::install_crypto_provider();
        let (chain_pem, key_pem) = self.server_for(names);
        let chain: Vec<CertificateDer<'static>> =
            CertificateDer::pem_slice_iter(chain_pem.as_bytes())
                .collect::<Result<_, _>>()
                .expect("server chain");
        let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).expect("server key");
        let mut roots = rustls::RootCertStore::empty();
        roots.add(clients.root.der().clone()).expect("client root");
        let verifier = rustls::server::WebPkiClientVerifier::builder(std::sync::Arc::new(roots))
            .build()
            .expect("client verifier");
        let mut config = rustls::ServerConfig::builder()
            .with_client_cert_verifier(verifier)
            .with_single_cert(chain, key)
            .expect("server config");
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        config
    }
}

/// A rustls client configuration trusting `server`'s root and, with `identity`, presenting that
/// leaf with its intermediate; offers HTTP/2 and HTTP/1.1.
pub fn tls_client_config(server: &Pki, identity: Option<(&Pki, &Leaf)>) -> rustls::ClientConfig {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    xsrouter::install_crypto_provider();
    let mut roots = rustls::RootCertStore::empty();
    roots.add(server.root.der().clone()).expect("root");
    let builder = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("protocol versions")
    .with_root_certificates(roots);
    let mut config = match identity {
        Some((pki, leaf)) => {
            let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(
                format!("{}{}", leaf.cert_pem, pki.intermediate_pem()).as_bytes(),
            )
            .collect::<Result<_, _>>()
            .expect("client chain");
            let key = PrivateKeyDer::from_pem_slice(leaf.key_pem.as_bytes()).expect("client key");
            builder
                .with_client_auth_cert(chain, key)
                .expect("client auth")
        }
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    config
}

impl Leaf {
    /// The bound `certificate` value: leaf, intermediate, root, in that order.
    pub fn chain_pem(&self, pki: &Pki) -> String {
        format!(
            "{}{}{}",
            self.cert_pem,
            pki.intermediate_pem(),
            pki.root_pem()
        )
    }
}

/// A new key in the requested form: the rcgen key pair signs, the PEM is what a binding holds.
fn key_in(form: KeyForm) -> (KeyPair, String) {
    match form {
        KeyForm::EcPkcs8 => {
            let key = KeyPair::generate().expect("ec key");
            let pem = key.serialize_pem();
            (key, pem)
        }
        KeyForm::EcSec1 => {
            use p256::pkcs8::DecodePrivateKey;
            let key = KeyPair::generate().expect("ec key");
            let secret = p256::SecretKey::from_pkcs8_pem(&key.serialize_pem()).expect("p256 key");
            let pem = secret
                .to_sec1_pem(Default::default())
                .expect("sec1")
                .to_string();
            assert!(pem.starts_with("-----BEGIN EC PRIVATE KEY-----"));
            (key, pem)
        }
        KeyForm::RsaPkcs8 | KeyForm::RsaPkcs1 => {
            use rsa::pkcs1::EncodeRsaPrivateKey;
            use rsa::pkcs8::EncodePrivateKey;
            let rsa = rsa_key();
            let pkcs8 = rsa
                .to_pkcs8_pem(Default::default())
                .expect("pkcs8")
                .to_string();
            let key = KeyPair::from_pkcs8_pem_and_sign_algo(&pkcs8, &rcgen::PKCS_RSA_SHA256)
                .expect("rsa key pair");
            let pem = if form == KeyForm::RsaPkcs1 {
                let pem = rsa
                    .to_pkcs1_pem(Default::default())
                    .expect("pkcs1")
                    .to_string();
                assert!(pem.starts_with("-----BEGIN RSA PRIVATE KEY-----"));
                pem
            } else {
                pkcs8
            };
            (key, pem)
        }
    }
}

/// One RSA-2048 key per test binary (generation is slow).
fn rsa_key() -> rsa::RsaPrivateKey {
    static KEY: OnceLock<rsa::RsaPrivateKey> = OnceLock::new();
    KEY.get_or_init(|| rsa::RsaPrivateKey::new(&mut rand_core::OsRng, 2048).expect("rsa keygen"))
        .clone()
}
