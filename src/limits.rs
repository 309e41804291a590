//! Limits on what a client may send, so hostile or broken clients cost bounded memory and time:
//! request-head size and header count (431), URL length (414), how long the request head may take
//! to arrive (slowloris: the connection is closed), and, when configured, the body size (413).
//!
//! Head limits are enforced by hyper while it parses ([`connection_builder`]); the URL and body
//! limits at the start of the pipeline ([`check`], [`limit_body`]). Smuggling attempts are
//! refused by hyper's parser itself: differing `Content-Length`s, obs-fold, control bytes in
//! header names or values answer 400. `Transfer-Encoding` together with `Content-Length`
//! answers 400 too, through [`crate::connection_guard`] (hyper alone would drop the
//! `Content-Length` and forward the request), which also times the first request head of a
//! connection (hyper's header read timeout starts only once the protocol is known).

use std::time::Duration;

use axum::body::Body;
use http::{Request, header};
use hyper_util::rt::{TokioExecutor, TokioTimer};
use hyper_util::server::conn::auto::Builder;

use crate::rejection::Rejection;

/// hyper's own header-count default: up to this many, the headers are parsed on the stack.
const HYPER_DEFAULT_MAX_HEADERS: usize = 100;

/// ` ` + ` HTTP/1.1\r\n` + the final `\r\n` of a request head.
const REQUEST_LINE_OVERHEAD: usize = 1 + 11 + 2;
/// `: ` and `\r\n` of a header line.
const HEADER_LINE_OVERHEAD: usize = 4;

/// The smallest `XSROUTER_MAX_HEADER_SIZE` (hyper's smallest read buffer).
pub const MIN_HEADER_SIZE: usize = 8 * 1024;

/// The limits for one listener, from [`Settings`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// `XSROUTER_MAX_HEADER_SIZE`: bytes of request line plus headers (431 beyond).
    pub max_header_size: usize,
    /// `XSROUTER_MAX_HEADER_COUNT`: header lines per request (431 beyond).
    pub max_header_count: usize,
    /// `XSROUTER_MAX_URL_LENGTH`: bytes of the request target (414 beyond).
    pub max_url_length: usize,
    /// `XSROUTER_HEADER_READ_TIMEOUT`: time for a request head to arrive, also the longest a
    /// keep-alive connection may sit idle (the connection is closed).
    pub header_read_timeout: Duration,
    /// `XSROUTER_MAX_BODY_SIZE`: bytes of request body (413 beyond); unlimited when unset.
    pub max_body_size: Option<u64>,
}

/// The connection builder both listeners serve with: HTTP/1.1 and HTTP/2, the head limits and
/// the header read timeout applied.
pub fn connection_builder(limits: &Limits) -> Builder<TokioExecutor> {
    let mut builder = Builder::new(TokioExecutor::new());
    {
        let mut http1 = builder.http1();
        http1
            .timer(TokioTimer::new())
            .header_read_timeout(limits.header_read_timeout)
            // The read buffer bounds the request head: a head that does not fit answers 431.
            // (hyper's smallest buffer is 8 KiB, the lowest limit the setting accepts.)
            .max_buf_size(limits.max_header_size.max(MIN_HEADER_SIZE));
        // Setting a count moves hyper's header array to the heap on every request: only when
        // it differs from hyper's own default.
        if limits.max_header_count != HYPER_DEFAULT_MAX_HEADERS {
            http1.max_headers(limits.max_header_count);
        }
    }
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_header_list_size(u32::try_from(limits.max_header_size).unwrap_or(u32::MAX));
    builder
}

/// The URL and declared-body checks, before anything else looks at the request.
pub fn check<B>(limits: &Limits, request: &Request<B>) -> Result<(), Rejection> {
    let uri = request.uri();
    let url_length = uri.path_and_query().map_or(0, |pq| pq.as_str().len())
        + uri.authority().map_or(0, |a| a.as_str().len());
    if url_length > limits.max_url_length {
        return Err(Rejection::UriTooLong);
    }
    // hyper's read buffer bounds the head only roughly (one read may overshoot it): the exact
    // size as sent, request line and `name: value\r\n` lines.
    let head = request.method().as_str().len()
        + url_length
        + REQUEST_LINE_OVERHEAD
        + request
            .headers()
            .iter()
            .map(|(name, value)| name.as_str().len() + value.len() + HEADER_LINE_OVERHEAD)
            .sum::<usize>();
    if head > limits.max_header_size {
        return Err(Rejection::HeaderFieldsTooLarge);
    }
    if let Some(max) = limits.max_body_size
        && let Some(length) = request.headers().get(header::CONTENT_LENGTH)
        && length
            .to_str()
            .ok()
            .and_then(|v| v.parse::<u64>().ok())
            .is_some_and(|length| length > max)
    {
        return Err(Rejection::PayloadTooLarge);
    }
    Ok(())
}

/// The body, cut off with an error after `max` bytes (a chunked body can only be measured while
/// it streams); unchanged when no limit is configured.
pub fn limit_body(body: Body, max: Option<u64>) -> Body {
    match max {
        Some(max) => Body::new(http_body_util::Limited::new(
            body,
            usize::try_from(max).unwrap_or(usize::MAX),
        )),
        None => body,
    }
}

/// Whether `err` (or one of its causes) is a body cut off by [`limit_body`].
pub fn is_body_limit(err: &(dyn std::error::Error + 'static)) -> bool {
    let mut current = Some(err);
    while let Some(err) = current {
        if err.is::<http_body_util::LengthLimitError>() {
            return true;
        }
        current = err.source();
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> Limits {
        Limits {
            max_header_size: 16 * 1024,
            max_header_count: 100,
            max_url_length: 20,
            header_read_timeout: Duration::from_secs(60),
            max_body_size: Some(10),
        }
    }

    fn request(uri: &str, content_length: Option<&str>) -> Request<()> {
        let mut builder = Request::builder().uri(uri);
        if let Some(length) = content_length {
            builder = builder.header(header::CONTENT_LENGTH, length);
        }
        builder.body(()).expect("request")
    }

    #[test]
    fn url_length_counts_path_and_query() {
        assert_eq!(
            check(&limits(), &request("/12345678901234567890", None)),
            Err(Rejection::UriTooLong)
        );
        assert_eq!(
            check(&limits(), &request("/1234567890?a=12345", None)),
            Ok(())
        );
        assert_eq!(
            check(&limits(), &request("/1234567890?a=123456789", None)),
            Err(Rejection::UriTooLong)
        );
    }

    #[test]
    fn head_size_counts_every_header_line() {
        let small = Limits {
            max_header_size: 200,
            max_url_length: 1000,
            ..limits()
        };
        let mut request = request("/", None);
        // GET / HTTP/1.1\r\n (16) + \r\n (2) = 18; each `x-h: <value>\r\n` adds 7 + value.
        request
            .headers_mut()
            .insert("x-h", "v".repeat(175).parse().expect("value"));
        assert_eq!(check(&small, &request), Ok(()));
        request
            .headers_mut()
            .insert("x-h", "v".repeat(176).parse().expect("value"));
        assert_eq!(
            check(&small, &request),
            Err(Rejection::HeaderFieldsTooLarge)
        );
    }

    #[test]
    fn declared_body_over_the_limit_is_refused() {
        assert_eq!(check(&limits(), &request("/", Some("10"))), Ok(()));
        assert_eq!(
            check(&limits(), &request("/", Some("11"))),
            Err(Rejection::PayloadTooLarge)
        );
        let unlimited = Limits {
            max_body_size: None,
            ..limits()
        };
        assert_eq!(check(&unlimited, &request("/", Some("99999999"))), Ok(()));
    }

    #[tokio::test]
    async fn streamed_body_is_cut_at_the_limit() {
        use http_body_util::BodyExt;
        let body = limit_body(Body::from("0123456789ab"), Some(10));
        let err = body.collect().await.expect_err("over the limit");
        assert!(is_body_limit(&*err.into_inner()));
        let body = limit_body(Body::from("0123456789"), Some(10));
        assert_eq!(body.collect().await.expect("within").to_bytes().len(), 10);
    }
}
