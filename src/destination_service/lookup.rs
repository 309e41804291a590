//! The Destination service's "find destination" call:
//! `GET {uri}/destination-configuration/v1/destinations/{name}` with a client_credentials token
//! of the destination binding (from the token service, cached there) and, for destinations whose
//! token the service derives from the user's, the user's token as `X-user-token`.
//!
//! One call per invocation; caching and single flight are the caller's. The answer is bounded
//! in size; errors say what happened without a token or secret.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde::Deserialize;
use serde_json::{Map, Value};

use super::auth_tokens::AuthToken;
use super::binding::{BindingCredential, DestinationBinding};
use super::certificates::CertificateFile;
use crate::secret::Secret;
use crate::telemetry::http_error::without_url;
use crate::tokens::endpoint::{ClientAuth, EndpointUrl, TokenEndpoint};
use crate::tokens::{Grant, TokenError, TokenRequest, TokenService};

/// Per-call timeout of a lookup.
const LOOKUP_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest answer accepted (configurations with certificates are a few KiB).
const MAX_ANSWER: usize = 1024 * 1024;
const FIND_PATH: &str = "/destination-configuration/v1/destinations/";

/// What the service answered for one destination.
#[derive(Debug, Clone, Deserialize)]
pub struct FindAnswer {
    #[serde(rename = "destinationConfiguration")]
    pub configuration: Option<Map<String, Value>>,
    #[serde(rename = "authTokens", default)]
    pub auth_tokens: Vec<AuthToken>,
    #[serde(default)]
    pub certificates: Vec<CertificateFile>,
}

/// Why a lookup failed. Never contains a token or secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LookupError {
    #[error("the Destination service has no destination of that name")]
    NotFound,
    #[error("no token for the Destination service: {0}")]
    Token(#[from] TokenError),
    #[error("Destination service unreachable: {0}")]
    Unreachable(String),
    #[error("Destination service answered {0}")]
    Status(u16),
    #[error("Destination service answer unreadable: {0}")]
    BadAnswer(String),
}

/// Why the lookup client could not be built.
#[derive(Debug, thiserror::Error)]
pub enum LookupBuildError {
    #[error("Destination service binding `{instance}`: TLS settings rejected: {source}")]
    Tls {
        instance: String,
        source: rustls::Error,
    },
    #[error("Destination service binding `{instance}`: HTTP client: {source}")]
    Client {
        instance: String,
        source: reqwest::Error,
    },
}

/// Calls the bound Destination service.
#[derive(Debug)]
pub struct LookupClient {
    http: reqwest::Client,
    /// `{uri}/destination-configuration/v1/destinations/`.
    base: String,
    endpoint: TokenEndpoint,
    tokens: Arc<TokenService>,
    /// Lookups sent (for tests and metrics).
    pub sent: AtomicU64,
}

fn http_client(
    roots: &Arc<rustls::RootCertStore>,
    identity: Option<Arc<dyn rustls::client::ResolvesClientCert>>,
    instance: &str,
) -> Result<reqwest::Client, LookupBuildError> {
    let tls =
        crate::upstream::tls::client_config(roots.clone(), true, identity).map_err(|source| {
            LookupBuildError::Tls {
                instance: instance.to_owned(),
                source,
            }
        })?;
    reqwest::Client::builder()
        .tls_backend_preconfigured(tls)
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .timeout(LOOKUP_TIMEOUT)
        .build()
        .map_err(|source| LookupBuildError::Client {
            instance: instance.to_owned(),
            source,
        })
}

/// Presents one fixed certificate (the binding's own) on every handshake.
#[derive(Debug)]
pub struct FixedClientCert(pub Arc<rustls::sign::CertifiedKey>);

impl rustls::client::ResolvesClientCert for FixedClientCert {
    fn resolve(
        &self,
        _root_hints: &[&[u8]],
        _sigschemes: &[rustls::SignatureScheme],
    ) -> Option<Arc<rustls::sign::CertifiedKey>> {
        Some(self.0.clone())
    }

    fn has_certs(&self) -> bool {
        true
    }
}

impl LookupClient {
    pub fn new(
        binding: &DestinationBinding,
        roots: &Arc<rustls::RootCertStore>,
        tokens: Arc<TokenService>,
    ) -> Result<Self, LookupBuildError> {
        let auth = match &binding.credential {
            BindingCredential::Secret(secret) => ClientAuth::Secret(secret.clone()),
            BindingCredential::Certificate(identity) => {
                let resolver = Arc::new(FixedClientCert(identity.certified.clone()));
                ClientAuth::OwnCertificate(http_client(roots, Some(resolver), &binding.instance)?)
            }
        };
        Ok(Self {
            http: http_client(roots, None, &binding.instance)?,
            base: format!("{}{FIND_PATH}", binding.uri),
            endpoint: TokenEndpoint {
                url: EndpointUrl::Fixed(binding.token_url.clone()),
                client_id: binding.client_id.clone(),
                auth,
            },
            tokens,
            sent: AtomicU64::new(0),
        })
    }

    /// Looks `name` up (the caller has checked it is a plain destination name).
    pub async fn find(&self, name: &str, user: Option<&Secret>) -> Result<FindAnswer, LookupError> {
        let token_request = TokenRequest::new(Grant::ClientCredentials);
        let token = self.tokens.token(&self.endpoint, &token_request).await?;
        let mut url = String::with_capacity(self.base.len() + name.len());
        url.push_str(&self.base);
        url.extend(percent_encoding::utf8_percent_encode(
            name,
            percent_encoding::NON_ALPHANUMERIC,
        ));
        let authorization = token
            .authorization()
            .header_value()
            .ok_or_else(|| LookupError::Token(TokenError::BadResponse("unusable token".into())))?;
        let mut request = self
            .http
            .get(url)
            .header(http::header::AUTHORIZATION, authorization)
            .header(http::header::ACCEPT, "application/json");
        if let Some(user) = user {
            let value = user.header_value().ok_or_else(|| {
                LookupError::BadAnswer("the user's token is not a header value".into())
            })?;
            request = request.header("x-user-token", value);
        }
        self.sent.fetch_add(1, Ordering::Relaxed);
        let mut response = request
            .send()
            .await
            .map_err(|e| LookupError::Unreachable(without_url(&e)))?;
        let status = response.status();
        if status == http::StatusCode::NOT_FOUND {
            return Err(LookupError::NotFound);
        }
        if status == http::StatusCode::UNAUTHORIZED {
            // The service no longer accepts the binding's token (revoked, credentials rotated):
            // the next lookup gets a new one instead of failing until it expires.
            self.tokens.forget(&self.endpoint, &token_request).await;
        }
        if !status.is_success() {
            return Err(LookupError::Status(status.as_u16()));
        }
        let mut body = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| LookupError::Unreachable(without_url(&e)))?
        {
            if body.len() + chunk.len() > MAX_ANSWER {
                return Err(LookupError::BadAnswer(format!(
                    "larger than {MAX_ANSWER} bytes"
                )));
            }
            body.extend_from_slice(&chunk);
        }
        // serde's message may quote a value (a token): only the position is kept.
        serde_json::from_slice(&body).map_err(|e| {
            LookupError::BadAnswer(format!(
                "not a destination lookup answer (line {}, column {})",
                e.line(),
                e.column()
            ))
        })
    }
}
