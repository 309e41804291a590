//! The router's own TLS identities: the certificate chain and key of the bound XSUAA and IAS
//! services, presented to `forwardAuthCertificates` destinations and token services.
//!
//! [`certificate`] turns PEM into a validated [`ClientIdentity`]; [`rotation`] keeps the current
//! one behind a lock-free swap and replaces it when the credential sources change.

pub mod certificate;
pub mod rotation;

use serde_json::Value;

use crate::config::Environment;
use crate::config::bindings::{AuthServiceKind, ServiceBinding};
pub use certificate::{CertificateSummary, ChainMode, ClientIdentity, IdentityError};

/// A validated identity and the binding it came from.
#[derive(Debug, Clone)]
pub struct BoundIdentity {
    pub kind: AuthServiceKind,
    /// The binding's instance name, for logs and errors.
    pub binding: String,
    pub identity: ClientIdentity,
}

/// The identities of the bound authentication services (either may be absent).
#[derive(Debug, Clone, Default)]
pub struct BoundIdentities {
    pub xsuaa: Option<BoundIdentity>,
    pub ias: Option<BoundIdentity>,
}

impl BoundIdentities {
    pub fn get(&self, kind: AuthServiceKind) -> Option<&BoundIdentity> {
        match kind {
            AuthServiceKind::Xsuaa => self.xsuaa.as_ref(),
            AuthServiceKind::Ias => self.ias.as_ref(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.xsuaa.is_none() && self.ias.is_none()
    }
}

/// Why a binding's certificate could not be used; says which binding and credential.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdentityProblem {
    pub origin: String,
    pub path: String,
    pub reason: String,
}

pub fn kind_name(kind: AuthServiceKind) -> &'static str {
    match kind {
        AuthServiceKind::Xsuaa => "XSUAA",
        AuthServiceKind::Ias => "IAS",
    }
}

fn key_variable(kind: AuthServiceKind) -> &'static str {
    match kind {
        AuthServiceKind::Xsuaa => "XSUAA_PRIVATE_KEY",
        AuthServiceKind::Ias => "IAS_PRIVATE_KEY",
    }
}

/// `FULL_CERTIFICATE_CHAIN=true` sends every bound certificate.
pub fn chain_mode(env: &Environment) -> ChainMode {
    match env.non_empty("FULL_CERTIFICATE_CHAIN") {
        Some(v) if v.eq_ignore_ascii_case("true") => ChainMode::Full,
        _ => ChainMode::LeafAndIntermediates,
    }
}

/// The identity of one authentication-service binding: `certificate` from the binding, `key`
/// from `XSUAA_PRIVATE_KEY` / `IAS_PRIVATE_KEY` when set, else from the binding. `Ok(None)` when
/// the binding authenticates with a secret instead.
pub fn identity_of(
    kind: AuthServiceKind,
    binding: &ServiceBinding,
    env: &Environment,
) -> Result<Option<BoundIdentity>, IdentityProblem> {
    let what = kind_name(kind);
    let problem = |key: &str, reason: String| IdentityProblem {
        origin: binding.origin.clone(),
        path: format!("{}.credentials.{key}", binding.path),
        reason: format!("{what} binding `{}`: {reason}", binding.name),
    };
    let text = |key: &str| {
        binding
            .credentials
            .get(key)
            .and_then(Value::as_str)
            .filter(|s| !s.trim().is_empty())
    };
    let x509 = text("credential-type").is_some_and(|t| t.to_ascii_lowercase().starts_with("x509"));
    let Some(certificate) = text("certificate") else {
        if x509 {
            return Err(problem(
                "certificate",
                "credential-type is x509 but the binding has no `certificate`".into(),
            ));
        }
        return Ok(None);
    };
    let variable = key_variable(kind);
    let (key, key_name) = match env.non_empty(variable) {
        Some(key) => (key, variable),
        None => match text("key") {
            Some(key) => (key, "key"),
            None => {
                return Err(problem(
                    "key",
                    format!(
                        "the binding has a `certificate` but no `key`; bind one or set {variable}"
                    ),
                ));
            }
        },
    };
    let provider = crate::upstream::tls::provider();
    match ClientIdentity::from_pem(certificate, key, chain_mode(env), &provider) {
        Ok(identity) => Ok(Some(BoundIdentity {
            kind,
            binding: binding.name.clone(),
            identity,
        })),
        Err(err) => {
            // A key problem points at the binding's `key`, unless the key came from a variable.
            let key_problem = matches!(
                err,
                IdentityError::NoKey
                    | IdentityError::UnsupportedKey(_)
                    | IdentityError::KeyMismatch { .. }
            );
            let at = if key_problem && key_name == "key" {
                "key"
            } else {
                "certificate"
            };
            let source = if key_name == "key" {
                String::new()
            } else {
                format!(" (key from {key_name})")
            };
            Err(problem(at, format!("{err}{source}")))
        }
    }
}
