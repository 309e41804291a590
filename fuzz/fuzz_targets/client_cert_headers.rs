//! The forwarded client-certificate header parsers (Envoy XFCC, Cloud Foundry raw, RFC 9440,
//! escaped PEM, Traefik), fed headers the way a trusted proxy (or an attacker) would send them.
#![no_main]

use http::{HeaderMap, HeaderName, HeaderValue};
use libfuzzer_sys::fuzz_target;
use xsrouter::inbound::{self, ForwardedFormat};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let _ = inbound::parse_xfcc(&text);
    let _ = inbound::from_envoy_xfcc(&text);
    let _ = inbound::from_cf_raw(&text);
    let _ = inbound::from_xfcc_any(&text);
    let _ = inbound::looks_like_envoy(&text);
    let _ = inbound::from_escaped_pem(&text);
    let _ = inbound::from_traefik(&text);
    let (cert, chain) = text.split_once('\n').unwrap_or((&text, ""));
    let _ = inbound::from_rfc9440(cert, Some(chain));
    let _ = inbound::from_rfc9440(&text, None);

    let mut headers = HeaderMap::new();
    for (i, line) in data.split(|&b| b == b'\n').enumerate() {
        let Ok(value) = HeaderValue::from_bytes(line) else {
            continue;
        };
        let name = match i % 5 {
            0 => "x-forwarded-client-cert",
            1 => "client-cert",
            2 => "client-cert-chain",
            3 => "x-forwarded-tls-client-cert",
            _ => "ssl-client-escaped-cert",
        };
        headers.append(HeaderName::from_static(name), value);
    }
    for format in [
        ForwardedFormat::Envoy,
        ForwardedFormat::CloudFoundry,
        ForwardedFormat::AnyXfcc,
        ForwardedFormat::Rfc9440,
        ForwardedFormat::EscapedPem(HeaderName::from_static("ssl-client-escaped-cert")),
        ForwardedFormat::Traefik,
    ] {
        let _ = format.parse(&headers);
    }
});
