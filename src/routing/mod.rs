//! Routing: the compiled `xs-app.json` routes and the rules that pick one for a request.
//!
//! Routes are tried in order against the request URL (path and query, as received); the first
//! whose `source` matches and whose `httpMethods` allow the method wins. When some route matched
//! the URL but none allowed the method, the answer is 405 with the union of their methods.
//! Everything here is pure: no I/O, no environment.

pub mod request_path;
pub mod rewrite;

use std::path::PathBuf;

use fancy_regex::{Captures, Regex};
use http::{HeaderValue, Method};

use crate::config::xs_app::{AuthenticationType, ScopeRule};
use crate::inbound::route_rules::ClientCertificateRule;
use rewrite::TargetTemplate;

/// Where a route's destination name comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DestinationRef {
    /// A destination configured by name.
    Named(String),
    /// `$n`: capture group n of the route's source.
    Group(usize),
    /// `*`: group 1 of `DESTINATION_HOST_PATTERN` applied to the request host.
    FromHost,
}

/// What a route sends requests to. Business-service routes become destinations
/// (`service:<name>[/<endpoint>]`) when the configuration is loaded.
#[derive(Debug, Clone)]
pub enum RouteTo {
    Destination(DestinationRef),
    /// A directory under the working directory (canonical path).
    LocalDir(PathBuf),
    /// approuter's user API (`"service": "sap-approuter-userapi"`), answered by the router.
    UserApi,
}

/// One compiled route.
#[derive(Debug)]
pub struct Route {
    /// Position in xs-app.json `routes` (or `None` for the implicit `resources` route).
    pub position: Option<usize>,
    /// The source pattern as written, for logs and `check`.
    pub source: String,
    regex: Regex,
    target: Option<TargetTemplate>,
    pub to: RouteTo,
    /// Allowed methods; `None` allows all.
    pub methods: Option<Vec<Method>>,
    /// The authentication the route requires; `None` means public.
    pub authentication: Option<AuthenticationType>,
    pub csrf_protection: bool,
    pub scope: Option<ScopeRule>,
    pub cache_control: Option<HeaderValue>,
    pub identity_provider: Option<String>,
    /// `setBackendSessionCookies`: backend session cookies go to the browser, not the session.
    pub backend_cookies_to_browser: bool,
    /// `dynamicIdentityProvider`: a request's `sap_idp` parameter picks the identity provider.
    pub dynamic_identity_provider: bool,
    /// `clientCertificate`: the client certificate the route needs.
    pub client_certificate: Option<ClientCertificateRule>,
}

/// Compile-time inputs of a route, already validated by the config module.
pub struct RouteSpec {
    pub position: Option<usize>,
    pub source: String,
    pub match_case: bool,
    pub target: Option<String>,
    pub to: RouteTo,
    pub methods: Option<Vec<Method>>,
    pub authentication: Option<AuthenticationType>,
    pub csrf_protection: bool,
    pub scope: Option<ScopeRule>,
    pub cache_control: Option<HeaderValue>,
    pub identity_provider: Option<String>,
    pub backend_cookies_to_browser: bool,
    pub dynamic_identity_provider: bool,
    pub client_certificate: Option<ClientCertificateRule>,
}

impl Route {
    /// Compiles a route; the error is the regex problem in one line.
    pub fn compile(spec: RouteSpec) -> Result<Self, String> {
        let pattern = if spec.match_case {
            spec.source.clone()
        } else {
            format!("(?i){}", spec.source)
        };
        let regex = Regex::new(&pattern).map_err(|e| format!("invalid regular expression: {e}"))?;
        let groups = regex.captures_len() - 1;
        if let RouteTo::Destination(DestinationRef::Group(n)) = &spec.to
            && *n > groups
        {
            return Err(format!(
                "destination `${n}` refers to a group the source does not have ({groups} groups)"
            ));
        }
        let target = spec
            .target
            .as_deref()
            .map(|t| TargetTemplate::parse(t, groups, &rewrite::group_names(&regex)));
        Ok(Self {
            position: spec.position,
            source: spec.source,
            regex,
            target,
            to: spec.to,
            methods: spec.methods,
            authentication: spec.authentication,
            csrf_protection: spec.csrf_protection,
            scope: spec.scope,
            cache_control: spec.cache_control,
            identity_provider: spec.identity_provider,
            backend_cookies_to_browser: spec.backend_cookies_to_browser,
            dynamic_identity_provider: spec.dynamic_identity_provider,
            client_certificate: spec.client_certificate,
        })
    }

    fn allows(&self, method: &Method) -> bool {
        self.methods.as_ref().is_none_or(|m| m.contains(method))
    }

    fn captures<'u>(&self, url: &'u str) -> Option<Captures<'u>> {
        match self.regex.captures(url) {
            Ok(caps) => caps,
            Err(err) => {
                tracing::warn!(route = %self.source, error = %err, "route pattern could not be evaluated; treated as no match");
                None
            }
        }
    }
}

/// The route chosen for a request, with the URL rewritten by its target.
#[derive(Debug)]
pub struct RouteMatch<'a> {
    pub route: &'a Route,
    /// The request URL (path and query) after `target` rewriting.
    pub url: String,
    /// The destination name, for destination routes.
    pub destination: Option<String>,
}

/// The result of looking a request up.
#[derive(Debug)]
pub enum Lookup<'a> {
    Found(RouteMatch<'a>),
    /// Some route matched the URL, none allowed the method: the value for `Allow`.
    MethodNotAllowed(String),
    /// A `*` route matched but the host does not name a destination.
    NoDestinationForHost,
    NotFound,
}

/// All routes, in order.
#[derive(Debug, Default)]
pub struct RouteTable {
    routes: Vec<Route>,
    host_pattern: Option<Regex>,
}

impl RouteTable {
    pub fn new(routes: Vec<Route>, host_pattern: Option<Regex>) -> Self {
        Self {
            routes,
            host_pattern,
        }
    }

    pub fn routes(&self) -> &[Route] {
        &self.routes
    }

    /// Finds the route for `method` and `url` (path and query). `host` feeds `*` destinations.
    pub fn lookup(&self, method: &Method, url: &str, host: Option<&str>) -> Lookup<'_> {
        let mut allowed: Vec<&str> = Vec::new();
        for route in &self.routes {
            let Some(caps) = route.captures(url) else {
                continue;
            };
            if !route.allows(method) {
                if let Some(methods) = &route.methods {
                    allowed.extend(methods.iter().map(Method::as_str));
                }
                continue;
            }
            let rewritten = match &route.target {
                Some(template) => template.apply(url, &caps),
                None => url.to_owned(),
            };
            let destination = match &route.to {
                RouteTo::Destination(DestinationRef::Named(name)) => Some(name.clone()),
                RouteTo::Destination(DestinationRef::Group(n)) => {
                    Some(caps.get(*n).map_or("", |m| m.as_str()).to_owned())
                }
                RouteTo::Destination(DestinationRef::FromHost) => {
                    match self.destination_from_host(host) {
                        Some(name) => Some(name),
                        None => return Lookup::NoDestinationForHost,
                    }
                }
                _ => None,
            };
            return Lookup::Found(RouteMatch {
                route,
                url: rewritten,
                destination,
            });
        }
        if allowed.is_empty() {
            Lookup::NotFound
        } else {
            allowed.sort_unstable();
            allowed.dedup();
            Lookup::MethodNotAllowed(allowed.join(", "))
        }
    }

    fn destination_from_host(&self, host: Option<&str>) -> Option<String> {
        let pattern = self.host_pattern.as_ref()?;
        let caps = pattern.captures(host?).ok()??;
        caps.get(1)
            .map(|m| m.as_str().to_owned())
            .filter(|s| !s.is_empty())
    }
}

/// Takes `sap_idp=<idp>` out of a URL's query (approuter strips it before matching).
pub fn take_sap_idp(url: &str) -> (String, Option<String>) {
    let Some((path, query)) = url.split_once('?') else {
        return (url.to_owned(), None);
    };
    let mut idp = None;
    let kept: Vec<&str> = query
        .split('&')
        .filter(|pair| match pair.strip_prefix("sap_idp=") {
            Some(value) => {
                idp = percent_encoding::percent_decode_str(value)
                    .decode_utf8()
                    .ok()
                    .map(|v| v.into_owned())
                    .filter(|v| !v.is_empty());
                false
            }
            None => true,
        })
        .collect();
    if kept.is_empty() {
        (path.to_owned(), idp)
    } else {
        (format!("{path}?{}", kept.join("&")), idp)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(
        source: &str,
        target: Option<&str>,
        to: RouteTo,
        methods: Option<&[Method]>,
    ) -> RouteSpec {
        RouteSpec {
            position: Some(0),
            source: source.to_owned(),
            match_case: true,
            target: target.map(str::to_owned),
            to,
            methods: methods.map(<[Method]>::to_vec),
            authentication: None,
            csrf_protection: true,
            scope: None,
            cache_control: None,
            identity_provider: None,
            backend_cookies_to_browser: false,
            dynamic_identity_provider: false,
            client_certificate: None,
        }
    }

    fn dest(name: &str) -> RouteTo {
        RouteTo::Destination(DestinationRef::Named(name.to_owned()))
    }

    fn table(specs: Vec<RouteSpec>, host_pattern: Option<&str>) -> RouteTable {
        RouteTable::new(
            specs
                .into_iter()
                .map(|s| Route::compile(s).expect("route"))
                .collect(),
            host_pattern.map(|p| Regex::new(p).expect("pattern")),
        )
    }

    fn found<'a>(lookup: Lookup<'a>) -> RouteMatch<'a> {
        match lookup {
            Lookup::Found(m) => m,
            other => panic!("expected a match, got {other:?}"),
        }
    }

    #[test]
    fn first_match_wins_and_target_rewrites() {
        let t = table(
            vec![
                spec("^/api/v1/(.*)$", Some("/v1/$1"), dest("one"), None),
                spec("^/api/(.*)$", Some("$1"), dest("two"), None),
            ],
            None,
        );
        let m = found(t.lookup(&Method::GET, "/api/v1/x?q=1", None));
        assert_eq!(
            (m.url.as_str(), m.destination.as_deref()),
            ("/v1/x?q=1", Some("one"))
        );
        let m = found(t.lookup(&Method::GET, "/api/x", None));
        assert_eq!(
            (m.url.as_str(), m.destination.as_deref()),
            ("x", Some("two"))
        );
        assert!(matches!(
            t.lookup(&Method::GET, "/other", None),
            Lookup::NotFound
        ));
    }

    #[test]
    fn method_filter_falls_through_and_reports_allow() {
        let t = table(
            vec![
                spec(
                    "^/m/(.*)$",
                    None,
                    dest("reader"),
                    Some(&[Method::GET, Method::HEAD]),
                ),
                spec("^/m/(.*)$", None, dest("writer"), Some(&[Method::POST])),
            ],
            None,
        );
        assert_eq!(
            found(t.lookup(&Method::POST, "/m/x", None))
                .destination
                .as_deref(),
            Some("writer")
        );
        match t.lookup(&Method::DELETE, "/m/x", None) {
            Lookup::MethodNotAllowed(allow) => assert_eq!(allow, "GET, HEAD, POST"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn case_insensitive_sources_and_query_matching() {
        let mut s = spec("^/CaSe/(.*)$", Some("$1"), dest("d"), None);
        s.match_case = false;
        let t = table(vec![s, spec("\\?debug=1$", None, dest("dbg"), None)], None);
        assert_eq!(found(t.lookup(&Method::GET, "/case/x", None)).url, "x");
        assert_eq!(
            found(t.lookup(&Method::GET, "/z?debug=1", None))
                .destination
                .as_deref(),
            Some("dbg")
        );
    }

    #[test]
    fn lookaround_patterns_work_as_in_javascript() {
        let t = table(vec![spec("^/(?!api/)(.*)$", None, dest("ui"), None)], None);
        assert!(matches!(
            t.lookup(&Method::GET, "/api/x", None),
            Lookup::NotFound
        ));
        assert_eq!(
            found(t.lookup(&Method::GET, "/index.html", None))
                .destination
                .as_deref(),
            Some("ui")
        );
    }

    #[test]
    fn dynamic_destinations() {
        let t = table(
            vec![
                spec(
                    "^/dyn/([^/]+)/(.*)$",
                    Some("$2"),
                    RouteTo::Destination(DestinationRef::Group(1)),
                    None,
                ),
                spec(
                    "^/h/(.*)$",
                    Some("$1"),
                    RouteTo::Destination(DestinationRef::FromHost),
                    None,
                ),
            ],
            Some("^([a-z0-9-]+)\\.apps\\.example$"),
        );
        let m = found(t.lookup(&Method::GET, "/dyn/backend/p?q", None));
        assert_eq!(
            (m.url.as_str(), m.destination.as_deref()),
            ("p?q", Some("backend"))
        );
        let m = found(t.lookup(&Method::GET, "/h/x", Some("orders.apps.example")));
        assert_eq!(m.destination.as_deref(), Some("orders"));
        assert!(matches!(
            t.lookup(&Method::GET, "/h/x", Some("evil.test")),
            Lookup::NoDestinationForHost
        ));
    }

    #[test]
    fn sap_idp_is_taken_out_of_the_query() {
        assert_eq!(
            take_sap_idp("/a?sap_idp=corp&x=1"),
            ("/a?x=1".to_owned(), Some("corp".to_owned()))
        );
        assert_eq!(
            take_sap_idp("/a?sap_idp=my%20idp"),
            ("/a".to_owned(), Some("my idp".to_owned()))
        );
        assert_eq!(take_sap_idp("/a?x=1"), ("/a?x=1".to_owned(), None));
        assert_eq!(take_sap_idp("/a"), ("/a".to_owned(), None));
    }

    #[test]
    fn compile_errors_are_one_line() {
        let err =
            Route::compile(spec("^/(unclosed", None, dest("d"), None)).expect_err("bad regex");
        assert!(err.starts_with("invalid regular expression"), "{err}");
        let err = Route::compile(spec(
            "^/(a)$",
            None,
            RouteTo::Destination(DestinationRef::Group(2)),
            None,
        ))
        .expect_err("bad group");
        assert!(err.contains("1 groups"), "{err}");
    }
}
