//! The request pipeline: request in → path check → welcome redirect → route match →
//! authentication → local file or destination → response headers. One function per step;
//! every refusal is a [`Rejection`].

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::response::Response;
use http::{HeaderValue, StatusCode, header};

use crate::config::Runtime;
use crate::proxy::Forward;
use crate::rejection::Rejection;
use crate::routing::{Lookup, RouteMatch, RouteTo, request_path};
use crate::static_files::{self, StaticRequest};
use crate::upstream::Upstreams;

/// The session cookie name (`SESSION_COOKIE_NAME` arrives with sessions).
const SESSION_COOKIE: &str = "JSESSIONID";

/// What every request handler shares.
#[derive(Clone)]
pub struct AppState {
    inner: Arc<Shared>,
}

struct Shared {
    runtime: Arc<Runtime>,
    upstreams: Upstreams,
    scheme: &'static str,
}

impl AppState {
    pub fn new(runtime: Arc<Runtime>, upstreams: Upstreams) -> Self {
        Self {
            inner: Arc::new(Shared {
                runtime,
                upstreams,
                scheme: "http",
            }),
        }
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
pub async fn handle(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    request: Request,
) -> Response {
    let started = Instant::now();
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let mut response = match route_request(&state, peer, request).await {
        Ok(response) => response,
        Err(rejection) => rejection.into_response(),
    };
    state
        .runtime()
        .response_headers
        .apply(response.headers_mut());
    tracing::info!(
        target: "xsrouter::access",
        %method,
        path = %path,
        status = response.status().as_u16(),
        duration_ms = started.elapsed().as_millis() as u64,
        "request"
    );
    response
}

async fn route_request(
    state: &AppState,
    peer: SocketAddr,
    request: Request,
) -> Result<Response, Rejection> {
    let runtime = state.runtime();
    let uri = request.uri();
    request_path::check(uri.path())
        .map_err(|_| Rejection::BadRequest("Bad Request: invalid path"))?;
    if uri.path() == "/"
        && let Some(welcome) = &runtime.xs_app.welcome_file
    {
        return Ok(welcome_redirect(welcome));
    }
    let url = uri
        .path_and_query()
        .map_or("/", |pq| pq.as_str())
        .to_owned();
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
    if found.route.authentication.is_some() {
        return Err(Rejection::Unauthorized(
            "Unauthorized: login is not available",
        ));
    }
    dispatch(state, peer, found, request).await
}

async fn dispatch(
    state: &AppState,
    peer: SocketAddr,
    found: RouteMatch<'_>,
    request: Request,
) -> Result<Response, Rejection> {
    let runtime = state.runtime();
    match &found.route.to {
        RouteTo::LocalDir(root) => {
            let (parts, _body) = request.into_parts();
            Ok(static_files::serve(StaticRequest {
                root,
                url: &found.url,
                request_path: parts.uri.path(),
                request_query: parts.uri.query(),
                method: &parts.method,
                headers: &parts.headers,
                cache_control: found.route.cache_control.as_ref(),
            })
            .await)
        }
        RouteTo::Destination(_) => {
            let name = found.destination.as_deref().unwrap_or_default();
            let client = state
                .inner
                .upstreams
                .client(name, found.route.authentication);
            let (Some(destination), Some(client)) = (runtime.destination(name), client) else {
                tracing::debug!(destination = %name, "no such destination");
                return Err(Rejection::NotFound("Not Found: unknown destination"));
            };
            let (parts, body) = request.into_parts();
            Forward {
                destination,
                client,
                url: &found.url,
                peer,
                scheme: state.inner.scheme,
                public_route: found.route.authentication.is_none(),
                session_cookie: SESSION_COOKIE,
            }
            .send(parts, body)
            .await
        }
        RouteTo::Service { .. } => Err(Rejection::BadGateway(
            "Bad Gateway: service routes are not supported",
        )),
    }
}

/// `/` redirects to the welcome file; the query is dropped, as in approuter.
fn welcome_redirect(welcome: &str) -> Response {
    // Always a local path: a welcome file may not send users to another host.
    let location = format!("/{}", welcome.trim_start_matches('/'));
    let mut response = Response::new(Body::empty());
    *response.status_mut() = StatusCode::FOUND;
    if let Ok(value) = HeaderValue::from_str(&location) {
        response.headers_mut().insert(header::LOCATION, value);
    }
    response
}
