//! A `destinationConfiguration` from the Destination service turned into what the pipeline
//! needs: a [`Destination`] (URL, timeout, forwarding rules), how requests to it authenticate,
//! whether routes may name it dynamically, and the headers it adds (`sap-client`,
//! `URL.headers.<name>`).
//!
//! Property values arrive as strings (`"true"`, `"30000"`) or JSON scalars; both are accepted.
//! Anything xsrouter cannot honour is a [`Refusal`] with a reason for the log, never a guess.

use std::sync::Arc;
use std::time::Duration;

use http::{HeaderName, HeaderValue};
use serde_json::{Map, Value};
use url::Url;

use crate::config::Destination;
use crate::config::destination_auth::DestinationAuth;
use crate::config::destinations::{DEFAULT_TIMEOUT, ProxyType};

/// Why a destination the service returned cannot be used. Cached like a configuration: the
/// same configuration is refused the same way until it changes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error(
        "`ProxyType: OnPremise` needs the Connectivity service, which xsrouter does not support"
    )]
    OnPremise,
    #[error("{0}")]
    Invalid(String),
}

/// How requests to the destination are authenticated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Authentication {
    NoAuthentication,
    /// `User` / `Password`, used when the service sent no `authTokens`.
    Basic {
        user: String,
        password: String,
    },
    /// The client certificate in the keystore file named by `KeyStoreLocation`.
    ClientCertificate {
        key_store: String,
        password: Option<String>,
    },
    /// A type whose token the service derives from the user's (`X-user-token`).
    UserDependent,
    /// Any other type: the service's `authTokens` say what to send.
    ServiceTokens,
}

/// The types for which the service needs the user's token to issue `authTokens`.
const USER_DEPENDENT: [&str; 5] = [
    "OAuth2UserTokenExchange",
    "OAuth2JWTBearer",
    "OAuth2SAMLBearerAssertion",
    "SAMLAssertion",
    "PrincipalPropagation",
];

/// A usable destination configuration.
#[derive(Debug, Clone)]
pub struct DestinationConfiguration {
    pub destination: Destination,
    pub authentication: Authentication,
    /// `HTML5.DynamicDestination`: routes may name it with `$n` or `*`.
    pub dynamic: bool,
    /// `TrustStoreLocation`: a PEM file among the lookup's `certificates`.
    pub trust_store: Option<String>,
    /// `URL.headers.<name>`: sent unless the client sent the header.
    pub added_headers: Vec<(HeaderName, HeaderValue)>,
    /// `sap-client`: always sent as the `sap-client` header.
    pub sap_client: Option<HeaderValue>,
}

impl DestinationConfiguration {
    /// Whether the service issues this destination's token only with the user's token.
    pub fn needs_user(&self) -> bool {
        self.authentication == Authentication::UserDependent
    }
}

fn text<'a>(config: &'a Map<String, Value>, key: &str) -> Option<&'a str> {
    match config.get(key)? {
        Value::String(s) => Some(s.trim()).filter(|s| !s.is_empty()),
        _ => None,
    }
}

fn flag(config: &Map<String, Value>, key: &str) -> Result<Option<bool>, Refusal> {
    match config.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(Value::String(s)) if s.trim().eq_ignore_ascii_case("true") => Ok(Some(true)),
        Some(Value::String(s)) if s.trim().eq_ignore_ascii_case("false") => Ok(Some(false)),
        Some(other) => Err(Refusal::Invalid(format!(
            "`{key}` must be true or false, found {other}"
        ))),
    }
}

fn millis(config: &Map<String, Value>, key: &str) -> Result<Option<Duration>, Refusal> {
    let value = match config.get(key) {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::Number(n)) => n.as_u64(),
        Some(Value::String(s)) => s.trim().parse().ok(),
        Some(_) => None,
    };
    match value {
        Some(ms) if ms > 0 => Ok(Some(Duration::from_millis(ms))),
        _ => Err(Refusal::Invalid(format!(
            "`{key}` must be a positive number of milliseconds"
        ))),
    }
}

fn header_value(key: &str, value: &str) -> Result<HeaderValue, Refusal> {
    HeaderValue::from_str(value)
        .map_err(|_| Refusal::Invalid(format!("`{key}` is not usable as an HTTP header value")))
}

/// Converts the service's `destinationConfiguration` of the destination looked up as `name`.
pub fn parse(name: &str, config: &Map<String, Value>) -> Result<DestinationConfiguration, Refusal> {
    if let Some(kind) = text(config, "Type")
        && !kind.eq_ignore_ascii_case("HTTP")
    {
        return Err(Refusal::Invalid(format!(
            "`Type: {kind}` is not an HTTP destination"
        )));
    }
    let proxy_type = match text(config, "ProxyType") {
        None => ProxyType::Internet,
        Some(t) if t.eq_ignore_ascii_case("Internet") => ProxyType::Internet,
        Some(t) if t.eq_ignore_ascii_case("OnPremise") => return Err(Refusal::OnPremise),
        Some(other) => {
            return Err(Refusal::Invalid(format!(
                "`ProxyType: {other}` is not supported (Internet)"
            )));
        }
    };
    let url = text(config, "URL").ok_or_else(|| Refusal::Invalid("no `URL`".to_owned()))?;
    let url = match Url::parse(url) {
        Ok(url)
            if matches!(url.scheme(), "http" | "https" | "ws" | "wss")
                && url.host().is_some()
                && url.username().is_empty()
                && url.password().is_none() =>
        {
            url
        }
        _ => {
            return Err(Refusal::Invalid(
                "`URL` must be an absolute http or https URL with a host and no user information"
                    .to_owned(),
            ));
        }
    };
    let authentication = match text(config, "Authentication").unwrap_or("NoAuthentication") {
        "NoAuthentication" => Authentication::NoAuthentication,
        "BasicAuthentication" => match (text(config, "User"), config.get("Password")) {
            (Some(user), Some(Value::String(password))) => Authentication::Basic {
                user: user.to_owned(),
                password: password.clone(),
            },
            _ => Authentication::ServiceTokens,
        },
        "ClientCertificateAuthentication" => Authentication::ClientCertificate {
            key_store: text(config, "KeyStoreLocation")
                .ok_or_else(|| {
                    Refusal::Invalid(
                        "ClientCertificateAuthentication without `KeyStoreLocation`".to_owned(),
                    )
                })?
                .to_owned(),
            password: match config.get("KeyStorePassword") {
                Some(Value::String(p)) => Some(p.clone()),
                _ => None,
            },
        },
        kind if USER_DEPENDENT.contains(&kind) => Authentication::UserDependent,
        _ => Authentication::ServiceTokens,
    };
    let mut added_headers = Vec::new();
    for (key, value) in config {
        let Some(header) = key.strip_prefix("URL.headers.") else {
            continue;
        };
        let name = HeaderName::from_bytes(header.as_bytes())
            .map_err(|_| Refusal::Invalid(format!("`{key}` does not name an HTTP header")))?;
        let Value::String(value) = value else {
            return Err(Refusal::Invalid(format!("`{key}` must be a string")));
        };
        added_headers.push((name, header_value(key, value)?));
    }
    let sap_client = text(config, "sap-client")
        .map(|v| header_value("sap-client", v))
        .transpose()?;
    let forward_auth_token = flag(config, "HTML5.ForwardAuthToken")?.unwrap_or(false);
    let destination = Destination {
        name: name.to_owned(),
        position: 0,
        url,
        proxy: None,
        forward_auth_token,
        forward_auth_certificates: flag(config, "HTML5.ForwardAuthCertificates")?.unwrap_or(false),
        // `TrustAll` is not honoured: server certificates of service destinations are always
        // verified (a `TrustStoreLocation` names what to trust instead).
        strict_ssl: true,
        timeout: millis(config, "HTML5.Timeout")?.unwrap_or(DEFAULT_TIMEOUT),
        set_x_forwarded_headers: flag(config, "HTML5.SetXForwardedHeaders")?.unwrap_or(true),
        proxy_type,
        ias_dependency_name: text(config, "HTML5.IASDependencyName").map(str::to_owned),
        preserve_host_header: flag(config, "HTML5.PreserveHostHeader")?.unwrap_or(false),
        auth: DestinationAuth::None,
        metric_name: Arc::from(name),
    };
    Ok(DestinationConfiguration {
        destination,
        authentication,
        dynamic: flag(config, "HTML5.DynamicDestination")?.unwrap_or(false),
        trust_store: text(config, "TrustStoreLocation").map(str::to_owned),
        added_headers,
        sap_client,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(json: Value) -> Map<String, Value> {
        match json {
            Value::Object(map) => map,
            _ => Map::new(),
        }
    }

    #[test]
    fn html5_properties_and_headers() {
        let parsed = parse(
            "orders",
            &config(serde_json::json!({
                "Name": "orders", "Type": "HTTP", "URL": "https://orders.example/api",
                "Authentication": "NoAuthentication", "ProxyType": "Internet",
                "HTML5.ForwardAuthToken": "true", "HTML5.Timeout": "1500",
                "HTML5.PreserveHostHeader": true, "HTML5.DynamicDestination": "TRUE",
                "HTML5.SetXForwardedHeaders": "false", "HTML5.IASDependencyName": "orders-api",
                "sap-client": "100", "URL.headers.x-tenant": "t1"
            })),
        )
        .expect("usable");
        let d = &parsed.destination;
        assert_eq!(d.url.as_str(), "https://orders.example/api");
        assert!(d.forward_auth_token && d.preserve_host_header && !d.set_x_forwarded_headers);
        assert_eq!(d.timeout, Duration::from_millis(1500));
        assert_eq!(d.ias_dependency_name.as_deref(), Some("orders-api"));
        assert!(parsed.dynamic && !parsed.needs_user());
        assert_eq!(parsed.sap_client, Some(HeaderValue::from_static("100")));
        assert_eq!(parsed.added_headers.len(), 1);
        assert_eq!(parsed.added_headers[0].0.as_str(), "x-tenant");
    }

    #[test]
    fn defaults_and_user_dependent_types() {
        let parsed = parse(
            "x",
            &config(serde_json::json!({"URL": "http://x.example", "Authentication": "OAuth2UserTokenExchange"})),
        )
        .expect("usable");
        assert!(parsed.needs_user() && !parsed.dynamic);
        assert_eq!(parsed.destination.timeout, DEFAULT_TIMEOUT);
        assert!(parsed.destination.set_x_forwarded_headers);
    }

    #[test]
    fn refusals() {
        let refused = |json: Value| parse("x", &config(json)).expect_err("refused");
        assert_eq!(
            refused(serde_json::json!({"URL": "http://x", "ProxyType": "OnPremise"})),
            Refusal::OnPremise
        );
        for (json, want) in [
            (serde_json::json!({}), "no `URL`"),
            (serde_json::json!({"URL": "ftp://x"}), "`URL` must be"),
            (serde_json::json!({"URL": "http://u:p@x"}), "`URL` must be"),
            (
                serde_json::json!({"URL": "http://x", "Type": "RFC"}),
                "not an HTTP destination",
            ),
            (
                serde_json::json!({"URL": "http://x", "HTML5.Timeout": "soon"}),
                "`HTML5.Timeout`",
            ),
            (
                serde_json::json!({"URL": "http://x", "URL.headers.bad name": "v"}),
                "does not name",
            ),
            (
                serde_json::json!({"URL": "http://x", "Authentication": "ClientCertificateAuthentication"}),
                "KeyStoreLocation",
            ),
        ] {
            let reason = refused(json).to_string();
            assert!(reason.contains(want), "{reason:?} should contain {want:?}");
        }
    }
}
