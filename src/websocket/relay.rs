//! The WebSocket relay: the upgrade request goes to the destination with the same header rules,
//! token and client certificate as any forwarded request (over the destination's HTTP/1.1-only
//! client); when the destination answers 101, the client gets that 101 and, once both sides
//! have switched protocols, bytes are copied both ways until either side closes.
//!
//! The relay works on the byte stream, not on frames: pings, pongs, close codes, subprotocols
//! and extensions negotiated with the destination pass through unchanged. A destination that
//! refuses the upgrade has its answer (status, headers, body) passed to the client. A socket
//! opened with a session is closed when that session ends (logout, idle timeout).

use axum::body::Body;
use axum::response::Response;
use http::request::Parts;
use http::{HeaderValue, Method, StatusCode, Version, header};
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;

use crate::proxy::Forward;
use crate::proxy::headers::remove_hop_by_hop;
use crate::proxy::idle::IdleTimeoutBody;
use crate::rejection::Rejection;
use crate::websocket::sessions::SocketGuard;

impl Forward<'_> {
    /// Upgrades the request at the destination and relays the two connections. `client` is the
    /// destination's WebSocket (HTTP/1.1) client.
    pub async fn upgrade(
        mut self,
        mut parts: Parts,
        client: &reqwest::Client,
        session: Option<SocketGuard>,
    ) -> Result<Response, Rejection> {
        let destination = self.destination;
        let incoming = parts
            .extensions
            .remove::<OnUpgrade>()
            .ok_or(Rejection::BadRequest(
                "Bad Request: this connection cannot be upgraded",
            ))?;
        self.prepare_headers(&mut parts)?;
        // The forwarding rules removed the hop-by-hop headers; these two are the upgrade itself.
        parts
            .headers
            .insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        parts
            .headers
            .insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        let url = reqwest::Url::parse(&self.client.url_for(self.url))
            .map_err(|_| Rejection::BadRequest("Bad Request: invalid target URL"))?;
        let mut request = reqwest::Request::new(Method::GET, url);
        *request.version_mut() = Version::HTTP_11;
        *request.headers_mut() = parts.headers;

        let upstream = match tokio::time::timeout(destination.timeout, client.execute(request))
            .await
        {
            Err(_) => {
                tracing::warn!(destination = %destination.name, "websocket upgrade timed out");
                return Err(Rejection::GatewayTimeout);
            }
            Ok(Err(err)) => {
                tracing::warn!(destination = %destination.name, error = %crate::proxy::error_chain(&err), "websocket upgrade failed");
                return Err(Rejection::BadGateway("Bad Gateway"));
            }
            Ok(Ok(response)) => response,
        };

        if upstream.status() != StatusCode::SWITCHING_PROTOCOLS {
            tracing::info!(destination = %destination.name, status = upstream.status().as_u16(), "destination refused the websocket upgrade");
            let upstream: http::Response<reqwest::Body> = upstream.into();
            let (mut head, body) = upstream.into_parts();
            remove_hop_by_hop(&mut head.headers);
            let mut response =
                Response::new(Body::new(IdleTimeoutBody::new(body, destination.timeout)));
            *response.status_mut() = head.status;
            *response.headers_mut() = head.headers;
            return Ok(response);
        }

        let mut headers = upstream.headers().clone();
        remove_hop_by_hop(&mut headers);
        let outgoing = upstream.upgrade().await.map_err(|err| {
            tracing::warn!(destination = %destination.name, error = %crate::proxy::error_chain(&err), "websocket upgrade failed");
            Rejection::BadGateway("Bad Gateway")
        })?;
        let name = destination.name.clone();
        tokio::spawn(async move {
            let incoming = match incoming.await {
                Ok(incoming) => incoming,
                Err(err) => {
                    tracing::debug!(destination = %name, error = %err, "client left before the websocket opened");
                    return;
                }
            };
            let mut incoming = TokioIo::new(incoming);
            let mut outgoing = outgoing;
            let relay = tokio::io::copy_bidirectional(&mut incoming, &mut outgoing);
            let ended = async {
                match &session {
                    Some(guard) => guard.ended.cancelled().await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                relayed = relay => match relayed {
                    Ok((up, down)) => {
                        tracing::debug!(destination = %name, bytes_up = up, bytes_down = down, "websocket closed")
                    }
                    Err(err) => {
                        tracing::debug!(destination = %name, error = %err, "websocket ended with an error")
                    }
                },
                // Both connections are dropped: the session that opened the socket is over.
                () = ended => tracing::debug!(destination = %name, "websocket closed: session ended"),
            }
            drop(session);
        });

        let mut response = Response::new(Body::empty());
        *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
        *response.headers_mut() = headers;
        response
            .headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        response
            .headers_mut()
            .insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        Ok(response)
    }
}
