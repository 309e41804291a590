//! `xs-app.json`: the application descriptor, parsed into typed, validated structs.
//!
//! Every top-level property and every route is deserialized on its own, so one bad route does
//! not hide the problems of the next; unknown properties and wrong types are errors, as in
//! approuter's schema validation. Properties that later capabilities give behaviour to are
//! parsed and type-checked here already.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::Value;

use super::problem::{Problems, child, deserialize_at, index};
use crate::inbound::route_rules::{
    AttributeMatch, CertificateRequirement, ClientCertificateRule, RULE_ATTRIBUTES,
};

/// `authenticationMethod`: `route` (each route decides) or `none` (everything public).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum AuthenticationMethod {
    #[default]
    Route,
    None,
}

/// A route's `authenticationType`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AuthenticationType {
    Xsuaa,
    Ias,
    Basic,
    None,
}

impl AuthenticationType {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Xsuaa => "xsuaa",
            Self::Ias => "ias",
            Self::Basic => "basic",
            Self::None => "none",
        }
    }
}

/// Methods allowed in `httpMethods` (approuter's list).
pub const HTTP_METHODS: &[&str] = &[
    "DELETE", "GET", "HEAD", "OPTIONS", "POST", "PUT", "TRACE", "PATCH",
];

/// The route `source`: a regular expression and whether it is case-sensitive.
#[derive(Debug, Clone)]
pub struct SourceDef {
    pub pattern: String,
    pub match_case: bool,
}

/// `scope`: which scopes grant access, per HTTP method or for all.
#[derive(Debug, Clone, Default)]
pub struct ScopeRule {
    /// Scopes per upper-case method name.
    pub per_method: BTreeMap<String, Vec<String>>,
    /// Scopes for methods not listed (`default`, or the plain string/array form).
    pub default: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ReplaceDef {
    pub path_suffixes: Vec<String>,
    #[serde(default)]
    pub vars: Vec<String>,
    #[serde(default)]
    pub services: BTreeMap<String, Value>,
}

/// The properties of one route other than `source` and `scope`, which are checked by hand.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RouteFields {
    target: Option<String>,
    destination: Option<String>,
    local_dir: Option<String>,
    service: Option<String>,
    endpoint: Option<String>,
    prefer_local: Option<bool>,
    http_methods: Option<Vec<String>>,
    authentication_type: Option<AuthenticationType>,
    csrf_protection: Option<bool>,
    cache_control: Option<String>,
    identity_provider: Option<String>,
    dynamic_identity_provider: Option<bool>,
    replace: Option<ReplaceDef>,
    set_backend_session_cookies: Option<bool>,
}

/// What a route sends requests to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RouteTargetDef {
    Destination(String),
    LocalDir(String),
    Service {
        name: String,
        endpoint: Option<String>,
    },
}

/// One validated entry of `routes`.
#[derive(Debug, Clone)]
pub struct RouteDef {
    /// Position in `routes` as written (problems and logs name it).
    pub index: usize,
    pub source: SourceDef,
    pub target: Option<String>,
    pub to: RouteTargetDef,
    pub http_methods: Option<Vec<String>>,
    pub authentication_type: Option<AuthenticationType>,
    pub csrf_protection: bool,
    pub scope: Option<ScopeRule>,
    pub cache_control: Option<String>,
    pub identity_provider: Option<String>,
    pub dynamic_identity_provider: bool,
    pub prefer_local: bool,
    pub replace: Option<ReplaceDef>,
    pub set_backend_session_cookies: bool,
    /// `clientCertificate`: the route needs a (matching) verified client certificate.
    pub client_certificate: Option<ClientCertificateRule>,
    /// Where a route not written in xs-app.json comes from (origin, JSON path): the `plugins`
    /// variable. `None` for xs-app.json routes.
    pub defined_in: Option<(String, String)>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct LoginDef {
    pub callback_endpoint: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
pub enum LogoutMethod {
    #[default]
    #[serde(rename = "POST")]
    Post,
    #[serde(rename = "GET")]
    Get,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct LogoutDef {
    pub logout_endpoint: Option<String>,
    pub logout_page: Option<String>,
    pub logout_method: Option<LogoutMethod>,
    pub csrf_protection: Option<bool>,
    pub back_channel_logout_endpoint: Option<String>,
}

/// Per-destination options in xs-app.json `destinations`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct DestinationOptionsDef {
    pub logout_path: Option<String>,
    pub logout_method: Option<LogoutMethod>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ServiceOptionsDef {
    pub endpoint: Option<String>,
    pub logout_path: Option<String>,
    pub logout_method: Option<LogoutMethod>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeaderDef {
    pub name: String,
    pub value: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct CompressionDef {
    pub enabled: Option<bool>,
    pub min_size: Option<u64>,
    pub compress_response_mixed_type_content: Option<bool>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebsocketsDef {
    pub enabled: Option<bool>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EndpointDef {
    pub endpoint: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ErrorPageDef {
    /// Position in `errorPage` as written (problems name it).
    #[serde(skip)]
    pub position: usize,
    pub status: Value,
    pub file: Option<String>,
    pub path: Option<String>,
}

/// One `cors` entry (xs-app.json or the `CORS` variable); checked and compiled by
/// [`crate::cors`].
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct CorsDef {
    /// Position in `cors` as written (problems name it).
    #[serde(skip)]
    pub position: usize,
    /// A regular expression, or `{"path", "matchCase"}` like a route `source`.
    pub uri_pattern: Value,
    pub host_pattern: Option<Value>,
    pub allowed_origin: Vec<AllowedOriginDef>,
    pub allowed_methods: Option<Vec<String>>,
    pub allowed_headers: Option<Vec<String>>,
    pub expose_headers: Option<Vec<String>>,
    pub allowed_credentials: Option<bool>,
    pub max_age: Option<u64>,
}

/// One `allowedOrigin` item: a host (`*.example.com` allowed), optionally protocol and port.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AllowedOriginDef {
    pub host: String,
    pub protocol: Option<String>,
    /// A number or a numeric string.
    pub port: Option<Value>,
}

/// The whole `xs-app.json`, validated but not yet compiled.
#[derive(Debug, Clone, Default)]
pub struct XsApp {
    pub welcome_file: Option<String>,
    pub authentication_method: AuthenticationMethod,
    pub state_protection: Option<bool>,
    pub session_timeout: Option<u64>,
    pub routes: Vec<RouteDef>,
    pub login: Option<LoginDef>,
    pub logout: Option<LogoutDef>,
    pub destinations: BTreeMap<String, DestinationOptionsDef>,
    pub services: BTreeMap<String, ServiceOptionsDef>,
    pub response_headers: Vec<HeaderDef>,
    pub compression: Option<CompressionDef>,
    pub plugin_metadata_endpoint: Option<String>,
    pub whitelist_service: Option<EndpointDef>,
    pub websockets: Option<WebsocketsDef>,
    pub error_page: Vec<ErrorPageDef>,
    pub cors: Vec<CorsDef>,
}

/// Parses the text of an xs-app.json file; `origin` names it in problems.
pub fn parse(text: &str, origin: &str, problems: &mut Problems) -> XsApp {
    let mut app = XsApp::default();
    let doc: Value = match serde_json::from_str(text) {
        Ok(doc) => doc,
        Err(err) => {
            problems.push(origin, "$", super::problem::syntax_reason(&err));
            return app;
        }
    };
    let Value::Object(object) = doc else {
        problems.push(origin, "$", "must be a JSON object");
        return app;
    };

    macro_rules! field {
        ($value:expr, $path:expr) => {
            match deserialize_at($value, &$path) {
                Ok(v) => Some(v),
                Err((path, reason)) => {
                    problems.push(origin, path, reason);
                    None
                }
            }
        };
    }

    for (key, value) in object {
        let path = child("$", &key);
        match key.as_str() {
            "welcomeFile" => app.welcome_file = field!(value, path),
            "authenticationMethod" => {
                app.authentication_method = field!(value, path).unwrap_or_default()
            }
            "stateProtection" => app.state_protection = field!(value, path),
            "sessionTimeout" => {
                app.session_timeout = field!(value, path);
                if app.session_timeout == Some(0) {
                    problems.push(origin, path, "must be at least 1 (minutes)");
                }
            }
            "routes" => {
                let Value::Array(items) = value else {
                    problems.push(origin, path, "must be an array of routes");
                    continue;
                };
                for (i, item) in items.into_iter().enumerate() {
                    if let Some(route) = parse_route(item, i, origin, &index(&path, i), problems) {
                        app.routes.push(route);
                    }
                }
            }
            "login" => app.login = field!(value, path),
            "logout" => app.logout = field!(value, path),
            "destinations" => app.destinations = field!(value, path).unwrap_or_default(),
            "services" => app.services = field!(value, path).unwrap_or_default(),
            "responseHeaders" => {
                app.response_headers = field!(value, path).unwrap_or_default();
                check_response_headers(&app.response_headers, origin, &path, problems);
            }
            "compression" => app.compression = field!(value, path),
            "pluginMetadataEndpoint" => app.plugin_metadata_endpoint = field!(value, path),
            "whitelistService" => app.whitelist_service = field!(value, path),
            "websockets" => app.websockets = field!(value, path),
            "errorPage" => {
                let Value::Array(items) = value else {
                    problems.push(origin, path, "must be an array of {status, file | path}");
                    continue;
                };
                for (i, item) in items.into_iter().enumerate() {
                    if let Some(page) = field!(item, index(&path, i)) {
                        app.error_page.push(ErrorPageDef {
                            position: i,
                            ..page
                        });
                    }
                }
            }
            "cors" => {
                // Entry by entry, so one bad rule does not hide the problems of the next.
                let Value::Array(items) = value else {
                    problems.push(origin, path, "must be an array of CORS rules");
                    continue;
                };
                if items.is_empty() {
                    problems.push(origin, &path, "must list at least one CORS rule");
                }
                for (i, item) in items.into_iter().enumerate() {
                    if let Some(rule) = field!(item, index(&path, i)) {
                        app.cors.push(CorsDef {
                            position: i,
                            ..rule
                        });
                    }
                }
            }
            _ => problems.push(origin, path, "unknown property"),
        }
    }
    app
}

fn check_response_headers(
    headers: &[HeaderDef],
    origin: &str,
    path: &str,
    problems: &mut Problems,
) {
    for (i, header) in headers.iter().enumerate() {
        let at = index(path, i);
        let lower = header.name.to_ascii_lowercase();
        if matches!(lower.as_str(), "authorization" | "cookie" | "set-cookie") {
            problems.push(
                origin,
                child(&at, "name"),
                format!("`{}` may not be set as a response header", header.name),
            );
        } else if http::HeaderName::from_bytes(header.name.as_bytes()).is_err() {
            problems.push(origin, child(&at, "name"), "not a valid HTTP header name");
        }
        if http::HeaderValue::from_str(&header.value).is_err() {
            problems.push(
                origin,
                child(&at, "value"),
                "not a valid HTTP header value (control characters?)",
            );
        }
    }
}

pub(crate) fn parse_route(
    value: Value,
    position: usize,
    origin: &str,
    path: &str,
    problems: &mut Problems,
) -> Option<RouteDef> {
    let Value::Object(mut object) = value else {
        problems.push(origin, path, "a route must be a JSON object");
        return None;
    };
    let before = problems.len();
    let source = match object.remove("source") {
        None => {
            problems.push(origin, path, "missing required property `source`");
            None
        }
        Some(value) => parse_source(value, origin, &child(path, "source"), problems),
    };
    let scope = object
        .remove("scope")
        .and_then(|value| parse_scope(value, origin, &child(path, "scope"), problems));
    let client_certificate = object.remove("clientCertificate").and_then(|value| {
        parse_client_certificate(value, origin, &child(path, "clientCertificate"), problems)
    });
    let fields: RouteFields = match deserialize_at(Value::Object(object), path) {
        Ok(fields) => fields,
        Err((at, reason)) => {
            problems.push(origin, at, reason);
            return None;
        }
    };

    let to = match (fields.destination, fields.local_dir, fields.service) {
        (Some(d), None, None) => Some(RouteTargetDef::Destination(d)),
        (None, Some(l), None) => Some(RouteTargetDef::LocalDir(l)),
        (None, None, Some(s)) => Some(RouteTargetDef::Service {
            name: s,
            endpoint: fields.endpoint.clone(),
        }),
        _ => {
            problems.push(
                origin,
                path,
                "a route needs exactly one of `destination`, `localDir` and `service`",
            );
            None
        }
    };
    if fields.endpoint.is_some() && !matches!(to, Some(RouteTargetDef::Service { .. })) {
        problems.push(
            origin,
            child(path, "endpoint"),
            "`endpoint` is only allowed with `service`",
        );
    }
    if let Some(methods) = &fields.http_methods {
        if matches!(to, Some(RouteTargetDef::LocalDir(_))) {
            problems.push(
                origin,
                child(path, "httpMethods"),
                "`httpMethods` is not allowed with `localDir`",
            );
        }
        if methods.is_empty() {
            problems.push(
                origin,
                child(path, "httpMethods"),
                "must list at least one method",
            );
        }
        for (i, method) in methods.iter().enumerate() {
            if !HTTP_METHODS.contains(&method.as_str()) {
                problems.push(
                    origin,
                    index(&child(path, "httpMethods"), i),
                    format!("`{method}` is not one of {}", HTTP_METHODS.join(", ")),
                );
            }
        }
    }
    if let Some(cache_control) = &fields.cache_control
        && http::HeaderValue::from_str(cache_control).is_err()
    {
        problems.push(
            origin,
            child(path, "cacheControl"),
            "not a valid header value",
        );
    }
    if fields.replace.is_some() && !matches!(to, Some(RouteTargetDef::LocalDir(_))) {
        problems.push(
            origin,
            child(path, "replace"),
            "`replace` is only allowed with `localDir`",
        );
    }
    if problems.len() != before {
        return None;
    }
    Some(RouteDef {
        defined_in: None,
        index: position,
        source: source?,
        target: fields.target,
        to: to?,
        http_methods: fields.http_methods,
        authentication_type: fields.authentication_type,
        csrf_protection: fields.csrf_protection.unwrap_or(true),
        scope,
        cache_control: fields.cache_control,
        identity_provider: fields.identity_provider,
        dynamic_identity_provider: fields.dynamic_identity_provider.unwrap_or(false),
        prefer_local: fields.prefer_local.unwrap_or(false),
        replace: fields.replace,
        set_backend_session_cookies: fields.set_backend_session_cookies.unwrap_or(false),
        client_certificate,
    })
}

/// `clientCertificate`: `"required"`, `"optional"`, or
/// `{"mode": "required"|"optional" (default required), "subject": {ATTR: value|[values]},
/// "issuer": {ATTR: value|[values]}, "uri": SAN|[SANs], "dns": SAN|[SANs]}` — every listed
/// attribute must have one of its values, and the certificate one of the listed SANs.
fn parse_client_certificate(
    value: Value,
    origin: &str,
    path: &str,
    problems: &mut Problems,
) -> Option<ClientCertificateRule> {
    const EXPECTED: &str = "must be `required`, `optional` or an object {\"mode\", \"subject\", \"issuer\", \"uri\", \"dns\"}";
    let requirement = |value: &Value, at: &str, problems: &mut Problems| match value.as_str() {
        Some("required") => Some(CertificateRequirement::Required),
        Some("optional") => Some(CertificateRequirement::Optional),
        _ => {
            problems.push(origin, at, "must be `required` or `optional`");
            None
        }
    };
    let object = match value {
        Value::String(_) => {
            return requirement(&value, path, problems).map(|requirement| ClientCertificateRule {
                requirement,
                subject: Vec::new(),
                issuer: Vec::new(),
                uri: Vec::new(),
                dns: Vec::new(),
            });
        }
        Value::Object(object) => object,
        _ => {
            problems.push(origin, path, EXPECTED);
            return None;
        }
    };
    let before = problems.len();
    let mut rule = ClientCertificateRule {
        requirement: CertificateRequirement::Required,
        subject: Vec::new(),
        issuer: Vec::new(),
        uri: Vec::new(),
        dns: Vec::new(),
    };
    for (key, value) in object {
        let at = child(path, &key);
        match key.as_str() {
            "mode" => {
                if let Some(r) = requirement(&value, &at, problems) {
                    rule.requirement = r;
                }
            }
            "subject" => rule.subject = attribute_matches(value, origin, &at, problems),
            "issuer" => rule.issuer = attribute_matches(value, origin, &at, problems),
            "uri" | "dns" => match scope_list(&value) {
                Some(names) if !names.is_empty() && names.iter().all(|n| !n.is_empty()) => {
                    if key == "uri" {
                        rule.uri = names;
                    } else {
                        rule.dns = names;
                    }
                }
                _ => problems.push(
                    origin,
                    at,
                    "must be a non-empty string or a non-empty array of non-empty strings",
                ),
            },
            _ => problems.push(origin, at, "unknown property"),
        }
    }
    (problems.len() == before).then_some(rule)
}

/// `{ATTR: value|[values]}` with attribute names from [`RULE_ATTRIBUTES`].
fn attribute_matches(
    value: Value,
    origin: &str,
    path: &str,
    problems: &mut Problems,
) -> Vec<AttributeMatch> {
    let Value::Object(object) = value else {
        problems.push(
            origin,
            path,
            "must be an object of attribute names (CN, O, OU, …) to a value or an array of values",
        );
        return Vec::new();
    };
    if object.is_empty() {
        problems.push(origin, path, "must name at least one attribute");
    }
    let mut out = Vec::new();
    for (key, value) in object {
        let at = child(path, &key);
        let Some(attribute) = RULE_ATTRIBUTES.iter().find(|a| **a == key) else {
            problems.push(
                origin,
                at,
                format!(
                    "not an attribute name: use one of {}",
                    RULE_ATTRIBUTES.join(", ")
                ),
            );
            continue;
        };
        let values = match scope_list(&value) {
            Some(values) if !values.is_empty() && values.iter().all(|v| !v.is_empty()) => values,
            _ => {
                problems.push(
                    origin,
                    at,
                    "must be a non-empty string or a non-empty array of non-empty strings",
                );
                continue;
            }
        };
        out.push(AttributeMatch::new(attribute, &values));
    }
    out
}

pub(crate) fn parse_source(
    value: Value,
    origin: &str,
    path: &str,
    problems: &mut Problems,
) -> Option<SourceDef> {
    match value {
        Value::String(pattern) => Some(SourceDef {
            pattern,
            match_case: true,
        }),
        Value::Object(mut object) => {
            let pattern = match object.remove("path") {
                Some(Value::String(p)) => Some(p),
                Some(_) => {
                    problems.push(
                        origin,
                        child(path, "path"),
                        "must be a string (a regular expression)",
                    );
                    None
                }
                None => {
                    problems.push(origin, path, "missing required property `path`");
                    None
                }
            };
            let match_case = match object.remove("matchCase") {
                None => true,
                Some(Value::Bool(b)) => b,
                Some(_) => {
                    problems.push(origin, child(path, "matchCase"), "must be a boolean");
                    true
                }
            };
            for key in object.keys() {
                problems.push(origin, child(path, key), "unknown property");
            }
            Some(SourceDef {
                pattern: pattern?,
                match_case,
            })
        }
        _ => {
            problems.push(
                origin,
                path,
                "must be a regular expression string or an object {\"path\", \"matchCase\"}",
            );
            None
        }
    }
}

fn scope_list(value: &Value) -> Option<Vec<String>> {
    match value {
        Value::String(s) => Some(vec![s.clone()]),
        Value::Array(items) => items
            .iter()
            .map(|v| v.as_str().map(str::to_owned))
            .collect(),
        _ => None,
    }
}

fn parse_scope(
    value: Value,
    origin: &str,
    path: &str,
    problems: &mut Problems,
) -> Option<ScopeRule> {
    const EXPECTED: &str = "must be a string, an array of strings, or an object of HTTP methods (and `default`) to those";
    if let Some(default) = scope_list(&value) {
        return Some(ScopeRule {
            per_method: BTreeMap::new(),
            default,
        });
    }
    let Value::Object(object) = value else {
        problems.push(origin, path, EXPECTED);
        return None;
    };
    let mut rule = ScopeRule::default();
    for (key, value) in object {
        let Some(list) = scope_list(&value) else {
            problems.push(origin, child(path, &key), EXPECTED);
            continue;
        };
        if key == "default" {
            rule.default = list;
        } else if HTTP_METHODS.contains(&key.as_str()) {
            rule.per_method.insert(key, list);
        } else {
            problems.push(
                origin,
                child(path, &key),
                "not an HTTP method nor `default`",
            );
        }
    }
    Some(rule)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problems_of(text: &str) -> Vec<String> {
        let mut problems = Problems::default();
        parse(text, "xs-app.json", &mut problems);
        problems
            .into_error()
            .problems
            .iter()
            .map(|p| format!("{}: {}", p.path, p.reason))
            .collect()
    }

    #[test]
    fn accepts_a_typical_descriptor() {
        let mut problems = Problems::default();
        let app = parse(
            r#"{"welcomeFile": "index.html", "authenticationMethod": "none",
                "routes": [
                  {"source": "^/api/(.*)$", "target": "$1", "destination": "backend", "httpMethods": ["GET", "POST"]},
                  {"source": {"path": "^/ui/(.*)$", "matchCase": false}, "localDir": "webapp", "cacheControl": "no-cache"},
                  {"source": "^/s/(.*)$", "service": "svc", "endpoint": "api", "scope": {"GET": "$XSAPPNAME.Read", "default": ["$XSAPPNAME.Write"]}}
                ]}"#,
            "xs-app.json",
            &mut problems,
        );
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(app.routes.len(), 3);
        assert!(!app.routes[1].source.match_case);
        assert_eq!(
            app.routes[2].scope.as_ref().map(|s| s.default.clone()),
            Some(vec!["$XSAPPNAME.Write".to_owned()])
        );
        assert_eq!(app.authentication_method, AuthenticationMethod::None);
    }

    #[test]
    fn reports_every_problem_with_its_path() {
        let found = problems_of(
            r#"{"welcomeFiles": "x",
                "routes": [
                  {"source": 5, "destination": "a"},
                  {"source": "^/a", "destination": "a", "localDir": "b"},
                  {"source": "^/b", "destination": "a", "httpMethods": ["FETCH"]},
                  {"source": "^/c", "destination": "a", "colour": "red"}
                ],
                "responseHeaders": [{"name": "Set-Cookie", "value": "x"}]}"#,
        );
        let expected = [
            "$.welcomeFiles: unknown property",
            "$.routes[0].source: must be a regular expression string",
            "$.routes[1]: a route needs exactly one of",
            "$.routes[2].httpMethods[0]: `FETCH` is not one of",
            "$.routes[3].colour: unknown field `colour`",
            "$.responseHeaders[0].name: `Set-Cookie` may not be set",
        ];
        for want in expected {
            assert!(
                found.iter().any(|f| f.starts_with(want)),
                "missing {want:?} in {found:#?}"
            );
        }
        assert_eq!(found.len(), expected.len(), "{found:#?}");
    }

    #[test]
    fn type_errors_name_the_nested_path() {
        let found = problems_of(
            r#"{"routes": [{"source": "^/", "destination": "a", "csrfProtection": "yes"}], "logout": {"logoutMethod": "PUT"}}"#,
        );
        assert!(
            found
                .iter()
                .any(|f| f.starts_with("$.routes[0].csrfProtection: invalid type")),
            "{found:#?}"
        );
        assert!(
            found
                .iter()
                .any(|f| f.starts_with("$.logout.logoutMethod: unknown variant `PUT`")),
            "{found:#?}"
        );
    }

    #[test]
    fn invalid_json_is_one_problem_at_the_root() {
        let found = problems_of("{\"routes\": [");
        assert_eq!(found.len(), 1);
        assert!(found[0].starts_with("$: invalid JSON"), "{found:?}");
    }
}
