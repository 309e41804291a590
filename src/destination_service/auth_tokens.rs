//! The `authTokens` of a lookup: the headers the destination wants (as the service says in
//! `http_header`, else `<type> <value>` as `Authorization`) and how long they stay valid
//! (`expires_in`, else the JWT's `exp`). A token with an `error` means no request is sent; the
//! reason is kept for the log, shortened and without control characters.

use std::time::Duration;

use http::{HeaderName, HeaderValue};
use serde::Deserialize;
use serde_json::Value;

use crate::secret::Secret;

/// Longest service error reason kept for the log.
const REASON_LIMIT: usize = 300;

/// One entry of `authTokens`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct AuthToken {
    #[serde(rename = "type", default)]
    pub kind: Option<String>,
    #[serde(default)]
    pub value: Option<String>,
    #[serde(default)]
    pub http_header: Option<HttpHeader>,
    #[serde(default)]
    pub expires_in: Option<Value>,
    #[serde(default)]
    pub error: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct HttpHeader {
    pub key: String,
    pub value: String,
}

/// What the tokens put in the request.
#[derive(Debug, Clone, Default)]
pub struct TokenHeaders {
    /// The `Authorization` value.
    pub authorization: Option<Secret>,
    /// Other headers the service named (marked sensitive).
    pub others: Vec<(HeaderName, HeaderValue)>,
    /// How long the shortest-lived token has left, if any says.
    pub lifetime: Option<Duration>,
}

/// Why the tokens cannot be used. Never contains a token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthTokenError {
    #[error("the Destination service could not issue the token: {0}")]
    Service(String),
    #[error("the Destination service sent a token that cannot be sent as an HTTP header")]
    Unusable,
}

/// A reason from the service, safe and short enough for a log line.
fn sanitized(reason: &str) -> String {
    reason
        .chars()
        .filter(|c| !c.is_control())
        .take(REASON_LIMIT)
        .collect()
}

fn lifetime_of(token: &AuthToken, now_unix: i64) -> Option<Duration> {
    let seconds = match &token.expires_in {
        Some(Value::Number(n)) => n.as_u64(),
        Some(Value::String(s)) => s.trim().parse().ok(),
        _ => None,
    };
    seconds
        .or_else(|| {
            let value = token.value.as_deref()?;
            let exp = crate::tokens::token::jwt_exp(value)?;
            Some(exp.saturating_sub(now_unix).max(0) as u64)
        })
        .map(Duration::from_secs)
}

/// The headers of `tokens`, or why there are none to send.
pub fn headers_of(tokens: &[AuthToken], now_unix: i64) -> Result<TokenHeaders, AuthTokenError> {
    let mut out = TokenHeaders::default();
    for token in tokens {
        if let Some(error) = &token.error {
            return Err(AuthTokenError::Service(sanitized(error)));
        }
        let (name, value) = match (&token.http_header, &token.kind, &token.value) {
            (Some(header), _, _) => (header.key.as_str(), header.value.clone()),
            (None, Some(kind), Some(value)) => {
                let kind = if kind.eq_ignore_ascii_case("bearer") {
                    "Bearer"
                } else {
                    kind.as_str()
                };
                ("Authorization", format!("{kind} {value}"))
            }
            _ => continue,
        };
        if name.eq_ignore_ascii_case("authorization") {
            let authorization = Secret::new(value);
            authorization
                .header_value()
                .ok_or(AuthTokenError::Unusable)?;
            out.authorization = Some(authorization);
        } else {
            let name =
                HeaderName::from_bytes(name.as_bytes()).map_err(|_| AuthTokenError::Unusable)?;
            let mut value = HeaderValue::from_str(&value).map_err(|_| AuthTokenError::Unusable)?;
            value.set_sensitive(true);
            out.others.push((name, value));
        }
        if let Some(lifetime) = lifetime_of(token, now_unix) {
            out.lifetime = Some(out.lifetime.map_or(lifetime, |l| l.min(lifetime)));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tokens(json: Value) -> Vec<AuthToken> {
        serde_json::from_value(json).expect("authTokens")
    }

    #[test]
    fn http_header_wins_and_shortest_lifetime_counts() {
        let found = headers_of(
            &tokens(serde_json::json!([
                {"type": "bearer", "value": "abc", "expires_in": "3600",
                 "http_header": {"key": "Authorization", "value": "Bearer abc"}},
                {"type": "x", "value": "v", "expires_in": 60,
                 "http_header": {"key": "x-api-key", "value": "k1"}}
            ])),
            0,
        )
        .expect("usable");
        assert_eq!(
            found.authorization.expect("authorization").expose(),
            "Bearer abc"
        );
        assert_eq!(found.others.len(), 1);
        assert_eq!(found.others[0].0.as_str(), "x-api-key");
        assert!(found.others[0].1.is_sensitive());
        assert_eq!(found.lifetime, Some(Duration::from_secs(60)));
    }

    #[test]
    fn type_and_value_without_http_header() {
        let found = headers_of(
            &tokens(serde_json::json!([{"type": "Basic", "value": "dTpw"}])),
            0,
        )
        .expect("usable");
        assert_eq!(
            found.authorization.expect("authorization").expose(),
            "Basic dTpw"
        );
        assert_eq!(found.lifetime, None);
    }

    #[test]
    fn errors_and_unusable_values() {
        let err = headers_of(
            &tokens(serde_json::json!([{"type": "", "value": "", "error": "Retrieval of OAuth token failed\r\ninjected"}])),
            0,
        )
        .expect_err("error");
        assert_eq!(
            err,
            AuthTokenError::Service("Retrieval of OAuth token failedinjected".to_owned())
        );
        let err = headers_of(
            &tokens(
                serde_json::json!([{"http_header": {"key": "Authorization", "value": "a\nb"}}]),
            ),
            0,
        )
        .expect_err("unusable");
        assert_eq!(err, AuthTokenError::Unusable);
    }
}
