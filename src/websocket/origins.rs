//! Which `Origin`s may open a WebSocket through the router: `WS_ALLOWED_ORIGINS` (approuter's
//! allowlist format, as `CJ_PROTECT_WHITELIST`: `[{"protocol", "host", "port"}]`, `host` a name,
//! an IPv4 address or `*.domain`) or, when unset, the router's own URL as the request named it.

use serde::Deserialize;
use serde_json::Value;

use crate::config::environment::Environment;
use crate::config::problem::{Problems, child, index};

/// The environment variable with the allowlist.
pub const WS_ALLOWED_ORIGINS: &str = "WS_ALLOWED_ORIGINS";

/// One allowed origin pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllowedOrigin {
    /// Lower-case scheme (`https`); any when `None`.
    pub protocol: Option<String>,
    /// Lower-case host, or the domain after `*.` when `subdomains` is set.
    pub host: String,
    /// `*.domain`: any host below `domain` (at least one more label).
    pub subdomains: bool,
    /// Port required; any when `None`.
    pub port: Option<u16>,
}

/// An `Origin` header value taken apart: `scheme://host[:port]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin<'a> {
    pub scheme: &'a str,
    pub host: &'a str,
    /// The port, explicit or the scheme's default (80, 443); `None` for other schemes.
    pub port: Option<u16>,
}

impl<'a> Origin<'a> {
    /// Parses an origin as browsers send it (RFC 6454 serialization); `None` for `null`,
    /// paths, user info or anything else that is not a plain origin.
    pub fn parse(value: &'a str) -> Option<Self> {
        let (scheme, authority) = value.split_once("://")?;
        if scheme.is_empty()
            || !scheme
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'))
            || authority.is_empty()
            || authority.contains(['/', '?', '#', '@', ' '])
        {
            return None;
        }
        let (host, port) = match authority.rfind(':') {
            Some(at) if !authority[at..].contains(']') => {
                let port: u16 = authority[at + 1..].parse().ok()?;
                (&authority[..at], Some(port))
            }
            _ => (authority, None),
        };
        if host.is_empty() {
            return None;
        }
        let port = port.or_else(|| default_port(scheme));
        Some(Self { scheme, host, port })
    }
}

fn default_port(scheme: &str) -> Option<u16> {
    if scheme.eq_ignore_ascii_case("https") || scheme.eq_ignore_ascii_case("wss") {
        Some(443)
    } else if scheme.eq_ignore_ascii_case("http") || scheme.eq_ignore_ascii_case("ws") {
        Some(80)
    } else {
        None
    }
}

impl AllowedOrigin {
    /// Whether `origin` matches: scheme and host case-insensitively, the port when one is given
    /// (compared after applying the scheme's default port, so `https://a` and `https://a:443`
    /// are the same origin).
    pub fn matches(&self, origin: &Origin<'_>) -> bool {
        if let Some(protocol) = &self.protocol
            && !protocol.eq_ignore_ascii_case(origin.scheme)
        {
            return false;
        }
        let host_ok = if self.subdomains {
            origin.host.len() > self.host.len() + 1
                && origin.host.as_bytes()[origin.host.len() - self.host.len() - 1] == b'.'
                && origin.host[origin.host.len() - self.host.len()..]
                    .eq_ignore_ascii_case(&self.host)
        } else {
            origin.host.eq_ignore_ascii_case(&self.host)
        };
        host_ok && self.port.is_none_or(|port| origin.port == Some(port))
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawItem {
    protocol: Option<String>,
    host: String,
    port: Option<Value>,
}

/// Reads `WS_ALLOWED_ORIGINS`; `None` when unset (the router's own URL is then the only allowed
/// origin). Problems name the variable and the item.
pub fn from_env(env: &Environment, problems: &mut Problems) -> Option<Vec<AllowedOrigin>> {
    let text = env.non_empty(WS_ALLOWED_ORIGINS)?;
    let origin = env.origin(WS_ALLOWED_ORIGINS);
    let items: Vec<Value> = match serde_json::from_str(text) {
        Ok(Value::Array(items)) => items,
        Ok(_) => {
            problems.push(
                &origin,
                "$",
                "must be a JSON array of {\"protocol\", \"host\", \"port\"}",
            );
            return None;
        }
        Err(err) => {
            problems.push(&origin, "$", crate::config::problem::syntax_reason(&err));
            return None;
        }
    };
    let before = problems.len();
    let mut allowed = Vec::with_capacity(items.len());
    for (i, item) in items.into_iter().enumerate() {
        let at = index("$", i);
        match crate::config::problem::deserialize_at::<RawItem>(item, &at) {
            Ok(raw) => {
                if let Some(item) = validate(raw, &origin, &at, problems) {
                    allowed.push(item);
                }
            }
            Err((path, reason)) => problems.push(&origin, path, reason),
        }
    }
    (problems.len() == before).then_some(allowed)
}

fn validate(
    raw: RawItem,
    origin: &str,
    at: &str,
    problems: &mut Problems,
) -> Option<AllowedOrigin> {
    let (subdomains, host) = match raw.host.strip_prefix("*.") {
        Some(rest) => (true, rest),
        None => (false, raw.host.as_str()),
    };
    if !is_host_name(host) {
        problems.push(
            origin,
            child(at, "host"),
            format!(
                "`{}` is not a host name, an IPv4 address or `*.` followed by a domain",
                raw.host
            ),
        );
        return None;
    }
    let port = match raw.port {
        None => None,
        Some(Value::Number(n)) => match n.as_u64().and_then(|p| u16::try_from(p).ok()) {
            Some(p) if p > 0 => Some(p),
            _ => {
                problems.push(origin, child(at, "port"), "must be a port (1-65535)");
                return None;
            }
        },
        Some(Value::String(s)) => match s.parse::<u16>() {
            Ok(p) if p > 0 => Some(p),
            _ => {
                problems.push(origin, child(at, "port"), "must be a port (1-65535)");
                return None;
            }
        },
        Some(_) => {
            problems.push(
                origin,
                child(at, "port"),
                "must be a number or a string holding one",
            );
            return None;
        }
    };
    if let Some(protocol) = &raw.protocol
        && (protocol.is_empty() || !protocol.bytes().all(|b| b.is_ascii_alphabetic()))
    {
        problems.push(
            origin,
            child(at, "protocol"),
            "must be a URI scheme such as `https`",
        );
        return None;
    }
    Some(AllowedOrigin {
        protocol: raw.protocol.map(|p| p.to_ascii_lowercase()),
        host: host.to_ascii_lowercase(),
        subdomains,
        port,
    })
}

/// A DNS name of letters, digits and inner hyphens, or an IPv4 address (approuter's rule).
fn is_host_name(host: &str) -> bool {
    !host.is_empty()
        && host.split('.').all(|label| {
            !label.is_empty()
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn allow(protocol: Option<&str>, host: &str, port: Option<u16>) -> AllowedOrigin {
        let (subdomains, host) = match host.strip_prefix("*.") {
            Some(rest) => (true, rest),
            None => (false, host),
        };
        AllowedOrigin {
            protocol: protocol.map(str::to_owned),
            host: host.to_owned(),
            subdomains,
            port,
        }
    }

    fn matches(item: &AllowedOrigin, origin: &str) -> bool {
        Origin::parse(origin).is_some_and(|o| item.matches(&o))
    }

    #[test]
    fn parses_origins_and_refuses_anything_else() {
        assert_eq!(
            Origin::parse("https://a.example:8443"),
            Some(Origin {
                scheme: "https",
                host: "a.example",
                port: Some(8443)
            })
        );
        assert_eq!(Origin::parse("http://a").and_then(|o| o.port), Some(80));
        assert_eq!(
            Origin::parse("http://[::1]:5000").map(|o| o.host),
            Some("[::1]")
        );
        for bad in [
            "null",
            "a.example",
            "https://",
            "https://a/b",
            "https://u@a",
            "https://a:x",
            "://a",
        ] {
            assert_eq!(Origin::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn matches_like_approuter_with_exact_hosts() {
        let item = allow(Some("https"), "*.example.domain", None);
        assert!(matches(&item, "https://a.example.domain"));
        assert!(matches(&item, "HTTPS://A.b.EXAMPLE.domain:9000"));
        assert!(!matches(&item, "http://a.example.domain"));
        assert!(!matches(&item, "https://example.domain"));
        assert!(!matches(&item, "https://evilexample.domain"));
        assert!(!matches(&item, "https://a.example.domain.evil"));
        let item = allow(None, "router.local", Some(5000));
        assert!(matches(&item, "http://router.local:5000"));
        assert!(matches(&item, "wss://router.local:5000"));
        assert!(!matches(&item, "http://router.local:5001"));
        assert!(!matches(&item, "http://router.local"));
        let item = allow(Some("https"), "router.local", Some(443));
        assert!(matches(&item, "https://router.local"));
    }

    #[test]
    fn reads_the_allowlist_and_names_bad_items() {
        let env = |text: &str| Environment::from_pairs([(WS_ALLOWED_ORIGINS, text)]);
        let mut problems = Problems::default();
        let list = from_env(
            &env(
                r#"[{"host": "*.example.domain", "protocol": "https"}, {"host": "10.0.0.1", "port": "8080"}]"#,
            ),
            &mut problems,
        );
        assert!(problems.is_empty());
        assert_eq!(
            list,
            Some(vec![
                allow(Some("https"), "*.example.domain", None),
                allow(None, "10.0.0.1", Some(8080))
            ])
        );
        let mut problems = Problems::default();
        let list = from_env(
            &env(
                r#"[{"host": "a/b"}, {"host": "ok", "port": 0}, {"port": 1}, {"host": "x", "colour": 1}]"#,
            ),
            &mut problems,
        );
        assert_eq!(list, None);
        let text: Vec<String> = problems
            .into_error()
            .problems
            .iter()
            .map(|p| format!("{} {}: {}", p.origin, p.path, p.reason))
            .collect();
        assert_eq!(text.len(), 4, "{text:#?}");
        assert!(text[0].starts_with("env WS_ALLOWED_ORIGINS $[0].host: `a/b` is not a host name"));
        assert!(text[1].contains("$[1].port: must be a port"));
        assert!(text[2].contains("$[2]: missing field `host`"), "{text:#?}");
        assert!(text[3].contains("$[3]") && text[3].contains("colour"));
    }
}
