//! Cookie handling: finding the session cookie in `Cookie` headers, removing router cookies
//! before forwarding, and keeping backend session cookies from `Set-Cookie`.
#![no_main]

use std::collections::BTreeMap;
use std::net::SocketAddr;

use http::{HeaderMap, HeaderValue, header};
use libfuzzer_sys::fuzz_target;
use xsrouter::auth::{backend_cookies, session};
use xsrouter::proxy::headers::{CookiePolicy, ForwardedFrom, RequestHeaderRules};

fuzz_target!(|data: &[u8]| {
    let mut headers = HeaderMap::new();
    for line in data.split(|&b| b == b'\n') {
        if let Ok(value) = HeaderValue::from_bytes(line) {
            headers.append(header::COOKIE, value.clone());
            headers.append(header::SET_COOKIE, value);
        }
    }
    let name = data.split(|&b| b == b'=').next().unwrap_or_default();
    let name = String::from_utf8_lossy(name);
    let _ = session::cookie_value(&headers, &name);
    let _ = session::cookie_value(&headers, "JSESSIONID");

    let mut jar = BTreeMap::new();
    let mut response = headers.clone();
    backend_cookies::absorb(&mut jar, &mut response);
    if let Some(cookie) = backend_cookies::cookie_header(&jar) {
        let _ = HeaderValue::from_str(&cookie);
    }

    let mut request = headers;
    request.remove(header::SET_COOKIE);
    let rules = RequestHeaderRules {
        preserve_host: false,
        set_x_forwarded: true,
        drop_authorization: true,
        cookies: CookiePolicy {
            session_cookie: &name,
        },
    };
    let peer: SocketAddr = ([127, 0, 0, 1], 1).into();
    rules.apply(
        &mut request,
        &ForwardedFrom {
            peer,
            scheme: "https",
            host: None,
            path: "/",
        },
    );
    for value in request.get_all(header::COOKIE) {
        let text = value.to_str().unwrap_or_default();
        assert!(
            !text.split(';').any(|pair| pair.trim().split_once('=').is_some_and(|(k, _)| k.trim() == "__VCAP_ID__")),
            "platform cookie forwarded: {text}"
        );
    }
});
