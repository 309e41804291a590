//! Header rules of the forwarding path: what is removed, kept and added on the way to the
//! destination and on the way back.

use std::net::SocketAddr;

use http::header::{self, HeaderMap, HeaderName, HeaderValue};

/// Hop-by-hop headers (RFC 9110 §7.6.1 and the legacy ones proxies still see).
const HOP_BY_HOP: &[HeaderName] = &[
    header::CONNECTION,
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
];
const HOP_BY_HOP_LEGACY: &[&str] = &["keep-alive", "proxy-connection"];

/// Request headers that only mean something to the router (approuter removes them too).
const ROUTER_ONLY: &[&str] = &[
    "x-approuter-authorization",
    "x-custom-host",
    "x-ias-token",
    "sap-connectivity-authentication",
    "sap-connectivity-scc-location_id",
];

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
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|token| HeaderName::from_bytes(token.trim().as_bytes()).ok())
        .collect();
    for name in named {
        headers.remove(name);
    }
    for name in HOP_BY_HOP {
        headers.remove(name);
    }
    for name in HOP_BY_HOP_LEGACY {
        headers.remove(*name);
    }
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
        remove_hop_by_hop(headers);
        for name in ROUTER_ONLY {
            headers.remove(*name);
        }
        if !self.preserve_host {
            headers.remove(header::HOST);
        } else if !headers.contains_key(header::HOST)
            && let Some(host) = from.host
        {
            headers.insert(header::HOST, host.clone());
        }
        if self.drop_authorization {
            // The router authenticated the request; the client's credentials and CSRF token
            // are its business, not the backend's.
            headers.remove(header::AUTHORIZATION);
            headers.remove("x-csrf-token");
        }
        self.filter_cookies(headers);
        if self.set_x_forwarded {
            add_forwarded(headers, from);
        } else {
            for name in [
                X_FORWARDED_HOST,
                X_FORWARDED_PROTO,
                X_FORWARDED_FOR,
                X_FORWARDED_PATH,
            ] {
                headers.remove(name);
            }
            let others: Vec<HeaderName> = headers
                .keys()
                .filter(|k| k.as_str().starts_with("x-forwarded-"))
                .cloned()
                .collect();
            for name in others {
                headers.remove(name);
            }
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
