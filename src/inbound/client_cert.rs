//! A client certificate as the router knows it: the DER leaf (and the chain the client sent),
//! parsed once, with every value a header format needs computed up front — fingerprints,
//! distinguished names (RFC 4514 and the OpenSSL one-line form), serial, validity, SANs, PEM.
//!
//! Every string accessor returns printable ASCII only (bytes outside it are escaped), so none of
//! them can carry CR, LF or NUL into a header.

use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use x509_parser::asn1_rs::{Any, Tag, ToDer as _};
use x509_parser::prelude::{FromDer, GeneralName, X509Certificate, X509Name};

/// Why DER bytes are not a usable client certificate.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CertificateError {
    #[error("no certificate was given")]
    Empty,
    #[error("certificate {index} (0 = leaf) is not DER X.509: {reason}")]
    Parse { index: usize, reason: String },
    #[error("certificate {index} (0 = leaf) has {len} bytes after its DER encoding")]
    TrailingData { index: usize, len: usize },
    #[error("certificate {index} (0 = leaf) has an unreadable subject alternative name: {reason}")]
    SubjectAltName { index: usize, reason: String },
}

/// A parsed client certificate: the leaf, the certificates sent after it (TLS order, leaf
/// excluded), and the leaf's values in the forms header formats use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientCertificate {
    leaf_der: Vec<u8>,
    chain_der: Vec<Vec<u8>>,
    sha256: [u8; 32],
    sha1: [u8; 20],
    subject: String,
    issuer: String,
    subject_legacy: String,
    issuer_legacy: String,
    subject_cn: Option<String>,
    subject_parts: Vec<(String, String)>,
    issuer_parts: Vec<(String, String)>,
    serial: Vec<u8>,
    serial_negative: bool,
    not_before: i64,
    not_after: i64,
    uris: Vec<String>,
    dns_names: Vec<String>,
    emails: Vec<String>,
    ip_addresses: Vec<IpAddr>,
}

impl ClientCertificate {
    /// Parses a leaf and the certificates the client sent after it (leaf excluded).
    pub fn from_der(leaf: Vec<u8>, chain: Vec<Vec<u8>>) -> Result<Self, CertificateError> {
        for (i, der) in chain.iter().enumerate() {
            parse(der, i + 1)?;
        }
        let details = {
            let cert = parse(&leaf, 0)?;
            let mut uris = Vec::new();
            let mut dns_names = Vec::new();
            let mut emails = Vec::new();
            let mut ip_addresses = Vec::new();
            let san =
                cert.subject_alternative_name()
                    .map_err(|e| CertificateError::SubjectAltName {
                        index: 0,
                        reason: e.to_string(),
                    })?;
            for name in san.iter().flat_map(|ext| ext.value.general_names.iter()) {
                match name {
                    GeneralName::URI(uri) => uris.push(printable(uri.as_bytes())),
                    GeneralName::DNSName(dns) => dns_names.push(printable(dns.as_bytes())),
                    GeneralName::RFC822Name(mail) => emails.push(printable(mail.as_bytes())),
                    GeneralName::IPAddress(bytes) => {
                        if let Ok(v4) = <[u8; 4]>::try_from(*bytes) {
                            ip_addresses.push(IpAddr::V4(Ipv4Addr::from(v4)));
                        } else if let Ok(v6) = <[u8; 16]>::try_from(*bytes) {
                            ip_addresses.push(IpAddr::V6(Ipv6Addr::from(v6)));
                        }
                    }
                    _ => {}
                }
            }
            let subject = cert.subject();
            let issuer = cert.issuer();
            let subject_cn = subject
                .iter_common_name()
                .last()
                .map(|atv| escape_text(&value_text(atv.attr_value())));
            let (serial_negative, serial) = serial_magnitude(cert.raw_serial());
            let sha256 = digest_array(&ring::digest::SHA256, &leaf);
            let sha1 = digest_array(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY, &leaf);
            Self {
                sha256,
                sha1,
                subject: rfc4514(subject),
                issuer: rfc4514(issuer),
                subject_legacy: legacy(subject),
                issuer_legacy: legacy(issuer),
                subject_cn,
                subject_parts: parts(subject),
                issuer_parts: parts(issuer),
                serial,
                serial_negative,
                not_before: cert.validity().not_before.timestamp(),
                not_after: cert.validity().not_after.timestamp(),
                uris,
                dns_names,
                emails,
                ip_addresses,
                leaf_der: Vec::new(),
                chain_der: Vec::new(),
            }
        };
        // The parsed view borrowed `leaf`; it is gone now, so the bytes can move in.
        Ok(Self {
            leaf_der: leaf,
            chain_der: chain,
            ..details
        })
    }

    /// Parses certificates in TLS order: the leaf first, then what the client sent after it.
    pub fn from_chain<C: AsRef<[u8]>>(certs: &[C]) -> Result<Self, CertificateError> {
        let (leaf, rest) = certs.split_first().ok_or(CertificateError::Empty)?;
        Self::from_der(
            leaf.as_ref().to_vec(),
            rest.iter().map(|c| c.as_ref().to_vec()).collect(),
        )
    }

    /// A presented certificate chain that does not parse (kept by a permissive listener, which
    /// marks it FAILED; never treat it as verified). When the leaf parses on its own its values
    /// are there; otherwise only the DER and the fingerprints are: names and SANs are empty,
    /// the serial is 0 and both validity times are the epoch.
    pub fn unparsed<C: AsRef<[u8]>>(certs: &[C]) -> Self {
        let (leaf, chain_der): (Vec<u8>, Vec<Vec<u8>>) = match certs.split_first() {
            Some((leaf, rest)) => (
                leaf.as_ref().to_vec(),
                rest.iter().map(|c| c.as_ref().to_vec()).collect(),
            ),
            None => (Vec::new(), Vec::new()),
        };
        if let Ok(parsed) = Self::from_der(leaf.clone(), Vec::new()) {
            return Self {
                chain_der,
                ..parsed
            };
        }
        Self {
            sha256: digest_array(&ring::digest::SHA256, &leaf),
            sha1: digest_array(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY, &leaf),
            subject: String::new(),
            issuer: String::new(),
            subject_legacy: String::new(),
            issuer_legacy: String::new(),
            subject_cn: None,
            subject_parts: Vec::new(),
            issuer_parts: Vec::new(),
            serial: vec![0],
            serial_negative: false,
            not_before: 0,
            not_after: 0,
            uris: Vec::new(),
            dns_names: Vec::new(),
            emails: Vec::new(),
            ip_addresses: Vec::new(),
            leaf_der: leaf,
            chain_der,
        }
    }

    /// The leaf's DER encoding.
    pub fn leaf_der(&self) -> &[u8] {
        &self.leaf_der
    }

    /// The certificates sent after the leaf, in TLS order (leaf excluded).
    pub fn chain_der(&self) -> &[Vec<u8>] {
        &self.chain_der
    }

    /// SHA-256 of the leaf DER, lowercase hex (Envoy `Hash`).
    pub fn sha256_hex(&self) -> String {
        hex(&self.sha256, HexCase::Lower)
    }

    /// SHA-256 of the leaf DER.
    pub fn sha256(&self) -> &[u8; 32] {
        &self.sha256
    }

    /// SHA-1 of the leaf DER, lowercase hex (nginx `$ssl_client_fingerprint`).
    pub fn sha1_hex(&self) -> String {
        hex(&self.sha1, HexCase::Lower)
    }

    /// The subject DN in RFC 4514 form: last RDN first, `,` between RDNs, `+` inside one,
    /// OpenSSL short names (`CN`, `O`, `emailAddress`, …; an unnamed type as its dotted OID
    /// with a `#`-hex DER value). Special characters are `\`-escaped; `"`, `\`, controls and
    /// every non-ASCII byte are written `\XX`, so the string is printable ASCII without `"`.
    pub fn subject(&self) -> &str {
        &self.subject
    }

    /// The issuer DN, formatted like [`ClientCertificate::subject`].
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// The subject DN in OpenSSL's one-line form (`X509_NAME_oneline`, nginx
    /// `$ssl_client_s_dn_legacy`): `/C=US/O=y/CN=x`, in encoded order. Bytes outside printable
    /// ASCII, and `/` and `\` (which would make the form ambiguous), are written `\xXX`.
    pub fn subject_legacy(&self) -> &str {
        &self.subject_legacy
    }

    /// The issuer DN in OpenSSL's one-line form.
    pub fn issuer_legacy(&self) -> &str {
        &self.issuer_legacy
    }

    /// The subject's most specific (last encoded) common name; bytes outside printable ASCII
    /// and `\` are written `\XX`.
    pub fn subject_common_name(&self) -> Option<&str> {
        self.subject_cn.as_deref()
    }

    /// The subject's attributes in encoded order as (short name, value) pairs, each value
    /// escaped as in [`ClientCertificate::subject`] (a non-string value as `#HEX`).
    pub fn subject_attributes(&self) -> &[(String, String)] {
        &self.subject_parts
    }

    /// The issuer's attributes in encoded order.
    pub fn issuer_attributes(&self) -> &[(String, String)] {
        &self.issuer_parts
    }

    /// The serial number's magnitude, big-endian, without leading zero bytes (one byte for 0).
    pub fn serial(&self) -> &[u8] {
        &self.serial
    }

    /// The serial in uppercase hex without separators, `-` first if negative (OpenSSL
    /// `i2a_ASN1_INTEGER`, nginx `$ssl_client_serial`).
    pub fn serial_hex(&self) -> String {
        let sign = if self.serial_negative { "-" } else { "" };
        format!("{sign}{}", hex(&self.serial, HexCase::Upper))
    }

    /// The serial in uppercase hex pairs separated by `:` (Azion's documented style).
    pub fn serial_hex_colons(&self) -> String {
        let sign = if self.serial_negative { "-" } else { "" };
        let pairs: Vec<String> = self.serial.iter().map(|b| format!("{b:02X}")).collect();
        format!("{sign}{}", pairs.join(":"))
    }

    /// notBefore, seconds since the Unix epoch.
    pub fn not_before(&self) -> i64 {
        self.not_before
    }

    /// notAfter, seconds since the Unix epoch.
    pub fn not_after(&self) -> i64 {
        self.not_after
    }

    /// URI subject alternative names (space, `"`, `\`, controls and non-ASCII as `%XX`).
    pub fn uris(&self) -> &[String] {
        &self.uris
    }

    /// DNS subject alternative names (space, `"`, `\`, controls and non-ASCII as `%XX`).
    pub fn dns_names(&self) -> &[String] {
        &self.dns_names
    }

    /// E-mail (rfc822Name) subject alternative names (space, `"`, `\`, controls and non-ASCII
    /// as `%XX`).
    pub fn emails(&self) -> &[String] {
        &self.emails
    }

    /// IP address subject alternative names.
    pub fn ip_addresses(&self) -> &[IpAddr] {
        &self.ip_addresses
    }

    /// The leaf in PEM (64-column base64 lines, `\n` line ends, final `\n`).
    pub fn leaf_pem(&self) -> String {
        pem(&self.leaf_der)
    }

    /// The certificates after the leaf in PEM, concatenated (empty without a chain).
    pub fn chain_pem(&self) -> String {
        self.chain_der.iter().map(|der| pem(der)).collect()
    }

    /// The leaf followed by the chain, in PEM (Envoy's `Chain` includes the leaf).
    pub fn full_chain_pem(&self) -> String {
        self.leaf_pem() + &self.chain_pem()
    }

    /// The leaf DER in standard base64 (padded, no line breaks).
    pub fn leaf_base64(&self) -> String {
        STANDARD.encode(&self.leaf_der)
    }

    /// Each chain certificate's DER in standard base64.
    pub fn chain_base64(&self) -> Vec<String> {
        self.chain_der
            .iter()
            .map(|der| STANDARD.encode(der))
            .collect()
    }
}

fn parse(der: &[u8], index: usize) -> Result<X509Certificate<'_>, CertificateError> {
    let (rest, cert) = X509Certificate::from_der(der).map_err(|e| CertificateError::Parse {
        index,
        reason: e.to_string(),
    })?;
    if !rest.is_empty() {
        return Err(CertificateError::TrailingData {
            index,
            len: rest.len(),
        });
    }
    Ok(cert)
}

fn digest_array<const N: usize>(
    algorithm: &'static ring::digest::Algorithm,
    data: &[u8],
) -> [u8; N] {
    let mut out = [0u8; N];
    out.copy_from_slice(ring::digest::digest(algorithm, data).as_ref());
    out
}

/// The sign and big-endian magnitude of a DER INTEGER's content bytes.
fn serial_magnitude(raw: &[u8]) -> (bool, Vec<u8>) {
    let negative = raw.first().is_some_and(|b| b & 0x80 != 0);
    let mut magnitude = raw.to_vec();
    if negative {
        // Two's complement: invert and add one.
        for b in magnitude.iter_mut() {
            *b = !*b;
        }
        for b in magnitude.iter_mut().rev() {
            let (sum, carry) = b.overflowing_add(1);
            *b = sum;
            if !carry {
                break;
            }
        }
    }
    let first = magnitude
        .iter()
        .position(|&b| b != 0)
        .unwrap_or(magnitude.len().saturating_sub(1));
    let mut magnitude = magnitude.split_off(first.min(magnitude.len()));
    if magnitude.is_empty() {
        magnitude.push(0);
    }
    (negative, magnitude)
}

#[derive(Clone, Copy)]
pub(crate) enum HexCase {
    Lower,
    Upper,
}

pub(crate) fn hex(bytes: &[u8], case: HexCase) -> String {
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = match case {
            HexCase::Lower => write!(out, "{b:02x}"),
            HexCase::Upper => write!(out, "{b:02X}"),
        };
    }
    out
}

/// PEM of one DER certificate, as OpenSSL and Go write it.
pub(crate) fn pem(der: &[u8]) -> String {
    let body = STANDARD.encode(der);
    let mut out = String::with_capacity(body.len() + body.len() / 64 + 60);
    out.push_str("-----BEGIN CERTIFICATE-----\n");
    for line in body.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(line));
        out.push('\n');
    }
    out.push_str("-----END CERTIFICATE-----\n");
    out
}

/// A SAN string with space, `"`, `\` and bytes outside printable ASCII percent-encoded (an
/// existing `%XX` is kept, so a well-formed URI is unchanged).
pub(crate) fn printable(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    for &b in bytes {
        if (0x21..=0x7e).contains(&b) && !matches!(b, b'"' | b'\\') {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

/// OpenSSL's short name for an attribute type, or `None` (then the dotted OID is used).
fn short_name(oid: &str) -> Option<&'static str> {
    Some(match oid {
        "2.5.4.3" => "CN",
        "2.5.4.4" => "SN",
        "2.5.4.5" => "serialNumber",
        "2.5.4.6" => "C",
        "2.5.4.7" => "L",
        "2.5.4.8" => "ST",
        "2.5.4.9" => "street",
        "2.5.4.10" => "O",
        "2.5.4.11" => "OU",
        "2.5.4.12" => "title",
        "2.5.4.13" => "description",
        "2.5.4.15" => "businessCategory",
        "2.5.4.17" => "postalCode",
        "2.5.4.42" => "GN",
        "2.5.4.43" => "initials",
        "2.5.4.44" => "generationQualifier",
        "2.5.4.45" => "x500UniqueIdentifier",
        "2.5.4.46" => "dnQualifier",
        "2.5.4.65" => "pseudonym",
        "2.5.4.97" => "organizationIdentifier",
        "0.9.2342.19200300.100.1.1" => "UID",
        "0.9.2342.19200300.100.1.25" => "DC",
        "1.2.840.113549.1.9.1" => "emailAddress",
        "1.3.6.1.4.1.311.60.2.1.1" => "jurisdictionL",
        "1.3.6.1.4.1.311.60.2.1.2" => "jurisdictionST",
        "1.3.6.1.4.1.311.60.2.1.3" => "jurisdictionC",
        _ => return None,
    })
}

/// An attribute value: text (as UTF-8 bytes, possibly invalid) or, for a non-string type, its
/// whole DER encoding.
enum Value {
    Text(Vec<u8>),
    Der(Vec<u8>),
}

fn attribute_value(any: &Any<'_>) -> Value {
    let data = any.data;
    match any.tag() {
        Tag::Utf8String
        | Tag::PrintableString
        | Tag::Ia5String
        | Tag::NumericString
        | Tag::VisibleString => Value::Text(data.to_vec()),
        // T.61 is read as Latin-1, as OpenSSL does.
        Tag::TeletexString => Value::Text(
            data.iter()
                .map(|&b| char::from(b))
                .collect::<String>()
                .into_bytes(),
        ),
        Tag::BmpString if data.len() % 2 == 0 => {
            let units = data.chunks(2).map(|c| u16::from_be_bytes([c[0], c[1]]));
            Value::Text(
                char::decode_utf16(units)
                    .map(|c| c.unwrap_or(char::REPLACEMENT_CHARACTER))
                    .collect::<String>()
                    .into_bytes(),
            )
        }
        Tag::UniversalString if data.len() % 4 == 0 => Value::Text(
            data.chunks(4)
                .map(|c| {
                    char::from_u32(u32::from_be_bytes([c[0], c[1], c[2], c[3]]))
                        .unwrap_or(char::REPLACEMENT_CHARACTER)
                })
                .collect::<String>()
                .into_bytes(),
        ),
        _ => Value::Der(any.to_der_vec().unwrap_or_else(|_| data.to_vec())),
    }
}

/// The value's text (a DER value as `#HEX`).
fn value_text(any: &Any<'_>) -> Vec<u8> {
    match attribute_value(any) {
        Value::Text(text) => text,
        Value::Der(der) => format!("#{}", hex(&der, HexCase::Upper)).into_bytes(),
    }
}

/// Printable ASCII kept, `\` and everything else as `\XX`.
fn escape_text(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    for &b in bytes {
        if (0x20..=0x7e).contains(&b) && b != b'\\' {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "\\{b:02X}");
        }
    }
    out
}

/// RFC 4514 escaping of one attribute value (see [`ClientCertificate::subject`]).
pub(crate) fn escape_rfc4514_value(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    let last = bytes.len().saturating_sub(1);
    for (i, &b) in bytes.iter().enumerate() {
        match b {
            b'+' | b',' | b';' | b'<' | b'>' => {
                out.push('\\');
                out.push(char::from(b));
            }
            b'#' if i == 0 => out.push_str("\\#"),
            b' ' if i == 0 || i == last => out.push_str("\\ "),
            b'"' | b'\\' => {
                let _ = write!(out, "\\{b:02X}");
            }
            0x20..=0x7e => out.push(char::from(b)),
            _ => {
                let _ = write!(out, "\\{b:02X}");
            }
        }
    }
    out
}

fn attribute_type(oid: &str) -> (String, bool) {
    match short_name(oid) {
        Some(name) => (name.to_owned(), true),
        None => (oid.to_owned(), false),
    }
}

fn rfc4514(name: &X509Name<'_>) -> String {
    let rdns: Vec<String> = name
        .iter_rdn()
        .map(|rdn| {
            let atvs: Vec<String> = rdn
                .iter()
                .map(|atv| {
                    let (ty, known) = attribute_type(&atv.attr_type().to_id_string());
                    let value = match (known, attribute_value(atv.attr_value())) {
                        (true, Value::Text(text)) => escape_rfc4514_value(&text),
                        (_, Value::Der(der)) => format!("#{}", hex(&der, HexCase::Upper)),
                        // RFC 4514 §2.4: a dotted-OID type takes the `#`-hex DER value.
                        (false, Value::Text(_)) => {
                            let der = atv.attr_value().to_der_vec().unwrap_or_default();
                            format!("#{}", hex(&der, HexCase::Upper))
                        }
                    };
                    format!("{ty}={value}")
                })
                .collect();
            atvs.join("+")
        })
        .collect();
    rdns.iter().rev().cloned().collect::<Vec<_>>().join(",")
}

fn legacy(name: &X509Name<'_>) -> String {
    let mut out = String::new();
    for atv in name.iter_attributes() {
        let (ty, _) = attribute_type(&atv.attr_type().to_id_string());
        out.push('/');
        out.push_str(&ty);
        out.push('=');
        for b in value_text(atv.attr_value()) {
            if (0x20..=0x7e).contains(&b) && b != b'/' && b != b'\\' {
                out.push(char::from(b));
            } else {
                let _ = write!(out, "\\x{b:02X}");
            }
        }
    }
    out
}

fn parts(name: &X509Name<'_>) -> Vec<(String, String)> {
    name.iter_attributes()
        .map(|atv| {
            let (ty, _) = attribute_type(&atv.attr_type().to_id_string());
            let value = match attribute_value(atv.attr_value()) {
                Value::Text(text) => escape_rfc4514_value(&text),
                Value::Der(der) => format!("#{}", hex(&der, HexCase::Upper)),
            };
            (ty, value)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::civil_time::civil;
    use rcgen::{
        CertificateParams, DistinguishedName, DnType, DnValue, KeyPair, SanType, SerialNumber,
    };

    fn cert(dn: DistinguishedName, sans: Vec<SanType>, serial: Vec<u8>) -> ClientCertificate {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
        params.distinguished_name = dn;
        params.subject_alt_names = sans;
        params.serial_number = Some(SerialNumber::from(serial));
        params.not_before =
            rcgen::date_time_ymd(2023, 1, 5) + std::time::Duration::from_secs(43_200);
        params.not_after = rcgen::date_time_ymd(2051, 12, 31);
        let key = KeyPair::generate().expect("key");
        let der = params.self_signed(&key).expect("cert").der().to_vec();
        ClientCertificate::from_der(der, Vec::new()).expect("parse")
    }

    #[test]
    fn names_in_rfc4514_and_legacy_form() {
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CountryName, "US");
        dn.push(DnType::OrganizationName, "Doe, \"Jane\" + Co; <x>");
        dn.push(DnType::CommonName, " #lead\\trail ");
        let c = cert(dn, vec![], vec![1]);
        assert_eq!(
            c.subject(),
            "CN=\\ #lead\\5Ctrail\\ ,O=Doe\\, \\22Jane\\22 \\+ Co\\; \\<x\\>,C=US"
        );
        assert_eq!(c.subject(), c.issuer());
        assert_eq!(
            c.subject_legacy(),
            "/C=US/O=Doe, \"Jane\" + Co; <x>/CN= #lead\\x5Ctrail "
        );
        assert_eq!(c.subject_common_name(), Some(" #lead\\5Ctrail "));
    }

    #[test]
    fn controls_and_non_ascii_are_escaped() {
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, "a\r\nb\0é/CN=admin");
        let c = cert(dn, vec![], vec![1]);
        assert_eq!(c.subject(), "CN=a\\0D\\0Ab\\00\\C3\\A9/CN=admin");
        assert_eq!(
            c.subject_legacy(),
            "/CN=a\\x0D\\x0Ab\\x00\\xC3\\xA9\\x2FCN=admin"
        );
        assert_eq!(
            c.subject_common_name(),
            Some("a\\0D\\0Ab\\00\\C3\\A9/CN=admin")
        );
    }

    #[test]
    fn string_types_are_decoded() {
        let mut dn = DistinguishedName::new();
        dn.push(
            DnType::CommonName,
            DnValue::BmpString("Zoë".try_into().expect("bmp")),
        );
        dn.push(
            DnType::OrganizationName,
            DnValue::TeletexString("T61".try_into().expect("t61")),
        );
        dn.push(
            DnType::OrganizationalUnitName,
            DnValue::UniversalString("Ü".try_into().expect("universal")),
        );
        // An attribute type OpenSSL has no name for: dotted OID, `#`-hex DER value.
        dn.push(DnType::CustomDnType(vec![1, 2, 3, 4]), "v");
        let c = cert(dn, vec![], vec![1]);
        assert_eq!(
            c.subject(),
            "1.2.3.4=#0C0176,OU=\\C3\\9C,O=T61,CN=Zo\\C3\\AB"
        );
    }

    #[test]
    fn serial_fingerprints_dates_and_sans() {
        let sans = vec![
            SanType::URI("spiffe://a/b%2Fc".try_into().expect("uri")),
            SanType::DnsName("example.com".try_into().expect("dns")),
            SanType::Rfc822Name("a@example.com".try_into().expect("mail")),
            SanType::IpAddress("10.0.1.2".parse().expect("ip")),
            SanType::IpAddress("::1".parse().expect("ip")),
        ];
        let c = cert(DistinguishedName::new(), sans, vec![0x00, 0x8c, 0x0a]);
        assert_eq!(c.serial(), &[0x8c, 0x0a]);
        assert_eq!(c.serial_hex(), "8C0A");
        assert_eq!(c.serial_hex_colons(), "8C:0A");
        assert_eq!(c.sha256_hex().len(), 64);
        assert_eq!(c.sha1_hex().len(), 40);
        assert_eq!(c.not_before(), 1_672_920_000);
        assert_eq!(civil(c.not_before()), (2023, 1, 5, 12, 0, 0));
        assert_eq!(civil(c.not_after()), (2051, 12, 31, 0, 0, 0));
        assert_eq!(c.uris(), ["spiffe://a/b%2Fc"]);
        assert_eq!(c.dns_names(), ["example.com"]);
        assert_eq!(c.emails(), ["a@example.com"]);
        assert_eq!(c.ip_addresses().len(), 2);
        assert_eq!(c.subject(), "");
        assert_eq!(c.subject_legacy(), "");
        assert!(c.leaf_pem().starts_with("-----BEGIN CERTIFICATE-----\nMI"));
        assert!(c.leaf_pem().ends_with("\n-----END CERTIFICATE-----\n"));
        assert_eq!(c.chain_pem(), "");
    }

    #[test]
    fn negative_and_zero_serials() {
        assert_eq!(serial_magnitude(&[0xff]), (true, vec![1]));
        assert_eq!(serial_magnitude(&[0x80, 0x00]), (true, vec![0x80, 0x00]));
        assert_eq!(serial_magnitude(&[0x00]), (false, vec![0]));
        assert_eq!(serial_magnitude(&[]), (false, vec![0]));
        assert_eq!(serial_magnitude(&[0x00, 0x00, 0x01]), (false, vec![1]));
    }

    #[test]
    fn garbage_is_an_error() {
        assert!(matches!(
            ClientCertificate::from_der(b"not a certificate".to_vec(), vec![]),
            Err(CertificateError::Parse { index: 0, .. })
        ));
        let c = cert(DistinguishedName::new(), vec![], vec![1]);
        let mut trailing = c.leaf_der().to_vec();
        trailing.push(0);
        assert_eq!(
            ClientCertificate::from_der(trailing, vec![]),
            Err(CertificateError::TrailingData { index: 0, len: 1 })
        );
        assert!(matches!(
            ClientCertificate::from_der(c.leaf_der().to_vec(), vec![vec![0x30, 0x00]]),
            Err(CertificateError::Parse { index: 1, .. })
        ));
        assert_eq!(
            ClientCertificate::from_chain::<Vec<u8>>(&[]),
            Err(CertificateError::Empty)
        );
    }

    #[test]
    fn an_unparsed_chain_keeps_what_can_be_read() {
        let c = cert(DistinguishedName::new(), vec![], vec![1]);
        let junk = b"not a certificate".to_vec();
        // The leaf parses alone: its values, and the chain as sent.
        let kept = ClientCertificate::unparsed(&[c.leaf_der().to_vec(), junk.clone()]);
        assert_eq!(kept.sha256(), c.sha256());
        assert_eq!(kept.serial(), c.serial());
        assert_eq!(kept.chain_der(), std::slice::from_ref(&junk));
        // Nothing parses: only the bytes and their fingerprints.
        let bare = ClientCertificate::unparsed(std::slice::from_ref(&junk));
        assert_eq!(bare.leaf_der(), junk.as_slice());
        assert_eq!(
            bare.sha256_hex(),
            ring::digest::digest(&ring::digest::SHA256, &junk)
                .as_ref()
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect::<String>()
        );
        assert_eq!((bare.subject(), bare.issuer()), ("", ""));
        assert!(bare.subject_attributes().is_empty() && bare.uris().is_empty());
        assert_eq!((bare.not_before(), bare.not_after()), (0, 0));
        assert!(
            ClientCertificate::unparsed::<Vec<u8>>(&[])
                .leaf_der()
                .is_empty()
        );
    }
}
