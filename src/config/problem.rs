//! Configuration problems: where a bad value is (file or variable, JSON path) and why it is bad.
//!
//! Loading collects every problem it finds instead of stopping at the first, so that
//! `xsrouter check` and a failed start-up can list them all at once.

use std::fmt;

/// One problem in the configuration, located by its origin and JSON path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigProblem {
    /// The file (`/app/xs-app.json`) or environment variable (`env destinations`) holding the value.
    pub origin: String,
    /// JSON path inside the origin, `$` for the whole document (`$.routes[2].source`).
    pub path: String,
    /// What is wrong, in one line. Never contains secret values.
    pub reason: String,
}

impl fmt::Display for ConfigProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}: {}", self.origin, self.path, self.reason)
    }
}

/// All problems found while loading a configuration.
#[derive(Debug, thiserror::Error)]
pub struct ConfigError {
    pub problems: Vec<ConfigProblem>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.problems.len();
        write!(
            f,
            "{n} configuration problem{}:",
            if n == 1 { "" } else { "s" }
        )?;
        for problem in &self.problems {
            write!(f, "\n  {problem}")?;
        }
        Ok(())
    }
}

/// Collects problems for one origin while a document is checked.
#[derive(Debug, Default)]
pub struct Problems {
    list: Vec<ConfigProblem>,
}

impl Problems {
    pub fn push(&mut self, origin: &str, path: impl Into<String>, reason: impl Into<String>) {
        self.list.push(ConfigProblem {
            origin: origin.to_owned(),
            path: path.into(),
            reason: reason.into(),
        });
    }

    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    pub fn len(&self) -> usize {
        self.list.len()
    }

    pub fn into_result<T>(self, value: T) -> Result<T, ConfigError> {
        if self.list.is_empty() {
            Ok(value)
        } else {
            Err(ConfigError {
                problems: self.list,
            })
        }
    }

    pub fn into_error(self) -> ConfigError {
        ConfigError {
            problems: self.list,
        }
    }
}

/// Builds a JSON path from a parent path and a child key or index.
pub fn child(parent: &str, key: &str) -> String {
    format!("{parent}.{key}")
}

pub fn index(parent: &str, i: usize) -> String {
    format!("{parent}[{i}]")
}

/// Deserializes `value` as `T`, reporting a type error at its exact JSON path under `base`.
pub fn deserialize_at<T: serde::de::DeserializeOwned>(
    value: serde_json::Value,
    base: &str,
) -> Result<T, (String, String)> {
    serde_path_to_error::deserialize::<_, T>(value).map_err(|err| {
        let inner = err.path().to_string();
        let path = if inner == "." || inner.is_empty() {
            base.to_owned()
        } else if inner.starts_with('[') {
            format!("{base}{inner}")
        } else {
            format!("{base}.{inner}")
        };
        (path, err.into_inner().to_string())
    })
}

/// A one-line description of a JSON syntax error (line and column included).
pub fn syntax_reason(err: &serde_json::Error) -> String {
    format!("invalid JSON: {err}")
}
