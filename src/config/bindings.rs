//! Service bindings: where bound services are found and the rules that pick the XSUAA and IAS
//! instances the router authenticates with.
//!
//! Sources, in approuter's (xsenv's) order — the first that has a match wins:
//! 1. `VCAP_SERVICES` (Cloud Foundry), or the file named by `VCAP_SERVICES_FILE_PATH`;
//! 2. service-binding directories under `SERVICE_BINDING_ROOT` (servicebinding.io, as Kyma and
//!    the SAP BTP service operator mount them: one folder per binding, a file per property,
//!    optionally described by `.metadata`);
//! 3. `default-services.json` in the working directory (`{"uaa": {credentials}, "ias": {...}}`).
//!
//! These sources are read again when credentials rotate, so loading is a plain function of the
//! environment snapshot and the file system.

use std::path::Path;

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
    /// A string credential, without trailing slashes (URLs are joined with paths later).
    pub fn url_credential(&self, key: &str) -> Option<String> {
        self.credentials
            .get(key)
            .and_then(Value::as_str)
            .map(|s| s.trim_end_matches('/').to_owned())
    }

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
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum AuthServiceKind {
    Xsuaa,
    Ias,
}

pub const DEFAULT_SERVICES_FILE: &str = "default-services.json";

/// All bindings the router can see, by source.
#[derive(Debug, Clone, Default)]
pub struct Bindings {
    /// From `VCAP_SERVICES` or `VCAP_SERVICES_FILE_PATH`.
    pub services: Vec<ServiceBinding>,
    /// From `SERVICE_BINDING_ROOT`.
    pub directories: Vec<ServiceBinding>,
    /// From `default-services.json`, by query key (`uaa`, `ias`).
    pub defaults: Vec<ServiceBinding>,
}

impl Bindings {
    /// Reads every source.
    pub fn load(env: &Environment, workdir: &Path, problems: &mut Problems) -> Self {
        let mut bindings = Bindings::default();
        if let Some(text) = env.non_empty("VCAP_SERVICES") {
            bindings.add_vcap_services(text, &env.origin("VCAP_SERVICES"), problems);
        } else if let Some(file) = env.non_empty("VCAP_SERVICES_FILE_PATH") {
            match std::fs::read_to_string(file) {
                Ok(text) => bindings.add_vcap_services(&text, file, problems),
                Err(err) => problems.push(
                    file,
                    "$",
                    format!("cannot read the file named by VCAP_SERVICES_FILE_PATH: {err}"),
                ),
            }
        }
        if let Some(root) = env.non_empty("SERVICE_BINDING_ROOT") {
            bindings.add_binding_root(Path::new(root), problems);
        }
        bindings.add_default_services(&workdir.join(DEFAULT_SERVICES_FILE), problems);
        bindings
    }

    /// Reads servicebinding.io directories: each sub-directory with a `type` is a binding.
    fn add_binding_root(&mut self, root: &Path, problems: &mut Problems) {
        let origin = root.display().to_string();
        let Ok(entries) = std::fs::read_dir(root) else {
            problems.push(
                &origin,
                "$",
                "SERVICE_BINDING_ROOT is not a readable directory",
            );
            return;
        };
        let mut dirs: Vec<_> = entries
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.is_dir())
            .collect();
        dirs.sort();
        for dir in dirs {
            let name = dir
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            if name.starts_with('.') {
                continue; // Kubernetes' ..data and timestamped folders
            }
            if let Some(binding) = read_binding_dir(&dir, &name) {
                self.directories.push(binding);
            }
        }
    }

    fn add_default_services(&mut self, file: &Path, problems: &mut Problems) {
        let origin = file.display().to_string();
        let text = match std::fs::read_to_string(file) {
            Ok(text) => text,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => return,
            Err(err) => {
                problems.push(&origin, "$", format!("cannot read: {err}"));
                return;
            }
        };
        let doc: Value = match serde_json::from_str(&text) {
            Ok(doc) => doc,
            Err(err) => {
                problems.push(&origin, "$", syntax_reason(&err));
                return;
            }
        };
        let Value::Object(entries) = doc else {
            problems.push(
                &origin,
                "$",
                "must be a JSON object of service keys (`uaa`, `ias`) to credentials",
            );
            return;
        };
        for (key, credentials) in entries {
            let Value::Object(credentials) = credentials else {
                problems.push(
                    &origin,
                    child("$", &key),
                    "must be a JSON object of credentials",
                );
                continue;
            };
            let (label, tags) = match key.as_str() {
                "uaa" | "xsuaa" => ("xsuaa", vec!["xsuaa".to_owned()]),
                "ias" | "identity" => ("identity", Vec::new()),
                _ => (key.as_str(), Vec::new()),
            };
            self.defaults.push(ServiceBinding {
                origin: origin.clone(),
                path: child("$", &key),
                name: key.clone(),
                label: label.to_owned(),
                tags,
                credentials,
            });
        }
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
        let wanted_name = env.non_empty(name_var);
        let matches = |s: &&ServiceBinding| match wanted_name {
            Some(name) => s.name == name,
            None => match kind {
                AuthServiceKind::Xsuaa => {
                    s.has_tag("xsuaa")
                        || s.label == "xsuaa"
                        || s.user_provided_declares("tags", "xsuaa")
                }
                AuthServiceKind::Ias => {
                    s.label.contains("identity") || s.user_provided_declares("label", "identity")
                }
            },
        };
        let default_keys = match kind {
            AuthServiceKind::Xsuaa => ["uaa", "xsuaa"],
            AuthServiceKind::Ias => ["ias", "identity"],
        };
        let mut candidates: Vec<&ServiceBinding> = self.services.iter().filter(matches).collect();
        if candidates.is_empty() {
            candidates = self.directories.iter().filter(matches).collect();
        }
        if candidates.is_empty() {
            candidates = self
                .defaults
                .iter()
                .filter(|s| default_keys.contains(&s.name.as_str()))
                .take(1)
                .collect();
        }
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

/// One servicebinding.io directory. With `.metadata`, it says which files are metadata and
/// which are credentials (and which hold JSON); without, `type` and `provider` are metadata and
/// every other file is a credential. A directory without `type` is not a binding.
fn read_binding_dir(dir: &Path, name: &str) -> Option<ServiceBinding> {
    let mut files = Map::new();
    for entry in std::fs::read_dir(dir).ok()?.filter_map(Result::ok) {
        let path = entry.path();
        // `is_file` follows symlinks, as Kubernetes mounts them.
        if !path.is_file() {
            continue;
        }
        let file_name = entry.file_name().to_string_lossy().into_owned();
        if let Ok(text) = std::fs::read_to_string(&path) {
            files.insert(file_name, Value::String(text));
        }
    }
    let metadata = files
        .get(".metadata")
        .and_then(Value::as_str)
        .and_then(|t| serde_json::from_str::<Value>(t).ok());
    let (meta, credentials) = match metadata {
        Some(metadata) => (
            described_properties(&files, &metadata["metaDataProperties"]),
            described_properties(&files, &metadata["credentialProperties"]),
        ),
        None => {
            let mut meta = Map::new();
            let mut credentials = Map::new();
            for (key, value) in files {
                if key == "type" || key == "provider" {
                    meta.insert(key, value);
                } else if !key.starts_with('.') {
                    credentials.insert(key, value);
                }
            }
            (meta, credentials)
        }
    };
    let text = |key: &str| {
        meta.get(key)
            .and_then(Value::as_str)
            .map(|s| s.trim().to_owned())
    };
    let kind = text("type")?;
    let tags = match meta.get("tags") {
        Some(Value::Array(tags)) => tags
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_owned)
            .collect(),
        _ => Vec::new(),
    };
    Some(ServiceBinding {
        origin: dir.display().to_string(),
        path: "$".to_owned(),
        name: text("instance_name").unwrap_or_else(|| name.to_owned()),
        label: text("label").unwrap_or(kind),
        tags,
        credentials,
    })
}

/// Properties listed in a `.metadata` section: `{name, format: text|json, container?}`.
fn described_properties(files: &Map<String, Value>, list: &Value) -> Map<String, Value> {
    let mut out = Map::new();
    for property in list.as_array().into_iter().flatten() {
        let Some(name) = property["name"].as_str() else {
            continue;
        };
        let Some(text) = files.get(name).and_then(Value::as_str) else {
            continue;
        };
        if property["format"] == "json" {
            match serde_json::from_str::<Value>(text) {
                Ok(Value::Object(inner)) if property["container"] == true => out.extend(inner),
                Ok(value) => {
                    out.insert(name.to_owned(), value);
                }
                Err(_) => {}
            }
        } else {
            out.insert(name.to_owned(), Value::String(text.to_owned()));
        }
    }
    out
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

    #[test]
    fn binding_directories_with_and_without_metadata() {
        let root = tempfile::tempdir().expect("tmp");
        let plain = root.path().join("my-xsuaa");
        std::fs::create_dir(&plain).expect("dir");
        std::fs::write(plain.join("type"), "xsuaa").expect("write");
        std::fs::write(plain.join("clientid"), "sb-app").expect("write");
        let described = root.path().join("ias-binding");
        std::fs::create_dir(&described).expect("dir");
        std::fs::write(described.join("label"), "identity").expect("write");
        std::fs::write(described.join("type"), "identity").expect("write");
        std::fs::write(described.join("clientid"), "ias-client").expect("write");
        std::fs::write(described.join("domains"), r#"["accounts.example"]"#).expect("write");
        std::fs::write(
            described.join(".metadata"),
            r#"{"metaDataProperties": [{"name": "label", "format": "text"}, {"name": "type", "format": "text"}],
                "credentialProperties": [{"name": "clientid", "format": "text"}, {"name": "domains", "format": "json"}]}"#,
        )
        .expect("write");
        let not_a_binding = root.path().join("other");
        std::fs::create_dir(&not_a_binding).expect("dir");
        std::fs::write(not_a_binding.join("x"), "y").expect("write");

        let env =
            Environment::from_pairs([("SERVICE_BINDING_ROOT", root.path().display().to_string())]);
        let mut problems = Problems::default();
        let b = Bindings::load(&env, root.path(), &mut problems);
        assert!(problems.is_empty());
        assert_eq!(b.directories.len(), 2);
        let xsuaa = b
            .auth_service(AuthServiceKind::Xsuaa, &env, &mut problems)
            .expect("xsuaa");
        assert_eq!(xsuaa.credentials["clientid"], "sb-app");
        let ias = b
            .auth_service(AuthServiceKind::Ias, &env, &mut problems)
            .expect("ias");
        assert_eq!(ias.credentials["domains"][0], "accounts.example");
    }

    #[test]
    fn default_services_file_is_the_last_resort() {
        let dir = tempfile::tempdir().expect("tmp");
        std::fs::write(
            dir.path().join(DEFAULT_SERVICES_FILE),
            r#"{"uaa": {"clientid": "local"}}"#,
        )
        .expect("write");
        let mut problems = Problems::default();
        let env = Environment::default();
        let b = Bindings::load(&env, dir.path(), &mut problems);
        let found = b
            .auth_service(AuthServiceKind::Xsuaa, &env, &mut problems)
            .map(|s| s.credentials["clientid"].clone());
        assert_eq!(found, Some("local".into()));
        // VCAP_SERVICES wins when it has a match.
        let env = Environment::from_pairs([(
            "VCAP_SERVICES",
            r#"{"xsuaa": [{"name": "u", "tags": ["xsuaa"], "credentials": {"clientid": "cf"}}]}"#,
        )]);
        let b = Bindings::load(&env, dir.path(), &mut problems);
        let found = b
            .auth_service(AuthServiceKind::Xsuaa, &env, &mut problems)
            .map(|s| s.credentials["clientid"].clone());
        assert_eq!(found, Some("cf".into()));
        assert!(problems.is_empty());
    }
}
