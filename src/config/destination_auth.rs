//! How a destination authenticates the requests xsrouter sends it: the Destination service's
//! `authentication` types, given as properties of a `destinations` entry.
//!
//! | `authentication` | properties |
//! |---|---|
//! | `NoAuthentication` (default) | — |
//! | `BasicAuthentication` | `user`, `password` |
//! | `OAuth2ClientCredentials` | `tokenServiceURL`, `clientId`, `clientSecret` (or `tokenServiceUser` + `tokenServicePassword`), `scope`, `audience`; or `tokenServiceBinding`: `xsuaa` / `ias` |
//! | `OAuth2JWTBearer`, `OAuth2UserTokenExchange` | as above; the logged-in user's token is exchanged |
//!
//! `tokenServiceBinding` names the router's own bound XSUAA or IAS service: its token endpoint
//! and client, with mTLS when the binding is x509.

use base64::Engine;
use http::HeaderValue;

use super::bindings::AuthServiceKind;
use super::problem::{Problems, child};
use crate::secret::Secret;

/// Which OAuth grant obtains the destination's token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OAuthFlow {
    /// A technical token of the client (client_credentials).
    ClientCredentials,
    /// The user's token exchanged for this client (jwt-bearer).
    JwtBearer,
    /// jwt-bearer when a user is logged in, else client_credentials (business services).
    UserTokenOrClientCredentials,
}

/// The token service a destination uses.
#[derive(Debug, Clone)]
pub enum TokenServiceRef {
    /// Given in the destination.
    Explicit {
        url: String,
        client_id: String,
        client_secret: Option<Secret>,
        /// `tokenServiceUser` / `tokenServicePassword`: HTTP Basic towards the token service.
        basic: Option<(String, Secret)>,
    },
    /// The router's bound XSUAA or IAS service.
    Binding(AuthServiceKind),
}

/// A destination's authentication, validated.
#[derive(Debug, Clone, Default)]
pub enum DestinationAuth {
    #[default]
    None,
    /// `Authorization: Basic ...`, precomputed.
    Basic(Secret),
    OAuth2 {
        flow: OAuthFlow,
        service: TokenServiceRef,
        scope: Option<String>,
        audience: Option<String>,
    },
}

/// The authentication properties of one `destinations` entry, as given.
#[derive(Debug, Default)]
pub struct AuthFields {
    pub authentication: Option<String>,
    pub user: Option<String>,
    pub password: Option<String>,
    pub token_service_url: Option<String>,
    pub client_id: Option<String>,
    pub client_secret: Option<String>,
    pub token_service_user: Option<String>,
    pub token_service_password: Option<String>,
    pub scope: Option<String>,
    pub audience: Option<String>,
    pub token_service_binding: Option<String>,
}

impl AuthFields {
    pub fn validate(self, origin: &str, path: &str, problems: &mut Problems) -> DestinationAuth {
        let kind = self.authentication.as_deref().unwrap_or("NoAuthentication");
        match kind {
            "NoAuthentication" => DestinationAuth::None,
            "BasicAuthentication" => match (self.user, self.password) {
                (Some(user), Some(password)) => {
                    let encoded = base64::engine::general_purpose::STANDARD
                        .encode(format!("{user}:{password}"));
                    let header = format!("Basic {encoded}");
                    if HeaderValue::from_str(&header).is_err() {
                        problems.push(origin, child(path, "user"), "not usable in an HTTP header");
                    }
                    DestinationAuth::Basic(Secret::new(header))
                }
                _ => {
                    problems.push(
                        origin,
                        child(path, "authentication"),
                        "BasicAuthentication needs `user` and `password`",
                    );
                    DestinationAuth::None
                }
            },
            "OAuth2ClientCredentials" | "OAuth2JWTBearer" | "OAuth2UserTokenExchange" => {
                let flow = if kind == "OAuth2ClientCredentials" {
                    OAuthFlow::ClientCredentials
                } else {
                    OAuthFlow::JwtBearer
                };
                let Some(service) = self.token_service(origin, path, problems) else {
                    return DestinationAuth::None;
                };
                DestinationAuth::OAuth2 {
                    flow,
                    service,
                    scope: self.scope,
                    audience: self.audience,
                }
            }
            other => {
                problems.push(
                    origin,
                    child(path, "authentication"),
                    format!("`{other}` is not supported (NoAuthentication, BasicAuthentication, OAuth2ClientCredentials, OAuth2JWTBearer, OAuth2UserTokenExchange)"),
                );
                DestinationAuth::None
            }
        }
    }

    fn token_service(
        &self,
        origin: &str,
        path: &str,
        problems: &mut Problems,
    ) -> Option<TokenServiceRef> {
        if let Some(binding) = &self.token_service_binding {
            let kind = match binding.as_str() {
                "xsuaa" => AuthServiceKind::Xsuaa,
                "ias" => AuthServiceKind::Ias,
                other => {
                    problems.push(
                        origin,
                        child(path, "tokenServiceBinding"),
                        format!("`{other}` is not `xsuaa` or `ias`"),
                    );
                    return None;
                }
            };
            if self.token_service_url.is_some() || self.client_id.is_some() {
                problems.push(
                    origin,
                    child(path, "tokenServiceBinding"),
                    "give either `tokenServiceBinding` or `tokenServiceURL` + `clientId`, not both",
                );
            }
            return Some(TokenServiceRef::Binding(kind));
        }
        let (Some(url), Some(client_id)) = (&self.token_service_url, &self.client_id) else {
            problems.push(
                origin,
                child(path, "authentication"),
                "OAuth2 destinations need `tokenServiceURL` and `clientId` (or `tokenServiceBinding`)",
            );
            return None;
        };
        match url::Url::parse(url) {
            Ok(u) if matches!(u.scheme(), "http" | "https") => {}
            _ => {
                problems.push(
                    origin,
                    child(path, "tokenServiceURL"),
                    "must be an absolute http or https URL",
                );
                return None;
            }
        }
        let basic = match (&self.token_service_user, &self.token_service_password) {
            (Some(user), Some(password)) => Some((user.clone(), Secret::new(password.as_str()))),
            (None, None) => None,
            _ => {
                problems.push(
                    origin,
                    child(path, "tokenServiceUser"),
                    "`tokenServiceUser` and `tokenServicePassword` go together",
                );
                None
            }
        };
        if self.client_secret.is_none() && basic.is_none() {
            problems.push(origin, child(path, "clientSecret"), "needed (or `tokenServiceUser` + `tokenServicePassword`) to authenticate at the token service");
        }
        Some(TokenServiceRef::Explicit {
            url: url.clone(),
            client_id: client_id.clone(),
            client_secret: self.client_secret.as_deref().map(Secret::new),
            basic,
        })
    }
}
