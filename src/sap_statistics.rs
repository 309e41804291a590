//! SAP statistics, as approuter supports them: a request with `sap-statistics: true` (or the
//! query parameter `sap-statistics=true`, turned into that header for the backend) gets a
//! `sap-statistics-approuter: total=<ms>, ext=<ms>` header on answers from a destination —
//! `total` since the router received the request, `ext` since the backend was called.

use std::time::Instant;

use axum::response::Response;
use http::{HeaderMap, HeaderValue};

pub const HEADER: &str = "sap-statistics";
const RESPONSE_HEADER: &str = "sap-statistics-approuter";

/// Response extension: when the backend call of a statistics request started.
#[derive(Debug, Clone, Copy)]
pub struct BackendStarted(pub Instant);

/// Whether the request asks for statistics; a query parameter becomes the header, so the
/// backend sees it too.
pub fn prepare<B>(request: &mut http::Request<B>) -> bool {
    if request.headers().contains_key(HEADER) {
        return true;
    }
    let by_query = request
        .uri()
        .query()
        .is_some_and(|q| q.split('&').any(|pair| pair == "sap-statistics=true"));
    if by_query {
        request
            .headers_mut()
            .insert(HEADER, HeaderValue::from_static("true"));
    }
    by_query
}

/// Whether a request (after [`prepare`]) wants statistics.
pub fn requested(headers: &HeaderMap) -> bool {
    headers.contains_key(HEADER)
}

/// Adds the statistics header to a destination's answer of a statistics request.
pub fn finish(received: Instant, response: &mut Response) {
    let Some(BackendStarted(backend)) = response.extensions().get::<BackendStarted>().copied()
    else {
        return;
    };
    let total = received.elapsed().as_millis();
    let ext = backend.elapsed().as_millis();
    if let Ok(value) = HeaderValue::from_str(&format!("total={total}, ext={ext}")) {
        response.headers_mut().insert(RESPONSE_HEADER, value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_parameter_becomes_the_header() {
        let mut request = http::Request::new(());
        *request.uri_mut() = "/a?x=1&sap-statistics=true".parse().expect("uri");
        assert!(prepare(&mut request));
        assert_eq!(request.headers()[HEADER], "true");
        for plain in ["/a", "/a?sap-statistics=false", "/a?xsap-statistics=true"] {
            let mut request = http::Request::new(());
            *request.uri_mut() = plain.parse().expect("uri");
            assert!(!prepare(&mut request), "{plain}");
            assert!(request.headers().is_empty());
        }
    }
}
