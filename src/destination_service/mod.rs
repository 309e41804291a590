//! The Destination service: destinations looked up at run time by name, for every name that the
//! `destinations` variable does not define (the variable wins on a clash, as in approuter).
//!
//! [`binding`] finds and validates the bound instance at start-up; [`lookup`] calls its REST
//! API; [`configuration`], [`auth_tokens`] and [`certificates`] turn an answer into a
//! [`ServiceDestination`]; [`outbound`] keeps the upstream clients.
//!
//! Answers are cached (moka) for `XSROUTER_DESTINATION_CACHE_TTL` seconds at most, and never past
//! the expiry of a token (less the `JWT_REFRESH` margin) or client certificate they carry.
//! Concurrent misses for one key make a single lookup; failures are not cached. A destination
//! whose token the service derives from the user's is looked up once without the user (to learn
//! that) and then per user with `X-user-token`, keyed by a SHA-256 of the user's token.

pub mod auth_tokens;
pub mod binding;
pub mod certificates;
pub mod configuration;
pub mod lookup;
pub mod outbound;

use std::sync::Arc;
use std::time::Duration;

use http::{HeaderMap, HeaderName, HeaderValue};
use moka::future::Cache;
use moka::policy::Expiry;

use crate::config::Destination;
use crate::config::xs_app::AuthenticationType;
use crate::rejection::Rejection;
use crate::secret::Secret;
use crate::tokens::TokenService;
use crate::upstream::UpstreamClient;
use auth_tokens::AuthTokenError;
pub use binding::DestinationBinding;
use configuration::{Authentication, Refusal};
use lookup::{LookupBuildError, LookupClient, LookupError};
use outbound::{ClientTls, DestinationClient, OutboundClients};

/// Longest destination name looked up (the service allows 200 characters).
const MAX_NAME: usize = 200;

/// How long lookups are kept.
#[derive(Debug, Clone, Copy)]
pub struct LookupCachePolicy {
    /// `XSROUTER_DESTINATION_CACHE_TTL`: the longest any answer is kept.
    pub ttl: Duration,
    /// `JWT_REFRESH`: an answer with tokens leaves the cache this long before the first expires
    /// (at most half the token's lifetime).
    pub refresh_margin: Duration,
    /// Most answers kept.
    pub capacity: u64,
}

impl LookupCachePolicy {
    fn for_token(&self, lifetime: Duration) -> Duration {
        lifetime.saturating_sub(self.refresh_margin.min(lifetime / 2))
    }
}

/// A destination from the Destination service, ready for the pipeline.
#[derive(Debug)]
pub struct ServiceDestination {
    pub destination: Destination,
    client: Arc<DestinationClient>,
    authorization: Option<Secret>,
    token_headers: Vec<(HeaderName, HeaderValue)>,
    added_headers: Vec<(HeaderName, HeaderValue)>,
    sap_client: Option<HeaderValue>,
    dynamic: bool,
    needs_user: bool,
}

impl ServiceDestination {
    /// The client for a route with the given authentication.
    pub fn client(&self, route: Option<AuthenticationType>) -> Option<&UpstreamClient> {
        self.client.for_route(route)
    }

    /// The `Authorization` the service's tokens (or Basic credentials) give, if any; without
    /// one, the destination is treated like a `destinations` entry (`forwardAuthToken`,
    /// `IASDependencyName`).
    pub fn authorization(&self) -> Option<&Secret> {
        self.authorization.as_ref()
    }

    /// Adds the destination's headers to a request: other `authTokens` headers and
    /// `sap-client` always, `URL.headers.<name>` only where the client sent none.
    pub fn add_headers(&self, headers: &mut HeaderMap) {
        for (name, value) in &self.token_headers {
            headers.insert(name.clone(), value.clone());
        }
        if let Some(client) = &self.sap_client {
            headers.insert(HeaderName::from_static("sap-client"), client.clone());
        }
        for (name, value) in &self.added_headers {
            if !headers.contains_key(name) {
                headers.insert(name.clone(), value.clone());
            }
        }
    }
}

/// Why a request to a service destination cannot be served. Never contains a secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResolveError {
    #[error("not a destination name")]
    InvalidName,
    #[error(transparent)]
    Lookup(#[from] LookupError),
    #[error("the destination is not usable: {0}")]
    Refused(Refusal),
    #[error(
        "the destination is not marked `HTML5.DynamicDestination`, so routes cannot name it with `$n` or `*`"
    )]
    NotDynamic,
    #[error("the destination's token is derived from the user's, and there is no logged-in user")]
    UserRequired,
    #[error(transparent)]
    AuthToken(#[from] AuthTokenError),
    #[error("the destination's certificates are not usable: {0}")]
    Certificates(String),
}

impl ResolveError {
    /// The answer the client gets.
    pub fn rejection(&self) -> Rejection {
        match self {
            Self::InvalidName | Self::Lookup(LookupError::NotFound) | Self::NotDynamic => {
                Rejection::NotFound("Not Found: unknown destination")
            }
            Self::UserRequired => Rejection::Unauthorized("Unauthorized"),
            Self::Refused(Refusal::OnPremise) => {
                Rejection::BadGateway("Bad Gateway: on-premise destinations are not supported")
            }
            Self::Refused(_) | Self::Certificates(_) => {
                Rejection::BadGateway("Bad Gateway: the destination is not usable")
            }
            Self::AuthToken(_) => {
                Rejection::BadGateway("Bad Gateway: no token for the destination")
            }
            Self::Lookup(_) => Rejection::BadGateway("Bad Gateway: destination lookup failed"),
        }
    }
}

/// What the cache holds for one key: a usable destination or a refusal, and for how long.
#[derive(Debug)]
struct Cached {
    outcome: Result<Arc<ServiceDestination>, ResolveError>,
    keep_for: Duration,
}

/// A destination name and a SHA-256 of the user's token, for user-dependent lookups.
type UserKey = (Box<str>, [u8; 32]);

struct KeepFor;

impl<K> Expiry<K, Arc<Cached>> for KeepFor {
    fn expire_after_create(
        &self,
        _key: &K,
        value: &Arc<Cached>,
        _now: std::time::Instant,
    ) -> Option<Duration> {
        Some(value.keep_for)
    }
}

/// The bound Destination service, with its lookup cache and destination clients.
pub struct DestinationService {
    lookup: LookupClient,
    /// Lookups without a user, by name (a hit needs no allocation).
    shared: Cache<Box<str>, Arc<Cached>>,
    /// Lookups with `X-user-token`, by name and user.
    per_user: Cache<UserKey, Arc<Cached>>,
    clients: OutboundClients,
    policy: LookupCachePolicy,
}

impl std::fmt::Debug for DestinationService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DestinationService")
            .field("shared", &self.shared.entry_count())
            .field("per_user", &self.per_user.entry_count())
            .finish()
    }
}

/// Destination names are letters, digits, `-` and `_` (the service's rule); anything else is
/// never sent to the service.
pub fn is_destination_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_NAME
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

fn user_hash(user: &Secret) -> [u8; 32] {
    let digest = ring::digest::digest(&ring::digest::SHA256, user.expose().as_bytes());
    let mut out = [0u8; 32];
    out.copy_from_slice(digest.as_ref());
    out
}

impl DestinationService {
    pub fn new(
        binding: &DestinationBinding,
        roots: &Arc<rustls::RootCertStore>,
        identities: Arc<crate::identity::rotation::IdentityStore>,
        tokens: Arc<TokenService>,
        policy: LookupCachePolicy,
        websockets: bool,
    ) -> Result<Self, LookupBuildError> {
        Ok(Self {
            lookup: LookupClient::new(binding, roots, tokens)?,
            shared: Cache::builder()
                .max_capacity(policy.capacity)
                .expire_after(KeepFor)
                .build(),
            per_user: Cache::builder()
                .max_capacity(policy.capacity)
                .expire_after(KeepFor)
                .build(),
            clients: OutboundClients::new(roots.clone(), identities, websockets),
            policy,
        })
    }

    /// Lookups sent to the service so far.
    pub fn lookups_sent(&self) -> u64 {
        self.lookup.sent.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The destination `name`, for a route that names it statically or (`dynamic`) from the
    /// request, with the logged-in user's token if there is one.
    pub async fn resolve(
        &self,
        name: &str,
        dynamic: bool,
        user: Option<&Secret>,
    ) -> Result<Arc<ServiceDestination>, ResolveError> {
        if !is_destination_name(name) {
            return Err(ResolveError::InvalidName);
        }
        let shared = self.shared_lookup(name).await?;
        if dynamic && !shared.dynamic {
            return Err(ResolveError::NotDynamic);
        }
        if !shared.needs_user {
            return Ok(shared);
        }
        let user = user.ok_or(ResolveError::UserRequired)?;
        self.user_lookup(name, user).await
    }

    async fn shared_lookup(&self, name: &str) -> Result<Arc<ServiceDestination>, ResolveError> {
        // A hit skips the single-flight machinery and allocates nothing.
        if let Some(hit) = self.shared.get(name).await {
            return hit.outcome.clone();
        }
        let cached = self
            .shared
            .try_get_with(name.into(), async {
                self.fetch(name, None).await.map(Arc::new)
            })
            .await
            .map_err(|err| (*err).clone())?;
        cached.outcome.clone()
    }

    async fn user_lookup(
        &self,
        name: &str,
        user: &Secret,
    ) -> Result<Arc<ServiceDestination>, ResolveError> {
        let key: UserKey = (name.into(), user_hash(user));
        if let Some(hit) = self.per_user.get(&key).await {
            return hit.outcome.clone();
        }
        let cached = self
            .per_user
            .try_get_with(key, async {
                self.fetch(name, Some(user)).await.map(Arc::new)
            })
            .await
            .map_err(|err| (*err).clone())?;
        cached.outcome.clone()
    }

    /// One lookup. `Err` for what must not be cached (service errors, token errors); a refusal
    /// of the configuration itself is cached like a usable one.
    async fn fetch(&self, name: &str, user: Option<&Secret>) -> Result<Cached, ResolveError> {
        let answer = self.lookup.find(name, user).await.inspect_err(|err| {
            tracing::warn!(destination = %name, error = %err, "destination lookup failed");
        })?;
        let refused = |error: ResolveError| {
            tracing::warn!(destination = %name, error = %error, "destination refused");
            Ok(Cached {
                outcome: Err(error),
                keep_for: self.policy.ttl,
            })
        };
        let Some(configuration) = &answer.configuration else {
            return Err(LookupError::BadAnswer("no `destinationConfiguration`".into()).into());
        };
        let parsed = match configuration::parse(name, configuration) {
            Ok(parsed) => parsed,
            Err(refusal) => return refused(ResolveError::Refused(refusal)),
        };
        let needs_user = parsed.needs_user();
        let now = crate::identity::rotation::now_unix();
        let tokens = if needs_user && user.is_none() {
            // Looked up to learn the type; the user's lookup brings the token.
            auth_tokens::TokenHeaders::default()
        } else {
            auth_tokens::headers_of(&answer.auth_tokens, now).inspect_err(|err| {
                tracing::warn!(destination = %name, error = %err, "destination token unavailable");
            })?
        };
        let (identity, basic) = match &parsed.authentication {
            Authentication::ClientCertificate {
                key_store,
                password,
            } => {
                match certificates::client_identity(
                    &answer.certificates,
                    key_store,
                    password.as_deref(),
                ) {
                    Ok(identity) => (Some(identity), None),
                    Err(err) => return refused(ResolveError::Certificates(err.to_string())),
                }
            }
            Authentication::Basic { user, password } => {
                use base64::Engine;
                let encoded =
                    base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
                (None, Some(Secret::new(format!("Basic {encoded}"))))
            }
            _ => (None, None),
        };
        let trust = match &parsed.trust_store {
            Some(store) => match certificates::trust_roots(&answer.certificates, store) {
                Ok(roots) => Some(roots),
                Err(err) => return refused(ResolveError::Certificates(err.to_string())),
            },
            None => None,
        };
        let client = match self
            .clients
            .client(
                &parsed.destination,
                ClientTls {
                    identity: identity.as_ref(),
                    trust: trust.as_deref(),
                },
            )
            .await
        {
            Ok(client) => client,
            Err(err) => return refused(ResolveError::Certificates(err.0)),
        };
        let mut keep_for = self.policy.ttl;
        if let Some(lifetime) = tokens.lifetime {
            keep_for = keep_for.min(self.policy.for_token(lifetime));
        }
        if let Some(identity) = &identity {
            let left = identity.leaf.seconds_left(now).max(0) as u64;
            keep_for = keep_for.min(Duration::from_secs(left));
        }
        let authorization = tokens.authorization.or(basic);
        if let Some(value) = &authorization
            && value.header_value().is_none()
        {
            return refused(ResolveError::Refused(Refusal::Invalid(
                "`User`/`Password` are not usable in an HTTP header".into(),
            )));
        }
        tracing::debug!(destination = %name, keep_for_s = keep_for.as_secs(), "destination looked up");
        Ok(Cached {
            outcome: Ok(Arc::new(ServiceDestination {
                destination: parsed.destination,
                client,
                authorization,
                token_headers: tokens.others,
                added_headers: parsed.added_headers,
                sap_client: parsed.sap_client,
                dynamic: parsed.dynamic,
                needs_user,
            })),
            keep_for,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_that_reach_the_service() {
        for good in ["orders", "Orders_v2", "a-b", &"x".repeat(200)] {
            assert!(is_destination_name(good), "{good}");
        }
        for bad in ["", "..", "a/b", "a?b", "a b", "a%2F", "ä", &"x".repeat(201)] {
            assert!(!is_destination_name(bad), "{bad}");
        }
    }

    #[test]
    fn token_answers_leave_before_the_token_expires() {
        let policy = LookupCachePolicy {
            ttl: Duration::from_secs(600),
            refresh_margin: Duration::from_secs(300),
            capacity: 10,
        };
        assert_eq!(
            policy.for_token(Duration::from_secs(3600)),
            Duration::from_secs(3300)
        );
        assert_eq!(
            policy.for_token(Duration::from_secs(60)),
            Duration::from_secs(30)
        );
        assert_eq!(policy.for_token(Duration::ZERO), Duration::ZERO);
    }
}
