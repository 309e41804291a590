//! Business services: routes with `service` (and `endpoint`) reach a service bound in
//! `VCAP_SERVICES` or a binding directory. The binding gives the URL (`endpoints.<endpoint>` or
//! `url`) and its own UAA client (`uaa`), from which a token is obtained: the user's token is
//! exchanged (jwt-bearer) when a user is logged in, otherwise a client_credentials token is
//! minted (`grant_type: client_credentials` always mints).
//!
//! Each (service, endpoint) pair becomes an internal destination named
//! `service:<name>[/<endpoint>]`, so forwarding and tokens work exactly as for destinations.

use std::collections::BTreeMap;

use serde_json::Value;

use super::bindings::{Bindings, ServiceBinding};
use super::destination_auth::{DestinationAuth, OAuthFlow, TokenServiceRef};
use super::destinations::{DEFAULT_TIMEOUT, Destination, ProxyType};
use super::problem::Problems;
use super::xs_app::{RouteTargetDef, XsApp};
use crate::secret::Secret;

/// The internal destination name of a service route.
pub fn service_key(name: &str, endpoint: Option<&str>) -> String {
    match endpoint {
        Some(endpoint) => format!("service:{name}/{endpoint}"),
        None => format!("service:{name}"),
    }
}

/// The endpoint a service route uses: its own, else xs-app.json `services.<name>.endpoint`.
pub fn endpoint_of<'a>(
    xs_app: &'a XsApp,
    name: &str,
    route_endpoint: Option<&'a str>,
) -> Option<&'a str> {
    route_endpoint.or_else(|| {
        xs_app
            .services
            .get(name)
            .and_then(|s| s.endpoint.as_deref())
    })
}

fn find<'b>(bindings: &'b Bindings, name: &str) -> Option<&'b ServiceBinding> {
    bindings
        .services
        .iter()
        .chain(&bindings.directories)
        .find(|b| {
            b.credentials
                .get("sap.cloud.service")
                .and_then(Value::as_str)
                == Some(name)
                || b.name == name
        })
}

/// Destinations for every service route of `xs_app`.
pub fn destinations(
    xs_app: &XsApp,
    bindings: &Bindings,
    origin: &str,
    problems: &mut Problems,
) -> BTreeMap<String, Destination> {
    let mut out = BTreeMap::new();
    for route in &xs_app.routes {
        let i = route.index;
        let RouteTargetDef::Service { name, endpoint } = &route.to else {
            continue;
        };
        if name == crate::user_api::SERVICE {
            continue; // answered by the router itself
        }
        let endpoint = endpoint_of(xs_app, name, endpoint.as_deref());
        let key = service_key(name, endpoint);
        if out.contains_key(&key) {
            continue;
        }
        let path = format!("$.routes[{i}].service");
        let Some(binding) = find(bindings, name) else {
            problems.push(
                origin,
                path,
                format!(
                    "no bound service provides `{name}` (by `sap.cloud.service` or instance name)"
                ),
            );
            continue;
        };
        match destination_for(binding, &key, endpoint) {
            Ok(destination) => {
                out.insert(key, destination);
            }
            Err(reason) => problems.push(
                &binding.origin,
                binding.path.clone(),
                format!("service `{}`: {reason}", binding.name),
            ),
        }
    }
    out
}

fn destination_for(
    binding: &ServiceBinding,
    key: &str,
    endpoint: Option<&str>,
) -> Result<Destination, String> {
    let credentials = &binding.credentials;
    let url_text = match endpoint {
        Some(endpoint) => match credentials.get("endpoints").and_then(|e| e.get(endpoint)) {
            Some(Value::String(url)) => url.clone(),
            Some(Value::Object(o)) => o
                .get("url")
                .and_then(Value::as_str)
                .ok_or("the endpoint has no `url`")?
                .to_owned(),
            _ => {
                return Err(format!(
                    "no endpoint `{endpoint}` in `credentials.endpoints`"
                ));
            }
        },
        None => credentials
            .get("url")
            .and_then(Value::as_str)
            .ok_or("no `url` in its credentials")?
            .to_owned(),
    };
    let url =
        url::Url::parse(&url_text).map_err(|e| format!("`{url_text}` is not a valid URL: {e}"))?;
    let grant_type = credentials
        .get("grant_type")
        .and_then(Value::as_str)
        .unwrap_or("user_token");
    let flow = match grant_type {
        "user_token" => OAuthFlow::UserTokenOrClientCredentials,
        "client_credentials" => OAuthFlow::ClientCredentials,
        other => return Err(format!("grant_type `{other}` is not supported yet")),
    };
    let uaa = credentials
        .get("uaa")
        .and_then(Value::as_object)
        .ok_or("no `uaa` credentials")?;
    let text = |key: &str| {
        uaa.get(key)
            .and_then(Value::as_str)
            .map(|s| s.trim_end_matches('/').to_owned())
    };
    if text("certificate").is_some() && text("clientsecret").is_none() {
        return Err("x509 `uaa` credentials of business services are not supported yet".to_owned());
    }
    let (Some(client_id), Some(secret), Some(uaa_url)) =
        (text("clientid"), text("clientsecret"), text("url"))
    else {
        return Err("`uaa` needs `clientid`, `clientsecret` and `url`".to_owned());
    };
    Ok(Destination {
        name: key.to_owned(),
        metric_name: key.into(),
        position: 0,
        url,
        proxy: None,
        forward_auth_token: false,
        forward_auth_certificates: false,
        strict_ssl: true,
        timeout: DEFAULT_TIMEOUT,
        set_x_forwarded_headers: true,
        proxy_type: ProxyType::Internet,
        ias_dependency_name: None,
        preserve_host_header: false,
        auth: DestinationAuth::OAuth2 {
            flow,
            service: TokenServiceRef::Explicit {
                url: format!("{uaa_url}/oauth/token"),
                client_id,
                client_secret: Some(Secret::new(secret)),
                basic: None,
            },
            scope: None,
            audience: None,
        },
    })
}
