//! Authentication: browser login (authorization code + state + PKCE) at the bound XSUAA or IAS,
//! sessions, service-to-router tokens (`x-approuter-authorization`), token refresh, scopes,
//! CSRF protection and logout.
//!
//! The pipeline asks this module, for each request on an authenticated route, who the caller
//! is ([`Auth::authenticate`]); the answer is a [`Caller`] or a finished response (a redirect to
//! login, 401, 403).
//!
//! Multi-tenancy (`TENANT_HOST_PATTERN`): the tenant is the one the request's host names. With a
//! shared-tenant-mode XSUAA binding, login, code redemption, refresh, token validation and logout
//! use that tenant's subdomain of XSUAA ([`provider::Provider::for_tenant`]), and a host that names
//! no tenant gets 400 where a user is needed. Whatever the binding, a session serves only the
//! tenant it was logged in for: on another tenant's host it is as if there were none (a new
//! login), and a service token (`x-approuter-authorization`) is accepted only from the host's
//! tenant.

pub mod backend_cookies;
pub mod jwt;
pub mod login;
pub mod protection;
pub mod provider;
pub mod redis_store;
pub mod session;

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::response::Response;
use http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use serde_json::Value;

use crate::config::Runtime;
use crate::config::bindings::AuthServiceKind;
use crate::config::xs_app::{AuthenticationType, LogoutMethod};
use crate::identity::rotation::now_unix;
use crate::rejection::Rejection;
use crate::routing::Route;
use crate::secret::Secret;
use crate::tenants::TenantHosts;
use crate::tokens::endpoint::EndpointError;
use crate::tokens::{Grant, TokenRequest, TokenService};
use login::{LOGIN_COOKIE, LoginRequest, PendingLogins, clear_login_cookie, local_return_url};
use provider::Provider;
use session::{CookiePolicy, Session, SessionStore, StoreError, UserSession, cookie_value};

pub const DEFAULT_CALLBACK: &str = "/login/callback";
const APPROUTER_AUTHORIZATION: &str = "x-approuter-authorization";

/// Who made a request on an authenticated route.
#[derive(Debug, Clone)]
pub struct Caller {
    pub token: Secret,
    pub claims: Arc<Value>,
    /// The session, for browser callers (service callers with a header token have none).
    pub session: Option<Session>,
    pub provider: AuthServiceKind,
}

/// Logout as configured in xs-app.json `logout`.
#[derive(Debug, Clone)]
struct LogoutSettings {
    endpoint: String,
    page: Option<String>,
    method: LogoutMethod,
    csrf: bool,
}

/// The authentication layer.
#[derive(Debug)]
pub struct Auth {
    store: Arc<dyn SessionStore>,
    cookie: CookiePolicy,
    xsuaa: Option<Arc<Provider>>,
    ias: Option<Arc<Provider>>,
    logins: PendingLogins,
    tokens: Arc<TokenService>,
    callback_path: String,
    logout: Option<LogoutSettings>,
    use_state: bool,
    use_pkce: bool,
    refresh_margin: Duration,
    /// `TENANT_HOST_PATTERN`: the tenant of a request.
    tenant_hosts: Option<TenantHosts>,
}

impl Auth {
    /// Sessions in the store, when the store can count them cheaply (the in-memory one).
    pub async fn active_sessions(&self) -> Option<u64> {
        self.store.active_sessions().await
    }

    pub fn build(
        runtime: &Runtime,
        tokens: Arc<TokenService>,
        http: reqwest::Client,
        store: Arc<dyn SessionStore>,
    ) -> Result<Self, EndpointError> {
        let settings = &runtime.settings;
        let provider = |kind| -> Result<Option<Arc<Provider>>, EndpointError> {
            let mut scratch = crate::config::Problems::default();
            let Some(binding) = runtime
                .bindings
                .auth_service(kind, &runtime.env, &mut scratch)
            else {
                return Ok(None);
            };
            let wanted = match kind {
                AuthServiceKind::Xsuaa => AuthenticationType::Xsuaa,
                AuthServiceKind::Ias => AuthenticationType::Ias,
            };
            let needed = runtime
                .routes
                .routes()
                .iter()
                .any(|r| r.authentication == Some(wanted));
            match Provider::from_binding(
                kind,
                binding,
                runtime.identities.get(kind).is_some(),
                runtime.tenant_hosts.is_some(),
                http.clone(),
            ) {
                Ok(provider) => Ok(Some(Arc::new(provider))),
                // Only an error if some route logs users in with this service.
                Err(err) if needed => Err(err),
                Err(err) => {
                    tracing::debug!(error = %err, "binding not usable for login; no route needs it");
                    Ok(None)
                }
            }
        };
        let logout = runtime.xs_app.logout.as_ref().and_then(|l| {
            l.logout_endpoint.as_ref().map(|endpoint| LogoutSettings {
                endpoint: endpoint.clone(),
                page: l.logout_page.clone(),
                method: l.logout_method.unwrap_or_default(),
                csrf: l.csrf_protection.unwrap_or(true),
            })
        });
        Ok(Self {
            logins: PendingLogins::new(&store),
            store,
            cookie: CookiePolicy {
                name: settings.session_cookie_name.clone(),
                secure: settings.secure_session_cookie,
                same_site: settings.cookie_same_site.clone(),
                partitioned: settings.cookie_partitioned,
            },
            xsuaa: provider(AuthServiceKind::Xsuaa)?,
            ias: provider(AuthServiceKind::Ias)?,
            tokens,
            callback_path: runtime
                .xs_app
                .login
                .as_ref()
                .and_then(|l| l.callback_endpoint.clone())
                .unwrap_or_else(|| DEFAULT_CALLBACK.to_owned()),
            logout,
            use_state: settings.state_parameter && runtime.xs_app.state_protection.unwrap_or(true),
            use_pkce: settings.pkce && runtime.xs_app.state_protection.unwrap_or(true),
            refresh_margin: settings.jwt_refresh,
            tenant_hosts: runtime.tenant_hosts.clone(),
        })
    }

    /// The tenant the request's host names, when `TENANT_HOST_PATTERN` is set.
    fn tenant_of<'h>(&self, headers: &'h HeaderMap) -> Option<&'h str> {
        self.tenant_hosts.as_ref()?.tenant_of(headers)
    }

    pub fn session_cookie(&self) -> &str {
        &self.cookie.name
    }

    /// The session id the request's cookie names, if any.
    pub fn session_id<'h>(&self, headers: &'h HeaderMap) -> Option<&'h str> {
        self.cookie.session_id(headers)
    }

    fn provider(&self, kind: AuthServiceKind) -> Option<&Arc<Provider>> {
        match kind {
            AuthServiceKind::Xsuaa => self.xsuaa.as_ref(),
            AuthServiceKind::Ias => self.ias.as_ref(),
        }
    }

    /// The provider a route authenticates with.
    fn provider_for(&self, kind: AuthenticationType) -> Option<&Arc<Provider>> {
        match kind {
            AuthenticationType::Ias => self.ias.as_ref(),
            AuthenticationType::Xsuaa => self.xsuaa.as_ref(),
            AuthenticationType::Basic | AuthenticationType::None => None,
        }
    }

    /// The application name that `$XSAPPNAME` in scopes stands for.
    pub fn xsappname(&self, kind: AuthServiceKind) -> Option<&str> {
        self.provider(kind).and_then(|p| p.xsappname())
    }

    pub fn is_callback(&self, path: &str) -> bool {
        path == self.callback_path
    }

    pub fn is_logout(&self, path: &str) -> bool {
        self.logout.as_ref().is_some_and(|l| l.endpoint == path)
    }

    /// Who is calling, for a route that requires `kind`; or the response that ends the request.
    pub async fn authenticate(
        &self,
        method: &Method,
        uri: &Uri,
        headers: &HeaderMap,
        route: &Route,
        kind: AuthenticationType,
        dynamic_idp: Option<&str>,
    ) -> Result<Caller, Response> {
        let Some(provider) = self.provider_for(kind) else {
            // `basic` authentication is not supported; fail closed.
            return Err(Rejection::Unauthorized("Unauthorized").into_response());
        };
        let tenant = self.tenant_of(headers);
        let Some(provider) = provider.for_tenant(tenant).await else {
            return Err(no_tenant());
        };
        if let Some(value) = headers.get(APPROUTER_AUTHORIZATION) {
            return self.service_caller(&provider, value).await;
        }
        match self.session_caller(headers, tenant).await {
            Ok(Some(caller)) => return Ok(caller),
            Ok(None) => {}
            Err(err) => {
                tracing::warn!(error = %err, "session store unavailable");
                return Err(
                    Rejection::ServiceUnavailable("Service Unavailable: session store")
                        .into_response(),
                );
            }
        }
        let xhr = headers
            .get("x-requested-with")
            .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"XMLHttpRequest"));
        if xhr || *method != Method::GET {
            return Err(Rejection::Unauthorized("Unauthorized").into_response());
        }
        let idp = dynamic_idp.or(route.identity_provider.as_deref());
        self.start_login(&provider, uri, headers, idp, tenant).await
    }

    /// `x-approuter-authorization: Bearer <JWT>`: a service calling with its own token.
    async fn service_caller(
        &self,
        provider: &Provider,
        value: &HeaderValue,
    ) -> Result<Caller, Response> {
        let token = value
            .to_str()
            .ok()
            .and_then(|v| {
                v.strip_prefix("Bearer ")
                    .or_else(|| v.strip_prefix("bearer "))
            })
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| {
                Rejection::BadRequest(
                    "Bad Request: x-approuter-authorization must be a Bearer token",
                )
                .into_response()
            })?;
        let token = Secret::new(token);
        match provider.validate(&token).await {
            Ok(claims) => Ok(Caller {
                token,
                claims,
                session: None,
                provider: provider.kind,
            }),
            Err(err) => {
                tracing::info!(reason = %err, tenant = provider.tenant.as_deref(), "service token refused");
                Err(Rejection::Unauthorized("Unauthorized").into_response())
            }
        }
    }

    /// The caller of a live session of `tenant`; refreshes the login token shortly before it
    /// expires.
    async fn session_caller(
        &self,
        headers: &HeaderMap,
        tenant: Option<&str>,
    ) -> Result<Option<Caller>, StoreError> {
        let Some(id) = self.cookie.session_id(headers) else {
            return Ok(None);
        };
        let Some(mut session) = self.store.load(id).await? else {
            return Ok(None);
        };
        if !session_serves(&session, tenant) {
            tracing::info!(
                tenant,
                "a session of another tenant was presented; it is not used on this host"
            );
            return Ok(None);
        }
        Ok(self.caller_of(&mut session).await.map(|caller| Caller {
            session: Some(session),
            ..caller
        }))
    }

    /// The caller of a loaded session, refreshing the login token when it is about to expire.
    async fn caller_of(&self, session: &mut Session) -> Option<Caller> {
        let user = session.user.clone()?;
        let now = now_unix();
        let mut user = user;
        if now >= user.refresh_at {
            match self.refresh(&user).await {
                Some(refreshed) => {
                    user = refreshed;
                    session.user = Some(user.clone());
                    if let Err(err) = self.store.save(session.clone()).await {
                        tracing::warn!(error = %err, "refreshed session could not be stored");
                    }
                }
                None if user.expires_at <= now => return None,
                None => {}
            }
        }
        Some(Caller {
            token: user.access_token.clone(),
            claims: user.claims.clone(),
            provider: user.provider,
            session: None,
        })
    }

    async fn refresh(&self, user: &UserSession) -> Option<UserSession> {
        let refresh_token = user.refresh_token.clone()?;
        let provider = self
            .provider(user.provider)?
            .for_tenant(user.tenant.as_deref())
            .await?;
        let request = TokenRequest::new(Grant::RefreshToken { refresh_token });
        let token = match self.tokens.fetch_uncached(&provider.token, &request).await {
            Ok(token) => token,
            Err(err) => {
                tracing::warn!(error = %err, "login token refresh failed");
                return None;
            }
        };
        let claims = provider.validate(&token.access_token).await.ok()?;
        Some(user_session(
            provider.kind,
            token,
            claims,
            self.refresh_margin,
            user.tenant.clone(),
        ))
    }

    async fn start_login(
        &self,
        provider: &Provider,
        uri: &Uri,
        headers: &HeaderMap,
        idp: Option<&str>,
        tenant: Option<&str>,
    ) -> Result<Caller, Response> {
        let endpoints = provider.endpoints().await.map_err(|err| {
            tracing::warn!(error = %err, "identity provider discovery failed");
            Rejection::BadGateway("Bad Gateway: identity provider unavailable").into_response()
        })?;
        let https = is_https(headers);
        let start = self
            .logins
            .start(LoginRequest {
                authorize_url: &endpoints.authorize,
                client_id: &provider.client_id,
                redirect_uri: format!("{}{}", public_origin(headers, uri), self.callback_path),
                return_to: local_return_url(uri.path_and_query().map_or("/", |pq| pq.as_str())),
                use_state: self.use_state,
                use_pkce: self.use_pkce,
                identity_provider: idp,
                provider: provider.kind,
                tenant,
                secure_cookie: self.cookie.secure.unwrap_or(https),
            })
            .await
            .map_err(|err| {
                tracing::warn!(error = %err, "the login could not be stored");
                Rejection::ServiceUnavailable("Service Unavailable").into_response()
            })?;
        Err(redirect(&start.location, &[start.cookie]))
    }

    /// The login callback: redeem the code, create the session, return to the original URL.
    pub async fn callback(&self, uri: &Uri, headers: &HeaderMap) -> Response {
        let query: std::collections::HashMap<String, String> = uri
            .query()
            .map(|q| {
                url::form_urlencoded::parse(q.as_bytes())
                    .into_owned()
                    .collect()
            })
            .unwrap_or_default();
        let Some(nonce) = cookie_value(headers, LOGIN_COOKIE) else {
            return Rejection::BadRequest("Bad Request: no login in progress").into_response();
        };
        let pending = match self.logins.take(nonce).await {
            Ok(Some(pending)) => pending,
            Ok(None) => {
                return Rejection::Unauthorized("Unauthorized: login expired or unknown")
                    .into_response();
            }
            Err(err) => {
                tracing::warn!(error = %err, "the login could not be read from the session store");
                return Rejection::ServiceUnavailable("Service Unavailable").into_response();
            }
        };
        if pending.tenant.as_deref() != self.tenant_of(headers) {
            tracing::info!("a login callback arrived on another tenant's host than its start");
            return Rejection::Unauthorized("Unauthorized: login started for another tenant")
                .into_response();
        }
        if let Some(error) = query.get("error") {
            tracing::info!(error = %error, "identity provider refused the login");
            return match error.as_str() {
                "access_denied" => forbidden(),
                "temporarily_unavailable" => {
                    Rejection::ServiceUnavailable("Service Unavailable").into_response()
                }
                _ => Rejection::BadGateway("Bad Gateway: login failed").into_response(),
            };
        }
        if pending.state.is_some() && query.get("state") != pending.state.as_ref() {
            return Rejection::Unauthorized("Unauthorized: state mismatch").into_response();
        }
        let Some(code) = query.get("code") else {
            return Rejection::BadRequest("Bad Request: no authorization code").into_response();
        };
        let Some(provider) = self.provider(pending.provider) else {
            return Rejection::Unauthorized("Unauthorized").into_response();
        };
        let Some(provider) = provider.for_tenant(pending.tenant.as_deref()).await else {
            return no_tenant();
        };
        let request = TokenRequest::new(Grant::AuthorizationCode {
            code: Secret::new(code.as_str()),
            redirect_uri: pending.redirect_uri.clone(),
            code_verifier: pending.verifier.clone(),
        });
        let token = match self.tokens.fetch_uncached(&provider.token, &request).await {
            Ok(token) => token,
            Err(err) => {
                tracing::warn!(error = %err, "login code could not be redeemed");
                return Rejection::Unauthorized("Unauthorized: login failed").into_response();
            }
        };
        let claims = match provider.validate(&token.access_token).await {
            Ok(claims) => claims,
            Err(err) => {
                tracing::warn!(error = %err, "login token refused");
                return Rejection::Unauthorized("Unauthorized: login failed").into_response();
            }
        };
        let mut session = Session::new();
        session.user = Some(user_session(
            provider.kind,
            token,
            claims,
            self.refresh_margin,
            pending.tenant,
        ));
        let id = session.id.clone();
        if let Err(err) = self.store.save(session).await {
            tracing::warn!(error = %err, "session could not be stored");
            return Rejection::ServiceUnavailable("Service Unavailable").into_response();
        }
        let https = is_https(headers);
        let mut response = redirect(
            &pending.return_to,
            &[
                self.cookie.set_cookie(Some(&id), https),
                clear_login_cookie(),
            ],
        );
        response.headers_mut().insert(
            header::CACHE_CONTROL,
            HeaderValue::from_static("no-cache, no-store, must-revalidate"),
        );
        response
    }

    /// Keeps the session cookies of a backend response in the caller's session (and takes them
    /// out of the response).
    pub async fn keep_backend_cookies(
        &self,
        caller: &Caller,
        destination: &str,
        headers: &mut HeaderMap,
    ) {
        let Some(session) = &caller.session else {
            return;
        };
        // Load the current state: another request of the session may have changed it.
        let Ok(Some(mut current)) = self.store.load(&session.id).await else {
            return;
        };
        let jar = current
            .backend_cookies
            .entry(destination.to_owned())
            .or_default();
        if backend_cookies::absorb(jar, headers) {
            if let Err(err) = self.store.save(current).await {
                tracing::warn!(error = %err, "backend cookies could not be stored");
            }
        }
    }

    /// Hands out (and remembers) the session's CSRF token for `x-csrf-token: fetch`.
    pub async fn csrf_token(&self, caller: &Caller) -> Option<Secret> {
        let mut session = caller.session.clone()?;
        if let Some(token) = &session.csrf_token {
            return Some(token.clone());
        }
        let token = Secret::new(session::random_token(24));
        session.csrf_token = Some(token.clone());
        self.store.save(session).await.ok()?;
        Some(token)
    }

    /// Ends the session and sends the browser to the identity provider's logout. Returns the
    /// ended session's user, whose backends are to be logged out too.
    pub async fn logout(
        &self,
        method: &Method,
        uri: &Uri,
        headers: &HeaderMap,
    ) -> (Response, Option<UserSession>) {
        let Some(settings) = &self.logout else {
            return (Rejection::NotFound("Not Found").into_response(), None);
        };
        let expected = match settings.method {
            LogoutMethod::Get => Method::GET,
            LogoutMethod::Post => Method::POST,
        };
        if *method != expected {
            return (
                Rejection::MethodNotAllowed {
                    allow: expected.to_string(),
                }
                .into_response(),
                None,
            );
        }
        let tenant = self.tenant_of(headers);
        // Another tenant's session is not this host's to end.
        let session = match self.cookie.session_id(headers) {
            Some(id) => self
                .store
                .load(id)
                .await
                .ok()
                .flatten()
                .filter(|s| session_serves(s, tenant)),
            None => None,
        };
        if expected == Method::POST
            && settings.csrf
            && !protection::csrf_matches(
                headers,
                session
                    .as_ref()
                    .and_then(|s| s.csrf_token.as_ref())
                    .map(Secret::expose),
            )
        {
            return (csrf_required(), None);
        }
        let https = is_https(headers);
        let origin = public_origin(headers, uri);
        let back = format!(
            "{origin}{}",
            local_return_url(settings.page.as_deref().unwrap_or("/"))
        );
        let Some(session) = session else {
            return (
                redirect(&back, &[self.cookie.set_cookie(None, https)]),
                None,
            );
        };
        let _ = self.store.delete(&session.id).await;
        let provider = match session.user.as_ref() {
            Some(user) => match self.provider(user.provider) {
                Some(provider) => provider
                    .for_tenant(user.tenant.as_deref())
                    .await
                    .map(|p| (user, p)),
                None => None,
            },
            None => None,
        };
        let location = match provider {
            Some((user, provider)) => match provider.endpoints().await {
                Ok(endpoints) => match (provider.kind, &endpoints.end_session) {
                    (AuthServiceKind::Xsuaa, Some(end)) => {
                        let query = url::form_urlencoded::Serializer::new(String::new())
                            .append_pair("redirect", &back)
                            .append_pair("client_id", &provider.client_id)
                            .finish();
                        format!("{end}?{query}")
                    }
                    (AuthServiceKind::Ias, Some(end)) => {
                        let mut query = url::form_urlencoded::Serializer::new(String::new());
                        query.append_pair("post_logout_redirect_uri", &back);
                        if let Some(id_token) = &user.id_token {
                            query.append_pair("id_token_hint", id_token.expose());
                        }
                        format!("{end}?{}", query.finish())
                    }
                    (_, None) => back,
                },
                Err(_) => back,
            },
            None => back,
        };
        (
            redirect(&location, &[self.cookie.set_cookie(None, https)]),
            session.user,
        )
    }
}

/// A session's user from a fresh login token. The token is renewed `margin` before it expires,
/// but never earlier than halfway through its life, so short-lived tokens are not refreshed on
/// every request.
fn user_session(
    provider: AuthServiceKind,
    token: crate::tokens::Token,
    claims: Arc<Value>,
    margin: Duration,
    tenant: Option<String>,
) -> UserSession {
    let now = now_unix();
    let expires_at = claims["exp"]
        .as_i64()
        .unwrap_or_else(|| now + token.lifetime.as_secs() as i64);
    let lifetime = (expires_at - now).max(0);
    let refresh_at = expires_at - (margin.as_secs() as i64).min(lifetime / 2);
    UserSession {
        access_token: token.access_token,
        refresh_token: token.refresh_token,
        id_token: token.id_token,
        claims,
        expires_at,
        refresh_at,
        provider,
        tenant,
    }
}

/// Whether a session may serve a request of `tenant`: a logged-in user's session serves only the
/// tenant it was logged in for (without `TENANT_HOST_PATTERN` both are `None`).
fn session_serves(session: &Session, tenant: Option<&str>) -> bool {
    session
        .user
        .as_ref()
        .is_none_or(|user| user.tenant.as_deref() == tenant)
}

/// 400 for a host that names no tenant where logins are per tenant.
fn no_tenant() -> Response {
    Rejection::BadRequest("Bad Request: no tenant in the host").into_response()
}

/// Whether the client reached the platform over HTTPS (the platform router says so).
pub fn is_https(headers: &HeaderMap) -> bool {
    headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.split(',')
                .next()
                .is_some_and(|p| p.trim().eq_ignore_ascii_case("https"))
        })
}

/// `scheme://host` of the router as the client sees it.
fn public_origin(headers: &HeaderMap, uri: &Uri) -> String {
    let scheme = if is_https(headers) { "https" } else { "http" };
    let host = headers
        .get("x-forwarded-host")
        .or_else(|| headers.get(header::HOST))
        .and_then(|h| h.to_str().ok())
        .map(|h| h.split(',').next().unwrap_or(h).trim().to_owned())
        .or_else(|| uri.authority().map(|a| a.to_string()))
        .unwrap_or_else(|| "localhost".to_owned());
    format!("{scheme}://{host}")
}

/// A 302 to `location`, setting `cookies`.
pub fn redirect(location: &str, cookies: &[String]) -> Response {
    let mut response = Response::new(Body::empty());
    *response.status_mut() = StatusCode::FOUND;
    if let Ok(value) = HeaderValue::from_str(location) {
        response.headers_mut().insert(header::LOCATION, value);
    }
    for cookie in cookies {
        if let Ok(value) = HeaderValue::from_str(cookie) {
            response.headers_mut().append(header::SET_COOKIE, value);
        }
    }
    response
}

pub fn forbidden() -> Response {
    let mut response = Response::new(Body::from("Forbidden\n"));
    *response.status_mut() = StatusCode::FORBIDDEN;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

/// 403 with `x-csrf-token: Required`.
pub fn csrf_required() -> Response {
    let mut response = forbidden();
    response
        .headers_mut()
        .insert("x-csrf-token", HeaderValue::from_static("Required"));
    response
}
