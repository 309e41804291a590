//! Service bindings: `VCAP_SERVICES` (Cloud Foundry) parsed into [`ServiceBinding`]s, and the
//! rules that pick the XSUAA and IAS instances the router authenticates with.

use serde_json::{Map, Value};

use super::environment::Environment;
use super::problem::{Problems, child, index, syntax_reason};

/// One bound service instance.
#[derive(Debug, Clone)]
pub struct ServiceBinding {
    /// Where it was found (`env VCAP_SERVICES`, a binding directory, ...).
    pub origin: String,
    /// JSON path of the instance inside its origin.
    pub path: String,
    pub name: String,
    pub label: String,
    pub tags: Vec<String>,
    pub credentials: Map<String, Value>,
}

impl ServiceBinding {
    fn has_tag(&self, tag: &str) -> bool {
        self.tags.iter().any(|t| t == tag)
    }

    /// A user-provided service declares its kind inside its credentials.
    fn user_provided_declares(&self, key: &str, value: &str) -> bool {
        if self.label != "user-provided" {
            return false;
        }
        match self.credentials.get(key) {
            Some(Value::String(s)) => s == value,
            Some(Value::Array(items)) => items.iter().any(|v| v.as_str() == Some(value)),
            _ => false,
        }
    }
}

/// Which kind of authentication service a binding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthServiceKind {
    Xsuaa,
    Ias,
}

/// All bindings the router can see.
#[derive(Debug, Clone, Default)]
pub struct Bindings {
    pub services: Vec<ServiceBinding>,
}

impl Bindings {
    /// Reads `VCAP_SERVICES` from the environment snapshot.
    pub fn from_env(env: &Environment, problems: &mut Problems) -> Self {
        let mut bindings = Bindings::default();
        if let Some(text) = env.non_empty("VCAP_SERVICES") {
            bindings.add_vcap_services(text, "env VCAP_SERVICES", problems);
        }
        bindings
    }

    /// Adds the instances of a `VCAP_SERVICES` document (`{label: [instance, ...]}`).
    pub fn add_vcap_services(&mut self, text: &str, origin: &str, problems: &mut Problems) {
        let doc: Value = match serde_json::from_str(text) {
            Ok(doc) => doc,
            Err(err) => {
                problems.push(origin, "$", syntax_reason(&err));
                return;
            }
        };
        let Value::Object(labels) = doc else {
            problems.push(
                origin,
                "$",
                "must be a JSON object of service labels to instance arrays",
            );
            return;
        };
        for (label, instances) in labels {
            let label_path = child("$", &label);
            let Value::Array(instances) = instances else {
                problems.push(origin, label_path, "must be an array of service instances");
                continue;
            };
            for (i, instance) in instances.into_iter().enumerate() {
                let path = index(&label_path, i);
                let Value::Object(mut instance) = instance else {
                    problems.push(origin, path, "a service instance must be a JSON object");
                    continue;
                };
                let credentials = match instance.remove("credentials") {
                    Some(Value::Object(c)) => c,
                    None => Map::new(),
                    Some(_) => {
                        problems.push(origin, child(&path, "credentials"), "must be a JSON object");
                        continue;
                    }
                };
                let text = |key: &str| instance.get(key).and_then(Value::as_str).map(str::to_owned);
                let tags = match instance.get("tags") {
                    Some(Value::Array(tags)) => tags
                        .iter()
                        .filter_map(Value::as_str)
                        .map(str::to_owned)
                        .collect(),
                    _ => Vec::new(),
                };
                self.services.push(ServiceBinding {
                    origin: origin.to_owned(),
                    path: path.clone(),
                    name: text("name")
                        .or_else(|| text("instance_name"))
                        .unwrap_or_else(|| label.clone()),
                    label: text("label").unwrap_or_else(|| label.clone()),
                    tags,
                    credentials,
                });
            }
        }
    }

    /// The bound authentication service of `kind`, by approuter's rules: the instance named by
    /// `UAA_SERVICE_NAME` / `IAS_SERVICE_NAME`, else the one tagged `xsuaa` / labelled
    /// `identity` (user-provided services declare it in their credentials). More than one
    /// candidate is an error.
    pub fn auth_service(
        &self,
        kind: AuthServiceKind,
        env: &Environment,
        problems: &mut Problems,
    ) -> Option<&ServiceBinding> {
        let (name_var, what) = match kind {
            AuthServiceKind::Xsuaa => ("UAA_SERVICE_NAME", "XSUAA"),
            AuthServiceKind::Ias => ("IAS_SERVICE_NAME", "IAS"),
        };
        let candidates: Vec<&ServiceBinding> = match env.non_empty(name_var) {
            Some(name) => self.services.iter().filter(|s| s.name == name).collect(),
            None => self
                .services
                .iter()
                .filter(|s| match kind {
                    AuthServiceKind::Xsuaa => {
                        s.has_tag("xsuaa") || s.user_provided_declares("tags", "xsuaa")
                    }
                    AuthServiceKind::Ias => {
                        s.label.contains("identity")
                            || s.user_provided_declares("label", "identity")
                    }
                })
                .collect(),
        };
        match candidates.as_slice() {
            [] => None,
            [one] => Some(one),
            [first, ..] => {
                let names: Vec<&str> = candidates.iter().map(|s| s.name.as_str()).collect();
                problems.push(
                    &first.origin,
                    "$",
                    format!(
                        "{} {what} service instances are bound ({}); set {name_var} to pick one",
                        candidates.len(),
                        names.join(", ")
                    ),
                );
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bindings(vcap: &str) -> Bindings {
        let mut problems = Problems::default();
        let mut b = Bindings::default();
        b.add_vcap_services(vcap, "env VCAP_SERVICES", &mut problems);
        assert!(problems.is_empty(), "{:?}", problems.into_error());
        b
    }

    #[test]
    fn finds_xsuaa_by_tag_name_or_user_provided() {
        let b = bindings(
            r#"{"xsuaa": [{"name": "uaa1", "label": "xsuaa", "tags": ["xsuaa"], "credentials": {"clientid": "c"}}],
                "user-provided": [{"name": "ups", "label": "user-provided", "tags": [], "credentials": {"tags": ["xsuaa"]}}],
                "identity": [{"name": "ias1", "label": "identity", "credentials": {}}]}"#,
        );
        let env = Environment::from_pairs([("UAA_SERVICE_NAME", "ups")]);
        let mut problems = Problems::default();
        assert_eq!(
            b.auth_service(AuthServiceKind::Xsuaa, &env, &mut problems)
                .map(|s| s.name.as_str()),
            Some("ups")
        );
        assert_eq!(
            b.auth_service(AuthServiceKind::Ias, &env, &mut problems)
                .map(|s| s.name.as_str()),
            Some("ias1")
        );
        assert!(problems.is_empty());
        // Without the name, two instances claim to be XSUAA: ambiguous.
        let env = Environment::default();
        assert!(
            b.auth_service(AuthServiceKind::Xsuaa, &env, &mut problems)
                .is_none()
        );
        assert_eq!(problems.len(), 1);
    }
}
