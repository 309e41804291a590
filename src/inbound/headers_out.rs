//! The client-certificate headers sent to destinations, built only from a
//! [`ClientCertificate`] the router holds (never copied from the request), in the formats
//! backends expect: Envoy `X-Forwarded-Client-Cert` (with Envoy's forwarding modes), Cloud
//! Foundry raw, RFC 9440, nginx/Azion variables, Azure Application Gateway variables, Traefik.
//! Also the list of every known client-certificate header, stripped from untrusted requests.
//!
//! Every value is produced by an encoder (percent-encoding, base64, RFC 4514 escaping, Envoy
//! quoting) and checked again: a value with a control character is an error, never a header.

use http::HeaderMap;
use http::header::{HeaderName, HeaderValue};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};

use super::client_cert::{ClientCertificate, printable};
use super::forwarded::{ForwardedCertError, parse_xfcc};
use crate::civil_time::civil;

/// The default limit for one header value.
pub const DEFAULT_MAX_VALUE_BYTES: usize = 8 * 1024;
/// The default budget for all client-certificate headers of a request, counted as
/// `name: value\r\n`.
pub const DEFAULT_MAX_TOTAL_BYTES: usize = 16 * 1024;

/// Everything but RFC 3986 unreserved characters (`A-Z a-z 0-9 - . _ ~`) is percent-encoded,
/// with uppercase hex — nginx `ngx_escape_uri(NGX_ESCAPE_URI_COMPONENT)`, Envoy `urlEncode`.
const URI_COMPONENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

const XFCC: &str = "x-forwarded-client-cert";

/// Why the headers could not be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HeaderError {
    #[error("header `{header}` would contain a control character (CR, LF, NUL, …)")]
    UnsafeValue { header: &'static str },
    #[error("header `{header}` would be {len} bytes, over the {limit}-byte limit")]
    ValueTooLarge {
        header: &'static str,
        len: usize,
        limit: usize,
    },
    #[error(
        "client-certificate headers would take {len} bytes, over the {limit}-byte budget \
         (even without `Cert`/`Chain`)"
    )]
    BudgetExceeded { len: usize, limit: usize },
    #[error("two forwarding profiles both emit `{header}`")]
    Conflict { header: &'static str },
    #[error("the incoming x-forwarded-client-cert cannot be appended to: {0}")]
    MalformedIncomingXfcc(ForwardedCertError),
}

/// Envoy's `forward_client_cert_details`: what happens to an incoming XFCC.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum XfccMode {
    /// Never send XFCC (Envoy's default).
    Sanitize,
    /// With a client certificate, replace XFCC with this hop's element; else remove it.
    #[default]
    SanitizeSet,
    /// With a client certificate, append this hop's element to the incoming XFCC (`,`);
    /// else remove it. Only for requests from trusted peers.
    AppendForward,
    /// With a client certificate, forward the incoming XFCC unchanged; else remove it.
    ForwardOnly,
    /// Always forward the incoming XFCC unchanged, certificate or not (unsafe unless every
    /// path to the router is trusted).
    AlwaysForwardOnly,
}

/// Which fields this hop's XFCC element carries (Envoy `set_current_client_cert_details`);
/// `Hash` is always set, `By` once per configured URI.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct XfccFields {
    /// URI SANs of the router's own certificate, one `By` pair each.
    pub by: Vec<String>,
    pub cert: bool,
    pub chain: bool,
    pub subject: bool,
    pub uri: bool,
    pub dns: bool,
}

impl Default for XfccFields {
    /// `Hash;Subject;URI;DNS`.
    fn default() -> Self {
        Self {
            by: Vec::new(),
            cert: false,
            chain: false,
            subject: true,
            uri: true,
            dns: true,
        }
    }
}

/// nginx variable formats, or Azion's documented variants of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NginxFlavor {
    /// RFC 2253 DNs, serial `8C0A`, dates `Jan  5 12:00:00 2023 GMT`.
    Nginx,
    /// One-line DNs `/C=US/CN=x`, serial `8C:0A`, dates `20230105120000`, plus
    /// `ssl-client-s-dn-parsed` (the CN).
    Azion,
}

/// A header format for destinations.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ForwardProfile {
    /// Envoy `x-forwarded-client-cert` text.
    Envoy { mode: XfccMode, fields: XfccFields },
    /// Cloud Foundry gorouter/HAProxy: `x-forwarded-client-cert: <base64 DER leaf>`.
    CloudFoundry,
    /// RFC 9440 `client-cert` / `client-cert-chain`.
    Rfc9440,
    /// nginx `$ssl_client_*` variables as `ssl-client-*` headers.
    Nginx(NginxFlavor),
    /// Azure Application Gateway mutual-authentication server variables as
    /// `x-client-certificate*` headers.
    AzureAppGateway,
    /// Traefik `passTLSClientCert`: `x-forwarded-tls-client-cert` (`pem`) and
    /// `x-forwarded-tls-client-cert-info` (`info`, leaf only).
    Traefik { pem: bool, info: bool },
}

impl ForwardProfile {
    /// The headers this profile may emit (all lowercase).
    pub fn header_names(&self) -> &'static [&'static str] {
        match self {
            Self::Envoy { .. } | Self::CloudFoundry => &[XFCC],
            Self::Rfc9440 => &["client-cert", "client-cert-chain"],
            Self::Nginx(_) => &[
                "ssl-client-escaped-cert",
                "ssl-client-s-dn",
                "ssl-client-i-dn",
                "ssl-client-s-dn-parsed",
                "ssl-client-serial",
                "ssl-client-fingerprint",
                "ssl-client-v-start",
                "ssl-client-v-end",
                "ssl-client-v-remain",
                "ssl-client-verify",
            ],
            Self::AzureAppGateway => &[
                "x-client-certificate",
                "x-client-certificate-fingerprint",
                "x-client-certificate-issuer",
                "x-client-certificate-serial",
                "x-client-certificate-subject",
                "x-client-certificate-start-date",
                "x-client-certificate-end-date",
                "x-client-certificate-verification",
            ],
            Self::Traefik { .. } => &[
                "x-forwarded-tls-client-cert",
                "x-forwarded-tls-client-cert-info",
            ],
        }
    }
}

/// The outcome of verifying the client certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verification {
    /// It chains to a configured trust anchor.
    Success,
    /// Verification failed (permissive mode); the reason is for the verify header.
    Failed(String),
    /// Accepted without verification (passthrough).
    Unverified,
}

/// What the request brings: the certificate (if any), how it was verified, the incoming XFCC
/// (read before stripping, from trusted proxies only; only the Envoy forwarding modes use it)
/// and the time.
#[derive(Debug, Clone)]
pub struct EmitContext<'a> {
    pub certificate: Option<&'a ClientCertificate>,
    pub verification: Verification,
    /// The verified certificate the direct peer presented in the router's TLS handshake: in
    /// Envoy's `append_forward` / `forward_only` modes this hop's element describes it (and
    /// without it the incoming XFCC is removed), as Envoy describes its peer connection.
    pub connection_certificate: Option<&'a ClientCertificate>,
    pub incoming_xfcc: Option<&'a str>,
    /// Seconds since the Unix epoch (for `ssl-client-v-remain`).
    pub now: i64,
}

/// Limits and policy for [`emit`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmitOptions {
    /// Send certificate details when verification did not succeed (otherwise only the
    /// verification-status headers are sent).
    pub forward_unverified: bool,
    pub max_value_bytes: usize,
    pub max_total_bytes: usize,
}

impl Default for EmitOptions {
    fn default() -> Self {
        Self {
            forward_unverified: false,
            max_value_bytes: DEFAULT_MAX_VALUE_BYTES,
            max_total_bytes: DEFAULT_MAX_TOTAL_BYTES,
        }
    }
}

/// The headers to add to the outgoing request.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct EmittedHeaders {
    pub headers: Vec<(HeaderName, HeaderValue)>,
    /// Envoy `Cert`/`Chain` were left out to stay within the budget.
    pub dropped_pem: bool,
}

/// Builds the headers of every profile. Profiles must not share a header. Over the budget,
/// Envoy `Cert`/`Chain` are dropped first (never truncated); if that is not enough, it is an
/// error.
pub fn emit(
    profiles: &[ForwardProfile],
    context: &EmitContext<'_>,
    options: &EmitOptions,
) -> Result<EmittedHeaders, HeaderError> {
    let mut seen: Vec<&'static str> = Vec::new();
    for profile in profiles {
        for name in profile.header_names() {
            if seen.contains(name) {
                return Err(HeaderError::Conflict { header: name });
            }
            seen.push(name);
        }
    }
    match build(profiles, context, options, false) {
        Err(HeaderError::BudgetExceeded { .. } | HeaderError::ValueTooLarge { .. })
            if profiles.iter().any(has_pem) =>
        {
            let headers = build(profiles, context, options, true)?;
            Ok(EmittedHeaders {
                headers,
                dropped_pem: true,
            })
        }
        other => other.map(|headers| EmittedHeaders {
            headers,
            dropped_pem: false,
        }),
    }
}

fn has_pem(profile: &ForwardProfile) -> bool {
    matches!(profile, ForwardProfile::Envoy { fields, mode }
        if (fields.cert || fields.chain)
            && matches!(mode, XfccMode::SanitizeSet | XfccMode::AppendForward))
}

fn build(
    profiles: &[ForwardProfile],
    context: &EmitContext<'_>,
    options: &EmitOptions,
    drop_pem: bool,
) -> Result<Vec<(HeaderName, HeaderValue)>, HeaderError> {
    // The certificate whose details may be sent.
    let details = context
        .certificate
        .filter(|_| context.verification == Verification::Success || options.forward_unverified);
    let mut out = Vec::new();
    let mut total = 0usize;
    for profile in profiles {
        for (name, value) in profile_values(profile, context, details, drop_pem)? {
            if value.len() > options.max_value_bytes {
                return Err(HeaderError::ValueTooLarge {
                    header: name,
                    len: value.len(),
                    limit: options.max_value_bytes,
                });
            }
            total += name.len() + value.len() + 4;
            if total > options.max_total_bytes {
                return Err(HeaderError::BudgetExceeded {
                    len: total,
                    limit: options.max_total_bytes,
                });
            }
            out.push((HeaderName::from_static(name), header_value(name, &value)?));
        }
    }
    Ok(out)
}

/// A header value, refused if any byte is a control character (CR, LF, NUL, DEL, …) other
/// than tab, or not ASCII.
fn header_value(name: &'static str, value: &str) -> Result<HeaderValue, HeaderError> {
    if value.bytes().any(|b| (b < 0x20 && b != b'\t') || b >= 0x7f) {
        return Err(HeaderError::UnsafeValue { header: name });
    }
    HeaderValue::from_str(value).map_err(|_| HeaderError::UnsafeValue { header: name })
}

type Values = Vec<(&'static str, String)>;

fn profile_values(
    profile: &ForwardProfile,
    context: &EmitContext<'_>,
    details: Option<&ClientCertificate>,
    drop_pem: bool,
) -> Result<Values, HeaderError> {
    let mut out: Values = Vec::new();
    match profile {
        ForwardProfile::Envoy { mode, fields } => {
            let fields = if drop_pem {
                XfccFields {
                    cert: false,
                    chain: false,
                    ..fields.clone()
                }
            } else {
                fields.clone()
            };
            // Envoy's forwarding modes describe the peer connection; `sanitize_set` describes
            // the effective client certificate (from a trusted proxy: the forwarded one).
            let subject = match mode {
                XfccMode::AppendForward | XfccMode::ForwardOnly => context.connection_certificate,
                _ => details,
            };
            let element = subject.map(|cert| xfcc_element(cert, &fields));
            if let Some(value) = apply_xfcc_mode(*mode, context.incoming_xfcc, element.as_deref())?
            {
                out.push((XFCC, value));
            }
        }
        ForwardProfile::CloudFoundry => {
            if let Some(cert) = details {
                out.push((XFCC, cert.leaf_base64()));
            }
        }
        ForwardProfile::Rfc9440 => {
            if let Some(cert) = details {
                out.push(("client-cert", format!(":{}:", cert.leaf_base64())));
                let chain = cert.chain_base64();
                if !chain.is_empty() {
                    let items: Vec<String> = chain.iter().map(|b| format!(":{b}:")).collect();
                    out.push(("client-cert-chain", items.join(", ")));
                }
            }
        }
        ForwardProfile::Nginx(flavor) => {
            if let Some(cert) = details {
                let azion = *flavor == NginxFlavor::Azion;
                let date = |t: i64| {
                    if azion {
                        compact_date(t)
                    } else {
                        openssl_date(t)
                    }
                };
                out.push(("ssl-client-escaped-cert", uri_component(&cert.leaf_pem())));
                if azion {
                    out.push(("ssl-client-s-dn", cert.subject_legacy().to_owned()));
                    out.push(("ssl-client-i-dn", cert.issuer_legacy().to_owned()));
                    if let Some(cn) = cert.subject_common_name() {
                        out.push(("ssl-client-s-dn-parsed", cn.to_owned()));
                    }
                    out.push(("ssl-client-serial", cert.serial_hex_colons()));
                } else {
                    out.push(("ssl-client-s-dn", cert.subject().to_owned()));
                    out.push(("ssl-client-i-dn", cert.issuer().to_owned()));
                    out.push(("ssl-client-serial", cert.serial_hex()));
                }
                out.push(("ssl-client-fingerprint", cert.sha1_hex()));
                out.push(("ssl-client-v-start", date(cert.not_before())));
                out.push(("ssl-client-v-end", date(cert.not_after())));
                out.push((
                    "ssl-client-v-remain",
                    remaining_days(cert.not_after(), context.now).to_string(),
                ));
            }
            out.push(("ssl-client-verify", nginx_verify(context)));
        }
        ForwardProfile::AzureAppGateway => {
            if let Some(cert) = details {
                out.push(("x-client-certificate", uri_component(&cert.leaf_pem())));
                out.push(("x-client-certificate-fingerprint", cert.sha1_hex()));
                out.push(("x-client-certificate-issuer", cert.issuer().to_owned()));
                out.push(("x-client-certificate-serial", cert.serial_hex()));
                out.push(("x-client-certificate-subject", cert.subject().to_owned()));
                out.push((
                    "x-client-certificate-start-date",
                    openssl_date(cert.not_before()),
                ));
                out.push((
                    "x-client-certificate-end-date",
                    openssl_date(cert.not_after()),
                ));
            }
            let verification = match (context.certificate, &context.verification) {
                (None, _) => "NONE".to_owned(),
                (Some(_), Verification::Success) => "SUCCESS".to_owned(),
                (Some(_), Verification::Failed(reason)) => {
                    format!("FAILED:{}", reason_text(reason))
                }
                (Some(_), Verification::Unverified) => "PASSTHROUGH".to_owned(),
            };
            out.push(("x-client-certificate-verification", verification));
        }
        ForwardProfile::Traefik { pem, info } => {
            if let Some(cert) = details {
                if *pem {
                    let mut all = vec![cert.leaf_base64()];
                    all.extend(cert.chain_base64());
                    out.push(("x-forwarded-tls-client-cert", all.join(",")));
                }
                if *info {
                    out.push((
                        "x-forwarded-tls-client-cert-info",
                        query_escape(&traefik_info(cert)),
                    ));
                }
            }
        }
    }
    Ok(out)
}

/// This hop's Envoy XFCC element: `By` (one per URI), `Hash`, then as configured `Cert`,
/// `Chain` (leaf included), `Subject` (always quoted, RFC 4514), `URI` (`URI=` when none),
/// `DNS` (one per name). `Cert`/`Chain` are quoted URL-encoded PEM; `By`/`URI`/`DNS` are
/// quoted only when they contain `,` `;` `=` `"` or whitespace.
pub fn xfcc_element(cert: &ClientCertificate, fields: &XfccFields) -> String {
    let mut pairs: Vec<String> = Vec::new();
    for by in &fields.by {
        pairs.push(format!("By={}", xfcc_value(&printable(by.as_bytes()))));
    }
    pairs.push(format!("Hash={}", cert.sha256_hex()));
    if fields.cert {
        pairs.push(format!(
            "Cert={}",
            xfcc_quoted(&uri_component(&cert.leaf_pem()))
        ));
    }
    if fields.chain {
        pairs.push(format!(
            "Chain={}",
            xfcc_quoted(&uri_component(&cert.full_chain_pem()))
        ));
    }
    if fields.subject {
        pairs.push(format!("Subject={}", xfcc_quoted(cert.subject())));
    }
    if fields.uri {
        if cert.uris().is_empty() {
            pairs.push("URI=".to_owned());
        }
        for uri in cert.uris() {
            pairs.push(format!("URI={}", xfcc_value(uri)));
        }
    }
    if fields.dns {
        for dns in cert.dns_names() {
            pairs.push(format!("DNS={}", xfcc_value(dns)));
        }
    }
    pairs.join(";")
}

/// Envoy's forwarding modes applied to the incoming XFCC. `element` is this hop's element,
/// `None` when no (acceptable) client certificate was presented. `Ok(None)`: send no XFCC.
/// Appending to an incoming value that does not parse is an error: an unbalanced quote
/// there would swallow this hop's element.
pub fn apply_xfcc_mode(
    mode: XfccMode,
    incoming: Option<&str>,
    element: Option<&str>,
) -> Result<Option<String>, HeaderError> {
    let incoming = incoming.filter(|v| !v.trim().is_empty());
    Ok(match (mode, element) {
        (XfccMode::AlwaysForwardOnly, _) => incoming.map(str::to_owned),
        (XfccMode::Sanitize, _) | (_, None) => None,
        (XfccMode::ForwardOnly, Some(_)) => incoming.map(str::to_owned),
        (XfccMode::SanitizeSet, Some(element)) => Some(element.to_owned()),
        (XfccMode::AppendForward, Some(element)) => match incoming {
            Some(incoming) => {
                parse_xfcc(incoming).map_err(HeaderError::MalformedIncomingXfcc)?;
                Some(format!("{incoming},{element}"))
            }
            None => Some(element.to_owned()),
        },
    })
}

fn xfcc_quoted(value: &str) -> String {
    format!("\"{}\"", value.replace('"', "\\\""))
}

fn xfcc_value(value: &str) -> String {
    if value
        .bytes()
        .any(|b| matches!(b, b',' | b';' | b'=' | b'"' | b' ' | b'\t'))
    {
        xfcc_quoted(value)
    } else {
        value.to_owned()
    }
}

fn uri_component(text: &str) -> String {
    utf8_percent_encode(text, URI_COMPONENT).to_string()
}

/// Go's `url.QueryEscape`: unreserved kept, space as `+`, the rest `%XX`.
fn query_escape(text: &str) -> String {
    uri_component(text).replace("%20", "+")
}

/// OpenSSL `ASN1_TIME_print`: `Jan  5 12:00:00 2023 GMT`.
fn openssl_date(t: i64) -> String {
    let (y, mo, d, h, mi, s) = civil(t);
    let month = MONTHS
        .get(mo.saturating_sub(1) as usize)
        .copied()
        .unwrap_or("???");
    format!("{month} {d:>2} {h:02}:{mi:02}:{s:02} {y} GMT")
}

/// Azion: `YYYYMMDDhhmmss`.
fn compact_date(t: i64) -> String {
    let (y, mo, d, h, mi, s) = civil(t);
    format!("{y:04}{mo:02}{d:02}{h:02}{mi:02}{s:02}")
}

/// nginx `$ssl_client_v_remain`: whole days left, 0 when less than one.
fn remaining_days(not_after: i64, now: i64) -> i64 {
    if not_after < now.saturating_add(86_400) {
        0
    } else {
        (not_after - now) / 86_400
    }
}

fn nginx_verify(context: &EmitContext<'_>) -> String {
    match (context.certificate, &context.verification) {
        (None, _) => "NONE".to_owned(),
        (Some(_), Verification::Success) => "SUCCESS".to_owned(),
        (Some(_), Verification::Failed(reason)) => format!("FAILED:{}", reason_text(reason)),
        (Some(_), Verification::Unverified) => "FAILED:unverified".to_owned(),
    }
}

/// A failure reason as header text: printable ASCII only, at most 256 bytes.
fn reason_text(reason: &str) -> String {
    reason
        .chars()
        .map(|c| if (' '..='~').contains(&c) { c } else { '?' })
        .take(256)
        .collect()
}

/// Traefik's info value (before query escaping), leaf only:
/// `Subject="…";Issuer="…";NB="<unix>";NA="<unix>";SAN="…"`. DNs list DC, C, ST, L, O, OU
/// (subject only), SN (the last serialNumber), CN (the last), values RFC 4514-escaped; SANs are
/// DNS names, e-mails, IPs, URIs. Empty parts are left out.
fn traefik_info(cert: &ClientCertificate) -> String {
    let mut values = Vec::new();
    let subject = traefik_dn(cert.subject_attributes(), true);
    if !subject.is_empty() {
        values.push(format!("Subject=\"{subject}\""));
    }
    let issuer = traefik_dn(cert.issuer_attributes(), false);
    if !issuer.is_empty() {
        values.push(format!("Issuer=\"{issuer}\""));
    }
    values.push(format!("NB=\"{}\"", cert.not_before()));
    values.push(format!("NA=\"{}\"", cert.not_after()));
    let mut sans: Vec<String> = Vec::new();
    sans.extend(cert.dns_names().iter().cloned());
    sans.extend(cert.emails().iter().cloned());
    sans.extend(cert.ip_addresses().iter().map(|ip| ip.to_string()));
    sans.extend(cert.uris().iter().cloned());
    if !sans.is_empty() {
        values.push(format!("SAN=\"{}\"", sans.join(",")));
    }
    values.join(";")
}

fn traefik_dn(attributes: &[(String, String)], with_ou: bool) -> String {
    let all = |ty: &str| -> Vec<String> {
        attributes
            .iter()
            .filter(|(t, v)| t == ty && !v.is_empty())
            .map(|(t, v)| format!("{t}={v}"))
            .collect()
    };
    let last = |ty: &str, label: &str| -> Vec<String> {
        attributes
            .iter()
            .rev()
            .find(|(t, v)| t == ty && !v.is_empty())
            .map(|(_, v)| format!("{label}={v}"))
            .into_iter()
            .collect()
    };
    let mut parts = Vec::new();
    parts.extend(all("DC"));
    parts.extend(all("C"));
    parts.extend(all("ST"));
    parts.extend(all("L"));
    parts.extend(all("O"));
    if with_ou {
        parts.extend(all("OU"));
    }
    parts.extend(last("serialNumber", "SN"));
    parts.extend(last("CN", "CN"));
    parts.join(",")
}

/// A client-certificate header name, or a prefix of such names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeaderPattern {
    Exact(&'static str),
    Prefix(&'static str),
}

/// Every header known to carry client-certificate data (lowercase), to strip from requests
/// that do not come from a trusted proxy: Envoy/CF XFCC, RFC 9440, nginx/ingress-nginx
/// `ssl-client-*`, HAProxy/OpenShift `x-ssl-client*`/`x-ssl-cert`, Azure Application Gateway
/// and other `x-client-cert*`, Traefik (v2+ and v1's `x-forwarded-ssl-client-cert*`), Azure
/// App Service `x-arr-clientcert`, AWS ALB `x-amzn-mtls-clientcert*`.
pub const CLIENT_CERT_HEADERS: &[HeaderPattern] = &[
    HeaderPattern::Exact("x-forwarded-client-cert"),
    HeaderPattern::Exact("client-cert"),
    HeaderPattern::Exact("client-cert-chain"),
    HeaderPattern::Prefix("ssl-client-"),
    HeaderPattern::Prefix("x-ssl-client"),
    HeaderPattern::Exact("x-ssl-cert"),
    HeaderPattern::Prefix("x-client-cert"),
    HeaderPattern::Exact("x-client-verify"),
    HeaderPattern::Exact("x-client-dn"),
    HeaderPattern::Prefix("x-forwarded-tls-client-cert"),
    HeaderPattern::Prefix("x-forwarded-ssl-client-cert"),
    HeaderPattern::Exact("x-arr-clientcert"),
    HeaderPattern::Prefix("x-amzn-mtls-clientcert"),
];

/// Whether a header name carries client-certificate data: ASCII case-insensitive, and `_`
/// counts as `-` (CGI-style backends map both to the same variable). No allocation: it runs
/// for every header of every request.
pub fn is_client_cert_header(name: &str) -> bool {
    let same = |a: u8, b: u8| {
        let a = if a == b'_' {
            b'-'
        } else {
            a.to_ascii_lowercase()
        };
        a == b
    };
    let starts_with = |prefix: &str| {
        name.len() >= prefix.len() && name.bytes().zip(prefix.bytes()).all(|(a, b)| same(a, b))
    };
    CLIENT_CERT_HEADERS.iter().any(|pattern| match pattern {
        HeaderPattern::Exact(exact) => name.len() == exact.len() && starts_with(exact),
        HeaderPattern::Prefix(prefix) => starts_with(prefix),
    })
}

/// Removes every instance of every client-certificate header; returns how many names went.
pub fn strip_client_cert_headers(headers: &mut HeaderMap) -> usize {
    let doomed: Vec<HeaderName> = headers
        .keys()
        .filter(|name| is_client_cert_header(name.as_str()))
        .cloned()
        .collect();
    for name in &doomed {
        headers.remove(name);
    }
    doomed.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One profile of each header family that emits more than the verification status.
    fn emitting_profiles() -> [ForwardProfile; 5] {
        [
            ForwardProfile::Envoy {
                mode: XfccMode::SanitizeSet,
                fields: XfccFields::default(),
            },
            ForwardProfile::Rfc9440,
            ForwardProfile::Nginx(NginxFlavor::Nginx),
            ForwardProfile::AzureAppGateway,
            ForwardProfile::Traefik {
                pem: true,
                info: true,
            },
        ]
    }

    #[test]
    fn modes_follow_envoy() {
        let e = Some("Hash=ab");
        let inc =
            Some("By=x;Hash=9ba61d6425303443c0748a02dd8de688468ed33be74eee6556d90c0149c1309e");
        use XfccMode::*;
        assert_eq!(apply_xfcc_mode(Sanitize, inc, e), Ok(None));
        assert_eq!(
            apply_xfcc_mode(SanitizeSet, inc, e),
            Ok(Some("Hash=ab".into()))
        );
        assert_eq!(apply_xfcc_mode(SanitizeSet, inc, None), Ok(None));
        assert_eq!(
            apply_xfcc_mode(AppendForward, inc, e),
            Ok(Some("By=x;Hash=9ba61d6425303443c0748a02dd8de688468ed33be74eee6556d90c0149c1309e,Hash=ab".into()))
        );
        assert_eq!(
            apply_xfcc_mode(AppendForward, None, e),
            Ok(Some("Hash=ab".into()))
        );
        assert_eq!(apply_xfcc_mode(AppendForward, inc, None), Ok(None));
        assert_eq!(
            apply_xfcc_mode(ForwardOnly, inc, e),
            Ok(inc.map(Into::into))
        );
        assert_eq!(apply_xfcc_mode(ForwardOnly, inc, None), Ok(None));
        assert_eq!(
            apply_xfcc_mode(AlwaysForwardOnly, inc, None),
            Ok(inc.map(Into::into))
        );
        assert_eq!(apply_xfcc_mode(AlwaysForwardOnly, None, e), Ok(None));
        // An unbalanced quote would swallow the appended element.
        assert!(matches!(
            apply_xfcc_mode(AppendForward, Some("Subject=\"x"), e),
            Err(HeaderError::MalformedIncomingXfcc(_))
        ));
    }

    #[test]
    fn quoting() {
        assert_eq!(xfcc_value("spiffe://a/b"), "spiffe://a/b");
        assert_eq!(xfcc_value("http://a/?x=1;y"), "\"http://a/?x=1;y\"");
        assert_eq!(xfcc_quoted("a\"b"), "\"a\\\"b\"");
        assert_eq!(query_escape("a b+c/\"d\""), "a+b%2Bc%2F%22d%22");
        assert_eq!(uri_component("-._~ \n+/="), "-._~%20%0A%2B%2F%3D");
    }

    #[test]
    fn dates() {
        assert_eq!(openssl_date(1_672_920_000), "Jan  5 12:00:00 2023 GMT");
        assert_eq!(compact_date(1_673_784_000), "20230115120000");
        assert_eq!(remaining_days(86_400 * 3 + 5, 0), 3);
        assert_eq!(remaining_days(86_399, 0), 0);
        assert_eq!(remaining_days(0, 86_400), 0);
    }

    #[test]
    fn unsafe_values_are_refused() {
        for bad in ["a\r\nb", "a\nb", "a\0b", "\u{7f}", "é"] {
            assert_eq!(
                header_value("x", bad),
                Err(HeaderError::UnsafeValue { header: "x" })
            );
        }
        assert!(header_value("x", "a\tb c").is_ok());
        assert_eq!(reason_text("bad\r\nX: y"), "bad??X: y");
    }

    #[test]
    fn strip_list() {
        for name in [
            "X-Forwarded-Client-Cert",
            "client-cert",
            "Client-Cert-Chain",
            "ssl-client-verify",
            "SSL_CLIENT_VERIFY",
            "X-SSL-Client-Cert",
            "x-ssl-client",
            "X-SSL-CERT",
            "X-Client-Cert",
            "x-client-certificate-verification",
            "X-Forwarded-Tls-Client-Cert-Info",
            "X-Forwarded-Ssl-Client-Cert-Infos",
            "X-ARR-ClientCert",
            "x-amzn-mtls-clientcert-leaf",
        ] {
            assert!(is_client_cert_header(name), "{name}");
        }
        for name in [
            "x-client-id",
            "client-certainly",
            "authorization",
            "x-forwarded-for",
        ] {
            assert!(!is_client_cert_header(name), "{name}");
        }
        let profiles = emitting_profiles();
        for profile in &profiles {
            for name in profile.header_names() {
                assert!(
                    is_client_cert_header(name),
                    "{name} is emitted but not stripped"
                );
            }
        }
        let mut headers = HeaderMap::new();
        headers.append("x-forwarded-client-cert", HeaderValue::from_static("a"));
        headers.append("x-forwarded-client-cert", HeaderValue::from_static("b"));
        headers.append("ssl_client_verify", HeaderValue::from_static("SUCCESS"));
        headers.append("accept", HeaderValue::from_static("*/*"));
        assert_eq!(strip_client_cert_headers(&mut headers), 2);
        assert_eq!(headers.len(), 1);
    }

    #[test]
    fn conflicting_profiles() {
        let context = EmitContext {
            certificate: None,
            verification: Verification::Success,
            connection_certificate: None,
            incoming_xfcc: None,
            now: 0,
        };
        let profiles = [
            ForwardProfile::CloudFoundry,
            ForwardProfile::Envoy {
                mode: XfccMode::Sanitize,
                fields: XfccFields::default(),
            },
        ];
        assert_eq!(
            emit(&profiles, &context, &EmitOptions::default()),
            Err(HeaderError::Conflict {
                header: "x-forwarded-client-cert"
            })
        );
    }

    #[test]
    fn no_certificate_sends_only_status() {
        let context = EmitContext {
            certificate: None,
            verification: Verification::Success,
            connection_certificate: None,
            incoming_xfcc: Some("Hash=spoofed"),
            now: 0,
        };
        let profiles = emitting_profiles();
        let emitted = emit(&profiles, &context, &EmitOptions::default()).expect("emit");
        let pairs: Vec<(&str, &str)> = emitted
            .headers
            .iter()
            .map(|(n, v)| (n.as_str(), v.to_str().expect("ascii")))
            .collect();
        assert_eq!(
            pairs,
            [
                ("ssl-client-verify", "NONE"),
                ("x-client-certificate-verification", "NONE")
            ]
        );
    }
}
