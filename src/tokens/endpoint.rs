//! Where a token is requested and how the client authenticates there: a client secret (in the
//! form or as HTTP Basic), or the bound certificate over mTLS with only `client_id` in the form.

use serde_json::Value;
use tokio::sync::OnceCell;

use crate::config::bindings::{AuthServiceKind, ServiceBinding};
use crate::config::destination_auth::TokenServiceRef;
use crate::secret::Secret;

/// How the client proves who it is to the token service.
#[derive(Debug, Clone)]
pub enum ClientAuth {
    /// `client_secret` in the form.
    Secret(Secret),
    /// `Authorization: Basic` with this user and password.
    Basic(String, Secret),
    /// The bound identity's certificate over mTLS; only `client_id` goes in the form.
    Certificate(AuthServiceKind),
    /// Another binding's own certificate (e.g. the Destination service's): this client presents
    /// it over mTLS; only `client_id` goes in the form.
    OwnCertificate(reqwest::Client),
}

/// The token URL, fixed or found through OpenID discovery (IAS).
#[derive(Debug)]
pub enum EndpointUrl {
    Fixed(String),
    Discover {
        issuer: String,
        found: OnceCell<String>,
    },
}

/// A token endpoint and the client that uses it.
#[derive(Debug)]
pub struct TokenEndpoint {
    pub url: EndpointUrl,
    pub client_id: String,
    pub auth: ClientAuth,
}

/// Why an endpoint could not be derived from the configuration.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct EndpointError(pub String);

impl TokenEndpoint {
    /// A key that tells endpoints apart in the cache (the issuer for discovered ones).
    pub fn cache_identity(&self) -> &str {
        match &self.url {
            EndpointUrl::Fixed(url) => url,
            EndpointUrl::Discover { issuer, .. } => issuer,
        }
    }

    /// The endpoint of a destination's token service.
    pub fn for_destination(
        service: &TokenServiceRef,
        binding: Option<&ServiceBinding>,
        has_certificate: bool,
    ) -> Result<Self, EndpointError> {
        match service {
            TokenServiceRef::Explicit {
                url,
                client_id,
                client_secret,
                basic,
            } => Ok(Self {
                url: EndpointUrl::Fixed(url.clone()),
                client_id: client_id.clone(),
                auth: match (basic, client_secret) {
                    (Some((user, password)), _) => {
                        ClientAuth::Basic(user.clone(), password.clone())
                    }
                    (None, Some(secret)) => ClientAuth::Secret(secret.clone()),
                    (None, None) => return Err(EndpointError("no client secret".into())),
                },
            }),
            TokenServiceRef::Binding(kind) => {
                let binding = binding.ok_or_else(|| {
                    EndpointError(format!(
                        "no {} service is bound",
                        crate::identity::kind_name(*kind)
                    ))
                })?;
                Self::for_binding(*kind, binding, has_certificate)
            }
        }
    }

    /// The endpoint of a bound XSUAA (`certurl` with a certificate, else `url`, + `/oauth/token`)
    /// or IAS service (discovered from `url`).
    pub fn for_binding(
        kind: AuthServiceKind,
        binding: &ServiceBinding,
        has_certificate: bool,
    ) -> Result<Self, EndpointError> {
        let text = |key: &str| binding.url_credential(key);
        let name = &binding.name;
        let client_id = text("clientid")
            .ok_or_else(|| EndpointError(format!("binding `{name}` has no `clientid`")))?;
        let auth = if has_certificate {
            ClientAuth::Certificate(kind)
        } else {
            match binding
                .credentials
                .get("clientsecret")
                .and_then(Value::as_str)
            {
                Some(secret) => ClientAuth::Secret(Secret::new(secret)),
                None => {
                    return Err(EndpointError(format!(
                        "binding `{name}` has neither a certificate nor a `clientsecret`"
                    )));
                }
            }
        };
        let url = match kind {
            AuthServiceKind::Xsuaa => {
                let base = if has_certificate {
                    text("certurl").or_else(|| text("url"))
                } else {
                    text("url")
                };
                let base =
                    base.ok_or_else(|| EndpointError(format!("binding `{name}` has no `url`")))?;
                EndpointUrl::Fixed(format!("{base}/oauth/token"))
            }
            AuthServiceKind::Ias => {
                let issuer = text("url")
                    .ok_or_else(|| EndpointError(format!("binding `{name}` has no `url`")))?;
                EndpointUrl::Discover {
                    issuer,
                    found: OnceCell::new(),
                }
            }
        };
        Ok(Self {
            url,
            client_id,
            auth,
        })
    }
}
