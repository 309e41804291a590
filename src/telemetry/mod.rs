//! Telemetry: logs (human-readable or JSON), the per-request access log with its correlation
//! id, and the metrics the management port exposes.

pub mod access_log;
pub mod http_error;
pub mod logging;
pub mod metrics;

use std::sync::Arc;

use http::{HeaderMap, HeaderName, HeaderValue};

/// Headers a platform or client may carry a request id in, in order of preference.
const INCOMING_IDS: [HeaderName; 4] = [
    HeaderName::from_static("x-correlationid"),
    HeaderName::from_static("x-correlation-id"),
    HeaderName::from_static("x-request-id"),
    HeaderName::from_static("x-vcap-request-id"),
];
pub const CORRELATION_ID: HeaderName = HeaderName::from_static("x-correlationid");
pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The request's correlation id: the one it brought (if sane), else a new UUID.
pub fn correlation_id(headers: &HeaderMap) -> HeaderValue {
    INCOMING_IDS
        .iter()
        .filter_map(|name| headers.get(name))
        .find(|v| {
            let bytes = v.as_bytes();
            !bytes.is_empty() && bytes.len() <= 128 && bytes.iter().all(|b| b.is_ascii_graphic())
        })
        .cloned()
        .unwrap_or_else(new_request_id)
}

thread_local! {
    /// Per thread: a random seed (once, from the OS) and a counter.
    static REQUEST_IDS: std::cell::Cell<(u64, u64, u64)> = std::cell::Cell::new({
        let (a, b) = uuid::Uuid::new_v4().as_u64_pair();
        (a, b, 0)
    });
}

/// A new request id in the form of a random (version 4) UUID. Ids need to be unique, not
/// secret: each thread mixes a counter into a random seed (SplitMix64, a bijection, so a thread
/// never repeats itself), which spares a system call for randomness on every request.
fn new_request_id() -> HeaderValue {
    let (high, low) = REQUEST_IDS.with(|ids| {
        let (a, b, counter) = ids.get();
        ids.set((a, b, counter.wrapping_add(1)));
        (splitmix64(a.wrapping_add(counter)), splitmix64(b ^ counter))
    });
    let mut bytes = [0u8; 16];
    bytes[..8].copy_from_slice(&high.to_be_bytes());
    bytes[8..].copy_from_slice(&low.to_be_bytes());
    let id = uuid::Builder::from_random_bytes(bytes).into_uuid();
    let mut text = [0u8; uuid::fmt::Hyphenated::LENGTH];
    HeaderValue::from_str(id.hyphenated().encode_lower(&mut text))
        .unwrap_or(HeaderValue::from_static("-"))
}

fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// What the pipeline tells the access log and metrics about a request (a response extension).
#[derive(Debug, Clone, Default)]
pub struct RouteInfo {
    /// The route's position in xs-app.json (`None`: implicit or no route).
    pub route: Option<usize>,
    pub destination: Option<Arc<str>>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn correlation_ids_are_taken_or_made() {
        let mut headers = HeaderMap::new();
        let made = correlation_id(&headers);
        assert_eq!(made.len(), 36);
        let parsed = uuid::Uuid::parse_str(made.to_str().expect("ascii")).expect("a UUID");
        assert_eq!(parsed.get_version_num(), 4);
        let ids: std::collections::HashSet<_> =
            (0..10_000).map(|_| correlation_id(&headers)).collect();
        assert_eq!(ids.len(), 10_000, "made ids do not repeat");
        headers.insert("x-vcap-request-id", HeaderValue::from_static("vcap-1"));
        assert_eq!(correlation_id(&headers), "vcap-1");
        headers.insert("x-correlationid", HeaderValue::from_static("corr-1"));
        assert_eq!(correlation_id(&headers), "corr-1");
        headers.insert("x-correlationid", HeaderValue::from_static("has space"));
        assert_eq!(
            correlation_id(&headers),
            "vcap-1",
            "unsafe values are not reused"
        );
    }
}
