//! The `destinations` environment variable: a JSON array of named upstream services.
//!
//! Parsed with serde directly (the variable is unprefixed JSON, which the `config` crate cannot
//! express). Booleans and numbers may also be given as strings, as approuter accepts them;
//! unknown properties, duplicate names and bad URLs are errors.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;
use serde::de::{self, Deserializer};
use serde_json::Value;
use url::Url;

use super::destination_auth::{AuthFields, DestinationAuth};
use super::problem::{Problems, child, deserialize_at, index, syntax_reason};

pub const DEFAULT_TIMEOUT: Duration = Duration::from_millis(30_000);

/// Whether a destination is reached directly or through the Connectivity service.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProxyType {
    Internet,
    OnPremise,
}

/// One destination, validated.
#[derive(Debug, Clone)]
pub struct Destination {
    pub name: String,
    /// Index in the `destinations` array, for error paths.
    pub position: usize,
    /// Base URL; the route's path is appended to it.
    pub url: Url,
    /// Forward proxy (`proxyHost` + `proxyPort`), as `http://host:port` unless a scheme is given.
    pub proxy: Option<Url>,
    pub forward_auth_token: bool,
    pub forward_auth_certificates: bool,
    pub strict_ssl: bool,
    /// Idle timeout of the upstream exchange (`timeout`, ms; default 30000).
    pub timeout: Duration,
    pub set_x_forwarded_headers: bool,
    pub proxy_type: ProxyType,
    pub ias_dependency_name: Option<String>,
    pub preserve_host_header: bool,
    /// How requests to it are authenticated (`authentication` and its properties).
    pub auth: DestinationAuth,
    /// The name as metrics label (shared, so recording does not allocate).
    pub metric_name: std::sync::Arc<str>,
}

impl Destination {
    /// Whether requests to it may carry an `Authorization` the router provides (a token, Basic
    /// credentials, the user's forwarded token); `false` means they never do.
    pub fn needs_authorization(&self) -> bool {
        !matches!(self.auth, DestinationAuth::None)
            || self.forward_auth_token
            || self.ias_dependency_name.is_some()
    }
}

/// A boolean given as JSON boolean or as the strings `"true"` / `"false"` (any case).
fn flex_bool<'de, D: Deserializer<'de>>(d: D) -> Result<Option<bool>, D::Error> {
    match Option::<Value>::deserialize(d)? {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(b)),
        Some(Value::String(s)) if s.eq_ignore_ascii_case("true") => Ok(Some(true)),
        Some(Value::String(s)) if s.eq_ignore_ascii_case("false") => Ok(Some(false)),
        Some(other) => Err(de::Error::custom(format!(
            "expected a boolean (or \"true\"/\"false\"), found {other}"
        ))),
    }
}

/// A positive integer given as JSON number or as a string of digits.
fn flex_u64<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    match Option::<Value>::deserialize(d)? {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => n.as_u64().map(Some).ok_or_else(|| {
            de::Error::custom(format!("expected a non-negative integer, found {n}"))
        }),
        Some(Value::String(s)) => s.trim().parse().map(Some).map_err(|_| {
            de::Error::custom(format!("expected a non-negative integer, found \"{s}\""))
        }),
        Some(other) => Err(de::Error::custom(format!(
            "expected a non-negative integer, found {other}"
        ))),
    }
}

fn flex_string<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    match Option::<Value>::deserialize(d)? {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(Value::Number(n)) => Ok(Some(n.to_string())),
        Some(other) => Err(de::Error::custom(format!(
            "expected a string, found {other}"
        ))),
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct DestinationDef {
    name: String,
    url: String,
    proxy_host: Option<String>,
    #[serde(default, deserialize_with = "flex_string")]
    proxy_port: Option<String>,
    #[serde(default, deserialize_with = "flex_bool")]
    forward_auth_token: Option<bool>,
    #[serde(default, deserialize_with = "flex_bool")]
    forward_auth_certificates: Option<bool>,
    #[serde(default, rename = "strictSSL", deserialize_with = "flex_bool")]
    strict_ssl: Option<bool>,
    #[serde(default, deserialize_with = "flex_u64")]
    timeout: Option<u64>,
    #[serde(default, deserialize_with = "flex_bool")]
    set_x_forwarded_headers: Option<bool>,
    proxy_type: Option<String>,
    #[serde(rename = "IASDependencyName")]
    ias_dependency_name: Option<String>,
    #[serde(default, deserialize_with = "flex_bool")]
    preserve_host_header: Option<bool>,
    authentication: Option<String>,
    user: Option<String>,
    password: Option<String>,
    #[serde(rename = "tokenServiceURL")]
    token_service_url: Option<String>,
    client_id: Option<String>,
    client_secret: Option<String>,
    token_service_user: Option<String>,
    token_service_password: Option<String>,
    scope: Option<String>,
    audience: Option<String>,
    token_service_binding: Option<String>,
}

/// Parses the `destinations` variable. `origin` names it in problems.
pub fn parse(text: &str, origin: &str, problems: &mut Problems) -> BTreeMap<String, Destination> {
    let mut out = BTreeMap::new();
    let doc: Value = match serde_json::from_str(text) {
        Ok(doc) => doc,
        Err(err) => {
            problems.push(origin, "$", syntax_reason(&err));
            return out;
        }
    };
    let Value::Array(items) = doc else {
        problems.push(origin, "$", "must be a JSON array of destinations");
        return out;
    };
    for (i, item) in items.into_iter().enumerate() {
        let path = index("$", i);
        let def: DestinationDef = match deserialize_at(item, &path) {
            Ok(def) => def,
            Err((at, reason)) => {
                problems.push(origin, at, reason);
                continue;
            }
        };
        let Some(destination) = validate(def, i, origin, &path, problems) else {
            continue;
        };
        if out.contains_key(&destination.name) {
            problems.push(
                origin,
                child(&path, "name"),
                format!("duplicate destination name `{}`", destination.name),
            );
            continue;
        }
        out.insert(destination.name.clone(), destination);
    }
    out
}

fn validate(
    def: DestinationDef,
    position: usize,
    origin: &str,
    path: &str,
    problems: &mut Problems,
) -> Option<Destination> {
    let before = problems.len();
    if def.name.trim().is_empty() {
        problems.push(origin, child(path, "name"), "must not be empty");
    }
    let url = match Url::parse(&def.url) {
        Ok(url)
            if matches!(url.scheme(), "http" | "https" | "ws" | "wss") && url.host().is_some() =>
        {
            if !url.username().is_empty() || url.password().is_some() {
                problems.push(
                    origin,
                    child(path, "url"),
                    "must not carry user information",
                );
            }
            Some(url)
        }
        Ok(_) => {
            problems.push(
                origin,
                child(path, "url"),
                "must be an absolute http, https, ws or wss URL with a host",
            );
            None
        }
        Err(err) => {
            problems.push(
                origin,
                child(path, "url"),
                format!("not a valid URL: {err}"),
            );
            None
        }
    };
    let proxy = match (&def.proxy_host, &def.proxy_port) {
        (None, None) => None,
        (Some(host), Some(port)) => {
            let text = if host.contains("://") {
                format!("{host}:{port}")
            } else {
                format!("http://{host}:{port}")
            };
            match Url::parse(&text) {
                Ok(url) if url.host().is_some() => Some(url),
                _ => {
                    problems.push(
                        origin,
                        child(path, "proxyHost"),
                        format!("`{host}:{port}` is not a valid proxy address"),
                    );
                    None
                }
            }
        }
        (Some(_), None) => {
            problems.push(
                origin,
                child(path, "proxyPort"),
                "required when `proxyHost` is set",
            );
            None
        }
        (None, Some(_)) => {
            problems.push(
                origin,
                child(path, "proxyHost"),
                "required when `proxyPort` is set",
            );
            None
        }
    };
    let proxy_type = match def.proxy_type.as_deref() {
        None => ProxyType::Internet,
        Some(t) if t.eq_ignore_ascii_case("internet") => ProxyType::Internet,
        Some(t) if t.eq_ignore_ascii_case("onpremise") => {
            problems.push(
                origin,
                child(path, "proxyType"),
                "`OnPremise` destinations need the Connectivity service, which xsrouter does not support yet",
            );
            ProxyType::OnPremise
        }
        Some(other) => {
            problems.push(
                origin,
                child(path, "proxyType"),
                format!("`{other}` is not `Internet` or `OnPremise`"),
            );
            ProxyType::Internet
        }
    };
    if def.timeout == Some(0) {
        problems.push(
            origin,
            child(path, "timeout"),
            "must be at least 1 (milliseconds)",
        );
    }
    if problems.len() != before {
        return None;
    }
    let auth = AuthFields {
        authentication: def.authentication,
        user: def.user,
        password: def.password,
        token_service_url: def.token_service_url,
        client_id: def.client_id,
        client_secret: def.client_secret,
        token_service_user: def.token_service_user,
        token_service_password: def.token_service_password,
        scope: def.scope,
        audience: def.audience,
        token_service_binding: def.token_service_binding,
    }
    .validate(origin, path, problems);
    if problems.len() != before {
        return None;
    }
    Some(Destination {
        position,
        url: url?,
        proxy,
        forward_auth_token: def.forward_auth_token.unwrap_or(false),
        forward_auth_certificates: def.forward_auth_certificates.unwrap_or(false),
        strict_ssl: def.strict_ssl.unwrap_or(true),
        timeout: def.timeout.map_or(DEFAULT_TIMEOUT, Duration::from_millis),
        set_x_forwarded_headers: def.set_x_forwarded_headers.unwrap_or(true),
        proxy_type,
        ias_dependency_name: def.ias_dependency_name,
        preserve_host_header: def.preserve_host_header.unwrap_or(false),
        auth,
        metric_name: def.name.as_str().into(),
        name: def.name,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_ok(text: &str) -> BTreeMap<String, Destination> {
        let mut problems = Problems::default();
        let out = parse(text, "env destinations", &mut problems);
        assert!(problems.is_empty(), "{:?}", problems.into_error());
        out
    }

    fn problems_of(text: &str) -> Vec<String> {
        let mut problems = Problems::default();
        parse(text, "env destinations", &mut problems);
        problems
            .into_error()
            .problems
            .iter()
            .map(|p| format!("{}: {}", p.path, p.reason))
            .collect()
    }

    #[test]
    fn defaults_and_string_forms() {
        let d = parse_ok(
            r#"[{"name": "a", "url": "http://127.0.0.1:1/base"},
                {"name": "b", "url": "https://b.example", "forwardAuthToken": "true", "strictSSL": "FALSE",
                 "timeout": "1500", "proxyHost": "proxy.local", "proxyPort": 3128}]"#,
        );
        let a = &d["a"];
        assert_eq!(a.timeout, DEFAULT_TIMEOUT);
        assert!(
            a.strict_ssl
                && a.set_x_forwarded_headers
                && !a.forward_auth_token
                && !a.preserve_host_header
        );
        let b = &d["b"];
        assert!(b.forward_auth_token && !b.strict_ssl);
        assert_eq!(b.timeout, Duration::from_millis(1500));
        assert_eq!(
            b.proxy.as_ref().map(Url::as_str),
            Some("http://proxy.local:3128/")
        );
    }

    #[test]
    fn rejects_bad_entries_with_paths() {
        let found = problems_of(
            r#"[{"name": "a", "url": "http://x"}, {"name": "a", "url": "http://y"},
                {"name": "c", "url": "not a url"}, {"name": "d", "url": "http://d", "colour": 1},
                {"name": "e", "url": "http://e", "timeout": "abc"}, {"name": "f", "url": "ftp://f"},
                {"name": "g", "url": "http://g", "proxyType": "OnPremise"}, {"name": "h", "url": "http://h", "proxyHost": "p"}]"#,
        );
        for want in [
            "$[1].name: duplicate destination name `a`",
            "$[2].url: not a valid URL",
            "$[3].colour: unknown field `colour`",
            "$[4].timeout: expected a non-negative integer",
            "$[5].url: must be an absolute http",
            "$[6].proxyType: `OnPremise` destinations need the Connectivity service",
            "$[7].proxyPort: required when `proxyHost` is set",
        ] {
            assert!(
                found.iter().any(|f| f.starts_with(want)),
                "missing {want:?} in {found:#?}"
            );
        }
        assert_eq!(found.len(), 7, "{found:#?}");
    }

    #[test]
    fn not_an_array() {
        assert_eq!(
            problems_of(r#"{"name": "a"}"#),
            vec!["$: must be a JSON array of destinations"]
        );
    }
}
