//! Trusted front proxies, from the environment:
//!
//! - `XSROUTER_TRUSTED_PROXIES`: comma list of IPv4/IPv6 CIDRs (a bare address is one host)
//!   whose client-certificate header is believed.
//! - `XSROUTER_TRUSTED_PROXY_CERTS`: identities of the proxy's own client certificate on the
//!   router's TLS listener — `sha256:<hex>` (colons allowed), `subject:<RFC 4514 DN>`,
//!   `uri:<SAN>`, `dns:<SAN>`; a comma list, or a JSON array of strings when a subject holds a
//!   comma. With both variables set, a peer must match both.
//! - `XSROUTER_FORWARDED_CLIENT_CERT`: the header format the proxies use — `envoy`, `cf`,
//!   `xfcc` (either XFCC form), `rfc9440`, `nginx` (`ssl-client-escaped-cert`, or
//!   `nginx:<header>`), `traefik`.
//! - `XSROUTER_FORWARDED_CLIENT_CERT_VERIFY`: `reverify` (default): verify the forwarded
//!   certificate again with the default site's trust settings — `XSROUTER_CLIENT_CA`,
//!   `XSROUTER_CLIENT_ISSUERS`, `XSROUTER_CLIENT_CHAIN_DEPTH`, `XSROUTER_CLIENT_CRL` and its
//!   options, with or without the HTTPS listener; the files are re-read while the router runs
//!   ([`crate::inbound::reverify::watch`]) — or `trust-proxy`.
//!
//! Proxy identities are matched against the certificate the proxy presents in the listener's
//! handshake (verified with the listener's reloaded trust files); they are values, not files, so
//! nothing else is re-read.

use http::HeaderName;

use super::environment::Environment;
use super::inbound_tls::{ClientAuth, ClientCertMode, InboundTls};
use super::problem::{Problems, index};
use crate::inbound::forwarded::ForwardedFormat;
use crate::inbound::headers_out::is_client_cert_header;
use crate::inbound::reverify::ForwardedCertVerifier;
use crate::inbound::trust::{FileRole, read_certificates};
use crate::inbound::trusted_proxy::{
    ForwardedVerification, IpRange, ProxyIdentity, TrustedProxies,
};

pub const TRUSTED_PROXIES: &str = "XSROUTER_TRUSTED_PROXIES";
pub const TRUSTED_PROXY_CERTS: &str = "XSROUTER_TRUSTED_PROXY_CERTS";
pub const FORWARDED_CLIENT_CERT: &str = "XSROUTER_FORWARDED_CLIENT_CERT";
pub const FORWARDED_CLIENT_CERT_VERIFY: &str = "XSROUTER_FORWARDED_CLIENT_CERT_VERIFY";
const CLIENT_CA: &str = "XSROUTER_CLIENT_CA";

/// The trusted proxies, or `None` when none are configured (then every client-certificate
/// header is stripped).
pub fn from_env(
    env: &Environment,
    inbound: &InboundTls,
    problems: &mut Problems,
) -> Option<TrustedProxies> {
    let ranges = env
        .non_empty(TRUSTED_PROXIES)
        .map(|list| ranges(list, &env.origin(TRUSTED_PROXIES), problems))
        .unwrap_or_default();
    let identities = env
        .non_empty(TRUSTED_PROXY_CERTS)
        .map(|list| identities(list, &env.origin(TRUSTED_PROXY_CERTS), problems))
        .unwrap_or_default();
    let configured =
        env.non_empty(TRUSTED_PROXIES).is_some() || env.non_empty(TRUSTED_PROXY_CERTS).is_some();
    let format = env.non_empty(FORWARDED_CLIENT_CERT);
    let verify = env.non_empty(FORWARDED_CLIENT_CERT_VERIFY);
    if !configured {
        for key in [FORWARDED_CLIENT_CERT, FORWARDED_CLIENT_CERT_VERIFY] {
            if env.non_empty(key).is_some() {
                problems.push(
                    &env.origin(key),
                    "$",
                    format!(
                        "has no effect without trusted proxies: set {TRUSTED_PROXIES} and/or {TRUSTED_PROXY_CERTS}"
                    ),
                );
            }
        }
        return None;
    }
    if env.non_empty(TRUSTED_PROXY_CERTS).is_some()
        && (inbound.server.is_none() || inbound.client_cert_mode == ClientCertMode::Off)
    {
        problems.push(
            &env.origin(TRUSTED_PROXY_CERTS),
            "$",
            "proxy identities need the HTTPS listener asking for client certificates \
             (XSROUTER_TLS_CERT, XSROUTER_TLS_KEY and XSROUTER_CLIENT_CERT_MODE optional or require)",
        );
    }
    let format = match format {
        Some(text) => forwarded_format(text, &env.origin(FORWARDED_CLIENT_CERT), problems),
        None => {
            problems.push(
                &env.origin(FORWARDED_CLIENT_CERT),
                "$",
                "is not set, but trusted proxies are: say which header they forward \
                 (envoy, cf, xfcc, rfc9440, nginx, nginx:<header> or traefik)",
            );
            None
        }
    };
    let verification = match verify.map(str::to_ascii_lowercase).as_deref() {
        None | Some("reverify") => reverifier(env, inbound, problems),
        Some("trust-proxy") => Some(ForwardedVerification::TrustProxy),
        Some(other) => {
            problems.push(
                &env.origin(FORWARDED_CLIENT_CERT_VERIFY),
                "$",
                format!("`{other}` is not a choice: use `reverify` (default) or `trust-proxy`"),
            );
            None
        }
    };
    Some(TrustedProxies {
        ranges,
        identities,
        format: format?,
        verification: verification?,
    })
}

fn reverifier(
    env: &Environment,
    inbound: &InboundTls,
    problems: &mut Problems,
) -> Option<ForwardedVerification> {
    if env.non_empty(CLIENT_CA).is_none() {
        problems.push(
            &env.origin(CLIENT_CA),
            "$",
            format!(
                "is not set, but forwarded client certificates are re-verified: name the CA bundles \
                 (or set {FORWARDED_CLIENT_CERT_VERIFY}=trust-proxy to believe the proxy's verification)"
            ),
        );
        return None;
    }
    // The default site's trust settings, with or without the HTTPS listener.
    let auth = ClientAuth {
        mode: ClientCertMode::Off,
        permissive: false,
        ..inbound.client_auth.clone()
    };
    match ForwardedCertVerifier::new(&auth) {
        Ok(verifier) => Some(ForwardedVerification::Reverify(verifier)),
        Err(err) => {
            // A listener asking for client certificates reports the same files where it reads
            // them; otherwise the inbound TLS settings report CA bundles that are unreadable or
            // not PEM, and everything else is reported here.
            let variable = match err.role {
                _ if inbound.client_cert_mode != ClientCertMode::Off => None,
                FileRole::ClientCa(_) if read_certificates(err.role, &err.file).is_err() => None,
                FileRole::ClientCa(_) => Some(CLIENT_CA),
                FileRole::AllowedIssuer(_) => Some("XSROUTER_CLIENT_ISSUERS"),
                FileRole::Crl(_) => Some("XSROUTER_CLIENT_CRL"),
                FileRole::ServerCertificate | FileRole::ServerKey => None,
            };
            if let Some(variable) = variable {
                problems.push(
                    &format!("{} ({})", env.origin(variable), err.file.display()),
                    "$",
                    err.reason,
                );
            }
            None
        }
    }
}

/// A `:`-separated list of files.
/// Items of a comma list, trimmed, empty ones left out, with their positions.
fn items(list: &str) -> impl Iterator<Item = (usize, &str)> {
    list.split(',')
        .map(str::trim)
        .filter(|item| !item.is_empty())
        .enumerate()
}

fn ranges(list: &str, origin: &str, problems: &mut Problems) -> Vec<IpRange> {
    let mut out = Vec::new();
    let mut seen = 0;
    for (i, item) in items(list) {
        seen += 1;
        match item.parse::<IpRange>() {
            Ok(range) => out.push(range),
            Err(err) => problems.push(origin, index("$", i), err.to_string()),
        }
    }
    if seen == 0 {
        problems.push(origin, "$", "lists no CIDR");
    }
    out
}

fn identities(list: &str, origin: &str, problems: &mut Problems) -> Vec<ProxyIdentity> {
    let entries: Vec<String> = if list.trim_start().starts_with('[') {
        match serde_json::from_str::<Vec<String>>(list) {
            Ok(entries) => entries,
            Err(err) => {
                problems.push(origin, "$", format!("not a JSON array of strings: {err}"));
                return Vec::new();
            }
        }
    } else {
        items(list).map(|(_, item)| item.to_owned()).collect()
    };
    let mut out = Vec::new();
    for (i, entry) in entries.iter().enumerate() {
        match identity(entry.trim()) {
            Ok(identity) => out.push(identity),
            Err(reason) => problems.push(origin, index("$", i), reason),
        }
    }
    if entries.is_empty() {
        problems.push(origin, "$", "lists no identity");
    }
    out
}

fn identity(entry: &str) -> Result<ProxyIdentity, String> {
    let Some((kind, value)) = entry.split_once(':') else {
        return Err(format!(
            "`{entry}` needs a kind: `sha256:`, `subject:`, `uri:` or `dns:`"
        ));
    };
    let value = value.trim();
    if value.is_empty() {
        return Err(format!("`{kind}:` needs a value"));
    }
    match kind.to_ascii_lowercase().as_str() {
        "sha256" => {
            let hex: String = value.chars().filter(|c| *c != ':').collect();
            let mut hash = [0u8; 32];
            if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err("`sha256:` needs 64 hex digits (colons allowed)".to_owned());
            }
            for (i, byte) in hash.iter_mut().enumerate() {
                *byte = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16)
                    .map_err(|_| "`sha256:` needs 64 hex digits".to_owned())?;
            }
            Ok(ProxyIdentity::Sha256(hash))
        }
        "subject" => Ok(ProxyIdentity::Subject(value.to_owned())),
        "uri" => Ok(ProxyIdentity::Uri(value.to_owned())),
        "dns" => Ok(ProxyIdentity::Dns(value.to_owned())),
        other => Err(format!(
            "`{other}` is not a kind: use `sha256:`, `subject:`, `uri:` or `dns:`"
        )),
    }
}

fn forwarded_format(text: &str, origin: &str, problems: &mut Problems) -> Option<ForwardedFormat> {
    let (name, header) = match text.split_once(':') {
        Some((name, header)) => (name.trim(), Some(header.trim())),
        None => (text.trim(), None),
    };
    let format = match (name.to_ascii_lowercase().as_str(), header) {
        ("envoy", None) => ForwardedFormat::Envoy,
        ("cf", None) => ForwardedFormat::CloudFoundry,
        ("xfcc", None) => ForwardedFormat::AnyXfcc,
        ("rfc9440", None) => ForwardedFormat::Rfc9440,
        ("traefik", None) => ForwardedFormat::Traefik,
        ("nginx", None) => {
            ForwardedFormat::EscapedPem(HeaderName::from_static("ssl-client-escaped-cert"))
        }
        ("nginx", Some(header)) => {
            let Ok(name) = HeaderName::from_bytes(header.as_bytes()) else {
                problems.push(origin, "$", format!("`{header}` is not a header name"));
                return None;
            };
            if !is_client_cert_header(name.as_str()) {
                problems.push(
                    origin,
                    "$",
                    format!(
                        "`{header}` is not a known client-certificate header, so xsrouter would not \
                         strip it from untrusted peers; use e.g. ssl-client-escaped-cert or x-ssl-client-cert"
                    ),
                );
                return None;
            }
            ForwardedFormat::EscapedPem(name)
        }
        _ => {
            problems.push(
                origin,
                "$",
                format!(
                    "`{text}` is not a format: use envoy, cf, xfcc, rfc9440, nginx, nginx:<header> or traefik"
                ),
            );
            return None;
        }
    };
    Some(format)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(pairs: &[(&str, &str)]) -> (Option<TrustedProxies>, Vec<String>) {
        let env = Environment::from_pairs(pairs.iter().copied());
        let mut problems = Problems::default();
        let trusted = from_env(&env, &InboundTls::default(), &mut problems);
        let reasons = problems
            .into_error()
            .problems
            .into_iter()
            .map(|p| p.to_string())
            .collect();
        (trusted, reasons)
    }

    #[test]
    fn nothing_configured_trusts_no_one() {
        let (trusted, problems) = load(&[]);
        assert!(trusted.is_none());
        assert!(problems.is_empty(), "{problems:?}");
    }

    #[test]
    fn trust_proxy_needs_no_ca() {
        let (trusted, problems) = load(&[
            (TRUSTED_PROXIES, "10.0.0.0/8, 127.0.0.1 ,::1"),
            (FORWARDED_CLIENT_CERT, "nginx:X-SSL-Client-Cert"),
            (FORWARDED_CLIENT_CERT_VERIFY, "trust-proxy"),
        ]);
        assert!(problems.is_empty(), "{problems:?}");
        let trusted = trusted.expect("trusted proxies");
        assert_eq!(trusted.ranges.len(), 3);
        assert_eq!(
            trusted.format,
            ForwardedFormat::EscapedPem(HeaderName::from_static("x-ssl-client-cert"))
        );
        assert!(matches!(
            trusted.verification,
            ForwardedVerification::TrustProxy
        ));
    }

    #[test]
    fn identities_parse() {
        let hash = "AB:".repeat(31) + "AB";
        assert_eq!(
            identity(&format!("sha256:{hash}")),
            Ok(ProxyIdentity::Sha256([0xab; 32]))
        );
        assert_eq!(
            identity("subject: CN=envoy,O=mesh"),
            Ok(ProxyIdentity::Subject("CN=envoy,O=mesh".into()))
        );
        assert!(identity("sha256:abc").is_err());
        assert!(identity("cn:envoy").is_err());
        assert!(identity("envoy").is_err());
        let mut problems = Problems::default();
        let parsed = identities(
            r#"["subject:CN=a\\,b,O=x", "uri:spiffe://mesh/ns/edge"]"#,
            "env X",
            &mut problems,
        );
        assert!(problems.is_empty());
        assert_eq!(
            parsed,
            [
                ProxyIdentity::Subject("CN=a\\,b,O=x".into()),
                ProxyIdentity::Uri("spiffe://mesh/ns/edge".into())
            ]
        );
    }

    #[test]
    fn every_problem_names_variable_and_item() {
        let (trusted, problems) = load(&[
            (TRUSTED_PROXIES, "10.0.0.0/8, 10.0.0.1/8, nowhere"),
            (TRUSTED_PROXY_CERTS, "md5:00"),
            (FORWARDED_CLIENT_CERT, "haproxy"),
            (FORWARDED_CLIENT_CERT_VERIFY, "sometimes"),
        ]);
        assert!(trusted.is_none());
        let text = problems.join("\n");
        for want in [
            "env XSROUTER_TRUSTED_PROXIES: $[1]: `10.0.0.1/8` has host bits set: the network is `10.0.0.0/8`",
            "env XSROUTER_TRUSTED_PROXIES: $[2]: `nowhere` is not an IP address",
            "env XSROUTER_TRUSTED_PROXY_CERTS: $[0]: `md5` is not a kind",
            "env XSROUTER_TRUSTED_PROXY_CERTS: $: proxy identities need the HTTPS listener",
            "env XSROUTER_FORWARDED_CLIENT_CERT: $: `haproxy` is not a format",
            "env XSROUTER_FORWARDED_CLIENT_CERT_VERIFY: $: `sometimes` is not a choice",
        ] {
            assert!(text.contains(want), "missing {want:?} in\n{text}");
        }
    }

    /// The re-verification policy's files are reported even when the HTTPS listener asks for
    /// no client certificates (it does not read them then), once each.
    #[test]
    fn unusable_reverification_files_are_reported_without_client_certificate_mode() {
        use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
        let dir = tempfile::tempdir().expect("dir");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca =
            CertifiedIssuer::self_signed(params, KeyPair::generate().expect("key")).expect("ca");
        let (ca_file, crl_file) = (dir.path().join("ca.pem"), dir.path().join("broken.crl"));
        std::fs::write(&ca_file, ca.pem()).expect("write");
        std::fs::write(&crl_file, "no CRL here").expect("write");
        let (ca_file, crl_file) = (
            ca_file.display().to_string(),
            crl_file.display().to_string(),
        );
        for tls in [false, true] {
            let mut pairs = vec![
                (TRUSTED_PROXIES, "127.0.0.1"),
                (FORWARDED_CLIENT_CERT, "cf"),
                ("XSROUTER_CLIENT_CA", ca_file.as_str()),
                ("XSROUTER_CLIENT_CRL", crl_file.as_str()),
            ];
            if tls {
                pairs.push(("XSROUTER_TLS_CERT", "/nonexistent/server.pem"));
                pairs.push(("XSROUTER_TLS_KEY", "/nonexistent/server.key"));
            }
            let env = Environment::from_pairs(pairs);
            let mut problems = Problems::default();
            let inbound = InboundTls::from_env(&env, &mut problems);
            assert!(from_env(&env, &inbound, &mut problems).is_none());
            let text: Vec<String> = problems
                .into_error()
                .problems
                .iter()
                .map(ToString::to_string)
                .collect();
            let crl: Vec<&String> = text.iter().filter(|p| p.contains("broken.crl")).collect();
            assert_eq!(crl.len(), 1, "{text:?}");
            assert!(
                crl[0].starts_with("env XSROUTER_CLIENT_CRL (")
                    && crl[0].contains("broken.crl): $: not a valid CRL"),
                "{text:?}"
            );
        }
    }

    #[test]
    fn reverify_needs_the_client_ca_and_format_is_required() {
        let (_, problems) = load(&[(TRUSTED_PROXIES, "127.0.0.1")]);
        let text = problems.join("\n");
        assert!(
            text.contains(
                "env XSROUTER_FORWARDED_CLIENT_CERT: $: is not set, but trusted proxies are"
            ),
            "{text}"
        );
        assert!(
            text.contains("env XSROUTER_CLIENT_CA: $: is not set, but forwarded client certificates are re-verified"),
            "{text}"
        );
        let (_, problems) = load(&[(FORWARDED_CLIENT_CERT, "envoy")]);
        assert!(
            problems
                .join("\n")
                .contains("$: has no effect without trusted proxies"),
            "{problems:?}"
        );
        let (_, problems) = load(&[
            (TRUSTED_PROXIES, "127.0.0.1"),
            (FORWARDED_CLIENT_CERT, "nginx:x-user"),
            (FORWARDED_CLIENT_CERT_VERIFY, "trust-proxy"),
        ]);
        assert!(
            problems
                .join("\n")
                .contains("`x-user` is not a known client-certificate header"),
            "{problems:?}"
        );
    }
}
