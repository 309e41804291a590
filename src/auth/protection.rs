//! Checks on an authenticated request: scopes (403) and CSRF tokens (403 with
//! `x-csrf-token: Required`).

use http::{HeaderMap, Method};
use serde_json::Value;

use super::jwt::scopes;
use crate::config::xs_app::ScopeRule;

/// Whether the user's scopes satisfy the route's `scope` for this method. `$XSAPPNAME` in the
/// configured scopes stands for the application name of the binding.
pub fn scope_allows(
    rule: &ScopeRule,
    method: &Method,
    claims: &Value,
    xsappname: Option<&str>,
) -> bool {
    let required = rule
        .per_method
        .get(method.as_str())
        .unwrap_or(&rule.default);
    if required.is_empty() {
        return true;
    }
    let granted = scopes(claims);
    required.iter().any(|scope| {
        let scope = match xsappname {
            Some(app) => scope.replace("$XSAPPNAME", app),
            None => scope.clone(),
        };
        granted.contains(&scope.as_str())
    })
}

/// Methods that change nothing and need no CSRF token.
pub fn is_safe(method: &Method) -> bool {
    matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

/// `x-csrf-token: fetch` (any case).
pub fn wants_csrf_token(headers: &HeaderMap) -> bool {
    headers
        .get("x-csrf-token")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("fetch"))
}

/// Whether the request's `x-csrf-token` equals the session's token (constant time).
pub fn csrf_matches(headers: &HeaderMap, expected: Option<&str>) -> bool {
    let (Some(given), Some(expected)) =
        (headers.get("x-csrf-token").map(|v| v.as_bytes()), expected)
    else {
        return false;
    };
    let expected = expected.as_bytes();
    given.len() == expected.len()
        && given
            .iter()
            .zip(expected)
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[test]
    fn scopes_per_method_and_default() {
        let rule = ScopeRule {
            per_method: BTreeMap::from([("GET".to_owned(), vec!["$XSAPPNAME.Read".to_owned()])]),
            default: vec!["$XSAPPNAME.Write".to_owned()],
        };
        let reader = serde_json::json!({"scope": ["app!t1.Read"]});
        assert!(scope_allows(&rule, &Method::GET, &reader, Some("app!t1")));
        assert!(!scope_allows(&rule, &Method::POST, &reader, Some("app!t1")));
        assert!(!scope_allows(&rule, &Method::GET, &reader, Some("other")));
        assert!(scope_allows(
            &ScopeRule::default(),
            &Method::DELETE,
            &reader,
            None
        ));
    }

    #[test]
    fn csrf_comparison() {
        let mut headers = HeaderMap::new();
        assert!(!csrf_matches(&headers, Some("t")));
        headers.insert("x-csrf-token", http::HeaderValue::from_static("t"));
        assert!(csrf_matches(&headers, Some("t")));
        assert!(!csrf_matches(&headers, Some("u")));
        assert!(!csrf_matches(&headers, None));
        headers.insert("x-csrf-token", http::HeaderValue::from_static("FeTcH"));
        assert!(wants_csrf_token(&headers));
    }
}
