//! Backend session cookies: a backend's `Set-Cookie` without `Expires`/`Max-Age` belongs to the
//! router's session with that backend, not to the browser. Such cookies are kept in the user's
//! session, per destination, and replayed on later requests to the same destination; persistent
//! cookies go to the browser as they are.

use std::collections::BTreeMap;

use http::header::{HeaderMap, HeaderValue, SET_COOKIE};

use crate::secret::Secret;

/// Moves the session cookies of a backend response into `jar`; returns whether the jar changed.
/// A persistent cookie with the name of a kept one removes it from the jar (the backend ended it).
pub fn absorb(jar: &mut BTreeMap<String, Secret>, headers: &mut HeaderMap) -> bool {
    let values: Vec<HeaderValue> = headers.get_all(SET_COOKIE).iter().cloned().collect();
    if values.is_empty() {
        return false;
    }
    let mut changed = false;
    let mut to_browser = Vec::new();
    for value in values {
        let Some((name, cookie_value, persistent)) = value.to_str().ok().and_then(parse) else {
            to_browser.push(value);
            continue;
        };
        if persistent {
            changed |= jar.remove(&name).is_some();
            to_browser.push(value);
        } else {
            jar.insert(name, Secret::new(cookie_value));
            changed = true;
        }
    }
    headers.remove(SET_COOKIE);
    for value in to_browser {
        headers.append(SET_COOKIE, value);
    }
    changed
}

/// `name=value; ...` for a `Cookie` header, or `None` for an empty jar.
pub fn cookie_header(jar: &BTreeMap<String, Secret>) -> Option<String> {
    (!jar.is_empty()).then(|| {
        jar.iter()
            .map(|(name, value)| format!("{name}={}", value.expose()))
            .collect::<Vec<_>>()
            .join("; ")
    })
}

/// Name, value and whether the cookie is persistent (has `Expires` or `Max-Age`).
fn parse(set_cookie: &str) -> Option<(String, String, bool)> {
    let mut parts = set_cookie.split(';');
    let (name, value) = parts.next()?.split_once('=')?;
    let name = name.trim();
    if name.is_empty() {
        return None;
    }
    let persistent = parts.any(|attribute| {
        let key = attribute.split('=').next().unwrap_or_default().trim();
        key.eq_ignore_ascii_case("expires") || key.eq_ignore_ascii_case("max-age")
    });
    Some((name.to_owned(), value.trim().to_owned(), persistent))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_cookies_stay_persistent_ones_pass() {
        let mut headers = HeaderMap::new();
        headers.append(
            SET_COOKIE,
            HeaderValue::from_static("SAP_SESSIONID=abc; Path=/; HttpOnly"),
        );
        headers.append(
            SET_COOKIE,
            HeaderValue::from_static("pref=dark; Max-Age=3600; Path=/"),
        );
        headers.append(SET_COOKIE, HeaderValue::from_static("garbage"));
        let mut jar = BTreeMap::new();
        assert!(absorb(&mut jar, &mut headers));
        assert_eq!(jar["SAP_SESSIONID"].expose(), "abc");
        let passed: Vec<&str> = headers
            .get_all(SET_COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect();
        assert_eq!(passed, vec!["pref=dark; Max-Age=3600; Path=/", "garbage"]);
        assert_eq!(cookie_header(&jar).as_deref(), Some("SAP_SESSIONID=abc"));

        // The backend ends its session: the kept cookie goes.
        let mut headers = HeaderMap::new();
        headers.append(
            SET_COOKIE,
            HeaderValue::from_static("SAP_SESSIONID=; Expires=Thu, 01 Jan 1970 00:00:00 GMT"),
        );
        assert!(absorb(&mut jar, &mut headers));
        assert!(jar.is_empty());
        assert_eq!(cookie_header(&jar), None);
    }
}
