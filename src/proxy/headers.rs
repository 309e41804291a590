//! Header rules of the forwarding path: what is removed, kept and added on the way to the
//! destination and on the way back.

use std::net::SocketAddr;

use http::header::{self, HeaderMap, HeaderName, HeaderValue};

/// Hop-by-hop headers (RFC 9110 §7.6.1 and the legacy ones proxies still see).
fn is_hop_by_hop(name: &str) -> bool {
    matches!(
        name,
        "connection"
            | "proxy-authenticate"
            | "proxy-authorization"
            | "te"
            | "trailer"
            | "transfer-encoding"
            | "upgrade"
            | "keep-alive"
            | "proxy-connection"
    )
}

/// Request headers that only mean something to the router (approuter removes them too).
fn is_router_only(name: &str) -> bool {
    matches!(
        name,
        "x-approuter-authorization"
            | "x-custom-host"
            | "x-ias-token"
            | "sap-connectivity-authentication"
            | "sap-connectivity-scc-location_id"
    )
}

/// Removes every header `doomed` picks, in one pass over the names (most requests have none).
fn remove_where(headers: &mut HeaderMap, doomed: impl Fn(&str) -> bool) {
    if !headers.keys().any(|name| doomed(name.as_str())) {
        return;
    }
    let names: Vec<HeaderName> = headers
        .keys()
        .filter(|name| doomed(name.as_str()))
        .cloned()
        .collect();
    for name in names {
        headers.remove(name);
    }
}

/// The header names listed in `Connection` (hop-by-hop for this connection only).
fn connection_tokens(headers: &HeaderMap) -> Vec<HeaderName> {
    headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|token| HeaderName::from_bytes(token.trim().as_bytes()).ok())
        .collect()
}

const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_PATH: HeaderName = HeaderName::from_static("x-forwarded-path");

/// Cookies of the router itself and of the platform's load balancer, never sent to backends.
pub struct CookiePolicy<'a> {
    pub session_cookie: &'a str,
}

impl CookiePolicy<'_> {
    fn strips(&self, name: &str) -> bool {
        name == self.session_cookie || name == "__VCAP_ID__" || name.starts_with("sapextlb")
    }
}

/// Removes hop-by-hop headers, including every header named in `Connection`.
pub fn remove_hop_by_hop(headers: &mut HeaderMap) {
    for name in connection_tokens(headers) {
        headers.remove(name);
    }
    remove_where(headers, is_hop_by_hop);
}

/// What the forwarding headers are built from.
pub struct ForwardedFrom<'a> {
    pub peer: SocketAddr,
    /// `http` or `https`: how the client reached the router.
    pub scheme: &'static str,
    /// The Host the client asked for (Host header or URI authority).
    pub host: Option<&'a HeaderValue>,
    /// The path the client asked for, without the query.
    pub path: &'a str,
}

/// Adjusts request headers for the upstream.
pub struct RequestHeaderRules<'a> {
    pub preserve_host: bool,
    pub set_x_forwarded: bool,
    /// Authenticated routes never pass the client's own `Authorization` on.
    pub drop_authorization: bool,
    pub cookies: CookiePolicy<'a>,
}

impl RequestHeaderRules<'_> {
    pub fn apply(&self, headers: &mut HeaderMap, from: &ForwardedFrom<'_>) {
        for name in connection_tokens(headers) {
            headers.remove(name);
        }
        let host = match (self.preserve_host, headers.contains_key(header::HOST)) {
            (true, false) => from.host.cloned(),
            _ => None,
        };
        // One pass: hop-by-hop and router-only headers; `Host` unless preserved; the client's
        // credentials and CSRF token on authenticated routes (the router authenticated the
        // request, they are its business, not the backend's); `x-forwarded-*` when the
        // destination does not want them.
        remove_where(headers, |name| {
            is_hop_by_hop(name)
                || is_router_only(name)
                || (!self.preserve_host && name == "host")
                || (self.drop_authorization && (name == "authorization" || name == "x-csrf-token"))
                || (!self.set_x_forwarded && name.starts_with("x-forwarded-"))
        });
        if let Some(host) = host {
            headers.insert(header::HOST, host);
        }
        self.filter_cookies(headers);
        if self.set_x_forwarded {
            add_forwarded(headers, from);
        }
    }

    fn filter_cookies(&self, headers: &mut HeaderMap) {
        if !headers.contains_key(header::COOKIE) {
            return;
        }
        let kept: Vec<String> = headers
            .get_all(header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(';'))
            .map(str::trim)
            .filter(|pair| !pair.is_empty())
            .filter(|pair| {
                let name = pair.split_once('=').map_or(*pair, |(n, _)| n).trim();
                !self.cookies.strips(name)
            })
            .map(str::to_owned)
            .collect();
        headers.remove(header::COOKIE);
        if !kept.is_empty()
            && let Ok(value) = HeaderValue::from_str(&kept.join("; "))
        {
            headers.insert(header::COOKIE, value);
        }
    }
}

/// `x-forwarded-*` as approuter sets them: a value the client (or the platform router in
/// front) already sent is kept; otherwise the router fills in what it saw.
fn add_forwarded(headers: &mut HeaderMap, from: &ForwardedFrom<'_>) {
    if !headers.contains_key(&X_FORWARDED_HOST)
        && let Some(host) = from.host
    {
        headers.insert(X_FORWARDED_HOST, host.clone());
    }
    if !headers.contains_key(&X_FORWARDED_PROTO) {
        headers.insert(X_FORWARDED_PROTO, HeaderValue::from_static(from.scheme));
    }
    if !headers.contains_key(&X_FORWARDED_FOR)
        && let Ok(value) = HeaderValue::from_str(&from.peer.ip().to_string())
    {
        headers.insert(X_FORWARDED_FOR, value);
    }
    if !headers.contains_key(&X_FORWARDED_PATH)
        && let Ok(value) = HeaderValue::from_str(from.path)
    {
        headers.insert(X_FORWARDED_PATH, value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for (k, v) in pairs {
            headers.append(
                HeaderName::from_bytes(k.as_bytes()).expect("name"),
                HeaderValue::from_str(v).expect("value"),
            );
        }
        headers
    }

    #[test]
    fn removes_hop_by_hop_and_connection_tokens() {
        let mut h = map(&[
            ("connection", "keep-alive, X-Foo"),
            ("x-foo", "1"),
            ("keep-alive", "timeout=5"),
            ("te", "trailers"),
            ("upgrade", "h2c"),
            ("transfer-encoding", "chunked"),
            ("proxy-authorization", "Basic x"),
            ("x-bar", "2"),
        ]);
        remove_hop_by_hop(&mut h);
        assert_eq!(
            h.keys().map(HeaderName::as_str).collect::<Vec<_>>(),
            vec!["x-bar"]
        );
    }

    #[test]
    fn request_rules() {
        let host = HeaderValue::from_static("router.example:5000");
        let from = ForwardedFrom {
            peer: "10.1.2.3:4444".parse().expect("addr"),
            scheme: "http",
            host: Some(&host),
            path: "/api/x",
        };
        let mut h = map(&[
            ("host", "router.example:5000"),
            ("x-forwarded-for", "1.1.1.1"),
            ("authorization", "Bearer secret"),
            ("cookie", "JSESSIONID=abc; a=b"),
            ("cookie", "__VCAP_ID__=v; sapextlb_x=1; c=d"),
            ("x-approuter-authorization", "Bearer t"),
        ]);
        let rules = RequestHeaderRules {
            preserve_host: false,
            set_x_forwarded: true,
            drop_authorization: true,
            cookies: CookiePolicy {
                session_cookie: "JSESSIONID",
            },
        };
        rules.apply(&mut h, &from);
        assert!(
            h.get("host").is_none()
                && h.get("authorization").is_none()
                && h.get("x-approuter-authorization").is_none()
        );
        assert_eq!(h["cookie"], "a=b; c=d");
        assert_eq!(h["x-forwarded-for"], "1.1.1.1");
        assert_eq!(h["x-forwarded-host"], "router.example:5000");
        assert_eq!(h["x-forwarded-proto"], "http");
        assert_eq!(h["x-forwarded-path"], "/api/x");

        let mut h = map(&[
            ("host", "router.example"),
            ("x-forwarded-host", "spoof"),
            ("x-forwarded-prefix", "/p"),
        ]);
        let rules = RequestHeaderRules {
            preserve_host: true,
            set_x_forwarded: false,
            drop_authorization: false,
            cookies: CookiePolicy {
                session_cookie: "JSESSIONID",
            },
        };
        rules.apply(&mut h, &from);
        assert_eq!(
            h.keys().map(HeaderName::as_str).collect::<Vec<_>>(),
            vec!["host"]
        );
    }
}
