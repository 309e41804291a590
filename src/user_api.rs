//! approuter's user API: a route with `"service": "sap-approuter-userapi"` answers
//! `…/currentUser` and `…/attributes` (the rewritten URL decides) with the logged-in user's
//! details as JSON, taken from the user's token. Without a user: 401.

use axum::body::Body;
use axum::response::Response;
use http::{HeaderValue, StatusCode, header};
use serde_json::{Map, Value};

use crate::auth::Caller;
use crate::config::bindings::AuthServiceKind;
use crate::rejection::Rejection;

/// The service name that makes a route the user API.
pub const SERVICE: &str = "sap-approuter-userapi";

/// Claims `/attributes` never repeats (token mechanics and the fields shown by name already).
const IGNORED_CLAIMS: &[&str] = &[
    "aud",
    "nonce",
    "remoteEntityId",
    "zone_uuid",
    "sub",
    "given_name",
    "family_name",
    "email",
    "first_name",
    "last_name",
    "azp",
    "mail",
    "app_tid",
    "iss",
    "sid",
    "ias_iss",
    "scim_id",
    "cnf",
    "jti",
    "exp",
    "iat",
    "nbf",
    "auth_time",
    "acr",
    "amr",
    "at_hash",
    "c_hash",
    "sub_jwk",
    "ias_apis",
];

/// Answers a user API request; `url` is the route's rewritten URL.
pub fn answer(url: &str, caller: Option<&Caller>) -> Result<Response, Rejection> {
    let Some(caller) = caller else {
        return Err(Rejection::Unauthorized("Unauthorized"));
    };
    let path = url.split('?').next().unwrap_or_default();
    let claims = caller.claims.as_ref();
    let mut details = user_details(claims);
    if path.ends_with("/currentUser") || path == "currentUser" {
        let display = match (text(claims, "given_name"), text(claims, "family_name")) {
            (Some(first), Some(last)) => {
                format!(
                    "{first} {last} ({})",
                    details["name"].as_str().unwrap_or_default()
                )
            }
            _ => details["name"].as_str().unwrap_or_default().to_owned(),
        };
        details.insert("displayName".into(), Value::String(display));
    } else if path.ends_with("/attributes") || path == "attributes" {
        let attributes = match caller.provider {
            // XSUAA carries the identity provider's attributes in `xs.user.attributes`.
            AuthServiceKind::Xsuaa => claims
                .get("xs.user.attributes")
                .and_then(Value::as_object)
                .cloned()
                .unwrap_or_default(),
            AuthServiceKind::Ias => claims
                .as_object()
                .map(|all| {
                    all.iter()
                        .filter(|(k, _)| !IGNORED_CLAIMS.contains(&k.as_str()))
                        .map(|(k, v)| (k.clone(), v.clone()))
                        .collect()
                })
                .unwrap_or_default(),
        };
        for (key, value) in attributes {
            details.entry(key).or_insert(value);
        }
    } else {
        return Err(Rejection::NotFound(
            "Not Found: the user API has /currentUser and /attributes",
        ));
    }
    let body = serde_json::to_vec_pretty(&Value::Object(details)).unwrap_or_default();
    let mut response = Response::new(Body::from(body));
    *response.status_mut() = StatusCode::OK;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json; charset=utf-8"),
    );
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("no-cache, no-store"),
    );
    Ok(response)
}

fn text<'a>(claims: &'a Value, name: &str) -> Option<&'a str> {
    claims.get(name).and_then(Value::as_str)
}

/// The fields both endpoints share, as approuter derives them from the token.
fn user_details(claims: &Value) -> Map<String, Value> {
    let mut details = Map::new();
    let mut put = |key: &str, value: Option<&str>| {
        if let Some(value) = value {
            details.insert(key.into(), Value::String(value.to_owned()));
        }
    };
    put("firstname", text(claims, "given_name"));
    put("lastname", text(claims, "family_name"));
    put("email", text(claims, "email").or(text(claims, "name")));
    let name = if claims.get("ext_attr").is_some() {
        text(claims, "user_name").or(text(claims, "email"))
    } else {
        text(claims, "sub")
    };
    put("name", name);
    if let Some(scopes) = claims.get("scope") {
        let list = match scopes {
            Value::String(s) => {
                Value::Array(s.split(' ').map(|s| Value::String(s.into())).collect())
            }
            other => other.clone(),
        };
        details.insert("scopes".into(), list);
    }
    details
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn details_follow_approuter_field_rules() {
        let claims = serde_json::json!({
            "given_name": "Alice", "family_name": "Doe", "email": "alice@example.com",
            "user_name": "alice", "sub": "id-1", "ext_attr": {"enhancer": "XSUAA"},
            "scope": ["openid", "app.Read"]
        });
        let details = user_details(&claims);
        assert_eq!(details["name"], "alice");
        assert_eq!(details["email"], "alice@example.com");
        assert_eq!(details["scopes"], serde_json::json!(["openid", "app.Read"]));
        let ias = serde_json::json!({"sub": "id-2", "scope": "a b"});
        let details = user_details(&ias);
        assert_eq!(details["name"], "id-2");
        assert_eq!(details["scopes"], serde_json::json!(["a", "b"]));
        assert!(details.get("firstname").is_none());
    }
}
