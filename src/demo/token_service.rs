//! The demo's XSUAA-compatible token service: `POST /oauth/token` with the client_credentials
//! grant, reachable only over mutual TLS (as XSUAA's `certurl`). The client is authenticated by
//! its certificate — it must be the one bound to the `client_id` — and gets an ES256 JWT whose
//! keys `/token_keys` publishes.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::Extension;
use axum::body::Bytes;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http::{StatusCode, header};
use serde_json::{Value, json};

use super::jwt::JwtSigner;
use super::mtls_server::{self, PeerCertificate};
use super::pki::DemoCa;

/// How long issued tokens live.
const TOKEN_LIFETIME_SECONDS: u64 = 3600;

/// The client the token service knows: its id, the certificate bound to it, its application.
pub struct RegisteredClient {
    pub client_id: String,
    pub certificate_der: Vec<u8>,
    pub xsappname: String,
}

struct Issuer {
    client: RegisteredClient,
    signer: JwtSigner,
    /// `https://127.0.0.1:<port>`, known once the listener is bound.
    url: std::sync::OnceLock<String>,
    issued: AtomicU64,
}

/// A running demo token service.
pub struct DemoTokenService {
    pub addr: SocketAddr,
    issuer: Arc<Issuer>,
}

impl DemoTokenService {
    pub async fn start(
        ca: &DemoCa,
        client: RegisteredClient,
        signer: JwtSigner,
    ) -> Result<Self, super::DemoError> {
        let issuer = Arc::new(Issuer {
            client,
            signer,
            url: std::sync::OnceLock::new(),
            issued: AtomicU64::new(0),
        });
        let app = axum::Router::new()
            .route("/oauth/token", post(token))
            .route("/token_keys", get(token_keys))
            .with_state(issuer.clone());
        let config = ca.mtls_server_config("demo token service")?;
        let addr = mtls_server::start(config, app, "demo token service").await?;
        let _ = issuer.url.set(format!("https://{addr}"));
        Ok(Self { addr, issuer })
    }

    /// The base URL (`certurl` and `url` of the binding).
    pub fn url(&self) -> String {
        format!("https://{}", self.addr)
    }

    /// How many tokens were issued so far.
    pub fn issued(&self) -> u64 {
        self.issuer.issued.load(Ordering::Relaxed)
    }
}

fn oauth_error(status: StatusCode, error: &str, description: &str) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        json!({"error": error, "error_description": description}).to_string(),
    )
        .into_response()
}

async fn token(
    State(issuer): State<Arc<Issuer>>,
    Extension(peer): Extension<PeerCertificate>,
    body: Bytes,
) -> Response {
    let mut grant_type = None;
    let mut client_id = None;
    for (key, value) in url::form_urlencoded::parse(&body) {
        match key.as_ref() {
            "grant_type" => grant_type = Some(value.into_owned()),
            "client_id" => client_id = Some(value.into_owned()),
            _ => {}
        }
    }
    if grant_type.as_deref() != Some("client_credentials") {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            "the demo token service issues client_credentials tokens only",
        );
    }
    let client = &issuer.client;
    if client_id.as_deref() != Some(client.client_id.as_str()) {
        return oauth_error(StatusCode::UNAUTHORIZED, "invalid_client", "unknown client");
    }
    if peer.0.leaf_der() != client.certificate_der.as_slice() {
        tracing::info!(
            subject = peer.0.subject(),
            "demo token service: certificate not bound to the client"
        );
        return oauth_error(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            "the client certificate is not bound to this client",
        );
    }
    let base = issuer.url.get().map_or("", String::as_str);
    let now = crate::identity::rotation::now_unix();
    let jti = uuid::Uuid::new_v4().simple().to_string();
    let claims = json!({
        "jti": jti,
        "iss": format!("{base}/oauth/token"),
        "sub": client.client_id,
        "client_id": client.client_id,
        "cid": client.client_id,
        "azp": client.client_id,
        "aud": [client.client_id, client.xsappname],
        "grant_type": "client_credentials",
        "scope": ["uaa.resource", format!("{}.Read", client.xsappname)],
        "zid": "xsrouter-demo",
        "iat": now,
        "exp": now + TOKEN_LIFETIME_SECONDS as i64,
        "ext_attr": {"enhancer": "XSUAA", "subaccountid": "xsrouter-demo"},
        // RFC 8705: the token is bound to the client certificate it was issued over.
        "cnf": {"x5t#S256": URL_SAFE_NO_PAD.encode(peer.0.sha256())},
    });
    let access_token = match issuer.signer.sign(&claims, &format!("{base}/token_keys")) {
        Ok(token) => token,
        Err(err) => {
            return oauth_error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "server_error",
                &err.to_string(),
            );
        }
    };
    issuer.issued.fetch_add(1, Ordering::Relaxed);
    tracing::info!(client_id = %client.client_id, jti = %jti, "demo token service issued a token");
    let body: Value = json!({
        "access_token": access_token,
        "token_type": "bearer",
        "expires_in": TOKEN_LIFETIME_SECONDS,
        "scope": claims["scope"].as_array().map(|s| s.iter().filter_map(Value::as_str).collect::<Vec<_>>().join(" ")),
        "jti": jti,
    });
    (
        StatusCode::OK,
        [
            (header::CONTENT_TYPE, "application/json"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        body.to_string(),
    )
        .into_response()
}

async fn token_keys(State(issuer): State<Arc<Issuer>>) -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        issuer.signer.jwks().to_string(),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::demo::pki::ClientIdentity;
    use rustls::pki_types::PrivateKeyDer;
    use rustls::pki_types::pem::PemObject;

    fn client_with(ca: &DemoCa, identity: &ClientIdentity) -> reqwest::Client {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(ca.certificate_der()).expect("root");
        let key = PrivateKeyDer::from_pem_slice(identity.key_pem.as_bytes()).expect("key");
        let config = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots)
        .with_client_auth_cert(vec![identity.certificate_der.clone()], key)
        .expect("client auth");
        reqwest::Client::builder()
            .no_proxy()
            .tls_backend_preconfigured(config)
            .build()
            .expect("client")
    }

    #[tokio::test]
    async fn tokens_only_for_the_bound_certificate_and_the_client_credentials_grant() {
        let ca = DemoCa::new().expect("ca");
        let bound = ca.client("bound").expect("client");
        let other = ca.client("other").expect("client");
        let signer = JwtSigner::generate().expect("key");
        let verifier = signer.verifier();
        let service = DemoTokenService::start(
            &ca,
            RegisteredClient {
                client_id: "demo-client".into(),
                certificate_der: bound.certificate_der.to_vec(),
                xsappname: "demo!t1".into(),
            },
            signer,
        )
        .await
        .expect("start");
        let url = format!("{}/oauth/token", service.url());
        let post = |client: reqwest::Client, form: &'static str| {
            let url = url.clone();
            async move {
                let response = client
                    .post(url)
                    .header("content-type", "application/x-www-form-urlencoded")
                    .body(form)
                    .send()
                    .await
                    .expect("send");
                let status = response.status().as_u16();
                let body: Value =
                    serde_json::from_slice(&response.bytes().await.expect("body")).expect("json");
                (status, body)
            }
        };
        let good = "grant_type=client_credentials&client_id=demo-client";
        let (status, body) = post(client_with(&ca, &other), good).await;
        assert_eq!(
            (status, body["error"].as_str()),
            (401, Some("invalid_client"))
        );
        let (status, body) = post(
            client_with(&ca, &bound),
            "grant_type=password&client_id=demo-client",
        )
        .await;
        assert_eq!(
            (status, body["error"].as_str()),
            (400, Some("unsupported_grant_type"))
        );
        let (status, _) = post(
            client_with(&ca, &bound),
            "grant_type=client_credentials&client_id=someone",
        )
        .await;
        assert_eq!(status, 401);
        assert_eq!(service.issued(), 0);
        let (status, body) = post(client_with(&ca, &bound), good).await;
        assert_eq!(status, 200, "{body}");
        let claims = verifier
            .verify(body["access_token"].as_str().expect("token"))
            .expect("signed by the service");
        assert_eq!(claims["client_id"], "demo-client");
        assert_eq!(claims["iss"], format!("{}/oauth/token", service.url()));
        assert_eq!(service.issued(), 1);
    }
}
