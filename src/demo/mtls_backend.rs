//! The demo's mTLS-only backend (the target of a `forwardAuthCertificates` destination): it
//! accepts only connections that present a certificate from the demo CA and answers with what it
//! saw — the client certificate, and whether a bearer token arrived, who issued it and its claims
//! (checked against the demo token service's key). The token itself is never echoed.

use std::net::SocketAddr;

use axum::Extension;
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use http::header;
use serde_json::{Value, json};

use super::jwt::JwtVerifier;
use super::mtls_server::{self, PeerCertificate};
use super::pki::DemoCa;

/// Starts the backend on an ephemeral loopback port.
pub async fn start(ca: &DemoCa, tokens: JwtVerifier) -> Result<SocketAddr, super::DemoError> {
    let app = axum::Router::new().fallback(describe).with_state(tokens);
    let config = ca.mtls_server_config("demo mTLS backend")?;
    Ok(mtls_server::start(config, app, "demo mTLS backend").await?)
}

async fn describe(
    State(tokens): State<JwtVerifier>,
    Extension(peer): Extension<PeerCertificate>,
    request: Request,
) -> Response {
    let cert = &peer.0;
    let bearer = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        });
    let token = match bearer {
        None => json!({"present": false}),
        Some(token) => match tokens.verify(token) {
            Ok(claims) => json!({
                "present": true,
                "signature": "valid (demo token service)",
                "issuer": claims.get("iss").cloned().unwrap_or(Value::Null),
                "claims": claims,
            }),
            Err(err) => json!({"present": true, "signature": err.to_string()}),
        },
    };
    let header_text = |name: &str| {
        request
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let body = json!({
        "backend": "xsrouter demo mTLS backend",
        "method": request.method().as_str(),
        "url": request.uri().path_and_query().map_or("/", |p| p.as_str()),
        "client_certificate": {
            "subject": cert.subject(),
            "issuer": cert.issuer(),
            "serial": cert.serial_hex(),
            "not_after_unix": cert.not_after(),
            "sha256": cert.sha256_hex(),
        },
        "bearer_token": token,
        "x-correlationid": header_text("x-correlationid"),
    });
    (
        [(header::CONTENT_TYPE, "application/json")],
        format!("{body:#}\n"),
    )
        .into_response()
}
