//! The `certificates` of a lookup: the keystore of a `ClientCertificateAuthentication`
//! destination (PKCS#12 — PBES2/AES and the legacy 3DES and RC2 encodings — with
//! `KeyStorePassword`, or a PEM file holding certificate and key) becomes the destination's own
//! client identity; a PEM `TrustStoreLocation` becomes the roots its server is checked against.
//! Errors say what is wrong with the file, never what is in it.

use base64::Engine;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use serde::Deserialize;

use crate::identity::{ChainMode, ClientIdentity};

/// One entry of `certificates`.
#[derive(Debug, Clone, Deserialize)]
pub struct CertificateFile {
    #[serde(rename = "Name")]
    pub name: String,
    /// Base64 of the file.
    #[serde(rename = "Content")]
    pub content: String,
}

/// Why a certificate file cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CertificateError {
    #[error("`{0}` is not among the lookup's certificates")]
    Missing(String),
    #[error("`{0}` is not valid base64")]
    NotBase64(String),
    #[error("`{name}` is a {kind} keystore; PKCS#12 (.p12, .pfx) and PEM are supported")]
    UnsupportedFormat { name: String, kind: String },
    #[error("`{name}` cannot be opened (wrong `KeyStorePassword` or not PKCS#12): {reason}")]
    Pkcs12 { name: String, reason: String },
    #[error("`{0}` holds no private key")]
    NoKey(String),
    #[error("`{name}`: {reason}")]
    Identity { name: String, reason: String },
    #[error("`{0}` holds no PEM certificate")]
    NoCertificate(String),
}

fn find<'a>(
    files: &'a [CertificateFile],
    name: &str,
) -> Result<&'a CertificateFile, CertificateError> {
    files
        .iter()
        .find(|f| f.name == name)
        .ok_or_else(|| CertificateError::Missing(name.to_owned()))
}

fn decoded(file: &CertificateFile) -> Result<Vec<u8>, CertificateError> {
    let compact: String = file.content.split_whitespace().collect();
    base64::engine::general_purpose::STANDARD
        .decode(compact)
        .map_err(|_| CertificateError::NotBase64(file.name.clone()))
}

fn extension(name: &str) -> String {
    name.rsplit_once('.')
        .map(|(_, ext)| ext.to_ascii_lowercase())
        .unwrap_or_default()
}

fn pem(label: &str, der: &[u8]) -> String {
    let body = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for line in body.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(line));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

/// The client identity in the keystore `name` among `files`.
pub fn client_identity(
    files: &[CertificateFile],
    name: &str,
    password: Option<&str>,
) -> Result<ClientIdentity, CertificateError> {
    let file = find(files, name)?;
    let bytes = decoded(file)?;
    let provider = crate::upstream::tls::provider();
    let identity_error = |err: crate::identity::IdentityError| CertificateError::Identity {
        name: name.to_owned(),
        reason: err.to_string(),
    };
    match extension(name).as_str() {
        "p12" | "pfx" => {
            let archive = p12_keystore::Pkcs12Archive::from_pkcs12(&bytes, password.unwrap_or(""))
                .map_err(|err| CertificateError::Pkcs12 {
                    name: name.to_owned(),
                    reason: err.to_string(),
                })?;
            let key = archive
                .keys
                .first()
                .ok_or_else(|| CertificateError::NoKey(name.to_owned()))?;
            let chain: String = archive
                .certs
                .iter()
                .map(|bag| pem("CERTIFICATE", bag.cert.as_der()))
                .collect();
            let key = pem("PRIVATE KEY", key.key.as_der());
            ClientIdentity::from_pem(&chain, &key, ChainMode::LeafAndIntermediates, &provider)
                .map_err(identity_error)
        }
        "pem" => {
            let text = String::from_utf8_lossy(&bytes);
            ClientIdentity::from_pem(&text, &text, ChainMode::LeafAndIntermediates, &provider)
                .map_err(identity_error)
        }
        other => Err(CertificateError::UnsupportedFormat {
            name: name.to_owned(),
            kind: if other.is_empty() {
                "extension-less"
            } else {
                other
            }
            .to_owned(),
        }),
    }
}

/// The certificates of the PEM trust store `name` among `files` (a key in it is ignored).
pub fn trust_roots(
    files: &[CertificateFile],
    name: &str,
) -> Result<Vec<CertificateDer<'static>>, CertificateError> {
    let file = find(files, name)?;
    if extension(name) != "pem" {
        return Err(CertificateError::UnsupportedFormat {
            name: name.to_owned(),
            kind: extension(name),
        });
    }
    let bytes = decoded(file)?;
    let roots: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<_, _>>()
        .map_err(|_| CertificateError::NoCertificate(name.to_owned()))?;
    if roots.is_empty() {
        return Err(CertificateError::NoCertificate(name.to_owned()));
    }
    Ok(roots)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(name: &str, content: &[u8]) -> CertificateFile {
        CertificateFile {
            name: name.to_owned(),
            content: base64::engine::general_purpose::STANDARD.encode(content),
        }
    }

    #[test]
    fn unusable_files_are_named() {
        let files = [
            file("store.jks", b"x"),
            file("bad.p12", b"not pkcs12"),
            file("empty.pem", b"no pem here"),
            CertificateFile {
                name: "garbled.p12".to_owned(),
                content: "%%%".to_owned(),
            },
        ];
        let err = |name: &str| client_identity(&files, name, Some("pw")).expect_err(name);
        assert_eq!(
            err("missing.p12"),
            CertificateError::Missing("missing.p12".into())
        );
        assert!(
            matches!(err("store.jks"), CertificateError::UnsupportedFormat { kind, .. } if kind == "jks")
        );
        assert!(matches!(err("bad.p12"), CertificateError::Pkcs12 { .. }));
        assert_eq!(
            err("garbled.p12"),
            CertificateError::NotBase64("garbled.p12".into())
        );
        assert!(matches!(
            err("empty.pem"),
            CertificateError::Identity { .. }
        ));
        assert_eq!(
            trust_roots(&files, "empty.pem"),
            Err(CertificateError::NoCertificate("empty.pem".into()))
        );
    }
}
