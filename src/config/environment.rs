//! The environment the router was started with, read once.
//!
//! Process variables come first; `default-env.json` in the working directory supplies values
//! that are not already set (approuter's local-development convention). Non-string values in
//! that file are stored as their JSON text, so `"VCAP_SERVICES": {...}` works as in approuter.
//! Request handling never reads the process environment: everything goes through this snapshot.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use super::problem::{Problems, syntax_reason};

/// A snapshot of environment variables.
#[derive(Debug, Clone, Default)]
pub struct Environment {
    vars: BTreeMap<String, String>,
    /// Variables whose value came from default-env.json, and that file's path.
    from_file: BTreeSet<String>,
    file: Option<String>,
}

pub const DEFAULT_ENV_FILE: &str = "default-env.json";

impl Environment {
    /// The current process environment (variables that are not valid UTF-8 are skipped).
    pub fn from_process() -> Self {
        Self {
            vars: std::env::vars_os()
                .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
                .collect(),
            ..Self::default()
        }
    }

    /// An environment made of the given pairs only (used by tests and the demo).
    pub fn from_pairs<K: Into<String>, V: Into<String>>(
        pairs: impl IntoIterator<Item = (K, V)>,
    ) -> Self {
        Self {
            vars: pairs
                .into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
            ..Self::default()
        }
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.vars.get(key).map(String::as_str)
    }

    /// A variable that is set and not blank.
    pub fn non_empty(&self, key: &str) -> Option<&str> {
        self.get(key).map(str::trim).filter(|v| !v.is_empty())
    }

    /// A `:`-separated list of file paths (blank items left out); empty when unset.
    pub fn path_list(&self, key: &str) -> Vec<PathBuf> {
        self.non_empty(key)
            .map(|list| {
                list.split(':')
                    .map(str::trim)
                    .filter(|p| !p.is_empty())
                    .map(PathBuf::from)
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Where a variable's value came from, for problems: `env NAME`, or default-env.json.
    pub fn origin(&self, key: &str) -> String {
        match &self.file {
            Some(file) if self.from_file.contains(key) => format!("{file} ({key})"),
            _ => format!("env {key}"),
        }
    }

    pub fn set(&mut self, key: impl Into<String>, value: impl Into<String>) {
        self.vars.insert(key.into(), value.into());
    }

    /// Adds the values of `default-env.json` in `workdir` that are not set already.
    pub fn merge_default_env(&mut self, workdir: &Path, problems: &mut Problems) {
        let path = workdir.join(DEFAULT_ENV_FILE);
        let origin = path.display().to_string();
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => return,
            Err(err) => {
                problems.push(&origin, "$", format!("cannot read: {err}"));
                return;
            }
        };
        let doc: serde_json::Value = match serde_json::from_str(&text) {
            Ok(doc) => doc,
            Err(err) => {
                problems.push(&origin, "$", syntax_reason(&err));
                return;
            }
        };
        let Some(object) = doc.as_object() else {
            problems.push(
                &origin,
                "$",
                "must be a JSON object of variable names to values",
            );
            return;
        };
        for (key, value) in object {
            if self.vars.contains_key(key) {
                continue;
            }
            let text = match value {
                serde_json::Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            self.vars.insert(key.clone(), text);
            self.from_file.insert(key.clone());
        }
        self.file = Some(origin);
    }
}
