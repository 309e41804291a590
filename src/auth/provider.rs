//! An identity provider the router logs users in with: the bound XSUAA or IAS service, its
//! authorize, token, key and logout endpoints, and the validator for its tokens. XSUAA's
//! endpoints follow from the binding; IAS's are discovered (`/.well-known/openid-configuration`)
//! on first use.
//!
//! A shared-tenant-mode XSUAA binding (`tenantmode: "shared"`, with `TENANT_HOST_PATTERN`) is a
//! provider per tenant: tenant `acme` logs in at `https://acme.<uaadomain>` (authorize, logout,
//! keys), redeems codes and refreshes at the tenant's token URL (`acme.<certurl domain>` for x509
//! bindings), and only tokens that tenant issued are accepted for it (their `iss` is the tenant's
//! URL). The per-tenant providers are derived on first use and kept in a bounded cache.

use std::sync::Arc;

use serde_json::Value;
use tokio::sync::OnceCell;

use super::jwt::{Expectations, JwtError, JwtValidator};
use crate::config::bindings::{AuthServiceKind, ServiceBinding};
use crate::secret::Secret;
use crate::tenants::SharedTenantMode;
use crate::tokens::endpoint::{ClientAuth, EndpointError, EndpointUrl, TokenEndpoint};

/// Most per-tenant providers kept (a tenant beyond is derived again, its keys fetched again).
const TENANT_PROVIDERS: u64 = 10_000;

/// Endpoints found by discovery.
#[derive(Debug, Clone)]
pub struct Discovered {
    pub authorize: String,
    pub jwks: String,
    pub end_session: Option<String>,
}

#[derive(Debug)]
pub struct Provider {
    pub kind: AuthServiceKind,
    pub client_id: String,
    /// The binding's `url` (XSUAA: also the base of `/oauth/authorize`, `/token_keys`, `/logout.do`);
    /// a tenant's provider: the tenant's URL.
    pub url: String,
    pub token: Arc<TokenEndpoint>,
    /// The tenant a derived provider stands for.
    pub tenant: Option<String>,
    expect: Expectations,
    endpoints: OnceCell<Discovered>,
    validator: OnceCell<JwtValidator>,
    http: reqwest::Client,
    /// Shared tenant mode: the binding's provider is only a template for the tenants'.
    tenants: Option<Tenants>,
}

/// The per-tenant providers of a shared-tenant-mode XSUAA binding.
#[derive(Debug)]
struct Tenants {
    mode: SharedTenantMode,
    /// The binding's `certurl`, if any.
    cert_url: Option<String>,
    providers: moka::future::Cache<String, Arc<Provider>>,
}

impl Provider {
    /// The provider of a bound service. `per_tenant` (`TENANT_HOST_PATTERN` is set) makes a
    /// shared-tenant-mode XSUAA binding a provider per tenant.
    pub fn from_binding(
        kind: AuthServiceKind,
        binding: &ServiceBinding,
        has_certificate: bool,
        per_tenant: bool,
        http: reqwest::Client,
    ) -> Result<Self, EndpointError> {
        let text = |key: &str| binding.url_credential(key);
        let token = TokenEndpoint::for_binding(kind, binding, has_certificate)?;
        let url = text("url")
            .ok_or_else(|| EndpointError(format!("binding `{}` has no `url`", binding.name)))?;
        let mut issuer_prefixes = vec![url.clone()];
        issuer_prefixes.extend(text("certurl"));
        let expect = Expectations {
            issuer_prefixes,
            audiences: vec![token.client_id.clone()],
            xsappname: text("xsappname"),
        };
        let endpoints = OnceCell::new();
        if kind == AuthServiceKind::Xsuaa {
            let _ = endpoints.set(Discovered {
                authorize: format!("{url}/oauth/authorize"),
                jwks: format!("{url}/token_keys"),
                end_session: Some(format!("{url}/logout.do")),
            });
        }
        let tenants = (per_tenant && kind == AuthServiceKind::Xsuaa)
            .then(|| SharedTenantMode::of(binding))
            .flatten()
            .map(|mode| Tenants {
                mode,
                cert_url: text("certurl"),
                providers: moka::future::Cache::new(TENANT_PROVIDERS),
            });
        Ok(Self {
            kind,
            client_id: token.client_id.clone(),
            url,
            token: Arc::new(token),
            tenant: None,
            expect,
            endpoints,
            validator: OnceCell::new(),
            http,
            tenants,
        })
    }

    /// Whether users log in per tenant (a shared-tenant-mode XSUAA binding).
    pub fn is_per_tenant(&self) -> bool {
        self.tenants.is_some()
    }

    /// The provider for a request of `tenant`: the tenant's own for a shared-tenant-mode XSUAA
    /// binding, else this one. `None` when logins are per tenant and there is no tenant (or no
    /// usable tenant URL can be derived).
    pub async fn for_tenant(self: &Arc<Self>, tenant: Option<&str>) -> Option<Arc<Provider>> {
        let Some(tenants) = &self.tenants else {
            return Some(self.clone());
        };
        let tenant = tenant?;
        tenants
            .providers
            .optionally_get_with(tenant.to_owned(), async {
                self.derive(tenants, tenant).map(Arc::new)
            })
            .await
    }

    /// This provider as tenant `tenant` sees it: every URL on the tenant's subdomain.
    fn derive(&self, tenants: &Tenants, tenant: &str) -> Option<Provider> {
        let mode = &tenants.mode;
        let url = mode.tenant_url(&self.url, tenant, false)?;
        let cert_url = match &tenants.cert_url {
            Some(cert_url) if mode.cert_domain.is_some() => {
                Some(mode.tenant_url(cert_url, tenant, true)?)
            }
            _ => None,
        };
        let EndpointUrl::Fixed(token_url) = &self.token.url else {
            return None;
        };
        // The token URL is on `certurl` exactly when the certificate authenticates.
        let on_cert_url =
            matches!(self.token.auth, ClientAuth::Certificate(_)) && mode.cert_domain.is_some();
        let token_url = mode.tenant_url(token_url, tenant, on_cert_url)?;
        let mut issuer_prefixes = vec![url.clone()];
        issuer_prefixes.extend(cert_url);
        let endpoints = OnceCell::new_with(Some(Discovered {
            authorize: format!("{url}/oauth/authorize"),
            jwks: format!("{url}/token_keys"),
            end_session: Some(format!("{url}/logout.do")),
        }));
        Some(Self {
            kind: self.kind,
            client_id: self.client_id.clone(),
            url,
            token: Arc::new(TokenEndpoint {
                url: EndpointUrl::Fixed(token_url),
                client_id: self.token.client_id.clone(),
                auth: self.token.auth.clone(),
            }),
            tenant: Some(tenant.to_owned()),
            expect: Expectations {
                issuer_prefixes,
                ..self.expect.clone()
            },
            endpoints,
            validator: OnceCell::new(),
            http: self.http.clone(),
            tenants: None,
        })
    }

    pub fn xsappname(&self) -> Option<&str> {
        self.expect.xsappname.as_deref()
    }

    /// The provider's endpoints (discovered once for IAS).
    pub async fn endpoints(&self) -> Result<&Discovered, JwtError> {
        self.endpoints
            .get_or_try_init(|| async {
                let url = format!("{}/.well-known/openid-configuration", self.url);
                let response = self
                    .http
                    .get(&url)
                    .send()
                    .await
                    .map_err(|e| JwtError::Keys(e.to_string()))?;
                let bytes = response
                    .bytes()
                    .await
                    .map_err(|e| JwtError::Keys(e.to_string()))?;
                let doc: Value =
                    serde_json::from_slice(&bytes).map_err(|e| JwtError::Keys(e.to_string()))?;
                let field = |k: &str| doc[k].as_str().map(str::to_owned);
                Ok(Discovered {
                    authorize: field("authorization_endpoint")
                        .unwrap_or_else(|| format!("{}/oauth2/authorize", self.url)),
                    jwks: field("jwks_uri").unwrap_or_else(|| format!("{}/oauth2/certs", self.url)),
                    end_session: field("end_session_endpoint"),
                })
            })
            .await
    }

    /// Validates a token of this provider; returns its claims.
    pub async fn validate(&self, token: &Secret) -> Result<Arc<Value>, JwtError> {
        let validator = self
            .validator
            .get_or_try_init(|| async {
                let jwks = self.endpoints().await?.jwks.clone();
                Ok::<_, JwtError>(JwtValidator::new(
                    jwks,
                    self.http.clone(),
                    self.expect.clone(),
                ))
            })
            .await?;
        validator
            .validate(token, crate::identity::rotation::now_unix())
            .await
    }
}
