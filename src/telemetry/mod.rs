//! Telemetry: logs (human-readable or JSON), the per-request access log with its correlation
//! id, and the metrics the management port exposes.

pub mod http_error;
pub mod logging;
pub mod metrics;

use std::sync::Arc;

use http::{HeaderMap, HeaderName, HeaderValue};

/// Headers a platform or client may carry a request id in, in order of preference.
const INCOMING_IDS: &[&str] = &[
    "x-correlationid",
    "x-correlation-id",
    "x-request-id",
    "x-vcap-request-id",
];
pub const CORRELATION_ID: HeaderName = HeaderName::from_static("x-correlationid");
pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The request's correlation id: the one it brought (if sane), else a new UUID.
pub fn correlation_id(headers: &HeaderMap) -> HeaderValue {
    INCOMING_IDS
        .iter()
        .filter_map(|name| headers.get(*name))
        .find(|v| {
            let bytes = v.as_bytes();
            !bytes.is_empty() && bytes.len() <= 128 && bytes.iter().all(|b| b.is_ascii_graphic())
        })
        .cloned()
        .unwrap_or_else(|| {
            HeaderValue::from_str(&uuid::Uuid::new_v4().to_string())
                .unwrap_or(HeaderValue::from_static("-"))
        })
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
