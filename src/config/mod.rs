//! Configuration loading: a working directory and an environment become one validated,
//! immutable [`Runtime`]. Every problem is collected and reported together, each with its
//! file or variable, JSON path and reason; nothing is read again while requests are served.

pub mod bindings;
pub mod business_services;
pub mod destination_auth;
pub mod destinations;
pub mod environment;
pub mod inbound_tls;
pub mod outgoing_cert_headers;
pub mod problem;
pub mod session_store;
pub mod settings;
pub mod trusted_proxies;
pub mod xs_app;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use http::{HeaderValue, Method};
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

use crate::identity::{self, BoundIdentities};

use crate::response_headers::ResponseHeaderPolicy;
use crate::routing::{DestinationRef, Route, RouteSpec, RouteTable, RouteTo};
use bindings::{AuthServiceKind, Bindings};
pub use destinations::Destination;
pub use environment::Environment;
pub use problem::{ConfigError, ConfigProblem, Problems};
pub use settings::Settings;
use xs_app::{AuthenticationMethod, AuthenticationType, RouteDef, RouteTargetDef, XsApp};

pub const XS_APP_FILE: &str = "xs-app.json";
/// The directory approuter serves by default when no route has `localDir`.
pub const DEFAULT_RESOURCES_DIR: &str = "resources";

/// Why the configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("{} not found: the working directory must contain the approuter descriptor (use -w DIR)", .0.display())]
    MissingXsApp(PathBuf),
    #[error("cannot read {}: {source}", path.display())]
    Unreadable {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Invalid(#[from] ConfigError),
}

/// Everything the router needs to serve requests, validated once at start-up.
#[derive(Debug)]
pub struct Runtime {
    pub workdir: PathBuf,
    pub settings: Settings,
    pub xs_app: XsApp,
    pub routes: RouteTable,
    pub destinations: BTreeMap<String, Arc<Destination>>,
    pub bindings: Bindings,
    /// Certificates and keys of the bound XSUAA / IAS services, as loaded at start-up.
    pub identities: BoundIdentities,
    /// Extra trusted roots for outbound TLS (`XS_CACERT_PATH`).
    pub extra_roots: Vec<CertificateDer<'static>>,
    /// The environment snapshot (with default-env.json), kept for credential reloads.
    pub env: Environment,
    pub response_headers: ResponseHeaderPolicy,
    /// Response compression (xs-app.json `compression`, `COMPRESSION`).
    pub compression: crate::compression::CompressionPolicy,
    /// Cross-origin rules (xs-app.json `cors`, then `CORS`).
    pub cors: crate::cors::CorsPolicy,
    /// xs-app.json `errorPage` and `RETURN_ERROR_SOURCE`.
    pub error_pages: crate::error_pages::ErrorPages,
    /// The shared session store (`EXT_SESSION_MGT`, `REDIS_URL`); `None` keeps sessions in memory.
    pub session_store: Option<session_store::SessionStoreSettings>,
    /// The HTTPS listener and inbound client certificates (`XSROUTER_TLS_*`, `XSROUTER_CLIENT_*`).
    pub inbound_tls: inbound_tls::InboundTls,
    /// The bound Destination service: names the `destinations` variable lacks are looked up there.
    pub destination_service: Option<crate::destination_service::DestinationBinding>,
    /// Front proxies whose client-certificate header is believed (`XSROUTER_TRUSTED_PROXIES`,
    /// `XSROUTER_TRUSTED_PROXY_CERTS`, `XSROUTER_FORWARDED_CLIENT_CERT*`); `None`: nobody's.
    pub trusted_proxies: Option<crate::inbound::trusted_proxy::TrustedProxies>,
    /// Client-certificate headers for destinations: profiles with the Envoy options
    /// (`XSROUTER_XFCC_*`) and the size budget.
    pub client_cert_headers: outgoing_cert_headers::OutgoingCertHeaders,
    /// `websockets.enabled` and `WS_ALLOWED_ORIGINS`.
    pub websockets: crate::websocket::WebsocketSettings,
    /// `replace` of `localDir` routes, by route position in xs-app.json.
    pub replacements: BTreeMap<usize, Arc<crate::replacements::Replacements>>,
    /// `pluginMetadataEndpoint` and the plugins it lists.
    pub plugin_metadata: crate::plugins::PluginMetadata,
    /// `TENANT_HOST_PATTERN` (and `EXTERNAL_REVERSE_PROXY`): the tenant of a request.
    pub tenant_hosts: Option<crate::tenants::TenantHosts>,
    /// Things worth a warning at start-up that do not stop it.
    pub warnings: Vec<String>,
}

impl Runtime {
    /// Loads `xs-app.json` from `workdir` and the rest from `env` (merged with `default-env.json`).
    pub fn load(workdir: &Path, mut env: Environment) -> Result<Self, LoadError> {
        let xs_app_path = workdir.join(XS_APP_FILE);
        let text = match std::fs::read_to_string(&xs_app_path) {
            Ok(text) => text,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
                return Err(LoadError::MissingXsApp(xs_app_path));
            }
            Err(source) => {
                return Err(LoadError::Unreadable {
                    path: xs_app_path,
                    source,
                });
            }
        };
        let workdir = workdir
            .canonicalize()
            .map_err(|source| LoadError::Unreadable {
                path: workdir.to_owned(),
                source,
            })?;
        let mut problems = Problems::default();
        env.merge_default_env(&workdir, &mut problems);
        let settings = Settings::from_env(&env, &mut problems);
        let mut xs_app = xs_app::parse(&text, &xs_app_path.display().to_string(), &mut problems);
        // Plugins go in front of the routes (approuter); their positions follow xs-app.json's.
        let first_plugin = xs_app.routes.iter().map(|r| r.index + 1).max().unwrap_or(0);
        let (plugin_routes, plugin_metadata) = crate::plugins::load(
            &env,
            xs_app.plugin_metadata_endpoint.as_deref(),
            first_plugin,
            &mut problems,
        );
        xs_app.routes.splice(0..0, plugin_routes);
        let mut destinations = match env.non_empty("destinations") {
            Some(text) => destinations::parse(text, &env.origin("destinations"), &mut problems),
            None => BTreeMap::new(),
        };
        let bindings = Bindings::load(&env, &workdir, &mut problems);
        let destination_service =
            crate::destination_service::DestinationBinding::find(&bindings, &env, &mut problems);
        destinations.extend(business_services::destinations(
            &xs_app,
            &bindings,
            &xs_app_path.display().to_string(),
            &mut problems,
        ));
        let response_headers = ResponseHeaderPolicy::from_config(
            settings.as_ref().is_none_or(|s| s.send_x_frame_options),
            env.non_empty("httpHeaders")
                .map(|text| (text, env.origin("httpHeaders"))),
            &xs_app.response_headers,
            &mut problems,
        );

        let error_pages = crate::error_pages::ErrorPages::from_config(
            &xs_app.error_page,
            &workdir,
            &xs_app_path.display().to_string(),
            settings.as_ref().is_some_and(|s| s.return_error_source),
            &mut problems,
        );
        let cors = crate::cors::CorsPolicy::from_config(
            &xs_app.cors,
            &xs_app_path.display().to_string(),
            env.non_empty("CORS").map(|text| (text, env.origin("CORS"))),
            &mut problems,
        );
        let compression = crate::compression::CompressionPolicy::from_config(
            xs_app.compression.as_ref(),
            &xs_app_path.display().to_string(),
            env.non_empty("COMPRESSION")
                .map(|text| (text, env.origin("COMPRESSION"))),
            &mut problems,
        );
        let xsuaa = bindings.auth_service(AuthServiceKind::Xsuaa, &env, &mut problems);
        let tenant_hosts = crate::tenants::TenantHosts::from_env(&env, &mut problems);
        if let Some(binding) = xsuaa
            && crate::tenants::SharedTenantMode::of(binding).is_some()
            && tenant_hosts.is_none()
            && env.non_empty(crate::tenants::TENANT_HOST_PATTERN).is_none()
        {
            problems.push(
                &env.origin(crate::tenants::TENANT_HOST_PATTERN),
                "$",
                format!(
                    "must be set: the XSUAA binding `{}` has tenantmode `shared`",
                    binding.name
                ),
            );
        }
        let ias = bindings.auth_service(AuthServiceKind::Ias, &env, &mut problems);
        let (xsuaa_bound, ias_bound) = (xsuaa.is_some(), ias.is_some());
        let identities = BoundIdentities {
            xsuaa: xsuaa
                .and_then(|b| bound_identity(AuthServiceKind::Xsuaa, b, &env, &mut problems)),
            ias: ias.and_then(|b| bound_identity(AuthServiceKind::Ias, b, &env, &mut problems)),
        };
        let destinations_origin = env.origin("destinations");
        check_certificate_destinations(
            &destinations,
            &identities,
            &destinations_origin,
            &mut problems,
        );
        check_token_bindings(
            &destinations,
            xsuaa_bound,
            ias_bound,
            &destinations_origin,
            &mut problems,
        );
        let extra_roots = extra_roots(&env, &mut problems);
        let session_store = session_store::from_env(&env, &bindings, &mut problems);
        let inbound_tls = inbound_tls::InboundTls::from_env(&env, &mut problems);
        let trusted_proxies = trusted_proxies::from_env(&env, &inbound_tls, &mut problems);
        let client_cert_headers =
            outgoing_cert_headers::OutgoingCertHeaders::from_env(&env, &inbound_tls, &mut problems);
        let websockets =
            crate::websocket::WebsocketSettings::from_config(&xs_app, &env, &mut problems);
        let replacements = replacements_of(
            &xs_app,
            &env,
            &bindings,
            &xs_app_path.display().to_string(),
            &mut problems,
        );

        let mut builder = RouteBuilder {
            origin: xs_app_path.display().to_string(),
            workdir: &workdir,
            destinations: &destinations,
            destination_service_bound: destination_service.is_some(),
            authentication_method: xs_app.authentication_method,
            xsuaa_bound,
            ias_bound,
            host_pattern: settings
                .as_ref()
                .and_then(|s| s.destination_host_pattern.clone()),
            host_pattern_origin: env.origin("DESTINATION_HOST_PATTERN"),
            problems: &mut problems,
        };
        let routes = builder.build(&xs_app);
        builder.check_destination_options(&xs_app);
        let Some(settings) = settings else {
            return Err(problems.into_error().into());
        };
        let runtime = problems.into_result(Runtime {
            workdir,
            settings,
            xs_app,
            routes,
            destinations: destinations
                .into_iter()
                .map(|(k, v)| (k, Arc::new(v)))
                .collect(),
            bindings,
            identities,
            extra_roots,
            env,
            response_headers,
            compression,
            cors,
            error_pages,
            session_store,
            inbound_tls,
            destination_service,
            trusted_proxies,
            client_cert_headers,
            websockets,
            replacements,
            plugin_metadata,
            tenant_hosts,
            warnings: Vec::new(),
        })?;
        Ok(runtime.with_warnings())
    }

    fn with_warnings(mut self) -> Self {
        if let Some(proxies) = &self.trusted_proxies {
            self.warnings.extend(proxies.warnings());
        }
        let mut ignored = Problems::default();
        let mut bound = |kind| {
            self.bindings
                .auth_service(kind, &self.env, &mut ignored)
                .is_some()
        };
        let (xsuaa_bound, ias_bound) = (bound(AuthServiceKind::Xsuaa), bound(AuthServiceKind::Ias));
        let unservable = self
            .routes
            .routes()
            .iter()
            .filter(|r| match r.authentication {
                Some(AuthenticationType::Xsuaa) => !xsuaa_bound,
                Some(AuthenticationType::Ias) => !ias_bound,
                Some(AuthenticationType::Basic) => true,
                Some(AuthenticationType::None) | None => false,
            })
            .count();
        if unservable > 0 {
            self.warnings.push(format!(
                "{unservable} route(s) require an authentication service that is not bound (or `basic`, which is not supported), so they answer 401 (bind XSUAA/IAS, or set \"authenticationType\": \"none\" for public routes)"
            ));
        }
        for d in self.destinations.values().filter(|d| !d.strict_ssl) {
            self.warnings.push(format!(
                "destination `{}` has strictSSL false: its server certificate is not verified",
                d.name
            ));
        }
        // Cloud Foundry passes client certificates through only on `.cert.` domains.
        if self.env.non_empty("VCAP_APPLICATION").is_some() {
            for d in self
                .destinations
                .values()
                .filter(|d| d.forward_auth_certificates)
            {
                let host = d.url.host_str().unwrap_or_default();
                if !host.split('.').any(|label| label == "cert") {
                    self.warnings.push(format!(
                        "destination `{}` forwards the client certificate, but its host `{host}` has no `.cert.` segment: on Cloud Foundry the platform router only passes client certificates on such domains",
                        d.name
                    ));
                }
            }
        }
        self
    }

    pub fn destination(&self, name: &str) -> Option<&Arc<Destination>> {
        self.destinations.get(name)
    }
}

/// The `replace` settings of every route that has them, with values resolved now.
fn replacements_of(
    xs_app: &XsApp,
    env: &Environment,
    bindings: &Bindings,
    origin: &str,
    problems: &mut Problems,
) -> BTreeMap<usize, Arc<crate::replacements::Replacements>> {
    xs_app
        .routes
        .iter()
        .filter_map(|route| {
            let def = route.replace.as_ref()?;
            let path = format!("$.routes[{}].replace", route.index);
            crate::replacements::Replacements::resolve(def, env, bindings, origin, &path, problems)
                .map(|r| (route.index, Arc::new(r)))
        })
        .collect()
}

fn bound_identity(
    kind: AuthServiceKind,
    binding: &bindings::ServiceBinding,
    env: &Environment,
    problems: &mut Problems,
) -> Option<identity::BoundIdentity> {
    match identity::identity_of(kind, binding, env) {
        Ok(found) => found,
        Err(problem) => {
            problems.push(&problem.origin, problem.path, problem.reason);
            None
        }
    }
}

/// A destination that forwards certificates needs a bound identity.
fn check_certificate_destinations(
    destinations: &BTreeMap<String, Destination>,
    identities: &BoundIdentities,
    origin: &str,
    problems: &mut Problems,
) {
    if !identities.is_empty() {
        return;
    }
    for d in destinations
        .values()
        .filter(|d| d.forward_auth_certificates)
    {
        problems.push(
            origin,
            format!("$[{}].forwardAuthCertificates", d.position),
            format!(
                "destination `{}` forwards the router's client certificate, but no bound XSUAA or IAS service has a certificate and key",
                d.name
            ),
        );
    }
}

/// A destination whose token service is a bound service needs that binding.
fn check_token_bindings(
    destinations: &BTreeMap<String, Destination>,
    xsuaa_bound: bool,
    ias_bound: bool,
    origin: &str,
    problems: &mut Problems,
) {
    use destination_auth::{DestinationAuth, TokenServiceRef};
    for d in destinations.values() {
        if let DestinationAuth::OAuth2 {
            service: TokenServiceRef::Binding(kind),
            ..
        } = &d.auth
        {
            let bound = match kind {
                AuthServiceKind::Xsuaa => xsuaa_bound,
                AuthServiceKind::Ias => ias_bound,
            };
            if !bound {
                let what = identity::kind_name(*kind);
                problems.push(
                    origin,
                    format!("$[{}].tokenServiceBinding", d.position),
                    format!("destination `{}` gets its token from the bound {what} service, but no {what} service is bound", d.name),
                );
            }
        }
    }
}

/// `XS_CACERT_PATH`: PEM files (separated by `:`) whose certificates outbound TLS also trusts.
fn extra_roots(env: &Environment, problems: &mut Problems) -> Vec<CertificateDer<'static>> {
    let mut roots = Vec::new();
    let Some(paths) = env.non_empty("XS_CACERT_PATH") else {
        return roots;
    };
    for path in paths.split(':').map(str::trim).filter(|p| !p.is_empty()) {
        let origin = format!("{} ({path})", env.origin("XS_CACERT_PATH"));
        let bytes = match std::fs::read(path) {
            Ok(bytes) => bytes,
            Err(err) => {
                problems.push(&origin, "$", format!("cannot read: {err}"));
                continue;
            }
        };
        match CertificateDer::pem_slice_iter(&bytes).collect::<Result<Vec<_>, _>>() {
            Ok(certs) if !certs.is_empty() => roots.extend(certs),
            Ok(_) => problems.push(&origin, "$", "holds no PEM certificate"),
            Err(err) => problems.push(&origin, "$", format!("not valid PEM: {err}")),
        }
    }
    roots
}

/// Compiles xs-app.json routes against the destinations and bindings.
struct RouteBuilder<'a> {
    origin: String,
    workdir: &'a Path,
    destinations: &'a BTreeMap<String, Destination>,
    /// Unknown destination names are looked up in the Destination service at run time.
    destination_service_bound: bool,
    authentication_method: AuthenticationMethod,
    xsuaa_bound: bool,
    ias_bound: bool,
    host_pattern: Option<String>,
    host_pattern_origin: String,
    problems: &'a mut Problems,
}

impl RouteBuilder<'_> {
    fn build(&mut self, xs_app: &XsApp) -> RouteTable {
        let mut routes = Vec::new();
        for def in &xs_app.routes {
            if let Some(route) = self.route(def.index, def, xs_app) {
                routes.push(route);
            }
        }
        let has_local_dir = xs_app
            .routes
            .iter()
            .any(|r| matches!(r.to, RouteTargetDef::LocalDir(_)));
        let resources = self.workdir.join(DEFAULT_RESOURCES_DIR);
        if !has_local_dir && resources.is_dir() {
            let implicit = RouteSpec {
                position: None,
                source: "^/(.*)$".to_owned(),
                match_case: true,
                target: None,
                to: RouteTo::LocalDir(resources),
                methods: None,
                authentication: self.authentication(None),
                csrf_protection: true,
                scope: None,
                cache_control: None,
                identity_provider: None,
                backend_cookies_to_browser: false,
                dynamic_identity_provider: false,
                client_certificate: None,
            };
            if let Ok(route) = Route::compile(implicit) {
                routes.push(route);
            }
        }
        let host_pattern =
            self.host_pattern
                .as_deref()
                .and_then(|p| match fancy_regex::Regex::new(p) {
                    Ok(regex) => Some(regex),
                    Err(err) => {
                        self.problems.push(
                            &self.host_pattern_origin,
                            "$",
                            format!("invalid regular expression: {err}"),
                        );
                        None
                    }
                });
        RouteTable::new(routes, host_pattern)
    }

    /// The authentication a route requires (`None`: public), resolved as approuter does.
    fn authentication(&self, declared: Option<AuthenticationType>) -> Option<AuthenticationType> {
        if self.authentication_method == AuthenticationMethod::None {
            return None;
        }
        match declared {
            Some(AuthenticationType::None) => None,
            Some(kind) => Some(kind),
            None if !self.xsuaa_bound && self.ias_bound => Some(AuthenticationType::Ias),
            None => Some(AuthenticationType::Xsuaa),
        }
    }

    fn route(&mut self, i: usize, def: &RouteDef, xs_app: &XsApp) -> Option<Route> {
        let (origin, path) = def
            .defined_in
            .clone()
            .unwrap_or_else(|| (self.origin.clone(), format!("$.routes[{i}]")));
        let to = match &def.to {
            RouteTargetDef::Destination(name) => self.destination_ref(name, &origin, &path)?,
            RouteTargetDef::LocalDir(dir) => {
                let full = self.workdir.join(dir);
                match full.canonicalize() {
                    Ok(canonical) if canonical.is_dir() => RouteTo::LocalDir(canonical),
                    _ => {
                        self.problems.push(
                            &origin,
                            format!("{path}.localDir"),
                            format!(
                                "`{dir}` is not a directory under {}",
                                self.workdir.display()
                            ),
                        );
                        return None;
                    }
                }
            }
            RouteTargetDef::Service { name, .. } if name == crate::user_api::SERVICE => {
                RouteTo::UserApi
            }
            RouteTargetDef::Service { name, endpoint } => {
                let endpoint = business_services::endpoint_of(xs_app, name, endpoint.as_deref());
                let key = business_services::service_key(name, endpoint);
                if !self.destinations.contains_key(&key) {
                    return None; // reported by business_services::destinations
                }
                RouteTo::Destination(DestinationRef::Named(key))
            }
        };
        self.check_bound(def.authentication_type, &origin, &path);
        let methods = def.http_methods.as_ref().map(|methods| {
            methods
                .iter()
                .filter_map(|m| Method::from_bytes(m.as_bytes()).ok())
                .collect::<Vec<_>>()
        });
        let spec = RouteSpec {
            position: Some(i),
            source: def.source.pattern.clone(),
            match_case: def.source.match_case,
            target: def.target.clone(),
            to,
            methods,
            authentication: self.authentication(def.authentication_type),
            csrf_protection: def.csrf_protection,
            scope: def.scope.clone(),
            cache_control: def
                .cache_control
                .as_deref()
                .and_then(|c| HeaderValue::from_str(c).ok()),
            identity_provider: def.identity_provider.clone(),
            backend_cookies_to_browser: def.set_backend_session_cookies,
            dynamic_identity_provider: def.dynamic_identity_provider,
            client_certificate: def.client_certificate.clone(),
        };
        match Route::compile(spec) {
            Ok(route) => Some(route),
            Err(reason) => {
                self.problems
                    .push(&origin, format!("{path}.source"), reason);
                None
            }
        }
    }

    /// approuter refuses to start when a route names an authentication service that is not bound.
    fn check_bound(&mut self, declared: Option<AuthenticationType>, origin: &str, path: &str) {
        if self.authentication_method == AuthenticationMethod::None {
            return;
        }
        let missing = match declared {
            Some(AuthenticationType::Xsuaa) if !self.xsuaa_bound => "XSUAA",
            Some(AuthenticationType::Ias) if !self.ias_bound => "IAS",
            _ => return,
        };
        self.problems.push(
            origin,
            format!("{path}.authenticationType"),
            format!("the route requires {missing} login, but no {missing} service is bound"),
        );
    }

    fn destination_ref(&mut self, name: &str, origin: &str, path: &str) -> Option<RouteTo> {
        let at = format!("{path}.destination");
        if name == "*" {
            if self.host_pattern.is_none() {
                self.problems.push(
                    origin,
                    at,
                    "destination `*` needs the DESTINATION_HOST_PATTERN environment variable",
                );
                return None;
            }
            return Some(RouteTo::Destination(DestinationRef::FromHost));
        }
        if let Some(n) = name.strip_prefix('$') {
            return match n.parse::<usize>() {
                Ok(n) if n >= 1 => Some(RouteTo::Destination(DestinationRef::Group(n))),
                _ => {
                    self.problems.push(
                        origin,
                        at,
                        format!("`{name}` is not a capture group reference like `$1`"),
                    );
                    None
                }
            };
        }
        if !self.destinations.contains_key(name) && !self.destination_service_bound {
            self.problems.push(
                origin,
                at,
                format!("unknown destination `{name}`: it is not in the `destinations` environment variable, and no Destination service is bound"),
            );
            return None;
        }
        Some(RouteTo::Destination(DestinationRef::Named(name.to_owned())))
    }

    /// xs-app.json `destinations` entries must name destinations some route uses.
    fn check_destination_options(&mut self, xs_app: &XsApp) {
        let dynamic = xs_app.routes.iter().any(
            |r| matches!(&r.to, RouteTargetDef::Destination(d) if d == "*" || d.starts_with('$')),
        );
        for name in xs_app.destinations.keys() {
            let used = xs_app
                .routes
                .iter()
                .any(|r| matches!(&r.to, RouteTargetDef::Destination(d) if d == name));
            if !used && !dynamic {
                self.problems.push(
                    &self.origin,
                    format!("$.destinations.{name}"),
                    "no route uses this destination",
                );
            }
        }
    }
}
