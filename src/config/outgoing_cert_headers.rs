//! How client certificates are passed to destinations, from the environment (on top of the
//! profiles chosen with `XSROUTER_CLIENT_CERT_HEADERS`):
//!
//! - `XSROUTER_XFCC_MODE`: Envoy's `forward_client_cert_details` for the `envoy` profile —
//!   `sanitize`, `sanitize_set` (default), `append_forward`, `forward_only`,
//!   `always_forward_only`. The incoming XFCC is only ever taken from trusted proxies.
//! - `XSROUTER_XFCC_FIELDS`: Envoy's `set_current_client_cert_details` — comma list of `subject`,
//!   `uri`, `dns`, `cert`, `chain` (default `subject,uri,dns`; `Hash` is always sent, `By` when
//!   the router's own server certificate has URI SANs).
//! - `XSROUTER_CLIENT_CERT_HEADERS_MAX_BYTES`: the budget for all client-certificate headers of
//!   one request (default 16384); over it, `Cert`/`Chain` are dropped, then nothing is sent.

use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

use super::environment::Environment;
use super::inbound_tls::InboundTls;
use super::problem::{Problems, index};
use crate::inbound::client_cert::ClientCertificate;
use crate::inbound::headers_out::{
    DEFAULT_MAX_TOTAL_BYTES, DEFAULT_MAX_VALUE_BYTES, EmitOptions, ForwardProfile, XfccFields,
    XfccMode,
};

pub const XFCC_MODE: &str = "XSROUTER_XFCC_MODE";
pub const XFCC_FIELDS: &str = "XSROUTER_XFCC_FIELDS";
pub const MAX_BYTES: &str = "XSROUTER_CLIENT_CERT_HEADERS_MAX_BYTES";

/// The smallest budget accepted: room for a verification status and an XFCC `Hash`.
const MIN_BUDGET: usize = 256;

/// The header profiles with their Envoy options applied, and the emission limits.
#[derive(Debug, Clone, Default)]
pub struct OutgoingCertHeaders {
    pub profiles: Vec<ForwardProfile>,
    pub options: EmitOptions,
}

impl OutgoingCertHeaders {
    pub fn from_env(env: &Environment, inbound: &InboundTls, problems: &mut Problems) -> Self {
        let mode = env
            .non_empty(XFCC_MODE)
            .and_then(|text| xfcc_mode(text, &env.origin(XFCC_MODE), problems));
        let mut fields = env
            .non_empty(XFCC_FIELDS)
            .map(|text| xfcc_fields(text, &env.origin(XFCC_FIELDS), problems));
        let has_envoy = inbound
            .forward_profiles
            .iter()
            .any(|p| matches!(p, ForwardProfile::Envoy { .. }));
        if !has_envoy {
            for key in [XFCC_MODE, XFCC_FIELDS] {
                if env.non_empty(key).is_some() {
                    problems.push(
                        &env.origin(key),
                        "$",
                        "has no effect: XSROUTER_CLIENT_CERT_HEADERS does not include `envoy`",
                    );
                }
            }
        }
        // Envoy's `By`: the URI SANs of the router's own certificate.
        // (Unreadable files are reported where the listener's files are read.)
        let by: Vec<String> = inbound
            .server
            .as_ref()
            .and_then(|site| {
                CertificateDer::pem_file_iter(&site.cert_file)
                    .ok()?
                    .next()?
                    .ok()
            })
            .and_then(|leaf| ClientCertificate::from_der(leaf.to_vec(), Vec::new()).ok())
            .map(|leaf| leaf.uris().to_vec())
            .unwrap_or_default();
        if let Some(fields) = fields.as_mut() {
            fields.by.clone_from(&by);
        }
        let profiles = inbound
            .forward_profiles
            .iter()
            .map(|profile| match profile {
                ForwardProfile::Envoy {
                    mode: default_mode,
                    fields: default_fields,
                } => ForwardProfile::Envoy {
                    mode: mode.unwrap_or(*default_mode),
                    fields: fields.clone().unwrap_or_else(|| XfccFields {
                        by: by.clone(),
                        ..default_fields.clone()
                    }),
                },
                other => other.clone(),
            })
            .collect();
        let budget = env
            .non_empty(MAX_BYTES)
            .and_then(|text| match text.trim().parse::<usize>() {
                Ok(n) if n >= MIN_BUDGET => Some(n),
                _ => {
                    problems.push(
                        &env.origin(MAX_BYTES),
                        "$",
                        format!("`{text}` is not a number of bytes of at least {MIN_BUDGET}"),
                    );
                    None
                }
            });
        let max_total_bytes = budget.unwrap_or(DEFAULT_MAX_TOTAL_BYTES);
        Self {
            profiles,
            options: EmitOptions {
                max_total_bytes,
                max_value_bytes: DEFAULT_MAX_VALUE_BYTES.min(max_total_bytes),
                ..EmitOptions::default()
            },
        }
    }
}

fn xfcc_mode(text: &str, origin: &str, problems: &mut Problems) -> Option<XfccMode> {
    Some(match text.trim().to_ascii_lowercase().as_str() {
        "sanitize" => XfccMode::Sanitize,
        "sanitize_set" => XfccMode::SanitizeSet,
        "append_forward" => XfccMode::AppendForward,
        "forward_only" => XfccMode::ForwardOnly,
        "always_forward_only" => XfccMode::AlwaysForwardOnly,
        _ => {
            problems.push(
                origin,
                "$",
                format!(
                    "`{text}` is not a mode: use sanitize, sanitize_set, append_forward, forward_only or always_forward_only"
                ),
            );
            return None;
        }
    })
}

fn xfcc_fields(text: &str, origin: &str, problems: &mut Problems) -> XfccFields {
    let mut fields = XfccFields {
        by: Vec::new(),
        cert: false,
        chain: false,
        subject: false,
        uri: false,
        dns: false,
    };
    for (i, name) in text
        .split(',')
        .map(str::trim)
        .filter(|n| !n.is_empty())
        .enumerate()
    {
        match name.to_ascii_lowercase().as_str() {
            "subject" => fields.subject = true,
            "uri" => fields.uri = true,
            "dns" => fields.dns = true,
            "cert" => fields.cert = true,
            "chain" => fields.chain = true,
            // Always sent; accepted so Envoy-style lists can be copied.
            "hash" | "by" => {}
            _ => problems.push(
                origin,
                index("$", i),
                format!("`{name}` is not an XFCC field: use subject, uri, dns, cert, chain"),
            ),
        }
    }
    fields
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(pairs: &[(&str, &str)]) -> (OutgoingCertHeaders, Vec<String>) {
        let env = Environment::from_pairs(pairs.iter().copied());
        let mut problems = Problems::default();
        let inbound = InboundTls::from_env(&env, &mut problems);
        let out = OutgoingCertHeaders::from_env(&env, &inbound, &mut problems);
        let reasons = problems
            .into_error()
            .problems
            .into_iter()
            .map(|p| p.to_string())
            .collect();
        (out, reasons)
    }

    #[test]
    fn envoy_options_are_applied() {
        let (out, problems) = load(&[
            ("XSROUTER_CLIENT_CERT_HEADERS", "envoy,rfc9440"),
            (XFCC_MODE, "append_forward"),
            (XFCC_FIELDS, "Hash, cert,chain , dns"),
            (MAX_BYTES, "4096"),
        ]);
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(
            out.profiles,
            [
                ForwardProfile::Envoy {
                    mode: XfccMode::AppendForward,
                    fields: XfccFields {
                        by: Vec::new(),
                        cert: true,
                        chain: true,
                        subject: false,
                        uri: false,
                        dns: true,
                    },
                },
                ForwardProfile::Rfc9440
            ]
        );
        assert_eq!(out.options.max_total_bytes, 4096);
        assert_eq!(out.options.max_value_bytes, 4096);
    }

    #[test]
    fn defaults_keep_the_inbound_profiles() {
        let (out, problems) = load(&[]);
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(
            out.profiles,
            [ForwardProfile::Envoy {
                mode: XfccMode::SanitizeSet,
                fields: XfccFields::default()
            }]
        );
        assert_eq!(out.options, EmitOptions::default());
    }

    #[test]
    fn bad_values_are_reported() {
        let (_, problems) = load(&[
            ("XSROUTER_CLIENT_CERT_HEADERS", "cf"),
            (XFCC_MODE, "append"),
            (XFCC_FIELDS, "subject,issuer"),
            (MAX_BYTES, "12"),
        ]);
        let text = problems.join("\n");
        for want in [
            "env XSROUTER_XFCC_MODE: $: `append` is not a mode",
            "env XSROUTER_XFCC_MODE: $: has no effect: XSROUTER_CLIENT_CERT_HEADERS does not include `envoy`",
            "env XSROUTER_XFCC_FIELDS: $[1]: `issuer` is not an XFCC field",
            "env XSROUTER_CLIENT_CERT_HEADERS_MAX_BYTES: $: `12` is not a number of bytes of at least 256",
        ] {
            assert!(text.contains(want), "missing {want:?} in\n{text}");
        }
    }
}
