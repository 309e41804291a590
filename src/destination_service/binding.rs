//! The bound Destination service instance (label or tag `destination`, in `VCAP_SERVICES` or a
//! binding directory): where its REST API is (`uri`) and how the router gets a
//! client_credentials token for it — `clientid` + `clientsecret`, or `certificate` + `key` over
//! mTLS to `certurl` (x509 bindings). Validated once at start-up; problems name the binding and
//! the credential, never a secret.

use serde_json::Value;
use url::Url;

use crate::config::Environment;
use crate::config::bindings::{Bindings, ServiceBinding};
use crate::config::problem::{Problems, child};
use crate::identity::{self, ClientIdentity};
use crate::secret::Secret;

/// The label (and tag) of Destination service bindings.
pub const LABEL: &str = "destination";

/// How the router authenticates at the Destination service's token endpoint.
#[derive(Debug, Clone)]
pub enum BindingCredential {
    /// `clientsecret`, sent in the token request form.
    Secret(Secret),
    /// The binding's own certificate and key, presented over mTLS.
    Certificate(ClientIdentity),
}

/// A validated Destination service binding.
#[derive(Debug, Clone)]
pub struct DestinationBinding {
    /// The instance name, for logs and errors.
    pub instance: String,
    /// The REST API base (`uri`), without trailing slash.
    pub uri: String,
    /// The token endpoint (`url` or, for x509, `certurl`, + `/oauth/token`).
    pub token_url: String,
    pub client_id: String,
    pub credential: BindingCredential,
}

fn is_destination(binding: &ServiceBinding) -> bool {
    binding.label == LABEL || binding.tags.iter().any(|t| t == LABEL)
}

impl DestinationBinding {
    /// The bound Destination service, if any: `VCAP_SERVICES` first, then binding directories
    /// (as xsenv looks it up). More than one instance is a problem: xsrouter uses exactly one.
    pub fn find(bindings: &Bindings, env: &Environment, problems: &mut Problems) -> Option<Self> {
        let mut candidates: Vec<&ServiceBinding> = bindings
            .services
            .iter()
            .filter(|b| is_destination(b))
            .collect();
        if candidates.is_empty() {
            candidates = bindings
                .directories
                .iter()
                .filter(|b| is_destination(b))
                .collect();
        }
        match candidates.as_slice() {
            [] => None,
            [one] => Self::validate(one, env, problems),
            [first, ..] => {
                let names: Vec<&str> = candidates.iter().map(|b| b.name.as_str()).collect();
                problems.push(
                    &first.origin,
                    "$",
                    format!(
                        "{} Destination service instances are bound ({}); xsrouter uses exactly one",
                        names.len(),
                        names.join(", ")
                    ),
                );
                None
            }
        }
    }

    fn validate(
        binding: &ServiceBinding,
        env: &Environment,
        problems: &mut Problems,
    ) -> Option<Self> {
        let before = problems.len();
        let credentials = child(&binding.path, "credentials");
        let mut problem = |key: &str, reason: String| {
            problems.push(
                &binding.origin,
                child(&credentials, key),
                format!("Destination service binding `{}`: {reason}", binding.name),
            );
        };
        let text = |key: &str| {
            binding
                .credentials
                .get(key)
                .and_then(Value::as_str)
                .map(str::trim)
                .filter(|s| !s.is_empty())
        };
        let http_url = |key: &str, problem: &mut dyn FnMut(&str, String)| -> Option<String> {
            let Some(value) = text(key) else {
                problem(key, "missing".to_owned());
                return None;
            };
            match Url::parse(value) {
                Ok(url) if matches!(url.scheme(), "http" | "https") && url.host().is_some() => {
                    Some(value.trim_end_matches('/').to_owned())
                }
                _ => {
                    problem(key, "must be an absolute http or https URL".to_owned());
                    None
                }
            }
        };
        let uri = http_url("uri", &mut problem);
        let client_id = text("clientid").map(str::to_owned);
        if client_id.is_none() {
            problem("clientid", "missing".to_owned());
        }
        let x509 =
            text("credential-type").is_some_and(|t| t.to_ascii_lowercase().starts_with("x509"));
        let credential = match (text("certificate"), text("key"), text("clientsecret")) {
            (Some(certificate), Some(key), _) => {
                let provider = crate::upstream::tls::provider();
                match ClientIdentity::from_pem(
                    certificate,
                    key,
                    identity::chain_mode(env),
                    &provider,
                ) {
                    Ok(identity) => Some(BindingCredential::Certificate(identity)),
                    Err(err) => {
                        problem("certificate", err.to_string());
                        None
                    }
                }
            }
            (Some(_), None, _) => {
                problem(
                    "key",
                    "the binding has a `certificate` but no `key`".to_owned(),
                );
                None
            }
            (None, _, _) if x509 => {
                problem(
                    "certificate",
                    "credential-type is x509 but the binding has no `certificate`".to_owned(),
                );
                None
            }
            (None, _, Some(secret)) => Some(BindingCredential::Secret(Secret::new(secret))),
            (None, _, None) => {
                problem(
                    "clientsecret",
                    "neither a `clientsecret` nor a `certificate` and `key`".to_owned(),
                );
                None
            }
        };
        let token_base = match &credential {
            Some(BindingCredential::Certificate(_)) if text("certurl").is_some() => {
                http_url("certurl", &mut problem)
            }
            _ => http_url("url", &mut problem),
        };
        if problems.len() != before {
            return None;
        }
        Some(Self {
            instance: binding.name.clone(),
            uri: uri?,
            token_url: format!("{}/oauth/token", token_base?),
            client_id: client_id?,
            credential: credential?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn find(vcap: &str) -> (Option<DestinationBinding>, Vec<String>) {
        let mut problems = Problems::default();
        let mut bindings = Bindings::default();
        bindings.add_vcap_services(vcap, "env VCAP_SERVICES", &mut problems);
        let found = DestinationBinding::find(&bindings, &Environment::default(), &mut problems);
        let reasons = if problems.is_empty() {
            Vec::new()
        } else {
            problems
                .into_error()
                .problems
                .iter()
                .map(|p| format!("{}: {}", p.path, p.reason))
                .collect()
        };
        (found, reasons)
    }

    #[test]
    fn secret_binding_by_label() {
        let (found, problems) = find(
            r#"{"destination": [{"name": "dest", "label": "destination", "credentials": {
                "uri": "https://destination-configuration.example/", "clientid": "sb-dest!b1",
                "clientsecret": "s3cret", "url": "https://sub.authentication.example"}}]}"#,
        );
        assert!(problems.is_empty(), "{problems:?}");
        let found = found.expect("binding");
        assert_eq!(found.uri, "https://destination-configuration.example");
        assert_eq!(
            found.token_url,
            "https://sub.authentication.example/oauth/token"
        );
        assert_eq!(found.client_id, "sb-dest!b1");
        assert!(matches!(found.credential, BindingCredential::Secret(_)));
    }

    #[test]
    fn problems_name_the_credential_and_never_the_secret() {
        let (found, problems) = find(
            r#"{"user-provided": [{"name": "dest", "tags": ["destination"], "credentials": {
                "uri": "not a url", "clientsecret": "s3cret", "url": "ftp://x"}}]}"#,
        );
        assert!(found.is_none());
        for want in [
            "$.user-provided[0].credentials.uri: Destination service binding `dest`: must be an absolute http or https URL",
            "$.user-provided[0].credentials.clientid: Destination service binding `dest`: missing",
            "$.user-provided[0].credentials.url: Destination service binding `dest`: must be an absolute http or https URL",
        ] {
            assert!(
                problems.iter().any(|p| p == want),
                "missing {want:?} in {problems:#?}"
            );
        }
        assert!(problems.iter().all(|p| !p.contains("s3cret")));
    }

    #[test]
    fn binding_directory_of_type_destination() {
        let root = tempfile::tempdir().expect("tmp");
        let dir = root.path().join("my-destination");
        std::fs::create_dir(&dir).expect("dir");
        for (file, content) in [
            ("type", "destination"),
            ("uri", "https://destination.example"),
            ("clientid", "sb-dest"),
            ("clientsecret", "s3cret"),
            ("url", "https://auth.example/"),
        ] {
            std::fs::write(dir.join(file), content).expect("write");
        }
        let env =
            Environment::from_pairs([("SERVICE_BINDING_ROOT", root.path().display().to_string())]);
        let mut problems = Problems::default();
        let bindings = Bindings::load(&env, root.path(), &mut problems);
        let found = DestinationBinding::find(&bindings, &env, &mut problems).expect("binding");
        assert!(problems.is_empty());
        assert_eq!(found.instance, "my-destination");
        assert_eq!(found.token_url, "https://auth.example/oauth/token");
    }

    #[test]
    fn two_instances_are_ambiguous() {
        let (found, problems) = find(
            r#"{"destination": [{"name": "a", "credentials": {}}, {"name": "b", "credentials": {}}]}"#,
        );
        assert!(found.is_none());
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(problems[0].contains("2 Destination service instances are bound (a, b)"));
    }
}
