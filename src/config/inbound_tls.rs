//! The router's own HTTPS listener and inbound client certificates, from the environment.
//!
//! The default site (every client, whatever its SNI, unless a host below matches):
//!
//! - `XSROUTER_TLS_CERT` / `XSROUTER_TLS_KEY`: PEM files with the server certificate chain (leaf
//!   first) and its private key. When set, the main listener speaks HTTPS; otherwise plain HTTP.
//! - `XSROUTER_CLIENT_CERT_MODE`: `off` (default), `optional` (a certificate is asked for; one
//!   that is presented must verify, unless permissive) or `require` (no valid certificate, no
//!   connection).
//! - `XSROUTER_CLIENT_CERT_PERMISSIVE` (`false`): with `optional`, a certificate that fails
//!   verification is accepted too and passed on as `FAILED:<reason>`.
//! - `XSROUTER_CLIENT_CA`: PEM bundle files, separated by `:`; each must contain a root (the trust
//!   anchors); its other certificates help build paths. Required unless the mode is `off`.
//! - `XSROUTER_CLIENT_ISSUERS`: PEM files (`:`) of the CAs allowed to issue client certificates
//!   (exact certificate match on the verified path); unset: any CA of the bundles.
//! - `XSROUTER_CLIENT_CHAIN_DEPTH`: most CA certificates above the leaf, the root included.
//! - `XSROUTER_CLIENT_CRL`: CRL files (PEM or DER, `:`); `XSROUTER_CLIENT_CRL_SCOPE` `chain`
//!   (default) or `leaf`; `XSROUTER_CLIENT_CRL_ALLOW_UNKNOWN_STATUS` (`false`: a certificate no
//!   CRL covers is refused); `XSROUTER_CLIENT_CRL_ENFORCE_EXPIRATION` (`true`: a CRL past its
//!   `nextUpdate` fails verification).
//!
//! - `XSROUTER_TLS_HOSTS`: more sites chosen by SNI, a JSON array of
//!   `{"host": "a.example" | ["a.example", "*.b.example", …], "cert", "key", "clientCertMode", "permissive",
//!   "clientCa": [..], "allowedIssuers": [..], "maxChainDepth", "crl": [..], "crlScope",
//!   "allowUnknownRevocationStatus", "enforceRevocationExpiration"}` (same meanings and defaults).
//! - `XSROUTER_CLIENT_CERT_HEADERS`: comma list of the header profiles the destinations get for a
//!   client certificate (default `envoy`): `envoy`, `cf`, `rfc9440`, `nginx`, `azion`,
//!   `azure-appgw`, `traefik`.
//!
//! The `XSROUTER_CLIENT_*` trust settings (CA bundles to CRL options) also apply without HTTPS:
//! certificates forwarded by trusted proxies are re-verified with them.
//!
//! Files are read and checked at start-up (every problem names its variable or JSON path) and
//! re-read while the router runs, by the listener ([`crate::inbound::reload`]) and for forwarded
//! certificates ([`crate::inbound::reverify::watch`]).

use std::path::PathBuf;

use rustls::pki_types::CertificateDer;
use serde::Deserialize;
use serde_json::Value;

use super::environment::Environment;
use super::problem::{Problems, deserialize_at, index};
use crate::inbound::trust::{FileRole, MaterialError};
use crate::inbound::{ForwardProfile, NginxFlavor, XfccFields, XfccMode};

const TLS_CERT: &str = "XSROUTER_TLS_CERT";
const TLS_KEY: &str = "XSROUTER_TLS_KEY";
const CLIENT_CERT_MODE: &str = "XSROUTER_CLIENT_CERT_MODE";
const CLIENT_CERT_PERMISSIVE: &str = "XSROUTER_CLIENT_CERT_PERMISSIVE";
const CLIENT_CA: &str = "XSROUTER_CLIENT_CA";
const CLIENT_ISSUERS: &str = "XSROUTER_CLIENT_ISSUERS";
const CLIENT_CHAIN_DEPTH: &str = "XSROUTER_CLIENT_CHAIN_DEPTH";
const CLIENT_CRL: &str = "XSROUTER_CLIENT_CRL";
const CLIENT_CRL_SCOPE: &str = "XSROUTER_CLIENT_CRL_SCOPE";
const CLIENT_CRL_ALLOW_UNKNOWN: &str = "XSROUTER_CLIENT_CRL_ALLOW_UNKNOWN_STATUS";
const CLIENT_CRL_ENFORCE_EXPIRATION: &str = "XSROUTER_CLIENT_CRL_ENFORCE_EXPIRATION";
const TLS_HOSTS: &str = "XSROUTER_TLS_HOSTS";
const CLIENT_CERT_HEADERS: &str = "XSROUTER_CLIENT_CERT_HEADERS";

/// Every variable this module reads.
pub const ENV_KEYS: &[&str] = &[
    TLS_CERT,
    TLS_KEY,
    CLIENT_CERT_MODE,
    CLIENT_CERT_PERMISSIVE,
    CLIENT_CA,
    CLIENT_ISSUERS,
    CLIENT_CHAIN_DEPTH,
    CLIENT_CRL,
    CLIENT_CRL_SCOPE,
    CLIENT_CRL_ALLOW_UNKNOWN,
    CLIENT_CRL_ENFORCE_EXPIRATION,
    TLS_HOSTS,
    CLIENT_CERT_HEADERS,
];

/// Whether the TLS listener asks for client certificates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ClientCertMode {
    /// No client certificate is asked for.
    #[default]
    Off,
    /// A client certificate is asked for; without one the connection is still accepted, and
    /// one that is presented must verify (unless permissive).
    Optional,
    /// A valid client certificate is required to connect.
    Require,
}

impl ClientCertMode {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Off => "off",
            Self::Optional => "optional",
            Self::Require => "require",
        }
    }

    fn parse(value: &str) -> Option<Self> {
        match value.to_ascii_lowercase().as_str() {
            "off" => Some(Self::Off),
            "optional" => Some(Self::Optional),
            "require" => Some(Self::Require),
            _ => None,
        }
    }
}

/// Which certificates of a chain CRLs are checked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CrlScope {
    /// Every certificate of the path except the trust anchor.
    #[default]
    Chain,
    /// The client certificate only.
    Leaf,
}

/// Revocation options; they matter only when CRL files are configured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RevocationPolicy {
    pub scope: CrlScope,
    /// Accept a certificate no configured CRL covers (default: refuse it).
    pub allow_unknown_status: bool,
    /// A CRL past its `nextUpdate` fails verification (default: yes).
    pub enforce_expiration: bool,
}

impl Default for RevocationPolicy {
    fn default() -> Self {
        Self {
            scope: CrlScope::Chain,
            allow_unknown_status: false,
            enforce_expiration: true,
        }
    }
}

/// How one site verifies client certificates: the files are re-read on reload.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClientAuth {
    pub mode: ClientCertMode,
    /// With `Optional`: a certificate that fails verification is accepted and marked failed.
    pub permissive: bool,
    pub ca_files: Vec<PathBuf>,
    /// CAs allowed to issue client certificates (pinning); empty: any CA of the bundles.
    pub allowed_issuer_files: Vec<PathBuf>,
    pub crl_files: Vec<PathBuf>,
    /// Most CA certificates above the leaf, the trust anchor included (nginx `ssl_verify_depth`).
    pub max_chain_depth: Option<u8>,
    pub revocation: RevocationPolicy,
}

/// One site of the HTTPS listener: a server certificate and its client-certificate policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsSite {
    /// SNI names (lowercase) this site serves; empty for the default site.
    pub server_names: Vec<String>,
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
    pub client_auth: ClientAuth,
}

/// Inbound TLS settings, validated.
#[derive(Debug, Clone, Default)]
pub struct InboundTls {
    /// The HTTPS listener's default site (`XSROUTER_TLS_*`, `XSROUTER_CLIENT_*`); `None` keeps
    /// the listener on plain HTTP.
    pub server: Option<TlsSite>,
    /// The default site's client-certificate mode (`Off` without HTTPS).
    pub client_cert_mode: ClientCertMode,
    /// The `XSROUTER_CLIENT_*` trust settings (CA bundles, pinned issuers, chain depth, CRLs and
    /// revocation options), also without HTTPS: certificates forwarded by trusted proxies are
    /// re-verified with them.
    pub client_auth: ClientAuth,
    /// Every certificate of the default site's CA bundles as read at start-up (read to report
    /// unusable bundles; verification re-reads the files).
    pub client_cas: Vec<CertificateDer<'static>>,
    /// Sites chosen by SNI (`XSROUTER_TLS_HOSTS`).
    pub sni_sites: Vec<TlsSite>,
    /// Header profiles sent to destinations for a client certificate.
    pub forward_profiles: Vec<ForwardProfile>,
}

impl InboundTls {
    pub fn from_env(env: &Environment, problems: &mut Problems) -> Self {
        let (client_auth, server) = default_site(env, problems);
        let sni_sites = match env.non_empty(TLS_HOSTS) {
            Some(text) => sni_sites(env, text, problems),
            None => Vec::new(),
        };
        if !sni_sites.is_empty() && server.is_none() {
            problems.push(
                &env.origin(TLS_HOSTS),
                "$",
                format!("needs the default site for clients without a matching SNI: set {TLS_CERT} and {TLS_KEY}"),
            );
        }
        let forward_profiles = profiles(env, problems);
        let client_cert_mode = server
            .as_ref()
            .map_or(ClientCertMode::Off, |site| site.client_auth.mode);
        // The bundles are read even without HTTPS: trusted proxies verify against them.
        let client_cas = env
            .path_list(CLIENT_CA)
            .iter()
            .enumerate()
            .filter_map(|(i, file)| {
                match crate::inbound::trust::read_certificates(FileRole::ClientCa(i), file) {
                    Ok(certs) => Some(certs),
                    Err(err) => {
                        // The listener reports its own bundles when it asks for certificates.
                        if client_cert_mode == ClientCertMode::Off {
                            push_default_site_problem(env, &err, problems);
                        }
                        None
                    }
                }
            })
            .flatten()
            .collect();
        let tls = Self {
            server,
            client_cert_mode,
            client_auth,
            client_cas,
            sni_sites,
            forward_profiles,
        };
        // Every file is read and the rustls configurations built once here, so that a key that
        // does not match its certificate, a bundle without a root or a broken CRL is reported
        // at start-up.
        if let Some(default) = &tls.server {
            if let Err(err) =
                crate::inbound::server_config::HostTls::build(default, &Default::default())
            {
                push_default_site_problem(env, &err, problems);
            }
        }
        for (i, site) in tls.sni_sites.iter().enumerate() {
            if let Err(err) =
                crate::inbound::server_config::HostTls::build(site, &Default::default())
            {
                problems.push(
                    &env.origin(TLS_HOSTS),
                    site_file_path(i, err.role),
                    format!("{}: {}", err.file.display(), err.reason),
                );
            }
        }
        tls
    }

    /// Whether the main listener speaks HTTPS.
    pub fn https(&self) -> bool {
        self.server.is_some()
    }
}

fn push_default_site_problem(env: &Environment, err: &MaterialError, problems: &mut Problems) {
    let variable = match err.role {
        FileRole::ServerCertificate => TLS_CERT,
        FileRole::ServerKey => TLS_KEY,
        FileRole::ClientCa(_) => CLIENT_CA,
        FileRole::AllowedIssuer(_) => CLIENT_ISSUERS,
        FileRole::Crl(_) => CLIENT_CRL,
    };
    problems.push(
        &format!("{} ({})", env.origin(variable), err.file.display()),
        "$",
        err.reason.clone(),
    );
}

/// The JSON path of a file of `XSROUTER_TLS_HOSTS` entry `i`.
fn site_file_path(i: usize, role: FileRole) -> String {
    let entry = index("$", i);
    match role {
        FileRole::ServerCertificate => format!("{entry}.cert"),
        FileRole::ServerKey => format!("{entry}.key"),
        FileRole::ClientCa(n) => format!("{entry}.clientCa[{n}]"),
        FileRole::AllowedIssuer(n) => format!("{entry}.allowedIssuers[{n}]"),
        FileRole::Crl(n) => format!("{entry}.crl[{n}]"),
    }
}

/// The `XSROUTER_CLIENT_*` settings, and the default site when HTTPS is configured.
fn default_site(env: &Environment, problems: &mut Problems) -> (ClientAuth, Option<TlsSite>) {
    let mode = match env.non_empty(CLIENT_CERT_MODE) {
        None => ClientCertMode::Off,
        Some(value) => ClientCertMode::parse(value).unwrap_or_else(|| {
            problems.push(
                &env.origin(CLIENT_CERT_MODE),
                "$",
                format!("`{value}` is not a mode: use `off`, `optional` or `require`"),
            );
            ClientCertMode::Off
        }),
    };
    let permissive = flag(env, CLIENT_CERT_PERMISSIVE, false, problems);
    let ca_files = env.path_list(CLIENT_CA);
    let client_auth = ClientAuth {
        mode,
        permissive,
        ca_files,
        allowed_issuer_files: env.path_list(CLIENT_ISSUERS),
        crl_files: env.path_list(CLIENT_CRL),
        max_chain_depth: env.non_empty(CLIENT_CHAIN_DEPTH).and_then(|value| {
            match value.trim().parse::<u8>() {
                Ok(depth) if depth >= 1 => Some(depth),
                _ => {
                    problems.push(
                        &env.origin(CLIENT_CHAIN_DEPTH),
                        "$",
                        format!("`{value}` is not a chain depth: use a whole number from 1 to 255"),
                    );
                    None
                }
            }
        }),
        revocation: RevocationPolicy {
            scope: match env.non_empty(CLIENT_CRL_SCOPE) {
                None => CrlScope::Chain,
                Some(value) => crl_scope(value).unwrap_or_else(|| {
                    problems.push(
                        &env.origin(CLIENT_CRL_SCOPE),
                        "$",
                        format!("`{value}` is not a scope: use `chain` or `leaf`"),
                    );
                    CrlScope::Chain
                }),
            },
            allow_unknown_status: flag(env, CLIENT_CRL_ALLOW_UNKNOWN, false, problems),
            enforce_expiration: flag(env, CLIENT_CRL_ENFORCE_EXPIRATION, true, problems),
        },
    };
    let mode_origin = env.origin(CLIENT_CERT_MODE);
    for reason in client_auth_problems(&client_auth, CLIENT_CA, CLIENT_CERT_PERMISSIVE) {
        problems.push(&mode_origin, "$", reason);
    }
    let (cert, key) = (env.non_empty(TLS_CERT), env.non_empty(TLS_KEY));
    let site = match (cert, key) {
        (None, None) => {
            if mode != ClientCertMode::Off {
                problems.push(
                    &mode_origin,
                    "$",
                    format!(
                        "mode `{}` needs the HTTPS listener: set {TLS_CERT} and {TLS_KEY}",
                        mode.as_str()
                    ),
                );
            }
            None
        }
        (Some(cert), Some(key)) => Some(TlsSite {
            server_names: Vec::new(),
            cert_file: cert.into(),
            key_file: key.into(),
            client_auth: client_auth.clone(),
        }),
        (Some(_), None) => {
            problems.push(
                &env.origin(TLS_KEY),
                "$",
                format!("is not set, but {TLS_CERT} is: HTTPS needs both"),
            );
            None
        }
        (None, Some(_)) => {
            problems.push(
                &env.origin(TLS_CERT),
                "$",
                format!("is not set, but {TLS_KEY} is: HTTPS needs both"),
            );
            None
        }
    };
    (client_auth, site)
}

/// Inconsistencies between the mode and the other client-certificate settings.
fn client_auth_problems(auth: &ClientAuth, ca_name: &str, permissive_name: &str) -> Vec<String> {
    let mut reasons = Vec::new();
    if auth.mode != ClientCertMode::Off && auth.ca_files.is_empty() {
        reasons.push(format!(
            "mode `{}` needs {ca_name}: the CA bundles client certificates are verified against",
            auth.mode.as_str()
        ));
    }
    if auth.permissive && auth.mode != ClientCertMode::Optional {
        reasons.push(format!(
            "{permissive_name} needs mode `optional` (it is `{}`)",
            auth.mode.as_str()
        ));
    }
    reasons
}

fn crl_scope(value: &str) -> Option<CrlScope> {
    match value.to_ascii_lowercase().as_str() {
        "chain" => Some(CrlScope::Chain),
        "leaf" => Some(CrlScope::Leaf),
        _ => None,
    }
}

/// A `:`-separated list of files.
fn flag(env: &Environment, key: &str, default: bool, problems: &mut Problems) -> bool {
    match env.non_empty(key).map(|v| v.trim().to_ascii_lowercase()) {
        None => default,
        Some(v) if v == "true" => true,
        Some(v) if v == "false" => false,
        Some(v) => {
            problems.push(
                &env.origin(key),
                "$",
                format!("`{v}` is not a boolean: use `true` or `false`"),
            );
            default
        }
    }
}

/// One or several SNI names.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum HostNames {
    One(String),
    Many(Vec<String>),
}

/// An `XSROUTER_TLS_HOSTS` entry as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct HostEntry {
    host: HostNames,
    cert: PathBuf,
    key: PathBuf,
    #[serde(default)]
    client_cert_mode: Option<String>,
    #[serde(default)]
    permissive: bool,
    #[serde(default)]
    client_ca: Vec<PathBuf>,
    #[serde(default)]
    allowed_issuers: Vec<PathBuf>,
    #[serde(default)]
    max_chain_depth: Option<u8>,
    #[serde(default)]
    crl: Vec<PathBuf>,
    #[serde(default)]
    crl_scope: Option<String>,
    #[serde(default)]
    allow_unknown_revocation_status: bool,
    #[serde(default = "yes")]
    enforce_revocation_expiration: bool,
}

fn yes() -> bool {
    true
}

fn sni_sites(env: &Environment, text: &str, problems: &mut Problems) -> Vec<TlsSite> {
    let origin = env.origin(TLS_HOSTS);
    let entries = match serde_json::from_str::<Value>(text) {
        Ok(Value::Array(entries)) => entries,
        Ok(_) => {
            problems.push(&origin, "$", "expected a JSON array of host objects");
            return Vec::new();
        }
        Err(err) => {
            problems.push(&origin, "$", format!("not valid JSON: {err}"));
            return Vec::new();
        }
    };
    let mut sites: Vec<TlsSite> = Vec::new();
    for (i, value) in entries.into_iter().enumerate() {
        let path = index("$", i);
        let entry: HostEntry = match deserialize_at(value, &path) {
            Ok(entry) => entry,
            Err((at, reason)) => {
                problems.push(&origin, at, reason);
                continue;
            }
        };
        let names = match entry.host {
            HostNames::One(name) => vec![name],
            HostNames::Many(names) => names,
        };
        let mut server_names = Vec::new();
        for (n, name) in names.iter().enumerate() {
            let lower = name.trim().to_ascii_lowercase();
            let at = if names.len() == 1 {
                format!("{path}.host")
            } else {
                format!("{path}.host[{n}]")
            };
            if !valid_server_name(&lower) {
                problems.push(
                    &origin,
                    at,
                    format!("`{name}` is not a DNS host name or `*.` wildcard (no port)"),
                );
            } else if sites
                .iter()
                .flat_map(|s| &s.server_names)
                .chain(&server_names)
                .any(|known| *known == lower)
            {
                problems.push(&origin, at, format!("`{name}` is configured twice"));
            } else {
                server_names.push(lower);
            }
        }
        if names.is_empty() {
            problems.push(&origin, format!("{path}.host"), "names no host");
        }
        let mode = match &entry.client_cert_mode {
            None => ClientCertMode::Off,
            Some(value) => ClientCertMode::parse(value).unwrap_or_else(|| {
                problems.push(
                    &origin,
                    format!("{path}.clientCertMode"),
                    format!("`{value}` is not a mode: use `off`, `optional` or `require`"),
                );
                ClientCertMode::Off
            }),
        };
        let scope = match &entry.crl_scope {
            None => CrlScope::Chain,
            Some(value) => crl_scope(value).unwrap_or_else(|| {
                problems.push(
                    &origin,
                    format!("{path}.crlScope"),
                    format!("`{value}` is not a scope: use `chain` or `leaf`"),
                );
                CrlScope::Chain
            }),
        };
        if entry.max_chain_depth == Some(0) {
            problems.push(
                &origin,
                format!("{path}.maxChainDepth"),
                "must be at least 1",
            );
        }
        let client_auth = ClientAuth {
            mode,
            permissive: entry.permissive,
            ca_files: entry.client_ca,
            allowed_issuer_files: entry.allowed_issuers,
            crl_files: entry.crl,
            max_chain_depth: entry.max_chain_depth.filter(|d| *d >= 1),
            revocation: RevocationPolicy {
                scope,
                allow_unknown_status: entry.allow_unknown_revocation_status,
                enforce_expiration: entry.enforce_revocation_expiration,
            },
        };
        for reason in client_auth_problems(&client_auth, "clientCa", "permissive") {
            problems.push(&origin, format!("{path}.clientCertMode"), reason);
        }
        sites.push(TlsSite {
            server_names,
            cert_file: entry.cert,
            key_file: entry.key,
            client_auth,
        });
    }
    sites
}

/// A DNS name as SNI carries it — letters, digits, `-` and `.`, no empty label — optionally
/// behind `*.` (a wildcard for one leading label).
fn valid_server_name(name: &str) -> bool {
    let name = name.strip_prefix("*.").unwrap_or(name);
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

/// The profile a name selects.
fn profile(name: &str) -> Option<ForwardProfile> {
    Some(match name {
        "envoy" => ForwardProfile::Envoy {
            mode: XfccMode::SanitizeSet,
            fields: XfccFields::default(),
        },
        "cf" => ForwardProfile::CloudFoundry,
        "rfc9440" => ForwardProfile::Rfc9440,
        "nginx" => ForwardProfile::Nginx(NginxFlavor::Nginx),
        "azion" => ForwardProfile::Nginx(NginxFlavor::Azion),
        "azure-appgw" => ForwardProfile::AzureAppGateway,
        "traefik" => ForwardProfile::Traefik {
            pem: true,
            info: true,
        },
        _ => return None,
    })
}

fn profiles(env: &Environment, problems: &mut Problems) -> Vec<ForwardProfile> {
    let Some(list) = env.non_empty(CLIENT_CERT_HEADERS) else {
        return profile("envoy").into_iter().collect();
    };
    let origin = env.origin(CLIENT_CERT_HEADERS);
    let mut chosen: Vec<ForwardProfile> = Vec::new();
    for name in list.split(',').map(str::trim).filter(|n| !n.is_empty()) {
        let Some(found) = profile(&name.to_ascii_lowercase()) else {
            problems.push(
                &origin,
                "$",
                format!(
                    "`{name}` is not a header profile: use envoy, cf, rfc9440, nginx, azion, azure-appgw or traefik"
                ),
            );
            continue;
        };
        if let Some(clash) = found.header_names().iter().find(|header| {
            chosen
                .iter()
                .any(|other| other.header_names().contains(header))
        }) {
            problems.push(
                &origin,
                "$",
                format!("`{name}` sends `{clash}`, which an earlier profile already sends"),
            );
            continue;
        }
        chosen.push(found);
    }
    chosen
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(pairs: &[(&str, &str)]) -> (InboundTls, Vec<String>) {
        let env = Environment::from_pairs(pairs.iter().copied());
        let mut problems = Problems::default();
        let tls = InboundTls::from_env(&env, &mut problems);
        let reasons = problems
            .into_error()
            .problems
            .into_iter()
            .map(|p| p.to_string())
            .collect();
        (tls, reasons)
    }

    #[test]
    fn defaults_are_plain_http_with_envoy_headers() {
        let (tls, problems) = load(&[]);
        assert!(problems.is_empty(), "{problems:?}");
        assert!(tls.server.is_none());
        assert!(tls.sni_sites.is_empty());
        assert_eq!(tls.client_cert_mode, ClientCertMode::Off);
        assert_eq!(tls.forward_profiles.len(), 1);
        assert!(matches!(
            tls.forward_profiles[0],
            ForwardProfile::Envoy {
                mode: XfccMode::SanitizeSet,
                ..
            }
        ));
    }

    #[test]
    fn bad_values_are_reported_per_variable() {
        let (_, problems) = load(&[
            (CLIENT_CERT_MODE, "sometimes"),
            (CLIENT_CERT_HEADERS, "envoy, cf, bogus"),
            (TLS_KEY, "/nonexistent/key.pem"),
            (CLIENT_CHAIN_DEPTH, "0"),
            (CLIENT_CRL_SCOPE, "everything"),
            (CLIENT_CRL_ALLOW_UNKNOWN, "maybe"),
        ]);
        let text = problems.join("\n");
        assert!(text.contains("env XSROUTER_CLIENT_CERT_MODE: $: `sometimes` is not a mode"));
        assert!(text.contains("`bogus` is not a header profile"), "{text}");
        assert!(
            text.contains("`cf` sends `x-forwarded-client-cert`"),
            "{text}"
        );
        assert!(
            text.contains("env XSROUTER_TLS_CERT: $: is not set, but XSROUTER_TLS_KEY is"),
            "{text}"
        );
        assert!(
            text.contains("env XSROUTER_CLIENT_CHAIN_DEPTH: $: `0` is not a chain depth"),
            "{text}"
        );
        assert!(
            text.contains("env XSROUTER_CLIENT_CRL_SCOPE: $: `everything` is not a scope"),
            "{text}"
        );
        assert!(
            text.contains(
                "env XSROUTER_CLIENT_CRL_ALLOW_UNKNOWN_STATUS: $: `maybe` is not a boolean"
            ),
            "{text}"
        );
    }

    #[test]
    fn client_certificates_need_a_ca_and_the_https_listener() {
        let (_, problems) = load(&[(CLIENT_CERT_MODE, "require")]);
        let text = problems.join("\n");
        assert!(text.contains("needs XSROUTER_CLIENT_CA"), "{text}");
        assert!(text.contains("needs the HTTPS listener"), "{text}");
        let (_, problems) = load(&[
            (CLIENT_CERT_MODE, "require"),
            (CLIENT_CERT_PERMISSIVE, "true"),
        ]);
        let text = problems.join("\n");
        assert!(
            text.contains(
                "XSROUTER_CLIENT_CERT_PERMISSIVE needs mode `optional` (it is `require`)"
            ),
            "{text}"
        );
    }

    #[test]
    fn unreadable_and_empty_bundles_are_reported() {
        let dir = std::env::temp_dir().join(format!("xsrouter-ca-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let empty = dir.join("empty.pem");
        std::fs::write(&empty, "no certificates here\n").expect("write");
        let paths = format!("{}:/nonexistent/ca.pem", empty.display());
        let (_, problems) = load(&[(CLIENT_CA, &paths)]);
        let text = problems.join("\n");
        assert!(
            text.contains("empty.pem): $: holds no PEM certificate"),
            "{text}"
        );
        assert!(
            text.contains("(/nonexistent/ca.pem): $: cannot read"),
            "{text}"
        );
        let _ = std::fs::remove_dir_all(&dir);
        // With HTTPS but no client certificates asked for, the bundles (for trusted proxies)
        // are still checked.
        let (_, problems) = load(&[
            (TLS_CERT, "/nonexistent/server.pem"),
            (TLS_KEY, "/nonexistent/server.key"),
            (CLIENT_CA, "/nonexistent/ca.pem"),
        ]);
        let text = problems.join("\n");
        assert!(
            text.contains("env XSROUTER_CLIENT_CA (/nonexistent/ca.pem): $: cannot read"),
            "{text}"
        );
    }

    #[test]
    fn host_entries_are_validated_with_their_json_paths() {
        let hosts = r#"[
            {"host": "a.example", "cert": "/c", "key": "/k", "clientCertMode": "sometimes"},
            {"host": ["b.example", "A.example", "bad host:443"], "cert": "/c", "key": "/k"},
            {"host": "c.example", "cert": "/c"},
            {"host": "d.example", "cert": "/c", "key": "/k", "clientCertMode": "require", "crlScope": "x", "extra": 1},
            {"host": "e.example", "cert": "/c", "key": "/k", "clientCertMode": "require", "permissive": true, "clientCa": ["/ca"]}
        ]"#;
        let (tls, problems) = load(&[(TLS_HOSTS, hosts)]);
        let text = problems.join("\n");
        for expected in [
            "env XSROUTER_TLS_HOSTS: $: needs the default site",
            "env XSROUTER_TLS_HOSTS: $[0].clientCertMode: `sometimes` is not a mode",
            "env XSROUTER_TLS_HOSTS: $[1].host[1]: `A.example` is configured twice",
            "env XSROUTER_TLS_HOSTS: $[1].host[2]: `bad host:443` is not a DNS host name",
            "env XSROUTER_TLS_HOSTS: $[2]: missing field `key`",
            "env XSROUTER_TLS_HOSTS: $[3].extra: unknown field `extra`",
            "env XSROUTER_TLS_HOSTS: $[4].clientCertMode: permissive needs mode `optional`",
        ] {
            assert!(text.contains(expected), "missing {expected:?} in\n{text}");
        }
        assert_eq!(tls.sni_sites[0].server_names, vec!["a.example"]);
        assert_eq!(tls.sni_sites[1].server_names, vec!["b.example"]);
    }
}
