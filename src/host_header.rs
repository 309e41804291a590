//! The `Host` and `x-forwarded-host` values a request may carry. Both end up in URLs the router
//! builds (login `redirect_uri`, `x-forwarded-*` to backends, `DESTINATION_HOST_PATTERN`), so a
//! value that is not a plain `host[:port]` — a path, a query, userinfo (`a@evil`), spaces,
//! quotes — is refused with 400 before routing, as are several `Host` lines and an HTTP/1.1
//! request without one (RFC 9112 §3.2; Node's `requireHostHeader`).

use http::{HeaderMap, Version, header};

use crate::rejection::Rejection;

const X_FORWARDED_HOST: &str = "x-forwarded-host";

/// Checks `Host` and `x-forwarded-host` (a comma-separated list, each element a host).
pub fn check(version: Version, headers: &HeaderMap) -> Result<(), Rejection> {
    let mut hosts = headers.get_all(header::HOST).iter();
    match (hosts.next(), hosts.next()) {
        (Some(host), None) => {
            if !is_host(host.as_bytes()) {
                return Err(Rejection::BadRequest("Bad Request: invalid Host header"));
            }
        }
        (Some(_), Some(_)) => {
            return Err(Rejection::BadRequest(
                "Bad Request: more than one Host header",
            ));
        }
        (None, _) => {
            if version == Version::HTTP_11 {
                return Err(Rejection::BadRequest("Bad Request: missing Host header"));
            }
        }
    }
    for value in headers.get_all(X_FORWARDED_HOST) {
        if !value
            .as_bytes()
            .split(|&b| b == b',')
            .all(|host| is_host(host.trim_ascii()))
        {
            return Err(Rejection::BadRequest(
                "Bad Request: invalid x-forwarded-host header",
            ));
        }
    }
    Ok(())
}

/// `uri-host [":" port]` (RFC 3986 reg-name, IPv4 or bracketed IPv6 literal), without userinfo.
pub fn is_host(value: &[u8]) -> bool {
    if value.is_empty() {
        return false;
    }
    let (host, port) = if value[0] == b'[' {
        let Some(end) = value.iter().position(|&b| b == b']') else {
            return false;
        };
        let literal = &value[1..end];
        if literal.is_empty()
            || !literal
                .iter()
                .all(|&b| b.is_ascii_hexdigit() || b == b':' || b == b'.')
        {
            return false;
        }
        (&value[..0], &value[end + 1..])
    } else {
        match value.iter().position(|&b| b == b':') {
            Some(colon) => (&value[..colon], &value[colon..]),
            None => (value, &value[value.len()..]),
        }
    };
    let reg_name = host.iter().all(|&b| {
        b.is_ascii_alphanumeric()
            || matches!(
                b,
                b'-' | b'.'
                    | b'_'
                    | b'~'
                    | b'%'
                    | b'!'
                    | b'$'
                    | b'&'
                    | b'\''
                    | b'('
                    | b')'
                    | b'*'
                    | b'+'
                    | b';'
                    | b'='
            )
    });
    let port_ok = match port {
        [] => true,
        [b':', digits @ ..] => digits.len() <= 5 && digits.iter().all(u8::is_ascii_digit),
        _ => false,
    };
    reg_name && port_ok
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_hosts_pass() {
        for ok in [
            "router.example",
            "router.example:5000",
            "127.0.0.1:1",
            "[::1]:8080",
            "[::1]",
            "a-b.c_d.example:",
            "xn--bcher-kva.example",
        ] {
            assert!(is_host(ok.as_bytes()), "{ok}");
        }
    }

    #[test]
    fn anything_else_is_refused() {
        for bad in [
            "",
            "evil.example/x",
            "evil.example?x",
            "evil.example#x",
            "user@evil.example",
            "a b",
            "a\"b",
            "<script>",
            "host:80:80",
            "host:port",
            "host:123456",
            "[::1",
            "[]",
            "[::1]x",
            "[zz]",
            "a\\b",
        ] {
            assert!(!is_host(bad.as_bytes()), "{bad}");
        }
    }

    #[test]
    fn host_lines_are_counted_and_required_on_http_1_1() {
        let mut headers = HeaderMap::new();
        assert!(check(Version::HTTP_11, &headers).is_err());
        assert!(check(Version::HTTP_10, &headers).is_ok());
        assert!(check(Version::HTTP_2, &headers).is_ok());
        headers.append(header::HOST, "a.example".parse().expect("value"));
        assert!(check(Version::HTTP_11, &headers).is_ok());
        headers.append(header::HOST, "b.example".parse().expect("value"));
        assert!(check(Version::HTTP_11, &headers).is_err());
    }

    #[test]
    fn forwarded_host_lists_are_checked_element_by_element() {
        let mut headers = HeaderMap::new();
        headers.insert(header::HOST, "router.example".parse().expect("value"));
        headers.insert(
            X_FORWARDED_HOST,
            "a.example, b.example:443".parse().expect("value"),
        );
        assert!(check(Version::HTTP_11, &headers).is_ok());
        headers.insert(
            X_FORWARDED_HOST,
            "a.example, evil/x".parse().expect("value"),
        );
        assert!(check(Version::HTTP_11, &headers).is_err());
    }
}
