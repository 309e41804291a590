//! WebSockets through the router: which requests are upgrades, whether one may open
//! (`websockets.enabled` in xs-app.json, the `Origin` check), and — in [`relay`] — the upgrade
//! at the destination and the byte relay between the two connections; [`sessions`] closes the
//! sockets of a session that ends.
//!
//! As in approuter, an upgrade is refused with 403 when websockets are disabled or the `Origin`
//! is not allowed (`WS_ALLOWED_ORIGINS`, else the router's own URL), 401 when the route needs a
//! user and none is logged in (never a login redirect), and the destination's token and client
//! certificate apply to the upgrade request.

pub mod origins;
pub mod relay;
pub mod sessions;

use http::{HeaderMap, Method, Version, header};

use crate::config::environment::Environment;
use crate::config::problem::Problems;
use crate::config::xs_app::XsApp;
use crate::rejection::Rejection;
use origins::{AllowedOrigin, Origin};

/// The WebSocket configuration, read once at start-up.
#[derive(Debug, Clone, Default)]
pub struct WebsocketSettings {
    /// xs-app.json `websockets.enabled` (default false).
    pub enabled: bool,
    /// `WS_ALLOWED_ORIGINS`; `None`: only the router's own URL.
    pub allowed_origins: Option<Vec<AllowedOrigin>>,
}

impl WebsocketSettings {
    pub fn from_config(xs_app: &XsApp, env: &Environment, problems: &mut Problems) -> Self {
        Self {
            enabled: xs_app
                .websockets
                .as_ref()
                .and_then(|w| w.enabled)
                .unwrap_or(false),
            allowed_origins: origins::from_env(env, problems),
        }
    }

    /// Whether an upgrade request may go on to routing and authentication: websockets enabled
    /// and the `Origin` allowed. Requests with `x-approuter-authorization` (services, not
    /// browsers) skip the origin check, as in approuter.
    pub fn admit(&self, headers: &HeaderMap, over_tls: bool) -> Result<(), Rejection> {
        if !self.enabled {
            return Err(Rejection::Forbidden("Forbidden: websockets are disabled"));
        }
        if headers.contains_key("x-approuter-authorization") {
            return Ok(());
        }
        let origin = headers
            .get(header::ORIGIN)
            .and_then(|v| v.to_str().ok())
            .and_then(Origin::parse)
            .ok_or(Rejection::Forbidden(
                "Forbidden: missing or invalid Origin header",
            ))?;
        let allowed = match &self.allowed_origins {
            Some(list) => list.iter().any(|item| item.matches(&origin)),
            None => own_origin(headers, over_tls)?.is_some_and(|own| own.matches(&origin)),
        };
        if allowed {
            Ok(())
        } else {
            Err(Rejection::Forbidden("Forbidden: origin not allowed"))
        }
    }
}

/// Whether the request asks to become a WebSocket (HTTP/1.1 `GET` with `Upgrade: websocket` and
/// `Connection: upgrade`).
pub fn is_upgrade(method: &Method, version: Version, headers: &HeaderMap) -> bool {
    *method == Method::GET
        && version == Version::HTTP_11
        && has_token(headers, header::UPGRADE, "websocket")
        && has_token(headers, header::CONNECTION, "upgrade")
}

fn has_token(headers: &HeaderMap, name: header::HeaderName, token: &str) -> bool {
    headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case(token))
}

/// The router's own origin as the request names it (approuter's app-router URL):
/// `x-forwarded-host` or `Host`; `x-forwarded-proto`, else port 443/80, else the connection's
/// scheme. The port is the explicit one or the scheme's default. A forwarded protocol other than
/// http/https is a bad request, as in approuter.
fn own_origin(headers: &HeaderMap, over_tls: bool) -> Result<Option<AllowedOrigin>, Rejection> {
    let text = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
            .filter(|v| !v.is_empty())
    };
    let Some(host) = text("x-forwarded-host").or_else(|| text("host")) else {
        return Ok(None);
    };
    let (name, port) = match host.rfind(':') {
        Some(at) if !host[at..].contains(']') => match host[at + 1..].parse::<u16>() {
            Ok(port) => (&host[..at], Some(port)),
            Err(_) => return Ok(None),
        },
        _ => (host, None),
    };
    let protocol = match text("x-forwarded-proto") {
        Some(p) if p.eq_ignore_ascii_case("http") || p.eq_ignore_ascii_case("https") => {
            p.to_ascii_lowercase()
        }
        Some(_) => {
            return Err(Rejection::BadRequest(
                "Bad Request: invalid x-forwarded-proto",
            ));
        }
        None => match port {
            Some(443) => "https".to_owned(),
            Some(80) => "http".to_owned(),
            _ if over_tls => "https".to_owned(),
            _ => "http".to_owned(),
        },
    };
    let port = port.or(if protocol == "https" {
        Some(443)
    } else {
        Some(80)
    });
    Ok(Some(AllowedOrigin {
        protocol: Some(protocol),
        host: name.to_ascii_lowercase(),
        subdomains: false,
        port,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(*name, HeaderValue::from_static(value));
        }
        map
    }

    fn enabled() -> WebsocketSettings {
        WebsocketSettings {
            enabled: true,
            allowed_origins: None,
        }
    }

    #[test]
    fn recognises_upgrades() {
        let h = headers(&[
            ("upgrade", "WebSocket"),
            ("connection", "keep-alive, Upgrade"),
        ]);
        assert!(is_upgrade(&Method::GET, Version::HTTP_11, &h));
        assert!(!is_upgrade(&Method::POST, Version::HTTP_11, &h));
        assert!(!is_upgrade(&Method::GET, Version::HTTP_2, &h));
        let h = headers(&[("upgrade", "websocket")]);
        assert!(!is_upgrade(&Method::GET, Version::HTTP_11, &h));
        let h = headers(&[("upgrade", "h2c"), ("connection", "upgrade")]);
        assert!(!is_upgrade(&Method::GET, Version::HTTP_11, &h));
    }

    #[test]
    fn default_origin_is_the_routers_own_url() {
        let ws = enabled();
        let ok = headers(&[
            ("host", "app.local:5000"),
            ("origin", "http://app.local:5000"),
        ]);
        assert_eq!(ws.admit(&ok, false), Ok(()));
        let other_port = headers(&[
            ("host", "app.local:5000"),
            ("origin", "http://app.local:6000"),
        ]);
        assert!(ws.admit(&other_port, false).is_err());
        let other_host = headers(&[
            ("host", "app.local:5000"),
            ("origin", "http://evil.local:5000"),
        ]);
        assert!(ws.admit(&other_host, false).is_err());
        let missing = headers(&[("host", "app.local:5000")]);
        assert_eq!(
            ws.admit(&missing, false),
            Err(Rejection::Forbidden(
                "Forbidden: missing or invalid Origin header"
            ))
        );
        let forwarded = headers(&[
            ("host", "internal:8080"),
            ("x-forwarded-host", "app.example"),
            ("x-forwarded-proto", "https"),
            ("origin", "https://app.example"),
        ]);
        assert_eq!(ws.admit(&forwarded, false), Ok(()));
        let bad_proto = headers(&[
            ("host", "app.example"),
            ("x-forwarded-proto", "gopher"),
            ("origin", "gopher://app.example"),
        ]);
        assert_eq!(
            ws.admit(&bad_proto, false),
            Err(Rejection::BadRequest(
                "Bad Request: invalid x-forwarded-proto"
            ))
        );
        let tls = headers(&[
            ("host", "app.example:8443"),
            ("origin", "https://app.example:8443"),
        ]);
        assert_eq!(ws.admit(&tls, true), Ok(()));
        assert!(ws.admit(&tls, false).is_err());
    }

    #[test]
    fn disabled_refuses_and_services_skip_the_origin_check() {
        let h = headers(&[("host", "a"), ("origin", "http://a")]);
        assert!(matches!(
            WebsocketSettings::default().admit(&h, false),
            Err(Rejection::Forbidden(_))
        ));
        let service = headers(&[("host", "a"), ("x-approuter-authorization", "Bearer x")]);
        assert_eq!(enabled().admit(&service, false), Ok(()));
    }
}
