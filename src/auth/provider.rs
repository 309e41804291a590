//! An identity provider the router logs users in with: the bound XSUAA or IAS service, its
//! authorize, token, key and logout endpoints, and the validator for its tokens. XSUAA's
//! endpoints follow from the binding; IAS's are discovered (`/.well-known/openid-configuration`)
//! on first use.

use std::sync::Arc;

use serde_json::Value;
use tokio::sync::OnceCell;

use super::jwt::{Expectations, JwtError, JwtValidator};
use crate::config::bindings::{AuthServiceKind, ServiceBinding};
use crate::tokens::endpoint::{EndpointError, TokenEndpoint};

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
    /// The binding's `url` (XSUAA: also the base of `/oauth/authorize`, `/token_keys`, `/logout.do`).
    pub url: String,
    pub token: Arc<TokenEndpoint>,
    expect: Expectations,
    endpoints: OnceCell<Discovered>,
    validator: OnceCell<JwtValidator>,
    http: reqwest::Client,
}

impl Provider {
    pub fn from_binding(
        kind: AuthServiceKind,
        binding: &ServiceBinding,
        has_certificate: bool,
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
        Ok(Self {
            kind,
            client_id: token.client_id.clone(),
            url,
            token: Arc::new(token),
            expect,
            endpoints,
            validator: OnceCell::new(),
            http,
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
    pub async fn validate(&self, token: &str) -> Result<Value, JwtError> {
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
