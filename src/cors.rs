//! Cross-origin resource sharing, as approuter's `cors` property and `CORS` variable configure
//! it: the first rule whose `uriPattern` (and `hostPattern`) matches a cross-origin request
//! decides. Preflights (OPTIONS with `Access-Control-Request-Method`) are answered by the router;
//! actual requests get `Access-Control-Allow-*` headers; an origin, method or header the rule does
//! not allow is refused with 403, as approuter does. xs-app.json rules are tried before the
//! variable's.
//!
//! Same-origin requests (the `Origin` is the router's own URL) and requests without `Origin` are
//! not touched. A malformed `Origin` is refused (403), as in approuter.

use axum::body::Body;
use axum::response::Response;
use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri, header};
use serde_json::Value;

use crate::config::problem::{Problems, child, deserialize_at, index};
use crate::config::xs_app::{AllowedOriginDef, CorsDef, HTTP_METHODS, parse_source};
use crate::rejection::Rejection;

const DEFAULT_HEADERS: &[&str] = &[
    "Origin",
    "Accept",
    "X-Requested-With",
    "Content-Type",
    "Access-Control-Request-Method",
    "Access-Control-Request-Headers",
];
const DEFAULT_MAX_AGE: u64 = 1800;

/// Every CORS rule, xs-app.json first.
#[derive(Debug, Default)]
pub struct CorsPolicy {
    rules: Vec<CorsRule>,
}

#[derive(Debug)]
struct CorsRule {
    uri: fancy_regex::Regex,
    host: Option<fancy_regex::Regex>,
    origins: Vec<AllowedOrigin>,
    methods: Vec<Method>,
    /// Lower-case names, for matching `Access-Control-Request-Headers`.
    headers: Vec<String>,
    allow_headers: HeaderValue,
    expose_headers: Option<HeaderValue>,
    credentials: bool,
    max_age: Option<HeaderValue>,
}

#[derive(Debug)]
struct AllowedOrigin {
    /// Lower case; `None`: any.
    protocol: Option<String>,
    host: HostMatch,
    port: Option<u16>,
}

#[derive(Debug)]
enum HostMatch {
    Any,
    /// `*.example.com`: the lower-case suffix `.example.com`.
    Suffix(String),
    Exact(String),
}

/// What the CORS rules make of a request.
#[derive(Debug)]
pub enum CorsDecision {
    /// Not cross-origin, or no rule applies: route the request as usual.
    NotApplicable,
    /// A preflight answered by the router.
    Preflight(Response),
    /// Refused with 403 and this reason.
    Refused(&'static str),
    /// An allowed cross-origin request: route it and add these headers to the answer.
    Allowed(CorsHeaders),
}

impl CorsDecision {
    /// An answer that replaces routing (preflight or refusal), and headers for a routed answer.
    pub fn split(self) -> (Option<Result<Response, Rejection>>, Option<CorsHeaders>) {
        match self {
            Self::NotApplicable => (None, None),
            Self::Preflight(response) => (Some(Ok(response)), None),
            Self::Refused(reason) => (Some(Err(Rejection::Forbidden(reason))), None),
            Self::Allowed(headers) => (None, Some(headers)),
        }
    }
}

/// The headers an allowed cross-origin answer carries.
#[derive(Debug)]
pub struct CorsHeaders {
    allow_origin: HeaderValue,
    credentials: bool,
    expose: Option<HeaderValue>,
}

impl CorsHeaders {
    /// Sets the router's CORS headers on an answer (they replace a backend's own).
    pub fn apply(self, headers: &mut HeaderMap) {
        let vary = self.allow_origin != "*";
        headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, self.allow_origin);
        if self.credentials {
            headers.insert(
                header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
                HeaderValue::from_static("true"),
            );
        } else {
            headers.remove(header::ACCESS_CONTROL_ALLOW_CREDENTIALS);
        }
        match self.expose {
            Some(expose) => {
                headers.insert(header::ACCESS_CONTROL_EXPOSE_HEADERS, expose);
            }
            None => {
                headers.remove(header::ACCESS_CONTROL_EXPOSE_HEADERS);
            }
        }
        if vary {
            headers.append(header::VARY, HeaderValue::from_static("Origin"));
        }
    }
}

impl CorsPolicy {
    /// Compiles the xs-app.json rules, then the `CORS` variable's (text and origin).
    pub fn from_config(
        xs_app: &[CorsDef],
        xs_app_origin: &str,
        env: Option<(&str, String)>,
        problems: &mut Problems,
    ) -> Self {
        let mut rules = Vec::new();
        for def in xs_app {
            rules.extend(compile(
                def,
                xs_app_origin,
                &index("$.cors", def.position),
                problems,
            ));
        }
        if let Some((text, origin)) = env {
            let defs = serde_json::from_str::<Value>(text)
                .map_err(|err| ("$".to_owned(), crate::config::problem::syntax_reason(&err)))
                .and_then(|value| deserialize_at::<Vec<CorsDef>>(value, "$"));
            match defs {
                Ok(defs) => {
                    if defs.is_empty() {
                        problems.push(&origin, "$", "must list at least one CORS rule");
                    }
                    for (i, def) in defs.iter().enumerate() {
                        rules.extend(compile(def, &origin, &index("$", i), problems));
                    }
                }
                Err((path, reason)) => problems.push(&origin, path, reason),
            }
        }
        Self { rules }
    }

    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// Decides for a request before it is routed.
    pub fn evaluate(&self, method: &Method, uri: &Uri, headers: &HeaderMap) -> CorsDecision {
        let Some(origin_value) = headers.get(header::ORIGIN) else {
            return CorsDecision::NotApplicable;
        };
        let Some(origin) = origin_value.to_str().ok().and_then(Origin::parse) else {
            return CorsDecision::Refused("Forbidden: invalid Origin header");
        };
        if self.rules.is_empty() || origin.is_router(headers) {
            return CorsDecision::NotApplicable;
        }
        let url = uri.path_and_query().map_or("/", |pq| pq.as_str());
        let host = forwarded_host(headers);
        let Some(rule) = self.rules.iter().find(|rule| rule.applies(url, host)) else {
            return CorsDecision::NotApplicable;
        };
        if !rule.origins.iter().any(|allowed| allowed.matches(&origin)) {
            return CorsDecision::Refused("Forbidden: origin not allowed");
        }
        let any_origin = rule.origins.iter().any(AllowedOrigin::is_any);
        let allow_origin = if any_origin && !rule.credentials {
            HeaderValue::from_static("*")
        } else {
            origin_value.clone()
        };
        let requested = headers.get(header::ACCESS_CONTROL_REQUEST_METHOD);
        match requested {
            Some(requested) if method == Method::OPTIONS => {
                preflight(rule, requested, headers, allow_origin)
            }
            _ if !rule.methods.contains(method) => {
                CorsDecision::Refused("Forbidden: method not allowed for cross-origin requests")
            }
            _ => CorsDecision::Allowed(CorsHeaders {
                allow_origin,
                credentials: rule.credentials,
                expose: rule.expose_headers.clone(),
            }),
        }
    }
}

fn preflight(
    rule: &CorsRule,
    requested: &HeaderValue,
    headers: &HeaderMap,
    allow_origin: HeaderValue,
) -> CorsDecision {
    let allowed_method = Method::from_bytes(requested.as_bytes())
        .ok()
        .filter(|m| rule.methods.contains(m));
    if allowed_method.is_none() {
        return CorsDecision::Refused("Forbidden: Access-Control-Request-Method not allowed");
    }
    for value in headers.get_all(header::ACCESS_CONTROL_REQUEST_HEADERS) {
        let Ok(text) = value.to_str() else {
            return CorsDecision::Refused("Forbidden: Access-Control-Request-Headers not allowed");
        };
        let all_allowed = text
            .split(',')
            .map(str::trim)
            .filter(|name| !name.is_empty())
            .all(|name| rule.headers.iter().any(|h| h.eq_ignore_ascii_case(name)));
        if !all_allowed {
            return CorsDecision::Refused("Forbidden: Access-Control-Request-Headers not allowed");
        }
    }
    let mut response = Response::new(Body::empty());
    *response.status_mut() = StatusCode::OK;
    let out = response.headers_mut();
    CorsHeaders {
        allow_origin,
        credentials: rule.credentials,
        expose: None,
    }
    .apply(out);
    if let Some(max_age) = &rule.max_age {
        out.insert(header::ACCESS_CONTROL_MAX_AGE, max_age.clone());
    }
    out.insert(header::ACCESS_CONTROL_ALLOW_METHODS, requested.clone());
    out.insert(
        header::ACCESS_CONTROL_ALLOW_HEADERS,
        rule.allow_headers.clone(),
    );
    out.insert(header::CONTENT_LENGTH, HeaderValue::from_static("0"));
    CorsDecision::Preflight(response)
}

/// The external host of a request: `x-forwarded-host`, else `Host`.
fn forwarded_host(headers: &HeaderMap) -> Option<&str> {
    headers
        .get("x-forwarded-host")
        .or_else(|| headers.get(header::HOST))
        .and_then(|v| v.to_str().ok())
        .map(|v| v.split(',').next().unwrap_or_default().trim())
}

impl CorsRule {
    fn applies(&self, url: &str, host: Option<&str>) -> bool {
        if let Some(pattern) = &self.host {
            let Some(host) = host else { return false };
            let name = host.rsplit_once(':').map_or(host, |(name, port)| {
                if port.parse::<u16>().is_ok() {
                    name
                } else {
                    host
                }
            });
            let matches = |s: &str| pattern.is_match(s).unwrap_or(false);
            if !(matches(name) || (name != host && matches(host))) {
                return false;
            }
        }
        self.uri.is_match(url).unwrap_or(false)
    }
}

/// A parsed `Origin`: `scheme://host[:port]`.
struct Origin<'a> {
    scheme: &'a str,
    host: &'a str,
    port: u16,
}

impl<'a> Origin<'a> {
    fn parse(text: &'a str) -> Option<Self> {
        if text.contains('%') {
            return None;
        }
        let (scheme, rest) = text.split_once("://")?;
        if scheme.is_empty()
            || !scheme
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'))
        {
            return None;
        }
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        // `[v6]:port`, `[v6]`, `name:port`, `name`
        let (host, port) = match rest.strip_prefix('[') {
            Some(v6) => {
                let (inner, after) = v6.split_once(']')?;
                if inner.is_empty() || !inner.bytes().all(|b| b.is_ascii_hexdigit() || b == b':') {
                    return None;
                }
                let port = match after {
                    "" => None,
                    other => Some(other.strip_prefix(':')?.parse::<u16>().ok()?),
                };
                (&rest[..inner.len() + 2], port)
            }
            None => {
                let (host, port) = match rest.split_once(':') {
                    Some((host, port)) => (host, Some(port.parse::<u16>().ok()?)),
                    None => (rest, None),
                };
                if host.is_empty()
                    || !host
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'))
                {
                    return None;
                }
                (host, port)
            }
        };
        let default = if scheme.eq_ignore_ascii_case("https") {
            443
        } else {
            80
        };
        Some(Self {
            scheme,
            host,
            port: port.unwrap_or(default),
        })
    }

    /// Whether this is the router's own URL (`x-forwarded-proto` / `x-forwarded-host` / `Host`).
    fn is_router(&self, headers: &HeaderMap) -> bool {
        let proto = headers
            .get("x-forwarded-proto")
            .and_then(|v| v.to_str().ok())
            .map_or("http", |v| v.split(',').next().unwrap_or_default().trim());
        let Some(host) = forwarded_host(headers) else {
            return false;
        };
        let default = if proto.eq_ignore_ascii_case("https") {
            443
        } else {
            80
        };
        let (name, port) = match host.rsplit_once(':') {
            Some((name, port)) if port.parse::<u16>().is_ok() => {
                (name, port.parse::<u16>().unwrap_or(default))
            }
            _ => (host, default),
        };
        self.scheme.eq_ignore_ascii_case(proto)
            && self.host.eq_ignore_ascii_case(name)
            && self.port == port
    }
}

impl AllowedOrigin {
    fn is_any(&self) -> bool {
        matches!(self.host, HostMatch::Any) && self.protocol.is_none() && self.port.is_none()
    }

    fn matches(&self, origin: &Origin<'_>) -> bool {
        if self
            .protocol
            .as_deref()
            .is_some_and(|p| !p.eq_ignore_ascii_case(origin.scheme))
        {
            return false;
        }
        if self.port.is_some_and(|p| p != origin.port) {
            return false;
        }
        let host = origin.host;
        match &self.host {
            HostMatch::Any => true,
            HostMatch::Exact(exact) => host.eq_ignore_ascii_case(exact),
            HostMatch::Suffix(suffix) => {
                host.len() > suffix.len()
                    && host.is_char_boundary(host.len() - suffix.len())
                    && host[host.len() - suffix.len()..].eq_ignore_ascii_case(suffix)
            }
        }
    }
}

fn compile(def: &CorsDef, origin: &str, path: &str, problems: &mut Problems) -> Option<CorsRule> {
    let before = problems.len();
    let uri = pattern(
        &def.uri_pattern,
        origin,
        &child(path, "uriPattern"),
        problems,
    );
    let host = def
        .host_pattern
        .as_ref()
        .and_then(|p| pattern(p, origin, &child(path, "hostPattern"), problems));
    let origins_path = child(path, "allowedOrigin");
    let origins: Vec<AllowedOrigin> = if def.allowed_origin.is_empty() {
        vec![AllowedOrigin {
            protocol: None,
            host: HostMatch::Any,
            port: None,
        }]
    } else {
        def.allowed_origin
            .iter()
            .enumerate()
            .filter_map(|(i, o)| allowed_origin(o, origin, &index(&origins_path, i), problems))
            .collect()
    };
    let methods_path = child(path, "allowedMethods");
    let mut methods = Vec::new();
    match &def.allowed_methods {
        Some(list) if list.is_empty() => {
            problems.push(origin, &methods_path, "must list at least one method")
        }
        Some(list) => {
            for (i, m) in list.iter().enumerate() {
                match Method::from_bytes(m.as_bytes()) {
                    Ok(method) if HTTP_METHODS.contains(&m.as_str()) => methods.push(method),
                    _ => problems.push(
                        origin,
                        index(&methods_path, i),
                        format!("`{m}` is not one of {}", HTTP_METHODS.join(", ")),
                    ),
                }
            }
        }
        None => methods = vec![Method::GET, Method::POST, Method::HEAD, Method::OPTIONS],
    }
    let headers: Vec<String> = match &def.allowed_headers {
        Some(list) => list.clone(),
        None => DEFAULT_HEADERS.iter().map(|h| (*h).to_owned()).collect(),
    };
    let headers_path = child(path, "allowedHeaders");
    if headers.is_empty() {
        problems.push(origin, &headers_path, "must list at least one header");
    }
    for (i, name) in headers.iter().enumerate() {
        if HeaderName::from_bytes(name.as_bytes()).is_err() {
            problems.push(
                origin,
                index(&headers_path, i),
                "not a valid HTTP header name",
            );
        }
    }
    let expose_path = child(path, "exposeHeaders");
    if let Some(list) = &def.expose_headers {
        if list.is_empty() {
            problems.push(origin, &expose_path, "must list at least one header");
        }
        for (i, name) in list.iter().enumerate() {
            if HeaderName::from_bytes(name.as_bytes()).is_err() {
                problems.push(
                    origin,
                    index(&expose_path, i),
                    "not a valid HTTP header name",
                );
            }
        }
    }
    if def.max_age == Some(0) {
        problems.push(
            origin,
            child(path, "maxAge"),
            "must be at least 1 (seconds)",
        );
    }
    if problems.len() != before {
        return None;
    }
    Some(CorsRule {
        uri: uri?,
        host,
        origins,
        methods,
        allow_headers: HeaderValue::from_str(&headers.join(", ")).ok()?,
        headers: headers.iter().map(|h| h.to_ascii_lowercase()).collect(),
        expose_headers: def
            .expose_headers
            .as_ref()
            .and_then(|list| HeaderValue::from_str(&list.join(", ")).ok()),
        credentials: def.allowed_credentials.unwrap_or(true),
        max_age: HeaderValue::from_str(&def.max_age.unwrap_or(DEFAULT_MAX_AGE).to_string()).ok(),
    })
}

/// A `uriPattern` / `hostPattern`: a regular expression or `{path, matchCase}`.
fn pattern(
    value: &Value,
    origin: &str,
    path: &str,
    problems: &mut Problems,
) -> Option<fancy_regex::Regex> {
    let source = parse_source(value.clone(), origin, path, problems)?;
    if source.pattern.is_empty() {
        problems.push(origin, path, "must not be empty");
        return None;
    }
    let text = if source.match_case {
        source.pattern
    } else {
        format!("(?i){}", source.pattern)
    };
    match fancy_regex::Regex::new(&text) {
        Ok(regex) => Some(regex),
        Err(err) => {
            problems.push(origin, path, format!("invalid regular expression: {err}"));
            None
        }
    }
}

fn allowed_origin(
    def: &AllowedOriginDef,
    origin: &str,
    path: &str,
    problems: &mut Problems,
) -> Option<AllowedOrigin> {
    let host = def.host.trim();
    let host_match = if host == "*" {
        HostMatch::Any
    } else if let Some(rest) = host.strip_prefix("*.") {
        HostMatch::Suffix(format!(".{}", rest.to_ascii_lowercase()))
    } else {
        HostMatch::Exact(host.to_ascii_lowercase())
    };
    let name = host.strip_prefix("*.").unwrap_or(host);
    let valid_name = host == "*"
        || (!name.is_empty()
            && name.split('.').all(|label| {
                !label.is_empty()
                    && !label.starts_with('-')
                    && !label.ends_with('-')
                    && label
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-')
            }));
    if !valid_name {
        problems.push(
            origin,
            child(path, "host"),
            format!("`{host}` is not a host name, an IP address or `*.` followed by a host name"),
        );
    }
    let port = match &def.port {
        None => None,
        Some(Value::Number(n)) => n
            .as_u64()
            .and_then(|n| u16::try_from(n).ok())
            .filter(|p| *p > 0),
        Some(Value::String(s)) => s.parse::<u16>().ok().filter(|p| *p > 0),
        Some(_) => None,
    };
    if def.port.is_some() && port.is_none() {
        problems.push(
            origin,
            child(path, "port"),
            "must be a port number (1-65535)",
        );
    }
    if def.protocol.as_deref().is_some_and(str::is_empty) {
        problems.push(origin, child(path, "protocol"), "must not be empty");
    }
    if !valid_name || (def.port.is_some() && port.is_none()) {
        return None;
    }
    Some(AllowedOrigin {
        protocol: def
            .protocol
            .as_deref()
            .map(|p| p.trim_end_matches(':').to_ascii_lowercase()),
        host: host_match,
        port,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn origin(text: &str) -> Option<(String, String, u16)> {
        Origin::parse(text).map(|o| (o.scheme.to_owned(), o.host.to_owned(), o.port))
    }

    #[test]
    fn origins_parse_with_default_ports() {
        assert_eq!(
            origin("https://a.example"),
            Some(("https".into(), "a.example".into(), 443))
        );
        assert_eq!(
            origin("http://a.example:8080"),
            Some(("http".into(), "a.example".into(), 8080))
        );
        assert_eq!(
            origin("http://127.0.0.1"),
            Some(("http".into(), "127.0.0.1".into(), 80))
        );
        for bad in [
            "null",
            "a.example",
            "https://",
            "https://a%2eexample",
            "http://a:b",
            "https://a b",
        ] {
            assert!(origin(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn allowed_origins_match_protocol_host_and_port() {
        let mut problems = Problems::default();
        let def = |host: &str, protocol: Option<&str>, port: Option<Value>| AllowedOriginDef {
            host: host.into(),
            protocol: protocol.map(str::to_owned),
            port,
        };
        let wildcard = allowed_origin(
            &def("*.sap.com", Some("https"), None),
            "o",
            "$",
            &mut problems,
        )
        .expect("valid");
        let exact = allowed_origin(
            &def("app.example", None, Some(Value::from(8443))),
            "o",
            "$",
            &mut problems,
        )
        .expect("valid");
        assert!(problems.is_empty());
        let check = |a: &AllowedOrigin, o: &str| a.matches(&Origin::parse(o).expect("origin"));
        assert!(check(&wildcard, "https://x.sap.com"));
        assert!(check(&wildcard, "https://a.b.SAP.com:9000"));
        assert!(!check(&wildcard, "https://sap.com"));
        assert!(!check(&wildcard, "https://evilsap.com"));
        assert!(!check(&wildcard, "http://x.sap.com"));
        assert!(check(&exact, "http://app.example:8443"));
        assert!(!check(&exact, "https://app.example"));
        assert!(!check(&exact, "https://app.example.evil:8443"));
        for bad in ["https://x", "a..b", "*", "-a.b"] {
            let mut problems = Problems::default();
            let result = allowed_origin(&def(bad, None, None), "o", "$", &mut problems);
            assert_eq!(result.is_none(), bad != "*", "{bad}");
        }
        let mut problems = Problems::default();
        assert!(
            allowed_origin(
                &def("a.b", None, Some(Value::from("x"))),
                "o",
                "$",
                &mut problems
            )
            .is_none()
        );
        assert_eq!(problems.into_error().problems[0].path, "$.port");
    }
}
