//! Tokens for destinations: which token a destination gets, attached after routing and before
//! the upstream call.
//!
//! - `forwardAuthToken`: the user's own token;
//! - `BasicAuthentication`: the configured user and password;
//! - `OAuth2ClientCredentials`: a technical token of the configured client;
//! - `OAuth2JWTBearer` / `OAuth2UserTokenExchange`: the user's token exchanged for the client.

use std::collections::HashMap;
use std::sync::Arc;

use super::endpoint::{EndpointError, TokenEndpoint};
use super::{Grant, TokenError, TokenRequest, TokenService, TokenSlot};
use crate::config::bindings::AuthServiceKind;
use crate::config::destination_auth::{DestinationAuth, OAuthFlow, TokenServiceRef};
use crate::config::{Destination, Runtime};
use crate::secret::Secret;

/// Why the token set-up failed at start-up.
#[derive(Debug, thiserror::Error)]
#[error("destination `{destination}`: {error}")]
pub struct DestinationTokenError {
    pub destination: String,
    pub error: EndpointError,
}

/// Most per-tenant token endpoints kept (each is small; tenants beyond are derived again).
const TENANT_ENDPOINTS: u64 = 10_000;

/// The token endpoints of all OAuth destinations.
#[derive(Debug)]
pub struct DestinationTokens {
    service: Arc<TokenService>,
    endpoints: HashMap<String, Arc<TokenEndpoint>>,
    /// Destinations whose token service is a shared-tenant-mode XSUAA binding: their endpoint is
    /// the tenant's (`TENANT_HOST_PATTERN`), so tokens are fetched and cached per tenant.
    tenant_modes: HashMap<String, crate::tenants::SharedTenantMode>,
    /// Per (destination, tenant): the tenant's endpoint.
    tenant_endpoints: moka::future::Cache<(String, String), Arc<TokenEndpoint>>,
    /// The bound IAS service's endpoint, for `IASDependencyName` exchanges.
    ias: Option<Arc<TokenEndpoint>>,
    /// Per destination with one token endpoint (not per tenant): its current
    /// client_credentials token, read without a cache lookup.
    technical: HashMap<String, TokenSlot>,
}

/// The IAS `resource` that names a dependency (App2App).
pub fn ias_dependency_resource(dependency: &str) -> String {
    format!("urn:sap:identity:application:provider:name:{dependency}")
}

impl DestinationTokens {
    pub fn build(
        runtime: &Runtime,
        service: Arc<TokenService>,
    ) -> Result<Self, DestinationTokenError> {
        let mut endpoints = HashMap::new();
        let mut tenant_modes = HashMap::new();
        for destination in runtime.destinations.values() {
            let DestinationAuth::OAuth2 {
                service: reference, ..
            } = &destination.auth
            else {
                continue;
            };
            let (binding, has_certificate) = match reference {
                TokenServiceRef::Binding(kind) => {
                    let mut scratch = crate::config::Problems::default();
                    (
                        runtime
                            .bindings
                            .auth_service(*kind, &runtime.env, &mut scratch),
                        runtime.identities.get(*kind).is_some(),
                    )
                }
                TokenServiceRef::Explicit { .. } => (None, false),
            };
            let endpoint = TokenEndpoint::for_destination(reference, binding, has_certificate)
                .map_err(|error| DestinationTokenError {
                    destination: destination.name.clone(),
                    error,
                })?;
            endpoints.insert(destination.name.clone(), Arc::new(endpoint));
            if runtime.tenant_hosts.is_some()
                && let Some(mode) = binding.and_then(crate::tenants::SharedTenantMode::of)
            {
                tenant_modes.insert(destination.name.clone(), mode);
            }
        }
        let mut scratch = crate::config::Problems::default();
        let ias =
            match runtime
                .bindings
                .auth_service(AuthServiceKind::Ias, &runtime.env, &mut scratch)
            {
                // Destination service destinations may name a dependency too.
                Some(binding)
                    if runtime.destination_service.is_some()
                        || runtime
                            .destinations
                            .values()
                            .any(|d| d.ias_dependency_name.is_some()) =>
                {
                    let endpoint = TokenEndpoint::for_binding(
                        AuthServiceKind::Ias,
                        binding,
                        runtime.identities.ias.is_some(),
                    )
                    .map_err(|error| DestinationTokenError {
                        destination: "(IAS binding)".to_owned(),
                        error,
                    })?;
                    Some(Arc::new(endpoint))
                }
                _ => None,
            };
        let technical = endpoints
            .keys()
            .filter(|name| !tenant_modes.contains_key(*name))
            .map(|name| (name.clone(), TokenSlot::default()))
            .collect();
        Ok(Self {
            service,
            endpoints,
            technical,
            tenant_modes,
            tenant_endpoints: moka::future::Cache::new(TENANT_ENDPOINTS),
            ias,
        })
    }

    pub fn service(&self) -> &Arc<TokenService> {
        &self.service
    }

    /// The `Authorization` value for a request to `destination`, if it needs one. `user` is the
    /// logged-in user's token, when there is one.
    pub async fn authorization(
        &self,
        destination: &Destination,
        user: Option<&Secret>,
    ) -> Result<Option<Secret>, TokenError> {
        self.authorization_for_tenant(destination, user, None).await
    }

    /// The token endpoint of `destination` for `tenant`: the tenant's subdomain of a
    /// shared-tenant-mode XSUAA binding, else the configured endpoint.
    async fn endpoint(
        &self,
        destination: &Destination,
        tenant: Option<&str>,
    ) -> Result<Arc<TokenEndpoint>, TokenError> {
        let Some(base) = self.endpoints.get(&destination.name) else {
            return Err(TokenError::Discovery(
                "no token endpoint configured".to_owned(),
            ));
        };
        let Some(mode) = self.tenant_modes.get(&destination.name) else {
            return Ok(base.clone());
        };
        let tenant = tenant.ok_or(TokenError::TenantRequired)?;
        let key = (destination.name.clone(), tenant.to_owned());
        let derive = async {
            let cert = matches!(base.auth, super::endpoint::ClientAuth::Certificate(_))
                && mode.cert_domain.is_some();
            let url = mode
                .tenant_url(base.cache_identity(), tenant, cert)
                .ok_or(TokenError::TenantRequired)?;
            Ok::<_, TokenError>(Arc::new(TokenEndpoint {
                url: super::endpoint::EndpointUrl::Fixed(url),
                client_id: base.client_id.clone(),
                auth: base.auth.clone(),
            }))
        };
        self.tenant_endpoints
            .try_get_with(key, derive)
            .await
            .map_err(|err| (*err).clone())
    }

    /// As [`Self::authorization`], for the tenant the request's host names (multi-tenancy).
    pub async fn authorization_for_tenant(
        &self,
        destination: &Destination,
        user: Option<&Secret>,
        tenant: Option<&str>,
    ) -> Result<Option<Secret>, TokenError> {
        match &destination.auth {
            DestinationAuth::None => match (&destination.ias_dependency_name, &self.ias, user) {
                // IAS App2App: the user's token exchanged for one of the dependency.
                (Some(dependency), Some(endpoint), Some(user)) => {
                    let request = TokenRequest {
                        resource: Some(ias_dependency_resource(dependency)),
                        ..TokenRequest::new(Grant::JwtBearer {
                            assertion: user.clone(),
                        })
                    };
                    Ok(Some(
                        self.service
                            .token(endpoint, &request)
                            .await?
                            .authorization(),
                    ))
                }
                _ => Ok(match (destination.forward_auth_token, user) {
                    (true, Some(user)) => Some(Secret::new(format!("Bearer {}", user.expose()))),
                    _ => None,
                }),
            },
            DestinationAuth::Basic(header) => Ok(Some(header.clone())),
            DestinationAuth::OAuth2 {
                flow,
                scope,
                audience,
                ..
            } => {
                let grant = match (flow, user) {
                    (OAuthFlow::ClientCredentials, _)
                    | (OAuthFlow::UserTokenOrClientCredentials, None) => Grant::ClientCredentials,
                    (
                        OAuthFlow::JwtBearer | OAuthFlow::UserTokenOrClientCredentials,
                        Some(user),
                    ) => Grant::JwtBearer {
                        assertion: user.clone(),
                    },
                    (OAuthFlow::JwtBearer, None) => return Err(TokenError::UserRequired),
                };
                // The hot path of technical tokens: no endpoint, request or cache key built.
                let slot = match grant {
                    Grant::ClientCredentials => self.technical.get(&destination.name),
                    _ => None,
                };
                if let Some(token) = slot.and_then(|slot| self.service.fresh_in(slot)) {
                    return Ok(Some(token.authorization()));
                }
                let endpoint = self.endpoint(destination, tenant).await?;
                let request = TokenRequest {
                    grant,
                    scope: scope.clone(),
                    audience: audience.clone(),
                    resource: None,
                };
                let token = self.service.token(&endpoint, &request).await?;
                if let Some(slot) = slot {
                    slot.fill(token.clone());
                }
                Ok(Some(token.authorization()))
            }
        }
    }

    /// Fetches the client_credentials tokens of all destinations in the background, so the
    /// first requests find them cached. Failures are logged, not fatal.
    pub fn spawn_prefetch(self: &Arc<Self>, runtime: &Runtime) {
        for destination in runtime.destinations.values() {
            if let DestinationAuth::OAuth2 {
                flow: OAuthFlow::ClientCredentials,
                ..
            } = &destination.auth
                // Per-tenant tokens are fetched when a tenant asks.
                && !self.tenant_modes.contains_key(&destination.name)
            {
                let tokens = self.clone();
                let destination = destination.clone();
                tokio::spawn(async move {
                    match tokens.authorization(&destination, None).await {
                        Ok(_) => {
                            tracing::info!(destination = %destination.name, "client_credentials token loaded")
                        }
                        Err(err) => {
                            tracing::warn!(destination = %destination.name, error = %err, "client_credentials token could not be loaded at start-up")
                        }
                    }
                });
            }
        }
    }
}

/// Which bound services destinations use as token service (for start-up checks).
pub fn bindings_used(runtime: &Runtime) -> impl Iterator<Item = (&Destination, AuthServiceKind)> {
    runtime.destinations.values().filter_map(|d| match &d.auth {
        DestinationAuth::OAuth2 {
            service: TokenServiceRef::Binding(kind),
            ..
        } => Some((d.as_ref(), *kind)),
        _ => None,
    })
}
