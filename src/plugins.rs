//! The `plugins` environment variable: routes configured outside xs-app.json (`name`, `source`,
//! `target`, `destination`, `csrfProtection`, `authenticationType`, `scope`), placed in front of
//! xs-app.json's routes as approuter does, and xs-app.json `pluginMetadataEndpoint`, which
//! answers `GET` with the configured plugins as JSON.

use axum::body::Body;
use axum::response::Response;
use bytes::Bytes;
use http::{HeaderValue, Method, header};
use serde_json::Value;

use crate::config::environment::Environment;
use crate::config::problem::{Problems, child, index};
use crate::config::xs_app::{self, RouteDef};

/// The environment variable.
pub const PLUGINS: &str = "plugins";

/// The properties a plugin may have (approuter's plugin schema).
const ALLOWED: &[&str] = &[
    "name",
    "source",
    "target",
    "destination",
    "csrfProtection",
    "authenticationType",
    "scope",
];

/// The metadata endpoint, ready to answer.
#[derive(Debug, Clone, Default)]
pub struct PluginMetadata {
    /// xs-app.json `pluginMetadataEndpoint`.
    endpoint: Option<String>,
    /// The plugins as approuter lists them (`null` when none are configured).
    document: Bytes,
}

impl PluginMetadata {
    /// The metadata answer for a `GET` of the endpoint (or a path below it), else `None`.
    pub fn answer(&self, method: &Method, path: &str) -> Option<Response> {
        let endpoint = self.endpoint.as_deref()?;
        if *method != Method::GET {
            return None;
        }
        let below = path
            .strip_prefix(endpoint.trim_end_matches('/'))
            .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'));
        if !below {
            return None;
        }
        let mut response = Response::new(Body::from(self.document.clone()));
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json; charset=utf-8"),
        );
        Some(response)
    }
}

/// Reads `plugins`: the routes to put in front of xs-app.json's (positions from
/// `first_position` on) and the metadata endpoint's answer. Problems name the variable and the
/// plugin's index.
pub fn load(
    env: &Environment,
    endpoint: Option<&str>,
    first_position: usize,
    problems: &mut Problems,
) -> (Vec<RouteDef>, PluginMetadata) {
    let mut metadata = PluginMetadata {
        endpoint: endpoint.map(str::to_owned),
        document: Bytes::from_static(b"null"),
    };
    let Some(text) = env.non_empty(PLUGINS) else {
        return (Vec::new(), metadata);
    };
    let origin = env.origin(PLUGINS);
    let items = match serde_json::from_str::<Value>(text) {
        Ok(Value::Array(items)) => items,
        Ok(_) => {
            problems.push(&origin, "$", "must be a JSON array of plugins");
            return (Vec::new(), metadata);
        }
        Err(err) => {
            problems.push(&origin, "$", crate::config::problem::syntax_reason(&err));
            return (Vec::new(), metadata);
        }
    };
    let before = problems.len();
    let mut routes = Vec::with_capacity(items.len());
    let mut listed = Vec::with_capacity(items.len());
    for (i, item) in items.into_iter().enumerate() {
        let path = index("$", i);
        let Value::Object(mut object) = item else {
            problems.push(&origin, &path, "a plugin must be a JSON object");
            continue;
        };
        let mut valid = true;
        for key in object.keys() {
            if !ALLOWED.contains(&key.as_str()) {
                problems.push(
                    &origin,
                    child(&path, key),
                    format!("unknown property (plugins allow {})", ALLOWED.join(", ")),
                );
                valid = false;
            }
        }
        for required in ["name", "destination"] {
            match object.get(required) {
                Some(Value::String(s)) if !s.is_empty() => {}
                Some(_) => {
                    problems.push(
                        &origin,
                        child(&path, required),
                        "must be a non-empty string",
                    );
                    valid = false;
                }
                None => {
                    problems.push(
                        &origin,
                        &path,
                        format!("missing required property `{required}`"),
                    );
                    valid = false;
                }
            }
        }
        if !valid {
            continue;
        }
        listed.push(listing(&object));
        object.remove("name");
        if let Some(mut route) = xs_app::parse_route(
            Value::Object(object),
            first_position + i,
            &origin,
            &path,
            problems,
        ) {
            route.defined_in = Some((origin.clone(), path));
            routes.push(route);
        }
    }
    if problems.len() == before {
        metadata.document = serde_json::to_vec_pretty(&listed)
            .map(Bytes::from)
            .unwrap_or_else(|_| Bytes::from_static(b"null"));
    }
    (routes, metadata)
}

/// A plugin as the metadata endpoint lists it: `source` as the regular expression's source, with
/// `/` escaped as JavaScript's `RegExp.prototype.source` does.
fn listing(object: &serde_json::Map<String, Value>) -> Value {
    let mut listed = object.clone();
    let pattern = match object.get("source") {
        Some(Value::String(s)) => Some(s.as_str()),
        Some(Value::Object(o)) => o.get("path").and_then(Value::as_str),
        _ => None,
    };
    if let Some(pattern) = pattern {
        listed.insert("source".into(), Value::String(js_regex_source(pattern)));
    }
    Value::Object(listed)
}

fn js_regex_source(pattern: &str) -> String {
    let mut out = String::with_capacity(pattern.len() + 4);
    let mut escaped = false;
    let mut in_class = false;
    for c in pattern.chars() {
        match c {
            '/' if !escaped && !in_class => out.push_str("\\/"),
            _ => out.push(c),
        }
        if !escaped {
            match c {
                '[' => in_class = true,
                ']' => in_class = false,
                _ => {}
            }
        }
        escaped = !escaped && c == '\\';
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn regex_sources_are_printed_as_javascript_does() {
        assert_eq!(js_regex_source("^/plugin/(.*)$"), "^\\/plugin\\/(.*)$");
        assert_eq!(js_regex_source("^\\/a[/]b"), "^\\/a[/]b");
    }

    #[test]
    fn the_endpoint_answers_get_at_and_below_its_path() {
        let metadata = PluginMetadata {
            endpoint: Some("/metadata".into()),
            document: Bytes::from_static(b"[]"),
        };
        assert!(metadata.answer(&Method::GET, "/metadata").is_some());
        assert!(metadata.answer(&Method::GET, "/metadata/x").is_some());
        assert!(metadata.answer(&Method::GET, "/metadatax").is_none());
        assert!(metadata.answer(&Method::POST, "/metadata").is_none());
        assert!(
            PluginMetadata::default()
                .answer(&Method::GET, "/metadata")
                .is_none()
        );
    }
}
