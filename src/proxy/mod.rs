//! Forwarding a request to a destination and streaming the answer back.
//!
//! Both bodies stream: nothing is buffered beyond what hyper holds in flight. Upstream failures
//! map to 502 (refused, reset, garbage) and 504 (idle beyond the destination `timeout`).

pub mod headers;
pub mod idle;

use std::net::SocketAddr;

use axum::body::Body;
use axum::response::Response;
use futures_util::StreamExt;
use http::request::Parts;
use http_body::Body as _;

use crate::config::Destination;
use crate::rejection::Rejection;
use crate::secret::Secret;
use crate::upstream::{ForwardClient, UpstreamClient};
use headers::{CookiePolicy, ForwardedFrom, RequestHeaderRules, remove_hop_by_hop};
use idle::{Activity, IdleTimeoutBody, TouchBody, until_idle};

/// One request on its way to a destination.
pub struct Forward<'a> {
    pub destination: &'a Destination,
    pub client: &'a UpstreamClient,
    /// The URL (path and query) after target rewriting.
    pub url: &'a str,
    pub peer: SocketAddr,
    pub scheme: &'static str,
    /// Whether the route is public (the client's `Authorization` then passes through).
    pub public_route: bool,
    pub session_cookie: &'a str,
    /// The `Authorization` the destination gets (a token, Basic credentials), if any.
    pub authorization: Option<Secret>,
    /// Session cookies this destination set earlier, kept by the router (`name=value; ...`).
    pub backend_cookies: Option<String>,
    /// Client-certificate headers built by the router (the request's own were stripped).
    pub client_cert_headers: Vec<(http::HeaderName, http::HeaderValue)>,
}

impl Forward<'_> {
    /// Applies the forwarding header rules to the request going upstream: hop-by-hop and
    /// router-only headers out, `x-forwarded-*`, the router's client-certificate headers, kept
    /// backend cookies and the destination's `Authorization` in.
    pub(crate) fn prepare_headers(&mut self, parts: &mut Parts) -> Result<(), Rejection> {
        let destination = self.destination;
        let host = parts.headers.get(http::header::HOST).cloned().or_else(|| {
            parts
                .uri
                .authority()
                .and_then(|a| http::HeaderValue::from_str(a.as_str()).ok())
        });
        let rules = RequestHeaderRules {
            preserve_host: destination.preserve_host_header,
            set_x_forwarded: destination.set_x_forwarded_headers,
            drop_authorization: !self.public_route,
            cookies: CookiePolicy {
                session_cookie: self.session_cookie,
            },
        };
        rules.apply(
            &mut parts.headers,
            &ForwardedFrom {
                peer: self.peer,
                scheme: self.scheme,
                host: host.as_ref(),
                path: parts.uri.path(),
            },
        );
        // After the forwarding rules, which may drop `x-forwarded-*`: these are the router's own.
        for (name, value) in std::mem::take(&mut self.client_cert_headers) {
            parts.headers.insert(name, value);
        }
        if let Some(cookies) = &self.backend_cookies {
            let merged = match parts
                .headers
                .get(http::header::COOKIE)
                .and_then(|v| v.to_str().ok())
            {
                Some(client) => format!("{client}; {cookies}"),
                None => cookies.clone(),
            };
            if let Ok(value) = http::HeaderValue::from_str(&merged) {
                parts.headers.insert(http::header::COOKIE, value);
            }
        }
        if let Some(authorization) = &self.authorization {
            let value = authorization
                .header_value()
                .ok_or(Rejection::BadGateway("Bad Gateway: unusable token"))?;
            parts.headers.insert(http::header::AUTHORIZATION, value);
        }
        Ok(())
    }

    /// Sends the request and streams the answer back: through the destination's pooled
    /// hyper-util client, or through reqwest when the destination is behind a forward proxy.
    pub async fn send(mut self, mut parts: Parts, body: Body) -> Result<Response, Rejection> {
        self.prepare_headers(&mut parts)?;
        let (status, headers, body) = match self.client.forward() {
            Some(forward) => {
                let response = self.send_direct(forward, parts, body).await?;
                let (parts, body) = response.into_parts();
                let body = Body::new(IdleTimeoutBody::new(body, self.destination.timeout));
                (parts.status, parts.headers, body)
            }
            None => {
                let response = Box::pin(self.send_reqwest(parts, body)).await?;
                let response: http::Response<reqwest::Body> = response.into();
                let (parts, body) = response.into_parts();
                let body = Body::new(IdleTimeoutBody::new(body, self.destination.timeout));
                (parts.status, parts.headers, body)
            }
        };
        let mut response = Response::new(body);
        *response.status_mut() = status;
        *response.headers_mut() = headers;
        remove_hop_by_hop(response.headers_mut());
        // errorPage and RETURN_ERROR_SOURCE leave backend answers alone.
        response
            .extensions_mut()
            .insert(crate::error_pages::UpstreamAnswer);
        Ok(response)
    }

    /// The hyper-util path: the received request goes on with its new URI and headers.
    async fn send_direct(
        &self,
        client: &ForwardClient,
        parts: Parts,
        body: Body,
    ) -> Result<http::Response<hyper::body::Incoming>, Rejection> {
        let destination = self.destination;
        let uri = http::Uri::try_from(self.client.url_for(self.url))
            .map_err(|_| Rejection::BadRequest("Bad Request: invalid target URL"))?;
        let activity = Activity::new();
        // A request without a body can be sent again if the first attempt failed on a pooled
        // connection that the upstream had just closed.
        let retry = body
            .is_end_stream()
            .then(|| (parts.method.clone(), uri.clone(), parts.headers.clone()));
        let body = match retry {
            Some(_) => body,
            None => Body::new(TouchBody::new(body, activity.clone())),
        };
        let request = upstream_request(parts.method, uri, parts.headers, body);
        let mut sent = until_idle(client.request(request), &activity, destination.timeout).await;
        if let (Ok(Err(err)), Some((method, uri, headers))) = (&sent, retry)
            && may_retry_direct(&method, err)
        {
            tracing::debug!(destination = %destination.name, error = %error_chain(err), "retrying once on a fresh connection");
            let request = upstream_request(method, uri, headers, Body::empty());
            sent = until_idle(client.request(request), &activity, destination.timeout).await;
        }
        outcome(destination, sent, |err| is_timeout(err))
    }

    /// The reqwest path, for destinations behind a forward proxy.
    async fn send_reqwest(&self, parts: Parts, body: Body) -> Result<reqwest::Response, Rejection> {
        let destination = self.destination;
        let url = self.client.url_for(self.url);
        let url = reqwest::Url::parse(&url)
            .map_err(|_| Rejection::BadRequest("Bad Request: invalid target URL"))?;
        let mut request = reqwest::Request::new(parts.method, url);
        *request.headers_mut() = parts.headers;

        let activity = Activity::new();
        if !body.is_end_stream() {
            let touch = activity.clone();
            let stream = body.into_data_stream().map(move |chunk| {
                touch.touch();
                chunk
            });
            *request.body_mut() = Some(reqwest::Body::wrap_stream(stream));
        }

        let retry = request.try_clone();
        let execute = |request| {
            until_idle(
                self.client.http().execute(request),
                &activity,
                destination.timeout,
            )
        };
        let mut sent = execute(request).await;
        if let (Ok(Err(err)), Some(again)) = (&sent, retry)
            && may_retry(again.method(), err)
        {
            tracing::debug!(destination = %destination.name, error = %crate::telemetry::http_error::without_url(err), "retrying once on a fresh connection");
            sent = execute(again).await;
        }
        outcome(destination, sent, reqwest::Error::is_timeout)
    }
}

/// The answer of an attempt, or its failure as the client sees it: 504 when the upstream stayed
/// idle past the destination timeout or a connect timed out, 413 over the body limit, else 502.
fn outcome<R, E: std::error::Error + 'static>(
    destination: &Destination,
    sent: Result<Result<R, E>, idle::IdleTimeout>,
    timed_out: impl Fn(&E) -> bool,
) -> Result<R, Rejection> {
    match sent {
        Err(_) => {
            tracing::warn!(destination = %destination.name, timeout_ms = destination.timeout.as_millis() as u64, "upstream timed out");
            Err(Rejection::GatewayTimeout)
        }
        Ok(Err(err)) => {
            tracing::warn!(destination = %destination.name, error = %error_chain(&err), "upstream request failed");
            Err(if crate::limits::is_body_limit(&err) {
                Rejection::PayloadTooLarge
            } else if timed_out(&err) {
                Rejection::GatewayTimeout
            } else {
                Rejection::BadGateway("Bad Gateway")
            })
        }
        Ok(Ok(response)) => Ok(response),
    }
}

/// The request for the upstream (HTTP/1.1 on the wire unless the connection negotiated h2).
fn upstream_request(
    method: http::Method,
    uri: http::Uri,
    headers: http::HeaderMap,
    body: Body,
) -> http::Request<Body> {
    let mut request = http::Request::new(body);
    *request.method_mut() = method;
    *request.uri_mut() = uri;
    *request.headers_mut() = headers;
    request
}

/// Whether the idle timeout or a connect timeout ended the attempt.
fn is_timeout(err: &(dyn std::error::Error + 'static)) -> bool {
    let mut current = Some(err);
    while let Some(err) = current {
        if let Some(io) = err.downcast_ref::<std::io::Error>()
            && io.kind() == std::io::ErrorKind::TimedOut
        {
            return true;
        }
        if err
            .downcast_ref::<hyper::Error>()
            .is_some_and(hyper::Error::is_timeout)
        {
            return true;
        }
        current = err.source();
    }
    false
}

/// [`may_retry`] for the hyper-util path.
fn may_retry_direct(method: &http::Method, err: &hyper_util::client::legacy::Error) -> bool {
    !is_timeout(err) && (err.is_connect() || is_idempotent(method))
}

fn is_idempotent(method: &http::Method) -> bool {
    use http::Method;
    matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::PUT | Method::DELETE | Method::TRACE
    )
}

/// Whether a failed attempt may be repeated: the request never left (connect phase, including a
/// pooled connection found closed), or the method is idempotent and the failure was not a timeout.
fn may_retry(method: &http::Method, err: &reqwest::Error) -> bool {
    if err.is_timeout() {
        return false;
    }
    err.is_connect() || is_idempotent(method)
}

/// The error and its causes on one line; an HTTP client error without its URL (whose query
/// may carry secrets).
pub(crate) fn error_chain(err: &(dyn std::error::Error + 'static)) -> String {
    if let Some(http) = err.downcast_ref::<reqwest::Error>() {
        return crate::telemetry::http_error::without_url(http);
    }
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
