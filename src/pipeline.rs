//! The request pipeline: request in → path check → welcome redirect → route match →
//! authentication → local file or destination → response headers. One function per step;
//! every refusal is a [`Rejection`].

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use axum::extract::Request;
use axum::response::Response;
use http::{HeaderValue, header};

use crate::auth::{self, Auth, Caller, protection};
use crate::client_timeouts;
use crate::config::Runtime;
use crate::destination_service::{DestinationService, LookupCachePolicy, ServiceDestination};
use crate::inbound::{self, listener::TlsConnection};
use crate::proxy::Forward;
use crate::rejection::Rejection;
use crate::routing::{self, DestinationRef, Lookup, RouteMatch, RouteTo, request_path};
use crate::static_files::{self, StaticRequest};
use crate::telemetry::metrics::{Gauges, Metrics};
use crate::telemetry::{self, RouteInfo};
use crate::tokens::destination::{DestinationTokenError, DestinationTokens};
use crate::tokens::{CachePolicy, TokenError, TokenService};
use crate::upstream::Upstreams;
use crate::websocket;

const X_FORWARDED_PROTO: &str = "x-forwarded-proto";

/// What every request handler shares.
#[derive(Clone)]
pub struct AppState {
    inner: Arc<Shared>,
}

struct Shared {
    runtime: Arc<Runtime>,
    upstreams: Upstreams,
    tokens: Arc<DestinationTokens>,
    /// The bound Destination service, for names the `destinations` variable lacks.
    destination_service: Option<DestinationService>,
    auth: Auth,
    metrics: Metrics,
    /// Open WebSockets by session, closed when their session ends.
    sockets: Arc<websocket::sessions::SessionSockets>,
}

/// Why the request-serving state could not be built from a valid configuration.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Upstream(#[from] crate::upstream::UpstreamError),
    #[error("token service client: {0}")]
    TokenService(#[from] TokenError),
    #[error(transparent)]
    Tokens(#[from] DestinationTokenError),
    #[error(transparent)]
    DestinationService(#[from] crate::destination_service::lookup::LookupBuildError),
    #[error("login: {0}")]
    Login(#[from] crate::tokens::endpoint::EndpointError),
    #[error(transparent)]
    SessionStore(#[from] crate::auth::session::StoreError),
}

impl AppState {
    /// Builds the upstream clients and token service for a loaded runtime.
    pub async fn build(runtime: Runtime) -> Result<Self, StartError> {
        let upstreams = Upstreams::build(&runtime)?;
        let policy = CachePolicy {
            refresh_margin: runtime.settings.jwt_refresh,
            minimum_validity: runtime.settings.minimum_token_validity,
            capacity: runtime.settings.token_cache_size,
        };
        let service = TokenService::new(upstreams.roots().clone(), upstreams.identities(), policy)?;
        let service = Arc::new(service);
        let (store, expired) = auth::session::store_for(&runtime).await?;
        let auth = Auth::build(&runtime, service.clone(), service.plain_client(), store)?;
        let destination_service = match &runtime.destination_service {
            Some(binding) => Some(DestinationService::new(
                binding,
                upstreams.roots(),
                upstreams.identities().clone(),
                service.clone(),
                LookupCachePolicy {
                    ttl: runtime.settings.destination_cache_ttl,
                    refresh_margin: runtime.settings.jwt_refresh,
                    capacity: runtime.settings.token_cache_size,
                },
                runtime.websockets.enabled,
            )?),
            None => None,
        };
        let tokens = Arc::new(DestinationTokens::build(&runtime, service)?);
        let state = Self {
            inner: Arc::new(Shared {
                runtime: Arc::new(runtime),
                upstreams,
                tokens,
                destination_service,
                auth,
                metrics: Metrics::default(),
                sockets: Arc::default(),
            }),
        };
        if let Some(expired) = expired {
            tokio::spawn(logout_timed_out_sessions(state.clone(), expired));
        }
        Ok(state)
    }

    /// Loads the client_credentials tokens in the background (unless switched off).
    pub fn spawn_token_prefetch(&self) {
        if !self.runtime().settings.skip_client_credentials_tokens_load {
            self.inner.tokens.spawn_prefetch(self.runtime());
        }
    }

    pub fn tokens(&self) -> &Arc<DestinationTokens> {
        &self.inner.tokens
    }

    /// The counters the HTTPS listener records client-certificate verification results in.
    pub fn client_cert_counters(
        &self,
    ) -> &Arc<crate::inbound::verify_result::VerificationCounters> {
        &self.inner.metrics.client_certificates
    }

    /// The metrics in the Prometheus text format.
    pub async fn render_metrics(&self) -> String {
        use std::sync::atomic::Ordering;
        let active_sessions = self.inner.auth.active_sessions().await;
        let stats = &self.inner.tokens.service().stats;
        let now = crate::identity::rotation::now_unix();
        let identities = self.inner.upstreams.identities();
        let certificate_expiry = [
            ("xsuaa", crate::config::bindings::AuthServiceKind::Xsuaa),
            ("ias", crate::config::bindings::AuthServiceKind::Ias),
        ]
        .into_iter()
        .filter_map(|(name, kind)| {
            identities
                .get(kind)
                .map(|i| (name, i.current().leaf.seconds_left(now)))
        })
        .collect();
        self.inner.metrics.render(&Gauges {
            token_requests: stats.requests.load(Ordering::Relaxed),
            token_fetches: stats.fetches.load(Ordering::Relaxed),
            token_failures: stats.failures.load(Ordering::Relaxed),
            certificate_expiry,
            active_sessions,
        })
    }

    /// Why the router is not ready to serve (an expired bound certificate), if it is not.
    pub fn not_ready(&self) -> Option<String> {
        let now = crate::identity::rotation::now_unix();
        let identities = self.inner.upstreams.identities();
        [
            crate::config::bindings::AuthServiceKind::Xsuaa,
            crate::config::bindings::AuthServiceKind::Ias,
        ]
        .into_iter()
        .filter_map(|kind| identities.get(kind).map(|i| (kind, i.current())))
        .find(|(_, identity)| identity.leaf.seconds_left(now) <= 0)
        .map(|(kind, identity)| {
            format!(
                "the {} client certificate `{}` has expired",
                crate::identity::kind_name(kind),
                identity.leaf.subject
            )
        })
    }

    pub fn runtime(&self) -> &Runtime {
        &self.inner.runtime
    }

    /// Starts re-reading the bound credentials on the configured interval and on SIGHUP.
    pub fn spawn_credential_watcher(&self) -> tokio::task::JoinHandle<()> {
        let runtime = self.runtime();
        tokio::spawn(crate::identity::rotation::watch(
            self.inner.upstreams.identities().clone(),
            runtime.env.clone(),
            runtime.workdir.clone(),
            runtime.settings.credentials_poll_interval,
        ))
    }
}

/// The router's single handler: every request comes through here.
pub async fn handle(state: AppState, peer: SocketAddr, mut request: Request) -> Response {
    let started = Instant::now();
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let correlation = telemetry::correlation_id(request.headers());
    let encoding = state
        .runtime()
        .compression
        .negotiate(&method, request.headers());
    let statistics = crate::sap_statistics::prepare(&mut request);
    let idle_exemption = request
        .extensions()
        .get::<client_timeouts::IdleExemption>()
        .cloned();
    // INCOMING_REQUEST_TIMEOUT: the body must arrive in time, else 408.
    let body_timed_out = match state.runtime().settings.incoming_request_timeout {
        Some(timeout) => {
            let body = std::mem::take(request.body_mut());
            let (body, timed_out) = client_timeouts::RequestDeadline::wrap(
                body,
                timeout,
                tokio::time::Instant::from_std(started),
            );
            *request.body_mut() = body;
            timed_out
        }
        None => None,
    };
    // Backends see the same id (approuter's header name).
    request
        .headers_mut()
        .insert(telemetry::CORRELATION_ID, correlation.clone());
    // The request's client certificate: from the router's own handshake, or from a trusted
    // proxy's header. Every client-certificate header is stripped here; destinations only get
    // the ones the router builds itself.
    let (mut parts, body) = request.into_parts();
    let client = inbound::EffectiveClientCert::resolve(
        state.runtime().trusted_proxies.as_ref(),
        peer.ip(),
        parts.extensions.get::<TlsConnection>(),
        &mut parts.headers,
    )
    .await;
    let mut request = Request::from_parts(parts, body);
    if request.extensions().get::<TlsConnection>().is_some()
        && !request.headers().contains_key(X_FORWARDED_PROTO)
    {
        // Over the router's own TLS: login redirects and secure cookies see HTTPS.
        request
            .headers_mut()
            .insert(X_FORWARDED_PROTO, HeaderValue::from_static("https"));
    }
    // Cross-origin rules come first, as in approuter: a preflight is answered here.
    let (cors_answer, cors_headers) = state
        .runtime()
        .cors
        .evaluate(request.method(), request.uri(), request.headers())
        .split();
    let routed = match (cors_answer, &client) {
        (Some(answer), _) => answer,
        // Boxed: the pipeline's future is large, and this one is moved on every poll path.
        (None, Ok(client)) => Box::pin(route_request(&state, peer, request, client)).await,
        (None, Err(err)) => {
            tracing::info!(%peer, error = %err, "malformed client certificate from a trusted proxy");
            Err(Rejection::BadRequest(
                "Bad Request: malformed forwarded client certificate",
            ))
        }
    };
    let mut response = match routed {
        Ok(response) => response,
        Err(rejection) => rejection.into_response(),
    };
    if body_timed_out.is_some_and(|t| t.is_set()) {
        response = client_timeouts::request_timeout_response();
    }
    if response.status() == http::StatusCode::SWITCHING_PROTOCOLS
        && let Some(exemption) = &idle_exemption
    {
        exemption.exempt();
    }
    response = state.runtime().error_pages.apply(&path, response);
    if let Some(cors) = cors_headers {
        cors.apply(response.headers_mut());
    }
    state
        .runtime()
        .response_headers
        .apply(response.headers_mut());
    response
        .headers_mut()
        .insert(telemetry::REQUEST_ID, correlation.clone());
    let info = response
        .extensions()
        .get::<RouteInfo>()
        .cloned()
        .unwrap_or_default();
    let status = response.status().as_u16();
    state
        .inner
        .metrics
        .record_request(info.route, info.destination.clone(), status);
    let bytes = response
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    telemetry::access_log::record(&telemetry::access_log::Entry {
        method: &method,
        path: &path,
        route: info.route,
        destination: info.destination.as_deref(),
        status,
        duration_ms: started.elapsed().as_millis() as u64,
        bytes,
        request_id: correlation.to_str().unwrap_or("-"),
    });
    if statistics {
        crate::sap_statistics::finish(started, &mut response);
    }
    state.runtime().compression.apply(encoding, response)
}

async fn route_request(
    state: &AppState,
    peer: SocketAddr,
    request: Request,
    client: &inbound::EffectiveClientCert,
) -> Result<Response, Rejection> {
    let runtime = state.runtime();
    crate::limits::check(&runtime.settings.limits, &request)?;
    crate::host_header::check(request.version(), request.headers())?;
    let uri = request.uri();
    request_path::check(uri.path())
        .map_err(|_| Rejection::BadRequest("Bad Request: invalid path"))?;
    let upgrade = websocket::is_upgrade(request.method(), request.version(), request.headers());
    if upgrade {
        let over_tls = request.extensions().get::<TlsConnection>().is_some();
        runtime.websockets.admit(request.headers(), over_tls)?;
    }
    let auth = &state.inner.auth;
    if auth.is_callback(uri.path()) {
        return Ok(Box::pin(auth.callback(uri, request.headers())).await);
    }
    if auth.is_logout(uri.path()) {
        let session = auth.session_id(request.headers()).map(str::to_owned);
        let (response, ended) =
            Box::pin(auth.logout(request.method(), uri, request.headers())).await;
        if let (Some(id), Some(_)) = (&session, &ended) {
            state.inner.sockets.end(id);
        }
        if let Some(user) = ended {
            tokio::spawn(logout_backends(state.clone(), user.access_token));
        }
        return Ok(response);
    }
    if let Some(response) = runtime.plugin_metadata.answer(request.method(), uri.path()) {
        return Ok(response);
    }
    // `/` redirects to the welcome file; a CSRF token fetch is served the welcome file's route
    // instead, so that it gets its token (as approuter).
    let welcome = runtime
        .xs_app
        .welcome_file
        .as_deref()
        .filter(|_| uri.path() == "/");
    if let Some(welcome) = welcome
        && !protection::wants_csrf_token(request.headers())
    {
        return Ok(welcome_redirect(welcome));
    }
    let (url, sap_idp) = routing::take_sap_idp(uri.path_and_query().map_or("/", |pq| pq.as_str()));
    let url = match welcome {
        Some(welcome) => format!("/{}", welcome.trim_start_matches('/')),
        None => url,
    };
    let host = request
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| uri.host())
        .map(str::to_owned);
    let found = match runtime
        .routes
        .lookup(request.method(), &url, host.as_deref())
    {
        Lookup::Found(found) => found,
        Lookup::MethodNotAllowed(allow) => return Err(Rejection::MethodNotAllowed { allow }),
        Lookup::NoDestinationForHost | Lookup::NotFound => {
            return Err(Rejection::NotFound("Not Found"));
        }
    };
    // The route's client-certificate rule comes before login: no certificate, no redirect.
    if let Some(rule) = &found.route.client_certificate
        && let Err(refusal) = rule.check(client)
    {
        tracing::debug!(route = found.route.position, status = %client.status(), "client certificate refused by the route");
        return Err(Rejection::Forbidden(refusal.reason()));
    }
    let caller = match found.route.authentication {
        None => None,
        Some(kind) => {
            let idp = sap_idp
                .as_deref()
                .filter(|_| found.route.dynamic_identity_provider);
            // Boxed, like every step off the plain proxy path: the request future stays small.
            match Box::pin(auth.authenticate(
                request.method(),
                uri,
                request.headers(),
                found.route,
                kind,
                idp,
            ))
            .await
            {
                Ok(caller) => Some(caller),
                // A WebSocket client cannot follow a login redirect: it needs a session.
                Err(response) if upgrade && response.status().is_redirection() => {
                    return Err(Rejection::Unauthorized("Unauthorized"));
                }
                Err(response) => return Ok(response),
            }
        }
    };
    let mut csrf_token = None;
    if let Some(caller) = &caller {
        if let Some(rule) = &found.route.scope
            && !protection::scope_allows(
                rule,
                request.method(),
                &caller.claims,
                auth.xsappname(caller.provider),
            )
        {
            return Ok(auth::forbidden());
        }
        if let Some(session) = &caller.session {
            let safe = protection::is_safe(request.method());
            if found.route.csrf_protection
                && !safe
                && !protection::csrf_matches(
                    request.headers(),
                    session.csrf_token.as_ref().map(|t| t.expose()),
                )
            {
                return Ok(auth::csrf_required());
            }
            if safe && protection::wants_csrf_token(request.headers()) {
                csrf_token = Box::pin(auth.csrf_token(caller)).await;
            }
        }
    }
    // Only configured destinations label logs and metrics: a name taken from the URL (`$1`)
    // could otherwise grow the metrics without bound. Their shared name costs no allocation.
    let info = RouteInfo {
        route: found.route.position,
        destination: found
            .destination
            .as_deref()
            .and_then(|name| runtime.destination(name))
            .map(|d| d.metric_name.clone()),
    };
    let mut response = dispatch(state, peer, found, request, caller.as_ref(), client)
        .await
        .unwrap_or_else(Rejection::into_response);
    response.extensions_mut().insert(info);
    if let Some(token) = csrf_token
        && let Ok(value) = HeaderValue::from_str(token.expose())
    {
        response.headers_mut().insert("x-csrf-token", value);
    }
    Ok(response)
}

async fn dispatch(
    state: &AppState,
    peer: SocketAddr,
    found: RouteMatch<'_>,
    request: Request,
    caller: Option<&Caller>,
    client_cert: &inbound::EffectiveClientCert,
) -> Result<Response, Rejection> {
    let runtime = state.runtime();
    // Admitted in `route_request` (websockets enabled, origin allowed).
    let upgrade = websocket::is_upgrade(request.method(), request.version(), request.headers());
    match &found.route.to {
        RouteTo::UserApi => crate::user_api::answer(&found.url, caller),
        RouteTo::LocalDir(_) if upgrade => Err(Rejection::NotFound(
            "Not Found: websockets need a destination route",
        )),
        RouteTo::LocalDir(root) => {
            let (parts, _body) = request.into_parts();
            Ok(Box::pin(static_files::serve(StaticRequest {
                root,
                url: &found.url,
                request_path: parts.uri.path(),
                request_query: parts.uri.query(),
                method: &parts.method,
                headers: &parts.headers,
                cache_control: found.route.cache_control.as_ref(),
                replace: found
                    .route
                    .position
                    .and_then(|i| runtime.replacements.get(&i))
                    .map(|r| r.as_ref()),
            }))
            .await)
        }
        RouteTo::Destination(_) => {
            let name = found.destination.as_deref().unwrap_or_default();
            let user = caller.map(|c| &c.token);
            // The `destinations` variable wins; other names go to the Destination service.
            let configured = runtime.destination(name).zip(
                state
                    .inner
                    .upstreams
                    .client(name, found.route.authentication),
            );
            let from_service = match configured {
                Some(_) => None,
                None => Some(Box::pin(service_destination(state, &found, name, user)).await?),
            };
            let (destination, client, service_authorization) = match (configured, &from_service) {
                (Some((destination, client)), _) => (destination.as_ref(), client, None),
                (None, Some(looked_up)) => {
                    let client = looked_up.client(found.route.authentication).ok_or(
                        Rejection::BadGateway("Bad Gateway: the destination is not usable"),
                    )?;
                    let authorization = looked_up.authorization().cloned();
                    (&looked_up.destination, client, authorization)
                }
                (None, None) => return Err(Rejection::NotFound("Not Found: unknown destination")),
            };
            let authorization = match service_authorization {
                Some(authorization) => Some(authorization),
                None if destination.needs_authorization() => Box::pin(
                    state.inner.tokens.authorization_for_tenant(
                        destination,
                        user,
                        runtime
                            .tenant_hosts
                            .as_ref()
                            .and_then(|t| t.tenant_of(request.headers())),
                    ),
                )
                .await
                .map_err(|err| token_rejection(destination, &err))?,
                None => None,
            };
            let (mut parts, body) = request.into_parts();
            if let Some(looked_up) = &from_service {
                looked_up.add_headers(&mut parts.headers);
            }
            let body = crate::limits::limit_body(body, runtime.settings.limits.max_body_size);
            let tls = parts.extensions.get::<TlsConnection>();
            let scheme = if tls.is_some() { "https" } else { "http" };
            // Certificate headers (including a `NONE` status) go out for requests over the
            // router's TLS or from a trusted proxy; plain requests from others get none.
            let client_cert_headers = if tls.is_some() || client_cert.via_trusted_proxy() {
                client_cert_headers(runtime, client_cert)
            } else {
                Vec::new()
            };
            let session = caller.and_then(|c| c.session.as_ref());
            let keep_cookies = session.is_some() && !found.route.backend_cookies_to_browser;
            let backend_cookies = session
                .filter(|_| keep_cookies)
                .and_then(|s| s.backend_cookies.get(name))
                .and_then(auth::backend_cookies::cookie_header);
            let upstream_started = Instant::now();
            let statistics = crate::sap_statistics::requested(&parts.headers);
            let forward = Forward {
                destination,
                client,
                url: &found.url,
                peer,
                scheme,
                public_route: found.route.authentication.is_none(),
                session_cookie: state.inner.auth.session_cookie(),
                authorization,
                backend_cookies,
                client_cert_headers,
            };
            let response = match client.websocket().filter(|_| upgrade) {
                Some(websocket) => {
                    let guard = caller.and_then(|c| c.session.as_ref()).map(|s| {
                        websocket::sessions::SocketGuard::new(&state.inner.sockets, &s.id)
                    });
                    Box::pin(forward.upgrade(parts, websocket, guard)).await
                }
                None => forward.send(parts, body).await,
            };
            state
                .inner
                .metrics
                .record_upstream(&destination.metric_name, upstream_started.elapsed());
            let mut response = response?;
            if statistics {
                response
                    .extensions_mut()
                    .insert(crate::sap_statistics::BackendStarted(upstream_started));
            }
            if keep_cookies && let Some(caller) = caller {
                Box::pin(state.inner.auth.keep_backend_cookies(
                    caller,
                    name,
                    response.headers_mut(),
                ))
                .await;
            }
            Ok(response)
        }
    }
}

/// The client-certificate headers for destinations, built from the request's effective client
/// certificate (the router's own handshake, or a trusted proxy's forwarded one) and its
/// verification result (`SUCCESS`, `FAILED:<reason>`, `NONE`) in the configured profiles. If
/// they cannot be built (over the size budget), none are sent: the destination sees no
/// certificate rather than a partial one.
fn client_cert_headers(
    runtime: &Runtime,
    client: &inbound::EffectiveClientCert,
) -> Vec<(http::HeaderName, HeaderValue)> {
    let certificate = client.certificate();
    let context = inbound::EmitContext {
        certificate,
        verification: client.verification().clone(),
        connection_certificate: client.connection_certificate(),
        incoming_xfcc: client.incoming_xfcc(),
        now: crate::identity::rotation::now_unix(),
    };
    let outgoing = &runtime.client_cert_headers;
    match inbound::emit(&outgoing.profiles, &context, &outgoing.options) {
        Ok(emitted) => emitted.headers,
        Err(err) => {
            tracing::warn!(error = %err, subject = certificate.map(|c| c.subject()), "client-certificate headers not sent");
            Vec::new()
        }
    }
}

/// A session that timed out logs its user out of the backends, as a logout does.
async fn logout_timed_out_sessions(state: AppState, mut expired: auth::session::ExpiredSessions) {
    while let Some(session) = expired.recv().await {
        state.inner.sockets.end(&session.id);
        if let Some(user) = &session.user {
            tracing::info!("session timed out; logging the user out of the backends");
            logout_backends(state.clone(), user.access_token.clone()).await;
        }
    }
}

/// Calls each destination's `logoutPath` (xs-app.json `destinations`) with the user's token, so
/// backends can end their own sessions. Failures are logged; the user is logged out regardless.
async fn logout_backends(state: AppState, token: crate::secret::Secret) {
    let runtime = state.runtime();
    for (name, options) in &runtime.xs_app.destinations {
        let Some(path) = &options.logout_path else {
            continue;
        };
        let looked_up;
        let (destination, client) = match (
            runtime.destination(name),
            state.inner.upstreams.client(name, None),
        ) {
            (Some(destination), Some(client)) => (destination.as_ref(), client),
            // Not in `destinations`: the Destination service's, if one is bound.
            _ => {
                let Some(service) = &state.inner.destination_service else {
                    continue;
                };
                looked_up = match service.resolve(name, false, Some(&token)).await {
                    Ok(found) => found,
                    Err(err) => {
                        tracing::warn!(destination = %name, error = %err, "backend logout skipped");
                        continue;
                    }
                };
                let Some(client) = looked_up.client(None) else {
                    continue;
                };
                (&looked_up.destination, client)
            }
        };
        let method = match options.logout_method.unwrap_or_default() {
            crate::config::xs_app::LogoutMethod::Get => http::Method::GET,
            crate::config::xs_app::LogoutMethod::Post => http::Method::POST,
        };
        let request = client
            .http()
            .request(method, client.url_for(path))
            .bearer_auth(token.expose())
            .timeout(destination.timeout);
        match request.send().await {
            Ok(response) => {
                tracing::info!(destination = %name, status = response.status().as_u16(), "backend logout")
            }
            Err(err) => tracing::warn!(destination = %name, error = %err, "backend logout failed"),
        }
    }
}

/// A destination the `destinations` variable does not define, from the Destination service
/// (`$n` and `*` routes only reach destinations marked `HTML5.DynamicDestination`).
async fn service_destination(
    state: &AppState,
    found: &RouteMatch<'_>,
    name: &str,
    user: Option<&crate::secret::Secret>,
) -> Result<Arc<ServiceDestination>, Rejection> {
    let Some(service) = &state.inner.destination_service else {
        tracing::debug!(destination = %name, "no such destination");
        return Err(Rejection::NotFound("Not Found: unknown destination"));
    };
    let dynamic = !matches!(
        found.route.to,
        RouteTo::Destination(DestinationRef::Named(_))
    );
    service.resolve(name, dynamic, user).await.map_err(|err| {
        let rejection = err.rejection();
        if rejection.status().is_server_error() {
            tracing::warn!(destination = %name, error = %err, "Destination service destination not served");
        } else {
            tracing::debug!(destination = %name, error = %err, "Destination service destination not served");
        }
        rejection
    })
}

/// No token, no request: 401 when a user is needed, 502 when the token service failed.
fn token_rejection(destination: &crate::config::Destination, err: &TokenError) -> Rejection {
    match err {
        TokenError::UserRequired => Rejection::Unauthorized("Unauthorized"),
        TokenError::TenantRequired => Rejection::BadRequest("Bad Request: no tenant in the host"),
        other => {
            tracing::warn!(destination = %destination.name, error = %other, "no token for the destination");
            Rejection::BadGateway("Bad Gateway: no token for the destination")
        }
    }
}

/// `/` redirects to the welcome file; the query is dropped, as in approuter.
fn welcome_redirect(welcome: &str) -> Response {
    // Always a local path: a welcome file may not send users to another host.
    auth::redirect(&format!("/{}", welcome.trim_start_matches('/')), &[])
}
