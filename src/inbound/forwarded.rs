//! Client certificates forwarded by a trusted front proxy, parsed from its headers: Envoy
//! `X-Forwarded-Client-Cert` (the last element, added by the nearest hop), Cloud Foundry's raw
//! form (base64 DER in the same header), RFC 9440 `Client-Cert` / `Client-Cert-Chain`, nginx's
//! URL-escaped PEM and Traefik's `X-Forwarded-Tls-Client-Cert`.
//!
//! Only call these for requests whose direct peer is the trusted proxy; from anyone else these
//! headers are stripped. Input is bounded ([`MAX_HEADER_BYTES`], [`MAX_XFCC_ELEMENTS`],
//! [`MAX_CHAIN_CERTS`]) and malformed input is an error, never a panic.

use std::borrow::Cow;

use base64::Engine as _;
use base64::alphabet;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use http::HeaderMap;
use http::header::HeaderName;

use super::client_cert::{CertificateError, ClientCertificate};

/// The largest header value accepted (after joining repeated instances).
pub const MAX_HEADER_BYTES: usize = 16 * 1024;
/// The most `X-Forwarded-Client-Cert` elements (proxy hops) accepted.
pub const MAX_XFCC_ELEMENTS: usize = 8;
/// The most certificates accepted in one forwarded chain (leaf included).
pub const MAX_CHAIN_CERTS: usize = 8;
/// The most key=value pairs accepted in one XFCC element.
const MAX_XFCC_PAIRS: usize = 64;

/// Standard base64, padding optional, non-zero trailing bits tolerated (RFC 8941 §4.2.7).
const LENIENT_BASE64: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new()
        .with_decode_padding_mode(DecodePaddingMode::Indifferent)
        .with_decode_allow_trailing_bits(true),
);

const PEM_BEGIN: &str = "-----BEGIN CERTIFICATE-----";
const PEM_END: &str = "-----END CERTIFICATE-----";

/// Why a forwarded client certificate was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ForwardedCertError {
    #[error("`{header}` is {len} bytes, over the {limit}-byte limit")]
    TooLarge {
        header: &'static str,
        len: usize,
        limit: usize,
    },
    #[error("`{header}` holds more than {limit} {what}")]
    TooMany {
        header: &'static str,
        what: &'static str,
        limit: usize,
    },
    #[error("`{header}` appears {count} times but must appear once")]
    Repeated { header: &'static str, count: usize },
    #[error("`{header}` is not visible ASCII text")]
    NotText { header: &'static str },
    #[error("malformed x-forwarded-client-cert at byte {at}: {reason}")]
    MalformedXfcc { at: usize, reason: &'static str },
    #[error("x-forwarded-client-cert element repeats the single-valued key `{key}`")]
    DuplicateXfccKey { key: &'static str },
    #[error("x-forwarded-client-cert `Hash` is not 64 hex digits")]
    MalformedHash,
    #[error("the forwarded element carries no certificate (only `Hash`/`Subject`)")]
    NoCertificate,
    #[error("x-forwarded-client-cert `Hash` does not match its certificate")]
    HashMismatch,
    #[error("`{header}` is not valid base64")]
    Base64 { header: &'static str },
    #[error("`{header}` is not a PEM certificate: {reason}")]
    Pem {
        header: &'static str,
        reason: &'static str,
    },
    #[error("`{header}` is not a valid structured-field byte sequence: {reason}")]
    StructuredField {
        header: &'static str,
        reason: &'static str,
    },
    #[error("`client-cert-chain` was sent without `client-cert`")]
    ChainWithoutCert,
    #[error("forwarded certificate: {0}")]
    Certificate(#[from] CertificateError),
}

/// One element (proxy hop) of an Envoy `X-Forwarded-Client-Cert` header, values unquoted and
/// `Cert`/`Chain` URL-decoded to PEM. Unknown keys are ignored.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct XfccElement {
    pub by: Vec<String>,
    pub hash: Option<String>,
    pub cert: Option<String>,
    pub chain: Option<String>,
    pub subject: Option<String>,
    pub uri: Vec<String>,
    pub dns: Vec<String>,
}

const XFCC: &str = "x-forwarded-client-cert";

impl XfccElement {
    /// The certificate this element carries: `Cert` (else the first certificate of `Chain`)
    /// as the leaf, the rest of `Chain` (which Envoy starts with the leaf) as the chain. A
    /// `Hash` present must match the leaf.
    pub fn certificate(&self) -> Result<ClientCertificate, ForwardedCertError> {
        let cert = match &self.cert {
            Some(pem) => {
                let mut certs = pem_certificates(pem, XFCC)?;
                if certs.len() != 1 {
                    return Err(ForwardedCertError::Pem {
                        header: XFCC,
                        reason: "`Cert` must hold exactly one certificate",
                    });
                }
                certs.pop()
            }
            None => None,
        };
        let mut chain = match &self.chain {
            Some(pem) => pem_certificates(pem, XFCC)?,
            None => Vec::new(),
        };
        let leaf = match cert {
            Some(leaf) => {
                if chain.first() == Some(&leaf) {
                    chain.remove(0);
                }
                leaf
            }
            None if !chain.is_empty() => chain.remove(0),
            None => return Err(ForwardedCertError::NoCertificate),
        };
        if chain.len() >= MAX_CHAIN_CERTS {
            return Err(ForwardedCertError::TooMany {
                header: XFCC,
                what: "chain certificates",
                limit: MAX_CHAIN_CERTS,
            });
        }
        let parsed = ClientCertificate::from_der(leaf, chain)?;
        if let Some(hash) = &self.hash {
            if !hash.eq_ignore_ascii_case(&parsed.sha256_hex()) {
                return Err(ForwardedCertError::HashMismatch);
            }
        }
        Ok(parsed)
    }
}

/// Parses a whole `X-Forwarded-Client-Cert` value (repeated header instances joined with `,`)
/// per Envoy's grammar: elements split by `,`, pairs by `;`, `key=value` with case-insensitive
/// keys; a value containing `,` `;` `=` must be double-quoted and writes `"` as `\"` (any other
/// `\` is literal, as Envoy writes DNs). Empty elements are skipped; `Hash`, `Cert`, `Chain` and
/// `Subject` may appear once per element, `By`, `URI` and `DNS` repeat.
pub fn parse_xfcc(value: &str) -> Result<Vec<XfccElement>, ForwardedCertError> {
    check_size(XFCC, value)?;
    let bytes = value.as_bytes();
    let malformed =
        |at: usize, reason: &'static str| ForwardedCertError::MalformedXfcc { at, reason };
    let mut elements = Vec::new();
    let mut current = XfccElement::default();
    let mut pairs = 0usize;
    let mut i = 0usize;
    loop {
        i = skip_ows(bytes, i);
        // An empty element, or the end.
        if i >= bytes.len() || bytes[i] == b',' {
            if pairs > 0 {
                push_element(&mut elements, std::mem::take(&mut current))?;
                pairs = 0;
            }
            if i >= bytes.len() {
                break;
            }
            i += 1;
            continue;
        }
        // key
        let key_start = i;
        while i < bytes.len() && is_tchar(bytes[i]) {
            i += 1;
        }
        if i == key_start {
            return Err(malformed(i, "expected a key"));
        }
        let key = &value[key_start..i];
        i = skip_ows(bytes, i);
        if i >= bytes.len() || bytes[i] != b'=' {
            return Err(malformed(i, "expected `=` after a key"));
        }
        i = skip_ows(bytes, i + 1);
        // value
        let parsed: Cow<'_, str> = if i < bytes.len() && bytes[i] == b'"' {
            let mut out = String::new();
            let mut j = i + 1;
            let mut run = j;
            loop {
                if j >= bytes.len() {
                    return Err(malformed(i, "unbalanced double quote"));
                }
                match bytes[j] {
                    b'"' => break,
                    b'\\' if bytes.get(j + 1) == Some(&b'"') => {
                        out.push_str(&value[run..j]);
                        out.push('"');
                        j += 2;
                        run = j;
                    }
                    _ => j += 1,
                }
            }
            out.push_str(&value[run..j]);
            i = skip_ows(bytes, j + 1);
            if i < bytes.len() && bytes[i] != b';' && bytes[i] != b',' {
                return Err(malformed(i, "text after a closing double quote"));
            }
            Cow::Owned(out)
        } else {
            let start = i;
            while i < bytes.len() && bytes[i] != b';' && bytes[i] != b',' {
                if bytes[i] == b'"' {
                    return Err(malformed(i, "double quote inside an unquoted value"));
                }
                i += 1;
            }
            Cow::Borrowed(value[start..i].trim_end_matches([' ', '\t']))
        };
        pairs += 1;
        if pairs > MAX_XFCC_PAIRS {
            return Err(ForwardedCertError::TooMany {
                header: XFCC,
                what: "pairs in one element",
                limit: MAX_XFCC_PAIRS,
            });
        }
        set_pair(&mut current, key, parsed.into_owned())?;
        if i < bytes.len() && bytes[i] == b';' {
            i += 1;
            // A `;` must be followed by another pair.
            let next = skip_ows(bytes, i);
            if next >= bytes.len() || bytes[next] == b',' {
                return Err(malformed(next, "expected a pair after `;`"));
            }
        }
    }
    Ok(elements)
}

fn push_element(
    elements: &mut Vec<XfccElement>,
    element: XfccElement,
) -> Result<(), ForwardedCertError> {
    if elements.len() >= MAX_XFCC_ELEMENTS {
        return Err(ForwardedCertError::TooMany {
            header: XFCC,
            what: "elements",
            limit: MAX_XFCC_ELEMENTS,
        });
    }
    elements.push(element);
    Ok(())
}

/// RFC 9110 token characters.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

fn set_pair(element: &mut XfccElement, key: &str, value: String) -> Result<(), ForwardedCertError> {
    fn once(
        slot: &mut Option<String>,
        key: &'static str,
        value: String,
    ) -> Result<(), ForwardedCertError> {
        if slot.is_some() {
            return Err(ForwardedCertError::DuplicateXfccKey { key });
        }
        *slot = Some(value);
        Ok(())
    }
    let key = key.to_ascii_lowercase();
    match key.as_str() {
        "by" => element.by.push(value),
        "uri" => element.uri.push(value),
        "dns" => element.dns.push(value),
        "subject" => once(&mut element.subject, "Subject", value)?,
        "hash" => {
            if value.len() != 64 || !value.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(ForwardedCertError::MalformedHash);
            }
            once(&mut element.hash, "Hash", value)?
        }
        "cert" => once(
            &mut element.cert,
            "Cert",
            url_decode(&value, XFCC)?.into_owned(),
        )?,
        "chain" => once(
            &mut element.chain,
            "Chain",
            url_decode(&value, XFCC)?.into_owned(),
        )?,
        _ => {}
    }
    Ok(())
}

/// The certificate in the LAST element of an Envoy `X-Forwarded-Client-Cert` value — the one
/// the nearest proxy added. The element must carry `Cert` or `Chain`.
pub fn from_envoy_xfcc(value: &str) -> Result<ClientCertificate, ForwardedCertError> {
    parse_xfcc(value)?
        .last()
        .ok_or(ForwardedCertError::MalformedXfcc {
            at: 0,
            reason: "no element",
        })?
        .certificate()
}

/// Cloud Foundry's raw `X-Forwarded-Client-Cert`: the leaf's DER in standard base64, no armor,
/// no line breaks (gorouter/HAProxy `sanitize_set`). A PEM-armored value is accepted too.
pub fn from_cf_raw(value: &str) -> Result<ClientCertificate, ForwardedCertError> {
    check_size(XFCC, value)?;
    let value = value.trim_matches([' ', '\t']);
    if value.starts_with(PEM_BEGIN) {
        let mut certs = pem_certificates(value, XFCC)?;
        if certs.len() != 1 {
            return Err(ForwardedCertError::Pem {
                header: XFCC,
                reason: "expected exactly one certificate",
            });
        }
        return Ok(ClientCertificate::from_der(certs.remove(0), Vec::new())?);
    }
    let der = base64(value, XFCC)?;
    Ok(ClientCertificate::from_der(der, Vec::new())?)
}

/// An `X-Forwarded-Client-Cert` in either form, told apart the way `@sap/xssec` does: Envoy
/// text has `key=value` pairs (base64 DER always starts `MI`, never `Hash=` or `;`).
pub fn from_xfcc_any(value: &str) -> Result<ClientCertificate, ForwardedCertError> {
    if looks_like_envoy(value) {
        from_envoy_xfcc(value)
    } else {
        from_cf_raw(value)
    }
}

/// Whether an XFCC value is Envoy's text form rather than Cloud Foundry's raw base64.
pub fn looks_like_envoy(value: &str) -> bool {
    if value.contains(';') || value.contains('"') {
        return true;
    }
    let head = value.trim_start().as_bytes();
    let key_len = head.iter().take_while(|&&b| is_tchar(b)).count();
    key_len > 0 && head.get(key_len) == Some(&b'=') && {
        let key = String::from_utf8_lossy(&head[..key_len]).to_ascii_lowercase();
        matches!(
            key.as_str(),
            "by" | "hash" | "cert" | "chain" | "subject" | "uri" | "dns"
        )
    }
}

const CLIENT_CERT: &str = "client-cert";
const CLIENT_CERT_CHAIN: &str = "client-cert-chain";

/// RFC 9440: `Client-Cert` is one structured-field byte sequence (`:<base64 DER>:`) holding the
/// leaf; `Client-Cert-Chain` (optional) a list of them, the certificates after the leaf in TLS
/// order. Parameters on items are ignored.
pub fn from_rfc9440(
    cert: &str,
    chain: Option<&str>,
) -> Result<ClientCertificate, ForwardedCertError> {
    check_size(CLIENT_CERT, cert)?;
    let (leaf, rest) = sf_byte_sequence(cert.as_bytes(), 0, CLIENT_CERT)?;
    if skip_sp(cert.as_bytes(), rest) != cert.len() {
        return Err(ForwardedCertError::StructuredField {
            header: CLIENT_CERT,
            reason: "`client-cert` is a single item, not a list",
        });
    }
    let mut certs = Vec::new();
    if let Some(chain) = chain {
        check_size(CLIENT_CERT_CHAIN, chain)?;
        let bytes = chain.as_bytes();
        let mut i = skip_sp(bytes, 0);
        while i < bytes.len() {
            if certs.len() + 1 >= MAX_CHAIN_CERTS {
                return Err(ForwardedCertError::TooMany {
                    header: CLIENT_CERT_CHAIN,
                    what: "certificates",
                    limit: MAX_CHAIN_CERTS,
                });
            }
            let (der, next) = sf_byte_sequence(bytes, i, CLIENT_CERT_CHAIN)?;
            certs.push(der);
            i = skip_ows(bytes, next);
            if i >= bytes.len() {
                break;
            }
            if bytes[i] != b',' {
                return Err(ForwardedCertError::StructuredField {
                    header: CLIENT_CERT_CHAIN,
                    reason: "expected `,` between list members",
                });
            }
            i = skip_ows(bytes, i + 1);
            if i >= bytes.len() {
                return Err(ForwardedCertError::StructuredField {
                    header: CLIENT_CERT_CHAIN,
                    reason: "trailing `,`",
                });
            }
        }
    }
    Ok(ClientCertificate::from_der(leaf, certs)?)
}

fn skip_sp(bytes: &[u8], mut i: usize) -> usize {
    while i < bytes.len() && bytes[i] == b' ' {
        i += 1;
    }
    i
}

fn skip_ows(bytes: &[u8], mut i: usize) -> usize {
    while i < bytes.len() && (bytes[i] == b' ' || bytes[i] == b'\t') {
        i += 1;
    }
    i
}

/// One byte-sequence item starting at `i` (after optional SP), with its parameters skipped.
/// Returns the decoded bytes and the index after the item.
fn sf_byte_sequence(
    bytes: &[u8],
    i: usize,
    header: &'static str,
) -> Result<(Vec<u8>, usize), ForwardedCertError> {
    let sf = |reason| ForwardedCertError::StructuredField { header, reason };
    let i = skip_sp(bytes, i);
    if bytes.get(i) != Some(&b':') {
        return Err(sf("expected `:` to open a byte sequence"));
    }
    let start = i + 1;
    let len = bytes[start..]
        .iter()
        .position(|&b| b == b':')
        .ok_or(sf("unterminated byte sequence"))?;
    let body = &bytes[start..start + len];
    if !body
        .iter()
        .all(|&b| b.is_ascii_alphanumeric() || b == b'+' || b == b'/' || b == b'=')
    {
        return Err(sf("character outside the base64 alphabet"));
    }
    let der = LENIENT_BASE64
        .decode(body)
        .map_err(|_| ForwardedCertError::Base64 { header })?;
    let mut i = start + len + 1;
    // Parameters: *( ";" *SP key [ "=" bare-item ] )
    while bytes.get(i) == Some(&b';') {
        i = skip_sp(bytes, i + 1);
        let key_start = i;
        while i < bytes.len()
            && (bytes[i].is_ascii_lowercase()
                || bytes[i].is_ascii_digit()
                || b"_-.*".contains(&bytes[i]))
        {
            i += 1;
        }
        if i == key_start {
            return Err(sf("expected a parameter key"));
        }
        if bytes.get(i) == Some(&b'=') {
            i += 1;
            match bytes.get(i) {
                Some(b'"') => {
                    i += 1;
                    loop {
                        match bytes.get(i) {
                            None => return Err(sf("unterminated string parameter")),
                            Some(b'\\') => i += 2,
                            Some(b'"') => break,
                            Some(_) => i += 1,
                        }
                    }
                    i += 1;
                }
                Some(b':') => {
                    let close = bytes[i + 1..]
                        .iter()
                        .position(|&b| b == b':')
                        .ok_or(sf("unterminated byte-sequence parameter"))?;
                    i += close + 2;
                }
                _ => {
                    let value_start = i;
                    while i < bytes.len()
                        && (is_tchar(bytes[i]) || matches!(bytes[i], b':' | b'/' | b'?'))
                    {
                        i += 1;
                    }
                    if i == value_start {
                        return Err(sf("expected a parameter value"));
                    }
                }
            }
        }
    }
    Ok((der, i))
}

/// nginx `$ssl_client_escaped_cert` (and `X-SSL-Client-Cert`-style headers): URL-escaped PEM,
/// the leaf first, optionally followed by chain certificates. Plain PEM whose line breaks were
/// replaced by spaces or tabs is accepted too.
pub fn from_escaped_pem(value: &str) -> Result<ClientCertificate, ForwardedCertError> {
    const HEADER: &str = "ssl-client-escaped-cert";
    check_size(HEADER, value)?;
    let pem = url_decode(value.trim_matches([' ', '\t']), HEADER)?;
    // Never empty, and at most MAX_CHAIN_CERTS long.
    let mut certs = pem_certificates(&pem, HEADER)?;
    let leaf = certs.remove(0);
    Ok(ClientCertificate::from_der(leaf, certs)?)
}

/// Traefik `X-Forwarded-Tls-Client-Cert`: base64 DER of each certificate the client sent,
/// joined by `,`, leaf first (URL-escaped by Traefik 2.8–2.9.1, which is undone).
pub fn from_traefik(value: &str) -> Result<ClientCertificate, ForwardedCertError> {
    const HEADER: &str = "x-forwarded-tls-client-cert";
    check_size(HEADER, value)?;
    let value = if value.contains('%') {
        url_decode(value, HEADER)?
    } else {
        Cow::Borrowed(value)
    };
    let mut certs = Vec::new();
    for item in value.split(',') {
        if certs.len() >= MAX_CHAIN_CERTS {
            return Err(ForwardedCertError::TooMany {
                header: HEADER,
                what: "certificates",
                limit: MAX_CHAIN_CERTS,
            });
        }
        certs.push(base64(item.trim_matches([' ', '\t']), HEADER)?);
    }
    let leaf = certs.remove(0);
    Ok(ClientCertificate::from_der(leaf, certs)?)
}

/// Which forwarded format a trusted proxy uses, and so which headers to read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ForwardedFormat {
    /// Envoy `X-Forwarded-Client-Cert` text (last element).
    Envoy,
    /// Cloud Foundry raw `X-Forwarded-Client-Cert` (base64 DER).
    CloudFoundry,
    /// Either XFCC form, detected per request.
    AnyXfcc,
    /// RFC 9440 `Client-Cert` (+ `Client-Cert-Chain`).
    Rfc9440,
    /// URL-escaped PEM in the named header (e.g. `ssl-client-escaped-cert`, `x-ssl-client-cert`).
    EscapedPem(HeaderName),
    /// Traefik `X-Forwarded-Tls-Client-Cert`.
    Traefik,
}

impl ForwardedFormat {
    /// Reads the certificate from a request's headers: `Ok(None)` when the proxy sent none.
    /// Repeated instances of a list header (XFCC, `Client-Cert-Chain`, Traefik) are joined
    /// with `,`; a single-item header (`Client-Cert`, escaped PEM, raw XFCC) repeated is an error.
    pub fn parse(
        &self,
        headers: &HeaderMap,
    ) -> Result<Option<ClientCertificate>, ForwardedCertError> {
        match self {
            Self::Envoy => Ok(joined(headers, XFCC)?
                .map(|v| from_envoy_xfcc(&v))
                .transpose()?),
            Self::AnyXfcc => Ok(joined(headers, XFCC)?
                .map(|v| from_xfcc_any(&v))
                .transpose()?),
            Self::CloudFoundry => Ok(single(headers, XFCC)?.map(from_cf_raw).transpose()?),
            Self::Rfc9440 => {
                let chain = joined(headers, CLIENT_CERT_CHAIN)?;
                match single(headers, CLIENT_CERT)? {
                    Some(cert) => Ok(Some(from_rfc9440(cert, chain.as_deref())?)),
                    None if chain.is_some() => Err(ForwardedCertError::ChainWithoutCert),
                    None => Ok(None),
                }
            }
            Self::EscapedPem(name) => {
                let mut values = headers.get_all(name).iter();
                let Some(first) = values.next() else {
                    return Ok(None);
                };
                if values.next().is_some() {
                    return Err(ForwardedCertError::Repeated {
                        header: "ssl-client-escaped-cert",
                        count: headers.get_all(name).iter().count(),
                    });
                }
                let text = first.to_str().map_err(|_| ForwardedCertError::NotText {
                    header: "ssl-client-escaped-cert",
                })?;
                Ok(Some(from_escaped_pem(text)?))
            }
            Self::Traefik => Ok(joined(headers, "x-forwarded-tls-client-cert")?
                .map(|v| from_traefik(&v))
                .transpose()?),
        }
    }
}

fn single<'h>(
    headers: &'h HeaderMap,
    name: &'static str,
) -> Result<Option<&'h str>, ForwardedCertError> {
    let all = headers.get_all(name);
    let count = all.iter().count();
    if count > 1 {
        return Err(ForwardedCertError::Repeated {
            header: name,
            count,
        });
    }
    all.iter()
        .next()
        .map(|v| {
            v.to_str()
                .map_err(|_| ForwardedCertError::NotText { header: name })
        })
        .transpose()
}

fn joined(headers: &HeaderMap, name: &'static str) -> Result<Option<String>, ForwardedCertError> {
    let mut out: Option<String> = None;
    for value in headers.get_all(name) {
        let text = value
            .to_str()
            .map_err(|_| ForwardedCertError::NotText { header: name })?;
        let joined = out.get_or_insert_with(String::new);
        if !joined.is_empty() {
            joined.push(',');
        }
        joined.push_str(text);
        check_size(name, joined)?;
    }
    Ok(out)
}

fn check_size(header: &'static str, value: &str) -> Result<(), ForwardedCertError> {
    if value.len() > MAX_HEADER_BYTES {
        return Err(ForwardedCertError::TooLarge {
            header,
            len: value.len(),
            limit: MAX_HEADER_BYTES,
        });
    }
    Ok(())
}

fn base64(text: &str, header: &'static str) -> Result<Vec<u8>, ForwardedCertError> {
    if text.is_empty() {
        return Err(ForwardedCertError::Base64 { header });
    }
    LENIENT_BASE64
        .decode(text)
        .map_err(|_| ForwardedCertError::Base64 { header })
}

/// Percent-decoding (a `+` stays a `+`: it is a base64 character here); the result must be
/// UTF-8.
fn url_decode<'a>(
    value: &'a str,
    header: &'static str,
) -> Result<Cow<'a, str>, ForwardedCertError> {
    percent_encoding::percent_decode_str(value)
        .decode_utf8()
        .map_err(|_| ForwardedCertError::Pem {
            header,
            reason: "URL-decoding gives no UTF-8 text",
        })
}

/// The DER of every `CERTIFICATE` block in `text`; base64 lines may be separated by any
/// whitespace. Anything else outside the blocks is an error.
fn pem_certificates(text: &str, header: &'static str) -> Result<Vec<Vec<u8>>, ForwardedCertError> {
    let pem = |reason| ForwardedCertError::Pem { header, reason };
    let mut certs = Vec::new();
    let mut rest = text.trim_start();
    while !rest.is_empty() {
        if certs.len() >= MAX_CHAIN_CERTS {
            return Err(ForwardedCertError::TooMany {
                header,
                what: "certificates",
                limit: MAX_CHAIN_CERTS,
            });
        }
        let body = rest
            .strip_prefix(PEM_BEGIN)
            .ok_or(pem("expected `-----BEGIN CERTIFICATE-----`"))?;
        let end = body
            .find(PEM_END)
            .ok_or(pem("missing `-----END CERTIFICATE-----`"))?;
        let b64: String = body[..end]
            .chars()
            .filter(|c| !c.is_ascii_whitespace())
            .collect();
        if b64.is_empty()
            || !b64
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"+/=".contains(&b))
        {
            return Err(pem("the body is not base64"));
        }
        certs.push(
            LENIENT_BASE64
                .decode(&b64)
                .map_err(|_| pem("the body is not base64"))?,
        );
        rest = body[end + PEM_END.len()..].trim_start();
    }
    if certs.is_empty() {
        return Err(pem("no certificate"));
    }
    Ok(certs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xfcc_grammar() {
        let v = r#"By=spiffe://a;Hash=468ED33B6B9C5F3F04A5E4E8D5E6F7A8B9C0D1E2F3A4B5C6D7E8F9A0B1C2D3E4;Subject="/C=US/ST=CA/L=San Francisco/OU=Lyft/CN=Test Client";URI=http://testclient.lyft.com,By=http://backend;Subject="CN=a\"b\,c;d=e";DNS=lyft.com;dns=www.lyft.com ; uri = x"#;
        let elements = parse_xfcc(v).expect("parse");
        assert_eq!(elements.len(), 2);
        assert_eq!(elements[0].by, ["spiffe://a"]);
        assert_eq!(
            elements[0].subject.as_deref(),
            Some("/C=US/ST=CA/L=San Francisco/OU=Lyft/CN=Test Client")
        );
        assert_eq!(elements[1].subject.as_deref(), Some(r#"CN=a"b\,c;d=e"#));
        assert_eq!(elements[1].dns, ["lyft.com", "www.lyft.com"]);
        assert_eq!(elements[1].uri, ["x"]);
        // Empty elements are skipped.
        assert_eq!(parse_xfcc(" , By=a ,, ").expect("parse").len(), 1);
        assert_eq!(parse_xfcc("").expect("parse").len(), 0);
    }

    #[test]
    fn xfcc_malformed() {
        for bad in [
            r#"Subject="unbalanced"#,
            r#"Subject="a"b;Hash=x"#,
            r#"Subject=a"b""#,
            "Hash",
            "=x",
            "By=a;",
            "By=a;,By=b",
            "Hash=abc",
            "Hash=468ed33b6b9c5f3f04a5e4e8d5e6f7a8b9c0d1e2f3a4b5c6d7e8f9a0b1c2d3e4;Hash=468ed33b6b9c5f3f04a5e4e8d5e6f7a8b9c0d1e2f3a4b5c6d7e8f9a0b1c2d3e4",
            "By\r\n=a",
            "Subject=\"a\\\"",
            "Cert=\"%FF%FE\"",
        ] {
            assert!(parse_xfcc(bad).is_err(), "{bad:?} parsed");
        }
        let many = ["By=a"; MAX_XFCC_ELEMENTS + 1].join(",");
        assert!(matches!(
            parse_xfcc(&many),
            Err(ForwardedCertError::TooMany {
                what: "elements",
                ..
            })
        ));
        let pairs = ["By=a"; MAX_XFCC_PAIRS + 1].join(";");
        assert!(matches!(
            parse_xfcc(&pairs),
            Err(ForwardedCertError::TooMany { .. })
        ));
        let huge = format!("By={}", "a".repeat(MAX_HEADER_BYTES));
        assert!(matches!(
            parse_xfcc(&huge),
            Err(ForwardedCertError::TooLarge { .. })
        ));
    }

    #[test]
    fn hash_only_has_no_certificate() {
        let v = "Hash=468ed33b6b9c5f3f04a5e4e8d5e6f7a8b9c0d1e2f3a4b5c6d7e8f9a0b1c2d3e4;Subject=\"CN=x\"";
        assert_eq!(from_envoy_xfcc(v), Err(ForwardedCertError::NoCertificate));
        assert!(matches!(
            from_envoy_xfcc(" , "),
            Err(ForwardedCertError::MalformedXfcc { .. })
        ));
    }

    #[test]
    fn detection() {
        assert!(looks_like_envoy("Hash=abc"));
        assert!(looks_like_envoy(" by=x"));
        assert!(looks_like_envoy("x=1;y=2"));
        assert!(!looks_like_envoy("MIIBszCCAVmgAwIBAgIUQ=="));
        assert!(!looks_like_envoy(""));
    }

    #[test]
    fn structured_fields() {
        let item = b" :AQID:;a=1;b;c=\"x,y\";d=:AA==:";
        let (der, end) = sf_byte_sequence(item, 0, CLIENT_CERT).expect("sf");
        assert_eq!(der, [1, 2, 3]);
        assert_eq!(end, item.len());
        // Missing padding is tolerated.
        assert_eq!(
            sf_byte_sequence(b":AQI:", 0, CLIENT_CERT).expect("sf").0,
            [1, 2]
        );
        for bad in [
            &b"AQID"[..],
            b":AQID",
            b":AQ-D:",
            b":AQID:;",
            b":AQID:;k=\"x",
            b":AQID:;k=:x",
        ] {
            assert!(sf_byte_sequence(bad, 0, CLIENT_CERT).is_err(), "{bad:?}");
        }
        assert!(from_rfc9440("::", None).is_err());
        assert!(from_rfc9440(":AQID:, :AQID:", None).is_err());
    }

    #[test]
    fn pem_blocks() {
        let two = format!("{PEM_BEGIN}\nAQID\n{PEM_END}\n{PEM_BEGIN} BAUG {PEM_END}");
        assert_eq!(
            pem_certificates(&two, XFCC).expect("pem"),
            [vec![1, 2, 3], vec![4, 5, 6]]
        );
        for bad in [
            "",
            "junk",
            "-----BEGIN CERTIFICATE-----AQID",
            "-----BEGIN CERTIFICATE----------END CERTIFICATE-----",
            "-----BEGIN CERTIFICATE-----A*ID-----END CERTIFICATE-----",
            "-----BEGIN CERTIFICATE-----AQID-----END CERTIFICATE-----trailing",
            "-----BEGIN PRIVATE KEY-----AQID-----END PRIVATE KEY-----",
        ] {
            assert!(pem_certificates(bad, XFCC).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn raw_and_traefik_garbage() {
        for bad in [
            "",
            "not base64!",
            "AQID",
            "====",
            "-----BEGIN CERTIFICATE-----",
        ] {
            assert!(from_cf_raw(bad).is_err(), "{bad:?}");
            assert!(from_traefik(bad).is_err(), "{bad:?}");
            assert!(from_escaped_pem(bad).is_err(), "{bad:?}");
            assert!(from_xfcc_any(bad).is_err(), "{bad:?}");
        }
        assert!(from_traefik("AQID,").is_err());
    }
}
