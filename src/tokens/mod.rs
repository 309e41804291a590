//! OAuth tokens: minted (client_credentials) and exchanged (jwt-bearer, IAS token exchange,
//! refresh) at XSUAA or IAS, over mTLS where the binding is x509, and cached until shortly
//! before they expire.
//!
//! The cache is keyed by everything that makes a token different — endpoint, client, grant,
//! scope, audience, resource and, for user grants, a SHA-256 of the subject token (never the
//! token itself) — so a token minted for one user is never handed to another. Concurrent misses
//! for one key make a single request (moka's `try_get_with`); failures are not cached; transient
//! failures (connect errors, 5xx, 429) are retried a bounded number of times with backoff.
//! A destination's technical (client_credentials) token is also kept in its [`TokenSlot`] and
//! read from there while fresh, so the hot path builds no key. Tokens and secrets never appear
//! in logs or errors.

pub mod destination;
pub mod endpoint;
pub mod token;

use std::sync::Arc;
use std::time::Duration;

use moka::future::Cache;
use moka::policy::Expiry;
use rustls::RootCertStore;
use rustls::client::ResolvesClientCert;

use crate::config::bindings::AuthServiceKind;
use crate::identity::rotation::IdentityStore;
use crate::telemetry::http_error::without_url;
use endpoint::{ClientAuth, EndpointUrl, TokenEndpoint};
use token::{ErrorResponse, TokenResponse};
pub use token::{Grant, Token, TokenRequest};

/// Attempts per token request (the first and up to two retries).
const ATTEMPTS: u32 = 3;
const FIRST_BACKOFF: Duration = Duration::from_millis(200);
/// Per-attempt timeout (approuter's default towards XSUAA is 10 s).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// Why no token could be obtained. Never contains a token or a secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("token service unreachable: {0}")]
    Unreachable(String),
    #[error("token service refused the request ({status}): {error}")]
    Rejected { status: u16, error: String },
    #[error("token service unavailable ({status}) after {ATTEMPTS} attempts")]
    Unavailable { status: u16 },
    #[error("token response unreadable: {0}")]
    BadResponse(String),
    #[error("the token lives {0} s, less than MINIMUM_TOKEN_VALIDITY")]
    TooShortLived(u64),
    #[error("token endpoint discovery failed: {0}")]
    Discovery(String),
    #[error("no client certificate for the token service")]
    NoCertificate,
    #[error("the destination needs the user's token, and there is no logged-in user")]
    UserRequired,
    #[error("the token service is per tenant (TENANT_HOST_PATTERN), and the host names none")]
    TenantRequired,
}

/// How long tokens are handed out.
#[derive(Debug, Clone, Copy)]
pub struct CachePolicy {
    /// `JWT_REFRESH` (minutes, default 5): a token leaves the cache this long before it expires
    /// (at most half its lifetime, so short-lived tokens are still reused).
    pub refresh_margin: Duration,
    /// `MINIMUM_TOKEN_VALIDITY` (seconds): never hand out a token with less left than this.
    pub minimum_validity: Duration,
    /// Most tokens kept.
    pub capacity: u64,
}

impl Default for CachePolicy {
    fn default() -> Self {
        Self {
            refresh_margin: Duration::from_secs(5 * 60),
            minimum_validity: Duration::ZERO,
            capacity: 10_000,
        }
    }
}

impl CachePolicy {
    fn cache_for(&self, lifetime: Duration) -> Result<Duration, TokenError> {
        if lifetime < self.minimum_validity
            || (lifetime.is_zero() && !self.minimum_validity.is_zero())
        {
            return Err(TokenError::TooShortLived(lifetime.as_secs()));
        }
        let margin = self.refresh_margin.min(lifetime / 2);
        Ok(lifetime
            .saturating_sub(margin)
            .min(lifetime - self.minimum_validity))
    }
}

/// Everything that makes one cached token different from another.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct TokenKey {
    endpoint: String,
    client_id: String,
    grant: &'static str,
    scope: Option<String>,
    audience: Option<String>,
    resource: Option<String>,
    /// SHA-256 of the subject token for user grants.
    subject: Option<[u8; 32]>,
}

struct TokenExpiry;

impl Expiry<TokenKey, Arc<Token>> for TokenExpiry {
    fn expire_after_create(
        &self,
        _key: &TokenKey,
        token: &Arc<Token>,
        _now: std::time::Instant,
    ) -> Option<Duration> {
        Some(token.cache_for)
    }
}

/// The token last handed out for one fixed request — a destination's technical token — read
/// while it is fresh ([`TokenService::fresh_in`]) without building a cache key or touching the
/// cache. Fill a slot only with tokens of that one endpoint and request.
#[derive(Debug, Default)]
pub struct TokenSlot(arc_swap::ArcSwapOption<Token>);

impl TokenSlot {
    pub fn fill(&self, token: Arc<Token>) {
        self.0.store(Some(token));
    }
}

/// Counters for tests and, later, metrics.
#[derive(Debug, Default)]
pub struct TokenStats {
    /// Tokens asked for (cached or not).
    pub requests: std::sync::atomic::AtomicU64,
    /// Tokens fetched from a token service (cache misses).
    pub fetches: std::sync::atomic::AtomicU64,
    pub failures: std::sync::atomic::AtomicU64,
}

/// Obtains and caches tokens.
pub struct TokenService {
    plain: reqwest::Client,
    xsuaa: Option<reqwest::Client>,
    ias: Option<reqwest::Client>,
    cache: Cache<TokenKey, Arc<Token>>,
    policy: CachePolicy,
    pub stats: TokenStats,
}

impl std::fmt::Debug for TokenService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenService")
            .field("cached", &self.cache.entry_count())
            .finish()
    }
}

fn http_client(
    roots: &Arc<RootCertStore>,
    identity: Option<Arc<dyn ResolvesClientCert>>,
) -> Result<reqwest::Client, TokenError> {
    let tls = crate::upstream::tls::client_config(roots.clone(), true, identity)
        .map_err(|e| TokenError::Unreachable(e.to_string()))?;
    reqwest::Client::builder()
        .tls_backend_preconfigured(tls)
        .dns_resolver(std::sync::Arc::new(crate::loopback_names::LoopbackNames))
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .timeout(REQUEST_TIMEOUT)
        .build()
        .map_err(|e| TokenError::Unreachable(e.to_string()))
}

impl TokenService {
    pub fn new(
        roots: Arc<RootCertStore>,
        identities: &IdentityStore,
        policy: CachePolicy,
    ) -> Result<Self, TokenError> {
        crate::install_crypto_provider();
        let with_identity = |kind| -> Result<Option<reqwest::Client>, TokenError> {
            identities
                .get(kind)
                .map(|identity| {
                    let resolver: Arc<dyn ResolvesClientCert> = identity.clone();
                    http_client(&roots, Some(resolver))
                })
                .transpose()
        };
        Ok(Self {
            plain: http_client(&roots, None)?,
            xsuaa: with_identity(AuthServiceKind::Xsuaa)?,
            ias: with_identity(AuthServiceKind::Ias)?,
            cache: Cache::builder()
                .max_capacity(policy.capacity)
                .expire_after(TokenExpiry)
                .build(),
            policy,
            stats: TokenStats::default(),
        })
    }

    /// A token for `request` at `endpoint`: from the cache, or fetched once for all waiting callers.
    pub async fn token(
        &self,
        endpoint: &TokenEndpoint,
        request: &TokenRequest,
    ) -> Result<Arc<Token>, TokenError> {
        self.stats
            .requests
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.cache
            .try_get_with(Self::key_of(endpoint, request), async {
                self.fetch(endpoint, request).await.map(Arc::new)
            })
            .await
            .map_err(|err| (*err).clone())
    }

    /// The token in `slot` while the cache would still hand it out (counted as a cache hit).
    pub fn fresh_in(&self, slot: &TokenSlot) -> Option<Arc<Token>> {
        let token = slot.0.load_full().filter(|t| t.fresh())?;
        self.stats
            .requests
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Some(token)
    }

    /// Forgets the cached token for `request` at `endpoint` (after a service rejected it), so
    /// the next caller fetches a new one.
    pub async fn forget(&self, endpoint: &TokenEndpoint, request: &TokenRequest) {
        self.cache
            .invalidate(&Self::key_of(endpoint, request))
            .await;
    }

    fn key_of(endpoint: &TokenEndpoint, request: &TokenRequest) -> TokenKey {
        TokenKey {
            endpoint: endpoint.cache_identity().to_owned(),
            client_id: endpoint.client_id.clone(),
            grant: request.grant.name(),
            scope: request.scope.clone(),
            audience: request.audience.clone(),
            resource: request.resource.clone(),
            // Computed once per user token (the JWT check of the request already did).
            subject: request.grant.subject().map(|s| *s.fingerprint()),
        }
    }

    /// A client without a client certificate, trusting the configured roots (key and discovery
    /// documents are fetched with it).
    pub fn plain_client(&self) -> reqwest::Client {
        self.plain.clone()
    }

    /// A token that is not cached (login codes, refreshes of a session's own token).
    pub async fn fetch_uncached(
        &self,
        endpoint: &TokenEndpoint,
        request: &TokenRequest,
    ) -> Result<Token, TokenError> {
        self.fetch(endpoint, request).await
    }

    fn client_for<'a>(&'a self, auth: &'a ClientAuth) -> Result<&'a reqwest::Client, TokenError> {
        match auth {
            ClientAuth::Certificate(AuthServiceKind::Xsuaa) => {
                self.xsuaa.as_ref().ok_or(TokenError::NoCertificate)
            }
            ClientAuth::Certificate(AuthServiceKind::Ias) => {
                self.ias.as_ref().ok_or(TokenError::NoCertificate)
            }
            ClientAuth::OwnCertificate(client) => Ok(client),
            _ => Ok(&self.plain),
        }
    }

    async fn token_url<'e>(&self, endpoint: &'e TokenEndpoint) -> Result<&'e str, TokenError> {
        match &endpoint.url {
            EndpointUrl::Fixed(url) => Ok(url),
            EndpointUrl::Discover { issuer, found } => found
                .get_or_try_init(|| async {
                    let url = format!("{issuer}/.well-known/openid-configuration");
                    let response = self
                        .plain
                        .get(&url)
                        .send()
                        .await
                        .map_err(|e| TokenError::Discovery(e.to_string()))?;
                    if !response.status().is_success() {
                        return Err(TokenError::Discovery(format!(
                            "{url} answered {}",
                            response.status()
                        )));
                    }
                    let bytes = response
                        .bytes()
                        .await
                        .map_err(|e| TokenError::Discovery(e.to_string()))?;
                    let doc: serde_json::Value = serde_json::from_slice(&bytes)
                        .map_err(|e| TokenError::Discovery(e.to_string()))?;
                    doc["token_endpoint"]
                        .as_str()
                        .map(str::to_owned)
                        .ok_or_else(|| {
                            TokenError::Discovery(format!("{url} has no token_endpoint"))
                        })
                })
                .await
                .map(String::as_str),
        }
    }

    fn form(endpoint: &TokenEndpoint, request: &TokenRequest) -> String {
        let mut form = url::form_urlencoded::Serializer::new(String::new());
        form.append_pair("grant_type", request.grant.name());
        form.append_pair("client_id", &endpoint.client_id);
        if let ClientAuth::Secret(secret) = &endpoint.auth {
            form.append_pair("client_secret", secret.expose());
        }
        match &request.grant {
            Grant::ClientCredentials => {}
            Grant::JwtBearer { assertion } => {
                form.append_pair("assertion", assertion.expose());
            }
            Grant::RefreshToken { refresh_token } => {
                form.append_pair("refresh_token", refresh_token.expose());
            }
            Grant::AuthorizationCode {
                code,
                redirect_uri,
                code_verifier,
            } => {
                form.append_pair("code", code.expose());
                form.append_pair("redirect_uri", redirect_uri);
                if let Some(verifier) = code_verifier {
                    form.append_pair("code_verifier", verifier.expose());
                }
            }
        }
        for (name, value) in [
            ("scope", &request.scope),
            ("audience", &request.audience),
            ("resource", &request.resource),
        ] {
            if let Some(value) = value {
                form.append_pair(name, value);
            }
        }
        form.finish()
    }

    async fn fetch(
        &self,
        endpoint: &TokenEndpoint,
        request: &TokenRequest,
    ) -> Result<Token, TokenError> {
        use std::sync::atomic::Ordering;
        self.stats.fetches.fetch_add(1, Ordering::Relaxed);
        let result = self.fetch_with_retries(endpoint, request).await;
        if let Err(err) = &result {
            self.stats.failures.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(client_id = %endpoint.client_id, grant = request.grant.name(), error = %err, "token request failed");
        }
        result
    }

    async fn fetch_with_retries(
        &self,
        endpoint: &TokenEndpoint,
        request: &TokenRequest,
    ) -> Result<Token, TokenError> {
        let client = self.client_for(&endpoint.auth)?;
        let url = self.token_url(endpoint).await?;
        let body = Self::form(endpoint, request);
        let mut backoff = FIRST_BACKOFF;
        for attempt in 1..=ATTEMPTS {
            let mut builder = client
                .post(url)
                .header(
                    http::header::CONTENT_TYPE,
                    "application/x-www-form-urlencoded",
                )
                .header(http::header::ACCEPT, "application/json")
                .body(body.clone());
            if let ClientAuth::Basic(user, password) = &endpoint.auth {
                builder = builder.basic_auth(user, Some(password.expose()));
            }
            let last = attempt == ATTEMPTS;
            let response = match builder.send().await {
                Ok(response) => response,
                Err(err) if !last => {
                    tracing::debug!(attempt, error = %err, "token service unreachable; retrying");
                    tokio::time::sleep(backoff).await;
                    backoff *= 2;
                    continue;
                }
                Err(err) => return Err(TokenError::Unreachable(without_url(&err))),
            };
            let status = response.status();
            if status.is_server_error() || status == http::StatusCode::TOO_MANY_REQUESTS {
                if last {
                    return Err(TokenError::Unavailable {
                        status: status.as_u16(),
                    });
                }
                tracing::debug!(attempt, %status, "token service busy; retrying");
                tokio::time::sleep(retry_after(&response).unwrap_or(backoff)).await;
                backoff *= 2;
                continue;
            }
            let bytes = response
                .bytes()
                .await
                .map_err(|e| TokenError::Unreachable(without_url(&e)))?;
            if !status.is_success() {
                let error = serde_json::from_slice::<ErrorResponse>(&bytes)
                    .map(|e| match e.error_description {
                        Some(d) => format!("{}: {d}", e.error),
                        None => e.error,
                    })
                    .unwrap_or_else(|_| "no OAuth error in the answer".to_owned());
                return Err(TokenError::Rejected {
                    status: status.as_u16(),
                    error,
                });
            }
            return self.parse(&bytes);
        }
        Err(TokenError::Unavailable { status: 0 })
    }

    fn parse(&self, bytes: &[u8]) -> Result<Token, TokenError> {
        let response: TokenResponse = serde_json::from_slice(bytes)
            .map_err(|_| TokenError::BadResponse("not a token response".to_owned()))?;
        let now = crate::identity::rotation::now_unix();
        let lifetime = response.lifetime(now).ok_or_else(|| {
            TokenError::BadResponse("neither `expires_in` nor an `exp` claim".to_owned())
        })?;
        Ok(Token::new(
            crate::secret::Secret::new(response.access_token),
            response.token_type.unwrap_or_else(|| "bearer".to_owned()),
            response.refresh_token.map(crate::secret::Secret::new),
            response.id_token.map(crate::secret::Secret::new),
            lifetime,
            self.policy.cache_for(lifetime)?,
        ))
    }
}

/// `Retry-After` in seconds, capped so a busy token service cannot stall requests for long.
fn retry_after(response: &reqwest::Response) -> Option<Duration> {
    let seconds: u64 = response
        .headers()
        .get(http::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()?;
    Some(Duration::from_secs(seconds.min(2)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_lifetime_respects_margin_and_minimum_validity() {
        let policy = CachePolicy::default();
        let hour = Duration::from_secs(3600);
        assert_eq!(policy.cache_for(hour), Ok(hour - Duration::from_secs(300)));
        // A short-lived token is still reused for half its life.
        assert_eq!(
            policy.cache_for(Duration::from_secs(60)),
            Ok(Duration::from_secs(30))
        );
        let strict = CachePolicy {
            minimum_validity: Duration::from_secs(3500),
            ..policy
        };
        assert_eq!(strict.cache_for(hour), Ok(Duration::from_secs(100)));
        assert_eq!(
            strict.cache_for(Duration::from_secs(100)),
            Err(TokenError::TooShortLived(100))
        );
    }

    #[test]
    fn lifetime_from_expires_in_or_exp() {
        use base64::Engine;
        let claims = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(r#"{"exp": 1100}"#);
        let jwt = format!("e30.{claims}.sig");
        let response: TokenResponse =
            serde_json::from_str(&format!(r#"{{"access_token": "{jwt}"}}"#)).expect("json");
        assert_eq!(response.lifetime(1000), Some(Duration::from_secs(100)));
        let response: TokenResponse =
            serde_json::from_str(r#"{"access_token": "x", "expires_in": "42"}"#).expect("json");
        assert_eq!(response.lifetime(0), Some(Duration::from_secs(42)));
        let response: TokenResponse =
            serde_json::from_str(r#"{"access_token": "opaque"}"#).expect("json");
        assert_eq!(response.lifetime(0), None);
    }
}
