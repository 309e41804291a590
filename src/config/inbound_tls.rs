//! The router's own HTTPS listener and inbound client certificates, from the environment:
//!
//! - `XSROUTER_TLS_CERT` / `XSROUTER_TLS_KEY`: PEM files with the server certificate chain (leaf
//!   first) and its private key. When set, the main listener speaks HTTPS; otherwise plain HTTP.
//! - `XSROUTER_CLIENT_CERT_MODE`: `off` (default), `optional` (a certificate is asked for; one
//!   that is presented must verify) or `require` (no valid certificate, no connection).
//! - `XSROUTER_CLIENT_CA`: PEM bundle files, separated by `:`, whose certificates are the trust
//!   anchors for client certificates; required unless the mode is `off`.
//! - `XSROUTER_CLIENT_CERT_HEADERS`: comma list of the header profiles the destinations get for a
//!   verified client certificate (default `envoy`): `envoy`, `cf`, `rfc9440`, `nginx`, `azion`,
//!   `azure-appgw`, `traefik`.
//!
//! Files are read and checked at start-up; every problem names its variable.

use std::fmt;
use std::path::PathBuf;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use super::environment::Environment;
use super::problem::Problems;
use crate::inbound::{ForwardProfile, NginxFlavor, XfccFields, XfccMode};

const TLS_CERT: &str = "XSROUTER_TLS_CERT";
const TLS_KEY: &str = "XSROUTER_TLS_KEY";
const CLIENT_CERT_MODE: &str = "XSROUTER_CLIENT_CERT_MODE";
const CLIENT_CA: &str = "XSROUTER_CLIENT_CA";
const CLIENT_CERT_HEADERS: &str = "XSROUTER_CLIENT_CERT_HEADERS";

/// Whether the TLS listener asks for client certificates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ClientCertMode {
    /// No client certificate is asked for.
    #[default]
    Off,
    /// A client certificate is asked for; without one the connection is still accepted, and
    /// one that is presented must verify.
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
}

/// The server certificate chain and key of the HTTPS listener.
pub struct ServerIdentity {
    pub cert_path: PathBuf,
    pub key_path: PathBuf,
    /// Leaf first, then intermediates.
    pub chain: Vec<CertificateDer<'static>>,
    pub key: PrivateKeyDer<'static>,
}

impl Clone for ServerIdentity {
    fn clone(&self) -> Self {
        Self {
            cert_path: self.cert_path.clone(),
            key_path: self.key_path.clone(),
            chain: self.chain.clone(),
            key: self.key.clone_key(),
        }
    }
}

impl fmt::Debug for ServerIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerIdentity")
            .field("cert_path", &self.cert_path)
            .field("key_path", &self.key_path)
            .field("chain", &self.chain.len())
            .field("key", &"***")
            .finish()
    }
}

/// Inbound TLS settings, validated.
#[derive(Debug, Clone, Default)]
pub struct InboundTls {
    /// The HTTPS listener's identity; `None` keeps the listener on plain HTTP.
    pub server: Option<ServerIdentity>,
    pub client_cert_mode: ClientCertMode,
    /// Trust anchors for client certificates (every certificate of every bundle).
    pub client_cas: Vec<CertificateDer<'static>>,
    /// Header profiles sent to destinations for a verified client certificate.
    pub forward_profiles: Vec<ForwardProfile>,
}

impl InboundTls {
    pub fn from_env(env: &Environment, problems: &mut Problems) -> Self {
        let server = server_identity(env, problems);
        let client_cert_mode = mode(env, problems);
        let client_cas = match env.non_empty(CLIENT_CA) {
            Some(paths) => client_cas(env, paths, problems),
            None => Vec::new(),
        };
        if client_cert_mode != ClientCertMode::Off {
            if env.non_empty(CLIENT_CA).is_none() {
                problems.push(
                    &env.origin(CLIENT_CERT_MODE),
                    "$",
                    format!(
                        "mode `{}` needs {CLIENT_CA}: the CA bundles client certificates are verified against",
                        client_cert_mode.as_str()
                    ),
                );
            }
            if env.non_empty(TLS_CERT).is_none() {
                problems.push(
                    &env.origin(CLIENT_CERT_MODE),
                    "$",
                    format!(
                        "mode `{}` needs the HTTPS listener: set {TLS_CERT} and {TLS_KEY}",
                        client_cert_mode.as_str()
                    ),
                );
            }
        }
        let forward_profiles = profiles(env, problems);
        let tls = Self {
            server,
            client_cert_mode,
            client_cas,
            forward_profiles,
        };
        // The rustls configuration is built once here so that a key that does not match its
        // certificate, or an unusable CA, is reported at start-up.
        if tls.server.is_some()
            && (tls.client_cert_mode == ClientCertMode::Off || !tls.client_cas.is_empty())
            && let Err(err) = crate::inbound::listener::server_config(&tls)
        {
            problems.push(&env.origin(TLS_CERT), "$", err.to_string());
        }
        tls
    }
}

fn server_identity(env: &Environment, problems: &mut Problems) -> Option<ServerIdentity> {
    let (cert, key) = (env.non_empty(TLS_CERT), env.non_empty(TLS_KEY));
    let (cert_path, key_path) = match (cert, key) {
        (None, None) => return None,
        (Some(cert), Some(key)) => (cert, key),
        (Some(_), None) => {
            problems.push(
                &env.origin(TLS_KEY),
                "$",
                format!("is not set, but {TLS_CERT} is: HTTPS needs both"),
            );
            return None;
        }
        (None, Some(_)) => {
            problems.push(
                &env.origin(TLS_CERT),
                "$",
                format!("is not set, but {TLS_KEY} is: HTTPS needs both"),
            );
            return None;
        }
    };
    let cert_origin = format!("{} ({cert_path})", env.origin(TLS_CERT));
    let key_origin = format!("{} ({key_path})", env.origin(TLS_KEY));
    let chain = read(cert_path, &cert_origin, problems).and_then(|bytes| {
        match CertificateDer::pem_slice_iter(&bytes).collect::<Result<Vec<_>, _>>() {
            Ok(chain) if !chain.is_empty() => Some(chain),
            Ok(_) => {
                problems.push(&cert_origin, "$", "holds no PEM certificate");
                None
            }
            Err(err) => {
                problems.push(&cert_origin, "$", format!("not valid PEM: {err}"));
                None
            }
        }
    });
    let key =
        read(key_path, &key_origin, problems).and_then(
            |bytes| match PrivateKeyDer::from_pem_slice(&bytes) {
                Ok(key) => Some(key),
                Err(err) => {
                    problems.push(
                        &key_origin,
                        "$",
                        format!("no usable PEM private key (PKCS#8, PKCS#1 or SEC1): {err}"),
                    );
                    None
                }
            },
        );
    Some(ServerIdentity {
        cert_path: cert_path.into(),
        key_path: key_path.into(),
        chain: chain?,
        key: key?,
    })
}

fn read(path: &str, origin: &str, problems: &mut Problems) -> Option<Vec<u8>> {
    match std::fs::read(path) {
        Ok(bytes) => Some(bytes),
        Err(err) => {
            problems.push(origin, "$", format!("cannot read: {err}"));
            None
        }
    }
}

fn mode(env: &Environment, problems: &mut Problems) -> ClientCertMode {
    match env.non_empty(CLIENT_CERT_MODE) {
        None => ClientCertMode::Off,
        Some(value) => match value.to_ascii_lowercase().as_str() {
            "off" => ClientCertMode::Off,
            "optional" => ClientCertMode::Optional,
            "require" => ClientCertMode::Require,
            _ => {
                problems.push(
                    &env.origin(CLIENT_CERT_MODE),
                    "$",
                    format!("`{value}` is not a mode: use `off`, `optional` or `require`"),
                );
                ClientCertMode::Off
            }
        },
    }
}

fn client_cas(
    env: &Environment,
    paths: &str,
    problems: &mut Problems,
) -> Vec<CertificateDer<'static>> {
    let mut cas = Vec::new();
    for path in paths.split(':').map(str::trim).filter(|p| !p.is_empty()) {
        let origin = format!("{} ({path})", env.origin(CLIENT_CA));
        let Some(bytes) = read(path, &origin, problems) else {
            continue;
        };
        match CertificateDer::pem_slice_iter(&bytes).collect::<Result<Vec<_>, _>>() {
            Ok(certs) if !certs.is_empty() => cas.extend(certs),
            Ok(_) => problems.push(&origin, "$", "holds no PEM certificate"),
            Err(err) => problems.push(&origin, "$", format!("not valid PEM: {err}")),
        }
    }
    cas
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
    }

    #[test]
    fn client_certificates_need_a_ca_and_the_https_listener() {
        let (_, problems) = load(&[(CLIENT_CERT_MODE, "require")]);
        let text = problems.join("\n");
        assert!(text.contains("needs XSROUTER_CLIENT_CA"), "{text}");
        assert!(text.contains("needs the HTTPS listener"), "{text}");
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
    }
}
