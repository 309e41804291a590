//! Error answers the router gives itself: a status, a short plain-text reason and nothing
//! internal. Details go to the log, never to the client.

use axum::body::Body;
use axum::response::Response;
use http::{HeaderValue, StatusCode, header};

/// A request the router refuses or cannot complete.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rejection {
    BadRequest(&'static str),
    Unauthorized(&'static str),
    Forbidden(&'static str),
    NotFound(&'static str),
    MethodNotAllowed {
        allow: String,
    },
    BadGateway(&'static str),
    GatewayTimeout,
    ServiceUnavailable(&'static str),
    /// The request target is longer than `XSROUTER_MAX_URL_LENGTH`.
    UriTooLong,
    /// The body is larger than `XSROUTER_MAX_BODY_SIZE`.
    PayloadTooLarge,
    /// The request head is larger than `XSROUTER_MAX_HEADER_SIZE`.
    HeaderFieldsTooLarge,
}

impl Rejection {
    pub fn status(&self) -> StatusCode {
        match self {
            Self::BadRequest(_) => StatusCode::BAD_REQUEST,
            Self::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            Self::Forbidden(_) => StatusCode::FORBIDDEN,
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            Self::BadGateway(_) => StatusCode::BAD_GATEWAY,
            Self::GatewayTimeout => StatusCode::GATEWAY_TIMEOUT,
            Self::ServiceUnavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::UriTooLong => StatusCode::URI_TOO_LONG,
            Self::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Self::HeaderFieldsTooLarge => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
        }
    }

    fn reason(&self) -> &'static str {
        match self {
            Self::BadRequest(r)
            | Self::Unauthorized(r)
            | Self::Forbidden(r)
            | Self::NotFound(r)
            | Self::BadGateway(r)
            | Self::ServiceUnavailable(r) => r,
            Self::MethodNotAllowed { .. } => "Method Not Allowed",
            Self::GatewayTimeout => "Gateway Timeout",
            Self::UriTooLong => "URI Too Long",
            Self::PayloadTooLarge => "Payload Too Large",
            Self::HeaderFieldsTooLarge => "Request Header Fields Too Large",
        }
    }

    pub fn into_response(self) -> Response {
        let mut response = Response::new(Body::from(format!("{}\n", self.reason())));
        *response.status_mut() = self.status();
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        headers.insert(
            header::CACHE_CONTROL,
            HeaderValue::from_static("no-cache, no-store, must-revalidate"),
        );
        if let Self::MethodNotAllowed { allow } = &self
            && let Ok(value) = HeaderValue::from_str(allow)
        {
            headers.insert(header::ALLOW, value);
        }
        response
    }
}
