//! Headers the router adds to its responses: `x-frame-options: SAMEORIGIN` (unless
//! `SEND_XFRAMEOPTIONS=false`), the `httpHeaders` environment variable and xs-app.json
//! `responseHeaders`. They are defaults: a header the backend sets itself is kept.

use http::{HeaderMap, HeaderName, HeaderValue};
use serde_json::Value;

use crate::config::problem::{Problems, index, syntax_reason};
use crate::config::xs_app::HeaderDef;

/// The headers to add to every response, in order of precedence (first wins).
#[derive(Debug, Clone, Default)]
pub struct ResponseHeaderPolicy {
    headers: Vec<(HeaderName, HeaderValue)>,
}

impl ResponseHeaderPolicy {
    pub fn from_config(
        send_x_frame_options: bool,
        http_headers_env: Option<(&str, String)>,
        response_headers: &[HeaderDef],
        problems: &mut Problems,
    ) -> Self {
        let mut headers = Vec::new();
        // xs-app.json was validated by its own parser; invalid entries were reported there.
        for def in response_headers {
            if let (Ok(name), Ok(value)) = (
                HeaderName::from_bytes(def.name.as_bytes()),
                HeaderValue::from_str(&def.value),
            ) {
                headers.push((name, value));
            }
        }
        if let Some((text, origin)) = http_headers_env {
            headers.extend(parse_http_headers(text, &origin, problems));
        }
        if send_x_frame_options {
            headers.push((
                http::header::X_FRAME_OPTIONS,
                HeaderValue::from_static("SAMEORIGIN"),
            ));
        }
        Self { headers }
    }

    /// Adds each configured header the response does not have yet.
    pub fn apply(&self, response: &mut HeaderMap) {
        for (name, value) in &self.headers {
            if !response.contains_key(name) {
                response.insert(name.clone(), value.clone());
            }
        }
    }
}

/// `httpHeaders`: a JSON array of single-entry objects, `[{"Content-Security-Policy": "..."}]`.
fn parse_http_headers(
    text: &str,
    origin: &str,
    problems: &mut Problems,
) -> Vec<(HeaderName, HeaderValue)> {
    let mut out = Vec::new();
    let doc: Value = match serde_json::from_str(text) {
        Ok(doc) => doc,
        Err(err) => {
            problems.push(origin, "$", syntax_reason(&err));
            return out;
        }
    };
    let Value::Array(items) = doc else {
        problems.push(
            origin,
            "$",
            "must be a JSON array of {\"header-name\": \"value\"} objects",
        );
        return out;
    };
    for (i, item) in items.iter().enumerate() {
        let at = index("$", i);
        let Value::Object(entries) = item else {
            problems.push(origin, at, "must be an object {\"header-name\": \"value\"}");
            continue;
        };
        for (name, value) in entries {
            let Some(value) = value.as_str() else {
                problems.push(
                    origin,
                    format!("{at}.{name}"),
                    "the header value must be a string",
                );
                continue;
            };
            let lower = name.to_ascii_lowercase();
            if matches!(lower.as_str(), "authorization" | "cookie" | "set-cookie") {
                problems.push(
                    origin,
                    format!("{at}.{name}"),
                    "this header may not be set for every response",
                );
                continue;
            }
            match (
                HeaderName::from_bytes(name.as_bytes()),
                HeaderValue::from_str(value),
            ) {
                (Ok(name), Ok(value)) => out.push((name, value)),
                (Err(_), _) => problems.push(
                    origin,
                    format!("{at}.{name}"),
                    "not a valid HTTP header name",
                ),
                (_, Err(_)) => problems.push(
                    origin,
                    format!("{at}.{name}"),
                    "not a valid HTTP header value",
                ),
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_do_not_override_backend_headers() {
        let mut problems = Problems::default();
        let policy = ResponseHeaderPolicy::from_config(
            true,
            Some((
                r#"[{"X-Env": "env"}, {"Content-Security-Policy": "default-src 'self'"}]"#,
                "env httpHeaders".to_owned(),
            )),
            &[HeaderDef {
                name: "X-Test".into(),
                value: "xs".into(),
            }],
            &mut problems,
        );
        assert!(problems.is_empty());
        let mut headers = HeaderMap::new();
        headers.insert("x-test", HeaderValue::from_static("backend"));
        policy.apply(&mut headers);
        assert_eq!(headers["x-test"], "backend");
        assert_eq!(headers["x-env"], "env");
        assert_eq!(headers["x-frame-options"], "SAMEORIGIN");
        assert_eq!(headers["content-security-policy"], "default-src 'self'");
    }

    #[test]
    fn invalid_http_headers_are_reported() {
        let mut problems = Problems::default();
        ResponseHeaderPolicy::from_config(
            false,
            Some((
                r#"[{"Set-Cookie": "a=b"}, {"X-A": 1}, "x"]"#,
                "env httpHeaders".to_owned(),
            )),
            &[],
            &mut problems,
        );
        let found: Vec<String> = problems
            .into_error()
            .problems
            .iter()
            .map(|p| p.path.clone())
            .collect();
        assert_eq!(found, vec!["$[0].Set-Cookie", "$[1].X-A", "$[2]"]);
    }
}
